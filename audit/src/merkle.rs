//! The Merkle tree of RFC 6962 / RFC 9162: hashing, an incremental frontier, and inclusion and
//! consistency proofs (generation, §2.1.3.1 / §2.1.4.1; verification, §2.1.3.2 / §2.1.4.2).
//!
//! Proof generation reads hashes of complete aligned subtrees through [`NodeSource`]: node
//! `(level, index)` is the hash of the leaves `index * 2^level .. (index + 1) * 2^level`. The log
//! keeps these on disk (see `hashes.rs`); tests keep them in memory ([`MemoryTree`]).

use ring::digest::{Context, SHA256, digest};
use thiserror::Error;

use crate::{Hash, LeafIndex, TreeSize};

/// The hash of a leaf: SHA-256(0x00 || record).
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(record);
    to_hash(ctx.finish().as_ref())
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut input = [0u8; 65];
    input[0] = 0x01;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    to_hash(digest(&SHA256, &input).as_ref())
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, &[]).as_ref())
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(bytes);
    out
}

/// The Merkle tree hash (RFC 6962, section 2.1) of a list of leaf hashes: SHA-256 of nothing for
/// the empty tree; otherwise the left subtree is the largest power of two smaller than the size.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let split = largest_power_of_two_below(n as u64) as usize;
            node_hash(&root(&leaves[..split]), &root(&leaves[split..]))
        }
    }
}

/// The largest power of two strictly less than `n` (n >= 2).
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf is not in a tree of that size.
    #[error("leaf {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The tree sizes are not in order, or beyond the log.
    #[error("no proof between tree sizes {old} and {new}")]
    BadSizes {
        /// The first size.
        old: u64,
        /// The second size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for the sizes.
    #[error("proof has the wrong number of hashes ({len})")]
    WrongLength {
        /// The number of hashes given.
        len: usize,
    },
    /// The proof leads to another root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

impl ProofError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::IndexOutOfRange { .. } => "proof_index_out_of_range",
            ProofError::BadSizes { .. } => "proof_bad_sizes",
            ProofError::WrongLength { .. } => "proof_wrong_length",
            ProofError::RootMismatch => "proof_root_mismatch",
        }
    }
}

/// Where proof generation reads complete aligned subtree hashes from.
pub trait NodeSource {
    /// The error of a failed read; proof argument errors convert into it.
    type Error: From<ProofError>;

    /// The hash of the complete subtree at `level` (0 = leaves) and position `index` on that
    /// level. Only asked for subtrees entirely inside the tree being proved.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The hash of the RFC 6962 subtree over leaves `start..end`, where `start` is a multiple of a
/// power of two at least `end - start` (every subtree the RFC's recursion visits is of this
/// form): the complete aligned subtrees it is made of, folded from the right. O(log n) reads.
pub fn subtree_hash<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    if start >= end {
        return Ok(empty_root());
    }
    let mut parts: [(u32, u64); 64] = [(0, 0); 64];
    let mut count = 0;
    let mut at = start;
    let mut left = end - start;
    while left > 0 {
        let level = 63 - left.leading_zeros();
        parts[count] = (level, at >> level);
        count += 1;
        at += 1 << level;
        left -= 1 << level;
    }
    let (level, index) = parts[count - 1];
    let mut acc = src.node(level, index)?;
    for &(level, index) in parts[..count - 1].iter().rev() {
        acc = node_hash(&src.node(level, index)?, &acc);
    }
    Ok(acc)
}

/// The root of the tree of `size` leaves.
pub fn tree_root<S: NodeSource>(src: &S, size: TreeSize) -> Result<Hash, S::Error> {
    subtree_hash(src, 0, size.0)
}

/// The inclusion proof (audit path, RFC 9162 §2.1.3.1) of leaf `index` in the tree of `size`.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: LeafIndex,
    size: TreeSize,
) -> Result<Vec<Hash>, S::Error> {
    if index.0 >= size.0 {
        return Err(ProofError::IndexOutOfRange {
            index: index.0,
            size: size.0,
        }
        .into());
    }
    let mut proof = Vec::with_capacity(64);
    // Walk down from the root, noting each sibling; the proof lists them from the leaf up.
    let (mut start, mut end, m) = (0u64, size.0, index.0);
    while end - start > 1 {
        let k = largest_power_of_two_below(end - start);
        if m - start < k {
            proof.push(subtree_hash(src, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_hash(src, start, start + k)?);
            start += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof (RFC 9162 §2.1.4.1) between the trees of sizes `old` and `new`. Empty
/// when `old` is 0 or equal to `new`.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    old: TreeSize,
    new: TreeSize,
) -> Result<Vec<Hash>, S::Error> {
    if old.0 > new.0 {
        return Err(ProofError::BadSizes {
            old: old.0,
            new: new.0,
        }
        .into());
    }
    let mut proof = Vec::with_capacity(64);
    if old.0 == 0 || old.0 == new.0 {
        return Ok(proof);
    }
    // SUBPROOF(m, D[start..end], b), unrolled: each step descends into one half.
    let (mut start, mut end, mut m, mut complete) = (0u64, new.0, old.0, true);
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(subtree_hash(src, start, end)?);
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            proof.push(subtree_hash(src, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_hash(src, start, start + k)?);
            start += k;
            m -= k;
            complete = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: LeafIndex,
    size: TreeSize,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(index, size, leaf, proof)? != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The root that an inclusion proof of `leaf` at `index` in a tree of `size` leads to (RFC 9162
/// §2.1.3.2 without the final comparison): for a caller that checks the root by other means,
/// such as a signature over it.
pub fn root_from_inclusion(
    index: LeafIndex,
    size: TreeSize,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index.0 >= size.0 {
        return Err(ProofError::IndexOutOfRange {
            index: index.0,
            size: size.0,
        });
    }
    let (mut fnode, mut snode) = (index.0, size.0 - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength { len: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { len: proof.len() });
    }
    Ok(r)
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2) between `old_root` of size `old` and
/// `new_root` of size `new`. The empty tree is consistent with every tree (empty proof).
pub fn verify_consistency(
    old: TreeSize,
    new: TreeSize,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old.0 > new.0 {
        return Err(ProofError::BadSizes {
            old: old.0,
            new: new.0,
        });
    }
    if old.0 == 0 || old.0 == new.0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { len: proof.len() });
        }
        if old.0 == new.0 && old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength { len: 0 });
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.0.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old.0 - 1, new.0 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength { len: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { len: proof.len() });
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a tree being built leaf by leaf: one hash per complete subtree (one per set
/// bit of the size), so appending and the root cost O(log n) and memory stays at 64 hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Hashes of the complete subtrees, largest (leftmost) first.
    stack: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The frontier of the tree of `size` leaves, read from `src`.
    pub fn from_source<S: NodeSource>(src: &S, size: TreeSize) -> Result<Frontier, S::Error> {
        let mut stack = Vec::with_capacity(64);
        for level in (0..64u32).rev() {
            if size.0 >> level & 1 == 1 {
                stack.push(src.node(level, (size.0 >> level) - 1)?);
            }
        }
        Ok(Frontier {
            size: size.0,
            stack,
        })
    }

    /// The number of leaves.
    pub fn size(&self) -> TreeSize {
        TreeSize(self.size)
    }

    /// Appends a leaf hash; `complete` is told of every complete subtree this makes, the leaf
    /// itself first (level 0), as `(level, index on that level, hash)`.
    pub fn append(&mut self, leaf: Hash, mut complete: impl FnMut(u32, u64, &Hash)) {
        complete(0, self.size, &leaf);
        let mut hash = leaf;
        let mut level = 0;
        while self.size >> level & 1 == 1 {
            // The size's low bits are set exactly for the subtrees now on top of the stack.
            let Some(left) = self.stack.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            complete(level, self.size >> level, &hash);
        }
        self.stack.push(hash);
        self.size += 1;
    }

    /// The tree's root.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }
}

/// A whole tree in memory, level by level: for tests, the verifier's checks and small logs.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.append(leaf, |level, index, hash| {
            let level = level as usize;
            if levels.len() <= level {
                levels.push(Vec::new());
            }
            debug_assert_eq!(levels[level].len() as u64, index);
            levels[level].push(*hash);
        });
    }

    /// The number of leaves.
    pub fn size(&self) -> TreeSize {
        self.frontier.size()
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    type Error = ProofError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(ProofError::IndexOutOfRange {
                index,
                size: self.frontier.size().0,
            })
    }
}
