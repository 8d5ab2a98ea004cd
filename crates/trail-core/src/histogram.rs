//! How a window is cut into a histogram's buckets, decided here once for the store that
//! counts and the server that labels them.
//!
//! A window of at least as many minutes as buckets is cut into buckets of whole minutes on
//! the minute grid (the first starts at the minute `since` falls in), so a store may count
//! whole minutes from per-minute tallies and only the partial minutes at the window's ends
//! from the events. A shorter window is cut into equal buckets from `since`. Either way only
//! events in `[since, until)` are counted.

use crate::Timestamp;
use crate::perf::{MINUTE_US, minute_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Where the first bucket starts.
    pub origin: Timestamp,
    /// How long each bucket is, in µs.
    pub width_us: i64,
    /// How many buckets there are.
    pub buckets: usize,
}

impl Layout {
    /// At most `max` buckets (at least 1) over `[since, until)`.
    pub fn new(since: Timestamp, until: Timestamp, max: usize) -> Layout {
        let max = max.clamp(1, 1 << 20) as i64;
        let span = until.micros().saturating_sub(since.micros()).max(1);
        let first = minute_of(since);
        let end = minute_of(until) + i64::from(until.micros().rem_euclid(MINUTE_US) != 0);
        let minutes = end.saturating_sub(first);
        if span >= max * MINUTE_US {
            let per = (minutes + max - 1) / max;
            Layout {
                origin: Timestamp(first * MINUTE_US),
                width_us: per * MINUTE_US,
                buckets: ((minutes + per - 1) / per) as usize,
            }
        } else {
            let width = (span + max - 1) / max;
            Layout {
                origin: since,
                width_us: width.max(1),
                buckets: ((span + width - 1) / width.max(1)) as usize,
            }
        }
    }

    /// Whether buckets are whole minutes of the minute grid.
    pub fn whole_minutes(&self) -> bool {
        self.origin.micros().rem_euclid(MINUTE_US) == 0 && self.width_us % MINUTE_US == 0
    }

    /// The bucket a time falls in, if any.
    pub fn bucket_of(&self, t: Timestamp) -> Option<usize> {
        let i = (t.micros() - self.origin.micros()).div_euclid(self.width_us);
        usize::try_from(i).ok().filter(|i| *i < self.buckets)
    }

    /// Where bucket `i` starts.
    pub fn start(&self, i: usize) -> Timestamp {
        Timestamp(self.origin.micros() + i as i64 * self.width_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = MINUTE_US;

    #[test]
    fn a_long_window_is_cut_in_whole_minutes_of_the_grid() {
        let t0 = 1_700_000_040_000_000; // on a minute
        assert_eq!(t0 % M, 0);
        // A day from 30 s past a minute: 1,441 minutes touched, 60 buckets of 25 minutes
        // (58 of them needed).
        let l = Layout::new(
            Timestamp(t0 + 30_000_000),
            Timestamp(t0 + 30_000_000 + 1440 * M),
            60,
        );
        assert!(l.whole_minutes());
        assert_eq!(
            (l.origin, l.width_us, l.buckets),
            (Timestamp(t0), 25 * M, 58)
        );
        assert_eq!(l.bucket_of(Timestamp(t0 + 30_000_000)), Some(0));
        assert_eq!(l.bucket_of(Timestamp(t0 + 25 * M)), Some(1));
        assert_eq!(
            l.bucket_of(Timestamp(t0 + 30_000_000 + 1440 * M - 1)),
            Some(57)
        );
        assert_eq!(l.bucket_of(Timestamp(t0 - 1)), None);
        assert_eq!(l.start(2), Timestamp(t0 + 50 * M));
        // Exactly an hour on the grid in 60: a minute each.
        let h = Layout::new(Timestamp(t0), Timestamp(t0 + 60 * M), 60);
        assert_eq!((h.width_us, h.buckets), (M, 60));
    }

    #[test]
    fn a_short_window_is_cut_in_equal_slices_from_its_start() {
        let t0 = 1_700_000_040_000_123;
        // 15 minutes in 60: 15 s each, from since.
        let l = Layout::new(Timestamp(t0), Timestamp(t0 + 15 * M), 60);
        assert!(!l.whole_minutes());
        assert_eq!(
            (l.origin, l.width_us, l.buckets),
            (Timestamp(t0), 15_000_000, 60)
        );
        assert_eq!(l.bucket_of(Timestamp(t0 + 15 * M - 1)), Some(59));
        assert_eq!(l.bucket_of(Timestamp(t0 + 15 * M)), None);
        // A window of a microsecond still has a bucket.
        assert_eq!(Layout::new(Timestamp(t0), Timestamp(t0 + 1), 60).buckets, 1);
    }
}
