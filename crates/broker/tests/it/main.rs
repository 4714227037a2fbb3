//! Integration tests of the embedded broker: real MQTT clients through a real listener.

use std::{net::SocketAddr, time::Duration};

use polity_broker::{BrokerError, EmbeddedBroker};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_through_the_embedded_broker() {
    let broker = EmbeddedBroker::start(loopback0()).expect("broker starts on a free port");
    let addr = broker.local_addr();
    assert_ne!(addr.port(), 0, "port 0 must be resolved to the real port");

    let mut sub_opts = MqttOptions::new("it-sub", addr.ip().to_string(), addr.port());
    sub_opts.set_keep_alive(Duration::from_secs(5));
    let (sub, mut sub_loop) = AsyncClient::new(sub_opts, 10);
    sub.subscribe("polity/#", QoS::AtLeastOnce).await.unwrap();

    // Wait for the SUBACK before publishing, or the message may precede the subscription.
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut subscribed = false;
        let mut publisher = None;
        loop {
            match sub_loop.poll().await.expect("subscriber connection") {
                Event::Incoming(Packet::SubAck(_)) if !subscribed => {
                    subscribed = true;
                    let mut pub_opts =
                        MqttOptions::new("it-pub", addr.ip().to_string(), addr.port());
                    pub_opts.set_keep_alive(Duration::from_secs(5));
                    let (pub_client, mut pub_loop) = AsyncClient::new(pub_opts, 10);
                    pub_client
                        .publish(
                            "polity/melbourne/TrafficFlowObserved/dev42",
                            QoS::AtLeastOnce,
                            false,
                            b"{\"intensity\":12}".to_vec(),
                        )
                        .await
                        .unwrap();
                    publisher = Some((
                        pub_client,
                        tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} }),
                    ));
                }
                Event::Incoming(Packet::Publish(p)) => {
                    break (p.topic, p.payload.to_vec(), publisher);
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the message arrives within 10 s");
    assert_eq!(got.0, "polity/melbourne/TrafficFlowObserved/dev42");
    assert_eq!(got.1, b"{\"intensity\":12}");
    if let Some((_, task)) = got.2 {
        task.abort();
    }
}

#[test]
fn a_busy_port_names_the_flag_to_change() {
    let taken = std::net::TcpListener::bind(loopback0()).unwrap();
    let addr = taken.local_addr().unwrap();
    let err = EmbeddedBroker::start(addr).unwrap_err();
    assert!(matches!(err, BrokerError::AddrInUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("Mosquitto"), "{msg}");
    assert!(msg.contains("--mqtt-listen ADDR"), "{msg}");
}
