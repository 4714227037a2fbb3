//! Receipts as a citizen sees them: verify with the published key; tampering fails.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use polity_consent::{ConsentStore, ReceiptError, ReceiptState, verify_receipt};

use crate::{at, parking_request, tenant};

#[test]
fn grant_and_withdrawal_receipts_verify_with_the_published_key() {
    let d = tempfile::tempdir().unwrap();
    let s = ConsentStore::open(d.path()).unwrap();
    let now = at("2026-03-01T10:00:00Z");
    let (rec, receipt) = s.grant(parking_request("citizen-a", 90), now).unwrap();

    // The citizen has only the JWK and the receipt text.
    let key = s.receipt_public_jwk().public_key().unwrap();
    let json = verify_receipt(&receipt.jws, &key).unwrap();
    assert_eq!(json, receipt.json);
    assert_eq!(json.version, "KI-CR-v1.1.0");
    assert_eq!(json.pii_principal_id, "citizen-a");
    assert_eq!(json.consent_id, rec.consent_id);
    assert_eq!(json.consent_state, ReceiptState::Given);
    assert_eq!(json.consent_timestamp, now.as_millis() / 1000);
    let purpose = &json.services[0].purposes[0];
    assert_eq!(purpose.pii_category, ["location", "parking-session"]);
    assert_eq!(purpose.purpose_category, ["service-provision"]);
    assert_eq!(
        purpose.third_party_name.as_deref(),
        Some("app:parking-app:adelaide")
    );

    // Kantara field names on the wire.
    let payload: serde_json::Value =
        serde_json::from_slice(&B64.decode(receipt.jws.split('.').nth(1).unwrap()).unwrap())
            .unwrap();
    for field in [
        "version",
        "jurisdiction",
        "consentTimestamp",
        "collectionMethod",
        "consentReceiptID",
        "piiPrincipalId",
        "piiControllers",
        "policyUrl",
        "services",
        "sensitive",
        "spiCat",
    ] {
        assert!(payload.get(field).is_some(), "missing {field}: {payload}");
    }

    let (_, withdrawal) = s
        .withdraw(
            &tenant("adelaide"),
            "citizen-a",
            rec.consent_id,
            at("2026-04-01T00:00:00Z"),
        )
        .unwrap();
    let w = verify_receipt(&withdrawal.jws, &key).unwrap();
    assert_eq!(w.consent_state, ReceiptState::Withdrawn);
    assert_eq!(w.withdrawn_at, Some(at("2026-04-01T00:00:00Z")));
    assert_ne!(w.consent_receipt_id, json.consent_receipt_id);

    // Keys persist: a receipt from before a restart still verifies with the same key.
    drop(s);
    let s = ConsentStore::open(d.path()).unwrap();
    assert_eq!(s.receipt_public_key(), key);
}

#[test]
fn tampered_receipts_fail() {
    let d = tempfile::tempdir().unwrap();
    let s = ConsentStore::open(d.path()).unwrap();
    let (_, receipt) = s
        .grant(parking_request("citizen-a", 90), at("2026-03-01T10:00:00Z"))
        .unwrap();
    let key = s.receipt_public_key();
    let parts: Vec<&str> = receipt.jws.split('.').collect();

    // Stretch the consent in the payload, keep the signature.
    let mut payload: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    payload["expiresAt"] = "2030-01-01T00:00:00Z".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(payload.to_string()),
        parts[2]
    );
    assert_eq!(verify_receipt(&forged, &key), Err(ReceiptError::Signature));

    // Swap in a header with alg none and drop the signature.
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert!(matches!(
        verify_receipt(&none, &key),
        Err(ReceiptError::Algorithm(_))
    ));

    // Another city's key.
    let other = tempfile::tempdir().unwrap();
    let other_key = ConsentStore::open(other.path())
        .unwrap()
        .receipt_public_key();
    assert_eq!(
        verify_receipt(&receipt.jws, &other_key),
        Err(ReceiptError::Signature)
    );
}
