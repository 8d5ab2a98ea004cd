//! RFC 6962 (RFC 9162 section 2.1) Merkle trees: hashing, roots, inclusion and consistency
//! proofs, and their verification.
//!
//! A leaf is `SHA-256(0x00 || data)`, an interior node `SHA-256(0x01 || left || right)`.
//! Trees are read through [`HashReader`]: the leaf hashes, and optionally the stored hashes of
//! complete subtrees at levels that are multiples of [`TILE_HEIGHT`] ("tiles"), so any node is
//! computed from at most 2^(TILE_HEIGHT-1) stored hashes and a proof costs O(log n) bounded
//! reads. Stored tiles are only a cache: where one is missing it is computed from below.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// Levels `TILE_HEIGHT`, `2 * TILE_HEIGHT`, ... may be stored.
pub const TILE_HEIGHT: u32 = 8;

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Read access to a tree's hashes.
pub trait HashReader {
    type Error;
    /// Leaf hashes `[start, end)`.
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Hash>, Self::Error>;
    /// Stored hashes of the complete subtrees of `2^level` leaves numbered `[start, end)` at
    /// `level` (a positive multiple of [`TILE_HEIGHT`]); `None` where none is stored.
    fn stored(&self, level: u32, start: u64, end: u64) -> Result<Vec<Option<Hash>>, Self::Error>;
}

/// Hashes in a slice, folded pairwise into one (the slice's length is a power of two).
fn fold(mut hashes: Vec<Hash>) -> Hash {
    while hashes.len() > 1 {
        hashes = hashes.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    hashes[0]
}

/// The hashes of the complete subtrees `[start, end)` at `level`.
fn subtrees<R: HashReader>(r: &R, level: u32, start: u64, end: u64) -> Result<Vec<Hash>, R::Error> {
    if level == 0 {
        return r.leaves(start, end);
    }
    if level.is_multiple_of(TILE_HEIGHT) {
        let stored = r.stored(level, start, end)?;
        if stored.iter().all(Option::is_some) {
            return Ok(stored.into_iter().flatten().collect());
        }
        // Fill the gaps from the level below.
        let mut out = Vec::with_capacity(stored.len());
        for (i, h) in stored.into_iter().enumerate() {
            out.push(match h {
                Some(h) => h,
                None => subtree(r, level, start + i as u64)?,
            });
        }
        return Ok(out);
    }
    (start..end).map(|i| subtree(r, level, i)).collect()
}

/// The hash of complete subtree `index` at `level` (leaves `index * 2^level ..`).
pub fn subtree<R: HashReader>(r: &R, level: u32, index: u64) -> Result<Hash, R::Error> {
    if level == 0 {
        return Ok(r.leaves(index, index + 1)?[0]);
    }
    if level.is_multiple_of(TILE_HEIGHT)
        && let Some(h) = r.stored(level, index, index + 1)?[0]
    {
        return Ok(h);
    }
    let below = (level - 1) / TILE_HEIGHT * TILE_HEIGHT;
    let width = 1u64 << (level - below);
    Ok(fold(subtrees(
        r,
        below,
        index * width,
        (index + 1) * width,
    )?))
}

/// The hash of complete subtree `index` at `level`, computed from the level below, never
/// from a stored tile of this level: what a store checks its tiles against.
pub fn subtree_from_below<R: HashReader>(r: &R, level: u32, index: u64) -> Result<Hash, R::Error> {
    if level == 0 {
        return subtree(r, 0, index);
    }
    let below = (level - 1) / TILE_HEIGHT * TILE_HEIGHT;
    let width = 1u64 << (level - below);
    Ok(fold(subtrees(
        r,
        below,
        index * width,
        (index + 1) * width,
    )?))
}

/// `MTH(D[start:end])` for a range that RFC 6962's recursion produces (start aligned).
fn range_hash<R: HashReader>(r: &R, start: u64, end: u64) -> Result<Hash, R::Error> {
    // Split into aligned complete subtrees, largest first, and fold from the right.
    let mut parts = Vec::new();
    let mut at = start;
    while at < end {
        let mut level = if at == 0 { 63 } else { at.trailing_zeros() };
        while level > 0 && at + (1u64 << level) > end {
            level -= 1;
        }
        parts.push(subtree(r, level, at >> level)?);
        at += 1u64 << level;
    }
    let mut acc = parts.pop().expect("a range is never empty");
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of the tree of the first `size` leaves.
pub fn root<R: HashReader>(r: &R, size: u64) -> Result<Hash, R::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(r, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 2.1.3.1).
pub fn inclusion_proof<R: HashReader>(r: &R, index: u64, size: u64) -> Result<Vec<Hash>, R::Error> {
    assert!(index < size, "leaf {index} is not in a tree of {size}");
    let mut proof = Vec::new();
    let (mut start, mut end, mut m) = (0u64, size, index);
    let mut path = Vec::new();
    while end - start > 1 {
        let k = split(end - start);
        if m < k {
            path.push((start + k, end));
            end = start + k;
        } else {
            path.push((start, start + k));
            start += k;
            m -= k;
        }
    }
    for (a, b) in path.into_iter().rev() {
        proof.push(range_hash(r, a, b)?);
    }
    Ok(proof)
}

/// The consistency proof between the trees of `first` and `second` leaves (RFC 9162 2.1.4.1).
pub fn consistency_proof<R: HashReader>(
    r: &R,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, R::Error> {
    assert!(
        first <= second,
        "a tree of {first} does not precede one of {second}"
    );
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    let (mut start, mut end, mut m, mut whole) = (0u64, second, first, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                ranges.push((start, end));
            }
            break;
        }
        let k = split(n);
        if m <= k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
            whole = false;
        }
    }
    ranges.reverse();
    ranges
        .into_iter()
        .map(|(a, b)| range_hash(r, a, b))
        .collect()
}

/// Checks an inclusion proof (RFC 9162 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

/// Builds roots over a stream of leaves: after each push, the root of the tree so far is
/// one fold of at most 64 hashes away.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// Complete subtrees, largest first: (level, hash).
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl RootBuilder {
    /// The builder of a stored tree of `size` leaves: the complete subtrees on its right
    /// edge, read through `r` (tiles first).
    pub fn at<R: HashReader>(r: &R, size: u64) -> Result<RootBuilder, R::Error> {
        let mut stack = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size >> level & 1 == 1 {
                stack.push((level, subtree(r, level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(RootBuilder { stack, size })
    }

    pub fn push(&mut self, leaf: Hash) {
        self.push_tiles(leaf, |_, _, _| {});
    }

    /// Pushes a leaf and tells `tile` of each subtree it completes at a level that may be
    /// stored (a multiple of [`TILE_HEIGHT`]): its level, index and hash.
    pub fn push_tiles(&mut self, leaf: Hash, mut tile: impl FnMut(u32, u64, &Hash)) {
        let mut node = (0u32, leaf);
        let end = self.size + 1;
        while let Some(&(level, left)) = self.stack.last() {
            if level != node.0 {
                break;
            }
            self.stack.pop();
            node = (level + 1, node_hash(&left, &node.1));
            if node.0.is_multiple_of(TILE_HEIGHT) {
                tile(node.0, (end >> node.0) - 1, &node.1);
            }
        }
        self.stack.push(node);
        self.size = end;
    }

    /// The builder of a tree of `size` leaves from its right edge (see [`Self::frontier`]);
    /// `None` when `hashes` are not one per set bit of `size`.
    pub fn from_frontier(size: u64, hashes: &[Hash]) -> Option<RootBuilder> {
        if hashes.len() != size.count_ones() as usize {
            return None;
        }
        let levels = (0..64u32).rev().filter(|l| size >> l & 1 == 1);
        Some(RootBuilder {
            stack: levels.zip(hashes.iter().copied()).collect(),
            size,
        })
    }

    /// The complete subtrees on the tree's right edge, largest first: with the leaves that
    /// follow, they give every later root, so they prove a range of leaves extends this tree.
    pub fn frontier(&self) -> Vec<Hash> {
        self.stack.iter().map(|(_, h)| *h).collect()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

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

/// A tree held in memory: leaf hashes, nothing stored above them.
pub struct InMemory<'a>(pub &'a [Hash]);

impl HashReader for InMemory<'_> {
    type Error = std::convert::Infallible;
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Hash>, Self::Error> {
        Ok(self.0[start as usize..end as usize].to_vec())
    }
    fn stored(&self, _: u32, start: u64, end: u64) -> Result<Vec<Option<Hash>>, Self::Error> {
        Ok(vec![None; (end - start) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The leaves of Certificate Transparency's reference tree (RFC 6962 test data).
    const LEAVES: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
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

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn reference() -> Vec<Hash> {
        LEAVES.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn rfc6962_roots() {
        let leaves = reference();
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut b = RootBuilder::default();
        for n in 1..=8 {
            b.push(leaves[n - 1]);
            assert_eq!(
                root(&InMemory(&leaves), n as u64).unwrap(),
                h(ROOTS[n - 1]),
                "size {n}"
            );
            assert_eq!(b.root(), h(ROOTS[n - 1]), "builder, size {n}");
        }
    }

    #[test]
    fn rfc6962_inclusion_proofs() {
        let leaves = reference();
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
        for (index, size, want) in cases {
            let proof = inclusion_proof(&InMemory(&leaves), index, size).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "({index}, {size})");
            let r = h(ROOTS[size as usize - 1]);
            assert!(verify_inclusion(
                &leaves[index as usize],
                index,
                size,
                &proof,
                &r
            ));
            assert!(!verify_inclusion(
                &leaves[index as usize],
                index ^ 1,
                size,
                &proof,
                &r
            ));
            assert!(!verify_inclusion(
                &leaves[index as usize],
                index,
                size * 2,
                &proof,
                &r
            ));
        }
    }

    #[test]
    fn rfc6962_consistency_proofs() {
        let leaves = reference();
        let cases: [(u64, u64, &[&str]); 3] = [
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
        for (m, n, want) in cases {
            let proof = consistency_proof(&InMemory(&leaves), m, n).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "({m}, {n})");
            let (r1, r2) = (h(ROOTS[m as usize - 1]), h(ROOTS[n as usize - 1]));
            assert!(verify_consistency(m, n, &r1, &r2, &proof));
            assert!(!verify_consistency(m, n, &r2, &r1, &proof));
            assert!(!verify_consistency(m, n * 2, &r1, &r2, &proof));
            assert!(!verify_consistency(m - 1, n, &r1, &r2, &proof));
        }
        let r = h(ROOTS[0]);
        assert!(verify_consistency(1, 1, &r, &r, &[]));
        assert!(!verify_consistency(1, 1, &r, &empty_root(), &[]));
        assert!(!verify_consistency(2, 1, &r, &r, &[]));
        assert!(!verify_consistency(1, 2, &r, &r, &[]));
    }

    /// A reader with tiles stored for some subtrees: results must not change.
    struct Tiled<'a> {
        leaves: &'a [Hash],
        tiles: std::collections::HashMap<(u32, u64), Hash>,
    }

    impl<'a> Tiled<'a> {
        fn new(leaves: &'a [Hash], keep: fn(u32, u64) -> bool) -> Self {
            let plain = InMemory(leaves);
            let mut tiles = std::collections::HashMap::new();
            for level in [TILE_HEIGHT, 2 * TILE_HEIGHT] {
                for i in 0..(leaves.len() as u64 >> level) {
                    if keep(level, i) {
                        tiles.insert((level, i), subtree(&plain, level, i).unwrap());
                    }
                }
            }
            Tiled { leaves, tiles }
        }
    }

    impl HashReader for Tiled<'_> {
        type Error = std::convert::Infallible;
        fn leaves(&self, start: u64, end: u64) -> Result<Vec<Hash>, Self::Error> {
            Ok(self.leaves[start as usize..end as usize].to_vec())
        }
        fn stored(
            &self,
            level: u32,
            start: u64,
            end: u64,
        ) -> Result<Vec<Option<Hash>>, Self::Error> {
            Ok((start..end)
                .map(|i| self.tiles.get(&(level, i)).copied())
                .collect())
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn a_builder_resumed_from_a_stored_tree_goes_on_as_if_it_had_seen_every_leaf() {
        let l = leaves(70_000);
        let plain = InMemory(&l);
        let mut tiles = Vec::new();
        let mut whole = RootBuilder::default();
        for (i, leaf) in l.iter().enumerate() {
            whole.push_tiles(*leaf, |level, idx, h| tiles.push((level, idx, *h)));
            assert_eq!(whole.size(), i as u64 + 1);
        }
        // Every tile it reports is the stored tree's subtree, each once, in order.
        let mut want = Vec::new();
        for i in 0..(70_000u64 >> TILE_HEIGHT) {
            want.push((TILE_HEIGHT, i, subtree(&plain, TILE_HEIGHT, i).unwrap()));
            if (i + 1) % 256 == 0 {
                let j = (i + 1) / 256 - 1;
                want.push((
                    2 * TILE_HEIGHT,
                    j,
                    subtree(&plain, 2 * TILE_HEIGHT, j).unwrap(),
                ));
            }
        }
        assert_eq!(tiles, want);
        for size in [0u64, 1, 2, 255, 256, 257, 65_535, 65_536, 65_537, 69_000] {
            let t = Tiled::new(&l, |_, i| i % 2 == 0);
            let mut resumed = RootBuilder::at(&t, size).unwrap();
            assert_eq!(resumed.size(), size);
            assert_eq!(resumed.root(), root(&plain, size).unwrap(), "size {size}");
            for leaf in &l[size as usize..70_000] {
                resumed.push(*leaf);
            }
            assert_eq!(resumed.root(), whole.root(), "resumed at {size}");
        }
    }

    #[test]
    fn stored_tiles_change_nothing() {
        let l = leaves(70_000);
        let plain = InMemory(&l);
        for keep in [
            (|_, _| true) as fn(u32, u64) -> bool,
            |_, i| i % 3 != 1,
            |_, _| false,
        ] {
            let t = Tiled::new(&l, keep);
            for size in [1u64, 255, 256, 257, 65_535, 65_536, 65_537, 70_000] {
                assert_eq!(
                    root(&t, size).unwrap(),
                    root(&plain, size).unwrap(),
                    "root {size}"
                );
            }
            for (i, n) in [
                (0u64, 70_000u64),
                (65_536, 70_000),
                (300, 65_537),
                (69_999, 70_000),
            ] {
                assert_eq!(
                    inclusion_proof(&t, i, n).unwrap(),
                    inclusion_proof(&plain, i, n).unwrap()
                );
            }
            assert_eq!(
                consistency_proof(&t, 300, 70_000).unwrap(),
                consistency_proof(&plain, 300, 70_000).unwrap()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_inclusion_proof_verifies_and_a_flipped_byte_fails(n in 1usize..300, pick in any::<u64>(), flip in any::<(usize, u8)>()) {
            let l = leaves(n);
            let t = InMemory(&l);
            let r = root(&t, n as u64).unwrap();
            for i in 0..n as u64 {
                let p = inclusion_proof(&t, i, n as u64).unwrap();
                prop_assert!(verify_inclusion(&l[i as usize], i, n as u64, &p, &r));
            }
            let i = pick % n as u64;
            let mut p = inclusion_proof(&t, i, n as u64).unwrap();
            if !p.is_empty() {
                let at = flip.0 % p.len();
                p[at][flip.0 % 32] ^= flip.1 | 1;
                prop_assert!(!verify_inclusion(&l[i as usize], i, n as u64, &p, &r));
            }
            let mut leaf = l[i as usize];
            leaf[flip.0 % 32] ^= flip.1 | 1;
            prop_assert!(!verify_inclusion(&leaf, i, n as u64, &inclusion_proof(&t, i, n as u64).unwrap(), &r));
        }

        #[test]
        fn every_consistency_proof_verifies_and_a_flipped_byte_fails(n in 1usize..300, m_pick in any::<u64>(), flip in any::<(usize, u8)>()) {
            let l = leaves(n);
            let t = InMemory(&l);
            let m = 1 + m_pick % n as u64;
            let (rm, rn) = (root(&t, m).unwrap(), root(&t, n as u64).unwrap());
            let mut p = consistency_proof(&t, m, n as u64).unwrap();
            prop_assert!(verify_consistency(m, n as u64, &rm, &rn, &p));
            if !p.is_empty() {
                let at = flip.0 % p.len();
                p[at][flip.0 % 32] ^= flip.1 | 1;
                prop_assert!(!verify_consistency(m, n as u64, &rm, &rn, &p));
            }
        }
    }
}
