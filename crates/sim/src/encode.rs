//! Encoders: readings as each feed puts them on the wire.
//!
//! - SenML (RFC 8428) packs, JSON or CBOR, built with [`polity_model::senml`]: one pack
//!   per device message. Each reading starts with a record carrying the base name
//!   `<entity id>:` and the base time; the records are named by attribute term, so a
//!   resolved name is `urn:ngsi-ld:WaterConsumptionObserved:adelaide-00042:flow`. Units
//!   are SenML symbols. The device position rides along as two records named `lat` and
//!   `lon` with the registered SenML units `lat` and `lon`.
//! - MQTT JSON: one object per reading in Polity's device JSON, on topic
//!   `polity/<tenant>/<Type>/<device>`:
//!
//!   ```json
//!   {"id":"urn:ngsi-ld:ACMeasurement:melbourne-01400","type":"ACMeasurement",
//!    "observedAt":"2026-11-25T08:00:00Z",
//!    "location":{"type":"Point","coordinates":[144.9,-37.8]},
//!    "totalActivePower":{"value":1.21,"unitCode":"KWT"}, "...": "..."}
//!   ```
//!
//!   Every attribute is a top-level member named by its term: a bare value, or an
//!   object with `value` and the UN/CEFACT `unitCode` when it has a unit.
//! - NGSI-LD: an array of normalized entities for batch upsert, without `@context`
//!   (terms resolve against the core context), each attribute a Property with `value`,
//!   `observedAt` and `unitCode` when it has one, and `location` a GeoProperty Point.
//!
//! This module does no I/O and never panics on any reading.

use polity_model::senml::{Pack, Record};
use serde_json::{Map, Value, json};

use crate::reading::{Reading, ReadingValue};

fn senml_pack(readings: &[Reading]) -> Pack {
    let mut records = Vec::with_capacity(readings.iter().map(|r| r.values.len() + 2).sum());
    for r in readings {
        let bn = format!("{}:", r.entity_id);
        let bt = r.observed_at.as_secs_f64();
        let mut first = true;
        let mut base = |rec: &mut Record| {
            if std::mem::take(&mut first) {
                rec.bn = Some(bn.clone());
                rec.bt = Some(bt);
            }
        };
        for a in &r.values {
            let mut rec = Record {
                n: Some(a.name.to_owned()),
                u: a.senml_unit.map(str::to_owned),
                ..Record::default()
            };
            match &a.value {
                ReadingValue::Number(v) => rec.v = Some(*v),
                ReadingValue::Text(s) => rec.vs = Some(s.clone()),
                ReadingValue::Bool(b) => rec.vb = Some(*b),
            }
            base(&mut rec);
            records.push(rec);
        }
        for (n, v) in [("lat", r.location.lat), ("lon", r.location.lon)] {
            let mut rec = Record {
                n: Some(n.into()),
                u: Some(n.into()),
                v: Some(v),
                ..Record::default()
            };
            base(&mut rec);
            records.push(rec);
        }
    }
    Pack(records)
}

/// The readings as one `application/senml+cbor` pack (CoAP content-format 112).
pub fn to_senml_cbor(readings: &[Reading]) -> Vec<u8> {
    senml_pack(readings).to_cbor()
}

/// The readings as one `application/senml+json` pack (CoAP content-format 110).
pub fn to_senml_json(readings: &[Reading]) -> Vec<u8> {
    senml_pack(readings).to_json()
}

/// The MQTT topic a reading is published on: `polity/<tenant>/<Type>/<device>`.
pub fn mqtt_topic(r: &Reading) -> String {
    format!("polity/{}/{}/{}", r.tenant, r.entity_type, r.device)
}

fn json_value(v: &ReadingValue) -> Value {
    match v {
        // Whole numbers (counts, registers) are written as JSON integers.
        ReadingValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => json!(*n as i64),
        ReadingValue::Number(n) => json!(n),
        ReadingValue::Text(s) => json!(s),
        ReadingValue::Bool(b) => json!(b),
    }
}

/// One reading as the Melbourne vendors' MQTT JSON (Polity device JSON): `(topic, payload)`.
pub fn to_mqtt_json(r: &Reading) -> (String, Vec<u8>) {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.entity_id.as_str()));
    m.insert("type".into(), json!(r.entity_type));
    m.insert("observedAt".into(), json!(r.observed_at.to_string()));
    m.insert(
        "location".into(),
        json!({"type": "Point", "coordinates": [r.location.lon, r.location.lat]}),
    );
    for a in &r.values {
        let v = json_value(&a.value);
        match a.unit {
            Some(u) => m.insert(a.name.into(), json!({"value": v, "unitCode": u})),
            None => m.insert(a.name.into(), v),
        };
    }
    (
        mqtt_topic(r),
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default(),
    )
}

/// One reading as an NGSI-LD normalized entity (no `@context`).
pub fn to_ngsild_entity(r: &Reading) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.entity_id.as_str()));
    m.insert("type".into(), json!(r.entity_type));
    let observed_at = r.observed_at.to_string();
    for a in &r.values {
        let mut p = Map::new();
        p.insert("type".into(), json!("Property"));
        p.insert("value".into(), json_value(&a.value));
        if let Some(u) = a.unit {
            p.insert("unitCode".into(), json!(u));
        }
        p.insert("observedAt".into(), json!(observed_at));
        m.insert(a.name.into(), Value::Object(p));
    }
    m.insert(
        "location".into(),
        json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [r.location.lon, r.location.lat]}}),
    );
    Value::Object(m)
}

/// The readings as the body of an NGSI-LD batch upsert: an array of normalized entities.
pub fn to_ngsild_batch(readings: &[Reading]) -> Value {
    Value::Array(readings.iter().map(to_ngsild_entity).collect())
}

/// Whether `name` is a valid SenML name (RFC 8428 §4.5.1): it starts with a letter or
/// digit and uses only letters, digits and `-:./_`.
pub fn is_valid_senml_name(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '/' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nation::{DeviceKind, NationSpec};
    use polity_model::{Timestamp, senml::SenmlValue};

    fn sample() -> Vec<Reading> {
        let t = Timestamp::parse("2026-11-24T21:30:00.250Z").unwrap();
        NationSpec::demo(60)
            .build()
            .iter()
            .flat_map(|c| {
                DeviceKind::ALL
                    .iter()
                    .filter_map(|k| c.devices.iter().find(|d| d.kind == *k))
                    .map(|d| c.reading(d, t))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn senml_cbor_and_json_carry_the_same_resolved_records() {
        let rs = sample();
        let now = Timestamp::now();
        for r in &rs {
            let one = std::slice::from_ref(r);
            let cbor = Pack::from_cbor(&to_senml_cbor(one))
                .unwrap()
                .resolve(now)
                .unwrap();
            let json = Pack::from_json(&to_senml_json(one))
                .unwrap()
                .resolve(now)
                .unwrap();
            assert_eq!(cbor, json);
            assert_eq!(cbor.len(), r.values.len() + 2);
            for (rec, a) in cbor.iter().zip(&r.values) {
                assert_eq!(rec.name, format!("{}:{}", r.entity_id, a.name));
                assert!(is_valid_senml_name(&rec.name), "{}", rec.name);
                assert_eq!(rec.time, r.observed_at);
                assert_eq!(rec.unit.as_deref(), a.senml_unit);
                match (&rec.value, &a.value) {
                    (SenmlValue::Number(x), ReadingValue::Number(y)) => assert_eq!(x, y),
                    (SenmlValue::String(x), ReadingValue::Text(y)) => assert_eq!(x, y),
                    (SenmlValue::Bool(x), ReadingValue::Bool(y)) => assert_eq!(x, y),
                    other => panic!("value kind changed: {other:?}"),
                }
            }
            let lat = &cbor[r.values.len()];
            assert_eq!(
                (lat.unit.as_deref(), &lat.value),
                (Some("lat"), &SenmlValue::Number(r.location.lat))
            );
        }
        // Several readings share one pack, each with its own base name and time.
        let all = Pack::from_cbor(&to_senml_cbor(&rs))
            .unwrap()
            .resolve(now)
            .unwrap();
        assert_eq!(
            all.len(),
            rs.iter().map(|r| r.values.len() + 2).sum::<usize>()
        );
    }

    #[test]
    fn adelaide_water_is_in_cubic_metres_in_senml() {
        let r = sample()
            .into_iter()
            .find(|r| r.entity_type == "WaterConsumptionObserved")
            .unwrap();
        assert_eq!(r.tenant.as_str(), "adelaide");
        let j: Value = serde_json::from_slice(&to_senml_json(std::slice::from_ref(&r))).unwrap();
        assert_eq!(j[0]["bn"], json!(format!("{}:", r.entity_id)));
        assert_eq!(j[0]["bt"], json!(r.observed_at.as_secs_f64()));
        assert_eq!(j[0]["n"], "waterConsumption");
        assert_eq!(j[0]["u"], "m3");
    }

    #[test]
    fn mqtt_json_is_device_json_with_unit_codes() {
        for r in sample().iter().filter(|r| r.tenant.as_str() == "melbourne") {
            let (topic, payload) = to_mqtt_json(r);
            assert_eq!(
                topic,
                format!("polity/melbourne/{}/{}", r.entity_type, r.device)
            );
            let j: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(j["id"], r.entity_id.as_str());
            assert_eq!(j["type"], r.entity_type);
            assert_eq!(
                Timestamp::parse(j["observedAt"].as_str().unwrap()).unwrap(),
                r.observed_at
            );
            assert_eq!(j["location"]["coordinates"][1], json!(r.location.lat));
            for a in &r.values {
                match a.unit {
                    Some(u) => {
                        assert_eq!(j[a.name]["value"], json_value(&a.value));
                        assert_eq!(j[a.name]["unitCode"], u);
                    }
                    None => assert_eq!(j[a.name], json_value(&a.value)),
                }
            }
            if r.entity_type == "AirQualityObserved" {
                assert_eq!(j["temperature"]["unitCode"], "FAH");
            }
        }
    }

    #[test]
    fn ngsild_batch_has_typed_observed_attributes_and_a_location() {
        let rs = sample();
        let b = to_ngsild_batch(&rs);
        let arr = b.as_array().unwrap();
        assert_eq!(arr.len(), rs.len());
        for (e, r) in arr.iter().zip(&rs) {
            assert!(e.get("@context").is_none());
            assert_eq!(e["id"], r.entity_id.as_str());
            assert_eq!(e["type"], r.entity_type);
            assert_eq!(e["location"]["type"], "GeoProperty");
            assert_eq!(
                e["location"]["value"]["coordinates"],
                json!([r.location.lon, r.location.lat])
            );
            for a in &r.values {
                let p = &e[a.name];
                assert_eq!(p["type"], "Property", "{}", a.name);
                assert_eq!(p["value"], json_value(&a.value));
                assert_eq!(p["observedAt"], "2026-11-24T21:30:00.250Z");
                assert_eq!(p.get("unitCode").and_then(Value::as_str), a.unit);
            }
        }
    }

    mod props {
        use super::*;
        use crate::{
            fault::Fault,
            reading::{AttrValue, GeoPoint},
        };
        use proptest::prelude::*;

        fn any_value() -> impl Strategy<Value = ReadingValue> {
            prop_oneof![
                any::<f64>().prop_map(ReadingValue::Number),
                ".*".prop_map(ReadingValue::Text),
                any::<bool>().prop_map(ReadingValue::Bool),
            ]
        }

        proptest! {
            #[test]
            fn simulated_readings_encode_everywhere(city in 0usize..3, dev in 0usize..60, ms in 0i64..4_000_000_000_000, f in 0usize..5) {
                let cities = NationSpec::demo(60).build();
                let c = &cities[city];
                let r = c.reading(&c.devices[dev], Timestamp::from_millis(ms));
                let fault = [None, Some(Fault::Truncated), Some(Fault::WrongType), Some(Fault::BadUnit), Some(Fault::BadId)][f];
                let now = Timestamp::now();
                let recs = Pack::from_cbor(&to_senml_cbor(std::slice::from_ref(&r))).unwrap().resolve(now).unwrap();
                for rec in &recs {
                    prop_assert!(is_valid_senml_name(&rec.name), "{}", rec.name);
                }
                let _ = crate::fault::coap_payload(&r, fault);
                let _ = crate::fault::mqtt_message(&r, fault);
                let e = crate::fault::ngsild_entity(&r, fault);
                prop_assert!(e.is_object());
                let (_, p) = to_mqtt_json(&r);
                prop_assert!(serde_json::from_slice::<Value>(&p).is_ok());
            }

            #[test]
            fn arbitrary_values_never_panic(vals in proptest::collection::vec((0usize..4, any_value()), 0..8), ms in any::<i64>(), lon in any::<f64>(), lat in any::<f64>()) {
                let cities = NationSpec::demo(6).build();
                let mut r = cities[0].reading(&cities[0].devices[0], Timestamp::from_millis(ms));
                let names = ["flow", "status", "congested", "temperature"];
                r.values = vals.into_iter().map(|(i, value)| AttrValue { name: names[i], value, unit: Some("CEL"), senml_unit: Some("Cel") }).collect();
                r.location = GeoPoint { lon, lat };
                let _ = to_senml_cbor(std::slice::from_ref(&r));
                let _ = to_senml_json(std::slice::from_ref(&r));
                let _ = to_mqtt_json(&r);
                let _ = to_ngsild_batch(std::slice::from_ref(&r));
            }
        }
    }

    #[test]
    fn senml_name_rule() {
        assert!(is_valid_senml_name(
            "urn:ngsi-ld:ParkingSpot:sydney-00001:status"
        ));
        assert!(!is_valid_senml_name("-x"));
        assert!(!is_valid_senml_name("a b"));
        assert!(!is_valid_senml_name(""));
    }
}
