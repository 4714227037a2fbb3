//! The MQTT source end to end: the embedded broker (and, opt-in, a real Mosquitto), a
//! real MQTT publisher and a real FjallStore.

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use polity_broker::EmbeddedBroker;
use polity_ingest::sources::{MqttClientTls, MqttSource, MqttSourceConfig, SourceContext};
use polity_model::{UnitCode, Value};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::watch;

use crate::node::{Node, approx, attr};

/// The device JSON example of the decoder docs: mph is normalized to km/h.
const TRAFFIC: &str = r#"{"id": "urn:ngsi-ld:TrafficFlowObserved:melbourne-42", "type": "TrafficFlowObserved",
  "observedAt": "2026-11-25T01:10:36.123Z", "location": {"type":"Point","coordinates":[144.96,-37.81]},
  "intensity": 12, "averageVehicleSpeed": {"value": 31.2, "unitCode": "HM"}, "laneDirection": "forward"}"#;

fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A publisher whose event loop runs on its own task.
async fn publisher(host: &str, port: u16) -> AsyncClient {
    let mut opts = MqttOptions::new(unique("it-pub"), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

/// Runs a source, publishes the traffic example and a malformed payload under `root`,
/// and checks both end up durable: one as an entity, one as a dead letter.
async fn round_trip(host: &str, port: u16, root: &str) {
    let node = Node::start();
    let name = "melbourne-mqtt";
    let config = MqttSourceConfig {
        broker: format!("{host}:{port}"),
        client_id: Some(unique("polity-it")),
        topics: vec![format!("{root}/#")],
        tenant_from_topic_level: Some(1),
        ..Default::default()
    };
    let ctx = SourceContext {
        name: name.into(),
        ingest: node.ingest.clone(),
        metrics: node.metrics.clone(),
    };
    let source = MqttSource::new(config, ctx).expect("valid config");
    let connected = source.connected();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(source.run(rx));
    Node::eventually(10, || connected.load(Relaxed).then_some(()))
        .await
        .expect("the source connects");

    let client = publisher(host, port).await;
    let topic = format!("{root}/melbourne/TrafficFlowObserved/dev42");
    // The subscription may not be in place yet: republish (idempotent) until it lands.
    let mut entity = None;
    for _ in 0..40 {
        client
            .publish(&topic, QoS::AtLeastOnce, false, TRAFFIC.as_bytes().to_vec())
            .await
            .unwrap();
        entity = Node::eventually(1, || {
            node.entity("melbourne", "urn:ngsi-ld:TrafficFlowObserved:melbourne-42")
        })
        .await;
        if entity.is_some() {
            break;
        }
    }
    let e = entity.expect("the entity is stored");
    assert_eq!(attr(&e, "intensity").value, Value::Number(12.0));
    let speed = attr(&e, "averageVehicleSpeed");
    assert_eq!(speed.unit, Some(UnitCode::new("KMH").unwrap()));
    assert!(
        approx(speed.value.as_f64().unwrap(), 31.2 * 1.609344),
        "{:?}",
        speed.value
    );
    assert_eq!(
        attr(&e, "laneDirection").value,
        Value::Text("forward".into())
    );
    assert!(matches!(attr(&e, "location").value, Value::Geo(_)));

    // A malformed payload is kept with its reason (and acknowledged).
    client
        .publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            b"{\"id\": \"urn:ngsi-ld:X:1\", \"intensity\": tru".to_vec(),
        )
        .await
        .unwrap();
    let letters = Node::eventually(10, || {
        let l = node.dead_letters(name);
        (!l.is_empty()).then_some(l)
    })
    .await
    .expect("the malformed payload is dead-lettered");
    assert!(
        letters[0].reason.contains("not valid JSON") && letters[0].reason.contains(&topic),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        letters[0].tenant.as_ref().map(|t| t.as_str()),
        Some("melbourne")
    );

    // A topic whose tenant level is not a tenant name is kept too, naming the level.
    let bad_topic = format!("{root}/Melbourne City/TrafficFlowObserved/dev42");
    client
        .publish(
            &bad_topic,
            QoS::AtLeastOnce,
            false,
            TRAFFIC.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    let letters = Node::eventually(10, || {
        let l = node.dead_letters(name);
        (l.len() >= 2).then_some(l)
    })
    .await
    .expect("the message with a bad tenant is dead-lettered");
    assert!(
        letters[1].reason.contains("level 1"),
        "{}",
        letters[1].reason
    );
    assert!(letters[1].tenant.is_none());
    let c = node.metrics.get(name).unwrap();
    assert!(
        c.committed.load(Relaxed) >= 4,
        "4 attributes per traffic message"
    );
    assert!(c.dead_letters.load(Relaxed) >= 1);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the source stops on shutdown")
        .unwrap();
    assert!(!connected.load(Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_json_through_the_embedded_broker() {
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).expect("broker starts");
    let addr = broker.local_addr();
    round_trip(&addr.ip().to_string(), addr.port(), "polity").await;
}

/// A source configured for TLS reaches the broker through the TLS front when it trusts
/// the broker's certificate, and never connects (nor falls back to plain TCP) when it
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_connects_over_tls_and_refuses_an_untrusted_broker() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).expect("broker starts");
    let front = polity_tls::MqttTlsFront::start(
        "127.0.0.1:0".parse().unwrap(),
        broker.local_addr(),
        polity_tls::mqtt_server_config(&section).unwrap(),
    )
    .await
    .unwrap();
    let node = Node::start();
    let start = |name: &str, ca: &std::path::Path| {
        let config = MqttSourceConfig {
            // The certificate names `localhost`, so the source must use that name.
            broker: format!("localhost:{}", front.local_addr().port()),
            client_id: Some(unique("polity-it-tls")),
            topics: vec!["tls/#".into()],
            tenant_from_topic_level: Some(1),
            tls: Some(MqttClientTls {
                ca: Some(ca.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ctx = SourceContext {
            name: name.into(),
            ingest: node.ingest.clone(),
            metrics: node.metrics.clone(),
        };
        let source = MqttSource::new(config, ctx)
            .expect("valid config")
            .with_tls(polity_tls::client_config(Some(ca)).unwrap());
        let connected = source.connected();
        let (stop, rx) = watch::channel(false);
        (tokio::spawn(source.run(rx)), stop, connected)
    };

    // Another self-signed certificate is not the broker's: the handshake fails.
    let other = tempfile::tempdir().unwrap();
    let stranger = polity_tls::self_signed(other.path(), &[]).unwrap();
    let (bad_task, bad_stop, bad_connected) = start("untrusting", &stranger.cert);

    let (task, stop, connected) = start("trusting", &section.cert);
    Node::eventually(10, || connected.load(Relaxed).then_some(()))
        .await
        .expect("the source connects over TLS");
    let addr = broker.local_addr();
    let client = publisher(&addr.ip().to_string(), addr.port()).await;
    let probe = r#"{"id":"urn:ngsi-ld:ParkingSpot:tls-1","type":"ParkingSpot","status":"free"}"#;
    let mut stored = None;
    for _ in 0..40 {
        client
            .publish("tls/perth/ParkingSpot/1", QoS::AtLeastOnce, false, probe)
            .await
            .unwrap();
        stored =
            Node::eventually(1, || node.entity("perth", "urn:ngsi-ld:ParkingSpot:tls-1")).await;
        if stored.is_some() {
            break;
        }
    }
    assert!(stored.is_some(), "the message arrives over TLS");
    assert!(
        !bad_connected.load(Relaxed),
        "a source must not connect to a broker whose certificate it does not trust"
    );
    assert!(
        front.counters().snapshot().handshakes_failed >= 1,
        "the untrusting source's handshakes fail"
    );
    for (t, s) in [(task, stop), (bad_task, bad_stop)] {
        s.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("the source stops on shutdown")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_json_through_mosquitto() {
    if std::env::var("POLITY_TEST_MOSQUITTO").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set POLITY_TEST_MOSQUITTO=1 to run against the Mosquitto at 127.0.0.1:1883"
        );
        return;
    }
    round_trip("127.0.0.1", 1883, &unique("polity-it")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_without_a_tenant_rule_is_refused() {
    let node = Node::start();
    let ctx = SourceContext {
        name: "m".into(),
        ingest: node.ingest.clone(),
        metrics: node.metrics.clone(),
    };
    let err = MqttSource::new(MqttSourceConfig::default(), ctx)
        .err()
        .expect("no tenant rule");
    assert!(err.to_string().contains("tenant_from_topic_level"), "{err}");
}

/// Messages published while the source is down wait in its persistent session and are
/// delivered when it reconnects with the same client id: at-least-once across restarts.
async fn redelivery(host: &str, port: u16, root: &str) {
    let node = Node::start();
    let name = "hobart-mqtt";
    let config = MqttSourceConfig {
        broker: format!("{host}:{port}"),
        client_id: Some(unique("polity-it-session")),
        topics: vec![format!("{root}/#")],
        tenant_from_topic_level: Some(1),
        ..Default::default()
    };
    let start = |config: MqttSourceConfig| {
        let ctx = SourceContext {
            name: name.into(),
            ingest: node.ingest.clone(),
            metrics: node.metrics.clone(),
        };
        let source = MqttSource::new(config, ctx).expect("valid config");
        let connected = source.connected();
        let (stop, rx) = watch::channel(false);
        (tokio::spawn(source.run(rx)), stop, connected)
    };
    let client = publisher(host, port).await;
    let probe = r#"{"id":"urn:ngsi-ld:ParkingSpot:hobart-1","type":"ParkingSpot","status":"free"}"#;
    let (task, stop, connected) = start(config.clone());
    Node::eventually(10, || connected.load(Relaxed).then_some(()))
        .await
        .expect("the source connects");
    let mut stored = None;
    for _ in 0..40 {
        client
            .publish(
                format!("{root}/hobart/ParkingSpot/1"),
                QoS::AtLeastOnce,
                false,
                probe,
            )
            .await
            .unwrap();
        stored = Node::eventually(1, || {
            node.entity("hobart", "urn:ngsi-ld:ParkingSpot:hobart-1")
        })
        .await;
        if stored.is_some() {
            break;
        }
    }
    stored.expect("the subscription is in place");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();

    let while_down =
        r#"{"id":"urn:ngsi-ld:ParkingSpot:hobart-2","type":"ParkingSpot","status":"occupied"}"#;
    client
        .publish(
            format!("{root}/hobart/ParkingSpot/2"),
            QoS::AtLeastOnce,
            false,
            while_down,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        node.entity("hobart", "urn:ngsi-ld:ParkingSpot:hobart-2")
            .is_none(),
        "nobody is consuming yet"
    );

    let (task, stop, _) = start(config);
    let e = Node::eventually(15, || {
        node.entity("hobart", "urn:ngsi-ld:ParkingSpot:hobart-2")
    })
    .await
    .expect("the broker delivers what was published while the source was down");
    assert_eq!(attr(&e, "status").value, Value::Text("occupied".into()));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_keeps_the_session_across_restarts() {
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).expect("broker starts");
    let addr = broker.local_addr();
    redelivery(&addr.ip().to_string(), addr.port(), "polity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_keeps_the_session_across_restarts() {
    if std::env::var("POLITY_TEST_MOSQUITTO").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set POLITY_TEST_MOSQUITTO=1 to run against the Mosquitto at 127.0.0.1:1883"
        );
        return;
    }
    redelivery("127.0.0.1", 1883, &unique("polity-it")).await;
}
