//! Signed tree heads: what the log's key signs, and how a reader checks it.
//!
//! Owns the byte string under the signature and the hex text form of hashes. Does not
//! touch files or hold the private key (that is [`crate::log`]).
//!
//! The signature is Ed25519 over exactly these 68 bytes (all integers big-endian):
//!
//! ```text
//! "polity-audit-sth-v1\n"   20 bytes, ASCII: domain separation and format version
//! tree_size                  8 bytes, u64
//! timestamp_ms               8 bytes, i64 (milliseconds since the Unix epoch, UTC)
//! root_hash                 32 bytes, the RFC 9162 Merkle Tree Hash
//! ```
//!
//! It plays the role of RFC 9162's `TreeHeadSignature`; it is not byte-compatible
//! with Certificate Transparency, which Polity does not need.

use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;

const DOMAIN: &[u8; 20] = b"polity-audit-sth-v1\n";

/// A signed statement by the log: "my first `tree_size` entries have root `root_hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    /// Number of entries covered.
    pub tree_size: u64,
    /// The Merkle Tree Hash of those entries, lowercase hex.
    pub root_hash: String,
    /// When the head was signed, milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: i64,
    /// Ed25519 signature over [`signing_bytes`], lowercase hex.
    pub signature: String,
}

/// The exact bytes that a tree head's signature covers (see the module docs).
pub fn signing_bytes(tree_size: u64, timestamp_ms: i64, root: &Hash) -> [u8; 68] {
    let mut out = [0u8; 68];
    out[..20].copy_from_slice(DOMAIN);
    out[20..28].copy_from_slice(&tree_size.to_be_bytes());
    out[28..36].copy_from_slice(&timestamp_ms.to_be_bytes());
    out[36..].copy_from_slice(root);
    out
}

impl SignedTreeHead {
    /// The root hash as bytes, or `None` if `root_hash` is not 64 hex digits.
    pub fn root(&self) -> Option<Hash> {
        let v = from_hex(&self.root_hash)?;
        v.try_into().ok()
    }

    /// Whether the signature is valid for `public_key` (32 raw Ed25519 bytes) and the
    /// root hash is well formed.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        let (Some(root), Some(sig)) = (self.root(), from_hex(&self.signature)) else {
            return false;
        };
        let msg = signing_bytes(self.tree_size, self.timestamp_ms, &root);
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&msg, &sig)
            .is_ok()
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Bytes from hex (either case), or `None` if `s` is not an even run of hex digits.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&b), "0001abff");
        assert_eq!(from_hex("0001ABff"), Some(b.to_vec()));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn signing_bytes_bind_every_field() {
        let r = [7u8; 32];
        let a = signing_bytes(5, 10, &r);
        assert_ne!(a, signing_bytes(6, 10, &r));
        assert_ne!(a, signing_bytes(5, 11, &r));
        assert_ne!(a, signing_bytes(5, 10, &[8u8; 32]));
    }
}
