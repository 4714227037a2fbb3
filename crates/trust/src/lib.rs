//! Polity's trust vocabulary: who asks ([`Caller`]), to do what ([`Action`]), to which
//! data ([`Resource`]), in which circumstances ([`Context`]), and the [`Authorizer`]
//! that answers deny-by-default.
//!
//! This crate is light on purpose: the HTTP crates depend on it to ask questions, while
//! the policy engine that answers them (Cedar, in `polity-authz`) is a leaf crate the
//! binary plugs in. Nothing here decides anything itself except [`DenyAll`].
//!
//! # The questions routes ask
//!
//! A route asks at two levels:
//!
//! 1. **Route level**, before the handler runs: may this caller use this route for this
//!    tenant at all? For tenant routes that is [`Action::TenantAccess`] on
//!    [`Resource::Tenant`] (the `NGSILD-Tenant` header must be allowed by the token's
//!    claims); for node routes it is the route's own action on [`Resource::Node`].
//! 2. **Object level**, inside the handler: may the caller do `action` on *all* data of
//!    the tenant ([`Resource::Tenant`]), and if not, on this one entity
//!    ([`Resource::Entity`])? Citizens, for example, read only entities they own.
//!
//! Entities a caller may not see are reported as not found, never as forbidden, so that
//! ids cannot be enumerated.

mod action;
pub mod gate;
pub mod me;
mod resource;
pub mod routes;
pub mod session;

pub use action::{Action, Scope};
pub use gate::{Access, AuditSink, Gate, GateCounters};
pub use resource::{EntityRef, Resource};
pub use routes::{RouteSpec, Routes};

use polity_identity::Principal;

/// A plain-HTTP ProblemDetails answer (RFC 9457, `about:blank`) for Polity's own
/// `/api/…` routes: the status, its reason as title, and `detail` for the user.
pub fn problem(
    status: axum::http::StatusCode,
    detail: impl Into<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        axum::Json(serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail.into(),
        })),
    )
        .into_response()
}

/// Who is asking: a verified principal, or nobody (no token).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// The verified principal; `None` for a request without credentials.
    pub principal: Option<Principal>,
    /// For citizens: their pseudonymous subject id in their city, the form in which
    /// their data (owner links, audit entries, consents) refers to them.
    pub pseudonym: Option<String>,
}

impl Caller {
    /// A caller without credentials.
    pub fn anonymous() -> Self {
        Caller::default()
    }

    /// A verified principal (with no pseudonym yet).
    pub fn of(principal: Principal) -> Self {
        Caller {
            principal: Some(principal),
            pseudonym: None,
        }
    }

    /// The text form used in audit entries and logs: the principal, or `anonymous`.
    pub fn actor(&self) -> String {
        match &self.principal {
            // A citizen appears by pseudonym only: the audit log must not hold their id.
            Some(Principal::Citizen { tenant, .. }) => format!(
                "citizen:{tenant}:{}",
                self.pseudonym.as_deref().unwrap_or("unknown")
            ),
            Some(p) => p.to_string(),
            None => "anonymous".to_owned(),
        }
    }
}

/// The circumstances of a request that policies may consider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The declared purpose of the access (`Polity-Purpose` header), if any.
    pub purpose: Option<String>,
    /// Whether a valid consent of the data subject covers this access.
    pub consent: bool,
}

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Who asks.
    pub caller: &'a Caller,
    /// What they want to do.
    pub action: Action,
    /// To what.
    pub resource: &'a Resource,
    /// In which circumstances.
    pub context: &'a Context,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Whether the request is allowed. Anything but an explicit permit is a deny.
    pub allowed: bool,
    /// The ids of the policies that determined the answer (for audit and debugging).
    pub reasons: Vec<String>,
    /// Errors met while evaluating policies; an erroring policy never permits.
    pub errors: Vec<String>,
}

impl Decision {
    /// A deny with one reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            reasons: vec![reason.into()],
            errors: Vec::new(),
        }
    }
}

/// Answers authorization questions. Implementations must deny anything they are not
/// told to permit, and must not panic on any input.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides one request.
    fn decide(&self, request: &AccessRequest<'_>) -> Decision;

    /// Shorthand for `decide(..).allowed`.
    fn allows(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource,
        context: &Context,
    ) -> bool {
        self.decide(&AccessRequest {
            caller,
            action,
            resource,
            context,
        })
        .allowed
    }
}

/// An authorizer that denies everything: the safe default when no policies are loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl Authorizer for DenyAll {
    fn decide(&self, _: &AccessRequest<'_>) -> Decision {
        Decision::deny("no policies are loaded")
    }
}

/// Maps a citizen's id at their identity provider to the pseudonym under which their
/// city stores data about them. Implemented with keyed HMAC in `polity-privacy`.
pub trait SubjectPseudonyms: Send + Sync + 'static {
    /// The current pseudonym of `citizen_id` in `tenant`.
    fn subject(&self, tenant: &polity_model::Tenant, citizen_id: &str) -> Option<String>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use polity_model::Tenant;

    #[test]
    fn deny_all_denies() {
        let caller = Caller::of(Principal::Operator);
        for a in Action::ALL {
            assert!(!DenyAll.allows(&caller, *a, &Resource::Node, &Context::default()));
        }
    }

    #[test]
    fn citizen_actor_is_pseudonymous() {
        let t = Tenant::new("adelaide").unwrap();
        let c = Caller {
            principal: Some(Principal::Citizen {
                id: "alice@example.org".into(),
                tenant: t,
            }),
            pseudonym: Some("pn1:subject:1:abc".into()),
        };
        assert_eq!(c.actor(), "citizen:adelaide:pn1:subject:1:abc");
        assert!(!c.actor().contains("alice"));
        assert_eq!(Caller::anonymous().actor(), "anonymous");
    }
}
