//! What every NGSI-LD request carries besides its path: the tenant, the `@context` that
//! gives its terms meaning, and the representation the client accepts.
//!
//! A request may name the built-in core context, a context the node holds, or one the
//! [`ContextRegistry`] may download once on first use; anything else is
//! `LdContextNotAvailable`.

use std::sync::{Arc, RwLock};

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, header, request::Parts},
};
use polity_model::{
    Tenant,
    jsonld::{CORE_CONTEXT_URL, Context, ContextCache, is_core_context_url},
};

use crate::{
    ApiState,
    contexts::ContextRegistry,
    problem::{ErrorType, Problem},
};

/// The NGSI-LD tenant header.
pub const TENANT_HEADER: &str = "NGSILD-Tenant";
/// The JSON-LD context link relation.
pub const CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// The media type a response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json`, with the context in a Link header.
    Json,
    /// `application/ld+json`, with `@context` in the body.
    JsonLd,
}

impl Media {
    /// The Content-Type value.
    pub fn content_type(self) -> HeaderValue {
        match self {
            Media::Json => HeaderValue::from_static("application/json"),
            Media::JsonLd => HeaderValue::from_static("application/ld+json"),
        }
    }
}

/// The request's active context: the URL it was named by (for echoing back) and the
/// parsed context.
#[derive(Clone)]
pub struct ActiveContext {
    /// The URL or inline value to echo in responses.
    pub reference: serde_json::Value,
    /// The parsed context.
    pub context: Arc<Context>,
}

impl ActiveContext {
    /// The core context alone.
    pub fn core() -> Self {
        ActiveContext {
            reference: serde_json::Value::String(CORE_CONTEXT_URL.into()),
            context: Arc::new(Context::core().clone()),
        }
    }

    /// The Link header value naming this context, when it is a URL.
    pub fn link_header(&self) -> Option<HeaderValue> {
        let url = self.reference.as_str()?;
        HeaderValue::from_str(&format!(
            "<{url}>; rel=\"{CONTEXT_REL}\"; type=\"application/ld+json\""
        ))
        .ok()
    }
}

/// What every read request carries, taken from its headers once: the representation
/// the client accepts, the `@context` its terms use, and the tenant it addresses
/// (`explicit` when the `NGSILD-Tenant` header named it).
pub struct Read {
    /// The media type to answer in.
    pub media: Media,
    /// The active context.
    pub ctx: ActiveContext,
    /// The tenant.
    pub tenant: Tenant,
    /// Whether the tenant was named by the header (rather than the default).
    pub explicit: bool,
}

impl FromRequestParts<ApiState> for Read {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, Problem> {
        let h = &parts.headers;
        let media = accept(h)?;
        let ctx = context_from_headers(h, &st.contexts).await?;
        let (tenant, explicit) = tenant(h, &st.default_tenant)?;
        Ok(Read {
            media,
            ctx,
            tenant,
            explicit,
        })
    }
}

/// The tenant a request addresses; `None` when the header is absent (the default tenant).
pub fn tenant(headers: &HeaderMap, default: &Tenant) -> Result<(Tenant, bool), Problem> {
    match headers.get(TENANT_HEADER) {
        None => Ok((default.clone(), false)),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| Problem::bad_data("the NGSILD-Tenant header is not text"))?;
            Tenant::new(s)
                .map(|t| (t, true))
                .map_err(|e| Problem::bad_data(e.to_string()))
        }
    }
}

/// Which representation the client accepts, from the Accept header (RFC 9110 12.5.1:
/// the highest `q` wins; on a tie, JSON-LD when named explicitly).
pub fn accept(headers: &HeaderMap) -> Result<Media, Problem> {
    let Some(v) = headers.get(header::ACCEPT) else {
        return Ok(Media::Json);
    };
    let s = v.to_str().unwrap_or("");
    let mut best: Option<(f32, Media)> = None;
    for part in s.split(',') {
        let mut params = part.split(';');
        let mt = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let media = match mt.as_str() {
            "application/ld+json" => Media::JsonLd,
            "application/json" | "application/*" | "*/*" | "" => Media::Json,
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((bq, bm)) => {
                q > bq
                    || (q == bq
                        && media == Media::JsonLd
                        && bm != Media::JsonLd
                        && mt == "application/ld+json")
            }
        };
        if better {
            best = Some((q, media));
        }
    }
    best.map(|(_, m)| m).ok_or_else(|| {
        Problem::new(
            ErrorType::NotAcceptable,
            format!("cannot answer in `{s}`; accept application/json or application/ld+json"),
        )
    })
}

/// Parses a Link header naming a JSON-LD context, returning its URL.
pub fn link_context_url(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get(header::LINK) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| Problem::bad_data("the Link header is not text"))?;
    for link in s.split(',') {
        let link = link.trim();
        let Some(rest) = link.strip_prefix('<') else {
            continue;
        };
        let Some((url, params)) = rest.split_once('>') else {
            continue;
        };
        if params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|r| r.trim_matches('"') == CONTEXT_REL)
                .unwrap_or(false)
        }) {
            return Ok(Some(url.trim().to_owned()));
        }
    }
    Ok(None)
}

/// Resolves a context reference against the built-in core context and the cache.
pub fn resolve_url(url: &str, cache: &RwLock<ContextCache>) -> Result<ActiveContext, Problem> {
    if is_core_context_url(url) {
        return Ok(ActiveContext::core());
    }
    let cache = cache.read().unwrap_or_else(|e| e.into_inner());
    match cache.get(url) {
        Some(ctx) => Ok(ActiveContext {
            reference: serde_json::Value::String(url.to_owned()),
            context: ctx,
        }),
        None => Err(Problem::new(
            ErrorType::LdContextNotAvailable,
            format!(
                "the @context `{url}` is neither built in nor registered on this node; register it first (contexts are never fetched on a request)"
            ),
        )),
    }
}

/// The active context of a request without a body: its Link header, else the core.
/// A context the node does not hold yet is obtained first (see [`ContextRegistry`]).
pub async fn context_from_headers(
    headers: &HeaderMap,
    contexts: &ContextRegistry,
) -> Result<ActiveContext, Problem> {
    match link_context_url(headers)? {
        Some(url) => {
            contexts
                .prepare(&serde_json::Value::String(url.clone()))
                .await?;
            resolve_url(&url, contexts.cache())
        }
        None => Ok(ActiveContext::core()),
    }
}

/// The request's Content-Type without parameters, lower-cased; empty when absent.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// The active context of a request with a JSON body, per NGSI-LD 6.3.5: with
/// `application/ld+json` it is the body's `@context` (and a Link header is an error);
/// with `application/json` it is the Link header, and an `@context` in the body is an error.
pub async fn context_for_body(
    headers: &HeaderMap,
    body: &serde_json::Value,
    contexts: &ContextRegistry,
) -> Result<ActiveContext, Problem> {
    let ct = media_type(headers);
    let body_ctx = first_context(body);
    if ct == "application/ld+json"
        && let Some(c) = body_ctx
    {
        contexts.prepare(c).await?;
    }
    let cache = contexts.cache();
    match ct.as_str() {
        "application/ld+json" => {
            if headers.contains_key(header::LINK) {
                return Err(Problem::bad_data(
                    "with Content-Type application/ld+json the @context goes in the body; drop the Link header",
                ));
            }
            let Some(c) = body_ctx else {
                return Err(Problem::bad_data(
                    "an application/ld+json body must carry an @context",
                ));
            };
            let resolver = |url: &str| -> Option<Arc<Context>> {
                if is_core_context_url(url) {
                    return Some(Arc::new(Context::core().clone()));
                }
                cache.read().unwrap_or_else(|e| e.into_inner()).get(url)
            };
            let ctx = Context::from_json(c, &resolver).map_err(|e| match e {
                polity_model::jsonld::JsonLdError::ContextNotAvailable(url) => Problem::new(
                    ErrorType::LdContextNotAvailable,
                    format!("the @context `{url}` is neither built in nor registered on this node; register it first"),
                ),
                other => Problem::bad_data(other.to_string()),
            })?;
            Ok(ActiveContext {
                reference: c.clone(),
                context: Arc::new(ctx),
            })
        }
        "application/json" | "" => {
            if body_ctx.is_some() {
                return Err(Problem::bad_data(
                    "with Content-Type application/json the @context goes in a Link header, not the body; or send application/ld+json",
                ));
            }
            context_from_headers(headers, contexts).await
        }
        other => Err(Problem::new(
            ErrorType::UnsupportedMediaType,
            format!(
                "Content-Type `{other}` is not accepted here; send application/json or application/ld+json"
            ),
        )),
    }
}

fn first_context(body: &serde_json::Value) -> Option<&serde_json::Value> {
    match body {
        serde_json::Value::Object(m) => m.get("@context"),
        serde_json::Value::Array(a) => a.first().and_then(|e| e.get("@context")),
        _ => None,
    }
}

/// Query parameters NGSI-LD defines (GS CIM 009 v1.8, 6.2–6.3 and the query parameters of
/// each operation) that a route may not support yet.
const SPEC_PARAMS: &[&str] = &[
    "id",
    "type",
    "idPattern",
    "attrs",
    "pick",
    "omit",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "geometryProperty",
    "lang",
    "csf",
    "limit",
    "offset",
    "count",
    "options",
    "format",
    "local",
    "via",
    "datasetId",
    "deleteAll",
    "details",
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "aggrMethods",
    "aggrPeriodDuration",
    "expandValues",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "collect",
    "jsonKeys",
    "observedAt",
];

/// Checks a request's query parameter names: those `supported` by the route pass; other
/// NGSI-LD parameters answer 422 OperationNotSupported (never silently ignored, since
/// they would change the result); anything else is 400 BadRequestData.
pub fn known_params(query: Option<&str>, supported: &[&str]) -> Result<(), Problem> {
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let key = pair.split('=').next().unwrap_or("");
        if supported.contains(&key) {
            continue;
        }
        return Err(if SPEC_PARAMS.contains(&key) {
            Problem::new(
                ErrorType::OperationNotSupported,
                format!(
                    "query parameter `{key}` is not supported on this route by this node yet; see docs/NGSI-LD.md"
                ),
            )
        } else {
            Problem::bad_data(format!(
                "unknown query parameter `{}`",
                key.chars().take(64).collect::<String>()
            ))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static("<https://example.org/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""),
        );
        assert_eq!(
            link_context_url(&h).unwrap().as_deref(),
            Some("https://example.org/ctx.jsonld")
        );
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert_eq!(accept(&h).unwrap(), Media::Json);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/ld+json"),
        );
        assert_eq!(accept(&h).unwrap(), Media::JsonLd);
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert_eq!(accept(&h).unwrap_err().status, 406);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/ld+json;q=0.1, application/json"),
        );
        assert_eq!(accept(&h).unwrap(), Media::Json);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;q=0.5, application/ld+json"),
        );
        assert_eq!(accept(&h).unwrap(), Media::JsonLd);
    }

    #[test]
    fn unknown_context_is_not_available() {
        let cache = RwLock::new(ContextCache::default());
        let e = resolve_url("https://example.org/unknown.jsonld", &cache)
            .err()
            .unwrap();
        assert_eq!(e.status, 503);
        assert!(e.kind.ends_with("LdContextNotAvailable"));
    }
}
