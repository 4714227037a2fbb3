//! What every target shares: a fixed receive time and the decode contexts a source may
//! be configured with, and the normalize step every decoded batch goes through.

#![allow(dead_code)]

use std::sync::Arc;

use polity_ingest::{Normalizer, decode::DecodeContext};
use polity_model::{Batch, Observation, PrivacyClass, Tenant, Timestamp};

/// The receive time: 2026-01-01T00:00:00Z, so relative SenML times are reproducible.
pub const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// The two configurations that reach different decoder paths: a bare source (ids must be
/// URIs, types must come from the payload) and one with `entity_type` and `id_prefix`.
pub fn contexts() -> [DecodeContext; 2] {
    let tenant = Tenant::new("fuzz").expect("valid tenant");
    let bare = DecodeContext::new(tenant.clone(), NOW);
    let configured = DecodeContext {
        tenant,
        entity_type: Some(Arc::from("WeatherObserved")),
        id_prefix: Some("urn:ngsi-ld:WeatherObserved:".into()),
        now: NOW,
        privacy: PrivacyClass::Personal,
    };
    [bare, configured]
}

/// Runs the pipeline's normalize transform over decoded observations, as `submit` does.
pub fn normalize(observations: Vec<Observation>) {
    let mut batch = Batch {
        tenant: Tenant::new("fuzz").expect("valid tenant"),
        source: Arc::from("fuzz"),
        observations,
    };
    Normalizer::new()
        .with_privacy(
            "https://uri.etsi.org/ngsi-ld/location",
            PrivacyClass::Sensitive,
        )
        .normalize(&mut batch);
    for o in &batch.observations {
        if let polity_model::Value::Number(x) = o.value {
            assert!(!x.is_nan(), "normalize produced NaN from {o:?}");
        }
    }
}
