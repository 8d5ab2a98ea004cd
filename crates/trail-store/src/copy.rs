//! Moving a store to another backend (`trail admin copy`): everything but console sessions
//! (their holders sign in again), and each org's log as it was sealed: its events (each
//! checked against its stored leaf as it is taken in), the tiles of a pruned prefix, and
//! every signed checkpoint. Then the proof that the copy is the same log: the root of every
//! checkpoint is recomputed from the copied leaves, and the copy's own tree gives the
//! newest one.

use std::collections::VecDeque;

use trail_core::merkle::RootBuilder;

use crate::{Result, SignedCheckpoint, Store, StoreError};

/// How many events one transaction of the copy takes in.
const CHUNK: usize = 5_000;

/// What a copy moved and proved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub orgs: usize,
    pub users: usize,
    pub credentials: usize,
    pub events: u64,
    pub checkpoints: u64,
    /// Checkpoints whose root was recomputed from the copied leaves and matched.
    pub proved: u64,
    /// Checkpoints of a pruned prefix (their leaves are gone): copied as signed.
    pub within_pruned: u64,
}

/// Copies everything `from` holds into `to`, which holds no org yet; tells `progress` of
/// each org as it goes. Fails, naming the seq or checkpoint, if the copy is not the same
/// log; what was taken in by then stays in `to` (drop it and copy again).
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Copied> {
    let identity = from.identity().await?;
    let orgs: Vec<(String, u64)> = identity
        .orgs
        .iter()
        .map(|(org, retention)| (org.id.clone(), retention.pruned_below))
        .collect();
    let mut copied = Copied {
        orgs: orgs.len(),
        users: identity.users.len(),
        credentials: identity.tokens.len(),
        ..Copied::default()
    };
    to.restore_identity(identity).await?;
    for (org, pruned) in orgs {
        copy_log(from, to, &org, pruned, &mut copied).await?;
        progress(&format!("copied org {org:?}"));
    }
    Ok(copied)
}

/// Copies one org's log and proves it.
async fn copy_log(
    from: &dyn Store,
    to: &dyn Store,
    org: &str,
    pruned: u64,
    copied: &mut Copied,
) -> Result<()> {
    let size = from.log_size(org).await?;
    let frontier = from.tree_frontier(org, pruned).await?;
    let mut tree = RootBuilder::from_frontier(pruned, &frontier).ok_or_else(|| {
        StoreError::Corrupt(format!("the right edge of org {org:?}'s pruned prefix"))
    })?;
    let mut tiles = if pruned > 0 {
        from.tiles_below(org, pruned).await?
    } else {
        Vec::new()
    };
    let mut checkpoints = Checkpoints::new(org);
    // The checkpoints of the pruned prefix: their leaves are gone (but one of exactly
    // where the log was pruned to, whose root is the prefix's).
    let mut first = Vec::new();
    for c in checkpoints.up_to(from, pruned).await? {
        if c.size == pruned {
            prove(org, &tree, &c)?;
            copied.proved += 1;
        } else {
            copied.within_pruned += 1;
        }
        first.push(c);
    }
    let mut at = pruned;
    let mut first_call = true;
    while at < size || first_call {
        let events = if at < size {
            from.events_from(org, at, CHUNK).await?
        } else {
            Vec::new()
        };
        if at < size && events.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "org {org:?}'s log has {size} events, but none reads at seq {at}"
            )));
        }
        let end = at + events.len() as u64;
        let mut reached = std::mem::take(&mut first);
        let mut due = checkpoints.up_to(from, end).await?.into_iter().peekable();
        for e in &events {
            tree.push(e.hash);
            while let Some(c) = due.next_if(|c| c.size <= tree.size()) {
                prove(org, &tree, &c)?;
                copied.proved += 1;
                reached.push(c);
            }
        }
        copied.events += events.len() as u64;
        copied.checkpoints += reached.len() as u64;
        to.import_events(org, std::mem::take(&mut tiles), events, reached)
            .await?;
        at = end;
        first_call = false;
    }
    // The copy's own tree, from its stored tiles and leaves, is the one the source signed.
    let copy_size = to.log_size(org).await?;
    if copy_size != size {
        return Err(StoreError::Corrupt(format!(
            "the copy of org {org:?}'s log has {copy_size} events, the original {size}"
        )));
    }
    if to.tree_root(org, size).await? != tree.root() {
        return Err(StoreError::Corrupt(format!(
            "the copy of org {org:?}'s log has another root at size {size}"
        )));
    }
    Ok(())
}

/// A signed checkpoint's root against the tree of the leaves copied so far.
fn prove(org: &str, tree: &RootBuilder, c: &SignedCheckpoint) -> Result<()> {
    if c.size != tree.size() || c.root != tree.root() {
        return Err(StoreError::Corrupt(format!(
            "checkpoint {} of org {org:?} is not the root of its leaves",
            c.size
        )));
    }
    Ok(())
}

/// An org's checkpoints, read a page at a time, oldest first.
struct Checkpoints {
    org: String,
    after: u64,
    ahead: VecDeque<SignedCheckpoint>,
    done: bool,
}

impl Checkpoints {
    fn new(org: &str) -> Checkpoints {
        Checkpoints {
            org: org.to_owned(),
            after: 0,
            ahead: VecDeque::new(),
            done: false,
        }
    }

    /// The next checkpoints, of at most `size` events.
    async fn up_to(&mut self, from: &dyn Store, size: u64) -> Result<Vec<SignedCheckpoint>> {
        let mut out = Vec::new();
        loop {
            while let Some(c) = self.ahead.front() {
                if c.size > size {
                    return Ok(out);
                }
                out.extend(self.ahead.pop_front());
            }
            if self.done {
                return Ok(out);
            }
            let page = from.checkpoints(&self.org, self.after, 1_000).await?;
            match page.last() {
                Some(last) => self.after = last.size,
                None => self.done = true,
            }
            self.ahead.extend(page);
        }
    }
}
