//! `@context` handling (NGSI-LD 6.3.5): Link header vs body, unregistered contexts, and
//! term expansion and compaction with a user context.

use serde_json::{Value, json};

use crate::node::{CORE, Node, link, problem, weather};

const UNKNOWN: &str = "https://example.org/unregistered-context.jsonld";
const USER: &str = "https://example.org/city-context.jsonld";

async fn with_user_context() -> Node {
    Node::start_with(|s| {
        s.contexts
            .insert(
                USER,
                json!({"@context": {"temp": "https://example.org/vocab#temperature",
                                    "Station": "https://example.org/vocab#Station"}}),
                polity_ngsild::contexts::Kind::Hosted,
            )
            .expect("a valid context");
    })
    .await
}

#[tokio::test]
async fn an_unregistered_link_context_is_503_on_reads() {
    let node = Node::start().await;
    node.create(None, &weather("urn:ngsi-ld:WeatherObserved:w1"))
        .await;
    for path in [
        "/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:w1",
        "/ngsi-ld/v1/entities?type=WeatherObserved",
        "/ngsi-ld/v1/types",
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:WeatherObserved:w1",
    ] {
        let r = node
            .get(path, None)
            .header("Link", link(UNKNOWN))
            .send()
            .await
            .unwrap();
        let p = problem(r, 503, "LdContextNotAvailable").await;
        assert!(
            p["detail"].as_str().unwrap().contains(UNKNOWN),
            "{path}: {p}"
        );
    }
}

#[tokio::test]
async fn an_unregistered_context_is_503_on_writes() {
    let node = Node::start().await;
    // Named in a Link header with application/json.
    let r = node
        .post_json(
            "/ngsi-ld/v1/entities",
            None,
            &weather("urn:ngsi-ld:WeatherObserved:w1"),
        )
        .header("Link", link(UNKNOWN))
        .send()
        .await
        .unwrap();
    problem(r, 503, "LdContextNotAvailable").await;
    // Named in the body with application/ld+json.
    let mut body = weather("urn:ngsi-ld:WeatherObserved:w2");
    body["@context"] = json!([UNKNOWN, CORE]);
    let r = node
        .http
        .post(node.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    problem(r, 503, "LdContextNotAvailable").await;
    for id in ["w1", "w2"] {
        let r = node
            .get(
                &format!("/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:{id}"),
                None,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "nothing was stored for {id}");
    }
}

#[tokio::test]
async fn ld_json_with_a_link_header_is_400() {
    let node = Node::start().await;
    let mut body = weather("urn:ngsi-ld:WeatherObserved:w1");
    body["@context"] = json!(CORE);
    let r = node
        .http
        .post(node.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/ld+json")
        .header("Link", link(CORE))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
}

#[tokio::test]
async fn ld_json_without_a_context_and_json_with_one_are_400() {
    let node = Node::start().await;
    let r = node
        .http
        .post(node.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/ld+json")
        .body(weather("urn:ngsi-ld:WeatherObserved:w1").to_string())
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
    let mut body = weather("urn:ngsi-ld:WeatherObserved:w1");
    body["@context"] = json!(CORE);
    let r = node
        .post_json("/ngsi-ld/v1/entities", None, &body)
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
}

#[tokio::test]
async fn ld_json_with_the_core_context_is_accepted() {
    let node = Node::start().await;
    let mut body = weather("urn:ngsi-ld:WeatherObserved:w1");
    body["@context"] = json!(CORE);
    let r = node
        .http
        .post(node.url("/ngsi-ld/v1/entities"))
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let e = node
        .entity(None, "urn:ngsi-ld:WeatherObserved:w1", "?options=keyValues")
        .await;
    assert_eq!(e["temperature"], 21.5);
}

#[tokio::test]
async fn a_registered_user_context_expands_and_compacts_terms() {
    let node = with_user_context().await;
    let id = "urn:ngsi-ld:Station:s1";
    let entity = json!({"id": id, "type": "Station",
                        "temp": {"type": "Property", "value": 18.5}});
    let r = node
        .post_json("/ngsi-ld/v1/entities", None, &entity)
        .header("Link", link(USER))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // With the same context the short terms come back, and the Link names it.
    let r = node
        .get(
            &format!("/ngsi-ld/v1/entities/{id}?options=keyValues"),
            None,
        )
        .header("Link", link(USER))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["link"].to_str().unwrap().contains(USER),
        "the response names the context it was compacted with"
    );
    let e: Value = r.json().await.unwrap();
    assert_eq!(e, json!({"id": id, "type": "Station", "temp": 18.5}));
    // With only the core context the names are the full IRIs.
    let e = node.entity(None, id, "?options=keyValues").await;
    assert_eq!(
        e,
        json!({"id": id, "type": "https://example.org/vocab#Station",
               "https://example.org/vocab#temperature": 18.5})
    );
    // Queries expand the type with the request's context.
    let r = node
        .get("/ngsi-ld/v1/entities?type=Station", None)
        .header("Link", link(USER))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(crate::node::ids(&body), [id]);
    let r = node
        .get("/ngsi-ld/v1/entities?type=Station", None)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!([]),
        "under the core context `Station` is another type"
    );
}
