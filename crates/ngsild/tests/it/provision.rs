//! Entity provision over HTTP: delete, replace and merge entities; append, update,
//! partially update, replace and delete attributes; batch create, update, merge and
//! delete; purge. Each assertion is a rule of GS CIM 009 5.6 (or the ETSI suite's
//! reading of it where the two differ, as noted).

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::node::{Node, problem};

const B: &str = "urn:ngsi-ld:Building:b1";

fn building() -> Value {
    json!({
        "id": B, "type": "Building",
        "name": [
            {"type": "Property", "value": "Town hall", "datasetId": "urn:ngsi-ld:Dataset:01"},
            {"type": "Property", "value": "Hôtel de ville"}
        ],
        "floors": {"type": "Property", "value": 3, "unitCode": "C62"},
        "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"},
        "street": {"type": "LanguageProperty", "languageMap": {"fr": "Place de l'Hôtel de Ville"}}
    })
}

async fn send(node: &Node, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut r = node.http.request(method, node.url(path));
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    r.send().await.unwrap()
}

async fn kv(node: &Node) -> Value {
    node.entity(None, B, "?options=keyValues").await
}

#[tokio::test]
async fn attributes_are_appended_updated_replaced_and_deleted() {
    let node = Node::start().await;
    node.create(None, &building()).await;
    let attrs = format!("/ngsi-ld/v1/entities/{B}/attrs");

    // Append: new attributes are added, existing ones overwritten...
    let r = send(
        &node,
        Method::POST,
        &attrs,
        Some(json!({"floors": 4, "height": 30})),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        (
            kv(&node).await["floors"].clone(),
            kv(&node).await["height"].clone()
        ),
        (json!(4), json!(30))
    );
    // ...unless noOverwrite: then 207 names what was kept.
    let r = send(
        &node,
        Method::POST,
        &format!("{attrs}?options=noOverwrite"),
        Some(json!({"floors": 9, "roof": "flat"})),
    )
    .await;
    assert_eq!(r.status(), 207);
    let result: Value = r.json().await.unwrap();
    assert_eq!(
        result["notUpdated"][0]["attributeName"],
        "https://uri.etsi.org/ngsi-ld/default-context/floors",
        "{result}"
    );
    assert_eq!(kv(&node).await["floors"], 4);
    assert_eq!(kv(&node).await["roof"], "flat");

    // Partial update of one instance keeps its other members.
    let r = send(
        &node,
        Method::PATCH,
        &format!("{attrs}/floors"),
        Some(json!({"value": 5})),
    )
    .await;
    assert_eq!(r.status(), 204);
    let e = node.entity(None, B, "").await;
    assert_eq!(
        e["floors"],
        json!({"type": "Property", "value": 5}),
        "append replaced the unit: {e}"
    );
    let r = send(
        &node,
        Method::PATCH,
        &format!("{attrs}/floors"),
        Some(json!({"unitCode": "C62"})),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        node.entity(None, B, "").await["floors"],
        json!({"type": "Property", "value": 5, "unitCode": "C62"})
    );
    // Changing the attribute's type is refused; an unknown instance is 404.
    let r = send(
        &node,
        Method::PATCH,
        &format!("{attrs}/floors"),
        Some(json!({"type": "Relationship", "object": "urn:x:1"})),
    )
    .await;
    problem(r, 400, "BadRequestData").await;
    let r = send(
        &node,
        Method::PATCH,
        &format!("{attrs}/floors"),
        Some(json!({"value": 1, "datasetId": "urn:ngsi-ld:Dataset:none"})),
    )
    .await;
    problem(r, 404, "ResourceNotFound").await;

    // Replace one attribute: its createdAt stays.
    let created = node.entity(None, B, "?options=sysAttrs").await["locatedAt"]["createdAt"].clone();
    let r = send(
        &node,
        Method::PUT,
        &format!("{attrs}/locatedAt"),
        Some(json!({"type": "Relationship", "object": "urn:ngsi-ld:City:Lyon"})),
    )
    .await;
    assert_eq!(r.status(), 204);
    let e = node.entity(None, B, "?options=sysAttrs").await;
    assert_eq!(e["locatedAt"]["object"], "urn:ngsi-ld:City:Lyon");
    assert_eq!(e["locatedAt"]["createdAt"], created, "{e}");

    // Delete one instance by datasetId, then the default one.
    let r = send(
        &node,
        Method::DELETE,
        &format!("{attrs}/name?datasetId=urn:ngsi-ld:Dataset:01"),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(kv(&node).await["name"], "Hôtel de ville");
    let r = send(&node, Method::DELETE, &format!("{attrs}/name"), None).await;
    assert_eq!(r.status(), 204);
    assert!(kv(&node).await.get("name").is_none());
    let r = send(&node, Method::DELETE, &format!("{attrs}/name"), None).await;
    problem(r, 404, "ResourceNotFound").await;

    // Update: NGSI-LD Null deletes, other attributes are set.
    let r = send(
        &node,
        Method::PATCH,
        &attrs,
        Some(json!({
            "street": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}},
            "floors": 6
        })),
    )
    .await;
    assert_eq!(r.status(), 204);
    let e = kv(&node).await;
    assert!(e.get("street").is_none(), "{e}");
    assert_eq!(e["floors"], 6);
}

#[tokio::test]
async fn entities_are_replaced_merged_and_deleted() {
    let node = Node::start().await;
    node.create(None, &building()).await;
    let path = format!("/ngsi-ld/v1/entities/{B}");

    // Merge: given attributes merge in, NGSI-LD Null deletes, the rest stays.
    let r = send(
        &node,
        Method::PATCH,
        &path,
        Some(json!({
            "floors": {"value": 7},
            "locatedAt": "urn:ngsi-ld:null",
            "scope": "/Paris/Centre"
        })),
    )
    .await;
    assert_eq!(r.status(), 204);
    let e = node.entity(None, B, "").await;
    assert_eq!(
        e["floors"],
        json!({"type": "Property", "value": 7, "unitCode": "C62"}),
        "{e}"
    );
    assert!(e.get("locatedAt").is_none(), "{e}");
    assert_eq!(e["scope"], "/Paris/Centre");
    assert!(e["name"].is_array(), "untouched: {e}");

    // Replace: only the body's attributes, types and scope remain.
    let r = send(
        &node,
        Method::PUT,
        &path,
        Some(json!({"type": ["Building", "Monument"], "height": 30})),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        kv(&node).await,
        json!({"id": B, "type": ["Building", "Monument"], "height": 30})
    );
    let by_type = node
        .get("/ngsi-ld/v1/entities?type=Monument", None)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        by_type.as_array().map(Vec::len),
        Some(1),
        "found by its second type"
    );

    // Delete, then it is gone; deleting again is 404.
    assert_eq!(send(&node, Method::DELETE, &path, None).await.status(), 204);
    problem(
        send(&node, Method::GET, &path, None).await,
        404,
        "ResourceNotFound",
    )
    .await;
    problem(
        send(&node, Method::DELETE, &path, None).await,
        404,
        "ResourceNotFound",
    )
    .await;
    // Without an id there is nothing to replace.
    problem(
        send(
            &node,
            Method::PUT,
            "/ngsi-ld/v1/entities/",
            Some(json!({"a": 1})),
        )
        .await,
        400,
        "BadRequestData",
    )
    .await;
}

#[tokio::test]
async fn batches_report_each_entity_and_commit_the_rest() {
    let node = Node::start().await;
    let ops = "/ngsi-ld/v1/entityOperations";
    let a = json!({"id": "urn:ngsi-ld:Spot:a", "type": "Spot", "free": true});
    let b = json!({"id": "urn:ngsi-ld:Spot:b", "type": "Spot", "free": false});
    // Create: an id twice is created once and reported once.
    let r = send(
        &node,
        Method::POST,
        &format!("{ops}/create"),
        Some(json!([a, b, a])),
    )
    .await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["success"],
        json!(["urn:ngsi-ld:Spot:a", "urn:ngsi-ld:Spot:b"]),
        "{body}"
    );
    assert_eq!(body["errors"][0]["entityId"], "urn:ngsi-ld:Spot:a");
    assert_eq!(body["errors"][0]["error"]["status"], 409);

    // Update with noOverwrite keeps existing attributes (207) and adds new ones.
    let r = send(
        &node,
        Method::POST,
        &format!("{ops}/update?options=noOverwrite"),
        Some(json!([
            {"id": "urn:ngsi-ld:Spot:a", "type": "Spot", "free": false, "level": 2}
        ])),
    )
    .await;
    assert_eq!(r.status(), 207);
    let e = node
        .entity(None, "urn:ngsi-ld:Spot:a", "?options=keyValues")
        .await;
    assert_eq!(
        (e["free"].clone(), e["level"].clone()),
        (json!(true), json!(2))
    );
    // Update of an unknown entity fails for that entity only.
    let r = send(
        &node,
        Method::POST,
        &format!("{ops}/update"),
        Some(json!([
            {"id": "urn:ngsi-ld:Spot:a", "type": "Spot", "free": false},
            {"id": "urn:ngsi-ld:Spot:zz", "type": "Spot", "free": false}
        ])),
    )
    .await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["error"]["status"], 404, "{body}");
    assert_eq!(
        node.entity(None, "urn:ngsi-ld:Spot:a", "?options=keyValues")
            .await["free"],
        false
    );

    // Merge deletes with NGSI-LD Null.
    let r = send(
        &node,
        Method::POST,
        &format!("{ops}/merge"),
        Some(json!([
            {"id": "urn:ngsi-ld:Spot:a", "type": "Spot", "level": "urn:ngsi-ld:null"}
        ])),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert!(
        node.entity(None, "urn:ngsi-ld:Spot:a", "")
            .await
            .get("level")
            .is_none()
    );

    // Delete: an id twice is deleted once; an empty batch is refused.
    let r = send(
        &node,
        Method::POST,
        &format!("{ops}/delete"),
        Some(json!(["urn:ngsi-ld:Spot:a", "urn:ngsi-ld:Spot:a"])),
    )
    .await;
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], json!(["urn:ngsi-ld:Spot:a"]));
    problem(
        send(
            &node,
            Method::POST,
            &format!("{ops}/delete"),
            Some(json!([])),
        )
        .await,
        400,
        "BadRequestData",
    )
    .await;
    let r = send(
        &node,
        Method::POST,
        &format!("{ops}/delete"),
        Some(json!(["urn:ngsi-ld:Spot:b"])),
    )
    .await;
    assert_eq!(r.status(), 204);
    problem(
        send(
            &node,
            Method::GET,
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Spot:b",
            None,
        )
        .await,
        404,
        "ResourceNotFound",
    )
    .await;
}

#[tokio::test]
async fn purge_deletes_matching_entities_or_their_attributes() {
    let node = Node::start().await;
    for i in 0..3 {
        node.create(
            None,
            &json!({"id": format!("urn:ngsi-ld:Bin:{i}"), "type": "Bin",
                                  "fill": i * 10, "colour": "green"}),
        )
        .await;
    }
    node.create(
        None,
        &json!({"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "on": true}),
    )
    .await;
    problem(
        send(&node, Method::DELETE, "/ngsi-ld/v1/entities", None).await,
        400,
        "BadRequestData",
    )
    .await;
    problem(
        send(
            &node,
            Method::DELETE,
            "/ngsi-ld/v1/entities?type=Bin&keep=fill&drop=colour",
            None,
        )
        .await,
        400,
        "BadRequestData",
    )
    .await;
    // drop: the attribute goes, the entities stay.
    assert_eq!(
        send(
            &node,
            Method::DELETE,
            "/ngsi-ld/v1/entities?type=Bin&drop=colour",
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        node.entity(None, "urn:ngsi-ld:Bin:1", "?options=keyValues")
            .await,
        json!({"id": "urn:ngsi-ld:Bin:1", "type": "Bin", "fill": 10})
    );
    // q selects; only the matching entity goes.
    assert_eq!(
        send(
            &node,
            Method::DELETE,
            "/ngsi-ld/v1/entities?type=Bin&q=fill%3E15",
            None
        )
        .await
        .status(),
        204
    );
    problem(
        send(
            &node,
            Method::GET,
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Bin:2",
            None,
        )
        .await,
        404,
        "ResourceNotFound",
    )
    .await;
    assert_eq!(
        node.entity(None, "urn:ngsi-ld:Bin:0", "").await["id"],
        "urn:ngsi-ld:Bin:0"
    );
    // type: every Bin goes, the lamp stays.
    assert_eq!(
        send(&node, Method::DELETE, "/ngsi-ld/v1/entities?type=Bin", None)
            .await
            .status(),
        204
    );
    problem(
        send(
            &node,
            Method::GET,
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Bin:0",
            None,
        )
        .await,
        404,
        "ResourceNotFound",
    )
    .await;
    assert_eq!(
        node.entity(None, "urn:ngsi-ld:Lamp:1", "").await["id"],
        "urn:ngsi-ld:Lamp:1"
    );
}
