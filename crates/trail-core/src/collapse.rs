//! The collapsed view (seed 002's `count` and `lastOccurredTimestamp`): a run of identical
//! events, one after another in the order read, is shown as one record. Only the view is
//! collapsed; stored events are never merged or changed, and each record names the seqs it
//! folds, so every one of them can still be proven.
//!
//! Two events are identical when they have the same actor (id, type, address, user agent,
//! credential and scope), action, category, instance, object and details, were sent by the
//! same credential (`submittedBy`), and, for recorded API calls, have the same method, route
//! and status (latency and body digest may differ). So a record never hides that one of its
//! events came from elsewhere. A run holds events received within
//! [`WINDOW_US`] of its first one, and at most [`MAX_RUN`] of them.

use std::ops::Range;

use crate::event::{Event, EventRecord};
use crate::time::Timestamp;

/// How far apart, by time of receipt, the events of one run may be: one minute.
pub const WINDOW_US: i64 = 60_000_000;

/// The most events one collapsed record folds.
pub const MAX_RUN: usize = 1000;

/// Whether `b` is the same event as `a` for the collapsed view.
pub fn identical(a: &Event, b: &Event) -> bool {
    fn request(e: &Event) -> Option<(&str, &str, u16)> {
        e.request
            .as_ref()
            .map(|r| (r.method.as_str(), r.route.as_str(), r.status))
    }
    a.actor == b.actor
        && a.submitted_by == b.submitted_by
        && a.action == b.action
        && a.category == b.category
        && a.instance == b.instance
        && a.object == b.object
        && a.details == b.details
        && request(a) == request(b)
}

/// Whether `e` may join the run that `first` starts.
pub fn joins(first: &Event, e: &Event) -> bool {
    (e.received_at.micros() - first.received_at.micros()).abs() < WINDOW_US && identical(first, e)
}

/// The runs of `events`, in the order given: consecutive ranges, each of events that join its
/// first one, together covering every event.
pub fn runs(events: &[&Event]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=events.len() {
        if i == events.len() || i - start == MAX_RUN || !joins(events[start], events[i]) {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// The record of a run: the record of its oldest event (by seq), with `count` the sum of
/// the run's counts, `lastOccurredTimestamp` its latest occurrence, and `seqs` every seq it
/// folds, in the order given.
pub fn record<'a>(run: &[(&'a Event, &[u8; 32])]) -> EventRecord<'a> {
    let (oldest, hash) = run
        .iter()
        .min_by_key(|(e, _)| e.seq)
        .expect("a run holds an event");
    let mut r = oldest.record(hash);
    r.count = run.iter().fold(0u64, |n, (e, _)| n.saturating_add(e.count));
    r.last_occurred_timestamp = run
        .iter()
        .map(|(e, _)| e.last_occurred)
        .max()
        .unwrap_or(Timestamp(0))
        .to_string();
    r.seqs = Some(run.iter().map(|(e, _)| e.seq).collect());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;
    use serde_json::json;

    fn event(seq: u64, received_s: i64, v: serde_json::Value) -> Event {
        Event::seal(
            "acme",
            seq,
            Timestamp(1_763_740_000_000_000 + received_s * 1_000_000),
            EventBody::from_json(v, "acme").unwrap(),
        )
    }

    fn sync(actor: &str) -> serde_json::Value {
        json!({"action": "synced", "actor": {"id": actor, "type": "user", "ip": "10.0.0.1"},
               "object": {"type": "application", "id": {"kind": "Application", "name": "web"}},
               "details": {"message": "synced"}})
    }

    #[test]
    fn repeats_fold_and_anything_different_starts_a_run() {
        let mut count = sync("alice");
        count["count"] = json!(3); // a client's own count is added up
        let mut other_details = sync("alice");
        other_details["details"]["message"] = json!("failed");
        let events = [
            event(0, 0, sync("alice")),
            event(1, 1, count),
            event(2, 2, sync("bob")),
            event(3, 3, sync("alice")),
            event(4, 4, other_details),
            event(5, 70, sync("alice")), // outside the window of seq 3's run
            event(6, 71, sync("alice")),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        assert_eq!(runs(&refs), vec![0..2, 2..3, 3..4, 4..5, 5..7]);
        assert!(runs(&[]).is_empty());

        // Whatever tells where an event came from keeps it out of another's run.
        for (field, value) in [
            ("ip", json!("10.9.9.9")),
            ("userAgent", json!("curl/8")),
            ("tokenId", json!("pat_2")),
        ] {
            let mut other = sync("alice");
            other["actor"][field] = value;
            assert!(!identical(&events[0], &event(9, 0, other)), "{field}");
        }
        let mut sent = event(9, 0, sync("alice"));
        sent.submitted_by = Some("key_other".into());
        assert!(!identical(&events[0], &sent), "submittedBy");
        let mut huge = event(9, 0, sync("alice"));
        huge.count = u64::MAX;
        let hash = [0u8; 32];
        assert_eq!(
            record(&[(&events[0], &hash), (&huge, &hash)]).count,
            u64::MAX
        );

        let hash = [7u8; 32];
        let run: Vec<(&Event, &[u8; 32])> = vec![(&events[6], &hash), (&events[1], &hash)];
        let r = record(&run);
        assert_eq!(r.seq, 1, "the record is the oldest event's");
        assert_eq!(r.count, 4);
        assert_eq!(r.last_occurred_timestamp, events[6].timestamp.to_string());
        assert_eq!(r.seqs, Some(vec![6, 1]));
    }

    #[test]
    fn a_run_is_bounded() {
        let events: Vec<Event> = (0..MAX_RUN as u64 + 5)
            .map(|s| event(s, 0, sync("alice")))
            .collect();
        let refs: Vec<&Event> = events.iter().collect();
        assert_eq!(runs(&refs), vec![0..MAX_RUN, MAX_RUN..MAX_RUN + 5]);
    }
}
