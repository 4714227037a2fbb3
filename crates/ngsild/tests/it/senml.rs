//! The HTTP SenML source: `POST /api/ingest/senml` in JSON and CBOR.

use polity_model::Pack;
use serde_json::{Value, json};

use crate::node::{Node, SENML_SOURCE, TENANT, problem};

const PATH: &str = "/api/ingest/senml";
const ID: &str = "urn:ngsi-ld:WeatherObserved:adelaide-3";

/// A pack for `ID`: temperature and humidity at a fixed time (RFC 8428 base fields).
const PACK: &str = r#"[
    {"bn":"urn:ngsi-ld:WeatherObserved:adelaide-3:","bt":1.7672256e9,"n":"temperature","u":"Cel","v":23.5},
    {"n":"relativeHumidity","u":"%RH","v":41}
]"#;

async fn send(node: &Node, tenant: Option<&str>, ct: &str, body: Vec<u8>) -> reqwest::Response {
    let mut rb = node
        .http
        .post(node.url(PATH))
        .header("Content-Type", ct)
        .body(body);
    if let Some(t) = tenant {
        rb = rb.header(TENANT, t);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn senml_json_is_204_and_the_entity_is_readable() {
    let node = Node::start().await;
    let r = send(
        &node,
        Some("adelaide"),
        "application/senml+json",
        PACK.into(),
    )
    .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    let e = node.entity(Some("adelaide"), ID, "").await;
    assert_eq!(e["type"], "WeatherObserved", "the type comes from the URN");
    assert_eq!(
        e["temperature"],
        json!({"type": "Property", "value": 23.5, "unitCode": "CEL",
               "observedAt": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(e["relativeHumidity"]["value"], 41);
}

#[tokio::test]
async fn senml_cbor_is_204_and_the_entity_is_readable() {
    let node = Node::start().await;
    let cbor = Pack::from_json(PACK.as_bytes()).unwrap().to_cbor();
    let r = send(&node, Some("adelaide"), "application/senml+cbor", cbor).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    let e = node
        .entity(Some("adelaide"), ID, "?options=keyValues")
        .await;
    assert_eq!(e["temperature"], 23.5);
    assert_eq!(e["relativeHumidity"], 41);
    // The data landed in the temporal store too.
    let r = node
        .get(
            &format!("/ngsi-ld/v1/temporal/entities/{ID}"),
            Some("adelaide"),
        )
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["temperature"][0]["observedAt"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn a_bad_pack_is_400_and_dead_lettered() {
    let node = Node::start().await;
    let cases: [(&str, &[u8], &str); 4] = [
        ("application/senml+json", br#"{"n":"x","v":1}"#, "array"),
        (
            "application/senml+json",
            br#"[{"bn":"urn:ngsi-ld:WeatherObserved:a:","n":"speed","u":"furlongs","v":1}]"#,
            "furlongs",
        ),
        (
            "application/senml+json",
            br#"[{"n":"no-entity-here","v":1}]"#,
            "entity",
        ),
        ("application/senml+cbor", b"\xff\x00\x13", "CBOR"),
    ];
    for (ct, body, _) in cases {
        let r = send(&node, Some("adelaide"), ct, body.to_vec()).await;
        problem(r, 400, "BadRequestData").await;
    }
    let dl = node.tenant_dead_letters("adelaide", SENML_SOURCE);
    assert_eq!(dl.len(), cases.len(), "{dl:?}");
    for (letter, (ct, body, word)) in dl.iter().zip(cases) {
        assert_eq!(letter.payload, body, "the payload is kept as received");
        assert_eq!(letter.content_type.as_deref(), Some(ct));
        assert!(
            letter.reason.contains(word),
            "reason `{}` names `{word}`",
            letter.reason
        );
    }
}

#[tokio::test]
async fn a_pack_without_a_tenant_is_400() {
    let node = Node::start().await;
    let p = problem(
        send(&node, None, "application/senml+json", PACK.into()).await,
        400,
        "BadRequestData",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("NGSILD-Tenant"),
        "{p}"
    );
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{ID}"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing was stored");
}

#[tokio::test]
async fn a_pack_in_another_media_type_is_415() {
    let node = Node::start().await;
    problem(
        send(&node, Some("adelaide"), "text/csv", PACK.into()).await,
        415,
        "about:blank",
    )
    .await;
}

#[tokio::test]
async fn rfc_8428_examples_are_accepted_with_urn_names() {
    // RFC 8428 §5.1.3 with the device renamed to an NGSI-LD URN and the units to ones
    // Polity converts: relative times against a base time.
    let node = Node::start().await;
    let pack = r#"[
        {"bn":"urn:ngsi-ld:Device:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
        {"n":"current","t":-5,"v":1.2},
        {"n":"current","t":-4,"v":1.3},
        {"n":"current","t":0,"v":1.7}]"#;
    let r = send(&node, Some("rfc"), "application/senml+json", pack.into()).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    let id = "urn:ngsi-ld:Device:10e2073a0108006";
    let e = node.entity(Some("rfc"), id, "?options=keyValues").await;
    assert_eq!(e["current"], 1.7, "the latest reading is the state");
    assert_eq!(e["voltage"], 120.1);
    let r = node
        .get(
            &format!("/ngsi-ld/v1/temporal/entities/{id}?attrs=current"),
            Some("rfc"),
        )
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    let times: Vec<&str> = t["current"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["observedAt"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2010-06-08T18:01:11.001Z",
            "2010-06-08T18:01:12.001Z",
            "2010-06-08T18:01:16.001Z"
        ]
    );
}
