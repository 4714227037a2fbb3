//! NGSI-LD subscriptions (ETSI GS CIM 009, 5.8 and 5.11): `/ngsi-ld/v1/subscriptions`
//! CRUD, and the [`notifier`] that delivers notifications.
//!
//! **Authorized as reads.** A subscription belongs to the tenant it was created in and
//! to the principal that created it. Only that principal sees, changes or deletes it
//! (others get 404, as for a subscription that does not exist). Each notification is
//! decided when it is sent, exactly as a `GET` by the owner would be at that moment:
//! the owner must still be allowed in the tenant, every entity is checked with the
//! owner's read access, personal attributes are left out unless the owner may read them
//! (and their release is audited), and only the subscription's tenant is ever looked
//! at. A subscription therefore never delivers another tenant's data, nor data its
//! owner has since lost access to. Citizens use their portal (`/api/me`) rather than
//! subscriptions.
//!
//! Subscriptions are kept in the store (`DocumentStore`, kind `subscription`), so they
//! and their delivery counters survive restarts.

pub mod model;
pub mod notifier;

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock, RwLock},
};

use axum::{
    body::Bytes,
    extract::{Path, Query, RawQuery, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use polity_identity::Principal;
use polity_model::{Tenant, Timestamp};
use polity_store::Store;
use polity_trust::{Access, Gate};
use serde::Deserialize;

pub use model::Subscription;

use crate::{
    ApiState,
    entities::{blocking, params, respond},
    problem::{ErrorType, Problem},
    request::{self, Read},
};

/// The document kind subscriptions are stored under.
pub const KIND: &str = "subscription";

/// Settings of subscriptions and their notifications (`[subscriptions]` in a node's
/// config). Defaults are documented per field.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Let notifications go to loopback, private (RFC 1918, ULA), link-local and other
    /// non-public addresses. Default false: a subscription cannot be used to reach the
    /// node's own network (SSRF).
    pub allow_private_endpoints: bool,
    /// Most subscriptions per tenant. Default 1000.
    pub max_per_tenant: usize,
    /// Retries after a failed delivery, with doubling delays from 1 s. Default 3.
    pub retries: u32,
    /// Deadline of one delivery attempt. Default 10 s.
    pub timeout: std::time::Duration,
    /// Most entities in one notification; more are sent in several. Default 100.
    pub max_entities: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            allow_private_endpoints: false,
            max_per_tenant: 1000,
            retries: 3,
            timeout: std::time::Duration::from_secs(10),
            max_entities: 100,
        }
    }
}

/// The node's subscriptions: an in-memory copy of the stored ones, written through.
pub struct Subscriptions {
    store: Arc<dyn Store>,
    all: RwLock<BTreeMap<(Tenant, String), Arc<Subscription>>>,
    gate: OnceLock<Gate>,
    /// Wakes the notifier when subscriptions change (periodic ones start at once).
    pub(crate) changed: tokio::sync::Notify,
    /// Settings.
    pub config: NotifyConfig,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("count", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl Subscriptions {
    /// Loads the stored subscriptions. A stored record that no longer parses is logged
    /// and skipped, never silently dropped from the store.
    pub fn load(
        store: Arc<dyn Store>,
        config: NotifyConfig,
    ) -> Result<Self, polity_store::StoreError> {
        let mut all = BTreeMap::new();
        for (tenant, id, bytes) in store.documents(KIND)? {
            match serde_json::from_slice::<Subscription>(&bytes) {
                Ok(s) => {
                    all.insert((tenant, id), Arc::new(s));
                }
                Err(e) => {
                    tracing::error!(%tenant, %id, error = %e, "a stored subscription cannot be read; it is kept in the store but not served");
                }
            }
        }
        Ok(Subscriptions {
            store,
            all: RwLock::new(all),
            gate: OnceLock::new(),
            changed: tokio::sync::Notify::new(),
            config,
        })
    }

    /// Gives the notifier the gate whose policies decide each notification. Until it
    /// is set, nothing is notified.
    pub fn set_gate(&self, gate: Gate) {
        let _ = self.gate.set(gate);
    }

    pub(crate) fn gate(&self) -> Option<&Gate> {
        self.gate.get()
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<(Tenant, String), Arc<Subscription>>> {
        self.all.read().unwrap_or_else(|e| e.into_inner())
    }

    /// One subscription.
    pub fn get(&self, tenant: &Tenant, id: &str) -> Option<Arc<Subscription>> {
        self.read().get(&(tenant.clone(), id.to_owned())).cloned()
    }

    /// The tenant's subscriptions, in id order.
    pub fn of_tenant(&self, tenant: &Tenant) -> Vec<Arc<Subscription>> {
        self.read()
            .range((tenant.clone(), String::new())..)
            .take_while(|((t, _), _)| t == tenant)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Every subscription.
    pub fn all(&self) -> Vec<Arc<Subscription>> {
        self.read().values().cloned().collect()
    }

    /// How many subscriptions exist.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Stores `s` durably, then serves it.
    pub fn put(&self, s: Subscription) -> Result<(), polity_store::StoreError> {
        let bytes = serde_json::to_vec(&s).expect("a subscription serializes");
        self.store.put_document(KIND, &s.tenant, &s.id, &bytes)?;
        self.all
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((s.tenant.clone(), s.id.clone()), Arc::new(s));
        self.changed.notify_one();
        Ok(())
    }

    /// Deletes a subscription; false if there was none.
    pub fn delete(&self, tenant: &Tenant, id: &str) -> Result<bool, polity_store::StoreError> {
        let gone = self.store.delete_document(KIND, tenant, id)?;
        self.all
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(tenant.clone(), id.to_owned()));
        self.changed.notify_one();
        Ok(gone)
    }

    /// Records a delivery outcome on the subscription (if it still exists), durably.
    pub(crate) fn record(
        &self,
        tenant: &Tenant,
        id: &str,
        outcome: Result<(), String>,
    ) -> Result<(), polity_store::StoreError> {
        let Some(cur) = self.get(tenant, id) else {
            return Ok(());
        };
        let mut s = (*cur).clone();
        let now = Timestamp::now();
        s.delivery.last_notification = Some(now);
        match outcome {
            Ok(()) => {
                s.delivery.times_sent += 1;
                s.delivery.last_success = Some(now);
            }
            Err(reason) => {
                s.delivery.times_failed += 1;
                s.delivery.last_failure = Some(now);
                s.delivery.last_failure_reason = Some(reason);
            }
        }
        let bytes = serde_json::to_vec(&s).expect("a subscription serializes");
        self.store.put_document(KIND, tenant, id, &bytes)?;
        self.all
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((tenant.clone(), id.to_owned()), Arc::new(s));
        Ok(())
    }
}

/// The principal a caller acts as, in the text form subscriptions record. Citizens are
/// refused: their portal serves them, and their id must not be stored in clear.
fn owner_of(access: &Access) -> Result<String, Problem> {
    match &access.caller.principal {
        Some(Principal::Citizen { .. }) => Err(Problem::forbidden(
            "citizens cannot create subscriptions; your data and who read it are at /api/me",
        )),
        Some(p) => Ok(p.to_string()),
        None => Err(Problem::forbidden(
            "subscriptions need an authenticated caller",
        )),
    }
}

/// A subscription the caller owns, or 404 (whether it exists or not).
fn owned(
    st: &ApiState,
    access: &Access,
    tenant: &Tenant,
    id: &str,
) -> Result<Arc<Subscription>, Problem> {
    let owner = owner_of(access).ok();
    st.subscriptions
        .get(tenant, id)
        .filter(|s| access.unrestricted() || owner.as_deref() == Some(s.owner.as_str()))
        .ok_or_else(|| {
            Problem::not_found(format!(
                "subscription `{id}` does not exist in tenant `{tenant}`"
            ))
        })
}

async fn read_body(
    st: &ApiState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(serde_json::Value, request::ActiveContext), Problem> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(ErrorType::PayloadTooLarge, "the subscription is too large")
        } else {
            Problem::invalid(format!("could not read the body: {e}"))
        }
    })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::invalid(format!("the body is not valid JSON: {e}")))?;
    let ctx = request::context_for_body(headers, &v, &st.contexts).await?;
    Ok((v, ctx))
}

fn new_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    // The OS generator does not fail on supported platforms; a fixed id would only
    // collide (AlreadyExists), never leak.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("urn:ngsi-ld:Subscription:{hex}")
}

/// `POST /ngsi-ld/v1/subscriptions`.
pub async fn create(
    State(st): State<ApiState>,
    access: Access,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let owner = owner_of(&access)?;
    let (v, ctx) = read_body(&st, &headers, body).await?;
    let parsed = model::parse(&v, &ctx.context, false)?;
    let id = parsed.id.clone().unwrap_or_else(new_id);
    let sub = parsed.create(id.clone(), tenant.clone(), owner, ctx.reference.clone())?;
    notifier::check_endpoint(&sub.notification.endpoint.uri, &st.subscriptions.config)?;
    let subs = st.subscriptions.clone();
    let _create = st.create_lock.lock().await;
    if subs.get(&tenant, &id).is_some() {
        return Err(Problem::new(
            ErrorType::AlreadyExists,
            format!("subscription `{id}` already exists in tenant `{tenant}`"),
        ));
    }
    if subs.of_tenant(&tenant).len() >= subs.config.max_per_tenant {
        return Err(Problem::new(
            ErrorType::OperationNotSupported,
            format!(
                "tenant `{tenant}` already has {} subscriptions, this node's limit; delete some first",
                subs.config.max_per_tenant
            ),
        ));
    }
    blocking(move || subs.put(sub)).await?;
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/ngsi-ld/v1/subscriptions/{id}")) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

/// Query parameters of the subscription list.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    limit: Option<usize>,
    offset: Option<usize>,
    count: Option<bool>,
    options: Option<String>,
}

fn sys_attrs(options: Option<&str>) -> Result<bool, Problem> {
    let mut sys = false;
    for o in options.iter().flat_map(|s| s.split(',')) {
        match o.trim() {
            "sysAttrs" => sys = true,
            "" => {}
            other => {
                return Err(Problem::bad_data(format!(
                    "unknown option `{other}` for subscriptions; use sysAttrs"
                )));
            }
        }
    }
    Ok(sys)
}

/// `GET /ngsi-ld/v1/subscriptions`: the caller's subscriptions in the tenant.
pub async fn list(
    State(st): State<ApiState>,
    access: Access,
    RawQuery(raw): RawQuery,
    p: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
    Read {
        media, ctx, tenant, ..
    }: Read,
) -> Result<Response, Problem> {
    let p = params(p)?;
    request::known_params(raw.as_deref(), &["limit", "offset", "count", "options"])?;
    let sys = sys_attrs(p.options.as_deref())?;
    let limit = p.limit.unwrap_or(st.limits.default_limit);
    if limit > st.limits.max_limit {
        return Err(Problem::new(
            ErrorType::TooManyResults,
            format!(
                "limit {limit} is above this node's maximum of {}",
                st.limits.max_limit
            ),
        ));
    }
    let owner = owner_of(&access).ok();
    let mine: Vec<_> = st
        .subscriptions
        .of_tenant(&tenant)
        .into_iter()
        .filter(|s| access.unrestricted() || owner.as_deref() == Some(s.owner.as_str()))
        .collect();
    let total = mine.len();
    let offset = p.offset.unwrap_or(0);
    let now = Timestamp::now();
    let page: Vec<_> = mine
        .iter()
        .skip(offset)
        .take(limit)
        .map(|s| s.render(&ctx.context, sys, now))
        .collect();
    let mut r = respond(StatusCode::OK, serde_json::Value::Array(page), media, &ctx);
    if p.count == Some(true)
        && let Ok(v) = HeaderValue::from_str(&total.to_string())
    {
        r.headers_mut().insert("NGSILD-Results-Count", v);
    }
    Ok(r)
}

/// Query parameters of one subscription.
#[derive(Debug, Default, Deserialize)]
pub struct OneParams {
    options: Option<String>,
}

/// `GET /ngsi-ld/v1/subscriptions/{id}`.
pub async fn retrieve(
    State(st): State<ApiState>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<OneParams>, axum::extract::rejection::QueryRejection>,
    Read {
        media, ctx, tenant, ..
    }: Read,
) -> Result<Response, Problem> {
    let p = params(p)?;
    request::known_params(raw.as_deref(), &["options"])?;
    let sys = sys_attrs(p.options.as_deref())?;
    let s = owned(&st, &access, &tenant, &id)?;
    Ok(respond(
        StatusCode::OK,
        s.render(&ctx.context, sys, Timestamp::now()),
        media,
        &ctx,
    ))
}

/// `PATCH /ngsi-ld/v1/subscriptions/{id}`: changes the members present.
pub async fn update(
    State(st): State<ApiState>,
    access: Access,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let (v, ctx) = read_body(&st, &headers, body).await?;
    let parsed = model::parse(&v, &ctx.context, true)?;
    let _lock = st.create_lock.lock().await;
    let cur = owned(&st, &access, &tenant, &id)?;
    let mut s = (*cur).clone();
    parsed.apply_to(&mut s)?;
    notifier::check_endpoint(&s.notification.endpoint.uri, &st.subscriptions.config)?;
    let subs = st.subscriptions.clone();
    blocking(move || subs.put(s)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /ngsi-ld/v1/subscriptions/{id}`.
pub async fn delete(
    State(st): State<ApiState>,
    access: Access,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (tenant, _) = request::tenant(&headers, &st.default_tenant)?;
    let _lock = st.create_lock.lock().await;
    owned(&st, &access, &tenant, &id)?;
    let subs = st.subscriptions.clone();
    blocking(move || subs.delete(&tenant, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
