//! The default policies against the intended matrix: every role × every action × every
//! resource kind × every context. The expectations are written out here, by hand, from
//! the matrix in issue #3; they are not derived from the policies.

use std::collections::BTreeSet;

use polity_authz::{CedarAuthorizer, DENY_BY_DEFAULT, EVALUATION_ERROR, NOT_APPLICABLE};
use polity_trust::{AccessRequest, Action, Authorizer};

use crate::fixtures::{callers, contexts, resources};

// Resource groups, spelled out once to keep the table readable.
// T-DATA: the own city as a whole and each of its entities, whoever owns them.
const T_DATA: &str = "own-tenant own-entity others-entity unowned-entity";
// ALL-DATA: both cities, as a whole and each entity.
const ALL_DATA: &str =
    "own-tenant other-tenant own-entity others-entity unowned-entity other-tenant-entity";

/// What each role may do: `"<action> <resource>… [if purpose|if consent]"`. Everything
/// not listed must be denied.
fn expected() -> Vec<(&'static str, Vec<String>)> {
    let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("anonymous", l(&["health.read node", "session.login node"])),
        (
            "operator",
            l(&[
                "health.read node",
                "session.login node",
                "overview.read node",
                "context.read node",
                "metrics.read node",
                "audit.read node",
                "context.manage node",
                "tenant.access own-tenant other-tenant",
                &format!("entity.read {ALL_DATA}"),
                &format!("temporal.read {ALL_DATA}"),
                &format!("types.read {ALL_DATA}"),
                &format!("aggregate.read node {ALL_DATA}"),
            ]),
        ),
        (
            "security-analyst",
            l(&[
                "health.read node",
                "session.login node",
                "overview.read node",
                "context.read node",
                "metrics.read node",
                "audit.read node",
                "aggregate.read node",
            ]),
        ),
        (
            "city-admin",
            l(&[
                "health.read node",
                "session.login node",
                "overview.read node",
                "context.read node",
                "context.manage node",
                "tenant.access own-tenant",
                &format!("entity.read {T_DATA}"),
                &format!("entity.write {T_DATA}"),
                &format!("temporal.read {T_DATA}"),
                &format!("types.read {T_DATA}"),
                &format!("aggregate.read {T_DATA}"),
                &format!("personal.read {T_DATA} if purpose"),
                "subject.export own-subject other-subject",
                "subject.erase own-subject other-subject",
            ]),
        ),
        (
            "city-analyst",
            l(&[
                "health.read node",
                "session.login node",
                "overview.read node",
                "context.read node",
                "tenant.access own-tenant",
                &format!("entity.read {T_DATA}"),
                &format!("temporal.read {T_DATA}"),
                &format!("types.read {T_DATA}"),
                &format!("aggregate.read {T_DATA}"),
            ]),
        ),
        (
            "app",
            l(&[
                "health.read node",
                "session.login node",
                "overview.read node",
                "context.read node",
                "tenant.access own-tenant",
                &format!("entity.read {T_DATA}"),
                &format!("entity.write {T_DATA}"),
                &format!("temporal.read {T_DATA}"),
                &format!("types.read {T_DATA}"),
                &format!("aggregate.read {T_DATA}"),
                &format!("personal.read {T_DATA} if consent"),
            ]),
        ),
        (
            "citizen",
            l(&[
                "health.read node",
                "session.login node",
                "overview.read node",
                "context.read node",
                "tenant.access own-tenant",
                "entity.read own-entity",
                "temporal.read own-entity",
                "personal.read own-entity",
                "audit.read-own own-subject",
                "consent.manage own-subject",
                "subject.export own-subject",
                "subject.erase own-subject",
            ]),
        ),
        (
            "citizen-no-pseudonym",
            l(&[
                "health.read node",
                "session.login node",
                "overview.read node",
                "context.read node",
                "tenant.access own-tenant",
            ]),
        ),
    ]
}

/// One parsed line of the table.
struct Allowed {
    action: String,
    resources: BTreeSet<String>,
    condition: Option<String>,
}

fn parse(line: &str) -> Allowed {
    let (body, condition) = match line.split_once(" if ") {
        Some((b, c)) => (b, Some(c.to_owned())),
        None => (line, None),
    };
    let mut words = body.split_whitespace();
    let action = words.next().expect("an action").to_owned();
    Allowed {
        action,
        resources: words.map(str::to_owned).collect(),
        condition,
    }
}

fn condition_holds(condition: Option<&str>, context: &str) -> bool {
    match condition {
        None => true,
        Some("purpose") => matches!(context, "purpose" | "both"),
        Some("consent") => matches!(context, "consent" | "both"),
        Some(other) => panic!("unknown condition `{other}` in the expected table"),
    }
}

#[test]
fn the_table_only_names_known_roles_actions_resources() {
    let roles: BTreeSet<_> = callers().into_iter().map(|(l, _)| l).collect();
    let actions: BTreeSet<_> = Action::ALL.iter().map(|a| a.name()).collect();
    let resources: BTreeSet<_> = resources().into_iter().map(|(l, _)| l).collect();
    let table = expected();
    assert_eq!(
        table.iter().map(|(r, _)| *r).collect::<BTreeSet<_>>(),
        roles,
        "every role has a row"
    );
    for (_, lines) in &table {
        for line in lines {
            let a = parse(line);
            assert!(
                actions.contains(a.action.as_str()),
                "unknown action in `{line}`"
            );
            assert!(!a.resources.is_empty(), "no resource in `{line}`");
            for r in &a.resources {
                assert!(
                    resources.contains(r.as_str()),
                    "unknown resource in `{line}`"
                );
            }
        }
    }
}

#[test]
fn default_policies_follow_the_matrix() {
    let authz = CedarAuthorizer::builtin().expect("the default policies load");
    let table = expected();
    let mut mismatches = Vec::new();
    let mut allowed_count = 0;
    let mut total = 0;
    for (role, caller) in callers() {
        let lines: Vec<Allowed> = table
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, l)| l.iter().map(|s| parse(s)).collect())
            .unwrap_or_default();
        for action in Action::ALL {
            for (resource_label, resource) in resources() {
                for (context_label, context) in contexts() {
                    total += 1;
                    let want = lines.iter().any(|a| {
                        a.action == action.name()
                            && a.resources.contains(resource_label)
                            && condition_holds(a.condition.as_deref(), context_label)
                    });
                    let decision = authz.decide(&AccessRequest {
                        caller: &caller,
                        action: *action,
                        resource: &resource,
                        context: &context,
                    });
                    if decision.allowed != want || !decision.errors.is_empty() {
                        mismatches.push(format!(
                            "{role} {action} {resource_label} [{context_label}]: expected {}, got {} {:?} {:?}",
                            if want { "allow" } else { "deny" },
                            if decision.allowed { "allow" } else { "deny" },
                            decision.reasons,
                            decision.errors,
                        ));
                    }
                    if decision.allowed {
                        allowed_count += 1;
                        for reason in &decision.reasons {
                            assert!(
                                ![DENY_BY_DEFAULT, NOT_APPLICABLE, EVALUATION_ERROR]
                                    .contains(&reason.as_str()),
                                "an allow must name its permits: {role} {action} {resource_label}"
                            );
                        }
                    }
                    assert!(!decision.reasons.is_empty());
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {total} decisions differ from the matrix:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The matrix is mostly denies; make sure it is not all of them.
    assert!(allowed_count > 100, "only {allowed_count} allows");
}
