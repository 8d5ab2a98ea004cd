//! `trail verify`: checks a log against its signed checkpoints, over the API or, with
//! `--data`, on a store's files (for an auditor with a copy of them).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use trail_client::verify::{Witness, verify_log};
use trail_core::checkpoint::{Checkpoint, SignerKey, VerifierKey, open};
use trail_core::verify::{Leaf, LogVerifier};
use trail_store::{SqliteStore, Store};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Check the store in this data directory instead of a server (no server needed).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["archive", "database"])]
    data: Option<PathBuf>,
    /// Check the store in this database instead of a server (`postgres://…`, or
    /// `sqlite:DIR`), with the key given by --key.
    #[arg(long, value_name = "URL", conflicts_with = "archive", requires = "key")]
    database: Option<String>,
    /// Check a weekly archive (`trail archive download`) offline: its files' digests and
    /// counts, its checkpoints' signatures, that its events hash to the leaves that extend
    /// the log before the week to the signed root, and that none is missing or repeated.
    #[arg(long, value_name = "FILE.zip")]
    archive: Option<PathBuf>,
    /// The key to trust, `<name>+<hash>+<key>` (as `trail serve` prints it). By default the
    /// key pinned at the first verification of this server (or, with --data, the data
    /// directory's own key, which proves less).
    #[arg(long, env = "TRAIL_LOG_KEY")]
    key: Option<String>,
    /// Where the pinned keys and the last verified checkpoints are kept
    /// [default: $XDG_STATE_HOME/trail or ~/.local/state/trail].
    #[arg(long, env = "TRAIL_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// With --data or --database: fail if any event is not yet covered by a signed
    /// checkpoint (expected of a store whose server stopped cleanly: it signs a last
    /// checkpoint on the way out).
    #[arg(long)]
    strict: bool,
}

/// A log that failed verification (the process exits 1 with this message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

pub async fn run(conn: &crate::cli::Connection, args: VerifyArgs) -> anyhow::Result<()> {
    if let Some(file) = &args.archive {
        return verify_archive(file, args.key.as_deref(), args.state_dir.as_deref());
    }
    if args.strict && args.data.is_none() && args.database.is_none() {
        return Err(trail_client::ClientError::Usage(
            "--strict checks a store's files: give --data DIR or --database URL".into(),
        )
        .into());
    }
    match (&args.data, &args.database) {
        (Some(dir), _) => {
            verify_data(dir, conn.org.as_deref(), args.key.as_deref(), args.strict).await
        }
        (None, Some(url)) => {
            let key = VerifierKey::parse(args.key.as_deref().unwrap_or_default())?;
            let store = trail_store::Location::of(Some(url), Path::new(""))
                .map_err(|e| trail_client::ClientError::Usage(format!("--database: {e}")))?
                .open_existing()
                .await?;
            verify_store(&*store, conn.org.as_deref(), &key, args.strict).await
        }
        (None, None) => verify_online(conn, &args).await,
    }
}

fn state_dir(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = arg {
        return Ok(d.to_owned());
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("trail"));
    }
    let home = std::env::var_os("HOME").context("no HOME: name a --state-dir")?;
    Ok(PathBuf::from(home).join(".local/state/trail"))
}

async fn verify_online(conn: &crate::cli::Connection, args: &VerifyArgs) -> anyhow::Result<()> {
    let session = crate::cli::Session::open(conn)?;
    let org = session.org().await?;
    let client = &session.client;
    let dir = state_dir(args.state_dir.as_deref())?;
    let mut witness = Witness::load(&dir)?;
    let key = match &args.key {
        Some(k) => VerifierKey::parse(k)?,
        None => match witness.keys.get(client.url()) {
            Some(k) => VerifierKey::parse(k)?,
            None => {
                let served = client.get_json("/v1/log/key").await?;
                let k = VerifierKey::parse(served["verifierKey"].as_str().unwrap_or(""))?;
                eprintln!(
                    "trail: trusting {k} for {} from now on (first use); pass --key to check it",
                    client.url()
                );
                k
            }
        },
    };
    let tty = std::io::stderr().is_terminal();
    let report = verify_log(client, &org, &key, &mut witness, |done, total| {
        if tty {
            eprint!("\rverifying {org}: {done}/{total} events");
        }
    })
    .await;
    if tty {
        eprint!("\r\x1b[K");
    }
    let report = match report {
        Ok(r) => r,
        Err(trail_client::verify::VerifyError::Client(e)) => return Err(e.into()),
        Err(e @ trail_client::verify::VerifyError::DifferentKey(_)) => {
            return Err(Failed(format!(
                "FAIL {org}: {e} (the witness file is {})",
                Witness::file(&dir).display()
            ))
            .into());
        }
        Err(e) => return Err(Failed(format!("FAIL {org}: {e}")).into()),
    };
    witness
        .keys
        .insert(client.url().to_owned(), key.to_string());
    witness.save(&dir)?;
    let since = report.previous.map_or(String::new(), |p| {
        format!(", consistent with the checkpoint of {p} seen before")
    });
    let before = report.previous_pruned.map_or(String::new(), |p| {
        format!(
            "; the checkpoint of {p} events seen before lies in the pruned part, which only its weekly archives prove now"
        )
    });
    crate::cli::output::line(&format!(
        "OK {org}: {} verified against {} signed checkpoints (newest {} events, root {}){since}{}{before}",
        span(&report.verified),
        report.verified.checkpoints,
        report.checkpoint.size,
        hex::encode(report.checkpoint.root),
        pruned(&report.verified),
    ))
}

/// What a verification walked: "1041 events", or after a prune "529 events (seqs 512..1040)".
fn span(v: &trail_core::verify::Verified) -> String {
    if v.pruned_below == 0 {
        events(v.size)
    } else {
        format!(
            "{} (seqs {}..{})",
            events(v.size - v.pruned_below),
            v.pruned_below,
            v.size.saturating_sub(1)
        )
    }
}

/// What was not walked because it was pruned, said once.
fn pruned(v: &trail_core::verify::Verified) -> String {
    if v.pruned_below == 0 {
        String::new()
    } else {
        format!(
            "; seqs 0..{} were pruned under the org's retention: their weekly archives hold and prove them (trail verify --archive)",
            v.pruned_below - 1
        )
    }
}

/// `trail verify --archive FILE.zip`: no server, no store.
fn verify_archive(path: &Path, key: Option<&str>, state: Option<&Path>) -> anyhow::Result<()> {
    use std::io::Read;
    use trail_core::archive::{MANIFEST, Manifest};
    // The key: given, else the one pinned for this log by an earlier `trail verify`, else
    // (proving less, and said so) the one the archive names.
    let named = || -> anyhow::Result<Manifest> {
        let file = std::fs::File::open(path)
            .map_err(|e| trail_client::ClientError::Usage(format!("{}: {e}", path.display())))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| Failed(format!("{} is not a readable ZIP: {e}", path.display())))?;
        let mut bytes = Vec::new();
        zip.by_name(MANIFEST)
            .map_err(|e| Failed(format!("{}: no {MANIFEST}: {e}", path.display())))?
            .read_to_end(&mut bytes)
            .map_err(|e| Failed(format!("{}: {MANIFEST} does not read: {e}", path.display())))?;
        Ok(serde_json::from_slice(&bytes)
            .map_err(|e| Failed(format!("{MANIFEST} does not read as a manifest: {e}")))?)
    };
    let key = match key {
        Some(k) => VerifierKey::parse(k)?,
        None => {
            let m = named()?;
            let own = VerifierKey::parse(&m.log_key)
                .map_err(|e| Failed(format!("{MANIFEST}: logKey: {e}")))?;
            let origin = format!("{}/{}", own.name, m.org);
            let witness = Witness::load(&state_dir(state)?)?;
            let pinned = witness
                .checkpoints
                .get(&origin)
                .and_then(|c| c.key.clone())
                .or_else(|| {
                    witness
                        .keys
                        .values()
                        .find(|k| VerifierKey::parse(k).is_ok_and(|k| k.name == own.name))
                        .cloned()
                });
            match pinned {
                Some(k) => {
                    eprintln!("trail: note: checked against the key pinned for log {origin:?}");
                    VerifierKey::parse(&k)?
                }
                None => {
                    eprintln!(
                        "trail: note: no key is pinned for log {origin:?}: checked against the key the archive names ({}), which proves only that the archive is whole; pass --key with the key you trust to prove it is the log's",
                        m.log_key
                    );
                    own
                }
            }
        }
    };
    // Every core checks records (up to `archive::MAX_WORKERS`, which bounds the memory).
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let v = trail_server::archive::verify_file(path, &key, workers)
        .map_err(|e| Failed(e.to_string()))?;
    crate::cli::output::line(&format!(
        "archive {} of org {} verified: {} events (seqs {}..{}){}, checkpoint of {} events, root {}",
        v.week,
        v.org,
        v.events,
        v.first_seq,
        v.end_seq,
        if v.partial {
            ", partial (the week had not ended)"
        } else {
            ""
        },
        v.checkpoint.size,
        hex::encode(v.checkpoint.root)
    ))
}

async fn verify_data(
    dir: &Path,
    org: Option<&str>,
    key: Option<&str>,
    strict: bool,
) -> anyhow::Result<()> {
    if !dir.join(trail_store::sqlite::DB_FILE).exists() {
        bail!("no Trail store in {}", dir.display());
    }
    let key = match key {
        Some(k) => VerifierKey::parse(k)?,
        None => {
            let path = dir.join(trail_server::log::KEY_FILE);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {} (or pass --key)", path.display()))?;
            let k = SignerKey::parse(&text)?.verifier();
            eprintln!(
                "trail: checking against the data directory's own key {k}; pass --key to check against a key you trust"
            );
            k
        }
    };
    let store = SqliteStore::open_read_only(dir)?;
    verify_store(&store, org, &key, strict).await
}

/// Every org's log in `store` (or `org`'s), each line printed as it is decided.
async fn verify_store(
    store: &dyn Store,
    org: Option<&str>,
    key: &VerifierKey,
    strict: bool,
) -> anyhow::Result<()> {
    let orgs: Vec<String> = match org {
        Some(o) => vec![o.to_owned()],
        None => store.orgs().await?.into_iter().map(|o| o.id).collect(),
    };
    let mut failures = Vec::new();
    for org in orgs {
        let verdict = verify_stored_org(store, &org, key, strict)
            .await
            .unwrap_or_else(|e| Err(format!("FAIL {org}: the log could not be read: {e}")));
        match verdict {
            Ok(line) => crate::cli::output::line(&line)?,
            Err(line) => {
                crate::cli::output::line(&line)?;
                failures.push(line);
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failed(failures.join("\n")).into())
    }
}

/// One org's log on disk: `Ok(line)` if it verifies, `Err(line)` naming the first bad seq.
/// Events after the newest checkpoint (a crash, or a copy of a running store) are said to be
/// not yet covered, which is not tampering; `strict` refuses them.
pub(crate) async fn verify_stored_org(
    store: &dyn Store,
    org: &str,
    key: &VerifierKey,
    strict: bool,
) -> anyhow::Result<Result<String, String>> {
    let origin = format!("{}/{org}", key.name);
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = store.checkpoints(org, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.size;
        stored.extend(page);
    }
    // The walk takes each checkpoint's size and root as stored, while their signatures are
    // checked beside it (on a thread of their own); a signature that fails, or a note that
    // says other than its row, is the verdict whatever the walk finds.
    let checkpoints = stored
        .iter()
        .map(|c| Checkpoint {
            origin: origin.clone(),
            size: c.size,
            root: c.root,
        })
        .collect();
    let signatures = {
        let (org, key) = (org.to_owned(), key.clone());
        tokio::task::spawn_blocking(move || {
            for c in stored {
                let opened = open(&c.note, &key)
                    .map_err(|e| format!("FAIL {org}: the checkpoint of {} events: {e}", c.size))?;
                if opened.origin != origin || opened.size != c.size || opened.root != c.root {
                    return Err(format!(
                        "FAIL {org}: the checkpoint of {} events was altered",
                        c.size
                    ));
                }
            }
            Ok(())
        })
    };
    let below = store.retention(org).await?.pruned_below;
    let mut verifier = if below > 0 {
        let edge = store.tree_frontier(org, below).await?;
        let Some(edge) = trail_core::merkle::RootBuilder::from_frontier(below, &edge) else {
            return Ok(Err(format!(
                "FAIL {org}: the tree's edge where the log was pruned (seq {below}) is not a tree's"
            )));
        };
        LogVerifier::after_pruned(checkpoints, edge)
    } else {
        LogVerifier::new(checkpoints)
    };
    // Every core: the store reads pages and recomputes their leaves on its read
    // connections (a read-only store has two), a few pages at a time; the tree above the
    // leaves is built here, in seq order. Pages start every PAGE seqs: a gapless log fills
    // each exactly, so the walk ends at the first page that it does not fill (the log's end,
    // or a gap: a finding already).
    const PAGE: usize = 10_000;
    let mut pages = futures_util::stream::iter((below..).step_by(PAGE))
        .map(|from| async move {
            let page = store.leaves_for_audit(org, from, PAGE).await?;
            let leaves: Vec<Result<Leaf, u64>> = page
                .into_iter()
                .map(|(seq, leaf)| leaf.map_err(|_| seq))
                .collect();
            anyhow::Ok((from, leaves))
        })
        .buffered(4);
    let seq_of = |leaf: &Result<Leaf, u64>| leaf.as_ref().map_or_else(|seq| *seq, Leaf::seq);
    while let Some(page) = pages.next().await {
        let (from, page) = page?;
        let filled = page.len() == PAGE
            && page.first().map(seq_of) == Some(from)
            && page.last().map(seq_of) == Some(from + PAGE as u64 - 1);
        for leaf in page {
            match leaf {
                Ok(leaf) => verifier.push_leaf(leaf),
                Err(seq) => verifier.push_unreadable(seq),
            }
        }
        if !filled {
            break;
        }
    }
    if let Err(line) = signatures.await? {
        return Ok(Err(line));
    }
    Ok(match verifier.finish() {
        Ok(v) if v.uncovered == 0 => Ok(format!(
            "OK {org}: {} verified against {} signed checkpoints{}",
            span(&v),
            v.checkpoints,
            pruned(&v)
        )),
        Ok(v) => {
            let count = v.checkpoints;
            let unsigned = format!(
                "{}{} verified against {count} signed checkpoints; {} after them (seq {}..{}) {} \
                 not yet covered by a signed checkpoint",
                span(&v),
                pruned(&v),
                events(v.uncovered),
                v.size,
                v.size + v.uncovered - 1,
                if v.uncovered == 1 { "is" } else { "are" }
            );
            if strict {
                Err(format!("FAIL {org}: {unsigned} (--strict)"))
            } else {
                Ok(format!(
                    "OK {org}: {unsigned}: not tampering (a server that stopped without signing \
                     them, or a copy of a running store); they can be checked once the server \
                     signs them"
                ))
            }
        }
        Err(finding) => Err(format!("FAIL {org}: {finding}")),
    })
}

/// "1 event", "12 events".
fn events(n: u64) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{n} events")
    }
}
