//! Timestamps: microseconds since the Unix epoch, UTC.
//!
//! Trail keeps microsecond precision (finer input is truncated) and always writes RFC 3339
//! with six fractional digits and `Z`. It reads RFC 3339 and, because the Akuity-style
//! records of seed 002 carry them, Go's `time.Time.String()` form
//! (`2025-11-21 16:26:40.13921 +0000 UTC`).

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {input:?}: expected RFC 3339 (2026-11-21T16:26:40Z){relative}")]
pub struct TimeError {
    input: String,
    relative: &'static str,
}

const MICROS_PER_SEC: i64 = 1_000_000;

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub const fn millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn from_offset_datetime(t: OffsetDateTime) -> Self {
        let nanos = t.unix_timestamp_nanos();
        Timestamp((nanos.div_euclid(1000)) as i64)
    }

    /// As a date and time; instants beyond years ±9999 are clamped to that range.
    pub fn to_offset_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1000).unwrap_or_else(|_| {
            let edge = if self.0 < 0 {
                PrimitiveDateTime::MIN
            } else {
                PrimitiveDateTime::MAX
            };
            edge.assume_utc()
        })
    }

    /// Parses an absolute time: RFC 3339, or Go's `time.Time.String()` layout.
    pub fn parse(input: &str) -> Result<Self, TimeError> {
        let s = input.trim();
        if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
            return Self::checked(t, input, "");
        }
        parse_go(s)
            .and_then(|t| Self::checked(t, input, "").ok())
            .ok_or_else(|| TimeError {
                input: input.to_owned(),
                relative: "",
            })
    }

    /// Parses a filter bound: an absolute time, or a duration back from `now` such as
    /// `30s`, `5m`, `1h`, `7d` or `2w`.
    pub fn parse_bound(input: &str, now: Timestamp) -> Result<Self, TimeError> {
        if let Some(d) = parse_duration_micros(input.trim()) {
            return Ok(Timestamp(now.0.saturating_sub(d)));
        }
        Self::parse(input).map_err(|_| TimeError {
            input: input.to_owned(),
            relative: " or a duration back from now (30s, 5m, 1h, 7d, 2w)",
        })
    }

    /// The instant of `t` in UTC, if its UTC date is within years 0000-9999 (what RFC 3339
    /// can write: an offset can carry a local 9999-12-31 into UTC year 10000).
    fn checked(t: OffsetDateTime, input: &str, relative: &'static str) -> Result<Self, TimeError> {
        let nanos = t.unix_timestamp_nanos();
        let in_range = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .is_ok_and(|utc| (0..=9999).contains(&utc.year()));
        if !in_range {
            return Err(TimeError {
                input: input.to_owned(),
                relative,
            });
        }
        Ok(Timestamp(nanos.div_euclid(1000) as i64))
    }

    /// Converts a system time (the caller reads the clock; this crate does not).
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, six fractional digits: `2026-11-21T16:26:40.139210Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.to_offset_datetime();
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let s = t.format(&fmt).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

/// `30s`, `5m`, `1h`, `7d`, `2w` as microseconds.
pub fn parse_duration_micros(s: &str) -> Option<i64> {
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(MICROS_PER_SEC)
}

/// Go's `2006-01-02 15:04:05.999999999 -0700 MST` (the zone abbreviation is optional and
/// ignored: the numeric offset is authoritative).
fn parse_go(s: &str) -> Option<OffsetDateTime> {
    let mut parts = s.split(' ');
    let date = parts.next()?;
    let clock = parts.next()?;
    let offset = parts.next()?;
    let abbrev = parts.next();
    if parts.next().is_some() || abbrev.is_some_and(|a| a.is_empty()) {
        return None;
    }
    let (hms, frac) = match clock.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (clock, ""),
    };
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dt = PrimitiveDateTime::parse(
        &format!("{date} {hms}"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let dt = dt.replace_nanosecond(nanos).ok()?;
    let off = UtcOffset::parse(
        offset,
        format_description!("[offset_hour sign:mandatory][offset_minute]"),
    )
    .ok()?;
    Some(dt.assume_offset(off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_micro_precision() {
        let t = Timestamp::parse("2026-11-21T16:26:40.139210Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-21T16:26:40.139210Z");
        let t = Timestamp::parse("2026-11-21T17:26:40.1392109+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-21T16:26:40.139210Z");
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00Z").unwrap(),
            Timestamp(0)
        );
    }

    #[test]
    fn go_layout_from_seed_002() {
        let t = Timestamp::parse("2025-11-21 16:26:40.13921 +0000 UTC").unwrap();
        assert_eq!(t.to_string(), "2025-11-21T16:26:40.139210Z");
        let t = Timestamp::parse("2025-11-21 18:26:40 +0200 EET").unwrap();
        assert_eq!(t.to_string(), "2025-11-21T16:26:40.000000Z");
        let t = Timestamp::parse("2025-11-21 16:26:40.5 -0100").unwrap();
        assert_eq!(t.to_string(), "2025-11-21T17:26:40.500000Z");
    }

    #[test]
    fn bad_times_are_errors_not_panics() {
        for bad in [
            "",
            "9999-12-31T23:59:59-01:00",
            "-9999-01-01 00:00:00 +0100",
            "0000-01-01T00:00:00+01:00",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-11-21 16:26:40.13921",
            "2025-11-21 16:26:40.1234567890 +0000 UTC",
            "2025-11-21 16:26:40 +0000 UTC extra",
            "2025-11-21  16:26:40 +0000",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn relative_bounds() {
        let now = Timestamp::parse("2026-11-21T12:00:00Z").unwrap();
        let b = |s| Timestamp::parse_bound(s, now).unwrap().to_string();
        assert_eq!(b("30s"), "2026-11-21T11:59:30.000000Z");
        assert_eq!(b("5m"), "2026-11-21T11:55:00.000000Z");
        assert_eq!(b("1h"), "2026-11-21T11:00:00.000000Z");
        assert_eq!(b("7d"), "2026-11-14T12:00:00.000000Z");
        assert_eq!(b("2w"), "2026-11-07T12:00:00.000000Z");
        assert_eq!(b("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00.000000Z");
        let err = Timestamp::parse_bound("1y", now).unwrap_err().to_string();
        assert!(err.contains("duration"), "{err}");
        assert!(Timestamp::parse_bound("99999999999999999999h", now).is_err());
        assert!(Timestamp::parse_bound("h", now).is_err());
    }

    #[test]
    fn extreme_instants_format_without_panicking() {
        assert!(Timestamp(i64::MIN).to_string().starts_with("-9999-01-01"));
        assert!(
            Timestamp(i64::MAX).to_string().starts_with("9999-12-31"),
            "{}",
            Timestamp(i64::MAX)
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,48}") {
            let _ = Timestamp::parse(&s);
            let _ = Timestamp::parse_bound(&s, Timestamp(0));
        }

        #[test]
        fn go_layout_never_panics(s in "[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2} [0-9:.]{1,20} [+-][0-9]{1,4}( [A-Z]{0,4})?") {
            let _ = Timestamp::parse(&s);
        }

        #[test]
        fn rfc3339_round_trips(micros in -62_135_596_800_000_000i64..253_402_300_799_000_000) {
            let t = Timestamp(micros);
            assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }
    }

    #[test]
    fn edges_of_the_range_are_read() {
        assert!(Timestamp::parse("9999-12-31T23:59:59.999999Z").is_ok());
        assert!(Timestamp::parse("0000-01-01T00:00:00Z").is_ok());
    }

    #[test]
    fn system_time_conversion() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH + Duration::from_micros(5)),
            Timestamp(5)
        );
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH - Duration::from_micros(5)),
            Timestamp(-5)
        );
    }

    #[test]
    fn pre_epoch_formats() {
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999Z");
        assert_eq!(Timestamp(-1).millis(), -1);
    }
}
