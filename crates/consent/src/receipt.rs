//! Consent receipts: the Kantara Consent Receipt v1.1 JSON a citizen keeps, signed as a
//! compact JWS (RFC 7515) with Ed25519 (`alg` `EdDSA`, RFC 8037), and its verifier.
//!
//! Owns the receipt signing key file (`receipt-signing.pk8`) and the JWS encoding. It
//! must not read or write the consent event file; the store hands it records.
//!
//! # Header
//!
//! `{"alg":"EdDSA","typ":"JWT","kid":<RFC 7638 thumbprint>}`. Kantara v1.1 presents a
//! receipt as a JWT whose claims are the receipt fields, so `typ` is `JWT`. It cannot be
//! mistaken for an access token: Polity's token verifier requires `typ` `at+jwt`
//! (RFC 9068) with `iss`, `aud` and `exp`, none of which a receipt carries. The verifier
//! here pins `EdDSA` and `JWT`, refuses `crit`, checks the signature with ring before
//! parsing the payload, and requires `version` `KI-CR-v1.1.0`.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use polity_model::{Tenant, Timestamp};
use ring::{
    digest,
    rand::{SecureRandom, SystemRandom},
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{ConsentId, ConsentRecord, ConsentState};

/// The Kantara specification version every receipt declares.
pub const RECEIPT_VERSION: &str = "KI-CR-v1.1.0";

/// The signing key's file name inside the store directory.
pub const SIGNING_KEY_FILE: &str = "receipt-signing.pk8";

/// The largest JWS [`verify_receipt`] will look at, in bytes.
pub const MAX_RECEIPT_BYTES: usize = 64 * 1024;

/// A receipt failed to verify. Each message says what the holder can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not three base64url parts, or a part is not what it should be.
    #[error(
        "receipt is not a compact JWS ({0}); pass the receipt text exactly as issued, three base64url parts separated by dots"
    )]
    Malformed(String),
    /// The header names another algorithm (including `none`).
    #[error("receipt header alg `{0}` is not accepted: Polity receipts are signed with EdDSA only")]
    Algorithm(String),
    /// The header `typ` is not `JWT`.
    #[error(
        "receipt header typ `{0}` is not a consent receipt's (`JWT`); this is another kind of token"
    )]
    Type(String),
    /// The public key is not 32 bytes of Ed25519.
    #[error(
        "public key is {0} bytes: pass the city's 32-byte Ed25519 receipt key (the JWK's `x`, decoded)"
    )]
    PublicKey(usize),
    /// The signature does not match the key and content.
    #[error(
        "receipt signature does not verify: it was altered, or was signed by another key than the one given"
    )]
    Signature,
    /// Signed correctly, but not a Kantara v1.1 receipt.
    #[error("receipt payload is not a {RECEIPT_VERSION} consent receipt: {0}")]
    Payload(String),
    /// Signing failed (serialization of the receipt).
    #[error("could not encode the receipt: {0}")]
    Encode(String),
}

/// The signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error(
        "receipt signing key {path}: {source}; check the directory exists and is writable by this user"
    )]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 key.
    #[error(
        "receipt signing key {path} is not an Ed25519 PKCS#8 key ({reason}); restore it from backup, or move it away to start a new key (old receipts then verify only with the old public key)"
    )]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system random source failed.
    #[error("the system random source failed; the OS cannot provide randomness for keys and ids")]
    Random,
}

/// One `piiControllers[]` entry of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptController {
    /// The controller's name.
    pub pii_controller: String,
    /// Contact person or office.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Postal address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<ReceiptAddress>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Web site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_controller_url: Option<String>,
}

/// A schema.org `PostalAddress`, as Kantara's `address` uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptAddress {
    /// Street address, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    /// ISO 3166-1 country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_country: Option<String>,
}

/// One `services[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptService {
    /// The service: Polity names the recipient principal here.
    pub service: String,
    /// What the service may do.
    pub purposes: Vec<ReceiptPurpose>,
}

/// One `services[].purposes[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptPurpose {
    /// The purpose in plain language.
    pub purpose: String,
    /// Polity's purpose term, e.g. `service-provision`.
    pub purpose_category: Vec<String>,
    /// Always `EXPLICIT`: Polity records only opt-in consent.
    pub consent_type: String,
    /// Polity's data category terms, e.g. `parking-session`.
    pub pii_category: Vec<String>,
    /// Always true: one consent has one purpose.
    pub primary_purpose: bool,
    /// When and how the consent ends.
    pub termination: String,
    /// Whether the data leaves the controller: true, it goes to the recipient.
    pub third_party_disclosure: bool,
    /// The recipient principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub third_party_name: Option<String>,
}

/// Which transaction a receipt records (Polity extension `consentState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptState {
    /// Issued when consent was given.
    Given,
    /// Issued when consent was withdrawn.
    Withdrawn,
}

/// The receipt: Kantara Consent Receipt v1.1 fields, then Polity's extensions. This is
/// the JWS payload, and what [`verify_receipt`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptJson {
    /// Always [`RECEIPT_VERSION`].
    pub version: String,
    /// ISO 3166 jurisdiction.
    pub jurisdiction: String,
    /// When consent was given, in whole seconds since the epoch (as in the Kantara example).
    pub consent_timestamp: i64,
    /// How consent was obtained.
    pub collection_method: String,
    /// This receipt's id: a random UUID (version 4). Each receipt has its own.
    #[serde(rename = "consentReceiptID")]
    pub consent_receipt_id: String,
    /// Language of the notice.
    pub language: String,
    /// The citizen's pseudonym.
    pub pii_principal_id: String,
    /// The accountable body.
    pub pii_controllers: Vec<ReceiptController>,
    /// The privacy notice.
    pub policy_url: String,
    /// The recipient and the purpose.
    pub services: Vec<ReceiptService>,
    /// Whether special-category (sensitive) PII is involved: false, Polity's vocabulary
    /// has no GDPR Art. 9 category.
    pub sensitive: bool,
    /// Sensitive categories: empty.
    pub spi_cat: Vec<String>,
    /// JWT `iat`: when this receipt was issued, seconds since the epoch.
    pub iat: i64,
    /// Polity: the consent this receipt is about (use it to withdraw).
    pub consent_id: ConsentId,
    /// Polity: the tenant (city).
    pub tenant: Tenant,
    /// Polity: given or withdrawn.
    pub consent_state: ReceiptState,
    /// Polity: when the consent stops permitting access.
    pub expires_at: Timestamp,
    /// Polity: when it was withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<Timestamp>,
}

impl ReceiptJson {
    /// The receipt for `record` as it stands, issued at `issued_at` with id `receipt_id`.
    pub fn for_record(record: &ConsentRecord, receipt_id: String, issued_at: Timestamp) -> Self {
        let req = &record.request;
        let withdrawn = record.state(issued_at) == ConsentState::Withdrawn;
        let termination = match record.withdrawn_at {
            Some(at) => format!("Withdrawn by you at {at}."),
            None => format!(
                "Ends at {}, or earlier when you withdraw it (consent id {}).",
                record.expires_at, record.consent_id
            ),
        };
        let c = &req.pii_controller;
        let address = (c.address.is_some() || c.country.is_some()).then(|| ReceiptAddress {
            street_address: c.address.clone(),
            address_country: c.country.clone(),
        });
        ReceiptJson {
            version: RECEIPT_VERSION.to_owned(),
            jurisdiction: req.jurisdiction.clone(),
            consent_timestamp: record.granted_at.as_millis().div_euclid(1000),
            collection_method: req.collection_method.clone(),
            consent_receipt_id: receipt_id,
            language: req.language.clone(),
            pii_principal_id: req.subject.clone(),
            pii_controllers: vec![ReceiptController {
                pii_controller: c.name.clone(),
                contact: c.contact.clone(),
                address,
                email: c.email.clone(),
                phone: c.phone.clone(),
                pii_controller_url: c.url.clone(),
            }],
            policy_url: req.policy_url.clone(),
            services: vec![ReceiptService {
                service: req.recipient.clone(),
                purposes: vec![ReceiptPurpose {
                    purpose: record.purpose_text().to_owned(),
                    purpose_category: vec![req.purpose.as_str().to_owned()],
                    consent_type: "EXPLICIT".to_owned(),
                    pii_category: req
                        .data_categories
                        .iter()
                        .map(|c| c.as_str().to_owned())
                        .collect(),
                    primary_purpose: true,
                    termination,
                    third_party_disclosure: true,
                    third_party_name: Some(req.recipient.clone()),
                }],
            }],
            sensitive: false,
            spi_cat: Vec::new(),
            iat: issued_at.as_millis().div_euclid(1000),
            consent_id: record.consent_id,
            tenant: req.tenant.clone(),
            consent_state: if withdrawn {
                ReceiptState::Withdrawn
            } else {
                ReceiptState::Given
            },
            expires_at: record.expires_at,
            withdrawn_at: record.withdrawn_at,
        }
    }
}

/// A signed receipt: the compact JWS to hand to the citizen, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// `header.payload.signature`, base64url without padding.
    pub jws: String,
    /// The signed payload.
    pub json: ReceiptJson,
}

/// A public key as a JSON Web Key (RFC 8037 `OKP`), for publishing next to the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The 32-byte public key, base64url.
    pub x: String,
    /// The RFC 7638 thumbprint, also the JWS `kid`.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    /// The 32 raw key bytes, to pass to [`verify_receipt`].
    pub fn public_key(&self) -> Result<[u8; 32], ReceiptError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(ReceiptError::Malformed(format!(
                "JWK is {}/{}, not OKP/Ed25519",
                self.kty, self.crv
            )));
        }
        let bytes = B64
            .decode(&self.x)
            .map_err(|e| ReceiptError::Malformed(format!("JWK x is not base64url: {e}")))?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ReceiptError::PublicKey(bytes.len()))
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the canonical JWK
/// members in lexicographic order, base64url.
pub fn jwk_thumbprint(public_key: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        B64.encode(public_key)
    );
    B64.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// Holds the receipt signing key.
pub(crate) struct ReceiptSigner {
    key: Ed25519KeyPair,
    kid: String,
    rng: SystemRandom,
}

impl ReceiptSigner {
    /// Loads `<dir>/receipt-signing.pk8`, creating it (mode 0600) if absent.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(SIGNING_KEY_FILE);
        let rng = SystemRandom::new();
        let io_err = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let der = match fs::read(&path) {
            Ok(der) => {
                warn_if_readable_by_others(&path);
                der
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let der = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
                write_private(&path, der.as_ref()).map_err(io_err)?;
                tracing::info!(message = "created consent receipt signing key", path = %path.display());
                der.as_ref().to_vec()
            }
            Err(e) => return Err(io_err(e)),
        };
        let key = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| KeyError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let kid = jwk_thumbprint(key.public_key().as_ref());
        Ok(ReceiptSigner { key, kid, rng })
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.key.public_key().as_ref());
        k
    }

    pub(crate) fn public_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: B64.encode(self.key.public_key().as_ref()),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }

    /// 16 bytes from the system random source.
    pub(crate) fn random16(&self) -> Result<[u8; 16], KeyError> {
        let mut b = [0u8; 16];
        self.rng.fill(&mut b).map_err(|_| KeyError::Random)?;
        Ok(b)
    }

    /// A fresh receipt id: a version 4 UUID.
    pub(crate) fn receipt_id(&self) -> Result<String, KeyError> {
        let mut b = self.random16()?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Ok(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ))
    }

    /// Signs `json` as a compact JWS.
    pub(crate) fn sign(&self, json: ReceiptJson) -> Result<Receipt, ReceiptError> {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let payload = serde_json::to_vec(&json).map_err(|e| ReceiptError::Encode(e.to_string()))?;
        let mut jws = String::with_capacity(64 + payload.len() * 4 / 3 + 90);
        jws.push_str(&B64.encode(header.to_string()));
        jws.push('.');
        jws.push_str(&B64.encode(&payload));
        let sig = self.key.sign(jws.as_bytes());
        jws.push('.');
        jws.push_str(&B64.encode(sig.as_ref()));
        Ok(Receipt { jws, json })
    }
}

/// Verifies a receipt against the city's 32-byte Ed25519 public key and returns its
/// content. Rejects any algorithm other than `EdDSA`, any `typ` other than `JWT`, any
/// `crit` header, a bad signature, and a payload that is not a v1.1 receipt.
pub fn verify_receipt(jws: &str, public_key: &[u8]) -> Result<ReceiptJson, ReceiptError> {
    if public_key.len() != 32 {
        return Err(ReceiptError::PublicKey(public_key.len()));
    }
    if jws.len() > MAX_RECEIPT_BYTES {
        return Err(ReceiptError::Malformed(format!(
            "{} bytes, more than {MAX_RECEIPT_BYTES}",
            jws.len()
        )));
    }
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReceiptError::Malformed("not three parts".into()));
    };
    let decode = |what: &str, part: &str| {
        B64.decode(part)
            .map_err(|e| ReceiptError::Malformed(format!("{what} is not base64url: {e}")))
    };
    let header: Value = serde_json::from_slice(&decode("header", h)?)
        .map_err(|e| ReceiptError::Malformed(format!("header is not JSON: {e}")))?;
    let Some(header) = header.as_object() else {
        return Err(ReceiptError::Malformed(
            "header is not a JSON object".into(),
        ));
    };
    match header.get("alg").and_then(Value::as_str) {
        Some("EdDSA") => {}
        other => return Err(ReceiptError::Algorithm(other.unwrap_or("(missing)").into())),
    }
    match header.get("typ").and_then(Value::as_str) {
        Some("JWT") => {}
        other => return Err(ReceiptError::Type(other.unwrap_or("(missing)").into())),
    }
    if header.contains_key("crit") {
        return Err(ReceiptError::Malformed(
            "header has `crit` extensions this verifier does not understand".into(),
        ));
    }
    let sig = decode("signature", s)?;
    let signing_input = &jws.as_bytes()[..h.len() + 1 + p.len()];
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(signing_input, &sig)
        .map_err(|_| ReceiptError::Signature)?;
    let json: ReceiptJson = serde_json::from_slice(&decode("payload", p)?)
        .map_err(|e| ReceiptError::Payload(e.to_string()))?;
    if json.version != RECEIPT_VERSION {
        return Err(ReceiptError::Payload(format!(
            "version is `{}`",
            json.version
        )));
    }
    Ok(json)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        crate::store::sync_dir(dir)?;
    }
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                message = "receipt signing key is readable by other users; chmod 600 it",
                path = %path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ConsentRecord, tests::request};
    use proptest::prelude::*;

    fn signer() -> (tempfile::TempDir, ReceiptSigner) {
        let dir = tempfile::tempdir().unwrap();
        let s = ReceiptSigner::load_or_create(dir.path()).unwrap();
        (dir, s)
    }

    fn receipt_json(s: &ReceiptSigner) -> ReceiptJson {
        let t = Timestamp::parse("2026-03-01T10:00:00Z").unwrap();
        let rec = ConsentRecord::grant(ConsentId::from_bytes([9; 16]), request(90), t).unwrap();
        ReceiptJson::for_record(&rec, s.receipt_id().unwrap(), t)
    }

    /// Re-signs arbitrary header and payload with the signer's key.
    fn forge(s: &ReceiptSigner, header: &str, payload: &[u8]) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let sig = s.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    #[test]
    fn sign_then_verify() {
        let (_d, s) = signer();
        let r = s.sign(receipt_json(&s)).unwrap();
        let back = verify_receipt(&r.jws, &s.public_key()).unwrap();
        assert_eq!(back, r.json);
        assert_eq!(back.consent_state, ReceiptState::Given);
        assert_eq!(back.consent_timestamp, 1_772_359_200);
        assert_eq!(s.public_jwk().public_key().unwrap(), s.public_key());
    }

    #[test]
    fn receipt_id_is_a_v4_uuid() {
        let (_d, s) = signer();
        let id = s.receipt_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, s.receipt_id().unwrap());
    }

    #[test]
    fn pinned_algorithm_and_type() {
        let (_d, s) = signer();
        let payload = serde_json::to_vec(&receipt_json(&s)).unwrap();
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(&payload)
        );
        assert!(matches!(
            verify_receipt(&none, &s.public_key()),
            Err(ReceiptError::Algorithm(a)) if a == "none"
        ));
        let at = forge(&s, r#"{"alg":"EdDSA","typ":"at+jwt"}"#, &payload);
        assert!(matches!(
            verify_receipt(&at, &s.public_key()),
            Err(ReceiptError::Type(_))
        ));
        let crit = forge(&s, r#"{"alg":"EdDSA","typ":"JWT","crit":["x"]}"#, &payload);
        assert!(matches!(
            verify_receipt(&crit, &s.public_key()),
            Err(ReceiptError::Malformed(_))
        ));
        let other_version = forge(
            &s,
            r#"{"alg":"EdDSA","typ":"JWT"}"#,
            &serde_json::to_vec(&ReceiptJson {
                version: "KI-CR-v1.0.0".into(),
                ..receipt_json(&s)
            })
            .unwrap(),
        );
        assert!(matches!(
            verify_receipt(&other_version, &s.public_key()),
            Err(ReceiptError::Payload(_))
        ));
    }

    #[test]
    fn wrong_key_and_garbage_fail() {
        let (_d, s) = signer();
        let (_d2, other) = signer();
        let r = s.sign(receipt_json(&s)).unwrap();
        assert_eq!(
            verify_receipt(&r.jws, &other.public_key()),
            Err(ReceiptError::Signature)
        );
        assert_eq!(
            verify_receipt(&r.jws, &[0; 31]),
            Err(ReceiptError::PublicKey(31))
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(
                matches!(
                    verify_receipt(bad, &s.public_key()),
                    Err(ReceiptError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let (d, s) = signer();
        let mode = fs::metadata(d.path().join(SIGNING_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = ReceiptSigner::load_or_create(d.path()).unwrap();
        assert_eq!(again.public_key(), s.public_key());
        fs::write(d.path().join(SIGNING_KEY_FILE), b"not a key").unwrap();
        let e = ReceiptSigner::load_or_create(d.path()).err().unwrap();
        assert!(e.to_string().contains("restore it from backup"), "{e}");
    }

    #[test]
    fn thumbprint_matches_rfc8037_example() {
        // RFC 8037 Appendix A.3: the thumbprint of the A.2 public key.
        let x = B64
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            jwk_thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    proptest! {
        #[test]
        fn any_flipped_byte_fails(pos in 0usize..10_000, bit in 0u8..8) {
            let (_d, s) = signer();
            let r = s.sign(receipt_json(&s)).unwrap();
            let mut bytes = r.jws.clone().into_bytes();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(bytes)
                && text != r.jws
            {
                prop_assert!(verify_receipt(&text, &s.public_key()).is_err());
            }
        }
    }
}
