//! Senders: a city's devices talking to Polity over real protocols, in real time.
//!
//! Each sender is an async task that owns one city's traffic: it first sends a burst of
//! backfilled history (if asked), then every device reports every `report_interval`
//! (jittered) until the shutdown `watch` turns `true` (or its sender is dropped). A
//! sender never panics: peer errors are counted in [`SenderStats`] with the last message
//! kept, and connection failures back off exponentially with jitter, capped at 10 s.
//!
//! Memory stays bounded: due readings wait in a queue of at most
//! [`SendOptions::queue_limit`]; beyond it the oldest are shed and counted as `dropped`
//! (a real device with a full buffer does the same).
//!
//! This module owns the device side of the protocols only; it knows nothing of how
//! Polity receives them.

mod backoff;
mod coap;
mod http;
mod mqtt;
mod source;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use crate::nation::{City, Feed};

pub use backoff::Backoff;
pub use coap::coap_sender;
pub use http::http_sender;
pub use mqtt::mqtt_sender;

/// How a sender paces its city's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOptions {
    /// Each device reports this often. Default 15 s (3000 devices → 200 messages/s).
    pub report_interval: Duration,
    /// Relative jitter on each device's interval, `0.0..1.0`. Default 0.1 (±10 %).
    pub jitter: f64,
    /// Hours of history to send first, at `backfill_step`. Default 2; 0 turns it off.
    pub backfill_hours: f64,
    /// Spacing of backfilled readings per device. Default 15 min.
    pub backfill_step: Duration,
    /// Outstanding requests allowed at once: CoAP confirmables awaiting ACK (per
    /// socket) and MQTT QoS 1 publishes awaiting PUBACK. Default 64.
    pub max_in_flight: usize,
    /// Entities per NGSI-LD batch upsert. Default 100.
    pub http_batch: usize,
    /// Due readings allowed to wait before the oldest are shed. Default 50 000.
    pub queue_limit: usize,
    /// How often the scheduler wakes. Default 100 ms.
    pub tick: Duration,
    /// Bearer token for the NGSI-LD API (an application principal allowed to write
    /// the city's tenant). Default: none.
    pub http_token: Option<String>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            report_interval: Duration::from_secs(15),
            jitter: 0.1,
            backfill_hours: 2.0,
            backfill_step: crate::reading::BACKFILL_STEP,
            max_in_flight: 64,
            http_batch: 100,
            queue_limit: 50_000,
            tick: Duration::from_millis(100),
            http_token: None,
        }
    }
}

/// Counters a sender keeps while it runs; cheap to read at any time.
#[derive(Debug, Default)]
pub struct SenderStats {
    /// Readings handed to the transport (first transmission).
    pub sent: AtomicU64,
    /// Readings the peer accepted (CoAP 2.xx ACK, MQTT PUBACK, HTTP 201/204 or the
    /// successes of a 207).
    pub acked: AtomicU64,
    /// Readings rejected (CoAP 4.xx/5.xx, HTTP 4xx/5xx, per-entity errors in a 207) or
    /// lost (no ACK after every retransmission), plus transport failures (refused
    /// connections, socket errors), each counted once.
    pub errors: AtomicU64,
    /// Readings shed because the queue was full.
    pub dropped: AtomicU64,
    /// CoAP retransmissions.
    pub retransmits: AtomicU64,
    /// Wire requests made: CoAP packets, MQTT publishes, HTTP POSTs.
    pub requests: AtomicU64,
    /// Readings deliberately sent malformed (see [`crate::fault`]).
    pub faults: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A plain copy of [`SenderStats`] at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`SenderStats::sent`].
    pub sent: u64,
    /// See [`SenderStats::acked`].
    pub acked: u64,
    /// See [`SenderStats::errors`].
    pub errors: u64,
    /// See [`SenderStats::dropped`].
    pub dropped: u64,
    /// See [`SenderStats::retransmits`].
    pub retransmits: u64,
    /// See [`SenderStats::requests`].
    pub requests: u64,
    /// See [`SenderStats::faults`].
    pub faults: u64,
    /// The most recent error, as the peer or the OS described it.
    pub last_error: Option<String>,
}

impl SenderStats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            sent: g(&self.sent),
            acked: g(&self.acked),
            errors: g(&self.errors),
            dropped: g(&self.dropped),
            retransmits: g(&self.retransmits),
            requests: g(&self.requests),
            faults: g(&self.faults),
            last_error: self.last_error(),
        }
    }

    /// The most recent error message.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` errors and keeps `message` as the last error.
    pub(crate) fn error(&self, n: u64, message: String) {
        self.errors.fetch_add(n, Ordering::Relaxed);
        tracing::debug!(message = "simulated device send failed", error = %message);
        match self.last_error.lock() {
            Ok(mut g) => *g = Some(message),
            Err(p) => *p.into_inner() = Some(message),
        }
    }
}

/// Where each feed's peer listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// CoAP server (UDP), e.g. `127.0.0.1:5683`.
    pub coap: SocketAddr,
    /// MQTT broker (TCP), e.g. `127.0.0.1:1883`.
    pub mqtt: SocketAddr,
    /// NGSI-LD API base URL, e.g. `http://127.0.0.1:1026` (the path is appended).
    pub http: String,
}

/// Starts the sender matching `city`'s feed; returns its live counters and its task.
pub fn spawn_city(
    city: Arc<City>,
    endpoints: &Endpoints,
    opts: SendOptions,
    shutdown: watch::Receiver<bool>,
) -> (Arc<SenderStats>, JoinHandle<()>) {
    let stats = Arc::new(SenderStats::default());
    let s = stats.clone();
    let task = match city.spec.feed {
        Feed::CoapSenml => tokio::spawn(coap_sender(endpoints.coap, city, opts, s, shutdown)),
        Feed::MqttJson => tokio::spawn(mqtt_sender(endpoints.mqtt, city, opts, s, shutdown)),
        Feed::HttpNgsiLd => {
            tokio::spawn(http_sender(endpoints.http.clone(), city, opts, s, shutdown))
        }
    };
    (stats, task)
}

/// Whether shutdown has been asked for (the value is `true` or the sender is gone).
pub(crate) fn stopping(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

/// Resolves when shutdown is asked for.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Sleeps for `d` unless shutdown comes first; returns `true` on shutdown.
pub(crate) async fn sleep_or_stop(d: Duration, rx: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stopped(rx) => true,
        _ = tokio::time::sleep(d) => false,
    }
}
