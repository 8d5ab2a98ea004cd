//! Writes the seed corpora, `corpus/<target>/seed-*`, from Trail's own encoders: valid
//! inputs of every shape for the fuzzers to start from. Run from `fuzz/`:
//! `cargo run --example seeds`.

use std::fs;
use std::path::Path;

use trail_core::checkpoint::Checkpoint;
use trail_core::{Cursor, ExportCursor, Timestamp, canonical};
use trail_fuzz::{NOW, SAMPLE_BODIES, archive, sample_events, signer, verifier};

fn write(target: &str, seeds: Vec<Vec<u8>>) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("the corpus directory");
    for (i, seed) in seeds.into_iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), seed).expect("a seed");
    }
}

fn with(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(body);
    v
}

fn main() {
    let refused = [
        r#"{"action":"a","actor":{"id":"x","type":"user"},"action":"b"}"#,
        r#"{"action":"a","actor":{"id":"x","type":"user"},"count":0}"#,
        r#"{"action":"a","actor":{"id":"x","type":"User"},"submittedBy":"k"}"#,
        r#"{"action":"a","actor":{"id":"x","type":"user","ip":"300.1.1.1"},"timestamp":"2027-01-01T00:00:00Z"}"#,
        r#"{"action":"a","actor":{"id":"x","type":"user"},"request":{"method":"FETCH","route":"r","status":99}}"#,
        r#"[{"action":"a"}]"#,
    ];
    let events: Vec<Vec<u8>> = SAMPLE_BODIES
        .iter()
        .chain(&refused)
        .map(|b| b.as_bytes().to_vec())
        .collect();
    write("event", events);

    let array = format!("[{}]", SAMPLE_BODIES.join(",\n "));
    let lines = SAMPLE_BODIES.join("\n") + "\n\n{oops\n";
    write(
        "batch",
        vec![
            with(0, array.as_bytes()),
            with(0, SAMPLE_BODIES[3].as_bytes()),
            with(1, lines.as_bytes()),
            with(2, lines.as_bytes()),
            with(2, array.as_bytes()),
            with(0, b"[1, \"x\", null, {}]"),
        ],
    );

    write(
        "query",
        [
            "actor:ada -action:user.login status:4xx since:24h",
            "object:repo/trail method:get route:/v1/orgs/* until:2026-11-18T00:00:00Z",
            "actor.type:service_account ip:2001:db8::1 category:\"two words\\\"\"",
            "instance:eu-1 status:200 since:7d until:1h",
        ]
        .iter()
        .map(|q| with(0, q.as_bytes()))
        .chain(
            [
                "actor=ada",
                "-status=5xx",
                "since=2026-11-01",
                "ip=192.0.2.7",
            ]
            .iter()
            .map(|p| with(1, p.as_bytes())),
        )
        .collect(),
    );

    write(
        "cursor",
        vec![
            Cursor {
                timestamp: NOW,
                seq: 41,
            }
            .encode()
            .into_bytes(),
            Cursor {
                timestamp: Timestamp(-1),
                seq: u64::MAX,
            }
            .encode()
            .into_bytes(),
            ExportCursor {
                org: "acme".into(),
                seq: 1_000_000,
            }
            .encode()
            .into_bytes(),
        ],
    );

    write(
        "canonical",
        sample_events().iter().map(canonical::encode).collect(),
    );

    let checkpoint = Checkpoint {
        origin: "trail.fuzz/acme".into(),
        size: 1041,
        root: [9; 32],
    };
    let note = signer().sign(&checkpoint);
    write(
        "checkpoint",
        vec![
            checkpoint.body().into_bytes(),
            (checkpoint.body() + "extension line\n").into_bytes(),
            note.clone().into_bytes(),
            (note + "\u{2014} other.key AAAAAAAA\n").into_bytes(),
            verifier().to_string().into_bytes(),
            signer().to_secret_string().into_bytes(),
        ],
    );

    let a = archive();
    let mut seeds = vec![
        with(0, &a.manifest),
        with(1, &a.manifest),
        with(2, &a.leaves),
    ];
    for (i, (_, bytes)) in a.files.iter().enumerate() {
        seeds.push(with(3, &with(i as u8, bytes)));
    }
    write("archive", seeds);
}
