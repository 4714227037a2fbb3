//! Many threads (and two "processes", i.e. two instances over one key directory) using
//! a fresh key at the same moment must agree on one key.

use std::sync::{Arc, Barrier};
use std::thread;

use polity_model::Tenant;
use polity_privacy::{CitizenVault, IdentifierKind, KeyDir, Pseudonymizer};

const THREADS: usize = 8;

#[test]
fn first_use_from_many_threads_creates_one_pseudonym_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyDir::open(dir.path()).unwrap();
    // Two instances, as two processes would be, plus threads within each.
    let instances = [
        Arc::new(Pseudonymizer::new(keys.clone())),
        Arc::new(Pseudonymizer::new(keys.clone())),
    ];
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let p = Arc::clone(&instances[i % 2]);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let t = Tenant::new("adelaide").unwrap();
                barrier.wait();
                p.pseudonymize(&t, "wifi", IdentifierKind::MacAddress, "aa:bb:cc:00:11:22")
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|p| *p == results[0]), "{results:?}");
    let files = std::fs::read_dir(dir.path().join("pseudonym/adelaide/wifi"))
        .unwrap()
        .count();
    assert_eq!(files, 1, "one key file, no temporary files left");
}

#[test]
fn first_seal_from_many_threads_creates_one_vault_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyDir::open(dir.path()).unwrap();
    let instances = [
        Arc::new(CitizenVault::new(keys.clone())),
        Arc::new(CitizenVault::new(keys.clone())),
    ];
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let v = Arc::clone(&instances[i % 2]);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let t = Tenant::new("adelaide").unwrap();
                barrier.wait();
                v.seal(&t, "pn1:citizen:1:AAAAAAAAAAAAAAAAAAAAAA", &[i as u8], b"")
                    .unwrap()
            })
        })
        .collect();
    let envelopes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // A third instance opens every envelope: they were all sealed under one key.
    let fresh = CitizenVault::new(keys);
    let t = Tenant::new("adelaide").unwrap();
    for (i, e) in envelopes.iter().enumerate() {
        assert_eq!(
            fresh
                .open(&t, "pn1:citizen:1:AAAAAAAAAAAAAAAAAAAAAA", e, b"")
                .unwrap(),
            [i as u8]
        );
    }
}
