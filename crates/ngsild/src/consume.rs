//! Entity consumption: retrieve one entity (`GET /entities/{id}`) and query entities
//! (`GET /entities`, `POST /entityOperations/query`), GS CIM 009 5.7.
//!
//! A query is a `Selector` (which entities: types or a type expression, ids,
//! `idPattern`, `attrs`, `q`, `scopeQ`, a geo-query) and a [`Shape`] (how they are
//! rendered). Parameters are checked before anything is read, so a malformed request is
//! 400 whether or not the entity exists. Authorization is applied before paging, so
//! pages and counts describe only what the caller may see.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, Query, RawQuery, State, rejection::BytesRejection, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use polity_model::{
    EntityId, EntityState, PrivacyClass, Tenant,
    geoquery::GeoQuery,
    ngsild::RenderOptions,
    selection::{ScopeQuery, TypeExpr},
};
use polity_store::EntityQuery;
use polity_trust::{Access, Action};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    ApiState,
    access::{View, entity_ref},
    entities::{blocking, params, require_tenant, respond},
    problem::{ErrorType, Problem},
    request::{self, ActiveContext, Media},
    shape::{self, Join, LangPref, OrderKey, Projection, Shape},
};

/// Query parameters of entity retrieval and query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityParams {
    /// Entity types or a type expression.
    #[serde(rename = "type")]
    pub entity_type: Option<String>,
    /// Entity ids, comma-separated.
    pub id: Option<String>,
    /// A regular expression entity ids must match (whole id).
    pub id_pattern: Option<String>,
    /// Attributes to return (and select by), comma-separated.
    pub attrs: Option<String>,
    /// `keyValues`, `concise`, `normalized`, `sysAttrs`, comma-separated.
    pub options: Option<String>,
    /// NGSI-LD 1.8 `format`; wins over `options`.
    pub format: Option<String>,
    /// The q-language filter.
    pub q: Option<String>,
    /// The scope query.
    pub scope_q: Option<String>,
    /// Geo-query relation.
    pub georel: Option<String>,
    /// Geo-query geometry type.
    pub geometry: Option<String>,
    /// Geo-query coordinates (a JSON array).
    pub coordinates: Option<String>,
    /// The GeoProperty a geo-query tests (default `location`).
    pub geoproperty: Option<String>,
    /// The GeoProperty a GeoJSON response uses as geometry (default `location`).
    pub geometry_property: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Page offset.
    pub offset: Option<usize>,
    /// Whether to return `NGSILD-Results-Count`.
    pub count: Option<bool>,
    /// Members to keep.
    pub pick: Option<String>,
    /// Members to leave out.
    pub omit: Option<String>,
    /// Preferred languages for LanguageProperties.
    pub lang: Option<String>,
    /// `inline` or `flat`.
    pub join: Option<String>,
    /// How many links deep to join.
    pub join_level: Option<usize>,
    /// Instances to keep, comma-separated; `@none` is the default instance.
    pub dataset_id: Option<String>,
    /// Sort keys (NGSI-LD 1.9).
    pub order_by: Option<String>,
    /// Only this node's entities (this node holds only its own).
    pub local: Option<bool>,
}

/// The query parameters retrieval accepts.
const RETRIEVE_PARAMS: &[&str] = &[
    "type",
    "attrs",
    "options",
    "format",
    "lang",
    "join",
    "joinLevel",
    "pick",
    "omit",
    "local",
    "geometryProperty",
    "datasetId",
];

/// The query parameters `GET /entities` accepts.
const QUERY_PARAMS: &[&str] = &[
    "type",
    "id",
    "idPattern",
    "attrs",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "geometryProperty",
    "options",
    "format",
    "limit",
    "offset",
    "count",
    "lang",
    "join",
    "joinLevel",
    "pick",
    "omit",
    "datasetId",
    "orderBy",
    "local",
];

fn parse_id(s: &str) -> Result<EntityId, Problem> {
    EntityId::new(s).map_err(|e| Problem::bad_data(e.to_string()))
}

fn names(list: &str, ctx: &ActiveContext) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| ctx.context.expand_term(s).into_owned())
        .collect()
}

/// The shape of a response from the request's parameters. `geo` is the negotiated
/// GeoJSON output.
pub(crate) fn shape_of(p: &EntityParams, ctx: &ActiveContext, geo: bool) -> Result<Shape, Problem> {
    let (format, sys_attrs) = shape::format_of(p.options.as_deref(), p.format.as_deref())?;
    let projection = Projection::parse(p.pick.as_deref(), p.omit.as_deref(), p.attrs.as_deref())?;
    let attrs = match &p.attrs {
        Some(a) => {
            let list = names(a, ctx);
            if list.iter().any(|n| n == "@id" || n == "@type") {
                return Err(Problem::bad_data(
                    "attrs names attributes; id and type are not attributes (use pick for them)",
                ));
            }
            Some(list)
        }
        None => None,
    };
    let join = match p.join.as_deref() {
        None => None,
        Some(j @ ("inline" | "flat")) => Some(Join {
            flat: j == "flat",
            level: p.join_level.unwrap_or(1).clamp(1, 8),
        }),
        Some(other) => {
            return Err(Problem::bad_data(format!(
                "join `{other}` is neither inline nor flat"
            )));
        }
    };
    let datasets = p.dataset_id.as_ref().map(|d| {
        d.split(',')
            .map(str::trim)
            .map(|s| (s != "@none").then(|| s.to_owned()))
            .collect()
    });
    Ok(Shape {
        opts: RenderOptions {
            format,
            sys_attrs,
            attrs,
            include_context: None,
        },
        projection,
        lang: p.lang.as_deref().map(LangPref::parse).transpose()?,
        join,
        datasets,
        geojson: geo.then(|| {
            ctx.context
                .expand_term(p.geometry_property.as_deref().unwrap_or("location"))
                .into_owned()
        }),
    })
}

/// Which entities a query selects.
#[derive(Default)]
pub(crate) struct Selector {
    pub types: Option<TypeExpr>,
    pub ids: Option<Vec<EntityId>>,
    pub id_pattern: Option<regex::Regex>,
    pub attrs: Option<Vec<String>>,
    pub q: Option<polity_model::query::Query>,
    pub scope: Option<ScopeQuery>,
    pub geo: Option<(GeoQuery, String)>,
}

impl Selector {
    /// Whether `e` is selected, with `q` evaluated on its public attributes only (for
    /// callers that have not established they may read personal ones).
    pub(crate) fn matches(&self, e: &EntityState) -> bool {
        self.matches_except_q(e)
            && self.q.as_ref().is_none_or(|q| {
                if e.attrs.iter().all(|a| a.privacy == PrivacyClass::Public) {
                    q.matches(e)
                } else {
                    let mut visible = e.clone();
                    visible.attrs.retain(|a| a.privacy == PrivacyClass::Public);
                    q.matches(&visible)
                }
            })
    }

    fn matches_except_q(&self, e: &EntityState) -> bool {
        self.types.as_ref().is_none_or(|t| t.matches(e))
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&e.id))
            && self
                .id_pattern
                .as_ref()
                .is_none_or(|re| re.is_match(e.id.as_str()))
            && self
                .attrs
                .as_ref()
                .is_none_or(|a| e.attrs.iter().any(|o| a.iter().any(|w| *w == *o.attr)))
            && self.scope.as_ref().is_none_or(|s| s.matches(e))
            && self.geo.as_ref().is_none_or(|(g, prop)| {
                e.attrs.iter().any(|o| {
                    *o.attr == **prop
                        && matches!(&o.value, polity_model::Value::Geo(v) if g.matches(v))
                })
            })
    }
}

/// Builds the geo-query of `georel`, `geometry`, `coordinates`, `geoproperty`.
pub(crate) fn geo_of(
    georel: Option<&str>,
    geometry: Option<&str>,
    coordinates: Option<&Value>,
    geoproperty: Option<&str>,
    ctx: &ActiveContext,
) -> Result<Option<(GeoQuery, String)>, Problem> {
    match (georel, geometry, coordinates) {
        (None, None, None) => Ok(None),
        (Some(r), Some(g), Some(c)) => {
            let q = GeoQuery::parse(r, g, c).map_err(|e| Problem::bad_data(e.to_string()))?;
            let prop = ctx
                .context
                .expand_term(geoproperty.unwrap_or("location"))
                .into_owned();
            Ok(Some((q, prop)))
        }
        _ => Err(Problem::bad_data(
            "a geo-query needs georel, geometry and coordinates together",
        )),
    }
}

pub(crate) fn selector_of(p: &EntityParams, ctx: &ActiveContext) -> Result<Selector, Problem> {
    let types = match &p.entity_type {
        Some(t) => Some(
            TypeExpr::parse(t, &|n| ctx.context.expand_term(n).into_owned())
                .map_err(|e| Problem::bad_data(e.to_string()))?,
        ),
        None => None,
    };
    let ids = match &p.id {
        Some(s) => Some(
            s.split(',')
                .map(|i| parse_id(i.trim()))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let id_pattern = match &p.id_pattern {
        Some(pat) => {
            Some(crate::subscriptions::model::compile_pattern(pat).map_err(Problem::bad_data)?)
        }
        None => None,
    };
    let q = match &p.q {
        Some(text) => {
            let mut q = polity_model::query::Query::parse(text)
                .map_err(|e| Problem::bad_data(e.to_string()))?;
            q.expand(&ctx.context);
            Some(q)
        }
        None => None,
    };
    let scope = match &p.scope_q {
        Some(s) => Some(ScopeQuery::parse(s).map_err(|e| Problem::bad_data(e.to_string()))?),
        None => None,
    };
    let coordinates = p.coordinates.as_ref().map(|c| Value::String(c.clone()));
    let geo = geo_of(
        p.georel.as_deref(),
        p.geometry.as_deref(),
        coordinates.as_ref(),
        p.geoproperty.as_deref(),
        ctx,
    )?;
    Ok(Selector {
        types,
        ids,
        id_pattern,
        attrs: p.attrs.as_ref().map(|a| names(a, ctx)),
        q,
        scope,
        geo,
    })
}

/// Fetches, level by level, the entities `roots` link to that `shape`'s join renders,
/// as the caller may see them.
async fn linked(
    st: &ApiState,
    view: &mut View<'_>,
    tenant: &Tenant,
    shape: &Shape,
    roots: &[EntityState],
) -> Result<HashMap<EntityId, EntityState>, Problem> {
    let mut out: HashMap<EntityId, EntityState> = HashMap::new();
    let Some(join) = shape.join else {
        return Ok(out);
    };
    let mut frontier: Vec<EntityState> = roots.to_vec();
    for _ in 0..join.level {
        let refs: Vec<&EntityState> = frontier.iter().collect();
        let want: Vec<EntityId> = shape
            .links(&refs)
            .into_iter()
            .filter(|id| !out.contains_key(id))
            .collect();
        if want.is_empty() {
            break;
        }
        let store = st.store.clone();
        let t = tenant.clone();
        let found = blocking(move || {
            store.entities(
                &t,
                &EntityQuery {
                    ids: Some(want),
                    ..EntityQuery::all(None)
                },
            )
        })
        .await?;
        frontier = Vec::new();
        for e in found {
            if view.sees(tenant, &e) {
                let e = view.redact(tenant, e);
                out.insert(e.id.clone(), e.clone());
                frontier.push(e);
            }
        }
    }
    Ok(out)
}

/// The Accept negotiation of entity reads, which also serve GeoJSON.
fn accept(headers: &HeaderMap) -> Result<(Media, bool), Problem> {
    let geo = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .any(|p| p.split(';').next().unwrap_or("").trim() == "application/geo+json")
                && !a.contains("application/json")
                && !a.contains("application/ld+json")
        });
    if geo {
        return Ok((Media::JsonLd, true));
    }
    Ok((request::accept(headers)?, false))
}

/// Writes a GeoJSON body (`@context` in the body, as JSON-LD).
fn respond_geo(status: StatusCode, mut body: Value, ctx: &ActiveContext) -> Response {
    if let Value::Object(m) = &mut body {
        m.insert("@context".into(), ctx.reference.clone());
    }
    let mut r = crate::entities::json_response(status, &body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/geo+json"),
    );
    r
}

/// `GET /ngsi-ld/v1/entities/{id}`.
pub async fn retrieve(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<EntityParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), RETRIEVE_PARAMS)?;
    let p = params(p)?;
    let (media, geo) = accept(&headers)?;
    let ctx = request::context_from_headers(&headers, &st.contexts).await?;
    let (tenant, explicit) = request::tenant(&headers, &st.default_tenant)?;
    let shape = shape_of(&p, &ctx, geo)?;
    let id = parse_id(&id)?;
    require_tenant(&st, &tenant, explicit).await?;
    let store = st.store.clone();
    let (t, i) = (tenant.clone(), id.clone());
    let found = blocking(move || store.entity(&t, &i)).await?;
    let mut view = View::reading(&access, Action::EntityRead, &st);
    // An entity the caller may not see is answered like one that does not exist, so
    // ids cannot be probed.
    let Some(state) = found.filter(|s| view.sees(&tenant, s)) else {
        return Err(Problem::not_found(format!(
            "entity `{id}` does not exist in tenant `{tenant}`"
        )));
    };
    if let Some(t) = &p.entity_type {
        let expr = TypeExpr::parse(t, &|n| ctx.context.expand_term(n).into_owned())
            .map_err(|e| Problem::bad_data(e.to_string()))?;
        if !expr.matches(&state) {
            return Err(Problem::not_found(format!(
                "entity `{id}` is not of type {t}"
            )));
        }
    }
    if let Some(attrs) = &shape.opts.attrs
        && !state
            .attrs
            .iter()
            .any(|o| attrs.iter().any(|a| *a == *o.attr))
    {
        return Err(Problem::not_found(format!(
            "entity `{id}` has none of the attributes {}",
            p.attrs.as_deref().unwrap_or("")
        )));
    }
    if let Some(picked) = shape.projection.picked_attrs(&ctx.context)
        && !picked.is_empty()
        && !picked
            .iter()
            .any(|a| state.attrs.iter().any(|o| *o.attr == **a))
        && !p.pick.as_deref().unwrap_or("").split(',').any(|m| {
            matches!(
                m.split('{').next().unwrap_or(""),
                "id" | "type" | "scope" | "createdAt" | "modifiedAt"
            )
        })
    {
        return Err(Problem::not_found(format!(
            "entity `{id}` has none of the members picked"
        )));
    }
    let state = view.redact(&tenant, state);
    let links = linked(
        &st,
        &mut view,
        &tenant,
        &shape,
        std::slice::from_ref(&state),
    )
    .await?;
    if !view.audit().await {
        return Err(Problem::audit_unavailable());
    }
    let body = shape::render_all(
        std::slice::from_ref(&state),
        &shape,
        &ctx.context,
        &links,
        true,
    );
    if !shape.projection.is_empty() && !shape::leaves_something(&body) && !body.is_array() {
        return Err(Problem::not_found(format!(
            "nothing of entity `{id}` is left after pick/omit"
        )));
    }
    if geo {
        return Ok(respond_geo(StatusCode::OK, body, &ctx));
    }
    Ok(respond(StatusCode::OK, body, media, &ctx))
}

/// Paging of a query.
pub(crate) struct Paging {
    pub limit: usize,
    pub offset: usize,
    pub count: bool,
}

/// Runs a query: select, authorize, order, page, redact, join and render.
#[allow(clippy::too_many_arguments)]
async fn run(
    st: &ApiState,
    access: &Access,
    tenant: Tenant,
    explicit: bool,
    media: Media,
    geo: bool,
    ctx: ActiveContext,
    selector: Selector,
    shape: Shape,
    order: Vec<OrderKey>,
    paging: Paging,
) -> Result<Response, Problem> {
    if paging.limit > st.limits.max_limit {
        return Err(Problem::new(
            ErrorType::TooManyResults,
            format!(
                "limit {} is above this node's maximum of {}; page with offset",
                paging.limit, st.limits.max_limit
            ),
        ));
    }
    require_tenant(st, &tenant, explicit).await?;
    let view = View::reading(access, Action::EntityRead, st);
    // Callers who may not read the whole tenant (citizens) get the entities they may
    // read, filtered before paging so that pages and counts describe only those.
    let per_entity = (!view.on_all()).then(|| access.clone());
    // q sees personal attributes only where the caller may read them, so it cannot be
    // used as an oracle on values the response would withhold.
    let personal_all = access.on_tenant(Action::PersonalRead);
    let q_access = access.clone();
    let store = st.store.clone();
    let t = tenant.clone();
    let (page, total) = blocking(move || {
        let tenant = t;
        let lookups: Vec<Option<Arc<str>>> = match (
            &selector.ids,
            selector.types.as_ref().and_then(TypeExpr::alternatives),
        ) {
            (Some(_), _) => vec![None],
            (None, Some(types)) => types.into_iter().map(Some).collect(),
            (None, None) => vec![None],
        };
        let mut all: Vec<EntityState> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for ty in lookups {
            let q = EntityQuery {
                entity_type: ty,
                ids: selector.ids.clone(),
                after: None,
                limit: usize::MAX,
            };
            for e in store.entities(&tenant, &q)? {
                if seen.contains(&e.id) || !selector.matches_except_q(&e) {
                    continue;
                }
                if let Some(a) = &per_entity
                    && !a.on_entity(Action::EntityRead, &entity_ref(&tenant, &e))
                {
                    continue;
                }
                if let Some(q) = &selector.q {
                    let ok = if personal_all
                        || !e.attrs.iter().any(|a| a.privacy != PrivacyClass::Public)
                        || q_access.on_entity(Action::PersonalRead, &entity_ref(&tenant, &e))
                    {
                        q.matches(&e)
                    } else {
                        let mut visible = e.clone();
                        visible.attrs.retain(|a| a.privacy == PrivacyClass::Public);
                        q.matches(&visible)
                    };
                    if !ok {
                        continue;
                    }
                }
                seen.insert(e.id.clone());
                all.push(e);
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        if !order.is_empty() {
            shape::sort(&mut all, &order);
        }
        let total = all.len() as u64;
        let page: Vec<EntityState> = all
            .into_iter()
            .skip(paging.offset)
            .take(paging.limit)
            .collect();
        Ok((page, total))
    })
    .await?;
    let mut view = View::reading(access, Action::EntityRead, st);
    let page: Vec<EntityState> = page.into_iter().map(|e| view.redact(&tenant, e)).collect();
    let links = linked(st, &mut view, &tenant, &shape, &page).await?;
    if !view.audit().await {
        return Err(Problem::audit_unavailable());
    }
    let body = shape::render_all(&page, &shape, &ctx.context, &links, false);
    let mut r = if geo {
        respond_geo(StatusCode::OK, body, &ctx)
    } else {
        respond(StatusCode::OK, body, media, &ctx)
    };
    if paging.count {
        r.headers_mut()
            .insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(r)
}

/// `GET /ngsi-ld/v1/entities`: query by type, id, pattern, attributes, q, scope and
/// geometry, paginated.
pub async fn query(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    p: Result<Query<EntityParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), QUERY_PARAMS)?;
    let p = params(p)?;
    let (media, geo) = accept(&headers)?;
    let ctx = request::context_from_headers(&headers, &st.contexts).await?;
    let (tenant, explicit) = request::tenant(&headers, &st.default_tenant)?;
    let shape = shape_of(&p, &ctx, geo)?;
    let selector = selector_of(&p, &ctx)?;
    if selector.types.is_none()
        && selector.attrs.is_none()
        && selector.q.is_none()
        && selector.id_pattern.is_none()
        && selector.geo.is_none()
        && selector.scope.is_none()
        && p.local != Some(true)
    {
        return Err(Problem::bad_data(
            "an entity query needs at least one of type, attrs, q, idPattern, scopeQ or a geo-query (id alone is not enough; add its type), for example ?type=ParkingSpot",
        ));
    }
    let order = match &p.order_by {
        Some(o) => shape::parse_order(o, &ctx.context)?,
        None => Vec::new(),
    };
    let paging = Paging {
        limit: p.limit.unwrap_or(st.limits.default_limit),
        offset: p.offset.unwrap_or(0),
        count: p.count.unwrap_or(false),
    };
    run(
        &st, &access, tenant, explicit, media, geo, ctx, selector, shape, order, paging,
    )
    .await
}

/// Query parameters of `POST /entityOperations/query`.
#[derive(Debug, Default, Deserialize)]
pub struct PostQueryParams {
    /// Representation options.
    pub options: Option<String>,
    /// Representation.
    pub format: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Page offset.
    pub offset: Option<usize>,
    /// Whether to return `NGSILD-Results-Count`.
    pub count: Option<bool>,
    /// Only this node's entities.
    pub local: Option<bool>,
}

/// `POST /ngsi-ld/v1/entityOperations/query`: the query as a JSON `Query` object.
pub async fn query_post(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    qp: Result<Query<PostQueryParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(
        raw.as_deref(),
        &["options", "format", "limit", "offset", "count", "local"],
    )?;
    let qp = params(qp)?;
    let (media, geo) = accept(&headers)?;
    let (tenant, explicit) = request::tenant(&headers, &st.default_tenant)?;
    let bytes = body.map_err(|e| Problem::invalid(format!("could not read the body: {e}")))?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::invalid(format!("the body is not valid JSON: {e}")))?;
    let ctx = request::context_for_body(&headers, &v, &st.contexts).await?;
    let Value::Object(o) = &v else {
        return Err(Problem::bad_data("the body must be a Query object"));
    };
    if let Some(t) = o.get("type").and_then(Value::as_str)
        && t != "Query"
    {
        return Err(Problem::bad_data(format!("the body is a {t}, not a Query")));
    }
    let text = |k: &str| -> Option<String> {
        o.get(k).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        })
    };
    // entities: [{id?, idPattern?, type}], alternatives of one selection.
    let mut types: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut patterns: Vec<String> = Vec::new();
    if let Some(es) = o.get("entities") {
        let es = es
            .as_array()
            .ok_or_else(|| Problem::bad_data("`entities` must be an array of EntitySelectors"))?;
        for e in es {
            if let Some(t) = e.get("type").and_then(Value::as_str) {
                types.push(format!("({t})"));
            }
            if let Some(i) = e.get("id").and_then(Value::as_str) {
                ids.push(i.to_owned());
            }
            if let Some(p) = e.get("idPattern").and_then(Value::as_str) {
                patterns.push(format!("(?:{p})"));
            }
        }
    }
    let geo_q = o.get("geoQ");
    let p = EntityParams {
        entity_type: (!types.is_empty()).then(|| types.join(",")),
        id: (!ids.is_empty()).then(|| ids.join(",")),
        id_pattern: (!patterns.is_empty()).then(|| patterns.join("|")),
        attrs: text("attrs"),
        options: qp.options.clone(),
        format: qp.format.clone(),
        q: text("q"),
        scope_q: text("scopeQ"),
        georel: geo_q
            .and_then(|g| g.get("georel"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        geometry: geo_q
            .and_then(|g| g.get("geometry"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        coordinates: geo_q
            .and_then(|g| g.get("coordinates"))
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned)),
        geoproperty: geo_q
            .and_then(|g| g.get("geoproperty"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        geometry_property: text("geometryProperty"),
        pick: text("pick"),
        omit: text("omit"),
        lang: text("lang"),
        join: text("join"),
        join_level: o
            .get("joinLevel")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        dataset_id: text("datasetId"),
        order_by: text("orderBy"),
        local: qp.local,
        ..EntityParams::default()
    };
    let shape = shape_of(&p, &ctx, geo)?;
    let selector = selector_of(&p, &ctx)?;
    let paging = Paging {
        limit: qp.limit.unwrap_or(st.limits.default_limit),
        offset: qp.offset.unwrap_or(0),
        count: qp.count.unwrap_or(false),
    };
    let order = match &p.order_by {
        Some(o) => shape::parse_order(o, &ctx.context)?,
        None => Vec::new(),
    };
    run(
        &st, &access, tenant, explicit, media, geo, ctx, selector, shape, order, paging,
    )
    .await
}
