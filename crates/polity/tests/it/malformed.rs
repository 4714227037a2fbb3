//! Malformed input on every source is a clear error, counted as a dead letter, and costs
//! nothing else: good messages interleaved with the bad ones on HTTP, CoAP and MQTT are
//! all stored, the node stays healthy and does not panic.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use coap_lite::{ContentFormat, MessageClass, ResponseType};
use polity_model::{Pack, Record};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::common::{
    CoapClient, client_as, free_tcp_port, free_udp_port, get_json, metric, metrics, serve,
};

const TENANT: &str = "bad";
const INVALID_REQUEST: &str = "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest";
const BAD_REQUEST_DATA: &str = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData";

/// Sends a POST with a raw JSON body; returns status and body.
async fn post(http: &reqwest::Client, url: &str, body: &[u8]) -> (u16, Value) {
    let r = http
        .post(url)
        .header("NGSILD-Tenant", TENANT)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts `body` is a ProblemDetails of `ty` with status 400.
fn assert_problem(what: &str, status: u16, body: &Value, ty: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["type"], ty, "{what}: {body}");
    assert_eq!(body["status"], 400, "{what}: {body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: no title: {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: no detail: {body}"
    );
}

fn good_entity(id: &str, n: u32) -> Value {
    json!({"id": id, "type": "Thing", "n": {"type": "Property", "value": n}})
}

fn good_pack(id: &str, n: u32) -> Vec<u8> {
    Pack(vec![Record {
        bn: Some(format!("{id}:")),
        n: Some("n".into()),
        v: Some(f64::from(n)),
        ..Record::default()
    }])
    .to_cbor()
}

/// An MQTT publisher that counts PUBACKs, so a test knows the broker has each message.
struct Publisher {
    client: AsyncClient,
    acks: Arc<AtomicUsize>,
    sent: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    fn connect(broker: std::net::SocketAddr) -> Publisher {
        let mut o = MqttOptions::new("it-malformed", broker.ip().to_string(), broker.port());
        o.set_keep_alive(Duration::from_secs(10));
        let (client, mut events) = AsyncClient::new(o, 16);
        let acks = Arc::new(AtomicUsize::new(0));
        let a = acks.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Publisher {
            client,
            acks,
            sent: 0,
            task,
        }
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue MQTT publish");
        self.sent += 1;
        let end = Instant::now() + Duration::from_secs(10);
        while self.acks.load(SeqCst) < self.sent {
            assert!(Instant::now() < end, "the broker did not PUBACK");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `GET /entities/{id}` until it exists; returns its `n` value.
async fn wait_entity(http: &reqwest::Client, base: &str, id: &str, end: Instant) -> Value {
    loop {
        let (status, body) =
            get_json(http, &format!("{base}/ngsi-ld/v1/entities/{id}"), TENANT).await;
        if status == 200 {
            return body["n"]["value"].clone();
        }
        assert!(Instant::now() < end, "{id} was not stored: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dead_letters(text: &str, source: &str) -> f64 {
    metric(
        text,
        "polity_source_dead_letters_total",
        &format!("source=\"{source}\""),
    )
    .unwrap_or_else(|| panic!("no dead-letter counter for source {source}:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_a_clear_counted_error_and_loses_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = free_tcp_port();
    let config = format!(
        r#"[node]
http = "127.0.0.1:0"
data_dir = "{}"

[broker]
listen = "127.0.0.1:{broker}"

[sources.c]
type = "coap"
listen = "127.0.0.1:{}"
tenant = "{TENANT}"

[sources.m]
type = "mqtt"
broker = "127.0.0.1:{broker}"
topics = ["t/#"]
tenant = "{TENANT}"
format = "json"
"#,
        dir.path().join("data").display(),
        free_udp_port(),
    );
    let node = serve(&config, dir.path(), "malformed").await;
    let base = node.base.clone();
    // The city's gateway writes and reads; the operator reads the metrics.
    let data = dir.path().join("data");
    let http = client_as(&data, &format!("app:gateway:{TENANT}"));
    let ops = client_as(&data, "operator");
    let end = Instant::now() + Duration::from_secs(20);

    // MQTT: wait until the source is subscribed (a warm-up message gets through).
    let mut mqtt = Publisher::connect(node.mqtt.expect("broker address"));
    let warm = "urn:ngsi-ld:Thing:m-warmup";
    let mut k = 0;
    loop {
        k += 1;
        mqtt.publish(
            "t/warmup",
            json!({"id": warm, "type": "Thing", "n": k}).to_string(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, _) =
            get_json(&http, &format!("{base}/ngsi-ld/v1/entities/{warm}"), TENANT).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the MQTT source never received a message"
        );
    }

    let before = metrics(&ops, &base).await;
    let upsert = format!("{base}/ngsi-ld/v1/entityOperations/upsert");
    let create = format!("{base}/ngsi-ld/v1/entities");
    let mut goods: Vec<(String, u32)> = Vec::new();
    let mut good = |prefix: &str| {
        let n = goods.len() as u32 + 1;
        let id = format!("urn:ngsi-ld:Thing:{prefix}-good-{n}");
        goods.push((id.clone(), n));
        (id, n)
    };

    // ---- HTTP ----
    let http_good = async |id: &str, n: u32| {
        let body = serde_json::to_vec(&json!([good_entity(id, n)])).expect("encode");
        let (status, b) = post(&http, &upsert, &body).await;
        assert!(
            matches!(status, 201 | 204),
            "good upsert {id}: {status} {b}"
        );
    };
    let (id, n) = good("h");
    http_good(&id, n).await;
    let (status, body) = post(&http, &upsert, b"[{\"id\": \"urn:ngsi-ld:Thing:x\",").await;
    assert_problem("invalid JSON (upsert)", status, &body, INVALID_REQUEST);
    let (status, body) = post(&http, &create, b"{not json").await;
    assert_problem("invalid JSON (create)", status, &body, INVALID_REQUEST);
    let (id, n) = good("h");
    http_good(&id, n).await;
    let no_id = json!({"type": "Thing", "n": {"type": "Property", "value": 1}});
    let (status, body) = post(&http, &create, no_id.to_string().as_bytes()).await;
    assert_problem("entity without id", status, &body, BAD_REQUEST_DATA);
    let (id, n) = good("h");
    http_good(&id, n).await;
    let not_uri =
        json!({"id": "not a uri", "type": "Thing", "n": {"type": "Property", "value": 1}});
    let (status, body) = post(&http, &create, not_uri.to_string().as_bytes()).await;
    assert_problem("id that is not a URI", status, &body, BAD_REQUEST_DATA);
    // A batch with one good and one bad entity: 207, the good one stored.
    let (id, n) = good("h");
    let batch = json!([good_entity(&id, n), {"type": "Thing", "n": 1}]);
    let (status, body) = post(&http, &upsert, batch.to_string().as_bytes()).await;
    assert_eq!(status, 207, "mixed batch: {body}");
    assert_eq!(body["success"], json!([id]), "mixed batch: {body}");
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "mixed batch: {body}");
    assert_eq!(errors[0]["error"]["type"], BAD_REQUEST_DATA, "{body}");
    let (id, n) = good("h");
    http_good(&id, n).await;
    let http_bad = 5.0;

    // ---- CoAP ----
    let mut coap = CoapClient::connect(node.coap.expect("CoAP address")).await;
    let wait = Duration::from_secs(2);
    let cbor = Some(ContentFormat::ApplicationSenmlCBOR);
    let coap_good = async |coap: &mut CoapClient, id: &str, n: u32| {
        let r = coap
            .post("senml", cbor, good_pack(id, n), 3, wait)
            .await
            .unwrap_or_else(|| panic!("no CoAP answer for good pack {id}"));
        assert!(
            crate::common::is_changed(&r),
            "good pack {id}: {:?} {}",
            r.header.code,
            String::from_utf8_lossy(&r.payload)
        );
    };
    let (id, n) = good("c");
    coap_good(&mut coap, &id, n).await;
    for (what, payload) in [
        ("garbage CBOR", vec![0xff, 0xfe, 0x1c, 0x00, 0x9f]),
        ("CBOR that is not a pack", vec![0xa1, 0x01, 0x02]),
        ("SenML with an unknown unit", {
            Pack(vec![Record {
                n: Some("urn:ngsi-ld:Thing:c-x:n".into()),
                u: Some("furlongs".into()),
                v: Some(1.0),
                ..Record::default()
            }])
            .to_cbor()
        }),
    ] {
        let r = coap
            .post("senml", cbor, payload, 3, wait)
            .await
            .unwrap_or_else(|| panic!("no CoAP answer for {what}"));
        assert_eq!(
            r.header.code,
            MessageClass::Response(ResponseType::BadRequest),
            "{what}: {}",
            String::from_utf8_lossy(&r.payload)
        );
        let diag = std::str::from_utf8(&r.payload).expect("diagnostic payload is UTF-8");
        assert!(
            !diag.trim().is_empty(),
            "{what}: 4.00 without a diagnostic payload"
        );
        let (id, n) = good("c");
        coap_good(&mut coap, &id, n).await;
    }
    // A datagram that is not CoAP at all (version 0).
    coap.send_raw(&[0x00, 0x01, 0x02, 0x03]).await;
    let (id, n) = good("c");
    coap_good(&mut coap, &id, n).await;
    let coap_bad = 4.0;

    // ---- MQTT ----
    let (id, n) = good("m");
    mqtt.publish("t/d1", good_entity_mqtt(&id, n)).await;
    for bad in [
        "{\"id\": \"urn:ngsi-ld:Thing:m-x\", \"n\": ",
        "{\"type\": \"Thing\", \"n\": 1}",
        "[]",
        "\u{0}\u{1}binary",
    ] {
        mqtt.publish("t/d1", bad).await;
        let (id, n) = good("m");
        mqtt.publish("t/d1", good_entity_mqtt(&id, n)).await;
    }
    let mqtt_bad = 4.0;

    // Every good message on every path is stored.
    for (id, n) in &goods {
        let v = wait_entity(&http, &base, id, end).await;
        assert_eq!(v, json!(n), "{id}");
    }

    // Each rejected message was counted as a dead letter of its source.
    let expect = [("http-ngsi-ld", http_bad), ("c", coap_bad), ("m", mqtt_bad)];
    let after = loop {
        let after = metrics(&ops, &base).await;
        let done = expect
            .iter()
            .all(|(s, n)| dead_letters(&after, s) - dead_letters(&before, s) >= *n);
        if done || Instant::now() > end {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (source, n) in expect {
        let delta = dead_letters(&after, source) - dead_letters(&before, source);
        assert_eq!(
            delta, n,
            "dead letters of source {source} went up by {delta}, expected {n}"
        );
    }
    let kept_before = metric(&before, "polity_dead_letters", "").unwrap_or(0.0);
    let kept_after = metric(&after, "polity_dead_letters", "").unwrap_or(0.0);
    assert_eq!(
        kept_after - kept_before,
        http_bad + coap_bad + mqtt_bad,
        "dead letters kept in the store"
    );
    // Every rejection above was for tenant `bad`, whichever source took it.
    let by_tenant = |t: &str| {
        metric(
            t,
            "polity_tenant_dead_letters_total",
            &format!("tenant=\"{TENANT}\""),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        by_tenant(&after) - by_tenant(&before),
        http_bad + coap_bad + mqtt_bad,
        "dead letters per tenant"
    );

    let (status, health) = get_json(&http, &format!("{base}/health"), TENANT).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
    node.proc.assert_no_panic();
    println!(
        "malformed input: {} good messages stored, dead letters http={http_bad} coap={coap_bad} mqtt={mqtt_bad}",
        goods.len()
    );
}

fn good_entity_mqtt(id: &str, n: u32) -> String {
    json!({"id": id, "type": "Thing", "n": n}).to_string()
}
