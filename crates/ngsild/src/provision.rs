//! Entity provision beyond creation: delete, replace and merge an entity; append,
//! update, partially update, replace and delete its attributes (GS CIM 009 5.6).
//!
//! Every handler reads the stored entity, decides what changes (NGSI-LD's rules for
//! which attributes may be overwritten, which instances a `datasetId` addresses, and
//! `urn:ngsi-ld:null` as deletion in merges), and submits one batch of
//! [`EntityOp`]s and observations with replace semantics through the ingest pipeline,
//! so the change gets the same privacy protection, group commit and notifications as
//! every other write. Entities the caller may not see answer 404 like missing ones.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, Query, RawQuery, State, rejection::BytesRejection, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use polity_model::{
    Batch, EntityId, EntityOp, EntityState, Fold, Instances, Observation, PrivacyClass, Tenant,
    Timestamp,
    ngsild::{ParseDefaults, ParsedEntity, parse_fragment, render_attribute},
};
use polity_trust::{Access, Action};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    ApiState,
    access::{View, entity_ref},
    entities::{blocking, or_reject, params, write_body},
    problem::{ErrorType, Problem},
    request::{self, ActiveContext},
};

pub use polity_model::ngsild::NGSI_NULL;

fn parse_id(s: &str) -> Result<EntityId, Problem> {
    if s.is_empty() {
        return Err(Problem::bad_data("the entity id is missing from the path"));
    }
    EntityId::new(s).map_err(|e| Problem::bad_data(e.to_string()))
}

fn not_found(id: &EntityId, tenant: &Tenant) -> Problem {
    Problem::not_found(format!("entity `{id}` does not exist in tenant `{tenant}`"))
}

/// The stored entity the caller may write, or the error to answer: 404 when it is
/// missing or hidden from the caller, 403 when it is visible but not writable.
pub(crate) async fn writable(
    st: &ApiState,
    access: &Access,
    tenant: &Tenant,
    id: &EntityId,
) -> Result<EntityState, Problem> {
    let store = st.store.clone();
    let (t, i) = (tenant.clone(), id.clone());
    let found = blocking(move || store.entity(&t, &i)).await?;
    let Some(state) = found else {
        return Err(not_found(id, tenant));
    };
    let r = entity_ref(tenant, &state);
    if View::new(access, Action::EntityWrite, None).allows(&r) {
        return Ok(state);
    }
    if View::reading(access, Action::EntityRead, st).sees(tenant, &state) {
        Err(Problem::forbidden(format!(
            "`{}` may not change entity `{id}` in tenant `{tenant}`",
            access.caller.actor()
        )))
    } else {
        Err(not_found(id, tenant))
    }
}

/// Submits one change with replace semantics and waits until it is durable.
pub(crate) async fn submit(
    st: &ApiState,
    tenant: &Tenant,
    ops: Vec<EntityOp>,
    observations: Vec<Observation>,
) -> Result<(), Problem> {
    let batch = Batch {
        ops,
        fold: Fold::Replace,
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

fn defaults() -> ParseDefaults {
    let now = Timestamp::now();
    ParseDefaults {
        observed_at: now,
        received_at: now,
        privacy: PrivacyClass::Public,
    }
}

/// Reads a write's body and its `@context`, dead-lettering what is refused.
async fn fragment_body(
    st: &ApiState,
    headers: &HeaderMap,
    tenant: &Tenant,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Value, ActiveContext), Problem> {
    let v = write_body(st, headers, tenant, body).await?;
    let ctx = or_reject(
        st,
        tenant,
        &v,
        request::context_for_body(headers, &v, &st.contexts).await,
    )
    .await?;
    if !v.is_object() {
        return or_reject(
            st,
            tenant,
            &v,
            Err(Problem::invalid(
                "the body must be a JSON object of attributes (an entity fragment)",
            )),
        )
        .await;
    }
    Ok((v, ctx))
}

/// Parses a fragment for `state`, answering 400 InvalidRequest for what NGSI-LD calls an
/// invalid fragment.
async fn parse_for(
    st: &ApiState,
    tenant: &Tenant,
    body: &Value,
    ctx: &ActiveContext,
    state: &EntityState,
) -> Result<ParsedEntity, Problem> {
    let r = parse_fragment(
        body,
        &ctx.context,
        &defaults(),
        &state.id,
        &state.entity_type,
    )
    .map_err(|e| Problem::new(ErrorType::BadRequestData, e.to_string()));
    or_reject(st, tenant, body, r).await
}

/// Splits NGSI-LD Null attributes (deletions) off a fragment: returns the deletions and
/// the fragment without them.
fn split_nulls(body: &Value, ctx: &ActiveContext, entity: &EntityId) -> (Vec<EntityOp>, Value) {
    let mut ops = Vec::new();
    let mut rest = Map::new();
    for (k, v) in body.as_object().into_iter().flatten() {
        let reserved = matches!(
            k.as_str(),
            "id" | "@id" | "type" | "@type" | "scope" | "@context"
        );
        if reserved || !is_null(v) {
            rest.insert(k.clone(), v.clone());
            continue;
        }
        let attr: Arc<str> = Arc::from(ctx.context.expand_term(k).as_ref());
        let instances: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for inst in instances {
            let dataset = inst.get("datasetId").and_then(Value::as_str).map(Arc::from);
            ops.push(EntityOp::DeleteAttr {
                entity: entity.clone(),
                attr: attr.clone(),
                instances: dataset.map_or(Instances::Default, Instances::Dataset),
            });
        }
    }
    (ops, Value::Object(rest))
}

/// An UpdateResult (207) or 204 when everything was updated.
fn update_result(updated: Vec<String>, not_updated: Vec<(String, String)>) -> Response {
    if not_updated.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = json!({
        "updated": updated,
        "notUpdated": not_updated
            .into_iter()
            .map(|(name, reason)| json!({"attributeName": name, "reason": reason}))
            .collect::<Vec<_>>(),
    });
    crate::entities::json_response(StatusCode::MULTI_STATUS, &body)
}

/// `DELETE /ngsi-ld/v1/entities/{id}`.
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
    writable(&st, &access, &tenant, &id).await?;
    submit(
        &st,
        &tenant,
        vec![EntityOp::DeleteEntity { entity: id }],
        vec![],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Parameters of `POST /entities/{id}/attrs`.
#[derive(Debug, Default, Deserialize)]
pub struct AppendParams {
    /// `noOverwrite` keeps existing attributes.
    pub options: Option<String>,
}

/// `POST /ngsi-ld/v1/entities/{id}/attrs`: append attributes; existing ones are
/// overwritten unless `options=noOverwrite` (then they are reported not updated).
pub async fn append_attrs(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<AppendParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["options"])?;
    let p = params(p)?;
    let no_overwrite = match p.options.as_deref() {
        None | Some("") => false,
        Some("noOverwrite") => true,
        Some(other) => {
            return Err(Problem::bad_data(format!(
                "unknown option `{other}`; append accepts options=noOverwrite"
            )));
        }
    };
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    let (body, ctx) = fragment_body(&st, &headers, &tenant, body).await?;
    let state = writable(&st, &access, &tenant, &id).await?;
    let (mut ops, body) = split_nulls(&body, &ctx, &id);
    let parsed = parse_for(&st, &tenant, &body, &ctx, &state).await?;
    let mut keep = Vec::new();
    let mut updated = Vec::new();
    let mut not_updated = Vec::new();
    for o in parsed.observations {
        let exists = state
            .attrs
            .iter()
            .any(|a| a.attr == o.attr && a.dataset_id == o.dataset_id);
        if exists && no_overwrite {
            not_updated.push((
                o.attr.to_string(),
                "the attribute exists and options=noOverwrite keeps it".to_owned(),
            ));
        } else {
            updated.push(o.attr.to_string());
            keep.push(o);
        }
    }
    if let Some(scope) = parsed.scope {
        // Overwriting replaces the scope; noOverwrite adds to it.
        ops.push(EntityOp::Ensure {
            entity: id.clone(),
            types: Vec::new(),
            scope: Some(if no_overwrite {
                merge_scope(&state.scope, scope)
            } else {
                scope
            }),
        });
    }
    if !parsed.types.is_empty() {
        ops.push(EntityOp::Ensure {
            entity: id.clone(),
            types: parsed.types,
            scope: None,
        });
    }
    submit(&st, &tenant, ops, keep).await?;
    updated.dedup();
    Ok(update_result(updated, not_updated))
}

fn merge_scope(old: &[Arc<str>], new: Vec<Arc<str>>) -> Vec<Arc<str>> {
    let mut out = old.to_vec();
    for s in new {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `PATCH /ngsi-ld/v1/entities/{id}/attrs`: update the entity's attributes with those
/// of the fragment (as the ETSI conformance suite reads GS CIM 009 5.6.2, attributes
/// the entity lacks are added), delete those set to NGSI-LD Null, add types, and replace
/// the scope of an entity that has one (207 when it has none).
pub async fn update_attrs(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["options"])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    let (body, ctx) = fragment_body(&st, &headers, &tenant, body).await?;
    let state = writable(&st, &access, &tenant, &id).await?;
    let (mut ops, body) = split_nulls(&body, &ctx, &id);
    let parsed = parse_for(&st, &tenant, &body, &ctx, &state).await?;
    let mut updated: Vec<String> = parsed
        .observations
        .iter()
        .map(|o| o.attr.to_string())
        .collect();
    let mut not_updated = Vec::new();
    if let Some(scope) = parsed.scope {
        if state.scope.is_empty() {
            not_updated.push((
                "scope".to_owned(),
                "the entity has no scope to update; append it instead".to_owned(),
            ));
        } else {
            updated.push("scope".to_owned());
            ops.push(EntityOp::Ensure {
                entity: id.clone(),
                types: Vec::new(),
                scope: Some(scope),
            });
        }
    }
    if !parsed.types.is_empty() {
        ops.push(EntityOp::Ensure {
            entity: id.clone(),
            types: parsed.types,
            scope: None,
        });
    }
    if !parsed.observations.is_empty() || !ops.is_empty() {
        submit(&st, &tenant, ops, parsed.observations).await?;
    }
    updated.dedup();
    Ok(update_result(updated, not_updated))
}

/// Merges `patch` (an attribute instance as sent) into `base` (the stored instance,
/// rendered with the same context): members given replace members stored, and
/// sub-attributes merge one level down, so unmentioned sub-attributes stay.
fn merge_instance(base: &mut Map<String, Value>, patch: &Map<String, Value>) {
    let value_members = [
        "value",
        "object",
        "languageMap",
        "vocab",
        "json",
        "valueList",
        "objectList",
    ];
    let patch_sets_value = value_members.iter().any(|m| patch.contains_key(*m));
    for (k, v) in patch {
        match (base.get_mut(k), v) {
            (Some(Value::Object(old)), Value::Object(new))
                if !value_members.contains(&k.as_str()) && k != "type" =>
            {
                merge_instance(old, new);
            }
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
    if patch_sets_value && !patch.contains_key("observedAt") {
        // A new value without a time of observation: the old one no longer applies.
        base.remove("observedAt");
    }
}

/// `PATCH /ngsi-ld/v1/entities/{id}/attrs/{attrId}`: partial update of one attribute
/// instance (the default one, or the one whose `datasetId` the body names).
pub async fn partial_update_attr(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    let (body, ctx) = fragment_body(&st, &headers, &tenant, body).await?;
    let state = writable(&st, &access, &tenant, &id).await?;
    let Some(patch) = body
        .as_object()
        .filter(|o| o.keys().any(|k| k != "@context"))
    else {
        return Err(Problem::bad_data(
            "the body is empty; give the members of the attribute to change",
        ));
    };
    let iri = ctx.context.expand_term(&attr).into_owned();
    let dataset = patch.get("datasetId").and_then(Value::as_str);
    let Some(stored) = state
        .attrs
        .iter()
        .find(|a| *a.attr == *iri && a.dataset_id.as_deref() == dataset)
    else {
        return Err(Problem::not_found(match dataset {
            Some(d) => format!("entity `{id}` has no instance of `{attr}` with datasetId {d}"),
            None => format!("entity `{id}` has no default instance of attribute `{attr}`"),
        }));
    };
    let Value::Object(mut merged) = render_attribute(stored, &ctx.context) else {
        return Err(Problem::internal(
            "a stored attribute did not render as an object",
        ));
    };
    let mut patch = patch.clone();
    patch.remove("@context");
    if is_null(&Value::Object(patch.clone())) {
        let op = EntityOp::DeleteAttr {
            entity: id,
            attr: stored.attr.clone(),
            instances: stored
                .dataset_id
                .clone()
                .map_or(Instances::Default, Instances::Dataset),
        };
        submit(&st, &tenant, vec![op], vec![]).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if let (Some(new), Some(old)) = (patch.get("type"), merged.get("type"))
        && new != old
    {
        return Err(Problem::bad_data(format!(
            "attribute `{attr}` is a {old}; a partial update cannot make it a {new}"
        )));
    }
    merge_instance(&mut merged, &patch);
    let fragment = json!({ attr.clone(): Value::Object(merged) });
    let parsed = parse_for(&st, &tenant, &fragment, &ctx, &state).await?;
    submit(&st, &tenant, vec![], parsed.observations).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /ngsi-ld/v1/entities/{id}/attrs/{attrId}`: replace one attribute.
pub async fn replace_attr(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    if matches!(attr.as_str(), "scope" | "id" | "type" | "@context") || attr.starts_with('@') {
        return Err(Problem::bad_data(format!(
            "`{attr}` is not an attribute that can be replaced"
        )));
    }
    let (body, ctx) = fragment_body(&st, &headers, &tenant, body).await?;
    let state = writable(&st, &access, &tenant, &id).await?;
    let iri = ctx.context.expand_term(&attr).into_owned();
    if !state.attrs.iter().any(|a| *a.attr == *iri) {
        return Err(Problem::not_found(format!(
            "entity `{id}` has no attribute `{attr}`"
        )));
    }
    let mut instance = body.clone();
    if let Value::Object(o) = &mut instance {
        o.remove("@context");
    }
    let fragment = json!({ attr.clone(): instance });
    let parsed = parse_for(&st, &tenant, &fragment, &ctx, &state).await?;
    // Setting the instance replaces all of it (value, sub-attributes, unit) and keeps its
    // createdAt.
    submit(&st, &tenant, vec![], parsed.observations).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Parameters of `DELETE /entities/{id}/attrs/{attrId}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAttrParams {
    /// Only the instance with this datasetId.
    pub dataset_id: Option<String>,
    /// Every instance.
    pub delete_all: Option<bool>,
}

/// `DELETE /ngsi-ld/v1/entities/{id}/attrs/{attrId}`.
pub async fn delete_attr(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    p: Result<Query<DeleteAttrParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["datasetId", "deleteAll"])?;
    let p = params(p)?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    let ctx = request::context_from_headers(&headers, &st.contexts).await?;
    let state = writable(&st, &access, &tenant, &id).await?;
    if attr == "scope" {
        if state.scope.is_empty() {
            return Err(Problem::not_found(format!("entity `{id}` has no scope")));
        }
        let op = EntityOp::Ensure {
            entity: id,
            types: Vec::new(),
            scope: Some(Vec::new()),
        };
        submit(&st, &tenant, vec![op], vec![]).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let iri = ctx.context.expand_term(&attr).into_owned();
    let instances = if p.delete_all.unwrap_or(false) {
        Instances::All
    } else {
        match p.dataset_id {
            Some(d) if d != "@none" => Instances::Dataset(Arc::from(d.as_str())),
            _ => Instances::Default,
        }
    };
    if !state
        .attrs
        .iter()
        .any(|a| *a.attr == *iri && instances.covers(a.dataset_id.as_deref()))
    {
        return Err(Problem::not_found(format!(
            "entity `{id}` has no such instance of attribute `{attr}`"
        )));
    }
    submit(
        &st,
        &tenant,
        vec![EntityOp::DeleteAttr {
            entity: id,
            attr: Arc::from(iri.as_str()),
            instances,
        }],
        vec![],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /ngsi-ld/v1/entities/{id}`: replace the entity's attributes (and type and scope
/// when given) by those of the body.
pub async fn replace_entity(
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
    let (body, ctx) = fragment_body(&st, &headers, &tenant, body).await?;
    let state = writable(&st, &access, &tenant, &id).await?;
    let parsed = parse_for(&st, &tenant, &body, &ctx, &state).await?;
    let mut ops = vec![EntityOp::ClearAttrs { entity: id.clone() }];
    if !parsed.types.is_empty() {
        ops.push(EntityOp::SetTypes {
            entity: id.clone(),
            types: parsed.types.clone(),
        });
    }
    ops.push(EntityOp::Ensure {
        entity: id.clone(),
        types: Vec::new(),
        scope: Some(parsed.scope.clone().unwrap_or_default()),
    });
    submit(&st, &tenant, ops, parsed.observations).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether an attribute value in a fragment is NGSI-LD Null (deletes the attribute).
fn is_null(v: &Value) -> bool {
    let null = |x: &Value| x.as_str() == Some(NGSI_NULL);
    match v {
        Value::String(s) => s == NGSI_NULL,
        Value::Object(o) => {
            ["value", "object", "vocab", "json"]
                .iter()
                .any(|k| o.get(*k).is_some_and(null))
                || o.get("languageMap").is_some_and(|m| {
                    null(m)
                        || m.as_object()
                            .is_some_and(|m| !m.is_empty() && m.values().all(null))
                })
        }
        Value::Array(a) => !a.is_empty() && a.iter().all(is_null),
        _ => false,
    }
}

/// `PATCH /ngsi-ld/v1/entities/{id}`: merge the body into the entity (NGSI-LD 1.8 merge
/// patch): attributes given are added or merged into the stored instances, and those
/// set to `urn:ngsi-ld:null` are deleted.
pub async fn merge_entity(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["options", "format"])?;
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let id = parse_id(&id)?;
    let (body, ctx) = fragment_body(&st, &headers, &tenant, body).await?;
    let state = writable(&st, &access, &tenant, &id).await?;
    let (ops, observations) = merge_plan(&st, &tenant, &body, &ctx, &state).await?;
    submit(&st, &tenant, ops, observations).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What merging `body` into `state` changes.
pub(crate) async fn merge_plan(
    st: &ApiState,
    tenant: &Tenant,
    body: &Value,
    ctx: &ActiveContext,
    state: &EntityState,
) -> Result<(Vec<EntityOp>, Vec<Observation>), Problem> {
    let mut ops = Vec::new();
    let mut fragment = Map::new();
    let obj = body.as_object().cloned().unwrap_or_default();
    for (k, v) in &obj {
        if matches!(k.as_str(), "id" | "@id" | "@context") {
            continue;
        }
        if matches!(k.as_str(), "type" | "@type" | "scope") {
            fragment.insert(k.clone(), v.clone());
            continue;
        }
        let iri: Arc<str> = Arc::from(ctx.context.expand_term(k).as_ref());
        if is_null(v) {
            let dataset = v.get("datasetId").and_then(Value::as_str).map(Arc::from);
            ops.push(EntityOp::DeleteAttr {
                entity: state.id.clone(),
                attr: iri,
                instances: dataset.map_or(Instances::Default, Instances::Dataset),
            });
            continue;
        }
        // Merge each instance sent into the stored instance with the same datasetId.
        let sent: Vec<Value> = match v {
            Value::Array(a) if a.iter().all(Value::is_object) && !a.is_empty() => a.clone(),
            other => vec![other.clone()],
        };
        let mut merged_list = Vec::new();
        for inst in sent {
            let ds = inst.get("datasetId").and_then(Value::as_str);
            let stored = state
                .attrs
                .iter()
                .find(|a| a.attr == iri && a.dataset_id.as_deref() == ds);
            match (stored, inst) {
                (Some(stored), Value::Object(patch))
                    if !patch.contains_key("type")
                        || patch.get("type")
                            == render_attribute(stored, &ctx.context).get("type") =>
                {
                    if let Value::Object(mut base) = render_attribute(stored, &ctx.context) {
                        merge_instance(&mut base, &patch);
                        merged_list.push(Value::Object(base));
                    }
                }
                (_, other) => merged_list.push(other),
            }
        }
        let value = if merged_list.len() == 1 {
            merged_list.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(merged_list)
        };
        fragment.insert(k.clone(), value);
    }
    let parsed = parse_for(st, tenant, &Value::Object(fragment), ctx, state).await?;
    if let Some(scope) = parsed.scope {
        ops.push(EntityOp::Ensure {
            entity: state.id.clone(),
            types: Vec::new(),
            scope: Some(scope),
        });
    }
    if !parsed.types.is_empty() {
        ops.push(EntityOp::Ensure {
            entity: state.id.clone(),
            types: parsed.types,
            scope: None,
        });
    }
    Ok((ops, parsed.observations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_an_instance_keeps_what_is_not_mentioned() {
        let mut base = json!({"type": "Property", "value": 1, "observedAt": "2020-01-01T00:00:00Z",
                              "unitCode": "KMH", "accuracy": {"type": "Property", "value": 0.5}})
        .as_object()
        .unwrap()
        .clone();
        let patch = json!({"value": 2, "accuracy": {"value": 0.1}});
        merge_instance(&mut base, patch.as_object().unwrap());
        assert_eq!(
            Value::Object(base),
            json!({"type": "Property", "value": 2, "unitCode": "KMH",
                   "accuracy": {"type": "Property", "value": 0.1}}),
            "the value changes, its old observedAt goes, the unit and sub-property stay"
        );
    }

    #[test]
    fn ngsi_null_is_recognized_in_every_form() {
        assert!(is_null(&json!("urn:ngsi-ld:null")));
        assert!(is_null(
            &json!({"type": "Property", "value": "urn:ngsi-ld:null"})
        ));
        assert!(is_null(&json!({"object": "urn:ngsi-ld:null"})));
        assert!(is_null(
            &json!({"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}})
        ));
        assert!(is_null(
            &json!([{"value": "urn:ngsi-ld:null", "datasetId": "urn:x:1"}])
        ));
        assert!(!is_null(&json!({"value": "urn:ngsi-ld:null-ish"})));
        assert!(!is_null(&json!(null)));
    }
}

/// Parameters of `DELETE /ngsi-ld/v1/entities` (purge, NGSI-LD 1.9).
#[derive(Debug, Default, Deserialize)]
pub struct PurgeParams {
    /// Entity types, comma-separated.
    #[serde(rename = "type")]
    pub entity_type: Option<String>,
    /// Entity ids, comma-separated.
    pub id: Option<String>,
    /// The q-language filter.
    pub q: Option<String>,
    /// Attributes to keep (the others are deleted), comma-separated.
    pub keep: Option<String>,
    /// Attributes to delete (the entities stay), comma-separated.
    pub drop: Option<String>,
    /// Only this node's entities (the default: purges are never forwarded).
    pub local: Option<bool>,
}

/// `DELETE /ngsi-ld/v1/entities`: purge the matching entities, or with `drop`/`keep`
/// some of their attributes.
pub async fn purge(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    p: Result<Query<PurgeParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(
        raw.as_deref(),
        &["type", "id", "q", "keep", "drop", "local"],
    )?;
    let p = params(p)?;
    if p.keep.is_some() && p.drop.is_some() {
        return Err(Problem::bad_data(
            "give either keep or drop, not both: keep names the attributes that stay, drop those that go",
        ));
    }
    if p.entity_type.is_none() && p.id.is_none() && p.q.is_none() && p.local != Some(true) {
        return Err(Problem::bad_data(
            "a purge needs at least one of type, id or q (or local=true to purge every local entity)",
        ));
    }
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    crate::batch::may_write_tenant(&access, &tenant)?;
    let ctx = request::context_from_headers(&headers, &st.contexts).await?;
    let types: Vec<String> = p
        .entity_type
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(|t| ctx.context.expand_term(t.trim()).into_owned())
        .collect();
    let ids: Option<Vec<EntityId>> = match &p.id {
        Some(s) => Some(
            s.split(',')
                .map(|i| parse_id(i.trim()))
                .collect::<Result<_, _>>()?,
        ),
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
    let names = |s: &Option<String>| -> Option<Vec<String>> {
        s.as_ref().map(|s| {
            s.split(',')
                .filter(|a| !a.trim().is_empty())
                .map(|a| ctx.context.expand_term(a.trim()).into_owned())
                .collect()
        })
    };
    let (keep, drop) = (names(&p.keep), names(&p.drop));
    let store = st.store.clone();
    let t = tenant.clone();
    let all = blocking(move || store.entities(&t, &polity_store::EntityQuery::all(None))).await?;
    let view = View::new(&access, Action::EntityWrite, None);
    let mut ops = Vec::new();
    for e in all {
        let matches = (types.is_empty() || types.iter().any(|t| e.has_type(t)))
            && ids.as_ref().is_none_or(|ids| ids.contains(&e.id))
            && q.as_ref().is_none_or(|q| q.matches(&e));
        // Entities the caller may not write are left alone, unseen.
        if !matches || !view.allows(&entity_ref(&tenant, &e)) {
            continue;
        }
        match (&keep, &drop) {
            (None, None) => ops.push(EntityOp::DeleteEntity {
                entity: e.id.clone(),
            }),
            (Some(keep), _) => {
                let mut gone: Vec<&Arc<str>> = e
                    .attrs
                    .iter()
                    .map(|a| &a.attr)
                    .filter(|a| !keep.iter().any(|k| **k == ***a))
                    .collect();
                gone.dedup();
                for a in gone {
                    ops.push(EntityOp::DeleteAttr {
                        entity: e.id.clone(),
                        attr: a.clone(),
                        instances: Instances::All,
                    });
                }
            }
            (None, Some(drop)) => {
                for a in drop {
                    ops.push(EntityOp::DeleteAttr {
                        entity: e.id.clone(),
                        attr: Arc::from(a.as_str()),
                        instances: Instances::All,
                    });
                }
            }
        }
    }
    if !ops.is_empty() {
        submit(&st, &tenant, ops, vec![]).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
