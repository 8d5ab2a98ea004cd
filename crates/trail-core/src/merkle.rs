//! RFC 6962 (RFC 9162 section 2.1) hashing for the per-org Merkle log.
//!
//! A leaf is `SHA-256(0x00 || data)`, an interior node `SHA-256(0x01 || left || right)`.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of Certificate Transparency's reference tree (RFC 6962 test data).
    const LEAVES: [&[u8]; 4] = [b"", &[0x00], &[0x10], &[0x20, 0x21]];

    #[test]
    fn rfc6962_known_answers() {
        let l: Vec<Hash> = LEAVES.iter().map(|d| leaf_hash(d)).collect();
        let hex = |h: Hash| hex::encode(h);
        assert_eq!(
            hex(l[0]),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex(l[1]),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
        // Roots of the trees of size 2 and 4.
        let n01 = node_hash(&l[0], &l[1]);
        assert_eq!(
            hex(n01),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
        let n23 = node_hash(&l[2], &l[3]);
        assert_eq!(
            hex(node_hash(&n01, &n23)),
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"
        );
    }
}
