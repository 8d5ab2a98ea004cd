//! Trail over TLS, end to end: `trail serve --tls-cert --tls-key` with certificates of test
//! CAs, the CLI trusting them with --ca-cert or TRAIL_CA_CERT (and refusing them without),
//! a SIGHUP that switches CAs, a reload that fails, the edge's slot guard under TLS, and a
//! `trail-record` sink recording into an https:// Trail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

/// A test CA, and where its certificate is written.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem_file: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("Trail test {name}"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let pem_file = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_file, issuer.pem()).unwrap();
        Ca { issuer, pem_file }
    }

    /// A server certificate for 127.0.0.1 and localhost, and its key, as PEM.
    fn server_pair(&self) -> (String, String) {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a server pair of this CA where `trail serve` reads it.
    fn issue_to(&self, files: &ServerFiles) {
        let (cert, key) = self.server_pair();
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
    }

    /// An HTTP client of the tests that trusts this CA only.
    fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.pem_file).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

/// The certificate and key files of a server.
struct ServerFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl ServerFiles {
    fn new(dir: &Path) -> ServerFiles {
        ServerFiles {
            cert: dir.join("server-cert.pem"),
            key: dir.join("server-key.pem"),
        }
    }

    fn options(&self) -> Vec<String> {
        let mut o: Vec<String> = common::DEFAULT_OPTIONS
            .iter()
            .map(|s| s.to_string())
            .collect();
        o.push("--tls-cert".into());
        o.push(self.cert.display().to_string());
        o.push("--tls-key".into());
        o.push(self.key.display().to_string());
        o
    }
}

fn start(data: &Path, files: &ServerFiles, extra: &[&str]) -> Server {
    let mut options = files.options();
    options.extend(extra.iter().map(|s| s.to_string()));
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    Server::start_logged(data, &options)
}

/// Runs `trail` with `args`, no profile, and `env` set.
fn trail(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trail"));
    cmd.args(args)
        .env_remove("TRAIL_URL")
        .env_remove("TRAIL_TOKEN")
        .env_remove("TRAIL_ORG")
        .env_remove("TRAIL_CA_CERT")
        .env_remove("TRAIL_PROFILE")
        .env_remove("TRAIL_LOG")
        .env("TRAIL_CONFIG", "/nonexistent/trail-tls-test/config.toml");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `trail me` against `s`, trusting `ca` (if any) with --ca-cert.
fn me(s: &Server, ca: Option<&Ca>) -> Output {
    let token = s.token();
    let mut args = vec!["--url", &s.url, "--token", &token];
    let file;
    if let Some(ca) = ca {
        file = ca.pem_file.display().to_string();
        args.extend(["--ca-cert", &file]);
    }
    args.extend(["me", "-o", "json"]);
    trail(&args, &[])
}

/// The CLI refuses a certificate it does not trust, in one line that says so and names
/// --ca-cert, exiting 6 (the server is not reached).
fn assert_untrusted(o: &Output) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("not trusted"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
}

#[test]
fn the_cli_reaches_an_https_trail_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca1");
    let files = ServerFiles::new(dir.path());
    ca.issue_to(&files);
    let s = start(&dir.path().join("data"), &files, &[]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.banner);

    // --ca-cert
    let out = me(&s, Some(&ca));
    assert!(out.status.success(), "{}", stderr(&out));
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["actorType"], "pat", "{who}");

    // TRAIL_CA_CERT, with the URL and token from the environment too.
    let token = s.token();
    let ca_file = ca.pem_file.display().to_string();
    let out = trail(
        &["me", "-o", "json"],
        &[
            ("TRAIL_URL", &s.url),
            ("TRAIL_TOKEN", &token),
            ("TRAIL_CA_CERT", &ca_file),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Without the CA: refused, clearly.
    assert_untrusted(&me(&s, None));
    let out = trail(&["--url", &s.url, "health"], &[]);
    assert_untrusted(&out);
}

#[test]
fn login_keeps_the_ca_in_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca1");
    let files = ServerFiles::new(dir.path());
    ca.issue_to(&files);
    let s = start(&dir.path().join("data"), &files, &[]);
    let config = dir.path().join("config.toml");
    let config = config.to_str().unwrap();
    let token = s.token();
    let ca_file = ca.pem_file.display().to_string();
    let login = trail(
        &[
            "login",
            "--url",
            &s.url,
            "--token",
            &token,
            "--ca-cert",
            &ca_file,
        ],
        &[("TRAIL_CONFIG", config)],
    );
    assert!(login.status.success(), "{}", stderr(&login));
    // The profile alone now reaches the server.
    let out = trail(&["me"], &[("TRAIL_CONFIG", config)]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_ca_file_that_cannot_be_used_is_named_and_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for file in [&not_pem, &broken, &missing] {
        let file = file.display().to_string();
        let out = trail(
            &[
                "--url",
                "https://127.0.0.1:9",
                "--token",
                "x",
                "--ca-cert",
                &file,
                "me",
            ],
            &[],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(&file), "{err}");
    }
}

#[test]
fn sighup_switches_to_a_new_ca_and_a_failed_reload_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = Ca::new(dir.path(), "ca1");
    let ca2 = Ca::new(dir.path(), "ca2");
    let files = ServerFiles::new(dir.path());
    ca1.issue_to(&files);
    let mut s = start(&dir.path().join("data"), &files, &[]);
    assert!(me(&s, Some(&ca1)).status.success());
    assert_untrusted(&me(&s, Some(&ca2)));

    ca2.issue_to(&files);
    hangup(&mut s);
    // The reload is done when a new connection gets the new certificate.
    common::eventually_blocking("after SIGHUP the server serves CA2's certificate", || {
        let out = me(&s, Some(&ca2));
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });
    assert_untrusted(&me(&s, Some(&ca1)));

    // A reload from files that cannot serve: logged, naming the file; CA2's pair stays.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
    hangup(&mut s);
    common::eventually_blocking("the failed reload logged, naming the file", || {
        let log = s.log();
        if log.contains("reloading the TLS certificate and key failed")
            && log.contains("server-cert.pem")
        {
            Ok(())
        } else {
            Err(log)
        }
    });
    let out = me(&s, Some(&ca2));
    assert!(out.status.success(), "{}", stderr(&out));
}

fn hangup(s: &mut Server) {
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(s.pid() as i32, libc::SIGHUP) };
}

#[test]
fn tls_files_that_cannot_serve_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca1");
    let files = ServerFiles::new(dir.path());
    ca.issue_to(&files);
    let serve = |cert: &Path, key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_trail"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    // The key file is a certificate: no key in it.
    let out = serve(&files.cert, &files.cert);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("server-cert.pem"), "{err}");
    // A missing certificate.
    let out = serve(&dir.path().join("gone.pem"), &files.key);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("gone.pem"), "{err}");
    // Nothing was started: no store was made.
    assert!(!dir.path().join("data").join("trail.db").exists());
    // One flag without the other is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_trail"))
        .args(["serve", "--tls-cert"])
        .arg(&files.cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}

#[tokio::test]
async fn sockets_that_never_finish_a_handshake_cannot_hold_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca1");
    let files = ServerFiles::new(dir.path());
    ca.issue_to(&files);
    let s = start(
        &dir.path().join("data"),
        &files,
        &["--max-connections", "4", "--header-timeout", "1s"],
    );
    let addr = s.url.trim_start_matches("https://").to_owned();
    // More silent sockets than slots: each is accepted, and never sends a ClientHello.
    let silent: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let resp = ca
        .client()
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .expect("healthz answers over TLS while silent sockets are open");
    assert_eq!(resp.status(), 200);
    // The edge's guards answer over TLS as over plain HTTP.
    let long = format!("{}/v1/me?x={}", s.url, "a".repeat(10_000));
    let resp = ca.client().get(long).send().await.unwrap();
    assert_eq!(resp.status(), 414);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    drop(silent);
}

#[tokio::test]
async fn a_trail_sink_records_into_an_https_trail_trusting_its_ca() {
    use trail_record::{CallRecord, Sink, TrailSink};

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca1");
    let files = ServerFiles::new(dir.path());
    ca.issue_to(&files);
    let s = start(&dir.path().join("data"), &files, &[]);
    let http = ca.client();
    let key: Value = http
        .post(format!("{}/v1/orgs/default/api-keys", s.url))
        .bearer_auth(s.token())
        .json(&json!({"name": "tenants service", "scopes": ["logs:write"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, secret) = (key["id"].as_str().unwrap(), key["secret"].as_str().unwrap());
    let record = || CallRecord {
        org: Some("default".into()),
        event: trail_core::EventBody::from_json(
            json!({"action": "read", "actor": {"id": "alice", "type": "user"}}),
            "default",
        )
        .unwrap(),
    };

    let pem = std::fs::read(&ca.pem_file).unwrap();
    let trusting = TrailSink::builder(&s.url, "default", id, secret)
        .ca_cert_pem(&pem)
        .unwrap()
        .build()
        .unwrap();
    trusting.record(record()).await.expect("recorded over TLS");

    // The platform's roots alone do not know the test CA.
    let untrusting = TrailSink::new(&s.url, "default", id, secret);
    let e = untrusting.record(record()).await.unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");

    let page: Value = http
        .get(format!("{}/v1/orgs/default/audit-logs?actor=alice", s.url))
        .bearer_auth(s.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
}

/// A system without a trust store (a minimal container): plain HTTP still works, and so does
/// HTTPS with --ca-cert.
#[test]
fn without_a_system_trust_store_http_and_a_private_ca_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let no_store = [
        ("SSL_CERT_FILE", "/nonexistent/ca-bundle.crt"),
        ("SSL_CERT_DIR", "/nonexistent/certs"),
    ];
    let plain = Server::start(&dir.path().join("plain"));
    let out = trail(&["--url", &plain.url, "health"], &no_store);
    assert!(out.status.success(), "{}", stderr(&out));

    let ca = Ca::new(dir.path(), "ca1");
    let files = ServerFiles::new(dir.path());
    ca.issue_to(&files);
    let s = start(&dir.path().join("tls"), &files, &[]);
    let ca_file = ca.pem_file.display().to_string();
    let out = trail(
        &["--url", &s.url, "--ca-cert", &ca_file, "health"],
        &no_store,
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
