//! The actions routes ask about, and the scope a route's first check applies to.

use std::fmt;

/// An action, named as in the Cedar schema (`Polity::Action::"entity.read"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `/health`: liveness for probes and load balancers.
    HealthRead,
    /// The browser sign-in page and its form (`/login`, `/logout`), which exchange a
    /// token the user already holds for a session cookie.
    SessionLogin,
    /// The national overview page and its data (aggregates only).
    OverviewRead,
    /// `/metrics`: operational counters.
    MetricsRead,
    /// Act in a tenant at all: the `NGSILD-Tenant` gate.
    TenantAccess,
    /// Read entities (current state).
    EntityRead,
    /// Create or update entities, or push observations.
    EntityWrite,
    /// Read temporal evolution.
    TemporalRead,
    /// Read type and attribute discovery.
    TypesRead,
    /// Read attributes classed personal or sensitive, in clear.
    PersonalRead,
    /// Read privacy-preserving aggregates (k-suppressed, differentially private).
    AggregateRead,
    /// Read the whole audit log.
    AuditRead,
    /// Read the audit entries about oneself, with proofs.
    AuditReadOwn,
    /// Grant, list and withdraw one's consents.
    ConsentManage,
    /// Export all data about a subject (GDPR Art. 15 and 20).
    SubjectExport,
    /// Erase a subject's data (crypto-shredding).
    SubjectErase,
    /// Read the JSON-LD `@context`s the node holds (`/jsonldContexts`).
    ContextRead,
    /// Add, delete and reload `@context`s on the node.
    ContextManage,
}

impl Action {
    /// Every action, for schema checks and exhaustive tests.
    pub const ALL: &'static [Action] = &[
        Action::HealthRead,
        Action::SessionLogin,
        Action::OverviewRead,
        Action::MetricsRead,
        Action::TenantAccess,
        Action::EntityRead,
        Action::EntityWrite,
        Action::TemporalRead,
        Action::TypesRead,
        Action::PersonalRead,
        Action::AggregateRead,
        Action::AuditRead,
        Action::AuditReadOwn,
        Action::ConsentManage,
        Action::SubjectExport,
        Action::SubjectErase,
        Action::ContextRead,
        Action::ContextManage,
    ];

    /// The Cedar action id.
    pub fn name(self) -> &'static str {
        match self {
            Action::HealthRead => "health.read",
            Action::SessionLogin => "session.login",
            Action::OverviewRead => "overview.read",
            Action::MetricsRead => "metrics.read",
            Action::TenantAccess => "tenant.access",
            Action::EntityRead => "entity.read",
            Action::EntityWrite => "entity.write",
            Action::TemporalRead => "temporal.read",
            Action::TypesRead => "types.read",
            Action::PersonalRead => "personal.read",
            Action::AggregateRead => "aggregate.read",
            Action::AuditRead => "audit.read",
            Action::AuditReadOwn => "audit.read-own",
            Action::ConsentManage => "consent.manage",
            Action::SubjectExport => "subject.export",
            Action::SubjectErase => "subject.erase",
            Action::ContextRead => "context.read",
            Action::ContextManage => "context.manage",
        }
    }

    /// Whether performing this action is a privileged action that is always audited.
    pub fn is_privileged(self) -> bool {
        matches!(
            self,
            Action::AuditRead | Action::SubjectExport | Action::SubjectErase
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a route's first (route-level) check applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The node as a whole: the route's action on [`crate::Resource::Node`]. Callers
    /// without a token get this check too (for `/health`).
    Node,
    /// One tenant's data: [`Action::TenantAccess`] on the tenant named by
    /// `NGSILD-Tenant` (or the node's default tenant); the handler then checks the
    /// route's action per object.
    Tenant,
    /// The caller's own records as a data subject: the route's action on
    /// [`crate::Resource::Subject`] of the caller.
    Own,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Action::ALL.iter().map(|a| a.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
    }
}
