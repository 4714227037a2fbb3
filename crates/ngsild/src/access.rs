//! Object-level authorization of the NGSI-LD routes: which entities a caller sees or
//! may write, which attributes reach them in clear, and the audit entries that personal
//! data leaves behind.
//!
//! The gate (`polity_trust::Gate`) has already checked that the caller may act in the
//! request's tenant. Here each handler asks, once per request, whether the caller may do
//! its action on the whole tenant; only if not does it ask per entity (citizens see the
//! entities they own). Attributes classed personal or sensitive are left out unless the
//! caller may `personal.read` the entity, and every release of them is audited, with
//! the owner's pseudonym as the subject, before the response leaves.
//!
//! Entities a caller may not see are answered exactly like entities that do not exist.

use std::sync::Arc;

use polity_ingest::protect::{SEALED_PREFIX, owner_link, seal_aad};
use polity_model::{EntityState, Observation, PrivacyClass, Tenant, Value};
use polity_privacy::CitizenVault;
use polity_trust::{Access, Action, EntityRef};

/// The pseudonym of the citizen `state` belongs to (its `owner` link, pseudonymized at
/// ingest), if any.
pub fn owner_of(state: &EntityState) -> Option<String> {
    state.attrs.iter().find_map(owner_link)
}

/// An entity as the authorizer sees it.
pub fn entity_ref(tenant: &Tenant, state: &EntityState) -> EntityRef {
    EntityRef {
        tenant: tenant.clone(),
        id: state.id.as_str().to_owned(),
        entity_type: state.entity_type.to_string(),
        owner: owner_of(state),
    }
}

/// The consent data category of an entity type (Smart Data Models), if it has one.
pub fn category_of(entity_type: &str) -> Option<polity_consent::DataCategory> {
    use polity_consent::DataCategory::*;
    let short = entity_type.rsplit(['/', '#']).next().unwrap_or(entity_type);
    Some(match short {
        "WaterConsumptionObserved" | "WaterMeter" => WaterConsumption,
        "ACMeasurement" | "EnergyMeter" | "ThreePhaseAcMeasurement" => EnergyConsumption,
        "ParkingSpot" | "ParkingSession" | "OnStreetParking" => ParkingSession,
        "Vehicle" | "TrafficFlowObserved" => Mobility,
        _ => return None,
    })
}

/// Whether an attribute is personal data.
fn is_personal(class: PrivacyClass) -> bool {
    !matches!(class, PrivacyClass::Public)
}

/// The answers for one request, asked once and reused for every entity it touches.
pub struct View<'a> {
    access: &'a Access,
    vault: Option<Arc<CitizenVault>>,
    consents: Option<Arc<polity_consent::ConsentStore>>,
    action: Action,
    all: bool,
    all_personal: bool,
    /// Audit entries for personal data released so far.
    released: Vec<polity_audit::AuditEntry>,
}

impl<'a> View<'a> {
    /// The view of a read handler: sealed values opened with the node's vault, and
    /// applications' access to personal data decided by the subjects' consents.
    pub fn reading(access: &'a Access, action: Action, st: &crate::ApiState) -> Self {
        Self::new(access, action, st.vault.clone()).with_consents(st.consents.clone())
    }

    /// The view of `access` for `action` (a read or write action); sealed personal
    /// values are opened with `vault`.
    pub fn new(access: &'a Access, action: Action, vault: Option<Arc<CitizenVault>>) -> Self {
        View {
            access,
            vault,
            consents: None,
            action,
            all: access.on_tenant(action),
            all_personal: access.on_tenant(Action::PersonalRead),
            released: Vec::new(),
        }
    }

    /// Lets the data subjects' consents count: an application may read a citizen's
    /// personal data when the citizen consented to it, for the declared purpose and
    /// the entity's data category.
    pub fn with_consents(mut self, consents: Option<Arc<polity_consent::ConsentStore>>) -> Self {
        self.consents = consents;
        self
    }

    /// Whether a consent of `r`'s owner covers this caller, purpose and entity type.
    fn consented(&self, r: &EntityRef) -> bool {
        let (Some(store), Some(owner), Some(p)) =
            (&self.consents, &r.owner, &self.access.caller.principal)
        else {
            return false;
        };
        if !matches!(p, polity_identity::Principal::Application { .. }) {
            return false;
        }
        let Some(purpose) = self
            .access
            .context
            .purpose
            .as_deref()
            .and_then(|s| s.parse::<polity_consent::Purpose>().ok())
        else {
            return false;
        };
        let Some(category) = category_of(&r.entity_type) else {
            return false;
        };
        store
            .permits(
                &r.tenant,
                owner,
                &p.to_string(),
                purpose,
                category,
                polity_model::Timestamp::now(),
            )
            .is_some()
    }

    /// Whether the caller may do the view's action on every entity of the tenant.
    pub fn on_all(&self) -> bool {
        self.all
    }

    /// Whether the caller may do the view's action on `e`.
    pub fn allows(&self, e: &EntityRef) -> bool {
        self.all || self.access.on_entity(self.action, e)
    }

    /// Whether the caller may see `state` at all.
    pub fn sees(&self, tenant: &Tenant, state: &EntityState) -> bool {
        self.all
            || self
                .access
                .on_entity(self.action, &entity_ref(tenant, state))
    }

    /// `state` as the caller may see it: personal and sensitive attributes are removed
    /// unless `personal.read` allows them; released ones are noted for the audit log.
    pub fn redact(&mut self, tenant: &Tenant, mut state: EntityState) -> EntityState {
        let r = entity_ref(tenant, &state);
        self.redact_attrs(&r, &mut state.attrs);
        state
    }

    /// Removes or opens the personal instances among `attrs` (entity state or series)
    /// of entity `r`, as [`View::redact`] does.
    pub fn redact_attrs(&mut self, r: &EntityRef, attrs: &mut Vec<Observation>) {
        if !attrs.iter().any(|a| is_personal(a.privacy)) {
            return;
        }
        let allowed = self.all_personal
            || self.access.on_entity(Action::PersonalRead, r)
            || (self.consented(r)
                && self.access.allows_in(
                    Action::PersonalRead,
                    &polity_trust::Resource::Entity(r.clone()),
                    &polity_trust::Context {
                        purpose: self.access.context.purpose.clone(),
                        consent: true,
                    },
                ));
        if allowed {
            self.open_sealed(r, attrs);
            let mut names: Vec<&str> = attrs
                .iter()
                .filter(|a| is_personal(a.privacy))
                .map(|a| &*a.attr)
                .collect();
            names.dedup();
            let mut entry = self.access.entry(
                Action::PersonalRead.name(),
                format!("{} {}", r.id, names.join(",")),
                "released",
            );
            entry.subject = r.owner.clone();
            entry.tenant = Some(r.tenant.clone());
            self.released.push(entry);
        } else {
            attrs.retain(|a| !is_personal(a.privacy));
        }
    }

    /// Opens values sealed with the owner's key; a value that cannot be opened (the
    /// owner's key was erased) is left out.
    fn open_sealed(&self, r: &EntityRef, attrs: &mut Vec<Observation>) {
        attrs.retain_mut(|a| {
            let Value::Text(t) = &a.value else {
                return true;
            };
            if !t.starts_with(SEALED_PREFIX) || !is_personal(a.privacy) {
                return true;
            }
            let (Some(vault), Some(owner)) = (&self.vault, &r.owner) else {
                return false;
            };
            let opened = vault
                .open(&r.tenant, owner, t, &seal_aad(&r.id, &a.attr))
                .ok()
                .and_then(|plain| serde_json::from_slice::<Value>(&plain).ok());
            match opened {
                Some(v) => {
                    a.value = v;
                    true
                }
                None => false,
            }
        });
    }

    /// Writes the audit entries of the personal data released; false if the audit log
    /// failed, in which case the handler must not send the data.
    pub async fn audit(self) -> bool {
        self.access.audit(self.released).await
    }
}
