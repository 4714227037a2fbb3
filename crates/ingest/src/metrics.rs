//! Per-source counters, shared by the sources, the pipeline, `/metrics` and the pages.
//!
//! Counters are plain atomics: sources bump them on their own tasks without locks, and
//! readers take a consistent-enough snapshot for display. The registry is keyed by the
//! source's configured name.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
};

use polity_model::{Tenant, Timestamp};
use serde::Serialize;

/// What kind of transport and decoder a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// NGSI-LD entities pushed over HTTP.
    HttpNgsiLd,
    /// SenML packs posted over HTTP.
    HttpSenml,
    /// An MQTT subscription (SenML or JSON payloads).
    Mqtt,
    /// CoAP over UDP (SenML CBOR or JSON).
    Coap,
}

impl SourceKind {
    /// The short label used in metrics and on pages.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::HttpNgsiLd => "http-ngsi-ld",
            SourceKind::HttpSenml => "http-senml",
            SourceKind::Mqtt => "mqtt",
            SourceKind::Coap => "coap",
        }
    }
}

/// Counters of one source.
#[derive(Debug)]
pub struct SourceCounters {
    /// The source's configured name.
    pub name: String,
    /// Transport and decoder.
    pub kind: SourceKind,
    /// The tenant it feeds, when it feeds exactly one.
    pub tenant: Option<Tenant>,
    /// A human description (listen address, topic filter).
    pub detail: String,
    /// Messages received (packets, publishes, requests).
    pub messages: AtomicU64,
    /// Payload bytes received.
    pub bytes: AtomicU64,
    /// Observations committed durably.
    pub committed: AtomicU64,
    /// Messages rejected into the dead-letter store.
    pub dead_letters: AtomicU64,
    /// Messages that could not even be dead-lettered or acknowledged (I/O errors).
    pub errors: AtomicU64,
    /// When the last message arrived, ms since the epoch (0 = never).
    pub last_message_ms: AtomicI64,
}

impl SourceCounters {
    /// Records one received message of `bytes` bytes.
    pub fn message(&self, bytes: usize) {
        self.messages.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
        self.last_message_ms
            .store(Timestamp::now().as_millis(), Relaxed);
    }

    /// A point-in-time copy for display.
    pub fn snapshot(&self) -> SourceSnapshot {
        let last = self.last_message_ms.load(Relaxed);
        SourceSnapshot {
            name: self.name.clone(),
            kind: self.kind,
            tenant: self.tenant.clone(),
            detail: self.detail.clone(),
            messages: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            committed: self.committed.load(Relaxed),
            dead_letters: self.dead_letters.load(Relaxed),
            errors: self.errors.load(Relaxed),
            last_message: (last != 0).then(|| Timestamp::from_millis(last)),
        }
    }
}

/// A copy of one source's counters.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSnapshot {
    /// The source's configured name.
    pub name: String,
    /// Transport and decoder.
    pub kind: SourceKind,
    /// The tenant it feeds, if only one.
    pub tenant: Option<Tenant>,
    /// Listen address or topic filter.
    pub detail: String,
    /// Messages received.
    pub messages: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Observations committed durably.
    pub committed: u64,
    /// Messages dead-lettered.
    pub dead_letters: u64,
    /// I/O errors.
    pub errors: u64,
    /// When the last message arrived.
    pub last_message: Option<Timestamp>,
}

/// Pipeline-wide counters plus the registry of sources.
#[derive(Debug, Default)]
pub struct Metrics {
    sources: RwLock<BTreeMap<String, Arc<SourceCounters>>>,
    /// Group commits performed.
    pub commits: AtomicU64,
    /// Observations committed across all sources.
    pub committed: AtomicU64,
    /// Commits that failed (the senders were told, nothing was acknowledged).
    pub commit_failures: AtomicU64,
    /// Total time spent in commits, microseconds.
    pub commit_micros: AtomicU64,
    /// Per tenant: observations committed, and dead letters kept.
    tenants: RwLock<BTreeMap<Tenant, Arc<[AtomicU64; 2]>>>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of source `name`, registering it on first use. Later calls return
    /// the same counters whatever the other arguments say.
    pub fn source(
        &self,
        name: &str,
        kind: SourceKind,
        tenant: Option<Tenant>,
        detail: &str,
    ) -> Arc<SourceCounters> {
        if let Some(c) = self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return c.clone();
        }
        let mut map = self.sources.write().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(SourceCounters {
                    name: name.to_owned(),
                    kind,
                    tenant,
                    detail: detail.to_owned(),
                    messages: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    committed: AtomicU64::new(0),
                    dead_letters: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    last_message_ms: AtomicI64::new(0),
                })
            })
            .clone()
    }

    /// The counters of an already registered source.
    pub fn get(&self, name: &str) -> Option<Arc<SourceCounters>> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Snapshots of every source, by name.
    pub fn sources(&self) -> Vec<SourceSnapshot> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|c| c.snapshot())
            .collect()
    }

    fn tenant_counter(&self, tenant: &Tenant, which: usize, n: u64) {
        if let Some(c) = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
        {
            c[which].fetch_add(n, Relaxed);
            return;
        }
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant.clone())
            .or_default()[which]
            .fetch_add(n, Relaxed);
    }

    pub(crate) fn add_tenant(&self, tenant: &Tenant, n: u64) {
        self.tenant_counter(tenant, 0, n);
    }

    pub(crate) fn add_tenant_dead_letter(&self, tenant: &Tenant) {
        self.tenant_counter(tenant, 1, 1);
    }

    /// Observations committed per tenant since start.
    pub fn tenants(&self) -> Vec<(Tenant, u64)> {
        self.tenant_values(0)
    }

    /// Dead letters kept per tenant since start (those whose tenant was known).
    pub fn tenant_dead_letters(&self) -> Vec<(Tenant, u64)> {
        self.tenant_values(1)
    }

    fn tenant_values(&self, which: usize) -> Vec<(Tenant, u64)> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(t, c)| (t.clone(), c[which].load(Relaxed)))
            .collect()
    }

    /// Appends the counters in Prometheus text exposition format.
    pub fn render_prometheus(&self, out: &mut String) {
        let sources = self.sources();
        type Family = (&'static str, &'static str, fn(&SourceSnapshot) -> u64);
        let families: [Family; 5] = [
            (
                "polity_source_messages_total",
                "Messages received by a source.",
                |s| s.messages,
            ),
            (
                "polity_source_bytes_total",
                "Payload bytes received by a source.",
                |s| s.bytes,
            ),
            (
                "polity_source_observations_committed_total",
                "Observations from a source committed durably.",
                |s| s.committed,
            ),
            (
                "polity_source_dead_letters_total",
                "Messages from a source rejected into the dead-letter store.",
                |s| s.dead_letters,
            ),
            (
                "polity_source_errors_total",
                "I/O errors on a source.",
                |s| s.errors,
            ),
        ];
        for (name, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &sources {
                let tenant = s.tenant.as_ref().map(|t| t.as_str()).unwrap_or("");
                let _ = writeln!(
                    out,
                    "{name}{{source=\"{}\",kind=\"{}\",tenant=\"{tenant}\"}} {}",
                    escape(&s.name),
                    s.kind.label(),
                    get(s)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP polity_tenant_observations_committed_total Observations committed per tenant.\n# TYPE polity_tenant_observations_committed_total counter"
        );
        for (t, n) in self.tenants() {
            let _ = writeln!(
                out,
                "polity_tenant_observations_committed_total{{tenant=\"{t}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP polity_tenant_dead_letters_total Dead letters kept per tenant.\n# TYPE polity_tenant_dead_letters_total counter"
        );
        for (t, n) in self.tenant_dead_letters() {
            let _ = writeln!(
                out,
                "polity_tenant_dead_letters_total{{tenant=\"{t}\"}} {n}"
            );
        }
        for (name, help, v) in [
            (
                "polity_commits_total",
                "Group commits performed.",
                self.commits.load(Relaxed),
            ),
            (
                "polity_observations_committed_total",
                "Observations committed durably.",
                self.committed.load(Relaxed),
            ),
            (
                "polity_commit_failures_total",
                "Group commits that failed.",
                self.commit_failures.load(Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let secs = self.commit_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP polity_commit_seconds_total Time spent in group commits.\n# TYPE polity_commit_seconds_total counter\npolity_commit_seconds_total {secs}"
        );
    }
}

/// Escapes a Prometheus label value.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_returns_the_same_counters() {
        let m = Metrics::new();
        let a = m.source(
            "adelaide-coap",
            SourceKind::Coap,
            Tenant::new("adelaide").ok(),
            "udp 127.0.0.1:5683",
        );
        a.message(10);
        let b = m.source("adelaide-coap", SourceKind::Mqtt, None, "");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(m.sources()[0].messages, 1);
        let mut out = String::new();
        m.render_prometheus(&mut out);
        assert!(out.contains("polity_source_messages_total{source=\"adelaide-coap\",kind=\"coap\",tenant=\"adelaide\"} 1"), "{out}");
        assert!(out.contains("polity_source_bytes_total{source=\"adelaide-coap\",kind=\"coap\",tenant=\"adelaide\"} 10"));
    }
}
