//! The gate: the middleware every request of a node passes through.
//!
//! For each request the gate
//!
//! 1. authenticates: an `Authorization: Bearer` access token, verified by
//!    [`polity_identity::Verifier`] (or, for `GET`/`HEAD` only, the same token in the
//!    browser session cookie set by `/login`); a request without credentials is
//!    anonymous, a request with bad credentials is refused with 401 at once;
//! 2. finds the route's [`RouteSpec`] by method and matched path, and asks the
//!    [`Authorizer`] the route-level question of its [`Scope`]: 401 when an anonymous
//!    caller is denied, 403 when a principal is;
//! 3. hands the handler an [`Access`] (caller, tenant, purpose, and the authorizer for
//!    object-level questions);
//! 4. writes an audit entry for every refusal and every privileged action, and waits
//!    until it is durable before answering.
//!
//! A path no route serves still needs valid credentials before it gets its 404, and a
//! handler that asks for [`Access`] behind no gate refuses with 403: nothing is served
//! by default.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    extract::{FromRequestParts, MatchedPath, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use polity_audit::AuditEntry;
use polity_identity::{AuthError, Principal, Verifier};
use polity_model::{Tenant, Timestamp};

use crate::{Action, Authorizer, Caller, Context, EntityRef, Resource, Scope, routes::RouteSpec};

/// The NGSI-LD tenant header.
pub const TENANT_HEADER: &str = "NGSILD-Tenant";
/// The header declaring the purpose of a personal-data access.
pub const PURPOSE_HEADER: &str = "Polity-Purpose";
/// The browser session cookie holding an access token.
pub const SESSION_COOKIE: &str = "polity_token";

/// Where audit entries go. Implemented by `polity_audit::AuditWriter`; `record` returns
/// once the entries are durable.
pub trait AuditSink: Send + Sync + 'static {
    /// Appends entries durably.
    fn record(
        &self,
        entries: Vec<AuditEntry>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;
}

impl GateCounters {
    /// The counters in Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP polity_http_gate_total Requests by the gate's answer: allowed, 401 (no or bad credentials), 403 (not allowed).\n# TYPE polity_http_gate_total counter"
        );
        for (answer, n) in [
            ("allowed", &self.allowed),
            ("401", &self.unauthenticated),
            ("403", &self.forbidden),
        ] {
            let _ = writeln!(
                out,
                "polity_http_gate_total{{answer=\"{answer}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP polity_audit_failures_total Audit entries that could not be written.\n# TYPE polity_audit_failures_total counter\npolity_audit_failures_total {}",
            self.audit_failures.load(Ordering::Relaxed)
        );
    }
}

impl AuditSink for polity_audit::AuditWriter {
    fn record(
        &self,
        entries: Vec<AuditEntry>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let w = self.clone();
        Box::pin(async move {
            w.record_many(entries)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Counters of the gate's answers, for `/metrics`.
#[derive(Debug, Default)]
pub struct GateCounters {
    /// Requests let through to their handler.
    pub allowed: AtomicU64,
    /// Requests refused with 401 (no or bad credentials).
    pub unauthenticated: AtomicU64,
    /// Requests refused with 403 (not allowed).
    pub forbidden: AtomicU64,
    /// Audit entries that could not be written.
    pub audit_failures: AtomicU64,
}

struct Inner {
    /// False: authentication is off (`--insecure-no-auth`).
    enforcing: bool,
    /// Replaced when issuers' keys rotate.
    verifier: std::sync::RwLock<Option<Arc<Verifier>>>,
    authz: Arc<dyn Authorizer>,
    pseudonyms: Option<Arc<dyn crate::SubjectPseudonyms>>,
    routes: HashMap<(&'static str, &'static str), RouteSpec>,
    default_tenant: Tenant,
    audit: Option<Arc<dyn AuditSink>>,
    counters: Arc<GateCounters>,
}

/// The authenticating, authorizing middleware. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("authentication", &self.inner.enforcing)
            .field("routes", &self.inner.routes.len())
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate enforcing tokens from `verifier` and decisions of `authz` on `routes`.
    pub fn new(
        verifier: Verifier,
        authz: Arc<dyn Authorizer>,
        default_tenant: Tenant,
        routes: &[RouteSpec],
    ) -> Self {
        Self::build(Some(verifier), authz, default_tenant, routes)
    }

    /// A gate that lets every request through as an unrestricted caller: for
    /// conformance testing on loopback only (`polity serve --insecure-no-auth`).
    pub fn insecure_no_auth(default_tenant: Tenant, routes: &[RouteSpec]) -> Self {
        Self::build(None, Arc::new(crate::DenyAll), default_tenant, routes)
    }

    fn build(
        verifier: Option<Verifier>,
        authz: Arc<dyn Authorizer>,
        default_tenant: Tenant,
        routes: &[RouteSpec],
    ) -> Self {
        Gate {
            inner: Arc::new(Inner {
                enforcing: verifier.is_some(),
                verifier: std::sync::RwLock::new(verifier.map(Arc::new)),
                authz,
                pseudonyms: None,
                routes: routes.iter().map(|r| ((r.method, r.path), *r)).collect(),
                default_tenant,
                audit: None,
                counters: Arc::default(),
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("the gate is configured before it is shared")
    }

    /// Sets where audit entries go.
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.inner_mut().audit = Some(audit);
        self
    }

    /// Counts into `counters` (shared with whoever renders `/metrics`).
    pub fn with_counters(mut self, counters: Arc<GateCounters>) -> Self {
        self.inner_mut().counters = counters;
        self
    }

    /// Sets how citizens' ids map to their pseudonyms.
    pub fn with_pseudonyms(mut self, p: Arc<dyn crate::SubjectPseudonyms>) -> Self {
        self.inner_mut().pseudonyms = Some(p);
        self
    }

    /// The gate's counters.
    pub fn counters(&self) -> Arc<GateCounters> {
        self.inner.counters.clone()
    }

    /// Whether tokens are checked (false under `--insecure-no-auth`).
    pub fn enforcing(&self) -> bool {
        self.inner.enforcing
    }

    /// Replaces the verifier, e.g. after an issuer's JWKS changed (key rotation).
    /// Ignored when authentication is off.
    pub fn set_verifier(&self, verifier: Verifier) {
        if self.inner.enforcing {
            let mut v = self
                .inner
                .verifier
                .write()
                .unwrap_or_else(|e| e.into_inner());
            *v = Some(Arc::new(verifier));
        }
    }

    fn verifier(&self) -> Option<Arc<Verifier>> {
        self.inner
            .verifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `router` (with its fallbacks already set) behind the gate.
    pub fn protect(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), run))
    }

    /// Verifies a token and returns the caller it speaks for.
    pub fn verify_token(&self, token: &str) -> Result<Caller, AuthError> {
        let Some(v) = self.verifier() else {
            return Ok(Caller::anonymous());
        };
        let verified = v.verify(token)?;
        Ok(self.caller(verified.principal))
    }

    /// Verifies a token for a browser session and returns the cookie lifetime in
    /// seconds (until the token expires), or a message for the sign-in page.
    pub fn verify_session(&self, token: &str) -> Result<u64, String> {
        let Some(v) = self.verifier() else {
            return Err("this node runs without authentication; no sign-in is needed".into());
        };
        let verified = v.verify(token).map_err(|e| e.to_string())?;
        Ok(verified
            .claims
            .exp
            .saturating_sub(polity_identity::now_secs())
            .max(1))
    }

    /// The access of `principal` in `tenant` outside any request: what a subscription
    /// acts with when it notifies, so each notification is decided, redacted and
    /// audited exactly like a read by its owner at that moment (current policies,
    /// current consents).
    pub fn access_as(&self, principal: Principal, tenant: Tenant, context: Context) -> Access {
        Access {
            caller: Arc::new(self.caller(principal)),
            tenant: Some(tenant),
            context,
            route: None,
            gate: self.clone(),
        }
    }

    fn caller(&self, principal: Principal) -> Caller {
        let pseudonym = match (&principal, &self.inner.pseudonyms) {
            (Principal::Citizen { id, tenant }, Some(p)) => p.subject(tenant, id),
            _ => None,
        };
        Caller {
            principal: Some(principal),
            pseudonym,
        }
    }

    /// Authenticates a request's headers: `Ok(anonymous)` without credentials.
    fn authenticate(&self, method: &Method, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let token = match (auth.next(), auth.next()) {
            (Some(_), Some(_)) => {
                return Err(Refusal::bad_credentials(
                    "send one Authorization header, not several",
                ));
            }
            (Some(v), None) => {
                let v = v.to_str().map_err(|_| {
                    Refusal::bad_credentials("the Authorization header is not text")
                })?;
                match v.split_once(' ') {
                    Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => {
                        Some(t.trim().to_owned())
                    }
                    _ => {
                        return Err(Refusal::bad_credentials(
                            "use `Authorization: Bearer <access token>`; get a token with `polity token`",
                        ));
                    }
                }
            }
            // The cookie is for the pages: only safe methods, so a cross-site form can
            // never act with it.
            (None, None) if matches!(*method, Method::GET | Method::HEAD) => {
                session_cookie(headers)
            }
            (None, _) => None,
        };
        match token {
            None => Ok(Caller::anonymous()),
            Some(t) => self
                .verify_token(&t)
                .map_err(|e| Refusal::bad_credentials(&e.to_string())),
        }
    }

    async fn audit(&self, entries: Vec<AuditEntry>) -> bool {
        let Some(sink) = &self.inner.audit else {
            return true;
        };
        match sink.record(entries).await {
            Ok(()) => true,
            Err(e) => {
                self.inner
                    .counters
                    .audit_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "audit entry could not be written");
                false
            }
        }
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// A refusal by the gate.
struct Refusal {
    status: StatusCode,
    title: &'static str,
    detail: String,
    /// For 401 with credentials: RFC 6750 `error="invalid_token"`.
    invalid_token: bool,
}

impl Refusal {
    fn bad_credentials(detail: &str) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            title: "Unauthorized",
            detail: detail.to_owned(),
            invalid_token: true,
        }
    }

    fn no_credentials() -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            title: "Unauthorized",
            detail: "this route needs an access token: send `Authorization: Bearer <token>` (get one with `polity token --data-dir DIR --as PRINCIPAL`)".into(),
            invalid_token: false,
        }
    }

    fn forbidden(detail: String) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            title: "Forbidden",
            detail,
            invalid_token: false,
        }
    }

    fn bad_request(detail: String) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request",
            detail,
            invalid_token: false,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "urn:polity:problem:unauthorized",
            StatusCode::FORBIDDEN => "urn:polity:problem:forbidden",
            _ => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
        };
        let body = serde_json::json!({
            "type": kind,
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut r = (self.status, body.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            let mut v = r#"Bearer realm="polity""#.to_owned();
            if self.invalid_token {
                let d: String = self
                    .detail
                    .chars()
                    .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                    .take(200)
                    .collect();
                v.push_str(&format!(
                    r#", error="invalid_token", error_description="{d}""#
                ));
            }
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }
}

fn request_tenant(headers: &HeaderMap, default: &Tenant) -> Result<Tenant, Refusal> {
    match headers.get(TENANT_HEADER) {
        None => Ok(default.clone()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| Refusal::bad_request("the NGSILD-Tenant header is not text".into()))?;
            Tenant::new(s).map_err(|e| Refusal::bad_request(e.to_string()))
        }
    }
}

fn purpose(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(v) = headers.get(PURPOSE_HEADER) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default().trim();
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(Some(s.to_owned()))
    } else {
        Err(Refusal::bad_request(format!(
            "the {PURPOSE_HEADER} header must be a purpose name of 1 to 64 characters from A-Z, a-z, 0-9, '-', '_', '.', ':' (e.g. billing)"
        )))
    }
}

/// What the gate tells a handler about the request it let through.
#[derive(Clone)]
pub struct Access {
    /// Who is asking.
    pub caller: Arc<Caller>,
    /// The tenant the request addresses (tenant and own routes).
    pub tenant: Option<Tenant>,
    /// Purpose and consent for policies.
    pub context: Context,
    /// The route's spec.
    pub route: Option<RouteSpec>,
    gate: Gate,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("caller", &self.caller)
            .field("tenant", &self.tenant)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// Whether authorization is switched off (`--insecure-no-auth`).
    pub fn unrestricted(&self) -> bool {
        !self.gate.inner.enforcing
    }

    /// See [`Gate::verify_session`].
    pub fn verify_session(&self, token: &str) -> Result<u64, String> {
        self.gate.verify_session(token)
    }

    /// Asks one question with the request's context.
    pub fn allows(&self, action: Action, resource: &Resource) -> bool {
        self.allows_in(action, resource, &self.context)
    }

    /// Asks one question with another context (e.g. with consent established).
    pub fn allows_in(&self, action: Action, resource: &Resource, context: &Context) -> bool {
        if self.unrestricted() {
            return true;
        }
        self.gate
            .inner
            .authz
            .allows(&self.caller, action, resource, context)
    }

    /// Whether `action` is allowed on every entity of the request's tenant.
    pub fn on_tenant(&self, action: Action) -> bool {
        match &self.tenant {
            Some(t) => self.allows(action, &Resource::Tenant(t.clone())),
            None => self.unrestricted(),
        }
    }

    /// Whether `action` is allowed on one entity.
    pub fn on_entity(&self, action: Action, entity: &EntityRef) -> bool {
        self.allows(action, &Resource::Entity(entity.clone()))
    }

    /// Appends audit entries and waits until they are durable; false if they could not
    /// be written (the caller must then not release personal data).
    pub async fn audit(&self, entries: Vec<AuditEntry>) -> bool {
        if entries.is_empty() {
            return true;
        }
        self.gate.audit(entries).await
    }

    /// An audit entry by this caller, with the request's tenant and purpose.
    pub fn entry(&self, action: &str, resource: String, outcome: &str) -> AuditEntry {
        AuditEntry {
            at: Timestamp::now(),
            actor: self.caller.actor(),
            action: action.to_owned(),
            tenant: self.tenant.clone(),
            subject: None,
            resource,
            purpose: self.context.purpose.clone(),
            outcome: outcome.to_owned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts.extensions.get::<Access>().cloned().ok_or_else(|| {
            Refusal::forbidden(
                "this route is not registered with the gate, so nothing is allowed on it".into(),
            )
            .into_response()
        })
    }
}

async fn run(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    // HEAD is answered by the GET handler, so it is guarded as GET.
    let lookup = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let spec = path
        .as_deref()
        .and_then(|p| gate.inner.routes.get(&(lookup, p)))
        .copied();
    let shown = format!("{method} {}", req.uri().path());
    let counters = &gate.inner.counters;

    let caller = if gate.enforcing() {
        match gate.authenticate(&method, req.headers()) {
            Ok(c) => c,
            Err(refusal) => {
                counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
                let action = spec.map_or("authenticate", |s| s.action.name());
                gate.audit(vec![AuditEntry {
                    at: Timestamp::now(),
                    actor: "unauthenticated".into(),
                    action: action.into(),
                    tenant: None,
                    subject: None,
                    resource: clip(&shown),
                    purpose: None,
                    outcome: format!("denied 401: {}", clip(&refusal.detail)),
                }])
                .await;
                return refusal.into_response();
            }
        }
    } else {
        Caller {
            principal: Some(Principal::Operator),
            pseudonym: None,
        }
    };

    let context = match purpose(req.headers()) {
        Ok(p) => Context {
            purpose: p,
            consent: false,
        },
        Err(r) => return r.into_response(),
    };

    let Some(spec) = spec else {
        // No route: the fallback answers 404/405, but only to authenticated callers.
        if gate.enforcing() && caller.principal.is_none() {
            counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
            gate.audit(vec![refusal_entry(
                &caller, "unrouted", None, &shown, None, 401,
            )])
            .await;
            return Refusal::no_credentials().into_response();
        }
        let response = next.run(req).await;
        let status = response.status();
        audit_handler_refusal(&gate, &caller, "unrouted", None, &shown, None, status).await;
        return response;
    };

    let tenant = match spec.scope {
        Scope::Node => None,
        Scope::Tenant => match request_tenant(req.headers(), &gate.inner.default_tenant) {
            Ok(t) => Some(t),
            Err(r) => return r.into_response(),
        },
        Scope::Own => caller
            .principal
            .as_ref()
            .and_then(|p| p.tenants().into_iter().next()),
    };

    let (action, resource) = match spec.scope {
        Scope::Node => (spec.action, Some(Resource::Node)),
        Scope::Tenant => (Action::TenantAccess, tenant.clone().map(Resource::Tenant)),
        Scope::Own => (
            spec.action,
            match (&caller.principal, &caller.pseudonym, &tenant) {
                (Some(Principal::Citizen { .. }), Some(p), Some(t)) => Some(Resource::Subject {
                    tenant: t.clone(),
                    pseudonym: p.clone(),
                }),
                _ => None,
            },
        ),
    };

    let allowed = !gate.enforcing()
        || resource
            .as_ref()
            .is_some_and(|r| gate.inner.authz.allows(&caller, action, r, &context));
    if !allowed {
        let anonymous = caller.principal.is_none();
        if anonymous && method == Method::GET && wants_html(req.headers()) {
            counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
            gate.audit(vec![refusal_entry(
                &caller,
                spec.action.name(),
                tenant.clone(),
                &shown,
                context.purpose.clone(),
                303,
            )])
            .await;
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
        }
        let refusal = if anonymous {
            counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
            Refusal::no_credentials()
        } else {
            counters.forbidden.fetch_add(1, Ordering::Relaxed);
            Refusal::forbidden(match (&spec.scope, &tenant) {
                (Scope::Tenant, Some(t)) => format!(
                    "`{}` may not act in tenant `{t}`; use a token whose principal is bound to this tenant, or another NGSILD-Tenant",
                    caller.actor()
                ),
                (Scope::Own, _) => format!(
                    "`{}` is not a data subject of this node; this route serves citizens their own records",
                    caller.actor()
                ),
                _ => format!(
                    "`{}` may not perform `{}`; ask an operator for a role that allows it",
                    caller.actor(),
                    spec.action
                ),
            })
        };
        let status = refusal.status.as_u16();
        gate.audit(vec![refusal_entry(
            &caller,
            spec.action.name(),
            tenant.clone(),
            &shown,
            context.purpose.clone(),
            status,
        )])
        .await;
        return refusal.into_response();
    }

    counters.allowed.fetch_add(1, Ordering::Relaxed);
    let access = Access {
        caller: Arc::new(caller),
        tenant,
        context,
        route: Some(spec),
        gate: gate.clone(),
    };
    req.extensions_mut().insert(access.clone());
    let response = next.run(req).await;
    // Handlers refuse too (per-entity checks); those refusals are audited like ours.
    audit_handler_refusal(
        &gate,
        &access.caller,
        spec.action.name(),
        access.tenant.clone(),
        &shown,
        access.context.purpose.clone(),
        response.status(),
    )
    .await;
    if spec.action.is_privileged() && gate.enforcing() {
        let status = response.status().as_u16();
        let outcome = if response.status().is_success() {
            format!("allowed {status}")
        } else {
            format!("failed {status}")
        };
        let mut entry = access.entry(spec.action.name(), clip(&shown), &outcome);
        entry.subject = access.caller.pseudonym.clone();
        if !gate.audit(vec![entry]).await && response.status().is_success() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit log could not record this privileged action, so its result is withheld; retry later",
            )
                .into_response();
        }
    }
    response
}

async fn audit_handler_refusal(
    gate: &Gate,
    caller: &Caller,
    action: &str,
    tenant: Option<Tenant>,
    shown: &str,
    purpose: Option<String>,
    status: StatusCode,
) {
    if gate.enforcing() && matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        if status == StatusCode::FORBIDDEN {
            gate.inner
                .counters
                .forbidden
                .fetch_add(1, Ordering::Relaxed);
        }
        gate.audit(vec![refusal_entry(
            caller,
            action,
            tenant,
            shown,
            purpose,
            status.as_u16(),
        )])
        .await;
    }
}

fn refusal_entry(
    caller: &Caller,
    action: &str,
    tenant: Option<Tenant>,
    shown: &str,
    purpose: Option<String>,
    status: u16,
) -> AuditEntry {
    AuditEntry {
        at: Timestamp::now(),
        actor: caller.actor(),
        action: action.into(),
        tenant,
        subject: None,
        resource: clip(shown),
        purpose,
        outcome: format!("denied {status}"),
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn clip(s: &str) -> String {
    s.chars().take(256).collect()
}
