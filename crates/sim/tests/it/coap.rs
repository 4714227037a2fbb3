//! The CoAP sender against a UDP peer that decodes and acknowledges.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use polity_model::{Timestamp, senml::Pack};
use polity_sim::{SenderStats, send::coap_sender};
use tokio::{net::UdpSocket, sync::watch};

use crate::{city, fast, wait_for};

#[derive(Default)]
struct Seen {
    decoded: Vec<Pack>,
    rejected: usize,
    dropped_once: HashSet<u16>,
}

/// Answers each confirmable POST with a piggybacked 2.04, or 4.00 when the SenML does
/// not decode. When `drop_every` is `n > 0`, ignores the first copy of every n-th
/// message id so the sender must retransmit.
async fn peer(drop_every: u16) -> (std::net::SocketAddr, Arc<Mutex<Seen>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let req = Packet::from_bytes(&buf[..n]).expect("sender sends valid CoAP");
            assert_eq!(req.header.get_type(), MessageType::Confirmable);
            assert_eq!(req.header.code, MessageClass::Request(RequestType::Post));
            let path: Vec<_> = req
                .get_option(CoapOption::UriPath)
                .unwrap()
                .iter()
                .cloned()
                .collect();
            assert_eq!(path, vec![b"senml".to_vec()]);
            let query: Vec<_> = req
                .get_option(CoapOption::UriQuery)
                .unwrap()
                .iter()
                .cloned()
                .collect();
            assert_eq!(query, vec![b"t=adelaide".to_vec()]);
            assert_eq!(
                req.get_content_format(),
                Some(ContentFormat::ApplicationSenmlCBOR)
            );
            let mid = req.header.message_id;
            if drop_every > 0
                && mid.is_multiple_of(drop_every)
                && s.lock().unwrap().dropped_once.insert(mid)
            {
                continue;
            }
            let mut resp = Packet::new();
            resp.header.set_type(MessageType::Acknowledgement);
            resp.header.message_id = mid;
            resp.set_token(req.get_token().to_vec());
            match Pack::from_cbor(&req.payload).and_then(|p| p.resolve(Timestamp::now()).map(|_| p))
            {
                Ok(p) => {
                    s.lock().unwrap().decoded.push(p);
                    resp.header.code = MessageClass::Response(ResponseType::Changed);
                }
                Err(e) => {
                    s.lock().unwrap().rejected += 1;
                    resp.header.code = MessageClass::Response(ResponseType::BadRequest);
                    resp.payload = e.to_string().into_bytes();
                }
            }
            let _ = sock.send_to(&resp.to_bytes().unwrap(), from).await;
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn coap_readings_are_acked_and_decode_as_senml() {
    let (addr, seen) = peer(0).await;
    let stats = Arc::new(SenderStats::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(coap_sender(
        addr,
        city(0, 30, 0.0),
        fast(),
        stats.clone(),
        rx,
    ));
    // 4 backfill steps × 30 devices, then at least two live rounds.
    let s = wait_for(&stats, Duration::from_secs(10), |s| s.acked >= 180).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("sender stops promptly")
        .unwrap();
    assert!(s.acked >= 180, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    let seen = seen.lock().unwrap();
    assert!(seen.decoded.len() >= 180);
    let first = &seen.decoded[0].0[0];
    assert!(
        first
            .bn
            .as_deref()
            .unwrap()
            .starts_with("urn:ngsi-ld:WaterConsumptionObserved:adelaide-")
    );
    assert_eq!(first.u.as_deref(), Some("m3"));
    // Backfill first: the first message is about an hour old.
    let age = Timestamp::now().as_secs_f64() - first.bt.unwrap();
    assert!((2700.0..3700.0).contains(&age), "{age}");
}

#[tokio::test]
async fn coap_retransmits_until_acked() {
    let (addr, seen) = peer(7).await;
    let stats = Arc::new(SenderStats::default());
    let (stop, rx) = watch::channel(false);
    let mut opts = fast();
    opts.backfill_hours = 0.0;
    let task = tokio::spawn(coap_sender(addr, city(0, 20, 0.0), opts, stats.clone(), rx));
    // Dropped requests come back after ACK_TIMEOUT (2–3 s).
    let s = wait_for(&stats, Duration::from_secs(8), |s| {
        s.retransmits >= 2 && s.acked >= 60
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(s.retransmits >= 2, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    assert!(!seen.lock().unwrap().dropped_once.is_empty());
}

#[tokio::test]
async fn coap_rejections_are_counted_with_the_servers_reason() {
    let (addr, seen) = peer(0).await;
    let stats = Arc::new(SenderStats::default());
    let (stop, rx) = watch::channel(false);
    let mut opts = fast();
    opts.backfill_hours = 0.0;
    // Every message faulty: a third truncated (rejected), the rest decodable but wrong.
    let task = tokio::spawn(coap_sender(addr, city(0, 30, 1.0), opts, stats.clone(), rx));
    let s = wait_for(&stats, Duration::from_secs(5), |s| {
        s.errors >= 3 && s.acked >= 3
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(s.faults >= s.sent.min(30), "{s:?}");
    assert!(s.errors >= 3 && seen.lock().unwrap().rejected >= 3, "{s:?}");
    assert!(
        s.last_error.as_deref().unwrap().contains("BadRequest"),
        "{s:?}"
    );
}
