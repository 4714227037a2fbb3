//! Integration tests for the audit log: real files in a temporary directory.

mod bundle;
mod proofs;
mod reads;
mod tamper;
mod writer;

use std::path::Path;

use polity_audit::{AuditEntry, AuditLog};
use polity_model::{Tenant, Timestamp};

/// A plausible personal-data access, varied by `i`.
pub fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        at: Timestamp::from_millis(1_780_000_000_000 + i as i64),
        actor: format!("user:clerk-{}", i % 7),
        action: if i.is_multiple_of(5) {
            "export"
        } else {
            "read"
        }
        .into(),
        tenant: Some(Tenant::new("santander").expect("valid tenant")),
        subject: Some(format!(
            "citizen:{:016x}",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )),
        resource: format!("/ngsi-ld/v1/entities/urn:ngsi-ld:Person:{i}"),
        purpose: Some("benefit-eligibility".into()),
        outcome: "allowed".into(),
    }
}

/// An access to the data of citizen `subject` by clerk `i % 3`.
pub fn access(i: u64, subject: &str) -> AuditEntry {
    AuditEntry {
        subject: Some(subject.to_owned()),
        actor: format!("user:clerk-{}", i % 3),
        ..entry(i)
    }
}

/// A log of `n` entries, appended in batches, with its head published.
pub fn log_with(dir: &Path, n: u64) -> AuditLog {
    let mut log = AuditLog::open(dir).expect("open");
    let all: Vec<_> = (0..n).map(entry).collect();
    for chunk in all.chunks(500) {
        log.append_batch(chunk).expect("append");
    }
    log.publish_head().expect("publish");
    log
}
