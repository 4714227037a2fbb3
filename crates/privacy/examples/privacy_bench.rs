//! Throughput of the privacy mechanisms on this machine: pseudonyms per second, and
//! vault seals and opens per second (256-byte records, keys cached), each the median
//! of 5 runs.
//!
//! ```text
//! cargo run --release -p polity-privacy --example privacy_bench
//! ```

use std::hint::black_box;
use std::time::Instant;

use polity_model::Tenant;
use polity_privacy::{
    CitizenVault, IdentifierKind, KeyDir, LocationPolicy, Pseudonymizer, coarsen_point,
};

const RUNS: usize = 5;
const N: usize = 200_000;
const SUBJECTS: usize = 1_000;

fn median_rate(mut f: impl FnMut() -> usize) -> f64 {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let n = f();
            n as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let keys = KeyDir::open(dir.path())?;
    let tenant = Tenant::new("adelaide")?;
    let pseudonyms = Pseudonymizer::new(keys.clone());
    let vault = CitizenVault::new(keys);

    let plates: Vec<String> = (0..N)
        .map(|i| format!("SA {:03}-{:03}", i / 1000, i % 1000))
        .collect();
    let macs: Vec<String> = (0..N)
        .map(|i| {
            let b = (i as u64).to_be_bytes();
            format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", b[4], b[5], b[6], b[7])
        })
        .collect();

    let plate_rate = median_rate(|| {
        for p in &plates {
            black_box(
                pseudonyms
                    .pseudonymize(&tenant, "parking", IdentifierKind::LicencePlate, p)
                    .ok(),
            );
        }
        N
    });
    let mac_rate = median_rate(|| {
        for m in &macs {
            black_box(
                pseudonyms
                    .pseudonymize(&tenant, "wifi", IdentifierKind::MacAddress, m)
                    .ok(),
            );
        }
        N
    });

    let subjects: Vec<String> = (0..SUBJECTS)
        .map(|i| {
            pseudonyms
                .pseudonymize(
                    &tenant,
                    "citizen",
                    IdentifierKind::PersonLink,
                    &format!("c{i}"),
                )
                .map(|p| p.to_string())
        })
        .collect::<Result<_, _>>()?;
    let record = [0x5a_u8; 256];
    // Create the subjects' keys outside the timing.
    for s in &subjects {
        vault.seal(&tenant, s, b"warm-up", b"")?;
    }
    let mut envelopes = Vec::with_capacity(N);
    let seal_rate = median_rate(|| {
        envelopes.clear();
        for i in 0..N {
            let s = &subjects[i % SUBJECTS];
            envelopes.push(vault.seal(&tenant, s, &record, b"attr").unwrap_or_default());
        }
        N
    });
    let open_rate = median_rate(|| {
        for (i, e) in envelopes.iter().enumerate() {
            let s = &subjects[i % SUBJECTS];
            black_box(vault.open(&tenant, s, e, b"attr").ok());
        }
        N
    });
    let policy = LocationPolicy::default();
    let coarsen_rate = median_rate(|| {
        for i in 0..N {
            let x = i as f64 * 1e-5;
            black_box(coarsen_point(138.5 + x, -34.9 - x, policy).ok());
        }
        N
    });

    println!("polity-privacy, median of {RUNS} runs of {N} operations each");
    let rows = [
        ("pseudonymize, licence plate".to_string(), plate_rate),
        ("pseudonymize, MAC address".to_string(), mac_rate),
        (format!("vault seal, 256 B, {SUBJECTS} subjects"), seal_rate),
        (format!("vault open, 256 B, {SUBJECTS} subjects"), open_rate),
        ("coarsen_point, 500 m grid".to_string(), coarsen_rate),
    ];
    for (what, rate) in rows {
        println!("{what:<36} {rate:>12.0} /s");
    }
    Ok(())
}
