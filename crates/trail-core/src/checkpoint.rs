//! Signed checkpoints in the C2SP `tlog-checkpoint` format, as `signed-note`s with ed25519
//! keys, so any tool that speaks those formats can check Trail's.
//!
//! ```text
//! trail.local/acme          <- origin: the log's unique name
//! 1041                      <- tree size
//! n4w2...base64 root...=    <- root hash
//!                           <- blank line
//! — trail.local Ab3d...     <- signature: key name, base64(key hash ‖ ed25519 signature)
//! ```
//!
//! Keys are written as Go's `golang.org/x/mod/sumdb/note` writes them:
//! `<name>+<key hash hex>+<base64(0x01 ‖ public key)>` for verifiers,
//! `PRIVATE+KEY+<name>+<key hash hex>+<base64(0x01 ‖ seed)>` for signers, where the key
//! hash is the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    Key(String),
    #[error("malformed note: {0}")]
    Note(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    #[error("the note has no signature by key {0}")]
    Unsigned(String),
    #[error(
        "the signature by key {0} does not verify: the note was altered or signed by another key"
    )]
    BadSignature(String),
}

/// The origin of one org's log under a log name: `<name>/<org>`.
pub fn origin(log_name: &str, org: &str) -> String {
    format!("{log_name}/{org}")
}

/// A tree head: the log's origin, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note body: origin, size and root, one a line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Reads a note body (extension lines after the root are allowed and ignored).
    pub fn parse_body(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = |m: &str| NoteError::Checkpoint(m.to_owned());
        let mut lines = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("the body must end with a newline"))?
            .split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("the second line must be the tree size in decimal"))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r).ok())
            .ok_or_else(|| bad("the third line must be the base64 root hash"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::Key(format!(
            "{name:?}: a key name is non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

fn key_hash(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    h.finalize()[..4].try_into().expect("4 bytes")
}

/// A key that verifies notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    hash: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let s = s.trim();
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key("expected <name>+<hash>+<key>".into()));
        };
        check_name(name)?;
        let raw = STANDARD
            .decode(key)
            .map_err(|_| NoteError::Key("the key is not base64".into()))?;
        let (alg, public) = raw
            .split_first()
            .ok_or_else(|| NoteError::Key("empty key".into()))?;
        if *alg != ALG_ED25519 {
            return Err(NoteError::Key(format!("unknown key algorithm {alg}")));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::Key("an ed25519 key has 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&public).map_err(|e| NoteError::Key(e.to_string()))?;
        let computed = key_hash(name, &key);
        if hex::encode(computed) != hash.to_ascii_lowercase() {
            return Err(NoteError::Key(
                "the key hash does not match the name and key".into(),
            ));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            hash: computed,
            key,
        })
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            STANDARD.encode(raw)
        )
    }
}

/// A key that signs notes.
pub struct SignerKey {
    pub name: String,
    hash: [u8; 4],
    key: SigningKey,
}

impl SignerKey {
    /// A key from 32 random bytes.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(SignerKey {
            name: name.to_owned(),
            hash: key_hash(name, &key.verifying_key()),
            key,
        })
    }

    pub fn parse(s: &str) -> Result<SignerKey, NoteError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::Key("a signer key begins PRIVATE+KEY+".into()))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::Key(
                "expected PRIVATE+KEY+<name>+<hash>+<key>".into(),
            ));
        };
        let raw = STANDARD
            .decode(key)
            .map_err(|_| NoteError::Key("the key is not base64".into()))?;
        let (alg, seed) = raw
            .split_first()
            .ok_or_else(|| NoteError::Key("empty key".into()))?;
        if *alg != ALG_ED25519 {
            return Err(NoteError::Key(format!("unknown key algorithm {alg}")));
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::Key("an ed25519 seed has 32 bytes".into()))?;
        let k = SignerKey::from_seed(name, seed)?;
        if hex::encode(k.hash) != hash.to_ascii_lowercase() {
            return Err(NoteError::Key(
                "the key hash does not match the name and key".into(),
            ));
        }
        Ok(k)
    }

    /// The private key in its text form (keep it secret).
    pub fn to_secret_string(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            STANDARD.encode(raw)
        )
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            hash: self.hash,
            key: self.key.verifying_key(),
        }
    }

    /// The signed note of a checkpoint.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.sign_text(&checkpoint.body())
    }

    /// A signed note of any text (lines, each ending with a newline, none empty).
    pub fn sign_text(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut raw = self.hash.to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(raw)
        )
    }
}

/// Checks a signed note against `key` and reads its checkpoint.
pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
    Checkpoint::parse_body(open_text(note, key)?)
}

/// Checks a signed note against `key` and returns its text.
pub fn open_text<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, NoteError> {
    let split = note
        .find("\n\n")
        .ok_or_else(|| NoteError::Note("no blank line between text and signatures".into()))?;
    let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Note(
            "the signatures must end with a newline".into(),
        ));
    }
    let mut signed = false;
    for line in sigs.strip_suffix('\n').unwrap_or(sigs).split('\n') {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or_else(|| NoteError::Note(format!("not a signature line: {line:?}")))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| NoteError::Note(format!("not a signature line: {line:?}")))?;
        if name != key.name {
            continue;
        }
        let raw = STANDARD
            .decode(sig)
            .map_err(|_| NoteError::Note("a signature is not base64".into()))?;
        if raw.len() != 4 + 64 || raw[..4] != key.hash {
            continue;
        }
        let sig = Signature::from_bytes(raw[4..].try_into().expect("64 bytes"));
        key.key
            .verify(body.as_bytes(), &sig)
            .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
        signed = true;
    }
    if !signed {
        return Err(NoteError::Unsigned(key.name.clone()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SignerKey {
        SignerKey::from_seed("trail.local", [7; 32]).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "trail.local/acme".into(),
            size: 1041,
            root: [9; 32],
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let note = key().sign(&checkpoint());
        assert!(note.starts_with("trail.local/acme\n1041\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n\u{2014} trail.local "));
        assert_eq!(open(&note, &key().verifier()).unwrap(), checkpoint());
        let other = SignerKey::from_seed("trail.local", [8; 32])
            .unwrap()
            .verifier();
        assert_eq!(
            open(&note, &other),
            Err(NoteError::Unsigned("trail.local".into()))
        );
    }

    #[test]
    fn any_change_to_the_note_is_caught() {
        let note = key().sign(&checkpoint());
        let v = key().verifier();
        for tampered in [
            note.replace("1041", "1042"),
            note.replace("acme", "acmf"),
            note.replacen('C', "D", 1),
        ] {
            assert!(open(&tampered, &v).is_err(), "{tampered}");
        }
        assert!(matches!(open("no blank line", &v), Err(NoteError::Note(_))));
    }

    #[test]
    fn keys_round_trip_in_their_text_forms() {
        let k = key();
        let again = SignerKey::parse(&k.to_secret_string()).unwrap();
        assert_eq!(again.verifier(), k.verifier());
        let v = k.verifier().to_string();
        assert!(v.starts_with("trail.local+"));
        assert_eq!(VerifierKey::parse(&v).unwrap(), k.verifier());
        // A wrong hash, algorithm or name is refused.
        let mut parts: Vec<&str> = v.splitn(3, '+').collect();
        parts[1] = "00000000";
        assert!(VerifierKey::parse(&parts.join("+")).is_err());
        assert!(SignerKey::from_seed("bad name", [1; 32]).is_err());
        assert!(VerifierKey::parse("nonsense").is_err());
    }

    #[test]
    fn bodies_are_strict() {
        for bad in [
            "o\n01\nAA==\n",
            "o\n1\n",
            "\n1\nCQ==\n",
            "o\n-1\n",
            "o\nx\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
        let body = checkpoint().body() + "extension line\n";
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), checkpoint());
    }
}
