//! Query entities (NGSI-LD 5.7.2) and type discovery (5.7.5, 5.7.6).

use serde_json::{Value, json};

use crate::node::{Node, ids, problem};

fn spot(n: u32, with_status: bool) -> Value {
    let mut e = json!({
        "id": format!("urn:ngsi-ld:ParkingSpot:{n:02}"),
        "type": "ParkingSpot",
        "category": {"type": "Property", "value": "onStreet"}
    });
    if with_status {
        e["status"] = json!({"type": "Property", "value": "free"});
    }
    e
}

/// Five parking spots (01..05) and one street light.
async fn city() -> Node {
    let node = Node::start().await;
    let mut all: Vec<Value> = (1..=5).map(|n| spot(n, true)).collect();
    all.push(json!({
        "id": "urn:ngsi-ld:Streetlight:s1", "type": "Streetlight",
        "powerState": {"type": "Property", "value": "on"}
    }));
    let r = node.upsert(None, &Value::Array(all)).await;
    assert_eq!(r.status(), 201);
    node
}

async fn query(node: &Node, q: &str) -> reqwest::Response {
    node.get(&format!("/ngsi-ld/v1/entities{q}"), None)
        .send()
        .await
        .unwrap()
}

async fn ok(node: &Node, q: &str) -> (Value, Option<String>) {
    let r = query(node, q).await;
    assert_eq!(r.status(), 200, "GET /entities{q}");
    let count = r
        .headers()
        .get("NGSILD-Results-Count")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.json().await.unwrap(), count)
}

#[tokio::test]
async fn by_type_in_id_order_with_the_default_page() {
    let node = city().await;
    let (body, count) = ok(&node, "?type=ParkingSpot").await;
    assert_eq!(
        ids(&body),
        (1..=5)
            .map(|n| format!("urn:ngsi-ld:ParkingSpot:{n:02}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(count, None, "no count unless asked");
    assert_eq!(
        body[0]["category"]["type"], "Property",
        "normalized by default"
    );
}

#[tokio::test]
async fn limit_offset_and_count() {
    let node = city().await;
    let (body, count) = ok(&node, "?type=ParkingSpot&limit=2&offset=1&count=true").await;
    assert_eq!(
        ids(&body),
        ["urn:ngsi-ld:ParkingSpot:02", "urn:ngsi-ld:ParkingSpot:03"]
    );
    assert_eq!(count.as_deref(), Some("5"), "the count is of all matches");
    let (body, count) = ok(&node, "?type=ParkingSpot&limit=2&offset=4&count=true").await;
    assert_eq!(ids(&body), ["urn:ngsi-ld:ParkingSpot:05"]);
    assert_eq!(count.as_deref(), Some("5"));
    let (body, _) = ok(&node, "?type=ParkingSpot&offset=10").await;
    assert_eq!(body, json!([]));
    // Several types: one id-ordered result over both.
    let (body, count) = ok(&node, "?type=Streetlight,ParkingSpot&count=true&limit=10").await;
    assert_eq!(ids(&body).len(), 6);
    assert_eq!(ids(&body)[5], "urn:ngsi-ld:Streetlight:s1");
    assert_eq!(count.as_deref(), Some("6"));
}

#[tokio::test]
async fn by_id_and_representations() {
    let node = city().await;
    let (body, _) = ok(
        &node,
        "?type=ParkingSpot&id=urn:ngsi-ld:ParkingSpot:04,urn:ngsi-ld:ParkingSpot:02&options=keyValues",
    )
    .await;
    assert_eq!(
        body,
        json!([
            {"id": "urn:ngsi-ld:ParkingSpot:02", "type": "ParkingSpot",
             "category": "onStreet", "status": "free"},
            {"id": "urn:ngsi-ld:ParkingSpot:04", "type": "ParkingSpot",
             "category": "onStreet", "status": "free"}
        ])
    );
    // attrs narrows the attributes of each entity returned.
    let (body, _) = ok(
        &node,
        "?type=ParkingSpot&attrs=status&options=keyValues&limit=1",
    )
    .await;
    assert_eq!(
        body,
        json!([{"id": "urn:ngsi-ld:ParkingSpot:01", "type": "ParkingSpot", "status": "free"}])
    );
}

#[tokio::test]
async fn ld_json_puts_the_context_in_every_entity() {
    let node = city().await;
    let r = node
        .get("/ngsi-ld/v1/entities?type=ParkingSpot&limit=2", None)
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(crate::node::content_type(&r), "application/ld+json");
    let body: Value = r.json().await.unwrap();
    for e in body.as_array().unwrap() {
        assert_eq!(e["@context"], crate::node::CORE, "{e}");
    }
}

#[tokio::test]
async fn a_query_without_type_id_or_attrs_is_400() {
    let node = city().await;
    let p = problem(query(&node, "").await, 400, "BadRequestData").await;
    assert!(p["detail"].as_str().unwrap().contains("type"), "{p}");
    problem(query(&node, "?limit=3").await, 400, "BadRequestData").await;
}

#[tokio::test]
async fn a_limit_above_the_maximum_is_403_too_many_results() {
    let node = city().await;
    problem(
        query(&node, "?type=ParkingSpot&limit=1001").await,
        403,
        "TooManyResults",
    )
    .await;
    // The maximum itself is fine.
    let (body, _) = ok(&node, "?type=ParkingSpot&limit=1000").await;
    assert_eq!(ids(&body).len(), 5);
}

/// A parameter that would change the result is never silently ignored: NGSI-LD
/// parameters this node does not implement are 422, unknown ones 400, and an id alone
/// does not make a query (GS CIM 009 5.7.2, as the ETSI suite reads it).
#[tokio::test]
async fn unsupported_and_unknown_parameters_are_refused_not_ignored() {
    let node = city().await;
    problem(
        query(&node, "?type=ParkingSpot&csf=x").await,
        422,
        "OperationNotSupported",
    )
    .await;
    for q in [
        "?type=ParkingSpot&colour=red",
        "?type=",
        "?id=urn:ngsi-ld:ParkingSpot:01",
        "?type=ParkingSpot&geometry=Point&coordinates=[1,2]",
        "?type=ParkingSpot&georel=near;maxDistance==10&geometry=Polygon&coordinates=[1,2]",
        "?type=ParkingSpot&pick=status&omit=category",
        "?type=ParkingSpot&pick=status{",
        "?type=(ParkingSpot",
    ] {
        problem(query(&node, q).await, 400, "BadRequestData").await;
    }
}

/// Type expressions, pick and omit, scope and geo-queries select and shape results.
#[tokio::test]
async fn type_expressions_projections_scopes_and_geometry() {
    let node = city().await;
    let (body, _) = ok(&node, "?type=ParkingSpot|Streetlight").await;
    assert_eq!(ids(&body).len(), 6);
    let (body, _) = ok(&node, "?type=(ParkingSpot;Streetlight)").await;
    assert!(ids(&body).is_empty(), "no entity has both types");
    let (body, _) = ok(&node, "?type=ParkingSpot&pick=id,status&limit=1").await;
    assert_eq!(
        body,
        json!([{"id": "urn:ngsi-ld:ParkingSpot:01", "status": {"type": "Property", "value": "free"}}])
    );
    let (body, _) = ok(&node, "?type=ParkingSpot&omit=type,category&limit=1").await;
    assert_eq!(
        body,
        json!([{"id": "urn:ngsi-ld:ParkingSpot:01", "status": {"type": "Property", "value": "free"}}])
    );
    node.create(None, &json!({"id": "urn:ngsi-ld:Bench:1", "type": "Bench", "scope": "/Berlin/Mitte",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [13.4132, 52.5219]}}}))
        .await;
    let (body, _) = ok(&node, "?scopeQ=/Berlin/%23").await;
    assert_eq!(ids(&body), ["urn:ngsi-ld:Bench:1"]);
    let (body, _) = ok(&node, "?scopeQ=/Berlin/Kreuzberg").await;
    assert!(ids(&body).is_empty());
    // The Brandenburg Gate is about 2.4 km from the bench.
    let near = |d: u32| {
        format!(
            "?type=Bench&georel=near;maxDistance=={d}&geometry=Point&coordinates=[13.3777,52.5163]"
        )
    };
    assert_eq!(
        ids(&ok(&node, &near(3000)).await.0),
        ["urn:ngsi-ld:Bench:1"]
    );
    assert!(ids(&ok(&node, &near(2000)).await.0).is_empty());
    let within = "?type=Bench&georel=within&geometry=Polygon&coordinates=[[[13,52],[14,52],[14,53],[13,53],[13,52]]]";
    assert_eq!(ids(&ok(&node, within).await.0), ["urn:ngsi-ld:Bench:1"]);
}

/// `q` and `idPattern` filter before paging, so pages and counts describe the matches.
#[tokio::test]
async fn q_and_id_pattern_filter_before_paging() {
    let node = Node::start().await;
    let mut all: Vec<Value> = Vec::new();
    for n in 1..=6u32 {
        let mut e = spot(n, true);
        e["status"]["value"] = json!(if n % 2 == 0 { "occupied" } else { "free" });
        e["capacity"] = json!({"type": "Property", "value": n * 10});
        all.push(e);
    }
    assert_eq!(node.upsert(None, &Value::Array(all)).await.status(), 201);

    let (body, count) = ok(
        &node,
        "?type=ParkingSpot&q=status==%22free%22&count=true&limit=2",
    )
    .await;
    assert_eq!(
        ids(&body),
        ["urn:ngsi-ld:ParkingSpot:01", "urn:ngsi-ld:ParkingSpot:03"]
    );
    assert_eq!(count.as_deref(), Some("3"));
    let (body, _) = ok(&node, "?q=capacity%3E=30;capacity%3C60|status==%22none%22").await;
    assert_eq!(
        ids(&body),
        [
            "urn:ngsi-ld:ParkingSpot:03",
            "urn:ngsi-ld:ParkingSpot:04",
            "urn:ngsi-ld:ParkingSpot:05"
        ]
    );
    let (body, _) = ok(&node, "?type=ParkingSpot&q=capacity==20..40").await;
    assert_eq!(ids(&body).len(), 3);
    let (body, count) = ok(&node, "?type=ParkingSpot&idPattern=.*:0[15]&count=true").await;
    assert_eq!(
        ids(&body),
        ["urn:ngsi-ld:ParkingSpot:01", "urn:ngsi-ld:ParkingSpot:05"]
    );
    assert_eq!(count.as_deref(), Some("2"));
    // Malformed expressions are 400 with a position.
    let r = query(&node, "?type=ParkingSpot&q=capacity%3E%3E1").await;
    let p = problem(r, 400, "BadRequestData").await;
    assert!(p["detail"].as_str().unwrap().contains("byte"), "{p}");
    problem(
        query(&node, "?type=ParkingSpot&idPattern=(").await,
        400,
        "BadRequestData",
    )
    .await;
}

/// The attrs filter is applied after the store has cut the page (`limit: offset +
/// limit` in `entities::query`), so entities without the attribute that sort first push
/// matching ones off the page, and the count of an attrs query is the page size.
#[tokio::test]

async fn attrs_query_finds_matches_beyond_the_first_page() {
    let node = Node::start().await;
    // 01 and 02 have no status; 03 and 04 do.
    let all = json!([spot(1, false), spot(2, false), spot(3, true), spot(4, true)]);
    assert_eq!(node.upsert(None, &all).await.status(), 201);
    let (body, count) = ok(&node, "?attrs=status&limit=1&count=true").await;
    assert_eq!(ids(&body), ["urn:ngsi-ld:ParkingSpot:03"]);
    assert_eq!(count.as_deref(), Some("2"));
}

/// Query parameters that do not parse are answered by axum's `Query` extractor with a
/// plain-text 400, not a ProblemDetails body.
#[tokio::test]

async fn malformed_query_parameters_are_problem_details() {
    let node = city().await;
    for q in [
        "?type=ParkingSpot&limit=ten",
        "?type=ParkingSpot&limit=-1",
        "?type=ParkingSpot&count=yes",
    ] {
        problem(query(&node, q).await, 400, "BadRequestData").await;
    }
}

#[tokio::test]
async fn types_lists_each_entity_type() {
    let node = city().await;
    let r = node.get("/ngsi-ld/v1/types", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "EntityTypeList");
    assert!(
        body["id"]
            .as_str()
            .unwrap()
            .starts_with("urn:ngsi-ld:EntityTypeList:"),
        "{body}"
    );
    assert_eq!(body["typeList"], json!(["ParkingSpot", "Streetlight"]));
}

#[tokio::test]
async fn types_with_details() {
    let node = city().await;
    let r = node
        .get("/ngsi-ld/v1/types?details=true", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let list = body.as_array().expect("an array of EntityType");
    assert_eq!(list.len(), 2);
    let spot = &list[0];
    assert_eq!(spot["type"], "EntityType");
    assert_eq!(spot["typeName"], "ParkingSpot");
    assert_eq!(
        spot["id"], "https://uri.etsi.org/ngsi-ld/default-context/ParkingSpot",
        "the id is the expanded type IRI"
    );
    let mut names: Vec<&str> = spot["attributeNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["category", "status"]);
    assert_eq!(list[1]["typeName"], "Streetlight");
    assert_eq!(list[1]["attributeNames"], json!(["powerState"]));
}
