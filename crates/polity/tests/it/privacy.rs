//! Privacy end to end against a real `polity serve`: identifiers never stored in clear,
//! consent with receipts deciding what an application sees, withdrawal effective at
//! once, the data-subject export, and erasure by crypto-shredding.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::{client_as, serve};

const METER: &str = "urn:ngsi-ld:WaterConsumptionObserved:adelaide-home-9";

fn config(dir: &Path) -> String {
    format!(
        r#"[node]
http = "127.0.0.1:0"
data_dir = "{}"
default_tenant = "adelaide"

[[cities]]
name = "Adelaide"
tenant = "adelaide"
"#,
        dir.join("data").display()
    )
}

async fn get(client: &reqwest::Client, url: &str, purpose: Option<&str>) -> (u16, Value) {
    let mut r = client.get(url).header("NGSILD-Tenant", "adelaide");
    if let Some(p) = purpose {
        r = r.header("Polity-Purpose", p);
    }
    let r = r.send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every string anywhere in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            strings(x, out)
        }),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_export_and_erasure_work_for_a_citizen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = serve(&config(dir.path()), dir.path(), "privacy").await;
    let data = dir.path().join("data");
    let base = node.base.clone();
    let admin = client_as(&data, "city-admin:adelaide");
    let alice = client_as(&data, "citizen:adelaide:alice");
    let app = client_as(&data, "app:billing:adelaide");
    let national = client_as(&data, "operator");

    // The city's platform reports Alice's meter, with her account number and her as owner.
    let r = admin
        .post(format!("{base}/ngsi-ld/v1/entityOperations/upsert"))
        .header("NGSILD-Tenant", "adelaide")
        .header("Content-Type", "application/json")
        .body(
            json!([{
                "id": METER,
                "type": "WaterConsumptionObserved",
                "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:alice"},
                "accountNumber": {"type": "Property", "value": "ACC 7788 9900"},
                "macAddress": {"type": "Property", "value": "00:1A:2B:3C:4D:5E"},
                "waterConsumption": {"type": "Property", "value": 0.42, "unitCode": "MTQ"}
            }])
            .to_string(),
        )
        .send()
        .await
        .expect("upsert");
    assert!(r.status().is_success(), "{}", r.status());
    let url = format!("{base}/ngsi-ld/v1/entities/{METER}");

    // Nothing a national principal can read holds an identifier in clear, and no
    // personal attribute reaches them at all.
    let (status, seen) = get(&national, &url, None).await;
    assert_eq!(status, 200, "{seen}");
    let temporal_url = format!("{base}/ngsi-ld/v1/temporal/entities/{METER}?lastN=10");
    let (_, history) = get(&national, &temporal_url, None).await;
    let mut all = Vec::new();
    strings(&seen, &mut all);
    strings(&history, &mut all);
    for clear in ["alice", "7788", "00:1A", "001a2b"] {
        assert!(
            !all.iter().any(|s| s.to_lowercase().contains(clear)),
            "{clear} reached a national principal: {seen} {history}"
        );
    }
    assert!(seen.get("accountNumber").is_none(), "{seen}");

    // Alice sees her account number (as its pseudonym: it never existed here in clear).
    let (_, mine) = get(&alice, &url, None).await;
    let account = mine["accountNumber"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("alice cannot read her account number: {mine}"))
        .to_owned();
    assert!(account.starts_with("pn1:billing:"), "{mine}");

    // The billing application sees it only with Alice's consent, for billing.
    let (_, before) = get(&app, &url, Some("billing")).await;
    assert!(before.get("accountNumber").is_none(), "{before}");
    let r = alice
        .post(format!("{base}/api/me/consents"))
        .json(&json!({
            "recipient": "app:billing:adelaide",
            "purpose": "billing",
            "dataCategories": ["water-consumption"],
            "durationDays": 90
        }))
        .send()
        .await
        .expect("grant");
    assert_eq!(r.status().as_u16(), 201);
    let granted: Value = r.json().await.expect("JSON");
    let receipt = granted["receipt"]
        .as_str()
        .expect("a signed receipt")
        .to_owned();
    let id = granted["consent"]["consentId"]
        .as_str()
        .or_else(|| granted["consent"]["consent_id"].as_str())
        .unwrap_or_else(|| panic!("no consent id in {granted}"))
        .to_owned();
    let (_, with_consent) = get(&app, &url, Some("billing")).await;
    assert_eq!(
        with_consent["accountNumber"]["value"],
        account.as_str(),
        "{with_consent}"
    );
    // Another purpose is not covered.
    let (_, research) = get(&app, &url, Some("research")).await;
    assert!(research.get("accountNumber").is_none(), "{research}");
    // More than 12 months is refused.
    let r = alice
        .post(format!("{base}/api/me/consents"))
        .json(
            &json!({"recipient": "app:billing:adelaide", "purpose": "billing",
            "dataCategories": ["water-consumption"], "durationDays": 400}),
        )
        .send()
        .await
        .expect("grant");
    assert_eq!(r.status().as_u16(), 400);

    // Withdrawal takes effect before the next request.
    let r = alice
        .delete(format!("{base}/api/me/consents/{id}"))
        .send()
        .await
        .expect("withdraw");
    assert_eq!(r.status().as_u16(), 200);
    let (_, after) = get(&app, &url, Some("billing")).await;
    assert!(after.get("accountNumber").is_none(), "{after}");

    // The export holds her entity with its personal values, her consents and her
    // access log; the receipt verifies with the key the export names.
    let export: Value = alice
        .get(format!("{base}/api/me/export"))
        .send()
        .await
        .expect("export")
        .json()
        .await
        .expect("JSON");
    assert_eq!(export["entities"][0]["entity"]["id"], METER, "{export}");
    assert_eq!(
        export["entities"][0]["entity"]["accountNumber"]["value"],
        account.as_str()
    );
    assert_eq!(
        export["consents"].as_array().map(Vec::len),
        Some(1),
        "{export}"
    );
    assert!(
        export["accessLog"]["entries"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["entry"]["actor"] == "app:billing:adelaide")),
        "the app's read is not in the access log: {}",
        export["accessLog"]
    );
    let jwk: polity_consent::Jwk =
        serde_json::from_value(export["receiptKey"].clone()).expect("receipt key");
    polity_consent::verify_receipt(&receipt, &jwk.public_key().expect("key")).expect("receipt");

    // Erasure: her key is destroyed, so nobody can read her personal values any more.
    let r = alice
        .post(format!("{base}/api/me/erase"))
        .send()
        .await
        .expect("erase");
    assert_eq!(r.status().as_u16(), 200);
    let (_, gone) = get(&admin, &url, Some("billing")).await;
    assert!(gone.get("accountNumber").is_none(), "{gone}");
    assert!(
        gone.get("waterConsumption").is_some(),
        "public values stay: {gone}"
    );
    let (_, gone_history) = get(&admin, &temporal_url, Some("billing")).await;
    assert!(
        gone_history.get("accountNumber").is_none(),
        "{gone_history}"
    );
    let list: Value = alice
        .get(format!("{base}/api/me/consents"))
        .send()
        .await
        .expect("consents")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list, json!([]));
}

/// The national view gets only aggregates: small cities suppressed, noise on the rest,
/// and the privacy budget refuses queries past ε = 4 per citizen per year, also after
/// a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_aggregates_are_suppressed_noisy_and_budgeted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let node = serve(&cfg, dir.path(), "national").await;
    let data = dir.path().join("data");
    let base = node.base.clone();
    // Adelaide: 40 households; Melbourne: 1 (below k).
    for (tenant, n) in [("adelaide", 40), ("melbourne", 1)] {
        let admin = client_as(&data, &format!("city-admin:{tenant}"));
        let body: Vec<Value> = (0..n)
            .map(|i| {
                json!({
                    "id": format!("urn:ngsi-ld:WaterConsumptionObserved:{tenant}-{i}"),
                    "type": "WaterConsumptionObserved",
                    "owner": {"type": "Relationship", "object": format!("urn:ngsi-ld:Person:p{i}")},
                    "waterConsumption": {"type": "Property", "value": 0.5, "unitCode": "MTQ"}
                })
            })
            .collect();
        let r = admin
            .post(format!("{base}/ngsi-ld/v1/entityOperations/upsert"))
            .header("NGSILD-Tenant", tenant)
            .json(&body)
            .send()
            .await
            .expect("upsert");
        assert!(r.status().is_success());
    }
    let national = client_as(&data, "operator");
    // Counts alone at ε = 1 (noise scale 1): Melbourne's noisy count reaches k = 10 with
    // probability below 1e-4, so this test does not flake.
    let counts = format!("{base}/api/aggregates/WaterConsumptionObserved?epsilon=1");
    let r = national.get(&counts).send().await.expect("aggregate");
    assert_eq!(r.status().as_u16(), 200);
    let a: Value = r.json().await.expect("JSON");
    let city = |t: &str| {
        a["cities"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["tenant"] == t))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(city("adelaide")["suppressed"], false, "{a}");
    let n = city("adelaide")["count"].as_u64().expect("a count");
    assert!((20..=60).contains(&n), "noisy count far from 40: {a}");
    assert_eq!(city("melbourne")["suppressed"], true, "{a}");
    // With a mean, the ε of the query is split between the count and the sum.
    let url = format!(
        "{base}/api/aggregates/WaterConsumptionObserved?attr=waterConsumption&lo=0&hi=2&epsilon=1"
    );
    let r = national.get(&url).send().await.expect("aggregate");
    assert_eq!(r.status().as_u16(), 200);
    let a: Value = r.json().await.expect("JSON");
    assert!(a["mean"]["mean"].is_number(), "{a}");
    // A city analyst may not query national aggregates.
    let analyst = client_as(&data, "city-analyst:adelaide");
    assert_eq!(
        analyst
            .get(&url)
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16(),
        403
    );
    // ε = 1 per query: two more pass (4 in all), the fifth is refused...
    for _ in 0..2 {
        assert_eq!(
            national
                .get(&url)
                .send()
                .await
                .expect("GET")
                .status()
                .as_u16(),
            200
        );
    }
    let refused = national.get(&url).send().await.expect("GET");
    assert_eq!(refused.status().as_u16(), 429);
    // ... and stays refused after a restart: the ledger is durable.
    drop(node);
    let node = serve(&cfg, dir.path(), "national-2").await;
    let again = national
        .get(format!(
            "{}/api/aggregates/WaterConsumptionObserved?epsilon=0.1",
            node.base
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(again.status().as_u16(), 429);
}
