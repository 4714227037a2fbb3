//! SenML (RFC 8428) packs → observations.
//!
//! The pack is parsed and resolved by `polity_model::senml` (base fields, relative
//! times against the receive time). This module maps each resolved record to one
//! observation with Polity's naming convention:
//!
//! - **Name.** The resolved name (base name + name) is `<entity-id>:<attr>`, split at the
//!   *last* `:`. `urn:ngsi-ld:AirQualityObserved:adelaide-7:NO2` is attribute `NO2` of
//!   entity `urn:ngsi-ld:AirQualityObserved:adelaide-7`. The usual pack sets the entity
//!   as base name with a trailing colon (`"bn":"urn:ngsi-ld:AirQualityObserved:adelaide-7:"`)
//!   and the attributes as names. The entity part must be a URI; a bare device id
//!   (`dev42:NO2`) is accepted when the source configures `id_prefix`.
//! - **Attribute.** Expanded against the NGSI-LD core context.
//! - **Entity type.** The third segment of an `urn:ngsi-ld:<Type>:…` id, otherwise the
//!   source's configured `entity_type`; with neither, the message is rejected.
//! - **Unit.** SenML unit symbols map to UN/CEFACT common codes
//!   (`polity_model::units::from_senml`): `Cel` → `CEL`, `km/h` → `KMH`. A unit Polity
//!   does not know rejects the whole message, naming the record and the unit, rather
//!   than storing a number whose meaning is lost.
//! - **Value.** `v` → number, `vs` → text, `vb` → boolean, `vd` → text holding the data
//!   in base64url; a record with only a sum (`s`) → the number of the sum.
//! - **Time.** `observedAt` is the record's resolved time.
//!
//! A message is accepted or rejected whole: one bad record rejects the pack, and the
//! source keeps it in the dead-letter store with this module's error as the reason.

use std::{collections::HashMap, sync::Arc};

use polity_model::{
    EntityId, Observation, Pack, SenmlValue, Timestamp, Value,
    senml::{ResolvedRecord, base64url_encode},
    units,
};

use super::{
    DecodeContext, DecodeError, MAX_OBSERVATIONS, MAX_PAYLOAD, clip, expand, resolve_id,
    type_from_urn,
};

/// Decodes a SenML JSON pack (`application/senml+json`, CoAP content-format 110).
pub fn decode_senml_json(
    payload: &[u8],
    ctx: &DecodeContext,
) -> Result<Vec<Observation>, DecodeError> {
    check_size(payload)?;
    map_pack(&Pack::from_json(payload)?, ctx)
}

/// Decodes a SenML CBOR pack (`application/senml+cbor`, CoAP content-format 112).
pub fn decode_senml_cbor(
    payload: &[u8],
    ctx: &DecodeContext,
) -> Result<Vec<Observation>, DecodeError> {
    check_size(payload)?;
    map_pack(&Pack::from_cbor(payload)?, ctx)
}

fn check_size(payload: &[u8]) -> Result<(), DecodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    Ok(())
}

/// An entity's position being assembled from `lat` and `lon` records: entity, type,
/// time, latitude, longitude.
type Position = (EntityId, Arc<str>, Timestamp, Option<f64>, Option<f64>);

/// Maps an already parsed pack to observations (see the module docs for the convention).
pub fn map_pack(pack: &Pack, ctx: &DecodeContext) -> Result<Vec<Observation>, DecodeError> {
    if pack.0.len() > MAX_OBSERVATIONS {
        return Err(DecodeError::TooManyObservations {
            max: MAX_OBSERVATIONS,
        });
    }
    let records = pack.resolve(ctx.now)?;
    if records.is_empty() {
        return Err(DecodeError::Empty);
    }
    // Names repeat across records; share one expanded string per distinct name.
    let mut attrs: HashMap<String, Arc<str>> = HashMap::new();
    let mut types: HashMap<String, Arc<str>> = HashMap::new();
    let default_type = ctx.entity_type.as_deref().map(expand);
    let mut out = Vec::with_capacity(records.len());
    // Records in the registered units `lat` and `lon` give the entity's location.
    let mut positions: Vec<Position> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let record = i + 1;
        let bad = |problem: String| DecodeError::SenmlRecord {
            record,
            name: clip(&r.name),
            problem,
        };
        let Some((id, attr)) = r
            .name
            .rsplit_once(':')
            .filter(|(id, a)| !id.is_empty() && !a.is_empty())
        else {
            return Err(bad(
                "the name must be `<entity-id>:<attribute>`, e.g. base name `urn:ngsi-ld:AirQualityObserved:adelaide-7:` and name `NO2`".into(),
            ));
        };
        let entity = resolve_id(id, ctx).map_err(|p| bad(format!("entity id {p}")))?;
        let entity_type = match type_from_urn(&entity) {
            Some(t) => types.entry(t.to_owned()).or_insert_with(|| expand(t)).clone(),
            None => default_type.clone().ok_or_else(|| {
                bad(format!(
                    "cannot tell the entity type of `{}`; use an id of the form urn:ngsi-ld:<Type>:<local> or set `entity_type` on the source",
                    clip(entity.as_str())
                ))
            })?,
        };
        if let (Some(u @ ("lat" | "lon")), SenmlValue::Number(v)) = (r.unit.as_deref(), &r.value) {
            let limit = if u == "lat" { 90.0 } else { 180.0 };
            if !(-limit..=limit).contains(v) {
                return Err(bad(format!(
                    "{u} {v} is out of range; degrees must be within ±{limit}"
                )));
            }
            let slot = match positions
                .iter_mut()
                .find(|p| p.0 == entity && p.2 == r.time)
            {
                Some(p) => p,
                None => {
                    positions.push((entity.clone(), entity_type.clone(), r.time, None, None));
                    positions.last_mut().expect("just pushed")
                }
            };
            if u == "lat" {
                slot.3 = Some(*v);
            } else {
                slot.4 = Some(*v);
            }
            continue;
        }
        let attr = attrs
            .entry(attr.to_owned())
            .or_insert_with(|| expand(attr))
            .clone();
        let unit = match r.unit.as_deref() {
            None => None,
            Some(u) => Some(units::from_senml(u).ok_or_else(|| {
                bad(format!(
                    "unit `{}` is not a SenML unit Polity knows; use a registered SenML symbol (Cel, K, m/s, km/h, %RH, W, kWh, …) or convert on the device",
                    clip(u)
                ))
            })?),
        };
        out.push(Observation {
            entity,
            entity_type,
            attr,
            dataset_id: None,
            value: value_of(r),
            unit,
            observed_at: r.time,
            observed: true,
            privacy: ctx.privacy,
            meta: None,
        });
    }
    for (entity, entity_type, time, lat, lon) in positions {
        let (Some(lat), Some(lon)) = (lat, lon) else {
            return Err(DecodeError::SenmlRecord {
                record: 0,
                name: clip(entity.as_str()),
                problem: "a position needs both a `lat` and a `lon` record at the same time".into(),
            });
        };
        out.push(Observation {
            entity,
            entity_type,
            attr: expand("location"),
            dataset_id: None,
            value: Value::Geo(Arc::new(
                serde_json::json!({"type": "Point", "coordinates": [lon, lat]}),
            )),
            unit: None,
            observed_at: time,
            observed: true,
            privacy: ctx.privacy,
            meta: None,
        });
    }
    super::not_in_future(out, ctx.now)
}

fn value_of(r: &ResolvedRecord) -> Value {
    match &r.value {
        SenmlValue::Number(v) => Value::Number(*v),
        SenmlValue::String(s) => Value::Text(Arc::from(s.as_str())),
        SenmlValue::Bool(b) => Value::Bool(*b),
        SenmlValue::Data(d) => Value::Text(Arc::from(base64url_encode(d))),
        // `resolve` only yields SumOnly for records that carry a sum.
        SenmlValue::SumOnly => Value::Number(r.sum.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polity_model::{Tenant, Timestamp, UnitCode};

    fn ctx() -> DecodeContext {
        DecodeContext::new(
            Tenant::new("adelaide").unwrap(),
            Timestamp::parse("2026-11-25T01:10:36Z").unwrap(),
        )
    }

    /// RFC 8428 §5.1.2 (multiple data points), with the base name changed to an NGSI-LD URN.
    const RFC8428_MULTI: &str = r#"[
        {"bn":"urn:ngsi-ld:Device:6M2-7b1a:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
        {"n":"current","t":-5,"v":1.2},
        {"n":"current","t":-4,"v":1.3}
    ]"#;

    #[test]
    fn values_stamped_in_the_future_are_rejected() {
        // ctx().now is 2026-11-25T01:10:36Z; 2100 is a broken device clock.
        let pack = r#"[{"bn":"urn:ngsi-ld:X:1:","n":"t","v":1,"t":4102444800}]"#;
        let e = decode_senml_json(pack.as_bytes(), &ctx()).unwrap_err();
        assert!(matches!(e, DecodeError::FutureTime { .. }), "{e}");
        assert!(e.to_string().contains("device clock"), "{e}");
        // Five minutes ahead is clock skew, and accepted.
        let t = ctx().now.as_secs_f64() + 300.0;
        let near = format!(r#"[{{"bn":"urn:ngsi-ld:X:1:","n":"t","v":1,"t":{t}}}]"#);
        assert!(decode_senml_json(near.as_bytes(), &ctx()).is_ok());
    }

    #[test]
    fn lat_lon_records_become_a_location() {
        let pack = r#"[{"bn":"urn:ngsi-ld:ParkingSpot:adelaide-1:","bt":1.7e9,"n":"status","vs":"free"},
            {"n":"lat","u":"lat","v":-34.93},{"n":"lon","u":"lon","v":138.6}]"#;
        let obs = decode_senml_json(pack.as_bytes(), &ctx()).unwrap();
        assert_eq!(obs.len(), 2);
        let loc = obs
            .iter()
            .find(|o| o.attr.ends_with("/location"))
            .expect("a location");
        assert_eq!(
            loc.value,
            Value::Geo(Arc::new(
                serde_json::json!({"type":"Point","coordinates":[138.6,-34.93]})
            ))
        );
        let half =
            r#"[{"bn":"urn:ngsi-ld:ParkingSpot:adelaide-1:","n":"lat","u":"lat","v":-34.93}]"#;
        assert!(
            decode_senml_json(half.as_bytes(), &ctx())
                .unwrap_err()
                .to_string()
                .contains("lon")
        );
    }

    #[test]
    fn rfc8428_example_maps_to_an_entity() {
        let obs = decode_senml_json(RFC8428_MULTI.as_bytes(), &ctx()).unwrap();
        assert_eq!(obs.len(), 3);
        assert_eq!(obs[0].entity.as_str(), "urn:ngsi-ld:Device:6M2-7b1a");
        assert_eq!(obs[0].entity_type, expand("Device"));
        assert_eq!(obs[0].attr, expand("voltage"));
        assert_eq!(obs[0].unit, Some(UnitCode::new("VLT").unwrap()));
        assert_eq!(obs[1].unit, Some(UnitCode::new("AMP").unwrap()));
        assert_eq!(obs[1].observed_at.as_millis(), 1_276_020_071_001);
        assert_eq!(obs[2].value, Value::Number(1.3));
    }

    #[test]
    fn unknown_unit_names_record_and_unit() {
        let p = br#"[{"bn":"urn:ngsi-ld:Device:d1:","n":"t","u":"furlong","v":1}]"#;
        let e = decode_senml_json(p, &ctx()).unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("furlong"), "{e}");
    }

    #[test]
    fn type_falls_back_to_config_or_rejects() {
        let p = br#"[{"bn":"https://example.org/things/7:","n":"level","v":0.5,"u":"%"}]"#;
        let e = decode_senml_json(p, &ctx()).unwrap_err().to_string();
        assert!(e.contains("entity_type"), "{e}");
        let mut c = ctx();
        c.entity_type = Some(Arc::from("WasteContainer"));
        let obs = decode_senml_json(p, &c).unwrap();
        assert_eq!(obs[0].entity_type, expand("WasteContainer"));
        assert_eq!(obs[0].entity.as_str(), "https://example.org/things/7");
    }

    #[test]
    fn bare_device_ids_need_a_prefix() {
        let p = br#"[{"bn":"dev42:","n":"temperature","u":"Cel","v":21.5}]"#;
        assert!(
            decode_senml_json(p, &ctx())
                .unwrap_err()
                .to_string()
                .contains("id_prefix")
        );
        let mut c = ctx();
        c.id_prefix = Some("urn:ngsi-ld:WeatherObserved:".into());
        let obs = decode_senml_json(p, &c).unwrap();
        assert_eq!(obs[0].entity.as_str(), "urn:ngsi-ld:WeatherObserved:dev42");
        assert_eq!(obs[0].entity_type, expand("WeatherObserved"));
    }

    #[test]
    fn value_kinds() {
        let p = br#"[{"bn":"urn:ngsi-ld:Device:d1:","n":"s","vs":"ok"},{"n":"b","vb":true},{"n":"d","vd":"AQID"},{"n":"e","s":42.5,"u":"kWh"}]"#;
        let obs = decode_senml_json(p, &ctx()).unwrap();
        assert_eq!(obs[0].value, Value::Text(Arc::from("ok")));
        assert_eq!(obs[1].value, Value::Bool(true));
        assert_eq!(obs[2].value, Value::Text(Arc::from("AQID")));
        assert_eq!(obs[3].value, Value::Number(42.5));
        assert_eq!(obs[3].unit, Some(UnitCode::new("KWH").unwrap()));
        assert_eq!(obs[0].observed_at, ctx().now);
    }

    #[test]
    fn names_without_attribute_are_rejected() {
        let e = decode_senml_json(br#"[{"n":"temperature","v":1}]"#, &ctx())
            .unwrap_err()
            .to_string();
        assert!(e.contains("<entity-id>:<attribute>"), "{e}");
    }
}
