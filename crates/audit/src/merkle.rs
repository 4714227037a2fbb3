//! RFC 9162 §2.1 Merkle tree hashing, inclusion proofs and consistency proofs.
//!
//! Pure: no I/O, no clock, no keys. [`MerkleTree`] holds every leaf hash and every
//! complete (perfect, aligned) subtree hash in memory, so that any subtree root the
//! RFC's recursion asks for costs O(log n) hashes and a proof costs O(log² n) at worst
//! and O(log n) in practice. Memory is about 64 bytes per leaf (64 MB for 1,000,000).
//!
//! Owns the tree arithmetic only; file formats and signatures belong to
//! [`crate::log`] and [`crate::verify`].

use ring::digest::{Context, SHA256};

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the Merkle Tree Hash of an empty tree (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    digest_parts(&[])
}

/// The leaf hash of one entry: `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    digest_parts(&[&[0x00], entry])
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    digest_parts(&[&[0x01], left, right])
}

fn digest_parts(parts: &[&[u8]]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The largest power of two strictly less than `n` (`n ≥ 2`): where RFC 9162 splits.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of a list of leaf hashes, computed in one streaming pass
/// (see [`Frontier`]). Used by the verifier and as a cross-check in tests.
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::default();
    for l in leaves {
        f.push(*l);
    }
    f.root()
}

/// The right edge of a growing tree: the roots of its complete subtrees, largest first.
///
/// Lets a reader compute the root of every prefix of a log in one pass with O(log n)
/// memory, which is how the verifier checks signed checkpoints while streaming.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// (height, hash) of each complete subtree on the right edge, left to right.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Why a proof could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree size asked for.
    #[error(
        "entry {index} is not in a tree of {tree_size} entries; ask for an index below the tree size"
    )]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size asked for.
        tree_size: u64,
    },
    /// The tree size asked for is larger than the log.
    #[error("the log holds {available} entries, so no proof can be made for a tree of {asked}")]
    TreeTooLarge {
        /// The tree size asked for.
        asked: u64,
        /// Entries in the log.
        available: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error(
        "a consistency proof goes from an older (smaller) tree to a newer one, not from {old} to {new}"
    )]
    OldNewerThanNew {
        /// The first size.
        old: u64,
        /// The second size.
        new: u64,
    },
}

/// All leaf hashes and all complete subtree hashes of an append-only tree.
///
/// `levels[h][i]` is the root of the perfect subtree over leaves
/// `[i·2^h, (i+1)·2^h)`; only complete subtrees are kept. Appending is O(1) amortised.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut h = 0;
        while self.levels[h].len().is_multiple_of(2) {
            let n = self.levels[h].len();
            let parent = node_hash(&self.levels[h][n - 2], &self.levels[h][n - 1]);
            if self.levels.len() == h + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[h + 1].push(parent);
            h += 1;
        }
    }

    /// The Merkle Tree Hash of the first `tree_size` leaves.
    pub fn root(&self, tree_size: u64) -> Result<Hash, ProofError> {
        self.check_size(tree_size)?;
        Ok(if tree_size == 0 {
            empty_root()
        } else {
            self.subtree(0, tree_size)
        })
    }

    /// The Merkle Tree Hash of all leaves.
    pub fn full_root(&self) -> Hash {
        match self.len() {
            0 => empty_root(),
            n => self.subtree(0, n),
        }
    }

    fn check_size(&self, tree_size: u64) -> Result<(), ProofError> {
        if tree_size > self.len() {
            return Err(ProofError::TreeTooLarge {
                asked: tree_size,
                available: self.len(),
            });
        }
        Ok(())
    }

    /// MTH(D[start : start+n]) for a range the RFC recursion produces (`n ≥ 1`, and
    /// every perfect left part aligned), using the stored complete subtrees.
    fn subtree(&self, start: u64, n: u64) -> Hash {
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][(start >> h) as usize];
        }
        let k = split_point(n);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, n - k))
    }

    /// The audit path for leaf `index` in the tree of the first `tree_size` leaves
    /// (RFC 9162 §2.1.3.1), leaf-side sibling first.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(tree_size)?;
        if index >= tree_size {
            return Err(ProofError::IndexOutOfRange { index, tree_size });
        }
        let mut path = Vec::new();
        self.path(index, 0, tree_size, &mut path);
        Ok(path)
    }

    /// PATH(m, D[start : start+n]), appended in root-last order.
    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.subtree(start, k));
        }
    }

    /// The consistency proof between the trees of the first `old` and `new` leaves
    /// (RFC 9162 §2.1.4.1). Empty when `old` is 0 or equals `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new)?;
        if old > new {
            return Err(ProofError::OldNewerThanNew { old, new });
        }
        let mut out = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut out);
        }
        Ok(out)
    }

    /// SUBPROOF(m, D[start : start+n], b).
    fn subproof(&self, m: u64, start: u64, n: u64, b: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !b {
                out.push(self.subtree(start, n));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, k, b, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.subtree(start, k));
        }
    }
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` is entry `index` of the
/// tree of `tree_size` entries whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= tree_size {
        return false;
    }
    let (mut fnode, mut snode) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): that the tree of `old_size`
/// entries with root `old_root` is a prefix of the tree of `new_size` entries with
/// root `new_root`.
///
/// Sizes equal: the proof must be empty and the roots equal. `old_size` 0: the proof
/// must be empty (every tree extends the empty tree).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// MTH straight from the RFC's recursive definition.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    fn tree(ls: &[Hash]) -> MerkleTree {
        let mut t = MerkleTree::new();
        for l in ls {
            t.push(*l);
        }
        t
    }

    #[test]
    fn empty_tree_is_sha256_of_nothing() {
        assert_eq!(
            empty_root()[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "SHA-256(\"\") starts e3b0c442"
        );
        assert_eq!(MerkleTree::new().root(0), Ok(empty_root()));
    }

    #[test]
    fn proof_lengths_match_the_rfc_example() {
        // RFC 9162 §2.1.5: a tree of 7 leaves; the path for d0 has 3 hashes, and the
        // consistency proofs 3→7, 4→7 and 6→7 are [c, d, g, l], [l] and [i, j, k].
        let t = tree(&leaves(7));
        assert_eq!(t.inclusion_proof(0, 7).unwrap().len(), 3);
        assert_eq!(t.consistency_proof(3, 7).unwrap().len(), 4);
        assert_eq!(t.consistency_proof(4, 7).unwrap().len(), 1);
        assert_eq!(t.consistency_proof(6, 7).unwrap().len(), 3);
    }

    proptest! {
        #[test]
        fn roots_match_the_recursive_definition(n in 0u64..300) {
            let ls = leaves(n);
            let t = tree(&ls);
            for size in 0..=n {
                let naive = naive_root(&ls[..size as usize]);
                prop_assert_eq!(t.root(size).unwrap(), naive);
                prop_assert_eq!(root_of(&ls[..size as usize]), naive);
            }
        }

        #[test]
        fn inclusion_proofs_verify_and_wrong_inputs_fail(n in 1u64..300, seed in any::<u64>()) {
            let ls = leaves(n);
            let t = tree(&ls);
            let size = 1 + seed % n;
            let root = naive_root(&ls[..size as usize]);
            for i in 0..size {
                let p = t.inclusion_proof(i, size).unwrap();
                prop_assert!(verify_inclusion(&ls[i as usize], i, size, &p, &root));
                prop_assert!(!verify_inclusion(&leaf_hash(b"forged"), i, size, &p, &root));
                prop_assert!(!verify_inclusion(&ls[i as usize], i, size, &p, &empty_root()));
                if size > 1 {
                    let j = (i + 1) % size;
                    prop_assert!(!verify_inclusion(&ls[i as usize], j, size, &p, &root));
                }
            }
        }

        #[test]
        fn consistency_proofs_verify_and_wrong_inputs_fail(n in 1u64..300, a in any::<u64>(), b in any::<u64>()) {
            let ls = leaves(n);
            let t = tree(&ls);
            let new = 1 + b % n;
            let old = a % (new + 1);
            let (ro, rn) = (naive_root(&ls[..old as usize]), naive_root(&ls[..new as usize]));
            let p = t.consistency_proof(old, new).unwrap();
            prop_assert!(verify_consistency(old, new, &ro, &rn, &p));
            if old > 0 {
                prop_assert!(!verify_consistency(old, new, &leaf_hash(b"x"), &rn, &p));
                prop_assert!(!verify_consistency(old, new, &ro, &leaf_hash(b"x"), &p));
            }
            if old > 0 && old < new {
                let mut bad = p.clone();
                bad[0][0] ^= 1;
                prop_assert!(!verify_consistency(old, new, &ro, &rn, &bad));
            }
        }
    }
}
