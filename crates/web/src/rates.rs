//! Ingest rates per tenant, sampled once a second from the pipeline's counters.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use polity_ingest::Metrics;
use polity_model::Tenant;

/// How many one-second samples are kept (for sparklines).
pub const WINDOW: usize = 120;

/// Sampled observations-per-second per tenant.
#[derive(Debug, Default)]
pub struct Rates {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last: BTreeMap<Tenant, (u64, Option<Instant>)>,
    series: BTreeMap<Tenant, VecDeque<f64>>,
}

impl Rates {
    /// Takes one sample of every tenant's committed counter.
    pub fn sample(&self, metrics: &Metrics) {
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, total) in metrics.tenants() {
            let (prev, at) = g.last.get(&tenant).copied().unwrap_or((total, None));
            if let Some(at) = at {
                let dt = now.duration_since(at).as_secs_f64().max(1e-3);
                let rate = (total.saturating_sub(prev)) as f64 / dt;
                let s = g.series.entry(tenant.clone()).or_default();
                s.push_back(rate);
                while s.len() > WINDOW {
                    s.pop_front();
                }
            }
            g.last.insert(tenant, (total, Some(now)));
        }
    }

    /// The recent samples of one tenant, oldest first.
    pub fn series(&self, tenant: &Tenant) -> Vec<f64> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.series
            .get(tenant)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The mean rate over the last `n` samples.
    pub fn recent(&self, tenant: &Tenant, n: usize) -> f64 {
        let s = self.series(tenant);
        let tail: Vec<f64> = s.iter().rev().take(n.max(1)).copied().collect();
        if tail.is_empty() {
            0.0
        } else {
            tail.iter().sum::<f64>() / tail.len() as f64
        }
    }

    /// Samples every second until the returned task is dropped or aborted.
    pub fn spawn_sampler(self: &Arc<Self>, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                me.sample(&metrics);
            }
        })
    }
}
