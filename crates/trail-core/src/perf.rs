//! Per-route performance figures from recorded API calls (seed 001): requests, requests per
//! minute, error rates (5xx and 4xx apart), and p50 / p95 / p99 latency.
//!
//! Calls are kept as they are recorded, per route and per minute of their timestamp, as a
//! [`Tally`]: exact counts, and the latencies in a [`Sketch`] whose percentiles are within
//! [`RELATIVE_ERROR`] of the true nearest-rank value. A window's figures add up its minutes,
//! so they cost the same for a thousand calls as for a million. A window is taken to whole
//! minutes: from the minute `since` falls in to the one before the minute `until` falls in
//! (its own minute too, when `until` is not on a minute's start).

use serde::Serialize;

use crate::Timestamp;

/// A minute, in µs.
pub const MINUTE_US: i64 = 60_000_000;

/// The minute a time falls in: minutes since the epoch.
pub fn minute_of(t: Timestamp) -> i64 {
    t.micros().div_euclid(MINUTE_US)
}

/// The minutes a window `[since, until)` covers: `[first, end)`.
pub fn window_minutes(since: Timestamp, until: Timestamp) -> (i64, i64) {
    let end = until.micros().div_euclid(MINUTE_US) + i64::from(until.micros() % MINUTE_US != 0);
    (minute_of(since), end.max(minute_of(since) + 1))
}

/// Latency percentiles from a sketch are within this share of the true value (7 significant
/// bits: below 128 µs, exact).
pub const RELATIVE_ERROR: f64 = 1.0 / 128.0;

/// Latencies (µs) in log-linear buckets: values below 128 each have their own, and above, each
/// power of two is cut into 64 buckets, so a bucket's middle is within [`RELATIVE_ERROR`] of
/// any value in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sketch {
    /// (bucket, count), ordered by bucket, each bucket once and no count zero: a few dozen
    /// to a few hundred buckets, merged in one pass.
    buckets: Vec<(u16, u64)>,
}

impl Sketch {
    fn bucket(us: u64) -> u16 {
        if us < 128 {
            return us as u16;
        }
        let shift = 63 - us.leading_zeros() - 6;
        (shift as u64 * 64 + (us >> shift)) as u16
    }

    /// The middle of a bucket: the value it stands for.
    fn value(bucket: u16) -> u64 {
        if bucket < 128 {
            return u64::from(bucket);
        }
        let shift = u32::from(bucket / 64) - 1;
        let low = (u64::from(bucket % 64) + 64) << shift;
        low + ((1u64 << shift) - 1) / 2
    }

    pub fn add(&mut self, us: u64) {
        self.add_to(Self::bucket(us), 1);
    }

    fn add_to(&mut self, bucket: u16, n: u64) {
        if n == 0 {
            return;
        }
        match self.buckets.binary_search_by_key(&bucket, |&(b, _)| b) {
            Ok(i) => self.buckets[i].1 += n,
            Err(i) => self.buckets.insert(i, (bucket, n)),
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        if other.buckets.is_empty() {
            return;
        }
        let mine = std::mem::take(&mut self.buckets);
        let mut merged = Vec::with_capacity(mine.len() + other.buckets.len());
        let (mut a, mut b) = (mine.iter().peekable(), other.buckets.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(x, m)), Some(&&(y, n))) if x == y => {
                    a.next();
                    b.next();
                    (x, m + n)
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => *a.next().expect("peeked"),
                (_, Some(_)) => *b.next().expect("peeked"),
                (Some(_), None) => *a.next().expect("peeked"),
                (None, None) => break,
            };
            merged.push(next);
        }
        self.buckets = merged;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|&(_, n)| n).sum()
    }

    /// The nearest-rank p-th percentile (rank ⌈p · n⌉), within [`RELATIVE_ERROR`]; 0 for none.
    pub fn percentile(&self, p: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = ((p * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for &(b, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Self::value(b);
            }
        }
        unreachable!("the rank is at most the count")
    }

    /// As stored: (bucket u16, count u32) pairs, little-endian, by bucket. A count above
    /// u32::MAX in one minute is split over pairs of the same bucket.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buckets.len() * 6);
        for (b, n) in &self.buckets {
            let mut left = *n;
            while left > 0 {
                let part = left.min(u64::from(u32::MAX));
                out.extend_from_slice(&b.to_le_bytes());
                out.extend_from_slice(&(part as u32).to_le_bytes());
                left -= part;
            }
        }
        out
    }

    /// Reads [`Sketch::to_bytes`]; `None` if the bytes are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Sketch> {
        if !bytes.len().is_multiple_of(6) {
            return None;
        }
        let mut s = Sketch::default();
        let top = Self::bucket(u64::MAX);
        for pair in bytes.chunks_exact(6) {
            let b = u16::from_le_bytes([pair[0], pair[1]]);
            if b > top {
                return None;
            }
            let n = u32::from_le_bytes([pair[2], pair[3], pair[4], pair[5]]);
            // In order as written, the same bucket repeated only for counts past u32::MAX.
            match s.buckets.last_mut() {
                Some((last, m)) if *last == b => *m += u64::from(n),
                Some((last, _)) if *last < b && n > 0 => s.buckets.push((b, u64::from(n))),
                None if n > 0 => s.buckets.push((b, u64::from(n))),
                _ => s.add_to(b, u64::from(n)),
            }
        }
        Some(s)
    }
}

/// The calls of one route in one minute (or any span they are added up over).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub latency: Sketch,
}

impl Tally {
    pub fn add(&mut self, status: u16, latency_us: u64) {
        self.requests += 1;
        match status {
            400..=499 => self.errors_4xx += 1,
            500..=599 => self.errors_5xx += 1,
            _ => {}
        }
        self.latency.add(latency_us);
    }

    pub fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.errors_4xx += other.errors_4xx;
        self.errors_5xx += other.errors_5xx;
        self.latency.merge(&other.latency);
    }
}

/// A window's calls: per route, its tallies by minute ([`minute_of`]).
pub type Minutes = Vec<(String, Vec<(i64, Tally)>)>;

/// Folds per-minute tallies read oldest first (`(route, minute, tally)`, routes by any key)
/// into each route's entries: minutes added up into slices of `per` minutes from `first`
/// (each under the minute its slice starts at), except each route's first and last minute
/// with calls, kept as they are, so a window's rate span stays exact and a long window
/// costs a route at most its slices and two more entries. Routes come back in no order.
pub fn fold_slices<K: std::hash::Hash + Eq>(
    rows: impl IntoIterator<Item = (K, i64, Tally)>,
    first: i64,
    per: i64,
) -> Vec<(K, Vec<(i64, Tally)>)> {
    /// One route's tallies as they are read, oldest first.
    struct Route {
        first: (i64, Tally),
        slices: std::collections::HashMap<i64, Tally>,
        last: Option<(i64, Tally)>,
    }
    let per = per.max(1);
    let mut by_route: std::collections::HashMap<K, Route> = std::collections::HashMap::new();
    for (route, minute, tally) in rows {
        if tally.requests == 0 {
            continue;
        }
        match by_route.entry(route) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Route {
                    first: (minute, tally),
                    slices: std::collections::HashMap::new(),
                    last: None,
                });
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let r = o.get_mut();
                if let Some((m, t)) = r.last.replace((minute, tally)) {
                    let start = first + (m - first).div_euclid(per) * per;
                    r.slices.entry(start).or_default().merge(&t);
                }
            }
        }
    }
    by_route
        .into_iter()
        .map(|(k, r)| {
            let mut minutes = vec![r.first];
            minutes.extend(r.slices);
            minutes.extend(r.last);
            minutes.sort_by_key(|(m, _)| *m);
            (k, minutes)
        })
        .collect()
}

/// The figures of one route over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    pub requests_per_minute: f64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub error_rate_4xx: f64,
    pub error_rate_5xx: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// The least span a rate is taken over: a lone call, or a burst within seconds, is not
/// reported as thousands a minute.
pub const MIN_SPAN_MINUTES: f64 = 1.0;

/// The minutes over which the calls happened: from the minute of the first to that of the
/// last (of every route), at least [`MIN_SPAN_MINUTES`], at most the window asked about. 0
/// when there is no call.
pub fn span_minutes(routes: &Minutes, window_minutes: f64) -> f64 {
    let minutes = routes
        .iter()
        .flat_map(|(_, m)| m.iter().filter(|(_, t)| t.requests > 0).map(|(m, _)| *m));
    let (first, last) = minutes.fold((None, None), |(lo, hi): (Option<i64>, Option<i64>), m| {
        (
            Some(lo.map_or(m, |l| l.min(m))),
            Some(hi.map_or(m, |h| h.max(m))),
        )
    });
    match (first, last) {
        (Some(first), Some(last)) => ((last - first) as f64)
            .max(MIN_SPAN_MINUTES)
            .min(window_minutes),
        _ => 0.0,
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Figures per route, asked about a window of `window_minutes`; busiest route first.
/// Requests per minute are taken over the span in which the calls happened
/// ([`span_minutes`]), not the whole window: a quiet day with one busy minute shows that
/// minute's rate.
pub fn summarize(routes: &Minutes, window_minutes: f64) -> Vec<RouteStats> {
    let span = span_minutes(routes, window_minutes);
    let mut out: Vec<RouteStats> = routes
        .iter()
        .filter_map(|(route, minutes)| {
            let mut t = Tally::default();
            for (_, m) in minutes {
                t.merge(m);
            }
            let n = t.requests;
            (n > 0).then(|| RouteStats {
                route: route.clone(),
                requests: n,
                requests_per_minute: if span > 0.0 { n as f64 / span } else { 0.0 },
                errors_4xx: t.errors_4xx,
                errors_5xx: t.errors_5xx,
                error_rate_4xx: t.errors_4xx as f64 / n as f64,
                error_rate_5xx: t.errors_5xx as f64 / n as f64,
                p50_ms: ms(t.latency.percentile(0.50)),
                p95_ms: ms(t.latency.percentile(0.95)),
                p99_ms: ms(t.latency.percentile(0.99)),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.route.cmp(&b.route))
    });
    out
}

/// The figures of one slice of a window, every route given together: how traffic, errors
/// and latency moved over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Where the slice starts.
    pub start: Timestamp,
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    /// Latency percentiles of the slice's calls, in ms; 0 for no call.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// How many whole minutes each slice is when the window's minutes are cut into at most `n`.
pub fn slice_minutes(since: Timestamp, until: Timestamp, n: usize) -> i64 {
    let (first, end) = window_minutes(since, until);
    let n = n.clamp(1, 1 << 20) as i64;
    ((end - first + n - 1) / n).max(1)
}

/// The window's minutes in equal slices of whole minutes (at most `n` of them), oldest first,
/// every route counted together; minutes outside the window are not counted.
pub fn over_time(routes: &Minutes, since: Timestamp, until: Timestamp, n: usize) -> Vec<Slice> {
    let (first, end) = window_minutes(since, until);
    let width = slice_minutes(since, until, n);
    let count = ((end - first) + width - 1) / width;
    let mut tallies = vec![Tally::default(); count as usize];
    for (minute, t) in routes.iter().flat_map(|(_, m)| m) {
        if *minute < first || *minute >= end {
            continue;
        }
        tallies[((minute - first) / width) as usize].merge(t);
    }
    tallies
        .into_iter()
        .enumerate()
        .map(|(i, t)| Slice {
            start: Timestamp((first + i as i64 * width) * MINUTE_US),
            requests: t.requests,
            errors_4xx: t.errors_4xx,
            errors_5xx: t.errors_5xx,
            p50_ms: ms(t.latency.percentile(0.50)),
            p95_ms: ms(t.latency.percentile(0.95)),
            p99_ms: ms(t.latency.percentile(0.99)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact nearest-rank percentile of sorted values.
    fn exact(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn sketch_percentiles_are_within_the_stated_error() {
        // Small values exactly; large ones within 1/128 of the true nearest rank.
        let mut s = Sketch::default();
        for v in 1..=100u64 {
            s.add(v);
        }
        assert_eq!(
            (s.percentile(0.5), s.percentile(0.95), s.percentile(0.99)),
            (50, 95, 99)
        );
        assert_eq!(Sketch::default().percentile(0.5), 0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = Vec::new();
        let mut s = Sketch::default();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // From 1 µs to about an hour, spread over the octaves.
            let v = (x % 1_000_000) << ((x >> 60) as u32 % 12);
            values.push(v);
            s.add(v);
        }
        values.sort_unstable();
        for p in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let (want, got) = (exact(&values, p) as f64, s.percentile(p) as f64);
            assert!(
                (got - want).abs() <= want * RELATIVE_ERROR,
                "p{p}: {got} for {want}"
            );
        }
        // Every bucket boundary stands for a value within the error, and buckets are ordered.
        let mut around: Vec<u64> = (0..40)
            .flat_map(|e| [(1u64 << e) - 1, 1 << e, (1 << e) + 1])
            .collect();
        around.sort_unstable();
        let mut last = 0;
        for v in around {
            let b = Sketch::bucket(v);
            assert!(b >= last, "{v}");
            last = b;
            let got = Sketch::value(b) as f64;
            assert!(
                (got - v as f64).abs() <= v as f64 * RELATIVE_ERROR,
                "{v}: {got}"
            );
        }
    }

    #[test]
    fn sketches_merge_and_round_trip_as_bytes() {
        let mut a = Sketch::default();
        let mut b = Sketch::default();
        for v in [5, 500, 50_000] {
            a.add(v);
            b.add(v * 3);
        }
        a.merge(&b);
        assert_eq!(a.count(), 6);
        assert_eq!(Sketch::from_bytes(&a.to_bytes()), Some(a.clone()));
        assert_eq!(Sketch::from_bytes(&[1, 2, 3]), None);
        // A bucket past the one of the largest latency is not a sketch's.
        assert_eq!(Sketch::from_bytes(&[0xff, 0xff, 1, 0, 0, 0]), None);
        let mut max = Sketch::default();
        max.add(u64::MAX);
        assert_eq!(Sketch::from_bytes(&max.to_bytes()), Some(max));
        assert_eq!(Sketch::from_bytes(&[]), Some(Sketch::default()));
        // A count past u32::MAX is written as several pairs of its bucket, read back whole.
        let mut big = Sketch::default();
        big.add_to(Sketch::bucket(1000), u64::from(u32::MAX) + 5);
        big.add(7);
        assert_eq!(big.to_bytes().len(), 3 * 6);
        assert_eq!(Sketch::from_bytes(&big.to_bytes()), Some(big.clone()));
        assert_eq!(big.count(), u64::from(u32::MAX) + 6);
        // Pairs out of order or repeated add up; a zero count is no bucket.
        let pair = |b: u16, n: u32| [b.to_le_bytes().as_slice(), &n.to_le_bytes()].concat();
        let odd = [pair(5, 1), pair(3, 2), pair(9, 0), pair(5, 4)].concat();
        let mut want = Sketch::default();
        want.add_to(3, 2);
        want.add_to(5, 5);
        assert_eq!(Sketch::from_bytes(&odd), Some(want));
        assert_eq!(Sketch::from_bytes(&pair(9, 0)), Some(Sketch::default()));
    }

    /// Latencies that share buckets often (small ones, milliseconds) and now and then do not.
    fn latency() -> impl proptest::strategy::Strategy<Value = u64> {
        proptest::prop_oneof![0u64..300, 0u64..100_000, proptest::num::u64::ANY]
    }

    proptest::proptest! {
        /// Merging two sketches gives the sketch of all their values, in whatever order the
        /// stored pairs come.
        #[test]
        fn a_merge_is_the_sketch_of_both(
            xs in proptest::collection::vec(latency(), 0..200),
            ys in proptest::collection::vec(latency(), 0..200),
        ) {
            let of = |vs: &[u64]| {
                let mut s = Sketch::default();
                for v in vs {
                    s.add(*v);
                }
                s
            };
            let mut merged = of(&xs);
            merged.merge(&of(&ys));
            let all: Vec<u64> = xs.iter().chain(&ys).copied().collect();
            proptest::prop_assert_eq!(&merged, &of(&all));
            proptest::prop_assert_eq!(merged.count(), all.len() as u64);
            let bytes = merged.to_bytes();
            proptest::prop_assert_eq!(Sketch::from_bytes(&bytes), Some(merged.clone()));
            let reversed: Vec<u8> = bytes.chunks_exact(6).rev().flatten().copied().collect();
            proptest::prop_assert_eq!(Sketch::from_bytes(&reversed), Some(merged));
        }
    }

    fn tally(calls: &[(u16, u64)]) -> Tally {
        let mut t = Tally::default();
        for (status, ms) in calls {
            t.add(*status, ms * 1000);
        }
        t
    }

    #[test]
    fn routes_by_traffic_with_error_rates() {
        // 100 calls of 1..=100 ms over two minutes; every tenth 503, every fourth else 404.
        let calls: Vec<(u16, u64)> = (1..=100)
            .map(|i| {
                let status = if i % 10 == 0 {
                    503
                } else if i % 4 == 0 {
                    404
                } else {
                    200
                };
                (status, i)
            })
            .collect();
        let a = vec![(10, tally(&calls[..50])), (11, tally(&calls[50..]))];
        let b = vec![(10, tally(&[(200, 5), (500, 9)]))];
        let routes: Minutes = vec![
            ("GET /b".into(), b),
            ("GET /a".into(), a),
            ("GET /none".into(), vec![(10, Tally::default())]),
        ];
        let s = summarize(&routes, 60.0);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].route, "GET /a");
        assert_eq!(
            (s[0].requests, s[0].errors_5xx, s[0].errors_4xx),
            (100, 10, 20)
        );
        let near = |got: f64, want: f64| (got - want).abs() <= want * RELATIVE_ERROR;
        assert!(near(s[0].p50_ms, 50.0) && near(s[0].p95_ms, 95.0) && near(s[0].p99_ms, 99.0));
        // Over the minute from the first call's to the last's, not the 60 asked about.
        assert_eq!(s[0].requests_per_minute, 100.0);
        assert_eq!(s[1].error_rate_5xx, 0.5);
        assert!(near(s[1].p50_ms, 5.0) && near(s[1].p99_ms, 9.0));
    }

    #[test]
    fn the_rate_is_over_the_span_of_the_calls_not_the_window() {
        let day = 24.0 * 60.0;
        let one = |minute: i64, n: usize| (minute, tally(&vec![(200, 1); n]));
        // Two calls within a minute, asked about a day: at least a minute, so 2 a minute
        // (not 2 / 1440 = 0.0014).
        let routes: Minutes = vec![("GET /a".into(), vec![one(100, 2)])];
        assert_eq!(summarize(&routes, day)[0].requests_per_minute, 2.0);
        // 30 calls from one minute to the tenth after: 3 a minute, whatever the window.
        let routes: Minutes = vec![("GET /a".into(), vec![one(100, 10), one(110, 20)])];
        assert_eq!(span_minutes(&routes, day), 10.0);
        assert_eq!(summarize(&routes, day)[0].requests_per_minute, 3.0);
        // The span is shared by every route, so their rates compare.
        let mut both = routes.clone();
        both.push(("GET /b".into(), vec![one(105, 1)]));
        assert_eq!(summarize(&both, day)[1].requests_per_minute, 0.1);
        // Never longer than the window asked about, and nothing for no call.
        assert_eq!(span_minutes(&routes, 0.5), 0.5);
        assert_eq!(span_minutes(&vec![], day), 0.0);
    }

    #[test]
    fn minutes_fall_in_the_slice_of_their_time() {
        let t0 = 1_700_000_040_000_000; // on a minute's start
        let m0 = minute_of(Timestamp(t0));
        assert_eq!(m0 * MINUTE_US, t0);
        // An hour in 4 slices of 15 minutes; two routes counted together.
        let routes: Minutes = vec![
            (
                "GET /a".into(),
                vec![
                    (m0, tally(&[(200, 10)])),
                    (m0 + 14, tally(&[(503, 30)])),
                    (m0 + 15, tally(&[(200, 5)])),
                ],
            ),
            (
                "GET /b".into(),
                // In the last slice; one past the window's end and one before (not counted).
                vec![
                    (m0 + 59, tally(&[(404, 7)])),
                    (m0 + 60, tally(&[(200, 1)])),
                    (m0 - 1, tally(&[(200, 1)])),
                ],
            ),
        ];
        let hour = Timestamp(t0 + 60 * MINUTE_US);
        let s = over_time(&routes, Timestamp(t0), hour, 4);
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].start, Timestamp(t0 + 15 * MINUTE_US));
        let counts: Vec<(u64, u64, u64)> = s
            .iter()
            .map(|x| (x.requests, x.errors_4xx, x.errors_5xx))
            .collect();
        assert_eq!(counts, [(2, 0, 1), (1, 0, 0), (0, 0, 0), (1, 1, 0)]);
        assert_eq!((s[2].p50_ms, s[2].p95_ms), (0.0, 0.0));
        // 60 minutes in at most 7 slices: 9 minutes each, 7 slices, all counted.
        let odd = over_time(&routes, Timestamp(t0), hour, 7);
        assert!(odd.len() <= 7, "{}", odd.len());
        assert_eq!(odd.iter().map(|x| x.requests).sum::<u64>(), 4);
        // More slices asked than minutes: a minute each.
        assert_eq!(over_time(&routes, Timestamp(t0), hour, 200).len(), 60);
        // A window off the minute takes in the minutes it touches.
        assert_eq!(
            window_minutes(Timestamp(t0 + 1), Timestamp(t0 + MINUTE_US + 1)),
            (m0, m0 + 2)
        );
    }
}
