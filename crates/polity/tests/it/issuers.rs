//! External token issuers (`[[auth.issuers]]`): a city issuer whose JWK Set is a file
//! and one whose JWK Set is fetched over HTTPS, each trusted only for its own city;
//! key rotation without a restart; a restart while the issuer is down.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use polity_identity::{Issuer, Principal};

use crate::common::{Proc, serve};

const AUD: &str = "polity";

fn issue(issuer: &Issuer, principal: &str) -> String {
    let p: Principal = principal.parse().expect("principal");
    issuer
        .issue(&p, AUD, Duration::from_secs(600))
        .expect("token")
}

/// Status of `GET /ngsi-ld/v1/subscriptions` (a tenant-scoped read that answers 200
/// in an empty tenant) in `tenant` with `token`.
async fn status(base: &str, tenant: &str, token: &str) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{base}/ngsi-ld/v1/subscriptions"))
        .header("NGSILD-Tenant", tenant)
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Polls until the read with `token` answers `want` (up to `secs`).
async fn until_status(base: &str, tenant: &str, token: &str, want: u16, secs: u64) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(base, tenant, token).await;
        if s == want || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn node_config(data: &Path, issuers: &str) -> String {
    format!(
        "[node]\nhttp = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ndefault_tenant = \"adelaide\"\n\n[auth]\nbuilt_in_issuer = false\n\n{issuers}",
        data.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_issuer_from_a_jwks_file_is_trusted_for_its_city_only_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let mut idp = Issuer::open(&dir.path().join("idp"), "https://idp.adelaide.example").unwrap();
    let jwks = dir.path().join("adelaide-jwks.json");
    std::fs::write(&jwks, idp.jwks().to_string()).unwrap();
    let issuers = format!(
        "[[auth.issuers]]\nurl = \"https://idp.adelaide.example\"\njwks_file = \"{}\"\ntenants = [\"adelaide\"]\n",
        jwks.display()
    );
    let node = serve(
        &node_config(&dir.path().join("data"), &issuers),
        dir.path(),
        "file-issuer",
    )
    .await;

    let admin = issue(&idp, "city-admin:adelaide");
    assert_eq!(status(&node.base, "adelaide", &admin).await, 200);
    // The same issuer vouching for another city is refused, whatever the tenant asked.
    let foreign = issue(&idp, "city-admin:sydney");
    assert_eq!(status(&node.base, "sydney", &foreign).await, 401);
    assert_eq!(status(&node.base, "adelaide", &foreign).await, 401);

    // Rotation: a token under a new key is refused until the JWK Set names the key,
    // then accepted without a restart; the old key keeps working while it is listed.
    idp.rotate().unwrap();
    let rotated = issue(&idp, "city-admin:adelaide");
    assert_eq!(status(&node.base, "adelaide", &rotated).await, 401);
    std::fs::write(&jwks, idp.jwks().to_string()).unwrap();
    assert_eq!(
        until_status(&node.base, "adelaide", &rotated, 200, 20).await,
        200
    );
    assert_eq!(status(&node.base, "adelaide", &admin).await, 200);
    node.proc.assert_no_panic();
}

/// A JWK Set served over HTTPS by a test identity provider; `None` answers 503.
struct Idp {
    url: String,
    body: Arc<Mutex<Option<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn idp(dir: &Path) -> (Idp, polity_tls::TlsSection) {
    let section = polity_tls::self_signed(&dir.join("idp-tls"), &[]).unwrap();
    let body: Arc<Mutex<Option<String>>> = Arc::default();
    let b = body.clone();
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let b = b.clone();
            async move {
                match b.lock().unwrap().clone() {
                    Some(s) => (axum::http::StatusCode::OK, s),
                    None => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let config = polity_tls::server_config(&section).unwrap();
    tokio::spawn(polity_tls::serve_https(listener, router, config, rx));
    (
        Idp {
            url: format!("https://localhost:{port}/jwks.json"),
            body,
            stop,
        },
        section,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_over_https_and_survives_the_issuer_being_down() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::open(&dir.path().join("idp"), "https://idp.sydney.example").unwrap();
    let (server, tls) = idp(dir.path()).await;
    *server.body.lock().unwrap() = Some(issuer.jwks().to_string());
    let issuers = format!(
        "[[auth.issuers]]\nurl = \"https://idp.sydney.example\"\njwks_url = \"{}\"\nca = \"{}\"\ntenants = [\"sydney\"]\njwks_refresh_secs = 10\n",
        server.url,
        tls.cert.display()
    );
    let config = node_config(&dir.path().join("data"), &issuers);
    let analyst = issue(&issuer, "city-analyst:sydney");
    {
        let node = serve(&config, dir.path(), "url-issuer").await;
        assert_eq!(status(&node.base, "sydney", &analyst).await, 200);
        assert_eq!(status(&node.base, "adelaide", &analyst).await, 403);
        node.proc.assert_no_panic();
    }

    // The issuer goes down; a restart still trusts the keys fetched before, and says
    // that it could not fetch them.
    *server.body.lock().unwrap() = None;
    let node = serve(&config, dir.path(), "url-issuer-down").await;
    assert_eq!(status(&node.base, "sydney", &analyst).await, 200);
    assert!(node.proc.stderr().contains("503"), "{}", node.proc.stderr());
    server.stop.send(true).unwrap();
    node.proc.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_was_never_reachable_stops_start_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_tcp_port();
    let issuers = format!(
        "[[auth.issuers]]\nurl = \"https://idp.perth.example\"\njwks_url = \"https://localhost:{port}/jwks.json\"\ntenants = [\"perth\"]\n"
    );
    let path = dir.path().join("never.toml");
    std::fs::write(&path, node_config(&dir.path().join("data"), &issuers)).unwrap();
    let mut proc = Proc::spawn(
        &["serve", "--config", path.to_str().unwrap()],
        dir.path(),
        "never",
    );
    let code = proc.wait_exit(Duration::from_secs(30)).await;
    assert!(matches!(code, Some(c) if !c.success()), "{code:?}");
    let err = proc.stderr();
    assert!(
        err.contains("never been fetched") && err.contains(&port.to_string()),
        "{err}"
    );
}
