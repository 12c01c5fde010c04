//! The log's Merkle tree, exactly as RFC 6962 / RFC 9162 define it.
//!
//! Leaves are `SHA-256(0x00 || record)`, interior nodes `SHA-256(0x01 || left || right)`, and a
//! tree of `n` leaves splits at the largest power of two below `n`. Any other shape would make
//! our proofs unverifiable by the tools auditors already have, so the hashing and the proof
//! algorithms follow the RFC's definitions literally.
//!
//! The tree itself is never held in memory. A store answers [`SubtreeHashes::subtree_hash`]
//! for complete, aligned subtrees (from stored nodes or by folding leaf hashes), and the
//! functions here build proofs from O(log n) of those. The [`Frontier`] is the sequencer's
//! running state: the roots of the complete subtrees of the current tree, enough to append
//! a leaf and compute the root without reading anything.
//!
//! Beside the RFC's two proofs there is a third, for archives: a [`range_proof`] ties a
//! contiguous range of leaves to a tree head, so a segment of archived events can be checked
//! against a signed checkpoint with nothing but its own leaves and O(log n) boundary hashes.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of leaf hashes (RFC 6962 §2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || data)`: the hash of one log entry.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// The largest power of two strictly smaller than `n` (RFC 9162's `k`); `n` must be ≥ 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2, "a tree of fewer than two leaves has no split");
    1 << (63 - (n - 1).leading_zeros())
}

/// Something that can produce the hash of any complete, aligned subtree of the log: the
/// subtree at `level` (height; 0 = one leaf) with `index` covers leaves
/// `[index << level, (index + 1) << level)`.
pub trait SubtreeHashes {
    /// What reading a hash can fail with (I/O for a store, never for memory).
    type Error;
    /// The hash of one complete subtree. Callers only ask for subtrees that lie entirely
    /// inside the tree they are proving against.
    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be produced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The request names a leaf or tree size the RFC defines no proof for.
    #[error("{0}")]
    OutOfRange(String),
    /// Reading a subtree hash failed.
    #[error("reading the tree failed: {0}")]
    Source(E),
}

/// `MTH(D[start:end])` for a range that is a subtree in the RFC's recursion: `start` is a
/// multiple of the smallest power of two that is ≥ `end - start`. Such a range is the
/// right fold of the maximal aligned complete subtrees that tile it.
pub fn range_hash<S: SubtreeHashes>(src: &mut S, start: u64, end: u64) -> Result<Hash, S::Error> {
    assert!(start < end, "an empty range has no Merkle tree hash");
    debug_assert!(
        start.is_multiple_of((end - start).next_power_of_two()),
        "range [{start}, {end}) is not a subtree of the RFC 9162 recursion"
    );
    let mut parts: Vec<Hash> = Vec::with_capacity(64);
    let mut pos = start;
    while pos < end {
        let alignment = if pos == 0 { 63 } else { pos.trailing_zeros() };
        let fits = 63 - (end - pos).leading_zeros();
        let level = alignment.min(fits);
        parts.push(src.subtree_hash(level, pos >> level)?);
        pos += 1 << level;
    }
    let mut acc = parts
        .pop()
        .expect("a non-empty range has at least one part");
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The root of the tree of the first `size` leaves.
pub fn root_at<S: SubtreeHashes>(src: &mut S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// The RFC 9162 §2.1.3.1 inclusion proof of leaf `leaf_index` in the tree of `tree_size`
/// leaves, deepest sibling first.
pub fn inclusion_proof<S: SubtreeHashes>(
    src: &mut S,
    leaf_index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if leaf_index >= tree_size {
        return Err(ProofError::OutOfRange(format!(
            "leaf index {leaf_index} is not in a tree of size {tree_size}"
        )));
    }
    let mut proof = Vec::new();
    inclusion_path(src, leaf_index, 0, tree_size, &mut proof).map_err(ProofError::Source)?;
    Ok(proof)
}

fn inclusion_path<S: SubtreeHashes>(
    src: &mut S,
    leaf: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if leaf < start + k {
        inclusion_path(src, leaf, start, start + k, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        inclusion_path(src, leaf, start + k, end, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// The RFC 9162 §2.1.4.1 consistency proof that the tree of `old_size` leaves is a prefix of
/// the tree of `new_size` leaves. `old_size` must be in `1..=new_size`; equal sizes give an
/// empty proof.
pub fn consistency_proof<S: SubtreeHashes>(
    src: &mut S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "no consistency proof from size {old_size} to size {new_size}: \
             the old size must be between 1 and the new size"
        )));
    }
    let mut proof = Vec::new();
    consistency_subproof(src, old_size, 0, new_size, true, &mut proof)
        .map_err(ProofError::Source)?;
    Ok(proof)
}

/// SUBPROOF(m, D[start:end], b) with `old_size` as an absolute leaf count.
fn consistency_subproof<S: SubtreeHashes>(
    src: &mut S,
    old_size: u64,
    start: u64,
    end: u64,
    old_is_whole_subtree: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if old_size == end {
        if !old_is_whole_subtree {
            out.push(range_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(end - start);
    if old_size <= start + k {
        consistency_subproof(src, old_size, start, start + k, old_is_whole_subtree, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        consistency_subproof(src, old_size, start + k, end, false, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// The range proof of the leaves `[start, end)` in the tree of `tree_size` leaves: the hashes
/// of the maximal complete subtrees (in the RFC 9162 recursion) that lie entirely outside
/// the range, in the order a recursive MTH computation over `[0, tree_size)` meets them.
///
/// With the range's leaf hashes, they are exactly what [`root_from_range`] needs to rebuild
/// the root: a node fully inside the range is computed from the leaves, a node outside it is
/// the next boundary hash, any other node splits at the largest power of two below its size.
/// An archive segment keeps this list so that its leaves can be checked against a signed
/// checkpoint offline. At most two hashes per level: O(log n) subtree reads.
pub fn range_proof<S: SubtreeHashes>(
    src: &mut S,
    start: u64,
    end: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if start >= end || end > tree_size {
        return Err(ProofError::OutOfRange(format!(
            "no range proof of leaves [{start}, {end}) in a tree of size {tree_size}: \
             the range must be non-empty and inside the tree"
        )));
    }
    let mut boundary = Vec::new();
    range_boundary(src, start, end, 0, tree_size, &mut boundary).map_err(ProofError::Source)?;
    Ok(boundary)
}

fn range_boundary<S: SubtreeHashes>(
    src: &mut S,
    start: u64,
    end: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if hi <= start || lo >= end {
        out.push(range_hash(src, lo, hi)?);
        return Ok(());
    }
    if start <= lo && hi <= end {
        return Ok(());
    }
    let k = split_point(hi - lo);
    range_boundary(src, start, end, lo, lo + k, out)?;
    range_boundary(src, start, end, lo + k, hi, out)
}

/// Rebuilds the root of the tree of `tree_size` leaves from the leaf hashes of the range
/// starting at leaf `start` and its [`range_proof`]. `None` when the boundary has too few
/// or too many hashes for that shape, or the range does not fit in the tree; compare the
/// result with a signed checkpoint's root.
pub fn root_from_range(
    start: u64,
    leaves: &[Hash],
    tree_size: u64,
    boundary: &[Hash],
) -> Option<Hash> {
    let end = start.checked_add(leaves.len() as u64)?;
    if leaves.is_empty() || end > tree_size {
        return None;
    }
    let mut next = boundary.iter();
    let root = fold_with_boundary(start, leaves, 0, tree_size, &mut next)?;
    next.next().is_none().then_some(root)
}

fn fold_with_boundary(
    start: u64,
    leaves: &[Hash],
    lo: u64,
    hi: u64,
    next: &mut std::slice::Iter<'_, Hash>,
) -> Option<Hash> {
    let end = start + leaves.len() as u64;
    if hi <= start || lo >= end {
        return next.next().copied();
    }
    if start <= lo && hi <= end {
        return Some(list_root(
            &leaves[(lo - start) as usize..(hi - start) as usize],
        ));
    }
    let k = split_point(hi - lo);
    let left = fold_with_boundary(start, leaves, lo, lo + k, next)?;
    let right = fold_with_boundary(start, leaves, lo + k, hi, next)?;
    Some(node_hash(&left, &right))
}

/// `MTH(leaves)`: the root of the tree whose leaves are exactly these hashes (the empty
/// root for none). O(n) hashes, O(log n) memory beyond the input.
pub fn list_root(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for leaf in leaves {
        frontier.push(*leaf, |_, _, _| {});
    }
    frontier.root()
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if leaf_index >= tree_size {
        return false;
    }
    let (mut f_n, mut s_n) = (leaf_index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2) between two tree heads.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && f_r == *old_root && s_r == *new_root
}

/// The right edge of the tree: one hash per complete subtree in the binary decomposition of
/// the size, largest (leftmost) first. Appending a leaf merges equal-height subtrees, like
/// incrementing a binary counter, so it costs O(1) hashes amortised and reads nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of the tree of `size` leaves from its complete subtrees.
    pub fn load<S: SubtreeHashes>(src: &mut S, size: u64) -> Result<Self, S::Error> {
        let mut subtrees = Vec::with_capacity(size.count_ones() as usize);
        let mut pos = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                subtrees.push(src.subtree_hash(level, pos >> level)?);
                pos += 1 << level;
            }
        }
        Ok(Self { size, subtrees })
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf. `on_complete(level, index, hash)` is called for every subtree of
    /// level ≥ 1 this append completes, lowest first, so a store can persist the ones it
    /// keeps.
    pub fn push(&mut self, leaf: Hash, mut on_complete: impl FnMut(u32, u64, &Hash)) {
        let leaf_index = self.size;
        let mut hash = leaf;
        let mut level = 0u32;
        while self.size & (1 << level) != 0 {
            let left = self
                .subtrees
                .pop()
                .expect("every set bit of the size has a subtree on the frontier");
            hash = node_hash(&left, &hash);
            level += 1;
            on_complete(level, leaf_index >> level, &hash);
        }
        self.subtrees.push(hash);
        self.size += 1;
        debug_assert_eq!(self.subtrees.len(), self.size.count_ones() as usize);
    }

    /// The root hash of the current tree.
    pub fn root(&self) -> Hash {
        let mut iter = self.subtrees.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Subtree hashes computed from leaf hashes held in memory: the reference the store is
/// tested against, and what `verify` uses for exports.
pub struct LeafSlice<'a>(pub &'a [Hash]);

impl SubtreeHashes for LeafSlice<'_> {
    type Error = std::convert::Infallible;
    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        let start = (index << level) as usize;
        Ok(fold_complete(&self.0[start..start + (1usize << level)]))
    }
}

/// The root of a complete subtree given all its leaf hashes (a power-of-two count).
pub fn fold_complete(leaves: &[Hash]) -> Hash {
    assert!(
        leaves.len().is_power_of_two(),
        "a complete subtree has a power-of-two number of leaves, not {}",
        leaves.len()
    );
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962's reference entries (from Certificate Transparency's test suite).
    const ENTRIES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    /// Roots of the trees of the first 1..=8 entries.
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

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn reference_leaves() -> Vec<Hash> {
        ENTRIES
            .iter()
            .map(|e| leaf_hash(&hex::decode(e).unwrap()))
            .collect()
    }

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

    /// PATH(m, D[n]) straight from the RFC.
    fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return vec![];
        }
        let k = split_point(n as u64) as usize;
        if m < k {
            let mut p = naive_path(m, &leaves[..k]);
            p.push(naive_root(&leaves[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &leaves[k..]);
            p.push(naive_root(&leaves[..k]));
            p
        }
    }

    /// SUBPROOF(m, D[n], b) straight from the RFC.
    fn naive_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b { vec![] } else { vec![naive_root(leaves)] };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut p = naive_subproof(m, &leaves[..k], b);
            p.push(naive_root(&leaves[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &leaves[k..], false);
            p.push(naive_root(&leaves[..k]));
            p
        }
    }

    /// Every complete subtree of a leaf list, computed once, so the exhaustive test below
    /// costs a lookup per proof node instead of a fold.
    struct Memo(std::collections::HashMap<(u32, u64), Hash>);

    impl Memo {
        fn new(leaves: &[Hash]) -> Self {
            let mut map = std::collections::HashMap::new();
            let mut level_hashes = leaves.to_vec();
            let mut level = 0;
            while !level_hashes.is_empty() {
                for (i, h) in level_hashes.iter().enumerate() {
                    map.insert((level, i as u64), *h);
                }
                level_hashes = level_hashes
                    .chunks_exact(2)
                    .map(|p| node_hash(&p[0], &p[1]))
                    .collect();
                level += 1;
            }
            Self(map)
        }
    }

    impl SubtreeHashes for Memo {
        type Error = std::convert::Infallible;
        fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error> {
            Ok(self.0[&(level, index)])
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn roots_match_rfc6962_reference_vectors() {
        let leaves = reference_leaves();
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut frontier = Frontier::new();
        for (n, root) in ROOTS.iter().enumerate() {
            frontier.push(leaves[n], |_, _, _| {});
            assert_eq!(frontier.root(), h(root), "frontier root at size {}", n + 1);
            let computed = root_at(&mut LeafSlice(&leaves), n as u64 + 1).unwrap();
            assert_eq!(computed, h(root), "range root at size {}", n + 1);
        }
    }

    #[test]
    fn inclusion_proofs_match_rfc6962_reference_vectors() {
        let leaves = reference_leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
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
        for (index, size, expected) in cases {
            let proof = inclusion_proof(&mut LeafSlice(&leaves), index, size).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "leaf {index} in size {size}");
            let root = h(ROOTS[size as usize - 1]);
            assert!(verify_inclusion(
                index,
                size,
                &leaves[index as usize],
                &proof,
                &root
            ));
        }
    }

    #[test]
    fn consistency_proofs_match_rfc6962_reference_vectors() {
        let leaves = reference_leaves();
        let cases: [(u64, u64, &[&str]); 4] = [
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
        ];
        for (old, new, expected) in cases {
            let proof = consistency_proof(&mut LeafSlice(&leaves), old, new).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "consistency {old} -> {new}");
            assert!(verify_consistency(
                old,
                new,
                &h(ROOTS[old as usize - 1]),
                &h(ROOTS[new as usize - 1]),
                &proof
            ));
        }
    }

    #[test]
    fn every_inclusion_and_consistency_proof_up_to_200_leaves_matches_the_naive_reference() {
        let all = leaves(200);
        let mut memo = Memo::new(&all);
        let mut frontier = Frontier::new();
        for n in 1..=all.len() {
            frontier.push(all[n - 1], |_, _, _| {});
            let tree = &all[..n];
            let root = naive_root(tree);
            assert_eq!(frontier.root(), root, "frontier root, size {n}");
            let loaded = Frontier::load(&mut memo, n as u64).unwrap();
            assert_eq!(loaded, frontier, "frontier loaded from subtrees, size {n}");
            for m in 0..n {
                let proof = inclusion_proof(&mut memo, m as u64, n as u64).unwrap();
                assert_eq!(proof, naive_path(m, tree), "inclusion of {m} in {n}");
                assert!(verify_inclusion(
                    m as u64, n as u64, &tree[m], &proof, &root
                ));
            }
            for old in 1..=n {
                let proof = consistency_proof(&mut memo, old as u64, n as u64).unwrap();
                assert_eq!(
                    proof,
                    naive_subproof(old, tree, true),
                    "consistency {old} -> {n}"
                );
                let old_root = naive_root(&all[..old]);
                assert!(verify_consistency(
                    old as u64, n as u64, &old_root, &root, &proof
                ));
            }
        }
    }

    #[test]
    fn push_reports_each_completed_subtree_once_with_its_hash() {
        let all = leaves(64);
        let mut frontier = Frontier::new();
        let mut completed = Vec::new();
        for leaf in &all {
            frontier.push(*leaf, |level, index, hash| {
                completed.push((level, index, *hash))
            });
        }
        // A tree of 64 leaves has 63 interior nodes, each completed exactly once.
        assert_eq!(completed.len(), 63);
        for (level, index, hash) in completed {
            assert_eq!(hash, LeafSlice(&all).subtree_hash(level, index).unwrap());
        }
    }

    #[test]
    fn proofs_out_of_range_are_refused() {
        let all = leaves(4);
        assert!(matches!(
            inclusion_proof(&mut LeafSlice(&all), 4, 4),
            Err(ProofError::OutOfRange(_))
        ));
        assert!(matches!(
            consistency_proof(&mut LeafSlice(&all), 0, 4),
            Err(ProofError::OutOfRange(_))
        ));
        assert!(matches!(
            consistency_proof(&mut LeafSlice(&all), 5, 4),
            Err(ProofError::OutOfRange(_))
        ));
    }

    #[test]
    fn every_range_proof_up_to_70_leaves_rebuilds_the_root() {
        let all = leaves(70);
        let mut memo = Memo::new(&all);
        for n in 1..=all.len() {
            let root = naive_root(&all[..n]);
            for start in 0..n {
                for end in start + 1..=n {
                    let boundary =
                        range_proof(&mut memo, start as u64, end as u64, n as u64).unwrap();
                    assert!(boundary.len() <= 2 * 64, "O(log n) hashes");
                    let rebuilt =
                        root_from_range(start as u64, &all[start..end], n as u64, &boundary);
                    assert_eq!(rebuilt, Some(root), "range [{start}, {end}) of {n}");
                }
            }
        }
    }

    #[test]
    fn the_whole_tree_needs_no_boundary_and_ranges_outside_the_tree_are_refused() {
        let all = leaves(9);
        assert_eq!(
            range_proof(&mut LeafSlice(&all), 0, 9, 9).unwrap(),
            Vec::<Hash>::new()
        );
        assert_eq!(root_from_range(0, &all, 9, &[]), Some(naive_root(&all)));
        for (start, end, size) in [(3, 3, 9), (4, 10, 9), (5, 4, 9)] {
            assert!(matches!(
                range_proof(&mut LeafSlice(&all), start, end, size),
                Err(ProofError::OutOfRange(_))
            ));
        }
        assert_eq!(root_from_range(8, &all[..2], 9, &[]), None);
        assert_eq!(root_from_range(0, &[], 9, &[]), None);
    }

    proptest! {
        #[test]
        fn a_range_proof_rebuilds_the_checkpoint_root_and_nothing_else(
            size in 1u64..2000, a in any::<u64>(), b in any::<u64>(),
            flip in 0usize..32, victim_seed in any::<u64>(), which in 0usize..5,
        ) {
            let all = leaves(size as usize);
            let (x, y) = (a % size, b % size);
            let (start, end) = (x.min(y), x.max(y) + 1);
            let root = naive_root(&all);
            prop_assert_eq!(list_root(&all), root);
            let boundary = range_proof(&mut LeafSlice(&all), start, end, size).unwrap();
            let range = &all[start as usize..end as usize];
            prop_assert_eq!(root_from_range(start, range, size, &boundary), Some(root));
            // Any change to the leaves, their position or the boundary loses the root.
            let mut leaves_changed = range.to_vec();
            let mut boundary_changed = boundary.clone();
            let mut at = start;
            match which {
                0 => leaves_changed[(victim_seed % range.len() as u64) as usize][flip] ^= 1,
                1 if !boundary.is_empty() => {
                    boundary_changed[(victim_seed as usize) % boundary.len()][flip] ^= 1
                }
                2 => { leaves_changed.pop(); }
                3 if range.len() > 1 => {
                    let i = (victim_seed % (range.len() as u64 - 1)) as usize;
                    leaves_changed.swap(i, i + 1);
                    prop_assume!(leaves_changed[i] != leaves_changed[i + 1]);
                }
                4 if end < size => at = start + 1,
                _ => boundary_changed.push([0; 32]),
            }
            prop_assert_ne!(
                root_from_range(at, &leaves_changed, size, &boundary_changed),
                Some(root)
            );
        }
    }

    proptest! {
        #[test]
        fn a_proof_never_verifies_for_another_leaf_or_root(
            size in 2u64..300, index_seed in any::<u64>(), flip in 0usize..32, which in 0usize..3,
        ) {
            let all = leaves(size as usize);
            let index = index_seed % size;
            let root = naive_root(&all);
            let mut proof = inclusion_proof(&mut LeafSlice(&all), index, size).unwrap();
            let mut leaf = all[index as usize];
            let mut bad_root = root;
            match which {
                0 => leaf[flip] ^= 1,
                1 => bad_root[flip] ^= 1,
                _ => {
                    let i = flip % proof.len();
                    proof[i][flip] ^= 1;
                }
            }
            prop_assert!(!verify_inclusion(index, size, &leaf, &proof, &bad_root));
        }

        #[test]
        fn a_consistency_proof_never_verifies_a_rewritten_history(
            new in 2u64..300, old_seed in any::<u64>(), victim_seed in any::<u64>(),
        ) {
            let mut all = leaves(new as usize);
            let old = 1 + old_seed % (new - 1);
            let old_root = naive_root(&all[..old as usize]);
            // Rewrite one leaf the old tree already committed to.
            let victim = (victim_seed % old) as usize;
            all[victim] = leaf_hash(b"forged");
            let new_root = naive_root(&all);
            let proof = consistency_proof(&mut LeafSlice(&all), old, new).unwrap();
            prop_assert!(!verify_consistency(old, new, &old_root, &new_root, &proof));
        }
    }
}
