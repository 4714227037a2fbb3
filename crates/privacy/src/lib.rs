//! Polity's privacy mechanisms (issue #3 §3 and §5): keyed pseudonyms, coarse
//! locations, and erasure by crypto-shredding.
//!
//! This crate owns the mechanisms and their key files. It must not touch stored data,
//! routes or ingest: the pipeline calls it at the city edge, before anything is stored
//! or forwarded, and the routes call the vault for personal data.
//!
//! # Modules
//!
//! - [`keys`]: the key directory ([`KeyDir`]): layout, 0600/0700 files written
//!   atomically, and the check that keys live apart from the data.
//! - [`pseudonym`]: [`Pseudonymizer`]: HMAC-SHA256 pseudonyms of account numbers,
//!   licence plates, MAC addresses and person links, with keys per city (tenant) and
//!   purpose, versions, rotation and retirement.
//! - [`location`]: [`coarsen`] snaps a GeoJSON geometry to the centre of a grid cell of
//!   [`LocationPolicy::grid_m`] metres (500 m by default for personal locations).
//! - [`vault`]: [`CitizenVault`]: a per-citizen AES-256-GCM key for each citizen's data;
//!   [`CitizenVault::erase`] destroys it, and with it every copy of that data.
//!
//! All cryptography is `ring`'s; random bytes come from the operating system
//! (`ring::rand::SystemRandom`).
//!
//! # Guarantees
//!
//! - A pseudonym reveals nothing about its identifier to anyone without the key of its
//!   (tenant, purpose, version): it is 128 bits of HMAC-SHA256 over a domain-separated
//!   message. Errors never echo raw identifiers.
//! - Pseudonyms of different tenants, purposes, kinds and key versions are unrelated, so
//!   data of two cities or two purposes cannot be joined on them.
//! - Location output depends only on the grid cell: every position in a cell gives the
//!   same point, and lines and polygons lose their shape.
//! - After [`CitizenVault::erase`] returns, no envelope sealed for that subject can be
//!   opened through this crate, and the key bytes are gone from the key directory and
//!   from this process's cache.
//!
//! # Limits: what we rely on
//!
//! - **Pseudonyms are linkable within one key version, by design**: the same plate gives
//!   the same pseudonym, so its movements can be followed within a purpose until the key
//!   is rotated. Rotation limits the window; retirement ends linkability for good.
//! - **The key is everything.** Licence plates and MAC addresses have small spaces: with
//!   the key, anyone can pseudonymize every possible plate and reverse the mapping.
//!   Keys must stay in the city's key directory and never travel with the data.
//! - **Erasure relies on the key directory never being copied with the data**: data
//!   backups then hold only ciphertext. The key directory needs its own backup, kept
//!   short (within the erasure deadline) or with erasures re-applied after a restore
//!   (`erase` is idempotent; record erasures in the audit log to replay them).
//! - **Deleting a file is not wiping it.** On copy-on-write file systems, SSDs
//!   (wear levelling) and snapshotted volumes, the blocks of a deleted key may survive
//!   until reused. We rely on the key directory living on an encrypted volume, not
//!   snapshotted, and not on shared storage. Key bytes in memory are cleared best-effort
//!   only (`ring` key schedules are not zeroized), and swap could hold them.
//! - **One process owns a key directory.** Keys are cached; a rotation or erasure by
//!   another process is only seen after a reopen. Erase through the serving node.
//! - **Coarsening is not anonymity**: a cell in a sparse area may hold one household, and
//!   repeated observations near a cell edge narrow a position down. Aggregation with
//!   k-anonymity thresholds and differential privacy belongs to other crates.

pub mod keys;
pub mod location;
pub mod pseudonym;
pub mod vault;

pub use keys::{KeyDir, KeyError};
pub use location::{LocationError, LocationPolicy, coarsen, coarsen_point};
pub use pseudonym::{IdentifierKind, Pseudonym, PseudonymError, Pseudonymizer};
pub use vault::{CitizenVault, SubjectStatus, VaultError};
