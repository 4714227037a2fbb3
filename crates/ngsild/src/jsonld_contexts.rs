//! The `@context` management API (GS CIM 009 5.13): add a context for the node to host,
//! list the contexts it holds (hosted, cached on first use, created for inline
//! `@context`s), serve one, and delete or reload one.

use axum::{
    body::Bytes,
    extract::{Path, Query, RawQuery, State, rejection::BytesRejection, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use polity_model::jsonld::{CORE_CONTEXT_URL, Context, is_core_context_url};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    ApiState,
    contexts::{Entry, Kind, PATH},
    entities::{json_response, params},
    problem::Problem,
    request,
};

/// The base URL (`http://host:port`) this request reached the node at.
pub(crate) fn base_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ']))
        .unwrap_or("localhost");
    let scheme = headers
        .get("X-Forwarded-Proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

fn details(e: &Entry) -> Value {
    let mut m = Map::new();
    m.insert("URL".into(), json!(e.url));
    m.insert("localId".into(), json!(e.local_id));
    m.insert("kind".into(), json!(e.kind.name()));
    m.insert("createdAt".into(), json!(e.created_at.to_string()));
    if let Some(t) = e.last_usage {
        m.insert("lastUsage".into(), json!(t.to_string()));
    }
    if e.kind != Kind::Hosted {
        m.insert("numberOfHits".into(), json!(e.hits));
    }
    Value::Object(m)
}

/// Query parameters of the list.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// `true` for objects with metadata, `false` (default) for URLs.
    pub details: Option<String>,
    /// Only contexts of this kind.
    pub kind: Option<String>,
}

fn flag(name: &str, v: Option<&str>) -> Result<bool, Problem> {
    match v {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Problem::bad_data(format!(
            "{name} must be true or false, not `{other}`"
        ))),
    }
}

/// `GET /ngsi-ld/v1/jsonldContexts`.
pub async fn list(
    State(st): State<ApiState>,
    RawQuery(raw): RawQuery,
    p: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["details", "kind"])?;
    let p = params(p)?;
    let details_on = flag("details", p.details.as_deref())?;
    let kind = match p.kind.as_deref() {
        None | Some("") => None,
        Some("Hosted") => Some(Kind::Hosted),
        Some("Cached") => Some(Kind::Cached),
        Some("ImplicitlyCreated") => Some(Kind::ImplicitlyCreated),
        Some(other) => {
            return Err(Problem::bad_data(format!(
                "kind `{other}` is not one of Hosted, Cached, ImplicitlyCreated"
            )));
        }
    };
    let entries: Vec<Entry> = st
        .contexts
        .list()
        .into_iter()
        .filter(|e| kind.is_none_or(|k| e.kind == k))
        .collect();
    let body = if details_on {
        Value::Array(entries.iter().map(details).collect())
    } else {
        Value::Array(entries.iter().map(|e| json!(e.url)).collect())
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /ngsi-ld/v1/jsonldContexts`: the node hosts the posted context.
pub async fn add(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &[])?;
    let bytes = body.map_err(|e| Problem::invalid(format!("could not read the body: {e}")))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::invalid(format!("the body is not valid JSON: {e}")))?;
    if doc.get("@context").is_none() {
        return Err(Problem::invalid(
            "a context document is a JSON object with an \"@context\" member",
        ));
    }
    let e = st
        .contexts
        .add(doc, Kind::Hosted, &base_of(&headers))
        .await?;
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{PATH}{}", e.local_id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Query parameters of serve and delete.
#[derive(Debug, Default, Deserialize)]
pub struct OneParams {
    /// Serve: the metadata rather than the document.
    pub details: Option<String>,
    /// Delete: download a cached context again instead of dropping it.
    pub reload: Option<String>,
}

fn core_entry() -> Value {
    Context::core()
        .source()
        .cloned()
        .unwrap_or_else(|| json!({"@context": {}}))
}

/// `GET /ngsi-ld/v1/jsonldContexts/{id}`: the document (or, with `details=true`, what
/// the node knows of it), by local id or URL.
pub async fn serve(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<OneParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["details"])?;
    let p = params(p)?;
    let details_on = flag("details", p.details.as_deref())?;
    if is_core_context_url(&id) {
        let body = if details_on {
            json!({"URL": id, "localId": "core", "kind": "Cached", "createdAt": "1970-01-01T00:00:00Z"})
        } else {
            core_entry()
        };
        return Ok(json_response(StatusCode::OK, &body));
    }
    let Some(e) = st.contexts.find(&id) else {
        return Err(Problem::not_found(format!(
            "this node holds no @context `{id}`"
        )));
    };
    let body = if details_on {
        details(&e)
    } else {
        (*e.document).clone()
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `DELETE /ngsi-ld/v1/jsonldContexts/{id}`: drops a context, or with `reload=true`
/// downloads a cached one again.
pub async fn delete(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<OneParams>, QueryRejection>,
) -> Result<Response, Problem> {
    request::known_params(raw.as_deref(), &["reload"])?;
    let p = params(p)?;
    let reload = flag("reload", p.reload.as_deref())?;
    if is_core_context_url(&id) || id == "core" {
        if reload {
            // The core context is built in: reloading it is reading the built-in copy.
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        return Err(Problem::bad_data(format!(
            "the core context ({CORE_CONTEXT_URL}) is built in and cannot be deleted; reload=true re-reads it"
        )));
    }
    let Some(e) = st.contexts.find(&id) else {
        return Err(if reload {
            Problem::bad_data(format!("this node holds no @context `{id}` to reload"))
        } else {
            Problem::not_found(format!("this node holds no @context `{id}`"))
        });
    };
    if reload {
        if e.kind != Kind::Cached {
            return Err(Problem::bad_data(format!(
                "`{id}` is {} here, not a cached copy of a remote context: there is nothing to reload",
                e.kind.name()
            )));
        }
        st.contexts.reload(&e.url).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    st.contexts.remove(&e.url);
    Ok(StatusCode::NO_CONTENT.into_response())
}
