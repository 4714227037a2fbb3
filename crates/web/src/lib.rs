//! Server-rendered pages and the node's operational endpoints.
//!
//! This crate owns `/` (the national overview), `/health`, `/metrics` (Prometheus text),
//! `/api/cities`, `/api/overview` and its live stream `/api/overview/stream` (SSE). Pages
//! are plain HTML and SVG rendered by the binary: no Node build step, no client
//! framework; a few lines of inline script apply the live updates. It reads the store and
//! the ingest counters and never writes.

pub mod overview;
pub mod rates;

use std::sync::Arc;

use polity_ingest::Metrics;
use polity_model::Tenant;
use polity_store::Store;
use polity_trust::{Action, Routes, Scope};
use serde::Serialize;

pub use rates::Rates;

/// A city as the pages and `/api/cities` describe it.
#[derive(Debug, Clone, Serialize)]
pub struct City {
    /// Display name, e.g. "Adelaide".
    pub name: String,
    /// The NGSI-LD tenant holding the city's data.
    pub tenant: Tenant,
    /// Names of the sources that feed it (as registered in the metrics).
    pub sources: Vec<String>,
    /// How its data arrives, in words ("SenML (CBOR) over CoAP").
    pub feed: String,
}

/// What the pages read.
#[derive(Clone)]
pub struct WebState {
    /// Entity state and dead letters.
    pub store: Arc<dyn Store>,
    /// Ingest counters.
    pub metrics: Arc<Metrics>,
    /// The cities this node serves.
    pub cities: Arc<Vec<City>>,
    /// Sampled ingest rates.
    pub rates: Arc<Rates>,
    /// The node's name, shown in the page title.
    pub node_name: String,
    /// Sources that hold a connection (MQTT subscriptions), by name, with whether they
    /// are connected and subscribed right now; `/health` reports them.
    pub links: Arc<Vec<(String, Arc<std::sync::atomic::AtomicBool>)>>,
    /// The gate's counters (authentication and authorization answers).
    pub gate: Arc<polity_trust::GateCounters>,
    /// Turns true when the node shuts down; live streams end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Renders further `/metrics` families (e.g. subscriptions' notifications) from
    /// crates this one does not depend on.
    pub more_metrics: MetricsHook,
}

/// Appends Prometheus text to `/metrics`.
pub type MetricsHook = Arc<dyn Fn(&mut String) + Send + Sync>;

/// The pages, `/health`, `/metrics` and `/api/cities`, with the action guarding each.
pub fn routes(state: WebState) -> Routes {
    use Action::*;
    Routes::new()
        .get("/", OverviewRead, Scope::Node, overview::page)
        .get("/api/overview", OverviewRead, Scope::Node, overview::json)
        .get(
            "/api/overview/stream",
            OverviewRead,
            Scope::Node,
            overview::stream,
        )
        .get("/api/cities", OverviewRead, Scope::Node, overview::cities)
        .get("/health", HealthRead, Scope::Node, overview::health)
        .get("/metrics", MetricsRead, Scope::Node, overview::metrics)
        .with_state(state)
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
