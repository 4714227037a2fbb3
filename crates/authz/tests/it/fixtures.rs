//! Callers and resources shared by the tests: two cities, adelaide (the callers' own)
//! and melbourne (someone else's).

use polity_identity::Principal;
use polity_model::Tenant;
use polity_trust::{Caller, Context, EntityRef, Resource};

pub const ALICE: &str = "pn-alice";
pub const BOB: &str = "pn-bob";

pub fn tenant(name: &str) -> Tenant {
    Tenant::new(name).expect("valid tenant name")
}

pub fn adelaide() -> Tenant {
    tenant("adelaide")
}

pub fn melbourne() -> Tenant {
    tenant("melbourne")
}

pub fn citizen(tenant: Tenant, pseudonym: Option<&str>) -> Caller {
    Caller {
        principal: Some(Principal::Citizen {
            id: "alice@example.org".into(),
            tenant,
        }),
        pseudonym: pseudonym.map(str::to_owned),
    }
}

/// Every role the matrix covers, by label.
pub fn callers() -> Vec<(&'static str, Caller)> {
    vec![
        ("anonymous", Caller::anonymous()),
        ("operator", Caller::of(Principal::Operator)),
        ("security-analyst", Caller::of(Principal::SecurityAnalyst)),
        ("city-admin", Caller::of(Principal::CityAdmin(adelaide()))),
        (
            "city-analyst",
            Caller::of(Principal::CityAnalyst(adelaide())),
        ),
        (
            "app",
            Caller::of(Principal::Application {
                client_id: "parking-app".into(),
                tenants: vec![adelaide(), tenant("perth")],
            }),
        ),
        ("citizen", citizen(adelaide(), Some(ALICE))),
        ("citizen-no-pseudonym", citizen(adelaide(), None)),
    ]
}

pub fn entity(tenant: Tenant, id: &str, owner: Option<&str>) -> Resource {
    Resource::Entity(EntityRef {
        tenant,
        id: id.into(),
        entity_type: "https://smartdatamodels.org/dataModel.Parking/ParkingSpot".into(),
        owner: owner.map(str::to_owned),
    })
}

pub fn subject(tenant: Tenant, pseudonym: &str) -> Resource {
    Resource::Subject {
        tenant,
        pseudonym: pseudonym.into(),
    }
}

/// Every resource kind the matrix covers, by label, from the point of view of a caller
/// in adelaide whose pseudonym (if a citizen) is [`ALICE`].
pub fn resources() -> Vec<(&'static str, Resource)> {
    vec![
        ("node", Resource::Node),
        ("own-tenant", Resource::Tenant(adelaide())),
        ("other-tenant", Resource::Tenant(melbourne())),
        (
            "own-entity",
            entity(adelaide(), "urn:ngsi-ld:Vehicle:a1", Some(ALICE)),
        ),
        (
            "others-entity",
            entity(adelaide(), "urn:ngsi-ld:Vehicle:b1", Some(BOB)),
        ),
        (
            "unowned-entity",
            entity(adelaide(), "urn:ngsi-ld:ParkingSpot:1", None),
        ),
        // Same pseudonym string, other city: a pseudonym means nothing outside its city.
        (
            "other-tenant-entity",
            entity(melbourne(), "urn:ngsi-ld:Vehicle:a1", Some(ALICE)),
        ),
        ("own-subject", subject(adelaide(), ALICE)),
        ("other-subject", subject(adelaide(), BOB)),
        ("other-tenant-subject", subject(melbourne(), ALICE)),
    ]
}

/// The contexts the matrix covers, by label.
pub fn contexts() -> Vec<(&'static str, Context)> {
    vec![
        ("none", Context::default()),
        // A blank purpose is no purpose.
        (
            "blank-purpose",
            Context {
                purpose: Some(" \t ".into()),
                consent: false,
            },
        ),
        (
            "purpose",
            Context {
                purpose: Some("incident-4711".into()),
                consent: false,
            },
        ),
        (
            "consent",
            Context {
                purpose: None,
                consent: true,
            },
        ),
        (
            "both",
            Context {
                purpose: Some("incident-4711".into()),
                consent: true,
            },
        ),
    ]
}
