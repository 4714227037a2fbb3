//! Subscriptions (CIM 009 5.8, 5.11) over real HTTP: CRUD, and notifications delivered
//! to a real HTTP receiver on loopback: filters (`entities`, `watchedAttributes`, `q`),
//! formats, tenant isolation, retries, throttling and periodic notifications.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode as AxStatus},
    routing::post,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::node::{CONTEXT_REL, CORE, Node, TENANT, problem};

const SUBS: &str = "/ngsi-ld/v1/subscriptions";

/// One notification as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Inbox {
    got: Vec<Received>,
    /// Answer these statuses first, in order, then 204.
    script: Vec<u16>,
    /// Requests received, answered or not.
    attempts: usize,
}

/// A notification receiver on loopback.
struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::scripted(vec![]).await
    }

    async fn scripted(script: Vec<u16>) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox {
            script,
            ..Inbox::default()
        }));
        let app =
            axum::Router::new()
                .route(
                    "/notify",
                    post(
                        |State(inbox): State<Arc<Mutex<Inbox>>>,
                         headers: HeaderMap,
                         body: String| async move {
                            let mut i = inbox.lock().unwrap();
                            i.attempts += 1;
                            if !i.script.is_empty() {
                                let s = i.script.remove(0);
                                return AxStatus::from_u16(s).unwrap();
                            }
                            let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                            i.got.push(Received { headers, body });
                            AxStatus::NO_CONTENT
                        },
                    ),
                )
                .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/notify"),
            inbox,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().got.clone()
    }

    fn attempts(&self) -> usize {
        self.inbox.lock().unwrap().attempts
    }

    /// Waits until at least `n` notifications arrived (up to `secs`).
    async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn subscribe(node: &Node, tenant: &str, body: Value) -> String {
    let r = node
        .post_json(SUBS, Some(tenant), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    loc.rsplit('/').next().unwrap().to_owned()
}

async fn get_sub(node: &Node, tenant: &str, id: &str) -> Value {
    let r = node
        .get(&format!("{SUBS}/{id}"), Some(tenant))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn patch_sub(node: &Node, tenant: &str, id: &str, body: Value) -> reqwest::Response {
    node.http
        .patch(node.url(&format!("{SUBS}/{id}")))
        .header(TENANT, tenant)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn delete_sub(node: &Node, tenant: &str, id: &str) -> reqwest::Response {
    node.http
        .delete(node.url(&format!("{SUBS}/{id}")))
        .header(TENANT, tenant)
        .send()
        .await
        .unwrap()
}

fn vehicle(id: &str, speed: f64, colour: &str) -> Value {
    json!({"id": id, "type": "Vehicle",
           "speed": {"type": "Property", "value": speed},
           "colour": {"type": "Property", "value": colour}})
}

async fn upsert(node: &Node, tenant: &str, entities: Value) {
    let r = node.upsert(Some(tenant), &entities).await;
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip_with_spec_errors() {
    let node = Node::start().await;
    let rx = Receiver::start().await;
    let body = json!({"id": "urn:ngsi-ld:Subscription:crud", "type": "Subscription",
        "subscriptionName": "fast vehicles", "entities": [{"type": "Vehicle"}],
        "watchedAttributes": ["speed"], "q": "speed>50",
        "notification": {"format": "keyValues", "endpoint": {"uri": rx.url, "accept": "application/json"}}});
    let id = subscribe(&node, "crud", body.clone()).await;
    assert_eq!(id, "urn:ngsi-ld:Subscription:crud");

    // The same id again: 409 AlreadyExists; in another tenant it is another subscription.
    let r = node
        .post_json(SUBS, Some("crud"), &body)
        .send()
        .await
        .unwrap();
    problem(r, 409, "AlreadyExists").await;

    let s = get_sub(&node, "crud", &id).await;
    assert_eq!(s["type"], "Subscription");
    assert_eq!(s["subscriptionName"], "fast vehicles");
    assert_eq!(s["entities"][0]["type"], "Vehicle");
    assert_eq!(s["watchedAttributes"], json!(["speed"]));
    assert_eq!(s["q"], "speed>50");
    assert_eq!(s["isActive"], true);
    assert_eq!(s["status"], "active");
    assert_eq!(s["notification"]["format"], "keyValues");
    assert_eq!(s["notification"]["timesSent"], 0);

    // Listing, with a count.
    let r = node
        .get(&format!("{SUBS}?count=true"), Some("crud"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["NGSILD-Results-Count"], "1");
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains(CORE) && link.contains(CONTEXT_REL), "{link}");
    let list: Value = r.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Another tenant sees none of it.
    let r = node.get(SUBS, Some("elsewhere")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    let r = node
        .get(&format!("{SUBS}/{id}"), Some("elsewhere"))
        .send()
        .await
        .unwrap();
    problem(r, 404, "ResourceNotFound").await;

    // PATCH changes what it names.
    let r = patch_sub(
        &node,
        "crud",
        &id,
        json!({"isActive": false, "description": "paused for now"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let s = get_sub(&node, "crud", &id).await;
    assert_eq!(s["status"], "paused");
    assert_eq!(s["description"], "paused for now");
    assert_eq!(s["q"], "speed>50");

    // Bad bodies are refused with the spec's error types.
    for (bad, status, kind) in [
        (
            json!({"type": "Subscription", "notification": {"endpoint": {"uri": rx.url}}}),
            400,
            "BadRequestData",
        ),
        (
            json!({"type": "Subscription", "entities": [{"type": "V"}], "q": "speed>>1", "notification": {"endpoint": {"uri": rx.url}}}),
            400,
            "BadRequestData",
        ),
        (
            json!({"type": "Subscription", "entities": [{"type": "V"}], "geoQ": {"geometry": "Point"}, "notification": {"endpoint": {"uri": rx.url}}}),
            422,
            "OperationNotSupported",
        ),
    ] {
        let r = node
            .post_json(SUBS, Some("crud"), &bad)
            .send()
            .await
            .unwrap();
        problem(r, status, kind).await;
    }
    let r = node
        .http
        .post(node.url(SUBS))
        .header(TENANT, "crud")
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(r, 400, "InvalidRequest").await;

    // DELETE, then it is gone.
    let r = delete_sub(&node, "crud", &id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = node
        .get(&format!("{SUBS}/{id}"), Some("crud"))
        .send()
        .await
        .unwrap();
    problem(r, 404, "ResourceNotFound").await;
    let r = delete_sub(&node, "crud", &id).await;
    problem(r, 404, "ResourceNotFound").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_follow_entities_watched_attributes_and_q_in_one_tenant() {
    let node = Node::start().await;
    let rx = Receiver::start().await;
    let id = subscribe(
        &node,
        "metro",
        json!({"type": "Subscription", "entities": [{"type": "Vehicle", "idPattern": "urn:ngsi-ld:Vehicle:bus-.*"}],
            "watchedAttributes": ["speed"], "q": "speed>50",
            "notification": {"format": "keyValues", "attributes": ["speed"], "endpoint": {"uri": rx.url}}}),
    )
    .await;

    upsert(
        &node,
        "metro",
        json!([vehicle("urn:ngsi-ld:Vehicle:bus-1", 60.0, "red")]),
    )
    .await;
    let got = rx.wait_for(1, 10).await;
    assert_eq!(got.len(), 1, "one notification for the fast bus");
    let n = &got[0];
    assert_eq!(n.body["type"], "Notification");
    assert_eq!(n.body["subscriptionId"], id);
    assert!(
        n.body["id"]
            .as_str()
            .unwrap()
            .starts_with("urn:ngsi-ld:Notification:")
    );
    assert!(n.body["notifiedAt"].is_string());
    assert_eq!(
        n.body["data"],
        json!([{"id": "urn:ngsi-ld:Vehicle:bus-1", "type": "Vehicle", "speed": 60}]),
        "keyValues with only the notified attribute"
    );
    assert_eq!(n.headers["ngsild-tenant"], "metro");
    assert_eq!(n.headers["content-type"], "application/json");
    assert!(n.headers["link"].to_str().unwrap().contains(CORE));

    // Not notified: q fails (slow), not watched (colour), not selected (a car), and
    // another tenant's bus.
    upsert(
        &node,
        "metro",
        json!([vehicle("urn:ngsi-ld:Vehicle:bus-1", 40.0, "red")]),
    )
    .await;
    upsert(
        &node,
        "metro",
        json!([{"id": "urn:ngsi-ld:Vehicle:bus-1", "type": "Vehicle", "colour": {"type": "Property", "value": "blue"}}]),
    )
    .await;
    upsert(
        &node,
        "metro",
        json!([vehicle("urn:ngsi-ld:Vehicle:car-1", 90.0, "red")]),
    )
    .await;
    upsert(
        &node,
        "other",
        json!([vehicle("urn:ngsi-ld:Vehicle:bus-9", 99.0, "red")]),
    )
    .await;
    // A change that is notified, to know the ones before it were looked at.
    upsert(
        &node,
        "metro",
        json!([vehicle("urn:ngsi-ld:Vehicle:bus-2", 70.0, "red")]),
    )
    .await;
    let got = rx.wait_for(2, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_after = rx.got();
    assert_eq!(got_after.len(), 2, "{got_after:#?}");
    assert_eq!(got[1].body["data"][0]["id"], "urn:ngsi-ld:Vehicle:bus-2");

    // The status counts deliveries.
    let s = get_sub(&node, "metro", &id).await;
    assert_eq!(s["notification"]["timesSent"], 2, "{s}");
    assert_eq!(s["notification"]["status"], "ok");
    assert!(s["notification"]["lastSuccess"].is_string());
    assert!(s["notification"]["lastNotification"].is_string());

    // Paused: nothing is sent.
    let r = patch_sub(&node, "metro", &id, json!({"isActive": false})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    upsert(
        &node,
        "metro",
        json!([vehicle("urn:ngsi-ld:Vehicle:bus-3", 80.0, "red")]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalized_ld_json_notifications_carry_the_context_in_the_body() {
    let node = Node::start().await;
    let rx = Receiver::start().await;
    subscribe(
        &node,
        "ld",
        json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": rx.url, "accept": "application/ld+json"}}}),
    )
    .await;
    upsert(
        &node,
        "ld",
        json!([vehicle("urn:ngsi-ld:Vehicle:v1", 10.0, "red")]),
    )
    .await;
    let got = rx.wait_for(1, 10).await;
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(n.headers["content-type"], "application/ld+json");
    assert!(!n.headers.contains_key("link"));
    assert_eq!(n.body["@context"], CORE);
    let e = &n.body["data"][0];
    assert_eq!(e["speed"]["type"], "Property");
    assert_eq!(e["speed"]["value"], 10);
    assert_eq!(e["colour"]["value"], "red");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_then_recorded() {
    let node = Node::start().await;
    // Two server errors, then success: delivered on the third attempt.
    let flaky = Receiver::scripted(vec![503, 500]).await;
    let a = subscribe(
        &node,
        "retry",
        json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": flaky.url}}}),
    )
    .await;
    // A client error is not retried: recorded as failed at once.
    let refusing = Receiver::scripted(vec![400, 400, 400, 400]).await;
    let b = subscribe(
        &node,
        "retry",
        json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": refusing.url}}}),
    )
    .await;
    upsert(
        &node,
        "retry",
        json!([vehicle("urn:ngsi-ld:Vehicle:r1", 1.0, "red")]),
    )
    .await;
    assert_eq!(flaky.wait_for(1, 15).await.len(), 1);
    assert_eq!(flaky.attempts(), 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    let sb = loop {
        let s = get_sub(&node, "retry", &b).await;
        if s["notification"]["timesFailed"] == 1 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sb["notification"]["timesFailed"], 1, "{sb}");
    assert_eq!(sb["notification"]["status"], "failed");
    assert!(sb["notification"]["lastFailure"].is_string());
    assert_eq!(refusing.attempts(), 1, "4xx is not retried");
    let sa = get_sub(&node, "retry", &a).await;
    assert_eq!(sa["notification"]["timesSent"], 1);
    assert_eq!(sa["notification"]["timesFailed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_coalesces_changes_into_the_latest_state() {
    let node = Node::start().await;
    let rx = Receiver::start().await;
    subscribe(
        &node,
        "throttle",
        json!({"type": "Subscription", "entities": [{"type": "Vehicle"}], "throttling": 2,
            "notification": {"format": "keyValues", "endpoint": {"uri": rx.url}}}),
    )
    .await;
    let started = Instant::now();
    upsert(
        &node,
        "throttle",
        json!([vehicle("urn:ngsi-ld:Vehicle:t1", 1.0, "red")]),
    )
    .await;
    assert_eq!(rx.wait_for(1, 10).await.len(), 1);
    for speed in [2.0, 3.0, 4.0] {
        upsert(
            &node,
            "throttle",
            json!([vehicle("urn:ngsi-ld:Vehicle:t1", speed, "red")]),
        )
        .await;
    }
    let got = rx.wait_for(2, 10).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "the second notification waited out the throttling period"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = rx.got();
    assert_eq!(
        got_after.len(),
        2,
        "three changes in the period give one notification"
    );
    assert_eq!(
        got[1].body["data"][0]["speed"], 4.0,
        "with the latest state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_subscriptions_notify_every_interval() {
    let node = Node::start().await;
    let rx = Receiver::start().await;
    upsert(
        &node,
        "periodic",
        json!([
            vehicle("urn:ngsi-ld:Vehicle:p1", 5.0, "red"),
            vehicle("urn:ngsi-ld:Vehicle:p2", 6.0, "red")
        ]),
    )
    .await;
    subscribe(
        &node,
        "periodic",
        json!({"type": "Subscription", "entities": [{"type": "Vehicle"}], "timeInterval": 1,
            "notification": {"format": "keyValues", "endpoint": {"uri": rx.url}}}),
    )
    .await;
    let got = rx.wait_for(3, 10).await;
    assert!(got.len() >= 3, "{}", got.len());
    for n in &got {
        assert_eq!(
            n.body["data"].as_array().unwrap().len(),
            2,
            "every entity, every time"
        );
    }
}
