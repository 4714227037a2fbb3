//! How entities leave the node: the representation (normalized, concise, keyValues,
//! GeoJSON), `pick`/`omit` projections, `lang` for LanguageProperties, the `datasetId`
//! filter, `orderBy`, and linked-entity retrieval (`join=inline|flat`, `joinLevel`),
//! GS CIM 009 v1.8/1.9 clauses 4.5, 4.21, 4.22, 5.7.
//!
//! A [`Shape`] is parsed once per request from its query parameters; [`render_all`]
//! then turns the page of entity states (and the entities they link to, fetched by the
//! caller under the same authorization) into the response body. Nothing here reads
//! storage or decides who may see what.

use std::{
    cmp::Ordering,
    collections::{BTreeSet, HashMap},
};

use polity_model::{
    EntityId, EntityState, Observation, Value,
    jsonld::Context,
    ngsild::{Format, RenderOptions, render_entity},
};
use serde_json::{Map, Value as Json};

use crate::problem::{ErrorType, Problem};

/// One member of a `pick`/`omit` list: `name`, or `name{…}` naming members of the
/// entity that `name` links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member or attribute name as written.
    pub name: String,
    /// Members of the linked entity, for a relationship.
    pub nested: Option<Vec<Member>>,
}

fn bad(msg: impl Into<String>) -> Problem {
    Problem::bad_data(msg)
}

/// Parses a `pick`/`omit` value: names separated by `,`, a name optionally followed by
/// `{…}` with the linked entity's members.
pub fn parse_members(text: &str) -> Result<Vec<Member>, Problem> {
    if text.len() > 4096 {
        return Err(bad("pick/omit is longer than 4096 bytes"));
    }
    let b = text.as_bytes();
    let mut pos = 0;
    let members = members(text, b, &mut pos, 0)?;
    if pos != b.len() {
        return Err(bad(format!(
            "unexpected `{}` at byte {pos} of `{text}`",
            &text[pos..pos + 1]
        )));
    }
    Ok(members)
}

fn members(text: &str, b: &[u8], pos: &mut usize, depth: usize) -> Result<Vec<Member>, Problem> {
    if depth > 8 {
        return Err(bad("pick/omit nests at most 8 levels of linked entities"));
    }
    let mut out = Vec::new();
    loop {
        let start = *pos;
        while *pos < b.len() && !matches!(b[*pos], b',' | b'{' | b'}') {
            *pos += 1;
        }
        let name = &text[start..*pos];
        if name.is_empty() {
            return Err(bad(format!(
                "a member name is missing at byte {start} of `{text}` (empty list, or two separators in a row)"
            )));
        }
        if let Some(c) = name.chars().find(|c| {
            c.is_whitespace() || matches!(c, ';' | '(' | ')' | '"' | '\'' | '=' | '<' | '>')
        }) {
            return Err(bad(format!(
                "member name `{name}` has the forbidden character `{c}`"
            )));
        }
        let nested = if *pos < b.len() && b[*pos] == b'{' {
            *pos += 1;
            let inner = members(text, b, pos, depth + 1)?;
            if *pos >= b.len() || b[*pos] != b'}' {
                return Err(bad(format!("a `{{` is not closed in `{text}`")));
            }
            *pos += 1;
            Some(inner)
        } else {
            None
        };
        out.push(Member {
            name: name.to_owned(),
            nested,
        });
        if *pos < b.len() && b[*pos] == b',' {
            *pos += 1;
            continue;
        }
        return Ok(out);
    }
}

/// A `pick` or `omit` projection, at one level of linked entities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pick: Option<Vec<Member>>,
    omit: Option<Vec<Member>>,
}

/// Entity members that are not attributes.
const CORE: &[&str] = &[
    "id",
    "type",
    "scope",
    "createdAt",
    "modifiedAt",
    "deletedAt",
];

fn key_of(name: &str, ctx: &Context) -> String {
    if CORE.contains(&name) {
        return name.to_owned();
    }
    ctx.compact_iri(&ctx.expand_term(name)).into_owned()
}

impl Projection {
    /// From the request's `pick`, `omit` and `attrs`: pick and omit exclude each other
    /// and `attrs`.
    pub fn parse(
        pick: Option<&str>,
        omit: Option<&str>,
        attrs: Option<&str>,
    ) -> Result<Projection, Problem> {
        if pick.is_some() && omit.is_some() {
            return Err(bad("give pick or omit, not both"));
        }
        if (pick.is_some() || omit.is_some()) && attrs.is_some() {
            return Err(bad(
                "pick and omit replace attrs; give one of them, not attrs as well",
            ));
        }
        Ok(Projection {
            pick: pick.map(parse_members).transpose()?,
            omit: omit.map(parse_members).transpose()?,
        })
    }

    /// Whether the projection selects anything at all.
    pub fn is_empty(&self) -> bool {
        self.pick.is_none() && self.omit.is_none()
    }

    /// The projection of the entity linked through the member `key` (compacted).
    fn child(&self, key: &str, ctx: &Context) -> Projection {
        let find = |list: &Option<Vec<Member>>| {
            list.as_ref().and_then(|l| {
                l.iter()
                    .find(|m| key_of(&m.name, ctx) == key)
                    .and_then(|m| m.nested.clone())
            })
        };
        Projection {
            pick: find(&self.pick),
            omit: find(&self.omit),
        }
    }

    /// The attribute names (expanded) the projection mentions at the top level, to check
    /// that a pick names something the entity has.
    pub fn picked_attrs(&self, ctx: &Context) -> Option<Vec<String>> {
        self.pick.as_ref().map(|l| {
            l.iter()
                .filter(|m| !CORE.contains(&m.name.as_str()))
                .map(|m| ctx.expand_term(&m.name).into_owned())
                .collect()
        })
    }

    /// Whether the member `key` (compacted) survives the projection.
    fn keeps(&self, key: &str, ctx: &Context) -> bool {
        fn named<'m>(l: &'m [Member], key: &str, ctx: &Context) -> Option<&'m Member> {
            l.iter().find(|m| key_of(&m.name, ctx) == key)
        }
        self.pick
            .as_ref()
            .is_none_or(|l| named(l, key, ctx).is_some())
            && self
                .omit
                .as_ref()
                .is_none_or(|l| named(l, key, ctx).is_none_or(|m| m.nested.is_some()))
    }

    /// Applies the projection to one rendered entity (members keyed as rendered).
    fn apply(&self, obj: &mut Map<String, Json>, ctx: &Context) {
        if let Some(pick) = &self.pick {
            let keep: BTreeSet<String> = pick.iter().map(|m| key_of(&m.name, ctx)).collect();
            obj.retain(|k, _| keep.contains(k) || k == "@context");
        }
        if let Some(omit) = &self.omit {
            for m in omit.iter().filter(|m| m.nested.is_none()) {
                obj.remove(&key_of(&m.name, ctx));
            }
        }
    }
}

/// `join=inline|flat` with its `joinLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// Linked entities in a flat list next to the result rather than inside it.
    pub flat: bool,
    /// How many links deep to follow (at least 1).
    pub level: usize,
}

/// A `lang` preference (RFC 9110 Accept-Language syntax, `*` for any language).
#[derive(Debug, Clone, PartialEq)]
pub struct LangPref {
    ranges: Vec<(String, f32)>,
}

impl LangPref {
    /// Parses `fr`, `fr-CH,fr;q=0.9,en;q=0.8,*;q=0.5`, `*`.
    pub fn parse(s: &str) -> Result<LangPref, Problem> {
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_owned();
            if tag.is_empty() || tag.len() > 35 {
                return Err(bad(format!("`{s}` is not a list of language tags")));
            }
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
                .map(|q| q.parse::<f32>())
                .transpose()
                .map_err(|_| bad(format!("a q-value in `{s}` is not a number")))?
                .unwrap_or(1.0);
            ranges.push((tag, q));
        }
        // Highest preference first; a stable sort keeps the written order on ties.
        ranges.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal));
        Ok(LangPref { ranges })
    }

    /// The best (tag, text) of a language map, if any range matches.
    fn choose<'a>(&self, map: &'a Map<String, Json>) -> Option<(&'a str, &'a Json)> {
        for (range, _) in &self.ranges {
            if range == "*" {
                return map.iter().next().map(|(k, v)| (k.as_str(), v));
            }
            let r = range.to_ascii_lowercase();
            if let Some((k, v)) = map.iter().find(|(k, _)| k.to_ascii_lowercase() == r) {
                return Some((k.as_str(), v));
            }
            // A range also matches the tags it is a prefix of (`fr` matches `fr-CH`).
            if let Some((k, v)) = map
                .iter()
                .find(|(k, _)| k.to_ascii_lowercase().starts_with(&format!("{r}-")))
            {
                return Some((k.as_str(), v));
            }
        }
        None
    }
}

/// One `orderBy` key (NGSI-LD 1.9): a member path and a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// `id`, `type`, `createdAt`, `modifiedAt`, an attribute (expanded), or an
    /// attribute's sub-member after a `.`.
    pub path: Vec<String>,
    /// Descending.
    pub desc: bool,
}

/// Parses `orderBy`: `name;desc,type;asc,name.subProperty`.
pub fn parse_order(s: &str, ctx: &Context) -> Result<Vec<OrderKey>, Problem> {
    let mut keys = Vec::new();
    for part in s.split(',') {
        let (path, dir) = match part.split_once(';') {
            Some((p, d)) => (p, d),
            None => (part, "asc"),
        };
        let desc = match dir.trim() {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(bad(format!(
                    "orderBy direction `{other}` is neither asc nor desc"
                )));
            }
        };
        let mut segs = path.trim().split('.');
        let first = segs.next().unwrap_or("");
        if first.is_empty() {
            return Err(bad(format!("`{s}` is not an orderBy list")));
        }
        let mut p = vec![if CORE.contains(&first) {
            first.to_owned()
        } else {
            ctx.expand_term(first).into_owned()
        }];
        for seg in segs {
            if seg.is_empty() {
                return Err(bad(format!("`{s}` has an empty path segment")));
            }
            p.push(
                if matches!(seg, "createdAt" | "modifiedAt" | "observedAt" | "unitCode") {
                    seg.to_owned()
                } else {
                    ctx.expand_term(seg).into_owned()
                },
            );
        }
        keys.push(OrderKey { path: p, desc });
    }
    Ok(keys)
}

/// The value an order key sorts `e` by; `None` sorts last.
fn order_value(e: &EntityState, key: &OrderKey) -> Option<Json> {
    let first = key.path.first()?;
    match first.as_str() {
        "id" => return Some(Json::from(e.id.as_str())),
        "type" => return Some(Json::from(&*e.entity_type)),
        "createdAt" => return Some(Json::from(e.created_at.as_millis())),
        "modifiedAt" => return Some(Json::from(e.modified_at.as_millis())),
        _ => {}
    }
    let inst = e
        .attr(first)
        .or_else(|| e.attrs.iter().find(|a| *a.attr == **first))?;
    match key.path.get(1).map(String::as_str) {
        None => Some(match &inst.value {
            Value::Number(n) => Json::from(*n),
            Value::Bool(b) => Json::from(*b),
            Value::Text(t) => Json::from(&**t),
            Value::Relationship(id) => Json::from(id.as_str()),
            other => serde_json::to_value(other).ok()?,
        }),
        Some("createdAt") => e
            .times(&inst.attr, inst.dataset_id.as_deref())
            .map(|t| Json::from(t.created_at.as_millis())),
        Some("modifiedAt") => e
            .times(&inst.attr, inst.dataset_id.as_deref())
            .map(|t| Json::from(t.modified_at.as_millis())),
        Some("observedAt") => inst
            .observed
            .then(|| Json::from(inst.observed_at.as_millis())),
        Some(sub) => inst
            .meta
            .as_ref()?
            .get(sub)
            .and_then(|s| s.get("value").or_else(|| s.get("object")))
            .cloned(),
    }
}

fn cmp_json(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Json::String(x), Json::String(y)) => x.cmp(y),
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Sorts entities by `keys` (stable: ties keep their order).
pub fn sort(entities: &mut [EntityState], keys: &[OrderKey]) {
    entities.sort_by(|a, b| {
        for k in keys {
            let o = match (order_value(a, k), order_value(b, k)) {
                (Some(x), Some(y)) => {
                    let o = cmp_json(&x, &y);
                    if k.desc { o.reverse() } else { o }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

/// Everything about how a request wants its entities rendered.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Representation, sysAttrs and the `attrs` filter.
    pub opts: RenderOptions,
    /// `pick`/`omit`.
    pub projection: Projection,
    /// `lang`.
    pub lang: Option<LangPref>,
    /// `join` and `joinLevel`.
    pub join: Option<Join>,
    /// `datasetId`: the instances to keep (`None` in the list is the default instance).
    pub datasets: Option<Vec<Option<String>>>,
    /// GeoJSON output, with this geometry property (expanded; default `location`).
    pub geojson: Option<String>,
}

impl Shape {
    /// The entities a page links to that joins will render, one level from `states`.
    pub fn links(&self, states: &[&EntityState]) -> Vec<EntityId> {
        let mut out = BTreeSet::new();
        for s in states {
            for o in s.attrs.iter().filter(|o| self.keeps_instance(o)) {
                if let Value::Relationship(id) = &o.value {
                    out.insert(id.clone());
                }
            }
        }
        out.into_iter().collect()
    }

    fn keeps_instance(&self, o: &Observation) -> bool {
        self.datasets
            .as_ref()
            .is_none_or(|ds| ds.iter().any(|d| d.as_deref() == o.dataset_id.as_deref()))
            && self
                .opts
                .attrs
                .as_ref()
                .is_none_or(|a| a.iter().any(|x| *x == *o.attr))
    }
}

/// Renders one entity (and, with joins, what it links to) as the shape asks.
struct Renderer<'a> {
    shape: &'a Shape,
    ctx: &'a Context,
    linked: &'a HashMap<EntityId, EntityState>,
    flat: Vec<Json>,
    flat_seen: BTreeSet<EntityId>,
}

impl Renderer<'_> {
    fn render(&mut self, state: &EntityState, projection: &Projection, depth: usize) -> Json {
        let mut s = state.clone();
        s.attrs.retain(|o| self.shape.keeps_instance(o));
        let mut v = render_entity(&s, self.ctx, &self.shape.opts);
        let Json::Object(obj) = &mut v else {
            return v;
        };
        if let Some(lang) = &self.shape.lang {
            self.apply_lang(&s, obj, lang);
        }
        if let Some(join) = self.shape.join
            && depth < join.level
        {
            self.apply_join(&s, obj, projection, depth, join);
        }
        projection.apply(obj, self.ctx);
        v
    }

    fn apply_lang(&self, s: &EntityState, obj: &mut Map<String, Json>, lang: &LangPref) {
        for o in &s.attrs {
            let Value::LanguageMap(map) = &o.value else {
                continue;
            };
            let Some(map) = map.as_object() else { continue };
            let Some((tag, text)) = lang.choose(map) else {
                continue;
            };
            let key = self.ctx.compact_iri(&o.attr).into_owned();
            let keyvalues = self.shape.opts.format == Format::KeyValues;
            let target = |slot: &mut Json| match slot {
                Json::Object(m) if !keyvalues => {
                    m.remove("languageMap");
                    if m.contains_key("type") {
                        m.insert("type".into(), Json::from("Property"));
                    }
                    m.insert("value".into(), text.clone());
                    m.insert("lang".into(), Json::from(tag));
                }
                other => *other = text.clone(),
            };
            match obj.get_mut(&key) {
                Some(Json::Array(items)) => {
                    // Several instances: the one with this datasetId.
                    if let Some(slot) = items.iter_mut().find(|i| {
                        i.get("datasetId").and_then(Json::as_str) == o.dataset_id.as_deref()
                    }) {
                        target(slot);
                    }
                }
                Some(slot) => target(slot),
                None => {}
            }
        }
    }

    fn apply_join(
        &mut self,
        s: &EntityState,
        obj: &mut Map<String, Json>,
        projection: &Projection,
        depth: usize,
        join: Join,
    ) {
        for o in &s.attrs {
            let Value::Relationship(target) = &o.value else {
                continue;
            };
            let Some(linked) = self.linked.get(target) else {
                continue;
            };
            let key = self.ctx.compact_iri(&o.attr).into_owned();
            if !projection.keeps(&key, self.ctx) {
                // The projection drops the relationship: nothing to follow through it.
                continue;
            }
            let child = projection.child(&key, self.ctx);
            let rendered = self.render(linked, &child, depth + 1);
            if join.flat {
                if self.flat_seen.insert(linked.id.clone()) {
                    self.flat.push(rendered);
                }
                continue;
            }
            let keyvalues = self.shape.opts.format == Format::KeyValues;
            let place = |slot: &mut Json| {
                if keyvalues {
                    *slot = rendered.clone();
                } else if let Json::Object(m) = slot {
                    m.insert("entity".into(), rendered.clone());
                }
            };
            match obj.get_mut(&key) {
                Some(Json::Array(items)) => {
                    if let Some(slot) = items.iter_mut().find(|i| {
                        i.get("datasetId").and_then(Json::as_str) == o.dataset_id.as_deref()
                    }) {
                        place(slot);
                    }
                }
                Some(slot) => place(slot),
                None => {}
            }
        }
    }
}

/// Turns a rendered entity into a GeoJSON Feature whose geometry is the value of
/// `geometry_property` (null when the entity has none).
fn feature(state: &EntityState, rendered: Json, geometry_property: &str) -> Json {
    let geometry = state
        .attrs
        .iter()
        .find(|a| *a.attr == *geometry_property)
        .and_then(|a| match &a.value {
            Value::Geo(g) => Some((**g).clone()),
            _ => None,
        })
        .unwrap_or(Json::Null);
    let mut props = match rendered {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    let id = props
        .remove("id")
        .unwrap_or_else(|| Json::from(state.id.as_str()));
    props.remove("@context");
    let mut f = Map::new();
    f.insert("id".into(), id);
    f.insert("type".into(), Json::from("Feature"));
    f.insert("geometry".into(), geometry);
    f.insert("properties".into(), Json::Object(props));
    Json::Object(f)
}

/// The body for a page of entities: a JSON array (with flat joins, the linked entities
/// follow), or a GeoJSON FeatureCollection. `single` gives one entity as an object (or
/// a Feature), except a flat join, which is always a list.
pub fn render_all(
    states: &[EntityState],
    shape: &Shape,
    ctx: &Context,
    linked: &HashMap<EntityId, EntityState>,
    single: bool,
) -> Json {
    let mut r = Renderer {
        shape,
        ctx,
        linked,
        flat: Vec::new(),
        flat_seen: states.iter().map(|s| s.id.clone()).collect(),
    };
    let mut out: Vec<Json> = Vec::with_capacity(states.len());
    for s in states {
        let rendered = r.render(s, &shape.projection, 0);
        out.push(match &shape.geojson {
            Some(prop) => feature(s, rendered, prop),
            None => rendered,
        });
    }
    let flat = std::mem::take(&mut r.flat);
    // A flat join returns a list when it found linked entities; a single entity with
    // nothing linked stays an object.
    let joined_flat = shape.join.is_some_and(|j| j.flat) && (!single || !flat.is_empty());
    if !shape.projection.is_empty() && !single {
        // Entities the projection leaves nothing of are not returned.
        out.retain(leaves_something);
    }
    if shape.geojson.is_some() {
        if single && !joined_flat {
            return out.pop().unwrap_or(Json::Null);
        }
        let mut fc = Map::new();
        fc.insert("type".into(), Json::from("FeatureCollection"));
        fc.insert("features".into(), Json::Array(out));
        return Json::Object(fc);
    }
    if single && !joined_flat {
        return out.pop().unwrap_or(Json::Null);
    }
    out.extend(flat);
    Json::Array(out)
}

/// Applies `projection` to one rendered entity (an object; anything else is left).
pub fn project(projection: &Projection, v: &mut Json, ctx: &Context) {
    if let Json::Object(obj) = v {
        projection.apply(obj, ctx);
    }
}

/// Checks the members `pick`/`omit` keep for one entity: picking only what it does not
/// have, or omitting everything, leaves nothing to return (404).
pub fn leaves_something(v: &Json) -> bool {
    v.as_object()
        .is_some_and(|o| o.keys().any(|k| k != "@context"))
}

/// The NGSI-LD representation named by `options` and `format` (NGSI-LD 1.8: `format`
/// wins), with `sysAttrs`. Unknown values are 400 InvalidRequest.
pub fn format_of(options: Option<&str>, format: Option<&str>) -> Result<(Format, bool), Problem> {
    let mut f = Format::Normalized;
    let mut sys = false;
    for o in options.iter().flat_map(|s| s.split(',')) {
        match o.trim() {
            "keyValues" | "simplified" => f = Format::KeyValues,
            "concise" => f = Format::Concise,
            "normalized" => f = Format::Normalized,
            "sysAttrs" => sys = true,
            // Temporal and other options are checked by the routes that take them.
            "temporalValues" | "aggregatedValues" | "noOverwrite" | "replace" | "update" | "" => {}
            other => {
                return Err(Problem::new(
                    ErrorType::InvalidRequest,
                    format!(
                        "unknown option `{other}`; use keyValues, concise, normalized or sysAttrs"
                    ),
                ));
            }
        }
    }
    if let Some(fmt) = format {
        f = match fmt.trim() {
            "keyValues" | "simplified" => Format::KeyValues,
            "concise" => Format::Concise,
            "normalized" => Format::Normalized,
            "temporalValues" | "aggregatedValues" => f,
            other => {
                return Err(Problem::new(
                    ErrorType::InvalidRequest,
                    format!("unknown format `{other}`; use keyValues, concise or normalized"),
                ));
            }
        };
    }
    Ok((f, sys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_and_omit_lists_parse_or_say_what_is_wrong() {
        let m = parse_members("id,locatedAt{id,name,isInCountry{description}}").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[1].nested.as_ref().unwrap()[2].nested.as_ref().unwrap()[0].name,
            "description"
        );
        for bad in [
            "id;name",
            "id,locatedAt{name",
            "id,locatedAt{{name}",
            "id,,name",
            "id,locatedAt{,name}",
            "id,locatedAt{}",
            ",id",
            "",
            "id}",
        ] {
            let e = parse_members(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
        assert!(Projection::parse(Some("a"), Some("b"), None).is_err());
        assert!(Projection::parse(Some("a"), None, Some("b")).is_err());
    }

    #[test]
    fn language_preferences_pick_the_best_tag() {
        let map =
            serde_json::json!({"fr": "Grand Place", "nl": "Grote Markt", "en-GB": "Great Square"});
        let map = map.as_object().unwrap();
        let best = |s: &str| {
            LangPref::parse(s)
                .unwrap()
                .choose(map)
                .map(|(t, _)| t.to_owned())
        };
        assert_eq!(best("fr").as_deref(), Some("fr"));
        assert_eq!(best("fr-CH,fr").as_deref(), Some("fr"));
        assert_eq!(best("de,en;q=0.5,nl;q=0.8").as_deref(), Some("nl"));
        assert_eq!(
            best("en").as_deref(),
            Some("en-GB"),
            "a range matches its subtags"
        );
        assert_eq!(best("de").as_deref(), None);
        assert!(best("*").is_some());
    }

    #[test]
    fn format_wins_over_options_and_unknown_values_are_invalid_requests() {
        assert_eq!(
            format_of(Some("normalized"), Some("keyValues")).unwrap(),
            (Format::KeyValues, false)
        );
        assert_eq!(
            format_of(Some("keyValues,sysAttrs"), None).unwrap(),
            (Format::KeyValues, true)
        );
        assert_eq!(
            format_of(Some("invalid"), None).unwrap_err().kind,
            ErrorType::InvalidRequest.uri()
        );
        assert_eq!(
            format_of(None, Some("invalid")).unwrap_err().kind,
            ErrorType::InvalidRequest.uri()
        );
    }
}
