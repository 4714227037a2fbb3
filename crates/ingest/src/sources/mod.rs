//! Sources: transports that receive device messages and hand them to the pipeline.
//!
//! Each source owns one transport (a UDP socket, an MQTT session), picks a decoder from
//! [`crate::decode`], submits the observations through the [`IngestHandle`] and tells
//! the sender only once they are durable. Payloads that cannot be decoded go to the
//! dead-letter store with their reason; nothing is dropped silently. Sources apply
//! backpressure: when the pipeline is slow they stop reading, they never buffer without
//! bound. They do not touch storage directly and do not normalize units.
//!
//! Every source has a serde config struct (`deny_unknown_fields`, each field documented
//! with its default), is bound or connected with its config and a [`SourceContext`],
//! and then runs until a shutdown signal.
//!
//! | module | transport |
//! |---|---|
//! | [`coap`] | CoAP over UDP (RFC 7252), SenML and device JSON |
//! | [`mqtt`] | MQTT 3.1.1 client subscription, SenML and device JSON |

pub mod coap;
pub mod mqtt;

use std::{net::SocketAddr, sync::Arc};

use crate::{metrics::Metrics, pipeline::IngestHandle};

pub use coap::{CoapSource, CoapSourceConfig};
pub use mqtt::{MqttClientTls, MqttSource, MqttSourceConfig, PayloadFormat};

/// What every source needs from the node.
#[derive(Clone)]
pub struct SourceContext {
    /// The source's configured name (metrics, dead letters, logs).
    pub name: String,
    /// Where decoded batches and dead letters go.
    pub ingest: IngestHandle,
    /// The metrics registry the source registers its counters in.
    pub metrics: Arc<Metrics>,
}

/// Why a source could not start. Messages say which setting to change.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Something else already listens on the address.
    #[error(
        "{what} listen address {addr} is already in use; choose another with {flag} ADDR (or `listen` in the source's config)"
    )]
    AddrInUse {
        /// The transport, e.g. "CoAP".
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The command-line flag that sets it, e.g. `--coap-listen`.
        flag: &'static str,
    },
    /// The address could not be bound for another reason.
    #[error("cannot listen for {what} on {addr}: {source}; choose another with {flag} ADDR")]
    Bind {
        /// The transport.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The command-line flag that sets it.
        flag: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A config value is invalid.
    #[error("source `{source_name}`: {problem}")]
    Config {
        /// The source's name.
        source_name: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// Logs at most one event per interval, counting what it suppressed in between; for
/// per-message warnings that a misbehaving sender could otherwise turn into a flood.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    last_ms: std::sync::atomic::AtomicI64,
    suppressed: std::sync::atomic::AtomicU64,
    interval_ms: i64,
}

impl LogLimiter {
    pub(crate) fn new(interval: std::time::Duration) -> Self {
        LogLimiter {
            last_ms: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
            suppressed: std::sync::atomic::AtomicU64::new(0),
            interval_ms: interval.as_millis() as i64,
        }
    }

    /// `Some(suppressed since the last event)` when an event may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = polity_model::Timestamp::now().as_millis();
        let last = self.last_ms.load(Relaxed);
        if now - last >= self.interval_ms
            && self
                .last_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}
