//! [`CedarAuthorizer`]: answers [`polity_trust::Authorizer`] questions with Cedar.
//!
//! Owns the translation of one [`AccessRequest`] into Cedar entities, a request and a
//! context, and of Cedar's answer into a [`Decision`]. It must not read policy files
//! itself (that is [`crate::policies`]) and must not change what a request says.

use std::path::Path;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityUid, PolicySet, Request, RestrictedExpression,
};
use polity_identity::Principal;
use polity_trust::{AccessRequest, Action, Authorizer, Decision, Resource};

use crate::{
    diagnostic::{Diagnostic, Summary},
    policies::{self, Compiled},
    vocabulary::{PrincipalKind, ResourceKind, Vocabulary},
};

/// The reason given when no policy permits a request.
pub const DENY_BY_DEFAULT: &str = "deny-by-default";
/// The reason given when the schema does not declare the action for this principal and
/// resource (e.g. `metrics.read` on a tenant): no policy can apply, so it is denied.
pub const NOT_APPLICABLE: &str = "not-applicable";
/// The reason given when a request could not be evaluated; the cause is in
/// [`Decision::errors`].
pub const EVALUATION_ERROR: &str = "evaluation-error";

/// Why policies could not be loaded. No authorizer exists then, so nothing is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The policy files have problems; each diagnostic says where and what to do.
    #[error(
        "the authorization policies are invalid, so the node cannot start:\n{}\nfix these (check with `polity validate`) and start again",
        render(.0)
    )]
    Invalid(Vec<Diagnostic>),
}

impl LoadError {
    /// The problems found, each with its file, line and column.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            LoadError::Invalid(d) => d,
        }
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Answers authorization questions with Cedar policies validated against Polity's
/// schema, deny by default.
///
/// Build it once (parsing and validation happen at load) and share it: it is
/// `Send + Sync`, and [`Authorizer::decide`] only builds the request's few entities.
pub struct CedarAuthorizer {
    vocabulary: Vocabulary,
    policies: PolicySet,
    /// The policies whose scope may match each (action, principal kind, resource kind),
    /// indexed by [`Vocabulary::combination`]: a request is evaluated against these
    /// only, which gives the same answer as the whole set, faster.
    partitions: Vec<PolicySet>,
    engine: cedar_policy::Authorizer,
    summary: Summary,
}

impl std::fmt::Debug for CedarAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CedarAuthorizer")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl CedarAuthorizer {
    /// The built-in default policies ([`crate::DEFAULT_POLICIES`]).
    pub fn builtin() -> Result<Self, LoadError> {
        Self::from_files(&policies::default_files())
    }

    /// Every `*.cedar` file directly in `dir`, validated together against the schema.
    /// Any problem fails the load; there is no fallback.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        let files = policies::read_dir(dir.as_ref()).map_err(LoadError::Invalid)?;
        Self::from_files(&files)
    }

    /// Policy files given as `(name, text)` pairs; `name` is used in diagnostics.
    pub fn from_sources<N, T>(files: impl IntoIterator<Item = (N, T)>) -> Result<Self, LoadError>
    where
        N: Into<String>,
        T: Into<String>,
    {
        let files: Vec<(String, String)> = files
            .into_iter()
            .map(|(n, t)| (n.into(), t.into()))
            .collect();
        Self::from_files(&files)
    }

    fn from_files(files: &[(String, String)]) -> Result<Self, LoadError> {
        let vocabulary = Vocabulary::load().map_err(|e| {
            LoadError::Invalid(vec![Diagnostic::whole_file(
                "polity.cedarschema",
                e.to_string(),
                None,
            )])
        })?;
        let Compiled { policies, summary } =
            policies::compile(&vocabulary, files).map_err(LoadError::Invalid)?;
        for warning in &summary.warnings {
            tracing::warn!(message = "authorization policy warning", %warning);
        }
        tracing::info!(
            message = "authorization policies loaded",
            files = summary.files,
            permits = summary.permits,
            forbids = summary.forbids
        );
        let partitions = partition(&vocabulary, &policies);
        Ok(CedarAuthorizer {
            vocabulary,
            policies,
            partitions,
            engine: cedar_policy::Authorizer::new(),
            summary,
        })
    }

    /// What the loaded policy set holds.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The ids of the loaded policies, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    }

    fn evaluate(&self, request: &AccessRequest<'_>) -> Result<Decision, String> {
        let Some((action_index, action_uid)) = self.vocabulary.action(request.action) else {
            return Err(format!("action `{}` is not in the schema", request.action));
        };
        let (principal_kind, principal) = self.principal(request)?;
        let resource_kind = resource_kind(request.resource);
        if !self
            .vocabulary
            .applies(action_index, principal_kind, resource_kind)
        {
            return Ok(Decision::deny(NOT_APPLICABLE));
        }
        let Some(policies) = self.partitions.get(Vocabulary::combination(
            action_index,
            principal_kind,
            resource_kind,
        )) else {
            return Err("no policy partition for this request".to_owned());
        };
        if policies.is_empty() {
            return Ok(Decision::deny(DENY_BY_DEFAULT));
        }
        let principal_uid = principal.uid();
        let mut entities = vec![principal];
        let resource_uid = self.resource(request.resource, &mut entities)?;
        let context = Context::from_pairs([
            (
                "purpose".to_owned(),
                RestrictedExpression::new_string(
                    request
                        .context
                        .purpose
                        .as_deref()
                        .map(str::trim)
                        .unwrap_or_default()
                        .to_owned(),
                ),
            ),
            (
                "consent".to_owned(),
                RestrictedExpression::new_bool(request.context.consent),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let cedar_request = Request::new(
            principal_uid,
            action_uid.clone(),
            resource_uid,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        let response = self
            .engine
            .is_authorized(&cedar_request, policies, &entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        let mut reasons: Vec<String> = diagnostics.reason().map(|id| id.to_string()).collect();
        reasons.sort();
        let allowed = response.decision() == cedar_policy::Decision::Allow && errors.is_empty();
        if reasons.is_empty() {
            reasons.push(DENY_BY_DEFAULT.to_owned());
        }
        if !errors.is_empty() {
            // An erroring policy is skipped by Cedar; that could skip a forbid, so any
            // error denies.
            reasons.push(EVALUATION_ERROR.to_owned());
        }
        Ok(Decision {
            allowed,
            reasons,
            errors,
        })
    }

    fn principal(&self, request: &AccessRequest<'_>) -> Result<(PrincipalKind, Entity), String> {
        let caller = request.caller;
        let string = RestrictedExpression::new_string;
        let (kind, id, attrs): (PrincipalKind, &str, Vec<(String, RestrictedExpression)>) =
            match &caller.principal {
                None => (PrincipalKind::Anonymous, "anonymous", Vec::new()),
                Some(Principal::Operator) => (PrincipalKind::Operator, "operator", Vec::new()),
                Some(Principal::SecurityAnalyst) => (
                    PrincipalKind::SecurityAnalyst,
                    "security-analyst",
                    Vec::new(),
                ),
                Some(Principal::CityAdmin(t)) => (
                    PrincipalKind::CityAdmin,
                    t.as_str(),
                    vec![("tenant".into(), string(t.as_str().to_owned()))],
                ),
                Some(Principal::CityAnalyst(t)) => (
                    PrincipalKind::CityAnalyst,
                    t.as_str(),
                    vec![("tenant".into(), string(t.as_str().to_owned()))],
                ),
                Some(Principal::Application { client_id, tenants }) => (
                    PrincipalKind::Application,
                    client_id.as_str(),
                    vec![
                        ("client_id".into(), string(client_id.clone())),
                        (
                            "tenants".into(),
                            RestrictedExpression::new_set(
                                tenants.iter().map(|t| string(t.as_str().to_owned())),
                            ),
                        ),
                    ],
                ),
                Some(Principal::Citizen { tenant, .. }) => {
                    // The citizen appears to policies by pseudonym only, never by the id
                    // at their identity provider.
                    let pseudonym = caller.pseudonym.as_deref().unwrap_or_default();
                    (
                        PrincipalKind::Citizen,
                        pseudonym,
                        vec![
                            ("tenant".into(), string(tenant.as_str().to_owned())),
                            ("pseudonym".into(), string(pseudonym.to_owned())),
                        ],
                    )
                }
            };
        let uid = EntityUid::from_type_name_and_id(
            self.vocabulary.principal_type(kind).clone(),
            EntityId::new(id),
        );
        let entity = Entity::new_with_tags(uid, attrs, [], []).map_err(|e| e.to_string())?;
        Ok((kind, entity))
    }

    /// Builds the resource entity (and an entity's parent tenant) into `entities`.
    fn resource(
        &self,
        resource: &Resource,
        entities: &mut Vec<Entity>,
    ) -> Result<EntityUid, String> {
        let string = RestrictedExpression::new_string;
        let uid = |kind: ResourceKind, id: &str| {
            EntityUid::from_type_name_and_id(
                self.vocabulary.resource_type(kind).clone(),
                EntityId::new(id),
            )
        };
        let tenant_entity = |name: &str| {
            Entity::new_with_tags(
                uid(ResourceKind::Tenant, name),
                [("name".to_owned(), string(name.to_owned()))],
                [],
                [],
            )
            .map_err(|e| e.to_string())
        };
        let (resource_uid, entity) = match resource {
            Resource::Node => {
                let u = uid(ResourceKind::Node, "node");
                (u.clone(), Entity::with_uid(u))
            }
            Resource::Tenant(t) => {
                let e = tenant_entity(t.as_str())?;
                (e.uid(), e)
            }
            Resource::Entity(e) => {
                let tenant = tenant_entity(e.tenant.as_str())?;
                let u = uid(ResourceKind::Entity, &e.id);
                let entity = Entity::new_with_tags(
                    u.clone(),
                    [
                        ("tenant".to_owned(), string(e.tenant.as_str().to_owned())),
                        ("type".to_owned(), string(e.entity_type.clone())),
                        (
                            "owner".to_owned(),
                            string(e.owner.clone().unwrap_or_default()),
                        ),
                    ],
                    [tenant.uid()],
                    [],
                )
                .map_err(|e| e.to_string())?;
                entities.push(tenant);
                (u, entity)
            }
            Resource::Subject { tenant, pseudonym } => {
                let u = uid(
                    ResourceKind::Subject,
                    &format!("{}/{}", tenant.as_str(), pseudonym),
                );
                let entity = Entity::new_with_tags(
                    u.clone(),
                    [
                        ("tenant".to_owned(), string(tenant.as_str().to_owned())),
                        ("pseudonym".to_owned(), string(pseudonym.clone())),
                    ],
                    [],
                    [],
                )
                .map_err(|e| e.to_string())?;
                (u, entity)
            }
        };
        entities.push(entity);
        Ok(resource_uid)
    }
}

/// Splits `policies` by the (action, principal kind, resource kind) their scope may match.
fn partition(vocabulary: &Vocabulary, policies: &PolicySet) -> Vec<PolicySet> {
    let mut partitions = vec![PolicySet::new(); Vocabulary::combinations()];
    for (action_index, _) in Action::ALL.iter().enumerate() {
        for principal in PrincipalKind::ALL {
            for resource in ResourceKind::ALL {
                let Some(set) =
                    partitions.get_mut(Vocabulary::combination(action_index, principal, resource))
                else {
                    continue;
                };
                for policy in policies.policies() {
                    if vocabulary.scope_may_match(policy, action_index, principal, resource)
                        && let Err(error) = set.add(policy.clone())
                    {
                        // Ids are unique in `policies`, so this cannot happen.
                        tracing::error!(message = "policy partition", %error);
                    }
                }
            }
        }
    }
    partitions
}

fn resource_kind(resource: &Resource) -> ResourceKind {
    match resource {
        Resource::Node => ResourceKind::Node,
        Resource::Tenant(_) => ResourceKind::Tenant,
        Resource::Entity(_) => ResourceKind::Entity,
        Resource::Subject { .. } => ResourceKind::Subject,
    }
}

impl Authorizer for CedarAuthorizer {
    fn decide(&self, request: &AccessRequest<'_>) -> Decision {
        match self.evaluate(request) {
            Ok(decision) => {
                if !decision.errors.is_empty() {
                    tracing::warn!(
                        message = "authorization policy failed to evaluate; denied",
                        action = %request.action,
                        errors = ?decision.errors
                    );
                }
                decision
            }
            Err(error) => {
                tracing::warn!(
                    message = "authorization request could not be built; denied",
                    action = %request.action,
                    %error
                );
                Decision {
                    allowed: false,
                    reasons: vec![EVALUATION_ERROR.to_owned()],
                    errors: vec![error],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polity_model::Tenant;
    use polity_trust::{Action, Caller, Context as Ctx};

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn is_send_and_sync() {
        assert_send_sync::<CedarAuthorizer>();
    }

    #[test]
    fn reasons_name_the_determining_policies() {
        let authz = CedarAuthorizer::builtin().unwrap();
        let adelaide = Tenant::new("adelaide").unwrap();
        let melbourne = Tenant::new("melbourne").unwrap();
        let admin = Caller::of(Principal::CityAdmin(adelaide.clone()));
        let ctx = Ctx::default();
        let decide = |resource: &Resource| {
            authz.decide(&AccessRequest {
                caller: &admin,
                action: Action::TenantAccess,
                resource,
                context: &ctx,
            })
        };
        let allowed = decide(&Resource::Tenant(adelaide));
        assert!(allowed.allowed);
        assert_eq!(allowed.reasons, ["city-admin-tenant"]);
        let denied = decide(&Resource::Tenant(melbourne));
        assert!(!denied.allowed);
        assert_eq!(denied.reasons, ["guard-city-bound-tenant"]);
        assert!(denied.errors.is_empty());
        let not_applicable = decide(&Resource::Node);
        assert_eq!(not_applicable.reasons, [NOT_APPLICABLE]);
    }

    #[test]
    fn partitions_decide_like_the_whole_policy_set() {
        let partitioned = CedarAuthorizer::builtin().unwrap();
        let whole = CedarAuthorizer::builtin().unwrap();
        let whole = CedarAuthorizer {
            partitions: vec![whole.policies.clone(); Vocabulary::combinations()],
            ..whole
        };
        let t = |s: &str| Tenant::new(s).unwrap();
        let callers = [
            Caller::anonymous(),
            Caller::of(Principal::Operator),
            Caller::of(Principal::SecurityAnalyst),
            Caller::of(Principal::CityAdmin(t("adelaide"))),
            Caller::of(Principal::CityAnalyst(t("adelaide"))),
            Caller::of(Principal::Application {
                client_id: "app".into(),
                tenants: vec![t("adelaide")],
            }),
            Caller {
                principal: Some(Principal::Citizen {
                    id: "c".into(),
                    tenant: t("adelaide"),
                }),
                pseudonym: Some("p".into()),
            },
        ];
        let entity = |tenant: &str, owner: Option<&str>| {
            Resource::Entity(polity_trust::EntityRef {
                tenant: t(tenant),
                id: "urn:x".into(),
                entity_type: "T".into(),
                owner: owner.map(str::to_owned),
            })
        };
        let resources = [
            Resource::Node,
            Resource::Tenant(t("adelaide")),
            Resource::Tenant(t("melbourne")),
            entity("adelaide", Some("p")),
            entity("adelaide", None),
            entity("melbourne", Some("p")),
            Resource::Subject {
                tenant: t("adelaide"),
                pseudonym: "p".into(),
            },
            Resource::Subject {
                tenant: t("melbourne"),
                pseudonym: "p".into(),
            },
        ];
        let contexts = [
            Ctx::default(),
            Ctx {
                purpose: Some("x".into()),
                consent: true,
            },
        ];
        let mut compared = 0;
        for caller in &callers {
            for action in Action::ALL {
                for resource in &resources {
                    for context in &contexts {
                        let request = AccessRequest {
                            caller,
                            action: *action,
                            resource,
                            context,
                        };
                        let a = partitioned.decide(&request);
                        let b = whole.decide(&request);
                        assert_eq!(a, b, "{caller:?} {action} {resource:?}");
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 7 * Action::ALL.len() * 8 * 2);
    }

    #[test]
    fn no_permit_is_a_deny_by_default() {
        let authz = CedarAuthorizer::builtin().unwrap();
        let d = authz.decide(&AccessRequest {
            caller: &Caller::of(Principal::Operator),
            action: Action::AuditReadOwn,
            resource: &Resource::Subject {
                tenant: Tenant::new("adelaide").unwrap(),
                pseudonym: "p".into(),
            },
            context: &Ctx::default(),
        });
        assert!(!d.allowed);
        assert_eq!(d.reasons, ["guard-national-federation-only"]);
        let d = authz.decide(&AccessRequest {
            caller: &Caller::of(Principal::Operator),
            action: Action::OverviewRead,
            resource: &Resource::Node,
            context: &Ctx::default(),
        });
        assert!(d.allowed);
        let d = authz.decide(&AccessRequest {
            caller: &Caller::of(Principal::SecurityAnalyst),
            action: Action::TypesRead,
            resource: &Resource::Tenant(Tenant::new("adelaide").unwrap()),
            context: &Ctx::default(),
        });
        assert_eq!(d.reasons, ["security-analyst-node-only"]);
    }

    #[test]
    fn an_evaluation_error_denies_even_when_a_permit_matches() {
        // `resource.nope` cannot be validated, so write a policy that errors at run
        // time in a way strict validation allows: there is none in strict mode, so
        // build the engine around an unvalidated set directly.
        let authz = CedarAuthorizer::builtin().unwrap();
        let policies: PolicySet = r#"
            @id("allow") permit(principal, action, resource);
            @id("broken") forbid(principal, action, resource) when { principal.missing == 1 };
        "#
        .parse()
        .unwrap();
        let mut named = PolicySet::new();
        for p in policies.policies() {
            named
                .add(p.new_id(cedar_policy::PolicyId::new(p.annotation("id").unwrap())))
                .unwrap();
        }
        let partitions = partition(&authz.vocabulary, &named);
        let broken = CedarAuthorizer {
            policies: named,
            partitions,
            ..authz
        };
        let d = broken.decide(&AccessRequest {
            caller: &Caller::of(Principal::Operator),
            action: Action::HealthRead,
            resource: &Resource::Node,
            context: &Ctx::default(),
        });
        assert!(!d.allowed, "{d:?}");
        assert!(d.reasons.contains(&EVALUATION_ERROR.to_owned()));
        assert_eq!(d.errors.len(), 1, "{d:?}");
        assert!(d.errors[0].contains("broken"), "{d:?}");
    }
}
