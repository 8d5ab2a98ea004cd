//! Signed notes and keys: a checkpoint body, a verifier or signer key, and a note opened
//! with the log's key. What parses renders to text that parses to the same; a note opens
//! only with its signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trail_core::checkpoint::{self, Checkpoint, SignerKey, VerifierKey};
use trail_fuzz::{signer, verifier};

fuzz_target!(|text: &str| {
    if let Ok(c) = Checkpoint::parse_body(text) {
        assert_eq!(Checkpoint::parse_body(&c.body()).as_ref(), Ok(&c));
        let note = signer().sign(&c);
        assert_eq!(checkpoint::open(&note, verifier()), Ok(c));
    }
    if let Ok(k) = VerifierKey::parse(text) {
        assert_eq!(VerifierKey::parse(&k.to_string()), Ok(k));
    }
    if let Ok(k) = SignerKey::parse(text) {
        let again = SignerKey::parse(&k.to_secret_string()).expect("a key's own text parses");
        assert_eq!(again.to_secret_string(), k.to_secret_string());
        assert_eq!(again.verifier(), k.verifier());
    }
    if let Ok(body) = checkpoint::open_text(text, verifier()) {
        assert!(text.starts_with(body), "the opened text is not the note's");
        let _ = Checkpoint::parse_body(body);
    }
});
