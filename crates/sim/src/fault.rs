//! Deliberate faults: a small, deterministic share of malformed messages.
//!
//! Real fleets send garbage: a radio cuts a frame short, a firmware update writes a
//! number with a decimal comma, a vendor types a unit in lower case. Polity must keep
//! such input as dead letters with a reason, never drop it and never choke on it, so the
//! demo sends some. Whether a message is faulty is a pure function of the seed, the
//! device and the instant, so a run is reproducible.
//!
//! | fault | CoAP SenML (Adelaide) | MQTT JSON (Melbourne) | NGSI-LD (Sydney) |
//! |---|---|---|---|
//! | [`Fault::Truncated`] | CBOR cut short | JSON cut short | n/a |
//! | [`Fault::WrongType`] | number sent as `vs` `"12,5"` | number sent as `"12,5"` | number sent as `"12,5"` |
//! | [`Fault::BadUnit`] | unit `gal/fortnight` | `unitCode` `kwh` (not a code) | `unitCode` `kwh` |
//! | [`Fault::BadId`] | n/a | n/a | `id` with spaces (not a URI) |

use serde_json::Value;

use crate::{
    encode,
    nation::{City, Device, Feed},
    prng,
    reading::{Reading, ReadingValue},
};

/// One way a message is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The payload is cut short mid-structure.
    Truncated,
    /// A numeric attribute arrives as text with a decimal comma.
    WrongType,
    /// An attribute carries a unit no registry knows.
    BadUnit,
    /// The entity id is not a URI.
    BadId,
}

impl Fault {
    /// The faults a feed can carry.
    pub fn for_feed(feed: Feed) -> &'static [Fault] {
        match feed {
            Feed::CoapSenml | Feed::MqttJson => {
                &[Fault::Truncated, Fault::WrongType, Fault::BadUnit]
            }
            Feed::HttpNgsiLd => &[Fault::WrongType, Fault::BadUnit, Fault::BadId],
        }
    }
}

/// Whether the message `device` sends at `observed_ms` is faulty, and how.
pub fn fault_for(city: &City, device_key: u64, observed_ms: i64) -> Option<Fault> {
    if city.fault_rate <= 0.0 {
        return None;
    }
    let h = [city.seed, device_key, observed_ms as u64, 0xFA17];
    if prng::unit(&h) >= city.fault_rate {
        return None;
    }
    let kinds = Fault::for_feed(city.spec.feed);
    Some(
        kinds[(prng::hash(&[city.seed, device_key, observed_ms as u64, 0xFA18])
            % kinds.len() as u64) as usize],
    )
}

/// The fault, if any, for a reading of `device`.
pub fn fault_of(city: &City, device: &Device, r: &Reading) -> Option<Fault> {
    fault_for(city, device.key, r.observed_at.as_millis())
}

/// Applies the reading-level part of a fault (wrong type, bad unit).
fn corrupt_reading(r: &mut Reading, fault: Fault) {
    let i = r
        .values
        .iter()
        .position(|a| matches!(a.value, ReadingValue::Number(_)))
        .unwrap_or(0);
    let Some(a) = r.values.get_mut(i) else {
        return;
    };
    match fault {
        Fault::WrongType => {
            let v = a.value.as_f64().unwrap_or(12.5);
            a.value = ReadingValue::Text(format!("{v}").replace('.', ","));
        }
        Fault::BadUnit => {
            a.unit = Some("kwh");
            a.senml_unit = Some("gal/fortnight");
        }
        Fault::Truncated | Fault::BadId => {}
    }
}

fn truncate(mut bytes: Vec<u8>) -> Vec<u8> {
    let keep = (bytes.len() * 3 / 5)
        .max(1)
        .min(bytes.len().saturating_sub(1));
    bytes.truncate(keep);
    bytes
}

/// The CoAP payload (SenML CBOR) for one reading, with `fault` applied.
pub fn coap_payload(r: &Reading, fault: Option<Fault>) -> Vec<u8> {
    match fault {
        None => encode::to_senml_cbor(std::slice::from_ref(r)),
        Some(Fault::Truncated) => truncate(encode::to_senml_cbor(std::slice::from_ref(r))),
        Some(f) => {
            let mut r = r.clone();
            corrupt_reading(&mut r, f);
            encode::to_senml_cbor(std::slice::from_ref(&r))
        }
    }
}

/// The MQTT `(topic, payload)` for one reading, with `fault` applied.
pub fn mqtt_message(r: &Reading, fault: Option<Fault>) -> (String, Vec<u8>) {
    match fault {
        None => encode::to_mqtt_json(r),
        Some(Fault::Truncated) => {
            let (t, p) = encode::to_mqtt_json(r);
            (t, truncate(p))
        }
        Some(f) => {
            let mut r = r.clone();
            corrupt_reading(&mut r, f);
            encode::to_mqtt_json(&r)
        }
    }
}

/// One NGSI-LD entity for a batch, with `fault` applied.
pub fn ngsild_entity(r: &Reading, fault: Option<Fault>) -> Value {
    match fault {
        None | Some(Fault::Truncated) => encode::to_ngsild_entity(r),
        Some(Fault::BadId) => {
            let mut e = encode::to_ngsild_entity(r);
            e["id"] = Value::String(format!("{} meter {}", r.tenant, r.device));
            e
        }
        Some(f) => {
            let mut r = r.clone();
            corrupt_reading(&mut r, f);
            encode::to_ngsild_entity(&r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nation::NationSpec;
    use polity_model::{Timestamp, senml::Pack};

    #[test]
    fn fault_rate_is_respected_and_deterministic() {
        let mut spec = NationSpec::demo(3000);
        spec.fault_rate = 0.01;
        let cities = spec.build();
        let c = &cities[0];
        let t0 = Timestamp::parse("2026-11-25T00:00:00Z")
            .unwrap()
            .as_millis();
        let mut n = 0;
        let mut total = 0;
        for (i, d) in c.devices.iter().enumerate() {
            for k in 0..10 {
                let ms = t0 + (k * 15_000 + i as i64);
                total += 1;
                if fault_for(c, d.key, ms).is_some() {
                    n += 1;
                }
                assert_eq!(fault_for(c, d.key, ms), fault_for(c, d.key, ms));
            }
        }
        let rate = n as f64 / total as f64;
        assert!((0.007..0.013).contains(&rate), "{rate}");
        let mut off = c.clone();
        off.fault_rate = 0.0;
        assert!(
            off.devices
                .iter()
                .all(|d| fault_for(&off, d.key, t0).is_none())
        );
    }

    #[test]
    fn faulty_payloads_are_malformed_in_the_documented_way() {
        let cities = NationSpec::demo(60).build();
        let t = Timestamp::parse("2026-11-25T00:00:00Z").unwrap();
        let r = cities[0].reading(&cities[0].devices[0], t);
        assert!(Pack::from_cbor(&coap_payload(&r, None)).is_ok());
        assert!(Pack::from_cbor(&coap_payload(&r, Some(Fault::Truncated))).is_err());
        let p = Pack::from_cbor(&coap_payload(&r, Some(Fault::WrongType))).unwrap();
        assert!(p.0[0].v.is_none() && p.0[0].vs.as_deref().is_some_and(|s| s.contains(',')));
        let p = Pack::from_cbor(&coap_payload(&r, Some(Fault::BadUnit))).unwrap();
        assert_eq!(p.0[0].u.as_deref(), Some("gal/fortnight"));

        let r = cities[1].reading(&cities[1].devices[0], t);
        let (_, p) = mqtt_message(&r, Some(Fault::Truncated));
        assert!(serde_json::from_slice::<Value>(&p).is_err());
        let (_, p) = mqtt_message(&r, Some(Fault::BadUnit));
        let j: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(j["waterConsumption"]["unitCode"], "kwh");

        let r = cities[2].reading(&cities[2].devices[0], t);
        let e = ngsild_entity(&r, Some(Fault::BadId));
        assert!(polity_model::EntityId::new(e["id"].as_str().unwrap()).is_err());
        let e = ngsild_entity(&r, Some(Fault::WrongType));
        assert!(e["waterConsumption"]["value"].is_string());
    }
}
