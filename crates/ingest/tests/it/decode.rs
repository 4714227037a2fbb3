//! Property tests of the decoders: no input makes them panic, and generated valid
//! payloads decode to exactly what was encoded.

use std::sync::Arc;

use polity_ingest::decode::{self, DecodeContext, Format, expand};
use polity_model::{Pack, Record, Tenant, Timestamp, UnitCode, Value, units};
use proptest::prelude::*;
use serde_json::json;

fn ctx() -> DecodeContext {
    let mut c = DecodeContext::new(
        Tenant::new("adelaide").unwrap(),
        Timestamp::parse("2026-11-25T01:10:36Z").unwrap(),
    );
    c.entity_type = Some(Arc::from("Device"));
    c.id_prefix = Some("urn:ngsi-ld:Device:".into());
    c
}

fn decode_all(bytes: &[u8]) {
    let c = ctx();
    for f in [
        Format::Json,
        Format::SenmlJson,
        Format::SenmlCbor,
        Format::detect(bytes),
    ] {
        if let Ok(obs) = decode::decode(f, bytes, &c) {
            assert!(!obs.is_empty() && obs.len() <= decode::MAX_OBSERVATIONS);
        }
    }
}

/// Arbitrary JSON documents, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9:_ -]{0,12}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "urn:ngsi-ld:Device:1",
            "Point",
            "Cel",
            "2026-11-25T01:10:36Z",
            "Relationship"
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "id",
                        "type",
                        "observedAt",
                        "location",
                        "value",
                        "unitCode",
                        "object",
                        "coordinates",
                        "n",
                        "bn",
                        "v",
                        "vs",
                        "u",
                        "t",
                        "s",
                        "@context",
                        "datasetId",
                        "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| serde_json::Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

const SENML_UNITS: &[&str] = &[
    "Cel", "m/s", "km/h", "Wh", "kWh", "%RH", "W", "V", "A", "count", "lx", "ppm",
];

#[derive(Debug, Clone)]
enum V {
    Num(f64),
    Text(String),
    Bool(bool),
}

fn v() -> impl Strategy<Value = V> {
    prop_oneof![
        (-1e12f64..1e12).prop_map(V::Num),
        "[ -~]{0,20}".prop_map(V::Text),
        any::<bool>().prop_map(V::Bool),
    ]
}

fn attr_name() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9]{0,12}".prop_filter("reserved key", |s| {
        !matches!(s.as_str(), "id" | "type" | "location")
    })
}

/// Whether `v` is the number `x` sent as JSON. serde_json parses floats to within one
/// ulp unless its `float_roundtrip` feature is on (it is not in the workspace), so JSON
/// numbers are compared with that tolerance; CBOR carries them bit for bit.
fn same_json_number(v: &Value, x: f64) -> bool {
    matches!(v, Value::Number(y) if (y - x).abs() <= f64::EPSILON * x.abs())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(doc in json_value()) {
        decode_all(&serde_json::to_vec(&doc).unwrap());
        decode_all(&serde_json::to_vec(&json!([doc])).unwrap());
    }

    #[test]
    fn mutated_valid_payloads_never_panic(cut in 0usize..200, flip in any::<(usize, u8)>()) {
        let valid = br#"[{"bn":"urn:ngsi-ld:Device:d1:","bt":1.7e9,"n":"t","u":"Cel","v":21.5},{"n":"h","vs":"x","t":1}]"#;
        let mut b = valid.to_vec();
        let i = flip.0 % b.len();
        b[i] ^= flip.1;
        b.truncate(cut.min(b.len()));
        decode_all(&b);
        let mut cbor = Pack::from_json(valid).unwrap().to_cbor();
        let i = flip.0 % cbor.len();
        cbor[i] ^= flip.1;
        cbor.truncate(cut.min(cbor.len()));
        decode_all(&cbor);
    }

    #[test]
    fn senml_round_trips(
        device in "[a-z0-9-]{1,12}",
        recs in prop::collection::vec((attr_name(), v(), prop::sample::select(SENML_UNITS), 1_500_000_000_000i64..1_760_000_000_000), 1..20),
        cbor in any::<bool>(),
    ) {
        let records: Vec<Record> = recs
            .iter()
            .enumerate()
            .map(|(i, (name, val, unit, ms))| {
                let mut r = Record {
                    bn: (i == 0).then(|| format!("urn:ngsi-ld:Device:{device}:")),
                    n: Some(name.clone()),
                    t: Some(*ms as f64 / 1000.0),
                    ..Default::default()
                };
                match val {
                    V::Num(x) => { r.v = Some(*x); r.u = Some((*unit).to_owned()); }
                    V::Text(s) => r.vs = Some(s.clone()),
                    V::Bool(b) => r.vb = Some(*b),
                }
                r
            })
            .collect();
        let pack = Pack(records);
        let obs = if cbor {
            decode::decode(Format::SenmlCbor, &pack.to_cbor(), &ctx())
        } else {
            decode::decode(Format::SenmlJson, &pack.to_json(), &ctx())
        }.unwrap();
        prop_assert_eq!(obs.len(), recs.len());
        for (o, (name, val, unit, ms)) in obs.iter().zip(&recs) {
            prop_assert_eq!(o.entity.as_str(), format!("urn:ngsi-ld:Device:{device}"));
            prop_assert_eq!(&o.entity_type, &expand("Device"));
            prop_assert_eq!(&o.attr, &expand(name));
            prop_assert_eq!(o.observed_at.as_millis(), *ms);
            match val {
                V::Num(x) => {
                    if cbor {
                        prop_assert_eq!(&o.value, &Value::Number(*x));
                    } else {
                        prop_assert!(same_json_number(&o.value, *x), "{:?} vs {}", o.value, x);
                    }
                    prop_assert_eq!(o.unit, units::from_senml(unit));
                }
                V::Text(s) => prop_assert_eq!(&o.value, &Value::Text(Arc::from(s.as_str()))),
                V::Bool(b) => prop_assert_eq!(&o.value, &Value::Bool(*b)),
            }
        }
    }

    #[test]
    fn device_json_round_trips(
        objects in prop::collection::vec(
            ("[a-z0-9-]{1,12}", prop::collection::btree_map(attr_name(), (v(), any::<bool>()), 1..8), prop::option::of(1_500_000_000_000i64..1_760_000_000_000)),
            1..5,
        ),
        bare_ids in any::<bool>(),
    ) {
        let docs: Vec<serde_json::Value> = objects
            .iter()
            .map(|(device, attrs, ms)| {
                let mut m = serde_json::Map::new();
                let id = if bare_ids { device.clone() } else { format!("urn:ngsi-ld:Device:{device}") };
                m.insert("id".into(), json!(id));
                if let Some(ms) = ms {
                    m.insert("observedAt".into(), json!(Timestamp::from_millis(*ms).to_string()));
                }
                for (k, (val, with_unit)) in attrs {
                    let raw = match val {
                        V::Num(x) => json!(x),
                        V::Text(s) => json!(s),
                        V::Bool(b) => json!(b),
                    };
                    let wrapped = matches!(val, V::Num(_)) && *with_unit;
                    m.insert(k.clone(), if wrapped { json!({"value": raw, "unitCode": "CEL"}) } else { raw });
                }
                serde_json::Value::Object(m)
            })
            .collect();
        let obs = decode::decode_json(&serde_json::to_vec(&docs).unwrap(), &ctx()).unwrap();
        let expected: usize = objects.iter().map(|o| o.1.len()).sum();
        prop_assert_eq!(obs.len(), expected);
        let mut it = obs.iter();
        for (device, attrs, ms) in &objects {
            for (k, (val, with_unit)) in attrs {
                let o = it.next().unwrap();
                prop_assert_eq!(o.entity.as_str(), format!("urn:ngsi-ld:Device:{device}"));
                prop_assert_eq!(&o.attr, &expand(k));
                prop_assert_eq!(o.observed_at, ms.map_or(ctx().now, Timestamp::from_millis));
                match val {
                    V::Num(x) => {
                        prop_assert!(same_json_number(&o.value, *x), "{:?} vs {}", o.value, x);
                        prop_assert_eq!(o.unit, with_unit.then(|| UnitCode::new("CEL").unwrap()));
                    }
                    V::Text(s) => prop_assert_eq!(&o.value, &Value::Text(Arc::from(s.as_str()))),
                    V::Bool(b) => prop_assert_eq!(&o.value, &Value::Bool(*b)),
                }
            }
        }
    }
}
