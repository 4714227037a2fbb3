//! A citizen's access report with proofs, and the check a citizen runs on it.
//!
//! Owns the [`ProofBundle`] JSON format and [`verify_bundle`]. Reads the log only
//! through [`AuditLog`]'s public methods; the only write is publishing a tree head when
//! the latest one does not cover the newest entry. [`verify_bundle`] is pure: no I/O,
//! no clock, and no trust in anything the bundle says about itself except what its
//! signature and hashes prove.
//!
//! A bundle lists every entry naming one subject (a citizen's pseudonymous id): who
//! accessed their data, when, for which purpose, and how it ended. Each entry comes
//! with its index, its leaf hash and its inclusion proof (RFC 9162 §2.1.3) against
//! one signed tree head that covers them all, so a citizen who holds the log's public
//! key can check each entry is in the log exactly as shown. Estonia's Data Tracker is
//! the model.
//!
//! What a bundle does **not** prove: that it lists *every* entry about the subject.
//! A log operator could leave entries out of a bundle. Catching that needs the whole
//! log (`polity audit verify`) or a verifiable index, which is not built.

use polity_model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::head::{SignedTreeHead, from_hex, to_hex};
use crate::log::{AuditEntry, AuditLog, LogError};
use crate::merkle::{Hash, leaf_hash, verify_inclusion};

/// Every audit entry about one subject, each with its inclusion proof against one
/// signed tree head. Serialises as JSON; hashes, keys and signatures are lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// The subject whose entries these are.
    pub subject: String,
    /// The log's Ed25519 public key, 64 hex digits. Compare it with a copy obtained
    /// independently (pass it to [`verify_bundle`]); a bundle cannot vouch for its own
    /// key.
    pub public_key: String,
    /// The signed tree head every proof leads to.
    pub head: SignedTreeHead,
    /// The entries, by ascending index.
    pub entries: Vec<ProvenEntry>,
}

/// One audit entry with the evidence that it is in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    /// Its position in the log, from 0.
    pub index: u64,
    /// The entry, for reading.
    pub entry: AuditEntry,
    /// The exact bytes logged (the Merkle leaf data), as text. [`verify_bundle`]
    /// hashes these and checks that [`ProvenEntry::entry`] says the same.
    pub entry_json: String,
    /// `SHA-256(0x00 ‖ entry_json)`, hex.
    pub leaf_hash: String,
    /// The audit path from the leaf to the head's root, leaf side first, hex.
    pub inclusion_proof: Vec<String>,
}

impl ProofBundle {
    /// When the head these proofs lead to was signed.
    pub fn signed_at(&self) -> Timestamp {
        Timestamp::from_millis(self.head.timestamp_ms)
    }
}

/// Why a bundle does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bundle's public key is not a key.
    #[error(
        "the bundle's public_key is not a 32-byte Ed25519 key in hex; the bundle is damaged, ask the operator for a new one"
    )]
    BadPublicKey,
    /// The bundle carries a different key from the one the reader trusts.
    #[error(
        "the bundle is signed with key {found}, not the log key you expected: it does not come from the log you trust"
    )]
    UnexpectedKey {
        /// The key in the bundle, hex.
        found: String,
    },
    /// The head's signature does not verify under the bundle's key.
    #[error(
        "the bundle's tree head is not validly signed by its public key: the head was altered or forged"
    )]
    BadHeadSignature,
    /// An entry's index is outside the tree the head covers.
    #[error(
        "entry {index} is not covered by the bundle's signed head of {tree_size} entries; ask for a fresh bundle"
    )]
    OutsideHead {
        /// The entry.
        index: u64,
        /// Entries covered by the head.
        tree_size: u64,
    },
    /// Entries repeat or are out of order.
    #[error(
        "entry {index} is listed twice or out of order: the bundle was edited after it was made"
    )]
    OutOfOrder {
        /// The entry.
        index: u64,
    },
    /// An entry's logged bytes do not hash to its stated leaf hash.
    #[error(
        "entry {index} was altered: its logged bytes do not match its leaf hash (or the hash is not 64 hex digits)"
    )]
    LeafMismatch {
        /// The entry.
        index: u64,
    },
    /// The readable entry differs from the logged bytes.
    #[error("entry {index} was altered: the fields shown differ from the bytes that were logged")]
    EntryAltered {
        /// The entry.
        index: u64,
    },
    /// An entry is about someone else.
    #[error("entry {index} is about another subject than the bundle's: it does not belong here")]
    WrongSubject {
        /// The entry.
        index: u64,
    },
    /// The inclusion proof does not lead to the signed root.
    #[error(
        "the inclusion proof of entry {index} does not lead to the signed root: the entry is not in the log as signed"
    )]
    ProofFailed {
        /// The entry.
        index: u64,
    },
}

impl AuditLog {
    /// Every entry about `subject`, each with its inclusion proof against one signed
    /// head: the latest published head if it covers the newest entry, otherwise a
    /// freshly published one ([`AuditLog::current_head`]).
    ///
    /// Costs one disk read per entry and O(log n) hashes per proof. Check the result
    /// with [`verify_bundle`].
    pub fn access_report(&mut self, subject: &str) -> Result<ProofBundle, LogError> {
        let head = self.current_head()?;
        let indices = self.entries_for_subject(subject);
        let mut entries = Vec::with_capacity(indices.len());
        for index in indices {
            let bytes = self.entry_bytes(index)?;
            let corrupt = |reason: String| LogError::Corrupt {
                path: self.entries_path().to_owned(),
                index,
                reason,
            };
            let entry: AuditEntry = serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(format!("not an audit entry: {e}")))?;
            let entry_json = String::from_utf8(bytes)
                .map_err(|_| corrupt("its bytes are not UTF-8 text".into()))?;
            let proof = self.inclusion_proof(index, head.tree_size)?;
            entries.push(ProvenEntry {
                index,
                leaf_hash: to_hex(&leaf_hash(entry_json.as_bytes())),
                entry,
                entry_json,
                inclusion_proof: proof.iter().map(|h| to_hex(h)).collect(),
            });
        }
        Ok(ProofBundle {
            subject: subject.to_owned(),
            public_key: to_hex(&self.public_key()),
            head,
            entries,
        })
    }
}

fn hash_from_hex(s: &str) -> Option<Hash> {
    from_hex(s)?.try_into().ok()
}

/// Checks every entry of `bundle` against its signed head, and the head's signature.
///
/// With `expected_public_key`, the bundle must also carry that key: pass the log key
/// you obtained independently (from the operator's published copy), or a forger can
/// sign a bundle with a key of their own. Without it, only the bundle's internal
/// consistency is checked.
///
/// Checks, stopping at the first failure: the key; the head's signature; then, for
/// each entry in order, that its index is inside the head and above the previous
/// one, that `entry_json` hashes to `leaf_hash`, that `entry` is what `entry_json`
/// says, that it names the bundle's subject, and that its inclusion proof leads to
/// the signed root.
pub fn verify_bundle(
    bundle: &ProofBundle,
    expected_public_key: Option<&[u8; 32]>,
) -> Result<(), BundleError> {
    let key: [u8; 32] = from_hex(&bundle.public_key)
        .and_then(|v| v.try_into().ok())
        .ok_or(BundleError::BadPublicKey)?;
    if let Some(expected) = expected_public_key
        && *expected != key
    {
        return Err(BundleError::UnexpectedKey {
            found: to_hex(&key),
        });
    }
    let head = &bundle.head;
    let root = match head.root() {
        Some(root) if head.verify(&key) => root,
        _ => return Err(BundleError::BadHeadSignature),
    };
    let mut previous: Option<u64> = None;
    for e in &bundle.entries {
        let index = e.index;
        if index >= head.tree_size {
            return Err(BundleError::OutsideHead {
                index,
                tree_size: head.tree_size,
            });
        }
        if previous.is_some_and(|p| p >= index) {
            return Err(BundleError::OutOfOrder { index });
        }
        previous = Some(index);
        let leaf = leaf_hash(e.entry_json.as_bytes());
        if hash_from_hex(&e.leaf_hash) != Some(leaf) {
            return Err(BundleError::LeafMismatch { index });
        }
        let logged: AuditEntry =
            serde_json::from_str(&e.entry_json).map_err(|_| BundleError::EntryAltered { index })?;
        if logged != e.entry {
            return Err(BundleError::EntryAltered { index });
        }
        if logged.subject.as_deref() != Some(bundle.subject.as_str()) {
            return Err(BundleError::WrongSubject { index });
        }
        let proof: Option<Vec<Hash>> = e.inclusion_proof.iter().map(|h| hash_from_hex(h)).collect();
        let included =
            proof.is_some_and(|p| verify_inclusion(&leaf, index, head.tree_size, &p, &root));
        if !included {
            return Err(BundleError::ProofFailed { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;
    use crate::head::signing_bytes;

    /// A one-entry bundle built by hand: the root is the leaf and the proof empty.
    fn one_entry_bundle(subject: &str) -> (ProofBundle, [u8; 32]) {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
        let entry = AuditEntry {
            at: Timestamp::from_millis(1_780_000_000_000),
            actor: "user:clerk-1".into(),
            action: "read".into(),
            tenant: None,
            subject: Some(subject.into()),
            resource: "/ngsi-ld/v1/entities/urn:ngsi-ld:Person:1".into(),
            purpose: Some("benefit-eligibility".into()),
            outcome: "allowed".into(),
        };
        let entry_json = serde_json::to_string(&entry).unwrap();
        let leaf = leaf_hash(entry_json.as_bytes());
        let sig = key.sign(&signing_bytes(1, 5, &leaf));
        let public: [u8; 32] = key.public_key().as_ref().try_into().unwrap();
        let bundle = ProofBundle {
            subject: subject.into(),
            public_key: to_hex(&public),
            head: SignedTreeHead {
                tree_size: 1,
                root_hash: to_hex(&leaf),
                timestamp_ms: 5,
                signature: to_hex(sig.as_ref()),
            },
            entries: vec![ProvenEntry {
                index: 0,
                entry,
                leaf_hash: to_hex(&leaf),
                entry_json,
                inclusion_proof: Vec::new(),
            }],
        };
        (bundle, public)
    }

    #[test]
    fn a_hand_built_bundle_verifies_and_its_json_field_is_authoritative() {
        let (bundle, key) = one_entry_bundle("citizen:ana");
        assert_eq!(verify_bundle(&bundle, Some(&key)), Ok(()));
        assert_eq!(bundle.signed_at(), Timestamp::from_millis(5));

        // Re-encoding with whitespace changes the leaf: the logged bytes are what count.
        let mut b = bundle.clone();
        b.entries[0].entry_json = b.entries[0].entry_json.replace(",", ", ");
        assert_eq!(
            verify_bundle(&b, Some(&key)),
            Err(BundleError::LeafMismatch { index: 0 })
        );

        let mut b = bundle;
        b.entries[0].inclusion_proof.push("zz".into());
        assert_eq!(
            verify_bundle(&b, Some(&key)),
            Err(BundleError::ProofFailed { index: 0 })
        );
    }

    #[test]
    fn a_bundle_with_unknown_fields_is_refused() {
        let (bundle, _) = one_entry_bundle("citizen:ana");
        let mut v = serde_json::to_value(&bundle).unwrap();
        v["note"] = "trust me".into();
        assert!(serde_json::from_value::<ProofBundle>(v).is_err());
    }
}
