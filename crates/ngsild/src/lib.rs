//! The NGSI-LD HTTP API (ETSI GS CIM 009) of a Polity node, built on axum.
//!
//! This crate owns the `/ngsi-ld/v1/…` routes: entity retrieval and query, entity
//! creation and batch upsert (the HTTP ingest source), type discovery and temporal
//! retrieval, subscriptions and their notifications, plus the HTTP SenML source under
//! `/api/ingest/senml`. Every error leaves as
//! an NGSI-LD ProblemDetails body. It reads through the `polity-store` traits and writes
//! only through the ingest pipeline, so HTTP input gets the same group commit, counters
//! and dead letters as every other source. It does not own storage or the pages.

pub mod access;
pub mod batch;
pub mod consume;
pub mod contexts;
pub mod discovery;
pub mod entities;
pub mod jsonld_contexts;
pub mod problem;
pub mod provision;
pub mod request;
pub mod senml;
pub mod shape;
pub mod subscriptions;
pub mod temporal;

use std::sync::Arc;

use polity_ingest::{IngestHandle, Metrics, SourceCounters, SourceKind};
use polity_model::Tenant;
use polity_store::Store;
use polity_trust::{Action, Routes, Scope};

pub use problem::{ErrorType, Problem};

/// Limits on what a request may ask for. Defaults are documented per field.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes. Default 8 MiB.
    pub max_body: usize,
    /// Default page size of entity queries. Default 20 (the NGSI-LD default).
    pub default_limit: usize,
    /// Largest page a query may ask for; more is `TooManyResults`. Default 1000.
    pub max_limit: usize,
    /// Most entities in one batch operation. Default 1000.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 8 << 20,
            default_limit: 20,
            max_limit: 1000,
            max_batch: 1000,
        }
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Reads go here.
    pub store: Arc<dyn Store>,
    /// Writes go here.
    pub ingest: IngestHandle,
    /// The user contexts the node holds, and how it obtains new ones.
    pub contexts: Arc<contexts::ContextRegistry>,
    /// The tenant of requests without `NGSILD-Tenant`.
    pub default_tenant: Tenant,
    /// Request limits.
    pub limits: Limits,
    /// Counters of the HTTP NGSI-LD source.
    pub http_source: Arc<SourceCounters>,
    /// Counters of the HTTP SenML source.
    pub senml_source: Arc<SourceCounters>,
    /// Serializes entity creation (existence check and commit).
    pub create_lock: Arc<tokio::sync::Mutex<()>>,
    /// Opens personal values sealed at ingest with their owner's key. Default: none.
    pub vault: Option<Arc<polity_privacy::CitizenVault>>,
    /// Data subjects' consents, for applications' access to personal data. Default: none.
    pub consents: Option<Arc<polity_consent::ConsentStore>>,
    /// The node's subscriptions (loaded from the store).
    pub subscriptions: Arc<subscriptions::Subscriptions>,
    /// Bounds of temporal reads.
    pub temporal: temporal::TemporalLimits,
}

impl ApiState {
    /// State for a node, registering the HTTP sources' counters in `metrics` and
    /// loading the stored subscriptions.
    pub fn new(
        store: Arc<dyn Store>,
        ingest: IngestHandle,
        metrics: &Metrics,
    ) -> Result<Self, polity_store::StoreError> {
        Self::with_notify(
            store,
            ingest,
            metrics,
            subscriptions::NotifyConfig::default(),
        )
    }

    /// As [`ApiState::new`], with the subscriptions' settings.
    pub fn with_notify(
        store: Arc<dyn Store>,
        ingest: IngestHandle,
        metrics: &Metrics,
        notify: subscriptions::NotifyConfig,
    ) -> Result<Self, polity_store::StoreError> {
        let subscriptions = Arc::new(subscriptions::Subscriptions::load(store.clone(), notify)?);
        Ok(ApiState {
            subscriptions,
            store,
            ingest,
            contexts: Arc::new(contexts::ContextRegistry::default()),
            default_tenant: Tenant::new("default").expect("`default` is a valid tenant name"),
            limits: Limits::default(),
            http_source: metrics.source(
                "http-ngsi-ld",
                SourceKind::HttpNgsiLd,
                None,
                "POST /ngsi-ld/v1/entities, /entityOperations/upsert",
            ),
            senml_source: metrics.source(
                "http-senml",
                SourceKind::HttpSenml,
                None,
                "POST /api/ingest/senml",
            ),
            create_lock: Arc::default(),
            vault: None,
            consents: None,
            temporal: temporal::TemporalLimits::default(),
        })
    }
}

/// The NGSI-LD routes and the HTTP SenML source with the action guarding each, ready
/// to merge into a node's routes and put behind its gate.
pub fn routes(state: ApiState) -> Routes {
    let body_limit = axum::extract::DefaultBodyLimit::max(state.limits.max_body);
    use Action::*;
    Routes::new()
        .get(
            "/ngsi-ld/v1/entities",
            EntityRead,
            Scope::Tenant,
            consume::query,
        )
        .post(
            "/ngsi-ld/v1/entities",
            EntityWrite,
            Scope::Tenant,
            entities::create,
        )
        .get(
            "/ngsi-ld/v1/entities/{id}",
            EntityRead,
            Scope::Tenant,
            consume::retrieve,
        )
        .post(
            "/ngsi-ld/v1/entityOperations/query",
            EntityRead,
            Scope::Tenant,
            consume::query_post,
        )
        .delete(
            "/ngsi-ld/v1/entities",
            EntityWrite,
            Scope::Tenant,
            provision::purge,
        )
        .delete(
            "/ngsi-ld/v1/entities/{id}",
            EntityWrite,
            Scope::Tenant,
            provision::delete_entity,
        )
        .put(
            "/ngsi-ld/v1/entities/{id}",
            EntityWrite,
            Scope::Tenant,
            provision::replace_entity,
        )
        .patch(
            "/ngsi-ld/v1/entities/{id}",
            EntityWrite,
            Scope::Tenant,
            provision::merge_entity,
        )
        .post(
            "/ngsi-ld/v1/entities/{id}/attrs",
            EntityWrite,
            Scope::Tenant,
            provision::append_attrs,
        )
        .patch(
            "/ngsi-ld/v1/entities/{id}/attrs",
            EntityWrite,
            Scope::Tenant,
            provision::update_attrs,
        )
        .patch(
            "/ngsi-ld/v1/entities/{id}/attrs/{attr}",
            EntityWrite,
            Scope::Tenant,
            provision::partial_update_attr,
        )
        .put(
            "/ngsi-ld/v1/entities/{id}/attrs/{attr}",
            EntityWrite,
            Scope::Tenant,
            provision::replace_attr,
        )
        .delete(
            "/ngsi-ld/v1/entities/{id}/attrs/{attr}",
            EntityWrite,
            Scope::Tenant,
            provision::delete_attr,
        )
        .post(
            "/ngsi-ld/v1/entityOperations/create",
            EntityWrite,
            Scope::Tenant,
            batch::create,
        )
        .post(
            "/ngsi-ld/v1/entityOperations/upsert",
            EntityWrite,
            Scope::Tenant,
            batch::upsert,
        )
        .post(
            "/ngsi-ld/v1/entityOperations/update",
            EntityWrite,
            Scope::Tenant,
            batch::update,
        )
        .post(
            "/ngsi-ld/v1/entityOperations/merge",
            EntityWrite,
            Scope::Tenant,
            batch::merge,
        )
        .post(
            "/ngsi-ld/v1/entityOperations/delete",
            EntityWrite,
            Scope::Tenant,
            batch::delete,
        )
        .get(
            "/ngsi-ld/v1/types",
            TypesRead,
            Scope::Tenant,
            discovery::types,
        )
        .get(
            "/ngsi-ld/v1/types/{type}",
            TypesRead,
            Scope::Tenant,
            discovery::type_info,
        )
        .get(
            "/ngsi-ld/v1/attributes",
            TypesRead,
            Scope::Tenant,
            discovery::attributes,
        )
        .get(
            "/ngsi-ld/v1/attributes/{attr}",
            TypesRead,
            Scope::Tenant,
            discovery::attribute_info,
        )
        .get(
            "/ngsi-ld/v1/temporal/entities/{id}",
            TemporalRead,
            Scope::Tenant,
            temporal::retrieve,
        )
        .get(
            "/ngsi-ld/v1/temporal/entities",
            TemporalRead,
            Scope::Tenant,
            temporal::query,
        )
        .post(
            "/ngsi-ld/v1/temporal/entityOperations/query",
            TemporalRead,
            Scope::Tenant,
            temporal::query_post,
        )
        .post(
            "/ngsi-ld/v1/temporal/entities",
            EntityWrite,
            Scope::Tenant,
            temporal::create,
        )
        .delete(
            "/ngsi-ld/v1/temporal/entities/{id}",
            EntityWrite,
            Scope::Tenant,
            temporal::delete_entity,
        )
        .post(
            "/ngsi-ld/v1/temporal/entities/{id}/attrs",
            EntityWrite,
            Scope::Tenant,
            temporal::append,
        )
        .delete(
            "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}",
            EntityWrite,
            Scope::Tenant,
            temporal::delete_attr,
        )
        .patch(
            "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instance}",
            EntityWrite,
            Scope::Tenant,
            temporal::modify_instance,
        )
        .delete(
            "/ngsi-ld/v1/temporal/entities/{id}/attrs/{attr}/{instance}",
            EntityWrite,
            Scope::Tenant,
            temporal::delete_instance,
        )
        .get(
            "/ngsi-ld/v1/subscriptions",
            EntityRead,
            Scope::Tenant,
            subscriptions::list,
        )
        .post(
            "/ngsi-ld/v1/subscriptions",
            EntityRead,
            Scope::Tenant,
            subscriptions::create,
        )
        .get(
            "/ngsi-ld/v1/subscriptions/{id}",
            EntityRead,
            Scope::Tenant,
            subscriptions::retrieve,
        )
        .patch(
            "/ngsi-ld/v1/subscriptions/{id}",
            EntityRead,
            Scope::Tenant,
            subscriptions::update,
        )
        .delete(
            "/ngsi-ld/v1/subscriptions/{id}",
            EntityRead,
            Scope::Tenant,
            subscriptions::delete,
        )
        .get(
            "/ngsi-ld/v1/jsonldContexts",
            ContextRead,
            Scope::Node,
            jsonld_contexts::list,
        )
        .post(
            "/ngsi-ld/v1/jsonldContexts",
            ContextManage,
            Scope::Node,
            jsonld_contexts::add,
        )
        .get(
            "/ngsi-ld/v1/jsonldContexts/{id}",
            ContextRead,
            Scope::Node,
            jsonld_contexts::serve,
        )
        .delete(
            "/ngsi-ld/v1/jsonldContexts/{id}",
            ContextManage,
            Scope::Node,
            jsonld_contexts::delete,
        )
        .post(
            "/api/ingest/senml",
            EntityWrite,
            Scope::Tenant,
            senml::ingest,
        )
        .map_router(|r| r.layer(body_limit))
        .with_state(state)
}

/// Answers requests for paths no route serves, as ProblemDetails: an empty path segment
/// (`/entities//attrs`, an id left out) is the client's bad data, anything else is not
/// found.
pub async fn not_found(uri: axum::http::Uri) -> Problem {
    not_found_problem(uri.path())
}

fn not_found_problem(path: &str) -> Problem {
    if path.starts_with("/ngsi-ld/") && path.contains("//") {
        Problem::bad_data(format!(
            "`{path}` has an empty path segment; an id or name is missing"
        ))
    } else if path.starts_with("/ngsi-ld/") {
        Problem::not_found(format!(
            "`{path}` is not an NGSI-LD resource this node serves; see docs/NGSI-LD.md"
        ))
    } else {
        Problem::not_found(format!("nothing is served at `{path}`"))
    }
}

/// Answers a method a route does not support, as ProblemDetails.
pub async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if uri.path() == "/ngsi-ld/v1/entities"
        && matches!(method, axum::http::Method::PUT | axum::http::Method::PATCH)
    {
        return Problem::bad_data(
            "the entity id is missing: replace or merge /ngsi-ld/v1/entities/{id}",
        )
        .into_response();
    }
    let mut r = Problem::new(
        ErrorType::OperationNotSupported,
        format!(
            "{method} is not supported on `{}` by this node yet; see docs/NGSI-LD.md",
            uri.path()
        ),
    )
    .into_response();
    *r.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    r
}
