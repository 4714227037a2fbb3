//! Attack tests: tampering with a real log must be detected, naming the first bad
//! entry.

use std::fs;
use std::path::{Path, PathBuf};

use polity_audit::head::{signing_bytes, to_hex};
use polity_audit::log::RECORD_HEADER_BYTES;
use polity_audit::merkle::leaf_hash;
use polity_audit::{SignedTreeHead, VerifyFailure, verify_dir};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use crate::log_with;

fn entries_path(dir: &Path) -> PathBuf {
    dir.join("audit/entries")
}

/// Byte ranges of each record in the entries file (format in `polity_audit::log`).
fn records(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(at..at + RECORD_HEADER_BYTES + len);
        at += RECORD_HEADER_BYTES + len;
    }
    out
}

fn tampered(n: u64, edit: impl FnOnce(&mut Vec<u8>, &[std::ops::Range<usize>])) -> VerifyFailure {
    let dir = tempfile::tempdir().unwrap();
    drop(log_with(dir.path(), n));
    assert!(verify_dir(dir.path()).is_ok(), "untouched log verifies");
    let path = entries_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let recs = records(&bytes);
    edit(&mut bytes, &recs);
    fs::write(&path, &bytes).unwrap();
    verify_dir(dir.path()).expect_err("tampering must be detected")
}

#[test]
fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_with(dir.path(), 3000));
    let report = verify_dir(dir.path()).unwrap();
    assert_eq!(report.entries, 3000);
    assert_eq!(report.signed_tree_size, 3000);
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.unsigned_entries, 0);
}

#[test]
fn an_empty_new_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    drop(polity_audit::AuditLog::open(dir.path()).unwrap());
    assert_eq!(verify_dir(dir.path()).unwrap().entries, 0);
}

#[test]
fn editing_an_entry_names_it() {
    let err = tampered(50, |b, r| {
        let body = r[17].start + RECORD_HEADER_BYTES;
        let pos = body
            + b[body..r[17].end]
                .windows(7)
                .position(|w| w == b"allowed")
                .unwrap();
        b[pos..pos + 7].copy_from_slice(b"denied!");
    });
    assert!(matches!(err, VerifyFailure::Edited { index: 17 }), "{err}");
}

#[test]
fn an_edit_that_breaks_the_length_field_names_the_entry() {
    let err = tampered(50, |b, r| b[r[9].start + 3] = 0xff);
    assert_eq!(err.first_bad_entry(), Some(9), "{err}");
}

#[test]
fn deleting_an_entry_names_it() {
    let err = tampered(50, |b, r| {
        b.drain(r[23].clone());
    });
    assert!(
        matches!(
            err,
            VerifyFailure::OutOfPlace {
                index: 23,
                found: 24
            }
        ),
        "{err}"
    );
}

#[test]
fn swapping_two_entries_names_the_first() {
    let err = tampered(50, |b, r| {
        let (a, c) = (b[r[5].clone()].to_vec(), b[r[31].clone()].to_vec());
        let mut out = b[..r[5].start].to_vec();
        out.extend_from_slice(&c);
        out.extend_from_slice(&b[r[5].end..r[31].start]);
        out.extend_from_slice(&a);
        out.extend_from_slice(&b[r[31].end..]);
        *b = out;
    });
    assert!(
        matches!(
            err,
            VerifyFailure::OutOfPlace {
                index: 5,
                found: 31
            }
        ),
        "{err}"
    );
}

#[test]
fn truncating_at_a_record_boundary_is_reported() {
    let err = tampered(50, |b, r| b.truncate(r[40].start));
    assert!(
        matches!(
            err,
            VerifyFailure::Truncated {
                entries: 40,
                signed: 50,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncating_inside_a_record_is_reported() {
    let err = tampered(50, |b, r| b.truncate(r[40].start + 10));
    assert!(matches!(err, VerifyFailure::Torn { index: 40 }), "{err}");
}

#[test]
fn a_rewrite_with_fixed_up_hashes_is_bounded_by_a_signed_checkpoint() {
    // Delete entry 1500 and renumber and rehash everything after it, as an attacker
    // without the key would: only the signed roots can catch this.
    let err = tampered(3000, |b, r| {
        let mut out = b[..r[1500].start].to_vec();
        for (new_index, range) in r[1501..].iter().enumerate() {
            let mut rec = b[range.clone()].to_vec();
            rec[4..12].copy_from_slice(&(1500 + new_index as u64).to_le_bytes());
            let leaf = leaf_hash(&rec[RECORD_HEADER_BYTES..]);
            rec[12..44].copy_from_slice(&leaf);
            out.extend_from_slice(&rec);
        }
        *b = out;
    });
    assert!(
        matches!(
            err,
            VerifyFailure::RootMismatch {
                from: 1024,
                to: 2048,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.first_bad_entry(), Some(1024));
}

#[test]
fn a_head_signed_by_another_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 10);
    let genuine = log.tree_head();
    let pk8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let other = Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap();
    let root = genuine.root().unwrap();
    let forged = SignedTreeHead {
        signature: to_hex(
            other
                .sign(&signing_bytes(10, genuine.timestamp_ms, &root))
                .as_ref(),
        ),
        ..genuine
    };
    fs::write(
        dir.path().join("audit/sth.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let err = verify_dir(dir.path()).unwrap_err();
    assert!(matches!(err, VerifyFailure::BadSignature { .. }), "{err}");
}

#[test]
fn a_deleted_head_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_with(dir.path(), 10));
    fs::remove_file(dir.path().join("audit/sth.json")).unwrap();
    let err = verify_dir(dir.path()).unwrap_err();
    assert!(matches!(err, VerifyFailure::NoSignedHead { .. }), "{err}");
}
