//! NGSI-LD entities in JSON, to and from the hot-path form.
//!
//! This module owns the NGSI-LD entity codec: [`parse_entity`] turns an entity body
//! (normalized or concise, already stripped of the need to fetch its `@context`) into
//! [`Observation`]s with expanded names, and [`render_entity`] / [`render_temporal`]
//! turn stored state back into the normalized, concise or keyValues representation with
//! compacted names. It does no I/O and knows nothing of storage or HTTP; errors carry
//! the NGSI-LD ProblemDetails type the API should answer with.
//!
//! Rules worth knowing:
//! - A multi-typed entity (`"type": ["A", "B"]`) keeps the **first** type as its
//!   primary type (stored on each observation); all types are in [`ParsedEntity::types`].
//! - An attribute without `observedAt` is placed in time at [`ParseDefaults::observed_at`]
//!   with [`Observation::observed`] false, so it renders without `observedAt`.
//! - Sub-attributes (any key of an attribute besides `type`, `value`, `object`,
//!   `observedAt`, `unitCode`, `datasetId`) are kept in [`Observation::meta`] with
//!   expanded names and normalized values (`{"type":"Property","value":…}`).
//! - Every NGSI-LD attribute type is kept: Property, Relationship, GeoProperty,
//!   LanguageProperty, VocabProperty (terms expanded, compacted on output),
//!   JsonProperty (verbatim), ListProperty and ListRelationship.

use std::{collections::HashSet, sync::Arc};

use serde_json::{Map, Value as Json};

use crate::{
    entity::{AttrTimes, EntityState},
    id::{EntityId, is_absolute_uri},
    jsonld::Context,
    observation::{Observation, PrivacyClass, Value},
    time::Timestamp,
    units::UnitCode,
};

/// NGSI-LD Null: the value that deletes an attribute in a merge, and that marks a
/// deletion in a temporal evolution.
pub const NGSI_NULL: &str = "urn:ngsi-ld:null";

/// The expanded IRI of the entity member `scope`, under which the history of scope
/// deletions is kept.
pub const SCOPE_IRI: &str = "https://uri.etsi.org/ngsi-ld/scope";

/// Whether `v` is a deletion record (an NGSI-LD Null of its kind).
pub fn is_tombstone(attr: &str, v: &Value) -> bool {
    match v {
        Value::Text(t) => &**t == NGSI_NULL,
        Value::Relationship(id) => id.as_str() == NGSI_NULL,
        Value::LanguageMap(m) | Value::Vocab(m) | Value::JsonValue(m) => {
            m.as_str() == Some(NGSI_NULL)
                || m.get("@none").and_then(Json::as_str) == Some(NGSI_NULL)
        }
        _ => attr == SCOPE_IRI,
    }
}

/// Deepest JSON nesting accepted in an entity body.
pub const MAX_DEPTH: usize = 32;

const NGSI: &str = "https://uri.etsi.org/ngsi-ld/";

/// Why an entity body was rejected. Each variant is one NGSI-LD ProblemDetails type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NgsiLdError {
    /// The body is well-formed JSON but not acceptable NGSI-LD data.
    #[error("{0}")]
    BadRequestData(String),
    /// The request is malformed (e.g. not a JSON object).
    #[error("{0}")]
    InvalidRequest(String),
}

impl NgsiLdError {
    /// The ProblemDetails `type` URI.
    pub fn problem_type(&self) -> &'static str {
        match self {
            NgsiLdError::BadRequestData(_) => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            NgsiLdError::InvalidRequest(_) => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
        }
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        match self {
            NgsiLdError::BadRequestData(s) | NgsiLdError::InvalidRequest(s) => s,
        }
    }
}

fn bad(msg: impl Into<String>) -> NgsiLdError {
    NgsiLdError::BadRequestData(msg.into())
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// What to assume when the body does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseDefaults {
    /// `observedAt` for attributes that have none (normally the time of receipt).
    pub observed_at: Timestamp,
    /// The privacy class given to every observation.
    pub privacy: PrivacyClass,
    /// The time of receipt: an `observedAt` more than
    /// [`MAX_FUTURE_SKEW_MS`](crate::time::MAX_FUTURE_SKEW_MS) after it is refused.
    pub received_at: Timestamp,
}

/// An entity body, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEntity {
    /// The entity id.
    pub id: EntityId,
    /// The primary type (the first one given), expanded.
    pub entity_type: Arc<str>,
    /// All types given, expanded, in the order given.
    pub types: Vec<Arc<str>>,
    /// The entity's `scope`, if it has one.
    pub scope: Option<Vec<Arc<str>>>,
    /// One observation per attribute instance, in body order.
    pub observations: Vec<Observation>,
}

/// The NGSI-LD attribute types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Property,
    Relationship,
    GeoProperty,
    LanguageProperty,
    VocabProperty,
    JsonProperty,
    ListProperty,
    ListRelationship,
}

impl Kind {
    /// The attribute type named by an expanded `type` value.
    fn from_iri(iri: &str) -> Option<Kind> {
        Some(match iri.strip_prefix(NGSI)? {
            "Property" => Kind::Property,
            "Relationship" => Kind::Relationship,
            "GeoProperty" => Kind::GeoProperty,
            "LanguageProperty" => Kind::LanguageProperty,
            "VocabProperty" => Kind::VocabProperty,
            "JsonProperty" => Kind::JsonProperty,
            "ListProperty" => Kind::ListProperty,
            "ListRelationship" => Kind::ListRelationship,
            _ => return None,
        })
    }

    /// The member holding the value in the normalized and concise forms.
    fn value_key(self) -> &'static str {
        match self {
            Kind::Property | Kind::GeoProperty => "value",
            Kind::Relationship => "object",
            Kind::LanguageProperty => "languageMap",
            Kind::VocabProperty => "vocab",
            Kind::JsonProperty => "json",
            Kind::ListProperty => "valueList",
            Kind::ListRelationship => "objectList",
        }
    }

    /// The kind a concise attribute object is, from the value member it has.
    fn from_members(o: &Map<String, Json>) -> Option<Kind> {
        [
            ("languageMap", Kind::LanguageProperty),
            ("vocab", Kind::VocabProperty),
            ("json", Kind::JsonProperty),
            ("valueList", Kind::ListProperty),
            ("objectList", Kind::ListRelationship),
            ("object", Kind::Relationship),
        ]
        .into_iter()
        .find(|(k, _)| o.contains_key(*k))
        .map(|(_, kind)| kind)
    }
}

/// A vocab value (a term or an array of terms), expanded against `ctx`.
fn expand_vocab(v: &Json, ctx: &Context) -> Option<Json> {
    match v {
        Json::String(s) => Some(Json::from(ctx.expand_term(s).into_owned())),
        Json::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(|s| Json::from(ctx.expand_term(s).into_owned()))
            })
            .collect::<Option<Vec<_>>>()
            .map(Json::Array),
        _ => None,
    }
}

/// A stored vocab value compacted against `ctx`.
fn compact_vocab(v: &Json, ctx: &Context) -> Json {
    match v {
        Json::String(s) => Json::from(ctx.compact_iri(s).into_owned()),
        Json::Array(a) => Json::Array(a.iter().map(|x| compact_vocab(x, ctx)).collect()),
        other => other.clone(),
    }
}

/// A language map: language tags to strings (or arrays of strings).
fn valid_language_map(v: &Json) -> bool {
    v.as_object().is_some_and(|m| {
        m.values()
            .all(|x| x.is_string() || x.as_array().is_some_and(|a| a.iter().all(Json::is_string)))
    })
}

/// One attribute instance before it becomes an observation.
struct Instance {
    value: Value,
    unit: Option<UnitCode>,
    observed_at: Option<Timestamp>,
    dataset_id: Option<Arc<str>>,
    meta: Map<String, Json>,
}

fn depth_ok(v: &Json, left: usize) -> bool {
    match v {
        Json::Array(a) => left > 0 && a.iter().all(|x| depth_ok(x, left - 1)),
        Json::Object(o) => left > 0 && o.values().all(|x| depth_ok(x, left - 1)),
        _ => true,
    }
}

/// Characters NGSI-LD forbids in names (attribute names, type names).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && !s.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, '<' | '>' | '"' | '\'' | '=' | ';' | '(' | ')')
                // Not allowed in IRIs either (RFC 3987), so such a name could not be
                // expanded to an attribute IRI and read back.
                || matches!(c, '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

/// Entity members that are not attributes.
fn entity_member(k: &str) -> bool {
    matches!(
        k,
        "id" | "type"
            | "@id"
            | "@type"
            | "@context"
            | "scope"
            | "createdAt"
            | "modifiedAt"
            | "deletedAt"
    )
}

/// Whether `name` expands to the IRI of a reserved member while not being spelt as that
/// member (e.g. `https://uri.etsi.org/ngsi-ld/createdAt` used as an attribute name).
fn aliases_reserved(name: &str, expanded: &str, is_reserved: fn(&str) -> bool) -> bool {
    let compact = Context::core().compact_iri(expanded);
    compact != name && is_reserved(&compact)
}

const GEO_TYPES: [&str; 6] = [
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
];

fn looks_geojson(v: &Json) -> bool {
    v.get("type")
        .and_then(Json::as_str)
        .is_some_and(|t| GEO_TYPES.contains(&t))
        && v.get("coordinates").is_some()
}

fn position(v: &Json) -> Result<(), String> {
    let a = v
        .as_array()
        .ok_or("a position must be an array [longitude, latitude]")?;
    if !(2..=3).contains(&a.len()) {
        return Err(format!("a position has 2 or 3 numbers, not {}", a.len()));
    }
    let mut n = [0.0f64; 3];
    for (i, x) in a.iter().enumerate() {
        n[i] = x.as_f64().ok_or("positions hold numbers only")?;
    }
    if !(-180.0..=180.0).contains(&n[0]) || !(-90.0..=90.0).contains(&n[1]) {
        return Err(format!(
            "position [{}, {}] is out of bounds: GeoJSON is [longitude -180..180, latitude -90..90]",
            n[0], n[1]
        ));
    }
    Ok(())
}

fn positions(v: &Json, min: usize, ring: bool) -> Result<(), String> {
    let a = v.as_array().ok_or("expected an array of positions")?;
    if a.len() < min {
        return Err(format!(
            "expected at least {min} positions, found {}",
            a.len()
        ));
    }
    a.iter().try_for_each(position)?;
    if ring && a.first() != a.last() {
        return Err("a polygon ring must end at its first position".into());
    }
    Ok(())
}

fn each(v: &Json, f: impl Fn(&Json) -> Result<(), String>) -> Result<(), String> {
    v.as_array()
        .ok_or_else(|| "expected an array".to_owned())?
        .iter()
        .try_for_each(f)
}

/// Checks a GeoJSON geometry (RFC 7946): one of the six geometry types with well-formed,
/// in-bounds numeric coordinates.
pub fn validate_geometry(v: &Json) -> Result<(), String> {
    let t = v
        .get("type")
        .and_then(Json::as_str)
        .ok_or("a GeoJSON geometry needs a \"type\"")?;
    let c = v
        .get("coordinates")
        .ok_or("a GeoJSON geometry needs \"coordinates\"")?;
    let polygon = |p: &Json| each(p, |r| positions(r, 4, true));
    match t {
        "Point" => position(c),
        "LineString" => positions(c, 2, false),
        "Polygon" => polygon(c),
        "MultiPoint" => positions(c, 0, false),
        "MultiLineString" => each(c, |l| positions(l, 2, false)),
        "MultiPolygon" => each(c, polygon),
        other => Err(format!(
            "`{}` is not a GeoJSON geometry type; use one of {}",
            clip(other),
            GEO_TYPES.join(", ")
        )),
    }
}

fn scalar(v: &Json) -> Value {
    match v {
        Json::Number(n) => n
            .as_f64()
            .map_or_else(|| Value::Json(Arc::new(v.clone())), Value::Number),
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) => Value::Text(Arc::from(s.as_str())),
        other => Value::Json(Arc::new(other.clone())),
    }
}

/// Keys of an attribute instance that are not sub-attributes.
fn reserved(k: &str) -> bool {
    matches!(
        k,
        "type"
            | "value"
            | "object"
            | "languageMap"
            | "vocab"
            | "json"
            | "valueList"
            | "objectList"
            | "observedAt"
            | "unitCode"
            | "datasetId"
            | "createdAt"
            | "modifiedAt"
            | "deletedAt"
            | "instanceId"
            | "@context"
    )
}

/// Parses one attribute instance (normalized or concise) of attribute `name`.
fn instance(name: &str, v: &Json, ctx: &Context, depth: usize) -> Result<Instance, NgsiLdError> {
    if depth > MAX_DEPTH {
        return Err(bad(format!(
            "attribute `{}` nests sub-attributes deeper than {MAX_DEPTH} levels",
            clip(name)
        )));
    }
    let Json::Object(o) = v else {
        return match v {
            Json::Null => Err(bad(format!(
                "attribute `{}` is null; give it a value or leave it out",
                clip(name)
            ))),
            // Concise form: a bare value is a Property.
            _ => Ok(Instance {
                value: scalar(v),
                unit: None,
                observed_at: None,
                dataset_id: None,
                meta: Map::new(),
            }),
        };
    };
    let declared = o.get("type").map(|t| match t {
        Json::String(t) => Ok(ctx.expand_term(t).into_owned()),
        _ => Err(bad(format!(
            "the type of attribute `{}` must be a string such as \"Property\"",
            clip(name)
        ))),
    });
    let kind = match declared.transpose()? {
        Some(t) => match Kind::from_iri(&t) {
            Some(k) => k,
            None if looks_geojson(v) => {
                validate_geometry(v)
                    .map_err(|e| bad(format!("attribute `{}`: {e}", clip(name))))?;
                return Ok(Instance {
                    value: Value::Geo(Arc::new(v.clone())),
                    unit: None,
                    observed_at: None,
                    dataset_id: None,
                    meta: Map::new(),
                });
            }
            None => {
                return Err(bad(format!(
                    "attribute `{}` has type `{}`; use Property, Relationship, GeoProperty, LanguageProperty, VocabProperty, JsonProperty, ListProperty or ListRelationship",
                    clip(name),
                    clip(o.get("type").and_then(Json::as_str).unwrap_or(""))
                )));
            }
        },
        None if o.contains_key("value") => {
            if o.get("value").is_some_and(looks_geojson) {
                Kind::GeoProperty
            } else {
                Kind::Property
            }
        }
        None => match Kind::from_members(o) {
            Some(k) => k,
            // A bare JSON object with no value member: a structured Property value
            // (concise form).
            None => {
                return Ok(Instance {
                    value: Value::Json(Arc::new(v.clone())),
                    unit: None,
                    observed_at: None,
                    dataset_id: None,
                    meta: Map::new(),
                });
            }
        },
    };
    let member = kind.value_key();
    let missing = || {
        bad(format!(
            "attribute `{}` is a {kind:?} without \"{member}\"; add it",
            clip(name)
        ))
    };
    let raw = match o.get(member) {
        None | Some(Json::Null) => return Err(missing()),
        Some(v) => v,
    };
    let value = match kind {
        Kind::Property => scalar(raw),
        Kind::GeoProperty => {
            validate_geometry(raw)
                .map_err(|e| bad(format!("GeoProperty `{}`: {e}", clip(name))))?;
            Value::Geo(Arc::new(raw.clone()))
        }
        Kind::Relationship => {
            let target = match raw {
                Json::String(s) => s.as_str(),
                Json::Array(a) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or(""),
                Json::Array(_) => {
                    return Err(bad(format!(
                        "Relationship `{}` has several objects; send one instance per object, each with its own datasetId, or a ListRelationship",
                        clip(name)
                    )));
                }
                _ => {
                    return Err(bad(format!(
                        "Relationship `{}` needs \"object\": the id (a URI) of the entity it points to",
                        clip(name)
                    )));
                }
            };
            let id = EntityId::new(target)
                .map_err(|e| bad(format!("Relationship `{}`: {e}", clip(name))))?;
            Value::Relationship(id)
        }
        Kind::LanguageProperty => {
            if !valid_language_map(raw) {
                return Err(bad(format!(
                    "LanguageProperty `{}` needs \"languageMap\": an object of language tags to strings, such as {{\"en\": \"Main Street\"}}",
                    clip(name)
                )));
            }
            Value::LanguageMap(Arc::new(raw.clone()))
        }
        Kind::VocabProperty => match expand_vocab(raw, ctx) {
            Some(v) => Value::Vocab(Arc::new(v)),
            None => {
                return Err(bad(format!(
                    "VocabProperty `{}` needs \"vocab\": a term or an array of terms",
                    clip(name)
                )));
            }
        },
        Kind::JsonProperty => Value::JsonValue(Arc::new(raw.clone())),
        Kind::ListProperty => match raw {
            Json::Array(_) => Value::List(Arc::new(raw.clone())),
            _ => {
                return Err(bad(format!(
                    "ListProperty `{}` needs \"valueList\": an array",
                    clip(name)
                )));
            }
        },
        Kind::ListRelationship => {
            let ok = raw.as_array().is_some_and(|a| {
                a.iter().all(|x| {
                    let id = match x {
                        Json::String(s) => Some(s.as_str()),
                        Json::Object(m) => m.get("object").and_then(Json::as_str),
                        _ => None,
                    };
                    id.is_some_and(is_absolute_uri)
                })
            });
            if !ok {
                return Err(bad(format!(
                    "ListRelationship `{}` needs \"objectList\": an array of entity ids (URIs)",
                    clip(name)
                )));
            }
            Value::ListRelationship(Arc::new(raw.clone()))
        }
    };
    let observed_at = match o.get("observedAt") {
        None => None,
        Some(Json::String(s)) => Some(
            Timestamp::parse(s)
                .map_err(|e| bad(format!("observedAt of attribute `{}`: {e}", clip(name))))?,
        ),
        Some(_) => {
            return Err(bad(format!(
                "observedAt of attribute `{}` must be a date-time string",
                clip(name)
            )));
        }
    };
    let unit = match o.get("unitCode") {
        None => None,
        Some(Json::String(s)) => Some(
            UnitCode::new(s)
                .map_err(|e| bad(format!("unitCode of attribute `{}`: {e}", clip(name))))?,
        ),
        Some(_) => {
            return Err(bad(format!(
                "unitCode of attribute `{}` must be a string such as \"CEL\"",
                clip(name)
            )));
        }
    };
    let dataset_id = match o.get("datasetId") {
        None => None,
        Some(Json::String(s)) if is_absolute_uri(s) => Some(Arc::from(s.as_str())),
        Some(_) => {
            return Err(bad(format!(
                "datasetId of attribute `{}` must be a URI such as urn:ngsi-ld:Dataset:sensor-2",
                clip(name)
            )));
        }
    };
    let mut meta = Map::new();
    for (k, sub) in o {
        if reserved(k) {
            continue;
        }
        if !valid_name(k) {
            return Err(bad(format!(
                "sub-attribute name `{}` of `{}` has a forbidden character (whitespace or one of < > \" ' = ; ( ))",
                clip(k),
                clip(name)
            )));
        }
        let expanded = ctx.expand_term(k);
        if aliases_reserved(k, &expanded, reserved) {
            return Err(bad(format!(
                "sub-attribute name `{}` of `{}` expands to the reserved member `{}`; rename it",
                clip(k),
                clip(name),
                Context::core().compact_iri(&expanded)
            )));
        }
        let inst = instance(k, sub, ctx, depth + 1)?;
        meta.insert(expanded.into_owned(), instance_json(&inst));
    }
    Ok(Instance {
        value,
        unit,
        observed_at,
        dataset_id,
        meta,
    })
}

/// The normalized JSON of an instance, as kept in `meta` (sub-attribute names expanded).
fn instance_json(i: &Instance) -> Json {
    let mut m = Map::new();
    let (ty, key, v) = value_parts(&i.value, Context::core());
    m.insert("type".into(), Json::from(ty));
    m.insert(key.into(), v);
    if let Some(t) = i.observed_at {
        m.insert("observedAt".into(), Json::from(t.to_string()));
    }
    if let Some(u) = i.unit {
        m.insert("unitCode".into(), Json::from(u.as_str()));
    }
    if let Some(d) = &i.dataset_id {
        m.insert("datasetId".into(), Json::from(&**d));
    }
    for (k, v) in &i.meta {
        m.insert(k.clone(), v.clone());
    }
    Json::Object(m)
}

fn number(x: f64) -> Json {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 && !(x == 0.0 && x.is_sign_negative())
    {
        Json::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
    }
}

/// (attribute type, key holding the value, the value) for a hot-path value, with
/// vocab terms compacted against `ctx`: `("Property", "value", 21.5)`.
pub fn value_parts(v: &Value, ctx: &Context) -> (&'static str, &'static str, Json) {
    match v {
        Value::Number(x) => ("Property", "value", number(*x)),
        Value::Bool(b) => ("Property", "value", Json::Bool(*b)),
        Value::Text(s) => ("Property", "value", Json::from(&**s)),
        Value::Json(j) => ("Property", "value", (**j).clone()),
        Value::Relationship(id) => ("Relationship", "object", Json::from(id.as_str())),
        Value::Geo(g) => ("GeoProperty", "value", (**g).clone()),
        Value::LanguageMap(m) => ("LanguageProperty", "languageMap", (**m).clone()),
        Value::Vocab(v) => ("VocabProperty", "vocab", compact_vocab(v, ctx)),
        Value::JsonValue(j) => ("JsonProperty", "json", (**j).clone()),
        Value::List(l) => ("ListProperty", "valueList", (**l).clone()),
        Value::ListRelationship(l) => ("ListRelationship", "objectList", (**l).clone()),
    }
}

/// The keyValues (simplified) form of a value: Properties and GeoProperties give their
/// value, Relationships their object; the other kinds keep their member name, as in
/// `{"languageMap": {...}}`, so that they are told apart.
fn simplified(v: &Value, ctx: &Context) -> Json {
    let (_, key, json) = value_parts(v, ctx);
    match key {
        "value" | "object" => json,
        _ => {
            let mut m = Map::new();
            m.insert(key.into(), json);
            Json::Object(m)
        }
    }
}

/// Parses an NGSI-LD entity body (normalized or concise) against the active context.
/// A `@context` member is ignored: the caller has already built `ctx` from it.
pub fn parse_entity(
    body: &Json,
    ctx: &Context,
    defaults: &ParseDefaults,
) -> Result<ParsedEntity, NgsiLdError> {
    parse_entity_inner(body, ctx, defaults, false)
}

/// Parses a temporal entity representation: like [`parse_entity`], but an attribute
/// may list several instances with the same `datasetId` (its evolution over time).
pub fn parse_temporal(
    body: &Json,
    ctx: &Context,
    defaults: &ParseDefaults,
) -> Result<ParsedEntity, NgsiLdError> {
    parse_entity_inner(body, ctx, defaults, true)
}

fn parse_entity_inner(
    body: &Json,
    ctx: &Context,
    defaults: &ParseDefaults,
    temporal: bool,
) -> Result<ParsedEntity, NgsiLdError> {
    let Json::Object(o) = body else {
        return Err(NgsiLdError::InvalidRequest(
            "an NGSI-LD entity must be a JSON object".into(),
        ));
    };
    if !depth_ok(body, MAX_DEPTH) {
        return Err(bad(format!(
            "the entity nests deeper than {MAX_DEPTH} levels; flatten structured values"
        )));
    }
    let id = match o.get("id").or_else(|| o.get("@id")) {
        Some(Json::String(s)) => EntityId::new(s).map_err(|e| bad(e.to_string()))?,
        Some(_) => {
            return Err(bad(
                "entity `id` must be a string URI such as urn:ngsi-ld:ParkingSpot:001",
            ));
        }
        None => {
            return Err(bad(
                "the entity has no `id`; add one such as \"id\": \"urn:ngsi-ld:ParkingSpot:001\"",
            ));
        }
    };
    let type_names: Vec<&str> = match o.get("type").or_else(|| o.get("@type")) {
        Some(Json::String(s)) => vec![s.as_str()],
        Some(Json::Array(a)) if !a.is_empty() && a.iter().all(Json::is_string) => {
            a.iter().filter_map(Json::as_str).collect()
        }
        Some(_) => {
            return Err(bad(
                "entity `type` must be a type name or a non-empty array of type names",
            ));
        }
        None => {
            return Err(bad(
                "the entity has no `type`; add one such as \"type\": \"ParkingSpot\"",
            ));
        }
    };
    let mut types = Vec::with_capacity(type_names.len());
    for t in type_names {
        if !valid_name(t) {
            return Err(bad(format!(
                "entity type `{}` has a forbidden character",
                clip(t)
            )));
        }
        let expanded = ctx.expand_term(t);
        if expanded.starts_with('@') {
            return Err(bad(format!(
                "entity type `{}` names the JSON-LD keyword {expanded}; use a type name",
                clip(t)
            )));
        }
        types.push(Arc::<str>::from(expanded));
    }
    let entity_type = types[0].clone();
    let scope = match o.get("scope") {
        None => None,
        Some(v) => Some(parse_scope(v)?),
    };
    let mut observations = Vec::with_capacity(o.len());
    let mut seen: HashSet<(Arc<str>, Option<Arc<str>>)> = HashSet::new();
    for (name, v) in o {
        if entity_member(name) {
            continue;
        }
        if !valid_name(name) {
            return Err(bad(format!(
                "attribute name `{}` has a forbidden character (whitespace or one of < > \" ' = ; ( )); rename it",
                clip(name)
            )));
        }
        let attr: Arc<str> = Arc::from(ctx.expand_term(name));
        if aliases_reserved(name, &attr, entity_member) {
            return Err(bad(format!(
                "attribute name `{}` expands to the reserved NGSI-LD member `{}`; rename it",
                clip(name),
                Context::core().compact_iri(&attr)
            )));
        }
        if &*attr == "@id" || &*attr == "@type" {
            return Err(bad(format!(
                "`{}` is an alias of {attr} and cannot be an attribute name",
                clip(name)
            )));
        }
        let instances: Vec<&Json> = match v {
            Json::Array(a) if !a.is_empty() && a.iter().all(Json::is_object) => a.iter().collect(),
            _ => vec![v],
        };
        for inst_json in instances {
            let inst = instance(name, inst_json, ctx, 1)?;
            if !temporal && !seen.insert((attr.clone(), inst.dataset_id.clone())) {
                return Err(bad(format!(
                    "attribute `{}` has two instances with the same datasetId; give each instance its own",
                    clip(name)
                )));
            }
            observations.push(Observation {
                entity: id.clone(),
                entity_type: entity_type.clone(),
                attr: attr.clone(),
                dataset_id: inst.dataset_id,
                value: inst.value,
                unit: inst.unit,
                observed_at: inst.observed_at.unwrap_or(defaults.observed_at),
                observed: inst.observed_at.is_some(),
                privacy: defaults.privacy,
                meta: (!inst.meta.is_empty()).then(|| Arc::new(inst.meta)),
            });
        }
    }
    let limit = Timestamp::from_millis(
        defaults
            .received_at
            .as_millis()
            .saturating_add(crate::time::MAX_FUTURE_SKEW_MS),
    );
    if let Some(o) = observations
        .iter()
        .find(|o| o.observed && o.observed_at > limit)
    {
        return Err(NgsiLdError::BadRequestData(format!(
            "observedAt {} of attribute `{}` is more than 10 minutes after the time of receipt {}; send the time the value was observed",
            o.observed_at,
            Context::core().compact_iri(&o.attr),
            defaults.received_at
        )));
    }
    Ok(ParsedEntity {
        id,
        entity_type,
        types,
        scope,
        observations,
    })
}

/// Parses an entity fragment (the body of an attribute append, update, merge or
/// replace) for the entity `id` of primary type `entity_type` (expanded). The fragment
/// may carry `id` and `type` (the `id` must then be `id`); its types, if any, are in
/// [`ParsedEntity::types`], otherwise that is empty.
pub fn parse_fragment(
    body: &Json,
    ctx: &Context,
    defaults: &ParseDefaults,
    id: &EntityId,
    entity_type: &str,
) -> Result<ParsedEntity, NgsiLdError> {
    let Json::Object(o) = body else {
        return Err(NgsiLdError::InvalidRequest(
            "an entity fragment must be a JSON object of attributes".into(),
        ));
    };
    if let Some(given) = o.get("id").or_else(|| o.get("@id"))
        && given.as_str() != Some(id.as_str())
    {
        return Err(bad(format!(
            "the fragment's id {given} is not the entity's id `{id}`; leave it out"
        )));
    }
    let has_type = o.contains_key("type") || o.contains_key("@type");
    let mut full = o.clone();
    full.insert("id".into(), Json::from(id.as_str()));
    if !has_type {
        full.insert("type".into(), Json::from(entity_type));
    }
    let mut parsed = parse_entity(&Json::Object(full), ctx, defaults)?;
    if !has_type {
        parsed.types.clear();
    }
    Ok(parsed)
}

/// Renders one stored attribute instance in the normalized form, names compacted with
/// `ctx` (for merging a fragment into it).
pub fn render_attribute(o: &Observation, ctx: &Context) -> Json {
    render_instance(o, None, ctx, &RenderOptions::default(), false)
}

/// Parses an NGSI-LD `scope` value: a scope (`/Madrid/Gardens`) or an array of them.
pub fn parse_scope(v: &Json) -> Result<Vec<Arc<str>>, NgsiLdError> {
    let one = |x: &Json| -> Result<Arc<str>, NgsiLdError> {
        match x {
            Json::String(s) if valid_scope(s) => Ok(Arc::from(s.as_str())),
            _ => Err(bad(format!(
                "scope `{}` is not a scope; write it as a path such as \"/Madrid/Gardens\"",
                clip(&x.to_string())
            ))),
        }
    };
    match v {
        Json::Array(a) if !a.is_empty() => a.iter().map(one).collect(),
        Json::Array(_) => Err(bad("scope is an empty array; leave it out instead")),
        other => Ok(vec![one(other)?]),
    }
}

/// A scope: `/` followed by one or more non-empty levels without `/` at the end and
/// without characters the scope query language uses.
fn valid_scope(s: &str) -> bool {
    s.len() <= 1024
        && s.starts_with('/')
        && s[1..]
            .split('/')
            .all(|l| !l.is_empty() && !l.contains([' ', ';', ',', '(', ')', '+', '#', '"']))
}

/// The representation to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Every attribute as an object with its `type` (the NGSI-LD default).
    #[default]
    Normalized,
    /// Attributes as bare values (`options=keyValues`).
    KeyValues,
    /// Attribute objects without `type` (`options=concise`).
    Concise,
}

/// How to render an entity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RenderOptions {
    /// The representation.
    pub format: Format,
    /// Add `createdAt` and `modifiedAt` (`options=sysAttrs`).
    pub sys_attrs: bool,
    /// Only these attributes (expanded IRIs); `None` for all.
    pub attrs: Option<Vec<String>>,
    /// A `@context` to put in the body (for `application/ld+json` responses).
    pub include_context: Option<Json>,
}

fn wanted(filter: &Option<Vec<String>>, attr: &str) -> bool {
    filter.as_ref().is_none_or(|f| f.iter().any(|a| a == attr))
}

/// Compacts the names in meta (and nested meta) and drops `type` for concise output.
fn render_meta(
    meta: &Map<String, Json>,
    ctx: &Context,
    concise: bool,
    out: &mut Map<String, Json>,
) {
    for (k, v) in meta {
        let rendered = match v {
            Json::Object(sub) => {
                let mut m = Map::new();
                let mut nested = Map::new();
                for (sk, sv) in sub {
                    if reserved(sk) {
                        if !(concise && sk == "type") {
                            m.insert(sk.clone(), sv.clone());
                        }
                    } else {
                        nested.insert(sk.clone(), sv.clone());
                    }
                }
                render_meta(&nested, ctx, concise, &mut m);
                Json::Object(m)
            }
            other => other.clone(),
        };
        out.insert(ctx.compact_iri(k).into_owned(), rendered);
    }
}

fn render_instance(
    o: &Observation,
    times: Option<&AttrTimes>,
    ctx: &Context,
    opts: &RenderOptions,
    alone: bool,
) -> Json {
    let format = opts.format;
    if format == Format::KeyValues {
        return simplified(&o.value, ctx);
    }
    let (ty, key, v) = value_parts(&o.value, ctx);
    let mut m = Map::new();
    if format == Format::Normalized {
        m.insert("type".into(), Json::from(ty));
    }
    m.insert(key.into(), v);
    if o.observed {
        m.insert("observedAt".into(), Json::from(o.observed_at.to_string()));
    }
    if let Some(u) = o.unit {
        m.insert("unitCode".into(), Json::from(u.as_str()));
    }
    if let Some(d) = &o.dataset_id {
        m.insert("datasetId".into(), Json::from(&**d));
    }
    if opts.sys_attrs
        && let Some(t) = times
    {
        m.insert("createdAt".into(), Json::from(t.created_at.to_string()));
        m.insert("modifiedAt".into(), Json::from(t.modified_at.to_string()));
    }
    if let Some(meta) = &o.meta {
        render_meta(meta, ctx, format == Format::Concise, &mut m);
    }
    // Concise: a lone Property that is only a scalar value is the value itself (in a
    // multi-instance array every instance stays an object).
    if format == Format::Concise
        && alone
        && m.len() == 1
        && key == "value"
        && m.get("value")
            .is_some_and(|v| !v.is_object() && !v.is_array())
    {
        return m.remove("value").unwrap_or(Json::Null);
    }
    Json::Object(m)
}

/// The `type` member of an entity: one type as a string, several as an array.
pub fn render_types(state: &EntityState, ctx: &Context) -> Json {
    if state.other_types.is_empty() {
        Json::from(ctx.compact_iri(&state.entity_type))
    } else {
        Json::Array(
            state
                .types()
                .map(|t| Json::from(ctx.compact_iri(t)))
                .collect(),
        )
    }
}

/// The `scope` member of an entity: one scope as a string, several as an array.
pub fn render_scope(scope: &[Arc<str>]) -> Option<Json> {
    match scope {
        [] => None,
        [one] => Some(Json::from(&**one)),
        many => Some(Json::Array(many.iter().map(|s| Json::from(&**s)).collect())),
    }
}

/// Groups observations by attribute, keeping first-seen attribute order.
fn group<'a>(obs: impl Iterator<Item = &'a Observation>) -> Vec<(&'a str, Vec<&'a Observation>)> {
    let mut groups: Vec<(&str, Vec<&Observation>)> = Vec::new();
    for o in obs {
        match groups.iter_mut().find(|g| g.0 == &*o.attr) {
            Some(g) => g.1.push(o),
            None => groups.push((&o.attr, vec![o])),
        }
    }
    groups
}

/// Renders an entity's current state in the NGSI-LD representation `opts` asks for.
/// Attributes with several instances (datasetIds) render as arrays; in keyValues they
/// render as an array of values.
pub fn render_entity(state: &EntityState, ctx: &Context, opts: &RenderOptions) -> Json {
    let mut m = Map::new();
    m.insert("id".into(), Json::from(state.id.as_str()));
    m.insert("type".into(), render_types(state, ctx));
    if let Some(scope) = render_scope(&state.scope) {
        m.insert("scope".into(), scope);
    }
    if opts.sys_attrs {
        m.insert("createdAt".into(), Json::from(state.created_at.to_string()));
        m.insert(
            "modifiedAt".into(),
            Json::from(state.modified_at.to_string()),
        );
    }
    for (attr, insts) in group(state.attrs.iter().filter(|o| wanted(&opts.attrs, &o.attr))) {
        let alone = insts.len() == 1;
        let render = |o: &Observation| {
            let times = state.times(&o.attr, o.dataset_id.as_deref());
            render_instance(o, times, ctx, opts, alone)
        };
        let rendered = if alone {
            render(insts[0])
        } else {
            Json::Array(insts.iter().map(|o| render(o)).collect())
        };
        m.insert(ctx.compact_iri(attr).into_owned(), rendered);
    }
    if let Some(c) = &opts.include_context {
        m.insert("@context".into(), c.clone());
    }
    Json::Object(m)
}

/// How to render a temporal representation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemporalOptions {
    /// `options=temporalValues`: each attribute as `{"type", "values": [[v, t], …]}`.
    pub temporal_values: bool,
    /// Only these attributes (expanded IRIs); `None` for all.
    pub attrs: Option<Vec<String>>,
    /// A `@context` to put in the body.
    pub include_context: Option<Json>,
}

/// Renders the NGSI-LD temporal representation of one entity from its series of
/// observations (any order; each attribute's instances come out oldest first).
pub fn render_temporal(
    id: &EntityId,
    entity_type: &str,
    series: &[Observation],
    ctx: &Context,
    opts: &TemporalOptions,
) -> Json {
    let mut m = Map::new();
    m.insert("id".into(), Json::from(id.as_str()));
    m.insert("type".into(), Json::from(ctx.compact_iri(entity_type)));
    for (attr, mut insts) in group(series.iter().filter(|o| wanted(&opts.attrs, &o.attr))) {
        insts.sort_by_key(|o| o.observed_at);
        let rendered = if opts.temporal_values {
            let mut by_ds: Vec<(Option<&str>, Vec<&Observation>)> = Vec::new();
            for o in insts {
                let ds = o.dataset_id.as_deref();
                match by_ds.iter_mut().find(|g| g.0 == ds) {
                    Some(g) => g.1.push(o),
                    None => by_ds.push((ds, vec![o])),
                }
            }
            let objs: Vec<Json> = by_ds
                .into_iter()
                .map(|(ds, os)| {
                    let (ty, key, _) = value_parts(&os[0].value, ctx);
                    let list_key = if key == "object" { "objects" } else { "values" };
                    let pairs: Vec<Json> = os
                        .iter()
                        .map(|o| {
                            Json::Array(vec![
                                value_parts(&o.value, ctx).2,
                                Json::from(o.observed_at.to_string()),
                            ])
                        })
                        .collect();
                    let mut a = Map::new();
                    a.insert("type".into(), Json::from(ty));
                    a.insert(list_key.into(), Json::Array(pairs));
                    if let Some(d) = ds {
                        a.insert("datasetId".into(), Json::from(d));
                    }
                    Json::Object(a)
                })
                .collect();
            if objs.len() == 1 && objs[0].get("datasetId").is_none() {
                objs.into_iter().next().unwrap_or(Json::Null)
            } else {
                Json::Array(objs)
            }
        } else {
            Json::Array(
                insts
                    .iter()
                    .map(|o| render_instance(o, None, ctx, &RenderOptions::default(), false))
                    .collect(),
            )
        };
        m.insert(ctx.compact_iri(attr).into_owned(), rendered);
    }
    if let Some(c) = &opts.include_context {
        m.insert("@context".into(), c.clone());
    }
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);
    const DEFAULTS: ParseDefaults = ParseDefaults {
        observed_at: T0,
        privacy: PrivacyClass::Public,
        received_at: Timestamp::from_millis(crate::time::MAX_MS),
    };

    #[test]
    fn observed_at_far_in_the_future_is_refused() {
        let d = ParseDefaults {
            received_at: T0,
            ..DEFAULTS
        };
        let late = |mins: i64| {
            let t = Timestamp::from_millis(T0.as_millis() + mins * 60_000);
            json!({"id": "urn:ngsi-ld:X:1", "type": "X", "a": {"type": "Property", "value": 1, "observedAt": t.to_string()}})
        };
        assert!(
            parse_entity(&late(5), core(), &d).is_ok(),
            "5 minutes of clock skew is accepted"
        );
        let e = parse_entity(&late(60), core(), &d).unwrap_err();
        assert!(e.detail().contains("10 minutes"), "{}", e.detail());
    }

    fn core() -> &'static Context {
        Context::core()
    }

    fn parse(v: Json) -> Result<ParsedEntity, NgsiLdError> {
        parse_entity(&v, core(), &DEFAULTS)
    }

    fn dflt(t: &str) -> String {
        format!("https://uri.etsi.org/ngsi-ld/default-context/{t}")
    }

    #[test]
    fn normalized_entity() {
        let e = parse(json!({
            "id": "urn:ngsi-ld:ParkingSpot:1",
            "type": "ParkingSpot",
            "status": {"type": "Property", "value": "free", "observedAt": "2018-09-21T12:00:00Z",
                       "parkingPermit": {"type": "Property", "value": "yes"}},
            "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL"},
            "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:1"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-3.8, 43.46]}},
            "@context": "ignored"
        }))
        .unwrap();
        assert_eq!(&*e.entity_type, dflt("ParkingSpot"));
        assert_eq!(e.observations.len(), 4);
        let status = &e.observations[0];
        assert_eq!(&*status.attr, "https://uri.etsi.org/ngsi-ld/status");
        assert_eq!(status.value, Value::Text(Arc::from("free")));
        assert_eq!(
            status.observed_at,
            Timestamp::parse("2018-09-21T12:00:00Z").unwrap()
        );
        let meta = status.meta.as_ref().unwrap();
        assert_eq!(
            meta[&dflt("parkingPermit")],
            json!({"type": "Property", "value": "yes"})
        );
        let temp = &e.observations[1];
        assert_eq!(temp.unit, Some(UnitCode::new("CEL").unwrap()));
        assert_eq!(temp.observed_at, T0, "defaults apply");
        assert!(
            matches!(e.observations[2].value, Value::Relationship(ref id) if id.as_str() == "urn:ngsi-ld:ParkingSite:1")
        );
        assert!(matches!(e.observations[3].value, Value::Geo(_)));
    }

    #[test]
    fn concise_entity() {
        let e = parse(json!({
            "id": "urn:ngsi-ld:X:1",
            "type": ["Building", "Asset"],
            "name": "Town hall",
            "floors": 3,
            "open": true,
            "address": {"streetAddress": "Main St 1"},
            "temperature": {"value": 20, "observedAt": "2024-01-01T00:00:00Z"},
            "owner": {"object": "urn:ngsi-ld:Person:1"},
            "location": {"type": "Point", "coordinates": [13.4, 52.5]},
            "area": {"value": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,0]]]}}
        }))
        .unwrap();
        assert_eq!(&*e.entity_type, dflt("Building"), "first type is primary");
        assert_eq!(e.types.len(), 2);
        let v: Vec<&Value> = e.observations.iter().map(|o| &o.value).collect();
        assert_eq!(v[0], &Value::Text(Arc::from("Town hall")));
        assert_eq!(v[1], &Value::Number(3.0));
        assert_eq!(v[2], &Value::Bool(true));
        assert!(matches!(v[3], Value::Json(_)));
        assert_eq!(v[4], &Value::Number(20.0));
        assert!(matches!(v[5], Value::Relationship(_)));
        assert!(matches!(v[6], Value::Geo(_)));
        assert!(matches!(v[7], Value::Geo(_)));
    }

    #[test]
    fn multi_instance_attributes() {
        let e = parse(json!({
            "id": "urn:ngsi-ld:X:1", "type": "T",
            "speed": [
                {"type": "Property", "value": 55, "datasetId": "urn:ngsi-ld:Dataset:gps"},
                {"type": "Property", "value": 54.5, "datasetId": "urn:ngsi-ld:Dataset:radar"},
                {"type": "Property", "value": 54}
            ]
        }))
        .unwrap();
        assert_eq!(e.observations.len(), 3);
        assert_eq!(
            e.observations[0].dataset_id.as_deref(),
            Some("urn:ngsi-ld:Dataset:gps")
        );
        let dup = parse(json!({"id": "urn:x:1", "type": "T",
            "speed": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]}));
        assert!(dup.unwrap_err().detail().contains("same datasetId"));
    }

    #[test]
    fn rejections_say_what_to_fix() {
        let cases = [
            (json!([]), "must be a JSON object"),
            (json!({"type": "T"}), "has no `id`"),
            (
                json!({"id": "not a uri", "type": "T"}),
                "not an absolute URI",
            ),
            (json!({"id": "urn:x:1"}), "has no `type`"),
            (json!({"id": "urn:x:1", "type": []}), "non-empty array"),
            (
                json!({"id": "urn:x:1", "type": "T", "a(b)": 1}),
                "forbidden character",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship"}}),
                "without \"object\"",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": "nope"}}),
                "not an absolute URI",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property"}}),
                "without \"value\"",
            ),
            (json!({"id": "urn:x:1", "type": "T", "p": null}), "is null"),
            (
                json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": 1, "observedAt": "yesterday"}}),
                "observedAt of attribute `p`",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": 1, "unitCode": "degC"}}),
                "unitCode of attribute `p`",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": 1, "datasetId": "x"}}),
                "datasetId",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "g": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 0]}}}),
                "out of bounds",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "g": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1]]]}}}),
                "ring must end",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "g": {"type": "GeoProperty", "value": {"type": "Circle", "coordinates": [0, 0]}}}),
                "not a GeoJSON geometry type",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "g": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": ["a", 0]}}}),
                "numbers only",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "l": {"type": "LanguageProperty", "languageMap": {"en": 1}}}),
                "languageMap",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "v": {"type": "VocabProperty", "vocab": 3}}),
                "a term or an array of terms",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "r": {"type": "ListRelationship", "objectList": ["no uri"]}}),
                "array of entity ids",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "scope": "no-slash", "p": 1}),
                "is not a scope",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "p": {"type": "Banana", "value": 1}}),
                "use Property",
            ),
        ];
        for (body, want) in cases {
            let e = parse(body.clone()).unwrap_err();
            assert!(
                e.detail().contains(want),
                "{body}: got `{e}`, want `{want}`"
            );
        }
        assert_eq!(
            parse(json!(1)).unwrap_err().problem_type(),
            "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"
        );
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "value": deep });
        }
        let e =
            parse(json!({"id": "urn:x:1", "type": "T", "p": {"type": "Property", "value": deep}}))
                .unwrap_err();
        assert!(e.detail().contains("deeper than"), "{e}");
        assert!(e.problem_type().ends_with("BadRequestData"));
    }

    fn state() -> EntityState {
        let e = parse(json!({
            "id": "urn:ngsi-ld:ParkingSpot:1",
            "type": "ParkingSpot",
            "status": {"type": "Property", "value": "free", "observedAt": "2018-09-21T12:00:00Z",
                       "parkingPermit": {"type": "Property", "value": "yes"}},
            "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:1"},
            "speed": [
                {"type": "Property", "value": 55, "datasetId": "urn:ngsi-ld:Dataset:gps", "unitCode": "KMH"},
                {"type": "Property", "value": 54.5}
            ]
        }))
        .unwrap();
        let mut s = EntityState::new(e.id, e.entity_type, T0);
        for o in &e.observations {
            s.apply(o, T0);
        }
        s
    }

    #[test]
    fn renders_normalized() {
        let v = render_entity(
            &state(),
            core(),
            &RenderOptions {
                sys_attrs: true,
                ..Default::default()
            },
        );
        assert_eq!(
            v,
            json!({
                "id": "urn:ngsi-ld:ParkingSpot:1",
                "type": "ParkingSpot",
                "createdAt": "2023-11-14T22:13:20Z",
                "modifiedAt": "2023-11-14T22:13:20Z",
                "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:1",
                                   "createdAt": "2023-11-14T22:13:20Z", "modifiedAt": "2023-11-14T22:13:20Z"},
                "speed": [
                    {"type": "Property", "value": 54.5,
                     "createdAt": "2023-11-14T22:13:20Z", "modifiedAt": "2023-11-14T22:13:20Z"},
                    {"type": "Property", "value": 55, "unitCode": "KMH", "datasetId": "urn:ngsi-ld:Dataset:gps",
                     "createdAt": "2023-11-14T22:13:20Z", "modifiedAt": "2023-11-14T22:13:20Z"}
                ],
                "status": {"type": "Property", "value": "free", "observedAt": "2018-09-21T12:00:00Z",
                           "createdAt": "2023-11-14T22:13:20Z", "modifiedAt": "2023-11-14T22:13:20Z",
                           "parkingPermit": {"type": "Property", "value": "yes"}}
            })
        );
    }

    #[test]
    fn every_attribute_type_round_trips_in_every_form() {
        let body = json!({
            "id": "urn:ngsi-ld:Building:1",
            "type": ["Building", "Asset"],
            "scope": ["/Paris/Centre", "/Heritage"],
            "street": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
            "category": {"type": "VocabProperty", "vocab": ["monument", "sightseeing"]},
            "config": {"type": "JsonProperty", "json": {"@id": "not expanded", "value": 1}},
            "floors": {"type": "ListProperty", "valueList": [1, 2, 3]},
            "neighbours": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Building:2"]},
            "name": {"type": "Property", "value": "Town hall"}
        });
        let e = parse(body.clone()).unwrap();
        assert_eq!(e.scope.as_ref().unwrap().len(), 2);
        assert!(
            e.observations.iter().all(|o| !o.observed),
            "no observedAt was given"
        );
        let vocab = e
            .observations
            .iter()
            .find(|o| o.attr.ends_with("category"))
            .unwrap();
        assert_eq!(
            vocab.value,
            Value::Vocab(Arc::new(json!([dflt("monument"), dflt("sightseeing")]))),
            "vocab terms are expanded"
        );
        let mut s = EntityState::new(e.id.clone(), e.entity_type.clone(), T0);
        s.add_types(&e.types);
        s.scope = e.scope.clone().unwrap();
        for o in &e.observations {
            s.set(o, T0);
        }
        let normalized = render_entity(&s, core(), &RenderOptions::default());
        assert_eq!(normalized, body, "normalized output is the input");
        let kv = render_entity(
            &s,
            core(),
            &RenderOptions {
                format: Format::KeyValues,
                ..Default::default()
            },
        );
        assert_eq!(
            kv["street"],
            json!({"languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}})
        );
        assert_eq!(
            kv["category"],
            json!({"vocab": ["monument", "sightseeing"]})
        );
        assert_eq!(kv["name"], json!("Town hall"));
        let concise = render_entity(
            &s,
            core(),
            &RenderOptions {
                format: Format::Concise,
                ..Default::default()
            },
        );
        assert_eq!(concise["name"], json!("Town hall"));
        let mut back = parse(concise).unwrap().observations;
        back.sort_by(|a, b| a.attr.cmp(&b.attr));
        assert_eq!(back, s.attrs, "concise parses back the same");
    }

    #[test]
    fn renders_key_values_and_concise_and_filters() {
        let s = state();
        let kv = render_entity(
            &s,
            core(),
            &RenderOptions {
                format: Format::KeyValues,
                ..Default::default()
            },
        );
        assert_eq!(kv["status"], json!("free"));
        assert_eq!(kv["refParkingSite"], json!("urn:ngsi-ld:ParkingSite:1"));
        assert_eq!(kv["speed"], json!([54.5, 55]));
        let c = render_entity(
            &s,
            core(),
            &RenderOptions {
                format: Format::Concise,
                ..Default::default()
            },
        );
        assert_eq!(
            c["status"],
            json!({"value": "free", "observedAt": "2018-09-21T12:00:00Z", "parkingPermit": {"value": "yes"}})
        );
        assert_eq!(
            c["refParkingSite"]["object"],
            json!("urn:ngsi-ld:ParkingSite:1")
        );
        // Concise output parses back to the same observations.
        let back = parse_entity(&c, core(), &DEFAULTS).unwrap();
        assert_eq!(back.observations.len(), s.attrs.len());
        let f = render_entity(
            &s,
            core(),
            &RenderOptions {
                attrs: Some(vec!["https://uri.etsi.org/ngsi-ld/status".into()]),
                include_context: Some(json!(crate::jsonld::CORE_CONTEXT_URL)),
                ..Default::default()
            },
        );
        let keys: Vec<&String> = f.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "type", "status", "@context"]);
    }

    #[test]
    fn renders_temporal() {
        let id = EntityId::new("urn:ngsi-ld:X:1").unwrap();
        let mk = |v: f64, t: i64| Observation {
            entity: id.clone(),
            entity_type: Arc::from(dflt("X")),
            attr: Arc::from(dflt("speed")),
            dataset_id: None,
            value: Value::Number(v),
            unit: UnitCode::new("KMH").ok(),
            observed_at: Timestamp::from_millis(t),
            observed: true,
            privacy: PrivacyClass::Public,
            meta: None,
        };
        let series = [mk(2.0, 2000), mk(1.5, 1000)];
        let n = render_temporal(
            &id,
            &dflt("X"),
            &series,
            core(),
            &TemporalOptions::default(),
        );
        assert_eq!(
            n,
            json!({"id": "urn:ngsi-ld:X:1", "type": "X", "speed": [
                {"type": "Property", "value": 1.5, "observedAt": "1970-01-01T00:00:01Z", "unitCode": "KMH"},
                {"type": "Property", "value": 2, "observedAt": "1970-01-01T00:00:02Z", "unitCode": "KMH"}
            ]})
        );
        let tv = render_temporal(
            &id,
            &dflt("X"),
            &series,
            core(),
            &TemporalOptions {
                temporal_values: true,
                ..Default::default()
            },
        );
        assert_eq!(
            tv["speed"],
            json!({"type": "Property", "values": [[1.5, "1970-01-01T00:00:01Z"], [2, "1970-01-01T00:00:02Z"]]})
        );
    }

    fn num() -> impl Strategy<Value = f64> {
        (-999_999_999_999_999i64..=999_999_999_999_999, 0i32..=8)
            .prop_map(|(m, k)| m as f64 / 10f64.powi(k))
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            num().prop_map(Value::Number),
            any::<bool>().prop_map(Value::Bool),
            ".{0,16}".prop_map(|s| Value::Text(Arc::from(s.as_str()))),
            "[a-z0-9]{1,10}".prop_map(|s| Value::Relationship(EntityId::new(&format!("urn:ngsi-ld:T:{s}")).unwrap())),
            ((-1_800_000i64..=1_800_000), (-900_000i64..=900_000)).prop_map(|(lo, la)| Value::Geo(Arc::new(
                json!({"type": "Point", "coordinates": [lo as f64 / 10_000.0, la as f64 / 10_000.0]})
            ))),
            ("[a-z]{1,6}", any::<i32>(), ".{0,8}").prop_map(|(k, n, s)| Value::Json(Arc::new(json!({ k: [n, s] })))),
        ]
    }

    fn observation() -> impl Strategy<Value = Observation> {
        (
            // Entity members (`id`, `type`, `scope`, …) are not attribute names.
            "[a-z][a-zA-Z0-9]{0,8}".prop_filter("an entity member", |n| !entity_member(n)),
            proptest::option::of("[a-z0-9]{1,6}"),
            value(),
            proptest::option::of(prop_oneof![
                Just("CEL"),
                Just("LTR"),
                Just("KWH"),
                Just("59")
            ]),
            crate::time::MIN_MS..=crate::time::MAX_MS,
            proptest::option::of(any::<i16>()),
        )
            .prop_map(|(name, ds, value, unit, t, sub)| Observation {
                entity: EntityId::new("urn:ngsi-ld:Thing:1").unwrap(),
                entity_type: Arc::from(dflt("Thing")),
                attr: Arc::from(core().expand_term(&name)),
                dataset_id: ds.map(|d| Arc::from(format!("urn:ngsi-ld:Dataset:{d}").as_str())),
                value,
                unit: unit.and_then(|u| UnitCode::new(u).ok()),
                observed_at: Timestamp::from_millis(t),
                observed: true,
                privacy: PrivacyClass::Public,
                meta: sub.map(|n| {
                    let mut m = Map::new();
                    m.insert(dflt("quality"), json!({"type": "Property", "value": n}));
                    Arc::new(m)
                }),
            })
    }

    proptest! {
        #[test]
        fn normalized_round_trip(obs in proptest::collection::vec(observation(), 0..8)) {
            let mut s = EntityState::new(EntityId::new("urn:ngsi-ld:Thing:1").unwrap(), Arc::from(dflt("Thing")), T0);
            for o in &obs {
                s.apply(o, T0);
            }
            let body = render_entity(&s, core(), &RenderOptions::default());
            let back = parse_entity(&body, core(), &DEFAULTS).unwrap();
            let mut got = back.observations;
            got.sort_by(|a, b| (&a.attr, &a.dataset_id).cmp(&(&b.attr, &b.dataset_id)));
            prop_assert_eq!(got, s.attrs);
        }

        #[test]
        fn arbitrary_json_never_panics(s in "\\PC{0,200}") {
            if let Ok(v) = serde_json::from_str::<Json>(&s) {
                let _ = parse_entity(&v, core(), &DEFAULTS);
            }
        }
    }
}
