//! Crypto-shredding: per-citizen data keys whose deletion erases the citizen's data
//! everywhere it is stored (issue #3 §5).
//!
//! Owns the `vault/` part of the [`KeyDir`]; must not touch the pseudonym keys or any
//! stored data (the caller stores the envelopes).
//!
//! Each (tenant, subject) has its own AES-256-GCM key, made on its first
//! [`CitizenVault::seal`]. The subject is the citizen's pseudonym. Personal data is
//! stored only as envelopes sealed under that key:
//!
//! ```text
//! envelope = "enc1:" base64url(nonce ‖ ciphertext ‖ tag)      (no padding)
//! nonce    = 96 random bits from the operating system (SystemRandom)
//! aad      = "polity-vault-v1" ‖ lp(tenant) ‖ lp(subject) ‖ caller's aad
//! ```
//!
//! (`lp(x)` is `x` preceded by its length as a big-endian `u32`.) The AAD binds an
//! envelope to its tenant, its subject and whatever the caller adds (e.g. the entity and
//! attribute), so an envelope copied to another place does not open. Random nonces are
//! safe for far more than the 2³² messages per key that AES-GCM allows, since each key
//! belongs to one citizen.
//!
//! # Erasure
//!
//! [`CitizenVault::erase`] deletes the subject's key file, fsyncs its directory and
//! drops the key from memory. From then on no envelope sealed under that key can be
//! opened: not in the series store, not in caches, not in **backups of the data**,
//! which hold only envelopes. This works only if the key directory is never backed up
//! or copied together with the data (see [`KeyDir::check_apart_from`]).
//!
//! A small tombstone file (no key material) records the erasure, so that
//! [`CitizenVault::open`] can answer [`VaultError::Erased`] rather than "no such key",
//! and so that a later `seal` for the same subject is refused: data arriving after an
//! erasure request must not quietly start a new key. [`CitizenVault::reinstate`]
//! removes the tombstone when the citizen really returns; envelopes from before the
//! erasure stay unreadable.
//!
//! # Layout
//!
//! Key files are named by `h = SHA-256("polity-vault-subject-v1" ‖ lp(tenant) ‖
//! lp(subject))` as hex, in a directory named by its first two hex digits:
//! `vault/<tenant>/<h[0..2]>/<h>.key` and `.erased`. The subject's text never appears
//! in a file name. Someone who can list the directory and guesses a subject can confirm
//! it, but subjects are pseudonyms, which cannot be guessed without their key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use polity_model::Tenant;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;
use ring::rand::SystemRandom;

use crate::keys::{Created, KEY_LEN, KeyDir, KeyError, random_bytes};

/// The prefix of every envelope; the `1` is the format version.
pub const ENVELOPE_PREFIX: &str = "enc1:";

/// The longest subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 512;

/// Keys kept in memory by default; beyond that an arbitrary one is dropped and reloaded
/// from disk when needed.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

const TAG_LEN: usize = 16;
const AAD_DOMAIN: &[u8] = b"polity-vault-v1";
const NAME_DOMAIN: &[u8] = b"polity-vault-subject-v1";
const TOMBSTONE: &[u8] = b"erased: the key of this subject was destroyed (crypto-shredded)\n";

/// Errors from the vault. None of them contains a subject or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key directory failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The subject's key was erased: the data is gone for good.
    #[error(
        "this subject's key in tenant {tenant} was erased (crypto-shredded): data sealed under it can never be opened again; drop the envelope"
    )]
    Erased {
        /// The tenant.
        tenant: Tenant,
    },
    /// `seal` for an erased subject.
    #[error(
        "this subject in tenant {tenant} was erased; new data is refused so that erasure is not silently undone: call reinstate only if the citizen has returned and agreed"
    )]
    SealAfterErase {
        /// The tenant.
        tenant: Tenant,
    },
    /// No key ever existed for this subject (and it was not erased).
    #[error(
        "no key exists for this subject in tenant {tenant}: the envelope was not sealed by this vault, or belongs to another tenant or subject, or the key directory is not the one it was sealed with"
    )]
    NoKey {
        /// The tenant.
        tenant: Tenant,
    },
    /// The envelope is not `enc1:` followed by base64url of at least nonce and tag.
    #[error(
        "not a vault envelope: expected `enc1:` followed by base64url (no padding) of nonce, ciphertext and tag"
    )]
    Malformed,
    /// Authentication failed.
    #[error(
        "the envelope does not open under this subject's key: it was altered, sealed for another subject, tenant or aad, or sealed under a key erased before a reinstate"
    )]
    Corrupt,
    /// The subject is empty or longer than [`MAX_SUBJECT_LEN`].
    #[error(
        "the subject is empty or longer than {MAX_SUBJECT_LEN} bytes: pass the citizen's pseudonym"
    )]
    BadSubject,
    /// The random generator or the cipher failed.
    #[error(
        "encryption failed; the operating system's random generator or the AES-GCM implementation reported an error"
    )]
    Crypto,
}

/// What the vault knows about a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectStatus {
    /// A key exists: envelopes open.
    Active,
    /// The key was erased.
    Erased,
    /// Nothing was ever sealed for this subject.
    Unknown,
}

type CacheKey = (Tenant, [u8; 32]);

/// Per-citizen data keys over a [`KeyDir`] (see the [module docs](self)).
///
/// All methods take `&self`; the type is `Send + Sync`. Keys are cached in memory (up
/// to a capacity). One process should own a key directory: an erasure made by another
/// process is seen here only for keys not cached, or after a reopen.
#[derive(Debug)]
pub struct CitizenVault {
    keys: KeyDir,
    rng: SystemRandom,
    cache: RwLock<HashMap<CacheKey, Arc<LessSafeKey>>>,
    capacity: usize,
    /// Serializes key creation, erasure and reinstatement.
    change: Mutex<()>,
}

impl CitizenVault {
    /// A vault over `keys` with [`DEFAULT_CACHE_CAPACITY`]. Touches no file until used.
    pub fn new(keys: KeyDir) -> Self {
        Self::with_cache_capacity(keys, DEFAULT_CACHE_CAPACITY)
    }

    /// A vault that keeps at most `capacity` keys in memory (at least 1).
    pub fn with_cache_capacity(keys: KeyDir, capacity: usize) -> Self {
        CitizenVault {
            keys,
            rng: SystemRandom::new(),
            cache: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
            change: Mutex::new(()),
        }
    }

    /// Encrypts `plaintext` for (`tenant`, `subject`), creating the subject's key on
    /// first use. `aad` is authenticated, not stored: pass the same bytes to
    /// [`open`](Self::open). Refused with [`VaultError::SealAfterErase`] for an erased
    /// subject.
    pub fn seal(
        &self,
        tenant: &Tenant,
        subject: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<String, VaultError> {
        let name = subject_name(tenant, subject)?;
        let key = match self.key(tenant, &name)? {
            Some(k) => k,
            None => self.create_key(tenant, &name)?,
        };
        let nonce: [u8; NONCE_LEN] = random_bytes(&self.rng)?;
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(full_aad(tenant, subject, aad)),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| VaultError::Crypto)?;
        buf.extend_from_slice(tag.as_ref());
        let mut out = String::with_capacity(ENVELOPE_PREFIX.len() + buf.len() * 4 / 3 + 4);
        out.push_str(ENVELOPE_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&buf, &mut out);
        Ok(out)
    }

    /// Decrypts an envelope made by [`seal`](Self::seal) for the same tenant, subject
    /// and `aad`.
    ///
    /// [`VaultError::Erased`] if the subject's key was erased, [`VaultError::NoKey`] if
    /// there never was one, [`VaultError::Corrupt`] if the envelope was altered or
    /// belongs elsewhere.
    pub fn open(
        &self,
        tenant: &Tenant,
        subject: &str,
        envelope: &str,
        aad: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let name = subject_name(tenant, subject)?;
        let body = envelope
            .strip_prefix(ENVELOPE_PREFIX)
            .ok_or(VaultError::Malformed)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| VaultError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Malformed);
        }
        let key = match self.key(tenant, &name)? {
            Some(k) => k,
            None if self.keys.exists(&tombstone_path(tenant, &name))? => {
                return Err(VaultError::Erased {
                    tenant: tenant.clone(),
                });
            }
            None => {
                return Err(VaultError::NoKey {
                    tenant: tenant.clone(),
                });
            }
        };
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN])
            .map_err(|_| VaultError::Malformed)?;
        let len = key
            .open_in_place(
                nonce,
                Aad::from(full_aad(tenant, subject, aad)),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| VaultError::Corrupt)?
            .len();
        bytes.drain(..NONCE_LEN);
        bytes.truncate(len);
        Ok(bytes)
    }

    /// Erases (crypto-shreds) the subject's key: writes the tombstone, deletes the key
    /// file, fsyncs, and drops the key from memory. Returns whether a key existed.
    ///
    /// Idempotent, and also valid for a subject never sealed (its future `seal`s are then
    /// refused). Re-apply erasures after restoring a key directory from its own backup,
    /// since the backup may predate them.
    pub fn erase(&self, tenant: &Tenant, subject: &str) -> Result<bool, VaultError> {
        let name = subject_name(tenant, subject)?;
        let _guard = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        // Tombstone first: if we crash before the unlink, the key is still treated as
        // erased (and deleted by the next `key` lookup).
        self.keys
            .replace_file(&tombstone_path(tenant, &name), TOMBSTONE)?;
        self.evict(tenant, &name);
        let existed = self.keys.remove_file(&key_path(tenant, &name))?;
        tracing::info!(message = "citizen key erased", tenant = %tenant, key_existed = existed);
        Ok(existed)
    }

    /// Allows `seal` again for an erased subject, with a new key. Envelopes sealed before
    /// the erasure stay unreadable. Does nothing for a subject that is not erased.
    pub fn reinstate(&self, tenant: &Tenant, subject: &str) -> Result<(), VaultError> {
        let name = subject_name(tenant, subject)?;
        let _guard = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        // A key left over by a crash during erase must not come back to life.
        self.keys.remove_file(&key_path(tenant, &name))?;
        if self.keys.remove_file(&tombstone_path(tenant, &name))? {
            tracing::info!(message = "erased citizen reinstated", tenant = %tenant);
        }
        Ok(())
    }

    /// Whether the subject has a key, was erased, or is unknown.
    pub fn status(&self, tenant: &Tenant, subject: &str) -> Result<SubjectStatus, VaultError> {
        let name = subject_name(tenant, subject)?;
        if self.keys.exists(&tombstone_path(tenant, &name))? {
            Ok(SubjectStatus::Erased)
        } else if self.key(tenant, &name)?.is_some() {
            Ok(SubjectStatus::Active)
        } else {
            Ok(SubjectStatus::Unknown)
        }
    }

    /// The subject's key from memory or disk; `None` if there is none or it was erased.
    fn key(
        &self,
        tenant: &Tenant,
        name: &[u8; 32],
    ) -> Result<Option<Arc<LessSafeKey>>, VaultError> {
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(k) = cache.get(&(tenant.clone(), *name)) {
                return Ok(Some(Arc::clone(k)));
            }
        }
        let _guard = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        self.load_locked(tenant, name)
    }

    /// Loads a key from disk into the cache. Call with `self.change` held.
    fn load_locked(
        &self,
        tenant: &Tenant,
        name: &[u8; 32],
    ) -> Result<Option<Arc<LessSafeKey>>, VaultError> {
        if self.keys.exists(&tombstone_path(tenant, name))? {
            // Finish an erasure interrupted between tombstone and unlink.
            if self.keys.remove_file(&key_path(tenant, name))? {
                tracing::warn!(message = "finished an interrupted erasure", tenant = %tenant);
            }
            return Ok(None);
        }
        let Some(mut bytes) = self.keys.read_key(&key_path(tenant, name))? else {
            return Ok(None);
        };
        let key = make_key(&bytes);
        bytes.fill(0);
        Ok(Some(self.insert(tenant, name, key?)))
    }

    fn create_key(&self, tenant: &Tenant, name: &[u8; 32]) -> Result<Arc<LessSafeKey>, VaultError> {
        let _guard = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        if self.keys.exists(&tombstone_path(tenant, name))? {
            return Err(VaultError::SealAfterErase {
                tenant: tenant.clone(),
            });
        }
        let mut bytes: [u8; KEY_LEN] = random_bytes(&self.rng)?;
        let path = key_path(tenant, name);
        match self.keys.create_file(&path, &bytes)? {
            Created::New => {
                let key = make_key(&bytes);
                bytes.fill(0);
                Ok(self.insert(tenant, name, key?))
            }
            // Made by another thread or process meanwhile: use theirs.
            Created::Existed => {
                bytes.fill(0);
                self.load_locked(tenant, name)?.ok_or(VaultError::NoKey {
                    tenant: tenant.clone(),
                })
            }
        }
    }

    fn insert(&self, tenant: &Tenant, name: &[u8; 32], key: LessSafeKey) -> Arc<LessSafeKey> {
        let key = Arc::new(key);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.capacity {
            // Any victim will do: a reload costs one small file read.
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert((tenant.clone(), *name), Arc::clone(&key));
        key
    }

    fn evict(&self, tenant: &Tenant, name: &[u8; 32]) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.remove(&(tenant.clone(), *name));
    }
}

fn make_key(bytes: &[u8; KEY_LEN]) -> Result<LessSafeKey, VaultError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| VaultError::Crypto)
}

fn push_lp(out: &mut Vec<u8>, part: &[u8]) {
    // Tenants ≤ 64 bytes and subjects ≤ MAX_SUBJECT_LEN: never saturates.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
}

fn full_aad(tenant: &Tenant, subject: &str, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        AAD_DOMAIN.len() + 8 + tenant.as_str().len() + subject.len() + aad.len(),
    );
    out.extend_from_slice(AAD_DOMAIN);
    push_lp(&mut out, tenant.as_str().as_bytes());
    push_lp(&mut out, subject.as_bytes());
    out.extend_from_slice(aad);
    out
}

/// The hash that names a subject's files.
fn subject_name(tenant: &Tenant, subject: &str) -> Result<[u8; 32], VaultError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return Err(VaultError::BadSubject);
    }
    let mut msg = Vec::with_capacity(NAME_DOMAIN.len() + 8 + tenant.as_str().len() + subject.len());
    msg.extend_from_slice(NAME_DOMAIN);
    push_lp(&mut msg, tenant.as_str().as_bytes());
    push_lp(&mut msg, subject.as_bytes());
    let d = digest::digest(&digest::SHA256, &msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
            s
        })
}

fn file_path(tenant: &Tenant, name: &[u8; 32], ext: &str) -> PathBuf {
    let h = hex(name);
    let shard = &h[..2];
    // The tenant is a validated simple name; the rest is hex.
    ["vault", tenant.as_str(), shard, &format!("{h}.{ext}")]
        .iter()
        .collect()
}

fn key_path(tenant: &Tenant, name: &[u8; 32]) -> PathBuf {
    file_path(tenant, name, "key")
}

fn tombstone_path(tenant: &Tenant, name: &[u8; 32]) -> PathBuf {
    file_path(tenant, name, "erased")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(name: &str) -> Tenant {
        Tenant::new(name).unwrap()
    }

    const ALICE: &str = "pn1:citizen:1:AAAAAAAAAAAAAAAAAAAAAA";
    const BOB: &str = "pn1:citizen:1:BBBBBBBBBBBBBBBBBBBBBB";

    fn vault(dir: &std::path::Path) -> CitizenVault {
        CitizenVault::new(KeyDir::open(dir).unwrap())
    }

    #[test]
    fn wrong_aad_subject_or_tenant_fails() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let a = t("adelaide");
        let env = v
            .seal(&a, ALICE, b"meter 7: 12.5 kL", b"attr:water")
            .unwrap();
        assert!(env.starts_with(ENVELOPE_PREFIX));
        assert!(!env.contains("meter"));
        assert_eq!(
            v.open(&a, ALICE, &env, b"attr:water").unwrap(),
            b"meter 7: 12.5 kL"
        );
        assert!(matches!(
            v.open(&a, ALICE, &env, b"attr:gas"),
            Err(VaultError::Corrupt)
        ));
        v.seal(&a, BOB, b"x", b"").unwrap();
        assert!(matches!(
            v.open(&a, BOB, &env, b"attr:water"),
            Err(VaultError::Corrupt)
        ));
        assert!(matches!(
            v.open(&t("bergen"), ALICE, &env, b"attr:water"),
            Err(VaultError::NoKey { .. })
        ));
    }

    #[test]
    fn tampered_or_malformed_envelopes_fail() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let a = t("adelaide");
        let env = v.seal(&a, ALICE, b"hello", b"").unwrap();
        let raw = URL_SAFE_NO_PAD
            .decode(&env[ENVELOPE_PREFIX.len()..])
            .unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = format!("{ENVELOPE_PREFIX}{}", URL_SAFE_NO_PAD.encode(&bad));
            assert!(
                matches!(v.open(&a, ALICE, &bad, b""), Err(VaultError::Corrupt)),
                "byte {i}"
            );
        }
        let short = format!("{ENVELOPE_PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw[..27]));
        for bad in [
            "",
            "enc1:",
            "enc2:AAAA",
            "enc1:!!!!",
            short.as_str(),
            &env[1..],
        ] {
            assert!(
                matches!(v.open(&a, ALICE, bad, b""), Err(VaultError::Malformed)),
                "{bad}"
            );
        }
        assert!(matches!(
            v.seal(&a, "", b"x", b""),
            Err(VaultError::BadSubject)
        ));
    }

    #[test]
    fn same_plaintext_seals_differently() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let a = t("adelaide");
        assert_ne!(
            v.seal(&a, ALICE, b"x", b"").unwrap(),
            v.seal(&a, ALICE, b"x", b"").unwrap()
        );
    }

    #[test]
    fn erase_is_final_across_reopen_and_spares_others() {
        let dir = tempfile::tempdir().unwrap();
        let a = t("adelaide");
        let (alice_env, bob_env) = {
            let v = vault(dir.path());
            let e = v.seal(&a, ALICE, b"alice's data", b"").unwrap();
            let b = v.seal(&a, BOB, b"bob's data", b"").unwrap();
            assert_eq!(v.status(&a, ALICE).unwrap(), SubjectStatus::Active);
            assert!(v.erase(&a, ALICE).unwrap());
            // Erased at once, although the key was cached.
            assert!(matches!(
                v.open(&a, ALICE, &e, b""),
                Err(VaultError::Erased { .. })
            ));
            (e, b)
        };
        let v = vault(dir.path());
        assert!(matches!(
            v.open(&a, ALICE, &alice_env, b""),
            Err(VaultError::Erased { .. })
        ));
        assert_eq!(v.open(&a, BOB, &bob_env, b"").unwrap(), b"bob's data");
        assert_eq!(v.status(&a, ALICE).unwrap(), SubjectStatus::Erased);
        assert!(!v.erase(&a, ALICE).unwrap(), "idempotent");
        assert!(matches!(
            v.seal(&a, ALICE, b"new", b""),
            Err(VaultError::SealAfterErase { .. })
        ));

        // No file anywhere holds the old key any more: only tombstone and Bob's key.
        let mut files = Vec::new();
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    files.push(p)
                }
            }
        }
        let mut exts: Vec<_> = files
            .iter()
            .map(|p| p.extension().unwrap().to_str().unwrap().to_string())
            .collect();
        exts.sort();
        assert_eq!(exts, ["erased", "key"]);
        for f in &files {
            let name = f.to_string_lossy();
            assert!(!name.contains("AAAA") && !name.contains("BBBB"), "{name}");
        }

        v.reinstate(&a, ALICE).unwrap();
        assert!(matches!(
            v.open(&a, ALICE, &alice_env, b""),
            Err(VaultError::NoKey { .. })
        ));
        let fresh = v.seal(&a, ALICE, b"new", b"").unwrap();
        assert_eq!(v.open(&a, ALICE, &fresh, b"").unwrap(), b"new");
        assert!(matches!(
            v.open(&a, ALICE, &alice_env, b""),
            Err(VaultError::Corrupt)
        ));
    }

    #[test]
    fn erasing_an_unknown_subject_blocks_its_future_seals() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let a = t("adelaide");
        assert_eq!(v.status(&a, ALICE).unwrap(), SubjectStatus::Unknown);
        assert!(!v.erase(&a, ALICE).unwrap());
        assert!(matches!(
            v.seal(&a, ALICE, b"x", b""),
            Err(VaultError::SealAfterErase { .. })
        ));
    }

    #[test]
    fn an_interrupted_erasure_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let a = t("adelaide");
        let env = vault(dir.path()).seal(&a, ALICE, b"x", b"").unwrap();
        // Simulate a crash after the tombstone was written but before the unlink.
        let keys = KeyDir::open(dir.path()).unwrap();
        let name = subject_name(&a, ALICE).unwrap();
        keys.replace_file(&tombstone_path(&a, &name), TOMBSTONE)
            .unwrap();
        assert!(keys.exists(&key_path(&a, &name)).unwrap());
        let v = vault(dir.path());
        assert!(matches!(
            v.open(&a, ALICE, &env, b""),
            Err(VaultError::Erased { .. })
        ));
        assert!(!keys.exists(&key_path(&a, &name)).unwrap());
    }

    #[test]
    fn a_tiny_cache_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let v = CitizenVault::with_cache_capacity(KeyDir::open(dir.path()).unwrap(), 1);
        let a = t("adelaide");
        let envs: Vec<_> = (0..5)
            .map(|i| {
                v.seal(&a, &format!("s{i}"), format!("d{i}").as_bytes(), b"")
                    .unwrap()
            })
            .collect();
        for (i, e) in envs.iter().enumerate() {
            assert_eq!(
                v.open(&a, &format!("s{i}"), e, b"").unwrap(),
                format!("d{i}").as_bytes()
            );
        }
        assert!(v.cache.read().unwrap().len() <= 1);
    }

    #[test]
    fn vault_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CitizenVault>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn seal_open_round_trips(
            plain in proptest::collection::vec(any::<u8>(), 0..2048),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            subject in "[a-zA-Z0-9:_-]{1,80}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let v = vault(dir.path());
            let a = t("adelaide");
            let env = v.seal(&a, &subject, &plain, &aad).unwrap();
            prop_assert_eq!(v.open(&a, &subject, &env, &aad).unwrap(), plain);
        }
    }
}
