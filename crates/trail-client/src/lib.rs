//! A client of Trail's HTTP API, for the `trail` command and other Rust programs.
//!
//! A token of the form `KEYID:SECRET` is an API key, sent with HTTP Basic; anything else is
//! sent as a bearer token. Every request carries `User-Agent: trail/<version>`.
//!
//! `https://` goes over rustls (the aws-lc-rs provider) and trusts the platform's roots (the
//! system's trust store, through rustls-platform-verifier) plus any private CA given in
//! [`ClientOptions`].
//!
//! Architecture invariant: this crate knows Trail only through its HTTP API.

pub mod verify;

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

pub const USER_AGENT: &str = concat!("trail/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server's TLS certificate was not trusted: not issued by a root of the platform
    /// nor by a CA of [`ClientOptions`], expired, or for another name.
    #[error("the TLS certificate of {url} was not trusted: {reason}")]
    UntrustedCertificate { url: String, reason: String },
    /// A CA certificate file that cannot be used.
    #[error("CA certificate {path}: {reason}")]
    CaCert { path: String, reason: String },
    /// 401: no valid credential.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// 403: the credential lacks a scope, or cannot act there.
    #[error("forbidden: {detail}")]
    Forbidden {
        detail: String,
        scope: Option<String>,
    },
    /// Any other error answer.
    #[error("{status}: {detail}")]
    Status { status: u16, detail: String },
    /// The answer is not what the API promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
    #[error("{0}")]
    Usage(String),
}

enum Auth {
    Bearer(String),
    Basic { id: String, secret: String },
}

/// How a [`Client`] connects, besides its URL and credential.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Private CAs trusted for `https://`, besides the platform's roots.
    ca_certs: Vec<reqwest::Certificate>,
}

impl ClientOptions {
    /// Also trusts the CA certificates in the PEM file at `path` (one or more).
    pub fn ca_cert_file(mut self, path: &Path) -> Result<ClientOptions, ClientError> {
        let bad = |reason: String| ClientError::CaCert {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        self.ca_certs.extend(ca_certs(&pem).map_err(bad)?);
        Ok(self)
    }

    /// Also trusts the CA certificates in `pem` (one or more).
    pub fn ca_cert_pem(mut self, pem: &[u8]) -> Result<ClientOptions, ClientError> {
        let certs = ca_certs(pem).map_err(|reason| ClientError::CaCert {
            path: "(PEM given)".into(),
            reason,
        })?;
        self.ca_certs.extend(certs);
        Ok(self)
    }
}

/// The certificates of a PEM bundle, each checked to be usable as a trust anchor, so that a
/// bad one is named with its file now rather than found at connect time.
fn ca_certs(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ders = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if ders.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    let mut anchors = rustls::RootCertStore::empty();
    ders.iter()
        .enumerate()
        .map(|(i, der)| {
            anchors.add(der.clone()).map_err(|e| {
                format!("certificate {} is not a usable CA certificate: {e}", i + 1)
            })?;
            reqwest::Certificate::from_der(der).map_err(|e| e.to_string())
        })
        .collect()
}

/// A client of one Trail server, with one credential.
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

impl Client {
    /// A client that trusts the platform's roots for `https://`.
    pub fn new(url: &str, token: &str) -> Result<Client, ClientError> {
        Client::with_options(url, token, &ClientOptions::default())
    }

    /// A client with [`ClientOptions`] (private CAs, ...).
    pub fn with_options(
        url: &str,
        token: &str,
        options: &ClientOptions,
    ) -> Result<Client, ClientError> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "{url:?} is not an http:// or https:// URL"
            )));
        }
        let auth = match token.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Auth::Basic {
                id: id.to_owned(),
                secret: secret.to_owned(),
            },
            _ => Auth::Bearer(token.to_owned()),
        };
        let builder = || {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .timeout(Duration::from_secs(60))
                // Trail closes a keep-alive connection after 10 s without a request: let go
                // first, so a request is never sent on a connection the server is closing.
                .pool_idle_timeout(Duration::from_secs(5))
                .tls_certs_merge(options.ca_certs.iter().cloned())
        };
        let http = match builder().build() {
            Ok(http) => http,
            // A system without a trust store (a minimal container) can still speak plain
            // HTTP: the platform's roots are only needed for https://.
            Err(_) if base.starts_with("http://") => builder()
                .tls_certs_only([])
                .build()
                .map_err(|e| ClientError::Usage(error_chain(&e)))?,
            Err(e) => {
                return Err(ClientError::Usage(format!(
                    "cannot set up TLS for {base}: {}",
                    error_chain(&e)
                )));
            }
        };
        Ok(Client { http, base, auth })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        self.request(reqwest::Method::GET, path, None, &[]).await
    }

    /// Sends a request and turns an error answer into a [`ClientError`].
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        req = match &self.auth {
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic { id, secret } => req.basic_auth(id, Some(secret)),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.map_err(|e| send_error(&self.base, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let detail = body["detail"]
            .as_str()
            .unwrap_or(status.canonical_reason().unwrap_or("error"))
            .to_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED => ClientError::Unauthenticated(detail),
            StatusCode::FORBIDDEN => ClientError::Forbidden {
                detail,
                scope: body["scope"].as_str().map(str::to_owned),
            },
            _ => ClientError::Status {
                status: status.as_u16(),
                detail,
            },
        })
    }

    /// A request with a JSON body; the JSON answer (`null` for an empty one).
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        let resp = self.request(method, path, body, &[]).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Server-Sent Events from `path`, resumed after `last_event_id` if given. Yields
    /// `(id, data)` of each event as it arrives.
    pub async fn events(
        &self,
        path: &str,
        last_event_id: Option<u64>,
    ) -> Result<
        futures_util::stream::BoxStream<'static, Result<(Option<String>, String), ClientError>>,
        ClientError,
    > {
        use futures_util::StreamExt;
        let headers: Vec<(&str, String)> = last_event_id
            .map(|id| ("last-event-id", id.to_string()))
            .into_iter()
            .collect();
        let resp = self
            .request(reqwest::Method::GET, path, None, &headers)
            .await?;
        let mut bytes = resp.bytes_stream();
        let stream = async_stream_lines(move |mut emit| async move {
            let (mut buf, mut id, mut data) = (String::new(), None::<String>, String::new());
            while let Some(chunk) = bytes.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        emit(Err(ClientError::Unreachable {
                            url: String::new(),
                            reason: e.to_string(),
                        }));
                        return;
                    }
                };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find('\n') {
                    let line = buf[..end].trim_end_matches('\r').to_owned();
                    buf.drain(..=end);
                    if line.is_empty() {
                        if !data.is_empty() {
                            emit(Ok((id.take(), std::mem::take(&mut data))));
                        }
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        self.send(path)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// GETs a text document.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        self.send(path)
            .await?
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// Why a request could not be sent: an untrusted certificate, or the server out of reach.
fn send_error(url: &str, e: &reqwest::Error) -> ClientError {
    if let Some(rustls::Error::InvalidCertificate(why)) = find_cause::<rustls::Error>(e) {
        let reason = match why {
            rustls::CertificateError::UnknownIssuer => {
                "it is not issued by a CA this client trusts".to_owned()
            }
            why => why.to_string(),
        };
        return ClientError::UntrustedCertificate {
            url: url.to_owned(),
            reason,
        };
    }
    ClientError::Unreachable {
        url: url.to_owned(),
        reason: error_chain(e),
    }
}

/// The first error of type `T` in `e`'s chain of causes, looking inside I/O errors too
/// (whose `source` skips the error they wrap).
fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(found) = find_cause::<T>(inner)
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// An error and its causes, as one line: `a: b: c` (each cause once).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// A stream fed by a producer task through a channel.
fn async_stream_lines<T: Send + 'static, F, Fut>(producer: F) -> impl futures_util::Stream<Item = T>
where
    F: FnOnce(Box<dyn FnMut(T) + Send>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let emit: Box<dyn FnMut(T) + Send> = Box::new(move |item| {
        let _ = tx.send(item);
    });
    tokio::spawn(producer(emit));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// A path segment with its reserved characters escaped.
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
