//! Inclusion and consistency proofs served by a real log.

use polity_audit::head::from_hex;
use polity_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use polity_audit::{AuditLog, verify_dir};

use crate::{entry, log_with};

#[test]
fn proofs_from_the_log_verify_against_its_signed_heads() {
    for n in [1u64, 2, 3, 7, 8, 1023, 1024, 1025, 2500] {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), n);
        let head = log.tree_head();
        assert!(head.verify(&log.public_key()));
        let root = head.root().unwrap();
        for i in [0, n / 3, n / 2, n - 1] {
            let body = serde_json::to_vec(&entry(i)).unwrap();
            let proof = log.inclusion_proof(i, n).unwrap();
            assert!(
                verify_inclusion(&leaf_hash(&body), i, n, &proof, &root),
                "n={n} i={i}"
            );
            let other = serde_json::to_vec(&entry(i + 1)).unwrap();
            assert!(!verify_inclusion(&leaf_hash(&other), i, n, &proof, &root));
        }
        for old in [0, 1, n / 2, n - 1, n] {
            let proof = log.consistency_proof(old, n).unwrap();
            let old_root = log.root(old).unwrap();
            assert!(
                verify_consistency(old, n, &old_root, &root, &proof),
                "{old}->{n}"
            );
        }
        assert!(log.inclusion_proof(n, n).is_err());
        assert!(log.consistency_proof(n, n + 1).is_err());
    }
}

#[test]
fn a_reopened_log_keeps_its_key_root_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (key, old_head) = {
        let log = log_with(dir.path(), 100);
        (log.public_key(), log.tree_head())
    };
    let mut log = AuditLog::open(dir.path()).unwrap();
    assert_eq!(log.public_key(), key);
    assert_eq!(log.len(), 100);
    assert_eq!(
        log.root(100).unwrap().to_vec(),
        from_hex(&old_head.root_hash).unwrap()
    );
    assert_eq!(log.append(&entry(100)).unwrap(), 100);
    let new_head = log.publish_head().unwrap();
    let proof = log.consistency_proof(100, 101).unwrap();
    assert!(verify_consistency(
        100,
        101,
        &old_head.root().unwrap(),
        &new_head.root().unwrap(),
        &proof
    ));
    assert_eq!(verify_dir(dir.path()).unwrap().entries, 101);
}

#[cfg(unix)]
#[test]
fn the_signing_key_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _log = AuditLog::open(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join("audit/signing.pk8"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
