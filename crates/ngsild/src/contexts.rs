//! The node's `@context` registry: every user context a request may name, how each got
//! here, and how an unknown one is obtained.
//!
//! A context URL is resolved in this order: the built-in core context (any version), a
//! context in the registry, and, when fetching is allowed, a one-time download. A
//! downloaded context (and each context it refers to, up to [`MAX_NESTING`] levels) is
//! parsed, checked and kept, so only the first request that names it waits for the
//! network: later requests never fetch. Contexts can also be preloaded from files at
//! start-up or added through `/ngsi-ld/v1/jsonldContexts`, for air-gapped deployments.
//! An unreachable context answers `LdContextNotAvailable` (503).
//!
//! This module owns the registry, its `/jsonldContexts` routes and the fetching. It
//! does not parse contexts itself (that is [`polity_model::jsonld`]).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use polity_model::{
    Timestamp,
    jsonld::{Context, ContextCache, is_core_context_url},
};
use serde_json::Value;

use crate::problem::{ErrorType, Problem};

/// Where the node serves its contexts.
pub const PATH: &str = "/ngsi-ld/v1/jsonldContexts/";

/// How deep contexts may refer to further contexts.
pub const MAX_NESTING: usize = 8;

/// How the registry obtains contexts it does not hold. Defaults are documented per
/// field.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Download unknown contexts on first use. Default true.
    pub enabled: bool,
    /// Let downloads reach loopback, private and link-local addresses (checked after
    /// name resolution). Default false, so a client cannot make the node probe its own
    /// network.
    pub allow_private: bool,
    /// Deadline of one download. Default 5 s.
    pub timeout: Duration,
    /// Largest context document, bytes. Default 1 MiB.
    pub max_bytes: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            enabled: true,
            allow_private: false,
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
        }
    }
}

/// How a context came to be in the registry (NGSI-LD `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Added by a client with `POST /jsonldContexts`: the node serves it.
    Hosted,
    /// Downloaded on first use (or preloaded): a cached copy of a remote context.
    Cached,
    /// Created by the node for an inline `@context` a request carried.
    ImplicitlyCreated,
}

impl Kind {
    /// The NGSI-LD name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hosted => "Hosted",
            Kind::Cached => "Cached",
            Kind::ImplicitlyCreated => "ImplicitlyCreated",
        }
    }
}

/// What the registry knows about one context besides its terms.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The URL it is known by.
    pub url: String,
    /// The local identifier it is served under (`/jsonldContexts/{id}`).
    pub local_id: String,
    /// How it got here.
    pub kind: Kind,
    /// When it was added.
    pub created_at: Timestamp,
    /// When a request last used it.
    pub last_usage: Option<Timestamp>,
    /// How many requests used it.
    pub hits: u64,
    /// The document as received (`{"@context": …}`).
    pub document: Arc<Value>,
}

/// The registry. Cheap to share behind an `Arc`.
pub struct ContextRegistry {
    cache: RwLock<ContextCache>,
    entries: Mutex<BTreeMap<String, Entry>>,
    policy: FetchPolicy,
    /// One download at a time: concurrent first uses of a URL wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Default for ContextRegistry {
    fn default() -> Self {
        ContextRegistry::new(FetchPolicy::default())
    }
}

impl std::fmt::Debug for ContextRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextRegistry")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn not_available(url: &str, why: impl std::fmt::Display) -> Problem {
    Problem::new(
        ErrorType::LdContextNotAvailable,
        format!(
            "the @context `{}` is not available: {why}",
            url.chars().take(512).collect::<String>()
        ),
    )
}

/// The context URLs a `@context` value names directly (a string, or strings in an
/// array).
pub fn urls_in(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

impl ContextRegistry {
    /// An empty registry with the given download policy.
    pub fn new(policy: FetchPolicy) -> Self {
        ContextRegistry {
            cache: RwLock::new(ContextCache::default()),
            entries: Mutex::new(BTreeMap::new()),
            policy,
            fetching: tokio::sync::Mutex::new(()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The parsed contexts, by URL.
    pub fn cache(&self) -> &RwLock<ContextCache> {
        &self.cache
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `url` resolves without a download. A URL (absolute or relative) that
    /// names one of this node's own `/jsonldContexts/{id}` is made to resolve to it.
    pub fn holds(&self, url: &str) -> bool {
        if is_core_context_url(url)
            || self
                .cache
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(url)
                .is_some()
        {
            return true;
        }
        let Some(target) = self.local(url) else {
            return false;
        };
        let ctx = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target);
        match ctx {
            Some(c) => {
                let _ = self
                    .cache
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(url, c);
                true
            }
            None => false,
        }
    }

    /// The URL of the entry a URL of this node's `/jsonldContexts/{id}` names.
    fn local(&self, url: &str) -> Option<String> {
        let path = match url.find("://") {
            Some(i) => &url[url[i + 3..].find('/').map(|j| i + 3 + j)?..],
            None => url,
        };
        let id = path.strip_prefix(PATH)?;
        self.entries()
            .values()
            .find(|e| e.local_id == id)
            .map(|e| e.url.clone())
    }

    /// Adds a context a client posts (kind Hosted) or one the node creates for an
    /// inline `@context` (kind ImplicitlyCreated), served at `base` + [`PATH`] + its local
    /// id. The contexts it names are obtained first.
    pub async fn add(&self, doc: Value, kind: Kind, base: &str) -> Result<Entry, Problem> {
        let Some(inner) = doc.get("@context").cloned() else {
            return Err(Problem::invalid(
                "a context document is a JSON object with an \"@context\" member",
            ));
        };
        self.prepare(&inner).await?;
        let id = format!(
            "{:016x}",
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let url = format!("{base}{PATH}{id}");
        self.insert(&url, doc, kind)?;
        let mut entries = self.entries();
        let Some(stored) = entries.get_mut(&url) else {
            return Err(Problem::internal("a context just added is gone"));
        };
        stored.local_id = id.clone();
        let e = stored.clone();
        drop(entries);
        let parsed = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&url);
        if let Some(c) = parsed {
            let _ = self
                .cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(&format!("{PATH}{id}"), c);
        }
        Ok(e)
    }

    /// Downloads a cached context again, replacing the copy only if the download works.
    pub async fn reload(&self, url: &str) -> Result<(), Problem> {
        let doc = self.download(url).await?;
        if let Some(inner) = doc.get("@context") {
            for nested in urls_in(inner) {
                if !self.holds(nested) {
                    self.obtain(nested.to_owned(), 1).await?;
                }
            }
        }
        self.insert(url, doc, Kind::Cached).map(|_| ())
    }

    /// Notes one use of each context URL in `value`.
    pub fn touch(&self, value: &Value) {
        let urls = urls_in(value);
        if urls.is_empty() {
            return;
        }
        let now = Timestamp::now();
        let mut entries = self.entries();
        for url in urls {
            if let Some(e) = entries.get_mut(url) {
                e.hits += 1;
                e.last_usage = Some(now);
            }
        }
    }

    /// Adds (or replaces) the context document `doc` under `url`, resolving the contexts
    /// it names from the registry. Fails if the document is not a valid context.
    pub fn insert(&self, url: &str, doc: Value, kind: Kind) -> Result<Entry, Problem> {
        let parsed = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            Context::from_document(&doc, &|u| cache.get(u)).map_err(|e| match e {
                polity_model::jsonld::JsonLdError::ContextNotAvailable(u) => {
                    not_available(&u, "it is referred to by another context and is not held")
                }
                other => Problem::bad_data(other.to_string()),
            })?
        };
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url, Arc::new(parsed))
            .map_err(|e| Problem::new(ErrorType::OperationNotSupported, e.to_string()))?;
        let mut entries = self.entries();
        let local_id = match entries.get(url) {
            Some(old) => old.local_id.clone(),
            None => format!(
                "{:016x}",
                self.next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        };
        let entry = Entry {
            url: url.to_owned(),
            local_id,
            kind,
            created_at: Timestamp::now(),
            last_usage: None,
            hits: 0,
            document: Arc::new(doc),
        };
        entries.insert(url.to_owned(), entry.clone());
        Ok(entry)
    }

    /// Every entry, by URL.
    pub fn list(&self) -> Vec<Entry> {
        self.entries().values().cloned().collect()
    }

    /// The entry known by `url` or by its local id.
    pub fn find(&self, key: &str) -> Option<Entry> {
        let local = self.local(key);
        let entries = self.entries();
        entries
            .get(key)
            .or_else(|| entries.values().find(|e| e.local_id == key))
            .or_else(|| local.and_then(|u| entries.get(&u)))
            .cloned()
    }

    /// Removes the entry known by `url` or local id; returns it.
    pub fn remove(&self, key: &str) -> Option<Entry> {
        let mut entries = self.entries();
        let url = entries.get(key).map(|e| e.url.clone()).or_else(|| {
            entries
                .values()
                .find(|e| e.local_id == key)
                .map(|e| e.url.clone())
        })?;
        let e = entries.remove(&url)?;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.remove(&url);
        cache.remove(&format!("{PATH}{}", e.local_id));
        Some(e)
    }

    /// Makes sure every context URL `value` names (and every context those name) is
    /// held, downloading what is missing when the policy allows. Call it before
    /// resolving a request's `@context`.
    pub async fn prepare(&self, value: &Value) -> Result<(), Problem> {
        for url in urls_in(value) {
            if !self.holds(url) {
                self.obtain(url.to_owned(), 0).await?;
            }
        }
        self.touch(value);
        Ok(())
    }

    fn obtain(
        &self,
        url: String,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Problem>> + Send + '_>> {
        Box::pin(async move {
            if depth > MAX_NESTING {
                return Err(not_available(
                    &url,
                    format!("contexts refer to each other more than {MAX_NESTING} levels deep"),
                ));
            }
            if !self.policy.enabled {
                return Err(not_available(
                    &url,
                    "it is neither built in nor registered, and this node does not download contexts; add it with POST /ngsi-ld/v1/jsonldContexts",
                ));
            }
            let doc = {
                let _one = self.fetching.lock().await;
                if self.holds(&url) {
                    return Ok(());
                }
                self.download(&url).await?
            };
            let inner = doc.get("@context").cloned().unwrap_or(Value::Null);
            for nested in urls_in(&inner) {
                if nested != url && !self.holds(nested) {
                    self.obtain(nested.to_owned(), depth + 1).await?;
                }
            }
            self.insert(&url, doc, Kind::Cached)
                .map(|_| ())
                .map_err(|p| not_available(&url, p.detail))
        })
    }

    async fn download(&self, url: &str) -> Result<Value, Problem> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(not_available(url, "only http(s) URLs can be downloaded"));
        }
        let client = polity_tls::client_config(None)
            .map_err(|e| not_available(url, format!("no TLS client: {e}")))?;
        let allow_private = self.policy.allow_private;
        let rule = move |ip: std::net::IpAddr| -> Result<(), &'static str> {
            if allow_private || !polity_tls::fetch::is_private(ip) {
                Ok(())
            } else {
                Err(
                    "a loopback, private or link-local address; set [contexts] allow_private = true to allow it",
                )
            }
        };
        let req = polity_tls::fetch::Outgoing {
            method: axum::http::Method::GET,
            url,
            headers: vec![(
                axum::http::header::ACCEPT,
                axum::http::HeaderValue::from_static("application/ld+json, application/json"),
            )],
            body: bytes::Bytes::new(),
        };
        let limits = polity_tls::fetch::FetchLimits {
            max_bytes: self.policy.max_bytes,
            timeout: self.policy.timeout,
        };
        tracing::info!(%url, "downloading a JSON-LD context on first use");
        let (status, body) = polity_tls::fetch::send(req, client, limits, &rule)
            .await
            .map_err(|e| not_available(url, e))?;
        if !status.is_success() {
            return Err(not_available(url, format!("its server answered {status}")));
        }
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| not_available(url, format!("it is not JSON ({e})")))?;
        if doc.get("@context").is_none() {
            return Err(not_available(
                url,
                "the document has no \"@context\" member",
            ));
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_registry_that_may_not_download_says_how_to_add_a_context() {
        let r = ContextRegistry::new(FetchPolicy {
            enabled: false,
            ..FetchPolicy::default()
        });
        let e = r
            .prepare(&json!("https://example.org/ctx.jsonld"))
            .await
            .unwrap_err();
        assert_eq!(e.status, 503);
        assert!(e.detail.contains("jsonldContexts"), "{}", e.detail);
        assert!(
            r.prepare(&json!(polity_model::jsonld::CORE_CONTEXT_URL))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let r = ContextRegistry::default();
        let e = r
            .prepare(&json!("http://127.0.0.1:9/ctx.jsonld"))
            .await
            .unwrap_err();
        assert!(e.detail.contains("allow_private"), "{}", e.detail);
    }

    #[test]
    fn inserted_contexts_resolve_and_count_hits() {
        let r = ContextRegistry::default();
        let e = r
            .insert(
                "urn:test:ctx",
                json!({"@context": {"speed": "https://example.org/speed"}}),
                Kind::Hosted,
            )
            .unwrap();
        assert!(r.holds("urn:test:ctx"));
        r.touch(&json!([
            "urn:test:ctx",
            polity_model::jsonld::CORE_CONTEXT_URL
        ]));
        let found = r.find(&e.local_id).unwrap();
        assert_eq!(found.hits, 1);
        assert!(r.remove("urn:test:ctx").is_some());
        assert!(!r.holds("urn:test:ctx"));
        assert!(
            r.insert("urn:x", json!({"no": "context"}), Kind::Hosted)
                .is_err(),
            "a document without @context is refused"
        );
    }
}
