//! The offline archive check, from a valid archive with one part replaced by the input:
//! its first byte chooses the part. 0: the manifest as given; 1: the input read as a
//! manifest and signed with the log's key, so the checks behind the signature are reached;
//! 2: `leaves.bin`; 3: a day file (the second byte chooses which), checked on one thread
//! and on two, which must agree. A replaced part passes only if it is the one it replaces
//! (the manifest's JSON layout aside); a manifest signed with the key may change only what
//! no checkpoint or file pins (its time of making, say), never which events of which log the
//! archive is found to hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trail_core::archive::{ArchiveVerifier, Manifest, Verified};
use trail_fuzz::{Archive, archive, signer, verifier};

/// The fixture's files through `v`: what it finds if every one passes.
fn check_files(mut v: ArchiveVerifier, a: &Archive) -> Option<Verified> {
    for (name, bytes) in &a.files {
        v.file(name, &bytes[..]).ok()?;
    }
    v.finish().ok()
}

fn fixture_manifest(a: &Archive) -> Manifest {
    serde_json::from_slice(&a.manifest).expect("the fixture's manifest parses")
}

/// What a verified archive says it holds, against the fixture: the same events of the same
/// log under the same checkpoint.
fn same_events(found: &Verified, fixture: &Verified) {
    assert_eq!(found.org, fixture.org, "another org");
    assert_eq!(
        (found.first_seq, found.end_seq, found.events),
        (fixture.first_seq, fixture.end_seq, fixture.events),
        "other seqs"
    );
    assert_eq!(found.checkpoint, fixture.checkpoint, "another checkpoint");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let a = archive();
    match mode % 4 {
        0 => {
            if let Ok(v) = ArchiveVerifier::new(rest, &a.leaves[..], verifier())
                && let Some(found) = check_files(v, a)
            {
                let manifest: Manifest = serde_json::from_slice(rest).expect("it was read");
                assert_eq!(manifest, fixture_manifest(a), "a changed manifest passed");
                assert_eq!(Ok(found), trail_fuzz::verify(a));
            }
        }
        1 => {
            let Ok(mut manifest) = serde_json::from_slice::<Manifest>(rest) else {
                return;
            };
            manifest.sign(signer());
            let bytes = serde_json::to_vec(&manifest).expect("a manifest renders");
            if let Ok(v) = ArchiveVerifier::new(&bytes, &a.leaves[..], verifier())
                && let Some(found) = check_files(v, a)
            {
                let fixture = trail_fuzz::verify(a).expect("the fixture verifies");
                same_events(&found, &fixture);
                let original = fixture_manifest(a);
                let by_name = |m: &Manifest| {
                    let mut files = m.files.clone();
                    files.sort_by(|a, b| a.name.cmp(&b.name));
                    files
                };
                assert_eq!(by_name(&manifest), by_name(&original), "other files passed");
                assert_eq!(manifest.leaves, original.leaves, "other leaves passed");
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
            // On one thread and on two, which must find the same (the same first failure).
            let check = |workers| {
                ArchiveVerifier::new(&a.manifest, &a.leaves[..], verifier())
                    .expect("the fixture's manifest and leaves verify")
                    .workers(workers)
                    .file(name, day)
            };
            let found = check(1);
            assert_eq!(found, check(2), "two threads found otherwise than one");
            if found.is_ok() {
                assert_eq!(day, &original[..], "a changed day file passed");
            }
        }
    }
});
