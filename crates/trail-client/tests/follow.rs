//! `Client::follow` against a scripted server on 127.0.0.1: each connection gets a written
//! answer, byte for byte and chunk by chunk, so the client's SSE decoding and reconnection
//! are tested on exactly what crosses the wire.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use trail_client::{Client, ClientError, Followed};

const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";

/// What one connection is answered: pieces written one at a time, with a pause between,
/// then the connection is closed.
type Script = Vec<Vec<u8>>;

/// How long the tests wait for what they expect to arrive: far longer than it takes, so
/// that a slow, busy machine passes as a fast one does. Only a failing run waits it out.
const PATIENCE: Duration = Duration::from_secs(60);

/// Serves each script to one connection in turn; answers the request heads it read.
async fn scripted(scripts: Vec<Script>) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (heads, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for script in scripts {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client sent a whole request head");
                head.extend_from_slice(&buf[..n]);
            }
            let _ = heads.send(String::from_utf8(head).unwrap());
            for piece in script {
                conn.write_all(&piece).await.unwrap();
                conn.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = conn.shutdown().await;
        }
    });
    (url, rx)
}

/// The next item, within [`PATIENCE`].
async fn next<S: futures_util::Stream<Item = Result<Followed, ClientError>> + Unpin>(
    s: &mut S,
) -> Result<Followed, ClientError> {
    tokio::time::timeout(PATIENCE, s.next())
        .await
        .unwrap_or_else(|_| panic!("an item within {PATIENCE:?}"))
        .expect("the stream goes on")
}

/// The next request head the server read, within [`PATIENCE`].
async fn recv(heads: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(PATIENCE, heads.recv())
        .await
        .unwrap_or_else(|_| panic!("a request within {PATIENCE:?}"))
        .expect("the server goes on")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_character_split_across_chunks_arrives_intact() {
    let data = r#"{"seq":7,"action":"créé","details":{"message":"naïve café 東京 🙂"}}"#;
    let block = format!("id: 7\nevent: audit\ndata: {data}\n\n").into_bytes();
    // Split inside the two bytes of the first `é`, and inside the four of the emoji.
    let first = block.windows(2).position(|w| w == "é".as_bytes()).unwrap() + 1;
    let emoji = block.windows(4).position(|w| w == "🙂".as_bytes()).unwrap() + 2;
    let script = vec![
        SSE_HEAD.as_bytes().to_vec(),
        block[..first].to_vec(),
        block[first..emoji].to_vec(),
        block[emoji..].to_vec(),
    ];
    let (url, _heads) = scripted(vec![script]).await;
    let client = Client::new(&url, "pat_x.secret").unwrap();
    let mut s = Box::pin(client.follow("/v1/orgs/acme/audit-logs/stream", None));
    assert_eq!(
        next(&mut s).await.unwrap(),
        Followed::Event {
            seq: 7,
            data: data.to_owned()
        }
    );
}

#[tokio::test]
async fn a_lost_stream_resumes_after_the_last_seq_seen_and_says_so() {
    let event =
        |seq: u64| format!("id: {seq}\nevent: audit\ndata: {{\"seq\":{seq}}}\n\n").into_bytes();
    let (url, mut heads) = scripted(vec![
        // Event 3, then how far the server read (5, filtered out), then the server goes away.
        vec![SSE_HEAD.into(), event(3), b"id: 5\n\n".to_vec(), b":\n\n".to_vec()],
        // Restarting: not ready yet.
        vec![b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".to_vec()],
        vec![SSE_HEAD.into(), event(6)],
    ])
    .await;
    let client = Client::new(&url, "pat_x.secret").unwrap();
    let mut s = Box::pin(client.follow("/v1/orgs/acme/audit-logs/stream?action=a", Some(2)));
    assert!(matches!(
        next(&mut s).await.unwrap(),
        Followed::Event { seq: 3, .. }
    ));
    let head = recv(&mut heads).await;
    assert_eq!(header(&head, "last-event-id"), Some("2"), "{head}");
    assert!(
        head.starts_with("GET /v1/orgs/acme/audit-logs/stream?action=a "),
        "{head}"
    );
    // Once lost, once regained, however many attempts it took.
    assert!(matches!(next(&mut s).await.unwrap(), Followed::Lost(_)));
    assert_eq!(
        next(&mut s).await.unwrap(),
        Followed::Regained { after: Some(5) }
    );
    for _ in 0..2 {
        let head = recv(&mut heads).await;
        assert_eq!(header(&head, "last-event-id"), Some("5"), "{head}");
    }
    assert!(matches!(
        next(&mut s).await.unwrap(),
        Followed::Event { seq: 6, .. }
    ));
}

#[tokio::test]
async fn a_refused_credential_ends_the_follow() {
    let refused = |status: &str| {
        let body = r#"{"detail":"no such token"}"#;
        vec![format!("HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()]
    };
    let (url, _heads) = scripted(vec![refused("401 Unauthorized"), refused("403 Forbidden")]).await;
    let client = Client::new(&url, "pat_x.secret").unwrap();
    let mut s = Box::pin(client.follow("/v1/orgs/acme/audit-logs/stream", None));
    assert!(matches!(
        next(&mut s).await,
        Err(ClientError::Unauthenticated(_))
    ));
    assert!(s.next().await.is_none(), "a 401 is final");
    let mut s = Box::pin(client.follow("/v1/orgs/acme/audit-logs/stream", None));
    assert!(matches!(
        next(&mut s).await,
        Err(ClientError::Forbidden { .. })
    ));
    assert!(s.next().await.is_none(), "a 403 is final");
}

#[tokio::test]
async fn with_nothing_seen_on_an_empty_log_it_resumes_from_the_start() {
    let (url, mut heads) = scripted(vec![
        vec![SSE_HEAD.into(), b":\n\n".to_vec()],
        vec![
            SSE_HEAD.into(),
            b"id: 0\nevent: audit\ndata: {}\n\n".to_vec(),
        ],
    ])
    .await;
    let client = Client::new(&url, "pat_x.secret").unwrap();
    let mut s = Box::pin(client.follow("/v1/orgs/acme/audit-logs/stream", None));
    assert!(matches!(next(&mut s).await.unwrap(), Followed::Lost(_)));
    assert_eq!(
        next(&mut s).await.unwrap(),
        Followed::Regained { after: None }
    );
    assert!(matches!(
        next(&mut s).await.unwrap(),
        Followed::Event { seq: 0, .. }
    ));
    let first = recv(&mut heads).await;
    assert!(
        first.starts_with("GET /v1/orgs/acme/audit-logs/stream "),
        "{first}"
    );
    assert_eq!(header(&first, "last-event-id"), None);
    let second = recv(&mut heads).await;
    assert!(
        second.starts_with("GET /v1/orgs/acme/audit-logs/stream?from=0 "),
        "{second}"
    );
}
