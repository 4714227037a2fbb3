//! Integration tests for `polity-model` against real payloads: the Smart Data Models
//! NGSI-LD normalized examples and their domain `@context`s (provenance in
//! `tests/fixtures/PROVENANCE.md`), and the RFC 8428 SenML examples.

use std::sync::Arc;

use polity_model::{
    Context, ContextCache, EntityState, ParseDefaults, PrivacyClass, RenderOptions, Timestamp,
    Value, jsonld::DEFAULT_VOCAB, parse_entity, render_entity, senml::Pack, units,
};
use serde_json::Value as Json;

/// (type, example file, context URL the example names, context file).
const FIXTURES: [(&str, &str, &str, &str); 5] = [
    (
        "WaterConsumptionObserved",
        include_str!("../fixtures/WaterConsumptionObserved.example-normalized.jsonld"),
        "https://raw.githubusercontent.com/smart-data-models/dataModel.WaterConsumption/master/context.jsonld",
        include_str!("../fixtures/sdm-WaterConsumption.context.jsonld"),
    ),
    (
        "ACMeasurement",
        include_str!("../fixtures/ACMeasurement.example-normalized.jsonld"),
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Energy/master/context.jsonld",
        include_str!("../fixtures/sdm-Energy.context.jsonld"),
    ),
    (
        "ParkingSpot",
        include_str!("../fixtures/ParkingSpot.example-normalized.jsonld"),
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld",
        include_str!("../fixtures/sdm-Parking.context.jsonld"),
    ),
    (
        "TrafficFlowObserved",
        include_str!("../fixtures/TrafficFlowObserved.example-normalized.jsonld"),
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld",
        include_str!("../fixtures/sdm-Transportation.context.jsonld"),
    ),
    (
        "AirQualityObserved",
        include_str!("../fixtures/AirQualityObserved.example-normalized.jsonld"),
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld",
        include_str!("../fixtures/sdm-Environment.context.jsonld"),
    ),
];

const DEFAULTS: ParseDefaults = ParseDefaults {
    observed_at: Timestamp::from_millis(1_700_000_000_000),
    privacy: PrivacyClass::Public,
    received_at: Timestamp::from_millis(polity_model::time::MAX_MS),
};

/// A cache holding the five SDM domain contexts, as the API would after registration.
fn cache() -> ContextCache {
    let mut cache = ContextCache::new(16);
    for (_, _, url, ctx) in FIXTURES {
        let doc: Json = serde_json::from_str(ctx).unwrap();
        let c = Context::from_document(&doc, &|_| None).unwrap();
        cache.insert(url, Arc::new(c)).unwrap();
    }
    cache
}

fn json(s: &str) -> Json {
    serde_json::from_str(s).unwrap()
}

#[test]
fn sdm_examples_parse_with_the_core_context_only() {
    for (ty, body, _, _) in FIXTURES {
        let body = json(body);
        let e =
            parse_entity(&body, Context::core(), &DEFAULTS).unwrap_or_else(|e| panic!("{ty}: {e}"));
        assert_eq!(&*e.entity_type, format!("{DEFAULT_VOCAB}{ty}"));
        let attrs = body
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !["id", "type", "@context"].contains(&k.as_str()));
        assert_eq!(
            e.observations.len(),
            attrs.count(),
            "{ty}: one observation per attribute"
        );
    }
}

#[test]
fn sdm_examples_parse_with_their_own_contexts() {
    let cache = cache();
    for (ty, body, _, _) in FIXTURES {
        let body = json(body);
        let ctx = cache
            .context_for(&body["@context"])
            .unwrap_or_else(|e| panic!("{ty}: {e}"));
        let e = parse_entity(&body, &ctx, &DEFAULTS).unwrap();
        assert!(
            e.entity_type.starts_with("https://smartdatamodels.org/"),
            "{ty}: {}",
            e.entity_type
        );
        // location is a core term: the SDM contexts cannot redefine it.
        let loc = e
            .observations
            .iter()
            .find(|o| &*o.attr == "https://uri.etsi.org/ngsi-ld/location");
        assert!(matches!(loc.map(|o| &o.value), Some(Value::Geo(_))), "{ty}");
    }
}

#[test]
fn water_consumption_details() {
    let cache = cache();
    let body = json(FIXTURES[0].1);
    let ctx = cache.context_for(&body["@context"]).unwrap();
    let e = parse_entity(&body, &ctx, &DEFAULTS).unwrap();
    let wc = e
        .observations
        .iter()
        .find(|o| o.attr.ends_with("waterConsumption"))
        .unwrap();
    assert_eq!(wc.value, Value::Number(191051.0));
    assert_eq!(wc.unit.map(|u| u.to_string()).as_deref(), Some("LTR"));
    assert_eq!(
        wc.observed_at,
        Timestamp::parse("2021-05-23T23:14:16Z").unwrap()
    );
    // observedBy is a Relationship sub-attribute, kept in meta with an expanded name.
    let meta = wc.meta.as_ref().unwrap();
    let (k, v) = meta.iter().next().unwrap();
    assert!(k.ends_with("observedBy"), "{k}");
    assert_eq!(v["object"], "urn:ngsi-ld:Device:01");
    // Normalizing the reading keeps litres (the canonical volume unit).
    assert_eq!(units::normalize(191051.0, wc.unit.unwrap()).0, 191051.0);
}

#[test]
fn sdm_examples_render_back_with_their_names() {
    let cache = cache();
    for (ty, body, _, _) in FIXTURES {
        let body = json(body);
        let ctx = cache.context_for(&body["@context"]).unwrap();
        let e = parse_entity(&body, &ctx, &DEFAULTS).unwrap();
        let mut s = EntityState::new(e.id.clone(), e.entity_type.clone(), DEFAULTS.observed_at);
        for o in &e.observations {
            s.apply(o, DEFAULTS.observed_at);
        }
        let out = render_entity(&s, &ctx, &RenderOptions::default());
        assert_eq!(out["type"], ty);
        for k in body
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "@context")
        {
            assert!(out.get(k).is_some(), "{ty}: `{k}` missing from {out}");
        }
        // And the rendering parses back to the same state.
        let again = parse_entity(&out, &ctx, &DEFAULTS).unwrap();
        let mut s2 = EntityState::new(again.id, again.entity_type, DEFAULTS.observed_at);
        for o in &again.observations {
            s2.apply(o, DEFAULTS.observed_at);
        }
        assert_eq!(s2, s, "{ty}");
    }
}

#[test]
fn senml_pack_to_canonical_units() {
    let pack = Pack::from_json(
        br#"[{"bn":"urn:dev:meter:7:","bt":1.7e9,"n":"volume","u":"m3","v":1.25},{"n":"energy","u":"Wh","v":1500}]"#,
    )
    .unwrap();
    let recs = pack.resolve(Timestamp::from_millis(0)).unwrap();
    let out: Vec<(f64, String)> = recs
        .iter()
        .map(|r| {
            let code = units::from_senml(r.unit.as_deref().unwrap()).unwrap();
            let polity_model::SenmlValue::Number(v) = r.value else {
                panic!()
            };
            let (v, c) = units::normalize(v, code);
            (v, c.to_string())
        })
        .collect();
    assert_eq!(out, [(1250.0, "LTR".to_owned()), (1.5, "KWH".to_owned())]);
}
