//! Batch entity operations (GS CIM 009 5.6.7–5.6.10, 5.6.19): create, upsert, update,
//! merge and delete many entities in one request.
//!
//! Each entity is read with its own `@context`, checked and authorized on its own: what
//! fails is reported in a BatchOperationResult (207) with its reason, and the rest is
//! committed together, in one durable write. An entity appearing twice is created once
//! (the second creation fails) and upserted in order.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    body::Bytes,
    extract::{Query, RawQuery, State, rejection::BytesRejection, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use polity_model::{
    EntityId, EntityOp, EntityState, Observation, PrivacyClass, Tenant, Timestamp,
    ngsild::{ParseDefaults, ParsedEntity, parse_entity},
};
use polity_trust::{Access, Action, EntityRef};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    ApiState,
    access::{View, entity_ref},
    entities::{blocking, json_response, or_reject, params, reject, write_body},
    problem::{ErrorType, Problem},
    provision::{merge_plan, submit},
    request,
};

/// Which batch operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Upsert { replace: bool },
    Update { no_overwrite: bool },
    Merge,
}

/// Query parameters of the batch operations.
#[derive(Debug, Default, Deserialize)]
pub struct BatchParams {
    /// `replace` or `update` (upsert); `noOverwrite` (update).
    pub options: Option<String>,
}

/// The outcome of a batch: which entities succeeded and why the others failed.
#[derive(Default)]
struct Outcome {
    success: Vec<String>,
    errors: Vec<(Option<String>, Problem)>,
}

impl Outcome {
    fn fail(&mut self, id: Option<&EntityId>, p: Problem) {
        self.errors.push((id.map(|i| i.to_string()), p));
    }

    /// A failure reported against the id as the client wrote it (even if it is not a
    /// valid id).
    fn fail_raw(&mut self, id: Option<&str>, p: Problem) {
        self.errors.push((id.map(str::to_owned), p));
    }

    fn body(&self) -> Value {
        json!({
            "success": self.success,
            "errors": self
                .errors
                .iter()
                .map(|(id, p)| json!({"entityId": id, "error": p.to_json()}))
                .collect::<Vec<_>>(),
        })
    }

    /// 207 with the result when anything failed; otherwise `ok`.
    fn respond(self, ok: Response) -> Response {
        if self.errors.is_empty() {
            ok
        } else {
            json_response(StatusCode::MULTI_STATUS, &self.body())
        }
    }
}

/// Reads the batch body: a non-empty JSON array of at most the node's batch limit.
async fn items(
    st: &ApiState,
    headers: &HeaderMap,
    tenant: &Tenant,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<Value>, Problem> {
    let v = write_body(st, headers, tenant, body).await?;
    let r = match v {
        Value::Array(a) if a.is_empty() => Err(Problem::bad_data(
            "the batch is empty; send at least one entity",
        )),
        Value::Array(a) if a.len() > st.limits.max_batch => Err(Problem::bad_data(format!(
            "{} entities in one batch; send at most {}",
            a.len(),
            st.limits.max_batch
        ))),
        Value::Array(a) => Ok(a),
        other => Err(Problem::bad_data(format!(
            "a batch body must be a JSON array, not {}",
            match other {
                Value::Object(_) => "an object",
                Value::String(_) => "a string",
                _ => "a scalar",
            }
        ))),
    };
    let json = serde_json::to_value(r.as_ref().ok()).unwrap_or(Value::Null);
    or_reject(st, tenant, &json, r).await
}

/// The stored state of each of `ids` that exists.
async fn stored(
    st: &ApiState,
    tenant: &Tenant,
    ids: Vec<EntityId>,
) -> Result<BTreeMap<EntityId, EntityState>, Problem> {
    let store = st.store.clone();
    let t = tenant.clone();
    blocking(move || {
        let mut found = BTreeMap::new();
        for id in ids {
            if let Some(e) = store.entity(&t, &id)? {
                found.insert(id, e);
            }
        }
        Ok(found)
    })
    .await
}

/// Parses each item with its own `@context` (NGSI-LD 6.3.5): what fails is reported
/// against the item's id and kept as a dead letter.
async fn parse_items(
    st: &ApiState,
    headers: &HeaderMap,
    tenant: &Tenant,
    items: Vec<Value>,
    out: &mut Outcome,
) -> Vec<(ParsedEntity, request::ActiveContext, Value)> {
    let now = Timestamp::now();
    let defaults = ParseDefaults {
        observed_at: now,
        received_at: now,
        privacy: PrivacyClass::Public,
    };
    let mut parsed = Vec::with_capacity(items.len());
    for item in items {
        let id = item.get("id").and_then(Value::as_str).map(str::to_owned);
        if !item.is_object() {
            let p = Problem::bad_data("each entity of a batch must be a JSON object");
            reject(st, tenant, &p.detail, item.to_string().into_bytes()).await;
            out.fail_raw(id.as_deref(), p);
            continue;
        }
        let ctx = match request::context_for_body(headers, &item, &st.contexts).await {
            Ok(c) => c,
            Err(p) => {
                reject(st, tenant, &p.detail, item.to_string().into_bytes()).await;
                out.fail_raw(id.as_deref(), p);
                continue;
            }
        };
        match parse_entity(&item, &ctx.context, &defaults) {
            Ok(e) => parsed.push((e, ctx, item)),
            Err(e) => {
                let p = Problem::bad_data(e.to_string());
                reject(st, tenant, &p.detail, item.to_string().into_bytes()).await;
                out.fail_raw(id.as_deref(), p);
            }
        }
    }
    parsed
}

/// The parsed entity as the authorizer sees it, with the owner it is written with.
fn parsed_ref(tenant: &Tenant, e: &ParsedEntity) -> EntityRef {
    EntityRef {
        tenant: tenant.clone(),
        id: e.id.as_str().to_owned(),
        entity_type: e.entity_type.to_string(),
        owner: e
            .observations
            .iter()
            .find_map(polity_ingest::protect::owner_link),
    }
}

/// Whether the caller may write `e` as written and, if it exists, as stored (so nobody
/// takes over an entity by rewriting its owner).
fn may_write(
    view: &View<'_>,
    tenant: &Tenant,
    e: &ParsedEntity,
    stored: Option<&EntityState>,
) -> bool {
    view.on_all()
        || (view.allows(&parsed_ref(tenant, e))
            && stored.is_none_or(|s| view.allows(&entity_ref(tenant, s))))
}

/// Batch operations are for callers who may write the tenant's entities: no role
/// writes only some of them, and answering per entity would tell a caller who may
/// write nothing which ids exist.
pub(crate) fn may_write_tenant(access: &Access, tenant: &Tenant) -> Result<(), Problem> {
    if access.on_tenant(Action::EntityWrite) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "`{}` may not write entities in tenant `{tenant}`",
            access.caller.actor()
        )))
    }
}

fn forbidden(access: &Access, tenant: &Tenant, id: &EntityId) -> Problem {
    Problem::forbidden(format!(
        "`{}` may not write entity `{id}` in tenant `{tenant}`",
        access.caller.actor()
    ))
}

async fn run(
    st: ApiState,
    access: Access,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    op: Op,
) -> Result<Response, Problem> {
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    may_write_tenant(&access, &tenant)?;
    if request::media_type(&headers) == "application/ld+json" && headers.contains_key(header::LINK)
    {
        return Err(Problem::bad_data(
            "with Content-Type application/ld+json each entity carries its @context; drop the Link header",
        ));
    }
    let items = items(&st, &headers, &tenant, body).await?;
    let mut out = Outcome::default();
    let parsed = parse_items(&st, &headers, &tenant, items, &mut out).await;
    let ids: Vec<EntityId> = parsed.iter().map(|(e, _, _)| e.id.clone()).collect();
    let before = stored(&st, &tenant, ids).await?;
    let view = View::new(&access, Action::EntityWrite, None);
    let mut ops: Vec<EntityOp> = Vec::new();
    let mut observations: Vec<Observation> = Vec::new();
    let mut created: Vec<String> = Vec::new();
    let mut seen: BTreeSet<EntityId> = BTreeSet::new();
    for (e, ctx, item) in parsed {
        let id = e.id.clone();
        let existing = before.get(&id);
        if !may_write(&view, &tenant, &e, existing) {
            out.fail(Some(&id), forbidden(&access, &tenant, &id));
            continue;
        }
        let again = !seen.insert(id.clone());
        let exists = existing.is_some() || again;
        match op {
            Op::Create => {
                if exists {
                    out.fail(
                        Some(&id),
                        Problem::new(
                            ErrorType::AlreadyExists,
                            format!("entity `{id}` already exists in tenant `{tenant}`"),
                        ),
                    );
                    continue;
                }
                ops.push(EntityOp::Ensure {
                    entity: id.clone(),
                    types: e.types,
                    scope: e.scope,
                });
                observations.extend(e.observations);
                created.push(id.to_string());
            }
            Op::Upsert { replace } => {
                if !exists {
                    created.push(id.to_string());
                }
                if replace && exists {
                    ops.push(EntityOp::ClearAttrs { entity: id.clone() });
                    ops.push(EntityOp::SetTypes {
                        entity: id.clone(),
                        types: e.types.clone(),
                    });
                }
                ops.push(EntityOp::Ensure {
                    entity: id.clone(),
                    types: e.types,
                    scope: if replace {
                        Some(e.scope.unwrap_or_default())
                    } else {
                        e.scope
                    },
                });
                observations.extend(e.observations);
            }
            Op::Update { no_overwrite } => {
                let Some(state) = existing else {
                    if again {
                        // Updated earlier in this batch: apply on top.
                        ops.push(EntityOp::Ensure {
                            entity: id.clone(),
                            types: e.types,
                            scope: e.scope,
                        });
                        observations.extend(e.observations);
                    } else {
                        out.fail(
                            Some(&id),
                            Problem::not_found(format!(
                                "entity `{id}` does not exist in tenant `{tenant}`"
                            )),
                        );
                    }
                    continue;
                };
                let mut kept = Vec::new();
                let mut skipped = Vec::new();
                for o in e.observations {
                    let has = state
                        .attrs
                        .iter()
                        .any(|a| a.attr == o.attr && a.dataset_id == o.dataset_id);
                    if has && no_overwrite {
                        skipped.push(ctx.context.compact_iri(&o.attr).into_owned());
                    } else {
                        kept.push(o);
                    }
                }
                ops.push(EntityOp::Ensure {
                    entity: id.clone(),
                    types: e.types,
                    scope: None,
                });
                observations.extend(kept);
                if !skipped.is_empty() {
                    skipped.dedup();
                    out.fail(
                        Some(&id),
                        Problem::bad_data(format!(
                            "attributes {} exist and options=noOverwrite keeps them; the others were added",
                            skipped.join(", ")
                        )),
                    );
                    continue;
                }
            }
            Op::Merge => {
                let Some(state) = existing else {
                    out.fail(
                        Some(&id),
                        Problem::not_found(format!(
                            "entity `{id}` does not exist in tenant `{tenant}`"
                        )),
                    );
                    continue;
                };
                match merge_plan(&st, &tenant, &item, &ctx, state).await {
                    Ok((o, obs)) => {
                        ops.extend(o);
                        observations.extend(obs);
                    }
                    Err(p) => {
                        out.fail(Some(&id), p);
                        continue;
                    }
                }
            }
        }
        if !out.success.contains(&id.to_string()) {
            out.success.push(id.to_string());
        }
    }
    if out.success.is_empty()
        && !out.errors.is_empty()
        && out.errors.iter().all(|(_, p)| p.status == 403)
    {
        // Nothing was allowed: the caller may not write here at all.
        return Err(Problem::forbidden(format!(
            "`{}` may not write these entities in tenant `{tenant}`",
            access.caller.actor()
        )));
    }
    if !ops.is_empty() || !observations.is_empty() {
        submit(&st, &tenant, ops, observations).await?;
    }
    let ok = match op {
        Op::Create => json_response(StatusCode::CREATED, &json!(created)),
        Op::Upsert { .. } if !created.is_empty() => {
            json_response(StatusCode::CREATED, &json!(created))
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    };
    Ok(out.respond(ok))
}

fn option(
    raw: Option<&str>,
    p: Result<Query<BatchParams>, QueryRejection>,
    allowed: &[&str],
) -> Result<Option<String>, Problem> {
    request::known_params(raw, &["options", "local"])?;
    let p = params(p)?;
    match p.options.as_deref() {
        None | Some("") => Ok(None),
        Some(o) if allowed.contains(&o) => Ok(Some(o.to_owned())),
        Some(o) => Err(Problem::bad_data(format!(
            "unknown option `{o}`; this operation accepts {}",
            allowed.join(" or ")
        ))),
    }
}

/// `POST /ngsi-ld/v1/entityOperations/create`.
pub async fn create(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    p: Result<Query<BatchParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    option(raw.as_deref(), p, &[])?;
    run(st, access, headers, body, Op::Create).await
}

/// `POST /ngsi-ld/v1/entityOperations/upsert`: `options=replace` (the default) replaces
/// existing entities, `options=update` merges attributes into them.
pub async fn upsert(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    p: Result<Query<BatchParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let replace = option(raw.as_deref(), p, &["replace", "update"])?.as_deref() != Some("update");
    run(st, access, headers, body, Op::Upsert { replace }).await
}

/// `POST /ngsi-ld/v1/entityOperations/update`: `options=noOverwrite` keeps existing
/// attributes.
pub async fn update(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    p: Result<Query<BatchParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let no_overwrite = option(raw.as_deref(), p, &["noOverwrite"])?.is_some();
    run(st, access, headers, body, Op::Update { no_overwrite }).await
}

/// `POST /ngsi-ld/v1/entityOperations/merge`.
pub async fn merge(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    p: Result<Query<BatchParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    option(raw.as_deref(), p, &[])?;
    run(st, access, headers, body, Op::Merge).await
}

/// `POST /ngsi-ld/v1/entityOperations/delete`: the body is an array of entity ids.
pub async fn delete(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["local"])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    may_write_tenant(&access, &tenant)?;
    let items = items(&st, &headers, &tenant, body).await?;
    let mut out = Outcome::default();
    let mut ids = Vec::new();
    for item in &items {
        match item.as_str().map(EntityId::new) {
            Some(Ok(id)) => ids.push(id),
            Some(Err(e)) => out.fail(None, Problem::bad_data(e.to_string())),
            None => out.fail(
                None,
                Problem::bad_data("a batch delete lists entity ids (strings)"),
            ),
        }
    }
    let before = stored(&st, &tenant, ids.clone()).await?;
    let view = View::new(&access, Action::EntityWrite, None);
    let reading = View::reading(&access, Action::EntityRead, &st);
    let mut ops = Vec::new();
    let mut seen = BTreeSet::new();
    for id in ids {
        let missing =
            || Problem::not_found(format!("entity `{id}` does not exist in tenant `{tenant}`"));
        let Some(state) = before.get(&id).filter(|_| seen.insert(id.clone())) else {
            out.fail(Some(&id), missing());
            continue;
        };
        let r = entity_ref(&tenant, state);
        if !view.allows(&r) {
            let p = if reading.sees(&tenant, state) {
                forbidden(&access, &tenant, &id)
            } else {
                missing()
            };
            out.fail(Some(&id), p);
            continue;
        }
        ops.push(EntityOp::DeleteEntity { entity: id.clone() });
        out.success.push(id.to_string());
    }
    if !ops.is_empty() {
        submit(&st, &tenant, ops, vec![]).await?;
    }
    Ok(out.respond(StatusCode::NO_CONTENT.into_response()))
}
