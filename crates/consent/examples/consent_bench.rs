//! Measures the consent check and durable grants.
//!
//! `cargo run --release -p polity-consent --example consent_bench`
//!
//! - `permits`: 100,000 citizens with two consents each in one tenant; checks cycle
//!   through them, three hits to one miss (wrong purpose). Single thread.
//! - `grant`: each grant signs a receipt and fsyncs one line, as in production.
//!
//! Each figure is the median of 5 runs.

use std::{hint::black_box, time::Instant};

use polity_consent::{ConsentRequest, ConsentStore, DataCategory, PiiController, Purpose};
use polity_model::{Tenant, Timestamp};

const CITIZENS: usize = 100_000;
const CHECKS: usize = 2_000_000;
const GRANTS: usize = 200;
const RUNS: usize = 5;

fn request(tenant: &Tenant, subject: String, purpose: Purpose) -> ConsentRequest {
    ConsentRequest {
        tenant: tenant.clone(),
        subject,
        recipient: "app:parking-app:adelaide".into(),
        purpose,
        purpose_description: None,
        data_categories: vec![DataCategory::ParkingSession, DataCategory::Location],
        duration_days: 180,
        jurisdiction: "AU-SA".into(),
        collection_method: "citizen portal opt-in form".into(),
        policy_url: "https://adelaide.example/privacy".into(),
        language: "en-AU".into(),
        pii_controller: PiiController::named("City of Adelaide"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tenant = Tenant::new("adelaide")?;
    let now = Timestamp::parse("2026-03-01T10:00:00Z")?;

    // Grants: a fresh store per run so that every run does the same work.
    let mut grant_rates = Vec::new();
    for run in 0..RUNS {
        let dir = tempfile::tempdir()?;
        let store = ConsentStore::open(dir.path())?;
        let t0 = Instant::now();
        for i in 0..GRANTS {
            store.grant(
                request(&tenant, format!("g{run}-{i}"), Purpose::Billing),
                now,
            )?;
        }
        grant_rates.push(GRANTS as f64 / t0.elapsed().as_secs_f64());
    }

    // Checks: load many citizens without paying an fsync each, by replaying a file.
    let dir = tempfile::tempdir()?;
    let store = ConsentStore::open(dir.path())?;
    let t0 = Instant::now();
    let mut lines = String::new();
    {
        // Write the event file through a store for the first few, then copy lines with
        // fresh ids (the store's own format) to reach CITIZENS quickly.
        let (template, _) = store.grant(
            request(&tenant, "c0".into(), Purpose::ServiceProvision),
            now,
        )?;
        drop(store);
        let text = std::fs::read_to_string(dir.path().join(polity_consent::store::EVENTS_FILE))?;
        let line = text.trim_end();
        let id = template.consent_id.to_string();
        lines.push_str(line);
        lines.push('\n');
        for i in 0..CITIZENS {
            for (k, purpose) in [(1u8, "service-provision"), (2, "billing")] {
                if i == 0 && k == 1 {
                    continue;
                }
                let new_id = format!("{:030x}{k:02x}", i);
                let l = line
                    .replace(&id, &new_id)
                    .replace("\"c0\"", &format!("\"c{i}\""))
                    .replace("\"service-provision\"", &format!("\"{purpose}\""));
                lines.push_str(&l);
                lines.push('\n');
            }
        }
    }
    std::fs::write(dir.path().join(polity_consent::store::EVENTS_FILE), &lines)?;
    let store = ConsentStore::open(dir.path())?;
    let load = t0.elapsed();
    let subjects: Vec<String> = (0..CITIZENS).map(|i| format!("c{i}")).collect();
    let recipient = "app:parking-app:adelaide";

    let mut check_rates = Vec::new();
    let mut hits = 0usize;
    for _ in 0..RUNS {
        hits = 0;
        let t0 = Instant::now();
        for n in 0..CHECKS {
            let subject = &subjects[n % CITIZENS];
            let purpose = if n % 4 == 3 {
                Purpose::Research
            } else {
                Purpose::ServiceProvision
            };
            if black_box(store.permits(
                &tenant,
                subject,
                recipient,
                purpose,
                DataCategory::Location,
                now,
            ))
            .is_some()
            {
                hits += 1;
            }
        }
        check_rates.push(CHECKS as f64 / t0.elapsed().as_secs_f64());
    }
    assert_eq!(hits, CHECKS / 4 * 3, "the check answered wrongly");

    println!("consent store, median of {RUNS} runs");
    println!(
        "  permits: {:>12.0} checks/s  ({CITIZENS} citizens, {} consents, 3 hits : 1 miss)",
        median(check_rates),
        2 * CITIZENS
    );
    println!(
        "  grant:   {:>12.0} grants/s  (signed receipt + fsync each, {GRANTS} per run)",
        median(grant_rates)
    );
    println!(
        "  open:    {:>12.2} s to write and replay {} events",
        load.as_secs_f64(),
        2 * CITIZENS
    );
    Ok(())
}
