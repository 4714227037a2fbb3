//! The NGSI-LD query language (`q=` on entity queries, a subscription's `q`):
//! `Query::parse`, the canonical form (`Display`), which must parse back to the same
//! tree, before and after expanding the names against the core context (a stored
//! subscription holds the expanded form), and evaluation against an entity.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use polity_model::{
    EntityState, PrivacyClass, Timestamp,
    jsonld::Context,
    ngsild::{ParseDefaults, parse_entity},
    query::Query,
};
use serde_json::json;

/// An entity with every kind of value a term can address: numbers, strings, booleans,
/// a Relationship, a GeoProperty, structured values and arrays, sub-attributes and a
/// multi-instance attribute.
static ENTITY: LazyLock<EntityState> = LazyLock::new(|| {
    let t = Timestamp::from_millis(1_767_225_600_000);
    let defaults = ParseDefaults {
        observed_at: t,
        privacy: PrivacyClass::Public,
        received_at: Timestamp::from_millis(polity_model::time::MAX_MS),
    };
    let body = json!({
        "id": "urn:ngsi-ld:Vehicle:A4567",
        "type": "Vehicle",
        "a": {"type": "Property", "value": 1},
        "brandName": {"type": "Property", "value": "Mercedes"},
        "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL",
            "observedAt": "2018-12-04T12:00:00Z",
            "accuracy": {"type": "Property", "value": 0.5},
            "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Device:7"}},
        "speed": [
            {"type": "Property", "value": 55, "datasetId": "urn:ngsi-ld:Dataset:gps"},
            {"type": "Property", "value": 54.5, "datasetId": "urn:ngsi-ld:Dataset:radar"}
        ],
        "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:1"},
        "inService": {"type": "Property", "value": true},
        "address": {"type": "Property", "value": {"addressLocality": "Bonn",
            "geo": {"floor": 2, "tags": ["covered", "ev"]}}},
        "opensAt": {"type": "Property", "value": "08:30:00Z"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [7.1, 50.7]}}
    });
    let parsed = parse_entity(&body, Context::core(), &defaults).expect("the fixture parses");
    let mut e = EntityState::new(parsed.id.clone(), parsed.entity_type.clone(), t);
    for o in &parsed.observations {
        e.apply(o, t);
    }
    e
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut q = match Query::parse(text) {
        Ok(q) => q,
        Err(e) => {
            if let Some(at) = e.offset() {
                assert!(
                    text.is_char_boundary(at),
                    "offset {at} inside a character: {e}"
                );
            }
            return;
        }
    };
    let canonical = q.to_string();
    let back = Query::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical form `{canonical}` does not parse: {e}"));
    assert_eq!(back, q, "canonical form `{canonical}`");
    let _ = q.matches(&ENTITY);

    q.expand(Context::core());
    // A sub-attribute after an IRI must be an IRI or hold no `/` or `#` to be written
    // out (see the query module's docs); expansion leaves `@` keywords as they are.
    let writable = q.paths().all(|p| {
        p.sub_attrs
            .iter()
            .all(|s| s.starts_with("https://") || s.starts_with("urn:") || !s.contains(['/', '#']))
    });
    if writable {
        let expanded = q.to_string();
        let back = Query::parse(&expanded)
            .unwrap_or_else(|e| panic!("expanded form `{expanded}` does not parse: {e}"));
        assert_eq!(back, q, "expanded form `{expanded}`");
    }
    let _ = q.matches(&ENTITY);
});
