//! Entity creation, type discovery, and what the entity routes share: reading and
//! dead-lettering write bodies, responding in the negotiated representation, and
//! committing parsed entities.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{
        Query, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use polity_model::{
    EntityId, EntityOp, PrivacyClass, Tenant, Timestamp,
    ngsild::{ParseDefaults, parse_entity},
};
use serde_json::Value;

use polity_trust::{Access, Action, EntityRef};

use crate::{
    ApiState,
    access::View,
    problem::{ErrorType, Problem},
    request::{self, ActiveContext, Media},
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
