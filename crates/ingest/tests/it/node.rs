//! A node's write path for tests: FjallStore in a temporary directory, the pipeline and
//! the metrics registry.

use std::{sync::Arc, time::Duration};

use polity_bus::Bus;
use polity_ingest::{IngestHandle, Metrics, Normalizer, PipelineOptions, Writer};
use polity_model::{EntityId, EntityState, Tenant};
use polity_store::{
    DeadLetter, DeadLetterQuery, DeadLetterStore, EntityStore,
    fjall::{FjallOptions, FjallStore},
};

pub struct Node {
    pub store: Arc<FjallStore>,
    pub ingest: IngestHandle,
    pub metrics: Arc<Metrics>,
    _writer: Writer,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn start() -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store =
            Arc::new(FjallStore::open(dir.path(), FjallOptions::default()).expect("store opens"));
        let metrics = Metrics::new();
        let (ingest, writer) = polity_ingest::start(
            store.clone(),
            Bus::default(),
            metrics.clone(),
            Normalizer::new(),
            PipelineOptions::default(),
        )
        .expect("pipeline starts");
        Node {
            store,
            ingest,
            metrics,
            _writer: writer,
            _dir: dir,
        }
    }

    pub fn entity(&self, tenant: &str, id: &str) -> Option<EntityState> {
        self.store
            .entity(&Tenant::new(tenant).unwrap(), &EntityId::new(id).unwrap())
            .expect("store read")
    }

    pub fn dead_letters(&self, source: &str) -> Vec<DeadLetter> {
        let q = DeadLetterQuery {
            source: Some(source.to_owned()),
            limit: 100,
            ..Default::default()
        };
        self.store.dead_letters(&q).expect("store read")
    }

    /// Polls `f` until it gives `Some`, for up to `secs` seconds.
    pub async fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return Some(v);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The attribute `term` (expanded with the core context) of an entity.
pub fn attr<'a>(e: &'a EntityState, term: &str) -> &'a polity_model::Observation {
    let iri = polity_ingest::decode::expand(term);
    e.attrs
        .iter()
        .find(|o| o.attr == iri)
        .unwrap_or_else(|| panic!("attribute {term} ({iri}) missing in {e:#?}"))
}

pub fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}
