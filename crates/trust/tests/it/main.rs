//! The gate over real HTTP: a real token issuer and verifier, the real Cedar policies,
//! the real audit log, and an axum router on a loopback port.

use std::{sync::Arc, time::Duration};

use axum::Router;
use polity_audit::{AuditLog, AuditWriter};
use polity_identity::{Issuer, Principal};
use polity_model::Tenant;
use polity_trust::{Access, Action, Gate, Routes, Scope};

const AUD: &str = "polity";

struct Fixture {
    base: String,
    issuer: Issuer,
    audit: AuditWriter,
    _dir: tempfile::TempDir,
}

async fn whoami(access: Access) -> String {
    format!(
        "{} in {}",
        access.caller.actor(),
        access.tenant.map(|t| t.to_string()).unwrap_or_default()
    )
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::open(dir.path(), "urn:test:issuer").unwrap();
    let verifier = polity_identity::Verifier::new(vec![issuer.config(AUD)]).unwrap();
    let (audit, _thread) = AuditWriter::start(AuditLog::open(dir.path()).unwrap()).unwrap();
    let (router, table) = Routes::new()
        .get("/data", Action::EntityRead, Scope::Tenant, whoami)
        .post("/data", Action::EntityWrite, Scope::Tenant, whoami)
        .get("/ops", Action::MetricsRead, Scope::Node, whoami)
        .get("/health", Action::HealthRead, Scope::Node, || async {
            "ok"
        })
        .into_parts();
    // A route added behind the gate's back: its handler asks for Access and is refused.
    let router: Router = router.route("/sneaky", axum::routing::get(whoami));
    let gate = Gate::new(
        verifier,
        Arc::new(polity_authz::CedarAuthorizer::builtin().unwrap()),
        Tenant::new("adelaide").unwrap(),
        &table,
    )
    .with_audit(Arc::new(audit.clone()));
    let app =
        gate.protect(router.fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "none") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fixture {
        base,
        issuer,
        audit,
        _dir: dir,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_gate_authenticates_authorizes_and_audits() {
    let f = start().await;
    let http = client();
    let admin = f
        .issuer
        .issue(
            &Principal::CityAdmin(Tenant::new("adelaide").unwrap()),
            AUD,
            Duration::from_secs(60),
        )
        .unwrap();
    let get = |path: &str| http.get(format!("{}{path}", f.base));

    // No token: 401 with a Bearer challenge, except where policy lets anyone in.
    let r = get("/data").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(get("/health").send().await.unwrap().status(), 200);
    // A browser without a session is sent to sign in.
    let r = get("/data")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/login")
    );
    // A bad token: 401 invalid_token, whatever the route.
    let r = get("/health").bearer_auth("a.b.c").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // Own tenant (default or named): allowed; another tenant: 403.
    let r = get("/data").bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "city-admin:adelaide in adelaide");
    let r = get("/data")
        .bearer_auth(&admin)
        .header("NGSILD-Tenant", "melbourne")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = get("/data")
        .bearer_auth(&admin)
        .header("NGSILD-Tenant", "Not A Tenant")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = get("/data")
        .bearer_auth(&admin)
        .header("Polity-Purpose", "bad purpose!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Node routes follow the role: a city admin may not read the metrics.
    assert_eq!(
        get("/ops")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // HEAD is guarded as GET.
    assert_eq!(
        http.head(format!("{}/ops", f.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        http.head(format!("{}/data", f.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A route the gate does not know: its handler refuses.
    assert_eq!(
        get("/sneaky")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // Unknown paths need credentials before their 404.
    assert_eq!(get("/nothing").send().await.unwrap().status(), 401);
    assert_eq!(
        get("/nothing")
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The session cookie works for reading, never for writing (no CSRF).
    let cookie = format!("polity_token={admin}");
    assert_eq!(
        get("/data")
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http
        .post(format!("{}/data", f.base))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{}/data", f.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Two Authorization headers are refused rather than guessed between.
    let r = get("/data")
        .header("Authorization", format!("Bearer {admin}"))
        .header("Authorization", "Bearer x.y.z")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Every refusal is in the audit log.
    let head = f.audit.head().await.unwrap();
    assert!(head.tree_size >= 8, "only {} audit entries", head.tree_size);
}
