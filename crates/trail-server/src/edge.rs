//! The edge: what every connection and every request meets before a handler does.
//!
//! - [`serve`] accepts connections up to a cap, and closes a connection that does not send
//!   a complete request head within the header timeout (this also ends keep-alive
//!   connections left idle between requests) or on which nothing moves for the idle timeout
//!   (while a handler works on a request without a body, up to 15 minutes, the connection is
//!   not idle: the wait is the server's).
//!   With TLS ([`crate::tls`]) the handshake comes first, inside the connection's slot, and
//!   must finish within the header timeout too, so a socket that never completes one cannot
//!   hold a slot.
//! - [`guard`] refuses a request whose target, headers or declared body are over the
//!   limits before anything reads its body (so `Expect: 100-continue` gets its 413, not
//!   `100 Continue`), and turns every error answer that is not yet problem+json (an
//!   extractor's rejection, a body limit, a router fallback) into one.
//! - [`resolve_client_ip`] decides once where a request came from: the socket peer, or,
//!   when that peer is a trusted proxy, the right-most `X-Forwarded-For` address that is
//!   not one. The recording layer and authentication read the [`ClientIp`] it leaves.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::Layer;
pub use trail_record::ClientIp;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::events::MAX_BODY as MAX_INGEST_BODY;
use crate::tls::Tls;

/// The longest request target (path and query), in bytes: 414 beyond.
pub const MAX_URI: usize = 8 * 1024;
/// The most request header fields: 431 beyond.
pub const MAX_HEADERS: usize = 100;
/// The most bytes of request header fields (names and values): 431 beyond.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The largest body of a call other than ingest and sign-in.
pub const MAX_JSON_BODY: usize = 2 << 20;
/// The largest sign-in body.
pub const MAX_SIGN_IN_BODY: usize = 64 * 1024;
/// The HTTP parser's own limits, above [`MAX_HEADERS`] and [`MAX_HEADER_BYTES`] so that a
/// request over Trail's limits is answered by [`guard`], with a problem document. (A head
/// over these, or a target over 64 KiB, which no `http::Uri` holds, is refused by the
/// parser itself with an empty 431 or 414.)
const PARSER_MAX_HEADERS: usize = 500;
const PARSER_MAX_BUF: usize = 256 * 1024;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; more wait to be accepted.
    pub max_connections: usize,
    /// A request head must arrive whole within this long, counted from when the server
    /// starts waiting for it (so it also ends idle keep-alive connections).
    pub header_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed; the time a
    /// handler spends on a request without a body does not count, up to 15 minutes.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// File descriptors kept free for the store, the log and the signing key when the
/// connection cap is fitted to the process's limit.
const RESERVED_FDS: u64 = 128;

/// Raises the soft limit on open files to the hard limit, and fits `wanted` connections
/// under it (an accepted connection is a file descriptor).
pub fn fit_connection_cap(wanted: usize) -> usize {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-file limit");
            return wanted;
        }
    };
    let room = soft.saturating_sub(RESERVED_FDS).max(16);
    if (wanted as u64) > room {
        tracing::warn!(
            wanted,
            open_file_limit = soft,
            "the open-file limit leaves room for {room} connections; serving at most that many"
        );
        return room as usize;
    }
    wanted
}

/// Serves `app` on `listener` (over TLS if `tls` is given) until `shutdown` completes; then
/// lets the calls in flight finish (for at most `drain`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    limits: ConnectionLimits,
    drain: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cap = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(cap));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A permit first: over the cap, connections wait in the listen backlog and hold
        // no file descriptor of ours.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to be given back.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stopping = stopping.clone();
        // The acceptor of this moment: a reload changes the pair new handshakes get.
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            serve_connection(stream, peer, app, acceptor, limits, stopping).await;
            drop(permit);
        });
    }
    let _ = stop.send(true);
    // Every permit back means every connection has ended.
    let drained = tokio::time::timeout(drain, permits.acquire_many(cap as u32)).await;
    if drained.is_err() {
        tracing::warn!("calls still in flight after {drain:?}; stopping anyway");
    }
    Ok(())
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let tracked = Tracked {
        inner: stream,
        activity: activity.clone(),
    };
    let Some(acceptor) = tls else {
        return serve_http(tracked, activity, peer, app, limits, stopping).await;
    };
    // The handshake counts against the header timeout: until it is done no request head
    // can even begin, and a socket that stalls in it must give its slot back.
    let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(tracked));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no TLS handshake within {:?}", limits.header_timeout);
                return;
            }
        },
        _ = stopping.changed() => return,
    };
    serve_http(stream, activity, peer, app, limits, stopping).await;
}

/// Serves HTTP/1.1 on one connection, plain or TLS, until it ends, the server stops, or
/// nothing has moved on it for the idle timeout.
async fn serve_http<S>(
    stream: S,
    activity: Arc<Activity>,
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let app = axum::Extension(ConnectInfo(peer)).layer(app);
    let working = activity.clone();
    let service = tower::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
        // A request with no body leaves nothing for the client to do until the answer
        // begins: the time its handler takes (building a big archive, minutes) is the
        // server's, not idleness. A request with a body is not exempt: its handler may be
        // waiting for a body that stopped coming.
        let busy = http_body::Body::is_end_stream(req.body()).then(|| Busy::new(&working));
        let answer = tower::ServiceExt::oneshot(app.clone(), req);
        async move {
            let answer = answer.await;
            drop(busy);
            answer
        }
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(PARSER_MAX_HEADERS)
        .max_buf_size(PARSER_MAX_BUF)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    let mut told_to_stop = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended");
                }
                return;
            }
            changed = stopping.changed(), if !told_to_stop => {
                told_to_stop = true;
                let _ = changed;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if activity.idle_for() >= limits.idle_timeout {
                    tracing::debug!(%peer, "closing a connection idle for {:?}", limits.idle_timeout);
                    return;
                }
            }
        }
    }
}

/// When a connection last read or wrote anything, and whether a handler is working on one
/// of its requests meanwhile.
struct Activity {
    born: Instant,
    last_ms: AtomicU64,
    /// When a handler began on a request without a body, or [`NOT_BUSY`].
    busy_since_ms: AtomicU64,
}

const NOT_BUSY: u64 = u64::MAX;

/// The longest a handler's work on a request without a body keeps its connection from
/// counting as idle: long enough for a big week's archive, short enough that requests
/// cannot hold connections open for good.
const BUSY_MAX: Duration = Duration::from_secs(15 * 60);

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(NOT_BUSY),
        }
    }

    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let idle = self.born.elapsed().saturating_sub(last);
        let busy_since = self.busy_since_ms.load(Ordering::Relaxed);
        if busy_since != NOT_BUSY {
            let busy_for = self
                .born
                .elapsed()
                .saturating_sub(Duration::from_millis(busy_since));
            // Not idle while a handler works, up to BUSY_MAX: past that, idle since then.
            return busy_for.saturating_sub(BUSY_MAX);
        }
        idle
    }
}

/// A handler at work on a bodiless request: the connection is not idle meanwhile, and its
/// idle time counts from when the work ends.
struct Busy(Arc<Activity>);

impl Busy {
    /// HTTP/1.1 serves a connection's requests one at a time: one handler at most.
    fn new(activity: &Arc<Activity>) -> Busy {
        let ms = activity.born.elapsed().as_millis() as u64;
        activity.busy_since_ms.store(ms, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy_since_ms.store(NOT_BUSY, Ordering::Relaxed);
    }
}

/// A socket that notes its activity.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The largest body the route of this request takes.
pub fn body_limit(method: &Method, path: &str) -> usize {
    let segments: Vec<&str> = path.split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["", "v1", "orgs", _, "events"]) => MAX_INGEST_BODY,
        (&Method::POST, ["", "v1", "session"]) => MAX_SIGN_IN_BODY,
        _ => MAX_JSON_BODY,
    }
}

/// Refuses a request over the limits before its body is read, and makes every error
/// answer problem+json.
pub async fn guard(req: Request, next: Next) -> Response {
    if let Err(e) = check_request(&req) {
        return e.into_response();
    }
    let limit = body_limit(req.method(), req.uri().path());
    let resp = next.run(req).await;
    as_problem(resp, limit).await
}

fn check_request(req: &Request) -> Result<(), ApiError> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_URI {
        return Err(ApiError::UriTooLong(format!(
            "the request target is {target} bytes; the limit is {MAX_URI}"
        )));
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::HeadersTooLarge(format!(
            "the request has {} header fields; the limit is {MAX_HEADERS}",
            headers.len()
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge(format!(
            "the request's header fields hold {bytes} bytes; the limit is {MAX_HEADER_BYTES}"
        )));
    }
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        let length: u64 = length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| ApiError::BadRequest("Content-Length is not a number".into()))?;
        let limit = body_limit(req.method(), uri.path());
        if length > limit as u64 {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes, the most this call takes"
            )));
        }
    }
    Ok(())
}

/// The most of a non-problem error body that is carried over into the problem's detail.
const MAX_DETAIL: usize = 1024;

/// An error answer that is not problem+json (an extractor's rejection, say) as one.
async fn as_problem(resp: Response, body_limit: usize) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body is larger than {body_limit} bytes, the most this call takes")
        }
        s if s.is_server_error() => {
            tracing::error!(status = %s, body = %text, "an error answer from outside the handlers");
            "the server failed; the error is in its log".to_owned()
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_owned(),
        _ => trail_record::printable(&text, MAX_DETAIL),
    };
    let mut out = ApiError::Rejected { status, detail }.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// Where a request came from: the socket peer, unless it is a trusted proxy; then the
/// right-most address of `X-Forwarded-For` that is not a trusted proxy (the one the
/// nearest untrusted hop connected from). Addresses left of it are the client's own say.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&HeaderValue], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => nearest = ip,
            Some(ip) => return ip,
            // A hop that is no address: nothing left of it can be believed.
            None => return nearest,
        }
    }
    // Proxies all the way: the furthest one is as near the client as is known.
    nearest
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// Puts the request's [`ClientIp`] in its extensions (see [`client_ip`]).
pub async fn resolve_client_ip(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // The socket peer, as the `ConnectInfo` extractor sees it (which tests can mock).
    let (mut parts, body) = req.into_parts();
    let peer = ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .map(|c| c.0.ip());
    let mut req = Request::from_parts(parts, body);
    if let Some(peer) = peer {
        let forwarded: Vec<&HeaderValue> =
            req.headers().get_all("x-forwarded-for").iter().collect();
        let ip = client_ip(peer, &forwarded, &state.trusted_proxies);
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `raw` to `addr` and reads until the connection ends: what came back.
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        // A server that closes with the request's body unread resets the connection. (The
        // limit only bounds a failing run.)
        match tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut out))
            .await
            .expect("the connection ends")
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{e}"),
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A handler that takes longer than the idle timeout on a request without a body gets
    /// its answer out (a big week's archive took minutes, and its download was cut after
    /// the 60 s idle timeout); a request whose body stops coming is still cut off.
    #[tokio::test]
    async fn a_slow_answer_is_not_idleness_but_a_stalled_body_is() {
        let app = Router::new().route(
            "/slow",
            axum::routing::any(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_millis(300),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            None,
            limits,
            Duration::from_secs(1),
            async move {
                let _ = stopped.await;
            },
        ));
        let answer = exchange(
            addr,
            b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with("done"), "{answer:?}");
        let stalled = exchange(
            addr,
            b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n[{",
        )
        .await;
        assert_eq!(
            stalled, "",
            "a request whose body stopped coming is cut off"
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let xff = HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.0.0.2");
        let trusted = nets(&["10.0.0.0/8"]);
        let ip = |peer: &str, values: &[&HeaderValue]| {
            client_ip(peer.parse().unwrap(), values, &trusted).to_string()
        };
        assert_eq!(
            ip("198.51.100.1", &[&xff]),
            "198.51.100.1",
            "untrusted peer"
        );
        assert_eq!(
            ip("10.0.0.1", &[&xff]),
            "203.0.113.7",
            "right-most untrusted"
        );
        assert_eq!(ip("10.0.0.1", &[]), "10.0.0.1", "no header");
        let all_trusted = HeaderValue::from_static("10.1.1.1");
        assert_eq!(ip("10.0.0.1", &[&all_trusted]), "10.1.1.1");
        let junk = HeaderValue::from_static("6.6.6.6, junk, 10.0.0.3");
        assert_eq!(ip("10.0.0.1", &[&junk]), "10.0.0.3", "stops at junk");
        let two = HeaderValue::from_static("192.0.2.9:4711");
        assert_eq!(
            ip("10.0.0.1", &[&xff, &two]),
            "192.0.2.9",
            "last header last"
        );
        let v6 = HeaderValue::from_static("[2001:db8::1]:80");
        assert_eq!(ip("10.0.0.1", &[&v6]), "2001:db8::1");
    }

    #[test]
    fn body_limits_follow_the_route() {
        assert_eq!(
            body_limit(&Method::POST, "/v1/orgs/acme/events"),
            MAX_INGEST_BODY
        );
        assert_eq!(body_limit(&Method::POST, "/v1/session"), MAX_SIGN_IN_BODY);
        assert_eq!(body_limit(&Method::POST, "/v1/orgs"), MAX_JSON_BODY);
        assert_eq!(
            body_limit(&Method::GET, "/v1/orgs/acme/events"),
            MAX_JSON_BODY
        );
    }
}
