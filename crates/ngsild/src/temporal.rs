//! The NGSI-LD temporal API (GS CIM 009 5.6.11–5.6.16, 5.7.3–5.7.4): create and extend
//! an entity's temporal evolution, modify or delete single instances, delete an
//! attribute's or an entity's history; retrieve one entity's evolution and query many,
//! normalized, simplified (`temporalValues`) or aggregated (`aggregatedValues`).
//!
//! The temporal evolution is the same series the ingest pipeline writes: every
//! observation of every source is an instance. An instance is identified by its
//! attribute, datasetId and instant, which its `instanceId` encodes, so no identifier
//! table is kept. Writes go through the pipeline like every other write (history with
//! latest-value semantics for the current state); reads are bounded by
//! [`TemporalLimits::max_instances`] per entity, beyond which the answer is 206 Partial
//! Content with a `Content-Range: date-time` header as the spec describes.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, Query, RawQuery, State, rejection::BytesRejection, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use polity_model::{
    Batch, EntityId, EntityOp, EntityState, Fold, Instances, Observation, PrivacyClass, Tenant,
    Timestamp, Value,
    ngsild::{ParseDefaults, ParsedEntity, parse_temporal, render_attribute, value_parts},
};
use polity_store::{EntityQuery, SeriesQuery};
use polity_trust::{Access, Action};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::{
    ApiState,
    access::{View, entity_ref},
    consume::Selector,
    entities::{blocking, or_reject, params, require_tenant, respond, write_body},
    problem::{ErrorType, Problem},
    request::{self, ActiveContext, Media},
    shape::Projection,
};

/// Bounds of temporal reads. Defaults are documented per field.
#[derive(Debug, Clone, Copy)]
pub struct TemporalLimits {
    /// Most instances one response carries for one entity; past it the answer is 206
    /// with a `Content-Range`. Default 10 000.
    pub max_instances: usize,
}

impl Default for TemporalLimits {
    fn default() -> Self {
        TemporalLimits {
            max_instances: 10_000,
        }
    }
}

/// Query parameters of the temporal routes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemporalParams {
    /// `before`, `after` or `between`.
    pub timerel: Option<String>,
    /// The reference time.
    pub time_at: Option<String>,
    /// The end of a `between` interval.
    pub end_time_at: Option<String>,
    /// Attributes to return, comma-separated.
    pub attrs: Option<String>,
    /// The latest N instances per attribute.
    pub last_n: Option<usize>,
    /// `temporalValues`, `aggregatedValues`, `sysAttrs`.
    pub options: Option<String>,
    /// `temporalValues`, `aggregatedValues`, `normalized` (wins over options).
    pub format: Option<String>,
    /// `observedAt` (default), `createdAt`, `modifiedAt`, `deletedAt`.
    pub timeproperty: Option<String>,
    /// Aggregation methods, comma-separated.
    pub aggr_methods: Option<String>,
    /// Aggregation period, an ISO 8601 duration.
    pub aggr_period_duration: Option<String>,
    /// Members to keep.
    pub pick: Option<String>,
    /// Members to leave out.
    pub omit: Option<String>,
    /// Instances to keep (`@none`: the default instance).
    pub dataset_id: Option<String>,
    /// Entity types or a type expression (queries).
    #[serde(rename = "type")]
    pub entity_type: Option<String>,
    /// Entity ids (queries).
    pub id: Option<String>,
    /// Entity id pattern (queries).
    pub id_pattern: Option<String>,
    /// q-language filter on current state (queries).
    pub q: Option<String>,
    /// Geo-query relation (queries).
    pub georel: Option<String>,
    /// Geo-query geometry (queries).
    pub geometry: Option<String>,
    /// Geo-query coordinates (queries).
    pub coordinates: Option<String>,
    /// GeoProperty of the geo-query (queries).
    pub geoproperty: Option<String>,
    /// Page size (entities).
    pub limit: Option<usize>,
    /// Page offset (entities).
    pub offset: Option<usize>,
    /// `NGSILD-Results-Count`.
    pub count: Option<bool>,
    /// Sort keys.
    pub order_by: Option<String>,
    /// Only this node's entities.
    pub local: Option<bool>,
    /// Scope query (queries).
    pub scope_q: Option<String>,
}

const RETRIEVE_PARAMS: &[&str] = &[
    "timerel",
    "timeAt",
    "endTimeAt",
    "attrs",
    "lastN",
    "options",
    "format",
    "timeproperty",
    "aggrMethods",
    "aggrPeriodDuration",
    "pick",
    "omit",
    "datasetId",
    "local",
];

const QUERY_PARAMS: &[&str] = &[
    "type",
    "id",
    "idPattern",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "limit",
    "offset",
    "count",
    "orderBy",
    "timerel",
    "timeAt",
    "endTimeAt",
    "attrs",
    "lastN",
    "options",
    "format",
    "timeproperty",
    "aggrMethods",
    "aggrPeriodDuration",
    "pick",
    "omit",
    "datasetId",
    "local",
];

fn time(name: &str, v: &Option<String>) -> Result<Timestamp, Problem> {
    let s = v.as_deref().ok_or_else(|| {
        Problem::bad_data(format!(
            "this timerel needs {name} (timerel=between needs both timeAt and endTimeAt)"
        ))
    })?;
    Timestamp::parse(s).map_err(|e| Problem::bad_data(format!("{name}: {e}")))
}

/// The relation of a temporal query to its reference times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRel {
    /// No timerel: the whole evolution.
    Any,
    /// Before `timeAt`.
    Before(Timestamp),
    /// After `timeAt`.
    After(Timestamp),
    /// From `timeAt` to `endTimeAt`.
    Between(Timestamp, Timestamp),
}

impl TimeRel {
    /// Parses `timerel`, `timeAt` and `endTimeAt`.
    pub fn parse(
        timerel: Option<&str>,
        at: &Option<String>,
        end: &Option<String>,
    ) -> Result<TimeRel, Problem> {
        match timerel {
            None if at.is_some() => Err(Problem::bad_data(
                "timeAt was given without timerel; add timerel=before, after or between",
            )),
            None => Ok(TimeRel::Any),
            Some("before") => Ok(TimeRel::Before(time("timeAt", at)?)),
            Some("after") => Ok(TimeRel::After(time("timeAt", at)?)),
            Some("between") => {
                let from = time("timeAt", at)?;
                let to = time("endTimeAt", end)?;
                if to < from {
                    return Err(Problem::bad_data("endTimeAt is before timeAt"));
                }
                Ok(TimeRel::Between(from, to))
            }
            Some(other) => Err(Problem::bad_data(format!(
                "timerel `{other}` is not one of before, after, between"
            ))),
        }
    }

    fn contains(self, t: Timestamp) -> bool {
        match self {
            TimeRel::Any => true,
            TimeRel::Before(a) => t < a,
            TimeRel::After(a) => t > a,
            TimeRel::Between(a, b) => t >= a && t < b,
        }
    }

    /// The half-open store interval covering the relation.
    fn bounds(self) -> (Option<Timestamp>, Option<Timestamp>) {
        match self {
            TimeRel::Any => (None, None),
            TimeRel::Before(a) => (None, Some(a)),
            TimeRel::After(a) => (
                Some(Timestamp::from_millis(a.as_millis().saturating_add(1))),
                None,
            ),
            TimeRel::Between(a, b) => (Some(a), Some(b)),
        }
    }
}

/// Which time an instance is placed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeProperty {
    /// When it was observed (the default).
    ObservedAt,
    /// When the node recorded it.
    CreatedAt,
    /// When the node last changed it (the same: instances are not edited in place).
    ModifiedAt,
    /// When it was deleted: deleted instances are not kept, so nothing matches.
    DeletedAt,
}

impl TimeProperty {
    fn parse(s: Option<&str>) -> Result<TimeProperty, Problem> {
        Ok(match s {
            None | Some("observedAt") => TimeProperty::ObservedAt,
            Some("createdAt") => TimeProperty::CreatedAt,
            Some("modifiedAt") => TimeProperty::ModifiedAt,
            Some("deletedAt") => TimeProperty::DeletedAt,
            Some(other) => {
                return Err(Problem::bad_data(format!(
                    "timeproperty `{other}` is not one of observedAt, createdAt, modifiedAt, deletedAt"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            TimeProperty::ObservedAt => "observedAt",
            TimeProperty::CreatedAt => "createdAt",
            TimeProperty::ModifiedAt => "modifiedAt",
            TimeProperty::DeletedAt => "deletedAt",
        }
    }
}

/// The temporal representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    Normalized,
    Simplified,
    Aggregated,
}

/// An aggregation method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggr {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Sumsq,
}

impl Aggr {
    fn parse(s: &str) -> Result<Aggr, Problem> {
        Ok(match s.trim() {
            "totalCount" => Aggr::TotalCount,
            "distinctCount" => Aggr::DistinctCount,
            "sum" => Aggr::Sum,
            "avg" => Aggr::Avg,
            "min" => Aggr::Min,
            "max" => Aggr::Max,
            "stddev" => Aggr::Stddev,
            "sumsq" => Aggr::Sumsq,
            other => {
                return Err(Problem::bad_data(format!(
                    "aggrMethods `{other}` is not one of totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Aggr::TotalCount => "totalCount",
            Aggr::DistinctCount => "distinctCount",
            Aggr::Sum => "sum",
            Aggr::Avg => "avg",
            Aggr::Min => "min",
            Aggr::Max => "max",
            Aggr::Stddev => "stddev",
            Aggr::Sumsq => "sumsq",
        }
    }

    /// The aggregate of `values` (numbers where the method needs them).
    fn apply(self, values: &[&Value]) -> Option<Json> {
        let nums: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
        let float = |x: f64| serde_json::Number::from_f64(x).map(Json::Number);
        match self {
            Aggr::TotalCount => Some(Json::from(values.len() as u64)),
            Aggr::DistinctCount => {
                let mut seen: Vec<String> = values
                    .iter()
                    .map(|v| serde_json::to_string(v).unwrap_or_default())
                    .collect();
                seen.sort();
                seen.dedup();
                Some(Json::from(seen.len() as u64))
            }
            _ if nums.is_empty() => None,
            Aggr::Sum => float(nums.iter().sum()),
            Aggr::Avg => float(nums.iter().sum::<f64>() / nums.len() as f64),
            Aggr::Min => float(nums.iter().copied().fold(f64::INFINITY, f64::min)),
            Aggr::Max => float(nums.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            Aggr::Sumsq => float(nums.iter().map(|x| x * x).sum()),
            Aggr::Stddev => {
                let n = nums.len() as f64;
                let mean = nums.iter().sum::<f64>() / n;
                float((nums.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt())
            }
        }
    }
}

/// Parses an ISO 8601 duration (`PT1H`, `P1D`, `P1Y2M3DT4H5M6.5S`) into milliseconds; a
/// year is 365 days and a month 30 days.
pub fn parse_duration(s: &str) -> Result<i64, Problem> {
    let bad = || {
        Problem::bad_data(format!(
            "aggrPeriodDuration `{s}` is not an ISO 8601 duration such as PT1H or P1D"
        ))
    };
    let rest = s.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut ms: f64 = 0.0;
    let mut eat = |part: &str, units: &[(char, f64)]| -> Result<(), Problem> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let unit = units.iter().find(|(u, _)| *u == c).ok_or_else(bad)?;
                let n: f64 = num.parse().map_err(|_| bad())?;
                ms += n * unit.1;
                num.clear();
            }
        }
        if num.is_empty() { Ok(()) } else { Err(bad()) }
    };
    const DAY: f64 = 86_400_000.0;
    eat(
        date,
        &[
            ('Y', 365.0 * DAY),
            ('M', 30.0 * DAY),
            ('W', 7.0 * DAY),
            ('D', DAY),
        ],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return Err(bad());
        }
        eat(t, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1_000.0)])?;
    }
    let ms = ms.round() as i64;
    if ms <= 0 { Err(bad()) } else { Ok(ms) }
}

/// How a temporal request wants its answer.
struct TemporalShape {
    repr: Repr,
    sys_attrs: bool,
    timerel: TimeRel,
    timeprop: TimeProperty,
    last_n: Option<usize>,
    attrs: Option<Vec<String>>,
    datasets: Option<Vec<Option<String>>>,
    projection: Projection,
    aggr: Vec<Aggr>,
    period: Option<i64>,
}

fn temporal_shape(p: &TemporalParams, ctx: &ActiveContext) -> Result<TemporalShape, Problem> {
    let mut repr = Repr::Normalized;
    let mut sys_attrs = false;
    let invalid = |what: &str, v: &str| {
        Problem::new(
            ErrorType::InvalidRequest,
            format!(
                "unknown {what} `{v}`; use temporalValues, aggregatedValues, normalized or sysAttrs"
            ),
        )
    };
    for o in p.options.iter().flat_map(|s| s.split(',')) {
        match o.trim() {
            "temporalValues" => repr = Repr::Simplified,
            "aggregatedValues" => repr = Repr::Aggregated,
            "sysAttrs" => sys_attrs = true,
            "normalized" | "" => {}
            other => return Err(invalid("option", other)),
        }
    }
    if let Some(f) = &p.format {
        repr = match f.trim() {
            "temporalValues" | "simplified" | "keyValues" => Repr::Simplified,
            "aggregatedValues" => Repr::Aggregated,
            "normalized" => Repr::Normalized,
            other => return Err(invalid("format", other)),
        };
    }
    let aggr = match &p.aggr_methods {
        Some(m) => m
            .split(',')
            .map(Aggr::parse)
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if repr == Repr::Aggregated && aggr.is_empty() {
        return Err(Problem::bad_data(
            "options=aggregatedValues needs aggrMethods, e.g. aggrMethods=avg,max",
        ));
    }
    let period = p
        .aggr_period_duration
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    Ok(TemporalShape {
        repr,
        sys_attrs,
        timerel: TimeRel::parse(p.timerel.as_deref(), &p.time_at, &p.end_time_at)?,
        timeprop: TimeProperty::parse(p.timeproperty.as_deref())?,
        last_n: p.last_n,
        attrs: p.attrs.as_ref().map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| ctx.context.expand_term(s).into_owned())
                .collect()
        }),
        datasets: p.dataset_id.as_ref().map(|d| {
            d.split(',')
                .map(str::trim)
                .map(|s| (s != "@none").then(|| s.to_owned()))
                .collect()
        }),
        projection: Projection::parse(p.pick.as_deref(), p.omit.as_deref(), p.attrs.as_deref())?,
        aggr,
        period,
    })
}

/// An instance's identifier: its instant and, for a datasetId, the datasetId in hex.
pub fn instance_id(o: &Observation) -> String {
    match &o.dataset_id {
        None => format!("urn:ngsi-ld:Instance:{}", o.observed_at.as_millis()),
        Some(d) => {
            let hex: String = d.bytes().map(|b| format!("{b:02x}")).collect();
            format!("urn:ngsi-ld:Instance:{}:{hex}", o.observed_at.as_millis())
        }
    }
}

/// The instant and datasetId an `instanceId` names. What is not a URI is 400; a URI
/// this node never issued names no instance (404).
pub fn parse_instance_id(s: &str) -> Result<(Timestamp, Option<String>), Problem> {
    if !polity_model::id::is_absolute_uri(s) {
        return Err(Problem::bad_data(format!("instanceId `{s}` is not a URI")));
    }
    let bad = || Problem::not_found(format!("no instance has the instanceId `{s}`"));
    let rest = s.strip_prefix("urn:ngsi-ld:Instance:").ok_or_else(bad)?;
    let (ms, ds) = match rest.split_once(':') {
        Some((m, h)) => {
            if h.len() % 2 != 0 {
                return Err(bad());
            }
            let bytes = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|_| bad()))
                .collect::<Result<Vec<_>, _>>()?;
            (m, Some(String::from_utf8(bytes).map_err(|_| bad())?))
        }
        None => (rest, None),
    };
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    Ok((Timestamp::from_millis(ms), ds))
}

/// One instance ready to render: the observation and the time it is placed at.
struct Point {
    o: Observation,
    at: Timestamp,
    recorded: Timestamp,
}

/// (attribute, datasetId) of an instance series.
type InstanceKey = (Arc<str>, Option<Arc<str>>);

/// An entity's temporal evolution, as selected.
struct Evolution {
    state: EntityState,
    /// (attribute, datasetId) → instances, oldest first.
    series: Vec<(InstanceKey, Vec<Point>)>,
}

/// Reads the evolution of `state` that `shape` selects (before paging).
fn read(
    store: &dyn polity_store::Store,
    tenant: &Tenant,
    state: EntityState,
    shape: &TemporalShape,
) -> polity_store::Result<Evolution> {
    let (from, to) = if shape.timeprop == TimeProperty::ObservedAt {
        shape.timerel.bounds()
    } else {
        (None, None)
    };
    let q = SeriesQuery {
        attrs: shape
            .attrs
            .as_ref()
            .map(|a| a.iter().map(|s| Arc::from(s.as_str())).collect()),
        from,
        to,
        last_n: None,
        limit: usize::MAX,
    };
    let points = store.recorded_series(tenant, &state.id, &q)?;
    let mut series: Vec<(InstanceKey, Vec<Point>)> = Vec::new();
    for p in points {
        let o = p.observation;
        // Deletion records appear only in the deletedAt view of the history.
        let deleted = polity_model::ngsild::is_tombstone(&o.attr, &o.value);
        let at = match shape.timeprop {
            TimeProperty::DeletedAt if deleted => p.recorded_at,
            _ if deleted => continue,
            TimeProperty::DeletedAt => continue,
            TimeProperty::ObservedAt => o.observed_at,
            TimeProperty::CreatedAt | TimeProperty::ModifiedAt => p.recorded_at,
        };
        if !shape.timerel.contains(at) {
            continue;
        }
        if let Some(ds) = &shape.datasets
            && !ds.iter().any(|d| d.as_deref() == o.dataset_id.as_deref())
        {
            continue;
        }
        let key = (o.attr.clone(), o.dataset_id.clone());
        let point = Point {
            o,
            at,
            recorded: p.recorded_at,
        };
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(point),
            None => series.push((key, vec![point])),
        }
    }
    for (_, v) in &mut series {
        v.sort_by_key(|p| p.at);
        if let Some(n) = shape.last_n {
            let cut = v.len().saturating_sub(n);
            v.drain(..cut);
        }
    }
    Ok(Evolution { state, series })
}

/// What a response covers when it is cut: the Content-Range of 6.3.10.
struct Range {
    start: Timestamp,
    end: Timestamp,
    size: Option<usize>,
}

/// Cuts `e` to at most `max` instances, the oldest ones (the newest with lastN); returns
/// the instants kept at both ends when something was cut.
fn cut(e: &mut Evolution, max: usize, newest_first: bool) -> Option<(Timestamp, Timestamp)> {
    let mut all: Vec<Timestamp> = e
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.at))
        .collect();
    if all.len() <= max {
        return None;
    }
    all.sort();
    let (lo, hi) = if newest_first {
        (all[all.len() - max], Timestamp::from_millis(i64::MAX))
    } else {
        (Timestamp::from_millis(i64::MIN), all[max - 1])
    };
    // Keep exactly `max`: at the boundary instant keep only as many as fit.
    let mut budget = max;
    let mut order: Vec<(usize, usize, Timestamp)> = Vec::new();
    for (si, (_, v)) in e.series.iter().enumerate() {
        for (pi, p) in v.iter().enumerate() {
            if p.at >= lo && p.at <= hi {
                order.push((si, pi, p.at));
            }
        }
    }
    if newest_first {
        order.sort_by_key(|o| std::cmp::Reverse(o.2));
    } else {
        order.sort_by_key(|o| o.2);
    }
    let mut keep: std::collections::HashSet<(usize, usize)> = Default::default();
    for (si, pi, _) in order {
        if budget == 0 {
            break;
        }
        keep.insert((si, pi));
        budget -= 1;
    }
    for (si, (_, v)) in e.series.iter_mut().enumerate() {
        let mut pi = 0;
        v.retain(|_| {
            let k = keep.contains(&(si, pi));
            pi += 1;
            k
        });
    }
    let kept: Vec<Timestamp> = e
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.at))
        .collect();
    Some((kept.iter().min().copied()?, kept.iter().max().copied()?))
}

/// The plural member of the simplified representation.
fn plural(key: &str) -> &'static str {
    match key {
        "object" => "objects",
        "languageMap" => "languageMaps",
        "vocab" => "vocabs",
        "json" => "jsons",
        "valueList" => "valueLists",
        "objectList" => "objectLists",
        _ => "values",
    }
}

fn time_json(t: Timestamp) -> Json {
    Json::from(t.to_string())
}

fn render_series(
    key: &InstanceKey,
    points: &[Point],
    shape: &TemporalShape,
    ctx: &ActiveContext,
    origin: Option<Timestamp>,
) -> Json {
    match shape.repr {
        Repr::Normalized => Json::Array(
            points
                .iter()
                .map(|p| {
                    let mut v = render_attribute(&p.o, &ctx.context);
                    if let Json::Object(m) = &mut v {
                        m.insert("instanceId".into(), Json::from(instance_id(&p.o)));
                        if shape.sys_attrs {
                            m.insert("createdAt".into(), time_json(p.recorded));
                            m.insert("modifiedAt".into(), time_json(p.recorded));
                        }
                        if shape.timeprop != TimeProperty::ObservedAt {
                            m.insert(shape.timeprop.name().into(), time_json(p.at));
                        }
                    }
                    v
                })
                .collect(),
        ),
        Repr::Simplified => {
            let (ty, member) = points
                .first()
                .map(|p| {
                    let (t, k, _) = value_parts(&p.o.value, &ctx.context);
                    (t, k)
                })
                .unwrap_or(("Property", "value"));
            let pairs: Vec<Json> = points
                .iter()
                .map(|p| {
                    let (_, k, v) = value_parts(&p.o.value, &ctx.context);
                    let v = if matches!(k, "value" | "object") {
                        v
                    } else {
                        json!({ k: v })
                    };
                    Json::Array(vec![v, time_json(p.at)])
                })
                .collect();
            let mut m = Map::new();
            m.insert("type".into(), Json::from(ty));
            m.insert(plural(member).into(), Json::Array(pairs));
            if let Some(d) = &key.1 {
                m.insert("datasetId".into(), Json::from(&**d));
            }
            Json::Object(m)
        }
        Repr::Aggregated => {
            let ty = points
                .first()
                .map_or("Property", |p| value_parts(&p.o.value, &ctx.context).0);
            let mut m = Map::new();
            m.insert("type".into(), Json::from(ty));
            if let Some(d) = &key.1 {
                m.insert("datasetId".into(), Json::from(&**d));
            }
            let start = origin.or_else(|| points.first().map(|p| p.at));
            let buckets: Vec<(Timestamp, Timestamp, Vec<&Value>)> = match (start, shape.period) {
                (Some(s), Some(period)) => {
                    let mut out: Vec<(Timestamp, Timestamp, Vec<&Value>)> = Vec::new();
                    for p in points {
                        let k = (p.at.as_millis() - s.as_millis()).div_euclid(period);
                        let b0 = Timestamp::from_millis(s.as_millis() + k * period);
                        let b1 = Timestamp::from_millis(b0.as_millis() + period);
                        match out.last_mut() {
                            Some(b) if b.0 == b0 => b.2.push(&p.o.value),
                            _ => out.push((b0, b1, vec![&p.o.value])),
                        }
                    }
                    out
                }
                (Some(s), None) => {
                    let end = points.last().map_or(s, |p| p.at);
                    vec![(s, end, points.iter().map(|p| &p.o.value).collect())]
                }
                (None, _) => Vec::new(),
            };
            for a in &shape.aggr {
                let values: Vec<Json> = buckets
                    .iter()
                    .filter_map(|(b0, b1, vals)| {
                        a.apply(vals)
                            .map(|v| Json::Array(vec![v, time_json(*b0), time_json(*b1)]))
                    })
                    .collect();
                m.insert(a.name().into(), Json::Array(values));
            }
            Json::Object(m)
        }
    }
}

/// Renders one entity's evolution. An attribute whose instances the page limit cut
/// away comes out empty, so a client can tell it was cut from absent.
fn render_evolution(e: &Evolution, shape: &TemporalShape, ctx: &ActiveContext) -> Json {
    let c = &ctx.context;
    let mut m = Map::new();
    m.insert("id".into(), Json::from(e.state.id.as_str()));
    m.insert(
        "type".into(),
        polity_model::ngsild::render_types(&e.state, c),
    );
    if let Some(scope) = polity_model::ngsild::render_scope(&e.state.scope) {
        m.insert("scope".into(), scope);
    }
    if shape.sys_attrs {
        m.insert("createdAt".into(), time_json(e.state.created_at));
        m.insert("modifiedAt".into(), time_json(e.state.modified_at));
    }
    let origin = match shape.timerel {
        TimeRel::After(a) | TimeRel::Between(a, _) => Some(a),
        _ => None,
    };
    let mut by_attr: Vec<(&str, Vec<Json>)> = Vec::new();
    for (key, points) in &e.series {
        let rendered = render_series(key, points, shape, ctx, origin);
        let name = &*key.0;
        let slot = match by_attr.iter_mut().find(|(a, _)| *a == name) {
            Some(s) => s,
            None => {
                by_attr.push((name, Vec::new()));
                by_attr.last_mut().expect("just pushed")
            }
        };
        match rendered {
            Json::Array(items) => slot.1.extend(items),
            other => slot.1.push(other),
        }
    }
    for (attr, items) in &by_attr {
        let value = if shape.repr == Repr::Normalized || items.len() != 1 {
            Json::Array(items.clone())
        } else {
            items[0].clone()
        };
        m.insert(c.compact_iri(attr).into_owned(), value);
    }
    let mut v = Json::Object(m);
    if let Json::Object(obj) = &mut v {
        project(&shape.projection, obj, c);
    }
    v
}

fn project(p: &Projection, obj: &mut Map<String, Json>, ctx: &polity_model::Context) {
    // Reuse the entity projection: pick/omit apply to the same member names.
    let wrapped = std::mem::take(obj);
    let mut j = Json::Object(wrapped);
    crate::shape::project(p, &mut j, ctx);
    if let Json::Object(o) = j {
        *obj = o;
    }
}

fn content_range(range: &Range) -> HeaderValue {
    let size = range.size.map_or_else(|| "*".to_owned(), |n| n.to_string());
    HeaderValue::from_str(&format!("date-time {}-{}/{size}", range.start, range.end))
        .unwrap_or_else(|_| HeaderValue::from_static("date-time */*"))
}

/// The Content-Range of a cut answer (GS CIM 009 6.3.10): ascending from the query's
/// start to the last instance given; with lastN, descending from the query's end (or
/// the newest instance) to the oldest given.
fn range_of(shape: &TemporalShape, kept: (Timestamp, Timestamp)) -> Range {
    let (oldest, newest) = kept;
    if let Some(n) = shape.last_n {
        let start = match shape.timerel {
            TimeRel::Before(a) => a,
            TimeRel::Between(_, b) => b,
            _ => newest,
        };
        Range {
            start,
            end: oldest,
            size: Some(n),
        }
    } else {
        let start = match shape.timerel {
            TimeRel::After(a) | TimeRel::Between(a, _) => a,
            _ => oldest,
        };
        Range {
            start,
            end: newest,
            size: None,
        }
    }
}

fn respond_temporal(
    body: Json,
    media: Media,
    ctx: &ActiveContext,
    range: Option<Range>,
) -> Response {
    match range {
        Some(r) => {
            let mut resp = respond(StatusCode::PARTIAL_CONTENT, body, media, ctx);
            resp.headers_mut()
                .insert(header::CONTENT_RANGE, content_range(&r));
            resp
        }
        None => respond(StatusCode::OK, body, media, ctx),
    }
}

/// `GET /ngsi-ld/v1/temporal/entities/{id}`.
pub async fn retrieve(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<TemporalParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), RETRIEVE_PARAMS)?;
    let p = params(p)?;
    let media = request::accept(&headers)?;
    let ctx = request::context_from_headers(&headers, &st.contexts).await?;
    let (tenant, explicit) = request::tenant(&headers, &st.default_tenant)?;
    let shape = temporal_shape(&p, &ctx)?;
    let id = EntityId::new(&id).map_err(|e| Problem::bad_data(e.to_string()))?;
    require_tenant(&st, &tenant, explicit).await?;
    let store = st.store.clone();
    let (t, i) = (tenant.clone(), id.clone());
    let state = blocking(move || store.entity(&t, &i)).await?;
    let mut view = View::reading(&access, Action::TemporalRead, &st);
    let Some(state) = state.filter(|s| view.sees(&tenant, s)) else {
        return Err(Problem::not_found(format!(
            "entity `{id}` does not exist in tenant `{tenant}`"
        )));
    };
    let has_now = shape.attrs.as_ref().is_none_or(|attrs| {
        attrs
            .iter()
            .any(|a| state.attrs.iter().any(|o| *o.attr == **a))
    });
    let mut evo = evolution(&st, &mut view, &tenant, state, &shape).await?;
    if !has_now && evo.series.is_empty() {
        return Err(Problem::not_found(format!(
            "entity `{id}` has no value or history of the attributes {}",
            p.attrs.as_deref().unwrap_or("")
        )));
    }
    if !view.audit().await {
        return Err(Problem::audit_unavailable());
    }
    let range = cut(&mut evo, st.temporal.max_instances, shape.last_n.is_some())
        .map(|k| range_of(&shape, k));
    let body = render_evolution(&evo, &shape, &ctx);
    if !shape.projection.is_empty() && !crate::shape::leaves_something(&body) {
        return Err(Problem::not_found(format!(
            "nothing of entity `{id}` is left after pick/omit"
        )));
    }
    if let Some(picked) = shape.projection.picked_attrs(&ctx.context)
        && !picked.is_empty()
        && !picked
            .iter()
            .any(|a| evo.state.attrs.iter().any(|o| *o.attr == **a))
        && body
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "id" || k == "type"))
    {
        return Err(Problem::not_found(format!(
            "entity `{id}` has none of the members picked"
        )));
    }
    Ok(respond_temporal(body, media, &ctx, range))
}

/// Reads and redacts one entity's evolution for the caller.
async fn evolution(
    st: &ApiState,
    view: &mut View<'_>,
    tenant: &Tenant,
    state: EntityState,
    shape: &TemporalShape,
) -> Result<Evolution, Problem> {
    let store = st.store.clone();
    let t = tenant.clone();
    // The shape's fields that reading needs, owned for the blocking task.
    let s = TemporalShape {
        projection: Projection::default(),
        attrs: shape.attrs.clone(),
        datasets: shape.datasets.clone(),
        aggr: Vec::new(),
        ..*shape
    };
    let mut evo = blocking(move || read(&*store, &t, state, &s)).await?;
    // Personal instances go out only to those who may read the entity's personal data,
    // opened with the owner's key; the release is audited.
    let r = entity_ref(tenant, &evo.state);
    for (_, points) in &mut evo.series {
        let times: HashMap<i64, (Timestamp, Timestamp)> = points
            .iter()
            .map(|p| (p.o.observed_at.as_millis(), (p.at, p.recorded)))
            .collect();
        let mut obs: Vec<Observation> = points.drain(..).map(|p| p.o).collect();
        view.redact_attrs(&r, &mut obs);
        *points = obs
            .into_iter()
            .filter_map(|o| {
                let (at, recorded) = *times.get(&o.observed_at.as_millis())?;
                Some(Point { o, at, recorded })
            })
            .collect();
    }
    evo.series.retain(|(_, v)| !v.is_empty());
    let state = view.redact(tenant, evo.state);
    Ok(Evolution {
        state,
        series: evo.series,
    })
}

/// `GET /ngsi-ld/v1/temporal/entities`: the evolution of every entity a query selects.
pub async fn query(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    p: Result<Query<TemporalParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), QUERY_PARAMS)?;
    let p = params(p)?;
    run_query(&st, &access, &headers, p).await
}

async fn run_query(
    st: &ApiState,
    access: &Access,
    headers: &HeaderMap,
    p: TemporalParams,
) -> Result<Response, Problem> {
    let media = request::accept(headers)?;
    let ctx = request::context_from_headers(headers, &st.contexts).await?;
    let (tenant, explicit) = request::tenant(headers, &st.default_tenant)?;
    let shape = temporal_shape(&p, &ctx)?;
    let ep = crate::consume::EntityParams {
        entity_type: p.entity_type.clone(),
        id: p.id.clone(),
        id_pattern: p.id_pattern.clone(),
        attrs: p.attrs.clone(),
        q: p.q.clone(),
        scope_q: p.scope_q.clone(),
        georel: p.georel.clone(),
        geometry: p.geometry.clone(),
        coordinates: p.coordinates.clone(),
        geoproperty: p.geoproperty.clone(),
        ..Default::default()
    };
    let selector = crate::consume::selector_of(&ep, &ctx)?;
    if selector.types.is_none()
        && selector.attrs.is_none()
        && selector.q.is_none()
        && selector.id_pattern.is_none()
        && selector.geo.is_none()
        && selector.scope.is_none()
        && p.local != Some(true)
    {
        return Err(Problem::bad_data(
            "a temporal query needs at least one of type, attrs, q, idPattern, scopeQ or a geo-query (id alone is not enough; add its type)",
        ));
    }
    let order = match &p.order_by {
        Some(o) => crate::shape::parse_order(o, &ctx.context)?,
        None => Vec::new(),
    };
    let limit = p.limit.unwrap_or(st.limits.default_limit);
    if limit > st.limits.max_limit {
        return Err(Problem::new(
            ErrorType::TooManyResults,
            format!(
                "limit {limit} is above this node's maximum of {}",
                st.limits.max_limit
            ),
        ));
    }
    require_tenant(st, &tenant, explicit).await?;
    let entities = select(st, access, &tenant, selector).await?;
    let mut entities = entities;
    if !order.is_empty() {
        crate::shape::sort(&mut entities, &order);
    }
    let total = entities.len();
    let page: Vec<EntityState> = entities
        .into_iter()
        .skip(p.offset.unwrap_or(0))
        .take(limit)
        .collect();
    let mut view = View::reading(access, Action::TemporalRead, st);
    let mut out = Vec::with_capacity(page.len());
    let mut kept: Option<(Timestamp, Timestamp)> = None;
    for state in page {
        let mut evo = evolution(st, &mut view, &tenant, state, &shape).await?;
        if evo.series.is_empty() {
            // Nothing of this entity's evolution matches the temporal query.
            continue;
        }
        if let Some((a, b)) = cut(&mut evo, st.temporal.max_instances, shape.last_n.is_some()) {
            kept = Some(match kept {
                Some((x, y)) => (x.min(a), y.max(b)),
                None => (a, b),
            });
        }
        out.push(evo);
    }
    if !view.audit().await {
        return Err(Problem::audit_unavailable());
    }
    // When one entity was cut, the range covers every instance given.
    let range = kept.map(|_| {
        let all: Vec<Timestamp> = out
            .iter()
            .flat_map(|e| e.series.iter().flat_map(|(_, v)| v.iter().map(|p| p.at)))
            .collect();
        let lo = all
            .iter()
            .min()
            .copied()
            .unwrap_or(Timestamp::from_millis(0));
        let hi = all.iter().max().copied().unwrap_or(lo);
        range_of(&shape, (lo, hi))
    });
    let mut body: Vec<Json> = out
        .iter()
        .map(|e| render_evolution(e, &shape, &ctx))
        .collect();
    if !shape.projection.is_empty() {
        body.retain(crate::shape::leaves_something);
    }
    let mut r = respond_temporal(Json::Array(body), media, &ctx, range);
    if p.count.unwrap_or(false) {
        r.headers_mut()
            .insert("NGSILD-Results-Count", HeaderValue::from(total as u64));
    }
    Ok(r)
}

/// The entities a selector selects that the caller may read, in id order.
async fn select(
    st: &ApiState,
    access: &Access,
    tenant: &Tenant,
    selector: Selector,
) -> Result<Vec<EntityState>, Problem> {
    let store = st.store.clone();
    let t = tenant.clone();
    let view_all = View::reading(access, Action::TemporalRead, st).on_all();
    let a = access.clone();
    blocking(move || {
        let mut out: Vec<EntityState> = store
            .entities(&t, &EntityQuery::all(None))?
            .into_iter()
            .filter(|e| selector.matches(e))
            .filter(|e| view_all || a.on_entity(Action::TemporalRead, &entity_ref(&t, e)))
            .collect();
        out.sort_by(|x, y| x.id.cmp(&y.id));
        Ok(out)
    })
    .await
}

/// `POST /ngsi-ld/v1/temporal/entityOperations/query`.
pub async fn query_post(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    qp: Result<Query<TemporalParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(
        raw.as_deref(),
        &[
            "options", "format", "limit", "offset", "count", "local", "lastN",
        ],
    )?;
    let mut p = params(qp)?;
    let bytes = body.map_err(|e| Problem::invalid(format!("could not read the body: {e}")))?;
    let v: Json = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::invalid(format!("the body is not valid JSON: {e}")))?;
    let Json::Object(o) = &v else {
        return Err(Problem::bad_data("the body must be a Query object"));
    };
    let text = |x: Option<&Json>| -> Option<String> {
        x.and_then(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Array(a) => Some(
                a.iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        })
    };
    let mut types = Vec::new();
    let mut ids = Vec::new();
    let mut patterns = Vec::new();
    for e in o
        .get("entities")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = e.get("type").and_then(Json::as_str) {
            types.push(format!("({t})"));
        }
        if let Some(i) = e.get("id").and_then(Json::as_str) {
            ids.push(i.to_owned());
        }
        if let Some(pat) = e.get("idPattern").and_then(Json::as_str) {
            patterns.push(format!("(?:{pat})"));
        }
    }
    p.entity_type = (!types.is_empty()).then(|| types.join(","));
    p.id = (!ids.is_empty()).then(|| ids.join(","));
    p.id_pattern = (!patterns.is_empty()).then(|| patterns.join("|"));
    p.attrs = text(o.get("attrs"));
    p.q = text(o.get("q"));
    p.scope_q = text(o.get("scopeQ"));
    if let Some(tq) = o.get("temporalQ") {
        p.timerel = text(tq.get("timerel"));
        p.time_at = text(tq.get("timeAt"));
        p.end_time_at = text(tq.get("endTimeAt"));
        p.timeproperty = text(tq.get("timeproperty"));
        if let Some(n) = tq.get("lastN").and_then(Json::as_u64) {
            p.last_n = Some(n as usize);
        }
    }
    if let Some(g) = o.get("geoQ") {
        p.georel = text(g.get("georel"));
        p.geometry = text(g.get("geometry"));
        p.coordinates = g
            .get("coordinates")
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned));
        p.geoproperty = text(g.get("geoproperty"));
    }
    run_query(&st, &access, &headers, p).await
}

// ---------------------------------------------------------------------------------------
// Provision

fn defaults() -> ParseDefaults {
    let now = Timestamp::now();
    ParseDefaults {
        observed_at: now,
        received_at: now,
        privacy: PrivacyClass::Public,
    }
}

async fn submit(
    st: &ApiState,
    tenant: &Tenant,
    ops: Vec<EntityOp>,
    observations: Vec<Observation>,
) -> Result<(), Problem> {
    let batch = Batch {
        ops,
        // History: an older instance does not replace the current value.
        fold: Fold::Latest,
        ..Batch::of(
            tenant.clone(),
            Arc::from(st.http_source.name.as_str()),
            observations,
        )
    };
    st.ingest
        .submit(batch, &st.http_source)
        .await
        .map_err(|e| Problem::new(ErrorType::ServiceUnavailable, e.to_string()))
}

async fn temporal_body(
    st: &ApiState,
    headers: &HeaderMap,
    tenant: &Tenant,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Json, ActiveContext), Problem> {
    let v = write_body(st, headers, tenant, body).await?;
    if v.as_object().is_none_or(|o| o.is_empty()) {
        return or_reject(
            st,
            tenant,
            &v,
            Err(Problem::invalid(
                "the body must be a temporal entity representation (a non-empty JSON object)",
            )),
        )
        .await;
    }
    let ctx = or_reject(
        st,
        tenant,
        &v,
        request::context_for_body(headers, &v, &st.contexts).await,
    )
    .await?;
    Ok((v, ctx))
}

async fn parse(
    st: &ApiState,
    tenant: &Tenant,
    v: &Json,
    ctx: &ActiveContext,
) -> Result<ParsedEntity, Problem> {
    let r =
        parse_temporal(v, &ctx.context, &defaults()).map_err(|e| Problem::bad_data(e.to_string()));
    or_reject(st, tenant, v, r).await
}

/// `POST /ngsi-ld/v1/temporal/entities`: creates the entity with its evolution (201),
/// or adds the instances to an existing one (204).
pub async fn create(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["local"])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    crate::batch::may_write_tenant(&access, &tenant)?;
    let (v, ctx) = temporal_body(&st, &headers, &tenant, body).await?;
    let e = parse(&st, &tenant, &v, &ctx).await?;
    let store = st.store.clone();
    let (t, i) = (tenant.clone(), e.id.clone());
    let existed = blocking(move || store.entity(&t, &i)).await?.is_some();
    let id = e.id.clone();
    let ops = vec![EntityOp::Ensure {
        entity: e.id,
        types: e.types,
        scope: e.scope,
    }];
    submit(&st, &tenant, ops, e.observations).await?;
    if existed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/ngsi-ld/v1/temporal/entities/{id}")) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

fn parse_id(s: &str) -> Result<EntityId, Problem> {
    if s.is_empty() {
        return Err(Problem::bad_data("the entity id is missing from the path"));
    }
    EntityId::new(s).map_err(|e| Problem::bad_data(e.to_string()))
}

fn valid_attr_name(attr: &str) -> Result<(), Problem> {
    if attr.is_empty()
        || attr.chars().any(|c| {
            c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | '"' | '\'' | ';' | '=')
        })
    {
        return Err(Problem::bad_data(format!(
            "`{attr}` is not a valid attribute name"
        )));
    }
    Ok(())
}

/// `DELETE /ngsi-ld/v1/temporal/entities/{id}`: the entity and all of its history.
pub async fn delete_entity(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["local"])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    crate::provision::writable(&st, &access, &tenant, &id).await?;
    submit(
        &st,
        &tenant,
        vec![EntityOp::DeleteEntity { entity: id }],
        vec![],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /ngsi-ld/v1/temporal/entities/{id}/attrs`: adds instances.
pub async fn append(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    let (mut v, ctx) = temporal_body(&st, &headers, &tenant, body).await?;
    let state = crate::provision::writable(&st, &access, &tenant, &id).await?;
    if let Json::Object(o) = &mut v {
        o.insert("id".into(), Json::from(id.as_str()));
        o.entry("type")
            .or_insert_with(|| Json::from(&*state.entity_type));
    }
    let e = parse(&st, &tenant, &v, &ctx).await?;
    submit(&st, &tenant, vec![], e.observations).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Parameters of attribute deletion.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteParams {
    /// Only this instance series.
    pub dataset_id: Option<String>,
    /// Every instance series.
    pub delete_all: Option<bool>,
}

/// `DELETE /ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}`: an attribute's history
/// (the default instances, one datasetId, or all) and its current value.
pub async fn delete_attr(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    p: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["datasetId", "deleteAll"])?;
    let p = params(p)?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    valid_attr_name(&attr)?;
    let ctx = request::context_from_headers(&headers, &st.contexts).await?;
    let state = crate::provision::writable(&st, &access, &tenant, &id).await?;
    let iri: Arc<str> = Arc::from(ctx.context.expand_term(&attr).as_ref());
    let instances = if p.delete_all.unwrap_or(false) {
        Instances::All
    } else {
        match p.dataset_id {
            Some(d) if d != "@none" => Instances::Dataset(Arc::from(d.as_str())),
            _ => Instances::Default,
        }
    };
    let store = st.store.clone();
    let (t, i, a) = (tenant.clone(), id.clone(), iri.clone());
    let points = blocking(move || {
        store.series(
            &t,
            &i,
            &SeriesQuery {
                attrs: Some(vec![a]),
                limit: usize::MAX,
                ..SeriesQuery::default()
            },
        )
    })
    .await?;
    let has = points
        .iter()
        .any(|o| instances.covers(o.dataset_id.as_deref()))
        || state
            .attrs
            .iter()
            .any(|o| o.attr == iri && instances.covers(o.dataset_id.as_deref()));
    if !has {
        return Err(Problem::not_found(format!(
            "entity `{id}` has no such instances of attribute `{attr}`"
        )));
    }
    let ops = vec![
        EntityOp::DeleteHistory {
            entity: id.clone(),
            attr: iri.clone(),
            instances: instances.clone(),
            at: None,
        },
        EntityOp::DeleteAttr {
            entity: id,
            attr: iri,
            instances,
        },
    ];
    submit(&st, &tenant, ops, vec![]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Finds the instance an instanceId names in an attribute's history.
async fn find_instance(
    st: &ApiState,
    tenant: &Tenant,
    id: &EntityId,
    iri: &Arc<str>,
    instance: &str,
) -> Result<Observation, Problem> {
    let (at, ds) = parse_instance_id(instance)?;
    let store = st.store.clone();
    let (t, i, a) = (tenant.clone(), id.clone(), iri.clone());
    let points = blocking(move || {
        store.series(
            &t,
            &i,
            &SeriesQuery {
                attrs: Some(vec![a]),
                from: Some(at),
                to: Some(Timestamp::from_millis(at.as_millis().saturating_add(1))),
                limit: usize::MAX,
                ..SeriesQuery::default()
            },
        )
    })
    .await?;
    points
        .into_iter()
        .find(|o| o.observed_at == at && o.dataset_id.as_deref() == ds.as_deref())
        .ok_or_else(|| {
            Problem::not_found(format!(
                "entity `{id}` has no instance `{instance}` of this attribute"
            ))
        })
}

/// `PATCH /ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instanceId}`: replaces one
/// instance.
pub async fn modify_instance(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path((id, attr, instance)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    if attr.is_empty() || instance.is_empty() {
        // PATCH addresses one instance of one attribute; without either there is no
        // resource that takes PATCH (ETSI 016_02_04, 016_02_06).
        let mut r =
            Problem::bad_data("PATCH needs /temporal/entities/{id}/attrs/{attr}/{instanceId}")
                .into_response();
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(r);
    }
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    valid_attr_name(&attr)?;
    parse_instance_id(&instance)?;
    let (v, ctx) = temporal_body(&st, &headers, &tenant, body).await?;
    let state = crate::provision::writable(&st, &access, &tenant, &id).await?;
    let iri: Arc<str> = Arc::from(ctx.context.expand_term(&attr).as_ref());
    let old = find_instance(&st, &tenant, &id, &iri, &instance).await?;
    let mut inst = v.clone();
    if let Json::Object(o) = &mut inst {
        o.remove("@context");
        o.entry("observedAt")
            .or_insert_with(|| Json::from(old.observed_at.to_string()));
        if let Some(d) = &old.dataset_id {
            o.entry("datasetId").or_insert_with(|| Json::from(&**d));
        }
    }
    let fragment = json!({"id": id.as_str(), "type": &*state.entity_type, attr.clone(): inst});
    let e = parse(&st, &tenant, &fragment, &ctx).await?;
    let ops = vec![EntityOp::DeleteHistory {
        entity: id,
        attr: iri,
        instances: old
            .dataset_id
            .clone()
            .map_or(Instances::Default, Instances::Dataset),
        at: Some(old.observed_at),
    }];
    submit(&st, &tenant, ops, e.observations).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instanceId}`.
pub async fn delete_instance(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path((id, attr, instance)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    valid_attr_name(&attr)?;
    parse_instance_id(&instance)?;
    let ctx = request::context_from_headers(&headers, &st.contexts).await?;
    crate::provision::writable(&st, &access, &tenant, &id).await?;
    let iri: Arc<str> = Arc::from(ctx.context.expand_term(&attr).as_ref());
    let old = find_instance(&st, &tenant, &id, &iri, &instance).await?;
    let ops = vec![EntityOp::DeleteHistory {
        entity: id,
        attr: iri,
        instances: old
            .dataset_id
            .clone()
            .map_or(Instances::Default, Instances::Dataset),
        at: Some(old.observed_at),
    }];
    submit(&st, &tenant, ops, vec![]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_milliseconds() {
        assert_eq!(parse_duration("PT1H").unwrap(), 3_600_000);
        assert_eq!(parse_duration("P1D").unwrap(), 86_400_000);
        assert_eq!(parse_duration("PT1M30.5S").unwrap(), 90_500);
        assert_eq!(parse_duration("P1W").unwrap(), 7 * 86_400_000);
        for bad in ["1H", "P", "PT", "P1H", "PT1D", "P-1D", "PT0S"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instance_ids_round_trip() {
        let mut o = Observation {
            entity: EntityId::new("urn:x:1").unwrap(),
            entity_type: Arc::from("T"),
            attr: Arc::from("a"),
            dataset_id: None,
            value: Value::Number(1.0),
            unit: None,
            observed_at: Timestamp::from_millis(1_596_283_380_000),
            observed: true,
            privacy: PrivacyClass::Public,
            meta: None,
        };
        assert_eq!(
            parse_instance_id(&instance_id(&o)).unwrap(),
            (o.observed_at, None)
        );
        o.dataset_id = Some(Arc::from("urn:ngsi-ld:Dataset:gps"));
        assert_eq!(
            parse_instance_id(&instance_id(&o)).unwrap(),
            (o.observed_at, Some("urn:ngsi-ld:Dataset:gps".into()))
        );
        assert_eq!(parse_instance_id("invalidId").unwrap_err().status, 400);
        assert_eq!(
            parse_instance_id("urn:ngsi-ld:Instance:12:zz")
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(
            parse_instance_id("urn:ngsi-ld:Other:1").unwrap_err().status,
            404
        );
    }

    #[test]
    fn timerel_parses_and_contains() {
        let at = Some("2026-01-01T00:00:00Z".to_owned());
        let end = Some("2026-01-02T00:00:00Z".to_owned());
        let r = TimeRel::parse(Some("between"), &at, &end).unwrap();
        assert!(r.contains(Timestamp::parse("2026-01-01T12:00:00Z").unwrap()));
        assert!(!r.contains(Timestamp::parse("2026-01-02T00:00:00Z").unwrap()));
        assert!(TimeRel::parse(Some("during"), &at, &None).is_err());
        assert!(
            TimeRel::parse(Some("before"), &None, &None)
                .unwrap_err()
                .detail
                .contains("timeAt")
        );
        assert!(TimeRel::parse(None, &at, &None).is_err());
    }

    #[test]
    fn aggregates_are_floats_and_counts_integers() {
        let v = [
            Value::Number(120.0),
            Value::Number(80.0),
            Value::Number(100.0),
        ];
        let refs: Vec<&Value> = v.iter().collect();
        assert_eq!(Aggr::Avg.apply(&refs).unwrap().to_string(), "100.0");
        assert_eq!(Aggr::Max.apply(&refs).unwrap().to_string(), "120.0");
        assert_eq!(Aggr::TotalCount.apply(&refs).unwrap(), Json::from(3));
        assert_eq!(Aggr::Sumsq.apply(&refs).unwrap().as_f64(), Some(30_800.0));
        let t = [
            Value::Text("a".into()),
            Value::Text("a".into()),
            Value::Text("b".into()),
        ];
        let refs: Vec<&Value> = t.iter().collect();
        assert_eq!(Aggr::DistinctCount.apply(&refs).unwrap(), Json::from(2));
        assert_eq!(Aggr::Avg.apply(&refs), None, "no numbers, no average");
    }
}
