//! CoAP over UDP (RFC 7252): a server source for constrained devices.
//!
//! Devices `POST` (or `PUT`) a payload to `/senml` (or the short `/s`):
//!
//! | Content-Format | payload | decoder |
//! |---|---|---|
//! | 110 `application/senml+json` | SenML JSON | [`crate::decode::senml`] |
//! | 112 `application/senml+cbor` | SenML CBOR | [`crate::decode::senml`] |
//! | 50 `application/json` | Polity device JSON | [`crate::decode::json`] |
//!
//! Responses:
//!
//! - **2.04 Changed** only after the pipeline reports the data durable;
//! - **4.00 Bad Request** when the payload cannot be decoded; it is kept in the
//!   dead-letter store with the reason, which is also the diagnostic payload
//!   (RFC 7252 §5.5.2: UTF-8 text, no Content-Format);
//! - **4.03** when the `t=` query names another tenant than the source's fixed one;
//! - **4.04** for other paths, **4.05** for other methods, **4.13** (with Size1) for
//!   payloads over `max_payload`, **4.15** for other or missing Content-Formats;
//! - **5.03 Service Unavailable** with Max-Age when the store cannot commit: retry later.
//!
//! Confirmable requests get a piggybacked ACK, non-confirmable ones a NON response.
//! A response may come after ACK_TIMEOUT when a commit is slow; the client then simply
//! retransmits, and retransmissions are deduplicated: for EXCHANGE_LIFETIME (247 s)
//! the source remembers each (endpoint, message id) in a bounded map and replays the
//! cached response, or stays silent while the first copy is still being committed.
//! Duplicates are neither counted nor committed twice.
//!
//! The tenant is the source's `tenant`, or else the `t=<tenant>` URI query of each
//! request. Datagrams that are not CoAP go to the dead-letter store (a confirmable one
//! is answered with Reset); their log lines are rate-limited.
//!
//! Concurrency is bounded by `max_in_flight`: each request runs on its own task holding
//! a permit, and when every permit is taken the source stops reading the socket, so the
//! kernel's buffer (and then the devices' retransmission back-off) absorbs the load.
//!
//! Out of scope: block-wise transfer (RFC 7959), so a payload must fit one datagram;
//! DTLS/OSCORE; Observe.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType,
    option_value::{OptionValueString, OptionValueU32},
};
use polity_model::{Batch, PrivacyClass, Tenant, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::{
    net::UdpSocket,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};

use super::{LogLimiter, SourceContext, SourceError};
use crate::{
    decode::{self, DecodeContext, Format},
    metrics::{SourceCounters, SourceKind},
    pipeline::IngestHandle,
};

/// The command-line flag that sets a CoAP source's listen address.
pub const LISTEN_FLAG: &str = "--coap-listen";

/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME with the default transmission parameters.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);

/// Most remembered exchanges for deduplication; the oldest are forgotten first.
const DEDUP_CAPACITY: usize = 16_384;

/// Max-Age (seconds) sent with 5.03: when a client may retry.
const RETRY_AFTER_SECS: u32 = 5;

/// Largest diagnostic payload sent back, bytes.
const MAX_DIAGNOSTIC: usize = 512;

/// Largest UDP payload we read.
const DATAGRAM_BUFFER: usize = 65_536;

/// Config of a CoAP source (`[sources.NAME]` with `type = "coap"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoapSourceConfig {
    /// UDP address to listen on. Default `127.0.0.1:5683` (the CoAP port, loopback only).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The tenant (city) every request belongs to. Default none: each request must then
    /// carry the URI query `t=<tenant>`.
    #[serde(default)]
    pub tenant: Option<Tenant>,
    /// Entity type for payloads whose ids do not carry one (e.g. `WeatherObserved`).
    /// Default none: such payloads are rejected.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// Prefix turning bare device ids into entity ids (e.g. `urn:ngsi-ld:WeatherObserved:`).
    /// Default none: ids must be URIs.
    #[serde(default)]
    pub id_prefix: Option<String>,
    /// Privacy class of the data (`public`, `personal`, `sensitive`). Default `public`.
    #[serde(default)]
    pub privacy: PrivacyClass,
    /// Largest accepted payload, bytes. Default 65 536 (64 KiB), which is also the most
    /// allowed: block-wise transfer is not supported, so a request must fit one UDP
    /// datagram (in practice about 65 500 bytes including the CoAP header).
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// Most requests being decoded and committed at once; when reached the socket is not
    /// read until one finishes. Default 1024.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5683))
}
fn default_max_payload() -> usize {
    64 * 1024
}
fn default_max_in_flight() -> usize {
    1024
}

impl Default for CoapSourceConfig {
    fn default() -> Self {
        CoapSourceConfig {
            listen: default_listen(),
            tenant: None,
            entity_type: None,
            id_prefix: None,
            privacy: PrivacyClass::Public,
            max_payload: default_max_payload(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

/// A bound CoAP source; [`CoapSource::run`] serves it.
pub struct CoapSource {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

struct Shared {
    socket: UdpSocket,
    config: CoapSourceConfig,
    entity_type: Option<Arc<str>>,
    name: Arc<str>,
    ingest: IngestHandle,
    counters: Arc<SourceCounters>,
    dedup: Mutex<Dedup>,
    next_mid: AtomicU16,
    log: LogLimiter,
}

impl CoapSourceConfig {
    /// Checks the settings without binding; `polity validate` and start-up share it.
    pub fn check(&self) -> Result<(), String> {
        if self.max_in_flight == 0 || self.max_in_flight > Semaphore::MAX_PERMITS / 2 {
            return Err("`max_in_flight` must be at least 1 (default 1024)".into());
        }
        if self.max_payload == 0 || self.max_payload > DATAGRAM_BUFFER {
            return Err("`max_payload` must be between 1 and 65536 bytes: a CoAP request must fit one UDP datagram (default 65536)".into());
        }
        Ok(())
    }
}

impl CoapSource {
    /// Validates `config` and binds its UDP socket.
    pub async fn bind(
        config: CoapSourceConfig,
        ctx: SourceContext,
    ) -> Result<CoapSource, SourceError> {
        let problem = |p: String| SourceError::Config {
            source_name: ctx.name.clone(),
            problem: p,
        };
        config.check().map_err(problem)?;
        let socket = UdpSocket::bind(config.listen).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                SourceError::AddrInUse {
                    what: "CoAP",
                    addr: config.listen,
                    flag: LISTEN_FLAG,
                }
            } else {
                SourceError::Bind {
                    what: "CoAP",
                    addr: config.listen,
                    flag: LISTEN_FLAG,
                    source: e,
                }
            }
        })?;
        let local_addr = socket.local_addr().map_err(|e| SourceError::Bind {
            what: "CoAP",
            addr: config.listen,
            flag: LISTEN_FLAG,
            source: e,
        })?;
        let counters = ctx.metrics.source(
            &ctx.name,
            SourceKind::Coap,
            config.tenant.clone(),
            &format!("udp {local_addr}"),
        );
        let seed = (Timestamp::now().as_millis() as u16) ^ local_addr.port();
        Ok(CoapSource {
            shared: Arc::new(Shared {
                socket,
                entity_type: config.entity_type.as_deref().map(Arc::from),
                config,
                name: Arc::from(ctx.name.as_str()),
                ingest: ctx.ingest,
                counters,
                dedup: Mutex::new(Dedup::default()),
                next_mid: AtomicU16::new(seed),
                log: LogLimiter::new(Duration::from_secs(10)),
            }),
            local_addr,
        })
    }

    /// The bound address (with the real port when port 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves requests until `shutdown` becomes `true` (or its sender is dropped), then
    /// stops reading and waits up to 10 s for requests already being committed.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let sh = self.shared;
        let permits = sh.config.max_in_flight;
        let sem = Arc::new(Semaphore::new(permits));
        let mut buf = vec![0u8; DATAGRAM_BUFFER];
        tracing::info!(source = %sh.name, addr = %self.local_addr, "CoAP source listening");
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Take a permit before reading: with every permit in use the socket is not
            // read, which is the backpressure.
            let permit = tokio::select! {
                p = sem.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                r = shutdown.changed() => if r.is_err() { break } else { continue },
            };
            let (n, peer) = tokio::select! {
                r = sh.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(error) => {
                        sh.counters.errors.fetch_add(1, Relaxed);
                        if let Some(suppressed) = sh.log.allow() {
                            tracing::warn!(source = %sh.name, %error, suppressed, "CoAP socket read failed");
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                r = shutdown.changed() => if r.is_err() { break } else { continue },
            };
            let datagram = buf[..n].to_vec();
            tokio::spawn(handle(sh.clone(), datagram, peer, permit));
        }
        let drained =
            tokio::time::timeout(Duration::from_secs(10), sem.acquire_many(permits as u32)).await;
        if drained.is_err() {
            tracing::warn!(source = %sh.name, "CoAP source stopped with requests still being committed");
        }
        tracing::info!(source = %sh.name, "CoAP source stopped");
    }
}

/// What a request's processing decided to answer.
struct Outcome {
    code: ResponseType,
    diagnostic: Option<String>,
    max_age: Option<u32>,
    size1: Option<u32>,
}

impl Outcome {
    fn new(code: ResponseType) -> Self {
        Outcome {
            code,
            diagnostic: None,
            max_age: None,
            size1: None,
        }
    }
    fn diag(code: ResponseType, text: impl Into<String>) -> Self {
        Outcome {
            diagnostic: Some(text.into()),
            ..Outcome::new(code)
        }
    }
    fn unavailable(text: impl Into<String>) -> Self {
        Outcome {
            max_age: Some(RETRY_AFTER_SECS),
            ..Outcome::diag(ResponseType::ServiceUnavailable, text)
        }
    }
}

async fn handle(sh: Arc<Shared>, data: Vec<u8>, peer: SocketAddr, _permit: OwnedSemaphorePermit) {
    let req = match Packet::from_bytes(&data) {
        Ok(p) if p.header.get_version() == 1 => p,
        Ok(_) => return malformed(&sh, data, peer, "CoAP version is not 1".into()).await,
        Err(e) => return malformed(&sh, data, peer, format!("{e:?}")).await,
    };
    match req.header.get_type() {
        // We never send confirmable messages, so ACKs and RSTs need no handling.
        MessageType::Acknowledgement | MessageType::Reset => return,
        MessageType::Confirmable | MessageType::NonConfirmable => {}
    }
    let method = match req.header.code {
        MessageClass::Request(m) => m,
        // An empty CON is a CoAP ping, answered with Reset (RFC 7252 §4.3); any other
        // non-request CON is rejected the same way.
        _ => {
            if req.header.get_type() == MessageType::Confirmable {
                send(&sh, &reset(req.header.message_id), peer).await;
            }
            return;
        }
    };
    let key = (peer, req.header.message_id);
    let seen = sh
        .dedup
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check(key, Instant::now());
    match seen {
        Seen::New => {}
        Seen::InProgress => return,
        Seen::Done(bytes) => return send(&sh, &bytes, peer).await,
    }
    sh.counters.message(data.len());
    let outcome = process(&sh, &req, method).await;
    let bytes = response(&sh, &req, outcome);
    sh.dedup
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .complete(key, bytes.clone());
    send(&sh, &bytes, peer).await;
}

async fn process(sh: &Shared, req: &Packet, method: RequestType) -> Outcome {
    // Every refusal below keeps the request's payload as a dead letter and counts it.
    let fixed = sh.config.tenant.clone();
    if !matches!(method, RequestType::Post | RequestType::Put) {
        return refuse(
            sh,
            fixed,
            ResponseType::MethodNotAllowed,
            "use POST (or PUT) to /senml".into(),
            None,
            &req.payload,
        )
        .await;
    }
    if req.get_option(CoapOption::Block1).is_some() {
        // Block1 is a critical option this server does not implement (RFC 7252 §5.4.1).
        let reason = format!(
            "block-wise transfer (Block1) is not supported; send at most {} bytes in one request",
            sh.config.max_payload
        );
        return refuse(
            sh,
            fixed,
            ResponseType::BadOption,
            reason,
            None,
            &req.payload,
        )
        .await;
    }
    let path: Vec<String> = options_text(req, CoapOption::UriPath);
    if !(path == ["senml"] || path == ["s"]) {
        let reason = format!("no resource /{}; POST to /senml (or /s)", path.join("/"));
        return refuse(
            sh,
            fixed,
            ResponseType::NotFound,
            reason,
            None,
            &req.payload,
        )
        .await;
    }
    let query_tenant = options_text(req, CoapOption::UriQuery)
        .into_iter()
        .find_map(|q| q.strip_prefix("t=").map(str::to_owned));
    let tenant = match (&sh.config.tenant, query_tenant) {
        (Some(fixed), Some(q)) if fixed.as_str() != q => {
            let reason = format!(
                "this endpoint accepts tenant `{fixed}` only, not `{}`",
                decode::clip(&q)
            );
            return refuse(
                sh,
                Some(fixed.clone()),
                ResponseType::Forbidden,
                reason,
                None,
                &req.payload,
            )
            .await;
        }
        (Some(fixed), _) => fixed.clone(),
        (None, Some(q)) => match Tenant::new(&q) {
            Ok(t) => t,
            Err(e) => return reject(sh, None, e.to_string(), None, &req.payload).await,
        },
        (None, None) => {
            let reason =
                "no tenant: add the URI query t=<tenant>, e.g. coap://host/senml?t=adelaide"
                    .to_owned();
            return reject(sh, None, reason, None, &req.payload).await;
        }
    };
    let format = match content_format(req) {
        Some(110) => Format::SenmlJson,
        Some(112) => Format::SenmlCbor,
        Some(50) => Format::Json,
        other => {
            let sent = other.map_or("none".to_owned(), |c| c.to_string());
            let reason = format!(
                "Content-Format {sent} is not accepted; use 110 (senml+json), 112 (senml+cbor) or 50 (json)"
            );
            return refuse(
                sh,
                Some(tenant),
                ResponseType::UnsupportedContentFormat,
                reason,
                None,
                &req.payload,
            )
            .await;
        }
    };
    if req.payload.len() > sh.config.max_payload {
        let reason = format!(
            "payload is {} bytes; at most {} fit, so split it",
            req.payload.len(),
            sh.config.max_payload
        );
        let out = refuse(
            sh,
            Some(tenant),
            ResponseType::RequestEntityTooLarge,
            reason,
            Some(format),
            &req.payload,
        )
        .await;
        return Outcome {
            size1: Some(sh.config.max_payload as u32),
            ..out
        };
    }
    let ctx = DecodeContext {
        tenant: tenant.clone(),
        entity_type: sh.entity_type.clone(),
        id_prefix: sh.config.id_prefix.clone(),
        now: Timestamp::now(),
        privacy: sh.config.privacy,
    };
    let observations = match decode::decode(format, &req.payload, &ctx) {
        Ok(o) => o,
        Err(e) => return reject(sh, Some(tenant), e.to_string(), Some(format), &req.payload).await,
    };
    let batch = Batch::of(tenant, sh.name.clone(), observations);
    match sh.ingest.submit(batch, &sh.counters).await {
        Ok(()) => Outcome::new(ResponseType::Changed),
        Err(e) => Outcome::unavailable(e.to_string()),
    }
}

/// Keeps a rejected payload as a dead letter and answers 4.00 with the reason.
async fn reject(
    sh: &Shared,
    tenant: Option<Tenant>,
    reason: String,
    format: Option<Format>,
    payload: &[u8],
) -> Outcome {
    refuse(
        sh,
        tenant,
        ResponseType::BadRequest,
        reason,
        format,
        payload,
    )
    .await
}

/// Keeps a refused request's payload as a dead letter and answers `code` with the reason.
async fn refuse(
    sh: &Shared,
    tenant: Option<Tenant>,
    code: ResponseType,
    reason: String,
    format: Option<Format>,
    payload: &[u8],
) -> Outcome {
    let ct = format.map(|f| f.media_type().to_owned());
    match sh
        .ingest
        .dead_letter(&sh.counters, tenant, reason.clone(), ct, payload.to_vec())
        .await
    {
        Ok(_) => Outcome::diag(code, reason),
        Err(e) => Outcome::unavailable(format!(
            "the payload was rejected ({reason}) and could not be kept: {e}"
        )),
    }
}

/// A datagram that is not CoAP: kept as a dead letter; a confirmable one gets Reset.
async fn malformed(sh: &Shared, data: Vec<u8>, peer: SocketAddr, why: String) {
    sh.counters.message(data.len());
    let reason = format!("not a CoAP message (RFC 7252): {why}");
    if let Some(suppressed) = sh.log.allow() {
        tracing::warn!(source = %sh.name, %peer, %reason, suppressed, "malformed CoAP datagram");
    }
    // Version 1, type CON (bits 00): reject with Reset (RFC 7252 §4.2).
    if data.len() >= 4 && data[0] >> 4 == 0b0100 {
        send(sh, &reset(u16::from_be_bytes([data[2], data[3]])), peer).await;
    }
    if let Err(e) = sh
        .ingest
        .dead_letter(&sh.counters, sh.config.tenant.clone(), reason, None, data)
        .await
    {
        sh.counters.errors.fetch_add(1, Relaxed);
        if let Some(suppressed) = sh.log.allow() {
            tracing::error!(source = %sh.name, error = %e, suppressed, "could not keep a malformed datagram");
        }
    }
}

fn options_text(req: &Packet, opt: CoapOption) -> Vec<String> {
    req.get_options_as::<OptionValueString>(opt)
        .map(|l| l.into_iter().filter_map(Result::ok).map(|v| v.0).collect())
        .unwrap_or_default()
}

fn content_format(req: &Packet) -> Option<u32> {
    let raw = req.get_first_option(CoapOption::ContentFormat)?;
    if raw.len() > 2 {
        return Some(u32::MAX);
    }
    Some(raw.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

fn reset(message_id: u16) -> Vec<u8> {
    // Empty message: ver 1, type RST, TKL 0, code 0.00.
    let [hi, lo] = message_id.to_be_bytes();
    vec![0x70, 0x00, hi, lo]
}

fn response(sh: &Shared, req: &Packet, outcome: Outcome) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_version(1);
    if req.header.get_type() == MessageType::Confirmable {
        p.header.set_type(MessageType::Acknowledgement);
        p.header.message_id = req.header.message_id;
    } else {
        p.header.set_type(MessageType::NonConfirmable);
        p.header.message_id = sh.next_mid.fetch_add(1, Relaxed);
    }
    p.header.code = MessageClass::Response(outcome.code);
    p.set_token(req.get_token().to_vec());
    if let Some(s) = outcome.max_age {
        p.add_option_as(CoapOption::MaxAge, OptionValueU32(s));
    }
    if let Some(s) = outcome.size1 {
        p.add_option_as(CoapOption::Size1, OptionValueU32(s));
    }
    if let Some(text) = outcome.diagnostic {
        let mut end = text.len().min(MAX_DIAGNOSTIC);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        p.payload = text.as_bytes()[..end].to_vec();
    }
    p.to_bytes_with_limit(DATAGRAM_BUFFER).unwrap_or_else(|e| {
        tracing::error!(source = %sh.name, error = ?e, "could not encode a CoAP response");
        Vec::new()
    })
}

async fn send(sh: &Shared, bytes: &[u8], peer: SocketAddr) {
    if bytes.is_empty() {
        return;
    }
    if let Err(error) = sh.socket.send_to(bytes, peer).await {
        sh.counters.errors.fetch_add(1, Relaxed);
        if let Some(suppressed) = sh.log.allow() {
            tracing::warn!(source = %sh.name, %peer, %error, suppressed, "CoAP response could not be sent");
        }
    }
}

type ExchangeKey = (SocketAddr, u16);

enum Seen {
    New,
    InProgress,
    Done(Arc<[u8]>),
}

/// When an exchange was first seen, and its response once there is one.
type Slot = (Instant, Option<Arc<[u8]>>);

/// Recently seen exchanges, for deduplicating retransmissions (RFC 7252 §4.5).
#[derive(Default)]
struct Dedup {
    map: HashMap<ExchangeKey, Slot>,
    order: VecDeque<(ExchangeKey, Instant)>,
}

impl Dedup {
    fn check(&mut self, key: ExchangeKey, now: Instant) -> Seen {
        self.expire(now);
        if let Some((_, resp)) = self.map.get(&key) {
            return match resp {
                Some(b) => Seen::Done(b.clone()),
                None => Seen::InProgress,
            };
        }
        while self.map.len() >= DEDUP_CAPACITY {
            let Some((k, at)) = self.order.pop_front() else {
                break;
            };
            self.remove_if(k, at);
        }
        self.map.insert(key, (now, None));
        self.order.push_back((key, now));
        Seen::New
    }

    fn complete(&mut self, key: ExchangeKey, response: Vec<u8>) {
        if let Some(slot) = self.map.get_mut(&key) {
            slot.1 = Some(Arc::from(response));
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(k, at)) = self.order.front() {
            if now.duration_since(at) < EXCHANGE_LIFETIME {
                break;
            }
            self.order.pop_front();
            self.remove_if(k, at);
        }
    }

    fn remove_if(&mut self, key: ExchangeKey, at: Instant) {
        if self.map.get(&key).is_some_and(|(t, _)| *t == at) {
            self.map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: CoapSourceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, CoapSourceConfig::default());
        assert_eq!(c.listen.port(), 5683);
        let e =
            serde_json::from_str::<CoapSourceConfig>(r#"{"listn":"0.0.0.0:5683"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn dedup_replays_and_expires() {
        let mut d = Dedup::default();
        let k: ExchangeKey = ("127.0.0.1:1".parse().unwrap(), 7);
        let t0 = Instant::now();
        assert!(matches!(d.check(k, t0), Seen::New));
        assert!(matches!(d.check(k, t0), Seen::InProgress));
        d.complete(k, vec![1, 2]);
        assert!(matches!(d.check(k, t0), Seen::Done(b) if *b == [1, 2]));
        assert!(matches!(d.check(k, t0 + EXCHANGE_LIFETIME), Seen::New));
    }

    #[test]
    fn dedup_is_bounded() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        for i in 0..(DEDUP_CAPACITY + 10) {
            let k: ExchangeKey = (
                SocketAddr::from(([127, 0, 0, 1], (i / 65_536) as u16 + 1)),
                i as u16,
            );
            d.check(k, t0);
        }
        assert!(d.map.len() <= DEDUP_CAPACITY);
    }
}
