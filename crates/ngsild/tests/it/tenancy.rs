//! Tenants (NGSI-LD 4.14): one tenant's data is invisible under another, and a tenant
//! that does not exist is 404 NonexistentTenant.

use serde_json::{Value, json};

use crate::node::{Node, TENANT, ids, problem};

const ALPHA_ID: &str = "urn:ngsi-ld:TrafficFlowObserved:alpha-1";
const BETA_ID: &str = "urn:ngsi-ld:ParkingSpot:beta-1";

async fn two_cities() -> Node {
    let node = Node::start().await;
    node.create(
        Some("alpha"),
        &json!({
            "id": ALPHA_ID, "type": "TrafficFlowObserved",
            "intensity": {"type": "Property", "value": 12, "observedAt": "2026-01-01T00:00:00Z"}
        }),
    )
    .await;
    node.create(
        Some("beta"),
        &json!({
            "id": BETA_ID, "type": "ParkingSpot",
            "status": {"type": "Property", "value": "free"}
        }),
    )
    .await;
    node
}

async fn get(node: &Node, path: &str, tenant: Option<&str>) -> reqwest::Response {
    node.get(path, tenant).send().await.unwrap()
}

#[tokio::test]
async fn retrieve_sees_only_the_own_tenant() {
    let node = two_cities().await;
    let path = format!("/ngsi-ld/v1/entities/{ALPHA_ID}");
    assert_eq!(get(&node, &path, Some("alpha")).await.status(), 200);
    problem(
        get(&node, &path, Some("beta")).await,
        404,
        "ResourceNotFound",
    )
    .await;
    problem(get(&node, &path, None).await, 404, "ResourceNotFound").await;
}

#[tokio::test]
async fn query_sees_only_the_own_tenant() {
    let node = two_cities().await;
    for (tenant, want) in [
        ("alpha", vec![ALPHA_ID]),
        ("beta", vec![BETA_ID]),
        ("default", vec![]),
    ] {
        let r = get(
            &node,
            "/ngsi-ld/v1/entities?type=TrafficFlowObserved,ParkingSpot&count=true",
            Some(tenant),
        )
        .await;
        if tenant == "default" {
            // No data at all under `default` yet: it does not exist.
            problem(r, 404, "NonexistentTenant").await;
            continue;
        }
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["NGSILD-Results-Count"], "1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(ids(&body), want, "tenant {tenant}");
    }
    // The tenant-less default sees neither.
    let r = get(&node, "/ngsi-ld/v1/entities?type=ParkingSpot", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn types_see_only_the_own_tenant() {
    let node = two_cities().await;
    for (tenant, want) in [("alpha", "TrafficFlowObserved"), ("beta", "ParkingSpot")] {
        let r = get(&node, "/ngsi-ld/v1/types", Some(tenant)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["typeList"], json!([want]), "tenant {tenant}");
        let r = get(&node, "/ngsi-ld/v1/types?details=true", Some(tenant)).await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body.as_array().unwrap().len(), 1, "tenant {tenant}: {body}");
        assert_eq!(body[0]["typeName"], want);
    }
}

#[tokio::test]
async fn temporal_sees_only_the_own_tenant() {
    let node = two_cities().await;
    let path = format!("/ngsi-ld/v1/temporal/entities/{ALPHA_ID}");
    let r = get(&node, &path, Some("alpha")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["intensity"][0]["value"], 12);
    problem(
        get(&node, &path, Some("beta")).await,
        404,
        "ResourceNotFound",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_tenant_is_404_nonexistent_tenant() {
    let node = two_cities().await;
    for path in [
        format!("/ngsi-ld/v1/entities/{ALPHA_ID}"),
        "/ngsi-ld/v1/entities?type=TrafficFlowObserved".to_owned(),
        "/ngsi-ld/v1/types".to_owned(),
        format!("/ngsi-ld/v1/temporal/entities/{ALPHA_ID}"),
    ] {
        let p = problem(
            get(&node, &path, Some("gamma")).await,
            404,
            "NonexistentTenant",
        )
        .await;
        assert!(
            p["detail"].as_str().unwrap().contains("gamma"),
            "{path}: {p}"
        );
    }
}

#[tokio::test]
async fn a_malformed_tenant_name_is_400() {
    let node = two_cities().await;
    let r = node
        .http
        .get(node.url("/ngsi-ld/v1/types"))
        .header(TENANT, "Not A Tenant")
        .send()
        .await
        .unwrap();
    problem(r, 400, "BadRequestData").await;
}

#[tokio::test]
async fn the_same_id_in_two_tenants_are_two_entities() {
    let node = two_cities().await;
    node.create(
        Some("beta"),
        &json!({
            "id": ALPHA_ID, "type": "TrafficFlowObserved",
            "intensity": {"type": "Property", "value": 99}
        }),
    )
    .await;
    let a = node
        .entity(Some("alpha"), ALPHA_ID, "?options=keyValues")
        .await;
    let b = node
        .entity(Some("beta"), ALPHA_ID, "?options=keyValues")
        .await;
    assert_eq!(a["intensity"], 12);
    assert_eq!(b["intensity"], 99);
}
