//! The Cedar schema and the names Polity's requests are built from.
//!
//! Owns the embedded schema (`schema/polity.cedarschema`), the mapping from
//! [`polity_trust`]'s vocabulary to Cedar type and action names, and the table of which
//! (principal, action, resource) combinations the schema declares. It must not hold
//! policies or make decisions.

use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, EntityId, EntityTypeName, EntityUid, Policy, PrincipalConstraint,
    ResourceConstraint, Schema,
};
use polity_trust::Action;

/// The Cedar schema every policy is validated against (human-readable schema format).
pub const SCHEMA: &str = include_str!("../schema/polity.cedarschema");

/// The Cedar namespace of Polity's types and actions.
pub const NAMESPACE: &str = "Polity";

/// The kind of principal a request is made by; one Cedar entity type each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalKind {
    Anonymous,
    Operator,
    SecurityAnalyst,
    CityAdmin,
    CityAnalyst,
    Application,
    Citizen,
}

impl PrincipalKind {
    pub(crate) const ALL: [PrincipalKind; 7] = [
        PrincipalKind::Anonymous,
        PrincipalKind::Operator,
        PrincipalKind::SecurityAnalyst,
        PrincipalKind::CityAdmin,
        PrincipalKind::CityAnalyst,
        PrincipalKind::Application,
        PrincipalKind::Citizen,
    ];

    pub(crate) fn type_name(self) -> &'static str {
        match self {
            PrincipalKind::Anonymous => "Anonymous",
            PrincipalKind::Operator => "Operator",
            PrincipalKind::SecurityAnalyst => "SecurityAnalyst",
            PrincipalKind::CityAdmin => "CityAdmin",
            PrincipalKind::CityAnalyst => "CityAnalyst",
            PrincipalKind::Application => "Application",
            PrincipalKind::Citizen => "Citizen",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The kind of resource a request is about; one Cedar entity type each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    Node,
    Tenant,
    Entity,
    Subject,
}

impl ResourceKind {
    pub(crate) const ALL: [ResourceKind; 4] = [
        ResourceKind::Node,
        ResourceKind::Tenant,
        ResourceKind::Entity,
        ResourceKind::Subject,
    ];

    pub(crate) fn type_name(self) -> &'static str {
        match self {
            ResourceKind::Node => "Node",
            ResourceKind::Tenant => "Tenant",
            ResourceKind::Entity => "Entity",
            ResourceKind::Subject => "Subject",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why the embedded schema could not be used. Only a broken build can cause this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SchemaError {
    /// The schema text does not parse.
    #[error("the built-in Cedar schema is invalid: {0}; this is a bug in polity-authz")]
    Invalid(String),
    /// The schema lacks an action or type that Polity's code uses.
    #[error(
        "the built-in Cedar schema does not declare `{0}`; declare it in crates/authz/schema/polity.cedarschema"
    )]
    Missing(String),
}

/// The schema, parsed once, and everything a request needs from it.
pub(crate) struct Vocabulary {
    pub(crate) schema: Schema,
    /// Indexed like [`PrincipalKind::ALL`].
    principal_types: Vec<EntityTypeName>,
    /// Indexed like [`ResourceKind::ALL`].
    resource_types: Vec<EntityTypeName>,
    /// Indexed like [`Action::ALL`].
    actions: Vec<EntityUid>,
    /// `applies[action][principal][resource]`: whether the schema declares it.
    applies: Vec<[[bool; 4]; 7]>,
    /// Whether the schema groups actions (then `action in [...]` is not plain equality).
    action_groups: bool,
}

fn type_name(base: &str) -> Result<EntityTypeName, SchemaError> {
    EntityTypeName::from_str(&format!("{NAMESPACE}::{base}"))
        .map_err(|e| SchemaError::Invalid(e.to_string()))
}

impl Vocabulary {
    /// Parses the embedded schema and checks that it declares Polity's vocabulary.
    pub(crate) fn load() -> Result<Self, SchemaError> {
        let (schema, warnings) = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| SchemaError::Invalid(e.to_string()))?;
        for warning in warnings {
            tracing::debug!(message = "Cedar schema warning", %warning);
        }
        let principal_types = PrincipalKind::ALL
            .iter()
            .map(|k| type_name(k.type_name()))
            .collect::<Result<Vec<_>, _>>()?;
        let resource_types = ResourceKind::ALL
            .iter()
            .map(|k| type_name(k.type_name()))
            .collect::<Result<Vec<_>, _>>()?;
        let action_type = type_name("Action")?;
        let actions: Vec<EntityUid> = Action::ALL
            .iter()
            .map(|a| EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.name())))
            .collect();
        let declared: Vec<&EntityUid> = schema.actions().collect();
        for uid in &actions {
            if !declared.contains(&uid) {
                return Err(SchemaError::Missing(uid.to_string()));
            }
        }
        let mut vocabulary = Vocabulary {
            schema,
            principal_types,
            resource_types,
            actions,
            applies: vec![[[false; 4]; 7]; Action::ALL.len()],
            action_groups: false,
        };
        vocabulary.action_groups = vocabulary.schema.action_groups().next().is_some();
        let envs: Vec<_> = vocabulary.schema.request_envs().collect();
        for env in envs {
            let action = vocabulary.actions.iter().position(|a| a == env.action());
            let principal = vocabulary
                .principal_types
                .iter()
                .position(|t| t == env.principal());
            let resource = vocabulary
                .resource_types
                .iter()
                .position(|t| t == env.resource());
            if let (Some(a), Some(p), Some(r)) = (action, principal, resource) {
                vocabulary.applies[a][p][r] = true;
            }
        }
        Ok(vocabulary)
    }

    /// The Cedar uid of `action`, and its index in [`Action::ALL`].
    pub(crate) fn action(&self, action: Action) -> Option<(usize, &EntityUid)> {
        let i = Action::ALL.iter().position(|a| *a == action)?;
        Some((i, self.actions.get(i)?))
    }

    pub(crate) fn principal_type(&self, kind: PrincipalKind) -> &EntityTypeName {
        &self.principal_types[kind.index()]
    }

    pub(crate) fn resource_type(&self, kind: ResourceKind) -> &EntityTypeName {
        &self.resource_types[kind.index()]
    }

    /// Whether `policy`'s scope can match a request for this action, principal kind and
    /// resource kind. Conservative: `true` unless the scope rules the request out (a
    /// policy whose scope does not match never applies and never errors, so leaving it
    /// out of the evaluation changes nothing).
    pub(crate) fn scope_may_match(
        &self,
        policy: &Policy,
        action_index: usize,
        principal: PrincipalKind,
        resource: ResourceKind,
    ) -> bool {
        let Some(action) = self.actions.get(action_index) else {
            return true;
        };
        let action_ok = match policy.action_constraint() {
            ActionConstraint::Any => true,
            ActionConstraint::Eq(uid) => &uid == action,
            ActionConstraint::In(uids) => self.action_groups || uids.contains(action),
        };
        let principal_type = self.principal_type(principal);
        let principal_ok = match policy.principal_constraint() {
            PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
            PrincipalConstraint::Eq(uid) => uid.type_name() == principal_type,
            PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => &t == principal_type,
        };
        let resource_type = self.resource_type(resource);
        let resource_ok = match policy.resource_constraint() {
            ResourceConstraint::Any | ResourceConstraint::In(_) => true,
            ResourceConstraint::Eq(uid) => uid.type_name() == resource_type,
            ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => &t == resource_type,
        };
        action_ok && principal_ok && resource_ok
    }

    /// The number of (action, principal kind, resource kind) combinations.
    pub(crate) fn combinations() -> usize {
        Action::ALL.len() * PrincipalKind::ALL.len() * ResourceKind::ALL.len()
    }

    /// The index of a combination, below [`Vocabulary::combinations`].
    pub(crate) fn combination(
        action_index: usize,
        principal: PrincipalKind,
        resource: ResourceKind,
    ) -> usize {
        (action_index * PrincipalKind::ALL.len() + principal.index()) * ResourceKind::ALL.len()
            + resource.index()
    }

    /// Whether the schema declares `action` for this principal and resource kind.
    pub(crate) fn applies(
        &self,
        action_index: usize,
        principal: PrincipalKind,
        resource: ResourceKind,
    ) -> bool {
        self.applies
            .get(action_index)
            .is_some_and(|t| t[principal.index()][resource.index()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn schema_declares_exactly_the_trust_actions() {
        let vocabulary = Vocabulary::load().unwrap();
        let in_schema: BTreeSet<String> = vocabulary
            .schema
            .actions()
            .map(|uid| {
                assert_eq!(uid.type_name().to_string(), "Polity::Action");
                uid.id().unescaped().to_owned()
            })
            .collect();
        let in_code: BTreeSet<String> = Action::ALL.iter().map(|a| a.name().to_owned()).collect();
        assert_eq!(in_schema, in_code);
    }

    #[test]
    fn schema_declares_every_principal_and_resource_type() {
        let vocabulary = Vocabulary::load().unwrap();
        let declared: BTreeSet<String> = vocabulary
            .schema
            .entity_types()
            .map(|t| t.to_string())
            .collect();
        for kind in PrincipalKind::ALL {
            assert!(declared.contains(vocabulary.principal_type(kind).to_string().as_str()));
        }
        for kind in ResourceKind::ALL {
            assert!(declared.contains(vocabulary.resource_type(kind).to_string().as_str()));
        }
    }

    #[test]
    fn kinds_are_indexed_in_declaration_order() {
        for (i, k) in PrincipalKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, k) in ResourceKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn applies_table_follows_the_schema() {
        let v = Vocabulary::load().unwrap();
        let idx = |a: Action| v.action(a).unwrap().0;
        use PrincipalKind as P;
        use ResourceKind as R;
        assert!(v.applies(idx(Action::HealthRead), P::Anonymous, R::Node));
        assert!(!v.applies(idx(Action::HealthRead), P::Anonymous, R::Tenant));
        assert!(v.applies(idx(Action::EntityRead), P::Citizen, R::Entity));
        assert!(v.applies(idx(Action::EntityRead), P::Citizen, R::Tenant));
        assert!(!v.applies(idx(Action::EntityRead), P::Citizen, R::Subject));
        assert!(v.applies(idx(Action::AggregateRead), P::Operator, R::Node));
        assert!(v.applies(idx(Action::SubjectErase), P::CityAdmin, R::Subject));
        assert!(!v.applies(idx(Action::SubjectErase), P::CityAdmin, R::Tenant));
        assert!(!v.applies(99, P::CityAdmin, R::Tenant));
    }
}
