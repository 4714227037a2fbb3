//! Discovery (GS CIM 009 5.7.5–5.7.10): which entity types and attributes a tenant
//! holds, with their details: `/types`, `/types/{type}`, `/attributes`,
//! `/attributes/{attr}`.
//!
//! Everything is computed from the tenant's current entity state on each request (no
//! separate catalogue to keep in step); names are compacted with the request's
//! `@context`, identifiers stay expanded IRIs.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    extract::{Path, Query, RawQuery, State, rejection::QueryRejection},
    http::StatusCode,
    response::Response,
};
use polity_model::{EntityState, Tenant, Value as V};
use polity_store::EntityQuery;
use polity_trust::{Access, Action};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    ApiState,
    entities::{blocking, params, require_tenant, respond},
    problem::Problem,
    request::{self, Read},
};

/// Parameters of the list routes.
#[derive(Debug, Default, Deserialize)]
pub struct DetailsParams {
    /// Whether to return full objects rather than a list of names.
    pub details: Option<bool>,
}

/// The NGSI-LD attribute type of a value.
fn attribute_type(v: &V) -> &'static str {
    match v {
        V::Relationship(_) => "Relationship",
        V::Geo(_) => "GeoProperty",
        V::LanguageMap(_) => "LanguageProperty",
        V::Vocab(_) => "VocabProperty",
        V::JsonValue(_) => "JsonProperty",
        V::List(_) => "ListProperty",
        V::ListRelationship(_) => "ListRelationship",
        V::Number(_) | V::Bool(_) | V::Text(_) | V::Json(_) => "Property",
    }
}

fn may_discover(access: &Access, tenant: &Tenant) -> Result<(), Problem> {
    if access.on_tenant(Action::TypesRead) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "`{}` may not discover the types and attributes of tenant `{tenant}`",
            access.caller.actor()
        )))
    }
}

async fn all_entities(st: &ApiState, tenant: &Tenant) -> Result<Vec<EntityState>, Problem> {
    let store = st.store.clone();
    let t = tenant.clone();
    blocking(move || store.entities(&t, &EntityQuery::all(None))).await
}

/// What is known of one attribute name across a tenant.
#[derive(Default)]
struct AttrInfo {
    instances: u64,
    kinds: BTreeSet<&'static str>,
    types: BTreeSet<String>,
}

fn attribute_catalogue(entities: &[EntityState]) -> BTreeMap<String, AttrInfo> {
    let mut out: BTreeMap<String, AttrInfo> = BTreeMap::new();
    for e in entities {
        for o in &e.attrs {
            let info = out.entry(o.attr.to_string()).or_default();
            info.instances += 1;
            info.kinds.insert(attribute_type(&o.value));
            info.types.extend(e.types().map(|t| t.to_string()));
        }
    }
    out
}

/// `GET /ngsi-ld/v1/types`: an EntityTypeList, or EntityType details.
pub async fn types(
    State(st): State<ApiState>,
    access: Access,
    RawQuery(raw): RawQuery,
    p: Result<Query<DetailsParams>, QueryRejection>,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["details"])?;
    let p = params(p)?;
    may_discover(&access, &tenant)?;
    require_tenant(&st, &tenant, explicit).await?;
    let entities = all_entities(&st, &tenant).await?;
    let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &entities {
        for t in e.types() {
            by_type
                .entry(t.to_string())
                .or_default()
                .extend(e.attrs.iter().map(|a| a.attr.to_string()));
        }
    }
    let c = &ctx.context;
    let body = if p.details.unwrap_or(false) {
        Value::Array(
            by_type
                .iter()
                .map(|(ty, attrs)| {
                    json!({
                        "id": ty,
                        "type": "EntityType",
                        "typeName": c.compact_iri(ty),
                        "attributeNames": attrs.iter().map(|a| c.compact_iri(a).into_owned()).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": format!("urn:ngsi-ld:EntityTypeList:{tenant}"),
            "type": "EntityTypeList",
            "typeList": by_type.keys().map(|ty| c.compact_iri(ty).into_owned()).collect::<Vec<_>>(),
        })
    };
    Ok(respond(StatusCode::OK, body, media, &ctx))
}

/// `GET /ngsi-ld/v1/types/{type}`: EntityTypeInfo (entity count, attribute details).
pub async fn type_info(
    State(st): State<ApiState>,
    access: Access,
    Path(ty): Path<String>,
    RawQuery(raw): RawQuery,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    may_discover(&access, &tenant)?;
    require_tenant(&st, &tenant, explicit).await?;
    let iri = ctx.context.expand_term(&ty).into_owned();
    let entities: Vec<EntityState> = all_entities(&st, &tenant)
        .await?
        .into_iter()
        .filter(|e| e.has_type(&iri))
        .collect();
    if entities.is_empty() {
        return Err(Problem::not_found(format!(
            "tenant `{tenant}` has no entity of type `{ty}` ({iri})"
        )));
    }
    let c = &ctx.context;
    let details: Vec<Value> = attribute_catalogue(&entities)
        .iter()
        .map(|(a, info)| {
            json!({
                "id": a,
                "type": "Attribute",
                "attributeName": c.compact_iri(a),
                "attributeTypes": info.kinds.iter().collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": c.compact_iri(&iri),
        "entityCount": entities.len(),
        "attributeDetails": details,
    });
    Ok(respond(StatusCode::OK, body, media, &ctx))
}

/// `GET /ngsi-ld/v1/attributes`: an AttributeList, or Attribute details.
pub async fn attributes(
    State(st): State<ApiState>,
    access: Access,
    RawQuery(raw): RawQuery,
    p: Result<Query<DetailsParams>, QueryRejection>,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["details"])?;
    let p = params(p)?;
    may_discover(&access, &tenant)?;
    require_tenant(&st, &tenant, explicit).await?;
    let catalogue = attribute_catalogue(&all_entities(&st, &tenant).await?);
    let c = &ctx.context;
    let body = if p.details.unwrap_or(false) {
        Value::Array(
            catalogue
                .iter()
                .map(|(a, info)| {
                    json!({
                        "id": a,
                        "type": "Attribute",
                        "attributeName": c.compact_iri(a),
                        "typeNames": info.types.iter().map(|t| c.compact_iri(t).into_owned()).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": format!("urn:ngsi-ld:AttributeList:{tenant}"),
            "type": "AttributeList",
            "attributeList": catalogue.keys().map(|a| c.compact_iri(a).into_owned()).collect::<Vec<_>>(),
        })
    };
    Ok(respond(StatusCode::OK, body, media, &ctx))
}

/// `GET /ngsi-ld/v1/attributes/{attr}`: one Attribute with its instance count, types
/// and the entity types that have it.
pub async fn attribute_info(
    State(st): State<ApiState>,
    access: Access,
    Path(attr): Path<String>,
    RawQuery(raw): RawQuery,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    may_discover(&access, &tenant)?;
    require_tenant(&st, &tenant, explicit).await?;
    let iri = ctx.context.expand_term(&attr).into_owned();
    let catalogue = attribute_catalogue(&all_entities(&st, &tenant).await?);
    let Some(info) = catalogue.get(&iri) else {
        return Err(Problem::not_found(format!(
            "no entity of tenant `{tenant}` has attribute `{attr}` ({iri})"
        )));
    };
    let c = &ctx.context;
    let body = json!({
        "id": iri,
        "type": "Attribute",
        "attributeName": c.compact_iri(&iri),
        "attributeCount": info.instances,
        "attributeTypes": info.kinds.iter().collect::<Vec<_>>(),
        "typeNames": info.types.iter().map(|t| c.compact_iri(t).into_owned()).collect::<Vec<_>>(),
    });
    Ok(respond(StatusCode::OK, body, media, &ctx))
}
