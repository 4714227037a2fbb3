//! JSON-LD term handling for NGSI-LD: active contexts, term expansion and compaction.
//!
//! This module owns the built-in ETSI NGSI-LD core `@context` (v1.8, embedded at build
//! time and parsed once), the [`Context`] built from a request's `@context`, and the
//! [`ContextCache`] of user contexts the API registers. It never fetches a context:
//! string URLs are resolved through a caller-supplied resolver (normally a
//! [`ContextCache`] lookup), and an unknown URL is [`JsonLdError::ContextNotAvailable`].
//!
//! Only what NGSI-LD needs is implemented: term definitions (simple and expanded, with
//! `@type` coercion and `@container`), prefixes and compact IRIs, `@vocab`, and the rule
//! that the core context is applied last and wins (it is `@protected`). Scoped contexts,
//! `@reverse`, `@base` and `@import` are ignored.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use serde_json::Value as Json;

/// The URL of the core context Polity builds in.
pub const CORE_CONTEXT_URL: &str =
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// NGSI-LD's default vocabulary: terms no context defines expand under it.
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

/// The core context URLs treated as the built-in core (v1.3 to v1.8 and the unversioned
/// alias). Their differences are additions, so the newest serves all of them.
pub const CORE_CONTEXT_ALIASES: &[&str] = &[
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.4.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.5.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld",
    CORE_CONTEXT_URL,
];

const CORE_TEXT: &str = include_str!("../contexts/ngsi-ld-core-context-v1.8.jsonld");

/// Most term definitions a single context may hold; guards against hostile contexts.
pub const MAX_TERMS: usize = 10_000;

/// Why a `@context` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonLdError {
    /// A context URL that is neither the core context nor registered.
    #[error(
        "@context `{0}` is not available: Polity never fetches contexts; register it first (POST /ngsi-ld/v1/jsonldContexts) or send the context inline"
    )]
    ContextNotAvailable(String),
    /// The context document is not a valid JSON-LD context.
    #[error("invalid @context: {0}")]
    InvalidContext(String),
    /// The context cache holds as many contexts as it may.
    #[error(
        "the context cache is full ({0} contexts); delete unused contexts before registering more"
    )]
    CacheFull(usize),
}

impl JsonLdError {
    /// The NGSI-LD ProblemDetails `type` for this error.
    pub fn problem_type(&self) -> &'static str {
        match self {
            JsonLdError::ContextNotAvailable(_) => {
                "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
            }
            JsonLdError::InvalidContext(_) => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            JsonLdError::CacheFull(_) => {
                "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported"
            }
        }
    }
}

/// One term definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermDef {
    /// The IRI (or keyword, for aliases such as `id` → `@id`) the term expands to.
    pub iri: Arc<str>,
    /// `@type` coercion, expanded (`@id`, `@vocab`, `@json` or a datatype IRI).
    pub type_coercion: Option<Arc<str>>,
    /// `@container` (`@list`, `@set`, `@language`, `@index`, ...).
    pub container: Option<Arc<str>>,
}

/// An active context: what each term means.
#[derive(Debug, Clone, Default)]
pub struct Context {
    terms: HashMap<Box<str>, TermDef>,
    /// IRI → the term that compacts it (shortest, then least).
    reverse: HashMap<Box<str>, Box<str>>,
    /// Terms usable as prefixes: their IRI ends in a gen-delim. Longest IRI first.
    prefixes: Vec<(Box<str>, Arc<str>)>,
    vocab: Option<Arc<str>>,
    source: Option<Arc<Json>>,
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.terms == other.terms && self.vocab == other.vocab
    }
}

fn invalid(msg: impl Into<String>) -> JsonLdError {
    JsonLdError::InvalidContext(msg.into())
}

/// Whether `s` looks like an absolute IRI (`scheme:`) rather than a compact IRI or term.
fn has_scheme(s: &str) -> bool {
    crate::id::is_absolute_uri(s)
}

fn is_gen_delim(c: char) -> bool {
    matches!(c, ':' | '/' | '?' | '#' | '[' | ']' | '@')
}

/// Whether `url` names the core context.
pub fn is_core_context_url(url: &str) -> bool {
    CORE_CONTEXT_ALIASES.contains(&url)
}

impl Context {
    /// The built-in NGSI-LD core context, parsed once.
    pub fn core() -> &'static Context {
        static CORE: OnceLock<Context> = OnceLock::new();
        CORE.get_or_init(|| {
            let parsed = serde_json::from_str::<Json>(CORE_TEXT)
                .map_err(|e| invalid(e.to_string()))
                .and_then(|doc| {
                    let inner = doc.get("@context").cloned().unwrap_or(Json::Null);
                    let mut c = Context::default();
                    c.apply(&inner, &|_| None, 0)?;
                    c.source = Some(Arc::new(doc));
                    c.finish();
                    Ok(c)
                });
            // The embedded file is tested; the fallback only keeps this total.
            parsed.unwrap_or_else(|_| {
                let mut c = Context {
                    vocab: Some(Arc::from(DEFAULT_VOCAB)),
                    ..Context::default()
                };
                c.finish();
                c
            })
        })
    }

    /// Builds the active context for a request's `@context` value (an object, a URL
    /// string, or an array of them). URLs other than the core context are looked up with
    /// `resolve`. The core context is applied last, so its terms take precedence.
    pub fn from_json(
        value: &Json,
        resolve: &dyn Fn(&str) -> Option<Arc<Context>>,
    ) -> Result<Context, JsonLdError> {
        let mut c = Context::default();
        c.apply(value, resolve, 0)?;
        c.merge(Context::core());
        c.source = Some(Arc::new(value.clone()));
        c.finish();
        Ok(c)
    }

    /// Builds a context from a whole context document (`{"@context": ...}`), as the
    /// context-registration API receives it.
    pub fn from_document(
        doc: &Json,
        resolve: &dyn Fn(&str) -> Option<Arc<Context>>,
    ) -> Result<Context, JsonLdError> {
        let inner = doc.get("@context").ok_or_else(|| {
            invalid("a context document must be an object with an \"@context\" member")
        })?;
        let mut c = Context::from_json(inner, resolve)?;
        c.source = Some(Arc::new(doc.clone()));
        Ok(c)
    }

    /// The JSON this context was built from, if any.
    pub fn source(&self) -> Option<&Json> {
        self.source.as_deref()
    }

    /// The definition of `term`, if the context has one.
    pub fn term(&self, term: &str) -> Option<&TermDef> {
        self.terms.get(term)
    }

    /// How many terms are defined.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether no term is defined.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The `@vocab` in force.
    pub fn vocab(&self) -> &str {
        self.vocab.as_deref().unwrap_or(DEFAULT_VOCAB)
    }

    fn apply(
        &mut self,
        value: &Json,
        resolve: &dyn Fn(&str) -> Option<Arc<Context>>,
        depth: usize,
    ) -> Result<(), JsonLdError> {
        match value {
            Json::Null => {
                // A null context resets to the initial state; the core comes back at the end.
                *self = Context::default();
                Ok(())
            }
            Json::String(url) => {
                if is_core_context_url(url) {
                    self.merge(Context::core());
                    Ok(())
                } else if let Some(c) = resolve(url) {
                    self.merge(&c);
                    Ok(())
                } else {
                    Err(JsonLdError::ContextNotAvailable(
                        url.chars().take(512).collect(),
                    ))
                }
            }
            Json::Array(items) if depth == 0 => {
                for item in items {
                    self.apply(item, resolve, depth + 1)?;
                }
                Ok(())
            }
            Json::Array(_) => Err(invalid("a @context array may not contain another array")),
            Json::Object(map) => self.apply_object(map),
            other => Err(invalid(format!(
                "a @context must be an object, a URL or an array of them, not {other}"
            ))),
        }
    }

    fn apply_object(&mut self, map: &serde_json::Map<String, Json>) -> Result<(), JsonLdError> {
        if map.len() > MAX_TERMS || self.terms.len() + map.len() > MAX_TERMS {
            return Err(invalid(format!("more than {MAX_TERMS} term definitions")));
        }
        if let Some(v) = map.get("@vocab") {
            match v {
                Json::String(s) => {
                    let iri = self
                        .expand_with(s, map, 0)
                        .ok_or_else(|| invalid(format!("@vocab `{s}` is not an IRI")))?;
                    self.vocab = Some(Arc::from(iri));
                }
                Json::Null => self.vocab = None,
                _ => return Err(invalid("@vocab must be a string")),
            }
        }
        let mut defs = Vec::with_capacity(map.len());
        for (term, def) in map {
            if term.starts_with('@') {
                continue; // @version, @protected, @vocab, @base, @language, ...
            }
            if term.is_empty() {
                return Err(invalid("a term may not be empty"));
            }
            let (id, ty, container) = match def {
                Json::Null => {
                    defs.push((term.as_str(), None));
                    continue;
                }
                Json::String(s) => (Some(s.as_str()), None, None),
                Json::Object(o) => {
                    let text = |k: &str| -> Result<Option<&str>, JsonLdError> {
                        match o.get(k) {
                            None | Some(Json::Null) => Ok(None),
                            Some(Json::String(s)) => Ok(Some(s.as_str())),
                            Some(Json::Array(a)) if k == "@container" => {
                                Ok(a.iter().find_map(Json::as_str).filter(|s| *s != "@set"))
                            }
                            Some(_) => {
                                Err(invalid(format!("`{k}` of term `{term}` must be a string")))
                            }
                        }
                    };
                    if o.contains_key("@reverse") {
                        continue;
                    }
                    (text("@id")?, text("@type")?, text("@container")?)
                }
                _ => {
                    return Err(invalid(format!(
                        "the definition of term `{term}` must be a string or an object"
                    )));
                }
            };
            let iri = match id {
                Some(id) => self.expand_with(id, map, 0),
                None => self.expand_with(term, map, 0),
            }
            .ok_or_else(|| invalid(format!("term `{term}` does not expand to an IRI")))?;
            let type_coercion = match ty {
                Some(t) if t.starts_with('@') => Some(Arc::from(t)),
                Some(t) => Some(Arc::from(
                    self.expand_with(t, map, 0).unwrap_or_else(|| t.to_owned()),
                )),
                None => None,
            };
            defs.push((
                term.as_str(),
                Some(TermDef {
                    iri: Arc::from(iri),
                    type_coercion,
                    container: container.map(Arc::from),
                }),
            ));
        }
        for (term, def) in defs {
            match def {
                Some(d) => {
                    self.terms.insert(Box::from(term), d);
                }
                None => {
                    self.terms.remove(term);
                }
            }
        }
        Ok(())
    }

    /// Expands an IRI-valued string inside a context object, where prefixes may be
    /// defined by sibling terms not yet processed.
    fn expand_with(
        &self,
        s: &str,
        local: &serde_json::Map<String, Json>,
        depth: usize,
    ) -> Option<String> {
        if depth > 8 {
            return None;
        }
        if s.starts_with('@') {
            return Some(s.to_owned());
        }
        let lookup = |t: &str| -> Option<String> {
            match local.get(t) {
                Some(Json::String(v)) if v != t => self.expand_with(v, local, depth + 1),
                Some(Json::Object(o)) => match o.get("@id") {
                    Some(Json::String(v)) if v != t => self.expand_with(v, local, depth + 1),
                    _ => None,
                },
                _ => self.terms.get(t).map(|d| d.iri.to_string()),
            }
        };
        if let Some((prefix, suffix)) = s.split_once(':') {
            if suffix.starts_with("//") {
                return Some(s.to_owned());
            }
            if let Some(p) = lookup(prefix) {
                return Some(p + suffix);
            }
            if has_scheme(s) {
                return Some(s.to_owned());
            }
        }
        // A term mapped to itself, or no mapping: relative to the vocabulary.
        match local.get(s) {
            Some(Json::String(v)) if v != s => lookup(s),
            Some(Json::Object(o))
                if o.get("@id").and_then(Json::as_str).is_some_and(|v| v != s) =>
            {
                lookup(s)
            }
            _ => match self.terms.get(s) {
                Some(d) => Some(d.iri.to_string()),
                None => {
                    let vocab = match local.get("@vocab") {
                        Some(Json::String(v)) if !v.is_empty() => v.as_str(),
                        _ => self.vocab(),
                    };
                    Some(format!("{vocab}{s}"))
                }
            },
        }
    }

    fn merge(&mut self, other: &Context) {
        for (k, v) in &other.terms {
            self.terms.insert(k.clone(), v.clone());
        }
        if other.vocab.is_some() {
            self.vocab = other.vocab.clone();
        }
    }

    /// Builds the inverse maps used by compaction.
    fn finish(&mut self) {
        self.reverse.clear();
        self.prefixes.clear();
        for (term, def) in &self.terms {
            let better = match self.reverse.get(&*def.iri) {
                Some(cur) => (term.len(), &**term) < (cur.len(), &**cur),
                None => true,
            };
            if better {
                self.reverse.insert(Box::from(&*def.iri), term.clone());
            }
            if def.iri.ends_with(is_gen_delim) && !term.contains(':') {
                self.prefixes.push((term.clone(), def.iri.clone()));
            }
        }
        self.prefixes.sort_by(|a, b| {
            b.1.len()
                .cmp(&a.1.len())
                .then(a.0.len().cmp(&b.0.len()))
                .then(a.0.cmp(&b.0))
        });
    }

    /// Expands a term or compact IRI to an absolute IRI. Absolute IRIs and keywords stay
    /// as they are; unknown terms fall under NGSI-LD's default vocabulary.
    pub fn expand_term<'a>(&'a self, term: &'a str) -> Cow<'a, str> {
        if let Some(d) = self.terms.get(term) {
            return Cow::Borrowed(&d.iri);
        }
        if term.starts_with('@') {
            return Cow::Borrowed(term);
        }
        if let Some((prefix, suffix)) = term.split_once(':') {
            if !suffix.starts_with("//")
                && let Some(d) = self.terms.get(prefix)
            {
                let mut s = String::with_capacity(d.iri.len() + suffix.len());
                s.push_str(&d.iri);
                s.push_str(suffix);
                return Cow::Owned(s);
            }
            if has_scheme(term) {
                return Cow::Borrowed(term);
            }
        }
        let vocab = self.vocab();
        let mut s = String::with_capacity(vocab.len() + term.len());
        s.push_str(vocab);
        s.push_str(term);
        Cow::Owned(s)
    }

    /// Compacts an IRI: to a term that maps to it, else to the bare term for an IRI in
    /// the default vocabulary, else to a compact IRI `prefix:suffix`, else the IRI itself.
    /// `compact_iri(expand_term(t)) == t` for every term `t` the context can express.
    pub fn compact_iri<'a>(&'a self, iri: &'a str) -> Cow<'a, str> {
        if let Some(t) = self.reverse.get(iri) {
            return Cow::Borrowed(t);
        }
        if let Some(rest) = iri.strip_prefix(self.vocab()) {
            // A default-vocabulary IRI compacts to the bare name, unless a term of that
            // name means something else: then to a compact IRI (`ngsi-ld:default-context/x`).
            let bare = !rest.is_empty()
                && !self.terms.contains_key(rest)
                && !rest.contains(':')
                && !rest.starts_with('@');
            if bare {
                return Cow::Borrowed(rest);
            }
        }
        for (term, prefix) in &self.prefixes {
            if let Some(suffix) = iri.strip_prefix(&**prefix)
                && !suffix.is_empty()
                && !suffix.starts_with("//")
            {
                let compact = format!("{term}:{suffix}");
                if !self.terms.contains_key(compact.as_str()) {
                    return Cow::Owned(compact);
                }
            }
        }
        Cow::Borrowed(iri)
    }
}

/// User `@context`s registered with the API, by URL. Bounded: a full cache refuses new
/// URLs rather than evicting contexts that entities still depend on.
#[derive(Debug, Clone)]
pub struct ContextCache {
    map: HashMap<String, Arc<Context>>,
    max: usize,
}

impl Default for ContextCache {
    fn default() -> Self {
        ContextCache::new(1024)
    }
}

impl ContextCache {
    /// An empty cache holding at most `max` contexts.
    pub fn new(max: usize) -> Self {
        ContextCache {
            map: HashMap::new(),
            max,
        }
    }

    /// Registers (or replaces) the context at `url`.
    pub fn insert(&mut self, url: &str, ctx: Arc<Context>) -> Result<(), JsonLdError> {
        if !self.map.contains_key(url) && self.map.len() >= self.max {
            return Err(JsonLdError::CacheFull(self.max));
        }
        self.map.insert(url.to_owned(), ctx);
        Ok(())
    }

    /// The context at `url`.
    pub fn get(&self, url: &str) -> Option<Arc<Context>> {
        self.map.get(url).cloned()
    }

    /// Removes and returns the context at `url`.
    pub fn remove(&mut self, url: &str) -> Option<Arc<Context>> {
        self.map.remove(url)
    }

    /// The registered URLs, sorted.
    pub fn list(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.map.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// How many contexts are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Builds the active context for a `@context` value, resolving URLs from this cache.
    pub fn context_for(&self, value: &Json) -> Result<Context, JsonLdError> {
        Context::from_json(value, &|url| self.get(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NGSI: &str = "https://uri.etsi.org/ngsi-ld/";

    fn none(_: &str) -> Option<Arc<Context>> {
        None
    }

    #[test]
    fn core_terms_expand() {
        let c = Context::core();
        assert!(c.len() > 150, "{}", c.len());
        assert_eq!(c.expand_term("observedAt"), format!("{NGSI}observedAt"));
        assert_eq!(c.expand_term("location"), format!("{NGSI}location"));
        assert_eq!(c.expand_term("Property"), format!("{NGSI}Property"));
        assert_eq!(c.expand_term("object"), format!("{NGSI}hasObject"));
        assert_eq!(c.expand_term("value"), format!("{NGSI}hasValue"));
        assert_eq!(
            c.expand_term("Point"),
            "https://purl.org/geojson/vocab#Point"
        );
        assert_eq!(
            c.expand_term("description"),
            "http://purl.org/dc/terms/description"
        );
        assert_eq!(c.expand_term("id"), "@id");
        assert_eq!(
            c.expand_term("attributeCount"),
            format!("{DEFAULT_VOCAB}attributeCount")
        );
        assert_eq!(
            c.expand_term("ParkingSpot"),
            format!("{DEFAULT_VOCAB}ParkingSpot")
        );
        assert_eq!(c.expand_term("ngsi-ld:foo"), format!("{NGSI}foo"));
        assert_eq!(
            c.expand_term("https://example.org/x"),
            "https://example.org/x"
        );
        assert_eq!(c.expand_term("urn:x:y"), "urn:x:y");
        let obj = c.term("object").unwrap();
        assert_eq!(obj.type_coercion.as_deref(), Some("@id"));
        assert_eq!(
            c.term("observedAt").unwrap().type_coercion.as_deref(),
            Some(&*format!("{NGSI}DateTime"))
        );
        assert_eq!(
            c.term("coordinates").unwrap().container.as_deref(),
            Some("@list")
        );
        assert_eq!(c.vocab(), DEFAULT_VOCAB);
    }

    #[test]
    fn core_terms_compact() {
        let c = Context::core();
        assert_eq!(c.compact_iri(&format!("{NGSI}observedAt")), "observedAt");
        assert_eq!(c.compact_iri(&format!("{NGSI}hasObject")), "object");
        assert_eq!(
            c.compact_iri(&format!("{DEFAULT_VOCAB}ParkingSpot")),
            "ParkingSpot"
        );
        assert_eq!(
            c.compact_iri(&format!("{NGSI}somethingNew")),
            "ngsi-ld:somethingNew"
        );
        assert_eq!(
            c.compact_iri("https://example.org/x"),
            "https://example.org/x"
        );
        // A default-vocabulary IRI whose bare name is a different term becomes a
        // compact IRI, as JSON-LD compaction does (and the ETSI suite expects).
        assert_eq!(
            c.compact_iri(&format!("{DEFAULT_VOCAB}location")),
            "ngsi-ld:default-context/location"
        );
    }

    fn sdm() -> Json {
        json!({
            "ParkingSpot": "https://smartdatamodels.org/dataModel.Parking/ParkingSpot",
            "sdm": "https://smartdatamodels.org/",
            "name": "sdm:name",
            "refParkingSite": {"@id": "https://smartdatamodels.org/dataModel.Parking/refParkingSite", "@type": "@id"},
            "status": "https://smartdatamodels.org/dataModel.Parking/status",
            "location": "https://example.org/not-the-core-location"
        })
    }

    #[test]
    fn user_terms_with_core_precedence() {
        let c = Context::from_json(&sdm(), &none).unwrap();
        assert_eq!(
            c.expand_term("ParkingSpot"),
            "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
        );
        assert_eq!(c.expand_term("name"), "https://smartdatamodels.org/name");
        assert_eq!(
            c.expand_term("sdm:other"),
            "https://smartdatamodels.org/other"
        );
        assert_eq!(
            c.term("refParkingSite").unwrap().type_coercion.as_deref(),
            Some("@id")
        );
        // The core context is applied last and is protected.
        assert_eq!(c.expand_term("location"), format!("{NGSI}location"));
        assert_eq!(c.expand_term("status"), format!("{NGSI}status"));
        assert_eq!(
            c.compact_iri("https://smartdatamodels.org/dataModel.Parking/ParkingSpot"),
            "ParkingSpot"
        );
        assert_eq!(
            c.compact_iri("https://smartdatamodels.org/other"),
            "sdm:other"
        );
        assert_eq!(
            c.expand_term("unknownThing"),
            format!("{DEFAULT_VOCAB}unknownThing")
        );
    }

    #[test]
    fn urls_resolve_through_the_cache_only() {
        let mut cache = ContextCache::new(2);
        let e = cache
            .context_for(&json!(["https://example.org/ctx.jsonld"]))
            .unwrap_err();
        assert_eq!(
            e,
            JsonLdError::ContextNotAvailable("https://example.org/ctx.jsonld".into())
        );
        assert!(e.problem_type().ends_with("LdContextNotAvailable"));
        let user = Arc::new(Context::from_json(&sdm(), &none).unwrap());
        cache
            .insert("https://example.org/ctx.jsonld", user)
            .unwrap();
        let c = cache
            .context_for(&json!([
                "https://example.org/ctx.jsonld",
                "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
            ]))
            .unwrap();
        assert_eq!(
            c.expand_term("ParkingSpot"),
            "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
        );
        assert_eq!(cache.list(), ["https://example.org/ctx.jsonld"]);
        cache.insert("b", Arc::new(Context::default())).unwrap();
        assert_eq!(
            cache.insert("c", Arc::new(Context::default())),
            Err(JsonLdError::CacheFull(2))
        );
        assert!(
            cache.insert("b", Arc::new(Context::default())).is_ok(),
            "replacing is fine when full"
        );
        assert!(cache.remove("b").is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn core_alone_and_invalid_contexts() {
        let c = Context::from_json(&json!(CORE_CONTEXT_URL), &none).unwrap();
        assert_eq!(&c, Context::core());
        assert!(matches!(
            Context::from_json(&json!(42), &none),
            Err(JsonLdError::InvalidContext(_))
        ));
        assert!(matches!(
            Context::from_json(&json!([[{}]]), &none),
            Err(JsonLdError::InvalidContext(_))
        ));
        assert!(matches!(
            Context::from_json(&json!({"a": 1}), &none),
            Err(JsonLdError::InvalidContext(_))
        ));
        let doc = json!({"@context": {"Foo": "https://example.org/Foo"}});
        let c = Context::from_document(&doc, &none).unwrap();
        assert_eq!(c.expand_term("Foo"), "https://example.org/Foo");
        assert_eq!(c.source(), Some(&doc));
    }

    proptest! {
        #[test]
        fn terms_round_trip(t in "[a-zA-Z][a-zA-Z0-9_]{0,20}") {
            let core = Context::core();
            let user = Context::from_json(&sdm(), &none).unwrap();
            for c in [core, &user] {
                let e = c.expand_term(&t);
                prop_assert_eq!(c.compact_iri(&e), t.as_str());
            }
        }

        #[test]
        fn arbitrary_context_json_never_panics(s in "\\PC{0,64}") {
            let _ = Context::from_json(&json!({ "t": s.clone(), "@vocab": s.clone(), s.clone(): {"@id": s} }), &none);
        }
    }
}
