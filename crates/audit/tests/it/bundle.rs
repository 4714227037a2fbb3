//! A citizen's access report: it verifies, and every kind of tampering with it fails.

use polity_audit::head::{signing_bytes, to_hex};
use polity_audit::{AuditLog, BundleError, ProofBundle, verify_bundle};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::access;

const ANA: &str = "citizen:ana";

/// A log of `n` entries where every fourth is about Ana.
fn log_about_ana(dir: &std::path::Path, n: u64) -> AuditLog {
    let mut log = AuditLog::open(dir).unwrap();
    let batch: Vec<_> = (0..n)
        .map(|i| access(i, if i % 4 == 1 { ANA } else { "citizen:other" }))
        .collect();
    log.append_batch(&batch).unwrap();
    log
}

fn other_key() -> Ed25519KeyPair {
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap()
}

#[test]
fn a_bundle_lists_every_entry_about_the_subject_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_about_ana(dir.path(), 50);
    let key = log.public_key();
    let bundle = log.access_report(ANA).unwrap();
    assert_eq!(
        bundle.head.tree_size, 50,
        "a fresh head covers the newest entry"
    );
    assert_eq!(log.latest_head(), Some(&bundle.head), "and was published");
    let indices: Vec<u64> = bundle.entries.iter().map(|e| e.index).collect();
    assert_eq!(indices, (0..50).filter(|i| i % 4 == 1).collect::<Vec<_>>());
    for e in &bundle.entries {
        assert_eq!(e.entry, access(e.index, ANA));
    }
    verify_bundle(&bundle, Some(&key)).unwrap();
    verify_bundle(&bundle, None).unwrap();

    // A citizen with no entries gets an empty, still signed, bundle.
    let empty = log.access_report("citizen:nobody").unwrap();
    assert!(empty.entries.is_empty());
    verify_bundle(&empty, Some(&key)).unwrap();
}

#[test]
fn the_published_head_is_reused_while_it_covers_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_about_ana(dir.path(), 10);
    let published = log.publish_head().unwrap();
    assert_eq!(log.access_report(ANA).unwrap().head, published);
    drop(log);
    // Also after reopening: sth.json is recognised as this log's head.
    let mut log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.latest_head(), Some(&published));
    assert_eq!(log.access_report(ANA).unwrap().head, published);
    log.append(&access(10, ANA)).unwrap();
    let fresh = log.access_report(ANA).unwrap();
    assert_eq!(fresh.head.tree_size, 11);
    assert_eq!(fresh.entries.last().map(|e| e.index), Some(10));
    verify_bundle(&fresh, Some(&log.public_key())).unwrap();
}

#[test]
fn the_bundle_round_trips_as_json_with_hex_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_about_ana(dir.path(), 20);
    let bundle = log.access_report(ANA).unwrap();
    let json = serde_json::to_string_pretty(&bundle).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["public_key"].as_str().unwrap().len(), 64);
    assert_eq!(v["entries"][0]["leaf_hash"].as_str().unwrap().len(), 64);
    assert_eq!(v["entries"][0]["entry"]["purpose"], "benefit-eligibility");
    let back: ProofBundle = serde_json::from_str(&json).unwrap();
    assert_eq!(back, bundle);
    verify_bundle(&back, Some(&log.public_key())).unwrap();
}

#[test]
fn editing_an_entrys_purpose_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_about_ana(dir.path(), 30);
    let bundle = log.access_report(ANA).unwrap();
    let key = log.public_key();

    // In the readable entry.
    let mut b = bundle.clone();
    b.entries[2].entry.purpose = Some("law-enforcement".into());
    let index = b.entries[2].index;
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::EntryAltered { index })
    );

    // In the logged bytes too, so both agree: the leaf hash no longer matches.
    let mut b = bundle.clone();
    b.entries[2].entry.purpose = Some("law-enforcement".into());
    b.entries[2].entry_json = b.entries[2]
        .entry_json
        .replace("benefit-eligibility", "law-enforcement");
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::LeafMismatch { index })
    );

    // And with the leaf hash recomputed: the proof no longer leads to the root.
    b.entries[2].leaf_hash = to_hex(&polity_audit::merkle::leaf_hash(
        b.entries[2].entry_json.as_bytes(),
    ));
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::ProofFailed { index })
    );
}

#[test]
fn removing_reordering_or_borrowing_entries_is_caught_where_it_can_be() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_about_ana(dir.path(), 30);
    let bundle = log.access_report(ANA).unwrap();
    let key = log.public_key();

    let mut b = bundle.clone();
    b.entries.swap(0, 1);
    assert!(matches!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::OutOfOrder { .. })
    ));

    // Someone else's entry, with a genuine proof, does not belong in Ana's bundle.
    let other = log.access_report("citizen:other").unwrap();
    let mut b = bundle.clone();
    b.entries[0] = other.entries[0].clone();
    let index = other.entries[0].index;
    assert!(index < bundle.entries[1].index);
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::WrongSubject { index })
    );

    // Dropping an entry still verifies: a bundle cannot prove completeness.
    let mut b = bundle.clone();
    b.entries.remove(1);
    assert_eq!(verify_bundle(&b, Some(&key)), Ok(()));
}

#[test]
fn a_proof_against_another_head_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_about_ana(dir.path(), 30);
    let old = log.access_report(ANA).unwrap();
    log.append_batch(&(30..45).map(|i| access(i, ANA)).collect::<Vec<_>>())
        .unwrap();
    let new = log.access_report(ANA).unwrap();
    assert_eq!(new.head.tree_size, 45);
    let key = log.public_key();

    // The old entries and proofs under the new (genuine, validly signed) head.
    let mut b = old.clone();
    b.head = new.head.clone();
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::ProofFailed {
            index: old.entries[0].index
        })
    );
    // A new entry under the old head lies outside it.
    let mut b = old.clone();
    b.entries.push(new.entries.last().unwrap().clone());
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::OutsideHead {
            index: 44,
            tree_size: 30
        })
    );
}

#[test]
fn a_head_signed_by_another_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log_about_ana(dir.path(), 12);
    let bundle = log.access_report(ANA).unwrap();
    let key = log.public_key();
    let forger = other_key();
    let root = bundle.head.root().unwrap();
    let forged_sig = forger.sign(&signing_bytes(
        bundle.head.tree_size,
        bundle.head.timestamp_ms,
        &root,
    ));

    // The forger's signature under the log's key.
    let mut b = bundle.clone();
    b.head.signature = to_hex(forged_sig.as_ref());
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::BadHeadSignature)
    );

    // The forger's key swapped in too: consistent, so only a pinned key catches it.
    b.public_key = to_hex(forger.public_key().as_ref());
    assert_eq!(verify_bundle(&b, None), Ok(()));
    assert!(matches!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::UnexpectedKey { .. })
    ));

    // A head whose size was edited no longer matches its signature.
    let mut b = bundle.clone();
    b.head.tree_size += 1;
    assert_eq!(
        verify_bundle(&b, Some(&key)),
        Err(BundleError::BadHeadSignature)
    );

    let mut b = bundle;
    b.public_key = "not hex".into();
    assert_eq!(verify_bundle(&b, None), Err(BundleError::BadPublicKey));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For any log size and any pattern of whose data was touched, every subject's
    /// bundle verifies, survives a JSON round trip, and lists exactly their entries.
    #[test]
    fn every_subjects_bundle_verifies(owners in prop::collection::vec(0u8..4, 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        let name = |o: u8| format!("citizen:{o}");
        let batch: Vec<_> = owners
            .iter()
            .enumerate()
            .map(|(i, o)| access(i as u64, &name(*o)))
            .collect();
        log.append_batch(&batch).unwrap();
        let key = log.public_key();
        for o in 0u8..4 {
            let bundle = log.access_report(&name(o)).unwrap();
            let json = serde_json::to_vec(&bundle).unwrap();
            let back: ProofBundle = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(&back, &bundle);
            prop_assert_eq!(verify_bundle(&back, Some(&key)), Ok(()));
            let expected: Vec<u64> = owners
                .iter()
                .enumerate()
                .filter(|(_, x)| **x == o)
                .map(|(i, _)| i as u64)
                .collect();
            let got: Vec<u64> = back.entries.iter().map(|e| e.index).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
