//! A client of Trail's HTTP API, for the `trail` command and other Rust programs.
//!
//! A token of the form `KEYID:SECRET` is an API key, sent with HTTP Basic; anything else is
//! sent as a bearer token. Every request carries `User-Agent: trail/<version>`.
//!
//! `https://` goes over rustls (the aws-lc-rs provider) and trusts the platform's roots (the
//! system's trust store, through rustls-platform-verifier) plus any private CA given in
//! [`ClientOptions`].
//! An ordinary request must be answered whole within [`REQUEST_TIMEOUT`]; a live tail
//! ([`Client::follow`]) has no total limit: it lasts as long as its reader wants, is given up
//! only when nothing arrives for [`READ_TIMEOUT`] (the server keeps it alive more often), and
//! reconnects by itself.
//!
//! Architecture invariant: this crate knows Trail only through its HTTP API.

pub mod verify;

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use sse_stream::{Sse, SseByteStream};

pub const USER_AGENT: &str = concat!("trail/", env!("CARGO_PKG_VERSION"));

/// How long connecting to the server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary request may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection may stay silent before it is taken for lost: twice the longest
/// keep-alive interval a Trail server sends a live tail (`--stream-keep-alive`, 30 s at most).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a download may wait for its answer to begin, or stay silent after: a server
/// works up to 15 minutes on a request without a body (a big week's archive) before it
/// answers.
pub const DOWNLOAD_WAIT: Duration = Duration::from_secs(16 * 60);
/// The first wait before reconnecting a live tail; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two attempts to reconnect a live tail.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

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

#[derive(Clone)]
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
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For downloads: the server may take minutes to begin (building a big week's archive).
    files: reqwest::Client,
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
        let make = |read_timeout| {
            let builder = || {
                reqwest::Client::builder()
                    .user_agent(USER_AGENT)
                    // No total timeout here: it would cut a live tail. Ordinary requests
                    // get theirs one by one (`REQUEST_TIMEOUT`).
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(read_timeout)
                    // Trail closes a keep-alive connection after 10 s without a request: let go
                    // first, so a request is never sent on a connection the server is closing.
                    .pool_idle_timeout(Duration::from_secs(5))
                    .tls_certs_merge(options.ca_certs.iter().cloned())
            };
            match builder().build() {
                Ok(http) => Ok(http),
                // A system without a trust store (a minimal container) can still speak
                // plain HTTP: the platform's roots are only needed for https://.
                Err(_) if base.starts_with("http://") => builder()
                    .tls_certs_only([])
                    .build()
                    .map_err(|e| ClientError::Usage(error_chain(&e))),
                Err(e) => Err(ClientError::Usage(format!(
                    "cannot set up TLS for {base}: {}",
                    error_chain(&e)
                ))),
            }
        };
        Ok(Client {
            http: make(READ_TIMEOUT)?,
            files: make(DOWNLOAD_WAIT)?,
            base,
            auth,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        self.request(reqwest::Method::GET, path, None, &[], Some(REQUEST_TIMEOUT))
            .await
    }

    /// Sends a request and turns an error answer into a [`ClientError`]. `total`: how long
    /// the whole exchange may take (`None` for a stream).
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
        total: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        self.request_on(&self.http, method, path, body, headers, total)
            .await
    }

    /// [`Self::request`] on `http`.
    async fn request_on(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
        total: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = http.request(method, &url);
        if let Some(total) = total {
            req = req.timeout(total);
        }
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
        let resp = self
            .request(method, path, body, &[], Some(REQUEST_TIMEOUT))
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Follows the live tail at `path` (`…/audit-logs/stream?…`) after the event `after`
    /// (a seq), if given, else from now on, for as long as the stream is read.
    ///
    /// Events arrive in seq order. When the connection is lost (the server stops or
    /// restarts, the network fails, nothing arrives for [`READ_TIMEOUT`]) the stream says
    /// so once ([`Followed::Lost`]), reconnects by itself, waiting [`RETRY_FIRST`] and
    /// doubling up to [`RETRY_MAX`] between attempts, and resumes after the last seq it saw
    /// (`Last-Event-ID`), so no event is skipped or repeated; it says when it is back
    /// ([`Followed::Regained`]). An answer that retrying cannot change (401, 403, any other
    /// 4xx but 408 and 429, a stream that is not Trail's) is the stream's last item.
    pub fn follow(
        &self,
        path: &str,
        after: Option<u64>,
    ) -> impl Stream<Item = Result<Followed, ClientError>> + Send + 'static {
        Following::new(self, path, after).into_stream()
    }

    /// [`Client::follow`], with its first connection made before this returns: the tail's
    /// place in the log is fixed by then, so what is read afterwards (the history a tail
    /// prints first) cannot fall between the two. Events the history already showed may
    /// also arrive on the stream: skip those up to the history's last seq.
    pub async fn follow_opened(
        &self,
        path: &str,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Followed, ClientError>> + Send + 'static, ClientError>
    {
        let mut following = Following::new(self, path, after);
        let (client, path, headers) = following.resume();
        let (blocks, from) = connect(client, path, headers).await?;
        following.opened(blocks, from);
        Ok(following.into_stream())
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        self.send(path)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// GETs one page of the SIEM export (`…/audit-logs/export?…`): its body as sent, and
    /// the cursor, `more` and checkpoint size from its headers (every format has them).
    pub async fn export_page(&self, path: &str) -> Result<ExportPage, ClientError> {
        let resp = self.send(path).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let cursor = header("trail-cursor")
            .ok_or_else(|| ClientError::Decode("the answer has no Trail-Cursor header".into()))?;
        let more = header("trail-more").as_deref() == Some("true");
        let checkpoint_size = header("trail-checkpoint-size").and_then(|s| s.parse().ok());
        let records = header("trail-records")
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let body = resp
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(ExportPage {
            body,
            cursor,
            more,
            checkpoint_size,
            records,
        })
    }

    /// GETs a file of any size into `out`, telling `progress` the bytes so far and the
    /// total when known; no total timeout (a big file takes what it takes), and it waits
    /// up to [`DOWNLOAD_WAIT`] for the server to begin, or between two reads. Returns the
    /// bytes written.
    pub async fn download(
        &self,
        path: &str,
        out: &mut impl std::io::Write,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, ClientError> {
        let mut resp = self
            .request_on(&self.files, reqwest::Method::GET, path, None, &[], None)
            .await?;
        let total = resp.content_length();
        let mut done = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ClientError::Decode(format!("the download broke off: {e}")))?
        {
            out.write_all(&chunk)
                .map_err(|e| ClientError::Decode(format!("cannot write the download: {e}")))?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        if total.is_some_and(|t| t != done) {
            return Err(ClientError::Decode(format!(
                "the download ended after {done} of {} bytes",
                total.unwrap_or_default()
            )));
        }
        Ok(done)
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

/// One page of the SIEM export, as [`Client::export_page`] reads it.
#[derive(Debug, Clone)]
pub struct ExportPage {
    /// The body as sent: a JSON page (`json`, `ocsf`) or lines (`ndjson`, `cef`).
    pub body: String,
    /// Where the next page starts.
    pub cursor: String,
    /// Whether more can be read at once.
    pub more: bool,
    /// The size of the signed checkpoint that covers the page.
    pub checkpoint_size: Option<u64>,
    /// How many records the page holds.
    pub records: u64,
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

/// What following a live tail yields (see [`Client::follow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// An event: its seq and its record, as JSON text.
    Event { seq: u64, data: String },
    /// The connection was lost, for this reason; reconnecting.
    Lost(String),
    /// Connected again, resuming after this seq (`None`: from the log's start, which was
    /// empty when it was last seen).
    Regained { after: Option<u64> },
}

/// The SSE blocks of one connection.
type Blocks = Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>;

/// A live tail being followed: where it is, and its connection if it has one.
struct Following {
    client: Client,
    path: String,
    /// The last seq seen: an event's, or how far the server said it has read.
    last: Option<u64>,
    /// Whether a connection was ever made.
    connected: bool,
    blocks: Option<Blocks>,
    /// Lost, and not yet regained.
    lost: bool,
    /// The wait before the next attempt to reconnect.
    retry: Duration,
    done: bool,
}

impl Following {
    fn new(client: &Client, path: &str, after: Option<u64>) -> Following {
        Following {
            client: client.clone(),
            path: path.to_owned(),
            last: after,
            connected: false,
            blocks: None,
            lost: false,
            retry: RETRY_FIRST,
            done: false,
        }
    }

    /// Connected: the tail is read from here on, and it starts at seq `from` if the server
    /// said (so a connection lost before any block still resumes where it started).
    fn opened(&mut self, blocks: Blocks, from: Option<u64>) {
        self.blocks = Some(blocks);
        self.connected = true;
        if self.last.is_none()
            && let Some(from) = from.filter(|f| *f > 0)
        {
            self.last = Some(from - 1);
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Followed, ClientError>> + Send + 'static {
        futures_util::stream::unfold(self, |mut f| async move {
            let item = f.next().await?;
            Some((item, f))
        })
    }

    async fn next(&mut self) -> Option<Result<Followed, ClientError>> {
        loop {
            if self.done {
                return None;
            }
            let Some(blocks) = self.blocks.as_mut() else {
                if self.lost {
                    tokio::time::sleep(self.retry).await;
                    self.retry = (self.retry * 2).min(RETRY_MAX);
                }
                let (client, path, headers) = self.resume();
                match connect(client, path, headers).await {
                    Ok((blocks, from)) => {
                        self.opened(blocks, from);
                        if std::mem::take(&mut self.lost) {
                            return Some(Ok(Followed::Regained { after: self.last }));
                        }
                    }
                    Err(e) if passing(&e) => {
                        if !self.lost {
                            self.lost = true;
                            return Some(Ok(Followed::Lost(e.to_string())));
                        }
                    }
                    Err(e) => return self.fail(e),
                }
                continue;
            };
            match blocks.next().await {
                Some(Ok(block)) => {
                    // The connection works: the next loss starts waiting short again.
                    self.retry = RETRY_FIRST;
                    let seq = match block.id.as_deref().map(|id| id.trim().parse::<u64>()) {
                        None => None,
                        Some(Ok(seq)) => Some(seq),
                        Some(Err(_)) => {
                            return self.fail(ClientError::Decode(format!(
                                "the stream sent an id that is not a seq: {:?}",
                                block.id.unwrap_or_default()
                            )));
                        }
                    };
                    if seq.is_some() {
                        self.last = seq;
                    }
                    match (block.data, seq) {
                        (Some(data), Some(seq)) => {
                            return Some(Ok(Followed::Event { seq, data }));
                        }
                        (Some(_), None) => {
                            return self.fail(ClientError::Decode(
                                "the stream sent an event without an id".into(),
                            ));
                        }
                        // How far the server has read, or a keep-alive.
                        (None, _) => {}
                    }
                }
                Some(Err(sse_stream::Error::Body(e))) => {
                    self.blocks = None;
                    self.lost = true;
                    return Some(Ok(Followed::Lost(reason(&*e))));
                }
                Some(Err(e)) => {
                    return self.fail(ClientError::Decode(format!("the stream: {e}")));
                }
                None => {
                    self.blocks = None;
                    self.lost = true;
                    return Some(Ok(Followed::Lost("the server ended the stream".into())));
                }
            }
        }
    }

    fn fail(&mut self, e: ClientError) -> Option<Result<Followed, ClientError>> {
        self.done = true;
        self.blocks = None;
        Some(Err(e))
    }

    /// What reconnecting asks for: after the last seq seen; with none seen on an earlier
    /// connection, the log was empty then, so from its start.
    fn resume(&self) -> (Client, String, Vec<(&'static str, String)>) {
        let mut path = self.path.clone();
        let mut headers = vec![("accept", "text/event-stream".to_owned())];
        match self.last {
            Some(seq) => headers.push(("last-event-id", seq.to_string())),
            None if self.connected => {
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str("from=0");
            }
            None => {}
        }
        (self.client.clone(), path, headers)
    }
}

/// Opens a live tail's stream; with the seq it starts at, if the server said.
async fn connect(
    client: Client,
    path: String,
    headers: Vec<(&'static str, String)>,
) -> Result<(Blocks, Option<u64>), ClientError> {
    let resp = client
        .request(reqwest::Method::GET, &path, None, &headers, None)
        .await?;
    let from = resp
        .headers()
        .get("trail-stream-from")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    Ok((Box::pin(SseByteStream::new(resp.bytes_stream())), from))
}

/// Whether trying again later may succeed: the server could not be reached, or answered
/// that it cannot serve now.
fn passing(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } => true,
        ClientError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        _ => false,
    }
}

/// An error and its causes, in one line.
fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
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
