//! MQTT over TLS: rumqttc clients through the TLS front to the embedded broker.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use polity_broker::EmbeddedBroker;
use polity_tls::{MqttFrontOptions, MqttTlsFront, TlsError};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::io::AsyncReadExt as _;

use crate::support::*;

/// MQTT options for a client that reaches `front` over TLS, trusting `ca`.
fn tls_options(id: &str, front: SocketAddr, ca: &std::path::Path) -> MqttOptions {
    let mut opts = MqttOptions::new(id, "localhost", front.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let client = polity_tls::client_config(Some(ca)).unwrap();
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client)));
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_through_the_tls_front() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let broker = EmbeddedBroker::start(loopback0()).expect("broker");
    let config = polity_tls::mqtt_server_config(&section).unwrap();
    let front = MqttTlsFront::start(loopback0(), broker.local_addr(), config)
        .await
        .unwrap();
    let addr = front.local_addr();
    assert_ne!(addr.port(), 0);

    let (sub, mut sub_loop) = AsyncClient::new(tls_options("tls-sub", addr, &section.cert), 10);
    sub.subscribe("polity/#", QoS::AtLeastOnce).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut publisher = None;
        loop {
            match sub_loop
                .poll()
                .await
                .expect("subscriber connection over TLS")
            {
                Event::Incoming(Packet::SubAck(_)) if publisher.is_none() => {
                    let (p, mut p_loop) =
                        AsyncClient::new(tls_options("tls-pub", addr, &section.cert), 10);
                    p.publish(
                        "polity/adelaide/AirQualityObserved/aq7",
                        QoS::AtLeastOnce,
                        false,
                        b"{\"no2\":21.5}".to_vec(),
                    )
                    .await
                    .unwrap();
                    let task = tokio::spawn(async move { while p_loop.poll().await.is_ok() {} });
                    publisher = Some((p, task));
                }
                Event::Incoming(Packet::Publish(p)) => break (p.topic, p.payload.to_vec()),
                _ => {}
            }
        }
    })
    .await
    .expect("the message crosses the TLS front within 10 s");
    assert_eq!(got.0, "polity/adelaide/AirQualityObserved/aq7");
    assert_eq!(got.1, b"{\"no2\":21.5}");
    let s = front.counters().snapshot();
    assert_eq!((s.handshakes_ok, s.handshakes_failed), (2, 0), "{s:?}");

    // A client that does not trust the certificate never reaches the broker.
    let other = tempfile::tempdir().unwrap();
    let stranger = polity_tls::self_signed(other.path(), &[]).unwrap();
    let (_c, mut bad_loop) = AsyncClient::new(tls_options("tls-bad", addr, &stranger.cert), 10);
    let err = tokio::time::timeout(Duration::from_secs(5), bad_loop.poll())
        .await
        .unwrap()
        .expect_err("untrusted broker certificate");
    assert!(format!("{err:?}").contains("InvalidCertificate"), "{err:?}");
    front.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_refuses_connections_over_its_limit_and_times_out_silent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    // Nothing listens upstream: this test never gets that far.
    let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let opts = MqttFrontOptions {
        max_connections: 1,
        handshake_timeout: Duration::from_millis(300),
        ..MqttFrontOptions::default()
    };
    let front = MqttTlsFront::start_with(
        loopback0(),
        upstream,
        polity_tls::mqtt_server_config(&section).unwrap(),
        opts,
    )
    .await
    .unwrap();
    let counters: Arc<_> = front.counters();

    let mut first = tokio::net::TcpStream::connect(front.local_addr())
        .await
        .unwrap();
    assert!(eventually(|| counters.snapshot().active_connections == 1).await);
    let mut second = tokio::net::TcpStream::connect(front.local_addr())
        .await
        .unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), second.read(&mut b))
        .await
        .expect("the connection over the limit is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert_eq!(counters.snapshot().connections_refused, 1);

    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut b))
        .await
        .expect("the silent connection is closed by the handshake timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(eventually(|| counters.snapshot().handshake_timeouts == 1).await);
}

#[tokio::test]
async fn a_busy_port_names_the_flag_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let taken = tokio::net::TcpListener::bind(loopback0()).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = MqttTlsFront::start(
        addr,
        loopback0(),
        polity_tls::mqtt_server_config(&section).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TlsError::AddrInUse { .. }), "{err:?}");
    assert!(err.to_string().contains("--mqtt-tls-listen"), "{err}");
}
