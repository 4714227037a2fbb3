//! Entity routes: retrieve, query, create, batch upsert, and type discovery.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    body::Bytes,
    extract::{
        Path, Query, RawQuery, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use polity_model::{
    EntityId, EntityOp, EntityState, PrivacyClass, Tenant, Timestamp,
    ngsild::{Format, ParseDefaults, RenderOptions, parse_entity, render_entity},
};
use polity_store::EntityQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use polity_trust::{Access, Action, EntityRef};

use crate::{
    ApiState,
    access::{View, entity_ref},
    problem::{ErrorType, Problem},
    request::{self, ActiveContext, Media, Read},
};

/// Runs a store call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, polity_store::StoreError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)
}

/// The query parameters, or a ProblemDetails error naming what is malformed.
pub(crate) fn params<T>(p: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    p.map(|Query(p)| p)
        .map_err(|e| Problem::bad_data(format!("malformed query parameters: {}", e.body_text())))
}

/// Reads the JSON body of a write and counts it on the HTTP source. A body that is too
/// large or not JSON is kept as a dead letter (the raw bytes, when they were read) and
/// answered with a ProblemDetails error.
pub(crate) async fn write_body(
    st: &ApiState,
    headers: &HeaderMap,
    tenant: &Tenant,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, Problem> {
    let bytes = match body {
        Ok(b) => b,
        Err(e) => {
            let p = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    ErrorType::PayloadTooLarge,
                    format!(
                        "the body is larger than this node's limit of {} bytes; send smaller batches",
                        st.limits.max_body
                    ),
                )
            } else {
                Problem::invalid(format!("could not read the body: {e}"))
            };
            reject(st, tenant, &p.detail, Vec::new()).await;
            return Err(p);
        }
    };
    st.http_source.message(bytes.len());
    let media = request::media_type(headers);
    if !matches!(
        media.as_str(),
        "application/json" | "application/ld+json" | ""
    ) {
        let p = Problem::new(
            ErrorType::UnsupportedMediaType,
            format!(
                "Content-Type `{media}` is not accepted here; send application/json or application/ld+json"
            ),
        );
        reject(st, tenant, &p.detail, bytes.to_vec()).await;
        return Err(p);
    }
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok(v),
        Err(e) => {
            let p = Problem::invalid(format!("the body is not valid JSON: {e}"));
            reject(st, tenant, &p.detail, bytes.to_vec()).await;
            Err(p)
        }
    }
}

/// Writes `body` in the negotiated media type, with the context as Link header or in the body.
pub(crate) fn respond(
    status: StatusCode,
    mut body: Value,
    media: Media,
    ctx: &ActiveContext,
) -> Response {
    if media == Media::JsonLd {
        match &mut body {
            Value::Object(m) => {
                m.insert("@context".into(), ctx.reference.clone());
            }
            Value::Array(items) => {
                for it in items {
                    if let Value::Object(m) = it {
                        m.insert("@context".into(), ctx.reference.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let mut r = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    if media == Media::Json
        && let Some(link) = ctx.link_header()
    {
        r.headers_mut().insert(header::LINK, link);
    }
    r
}

/// Fails with NonexistentTenant when a tenant named in the header holds no data.
pub(crate) async fn require_tenant(
    st: &ApiState,
    tenant: &Tenant,
    explicit: bool,
) -> Result<(), Problem> {
    if !explicit {
        return Ok(());
    }
    let store = st.store.clone();
    let t = tenant.clone();
    let known = blocking(move || Ok(store.tenants()?.contains(&t))).await?;
    if known {
        Ok(())
    } else {
        Err(Problem::new(
            ErrorType::NonexistentTenant,
            format!("tenant `{tenant}` does not exist on this node"),
        ))
    }
}

/// Common query parameters of entity retrieval and query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityParams {
    /// Entity types, comma-separated.
    #[serde(rename = "type")]
    pub entity_type: Option<String>,
    /// Entity ids, comma-separated.
    pub id: Option<String>,
    /// Attributes to return, comma-separated.
    pub attrs: Option<String>,
    /// `keyValues`, `concise`, `normalized`, `sysAttrs`, comma-separated.
    pub options: Option<String>,
    /// NGSI-LD 1.8 `format` parameter.
    pub format: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Page offset.
    pub offset: Option<usize>,
    /// Whether to return `NGSILD-Results-Count`.
    pub count: Option<bool>,
    /// The q-language filter.
    pub q: Option<String>,
    /// A regular expression entity ids must match (whole id).
    #[serde(rename = "idPattern")]
    pub id_pattern: Option<String>,
    /// Geo-query parameters (not yet supported here).
    pub georel: Option<String>,
}

fn render_options(p: &EntityParams, ctx: &ActiveContext) -> Result<RenderOptions, Problem> {
    let mut format = Format::Normalized;
    let mut sys_attrs = false;
    for o in p
        .options
        .iter()
        .flat_map(|s| s.split(','))
        .chain(p.format.iter().map(|s| s.as_str()))
    {
        match o.trim() {
            "keyValues" | "simplified" => format = Format::KeyValues,
            "concise" => format = Format::Concise,
            "normalized" => format = Format::Normalized,
            "sysAttrs" => sys_attrs = true,
            "" => {}
            other => {
                return Err(Problem::bad_data(format!(
                    "unknown option `{other}`; use keyValues, concise, normalized or sysAttrs"
                )));
            }
        }
    }
    let attrs = p.attrs.as_ref().map(|a| {
        a.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| ctx.context.expand_term(s.trim()).into_owned())
            .collect::<Vec<_>>()
    });
    Ok(RenderOptions {
        format,
        sys_attrs,
        attrs,
        include_context: None,
    })
}

fn parse_id(s: &str) -> Result<EntityId, Problem> {
    EntityId::new(s).map_err(|e| Problem::bad_data(e.to_string()))
}

/// `GET /ngsi-ld/v1/entities/{id}`.
pub async fn retrieve(
    State(st): State<ApiState>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<EntityParams>, QueryRejection>,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    let p = params(p)?;
    request::known_params(raw.as_deref(), &["type", "attrs", "options", "format"])?;
    let id = parse_id(&id)?;
    let opts = render_options(&p, &ctx)?;
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
    if let Some(types) = &p.entity_type {
        let wanted: Vec<_> = types
            .split(',')
            .map(|t| ctx.context.expand_term(t.trim()).into_owned())
            .collect();
        if !wanted.iter().any(|t| *t == *state.entity_type) {
            return Err(Problem::not_found(format!(
                "entity `{id}` is not of type {types}"
            )));
        }
    }
    let state = view.redact(&tenant, state);
    if !view.audit().await {
        return Err(Problem::audit_unavailable());
    }
    Ok(respond(
        StatusCode::OK,
        render_entity(&state, &ctx.context, &opts),
        media,
        &ctx,
    ))
}

/// `GET /ngsi-ld/v1/entities`: query by type and/or id, paginated.
pub async fn query(
    State(st): State<ApiState>,
    access: Access,
    RawQuery(raw): RawQuery,
    p: Result<Query<EntityParams>, QueryRejection>,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    let p = params(p)?;
    request::known_params(
        raw.as_deref(),
        &[
            "type",
            "id",
            "idPattern",
            "attrs",
            "q",
            "options",
            "format",
            "limit",
            "offset",
            "count",
        ],
    )?;
    if p.georel.is_some() {
        return Err(Problem::new(
            ErrorType::OperationNotSupported,
            "geo-queries are not supported by this node yet; filter by type, id, idPattern, attrs and q",
        ));
    }
    if p.entity_type.is_none()
        && p.id.is_none()
        && p.attrs.is_none()
        && p.q.is_none()
        && p.id_pattern.is_none()
    {
        return Err(Problem::bad_data(
            "an entity query needs at least one of type, id, idPattern, attrs or q (for example ?type=ParkingSpot)",
        ));
    }
    let q_filter = match &p.q {
        Some(text) => {
            let mut q = polity_model::query::Query::parse(text)
                .map_err(|e| Problem::bad_data(e.to_string()))?;
            q.expand(&ctx.context);
            Some(q)
        }
        None => None,
    };
    let id_pattern = match &p.id_pattern {
        Some(pat) => {
            Some(crate::subscriptions::model::compile_pattern(pat).map_err(Problem::bad_data)?)
        }
        None => None,
    };
    let limit = p.limit.unwrap_or(st.limits.default_limit);
    if limit > st.limits.max_limit {
        return Err(Problem::new(
            ErrorType::TooManyResults,
            format!(
                "limit {limit} is above this node's maximum of {}; page with offset",
                st.limits.max_limit
            ),
        ));
    }
    let offset = p.offset.unwrap_or(0);
    let opts = render_options(&p, &ctx)?;
    if let Some(t) = &p.entity_type {
        if t.trim().is_empty() {
            return Err(Problem::bad_data(
                "`type` is empty; name at least one entity type",
            ));
        }
        if t.contains(['|', ';', '(', ')']) {
            return Err(Problem::new(
                ErrorType::OperationNotSupported,
                "type expressions with | ; ( ) are not supported by this node yet; list types separated by commas",
            ));
        }
    }
    let types: Vec<Arc<str>> = p
        .entity_type
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(|t| Arc::from(ctx.context.expand_term(t.trim()).as_ref()))
        .collect();
    let ids = match &p.id {
        Some(s) => Some(
            s.split(',')
                .map(|i| parse_id(i.trim()))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    require_tenant(&st, &tenant, explicit).await?;
    let store = st.store.clone();
    let want_count = p.count.unwrap_or(false);
    let attr_filter = opts.attrs.clone();
    let mut view = View::reading(&access, Action::EntityRead, &st);
    // Callers who may not read the whole tenant (citizens) get the entities they may
    // read, filtered before paging so that pages and counts describe only those.
    let per_entity = (!view.on_all()).then(|| access.clone());
    // q sees personal attributes only where the caller may read them, so it cannot be
    // used as an oracle on values the response would withhold.
    let personal_all = access.on_tenant(Action::PersonalRead);
    let q_access = access.clone();
    let t = tenant.clone();
    let (page, total) = blocking(move || {
        let tenant = t;
        let type_list: Vec<Option<Arc<str>>> = if types.is_empty() {
            vec![None]
        } else {
            types.into_iter().map(Some).collect()
        };
        let mut all: Vec<EntityState> = Vec::new();
        let mut total = 0u64;
        for ty in type_list {
            // Filters applied here (attrs) and counts of id lists need every match, so
            // the store cuts the page only for plain type queries.
            let wanted = if attr_filter.is_some()
                || ids.is_some()
                || per_entity.is_some()
                || q_filter.is_some()
                || id_pattern.is_some()
            {
                usize::MAX
            } else {
                offset + limit
            };
            let q = EntityQuery {
                entity_type: ty.clone(),
                ids: ids.clone(),
                after: None,
                limit: wanted,
            };
            let mut found = store.entities(&tenant, &q)?;
            if let Some(attrs) = &attr_filter {
                found.retain(|e| e.attrs.iter().any(|a| attrs.iter().any(|w| **w == *a.attr)));
            }
            if let Some(access) = &per_entity {
                found.retain(|e| access.on_entity(Action::EntityRead, &entity_ref(&tenant, e)));
            }
            if let Some(re) = &id_pattern {
                found.retain(|e| re.is_match(e.id.as_str()));
            }
            if let Some(q) = &q_filter {
                found.retain(|e| {
                    if personal_all
                        || !e.attrs.iter().any(|a| a.privacy != PrivacyClass::Public)
                        || q_access.on_entity(Action::PersonalRead, &entity_ref(&tenant, e))
                    {
                        q.matches(e)
                    } else {
                        let mut visible = e.clone();
                        visible.attrs.retain(|a| a.privacy == PrivacyClass::Public);
                        q.matches(&visible)
                    }
                });
            }
            if want_count {
                total += if ids.is_none()
                    && attr_filter.is_none()
                    && per_entity.is_none()
                    && q_filter.is_none()
                    && id_pattern.is_none()
                {
                    store.count_entities(&tenant, ty.as_deref())?
                } else {
                    found.len() as u64
                };
            }
            all.extend(found);
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let page: Vec<EntityState> = all.into_iter().skip(offset).take(limit).collect();
        Ok((page, total))
    })
    .await?;
    let page: Vec<EntityState> = page.into_iter().map(|e| view.redact(&tenant, e)).collect();
    if !view.audit().await {
        return Err(Problem::audit_unavailable());
    }
    let body = Value::Array(
        page.iter()
            .map(|e| render_entity(e, &ctx.context, &opts))
            .collect(),
    );
    let mut r = respond(StatusCode::OK, body, media, &ctx);
    if want_count {
        r.headers_mut()
            .insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(r)
}

/// Parses each entity of a write, dead-lettering those that fail.
async fn parse_entities(
    st: &ApiState,
    tenant: &Tenant,
    ctx: &ActiveContext,
    items: Vec<Value>,
) -> (
    Vec<polity_model::ngsild::ParsedEntity>,
    Vec<(Option<String>, Problem)>,
) {
    let now = Timestamp::now();
    let defaults = ParseDefaults {
        observed_at: now,
        received_at: now,
        privacy: PrivacyClass::Public,
    };
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for item in items {
        match parse_entity(&item, &ctx.context, &defaults) {
            Ok(e) => ok.push(e),
            Err(e) => {
                let id = item.get("id").and_then(|v| v.as_str()).map(str::to_owned);
                let problem = Problem::bad_data(e.to_string());
                reject(
                    st,
                    tenant,
                    &problem.detail,
                    serde_json::to_vec(&item).unwrap_or_default(),
                )
                .await;
                failed.push((id, problem));
            }
        }
    }
    (ok, failed)
}

/// Passes `r` through; an error first keeps `body` as a dead letter with the problem's
/// detail, so every rejected write is counted and kept.
pub(crate) async fn or_reject<T>(
    st: &ApiState,
    tenant: &Tenant,
    body: &impl serde::Serialize,
    r: Result<T, Problem>,
) -> Result<T, Problem> {
    if let Err(p) = &r {
        reject(
            st,
            tenant,
            &p.detail,
            serde_json::to_vec(body).unwrap_or_default(),
        )
        .await;
    }
    r
}

/// Keeps rejected HTTP input in the dead-letter store and counts it.
pub(crate) async fn reject(st: &ApiState, tenant: &Tenant, reason: &str, payload: Vec<u8>) {
    if let Err(e) = st
        .ingest
        .dead_letter(
            &st.http_source,
            Some(tenant.clone()),
            reason.to_owned(),
            Some("application/json".into()),
            payload,
        )
        .await
    {
        tracing::error!(error = %e, "could not keep rejected HTTP input as a dead letter");
    }
}

/// Writes whole entities: each is created if new (with its types and scope, even
/// without attributes); with `replace`, an existing entity first loses the attributes
/// the body does not have.
pub(crate) async fn commit(
    st: &ApiState,
    tenant: &Tenant,
    entities: Vec<polity_model::ngsild::ParsedEntity>,
    replace: bool,
) -> Result<(), Problem> {
    let mut ops = Vec::with_capacity(entities.len());
    let mut observations = Vec::new();
    for e in entities {
        if replace {
            ops.push(EntityOp::ClearAttrs {
                entity: e.id.clone(),
            });
            ops.push(EntityOp::SetTypes {
                entity: e.id.clone(),
                types: e.types.clone(),
            });
        }
        ops.push(EntityOp::Ensure {
            entity: e.id,
            types: e.types,
            scope: if replace {
                Some(e.scope.unwrap_or_default())
            } else {
                e.scope
            },
        });
        observations.extend(e.observations);
    }
    crate::provision::submit(st, tenant, ops, observations).await
}

/// A JSON response with `Content-Type: application/json`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The stored type and owner of each of `ids` that exists.
async fn existing(
    st: &ApiState,
    tenant: &Tenant,
    ids: Vec<EntityId>,
) -> Result<std::collections::BTreeMap<EntityId, (Arc<str>, Option<String>)>, Problem> {
    let store = st.store.clone();
    let t = tenant.clone();
    blocking(move || {
        let mut found = std::collections::BTreeMap::new();
        for id in ids {
            if let Some(e) = store.entity(&t, &id)? {
                let owner = crate::access::owner_of(&e);
                found.insert(id, (e.entity_type, owner));
            }
        }
        Ok(found)
    })
    .await
}

/// A parsed entity as the authorizer sees it (its owner as written in the body).
fn parsed_ref(tenant: &Tenant, e: &polity_model::ngsild::ParsedEntity) -> EntityRef {
    let owner = e
        .observations
        .iter()
        .find_map(polity_ingest::protect::owner_link);
    EntityRef {
        tenant: tenant.clone(),
        id: e.id.as_str().to_owned(),
        entity_type: e.entity_type.to_string(),
        owner,
    }
}

/// Whether the caller may write `e`, as written and, if it exists, as stored (so
/// nobody takes over an entity by rewriting its owner).
fn may_write(
    view: &View<'_>,
    tenant: &Tenant,
    e: &polity_model::ngsild::ParsedEntity,
    stored: Option<&(Arc<str>, Option<String>)>,
) -> bool {
    if view.on_all() {
        return true;
    }
    let new = parsed_ref(tenant, e);
    view.allows(&new)
        && stored.is_none_or(|(ty, owner)| {
            view.allows(&EntityRef {
                entity_type: ty.to_string(),
                owner: owner.clone(),
                ..new.clone()
            })
        })
}

/// `POST /ngsi-ld/v1/entities`: create one entity; 409 if it exists.
pub async fn create(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let v = write_body(&st, &headers, &tenant, body).await?;
    if !v.is_object() {
        return or_reject(
            &st,
            &tenant,
            &v,
            Err(Problem::invalid(
                "the body of an entity creation must be one JSON object",
            )),
        )
        .await;
    }
    let ctx = or_reject(
        &st,
        &tenant,
        &v,
        request::context_for_body(&headers, &v, &st.contexts).await,
    )
    .await?;
    let (mut ok, mut failed) = parse_entities(&st, &tenant, &ctx, vec![v]).await;
    if let Some((_, p)) = failed.pop() {
        return Err(p);
    }
    let Some(entity) = ok.pop() else {
        return Err(Problem::bad_data("no entity in the body"));
    };
    let id = entity.id.clone();
    let view = View::new(&access, Action::EntityWrite, None);
    if !may_write(&view, &tenant, &entity, None) {
        return Err(Problem::forbidden(format!(
            "`{}` may not create entity `{id}` in tenant `{tenant}`",
            access.caller.actor()
        )));
    }
    // Check and commit under one lock so two concurrent creates of an id cannot both win.
    let _create = st.create_lock.lock().await;
    if existing(&st, &tenant, vec![id.clone()])
        .await?
        .contains_key(&id)
    {
        return Err(Problem::new(
            ErrorType::AlreadyExists,
            format!("entity `{id}` already exists in tenant `{tenant}`"),
        ));
    }
    commit(&st, &tenant, vec![entity], false).await?;
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/ngsi-ld/v1/entities/{id}")) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

/// Parameters of `GET /types`.
#[derive(Debug, Default, Deserialize)]
pub struct TypeParams {
    /// Whether to return full EntityType objects.
    pub details: Option<bool>,
}

/// `GET /ngsi-ld/v1/types`: an EntityTypeList, or EntityType details.
pub async fn types(
    State(st): State<ApiState>,
    access: Access,
    RawQuery(raw): RawQuery,
    p: Result<Query<TypeParams>, QueryRejection>,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    if !access.on_tenant(Action::TypesRead) {
        return Err(Problem::forbidden(format!(
            "`{}` may not list the types of tenant `{tenant}`",
            access.caller.actor()
        )));
    }
    let p = params(p)?;
    request::known_params(raw.as_deref(), &["details"])?;
    require_tenant(&st, &tenant, explicit).await?;
    let store = st.store.clone();
    let details = p.details.unwrap_or(false);
    let t = tenant.clone();
    let found = blocking(move || {
        let mut out = Vec::new();
        for (ty, _) in store.types(&t)? {
            let mut attrs = BTreeSet::new();
            if details {
                let q = EntityQuery {
                    entity_type: Some(ty.clone()),
                    ids: None,
                    after: None,
                    limit: 10_000,
                };
                for e in store.entities(&t, &q)? {
                    attrs.extend(e.attrs.iter().map(|a| a.attr.clone()));
                }
            }
            out.push((ty, attrs));
        }
        Ok(out)
    })
    .await?;
    let body = if details {
        Value::Array(
            found
                .iter()
                .map(|(ty, attrs)| {
                    json!({
                        "id": &**ty,
                        "type": "EntityType",
                        "typeName": ctx.context.compact_iri(ty),
                        "attributeNames": attrs.iter().map(|a| ctx.context.compact_iri(a).into_owned()).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": format!("urn:ngsi-ld:EntityTypeList:{tenant}"),
            "type": "EntityTypeList",
            "typeList": found.iter().map(|(ty, _)| ctx.context.compact_iri(ty).into_owned()).collect::<Vec<_>>(),
        })
    };
    Ok(respond(StatusCode::OK, body, media, &ctx))
}
