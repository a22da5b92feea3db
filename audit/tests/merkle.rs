//! The Merkle tree against the published RFC 6962 test vectors and against a naive, recursive
//! implementation of RFC 9162's definitions (MTH, PATH, PROOF/SUBPROOF), for every tree size
//! 1..=300, every leaf, and every pair of sizes.

use std::collections::HashMap;

use isnad_audit::merkle::{
    MemoryTree, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root,
    verify_consistency, verify_inclusion,
};
use isnad_audit::{Hash, LeafIndex, TreeSize, hex};

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn h(text: &str) -> Hash {
    unhex(text).try_into().expect("32 bytes")
}

// The reference vectors below are those of transparency-dev/merkle, file proof/verify_test.go
// (commit 02194e9afb6c1d95b5381350007963aa70fff472), which carries over Certificate
// Transparency's reference tests. Its inclusion vectors number leaves from 1; here they are
// converted to 0-based leaf indexes.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, proof)
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof)
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn vector_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in LEAVES {
        tree.push(leaf_hash(&unhex(leaf)));
    }
    tree
}

fn vector_root(size: u64) -> Hash {
    h(ROOTS[size as usize - 1])
}

#[test]
fn the_empty_tree_hashes_to_sha256_of_nothing() {
    assert_eq!(
        hex(&root(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(empty_root(), root(&[]));
    assert_eq!(MemoryTree::new().root(), empty_root());
}

#[test]
fn roots_match_the_rfc6962_test_vectors() {
    let leaves: Vec<Hash> = LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect();
    let mut tree = MemoryTree::new();
    for (size, expected) in ROOTS.iter().enumerate() {
        tree.push(leaves[size]);
        assert_eq!(
            hex(&root(&leaves[..=size])),
            *expected,
            "tree of {}",
            size + 1
        );
        assert_eq!(hex(&tree.root()), *expected, "frontier of {}", size + 1);
        assert_eq!(
            hex(&isnad_audit::merkle::tree_root(&tree, TreeSize(size as u64 + 1)).expect("root")),
            *expected
        );
    }
}

#[test]
fn inclusion_proofs_match_the_published_vectors_and_verify() {
    let tree = vector_tree();
    let leaves: Vec<Hash> = LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect();
    for &(index, size, expected) in INCLUSION {
        // The vectors' tree has 8 leaves; a smaller tree is its prefix.
        let mut prefix = MemoryTree::new();
        for leaf in &leaves[..size as usize] {
            prefix.push(*leaf);
        }
        let proof =
            inclusion_proof(&prefix, LeafIndex(index), TreeSize(size)).expect("inclusion proof");
        let expected: Vec<Hash> = expected.iter().map(|p| h(p)).collect();
        assert_eq!(proof, expected, "leaf {index} in {size}");
        verify_inclusion(
            LeafIndex(index),
            TreeSize(size),
            &leaves[index as usize],
            &proof,
            &vector_root(size),
        )
        .expect("verifies");
    }
    assert_eq!(tree.size(), TreeSize(8));
}

#[test]
fn consistency_proofs_match_the_published_vectors_and_verify() {
    let tree = vector_tree();
    for &(old, new, expected) in CONSISTENCY {
        let proof = consistency_proof(&tree, TreeSize(old), TreeSize(new)).expect("proof");
        let expected: Vec<Hash> = expected.iter().map(|p| h(p)).collect();
        assert_eq!(proof, expected, "{old} -> {new}");
        verify_consistency(
            TreeSize(old),
            TreeSize(new),
            &vector_root(old),
            &vector_root(new),
            &proof,
        )
        .expect("verifies");
    }
}

#[test]
fn the_empty_tree_is_consistent_with_every_tree_by_an_empty_proof_only() {
    let tree = vector_tree();
    assert!(
        consistency_proof(&tree, TreeSize(0), TreeSize(5))
            .expect("proof")
            .is_empty()
    );
    verify_consistency(
        TreeSize(0),
        TreeSize(5),
        &empty_root(),
        &vector_root(5),
        &[],
    )
    .expect("empty proof");
    let err = verify_consistency(
        TreeSize(0),
        TreeSize(5),
        &empty_root(),
        &vector_root(5),
        &[vector_root(1)],
    )
    .expect_err("a non-empty proof");
    assert_eq!(err.code(), "proof_wrong_length");
}

#[test]
fn equal_sizes_need_equal_roots_and_no_proof() {
    verify_consistency(
        TreeSize(3),
        TreeSize(3),
        &vector_root(3),
        &vector_root(3),
        &[],
    )
    .expect("same tree");
    let err = verify_consistency(
        TreeSize(3),
        TreeSize(3),
        &vector_root(3),
        &vector_root(4),
        &[],
    )
    .expect_err("different roots");
    assert_eq!(err.code(), "proof_root_mismatch");
}

#[test]
fn proofs_outside_the_tree_are_refused() {
    let tree = vector_tree();
    let err = inclusion_proof(&tree, LeafIndex(8), TreeSize(8)).expect_err("leaf 8 of 8");
    assert_eq!(err.code(), "proof_index_out_of_range");
    let err = consistency_proof(&tree, TreeSize(5), TreeSize(4)).expect_err("backwards");
    assert_eq!(err.code(), "proof_bad_sizes");
    let err = verify_inclusion(LeafIndex(0), TreeSize(0), &[0; 32], &[], &empty_root())
        .expect_err("empty tree");
    assert_eq!(err.code(), "proof_index_out_of_range");
    let err = verify_consistency(TreeSize(2), TreeSize(1), &[0; 32], &[0; 32], &[])
        .expect_err("backwards");
    assert_eq!(err.code(), "proof_bad_sizes");
}

/// The RFC's definitions, written as directly as possible (memoized so that every pair of sizes
/// up to 300 runs in seconds).
struct Naive {
    leaves: Vec<Hash>,
    mth: HashMap<(usize, usize), Hash>,
}

impl Naive {
    fn new(n: usize) -> Naive {
        let leaves = (0..n)
            .map(|i| leaf_hash(format!("record {i}").as_bytes()))
            .collect();
        Naive {
            leaves,
            mth: HashMap::new(),
        }
    }

    fn k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// MTH(D[start..end])
    fn mth(&mut self, start: usize, end: usize) -> Hash {
        if let Some(h) = self.mth.get(&(start, end)) {
            return *h;
        }
        let n = end - start;
        let out = match n {
            0 => empty_root(),
            1 => self.leaves[start],
            _ => {
                let k = Naive::k(n);
                let left = self.mth(start, start + k);
                let right = self.mth(start + k, end);
                node_hash(&left, &right)
            }
        };
        self.mth.insert((start, end), out);
        out
    }

    /// PATH(m, D[start..end])
    fn path(&mut self, m: usize, start: usize, end: usize) -> Vec<Hash> {
        let n = end - start;
        if n == 1 {
            return Vec::new();
        }
        let k = Naive::k(n);
        if m < k {
            let mut p = self.path(m, start, start + k);
            p.push(self.mth(start + k, end));
            p
        } else {
            let mut p = self.path(m - k, start + k, end);
            p.push(self.mth(start, start + k));
            p
        }
    }

    /// SUBPROOF(m, D[start..end], b)
    fn subproof(&mut self, m: usize, start: usize, end: usize, b: bool) -> Vec<Hash> {
        let n = end - start;
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![self.mth(start, end)]
            };
        }
        let k = Naive::k(n);
        if m <= k {
            let mut p = self.subproof(m, start, start + k, b);
            p.push(self.mth(start + k, end));
            p
        } else {
            let mut p = self.subproof(m - k, start + k, end, false);
            p.push(self.mth(start, start + k));
            p
        }
    }
}

const MAX: usize = 300;

fn trees() -> (Naive, MemoryTree) {
    let naive = Naive::new(MAX);
    let mut tree = MemoryTree::new();
    for leaf in &naive.leaves {
        tree.push(*leaf);
    }
    (naive, tree)
}

/// A tree of exactly `n` leaves (proof generation only reads inside the tree it proves, so the
/// 300-leaf tree serves every size; this checks that claim on the root too).
#[test]
fn every_root_and_inclusion_proof_up_to_300_matches_the_definitions() {
    let (mut naive, tree) = trees();
    for n in 1..=MAX {
        let expected_root = naive.mth(0, n);
        assert_eq!(
            isnad_audit::merkle::tree_root(&tree, TreeSize(n as u64)).expect("root"),
            expected_root,
            "root of {n}"
        );
        for m in 0..n {
            let proof =
                inclusion_proof(&tree, LeafIndex(m as u64), TreeSize(n as u64)).expect("proof");
            assert_eq!(proof, naive.path(m, 0, n), "PATH({m}, D[{n}])");
            verify_inclusion(
                LeafIndex(m as u64),
                TreeSize(n as u64),
                &naive.leaves[m],
                &proof,
                &expected_root,
            )
            .unwrap_or_else(|e| panic!("leaf {m} of {n}: {e}"));
        }
    }
}

#[test]
fn every_consistency_proof_up_to_300_matches_the_definitions() {
    let (mut naive, tree) = trees();
    for n in 1..=MAX {
        let new_root = naive.mth(0, n);
        for m in 1..=n {
            let proof =
                consistency_proof(&tree, TreeSize(m as u64), TreeSize(n as u64)).expect("proof");
            let expected = if m == n {
                Vec::new()
            } else {
                naive.subproof(m, 0, n, true)
            };
            assert_eq!(proof, expected, "PROOF({m}, D[{n}])");
            let old_root = naive.mth(0, m);
            verify_consistency(
                TreeSize(m as u64),
                TreeSize(n as u64),
                &old_root,
                &new_root,
                &proof,
            )
            .unwrap_or_else(|e| panic!("{m} -> {n}: {e}"));
        }
    }
}

fn flipped(proof: &[Hash], i: usize) -> Vec<Hash> {
    let mut p = proof.to_vec();
    p[i][i % 32] ^= 0x10;
    p
}

#[test]
fn a_changed_inclusion_proof_is_refused() {
    let (mut naive, tree) = trees();
    for n in [2usize, 3, 7, 8, 9, 100, 255, 256, 257, 300] {
        let root = naive.mth(0, n);
        for m in 0..n {
            let (index, size) = (LeafIndex(m as u64), TreeSize(n as u64));
            let leaf = naive.leaves[m];
            let proof = inclusion_proof(&tree, index, size).expect("proof");
            for i in 0..proof.len() {
                assert!(
                    verify_inclusion(index, size, &leaf, &flipped(&proof, i), &root).is_err(),
                    "hash {i} flipped, leaf {m} of {n}"
                );
            }
            for other in [m.wrapping_sub(1), m + 1, m ^ 2] {
                if other != m && other < n {
                    assert!(
                        verify_inclusion(LeafIndex(other as u64), size, &leaf, &proof, &root)
                            .is_err(),
                        "wrong index {other} for leaf {m} of {n}"
                    );
                }
            }
            // Sizes whose proof has another shape (as transparency-dev's tests probe: twice and half).
            // A size with the same shape, e.g. 3 and 4 for leaf 0, gives the same root: a proof
            // does not pin the size by itself, the signed checkpoint does.
            for wrong in [n * 2, n / 2] {
                if wrong != n && wrong > m {
                    assert!(
                        verify_inclusion(index, TreeSize(wrong as u64), &leaf, &proof, &root)
                            .is_err(),
                        "wrong size {wrong} for leaf {m} of {n}"
                    );
                }
            }
            let mut longer = proof.clone();
            longer.push(root);
            assert!(verify_inclusion(index, size, &leaf, &longer, &root).is_err());
            if !proof.is_empty() {
                assert!(
                    verify_inclusion(index, size, &leaf, &proof[..proof.len() - 1], &root).is_err()
                );
            }
            assert!(
                verify_inclusion(index, size, &naive.leaves[(m + 1) % n], &proof, &root).is_err()
            );
        }
    }
}

#[test]
fn a_changed_consistency_proof_is_refused() {
    let (mut naive, tree) = trees();
    for n in [2usize, 3, 7, 8, 9, 100, 255, 256, 257, 300] {
        let new_root = naive.mth(0, n);
        for m in 1..n {
            let (old, new) = (TreeSize(m as u64), TreeSize(n as u64));
            let old_root = naive.mth(0, m);
            let proof = consistency_proof(&tree, old, new).expect("proof");
            for i in 0..proof.len() {
                assert!(
                    verify_consistency(old, new, &old_root, &new_root, &flipped(&proof, i))
                        .is_err(),
                    "hash {i} flipped, {m} -> {n}"
                );
            }
            for wrong in [m - 1, m + 1, m ^ 2] {
                if wrong != m && wrong >= 1 && wrong < n {
                    assert!(
                        verify_consistency(
                            TreeSize(wrong as u64),
                            new,
                            &old_root,
                            &new_root,
                            &proof
                        )
                        .is_err(),
                        "wrong old size {wrong} for {m} -> {n}"
                    );
                }
            }
            for wrong in [n * 2, n / 2] {
                if wrong != n && wrong > m {
                    assert!(
                        verify_consistency(
                            old,
                            TreeSize(wrong as u64),
                            &old_root,
                            &new_root,
                            &proof
                        )
                        .is_err(),
                        "wrong new size {wrong} for {m} -> {n}"
                    );
                }
            }
            assert!(verify_consistency(old, new, &new_root, &old_root, &proof).is_err());
            assert!(verify_consistency(old, new, &old_root, &new_root, &[]).is_err());
            let mut longer = proof.clone();
            longer.push(new_root);
            assert!(verify_consistency(old, new, &old_root, &new_root, &longer).is_err());
            assert!(
                verify_consistency(old, new, &old_root, &new_root, &proof[..proof.len() - 1])
                    .is_err()
            );
        }
    }
}
