//! The resources actions apply to.

use polity_model::Tenant;

/// One entity, as far as authorization needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRef {
    /// Its tenant.
    pub tenant: Tenant,
    /// Its NGSI-LD id.
    pub id: String,
    /// Its NGSI-LD type (short name or expanded IRI).
    pub entity_type: String,
    /// The pseudonym of the citizen it belongs to, if it belongs to one.
    pub owner: Option<String>,
}

/// What an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The node itself (pages, metrics, the whole audit log).
    Node,
    /// All data of one tenant (city).
    Tenant(Tenant),
    /// One entity.
    Entity(EntityRef),
    /// A data subject's own records (consents, access log, export).
    Subject {
        /// The subject's city.
        tenant: Tenant,
        /// The subject's pseudonym in that city.
        pseudonym: String,
    },
}

impl Resource {
    /// The tenant the resource lies in, if any.
    pub fn tenant(&self) -> Option<&Tenant> {
        match self {
            Resource::Node => None,
            Resource::Tenant(t) => Some(t),
            Resource::Entity(e) => Some(&e.tenant),
            Resource::Subject { tenant, .. } => Some(tenant),
        }
    }
}
