//! Retention: how long each org keeps its events, and the pruning job.
//!
//! An event is pruned only once it is in a stored weekly archive whose whole week ended
//! more than the org's retention ago, never while the org is under legal hold, and only in
//! whole tiles (`trail_store::PRUNE_ALIGN`), so that every proof about what remains reads
//! stored hashes. Each pruning step is itself an event in the org's log (category
//! `system`), written in the transaction that deletes.

use std::sync::Arc;

use serde_json::json;
use trail_core::Timestamp;
use trail_core::archive::Week;
use trail_core::event::{Actor, ActorType, CanonicalJson, EventBody, Object};
use trail_store::{PRUNE_ALIGN, Retention, Store};

use crate::archive::Archives;
use crate::error::ApiError;

/// Days an org keeps its events unless its owners say otherwise.
pub const DEFAULT_DAYS: u32 = 365;
/// The longest retention an org may set, unless a platform admin says otherwise.
pub const DEFAULT_MAX_DAYS: u32 = 3650;
/// The platform setting that holds the maximum.
pub const MAX_DAYS_SETTING: &str = "retention_max_days";

const DAY_US: i64 = 86_400_000_000;

/// The longest retention an org may set.
pub async fn max_days(store: &dyn Store) -> Result<u32, ApiError> {
    Ok(store
        .setting(MAX_DAYS_SETTING)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_DAYS))
}

/// The days an org's events are kept: its own setting or the default, within the maximum.
pub fn effective_days(r: &Retention, max: u32) -> u32 {
    r.days.unwrap_or(DEFAULT_DAYS).min(max)
}

/// What one run pruned from one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub org: String,
    pub from: u64,
    pub to: u64,
    /// Why nothing was pruned, when nothing was.
    pub skipped: Option<String>,
}

/// Prunes every org (or `only`) of what its retention no longer keeps.
pub async fn prune_due(
    store: &Arc<dyn Store>,
    archives: &Archives,
    now: Timestamp,
    only: Option<&str>,
) -> Result<Vec<PruneReport>, ApiError> {
    let max = max_days(&**store).await?;
    // One pruning at a time, and none beside a build: each reads what the other writes.
    let _one = archives.exclusive().await;
    let mut out = Vec::new();
    for org in store.orgs().await? {
        if only.is_some_and(|o| o != org.id) {
            continue;
        }
        // One org's failure is its own: the others are still pruned.
        out.push(match prune_org(store, archives, &org.id, max, now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(org = %org.id, error = %e, "pruning failed");
                PruneReport {
                    org: org.id.clone(),
                    from: 0,
                    to: 0,
                    skipped: Some(format!("failed: {e}")),
                }
            }
        });
    }
    Ok(out)
}

async fn prune_org(
    store: &Arc<dyn Store>,
    archives: &Archives,
    org: &str,
    max: u32,
    now: Timestamp,
) -> Result<PruneReport, ApiError> {
    let r = store.retention(org).await?;
    let report = |to: u64, skipped: Option<String>| PruneReport {
        org: org.to_owned(),
        from: r.pruned_below,
        to,
        skipped,
    };
    if r.legal_hold {
        return Ok(report(r.pruned_below, Some("under legal hold".into())));
    }
    let days = effective_days(&r, max);
    let cutoff = Timestamp(now.micros().saturating_sub(i64::from(days) * DAY_US));
    // The stored archives that meet the pruned prefix and each other, whose weeks ended
    // before the cutoff: their seqs may go.
    let mut reach = r.pruned_below;
    let mut weeks = Vec::new();
    for a in archives.list(org).await? {
        let Ok(week) = Week::parse(&a.week) else {
            continue;
        };
        if week.end() > cutoff || a.partial {
            break;
        }
        if a.end_seq <= reach {
            continue;
        }
        if a.first_seq > reach {
            // A week's archive is missing: nothing past it goes until it is built.
            break;
        }
        reach = a.end_seq;
        weeks.push(a.week);
    }
    let below = reach - reach % PRUNE_ALIGN;
    if below <= r.pruned_below {
        return Ok(report(
            r.pruned_below,
            Some(format!(
                "nothing archived is older than its retention of {days} days yet"
            )),
        ));
    }
    // In steps, each its own transaction with its own record, so the writer (shared by every
    // org) is never held for long.
    let mut from = r.pruned_below;
    while from < below {
        let to = below.min(from + PRUNE_STEP);
        let event = pruned_event(org, from, to, days, &weeks);
        store.prune(org, to, vec![(org.to_owned(), event)]).await?;
        tracing::info!(org, from, to, "pruned under retention");
        from = to;
    }
    Ok(report(below, None))
}

/// The seqs one pruning step removes at most (a multiple of `PRUNE_ALIGN`).
const PRUNE_STEP: u64 = 256 * PRUNE_ALIGN;

/// The record of one pruning step, in the log it prunes.
fn pruned_event(org: &str, from: u64, to: u64, days: u32, weeks: &[String]) -> EventBody {
    let count = to - from;
    let details = json!({
        "actionType": "DELETE",
        "message": format!(
            "pruned seqs {}..{} ({count} events) under a retention of {days} days; the archives of {} hold them",
            from,
            to - 1,
            weeks.join(", ")
        ),
        "firstSeq": from,
        "endSeq": to,
        "count": count,
        "retentionDays": days,
        "weeks": weeks,
    });
    EventBody {
        client_id: None,
        instance: None,
        timestamp: None,
        action: "pruned".into(),
        category: "system".into(),
        actor: Actor {
            id: "trail retention".into(),
            kind: ActorType::System,
            ip: None,
            user_agent: None,
            token_id: None,
            scope: None,
        },
        object: Some(Object::new(
            "log".into(),
            Some(CanonicalJson::from_value(&json!({"org": org}))),
            None,
        )),
        details: Some(CanonicalJson::from_value(&details)),
        request: None,
        count: 1,
        last_occurred: None,
        submitted_by: None,
    }
}
