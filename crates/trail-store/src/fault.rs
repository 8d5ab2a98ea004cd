//! Why writes are failing, for readiness, on either backend. The newest failure of a write
//! transaction for a reason that can pass (a full disk, a read-only filesystem or database,
//! a lost connection) is kept until a write commits. While it stands, readiness may try a
//! small write of the backend's own (its `probe`) once per [`PROBE_INTERVAL`], so that
//! service comes back by itself once the cause has passed, whether or not anyone writes
//! meanwhile: a load balancer that has taken a server out sends it nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Result, StoreError};

/// How often readiness may try a write while writes are failing.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The fault as it stands, shared by the writer and readiness.
#[derive(Clone, Default)]
pub(crate) struct WriteFault(Arc<Mutex<Option<Fault>>>);

#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub why: String,
    /// When the newest failure (of a write or of a probe) happened.
    pub at: Instant,
}

impl WriteFault {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Fault>> {
        self.0.lock().expect("write fault lock")
    }

    pub fn get(&self) -> Option<Fault> {
        self.lock().clone()
    }

    pub fn failed(&self, why: String) {
        *self.lock() = Some(Fault {
            why,
            at: Instant::now(),
        });
    }

    /// A write committed.
    pub fn cleared(&self) {
        self.lock().take();
    }

    /// Records the outcome of a write: an `Unavailable` one stands until a write commits;
    /// a refusal of what the request carried says nothing of the database.
    pub fn record<T>(&self, r: &Result<T>) {
        match r {
            Ok(_) => self.cleared(),
            Err(StoreError::Unavailable(why)) => self.failed(why.clone()),
            Err(_) => {}
        }
    }

    /// Whether readiness should try a write now: a fault stands and its newest failure is
    /// [`PROBE_INTERVAL`] old. A true answer restarts the interval, so one caller gets it
    /// and readiness asked in a loop (it needs no credential) queues at most one write.
    pub fn claim_probe(&self) -> bool {
        match self.lock().as_mut() {
            Some(f) if f.at.elapsed() >= PROBE_INTERVAL => {
                f.at = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// What readiness says of writes.
    pub fn readiness(&self) -> Result<()> {
        match self.get() {
            Some(f) => Err(StoreError::Unavailable(format!(
                "writes are failing: {}",
                f.why
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_stands_until_a_write_commits_and_one_caller_claims_each_probe() {
        let f = WriteFault::default();
        assert!(f.readiness().is_ok());
        assert!(!f.claim_probe(), "nothing to probe without a fault");
        f.record::<()>(&Err(StoreError::Refused("a bad value".into())));
        assert!(f.readiness().is_ok(), "a refusal is not a fault");
        f.record::<()>(&Err(StoreError::Unavailable("disk full".into())));
        let why = f.readiness().unwrap_err().to_string();
        assert!(why.contains("writes are failing: disk full"), "{why}");
        assert!(!f.claim_probe(), "too soon after the failure");
        f.lock().as_mut().unwrap().at -= PROBE_INTERVAL;
        assert!(f.claim_probe());
        assert!(!f.claim_probe(), "the next caller waits an interval");
        f.record(&Ok(()));
        assert!(f.readiness().is_ok());
    }
}
