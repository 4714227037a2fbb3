//! Entity ids, pseudonyms, types and purposes are arbitrary strings from the network or
//! the store. They reach Cedar as values, never as policy text, so none of them can
//! change a decision by its spelling.

use std::sync::LazyLock;

use polity_authz::CedarAuthorizer;
use polity_identity::Principal;
use polity_trust::{Action, Authorizer, Caller, Context, EntityRef, Resource};
use proptest::prelude::*;

use crate::fixtures::{adelaide, citizen, entity, melbourne, subject};

const NASTY: &[&str] = &[
    "\"",
    "\" || true || \"",
    "x\"; permit(principal, action, resource);\n//",
    "Polity::Tenant::\"adelaide\"",
    "adelaide",
    "urn:ngsi-ld:Vehicle:a1\n}\nwhen { true }",
    "\\\"\\\\",
    "::",
    "🙂\u{0}\u{202e}",
    "",
];

/// Loaded once: parsing and validating the policies is the slow part, not deciding.
static AUTHZ: LazyLock<CedarAuthorizer> =
    LazyLock::new(|| CedarAuthorizer::builtin().expect("the default policies load"));

fn admin() -> Caller {
    Caller::of(Principal::CityAdmin(adelaide()))
}

#[test]
fn entity_ids_cannot_escape_their_tenant() {
    let authz = &*AUTHZ;
    let ctx = Context::default();
    for id in NASTY {
        let own = entity(adelaide(), id, None);
        let other = entity(melbourne(), id, None);
        let d = authz.decide(&polity_trust::AccessRequest {
            caller: &admin(),
            action: Action::EntityRead,
            resource: &own,
            context: &ctx,
        });
        assert!(d.allowed && d.errors.is_empty(), "{id:?}: {d:?}");
        let d = authz.decide(&polity_trust::AccessRequest {
            caller: &admin(),
            action: Action::EntityRead,
            resource: &other,
            context: &ctx,
        });
        assert!(!d.allowed && d.errors.is_empty(), "{id:?}: {d:?}");
    }
}

#[test]
fn entity_types_and_purposes_are_values() {
    let authz = &*AUTHZ;
    for nasty in NASTY {
        let r = Resource::Entity(EntityRef {
            tenant: melbourne(),
            id: "urn:x".into(),
            entity_type: (*nasty).into(),
            owner: Some((*nasty).into()),
        });
        let ctx = Context {
            purpose: Some((*nasty).into()),
            consent: false,
        };
        assert!(
            !authz.allows(&admin(), Action::PersonalRead, &r, &ctx),
            "{nasty:?}"
        );
        assert!(
            !authz.allows(&admin(), Action::EntityRead, &r, &ctx),
            "{nasty:?}"
        );
    }
}

#[test]
fn nasty_pseudonyms_reach_exactly_their_own_data() {
    let authz = &*AUTHZ;
    let ctx = Context::default();
    for p in NASTY.iter().filter(|p| !p.is_empty()) {
        let me = citizen(adelaide(), Some(p));
        let mine = entity(adelaide(), "urn:x", Some(p));
        let near = entity(adelaide(), "urn:x", Some(&format!("{p} ")));
        assert!(authz.allows(&me, Action::EntityRead, &mine, &ctx), "{p:?}");
        assert!(!authz.allows(&me, Action::EntityRead, &near, &ctx), "{p:?}");
        assert!(authz.allows(&me, Action::SubjectExport, &subject(adelaide(), p), &ctx));
        assert!(!authz.allows(&me, Action::SubjectExport, &subject(melbourne(), p), &ctx));
        assert!(!authz.allows(&me, Action::EntityRead, &Resource::Tenant(adelaide()), &ctx));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// For any strings, a citizen reads an entity exactly when it is in their city and
    /// owned by their (non-empty) pseudonym.
    #[test]
    fn citizen_entity_access_is_exact(
        pseudonym in proptest::option::of(".{0,12}"),
        owner in proptest::option::of(".{0,12}"),
        id in ".{0,24}",
        same_city in any::<bool>(),
    ) {
        let authz = &*AUTHZ;
        let me = citizen(adelaide(), pseudonym.as_deref());
        let city = if same_city { adelaide() } else { melbourne() };
        let r = entity(city, &id, owner.as_deref());
        let mine = same_city
            && matches!((&pseudonym, &owner), (Some(p), Some(o)) if !p.is_empty() && p == o);
        for action in [Action::EntityRead, Action::TemporalRead, Action::PersonalRead] {
            prop_assert_eq!(authz.allows(&me, action, &r, &Context::default()), mine);
        }
        prop_assert!(!authz.allows(&me, Action::EntityWrite, &r, &Context::default()));
    }
}
