//! Authorization, end to end: the route × role × tenant matrix over every route the
//! node serves, and attacks (forged tokens, cross-tenant access, id enumeration,
//! privilege escalation) against a real `polity serve` with its built-in policies.
//!
//! The route list comes from the router itself (`polity routes --json`). Every route
//! must have a row in [`expected`]: a new route without one fails here, in CI, until
//! someone writes down who may use it.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::common::{POLITY, client_as, http_client, serve, token};

/// What a caller gets from a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Served: any answer but 401 and 403.
    Served,
    /// 401: authenticate first.
    Unauth,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 404: the entity exists, but not for this caller (no id enumeration).
    Hidden,
}
use Want::*;

/// The callers of the matrix, by name.
const ROLES: &[&str] = &[
    "anonymous",
    "operator",
    "security-analyst",
    "city-admin",
    "city-analyst",
    "app",
    "citizen-owner",
    "citizen-other",
];

fn principal(role: &str) -> Option<&'static str> {
    Some(match role {
        "operator" => "operator",
        "security-analyst" => "security-analyst",
        "city-admin" => "city-admin:adelaide",
        "city-analyst" => "city-analyst:adelaide",
        "app" => "app:parking:adelaide",
        "citizen-owner" => "citizen:adelaide:alice",
        "citizen-other" => "citizen:adelaide:bob",
        _ => return None,
    })
}

/// The expected answer of `route` for `role`, in the caller's own city (`own`, tenant
/// adelaide) and in another city (`other`, tenant melbourne). For node-wide routes both
/// are the same. Written out by hand, independently of the policies.
fn expected(method: &str, path: &str, role: &str) -> Option<(Want, Want)> {
    let same = |w| Some((w, w));
    let anon = role == "anonymous";
    let citizen = role.starts_with("citizen");
    Some(match (method, path) {
        ("GET", "/health") | ("GET", "/login") | ("POST", "/login") | ("POST", "/logout") => {
            return same(Served);
        }
        ("GET", "/" | "/api/overview" | "/api/overview/stream" | "/api/cities") => {
            return same(if anon { Unauth } else { Served });
        }
        ("GET", "/ngsi-ld/v1/jsonldContexts" | "/ngsi-ld/v1/jsonldContexts/{id}") => {
            return same(if anon { Unauth } else { Served });
        }
        ("POST" | "DELETE", "/ngsi-ld/v1/jsonldContexts")
        | ("DELETE", "/ngsi-ld/v1/jsonldContexts/{id}") => {
            return same(match role {
                "anonymous" => Unauth,
                "operator" | "city-admin" => Served,
                _ => Forbidden,
            });
        }
        ("GET", "/metrics" | "/api/audit/head" | "/api/aggregates/{type}") => {
            return same(match role {
                "anonymous" => Unauth,
                "operator" | "security-analyst" => Served,
                _ => Forbidden,
            });
        }
        ("GET", "/api/me/access-log" | "/api/me/consents" | "/api/me/export")
        | ("POST", "/api/me/consents" | "/api/me/erase")
        | ("DELETE", "/api/me/consents/{id}") => {
            return same(match role {
                "anonymous" => Unauth,
                r if r.starts_with("citizen") => Served,
                _ => Forbidden,
            });
        }
        // Reads of one city's entities.
        (
            "GET",
            "/ngsi-ld/v1/entities"
            | "/ngsi-ld/v1/types"
            | "/ngsi-ld/v1/types/{type}"
            | "/ngsi-ld/v1/attributes"
            | "/ngsi-ld/v1/attributes/{attr}",
        )
        | (
            "POST",
            "/ngsi-ld/v1/entityOperations/query" | "/ngsi-ld/v1/temporal/entityOperations/query",
        )
        | ("GET", "/ngsi-ld/v1/temporal/entities") => match role {
            "anonymous" => (Unauth, Unauth),
            "operator" => (Served, Served),
            "security-analyst" => (Forbidden, Forbidden),
            // Citizens query their own entities but may not list a city's types.
            _ if citizen && (path.contains("/types") || path.contains("/attributes")) => {
                (Forbidden, Forbidden)
            }
            _ => (Served, Forbidden),
        },
        ("GET", "/ngsi-ld/v1/entities/{id}" | "/ngsi-ld/v1/temporal/entities/{id}") => match role {
            "anonymous" => (Unauth, Unauth),
            "operator" => (Served, Served),
            "security-analyst" => (Forbidden, Forbidden),
            "citizen-other" => (Hidden, Forbidden),
            _ => (Served, Forbidden),
        },
        // Subscriptions are reads: a caller who may read a city's entities may
        // subscribe to them (and sees only their own subscriptions). Citizens use their
        // portal instead.
        ("GET" | "POST", "/ngsi-ld/v1/subscriptions")
        | ("GET" | "PATCH" | "DELETE", "/ngsi-ld/v1/subscriptions/{id}") => match role {
            "anonymous" => (Unauth, Unauth),
            "operator" => (Served, Served),
            "security-analyst" => (Forbidden, Forbidden),
            _ if citizen && method == "POST" => (Forbidden, Forbidden),
            _ => (Served, Forbidden),
        },
        // Changes to one entity of a city: only who may write there; the entity's owner
        // sees it (403), other citizens do not (404, like a missing entity).
        ("DELETE" | "PUT" | "PATCH", "/ngsi-ld/v1/entities/{id}")
        | ("POST" | "PATCH", "/ngsi-ld/v1/entities/{id}/attrs")
        | ("PATCH" | "PUT" | "DELETE", "/ngsi-ld/v1/entities/{id}/attrs/{attr}")
        | ("DELETE", "/ngsi-ld/v1/temporal/entities/{id}")
        | ("POST", "/ngsi-ld/v1/temporal/entities/{id}/attrs")
        | ("DELETE", "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}")
        | ("PATCH" | "DELETE", "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instance}") => {
            match role {
                "anonymous" => (Unauth, Unauth),
                "city-admin" | "app" => (Served, Forbidden),
                "citizen-other" => (Hidden, Forbidden),
                _ => (Forbidden, Forbidden),
            }
        }
        // Writes into one city.
        (
            "POST",
            "/ngsi-ld/v1/entities"
            | "/ngsi-ld/v1/entityOperations/create"
            | "/ngsi-ld/v1/entityOperations/upsert"
            | "/ngsi-ld/v1/entityOperations/update"
            | "/ngsi-ld/v1/entityOperations/merge"
            | "/ngsi-ld/v1/entityOperations/delete"
            | "/ngsi-ld/v1/temporal/entities"
            | "/api/ingest/senml",
        )
        | ("DELETE", "/ngsi-ld/v1/entities") => match role {
            "anonymous" => (Unauth, Unauth),
            "city-admin" | "app" => (Served, Forbidden),
            _ => (Forbidden, Forbidden),
        },
        _ => return None,
    })
}

const OWN: &str = "adelaide";
const OTHER: &str = "melbourne";
const OWNED: &str = "urn:ngsi-ld:WaterConsumptionObserved:adelaide-home-7";
const ELSEWHERE: &str = "urn:ngsi-ld:WaterConsumptionObserved:melbourne-home-1";

fn config(dir: &Path) -> String {
    format!(
        r#"[node]
http = "127.0.0.1:0"
data_dir = "{}"
default_tenant = "adelaide"

[subscriptions]
allow_private_endpoints = true
"#,
        dir.join("data").display()
    )
}

fn entity(id: &str, owner: &str, n: u32) -> Value {
    json!({
        "id": id,
        "type": "WaterConsumptionObserved",
        "owner": {"type": "Relationship", "object": format!("urn:ngsi-ld:Person:{owner}")},
        "waterConsumption": {"type": "Property", "value": n, "unitCode": "MTQ"},
        "accountNumber": {"type": "Property", "value": format!("ACC-{owner}-0042")},
    })
}

/// Sends the request a route needs, as `client`, in `tenant`; returns the status.
async fn call(
    login: &str,
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    tenant: &str,
    n: u32,
) -> u16 {
    let id = if tenant == OWN { OWNED } else { ELSEWHERE };
    let url = format!(
        "{base}{}",
        path.replace("{id}", id)
            .replace("{type}", "WaterConsumptionObserved")
            .replace("{attr}", "waterConsumption")
            .replace("{instance}", "urn:ngsi-ld:Instance:0")
    );
    let url = match path {
        "/ngsi-ld/v1/entities" | "/ngsi-ld/v1/temporal/entities"
            if method == "GET" || method == "DELETE" =>
        {
            format!("{url}?type=WaterConsumptionObserved")
        }
        "/ngsi-ld/v1/temporal/entities/{id}" if method == "GET" || method == "HEAD" => {
            format!("{url}?lastN=5")
        }
        _ => url,
    };
    let mut req = match method {
        "GET" => client.get(&url),
        "POST" => client.post(&url),
        "DELETE" => client.delete(&url),
        "PATCH" => client.patch(&url),
        "PUT" => client.put(&url),
        "HEAD" => client.head(&url),
        other => panic!("no request builder for method {other}; extend the matrix test"),
    }
    .header("NGSILD-Tenant", tenant);
    req = match path {
        "/ngsi-ld/v1/entities" if method == "POST" => req
            .header("Content-Type", "application/json")
            .body(entity(&format!("urn:ngsi-ld:WaterConsumptionObserved:{tenant}-m{n}"), "carol", n).to_string()),
        "/ngsi-ld/v1/entityOperations/upsert" | "/ngsi-ld/v1/entityOperations/create" => req
            .header("Content-Type", "application/json")
            .body(json!([entity(&format!("urn:ngsi-ld:WaterConsumptionObserved:{tenant}-u{n}"), "carol", n)]).to_string()),
        "/ngsi-ld/v1/entityOperations/update" | "/ngsi-ld/v1/entityOperations/merge" => req
            .header("Content-Type", "application/json")
            .body(json!([{"id": id, "type": "WaterConsumptionObserved",
                          "waterConsumption": {"type": "Property", "value": n}}]).to_string()),
        "/ngsi-ld/v1/entityOperations/delete" => req
            .header("Content-Type", "application/json")
            .body(json!([id]).to_string()),
        "/ngsi-ld/v1/temporal/entities" if method == "POST" => req
            .header("Content-Type", "application/json")
            .body(entity(&format!("urn:ngsi-ld:WaterConsumptionObserved:{tenant}-t{n}"), "carol", n).to_string()),
        "/ngsi-ld/v1/temporal/entities/{id}/attrs" => req
            .header("Content-Type", "application/json")
            .body(json!({"waterConsumption": [{"type": "Property", "value": n, "observedAt": "2026-01-01T00:00:00Z"}]}).to_string()),
        "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instance}" if method == "PATCH" => req
            .header("Content-Type", "application/json")
            .body(json!({"type": "Property", "value": n}).to_string()),
        "/ngsi-ld/v1/jsonldContexts" if method == "POST" => req
            .header("Content-Type", "application/json")
            .body(json!({"@context": {"term": format!("https://example.org/{n}")}}).to_string()),
        "/ngsi-ld/v1/entityOperations/query" | "/ngsi-ld/v1/temporal/entityOperations/query" => req
            .header("Content-Type", "application/json")
            .body(json!({"type": "Query", "entities": [{"type": "WaterConsumptionObserved"}]}).to_string()),
        "/api/ingest/senml" => req
            .header("Content-Type", "application/senml+json")
            .body(json!([{"bn": format!("urn:dev:ow:{tenant}-{n}:"), "n": "temperature", "u": "Cel", "v": 20.5}]).to_string()),
        "/ngsi-ld/v1/subscriptions" if method == "POST" => req.json(&json!({
            "type": "Subscription", "entities": [{"type": "WaterConsumptionObserved"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}})),
        "/ngsi-ld/v1/subscriptions/{id}" if method == "PATCH" => req.json(&json!({"isActive": false})),
        "/ngsi-ld/v1/entities/{id}" if method == "PUT" => req
            .header("Content-Type", "application/json")
            .body(entity(id, if tenant == OWN { "alice" } else { "dave" }, n).to_string()),
        "/ngsi-ld/v1/entities/{id}" if method == "PATCH" => req
            .header("Content-Type", "application/json")
            .body(json!({"waterConsumption": {"type": "Property", "value": n}}).to_string()),
        "/ngsi-ld/v1/entities/{id}/attrs" => req
            .header("Content-Type", "application/json")
            .body(json!({"waterConsumption": {"type": "Property", "value": n}}).to_string()),
        "/ngsi-ld/v1/entities/{id}/attrs/{attr}" if method != "DELETE" => req
            .header("Content-Type", "application/json")
            .body(json!({"type": "Property", "value": n}).to_string()),
        "/api/me/consents" if method == "POST" => req.json(&json!({
            "recipient": "app:parking:adelaide", "purpose": "billing",
            "dataCategories": ["water-consumption"], "durationDays": 30})),
        "/login" if method == "POST" => req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={login}")),
        "/api/overview/stream" => req.timeout(Duration::from_secs(2)),
        _ => req,
    };
    match req.send().await {
        Ok(r) => r.status().as_u16(),
        // The live stream never ends by itself: headers arrived, so it was served.
        Err(e) if e.is_timeout() && path == "/api/overview/stream" => 200,
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn satisfied(want: Want, status: u16) -> bool {
    match want {
        Served => !matches!(status, 401 | 403) && status < 500,
        Unauth => status == 401 || status == 303,
        Forbidden => status == 403,
        Hidden => status == 404,
    }
}

fn routes() -> Vec<(String, String)> {
    let o = Command::new(POLITY)
        .args(["routes", "--json"])
        .output()
        .expect("run polity routes");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("routes JSON");
    rows.iter()
        .map(|r| {
            (
                r["method"].as_str().expect("method").to_owned(),
                r["path"].as_str().expect("path").to_owned(),
            )
        })
        .collect()
}

async fn seed(base: &str, data: &Path) {
    for (tenant, id, owner) in [(OWN, OWNED, "alice"), (OTHER, ELSEWHERE, "dave")] {
        let admin = client_as(data, &format!("city-admin:{tenant}"));
        let r = admin
            .post(format!("{base}/ngsi-ld/v1/entityOperations/upsert"))
            .header("NGSILD-Tenant", tenant)
            .header("Content-Type", "application/json")
            .body(json!([entity(id, owner, 3)]).to_string())
            .send()
            .await
            .expect("seed");
        assert!(r.status().is_success(), "seed {tenant}: {}", r.status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_in_every_tenant_as_the_matrix_says() {
    let table = routes();
    let missing: Vec<_> = table
        .iter()
        .filter(|(m, p)| ROLES.iter().any(|role| expected(m, p, role).is_none()))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the authorization matrix (add one to tests/it/authz.rs and a policy): {missing:?}"
    );
    assert!(table.len() >= 17, "the router lists only {table:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let node = serve(&config(dir.path()), dir.path(), "matrix").await;
    let data = dir.path().join("data");
    seed(&node.base, &data).await;

    let mut clients = BTreeMap::new();
    for role in ROLES {
        clients.insert(
            *role,
            match principal(role) {
                Some(p) => client_as(&data, p),
                None => http_client(),
            },
        );
    }
    let login = token(&data, "city-analyst:adelaide");
    let mut failures = Vec::new();
    let mut n = 0;
    // HEAD is answered by every GET route, so it must be guarded exactly as GET.
    let with_head: Vec<(String, String, String)> = table
        .iter()
        .flat_map(|(m, p)| {
            let mut v = vec![(m.clone(), m.clone(), p.clone())];
            if m == "GET" {
                v.push(("HEAD".to_owned(), m.clone(), p.clone()));
            }
            v
        })
        .collect();
    for (method, as_method, path) in &with_head {
        for role in ROLES {
            let (own, other) = expected(as_method, path, role).expect("checked above");
            for (tenant, want) in [(OWN, own), (OTHER, other)] {
                n += 1;
                let status =
                    call(&login, &clients[role], &node.base, method, path, tenant, n).await;
                if (matches!(method.as_str(), "DELETE" | "PUT" | "PATCH" | "POST")
                    && (path.starts_with("/ngsi-ld/v1/entities")
                        || path.starts_with("/ngsi-ld/v1/temporal/")))
                    || path.starts_with("/ngsi-ld/v1/entityOperations/")
                {
                    // The change may have deleted or rewritten the seeded entities.
                    seed(&node.base, &data).await;
                }
                if !satisfied(want, status) {
                    failures.push(format!(
                        "{role:<16} {method:<5} {path:<40} tenant {tenant:<9} wanted {want:?}, got {status}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The gate answers every attempt with a forged or misused token with 401, before any
/// data is touched, and each attempt is written to the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = serve(&config(dir.path()), dir.path(), "forgery").await;
    let data = dir.path().join("data");
    seed(&node.base, &data).await;
    let good = token(&data, "city-admin:adelaide");
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let header: Value = {
        use base64::Engine as _;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[0])
                .expect("header"),
        )
        .expect("header JSON")
    };
    let claims: Value = {
        use base64::Engine as _;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .expect("claims"),
        )
        .expect("claims JSON")
    };
    let mut escalated = claims.clone();
    escalated["role"] = json!("operator");
    escalated["tenants"] = json!([]);
    let mut other_city = claims.clone();
    other_city["tenants"] = json!(["melbourne"]);
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let mut hs_header = header.clone();
    hs_header["alg"] = json!("HS256");
    let mut expired = claims.clone();
    expired["exp"] = json!(1_000_000_000);
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("another-node");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.example");

    // A token from another node's issuer: right shape, wrong key.
    let stranger = tempfile::tempdir().expect("tempdir");
    let foreign = token(stranger.path(), "city-admin:adelaide");

    let forged = [
        ("alg none", format!("{}.{}.", b64(&none_header), parts[1])),
        (
            "HS256 confusion",
            format!("{}.{}.{}", b64(&hs_header), parts[1], parts[2]),
        ),
        (
            "escalated role, old signature",
            format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]),
        ),
        (
            "other city, old signature",
            format!("{}.{}.{}", parts[0], b64(&other_city), parts[2]),
        ),
        (
            "expired, old signature",
            format!("{}.{}.{}", parts[0], b64(&expired), parts[2]),
        ),
        (
            "wrong audience, old signature",
            format!("{}.{}.{}", parts[0], b64(&wrong_aud), parts[2]),
        ),
        (
            "wrong issuer, old signature",
            format!("{}.{}.{}", parts[0], b64(&wrong_iss), parts[2]),
        ),
        ("another node's key", foreign),
        ("garbage", "x.y.z".to_owned()),
        ("truncated", good[..good.len() - 5].to_owned()),
    ];
    let http = http_client();
    let url = format!("{}/ngsi-ld/v1/entities/{OWNED}", node.base);
    for (what, t) in &forged {
        let r = http
            .get(&url)
            .header("NGSILD-Tenant", OWN)
            .bearer_auth(t)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 401, "{what} was not refused");
        assert!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("invalid_token")),
            "{what}: no RFC 6750 challenge"
        );
    }
    // The real token works, so the refusals above are about the forgeries.
    let r = http
        .get(&url)
        .header("NGSILD-Tenant", OWN)
        .bearer_auth(&good)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);

    // The refusals are counted in /metrics.
    let text = crate::common::metrics(&client_as(&data, "operator"), &node.base).await;
    let refused = crate::common::metric(&text, "polity_http_gate_total", "answer=\"401\"")
        .expect("the gate's 401 counter");
    assert!(refused >= forged.len() as f64, "{text}");

    // Every refusal is in the audit log, which still verifies.
    let deadline = Instant::now() + Duration::from_secs(5);
    let security = client_as(&data, "security-analyst");
    loop {
        let head: Value = security
            .get(format!("{}/api/audit/head", node.base))
            .send()
            .await
            .expect("GET head")
            .json()
            .await
            .expect("head JSON");
        if head["tree_size"].as_u64().unwrap_or(0) >= forged.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "refusals not audited: {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(node);
    let o = Command::new(POLITY)
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .expect("audit verify");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = String::from_utf8_lossy(
        &std::fs::read(data.join("audit").join("entries")).expect("the audit entries file"),
    )
    .into_owned();
    assert!(
        log.matches("denied 401").count() >= forged.len(),
        "not every refusal is in the audit log"
    );
    // No token ends up in the log.
    assert!(!log.contains(parts[2]), "a token signature was logged");
}

/// A citizen reads their own data, cannot learn whether other people's entities exist,
/// and sees in their access log, with proofs, who else read their personal data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizens_see_their_own_data_and_who_read_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = serve(&config(dir.path()), dir.path(), "citizen").await;
    let data = dir.path().join("data");
    seed(&node.base, &data).await;
    let alice = client_as(&data, "citizen:adelaide:alice");
    let bob = client_as(&data, "citizen:adelaide:bob");
    let admin = client_as(&data, "city-admin:adelaide");
    let analyst = client_as(&data, "city-analyst:adelaide");
    let url = format!("{}/ngsi-ld/v1/entities/{OWNED}", node.base);

    // Alice sees her meter, personal attributes included (pseudonymized identifiers).
    let mine: Value = alice
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(mine["id"], OWNED, "{mine}");
    let text = mine.to_string();
    assert!(text.contains("accountNumber"), "{mine}");
    assert!(
        !text.contains("ACC-alice"),
        "account number in clear: {mine}"
    );
    assert!(
        !text.contains("Person:alice"),
        "owner link in clear: {mine}"
    );

    // Bob gets exactly what a missing entity gets.
    let theirs = bob.get(&url).send().await.expect("GET");
    let missing = bob
        .get(format!(
            "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Thing:none",
            node.base
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(theirs.status().as_u16(), 404);
    assert_eq!(missing.status().as_u16(), 404);
    // A query lists only what the caller may see.
    let list: Value = bob
        .get(format!(
            "{}/ngsi-ld/v1/entities?type=WaterConsumptionObserved",
            node.base
        ))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list, json!([]), "bob sees: {list}");

    // The analyst sees the meter without personal attributes; the admin with them,
    // but only when declaring a purpose.
    let public: Value = analyst
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(public.get("waterConsumption").is_some(), "{public}");
    assert!(public.get("accountNumber").is_none(), "{public}");
    // Nor can the analyst probe personal attributes with q: they are invisible to it.
    let q = |expr: &str| {
        format!(
            "{}/ngsi-ld/v1/entities?type=WaterConsumptionObserved&q={expr}",
            node.base
        )
    };
    for (expr, found) in [
        ("waterConsumption", true),
        ("accountNumber", false),
        ("accountNumber~=.", false),
    ] {
        let list: Value = analyst
            .get(q(expr))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        assert_eq!(list.to_string().contains(OWNED), found, "q={expr}: {list}");
    }
    let no_purpose: Value = admin
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(no_purpose.get("accountNumber").is_none(), "{no_purpose}");
    let with_purpose: Value = admin
        .get(&url)
        .header("Polity-Purpose", "billing")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(
        with_purpose.get("accountNumber").is_some(),
        "{with_purpose}"
    );

    // Alice's access log names the admin's read, for billing, with a verifiable proof.
    let log: Value = alice
        .get(format!("{}/api/me/access-log", node.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let entries = log["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["entry"]["actor"] == "city-admin:adelaide"
                && e["entry"]["purpose"] == "billing"),
        "{log}"
    );
    let bundle: polity_audit::ProofBundle = serde_json::from_value(log).expect("a proof bundle");
    polity_audit::verify_bundle(&bundle, None).expect("the proofs verify");
    // Bob's log does not hold Alice's entries.
    let bobs: Value = bob
        .get(format!("{}/api/me/access-log", node.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(bobs["entries"], json!([]), "{bobs}");
}

/// A notification receiver on loopback: every POST body it gets, in order.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                g.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (format!("http://{addr}/notify"), got)
}

async fn wait_len(got: &std::sync::Mutex<Vec<Value>>, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = got.lock().unwrap().clone();
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscriptions are authorized as reads: an application subscribes only in its own
/// city, is notified only of that city's data, never of personal attributes it may not
/// read, and nobody else sees or deletes its subscription. Subscriptions survive a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_deliver_only_what_their_owner_may_read_in_their_city() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (url, got) = receiver().await;
    let app = client_as(&data, "app:parking:adelaide");
    let analyst = client_as(&data, "city-analyst:adelaide");
    let sub = json!({"type": "Subscription", "entities": [{"type": "WaterConsumptionObserved"}],
        "notification": {"endpoint": {"uri": url}}});
    let sub_id = {
        let node = serve(&config(dir.path()), dir.path(), "subs").await;
        let r = app
            .post(format!("{}/ngsi-ld/v1/subscriptions", node.base))
            .header("NGSILD-Tenant", OWN)
            .json(&sub)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 201);
        let id = r.headers()["location"]
            .to_str()
            .expect("location")
            .rsplit('/')
            .next()
            .expect("id")
            .to_owned();
        // Not in another city.
        let r = app
            .post(format!("{}/ngsi-ld/v1/subscriptions", node.base))
            .header("NGSILD-Tenant", OTHER)
            .json(&sub)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 403);
        // Another principal of the same city neither sees nor deletes it.
        let theirs = format!("{}/ngsi-ld/v1/subscriptions/{id}", node.base);
        assert_eq!(
            analyst
                .get(&theirs)
                .send()
                .await
                .expect("GET")
                .status()
                .as_u16(),
            404
        );
        assert_eq!(
            analyst
                .delete(&theirs)
                .send()
                .await
                .expect("DELETE")
                .status()
                .as_u16(),
            404
        );
        let list: Value = analyst
            .get(format!("{}/ngsi-ld/v1/subscriptions", node.base))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        assert_eq!(list, json!([]));

        // Melbourne's data first, then Adelaide's: only Adelaide's arrives.
        seed(&node.base, &data).await;
        let notes = wait_len(&got, 1, 15).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let notes_after = got.lock().unwrap().clone();
        assert_eq!(notes_after.len(), notes.len(), "{notes_after:#?}");
        let text = Value::Array(notes.clone()).to_string();
        assert!(text.contains(OWNED), "{text}");
        assert!(!text.contains(ELSEWHERE), "another city's data: {text}");
        assert!(text.contains("waterConsumption"), "{text}");
        assert!(
            !text.contains("accountNumber") && !text.contains("ACC-"),
            "personal data notified to an app without consent: {text}"
        );
        assert_eq!(notes[0]["subscriptionId"], id.as_str());
        node.proc.assert_no_panic();
        id
    };

    // After a restart the subscription is still there and still notifies.
    let node = serve(&config(dir.path()), dir.path(), "subs-again").await;
    let before = got.lock().unwrap().len();
    let s: Value = app
        .get(format!("{}/ngsi-ld/v1/subscriptions/{sub_id}", node.base))
        .header("NGSILD-Tenant", OWN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(
        s["notification"]["timesSent"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );
    let admin = client_as(&data, "city-admin:adelaide");
    let r = admin
        .post(format!("{}/ngsi-ld/v1/entityOperations/upsert", node.base))
        .header("NGSILD-Tenant", OWN)
        .header("Content-Type", "application/json")
        .body(json!([entity(OWNED, "alice", 9)]).to_string())
        .send()
        .await
        .expect("upsert");
    assert!(r.status().is_success());
    let notes = wait_len(&got, before + 1, 15).await;
    assert!(notes.len() > before, "no notification after the restart");
    node.proc.assert_no_panic();
}
