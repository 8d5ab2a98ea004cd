//! What the fuzz targets share: the org, clock and key they work under, the checks run on
//! every event a target reads, and a valid signed archive for the archive target to start
//! from (so that what the fuzzer changes is read past the signatures that guard it).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};
use trail_core::archive::{
    self, ArchiveVerifier, Digest256, FORMAT, FileEntry, LEAVES, Manifest, Previous, Week,
};
use trail_core::checkpoint::{self, Checkpoint, SignerKey, VerifierKey};
use trail_core::merkle::{Hash, RootBuilder};
use trail_core::{Event, EventBody, Timestamp, canonical};

/// The org every event is read for.
pub const ORG: &str = "acme";

/// The server's clock: 2026-11-18T12:00:00Z, a Wednesday of week 2026-W47.
pub const NOW: Timestamp = Timestamp(1_795_003_200_000_000);

/// The log's signing key.
pub fn signer() -> &'static SignerKey {
    static KEY: OnceLock<SignerKey> = OnceLock::new();
    KEY.get_or_init(|| SignerKey::from_seed("trail.fuzz", [7; 32]).expect("a valid name"))
}

/// Its verifier key.
pub fn verifier() -> &'static VerifierKey {
    static KEY: OnceLock<VerifierKey> = OnceLock::new();
    KEY.get_or_init(|| signer().verifier())
}

/// Checks one event's text as ingest reads it: read from its text, it is what reading it
/// as a value says (the text reader may refuse more, never less); accepted, it is sealed
/// and its canonical bytes decode to it.
pub fn check_event_text(text: &str) {
    let read = EventBody::from_json_str(text, ORG);
    let as_value = serde_json::from_str::<Value>(text)
        .map_err(|e| e.to_string())
        .and_then(|v| EventBody::from_json(v, ORG).map_err(|e| e.to_string()));
    match (&read, &as_value) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the text and value readers disagree"),
        (Ok(_), Err(e)) => panic!("accepted from its text, refused as a value: {e}"),
        _ => {}
    }
    if let Ok(body) = read {
        let _ = body.check_clock(NOW);
        check_sealed(&Event::seal(ORG, 41, NOW, body));
    }
}

/// An accepted event's canonical bytes decode to the same event, and its records render.
pub fn check_sealed(event: &Event) {
    let bytes = canonical::encode(event);
    let back = canonical::decode(&bytes).expect("an event's canonical bytes decode");
    assert_eq!(&back, event, "canonical decode(encode(e)) != e");
    check_records(event);
}

/// What is served of an event: its wire record and its archive record render.
pub fn check_records(event: &Event) {
    let hash = canonical::leaf_hash(event);
    serde_json::to_string(&event.record(&hash)).expect("a wire record renders");
    let _ = archive::record(event, &hash);
}

/// Events as clients send them, one of each shape.
pub const SAMPLE_BODIES: [&str; 8] = [
    r#"{"action":"user.login","actor":{"id":"ada","type":"user","ip":"192.0.2.7"}}"#,
    r#"{"id":"c-1","action":"repo.delete","category":"repo","actor":{"id":"svc","type":"service_account"},"object":{"type":"repo","id":"trail"}}"#,
    r#"{"action":"key.rotate","actor":{"id":"ops","type":"api_key"},"details":{"b":[1,2.5,"x"],"a":null}}"#,
    r#"{"action":"GET /v1/orgs/{org}","actor":{"id":"ada","type":"user","ip":"2001:db8::1","userAgent":"curl/8"},"request":{"method":"GET","route":"/v1/orgs/{org}","status":200,"latencyMs":3.25,"bodySha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}"#,
    r#"{"action":"member.add","actor":{"id":"bob","type":"user"},"object":{"type":"member","id":{"email":"c@example.com"},"parentId":{"org":"acme"}},"count":3}"#,
    r#"{"instance":"eu-1","action":"deploy","actor":{"id":"ci","type":"robot.ci"},"timestamp":"2026-11-15T23:59:59.999999Z"}"#,
    r#"{"action":"export.pull","actor":{"id":"siem","type":"api_key","tokenId":"k_1","scope":"read"}}"#,
    r#"{"action":"session.end","actor":{"id":"ada","type":"user"},"timestamp":"2026-11-22T23:00:00Z"}"#,
];

/// Events of the archive week and the week before, as clients send them.
pub fn sample_events() -> Vec<Event> {
    const HOUR: i64 = 3_600_000_000;
    SAMPLE_BODIES
        .iter()
        .enumerate()
        .map(|(seq, text)| {
            let body = EventBody::from_json_str(text, ORG).expect("a sample event is valid");
            // Three in the week before, then one every 13 hours from Monday.
            let received = if seq < 3 {
                Timestamp(NOW.0 - 8 * 24 * HOUR + seq as i64 * HOUR)
            } else {
                Timestamp(NOW.0 - 60 * HOUR + (seq as i64 - 3) * 13 * HOUR)
            };
            Event::seal(ORG, seq as u64, received, body)
        })
        .collect()
}

/// A valid archive of week 2026-W47: its manifest, its leaves and its day files.
pub struct Archive {
    pub manifest: Vec<u8>,
    pub leaves: Vec<u8>,
    pub files: Vec<(String, Vec<u8>)>,
}

/// The archive of [`sample_events`]' week, built once and checked to verify.
pub fn archive() -> &'static Archive {
    static ARCHIVE: OnceLock<Archive> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let archive = build_archive();
        verify(&archive).expect("the fixture archive verifies");
        archive
    })
}

/// Checks an archive as `trail verify --archive` does.
pub fn verify(a: &Archive) -> Result<archive::Verified, archive::ArchiveError> {
    let mut v = ArchiveVerifier::new(&a.manifest, &a.leaves[..], verifier())?;
    for (name, bytes) in &a.files {
        v.file(name, &bytes[..])?;
    }
    v.finish()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn build_archive() -> Archive {
    let week = Week::parse("2026-W47").expect("a week");
    let events = sample_events();
    let hashes: Vec<Hash> = events.iter().map(canonical::leaf_hash).collect();
    let first = events
        .iter()
        .position(|e| e.received_at >= week.start())
        .expect("events in the week") as u64;
    let origin = checkpoint::origin(&signer().name, ORG);
    let mut tree = RootBuilder::default();
    for h in &hashes[..first as usize] {
        tree.push(*h);
    }
    let previous = Previous {
        size: first,
        root: hex::encode(tree.root()),
        checkpoint: Some(signer().sign(&Checkpoint {
            origin: origin.clone(),
            size: first,
            root: tree.root(),
        })),
        frontier: tree.frontier().iter().map(hex::encode).collect(),
    };
    let mut days: BTreeMap<String, Vec<(Timestamp, u64, Value)>> = week
        .day_files()
        .into_iter()
        .map(|d| (d, Vec::new()))
        .collect();
    let mut leaves = Vec::new();
    for (e, h) in events.iter().zip(&hashes).skip(first as usize) {
        tree.push(*h);
        leaves.extend_from_slice(h);
        days.entry(archive::day_file(e.timestamp))
            .or_default()
            .push((e.timestamp, e.seq, archive::record(e, h)));
    }
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for (name, mut records) in days {
        records.sort_by_key(|(t, seq, _)| (*t, *seq));
        let values: Vec<&Value> = records.iter().map(|(_, _, v)| v).collect();
        let bytes = serde_json::to_vec_pretty(&values).expect("records render");
        entries.push(FileEntry {
            name: name.clone(),
            sha256: sha256(&bytes),
            events: records.len() as u64,
            first_seq: records.iter().map(|r| r.1).min(),
            last_seq: records.iter().map(|r| r.1).max(),
        });
        files.push((name, bytes));
    }
    let mut manifest = Manifest {
        format: FORMAT.to_owned(),
        org: ORG.to_owned(),
        week: week.to_string(),
        partial: false,
        created_at: NOW.to_string(),
        log_key: verifier().to_string(),
        first_seq: first,
        end_seq: events.len() as u64,
        previous,
        checkpoint: signer().sign(&Checkpoint {
            origin,
            size: tree.size(),
            root: tree.root(),
        }),
        files: entries,
        leaves: Digest256 {
            name: LEAVES.to_owned(),
            sha256: sha256(&leaves),
        },
        signature: None,
    };
    manifest.sign(signer());
    Archive {
        manifest: serde_json::to_vec_pretty(&manifest).expect("a manifest renders"),
        leaves,
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the manifest says of a day file (its count and its seqs) is checked against the
    /// file, and the name of its leaves against the format, even in a manifest signed with
    /// the log's key.
    #[test]
    fn a_signed_manifest_cannot_misstate_a_files_seqs() {
        let a = archive();
        let original: Manifest = serde_json::from_slice(&a.manifest).unwrap();
        let i = original
            .files
            .iter()
            .position(|f| f.events > 0)
            .expect("a day with events");
        let changes: [fn(&mut Manifest, usize); 5] = [
            |m, i| m.files[i].last_seq = m.files[i].last_seq.map(|s| s + 1),
            |m, i| m.files[i].first_seq = m.files[i].first_seq.map(|s| s - 1),
            |m, i| m.files[i].last_seq = None,
            |m, i| (m.files[i].first_seq, m.files[i].last_seq) = (None, None),
            |m, _| m.leaves.name = "leaves.txt".into(),
        ];
        for change in changes {
            let mut m = original.clone();
            change(&mut m, i);
            m.sign(signer());
            let changed = Archive {
                manifest: serde_json::to_vec_pretty(&m).unwrap(),
                leaves: a.leaves.clone(),
                files: a.files.clone(),
            };
            let e = verify(&changed).expect_err("a misstated file passed");
            assert!(e.to_string().contains("manifest.json"), "{e}");
        }
        // The same manifest signed again, unchanged, passes.
        let mut m = original.clone();
        m.sign(signer());
        let same = Archive {
            manifest: serde_json::to_vec_pretty(&m).unwrap(),
            leaves: a.leaves.clone(),
            files: a.files.clone(),
        };
        verify(&same).unwrap();
    }

    #[test]
    fn the_fixture_archive_verifies_and_a_changed_byte_does_not() {
        let a = archive();
        let v = verify(a).unwrap();
        assert_eq!((v.first_seq, v.end_seq), (3, 8));
        let mut changed = Archive {
            manifest: a.manifest.clone(),
            leaves: a.leaves.clone(),
            files: a.files.clone(),
        };
        let (_, day) = changed.files.iter_mut().find(|(_, b)| b.len() > 2).unwrap();
        let at = day.len() / 2;
        day[at] ^= 1;
        assert!(verify(&changed).is_err());
    }

    #[test]
    fn sample_events_pass_the_event_checks() {
        for e in sample_events() {
            check_sealed(&e);
        }
    }
}
