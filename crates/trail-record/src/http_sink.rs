//! Records into a Trail server through its ingest API, authenticated with an API key.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::{CallRecord, Sink, SinkError};

/// Sends each record to `POST {url}/v1/orgs/{org}/events` with HTTP Basic auth (an API key
/// with `logs:write`), and returns once Trail has acknowledged it (that is, once it is on
/// disk). Every record goes to the configured org.
pub struct TrailSink {
    client: reqwest::Client,
    endpoint: String,
    key_id: String,
    secret: String,
}

impl TrailSink {
    pub fn new(url: &str, org: &str, key_id: &str, secret: &str) -> TrailSink {
        TrailSink {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // Trail closes a keep-alive connection after 10 s without a request: let go first,
                // so a request is never sent on a connection the server is closing.
                .pool_idle_timeout(Duration::from_secs(5))
                .user_agent(concat!("trail-record/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a plain HTTP client builds"),
            endpoint: format!("{}/v1/orgs/{org}/events", url.trim_end_matches('/')),
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        }
    }
}

#[async_trait]
impl Sink for TrailSink {
    async fn record(&self, call: CallRecord) -> Result<(), SinkError> {
        let event = record_json(&call);
        let resp = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.key_id, Some(&self.secret))
            .json(&[event])
            .send()
            .await
            .map_err(|e| SinkError(format!("sending to Trail: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() || body["accepted"] != 1 {
            return Err(SinkError(format!(
                "Trail refused the record ({status}): {body}"
            )));
        }
        Ok(())
    }
}

/// The wire JSON of a record's event.
fn record_json(call: &CallRecord) -> Value {
    let e = &call.event;
    // Seal with placeholders only to reuse the one wire format; the server ignores them.
    let sealed = trail_core::Event::seal("-", 0, trail_core::Timestamp(0), e.clone());
    let mut v = serde_json::to_value(sealed.record(&[0; 32])).expect("records serialize");
    if let Some(obj) = v.as_object_mut() {
        for server_field in ["id", "seq", "org", "receivedAt", "hash"] {
            obj.remove(server_field);
        }
    }
    v
}
