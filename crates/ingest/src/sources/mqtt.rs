//! MQTT 3.1.1 client source: Polity subscribes to the city's broker (or the embedded one).
//!
//! The source connects, subscribes to its topic filters and decodes every PUBLISH with
//! the configured format (device JSON, SenML JSON, SenML CBOR, or detected from the
//! first bytes). The tenant is fixed by config or read from one level of the topic.
//!
//! # Delivery: at least once
//!
//! With QoS 1 (the default) acknowledgements are manual: a PUBLISH is acknowledged only
//! after its observations are durable, or, for a payload that cannot be decoded, after
//! it is durable in the dead-letter store (kept with its reason, so nothing is lost).
//! The session is persistent (`clean_session = false`), so if Polity stops or the
//! connection drops before the acknowledgement, the broker delivers the message again
//! on reconnect. Duplicates are harmless: entity state ignores replays of an instance it
//! already holds and series points are keyed by (series, time), so a redelivered
//! message rewrites the same data.
//!
//! Messages are committed concurrently (up to `max_in_flight`) but acknowledged in the
//! order they arrived, as MQTT 3.1.1 §4.6 requires. When the limit is reached the
//! source stops reading from the connection: the broker holds the backlog. If the store
//! fails, the message is not acknowledged and the source reconnects, so the broker
//! redelivers it.
//!
//! # Connection
//!
//! Reconnects use exponential back-off with jitter, from 0.5 s up to 30 s, reset after
//! each successful CONNACK. [`MqttSource::connected`] gives a flag for health checks.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use polity_model::{Batch, PrivacyClass, Tenant, Timestamp};
use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter,
};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinHandle};

use super::{LogLimiter, SourceContext, SourceError};
use crate::{
    decode::{self, DecodeContext, Format},
    metrics::{SourceCounters, SourceKind},
    pipeline::IngestHandle,
};

/// First reconnect delay.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// How MQTT payloads are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    /// Polity device JSON.
    Json,
    /// SenML JSON.
    SenmlJson,
    /// SenML CBOR.
    SenmlCbor,
    /// Detected per message from its first bytes: a CBOR array is SenML CBOR, a JSON
    /// array of records without `id` is SenML JSON, anything else device JSON.
    #[default]
    Auto,
}

/// Config of an MQTT source (`[sources.NAME]` with `type = "mqtt"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Broker address, `host:port`. Default `127.0.0.1:1883`.
    #[serde(default = "default_broker")]
    pub broker: String,
    /// MQTT client id. Default `polity-<source name>`. Keep it stable: the broker keeps
    /// the session (and unacknowledged messages) under this id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic filters to subscribe to. Default `["polity/#"]`.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Subscription QoS: 0 (at most once), 1 (at least once) or 2. Default 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Payload format: `json`, `senml-json`, `senml-cbor` or `auto`. Default `auto`.
    #[serde(default)]
    pub format: PayloadFormat,
    /// The tenant (city) every message belongs to. Default none; then
    /// `tenant_from_topic_level` is required.
    #[serde(default)]
    pub tenant: Option<Tenant>,
    /// Index (from 0) of the topic level holding the tenant: with topic
    /// `polity/melbourne/TrafficFlowObserved/dev42`, level 1 gives `melbourne`.
    /// Default none; exactly one of `tenant` and this must be set.
    #[serde(default)]
    pub tenant_from_topic_level: Option<usize>,
    /// Entity type for payloads that do not carry one. Default none.
    #[serde(default)]
    pub entity_type: Option<String>,
    /// Prefix turning bare device ids into entity ids. Default none.
    #[serde(default)]
    pub id_prefix: Option<String>,
    /// Privacy class of the data (`public`, `personal`, `sensitive`). Default `public`.
    #[serde(default)]
    pub privacy: PrivacyClass,
    /// MQTT keep-alive, seconds. Default 30.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// User name for the broker. Default none (anonymous).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the broker. Default none.
    #[serde(default)]
    pub password: Option<String>,
    /// Largest accepted payload, bytes; larger packets close the connection. Default
    /// 262 144 (256 KiB).
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// Most messages being committed at once before the source stops reading. Default 256.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Connect over TLS (`[sources.NAME.tls]`). Default none: plain TCP, which
    /// `polity validate` and start-up warn about for a broker off this machine.
    #[serde(default)]
    pub tls: Option<MqttClientTls>,
}

/// TLS settings of an MQTT source (`[sources.NAME.tls]`). The broker's certificate must
/// name the host in `broker` (so use its DNS name, not an IP address, unless the
/// certificate lists the address).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttClientTls {
    /// PEM file with the CA certificate(s) to trust for the broker. Default none: the
    /// Mozilla root set built into the binary, which suits a broker with a public
    /// certificate.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// PEM client certificate chain, for brokers that require mutual TLS. Needs `key`.
    /// Default none.
    #[serde(default)]
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key of `cert`. Default none.
    #[serde(default)]
    pub key: Option<std::path::PathBuf>,
}

/// The rustls client configuration an MQTT source connects with (the TLS provider is
/// chosen by the binary, which builds it from [`MqttClientTls`]).
pub type TlsClientConfig = Arc<rumqttc::tokio_rustls::rustls::ClientConfig>;

fn default_broker() -> String {
    "127.0.0.1:1883".into()
}
fn default_topics() -> Vec<String> {
    vec!["polity/#".into()]
}
fn default_qos() -> u8 {
    1
}
fn default_keep_alive() -> u64 {
    30
}
fn default_max_payload() -> usize {
    256 * 1024
}
fn default_max_in_flight() -> usize {
    256
}

impl Default for MqttSourceConfig {
    fn default() -> Self {
        MqttSourceConfig {
            broker: default_broker(),
            client_id: None,
            topics: default_topics(),
            qos: default_qos(),
            format: PayloadFormat::Auto,
            tenant: None,
            tenant_from_topic_level: None,
            entity_type: None,
            id_prefix: None,
            privacy: PrivacyClass::Public,
            keep_alive_secs: default_keep_alive(),
            username: None,
            password: None,
            max_payload: default_max_payload(),
            max_in_flight: default_max_in_flight(),
            tls: None,
        }
    }
}

/// Where a message's tenant comes from.
#[derive(Debug, Clone)]
enum TenantRule {
    Fixed(Tenant),
    TopicLevel(usize),
}

/// A configured MQTT source; [`MqttSource::run`] connects and serves it.
pub struct MqttSource {
    options: MqttOptions,
    /// The config asks for TLS and [`MqttSource::with_tls`] has not supplied it yet.
    tls_missing: bool,
    filters: Vec<SubscribeFilter>,
    max_in_flight: usize,
    shared: Arc<Shared>,
    connected: Arc<AtomicBool>,
}

struct Shared {
    name: Arc<str>,
    format: PayloadFormat,
    tenant: TenantRule,
    entity_type: Option<Arc<str>>,
    id_prefix: Option<String>,
    privacy: PrivacyClass,
    ingest: IngestHandle,
    counters: Arc<SourceCounters>,
    log: LogLimiter,
}

impl MqttSourceConfig {
    /// Checks the settings without connecting; `polity validate` and start-up share it.
    pub fn check(&self) -> Result<(), String> {
        self.parts().map(|_| ())
    }

    /// The broker address, tenant rule and QoS, or what is wrong with the settings.
    fn parts(&self) -> Result<(String, u16, TenantRule, QoS), String> {
        let (host, port) = split_host_port(&self.broker)
            .ok_or("`broker` must be host:port, e.g. 127.0.0.1:1883")?;
        let tenant = match (&self.tenant, self.tenant_from_topic_level) {
            (Some(t), None) => TenantRule::Fixed(t.clone()),
            (None, Some(l)) => TenantRule::TopicLevel(l),
            (Some(_), Some(_)) => {
                return Err("set either `tenant` or `tenant_from_topic_level`, not both".into());
            }
            (None, None) => {
                return Err("set `tenant` (e.g. \"melbourne\") or `tenant_from_topic_level` (e.g. 1 for topics polity/<tenant>/…)".into());
            }
        };
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => return Err("`qos` must be 0, 1 or 2 (default 1)".into()),
        };
        if self.topics.is_empty() || self.topics.iter().any(|t| t.is_empty()) {
            return Err(
                "`topics` must list at least one non-empty topic filter, e.g. [\"polity/#\"]"
                    .into(),
            );
        }
        if self.keep_alive_secs < 1 {
            return Err("`keep_alive_secs` must be at least 1 (default 30)".into());
        }
        if self.max_in_flight == 0 {
            return Err("`max_in_flight` must be at least 1 (default 256)".into());
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("`password` needs `username`".into());
        }
        if let Some(tls) = &self.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            return Err(
                "`tls.cert` and `tls.key` go together: set both for mutual TLS, or neither".into(),
            );
        }
        Ok((host.to_owned(), port, tenant, qos))
    }
}

impl MqttSource {
    /// Validates `config`. Connecting happens in [`MqttSource::run`], which retries, so
    /// an unreachable broker at start-up is not an error.
    pub fn new(config: MqttSourceConfig, ctx: SourceContext) -> Result<MqttSource, SourceError> {
        let problem = |p: &str| SourceError::Config {
            source_name: ctx.name.clone(),
            problem: p.to_owned(),
        };
        let (host, port, tenant, qos) = config.parts().map_err(|p| problem(&p))?;
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("polity-{}", ctx.name));
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(config.keep_alive_secs))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(config.max_payload.saturating_add(64 * 1024), 64 * 1024);
        if let Some(u) = &config.username {
            options.set_credentials(u.clone(), config.password.clone().unwrap_or_default());
        }
        let filters = config
            .topics
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), qos))
            .collect();
        let counters = ctx.metrics.source(
            &ctx.name,
            SourceKind::Mqtt,
            config.tenant.clone(),
            &format!("mqtt {} {}", config.broker, config.topics.join(" ")),
        );
        Ok(MqttSource {
            tls_missing: config.tls.is_some(),
            options,
            filters,
            max_in_flight: config.max_in_flight,
            connected: Arc::new(AtomicBool::new(false)),
            shared: Arc::new(Shared {
                name: Arc::from(ctx.name.as_str()),
                format: config.format,
                tenant,
                entity_type: config.entity_type.as_deref().map(Arc::from),
                id_prefix: config.id_prefix,
                privacy: config.privacy,
                ingest: ctx.ingest,
                counters,
                log: LogLimiter::new(Duration::from_secs(10)),
            }),
        })
    }

    /// Connects over TLS with `client`, which the binary builds from the source's
    /// [`MqttClientTls`] settings (see `polity_tls::client_config`).
    pub fn with_tls(mut self, client: TlsClientConfig) -> Self {
        self.options
            .set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(client),
            ));
        self.tls_missing = false;
        self
    }

    /// Whether the source is connected to its broker and subscribed right now (for
    /// `/health`, and for start-up to wait until messages will reach it).
    pub fn connected(&self) -> Arc<AtomicBool> {
        self.connected.clone()
    }

    /// Connects, subscribes and serves until `shutdown` becomes `true` (or its sender is
    /// dropped), reconnecting with back-off whenever the connection is lost.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let sh = self.shared.clone();
        let mut attempt: u32 = 0;
        let mut rng = Jitter::new(&sh.name);
        if self.tls_missing {
            // Never fall back to plain TCP when the config asked for TLS.
            tracing::error!(source = %sh.name, "the source's config asks for TLS but no TLS client was supplied; not connecting");
            return;
        }
        tracing::info!(source = %sh.name, broker = ?self.options.broker_address(), "MQTT source starting");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let end = self.session(&mut shutdown, &mut attempt).await;
            self.connected.store(false, Relaxed);
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost(reason) => {
                    let delay = rng.backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    if let Some(suppressed) = sh.log.allow() {
                        tracing::warn!(source = %sh.name, %reason, retry_in_ms = delay.as_millis() as u64, suppressed, "MQTT connection lost; reconnecting");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        r = shutdown.changed() => if r.is_err() { break },
                    }
                }
            }
        }
        tracing::info!(source = %sh.name, "MQTT source stopped");
    }

    /// One connection: from connect to the first error (or shutdown).
    async fn session(&self, shutdown: &mut watch::Receiver<bool>, attempt: &mut u32) -> SessionEnd {
        let sh = &self.shared;
        // Acks between two polls are bounded by `max_in_flight`, so this channel never
        // fills while the loop below is waiting for an ack to be queued.
        let (client, events) = AsyncClient::new(self.options.clone(), self.max_in_flight + 16);
        // rumqttc does not promise that `EventLoop::poll` is cancel-safe, so it runs in a
        // task of its own that is never cancelled mid-poll, and hands events over a
        // channel (whose `recv` is cancel-safe). When this loop stops taking events
        // (max_in_flight reached), the poller waits on the channel and TCP backpressure
        // does the rest; acks queue in the client's request channel meanwhile.
        let (mut events, poller) = spawn_poller(events);
        let mut pending: VecDeque<(Publish, JoinHandle<Handled>)> = VecDeque::new();
        let end = loop {
            tokio::select! {
                biased;
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        break SessionEnd::Shutdown;
                    }
                }
                done = front(&mut pending) => {
                    let Some((publish, _)) = pending.pop_front() else { continue };
                    match done {
                        Handled::Ack => {
                            if publish.qos != QoS::AtMostOnce && client.ack(&publish).await.is_err() {
                                break SessionEnd::Lost("the MQTT client stopped".into());
                            }
                        }
                        Handled::Retry(reason) => {
                            // Not acknowledged: reconnect so the broker redelivers it.
                            break SessionEnd::Lost(format!("could not commit a message, so it will be redelivered: {reason}"));
                        }
                    }
                }
                ev = events.recv(), if pending.len() < self.max_in_flight => match ev {
                    None => break SessionEnd::Lost("the MQTT event loop stopped".into()),
                    Some(ev) => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        *attempt = 0;
                        tracing::info!(source = %sh.name, session_present = ack.session_present, "MQTT source connected");
                        if client.subscribe_many(self.filters.clone()).await.is_err() {
                            break SessionEnd::Lost("the MQTT client stopped".into());
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let refused = ack.return_codes.iter().filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)).count();
                        if refused > 0 {
                            tracing::error!(source = %sh.name, refused, "the broker refused topic filters; check the ACL for this client");
                        }
                        // Only now does the broker route messages to us.
                        self.connected.store(true, Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let task = tokio::spawn(handle(sh.clone(), p.topic.clone(), p.payload.clone()));
                        pending.push_back((p, task));
                    }
                    Ok(_) => {}
                    Err(e) => break SessionEnd::Lost(describe(&e)),
                    },
                },
            }
        };
        // Dropping the event loop closes the connection without DISCONNECT; the broker
        // keeps the session and redelivers what was not acknowledged. Commits already
        // running finish on their own.
        if matches!(end, SessionEnd::Shutdown) {
            // Give commits in progress a moment, then ack what finished.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while let Some((publish, task)) = pending.pop_front() {
                match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(Handled::Ack)) if publish.qos != QoS::AtMostOnce => {
                        let _ = client.try_ack(&publish);
                    }
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
            let _ = client.try_disconnect();
            // Flush the acks and the DISCONNECT.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(Ok(ev)) = events.recv().await {
                    if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        poller.abort();
        end
    }
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// What became of one message.
enum Handled {
    /// Durable (as data or as a dead letter): acknowledge it.
    Ack,
    /// Not durable: do not acknowledge, so the broker redelivers it.
    Retry(String),
}

/// Resolves when the oldest in-flight message is handled; never when there is none.
async fn front(pending: &mut VecDeque<(Publish, JoinHandle<Handled>)>) -> Handled {
    match pending.front_mut() {
        Some((_, task)) => match task.await {
            Ok(h) => h,
            Err(e) => Handled::Retry(format!("the handler task failed: {e}")),
        },
        None => std::future::pending().await,
    }
}

async fn handle(sh: Arc<Shared>, topic: String, payload: bytes::Bytes) -> Handled {
    sh.counters.message(payload.len());
    let tenant = match &sh.tenant {
        TenantRule::Fixed(t) => Ok(t.clone()),
        TenantRule::TopicLevel(level) => match topic.split('/').nth(*level) {
            Some(s) => Tenant::new(s)
                .map_err(|e| format!("topic `{}`, level {level}: {e}", decode::clip(&topic))),
            None => Err(format!(
                "topic `{}` has no level {level} to read the tenant from; publish to topics such as polity/<tenant>/<type>/<device>",
                decode::clip(&topic)
            )),
        },
    };
    let format = match sh.format {
        PayloadFormat::Json => Format::Json,
        PayloadFormat::SenmlJson => Format::SenmlJson,
        PayloadFormat::SenmlCbor => Format::SenmlCbor,
        PayloadFormat::Auto => Format::detect(&payload),
    };
    let tenant = match tenant {
        Ok(t) => t,
        Err(reason) => return dead_letter(&sh, None, reason, format, &topic, &payload).await,
    };
    let ctx = DecodeContext {
        tenant: tenant.clone(),
        entity_type: sh.entity_type.clone(),
        id_prefix: sh.id_prefix.clone(),
        now: Timestamp::now(),
        privacy: sh.privacy,
    };
    match decode::decode(format, &payload, &ctx) {
        Ok(observations) => {
            let batch = Batch::of(tenant, sh.name.clone(), observations);
            match sh.ingest.submit(batch, &sh.counters).await {
                Ok(()) => Handled::Ack,
                Err(e) => Handled::Retry(e.to_string()),
            }
        }
        Err(e) => dead_letter(&sh, Some(tenant), e.to_string(), format, &topic, &payload).await,
    }
}

async fn dead_letter(
    sh: &Shared,
    tenant: Option<Tenant>,
    reason: String,
    format: Format,
    topic: &str,
    payload: &[u8],
) -> Handled {
    let reason = format!("topic `{}`: {reason}", decode::clip(topic));
    let ct = Some(format.media_type().to_owned());
    match sh
        .ingest
        .dead_letter(&sh.counters, tenant, reason, ct, payload.to_vec())
        .await
    {
        Ok(_) => Handled::Ack,
        Err(e) => Handled::Retry(e.to_string()),
    }
}

/// Polls `events` on a task of its own until the connection's first error, forwarding
/// every event; the receiver ends after the error is delivered.
type Events = tokio::sync::mpsc::Receiver<Result<Event, ConnectionError>>;

fn spawn_poller(mut events: rumqttc::EventLoop) -> (Events, JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let ev = events.poll().await;
            let failed = ev.is_err();
            if tx.send(ev).await.is_err() || failed {
                break;
            }
        }
    });
    (rx, task)
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!(
                "the broker refused the connection ({code:?}); check `username`, `password` and `client_id`"
            )
        }
        other => other.to_string(),
    }
}

/// `host:port`, with `[v6]:port` accepted.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

/// Back-off with jitter: a tiny xorshift generator is enough to spread reconnects.
struct Jitter(u64);

impl Jitter {
    fn new(seed: &str) -> Self {
        let mut h = Timestamp::now().as_millis() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        for b in seed.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Jitter(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Between half and all of `min(start × 2^attempt, cap)`.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let full = BACKOFF_START
            .saturating_mul(1u32 << attempt.min(16))
            .min(BACKOFF_CAP);
        let ms = full.as_millis() as u64;
        Duration::from_millis(ms / 2 + self.next() % (ms / 2 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: MqttSourceConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, MqttSourceConfig::default());
        assert_eq!(c.topics, ["polity/#"]);
        let c: MqttSourceConfig =
            serde_json::from_str(r#"{"format":"senml-cbor","tenant_from_topic_level":1}"#).unwrap();
        assert_eq!(c.format, PayloadFormat::SenmlCbor);
        assert!(serde_json::from_str::<MqttSourceConfig>(r#"{"topic":"x"}"#).is_err());
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut j = Jitter::new("t");
        for attempt in 0..40 {
            let d = j.backoff(attempt);
            let full = BACKOFF_START
                .saturating_mul(1u32 << attempt.min(16))
                .min(BACKOFF_CAP);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(j.backoff(30) >= BACKOFF_CAP / 2);
    }

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("127.0.0.1:1883"),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(split_host_port("[::1]:1883"), Some(("::1".into(), 1883)));
        assert_eq!(
            split_host_port("mqtt.city.example:8883"),
            Some(("mqtt.city.example".into(), 8883))
        );
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(split_host_port(":1883"), None);
    }
}
