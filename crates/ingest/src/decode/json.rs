//! Polity device JSON → observations.
//!
//! The simplest thing a device or gateway can send: one flat JSON object per entity,
//! or an array of them.
//!
//! ```json
//! {"id": "urn:ngsi-ld:TrafficFlowObserved:melbourne-42", "type": "TrafficFlowObserved",
//!  "observedAt": "2026-11-25T01:10:36.123Z",
//!  "location": {"type": "Point", "coordinates": [144.96, -37.81]},
//!  "intensity": 12, "averageVehicleSpeed": {"value": 31.2, "unitCode": "KMH"},
//!  "laneDirection": "forward"}
//! ```
//!
//! - `id` (required): the entity id, a URI. When the source sets `id_prefix`, a bare
//!   device id is accepted and the entity id is the prefix followed by it.
//! - `type`: the entity type; required unless the source sets `entity_type`.
//! - `observedAt` (optional): RFC 3339 time of every value in the object; defaults to
//!   the time the message was received.
//! - `location` (optional): a GeoJSON geometry (a `Point` with 2 or 3 finite
//!   coordinates, or another GeoJSON geometry type), stored as a GeoProperty.
//! - Every other key is an attribute, expanded against the NGSI-LD core context. Its
//!   value is a bare number, string or boolean, or an object with `value` and optional
//!   `unitCode` (UN/CEFACT common code), `observedAt` and `datasetId`. An object with
//!   `"type": "Relationship"` and `object` is a relationship. Any other object or an
//!   array is stored as a structured (JSON) value.
//!
//! A message is accepted or rejected whole. Errors name the object and key and say what
//! to send instead; `null` values are rejected rather than silently skipped.

use std::{collections::HashMap, sync::Arc};

use polity_model::{EntityId, Observation, Timestamp, UnitCode, Value};
use serde_json::{Map, Value as Json};

use super::{DecodeContext, DecodeError, MAX_OBSERVATIONS, MAX_PAYLOAD, clip, expand, resolve_id};

/// GeoJSON geometry types accepted for `location`.
const GEOMETRY_TYPES: &[&str] = &[
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
];

/// Decodes Polity device JSON (`application/json`, CoAP content-format 50).
pub fn decode_json(payload: &[u8], ctx: &DecodeContext) -> Result<Vec<Observation>, DecodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    let doc: Json =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?;
    let objects: Vec<&Map<String, Json>> = match &doc {
        Json::Object(m) => vec![m],
        Json::Array(items) => {
            if items.is_empty() {
                return Err(DecodeError::Empty);
            }
            items
                .iter()
                .map(|v| {
                    v.as_object()
                        .ok_or_else(|| DecodeError::NotAnObject(kind(v)))
                })
                .collect::<Result<_, _>>()?
        }
        other => return Err(DecodeError::NotAnObject(kind(other))),
    };
    let mut names = Names::default();
    let default_type = ctx.entity_type.as_deref().map(expand);
    let mut out = Vec::new();
    for (i, obj) in objects.into_iter().enumerate() {
        decode_object(i + 1, obj, ctx, default_type.as_ref(), &mut names, &mut out)?;
    }
    if out.is_empty() {
        return Err(DecodeError::Empty);
    }
    super::not_in_future(out, ctx.now)
}

/// Expanded names shared across the objects of one message.
#[derive(Default)]
struct Names(HashMap<String, Arc<str>>);

impl Names {
    fn get(&mut self, term: &str) -> Arc<str> {
        if let Some(v) = self.0.get(term) {
            return v.clone();
        }
        let v = expand(term);
        self.0.insert(term.to_owned(), v.clone());
        v
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn decode_object(
    object: usize,
    obj: &Map<String, Json>,
    ctx: &DecodeContext,
    default_type: Option<&Arc<str>>,
    names: &mut Names,
    out: &mut Vec<Observation>,
) -> Result<(), DecodeError> {
    let field = |key: &str, problem: String| DecodeError::Field {
        object,
        key: clip(key),
        problem,
    };
    let entity = match obj.get("id") {
        Some(Json::String(s)) => resolve_id(s, ctx).map_err(|p| field("id", p))?,
        Some(other) => {
            return Err(field(
                "id",
                format!("must be a string, not {}", kind(other)),
            ));
        }
        None => {
            return Err(field(
                "id",
                "is missing; every object needs the entity id, e.g. \"id\": \"urn:ngsi-ld:TrafficFlowObserved:dev42\"".into(),
            ));
        }
    };
    let entity_type = match obj.get("type") {
        Some(Json::String(s)) if !s.is_empty() => names.get(s),
        Some(other) if !matches!(other, Json::String(_)) => {
            return Err(field("type", format!("must be a string such as \"TrafficFlowObserved\", not {}", kind(other))));
        }
        _ => default_type.cloned().ok_or_else(|| {
            field("type", "is missing; give the entity type, e.g. \"type\": \"TrafficFlowObserved\", or set `entity_type` on the source".into())
        })?,
    };
    let observed_at = match obj.get("observedAt") {
        None => ctx.now,
        Some(v) => time(v).map_err(|p| field("observedAt", p))?,
    };
    let before = out.len();
    for (key, v) in obj {
        match key.as_str() {
            "id" | "type" | "observedAt" => continue,
            "location" => {
                let geo = geometry(v).map_err(|p| field(key, p))?;
                out.push(obs(
                    &entity,
                    &entity_type,
                    names.get(key),
                    Value::Geo(Arc::new(geo)),
                    observed_at,
                    ctx,
                ));
            }
            k if k.starts_with('@') => {
                return Err(field(key, "JSON-LD keywords are not part of device JSON; remove it (terms are expanded with the NGSI-LD core context)".into()));
            }
            "" => return Err(field(key, "attribute names must not be empty".into())),
            _ => {
                let a = attribute(v, observed_at).map_err(|p| field(key, p))?;
                let mut o = obs(
                    &entity,
                    &entity_type,
                    names.get(key),
                    a.value,
                    a.observed_at,
                    ctx,
                );
                o.unit = a.unit;
                o.dataset_id = a.dataset_id;
                out.push(o);
            }
        }
        if out.len() > MAX_OBSERVATIONS {
            return Err(DecodeError::TooManyObservations {
                max: MAX_OBSERVATIONS,
            });
        }
    }
    if out.len() == before {
        return Err(field(
            "id",
            "the object has no attributes; add at least one, e.g. \"intensity\": 12".into(),
        ));
    }
    Ok(())
}

fn obs(
    entity: &EntityId,
    ty: &Arc<str>,
    attr: Arc<str>,
    value: Value,
    at: Timestamp,
    ctx: &DecodeContext,
) -> Observation {
    Observation {
        entity: entity.clone(),
        entity_type: ty.clone(),
        attr,
        dataset_id: None,
        value,
        unit: None,
        observed_at: at,
        observed: true,
        privacy: ctx.privacy,
        meta: None,
    }
}

fn time(v: &Json) -> Result<Timestamp, String> {
    match v {
        Json::String(s) => Timestamp::parse(s).map_err(|e| e.to_string()),
        other => Err(format!(
            "must be an RFC 3339 string such as \"2026-11-25T01:10:36.123Z\", not {}",
            kind(other)
        )),
    }
}

/// Validates a GeoJSON geometry (a Point strictly; other types by shape).
fn geometry(v: &Json) -> Result<Json, String> {
    let hint = "send a GeoJSON geometry such as {\"type\":\"Point\",\"coordinates\":[144.96,-37.81]} (longitude first)";
    let Json::Object(m) = v else {
        return Err(format!("must be {hint}, not {}", kind(v)));
    };
    // Accept the NGSI-LD form {"type":"GeoProperty","value":{…}} too.
    if m.get("type").and_then(Json::as_str) == Some("GeoProperty") {
        return m
            .get("value")
            .ok_or_else(|| format!("a GeoProperty needs a `value`; {hint}"))
            .and_then(geometry);
    }
    let ty = m.get("type").and_then(Json::as_str).unwrap_or("");
    if !GEOMETRY_TYPES.contains(&ty) {
        return Err(format!(
            "geometry type `{}` is not supported; {hint}",
            clip(ty)
        ));
    }
    let coords = m
        .get("coordinates")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("`coordinates` must be an array; {hint}"))?;
    if ty == "Point" {
        let ok = (2..=3).contains(&coords.len())
            && coords
                .iter()
                .all(|c| c.as_f64().is_some_and(f64::is_finite));
        let in_range = ok
            && coords[0]
                .as_f64()
                .is_some_and(|x| (-180.0..=180.0).contains(&x))
            && coords[1]
                .as_f64()
                .is_some_and(|y| (-90.0..=90.0).contains(&y));
        if !in_range {
            return Err(format!(
                "a Point needs [longitude, latitude] with longitude in -180..180 and latitude in -90..90; {hint}"
            ));
        }
    }
    Ok(v.clone())
}

/// One attribute instance as sent; entity, type and name come from the caller.
struct Attr {
    value: Value,
    unit: Option<UnitCode>,
    observed_at: Timestamp,
    dataset_id: Option<Arc<str>>,
}

fn attribute(v: &Json, default_time: Timestamp) -> Result<Attr, String> {
    let mut o = Attr {
        value: Value::Bool(false),
        unit: None,
        observed_at: default_time,
        dataset_id: None,
    };
    match v {
        Json::Object(m) if m.get("type").and_then(Json::as_str) == Some("Relationship") => {
            let target = m
                .get("object")
                .and_then(Json::as_str)
                .ok_or("a Relationship needs `object`, the target entity id")?;
            o.value = Value::Relationship(EntityId::new(target).map_err(|e| e.to_string())?);
            sub_keys(m, &mut o, &["type", "object"])?;
        }
        Json::Object(m) if m.contains_key("value") => {
            o.value = match &m["value"] {
                Json::Object(_) if m.get("type").and_then(Json::as_str) == Some("GeoProperty") => {
                    Value::Geo(Arc::new(geometry(&m["value"])?))
                }
                inner => scalar_or_json(inner)?,
            };
            sub_keys(m, &mut o, &["type", "value"])?;
        }
        other => o.value = scalar_or_json(other)?,
    }
    Ok(o)
}

/// Applies `unitCode`, `observedAt`, `datasetId`; rejects any other key not in `known`.
fn sub_keys(m: &Map<String, Json>, o: &mut Attr, known: &[&str]) -> Result<(), String> {
    for (k, v) in m {
        match k.as_str() {
            "unitCode" => {
                let s = v
                    .as_str()
                    .ok_or("`unitCode` must be a string such as \"KMH\"")?;
                o.unit = Some(UnitCode::new(s).map_err(|_| {
                    format!("`unitCode` `{}` is not a UN/CEFACT common code; use codes such as CEL, KMH, MTR, P1", clip(s))
                })?);
            }
            "observedAt" => o.observed_at = time(v).map_err(|p| format!("`observedAt` {p}"))?,
            "datasetId" => {
                let s = v
                    .as_str()
                    .filter(|s| polity_model::id::is_absolute_uri(s))
                    .ok_or("`datasetId` must be a URI")?;
                o.dataset_id = Some(Arc::from(s));
            }
            "type" => {
                let t = v.as_str().unwrap_or("");
                if !matches!(t, "Property" | "GeoProperty" | "Relationship") {
                    return Err(format!(
                        "`type` `{}` inside an attribute must be Property, GeoProperty or Relationship",
                        clip(t)
                    ));
                }
            }
            k if known.contains(&k) => {}
            other => {
                return Err(format!(
                    "`{}` is not understood inside an attribute; use `value` with optional `unitCode`, `observedAt` and `datasetId`, or send an object without `value` to store it as structured JSON",
                    clip(other)
                ));
            }
        }
    }
    if o.unit.is_some() && !matches!(o.value, Value::Number(_)) {
        return Err("`unitCode` is only allowed with a numeric `value`".into());
    }
    Ok(())
}

fn scalar_or_json(v: &Json) -> Result<Value, String> {
    Ok(match v {
        Json::Number(n) => Value::Number(
            n.as_f64()
                .filter(|x| x.is_finite())
                .ok_or("the number is out of range")?,
        ),
        Json::String(s) => Value::Text(Arc::from(s.as_str())),
        Json::Bool(b) => Value::Bool(*b),
        Json::Null => return Err("is null; omit the key or send a value".into()),
        Json::Array(_) | Json::Object(_) => Value::Json(Arc::new(v.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polity_model::Tenant;

    fn ctx() -> DecodeContext {
        DecodeContext::new(
            Tenant::new("melbourne").unwrap(),
            Timestamp::parse("2026-11-25T01:10:36Z").unwrap(),
        )
    }

    const EXAMPLE: &str = r#"{"id": "urn:ngsi-ld:TrafficFlowObserved:melbourne-42", "type": "TrafficFlowObserved",
        "observedAt": "2026-11-25T01:10:36.123Z",
        "location": {"type":"Point","coordinates":[144.96,-37.81]},
        "intensity": 12, "averageVehicleSpeed": {"value": 31.2, "unitCode": "KMH"},
        "laneDirection": "forward", "congested": false, "extra": {"a": [1, 2]}}"#;

    #[test]
    fn the_documented_example_decodes() {
        let obs = decode_json(EXAMPLE.as_bytes(), &ctx()).unwrap();
        assert_eq!(obs.len(), 6);
        let by = |a: &str| obs.iter().find(|o| o.attr == expand(a)).unwrap();
        assert_eq!(by("intensity").value, Value::Number(12.0));
        assert_eq!(
            by("averageVehicleSpeed").unit,
            Some(UnitCode::new("KMH").unwrap())
        );
        assert_eq!(by("laneDirection").value, Value::Text(Arc::from("forward")));
        assert_eq!(by("congested").value, Value::Bool(false));
        assert!(matches!(by("location").value, Value::Geo(_)));
        assert!(matches!(by("extra").value, Value::Json(_)));
        assert_eq!(
            by("intensity").observed_at,
            Timestamp::parse("2026-11-25T01:10:36.123Z").unwrap()
        );
        assert!(
            obs.iter()
                .all(|o| o.entity_type == expand("TrafficFlowObserved"))
        );
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            (r#"{"type":"T","x":1}"#, "key `id`"),
            (r#"{"id":"dev42","type":"T","x":1}"#, "id_prefix"),
            (r#"{"id":"urn:a:b","x":1}"#, "entity_type"),
            (
                r#"{"id":"urn:a:b","type":"T","x":null}"#,
                "key `x`: is null",
            ),
            (
                r#"{"id":"urn:a:b","type":"T","x":{"value":1,"unitCode":"kilometres"}}"#,
                "UN/CEFACT",
            ),
            (
                r#"{"id":"urn:a:b","type":"T","observedAt":"yesterday","x":1}"#,
                "RFC 3339",
            ),
            (
                r#"{"id":"urn:a:b","type":"T","location":{"type":"Point","coordinates":[200,1]}}"#,
                "longitude",
            ),
            (r#"{"id":"urn:a:b","type":"T"}"#, "no attributes"),
            (r#"[1]"#, "not a number"),
            (
                r#"{"id":"urn:a:b","type":"T","x":{"value":1,"foo":2}}"#,
                "`foo` is not understood",
            ),
            (r#"{"id": "#, "not valid JSON"),
        ];
        for (payload, want) in cases {
            let e = decode_json(payload.as_bytes(), &ctx())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{payload}: {e}");
        }
    }

    #[test]
    fn prefix_and_default_type() {
        let mut c = ctx();
        c.id_prefix = Some("urn:ngsi-ld:ParkingSpot:".into());
        c.entity_type = Some(Arc::from("ParkingSpot"));
        let obs = decode_json(
            br#"[{"id":"p1","status":"free"},{"id":"p2","status":"occupied"}]"#,
            &c,
        )
        .unwrap();
        assert_eq!(obs[1].entity.as_str(), "urn:ngsi-ld:ParkingSpot:p2");
        assert_eq!(obs[0].entity_type, expand("ParkingSpot"));
        assert_eq!(obs[0].observed_at, c.now);
    }

    #[test]
    fn relationships_and_per_attribute_time() {
        let p = br#"{"id":"urn:a:b","type":"T","refDevice":{"type":"Relationship","object":"urn:ngsi-ld:Device:9"},
                     "v":{"value":1,"observedAt":"2026-01-01T00:00:00Z","datasetId":"urn:ds:1"}}"#;
        let obs = decode_json(p, &ctx()).unwrap();
        assert_eq!(
            obs[0].value,
            Value::Relationship(EntityId::new("urn:ngsi-ld:Device:9").unwrap())
        );
        assert_eq!(
            obs[1].observed_at,
            Timestamp::parse("2026-01-01T00:00:00Z").unwrap()
        );
        assert_eq!(obs[1].dataset_id.as_deref(), Some("urn:ds:1"));
    }
}
