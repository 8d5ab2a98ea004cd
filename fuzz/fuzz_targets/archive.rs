//! The offline archive check, from a valid archive with one part replaced by the input:
//! its first byte chooses the part. 0: the manifest as given; 1: the input read as a
//! manifest and signed with the log's key, so the checks behind the signature are reached;
//! 2: `leaves.bin`; 3: a day file (the second byte chooses which). A replaced part passes
//! only if it is the one it replaces (the manifest's JSON layout aside).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trail_core::archive::{ArchiveVerifier, Manifest};
use trail_fuzz::{Archive, archive, signer, verifier};

fn check_files(mut v: ArchiveVerifier, a: &Archive) {
    for (name, bytes) in &a.files {
        if v.file(name, &bytes[..]).is_err() {
            return;
        }
    }
    let _ = v.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let a = archive();
    match mode % 4 {
        0 => {
            if let Ok(v) = ArchiveVerifier::new(rest, &a.leaves[..], verifier()) {
                check_files(v, a);
            }
        }
        1 => {
            let Ok(mut manifest) = serde_json::from_slice::<Manifest>(rest) else {
                return;
            };
            manifest.sign(signer());
            let bytes = serde_json::to_vec(&manifest).expect("a manifest renders");
            if let Ok(v) = ArchiveVerifier::new(&bytes, &a.leaves[..], verifier()) {
                check_files(v, a);
            }
        }
        2 => {
            if ArchiveVerifier::new(&a.manifest, rest, verifier()).is_ok() {
                assert_eq!(rest, &a.leaves[..], "changed leaves passed");
            }
        }
        _ => {
            let Some((&which, day)) = rest.split_first() else {
                return;
            };
            let (name, original) = &a.files[which as usize % a.files.len()];
            let mut v = ArchiveVerifier::new(&a.manifest, &a.leaves[..], verifier())
                .expect("the fixture's manifest and leaves verify");
            if v.file(name, day).is_ok() {
                assert_eq!(day, &original[..], "a changed day file passed");
            }
        }
    }
});
