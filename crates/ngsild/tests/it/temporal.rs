//! Temporal retrieval (NGSI-LD 5.7.3): timerel before/after/between, lastN,
//! temporalValues, attrs, and the errors of bad temporal parameters.

use serde_json::{Value, json};

use crate::node::{Node, problem};

const ID: &str = "urn:ngsi-ld:WeatherObserved:t1";
const T1: &str = "2026-01-01T00:00:00Z";
const T2: &str = "2026-01-01T01:00:00Z";
const T3: &str = "2026-01-01T02:00:00Z";

fn reading(t: &str, temperature: f64, humidity: Option<f64>) -> Value {
    let mut e = json!({
        "id": ID, "type": "WeatherObserved",
        "temperature": {"type": "Property", "value": temperature, "unitCode": "CEL",
                        "observedAt": t}
    });
    if let Some(h) = humidity {
        e["relativeHumidity"] = json!({"type": "Property", "value": h, "observedAt": t});
    }
    e
}

/// Temperature 10, 11, 12 at T1, T2, T3; humidity 0.5, 0.6 at T1, T2.
async fn history() -> Node {
    let node = Node::start().await;
    node.create(None, &reading(T1, 10.0, Some(0.5))).await;
    for (t, v, h) in [(T2, 11.0, Some(0.6)), (T3, 12.0, None)] {
        let r = node.upsert(None, &json!([reading(t, v, h)])).await;
        assert_eq!(r.status(), 204);
    }
    node
}

async fn temporal(node: &Node, q: &str) -> reqwest::Response {
    node.get(&format!("/ngsi-ld/v1/temporal/entities/{ID}{q}"), None)
        .send()
        .await
        .unwrap()
}

async fn ok(node: &Node, q: &str) -> Value {
    let r = temporal(node, q).await;
    assert_eq!(r.status(), 200, "temporal {q}");
    r.json().await.unwrap()
}

/// (value, observedAt) of each instance of a normalized temporal attribute.
fn instances(body: &Value, attr: &str) -> Vec<(f64, String)> {
    body[attr]
        .as_array()
        .unwrap_or_else(|| panic!("`{attr}` is an array of instances in {body}"))
        .iter()
        .map(|i| {
            assert_eq!(i["type"], "Property", "{i}");
            (
                i["value"].as_f64().unwrap(),
                i["observedAt"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn at(v: &[(f64, &str)]) -> Vec<(f64, String)> {
    v.iter().map(|(x, t)| (*x, (*t).to_owned())).collect()
}

#[tokio::test]
async fn whole_history_oldest_first() {
    let node = history().await;
    let body = ok(&node, "").await;
    assert_eq!(body["id"], ID);
    assert_eq!(body["type"], "WeatherObserved");
    assert_eq!(
        instances(&body, "temperature"),
        at(&[(10.0, T1), (11.0, T2), (12.0, T3)])
    );
    assert_eq!(body["temperature"][0]["unitCode"], "CEL");
    assert_eq!(
        instances(&body, "relativeHumidity"),
        at(&[(0.5, T1), (0.6, T2)])
    );
}

#[tokio::test]
async fn timerel_before_is_strictly_before() {
    let node = history().await;
    let body = ok(&node, &format!("?timerel=before&timeAt={T2}")).await;
    assert_eq!(instances(&body, "temperature"), at(&[(10.0, T1)]));
}

#[tokio::test]
async fn timerel_after_is_strictly_after() {
    let node = history().await;
    let body = ok(&node, &format!("?timerel=after&timeAt={T2}")).await;
    assert_eq!(instances(&body, "temperature"), at(&[(12.0, T3)]));
    assert!(
        body.get("relativeHumidity").is_none(),
        "no humidity after T2: {body}"
    );
}

#[tokio::test]
async fn timerel_between_includes_the_start_and_excludes_the_end() {
    let node = history().await;
    let body = ok(
        &node,
        &format!("?timerel=between&timeAt={T1}&endTimeAt={T3}"),
    )
    .await;
    assert_eq!(
        instances(&body, "temperature"),
        at(&[(10.0, T1), (11.0, T2)])
    );
}

#[tokio::test]
async fn last_n_keeps_the_latest_per_attribute_oldest_first() {
    let node = history().await;
    let body = ok(&node, "?lastN=2").await;
    assert_eq!(
        instances(&body, "temperature"),
        at(&[(11.0, T2), (12.0, T3)])
    );
    assert_eq!(
        instances(&body, "relativeHumidity"),
        at(&[(0.5, T1), (0.6, T2)])
    );
    let body = ok(&node, &format!("?lastN=1&timerel=before&timeAt={T3}")).await;
    assert_eq!(instances(&body, "temperature"), at(&[(11.0, T2)]));
}

#[tokio::test]
async fn temporal_values_pairs_values_with_times() {
    let node = history().await;
    let body = ok(&node, "?options=temporalValues&attrs=temperature").await;
    assert_eq!(
        body,
        json!({
            "id": ID, "type": "WeatherObserved",
            "temperature": {"type": "Property",
                            "values": [[10, T1], [11, T2], [12, T3]]}
        })
    );
}

#[tokio::test]
async fn attrs_narrows_the_attributes() {
    let node = history().await;
    let body = ok(&node, "?attrs=relativeHumidity").await;
    assert!(body.get("temperature").is_none(), "{body}");
    assert_eq!(instances(&body, "relativeHumidity").len(), 2);
}

#[tokio::test]
async fn ld_json_has_the_context_in_the_body() {
    let node = history().await;
    let r = node
        .get(&format!("/ngsi-ld/v1/temporal/entities/{ID}"), None)
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(crate::node::content_type(&r), "application/ld+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["@context"], crate::node::CORE);
}

#[tokio::test]
async fn bad_timerel_and_time_at_are_400() {
    let node = history().await;
    for q in [
        format!("?timerel=during&timeAt={T1}"),
        "?timerel=before".to_owned(),
        "?timerel=after&timeAt=yesterday".to_owned(),
        format!("?timeAt={T1}"),
        format!("?timerel=between&timeAt={T1}"),
        format!("?timerel=between&timeAt={T2}&endTimeAt={T1}"),
        format!("?timerel=between&timeAt={T1}&endTimeAt=soon"),
        "?timeproperty=someday".to_owned(),
        "?options=aggregatedValues".to_owned(),
        "?options=aggregatedValues&aggrMethods=median".to_owned(),
        "?options=aggregatedValues&aggrMethods=sum&aggrPeriodDuration=1H".to_owned(),
    ] {
        let p = problem(temporal(&node, &q).await, 400, "BadRequestData").await;
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{q}: {p}");
    }
    // An unknown representation is a malformed request (ETSI 021_20).
    problem(
        temporal(&node, "?options=fast").await,
        400,
        "InvalidRequest",
    )
    .await;
}

#[tokio::test]
async fn aggregated_values_per_period() {
    let node = history().await;
    let body = ok(
        &node,
        "?attrs=temperature&options=aggregatedValues&aggrMethods=avg,max,totalCount&aggrPeriodDuration=PT2H",
    )
    .await;
    // Instances at T1 (10), T2 (11), T3 (12), one hour apart: buckets of two hours.
    assert_eq!(
        body["temperature"],
        json!({"type": "Property",
               "avg": [[10.5, T1, T3], [12.0, T3, "2026-01-01T04:00:00Z"]],
               "max": [[11.0, T1, T3], [12.0, T3, "2026-01-01T04:00:00Z"]],
               "totalCount": [[2, T1, T3], [1, T3, "2026-01-01T04:00:00Z"]]}),
        "{body}"
    );
    // Times of recording, not of observation, with timeproperty=modifiedAt.
    let body = ok(&node, "?attrs=temperature&timeproperty=modifiedAt").await;
    assert_eq!(
        body["temperature"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    assert!(body["temperature"][0]["modifiedAt"].is_string(), "{body}");
}

#[tokio::test]
async fn missing_entity_is_404() {
    let node = history().await;
    let r = node
        .get(
            "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:WeatherObserved:nope",
            None,
        )
        .send()
        .await
        .unwrap();
    problem(r, 404, "ResourceNotFound").await;
}
