//! Checking a log against its signed checkpoints, and naming the first bad seq.
//!
//! The verifier walks an org's events in seq order, recomputes each leaf hash from the
//! event's content (never trusting the stored one), and as the tree reaches the size of each
//! signed checkpoint compares the root. What it finds:
//!
//! - **missing**: a seq is absent (a gap);
//! - **changed**: an event's content no longer gives the leaf hash stored with it;
//! - **reordered**: an event's content gives the stored hash of another position;
//! - **truncated**: the log ends before a signed checkpoint's size;
//! - **inserted**: a run of events that were shifted by one, where the shift begins;
//! - **mismatch**: the content up to a checkpoint does not give its signed root although
//!   every stored hash agrees with its event (the stored hashes were rewritten as well); the
//!   first bad seq is then known to lie after the previous checkpoint.
//!
//! Events after the newest checkpoint are not a finding: a server that crashed (or a copy
//! taken while it ran) has accepted events it has not signed yet. They are counted in
//! [`Verified::uncovered`]; each is still checked against the hash stored with it, and the
//! caller decides whether uncovered events are acceptable (`trail verify --strict` does not
//! accept them). An event appended by someone who can also compute its hash is, by its
//! nature, told from a genuine one only once a checkpoint has been signed without it.

use std::fmt;

use crate::canonical::{self, Fields};
use crate::checkpoint::Checkpoint;
use crate::event::Event;
use crate::merkle::{Hash, RootBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Changed,
    /// The stored row no longer reads as an event at all.
    Unreadable,
    Reordered {
        from: u64,
    },
    Truncated {
        checkpoint_size: u64,
    },
    Inserted,
    Mismatch {
        checkpoint_size: u64,
    },
}

/// The first bad seq, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub seq: u64,
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match self.problem {
            Problem::Missing => write!(
                f,
                "seq {seq} is missing: the log skips from {} to a later seq",
                seq.wrapping_sub(1)
            ),
            Problem::Changed => write!(
                f,
                "seq {seq} was changed: its content does not give the leaf hash recorded when it was accepted"
            ),
            Problem::Unreadable => {
                write!(f, "seq {seq} was changed: it no longer reads as an event")
            }
            Problem::Reordered { from } => write!(
                f,
                "seq {seq} was reordered: the event there was accepted as seq {from}"
            ),
            Problem::Truncated { checkpoint_size } => write!(
                f,
                "seq {seq} is missing: the log was truncated to {seq} events but a signed checkpoint covers {checkpoint_size}"
            ),
            Problem::Inserted => {
                write!(
                    f,
                    "seq {seq} was inserted: the events after it were moved up by one"
                )
            }
            Problem::Mismatch { checkpoint_size } => write!(
                f,
                "seq {seq} or a later one up to {} was changed: the events do not give the signed root of size {checkpoint_size}",
                checkpoint_size.saturating_sub(1)
            ),
        }
    }
}

/// What was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Events whose signed checkpoint matched.
    pub size: u64,
    pub checkpoints: usize,
    /// Events read past the newest checkpoint (not yet covered).
    pub uncovered: u64,
    /// Seqs below this were pruned: the walk began there, from the tree's edge (see
    /// [`LogVerifier::after_pruned`]); their weekly archives prove them.
    pub pruned_below: u64,
}

/// One event's leaf, recomputed from its content (never taken from the store), with the
/// stored hash it is to be checked against: what [`LogVerifier::push_leaf`] takes.
#[derive(Debug, Clone)]
pub struct Leaf {
    seq: u64,
    hash: Hash,
    stored: Hash,
    /// The event, kept only when its content does not give the stored hash, to find where
    /// it was accepted.
    changed: Option<Box<Event>>,
}

impl Leaf {
    pub fn of(event: &Event, stored: &Hash) -> Leaf {
        let hash = canonical::leaf_hash(event);
        Leaf {
            seq: event.seq,
            hash,
            stored: *stored,
            changed: (hash != *stored).then(|| Box::new(event.clone())),
        }
    }

    /// [`Leaf::of`] the event these fields describe, which is built only if it does not
    /// give the stored hash; `scratch` holds the encoding (a caller reuses it).
    pub fn of_fields(fields: &Fields<'_>, stored: &Hash, scratch: &mut Vec<u8>) -> Leaf {
        let hash = fields.leaf_hash(scratch);
        Leaf {
            seq: fields.seq,
            hash,
            stored: *stored,
            changed: (hash != *stored).then(|| Box::new(fields.to_event())),
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Streams a log through the checks; see the module documentation.
pub struct LogVerifier {
    checkpoints: Vec<Checkpoint>,
    next: usize,
    builder: RootBuilder,
    /// Positions whose content disagrees with the stored hash: (seq, event, stored hash).
    mismatched: Vec<(u64, Event, Hash)>,
    unreadable: Option<u64>,
    gap: Option<u64>,
    mismatch: Option<Finding>,
    verified: u64,
    pruned_below: u64,
}

impl LogVerifier {
    /// `checkpoints` need not be sorted; their signatures must already be checked.
    pub fn new(mut checkpoints: Vec<Checkpoint>) -> LogVerifier {
        checkpoints.sort_by_key(|c| c.size);
        checkpoints.dedup_by_key(|c| c.size);
        let mut v = LogVerifier {
            checkpoints,
            next: 0,
            builder: RootBuilder::default(),
            mismatched: Vec::new(),
            unreadable: None,
            gap: None,
            mismatch: None,
            verified: 0,
            pruned_below: 0,
        };
        v.check_checkpoints();
        v
    }

    /// The check of a log whose seqs below `edge.size()` were pruned: it starts from the
    /// tree's edge there (the complete subtrees that cover them, as the store keeps them),
    /// and checks the checkpoints from that size on. An edge that is not the log's own gives
    /// none of their roots, so it is caught like a changed event.
    pub fn after_pruned(checkpoints: Vec<Checkpoint>, edge: RootBuilder) -> LogVerifier {
        let start = edge.size();
        let mut v = LogVerifier::new(
            checkpoints
                .into_iter()
                .filter(|c| c.size >= start)
                .collect(),
        );
        v.builder = edge;
        v.verified = start;
        v.pruned_below = start;
        v.check_checkpoints();
        v
    }

    /// The next event in seq order, with the leaf hash stored beside it.
    pub fn push(&mut self, event: &Event, stored: &Hash) {
        self.push_leaf(Leaf::of(event, stored));
    }

    /// The next event in seq order, its leaf already recomputed by [`Leaf::of`] (which may
    /// run on another thread: leaves are independent, the tree above them is not).
    pub fn push_leaf(&mut self, leaf: Leaf) {
        if self.gap.is_some() {
            return;
        }
        let expected = self.builder.size();
        if leaf.seq != expected {
            self.gap = Some(expected);
            return;
        }
        if let Some(event) = leaf.changed
            && self.mismatched.len() < 64
        {
            self.mismatched.push((leaf.seq, *event, leaf.stored));
        }
        self.builder.push(leaf.hash);
        self.check_checkpoints();
    }

    /// A stored row at `seq` that no longer reads as an event.
    pub fn push_unreadable(&mut self, seq: u64) {
        if self.gap.is_some() {
            return;
        }
        if seq != self.builder.size() {
            self.gap = Some(self.builder.size());
            return;
        }
        self.unreadable.get_or_insert(seq);
        // Its leaf is unknown: nothing will match the signed roots past here.
        self.builder.push([0; 32]);
        self.check_checkpoints();
    }

    fn check_checkpoints(&mut self) {
        while let Some(c) = self.checkpoints.get(self.next) {
            if c.size != self.builder.size() {
                break;
            }
            if self.builder.root() == c.root {
                if self.mismatch.is_none() {
                    self.verified = c.size;
                }
            } else if self.mismatch.is_none() {
                self.mismatch = Some(Finding {
                    seq: self.verified,
                    problem: Problem::Mismatch {
                        checkpoint_size: c.size,
                    },
                });
            }
            self.next += 1;
        }
    }

    /// The verdict: the first bad seq, or what was verified (and how many events no signed
    /// checkpoint covers yet).
    pub fn finish(self) -> Result<Verified, Finding> {
        let newest = self.checkpoints.last().map_or(0, |c| c.size);
        let size = self.builder.size();
        let mut findings: Vec<Finding> = Vec::new();
        if let Some(seq) = self.gap {
            findings.push(Finding {
                seq,
                problem: Problem::Missing,
            });
        }
        if let Some(seq) = self.unreadable {
            findings.push(Finding {
                seq,
                problem: Problem::Unreadable,
            });
        }
        // Where was each changed event accepted? At another changed position, or one off.
        let origins: Vec<(u64, Option<u64>)> = self
            .mismatched
            .iter()
            .map(|(seq, event, stored)| {
                let candidates = self
                    .mismatched
                    .iter()
                    .map(|(other, _, _)| *other)
                    .chain([seq.wrapping_sub(1), seq + 1])
                    .filter(|other| other != seq);
                let from = candidates.into_iter().find(|other| {
                    let mut moved = event.clone();
                    moved.seq = *other;
                    canonical::leaf_hash(&moved) == *stored
                });
                (*seq, from)
            })
            .collect();
        for &(seq, from) in &origins {
            // Two events that point at each other were swapped; a run that points one way
            // by one was shifted by an insertion (or a deletion) where it begins.
            let mutual = |f: u64| origins.iter().any(|&(s, o)| s == f && o == Some(seq));
            findings.push(match from {
                Some(f) if mutual(f) => Finding {
                    seq,
                    problem: Problem::Reordered { from: f },
                },
                Some(f) if f + 1 == seq => Finding {
                    seq: f,
                    problem: Problem::Inserted,
                },
                Some(f) if f == seq + 1 => Finding {
                    seq,
                    problem: Problem::Missing,
                },
                Some(f) => Finding {
                    seq,
                    problem: Problem::Reordered { from: f },
                },
                None => Finding {
                    seq,
                    problem: Problem::Changed,
                },
            });
        }
        if self.gap.is_none() && size < newest {
            findings.push(Finding {
                seq: size,
                problem: Problem::Truncated {
                    checkpoint_size: newest,
                },
            });
        }
        // A signed root that the content does not give: unless a finding inside its range
        // explains it, the first bad seq lies after the previous checkpoint.
        if let Some(m) = self.mismatch
            && let Problem::Mismatch { checkpoint_size } = m.problem
            && !findings.iter().any(|f| f.seq < checkpoint_size)
        {
            findings.push(m);
        }
        match findings.into_iter().min_by_key(|f| f.seq) {
            Some(f) => Err(f),
            None => Ok(Verified {
                size: self.verified,
                checkpoints: self.checkpoints.len(),
                uncovered: size.saturating_sub(newest),
                pruned_below: self.pruned_below,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;
    use crate::merkle::{InMemory, root};
    use crate::time::Timestamp;
    use serde_json::json;

    fn log(n: u64) -> Vec<(Event, Hash)> {
        (0..n)
            .map(|seq| {
                let body = EventBody::from_json(
                    json!({"action": format!("a{seq}"), "actor": {"id": "u", "type": "user"}}),
                    "acme",
                )
                .unwrap();
                let e = Event::seal("acme", seq, Timestamp(1_000 + seq as i64), body);
                let h = canonical::leaf_hash(&e);
                (e, h)
            })
            .collect()
    }

    fn checkpoints(log: &[(Event, Hash)], sizes: &[u64]) -> Vec<Checkpoint> {
        let leaves: Vec<Hash> = log.iter().map(|(_, h)| *h).collect();
        sizes
            .iter()
            .map(|&s| Checkpoint {
                origin: "o".into(),
                size: s,
                root: root(&InMemory(&leaves), s).unwrap(),
            })
            .collect()
    }

    fn run(entries: &[(Event, Hash)], cps: Vec<Checkpoint>) -> Result<Verified, Finding> {
        let mut v = LogVerifier::new(cps);
        for (e, h) in entries {
            v.push(e, h);
        }
        v.finish()
    }

    #[test]
    fn a_pruned_log_verifies_from_the_edge_and_a_wrong_edge_is_caught() {
        use crate::merkle::RootBuilder;
        let l = log(600);
        let leaves: Vec<Hash> = l.iter().map(|(_, h)| *h).collect();
        let cps = checkpoints(&l, &[100, 512, 550, 600]);
        let edge = RootBuilder::at(&InMemory(&leaves), 512).unwrap();
        let mut v = LogVerifier::after_pruned(cps.clone(), edge.clone());
        for (e, h) in &l[512..] {
            v.push(e, h);
        }
        assert_eq!(
            v.finish(),
            Ok(Verified {
                size: 600,
                checkpoints: 3,
                uncovered: 0,
                pruned_below: 512
            })
        );
        // An edge from another history gives none of the signed roots.
        let mut other = leaves.clone();
        other[7] = [9; 32];
        let forged = RootBuilder::at(&InMemory(&other), 512).unwrap();
        let mut v = LogVerifier::after_pruned(cps, forged);
        for (e, h) in &l[512..] {
            v.push(e, h);
        }
        assert!(matches!(
            v.finish().unwrap_err().problem,
            Problem::Mismatch {
                checkpoint_size: 512
            }
        ));
    }

    #[test]
    fn an_untouched_log_verifies() {
        let l = log(50);
        let cps = checkpoints(&l, &[0, 10, 37, 50]);
        assert_eq!(
            run(&l, cps.clone()),
            Ok(Verified {
                size: 50,
                checkpoints: 4,
                uncovered: 0,
                pruned_below: 0
            })
        );
    }

    #[test]
    fn events_after_the_newest_checkpoint_are_uncovered_not_inserted() {
        // What a crash leaves: events accepted but not yet signed.
        let l = log(50);
        let cps = checkpoints(&l, &[10, 37]);
        assert_eq!(
            run(&l, cps.clone()),
            Ok(Verified {
                size: 37,
                checkpoints: 2,
                uncovered: 13,
                pruned_below: 0
            })
        );
        // An uncovered event is still checked against the hash stored with it.
        let mut changed = l.clone();
        changed[45].0.action = "forged".into();
        assert_eq!(
            run(&changed, cps).unwrap_err(),
            Finding {
                seq: 45,
                problem: Problem::Changed
            }
        );
    }

    #[test]
    fn each_kind_of_tampering_is_named_at_its_seq() {
        let l = log(50);
        let cps = checkpoints(&l, &[10, 37, 50]);

        let mut changed = l.clone();
        changed[23].0.action = "forged".into();
        assert_eq!(
            run(&changed, cps.clone()).unwrap_err(),
            Finding {
                seq: 23,
                problem: Problem::Changed
            }
        );

        let mut missing = l.clone();
        missing.remove(23);
        assert_eq!(
            run(&missing, cps.clone()).unwrap_err(),
            Finding {
                seq: 23,
                problem: Problem::Missing
            }
        );

        // Two events swapped: each keeps its stored hash but takes the other's seq.
        let mut swapped = l.clone();
        let (a, b) = (swapped[23].clone(), swapped[24].clone());
        swapped[23] = (Event { seq: 23, ..b.0 }, b.1);
        swapped[24] = (Event { seq: 24, ..a.0 }, a.1);
        assert_eq!(
            run(&swapped, cps.clone()).unwrap_err(),
            Finding {
                seq: 23,
                problem: Problem::Reordered { from: 24 }
            }
        );

        let truncated = l[..40].to_vec();
        assert_eq!(
            run(&truncated, cps.clone()).unwrap_err(),
            Finding {
                seq: 40,
                problem: Problem::Truncated {
                    checkpoint_size: 50
                }
            }
        );

        // An event appended with a valid hash of its own: no checkpoint covers it yet, and
        // it is counted as such (a strict caller refuses it).
        let mut appended = l.clone();
        appended.extend(log(51).into_iter().skip(50));
        assert_eq!(run(&appended, cps.clone()).unwrap().uncovered, 1);

        // The content and its stored hash rewritten together: only the signed roots tell.
        let mut rewritten = l.clone();
        rewritten[23].0.action = "forged".into();
        rewritten[23].1 = canonical::leaf_hash(&rewritten[23].0);
        assert_eq!(
            run(&rewritten, cps).unwrap_err(),
            Finding {
                seq: 10,
                problem: Problem::Mismatch {
                    checkpoint_size: 37
                }
            }
        );
    }

    #[test]
    fn a_shifted_run_names_the_insertion_or_deletion_where_it_begins() {
        let l = log(30);
        let cps = checkpoints(&l, &[30]);
        // Renumbered after a row slipped in at 12 (with a valid hash of its own).
        let mut inserted: Vec<(Event, Hash)> = l[..12].to_vec();
        let forged = Event {
            seq: 12,
            action: "forged".into(),
            ..l[12].0.clone()
        };
        let h = canonical::leaf_hash(&forged);
        inserted.push((forged, h));
        inserted.extend(l[12..].iter().map(|(e, h)| {
            (
                Event {
                    seq: e.seq + 1,
                    ..e.clone()
                },
                *h,
            )
        }));
        assert_eq!(
            run(&inserted, cps.clone()).unwrap_err(),
            Finding {
                seq: 12,
                problem: Problem::Inserted
            }
        );
        // Renumbered after 12 was deleted.
        let mut deleted: Vec<(Event, Hash)> = l[..12].to_vec();
        deleted.extend(l[13..].iter().map(|(e, h)| {
            (
                Event {
                    seq: e.seq - 1,
                    ..e.clone()
                },
                *h,
            )
        }));
        assert_eq!(
            run(&deleted, cps.clone()).unwrap_err(),
            Finding {
                seq: 12,
                problem: Problem::Missing
            }
        );
        // A rewrite before a checkpoint is not hidden by a plain edit after it.
        let cps = checkpoints(&l, &[10, 30]);
        let mut both = l.clone();
        both[3].0.action = "rewritten".into();
        both[3].1 = canonical::leaf_hash(&both[3].0);
        both[20].0.action = "edited".into();
        assert_eq!(
            run(&both, cps).unwrap_err(),
            Finding {
                seq: 0,
                problem: Problem::Mismatch {
                    checkpoint_size: 10
                }
            }
        );
        // An unreadable row is named.
        let mut v = LogVerifier::new(checkpoints(&l, &[30]));
        for (e, h) in &l[..5] {
            v.push(e, h);
        }
        v.push_unreadable(5);
        for (e, h) in &l[6..] {
            v.push(e, h);
        }
        assert_eq!(
            v.finish().unwrap_err(),
            Finding {
                seq: 5,
                problem: Problem::Unreadable
            }
        );
    }

    #[test]
    fn findings_read_well() {
        let f = Finding {
            seq: 7,
            problem: Problem::Reordered { from: 9 },
        };
        assert_eq!(
            f.to_string(),
            "seq 7 was reordered: the event there was accepted as seq 9"
        );
    }
}
