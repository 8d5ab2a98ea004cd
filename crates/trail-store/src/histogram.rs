//! Histograms from per-minute tallies, for every backend that keeps them: how many events
//! pass a filter in each slice of a window ([`crate::Store::histogram`]). With no terms,
//! whole minutes are counted from the tallies and only the partial minutes at the window's
//! ends from the events; with terms, or slices that are not whole minutes, from the events.

use trail_core::Timestamp;
use trail_core::histogram::Layout;
use trail_core::perf::MINUTE_US;
use trail_core::query::Filter;

use crate::Result;

/// What a backend gives a histogram.
pub(crate) trait MinuteCounts {
    /// The org's events in each whole minute of `[first, end)` (minutes since the epoch)
    /// that has any.
    fn minutes(&mut self, first: i64, end: i64) -> Result<Vec<(i64, u64)>>;
    /// Adds the events in `[since, until)` that pass `f` (its own window aside) to their
    /// buckets of `layout`, reading the events.
    fn events(
        &mut self,
        f: &Filter,
        since: Timestamp,
        until: Timestamp,
        layout: &Layout,
        counts: &mut [u64],
    ) -> Result<()>;
}

/// The counts of the buckets [`Layout::new`] cuts `[since, until)` into (at most
/// `buckets`), of the events that pass `f`.
pub(crate) fn count(
    src: &mut impl MinuteCounts,
    f: &Filter,
    since: Timestamp,
    until: Timestamp,
    buckets: usize,
) -> Result<Vec<u64>> {
    let layout = Layout::new(since, until, buckets);
    let mut counts = vec![0u64; layout.buckets];
    let since = f.since.map_or(since, |s| s.max(since));
    let until = f.until.map_or(until, |u| u.min(until));
    if until <= since {
        return Ok(counts);
    }
    if !f.terms.is_empty() || !layout.whole_minutes() {
        src.events(f, since, until, &layout, &mut counts)?;
        return Ok(counts);
    }
    // Every event counts: whole minutes from their tallies, and only the partial minutes at
    // the window's ends from the events themselves.
    let first_whole =
        since.micros().div_euclid(MINUTE_US) + i64::from(since.micros().rem_euclid(MINUTE_US) != 0);
    let end_whole = until.micros().div_euclid(MINUTE_US).max(first_whole);
    for (minute, n) in src.minutes(first_whole, end_whole)? {
        if let Some(c) = layout
            .bucket_of(Timestamp(minute * MINUTE_US))
            .and_then(|b| counts.get_mut(b))
        {
            *c += n;
        }
    }
    let head_end = Timestamp(first_whole.saturating_mul(MINUTE_US).min(until.micros()));
    if since < head_end {
        src.events(f, since, head_end, &layout, &mut counts)?;
    }
    // The partial minute at the end is its tally less the events after `until`: a window
    // that ends now ends in the minute being written, which may hold a whole minute of
    // ingest, while the events stamped after now are few.
    let tail_start = Timestamp(end_whole.saturating_mul(MINUTE_US).max(head_end.micros()));
    if tail_start < until {
        let tally: u64 = src
            .minutes(end_whole, end_whole + 1)?
            .iter()
            .map(|(_, n)| n)
            .sum();
        let minute_end = Timestamp((end_whole + 1).saturating_mul(MINUTE_US));
        let mut after = [0u64];
        let rest = Layout::new(until, minute_end, 1);
        src.events(f, until, minute_end, &rest, &mut after)?;
        if let Some(c) = layout.bucket_of(tail_start).and_then(|b| counts.get_mut(b)) {
            *c += tally.saturating_sub(after[0]);
        }
    }
    Ok(counts)
}
