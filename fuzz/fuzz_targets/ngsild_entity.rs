//! NGSI-LD entity bodies (HTTP `POST /ngsi-ld/v1/entities`, batch upsert): JSON parse,
//! `parse_entity` against the core context, and the render paths an accepted entity
//! goes through afterwards. What Polity renders in the normalized form must parse back
//! to the same observations, since clients send it back (GET, change, upsert).

#![no_main]

use libfuzzer_sys::fuzz_target;
use polity_model::{
    EntityState, PrivacyClass, Timestamp,
    jsonld::Context,
    ngsild::{Format, ParseDefaults, RenderOptions, parse_entity, render_entity},
};
use serde_json::Value;

const DEFAULTS: ParseDefaults = ParseDefaults {
    observed_at: Timestamp::from_millis(1_767_225_600_000),
    privacy: PrivacyClass::Public,
    received_at: Timestamp::from_millis(polity_model::time::MAX_MS),
};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let ctx = Context::core();
    let Ok(parsed) = parse_entity(&body, ctx, &DEFAULTS) else {
        return;
    };
    let mut state = EntityState::new(
        parsed.id.clone(),
        parsed.entity_type.clone(),
        DEFAULTS.observed_at,
    );
    for o in &parsed.observations {
        state.apply(o, DEFAULTS.observed_at);
    }
    for format in [Format::KeyValues, Format::Concise] {
        let opts = RenderOptions {
            format,
            sys_attrs: true,
            ..RenderOptions::default()
        };
        let _ = render_entity(&state, ctx, &opts);
    }
    let rendered = render_entity(&state, ctx, &RenderOptions::default());
    assert_eq!(
        rendered["id"].as_str(),
        Some(state.id.as_str()),
        "the rendered id is the entity's: {rendered}"
    );
    let again = parse_entity(&rendered, ctx, &DEFAULTS)
        .unwrap_or_else(|e| panic!("rendered entity does not parse back ({e}): {rendered}"));
    assert_eq!(again.id, state.id);
    assert_eq!(again.entity_type, state.entity_type);
    let key = |o: &polity_model::Observation| {
        (
            o.attr.clone(),
            o.dataset_id.clone(),
            format!("{:?}", o.value),
            o.unit,
            o.observed_at,
        )
    };
    let mut want: Vec<_> = state.attrs.iter().map(key).collect();
    let mut got: Vec<_> = again.observations.iter().map(key).collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "observations after a render/parse round trip: {rendered}"
    );
});
