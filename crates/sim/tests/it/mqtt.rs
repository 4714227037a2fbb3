//! The MQTT sender against a real Mosquitto (opt-in: `POLITY_TEST_MOSQUITTO=1`).

use std::{sync::Arc, time::Duration};

use polity_sim::{SenderStats, send::mqtt_sender};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::{city, fast, wait_for};

const BROKER: &str = "127.0.0.1:1883";

#[tokio::test]
async fn mqtt_publishes_are_pubacked_and_decode() {
    if std::env::var("POLITY_TEST_MOSQUITTO").as_deref() != Ok("1") {
        eprintln!("skipping: set POLITY_TEST_MOSQUITTO=1 to run against Mosquitto at {BROKER}");
        return;
    }
    // A subscriber to check what the broker delivers.
    let mut opts = MqttOptions::new("polity-sim-it-sub", "127.0.0.1", 1883);
    opts.set_keep_alive(Duration::from_secs(10));
    let (sub, mut events) = AsyncClient::new(opts, 100);
    sub.subscribe("polity/melbourne/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut got) = mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send((String::new(), Vec::new()));
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber lost Mosquitto: {e}"),
            }
        }
    });
    let (topic, _) = tokio::time::timeout(Duration::from_secs(5), got.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(topic.is_empty(), "first event is the SUBACK");

    let stats = Arc::new(SenderStats::default());
    let (stop, rx) = watch::channel(false);
    let broker = BROKER.parse().unwrap();
    let task = tokio::spawn(mqtt_sender(
        broker,
        city(1, 30, 0.0),
        fast(),
        stats.clone(),
        rx,
    ));
    let s = wait_for(&stats, Duration::from_secs(10), |s| s.acked >= 180).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("sender stops promptly")
        .unwrap();
    assert!(s.acked >= 180 && s.errors == 0, "{s:?}");

    let mut n = 0;
    while let Ok(Some((topic, payload))) =
        tokio::time::timeout(Duration::from_millis(500), got.recv()).await
    {
        let j: Value = serde_json::from_slice(&payload).expect("payload is JSON");
        let id = j["id"].as_str().unwrap();
        assert!(id.starts_with(&format!(
            "urn:ngsi-ld:{}:melbourne-",
            j["type"].as_str().unwrap()
        )));
        let device = id.rsplit(':').next().unwrap();
        assert_eq!(
            topic,
            format!("polity/melbourne/{}/{device}", j["type"].as_str().unwrap())
        );
        if j["type"] == "AirQualityObserved" {
            assert_eq!(j["temperature"]["unitCode"], "FAH");
        }
        n += 1;
        if n >= 180 {
            break;
        }
    }
    assert!(n >= 180, "subscriber saw {n} messages");
    listener.abort();
}
