//! Batch upsert (NGSI-LD 5.6.8): 201 with the created ids, 204 when every entity
//! existed, 207 with a BatchOperationResult when some were rejected.

use serde_json::{Value, json};

use crate::node::{HTTP_SOURCE, Node, assert_problem_json, problem, weather};

const A: &str = "urn:ngsi-ld:WeatherObserved:a";
const B: &str = "urn:ngsi-ld:WeatherObserved:b";
const C: &str = "urn:ngsi-ld:WeatherObserved:c";

#[tokio::test]
async fn new_entities_are_201_with_their_ids() {
    let node = Node::start().await;
    let r = node.upsert(None, &json!([weather(A), weather(B)])).await;
    assert_eq!(r.status(), 201);
    assert_eq!(crate::node::content_type(&r), "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!([A, B]));
    assert_eq!(node.entity(None, B, "").await["temperature"]["value"], 21.5);
}

#[tokio::test]
async fn only_existing_entities_is_204() {
    let node = Node::start().await;
    assert_eq!(
        node.upsert(None, &json!([weather(A), weather(B)]))
            .await
            .status(),
        201
    );
    let mut newer = weather(A);
    newer["temperature"]["value"] = json!(25.0);
    newer["temperature"]["observedAt"] = json!("2026-01-02T00:00:00Z");
    let r = node.upsert(None, &json!([newer, weather(B)])).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty(), "204 has no body");
    assert_eq!(node.entity(None, A, "").await["temperature"]["value"], 25.0);
}

#[tokio::test]
async fn a_mix_of_new_and_existing_is_201_with_only_the_new_ids() {
    let node = Node::start().await;
    node.create(None, &weather(A)).await;
    let r = node.upsert(None, &json!([weather(A), weather(C)])).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!([C]));
}

#[tokio::test]
async fn partial_failure_is_207_and_the_good_entities_are_stored() {
    let node = Node::start().await;
    node.create(None, &weather(A)).await;
    let no_type = json!({"id": "urn:ngsi-ld:WeatherObserved:bad1",
                         "temperature": {"type": "Property", "value": 1}});
    let bad_id = json!({"id": "not a uri", "type": "WeatherObserved"});
    let r = node
        .upsert(
            None,
            &json!([weather(A), no_type.clone(), weather(C), bad_id.clone()]),
        )
        .await;
    assert_eq!(r.status(), 207);
    assert_eq!(crate::node::content_type(&r), "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], json!([A, C]), "{body}");
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!(errors[0]["entityId"], "urn:ngsi-ld:WeatherObserved:bad1");
    assert_problem_json(&errors[0]["error"], 400, "BadRequestData");
    assert!(
        errors[0]["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("type"),
        "{body}"
    );
    assert_eq!(errors[1]["entityId"], "not a uri");
    assert_problem_json(&errors[1]["error"], 400, "BadRequestData");
    // The good ones are stored, the bad ones are not.
    assert_eq!(node.entity(None, C, "").await["id"], C);
    let r = node
        .get(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:bad1",
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Both rejects are kept as dead letters, each with its reason and the entity.
    let dl = node.tenant_dead_letters("default", HTTP_SOURCE);
    assert_eq!(dl.len(), 2, "{dl:?}");
    assert!(dl[0].reason.contains("type"), "{}", dl[0].reason);
    let kept: Value = serde_json::from_slice(&dl[0].payload).unwrap();
    assert_eq!(kept, no_type);
    let kept: Value = serde_json::from_slice(&dl[1].payload).unwrap();
    assert_eq!(kept, bad_id);
}

#[tokio::test]
async fn a_body_that_is_not_an_array_is_400() {
    let node = Node::start().await;
    let r = node.upsert(None, &weather(A)).await;
    problem(r, 400, "BadRequestData").await;
    assert_eq!(node.dead_letters(HTTP_SOURCE).len(), 1);
}

#[tokio::test]
async fn more_entities_than_the_batch_limit_is_rejected() {
    let node = Node::start_with(|s| s.limits.max_batch = 2).await;
    let r = node
        .upsert(None, &json!([weather(A), weather(B), weather(C)]))
        .await;
    let p = problem(r, 400, "BadRequestData").await;
    assert!(p["detail"].as_str().unwrap().contains('2'), "{p}");
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{A}"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing of a rejected batch is stored");
}

/// An empty batch is an error; an id sent twice is reported once; and an upsert
/// (replace, the default) replaces an existing entity, type included.
#[tokio::test]
async fn empty_batches_duplicates_and_type_changes() {
    let node = Node::start().await;
    problem(node.upsert(None, &json!([])).await, 400, "BadRequestData").await;
    let twice = json!([
        {"id": "urn:ngsi-ld:Spot:1", "type": "Spot", "a": 1},
        {"id": "urn:ngsi-ld:Spot:1", "type": "Spot", "b": 2}
    ]);
    let r = node.upsert(None, &twice).await;
    assert_eq!(r.status(), 201);
    let created: Vec<String> = r.json().await.unwrap();
    assert_eq!(created, ["urn:ngsi-ld:Spot:1"]);
    let e = node
        .entity(None, "urn:ngsi-ld:Spot:1", "?options=keyValues")
        .await;
    assert_eq!(
        (e["a"].as_i64(), e["b"].as_i64()),
        (Some(1), Some(2)),
        "{e}"
    );
    let retyped = json!([{"id": "urn:ngsi-ld:Spot:1", "type": "Meter", "a": 3}]);
    let r = node.upsert(None, &retyped).await;
    assert_eq!(r.status(), 204);
    let e = node
        .entity(None, "urn:ngsi-ld:Spot:1", "?options=keyValues")
        .await;
    assert_eq!(
        e,
        json!({"id": "urn:ngsi-ld:Spot:1", "type": "Meter", "a": 3}),
        "replaced: new type, old attribute b gone"
    );
    let r = node
        .post_json(
            "/ngsi-ld/v1/entityOperations/upsert?options=update",
            None,
            &json!([{"id": "urn:ngsi-ld:Spot:1", "type": "Meter", "c": 4}]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = node
        .entity(None, "urn:ngsi-ld:Spot:1", "?options=keyValues")
        .await;
    assert_eq!(
        (e["a"].as_i64(), e["c"].as_i64()),
        (Some(3), Some(4)),
        "update merges: {e}"
    );
}
