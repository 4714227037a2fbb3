//! Integration tests: issue → verify round trips, forgery attempts, key rotation and
//! robustness of `verify` against arbitrary input.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use polity_identity::{AuthError, Claims, Issuer, IssuerConfig, Principal, Verifier, now_secs};
use polity_model::Tenant;
use proptest::prelude::*;
use serde_json::json;

const URL: &str = "https://polity.test";
const AUD: &str = "polity-node";
const HOUR: Duration = Duration::from_secs(3600);

fn t(s: &str) -> Tenant {
    Tenant::new(s).unwrap()
}

fn setup() -> (tempfile::TempDir, Issuer, Verifier) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::open(dir.path(), URL).unwrap();
    let verifier = Verifier::new(vec![issuer.config(AUD)])
        .unwrap()
        .with_leeway(Duration::from_secs(5));
    (dir, issuer, verifier)
}

fn all_principals() -> Vec<Principal> {
    vec![
        Principal::Operator,
        Principal::CityAdmin(t("adelaide")),
        Principal::CityAnalyst(t("adelaide")),
        Principal::SecurityAnalyst,
        Principal::Application {
            client_id: "parking-app".into(),
            tenants: vec![t("adelaide"), t("perth")],
        },
        Principal::Citizen {
            id: "c-42".into(),
            tenant: t("adelaide"),
        },
    ]
}

fn decode_segment(seg: &str) -> serde_json::Value {
    serde_json::from_slice(&B64.decode(seg).unwrap()).unwrap()
}

fn claims(p: &Principal) -> Claims {
    Claims::for_principal(p, URL, AUD, HOUR)
}

#[test]
fn round_trip_every_principal() {
    let (_d, issuer, verifier) = setup();
    for p in all_principals() {
        let token = issuer.issue(&p, AUD, HOUR).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header = decode_segment(parts[0]);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], issuer.current_kid());
        let payload = decode_segment(parts[1]);
        assert_eq!(payload["iss"], URL);
        assert_eq!(payload["aud"], AUD);
        assert_eq!(payload["role"], p.role());
        assert!(payload["jti"].is_string());
        let v = verifier.verify(&token).unwrap();
        assert_eq!(v.principal, p, "{p}");
        assert_eq!(v.kid, issuer.current_kid());
    }
}

#[test]
fn jwks_is_okp_key_set() {
    let (_d, issuer, _v) = setup();
    let jwks = issuer.jwks();
    let k = &jwks["keys"][0];
    assert_eq!(k["kty"], "OKP");
    assert_eq!(k["crv"], "Ed25519");
    assert_eq!(k["alg"], "EdDSA");
    assert_eq!(k["use"], "sig");
    assert_eq!(B64.decode(k["x"].as_str().unwrap()).unwrap().len(), 32);
    assert!(k.get("d").is_none(), "private key must never be published");
}

#[test]
fn alg_none_is_rejected() {
    let (_d, _issuer, verifier) = setup();
    let header = B64.encode(json!({"alg":"none","typ":"at+jwt"}).to_string());
    let payload = B64.encode(serde_json::to_string(&claims(&Principal::Operator)).unwrap());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.AAAA"),
    ] {
        assert_eq!(
            verifier.verify(&token).unwrap_err(),
            AuthError::AlgorithmNotAllowed("none".into())
        );
    }
    // Case variants of `none` are no better.
    let header = B64.encode(json!({"alg":"None","typ":"at+jwt"}).to_string());
    assert_eq!(
        verifier
            .verify(&format!("{header}.{payload}."))
            .unwrap_err(),
        AuthError::AlgorithmNotAllowed("None".into())
    );
}

#[test]
fn alg_confusion_is_rejected() {
    // HS256 signed with the public key bytes as the HMAC secret: the classic confusion.
    let (_d, issuer, verifier) = setup();
    let x = B64
        .decode(issuer.jwks()["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some(issuer.current_kid().into());
    let token = jsonwebtoken::encode(
        &h,
        &claims(&Principal::Operator),
        &jsonwebtoken::EncodingKey::from_secret(&x),
    )
    .unwrap();
    assert_eq!(
        verifier.verify(&token).unwrap_err(),
        AuthError::AlgorithmNotAllowed("HS256".into())
    );
}

#[test]
fn wrong_key_is_rejected() {
    let (_d, issuer, verifier) = setup();
    // Another issuer claiming our URL, with its own key.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Issuer::open(other_dir.path(), URL).unwrap();
    let token = other.issue(&Principal::Operator, AUD, HOUR).unwrap();
    assert!(matches!(
        verifier.verify(&token).unwrap_err(),
        AuthError::UnknownKey { .. }
    ));
    // Same, but lying about the kid: the signature check catches it.
    let header = json!({"alg":"EdDSA","typ":"at+jwt","kid": issuer.current_kid()});
    let payload = serde_json::to_value(claims(&Principal::Operator)).unwrap();
    let token = other.sign_raw(&header, &payload).unwrap();
    assert_eq!(
        verifier.verify(&token).unwrap_err(),
        AuthError::BadSignature
    );
}

#[test]
fn expired_is_rejected() {
    let (_d, issuer, verifier) = setup();
    let mut c = claims(&Principal::Operator);
    c.iat = Some(now_secs() - 7200);
    c.nbf = c.iat;
    c.exp = now_secs() - 600;
    let token = issuer.sign(&c).unwrap();
    assert_eq!(verifier.verify(&token).unwrap_err(), AuthError::Expired);
    // Within the leeway it still passes.
    c.exp = now_secs() - 2;
    let token = issuer.sign(&c).unwrap();
    assert!(verifier.verify(&token).is_ok());
}

#[test]
fn not_yet_valid_is_rejected() {
    let (_d, issuer, verifier) = setup();
    let mut c = claims(&Principal::Operator);
    c.nbf = Some(now_secs() + 600);
    let token = issuer.sign(&c).unwrap();
    assert_eq!(verifier.verify(&token).unwrap_err(), AuthError::NotYetValid);
}

#[test]
fn wrong_audience_is_rejected() {
    let (_d, issuer, verifier) = setup();
    let token = issuer
        .issue(&Principal::Operator, "another-node", HOUR)
        .unwrap();
    assert_eq!(
        verifier.verify(&token).unwrap_err(),
        AuthError::WrongAudience
    );
    // A list containing our audience is fine.
    let mut c = claims(&Principal::Operator);
    c.aud = vec!["another-node".into(), AUD.into()];
    assert!(verifier.verify(&issuer.sign(&c).unwrap()).is_ok());
    // A missing aud is not.
    let mut p = serde_json::to_value(claims(&Principal::Operator)).unwrap();
    p.as_object_mut().unwrap().remove("aud");
    let h = json!({"alg":"EdDSA","typ":"at+jwt","kid": issuer.current_kid()});
    assert_eq!(
        verifier
            .verify(&issuer.sign_raw(&h, &p).unwrap())
            .unwrap_err(),
        AuthError::MissingClaim("aud".into())
    );
}

#[test]
fn unknown_issuer_is_rejected() {
    let (_d, _issuer, verifier) = setup();
    let dir = tempfile::tempdir().unwrap();
    let stranger = Issuer::open(dir.path(), "https://evil.test").unwrap();
    let token = stranger.issue(&Principal::Operator, AUD, HOUR).unwrap();
    assert_eq!(
        verifier.verify(&token).unwrap_err(),
        AuthError::UnknownIssuer("https://evil.test".into())
    );
}

#[test]
fn typ_jwt_is_rejected() {
    let (_d, issuer, verifier) = setup();
    let payload = serde_json::to_value(claims(&Principal::Operator)).unwrap();
    for typ in [json!("JWT"), json!("id_token")] {
        let h = json!({"alg":"EdDSA","typ": typ,"kid": issuer.current_kid()});
        let token = issuer.sign_raw(&h, &payload).unwrap();
        assert!(matches!(
            verifier.verify(&token).unwrap_err(),
            AuthError::WrongType(_)
        ));
    }
    let h = json!({"alg":"EdDSA","kid": issuer.current_kid()});
    let token = issuer.sign_raw(&h, &payload).unwrap();
    assert!(matches!(
        verifier.verify(&token).unwrap_err(),
        AuthError::WrongType(_)
    ));
    // The full media type is accepted (RFC 7515 §4.1.9).
    let h = json!({"alg":"EdDSA","typ":"application/at+jwt","kid": issuer.current_kid()});
    assert!(
        verifier
            .verify(&issuer.sign_raw(&h, &payload).unwrap())
            .is_ok()
    );
}

#[test]
fn tampered_payload_is_rejected() {
    let (_d, issuer, verifier) = setup();
    let token = issuer
        .issue(&Principal::CityAnalyst(t("adelaide")), AUD, HOUR)
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = decode_segment(parts[1]);
    payload["role"] = json!("operator");
    payload["tenants"] = json!([]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(payload.to_string()),
        parts[2]
    );
    assert_eq!(
        verifier.verify(&forged).unwrap_err(),
        AuthError::BadSignature
    );
}

#[test]
fn truncated_token_is_rejected() {
    let (_d, issuer, verifier) = setup();
    let token = issuer.issue(&Principal::Operator, AUD, HOUR).unwrap();
    for cut in [1, 10, 40, token.len() / 2, token.len() - 30] {
        let e = verifier.verify(&token[..token.len() - cut]).unwrap_err();
        assert!(
            matches!(e, AuthError::BadSignature | AuthError::Malformed(_)),
            "cut {cut}: {e:?}"
        );
    }
    let last_dot = token.rfind('.').unwrap();
    assert!(matches!(
        verifier.verify(&token[..last_dot]).unwrap_err(),
        AuthError::Malformed(_)
    ));
}

#[test]
fn rotation_keeps_previous_key_until_removed() {
    let (dir, mut issuer, _v) = setup();
    let old_kid = issuer.current_kid().to_owned();
    let old_token = issuer.issue(&Principal::Operator, AUD, HOUR).unwrap();
    let new_kid = issuer.rotate().unwrap();
    let new_token = issuer
        .issue(&Principal::SecurityAnalyst, AUD, HOUR)
        .unwrap();

    let verifier = Verifier::new(vec![issuer.config(AUD)]).unwrap();
    assert_eq!(verifier.verify(&old_token).unwrap().kid, old_kid);
    assert_eq!(verifier.verify(&new_token).unwrap().kid, new_kid);

    // Reopening from disk keeps both keys and the new one current.
    let reopened = Issuer::open(dir.path(), URL).unwrap();
    assert_eq!(reopened.kids(), vec![old_kid.clone(), new_kid.clone()]);
    assert_eq!(reopened.current_kid(), new_kid);

    issuer.remove_key(&old_kid).unwrap();
    let verifier = Verifier::new(vec![issuer.config(AUD)]).unwrap();
    assert!(matches!(
        verifier.verify(&old_token).unwrap_err(),
        AuthError::UnknownKey { .. }
    ));
    assert!(verifier.verify(&new_token).is_ok());
}

#[test]
fn several_issuers() {
    let (_d, issuer, _v) = setup();
    let dir = tempfile::tempdir().unwrap();
    let other = Issuer::open(dir.path(), "https://idp.city.test").unwrap();
    let verifier = Verifier::new(vec![
        issuer.config(AUD),
        IssuerConfig {
            url: other.url().into(),
            audience: "city-aud".into(),
            jwks: other.jwks(),
            tenants: vec![t("perth")],
        },
    ])
    .unwrap();
    let p = Principal::Citizen {
        id: "c-1".into(),
        tenant: t("perth"),
    };
    assert!(
        verifier
            .verify(&issuer.issue(&p, AUD, HOUR).unwrap())
            .is_ok()
    );
    assert!(
        verifier
            .verify(&other.issue(&p, "city-aud", HOUR).unwrap())
            .is_ok()
    );
    // Audiences are per issuer.
    assert_eq!(
        verifier
            .verify(&other.issue(&p, AUD, HOUR).unwrap())
            .unwrap_err(),
        AuthError::WrongAudience
    );
    // A city issuer may not vouch for another city's principals, nor for national roles.
    for p in [
        Principal::CityAdmin(t("adelaide")),
        Principal::Operator,
        Principal::SecurityAnalyst,
        Principal::Application {
            client_id: "a".into(),
            tenants: vec![t("perth"), t("adelaide")],
        },
    ] {
        assert!(
            matches!(
                verifier
                    .verify(&other.issue(&p, "city-aud", HOUR).unwrap())
                    .unwrap_err(),
                AuthError::IssuerNotForTenant { .. }
            ),
            "{p}"
        );
    }
    // The national issuer may.
    assert!(
        verifier
            .verify(
                &issuer
                    .issue(&Principal::CityAdmin(t("adelaide")), AUD, HOUR)
                    .unwrap()
            )
            .is_ok()
    );
}

#[test]
fn bad_role_claims_are_rejected() {
    let (_d, issuer, verifier) = setup();
    let mut c = claims(&Principal::Operator);
    c.role = "root".into();
    assert!(matches!(
        verifier.verify(&issuer.sign(&c).unwrap()).unwrap_err(),
        AuthError::BadClaims(_)
    ));
    let mut c = claims(&Principal::CityAdmin(t("adelaide")));
    c.tenants.push("perth".into());
    assert!(matches!(
        verifier.verify(&issuer.sign(&c).unwrap()).unwrap_err(),
        AuthError::BadClaims(_)
    ));
}

#[test]
fn errors_tell_the_user_what_to_do() {
    for e in [
        AuthError::Expired,
        AuthError::WrongAudience,
        AuthError::UnknownIssuer("x".into()),
        AuthError::AlgorithmNotAllowed("none".into()),
    ] {
        let msg = e.to_string();
        assert!(msg.contains(';') || msg.contains("request"), "{msg}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verify_never_panics(s in ".{0,600}") {
        let (_d, _issuer, verifier) = setup();
        let _ = verifier.verify(&s);
    }

    #[test]
    fn verify_never_panics_on_jwt_shaped(
        h in "[A-Za-z0-9_-]{0,80}",
        p in "[A-Za-z0-9_-]{0,200}",
        sig in "[A-Za-z0-9_-]{0,100}",
    ) {
        let (_d, _issuer, verifier) = setup();
        let token = format!("{h}.{p}.{sig}");
        prop_assert!(verifier.verify(&token).is_err());
    }

    #[test]
    fn verify_never_panics_on_signed_json(
        exp in any::<i64>(),
        nbf in any::<i64>(),
        role in "[a-z-]{0,20}",
        aud in prop_oneof![Just(json!(AUD)), Just(json!([AUD])), Just(json!(1)), Just(json!(null))],
    ) {
        let (_d, issuer, verifier) = setup();
        let h = json!({"alg":"EdDSA","typ":"at+jwt","kid": issuer.current_kid()});
        let p = json!({"iss": URL, "sub": "s", "aud": aud, "exp": exp, "nbf": nbf, "role": role});
        let _ = verifier.verify(&issuer.sign_raw(&h, &p).unwrap());
    }
}
