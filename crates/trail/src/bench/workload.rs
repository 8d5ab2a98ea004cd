//! The bench's events, and what it reads of an acknowledgement.
//!
//! Both run on the machine under test, beside the server, for every batch: events are typed
//! values serialized straight to JSON, and an acknowledgement is read for the two figures
//! the bench checks (the batch's highest seq and the checkpoint's size), so that the load
//! generator takes as little of the machine as it can.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Deterministic events like a platform's, as JSON array bodies, made batch by batch (a
/// 10-million-event run is never held in memory): half application events on objects, half
/// recorded API calls, from 1,000 actors of Zipf-skewed activity (s = 1.1), over 50 route
/// templates, from IP addresses nearly all distinct, with a random body digest per call,
/// in near time order (batch `b` a few milliseconds after `b - 1`, its events up to two
/// seconds old).
#[derive(Clone)]
pub(super) struct Workload {
    pub batch: usize,
    pub batches: usize,
    start: i64,
    /// Cumulative Zipf weights of the actors, for sampling by binary search.
    actors: Arc<Vec<f64>>,
    routes: Arc<Vec<String>>,
}

/// One event of the workload, as sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Event {
    pub timestamp: String,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<&'static str>,
    pub actor: Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Object>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Actor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Object {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: ObjectId,
    pub parent_id: ParentId,
}

#[derive(Serialize)]
pub(super) struct ObjectId {
    pub group: &'static str,
    pub kind: &'static str,
    pub name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ParentId {
    pub application_name: String,
    pub name: &'static str,
    pub parent_name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Details {
    pub action_type: &'static str,
    pub message: &'static str,
    pub patch: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Request {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
    pub latency_ms: f64,
    pub body_sha256: String,
}

impl Event {
    /// The event as one line of JSON, as the baselines store it.
    pub fn record(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "GET", "PATCH", "DELETE"];

impl Workload {
    pub fn new(events: usize, batch: usize) -> Workload {
        let batches = events / batch;
        let mut total = 0.0;
        let actors = (1..=1000)
            .map(|k| {
                total += 1.0 / (k as f64).powf(1.1);
                total
            })
            .collect();
        let resources = [
            "tenants",
            "apps",
            "clusters",
            "users",
            "keys",
            "projects",
            "deployments",
            "secrets",
            "webhooks",
            "billing",
        ];
        let routes = resources
            .iter()
            .flat_map(|r| {
                [
                    format!("GET /v1/{r}"),
                    format!("POST /v1/{r}"),
                    format!("GET /v1/{r}/:id"),
                    format!("PATCH /v1/{r}/:id"),
                    format!("DELETE /v1/{r}/:id"),
                ]
            })
            .collect();
        Workload {
            batch,
            batches,
            start: trail_server::now().micros() - batches as i64 * 5_000,
            actors: Arc::new(actors),
            routes: Arc::new(routes),
        }
    }

    /// Batch `b`'s events, the same every time.
    pub fn events(&self, b: usize) -> Vec<Event> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ (b as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let actions = [
            "created",
            "deleted",
            "updated",
            "synced",
            "rolled_back",
            "login",
            "logout",
            "approved",
        ];
        let statuses = [200, 200, 200, 200, 201, 204, 400, 403, 404, 500];
        let total = *self.actors.last().expect("actors");
        let now = self.start + b as i64 * 5_000;
        (0..self.batch)
            .map(|_| {
                let pick = next(1 << 30) as f64 / (1u64 << 30) as f64 * total;
                let user = self.actors.partition_point(|w| *w < pick);
                let ip = next(u64::from(u32::MAX)) as u32;
                let timestamp = trail_core::Timestamp(now - next(2_000_000) as i64).to_string();
                let action = actions[next(8) as usize];
                let actor = Actor {
                    id: format!("user-{user}"),
                    kind: "user",
                    ip: std::net::Ipv4Addr::from(ip).to_string(),
                    token_id: None,
                    user_agent: None,
                };
                if next(2) == 0 {
                    let r = next(self.routes.len() as u64) as usize;
                    Event {
                        timestamp,
                        action: "call",
                        category: Some("api"),
                        actor: Actor {
                            kind: "pat",
                            token_id: Some(format!("pat_{user:04}")),
                            user_agent: Some("trail/0.1.0"),
                            ..actor
                        },
                        instance: None,
                        object: None,
                        details: None,
                        request: Some(Request {
                            method: METHODS[r % METHODS.len()],
                            route: self.routes[r].clone(),
                            status: statuses[next(10) as usize],
                            latency_ms: next(50_000) as f64 / 100.0,
                            body_sha256: format!(
                                "{:016x}{:016x}{:016x}{:016x}",
                                next(u64::MAX),
                                next(u64::MAX),
                                next(u64::MAX),
                                next(u64::MAX)
                            ),
                        }),
                    }
                } else {
                    Event {
                        timestamp,
                        action,
                        category: None,
                        actor,
                        instance: Some(format!("argocd-{}", next(5))),
                        object: Some(Object {
                            kind: "application",
                            id: ObjectId {
                                group: "argoproj.io",
                                kind: "Application",
                                name: format!("app-{}", next(2000)),
                            },
                            parent_id: ParentId {
                                application_name: format!("app-{}", next(2000)),
                                name: "",
                                parent_name: "",
                            },
                        }),
                        details: Some(Details {
                            action_type: "UPDATE",
                            message: "Resource updated",
                            patch: "",
                        }),
                        request: None,
                    }
                }
            })
            .collect()
    }

    /// Batch `b` as an ingest body: a JSON array.
    pub fn body(&self, b: usize) -> Vec<u8> {
        serde_json::to_vec(&self.events(b)).expect("events serialize")
    }
}

/// What the bench reads of an acknowledgement; the rest of it is skipped unread.
#[derive(Deserialize)]
struct Ack {
    #[serde(default)]
    items: Vec<AckItem>,
    checkpoint: Option<AckCheckpoint>,
}

#[derive(Deserialize)]
struct AckItem {
    seq: u64,
}

#[derive(Deserialize)]
struct AckCheckpoint {
    size: u64,
}

/// Whether an acknowledgement carries a signed checkpoint that covers every event of its
/// batch.
pub(super) fn covered(ack: &[u8]) -> anyhow::Result<bool> {
    let ack: Ack = serde_json::from_slice(ack)?;
    let last_seq = ack.items.iter().map(|i| i.seq).max();
    Ok(matches!((last_seq, ack.checkpoint), (Some(seq), Some(c)) if c.size > seq))
}

/// What a server that stores nothing answers to a batch of `batch` events: an
/// acknowledgement of Trail's shape and size, so that reading it costs the load generator
/// what reading Trail's does.
pub(super) fn null_ack(batch: usize) -> String {
    use trail_server::routes::events::{IngestResult, Ingested};
    let received_at = trail_server::now().to_string();
    let items = (0..batch)
        .map(|i| Ingested {
            index: i,
            id: format!("{:026}", i),
            seq: i as u64,
            hash: format!("{:064x}", i),
            received_at: received_at.clone(),
            duplicate: false,
        })
        .collect();
    let note = format!(
        "trail.bench/bench\n{batch}\n{}\n\n— trail.bench {}\n",
        "A".repeat(44),
        "B".repeat(88)
    );
    serde_json::to_string(&IngestResult {
        accepted: batch,
        duplicates: 0,
        rejected: 0,
        items,
        errors: Vec::new(),
        checkpoint: Some(trail_server::log::CheckpointView {
            size: batch as u64,
            root: format!("{:064x}", batch),
            created_at: received_at,
            note,
        }),
    })
    .expect("acknowledgements serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_one_trail_accepts_and_batches_repeat() {
        let work = Workload::new(10_000, 500);
        let body = work.body(3);
        assert_eq!(body, work.body(3), "a batch is the same every time");
        assert_ne!(body, work.body(4));
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(events.len(), 500);
        let calls = events.iter().filter(|e| e["category"] == "api").count();
        assert!(
            (150..350).contains(&calls),
            "about half are API calls: {calls}"
        );
        for e in &events {
            trail_core::EventBody::from_json(e.clone(), "bench").unwrap();
            let route = e["request"]["route"].as_str();
            if let Some(route) = route {
                assert!(route.starts_with(e["request"]["method"].as_str().unwrap()));
            }
        }
        let record = work.events(3)[0].record();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&record).unwrap(),
            events[0]
        );
    }

    #[test]
    fn an_ack_covers_its_batch_only_with_a_checkpoint_past_its_last_seq() {
        assert!(covered(null_ack(1000).as_bytes()).unwrap());
        let ack = |seqs: &[u64], size: Option<u64>| {
            let items: Vec<_> = seqs
                .iter()
                .map(|s| serde_json::json!({"seq": s, "id": "x"}))
                .collect();
            let checkpoint = size.map(|size| serde_json::json!({"size": size, "note": "n"}));
            serde_json::to_vec(&serde_json::json!({"items": items, "checkpoint": checkpoint}))
                .unwrap()
        };
        assert!(covered(&ack(&[7, 9, 8], Some(10))).unwrap());
        assert!(!covered(&ack(&[7, 9, 8], Some(9))).unwrap());
        assert!(!covered(&ack(&[7], None)).unwrap());
        assert!(!covered(&ack(&[], Some(3))).unwrap());
        assert!(covered(b"not json").is_err());
    }
}
