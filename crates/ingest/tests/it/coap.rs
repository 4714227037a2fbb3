//! The CoAP source end to end: real CoAP datagrams over UDP, a real FjallStore.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use polity_ingest::sources::{CoapSource, CoapSourceConfig, SourceContext};
use polity_model::{Pack, UnitCode, Value};
use tokio::{net::UdpSocket, sync::watch};

use crate::node::{Node, approx, attr};

struct Server {
    node: Node,
    addr: SocketAddr,
    client: UdpSocket,
    _stop: watch::Sender<bool>,
}

async fn server(name: &str, config: CoapSourceConfig) -> Server {
    let node = Node::start();
    let ctx = SourceContext {
        name: name.to_owned(),
        ingest: node.ingest.clone(),
        metrics: node.metrics.clone(),
    };
    let source = CoapSource::bind(
        CoapSourceConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        },
        ctx,
    )
    .await
    .expect("binds");
    let addr = source.local_addr();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(source.run(rx));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    Server {
        node,
        addr,
        client,
        _stop: stop,
    }
}

/// A request as a device would send it.
fn request(
    ty: MessageType,
    method: RequestType,
    mid: u16,
    path: &str,
    query: &[&str],
    cf: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    p.header.set_type(ty);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    if let Some(cf) = cf {
        let bytes = cf.to_be_bytes();
        let v = if cf == 0 {
            vec![]
        } else if cf < 256 {
            vec![bytes[1]]
        } else {
            bytes.to_vec()
        };
        p.add_option(CoapOption::ContentFormat, v);
    }
    p.payload = payload.to_vec();
    p.to_bytes_unlimited().unwrap()
}

fn post(mid: u16, cf: u16, payload: &[u8]) -> Vec<u8> {
    request(
        MessageType::Confirmable,
        RequestType::Post,
        mid,
        "/senml",
        &["t=adelaide"],
        Some(cf),
        payload,
    )
}

impl Server {
    async fn send(&self, bytes: &[u8]) -> Vec<u8> {
        self.client.send_to(bytes, self.addr).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), self.client.recv_from(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        buf.truncate(n);
        buf
    }

    async fn exchange(&self, bytes: &[u8]) -> Packet {
        Packet::from_bytes(&self.send(bytes).await).expect("the response is CoAP")
    }
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

/// RFC 8428 §5.1.2 ("Multiple Data Points") with the base name changed to an NGSI-LD URN,
/// plus an energy record in Wh (RFC 8798 secondary unit) to show unit normalization.
const RFC8428_MULTI: &str = r#"[
  {"bn":"urn:ngsi-ld:Device:10e2073a01080063:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7},
  {"n":"energy","u":"Wh","v":1500}
]"#;

/// RFC 8428 §5.1.1 ("Single Datapoint") as the CBOR of §6, with an NGSI-LD URN and an
/// absolute time added; encoded with RFC 8428 integer labels.
const RFC8428_SINGLE: &str =
    r#"[{"n":"urn:ngsi-ld:WeatherObserved:adelaide-cbd:windSpeed","u":"m/s","v":10,"t":1.7640e9}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_and_device_json_are_committed_before_2_04() {
    let s = server("adelaide-coap", CoapSourceConfig::default()).await;

    // SenML JSON (content-format 110).
    let r = s.exchange(&post(1, 110, RFC8428_MULTI.as_bytes())).await;
    assert_eq!(
        code(&r),
        ResponseType::Changed,
        "{:?}",
        String::from_utf8_lossy(&r.payload)
    );
    assert_eq!(r.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(r.header.message_id, 1);
    assert_eq!(r.get_token(), &1u16.to_be_bytes());
    // 2.04 means durable: the entity is readable at once.
    let e = s
        .node
        .entity("adelaide", "urn:ngsi-ld:Device:10e2073a01080063")
        .expect("entity stored");
    assert_eq!(e.entity_type, polity_ingest::decode::expand("Device"));
    assert_eq!(attr(&e, "voltage").value, Value::Number(120.1));
    assert_eq!(
        attr(&e, "voltage").unit,
        Some(UnitCode::new("VLT").unwrap())
    );
    let current = attr(&e, "current");
    assert_eq!(current.value, Value::Number(1.7), "latest current");
    assert_eq!(current.observed_at.as_millis(), 1_276_020_076_001);
    // Wh is normalized to the canonical kWh.
    assert_eq!(attr(&e, "energy").value, Value::Number(1.5));
    assert_eq!(attr(&e, "energy").unit, Some(UnitCode::new("KWH").unwrap()));

    // SenML CBOR (content-format 112).
    let cbor = Pack::from_json(RFC8428_SINGLE.as_bytes())
        .unwrap()
        .to_cbor();
    assert_eq!(cbor[0], 0x81, "a CBOR array of one record");
    let r = s.exchange(&post(2, 112, &cbor)).await;
    assert_eq!(
        code(&r),
        ResponseType::Changed,
        "{:?}",
        String::from_utf8_lossy(&r.payload)
    );
    let e = s
        .node
        .entity("adelaide", "urn:ngsi-ld:WeatherObserved:adelaide-cbd")
        .expect("entity stored");
    let wind = attr(&e, "windSpeed");
    assert_eq!(
        wind.unit,
        Some(UnitCode::new("KMH").unwrap()),
        "m/s normalized to km/h"
    );
    assert!(
        approx(wind.value.as_f64().unwrap(), 36.0),
        "{:?}",
        wind.value
    );

    // Polity device JSON (content-format 50), with a °F value normalized to °C.
    let json = br#"{"id":"urn:ngsi-ld:WeatherObserved:adelaide-cbd","type":"WeatherObserved",
                    "observedAt":"2026-11-25T01:10:36.123Z",
                    "location":{"type":"Point","coordinates":[138.6,-34.93]},
                    "temperature":{"value":212,"unitCode":"FAH"},"weatherType":"sunny"}"#;
    let r = s.exchange(&post(3, 50, json)).await;
    assert_eq!(
        code(&r),
        ResponseType::Changed,
        "{:?}",
        String::from_utf8_lossy(&r.payload)
    );
    let e = s
        .node
        .entity("adelaide", "urn:ngsi-ld:WeatherObserved:adelaide-cbd")
        .unwrap();
    let t = attr(&e, "temperature");
    assert_eq!(t.unit, Some(UnitCode::new("CEL").unwrap()));
    assert!(approx(t.value.as_f64().unwrap(), 100.0), "{:?}", t.value);
    assert_eq!(t.observed_at.to_string(), "2026-11-25T01:10:36.123Z");
    assert!(matches!(attr(&e, "location").value, Value::Geo(_)));
    assert_eq!(
        attr(&e, "weatherType").value,
        Value::Text(Arc::from("sunny"))
    );

    let c = s.node.metrics.get("adelaide-coap").unwrap();
    assert_eq!(c.messages.load(Relaxed), 3);
    assert_eq!(c.committed.load(Relaxed), 8 + 1 + 3);
    assert_eq!(c.dead_letters.load(Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_kept_as_dead_letters_and_answered_4_00() {
    let s = server("adelaide-coap", CoapSourceConfig::default()).await;
    // A CBOR map header promising 5 pairs, then nothing: truncated, not a pack.
    let r = s.exchange(&post(10, 112, &[0x81, 0xa5, 0x00])).await;
    assert_eq!(code(&r), ResponseType::BadRequest);
    let diag = String::from_utf8(r.payload.clone()).expect("diagnostic payload is UTF-8");
    assert!(diag.contains("CBOR"), "{diag}");
    assert!(
        r.get_first_option(CoapOption::ContentFormat).is_none(),
        "diagnostic payloads carry no content-format"
    );

    // A unit Polity does not know: the whole pack is rejected, naming record and unit.
    let bad_unit = br#"[{"bn":"urn:ngsi-ld:Device:d1:","n":"temperature","u":"degF","v":70}]"#;
    let r = s.exchange(&post(11, 110, bad_unit)).await;
    assert_eq!(code(&r), ResponseType::BadRequest);
    let diag = String::from_utf8(r.payload.clone()).unwrap();
    assert!(diag.contains("record 1") && diag.contains("degF"), "{diag}");

    let letters = s.node.dead_letters("adelaide-coap");
    assert_eq!(letters.len(), 2, "{letters:#?}");
    assert_eq!(letters[0].payload, [0x81, 0xa5, 0x00]);
    assert_eq!(
        letters[0].content_type.as_deref(),
        Some("application/senml+cbor")
    );
    assert_eq!(
        letters[0].tenant.as_ref().map(|t| t.as_str()),
        Some("adelaide")
    );
    assert!(letters[0].reason.contains("CBOR"), "{}", letters[0].reason);
    assert!(letters[1].reason.contains("degF"), "{}", letters[1].reason);
    let c = s.node.metrics.get("adelaide-coap").unwrap();
    assert_eq!(c.dead_letters.load(Relaxed), 2);
    assert_eq!(c.committed.load(Relaxed), 0);
    assert!(s.node.entity("adelaide", "urn:ngsi-ld:Device:d1").is_none());

    // No tenant at all: kept too, and the fix is named.
    let r = s
        .exchange(&request(
            MessageType::Confirmable,
            RequestType::Post,
            12,
            "/s",
            &[],
            Some(50),
            b"{}",
        ))
        .await;
    assert_eq!(code(&r), ResponseType::BadRequest);
    assert!(String::from_utf8_lossy(&r.payload).contains("t=<tenant>"));
    assert_eq!(s.node.dead_letters("adelaide-coap").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_get_the_right_codes() {
    let s = server("adelaide-coap", CoapSourceConfig::default()).await;
    let json = br#"{"id":"urn:ngsi-ld:Device:d2","type":"Device","value":1}"#;
    // text/plain (0) and a missing content-format: 4.15.
    let r = s.exchange(&post(20, 0, json)).await;
    assert_eq!(code(&r), ResponseType::UnsupportedContentFormat);
    let r = s
        .exchange(&request(
            MessageType::Confirmable,
            RequestType::Post,
            21,
            "/senml",
            &["t=adelaide"],
            None,
            json,
        ))
        .await;
    assert_eq!(code(&r), ResponseType::UnsupportedContentFormat);
    // Unknown path: 4.04. GET: 4.05.
    let r = s
        .exchange(&request(
            MessageType::Confirmable,
            RequestType::Post,
            22,
            "/data",
            &["t=adelaide"],
            Some(50),
            json,
        ))
        .await;
    assert_eq!(code(&r), ResponseType::NotFound);
    let r = s
        .exchange(&request(
            MessageType::Confirmable,
            RequestType::Get,
            23,
            "/senml",
            &["t=adelaide"],
            None,
            b"",
        ))
        .await;
    assert_eq!(code(&r), ResponseType::MethodNotAllowed);
    // Nothing is stored, and every refused request is kept with its reason and counted.
    let kept = s.node.dead_letters("adelaide-coap");
    assert_eq!(kept.len(), 4, "{kept:?}");
    for needle in [
        "Content-Format 0",
        "Content-Format none",
        "no resource /data",
        "use POST",
    ] {
        assert!(
            kept.iter().any(|d| d.reason.contains(needle)),
            "no dead letter says `{needle}`: {kept:?}"
        );
    }
    // Block-wise transfer (Block1, a critical option) is not implemented: 4.02 Bad Option.
    let mut p = coap_lite::Packet::from_bytes(&post(24, 50, json)).expect("a request");
    p.add_option(coap_lite::CoapOption::Block1, vec![0x0e]);
    let r = s.exchange(&p.to_bytes().expect("encode")).await;
    assert_eq!(code(&r), ResponseType::BadOption);

    // A CoAP ping (empty CON) is answered with Reset.
    let r = s.send(&[0x40, 0x00, 0x12, 0x34]).await;
    assert_eq!(r, [0x70, 0x00, 0x12, 0x34]);

    // Not CoAP (token length 9 is invalid): Reset, and kept as a dead letter.
    let garbage = [0x49, 0x02, 0xab, 0xcd, 1, 2, 3];
    let r = s.send(&garbage).await;
    assert_eq!(r, [0x70, 0x00, 0xab, 0xcd]);
    let garbled = crate::node::Node::eventually(5, || {
        s.node
            .dead_letters("adelaide-coap")
            .into_iter()
            .find(|d| d.reason.contains("not a CoAP message"))
    })
    .await
    .expect("the malformed datagram is kept");
    assert_eq!(garbled.payload, garbage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_are_answered_once_and_committed_once() {
    let s = server("adelaide-coap", CoapSourceConfig::default()).await;
    let json =
        br#"{"id":"urn:ngsi-ld:ParkingSpot:adelaide-7","type":"ParkingSpot","status":"free"}"#;
    let req = post(0x7777, 50, json);
    let first = s.send(&req).await;
    let again = s.send(&req).await;
    assert_eq!(
        first, again,
        "the cached response is replayed byte for byte"
    );
    assert_eq!(
        code(&Packet::from_bytes(&first).unwrap()),
        ResponseType::Changed
    );
    let c = s.node.metrics.get("adelaide-coap").unwrap();
    assert_eq!(c.messages.load(Relaxed), 1);
    assert_eq!(c.committed.load(Relaxed), 1);
    // A new message id is a new request.
    let r = s.exchange(&post(0x7778, 50, json)).await;
    assert_eq!(code(&r), ResponseType::Changed);
    assert_eq!(c.messages.load(Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_confirmable_requests_get_non_responses_and_fixed_tenants_are_enforced() {
    let config = CoapSourceConfig {
        tenant: Some(polity_model::Tenant::new("adelaide").unwrap()),
        ..Default::default()
    };
    let s = server("adelaide-coap", config).await;
    let json =
        br#"{"id":"urn:ngsi-ld:ParkingSpot:adelaide-8","type":"ParkingSpot","status":"occupied"}"#;
    let r = s
        .exchange(&request(
            MessageType::NonConfirmable,
            RequestType::Put,
            30,
            "/s",
            &[],
            Some(50),
            json,
        ))
        .await;
    assert_eq!(r.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(code(&r), ResponseType::Changed);
    assert_eq!(r.get_token(), &30u16.to_be_bytes());
    assert!(
        s.node
            .entity("adelaide", "urn:ngsi-ld:ParkingSpot:adelaide-8")
            .is_some()
    );
    let r = s
        .exchange(&request(
            MessageType::Confirmable,
            RequestType::Post,
            31,
            "/senml",
            &["t=melbourne"],
            Some(50),
            json,
        ))
        .await;
    assert_eq!(code(&r), ResponseType::Forbidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_names_the_flag() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let node = Node::start();
    let ctx = SourceContext {
        name: "c".into(),
        ingest: node.ingest.clone(),
        metrics: node.metrics.clone(),
    };
    let err = CoapSource::bind(
        CoapSourceConfig {
            listen: taken.local_addr().unwrap(),
            ..Default::default()
        },
        ctx,
    )
    .await
    .err()
    .expect("the port is taken");
    let msg = err.to_string();
    assert!(
        msg.contains("already in use") && msg.contains("--coap-listen"),
        "{msg}"
    );
}
