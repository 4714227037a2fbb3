//! The CoAP sender (Adelaide): SenML CBOR in confirmable POSTs over UDP.
//!
//! Each reading is one confirmable `POST /senml?t=<tenant>` with content-format 112
//! (`application/senml+cbor`). ACKs are matched by message id. Unacknowledged requests
//! are retransmitted with RFC 7252 §4.8 timing: the first timeout is ACK_TIMEOUT (2 s)
//! times a random factor in [1, ACK_RANDOM_FACTOR = 1.5], doubling on each of at most
//! MAX_RETRANSMIT (4) retransmissions, after which the reading counts as lost. At most
//! `max_in_flight` requests are outstanding on the socket (RFC 7252's NSTART, raised
//! for a gateway aggregating many devices).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
use tokio::{net::UdpSocket, sync::watch};

use super::{Backoff, SendOptions, SenderStats, sleep_or_stop, source::Source, stopped, stopping};
use crate::{fault, nation::City, prng::SplitMix64};

/// RFC 7252 ACK_TIMEOUT.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 7252 ACK_RANDOM_FACTOR.
pub const ACK_RANDOM_FACTOR: f64 = 1.5;
/// RFC 7252 MAX_RETRANSMIT.
pub const MAX_RETRANSMIT: u8 = 4;

struct InFlight {
    bytes: Vec<u8>,
    deadline: Instant,
    timeout: Duration,
    retransmits: u8,
}

/// Builds the confirmable SenML POST for `payload`.
pub fn senml_post(message_id: u16, token: &[u8], tenant: &str, payload: Vec<u8>) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = message_id;
    p.set_token(token.to_vec());
    p.add_option(CoapOption::UriPath, b"senml".to_vec());
    p.set_content_format(ContentFormat::ApplicationSenmlCBOR);
    p.add_option(CoapOption::UriQuery, format!("t={tenant}").into_bytes());
    p.payload = payload;
    // Only oversized packets fail to encode; a SenML reading is a few hundred bytes.
    p.to_bytes().unwrap_or_default()
}

fn empty_ack(message_id: u16) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Acknowledgement);
    p.header.code = MessageClass::Empty;
    p.header.message_id = message_id;
    p.to_bytes().unwrap_or_default()
}

/// Runs Adelaide-style devices against the CoAP server at `addr` until shutdown.
pub async fn coap_sender(
    addr: SocketAddr,
    city: Arc<City>,
    opts: SendOptions,
    stats: Arc<SenderStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut source = Source::new(city.clone(), &opts, stats.clone());
    let mut backoff = Backoff::new(city.seed ^ 0xC0A9);
    let mut rng = SplitMix64::new(city.seed ^ 0x7011);
    let tenant = city.spec.tenant.to_string();
    let window = opts.max_in_flight.max(1);
    let mut next_id = rng.next_u64() as u16;
    let mut buf = vec![0u8; 65_536];

    'connect: while !stopping(&shutdown) {
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(e) => {
                stats.error(1, format!("cannot open a UDP socket: {e}"));
                if sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                    break;
                }
                continue;
            }
        };
        if let Err(e) = sock.connect(addr).await {
            stats.error(1, format!("cannot reach CoAP server {addr}: {e}"));
            if sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                break;
            }
            continue;
        }
        let mut inflight: HashMap<u16, InFlight> = HashMap::new();
        let mut ticker = tokio::time::interval(opts.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Fill the window.
            while inflight.len() < window {
                let Some((r, f)) = source.take(1).pop() else {
                    break;
                };
                while inflight.contains_key(&next_id) {
                    next_id = next_id.wrapping_add(1);
                }
                let mid = next_id;
                next_id = next_id.wrapping_add(1);
                let token = (rng.next_u64() as u32).to_be_bytes();
                let bytes = senml_post(mid, &token, &tenant, fault::coap_payload(&r, f));
                SenderStats::add(&stats.sent, 1);
                SenderStats::add(&stats.requests, 1);
                if let Err(e) = sock.send(&bytes).await {
                    stats.error(1, format!("CoAP send to {addr} failed: {e}"));
                    source.requeue(&[(r, f)]);
                    // Anything outstanding on this socket is lost with it.
                    if !inflight.is_empty() {
                        stats.error(
                            inflight.len() as u64,
                            format!("CoAP socket to {addr} failed: {e}"),
                        );
                    }
                    if sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                        break 'connect;
                    }
                    continue 'connect;
                }
                let timeout = ACK_TIMEOUT.mul_f64(1.0 + (ACK_RANDOM_FACTOR - 1.0) * rng.next_f64());
                inflight.insert(
                    mid,
                    InFlight {
                        bytes,
                        deadline: Instant::now() + timeout,
                        timeout,
                        retransmits: 0,
                    },
                );
            }
            tokio::select! {
                _ = stopped(&mut shutdown) => break 'connect,
                got = sock.recv(&mut buf) => match got {
                    Ok(n) => {
                        backoff.reset();
                        handle_datagram(&buf[..n], &sock, &mut inflight, &stats, addr).await;
                    }
                    Err(e) => {
                        // ICMP port unreachable surfaces here as "connection refused".
                        stats.error(1, format!("CoAP server {addr}: {e}"));
                        if sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                            break 'connect;
                        }
                    }
                },
                _ = ticker.tick() => {
                    source.poll_due();
                    let now = Instant::now();
                    let mut lost = Vec::new();
                    for (mid, f) in inflight.iter_mut().filter(|(_, f)| f.deadline <= now) {
                        if f.retransmits >= MAX_RETRANSMIT {
                            lost.push(*mid);
                            continue;
                        }
                        f.retransmits += 1;
                        f.timeout *= 2;
                        f.deadline = now + f.timeout;
                        SenderStats::add(&stats.retransmits, 1);
                        SenderStats::add(&stats.requests, 1);
                        // A failed retransmission is retried at the next deadline.
                        let _ = sock.send(&f.bytes).await;
                    }
                    for mid in lost {
                        inflight.remove(&mid);
                        stats.error(1, format!("no ACK from CoAP server {addr} after {MAX_RETRANSMIT} retransmissions"));
                    }
                }
            }
        }
    }
}

async fn handle_datagram(
    bytes: &[u8],
    sock: &UdpSocket,
    inflight: &mut HashMap<u16, InFlight>,
    stats: &SenderStats,
    addr: SocketAddr,
) {
    let Ok(p) = Packet::from_bytes(bytes) else {
        stats.error(1, format!("undecodable datagram from CoAP server {addr}"));
        return;
    };
    let mid = p.header.message_id;
    match p.header.get_type() {
        MessageType::Acknowledgement => {
            if inflight.remove(&mid).is_none() {
                return; // A duplicate ACK for a retransmitted request.
            }
            match p.header.code {
                // An empty ACK promises a separate response; the reading was received.
                MessageClass::Empty => SenderStats::add(&stats.acked, 1),
                MessageClass::Response(r) if !r.is_error() => SenderStats::add(&stats.acked, 1),
                MessageClass::Response(r) => stats.error(1, response_error(r, &p.payload)),
                other => stats.error(
                    1,
                    format!("unexpected CoAP code {other:?} in ACK from {addr}"),
                ),
            }
        }
        MessageType::Reset => {
            if inflight.remove(&mid).is_some() {
                stats.error(1, format!("CoAP server {addr} reset the request"));
            }
        }
        MessageType::Confirmable => {
            // A separate response: acknowledge it so the server stops retransmitting.
            let _ = sock.send(&empty_ack(mid)).await;
            if let MessageClass::Response(r) = p.header.code
                && r.is_error()
            {
                stats.error(1, response_error(r, &p.payload));
            }
        }
        MessageType::NonConfirmable => {}
    }
}

fn response_error(r: ResponseType, payload: &[u8]) -> String {
    let diag = String::from_utf8_lossy(payload);
    let diag = diag.chars().take(300).collect::<String>();
    if diag.is_empty() {
        format!("CoAP {r:?}")
    } else {
        format!("CoAP {r:?}: {diag}")
    }
}
