//! The console's files as the server serves them: the page at `/`, its modules under
//! `/console/`, each under a Content-Security-Policy that allows no inline script and no
//! framing, revalidated by ETag.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use trail_server::auth::{CredentialSpec, mint};
use trail_server::{AppState, app};
use trail_store::{Bootstrap, Org, Reach, SqliteStore, Store, TokenKind, User};

async fn router() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let now = trail_server::now();
    let owner = User {
        id: "usr_1".into(),
        email: "owner@trail.test".into(),
        password_hash: None,
        platform_admin: true,
        created_at: now,
    };
    let token = mint(CredentialSpec {
        kind: TokenKind::Pat,
        org: "default".into(),
        owner: owner.email.clone(),
        user_id: Some(owner.id.clone()),
        name: "bootstrap".into(),
        description: String::new(),
        scopes: vec![trail_core::Scope::LogsRead],
        instance: None,
        created_by: "test".into(),
        created_at: now,
        expires_at: None,
        reach: Reach::Own,
    })
    .token;
    let org = Org {
        id: "default".into(),
        name: "default".into(),
        created_at: now,
    };
    assert!(
        store
            .bootstrap(Bootstrap { org, owner, token })
            .await
            .unwrap()
    );
    let key = trail_core::checkpoint::SignerKey::from_seed("trail.test", [5; 32]).unwrap();
    let state = AppState::new(store, Arc::new(key)).await.unwrap();
    (app(state), dir)
}

async fn get(app: &axum::Router, uri: &str, etag: Option<&str>) -> axum::response::Response {
    let mut req = Request::get(uri);
    if let Some(e) = etag {
        req = req.header(header::IF_NONE_MATCH, e);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_strict_policy() {
    let (app, _dir) = router().await;
    let page = get(&app, "/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers().clone();
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    let body = page.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8(body.to_vec()).unwrap();
    // No inline script: the page loads its module from this origin.
    assert!(html.contains(r#"<script type="module" src="/console/app.js"></script>"#));
    assert_eq!(html.matches("<script").count(), 1, "{html}");

    let js = get(&app, "/console/app.js", None).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(
        js.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    // Revalidated by its ETag.
    let etag = js.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(
        get(&app, "/console/app.js", Some(&etag)).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&app, "/console/app.js", Some("\"other\""))
            .await
            .status(),
        StatusCode::OK
    );
    // Nothing outside the console's folder, and a clear 404 for what is not there.
    for missing in [
        "/console/nope.js",
        "/console/../Cargo.toml",
        "/console/%2e%2e/Cargo.toml",
    ] {
        let r = get(&app, missing, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
    }
}
