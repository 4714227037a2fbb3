//! Hostile and malformed input over HTTP: media types, body limits, deep nesting, and
//! the dead-letter store that keeps what was rejected.

use serde_json::{Value, json};

use crate::node::{HTTP_SOURCE, Node, SENML_SOURCE, TENANT, problem, weather};

const ENTITIES: &str = "/ngsi-ld/v1/entities";
const UPSERT: &str = "/ngsi-ld/v1/entityOperations/upsert";

async fn post(node: &Node, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    node.http
        .post(node.url(path))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The node still answers after hostile input.
async fn still_serving(node: &Node) {
    let r = node.get("/ngsi-ld/v1/types", None).send().await.unwrap();
    assert_eq!(r.status(), 200, "the node still serves");
}

#[tokio::test]
async fn an_unsupported_content_type_is_415() {
    let node = Node::start().await;
    let body = weather("urn:ngsi-ld:WeatherObserved:w1")
        .to_string()
        .into_bytes();
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        for path in [ENTITIES, UPSERT] {
            let body = if path == UPSERT {
                format!("[{}]", String::from_utf8_lossy(&body)).into_bytes()
            } else {
                body.clone()
            };
            let p = problem(post(&node, path, ct, body).await, 415, "about:blank").await;
            assert!(p["detail"].as_str().unwrap().contains(ct), "{p}");
        }
    }
    let r = node
        .get(&format!("{ENTITIES}/urn:ngsi-ld:WeatherObserved:w1"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing was stored");
}

/// The media type is checked only after the body parsed as JSON, so a non-JSON body in
/// an unsupported media type is answered 400 instead of 415.
#[tokio::test]

async fn an_unsupported_content_type_is_415_whatever_the_body() {
    let node = Node::start().await;
    let r = post(&node, ENTITIES, "text/plain", b"hello".to_vec()).await;
    problem(r, 415, "about:blank").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_problem_details() {
    let node = Node::start_with(|s| s.limits.max_body = 512).await;
    let mut big = weather("urn:ngsi-ld:WeatherObserved:w1");
    big["note"] = json!({"type": "Property", "value": "x".repeat(2048)});
    let bytes = big.to_string().into_bytes();
    problem(
        post(&node, ENTITIES, "application/json", bytes.clone()).await,
        413,
        "about:blank",
    )
    .await;
    let batch = format!("[{big}]").into_bytes();
    problem(
        post(&node, UPSERT, "application/json", batch).await,
        413,
        "about:blank",
    )
    .await;
    let pack = format!(
        r#"[{{"bn":"urn:ngsi-ld:WeatherObserved:w1:","n":"note","vs":"{}"}}]"#,
        "x".repeat(2048)
    );
    let r = node
        .http
        .post(node.url("/api/ingest/senml"))
        .header("Content-Type", "application/senml+json")
        .header(TENANT, "alpha")
        .body(pack)
        .send()
        .await
        .unwrap();
    problem(r, 413, "about:blank").await;
    // A small body still goes through.
    node.create(None, &weather("urn:ngsi-ld:WeatherObserved:w1"))
        .await;
}

/// 10 000 nested arrays: far beyond any parser's recursion budget.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut v = vec![b'['; depth];
    v.extend(std::iter::repeat_n(b']', depth));
    v
}

#[tokio::test]
async fn deeply_nested_json_is_400_not_a_crash() {
    let node = Node::start().await;
    let deep = nested_arrays(10_000);
    problem(
        post(&node, ENTITIES, "application/json", deep.clone()).await,
        400,
        "InvalidRequest",
    )
    .await;
    problem(
        post(&node, UPSERT, "application/json", deep.clone()).await,
        400,
        "InvalidRequest",
    )
    .await;
    // The same depth inside an otherwise valid entity.
    let mut entity = b"{\"id\":\"urn:ngsi-ld:T:1\",\"type\":\"T\",\"deep\":".to_vec();
    entity.extend(&deep);
    entity.push(b'}');
    problem(
        post(&node, ENTITIES, "application/json", entity).await,
        400,
        "InvalidRequest",
    )
    .await;
    still_serving(&node).await;
}

#[tokio::test]
async fn nesting_within_the_json_parser_but_past_ngsi_ld_depth_is_400() {
    let node = Node::start().await;
    // 100 levels parse as JSON but exceed the entity codec's depth limit.
    let mut entity = b"{\"id\":\"urn:ngsi-ld:T:1\",\"type\":\"T\",\"deep\":".to_vec();
    entity.extend(nested_arrays(100));
    entity.push(b'}');
    let p = problem(
        post(&node, ENTITIES, "application/json", entity).await,
        400,
        "BadRequestData",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("deeper"), "{p}");
    still_serving(&node).await;
}

#[tokio::test]
async fn deeply_nested_senml_is_400_not_a_crash() {
    let node = Node::start().await;
    let r = node
        .http
        .post(node.url("/api/ingest/senml"))
        .header("Content-Type", "application/senml+json")
        .header(TENANT, "alpha")
        .body(nested_arrays(10_000))
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
    // CBOR: 10 000 nested one-element arrays (0x81) around an empty one (0x80).
    let mut cbor = vec![0x81u8; 10_000];
    cbor.push(0x80);
    let r = node
        .http
        .post(node.url("/api/ingest/senml"))
        .header("Content-Type", "application/senml+cbor")
        .header(TENANT, "alpha")
        .body(cbor)
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
    still_serving(&node).await;
    assert_eq!(node.dead_letters(SENML_SOURCE).len(), 2);
}

#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let node = Node::start().await;
    for body in [&b"{\"id\":"[..], b"", b"\xff\xfe", b"[1,2,]"] {
        problem(
            post(&node, ENTITIES, "application/json", body.to_vec()).await,
            400,
            "InvalidRequest",
        )
        .await;
    }
    // Well-formed JSON that is not an object is no entity: InvalidRequest too, as the
    // ETSI suite reads the spec (001_02_02).
    problem(
        post(&node, ENTITIES, "application/json", b"[1,2]".to_vec()).await,
        400,
        "InvalidRequest",
    )
    .await;
}

#[tokio::test]
async fn rejected_entities_are_dead_lettered_with_their_reason() {
    let node = Node::start().await;
    let cases = [
        (
            json!({"id": "urn:ngsi-ld:WeatherObserved:x", "temperature": 3}),
            "type",
        ),
        (
            json!({"id": "urn:ngsi-ld:WeatherObserved:x", "type": "WeatherObserved",
                   "temperature": {"type": "Property", "value": 3, "unitCode": "degrees"}}),
            "unitCode",
        ),
        (
            json!({"id": "urn:ngsi-ld:WeatherObserved:x", "type": "WeatherObserved",
                   "temperature": null}),
            "null",
        ),
        (
            json!({"id": "urn:ngsi-ld:WeatherObserved:x", "type": "WeatherObserved",
                   "location": {"type": "GeoProperty",
                                "value": {"type": "Point", "coordinates": [500, 0]}}}),
            "location",
        ),
    ];
    for (body, _) in &cases {
        let r = node
            .post_json(ENTITIES, Some("alpha"), body)
            .send()
            .await
            .unwrap();
        problem(r, 400, "BadRequestData").await;
    }
    let dl = node.tenant_dead_letters("alpha", HTTP_SOURCE);
    assert_eq!(dl.len(), cases.len(), "{dl:?}");
    for (letter, (body, word)) in dl.iter().zip(&cases) {
        assert!(
            letter.reason.contains(word),
            "reason `{}` names `{word}`",
            letter.reason
        );
        let kept: Value = serde_json::from_slice(&letter.payload).expect("the payload is kept");
        assert_eq!(&kept, body);
        assert_eq!(letter.source, HTTP_SOURCE);
        assert_eq!(letter.tenant.as_ref().map(|t| t.as_str()), Some("alpha"));
    }
}

#[tokio::test]
async fn unparsable_bodies_are_dead_lettered_as_received() {
    let node = Node::start().await;
    let raw = b"{\"id\": \"urn:ngsi-ld:T:1\", \"type\": ".to_vec();
    let r = post(&node, ENTITIES, "application/json", raw.clone()).await;
    problem(r, 400, "InvalidRequest").await;
    let r = post(&node, UPSERT, "application/json", raw.clone()).await;
    problem(r, 400, "InvalidRequest").await;
    let dl = node.dead_letters(HTTP_SOURCE);
    assert_eq!(dl.len(), 2);
    for letter in dl {
        assert_eq!(letter.payload, raw, "the bytes as received");
        assert!(letter.reason.contains("JSON"), "{}", letter.reason);
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_not_served() {
    let node = Node::start().await;
    let r = node.get("/ngsi-ld/v1/nothing", None).send().await.unwrap();
    problem(r, 404, "ResourceNotFound").await;
    // An empty segment is an id left out.
    let r = node
        .http
        .post(node.url("/ngsi-ld/v1/entities//attrs/"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
    let r = node
        .http
        .delete(node.url("/ngsi-ld/v1/types"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}
