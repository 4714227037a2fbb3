//! A citizen's data, pseudonymized and sealed at ingest, stored and backed up, then
//! erased: neither the live copy nor the backup opens afterwards.

use std::fs;
use std::path::Path;

use polity_model::Tenant;
use polity_privacy::{
    CitizenVault, IdentifierKind, KeyDir, KeyError, LocationPolicy, Pseudonymizer, VaultError,
    coarsen,
};
use serde_json::json;

fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn erasure_reaches_stored_data_and_its_backup() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let backup_dir = root.path().join("backup");
    let key_dir = KeyDir::open(root.path().join("keys")).unwrap();
    key_dir.check_apart_from(&data_dir).unwrap();
    fs::create_dir_all(&data_dir).unwrap();
    fs::create_dir_all(&backup_dir).unwrap();

    let adelaide = Tenant::new("adelaide").unwrap();
    let citizen_id = "citizen-4711";
    let account = "0412 555 123";

    // Ingest: pseudonymize the person link and the account, coarsen the home location,
    // seal the personal record under the citizen's key, store the envelope.
    let envelope = {
        let pseudonyms = Pseudonymizer::new(key_dir.clone());
        let vault = CitizenVault::new(key_dir.clone());
        let subject = pseudonyms
            .pseudonymize(&adelaide, "citizen", IdentifierKind::PersonLink, citizen_id)
            .unwrap();
        let acct = pseudonyms
            .pseudonymize(
                &adelaide,
                "water-billing",
                IdentifierKind::AccountNumber,
                account,
            )
            .unwrap();
        let home = coarsen(
            &json!({"type": "Point", "coordinates": [138.60123, -34.92871]}),
            LocationPolicy::default(),
        )
        .unwrap();
        let record = json!({"account": acct, "home": home, "litres": 412.5});
        let envelope = vault
            .seal(
                &adelaide,
                subject.as_str(),
                record.to_string().as_bytes(),
                b"urn:ngsi-ld:WaterConsumptionObserved:m7",
            )
            .unwrap();
        let stored = json!({"subject": subject, "value": envelope});
        fs::write(data_dir.join("series.json"), stored.to_string()).unwrap();
        fs::copy(data_dir.join("series.json"), backup_dir.join("series.json")).unwrap();
        envelope
    };

    // Nothing stored, and nothing in the key directory, holds an identifier in clear.
    for file in all_files(root.path()) {
        let bytes = fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let name = file.to_string_lossy();
        for needle in [citizen_id, "0412555123", "0412 555 123", "138.60123"] {
            assert!(!text.contains(needle), "{needle} in {name}");
            assert!(!name.contains(needle), "{needle} in the name {name}");
        }
    }

    // A fresh process (reopen) reads the stored record back.
    let pseudonyms = Pseudonymizer::new(key_dir.clone());
    let vault = CitizenVault::new(key_dir.clone());
    let subject = pseudonyms
        .pseudonymize(&adelaide, "citizen", IdentifierKind::PersonLink, citizen_id)
        .unwrap();
    let aad = b"urn:ngsi-ld:WaterConsumptionObserved:m7";
    let plain = vault
        .open(&adelaide, subject.as_str(), &envelope, aad)
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(record["litres"], 412.5);

    // The citizen asks for erasure.
    assert!(vault.erase(&adelaide, subject.as_str()).unwrap());

    // Live data and backup both still hold the envelope, and neither opens, even in
    // another process.
    let vault = CitizenVault::new(KeyDir::open(key_dir.path()).unwrap());
    for copy in [data_dir.join("series.json"), backup_dir.join("series.json")] {
        let stored: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&copy).unwrap()).unwrap();
        let env = stored["value"].as_str().unwrap();
        let subj = stored["subject"].as_str().unwrap();
        assert!(
            matches!(
                vault.open(&adelaide, subj, env, aad),
                Err(VaultError::Erased { .. })
            ),
            "{}",
            copy.display()
        );
    }
}

#[test]
fn a_key_dir_inside_the_data_dir_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let keys = KeyDir::open(root.path().join("data/keys")).unwrap();
    let err = keys.check_apart_from(root.path().join("data")).unwrap_err();
    assert!(matches!(err, KeyError::NotApart { .. }));
    assert!(
        err.to_string().contains("outside the data directory"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_damaged_key_file_is_an_error_not_a_new_key() {
    let root = tempfile::tempdir().unwrap();
    let keys = KeyDir::open(root.path()).unwrap();
    let t = Tenant::new("bergen").unwrap();
    let first = Pseudonymizer::new(keys.clone())
        .pseudonymize(&t, "parking", IdentifierKind::LicencePlate, "EL 12345")
        .unwrap();
    let key = root.path().join("pseudonym/bergen/parking/v1.key");
    assert_eq!(fs::read(&key).unwrap().len(), 32);
    fs::write(&key, b"short").unwrap();
    let err = Pseudonymizer::new(keys)
        .pseudonymize(&t, "parking", IdentifierKind::LicencePlate, "EL 12345")
        .unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(!err.to_string().contains("EL 12345"));
    assert_eq!(first.version(), 1);
}
