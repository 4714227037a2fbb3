//! Create and retrieve (NGSI-LD 5.6.1, 5.7.1): status codes, Location, the
//! representations (normalized, concise, keyValues), attrs, sysAttrs, content negotiation
//! and unit normalization.

use serde_json::{Value, json};

use crate::node::{CONTEXT_REL, CORE, Node, TENANT, content_type, problem, weather};

const W1: &str = "urn:ngsi-ld:WeatherObserved:w1";

#[tokio::test]
async fn create_answers_201_with_location_and_no_body() {
    let node = Node::start().await;
    let r = node
        .post_json("/ngsi-ld/v1/entities", None, &weather(W1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(loc, format!("/ngsi-ld/v1/entities/{W1}"));
    assert!(r.bytes().await.unwrap().is_empty(), "201 has no body");
    // The Location resolves to the entity.
    let r = node.http.get(node.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], W1);
}

#[tokio::test]
async fn create_twice_is_409_already_exists() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let r = node
        .post_json("/ngsi-ld/v1/entities", None, &weather(W1))
        .send()
        .await
        .unwrap();
    let p = problem(r, 409, "AlreadyExists").await;
    assert!(p["detail"].as_str().unwrap().contains(W1), "{p}");
    // The first version is untouched.
    let e = node.entity(None, W1, "").await;
    assert_eq!(e["temperature"]["value"], 21.5);
}

#[tokio::test]
async fn retrieve_normalized_is_the_default() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let e = node.entity(None, W1, "").await;
    assert_eq!(e["id"], W1);
    assert_eq!(e["type"], "WeatherObserved");
    assert_eq!(
        e["temperature"],
        json!({"type": "Property", "value": 21.5, "unitCode": "CEL",
               "observedAt": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(e["stationName"]["type"], "Property");
    assert_eq!(e["stationName"]["value"], "Victoria Square");
    assert_eq!(e["refDevice"]["type"], "Relationship");
    assert_eq!(e["refDevice"]["object"], "urn:ngsi-ld:Device:d1");
    assert_eq!(e["location"]["type"], "GeoProperty");
    assert_eq!(
        e["location"]["value"],
        json!({"type": "Point", "coordinates": [138.6, -34.93]})
    );
    assert!(
        e.get("@context").is_none(),
        "application/json has no @context"
    );
    assert!(e.get("createdAt").is_none(), "no sysAttrs unless asked");
    // options=normalized says the same thing.
    assert_eq!(node.entity(None, W1, "?options=normalized").await, e);
}

#[tokio::test]
async fn retrieve_key_values() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let e = node.entity(None, W1, "?options=keyValues").await;
    assert_eq!(
        e,
        json!({
            "id": W1, "type": "WeatherObserved",
            "temperature": 21.5,
            "stationName": "Victoria Square",
            "refDevice": "urn:ngsi-ld:Device:d1",
            "location": {"type": "Point", "coordinates": [138.6, -34.93]}
        })
    );
    // The 1.8 `format` parameter and the `simplified` alias give the same.
    assert_eq!(node.entity(None, W1, "?format=keyValues").await, e);
    assert_eq!(node.entity(None, W1, "?options=simplified").await, e);
}

#[tokio::test]
async fn retrieve_concise() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let e = node.entity(None, W1, "?options=concise").await;
    assert_eq!(e["type"], "WeatherObserved", "the entity keeps its type");
    assert_eq!(
        e["temperature"],
        json!({"value": 21.5, "unitCode": "CEL", "observedAt": "2026-01-01T00:00:00Z"}),
        "concise attributes drop `type`"
    );
    assert_eq!(e["refDevice"]["object"], "urn:ngsi-ld:Device:d1");
    assert!(e["refDevice"].get("type").is_none());
    assert!(e["location"].get("type").is_none());
    assert_eq!(e["location"]["value"]["type"], "Point");
    assert_eq!(node.entity(None, W1, "?format=concise").await, e);
}

#[tokio::test]
async fn retrieve_with_attrs_keeps_only_those() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let e = node.entity(None, W1, "?attrs=temperature,refDevice").await;
    let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "refDevice", "temperature", "type"]);
    // Asking only for attributes the entity does not have finds nothing (GS CIM 009
    // 5.7.1, ETSI 018_03_02).
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{W1}?attrs=humidity"), None)
        .send()
        .await
        .unwrap();
    problem(r, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn retrieve_with_sys_attrs() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let e = node.entity(None, W1, "?options=sysAttrs").await;
    for k in ["createdAt", "modifiedAt"] {
        let t = e[k].as_str().unwrap_or_else(|| panic!("{k} in {e}"));
        assert!(
            polity_model::Timestamp::parse(t).is_ok(),
            "{k} is a date-time: {t}"
        );
    }
    // Combined with keyValues.
    let e = node.entity(None, W1, "?options=keyValues,sysAttrs").await;
    assert!(e.get("createdAt").is_some());
    assert_eq!(e["temperature"], 21.5);
}

#[tokio::test]
async fn unknown_option_is_400() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{W1}?options=pretty"), None)
        .send()
        .await
        .unwrap();
    // An unknown representation is a malformed request (ETSI 018_16).
    problem(r, 400, "InvalidRequest").await;
}

#[tokio::test]
async fn accept_ld_json_puts_the_context_in_the_body() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{W1}"), None)
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "application/ld+json");
    assert!(
        r.headers().get("link").is_none(),
        "with the context in the body there is no Link header"
    );
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["@context"], CORE);
    assert_eq!(e["id"], W1);
}

#[tokio::test]
async fn accept_json_gives_a_link_header_with_the_core_context() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    for accept in [Some("application/json"), None, Some("*/*")] {
        let mut rb = node.get(&format!("/ngsi-ld/v1/entities/{W1}"), None);
        if let Some(a) = accept {
            rb = rb.header("Accept", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(content_type(&r), "application/json", "Accept {accept:?}");
        let link = r.headers()["link"].to_str().unwrap().to_owned();
        assert!(link.contains(&format!("<{CORE}>")), "{link}");
        assert!(link.contains(&format!("rel=\"{CONTEXT_REL}\"")), "{link}");
        assert!(link.contains("type=\"application/ld+json\""), "{link}");
        let e: Value = r.json().await.unwrap();
        assert!(e.get("@context").is_none());
    }
}

#[tokio::test]
async fn accept_something_else_is_406() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{W1}"), None)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    problem(r, 406, "about:blank").await;
}

#[tokio::test]
async fn missing_entity_is_404_resource_not_found() {
    let node = Node::start().await;
    let r = node
        .get(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:nope",
            None,
        )
        .send()
        .await
        .unwrap();
    problem(r, 404, "ResourceNotFound").await;
    // Also when the id exists but the `type` filter does not match.
    node.create(None, &weather(W1)).await;
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{W1}?type=Streetlight"), None)
        .send()
        .await
        .unwrap();
    problem(r, 404, "ResourceNotFound").await;
    assert_eq!(
        node.entity(None, W1, "?type=WeatherObserved").await["id"],
        W1
    );
}

#[tokio::test]
async fn an_id_that_is_not_a_uri_is_400() {
    let node = Node::start().await;
    let r = node
        .get("/ngsi-ld/v1/entities/not-a-uri", None)
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
}

#[tokio::test]
async fn fahrenheit_comes_back_in_celsius() {
    let node = Node::start().await;
    let id = "urn:ngsi-ld:WeatherObserved:us1";
    node.create(
        None,
        &json!({
            "id": id, "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": 212, "unitCode": "FAH"}
        }),
    )
    .await;
    let e = node.entity(None, id, "").await;
    assert_eq!(e["temperature"]["unitCode"], "CEL");
    let v = e["temperature"]["value"].as_f64().unwrap();
    assert!((v - 100.0).abs() < 1e-9, "212 °F is 100 °C, got {v}");
    // And through batch upsert too.
    let r = node
        .upsert(
            None,
            &json!([{"id": id, "type": "WeatherObserved",
                     "temperature": {"type": "Property", "value": 32, "unitCode": "FAH"}}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = node.entity(None, id, "?options=keyValues").await;
    assert_eq!(e["temperature"].as_f64(), Some(0.0));
}

/// A device clock far in the future would freeze the entity (later values are older
/// than it), so such an observedAt is refused and kept as a dead letter.
#[tokio::test]
async fn observed_at_in_the_far_future_is_refused() {
    let node = Node::start().await;
    let r = node
        .upsert(
            None,
            &json!([{"id": "urn:ngsi-ld:Meter:clock", "type": "Meter",
                     "v": {"type": "Property", "value": 1, "observedAt": "2100-01-01T00:00:00Z"}}]),
        )
        .await;
    assert_eq!(r.status(), 207);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("10 minutes"),
        "{body}"
    );
}

/// An entity without attributes is stored and served (NGSI-LD allows it), by create
/// and by upsert.
#[tokio::test]
async fn an_entity_without_attributes_is_stored() {
    let node = Node::start().await;
    let r = node
        .upsert(
            None,
            &json!([{"id": "urn:ngsi-ld:Sensor:bare", "type": "Sensor"}]),
        )
        .await;
    assert_eq!(r.status(), 201);
    node.create(
        None,
        &json!({"id": "urn:ngsi-ld:Sensor:bare2", "type": ["Sensor", "Asset"]}),
    )
    .await;
    assert_eq!(
        node.entity(None, "urn:ngsi-ld:Sensor:bare", "").await,
        json!({"id": "urn:ngsi-ld:Sensor:bare", "type": "Sensor"})
    );
    assert_eq!(
        node.entity(None, "urn:ngsi-ld:Sensor:bare2", "").await,
        json!({"id": "urn:ngsi-ld:Sensor:bare2", "type": ["Sensor", "Asset"]})
    );
}

#[tokio::test]
async fn default_tenant_is_the_one_without_a_header() {
    let node = Node::start().await;
    node.create(None, &weather(W1)).await;
    // Named explicitly it is the same tenant.
    assert_eq!(node.entity(Some("default"), W1, "").await["id"], W1);
    let r = node
        .get(&format!("/ngsi-ld/v1/entities/{W1}"), None)
        .header(TENANT, "default")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn concise_input_round_trips() {
    let node = Node::start().await;
    let id = "urn:ngsi-ld:Building:b1";
    node.create(
        None,
        &json!({
            "id": id, "type": "Building",
            "floors": 3,
            "open": true,
            "address": {"streetAddress": "King William St 1"},
            "owner": {"object": "urn:ngsi-ld:Person:p1"}
        }),
    )
    .await;
    let e = node.entity(None, id, "?options=keyValues").await;
    assert_eq!(e["floors"], 3);
    assert_eq!(e["open"], true);
    assert_eq!(e["address"], json!({"streetAddress": "King William St 1"}));
    assert_eq!(e["owner"], "urn:ngsi-ld:Person:p1");
    let n = node.entity(None, id, "").await;
    assert_eq!(n["owner"]["type"], "Relationship");
    assert_eq!(n["floors"]["type"], "Property");
}

/// An attribute named by the expanded IRI of a reserved member (`createdAt`, `scope`,
/// …) is accepted, and rendering compacts it back to the reserved name: with sysAttrs
/// it replaces the entity's `createdAt`, and a client that sends the entity back loses
/// it (`parse_entity` skips reserved names). Found by the `ngsild_entity` fuzz target.
#[tokio::test]

async fn reserved_member_iris_are_not_attribute_names() {
    let node = Node::start().await;
    let r = node
        .post_json(
            "/ngsi-ld/v1/entities",
            None,
            &json!({"id": W1, "type": "WeatherObserved",
                    "https://uri.etsi.org/ngsi-ld/createdAt": {"type": "Property", "value": 1}}),
        )
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
}

/// The same for sub-attributes: one named `https://uri.etsi.org/ngsi-ld/observedAt`
/// renders over the attribute's own `observedAt`, so the served entity is not valid
/// NGSI-LD (`observedAt` is an object).
#[tokio::test]

async fn reserved_member_iris_are_not_sub_attribute_names() {
    let node = Node::start().await;
    let r = node
        .post_json(
            "/ngsi-ld/v1/entities",
            None,
            &json!({"id": W1, "type": "WeatherObserved",
                    "speed": {"type": "Property", "value": 1,
                              "observedAt": "2026-01-01T00:00:00Z",
                              "https://uri.etsi.org/ngsi-ld/observedAt":
                                  {"type": "Property", "value": "x"}}}),
        )
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
}

/// A name holding `:` and a character IRIs may not hold (`{`) expands under the default
/// vocabulary, is served as that full IRI, and re-expands under the vocabulary again:
/// what a client reads back under that name is another attribute. Found by the
/// `ngsild_entity` fuzz target.
#[tokio::test]

async fn names_that_cannot_expand_to_iris_are_rejected() {
    let node = Node::start().await;
    let r = node
        .post_json(
            "/ngsi-ld/v1/entities",
            None,
            &json!({"id": W1, "type": "WeatherObserved", "a{:b": 1}),
        )
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
}

/// Concurrent creations of one id: exactly one may succeed. `create` checks existence
/// and commits in two steps (`existing` then `commit` in crates/ngsild/src/entities.rs),
/// so requests that interleave all see "absent" and all answer 201.
#[tokio::test]

async fn concurrent_creates_of_one_id_give_one_201() {
    let node = Node::start().await;
    let sends = (0..8).map(|_| {
        node.post_json("/ngsi-ld/v1/entities", None, &weather(W1))
            .send()
    });
    let mut created = 0;
    for r in futures_join(sends).await {
        let r = r.unwrap();
        match r.status().as_u16() {
            201 => created += 1,
            409 => {
                problem(r, 409, "AlreadyExists").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 1, "exactly one creation wins");
}

/// Awaits every future concurrently (tokio tasks, so the requests really overlap).
async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
