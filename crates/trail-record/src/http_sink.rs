//! Records into a Trail server through its ingest API, authenticated with an API key.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::{CallRecord, Sink, SinkError};

/// Sends each record to `POST {url}/v1/orgs/{org}/events` with HTTP Basic auth (an API key
/// with `logs:write`), and returns once Trail has acknowledged it (that is, once it is on
/// disk). Every record goes to the configured org.
///
/// An `https://` Trail is reached over rustls (the aws-lc-rs provider), trusting the
/// platform's roots and, through [`TrailSink::builder`], a private CA.
pub struct TrailSink {
    /// The HTTP client, or why none could be made (then every record fails, and says why).
    client: Result<reqwest::Client, String>,
    endpoint: String,
    key_id: String,
    secret: String,
}

/// A [`TrailSink`] with options: `TrailSink::builder(url, org, id, secret).ca_cert_pem(pem)?.build()?`.
pub struct TrailSinkBuilder {
    url: String,
    org: String,
    key_id: String,
    secret: String,
    ca_certs: Vec<reqwest::Certificate>,
}

impl TrailSinkBuilder {
    /// Also trusts the CA certificates of this PEM bundle (one or more) for `https://`.
    pub fn ca_cert_pem(mut self, pem: &[u8]) -> Result<TrailSinkBuilder, SinkError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| SinkError(format!("the CA certificates are not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(SinkError(
                "no PEM certificate (-----BEGIN CERTIFICATE-----) among the CA certificates".into(),
            ));
        }
        self.ca_certs.extend(certs);
        Ok(self)
    }

    /// The sink; fails if its HTTP client cannot be made (a CA certificate that is no
    /// certificate, or no trust store on the system for an `https://` URL).
    pub fn build(self) -> Result<TrailSink, SinkError> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // Trail closes a keep-alive connection after 10 s without a request: let go
                // first, so a request is never sent on a connection the server is closing.
                .pool_idle_timeout(Duration::from_secs(5))
                .user_agent(concat!("trail-record/", env!("CARGO_PKG_VERSION")))
                .tls_certs_merge(self.ca_certs.iter().cloned())
        };
        let base = self.url.trim_end_matches('/');
        let client = match builder().build() {
            // Without a trust store (a minimal container) plain HTTP still works.
            Err(_) if base.starts_with("http://") => builder().tls_certs_only([]).build(),
            built => built,
        }
        .map_err(|e| {
            SinkError(format!(
                "cannot make the HTTP client for Trail: {}",
                chain(&e)
            ))
        })?;
        Ok(TrailSink {
            client: Ok(client),
            endpoint: format!("{base}/v1/orgs/{}/events", self.org),
            key_id: self.key_id,
            secret: self.secret,
        })
    }
}

impl TrailSink {
    /// A sink trusting the platform's roots for `https://`. If its HTTP client cannot be
    /// made, every record fails with the reason (see [`TrailSinkBuilder::build`]).
    pub fn new(url: &str, org: &str, key_id: &str, secret: &str) -> TrailSink {
        let builder = TrailSink::builder(url, org, key_id, secret);
        let endpoint = format!("{}/v1/orgs/{org}/events", url.trim_end_matches('/'));
        builder.build().unwrap_or_else(|e| TrailSink {
            client: Err(e.0),
            endpoint,
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// A sink with options, such as a private CA.
    pub fn builder(url: &str, org: &str, key_id: &str, secret: &str) -> TrailSinkBuilder {
        TrailSinkBuilder {
            url: url.to_owned(),
            org: org.to_owned(),
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            ca_certs: Vec::new(),
        }
    }
}

/// An error and its causes, as one line (a TLS failure is only in the causes).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[async_trait]
impl Sink for TrailSink {
    async fn record(&self, call: CallRecord) -> Result<(), SinkError> {
        let event = record_json(&call);
        let client = self.client.as_ref().map_err(|e| SinkError(e.clone()))?;
        let resp = client
            .post(&self.endpoint)
            .basic_auth(&self.key_id, Some(&self.secret))
            .json(&[event])
            .send()
            .await
            .map_err(|e| SinkError(format!("sending to Trail: {}", chain(&e))))?;
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
