//! Keyed pseudonyms for personal identifiers (issue #3 §3).
//!
//! Owns the `pseudonym/` part of the [`KeyDir`]; must not touch the vault's keys or any
//! data.
//!
//! A [`Pseudonymizer`] replaces an account number, licence plate, MAC address or the
//! link from a device to a person by a pseudonym, at the city edge, before anything is
//! stored or forwarded:
//!
//! ```text
//! tag = HMAC-SHA256(key[tenant, purpose, version],
//!                   "polity-pseudonym-v1" ‖ lp(tenant) ‖ lp(purpose) ‖ be32(version)
//!                   ‖ lp(kind) ‖ lp(canonical value))
//! text = "pn1:" purpose ":" version ":" base64url(tag[..16])     (no padding)
//! ```
//!
//! where `lp(x)` is `x` preceded by its length as a big-endian `u32`, so no two
//! different inputs give the same message. An example:
//! `pn1:parking:1:3q2-7wAAAAC6vbrL8r3u_w`. The text says which purpose and key version
//! made it; the tenant is implicit, as pseudonyms never leave their city. 128 bits of
//! tag make accidental collisions negligible (about 2⁻⁶⁴ after 2³² identifiers).
//!
//! # Keys, versions and rotation
//!
//! Each (tenant, purpose) has its own 256-bit keys, numbered from 1. The highest
//! version is the current one, used by [`Pseudonymizer::pseudonymize`]; version 1 is
//! created on first use. [`Pseudonymizer::rotate`] adds a new version; older versions
//! stay until [`Pseudonymizer::retire`] deletes them, so that old data can still be
//! matched with [`Pseudonymizer::candidates`]. **Retiring a version makes every
//! pseudonym made with it unlinkable forever**: nobody, including the operator, can
//! tell again which identifier it stood for or match it with new data.
//!
//! # Canonical values
//!
//! The same identifier written differently must give the same pseudonym, so each
//! [`IdentifierKind`] has a canonical form ([`IdentifierKind::canonicalize`]). Errors
//! never include the raw identifier, since it is personal data.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use polity_model::Tenant;
use ring::hmac;
use ring::rand::SystemRandom;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keys::{Created, KEY_LEN, KeyDir, KeyError, random_bytes};

/// The prefix of every pseudonym's text form; the `1` is the format version.
pub const PREFIX: &str = "pn1:";

/// Bytes of the HMAC tag kept in a pseudonym: 128 bits.
pub const TAG_LEN: usize = 16;

/// The longest raw identifier accepted, in bytes.
pub const MAX_RAW_LEN: usize = 1024;

const DOMAIN: &[u8] = b"polity-pseudonym-v1";

/// Errors from pseudonymization. None of them contains the raw identifier.
#[derive(Debug, thiserror::Error)]
pub enum PseudonymError {
    /// The key directory failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A purpose name is not a simple name.
    #[error(
        "purpose `{0}` is invalid: use 1 to 64 characters from a-z, 0-9, '-' and '_', starting with a letter"
    )]
    BadPurpose(String),
    /// A MAC address is not in one of the accepted forms.
    #[error(
        "the MAC address is malformed: write 6 bytes as `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff` or 12 hex digits"
    )]
    BadMac,
    /// An identifier is empty after canonicalization.
    #[error("the {0} is empty: send a non-empty identifier")]
    Empty(IdentifierKind),
    /// An identifier contains control characters.
    #[error("the {0} contains control characters: send printable text only")]
    ControlCharacters(IdentifierKind),
    /// An identifier is longer than [`MAX_RAW_LEN`].
    #[error(
        "the {kind} is {len} bytes long, more than the limit of {MAX_RAW_LEN}: it is not an identifier"
    )]
    TooLong {
        /// Which kind of identifier.
        kind: IdentifierKind,
        /// Its length in bytes.
        len: usize,
    },
    /// A key version that is not (or no longer) on disk was named.
    #[error(
        "key version {version} of purpose `{purpose}` does not exist in tenant {tenant} (never created, or already retired)"
    )]
    UnknownVersion {
        /// The tenant.
        tenant: Tenant,
        /// The purpose.
        purpose: String,
        /// The version asked for.
        version: u32,
    },
    /// The current version cannot be retired.
    #[error(
        "key version {version} is the current one for purpose `{purpose}` in tenant {tenant}: rotate first, then retire it"
    )]
    RetireCurrent {
        /// The tenant.
        tenant: Tenant,
        /// The purpose.
        purpose: String,
        /// The current version.
        version: u32,
    },
    /// Text that is not a pseudonym was parsed as one.
    #[error("not a pseudonym: expected `pn1:<purpose>:<version>:<22 base64url characters>`")]
    BadPseudonym,
}

/// What kind of personal identifier is pseudonymized. The kind is part of the HMAC
/// message: the same text as a plate and as an account gives different pseudonyms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    /// A utility or bank account number. Canonical form: all whitespace removed.
    AccountNumber,
    /// A vehicle licence plate. Canonical form: upper case, whitespace and hyphens
    /// removed (`ab-12 cd` → `AB12CD`).
    LicencePlate,
    /// An EUI-48 MAC address. Accepted as `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`,
    /// `aabb.ccdd.eeff` or 12 hex digits; canonical form: 12 lowercase hex digits.
    MacAddress,
    /// A link from a device to a person: the citizen's id. Canonical form: trimmed.
    PersonLink,
    /// Any other personal identifier. Canonical form: trimmed.
    Other,
}

impl IdentifierKind {
    /// The tag used in the HMAC message. Stable: changing it changes every pseudonym.
    fn tag(self) -> &'static str {
        match self {
            IdentifierKind::AccountNumber => "account",
            IdentifierKind::LicencePlate => "plate",
            IdentifierKind::MacAddress => "mac",
            IdentifierKind::PersonLink => "person",
            IdentifierKind::Other => "other",
        }
    }

    /// The canonical form of `raw` for this kind, or an error for clearly invalid input.
    pub fn canonicalize(self, raw: &str) -> Result<String, PseudonymError> {
        if raw.len() > MAX_RAW_LEN {
            return Err(PseudonymError::TooLong {
                kind: self,
                len: raw.len(),
            });
        }
        let out: String = match self {
            IdentifierKind::MacAddress => return canonical_mac(raw),
            IdentifierKind::AccountNumber => raw.chars().filter(|c| !c.is_whitespace()).collect(),
            IdentifierKind::LicencePlate => raw
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .flat_map(char::to_uppercase)
                .collect(),
            IdentifierKind::PersonLink | IdentifierKind::Other => raw.trim().to_string(),
        };
        if out.is_empty() {
            return Err(PseudonymError::Empty(self));
        }
        if out.chars().any(char::is_control) {
            return Err(PseudonymError::ControlCharacters(self));
        }
        Ok(out)
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentifierKind::AccountNumber => "account number",
            IdentifierKind::LicencePlate => "licence plate",
            IdentifierKind::MacAddress => "MAC address",
            IdentifierKind::PersonLink => "person id",
            IdentifierKind::Other => "identifier",
        })
    }
}

fn canonical_mac(raw: &str) -> Result<String, PseudonymError> {
    let s = raw.trim();
    let b = s.as_bytes();
    let hex: String = match b.len() {
        12 => s.to_string(),
        // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff, one separator throughout.
        17 => {
            let sep = b[2];
            if sep != b':' && sep != b'-' {
                return Err(PseudonymError::BadMac);
            }
            if (2..17).step_by(3).any(|i| b[i] != sep) {
                return Err(PseudonymError::BadMac);
            }
            s.split(sep as char).collect()
        }
        // aabb.ccdd.eeff (Cisco style)
        14 => {
            if b[4] != b'.' || b[9] != b'.' {
                return Err(PseudonymError::BadMac);
            }
            s.split('.').collect()
        }
        _ => return Err(PseudonymError::BadMac),
    };
    if hex.len() != 12 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(PseudonymError::BadMac);
    }
    Ok(hex.to_ascii_lowercase())
}

/// Checks that a purpose is a simple name: it becomes a directory name and a field of
/// the pseudonym text, so no separators, dots or upper case.
pub fn validate_purpose(purpose: &str) -> Result<(), PseudonymError> {
    let ok = (1..=64).contains(&purpose.len())
        && purpose.starts_with(|c: char| c.is_ascii_lowercase())
        && purpose
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(PseudonymError::BadPurpose(
            purpose.chars().take(64).collect(),
        ))
    }
}

/// A pseudonym: `pn1:<purpose>:<version>:<base64url tag>` (see the [module docs](self)).
///
/// Serializes as its text. Parsing checks the shape, not that a key made it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym {
    text: String,
    version: u32,
}

impl Pseudonym {
    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key version that made it.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The purpose it was made for.
    pub fn purpose(&self) -> &str {
        self.text[PREFIX.len()..]
            .split(':')
            .next()
            .unwrap_or_default()
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl FromStr for Pseudonym {
    type Err = PseudonymError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix(PREFIX).ok_or(PseudonymError::BadPseudonym)?;
        let mut parts = rest.split(':');
        let (Some(purpose), Some(version), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PseudonymError::BadPseudonym);
        };
        validate_purpose(purpose).map_err(|_| PseudonymError::BadPseudonym)?;
        // Digits only (no sign, no leading zero) so that each pseudonym has one text.
        let version_ok = version.bytes().all(|c| c.is_ascii_digit()) && !version.starts_with('0');
        let version: u32 = version
            .parse()
            .ok()
            .filter(|v| version_ok && *v > 0)
            .ok_or(PseudonymError::BadPseudonym)?;
        let decoded = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| PseudonymError::BadPseudonym)?;
        if decoded.len() != TAG_LEN || URL_SAFE_NO_PAD.encode(&decoded) != tag {
            return Err(PseudonymError::BadPseudonym);
        }
        Ok(Pseudonym {
            text: s.to_string(),
            version,
        })
    }
}

impl Serialize for Pseudonym {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pseudonym {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The retained key versions of one (tenant, purpose), newest last.
type Versions = BTreeMap<u32, hmac::Key>;

/// Makes pseudonyms with keys per (tenant, purpose, version) from a [`KeyDir`].
///
/// Keys are loaded from disk on first use and cached; all methods take `&self` and the
/// type is `Send + Sync`, so one `Arc<Pseudonymizer>` serves every source. Rotation and
/// retirement by another process using the same key directory are seen only after a
/// reopen.
#[derive(Debug)]
pub struct Pseudonymizer {
    keys: KeyDir,
    rng: SystemRandom,
    cache: RwLock<HashMap<Tenant, HashMap<String, Arc<Versions>>>>,
    /// Serializes loading, rotation and retirement, so two threads never race to
    /// create the same version.
    change: Mutex<()>,
}

impl Pseudonymizer {
    /// A pseudonymizer over `keys`. Touches no file until first use.
    pub fn new(keys: KeyDir) -> Self {
        Pseudonymizer {
            keys,
            rng: SystemRandom::new(),
            cache: RwLock::new(HashMap::new()),
            change: Mutex::new(()),
        }
    }

    /// The pseudonym of `raw` under the current key of (`tenant`, `purpose`), creating
    /// version 1 if the purpose has no key yet.
    pub fn pseudonymize(
        &self,
        tenant: &Tenant,
        purpose: &str,
        kind: IdentifierKind,
        raw: &str,
    ) -> Result<Pseudonym, PseudonymError> {
        validate_purpose(purpose)?;
        let canonical = kind.canonicalize(raw)?;
        let versions = self.versions_of(tenant, purpose)?;
        let (version, key) = versions
            .last_key_value()
            .ok_or(PseudonymError::UnknownVersion {
                tenant: tenant.clone(),
                purpose: purpose.to_string(),
                version: 1,
            })?;
        Ok(make(key, tenant, purpose, *version, kind, &canonical))
    }

    /// The pseudonyms of `raw` under every retained version of (`tenant`, `purpose`),
    /// newest first: to find data stored before a rotation.
    pub fn candidates(
        &self,
        tenant: &Tenant,
        purpose: &str,
        kind: IdentifierKind,
        raw: &str,
    ) -> Result<Vec<Pseudonym>, PseudonymError> {
        validate_purpose(purpose)?;
        let canonical = kind.canonicalize(raw)?;
        let versions = self.versions_of(tenant, purpose)?;
        Ok(versions
            .iter()
            .rev()
            .map(|(v, key)| make(key, tenant, purpose, *v, kind, &canonical))
            .collect())
    }

    /// The retained key versions of (`tenant`, `purpose`), oldest first; the last is the
    /// current one. Creates version 1 if there is none.
    pub fn versions(&self, tenant: &Tenant, purpose: &str) -> Result<Vec<u32>, PseudonymError> {
        validate_purpose(purpose)?;
        Ok(self.versions_of(tenant, purpose)?.keys().copied().collect())
    }

    /// Creates a new key version for (`tenant`, `purpose`) and makes it current.
    /// Returns the new version. Earlier versions are kept until [`retire`](Self::retire)d.
    pub fn rotate(&self, tenant: &Tenant, purpose: &str) -> Result<u32, PseudonymError> {
        validate_purpose(purpose)?;
        let _guard = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        let mut versions = (*self.load_locked(tenant, purpose)?).clone();
        let mut next = versions
            .last_key_value()
            .map_or(1, |(v, _)| v.saturating_add(1));
        // Another process may have made a version we have not seen: take the next free.
        let key = loop {
            let bytes: [u8; KEY_LEN] = random_bytes(&self.rng)?;
            match self
                .keys
                .create_file(&key_path(tenant, purpose, next), &bytes)?
            {
                Created::New => break hmac::Key::new(hmac::HMAC_SHA256, &bytes),
                Created::Existed if next < u32::MAX => next += 1,
                Created::Existed => {
                    return Err(PseudonymError::UnknownVersion {
                        tenant: tenant.clone(),
                        purpose: purpose.to_string(),
                        version: next,
                    });
                }
            }
        };
        versions.insert(next, key);
        self.store(tenant, purpose, versions);
        tracing::info!(
            message = "pseudonym key rotated",
            tenant = %tenant,
            purpose,
            version = next,
        );
        Ok(next)
    }

    /// Deletes key `version` of (`tenant`, `purpose`).
    ///
    /// **Irreversible**: every pseudonym made with this version becomes unlinkable
    /// forever. The current version cannot be retired; rotate first.
    pub fn retire(
        &self,
        tenant: &Tenant,
        purpose: &str,
        version: u32,
    ) -> Result<(), PseudonymError> {
        validate_purpose(purpose)?;
        let _guard = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        let mut versions = (*self.load_locked(tenant, purpose)?).clone();
        let current = versions.last_key_value().map(|(v, _)| *v);
        if current == Some(version) {
            return Err(PseudonymError::RetireCurrent {
                tenant: tenant.clone(),
                purpose: purpose.to_string(),
                version,
            });
        }
        if versions.remove(&version).is_none() {
            return Err(PseudonymError::UnknownVersion {
                tenant: tenant.clone(),
                purpose: purpose.to_string(),
                version,
            });
        }
        self.keys.remove_file(&key_path(tenant, purpose, version))?;
        self.store(tenant, purpose, versions);
        tracing::info!(
            message = "pseudonym key retired; its pseudonyms are now unlinkable",
            tenant = %tenant,
            purpose,
            version,
        );
        Ok(())
    }

    /// The cached versions, loading (and creating version 1) on first use.
    fn versions_of(&self, tenant: &Tenant, purpose: &str) -> Result<Arc<Versions>, PseudonymError> {
        if let Some(v) = self.cached(tenant, purpose) {
            return Ok(v);
        }
        let _guard = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        self.load_locked(tenant, purpose)
    }

    fn cached(&self, tenant: &Tenant, purpose: &str) -> Option<Arc<Versions>> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        cache.get(tenant).and_then(|p| p.get(purpose)).cloned()
    }

    /// Loads the versions from disk unless cached. Call with `self.change` held.
    fn load_locked(&self, tenant: &Tenant, purpose: &str) -> Result<Arc<Versions>, PseudonymError> {
        if let Some(v) = self.cached(tenant, purpose) {
            return Ok(v);
        }
        let dir = purpose_dir(tenant, purpose);
        let mut versions = Versions::new();
        for name in self.keys.list(&dir)? {
            let Some(v) = parse_key_name(&name) else {
                continue;
            };
            if let Some(bytes) = self.keys.read_key(&key_path(tenant, purpose, v))? {
                versions.insert(v, hmac::Key::new(hmac::HMAC_SHA256, &bytes));
            }
        }
        if versions.is_empty() {
            let bytes: [u8; KEY_LEN] = random_bytes(&self.rng)?;
            let path = key_path(tenant, purpose, 1);
            let bytes = match self.keys.create_file(&path, &bytes)? {
                Created::New => {
                    tracing::info!(message = "pseudonym key created", tenant = %tenant, purpose, version = 1);
                    bytes
                }
                // Another process created it between our listing and now.
                Created::Existed => {
                    self.keys
                        .read_key(&path)?
                        .ok_or_else(|| PseudonymError::UnknownVersion {
                            tenant: tenant.clone(),
                            purpose: purpose.to_string(),
                            version: 1,
                        })?
                }
            };
            versions.insert(1, hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        }
        Ok(self.store(tenant, purpose, versions))
    }

    fn store(&self, tenant: &Tenant, purpose: &str, versions: Versions) -> Arc<Versions> {
        let versions = Arc::new(versions);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache
            .entry(tenant.clone())
            .or_default()
            .insert(purpose.to_string(), Arc::clone(&versions));
        versions
    }
}

fn purpose_dir(tenant: &Tenant, purpose: &str) -> PathBuf {
    // Both are validated simple names: no separators, no dots.
    ["pseudonym", tenant.as_str(), purpose].iter().collect()
}

fn key_path(tenant: &Tenant, purpose: &str, version: u32) -> PathBuf {
    purpose_dir(tenant, purpose).join(format!("v{version}.key"))
}

/// `v<N>.key` → N, for N ≥ 1 written without leading zeros.
fn parse_key_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('v')?.strip_suffix(".key")?;
    if digits.starts_with('0') || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn push_lp(msg: &mut Vec<u8>, part: &[u8]) {
    // Parts are bounded (names ≤ 64 bytes, values ≤ MAX_RAW_LEN), so this never saturates.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(part);
}

fn make(
    key: &hmac::Key,
    tenant: &Tenant,
    purpose: &str,
    version: u32,
    kind: IdentifierKind,
    canonical: &str,
) -> Pseudonym {
    let mut msg = Vec::with_capacity(64 + canonical.len());
    msg.extend_from_slice(DOMAIN);
    push_lp(&mut msg, tenant.as_str().as_bytes());
    push_lp(&mut msg, purpose.as_bytes());
    msg.extend_from_slice(&version.to_be_bytes());
    push_lp(&mut msg, kind.tag().as_bytes());
    push_lp(&mut msg, canonical.as_bytes());
    let tag = hmac::sign(key, &msg);
    let short = &tag.as_ref()[..TAG_LEN];
    Pseudonym {
        text: format!(
            "{PREFIX}{purpose}:{version}:{}",
            URL_SAFE_NO_PAD.encode(short)
        ),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(name: &str) -> Tenant {
        Tenant::new(name).unwrap()
    }

    #[test]
    fn mac_forms_agree_and_bad_macs_fail() {
        let k = IdentifierKind::MacAddress;
        for form in [
            "aa:bb:cc:dd:ee:0f",
            "AA-BB-CC-DD-EE-0F",
            "aabb.ccdd.ee0f",
            "AABBCCDDEE0F",
            "  aa:bb:cc:dd:ee:0f ",
        ] {
            assert_eq!(k.canonicalize(form).unwrap(), "aabbccddee0f", "{form}");
        }
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb-cc:dd:ee:ff",
            "gg:bb:cc:dd:ee:ff",
            "aabbccddeeff00",
            "aab.bccdd.eeff",
            "aa:bb:cc:dd:ee:f:",
            "aabbccddeefg",
            "+abbccddeeff",
            "ää:bb:cc:dd:ee",
        ] {
            assert!(
                matches!(k.canonicalize(bad), Err(PseudonymError::BadMac)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn other_kinds_canonicalize() {
        use IdentifierKind::*;
        assert_eq!(LicencePlate.canonicalize(" ab-12 cd ").unwrap(), "AB12CD");
        assert_eq!(LicencePlate.canonicalize("m-ün 42").unwrap(), "MÜN42");
        assert_eq!(
            AccountNumber.canonicalize("DE89 3704 0044").unwrap(),
            "DE8937040044"
        );
        assert_eq!(
            PersonLink.canonicalize("  citizen 42 ").unwrap(),
            "citizen 42"
        );
        assert!(matches!(
            LicencePlate.canonicalize(" - "),
            Err(PseudonymError::Empty(_))
        ));
        assert!(matches!(
            Other.canonicalize("a\u{0}b"),
            Err(PseudonymError::ControlCharacters(_))
        ));
        assert!(matches!(
            Other.canonicalize(&"x".repeat(MAX_RAW_LEN + 1)),
            Err(PseudonymError::TooLong { .. })
        ));
    }

    #[test]
    fn errors_never_echo_the_identifier() {
        let p = Pseudonymizer::new(KeyDir::open(tempfile::tempdir().unwrap().path()).unwrap());
        let secret = "SECRETPLATE";
        for (kind, raw) in [
            (IdentifierKind::MacAddress, "SECRETPLATE"),
            (IdentifierKind::Other, "SECRETPLATE\u{7}"),
        ] {
            let err = p
                .pseudonymize(&t("adelaide"), "parking", kind, raw)
                .unwrap_err();
            assert!(!err.to_string().contains(secret), "{err}");
            assert!(!format!("{err:?}").contains(secret), "{err:?}");
        }
    }

    #[test]
    fn purposes_are_simple_names() {
        for ok in ["parking", "water-billing", "a_1"] {
            assert!(validate_purpose(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "Parking",
            "1st",
            "a:b",
            "a.b",
            ".",
            &"a".repeat(65),
        ] {
            assert!(validate_purpose(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_traversal_is_refused_before_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pseudonymizer::new(KeyDir::open(dir.path().join("k")).unwrap());
        let err = p
            .pseudonymize(&t("adelaide"), "../../escape", IdentifierKind::Other, "x")
            .unwrap_err();
        assert!(matches!(err, PseudonymError::BadPurpose(_)));
        assert!(p.rotate(&t("adelaide"), "..").is_err());
        assert!(!dir.path().join("escape").exists());
        assert!(!dir.path().join("k/pseudonym").exists());
    }

    #[test]
    fn stable_across_reopen_and_separated_by_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (t("adelaide"), t("bergen"));
        let plate = IdentifierKind::LicencePlate;
        let first = {
            let p = Pseudonymizer::new(KeyDir::open(dir.path()).unwrap());
            p.pseudonymize(&a, "parking", plate, "AB 123").unwrap()
        };
        let p = Pseudonymizer::new(KeyDir::open(dir.path()).unwrap());
        let again = p.pseudonymize(&a, "parking", plate, "ab-123").unwrap();
        assert_eq!(first, again, "same input after reopen");
        assert_eq!(again.version(), 1);
        assert_eq!(again.purpose(), "parking");

        let others = [
            p.pseudonymize(&b, "parking", plate, "AB123").unwrap(),
            p.pseudonymize(&a, "tolling", plate, "AB123").unwrap(),
            p.pseudonymize(&a, "parking", IdentifierKind::AccountNumber, "AB123")
                .unwrap(),
            p.pseudonymize(&a, "parking", plate, "AB124").unwrap(),
        ];
        for o in &others {
            assert_ne!(
                o.as_str().rsplit(':').next(),
                first.as_str().rsplit(':').next(),
                "{o}"
            );
        }
        let v2 = p.rotate(&a, "parking").unwrap();
        assert_eq!(v2, 2);
        let rotated = p.pseudonymize(&a, "parking", plate, "AB123").unwrap();
        assert_eq!(rotated.version(), 2);
        assert_ne!(rotated, first);
        for out in others.iter().chain([&first, &rotated]) {
            assert!(!out.as_str().to_uppercase().contains("AB12"), "{out}");
            assert_eq!(out.as_str().parse::<Pseudonym>().unwrap(), *out);
        }
    }

    #[test]
    fn rotate_candidates_retire() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pseudonymizer::new(KeyDir::open(dir.path()).unwrap());
        let a = t("adelaide");
        let mac = IdentifierKind::MacAddress;
        let old = p
            .pseudonymize(&a, "wifi", mac, "aa:bb:cc:dd:ee:ff")
            .unwrap();
        assert_eq!(p.rotate(&a, "wifi").unwrap(), 2);
        assert_eq!(p.rotate(&a, "wifi").unwrap(), 3);
        let c = p.candidates(&a, "wifi", mac, "AABBCCDDEEFF").unwrap();
        assert_eq!(
            c.iter().map(Pseudonym::version).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        assert_eq!(c[2], old);
        assert!(matches!(
            p.retire(&a, "wifi", 3),
            Err(PseudonymError::RetireCurrent { .. })
        ));
        p.retire(&a, "wifi", 1).unwrap();
        assert!(matches!(
            p.retire(&a, "wifi", 1),
            Err(PseudonymError::UnknownVersion { .. })
        ));
        // After reopen, version 1 is gone for good and numbering continues.
        let p = Pseudonymizer::new(KeyDir::open(dir.path()).unwrap());
        assert_eq!(p.versions(&a, "wifi").unwrap(), [2, 3]);
        let c = p.candidates(&a, "wifi", mac, "aa-bb-cc-dd-ee-ff").unwrap();
        assert!(!c.contains(&old));
        assert_eq!(p.rotate(&a, "wifi").unwrap(), 4);
    }

    #[test]
    fn pseudonymizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pseudonymizer>();
    }

    #[test]
    fn malformed_pseudonym_text_is_refused() {
        for bad in [
            "",
            "pn1:parking:1",
            "pn2:parking:1:AAAAAAAAAAAAAAAAAAAAAA",
            "pn1:parking:0:AAAAAAAAAAAAAAAAAAAAAA",
            "pn1:parking:01:AAAAAAAAAAAAAAAAAAAAAA",
            "pn1:parking:1:AAAAAAAAAAAAAAAAAAAAA",
            "pn1:parking:1:AAAAAAAAAAAAAAAAAAAAAA:x",
            "pn1:Parking:1:AAAAAAAAAAAAAAAAAAAAAA",
            "pn1:parking:1:AAAAAAAAAAAAAAAAAAAAA+",
        ] {
            assert!(bad.parse::<Pseudonym>().is_err(), "{bad}");
        }
        assert!(
            "pn1:parking:7:AAAAAAAAAAAAAAAAAAAAAA"
                .parse::<Pseudonym>()
                .is_ok()
        );
    }

    proptest! {
        #[test]
        fn pseudonym_text_round_trips(purpose in "[a-z][a-z0-9_-]{0,20}", version in 1u32.., tag in proptest::array::uniform16(any::<u8>())) {
            let text = format!("{PREFIX}{purpose}:{version}:{}", URL_SAFE_NO_PAD.encode(tag));
            let p: Pseudonym = text.parse().unwrap();
            prop_assert_eq!(p.version(), version);
            prop_assert_eq!(p.purpose(), purpose.as_str());
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<Pseudonym>(&json).unwrap(), p);
        }

        #[test]
        fn mac_canonical_form_is_a_fixed_point(bytes in proptest::array::uniform6(any::<u8>())) {
            let colon = bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
            let c = IdentifierKind::MacAddress.canonicalize(&colon).unwrap();
            prop_assert_eq!(IdentifierKind::MacAddress.canonicalize(&c).unwrap(), c);
        }
    }
}
