//! Measures decisions per second of the default policies on a mix of requests (every
//! role × action × resource kind, allowed and denied), median of 5 runs.
//!
//! ```text
//! cargo run --release -p polity-authz --example authz_bench [-- DECISIONS_PER_RUN]
//! ```

use std::time::Instant;

use polity_authz::CedarAuthorizer;
use polity_identity::Principal;
use polity_model::Tenant;
use polity_trust::{AccessRequest, Action, Authorizer, Caller, Context, EntityRef, Resource};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let per_run: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let adelaide = Tenant::new("adelaide")?;
    let melbourne = Tenant::new("melbourne")?;
    let callers = [
        Caller::anonymous(),
        Caller::of(Principal::Operator),
        Caller::of(Principal::SecurityAnalyst),
        Caller::of(Principal::CityAdmin(adelaide.clone())),
        Caller::of(Principal::CityAnalyst(adelaide.clone())),
        Caller::of(Principal::Application {
            client_id: "parking-app".into(),
            tenants: vec![adelaide.clone()],
        }),
        Caller {
            principal: Some(Principal::Citizen {
                id: "alice".into(),
                tenant: adelaide.clone(),
            }),
            pseudonym: Some("pn-alice".into()),
        },
    ];
    let entity = |tenant: &Tenant, owner: Option<&str>| {
        Resource::Entity(EntityRef {
            tenant: tenant.clone(),
            id: "urn:ngsi-ld:Vehicle:1".into(),
            entity_type: "Vehicle".into(),
            owner: owner.map(str::to_owned),
        })
    };
    let resources = [
        Resource::Node,
        Resource::Tenant(adelaide.clone()),
        Resource::Tenant(melbourne.clone()),
        entity(&adelaide, Some("pn-alice")),
        entity(&adelaide, None),
        entity(&melbourne, Some("pn-alice")),
        Resource::Subject {
            tenant: adelaide.clone(),
            pseudonym: "pn-alice".into(),
        },
    ];
    let context = Context {
        purpose: Some("maintenance".into()),
        consent: false,
    };
    let mut requests = Vec::new();
    for caller in &callers {
        for action in Action::ALL {
            for resource in &resources {
                requests.push((caller, *action, resource));
            }
        }
    }

    let started = Instant::now();
    let authz = CedarAuthorizer::builtin()?;
    println!(
        "loaded {} policies in {:.1} ms; {} distinct requests",
        authz.summary().policies(),
        started.elapsed().as_secs_f64() * 1e3,
        requests.len()
    );

    // The same mix without the requests the schema rules out before Cedar runs (e.g.
    // metrics.read on a tenant), to show the cost of a real evaluation.
    let applicable: Vec<_> = requests
        .iter()
        .copied()
        .filter(|(caller, action, resource)| {
            let d = authz.decide(&AccessRequest {
                caller,
                action: *action,
                resource,
                context: &context,
            });
            !d.reasons.iter().any(|r| r == polity_authz::NOT_APPLICABLE)
        })
        .collect();
    for (label, mix) in [("all", &requests), ("applicable only", &applicable)] {
        println!("mix: {label} ({} distinct requests)", mix.len());
        let mut rates = Vec::new();
        for run in 1..=5 {
            let mut allowed = 0usize;
            let started = Instant::now();
            for i in 0..per_run {
                let (caller, action, resource) = mix[i % mix.len()];
                let decision = authz.decide(&AccessRequest {
                    caller,
                    action,
                    resource,
                    context: &context,
                });
                allowed += usize::from(decision.allowed);
            }
            let secs = started.elapsed().as_secs_f64();
            let rate = per_run as f64 / secs;
            println!(
                "  run {run}: {per_run} decisions ({allowed} allowed) in {secs:.3} s = {rate:.0}/s"
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "  median: {:.0} decisions/s ({:.2} µs each)",
            rates[2],
            1e6 / rates[2]
        );
    }
    Ok(())
}
