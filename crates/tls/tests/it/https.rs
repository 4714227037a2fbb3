//! HTTPS: a router served over TLS with the self-signed demo certificate.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use polity_tls::HttpsOptions;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_self_signed_certificate_gets_200() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let node = https_node(&section, HttpsOptions::default()).await;

    let tls = tls_connect(node.addr, https_client(Some(&section.cert)))
        .await
        .expect("handshake with the trusted self-signed certificate");
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let local = tls.get_ref().0.local_addr().unwrap();
    let mut http = Http::over(tls).await.unwrap();
    assert_eq!(
        http.get("/hello").await.unwrap(),
        (StatusCode::OK, "hello".to_owned())
    );
    // Keep-alive: a second request on the same connection, and ConnectInfo works.
    assert_eq!(
        http.get("/peer").await.unwrap(),
        (StatusCode::OK, local.to_string())
    );
    let s = node.counters.snapshot();
    assert_eq!((s.handshakes_ok, s.handshakes_failed), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_fails_and_a_silent_client_stalls_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let opts = HttpsOptions {
        // Long enough that a loop blocked on the silent handshake would visibly stall
        // the real client below, short enough for a quick test.
        handshake_timeout: Duration::from_secs(2),
        ..HttpsOptions::default()
    };
    let node = https_node(&section, opts).await;

    // A silent client holds a connection in the handshake...
    let mut silent = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    // ...and a plain-HTTP client speaks the wrong protocol.
    let mut plain = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    plain
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();

    // Meanwhile a real client is served at once.
    let started = Instant::now();
    let got = get_once(node.addr, https_client(Some(&section.cert)), "/hello").await;
    assert_eq!(got, Ok((StatusCode::OK, "hello".to_owned())));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "served in {:?}, behind the stalled connections",
        started.elapsed()
    );

    // The plain client gets no HTTP answer: at most a TLS alert, then the close.
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf))
        .await
        .expect("the server closes the plain connection");
    assert!(!buf.starts_with(b"HTTP/"), "got an HTTP answer: {buf:?}");

    // The silent client is dropped after the handshake timeout.
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut one))
        .await
        .expect("the silent connection is closed by the timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    assert!(
        eventually(|| {
            let s = node.counters.snapshot();
            s.handshakes_ok == 1 && s.handshakes_failed == 2 && s.handshake_timeouts == 1
        })
        .await,
        "{:?}",
        node.counters.snapshot()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_certificate_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let node = https_node(&section, HttpsOptions::default()).await;

    // Another node's certificate, and the public web roots: neither vouches for it.
    let other = tempfile::tempdir().unwrap();
    let other_cert = polity_tls::self_signed(other.path(), &[]).unwrap().cert;
    for client in [https_client(Some(&other_cert)), https_client(None)] {
        let err = tls_connect(node.addr, client)
            .await
            .expect_err("an untrusted certificate must fail the handshake");
        // UnknownIssuer, or BadSignature when the trusted certificate has the same
        // subject (two demo nodes' certificates do).
        let msg = err.to_string();
        assert!(msg.contains("invalid peer certificate"), "{msg}");
    }
    assert!(
        eventually(|| node.counters.snapshot().handshakes_failed == 2).await,
        "{:?}",
        node.counters.snapshot()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_then_stops_accepting() {
    let dir = tempfile::tempdir().unwrap();
    let section = polity_tls::self_signed(dir.path(), &[]).unwrap();
    let node = https_node(&section, HttpsOptions::default()).await;
    let client = https_client(Some(&section.cert));

    // An idle keep-alive connection must not hold shutdown up.
    let mut idle = Http::over(tls_connect(node.addr, client.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(idle.get("/hello").await.unwrap().0, StatusCode::OK);

    let mut busy = Http::over(tls_connect(node.addr, client.clone()).await.unwrap())
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move { busy.get("/slow").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.stop.send(true).unwrap();

    assert_eq!(
        in_flight.await.unwrap(),
        Ok((StatusCode::OK, "done".to_owned())),
        "the request in flight completes"
    );
    tokio::time::timeout(Duration::from_secs(5), node.task)
        .await
        .expect("the server returns once connections are closed")
        .unwrap();
    assert!(
        get_once(node.addr, client, "/hello").await.is_err(),
        "no new connections after shutdown"
    );
    assert!(idle.get("/hello").await.is_err(), "idle connection closed");
}
