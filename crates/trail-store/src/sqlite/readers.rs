//! Read connections, each owned by a thread of its own.
//!
//! A read runs on one of a fixed set of threads, never on the async runtime's blocking pool.
//! That pool grows a thread for every blocking call that finds none idle (up to 512), and
//! hands each call to whichever thread wakes; a read that waited there for a connection
//! held a thread while it waited. Every thread that builds rows keeps allocator pages of its
//! own, so reads spread over a growing pool left the server's memory growing with it
//! (BENCHMARKS.md, 2026-12-07 (third): the peak of a 1 M-event bench run fell by half).
//! Here the threads that allocate for reads are at most as many as the connections, a read
//! that finds them all busy waits in a queue holding no thread, and reads that do not
//! overlap run on one thread.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{Result, StoreError};

/// A read: runs on a connection and gives back how to hand its answer to its caller.
type Job = Box<dyn FnOnce(&Connection) -> Answer + Send>;
type Answer = Box<dyn FnOnce() + Send>;

/// How long a read may wait for a free connection before it answers `Unavailable` instead
/// of running: a backlog (of credential checks, say) clears rather than grows.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// A set of read connections and their threads. Dropping it blocks the dropping thread
/// until the reads already queued have run (each at most [`MAX_WAIT`] after it was queued,
/// plus its own time) and the threads have ended.
pub(crate) struct Readers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// One per thread: woken when a read is handed to it, or when the set closes.
    wake: Vec<Condvar>,
}

#[derive(Default)]
struct State {
    /// Reads that found every thread busy, oldest first.
    queue: VecDeque<Job>,
    /// The idle threads, the one idle for the shortest time last: a read goes to it, so
    /// that reads one after another run on one thread, with its connection's page cache
    /// and its allocator pages warm, and the other threads (their caches and pages) are
    /// used only when reads overlap.
    idle: Vec<usize>,
    /// A read handed to an idle thread, per thread.
    handed: Vec<Option<Job>>,
    closing: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A read runs outside the lock: nothing can panic while it is held.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Readers {
    /// Starts a thread named `{name}-{i}` for each connection.
    pub fn start(name: &str, connections: Vec<Connection>) -> Result<Readers> {
        let n = connections.len();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                handed: (0..n).map(|_| None).collect(),
                // Thread 0 on top: the first read goes to it.
                idle: (0..n).rev().collect(),
                ..State::default()
            }),
            wake: (0..n).map(|_| Condvar::new()).collect(),
        });
        let mut readers = Readers {
            shared: shared.clone(),
            threads: Vec::with_capacity(n),
        };
        for (i, conn) in connections.into_iter().enumerate() {
            let shared = shared.clone();
            let thread = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || serve(i, &conn, &shared))
                .map_err(|e| StoreError::Unavailable(format!("cannot start {name}: {e}")))?;
            readers.threads.push(thread);
        }
        Ok(readers)
    }

    /// Runs `f` on the next free connection and returns what it returns. A read that panics
    /// answers `Unavailable`; its thread goes on serving.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = Instant::now();
        let job: Job = Box::new(move |conn| {
            // A caller that has gone no longer wants the read: it is not run.
            if tx.is_closed() {
                return Box::new(|| ());
            }
            let answer = if queued.elapsed() > MAX_WAIT {
                Err(StoreError::Unavailable(format!(
                    "every reader was busy for {} s",
                    MAX_WAIT.as_secs()
                )))
            } else {
                f(conn)
            };
            Box::new(move || drop(tx.send(answer)))
        });
        {
            let mut state = self.shared.state();
            if state.closing {
                return Err(StoreError::Unavailable("the store is closing".into()));
            }
            match state.idle.pop() {
                Some(i) => {
                    state.handed[i] = Some(job);
                    self.shared.wake[i].notify_one();
                }
                None => state.queue.push_back(job),
            }
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("the read failed (its thread panicked)".into()))?
    }
}

/// Reader thread `i`: runs the reads handed to it, and then those queued, on its connection
/// until the set closes.
fn serve(i: usize, conn: &Connection, shared: &Shared) {
    let mut answer: Option<Answer> = None;
    // Each thread starts idle: [`Readers::start`] lists them all.
    let mut state = shared.state();
    loop {
        while state.handed[i].is_none() && !state.closing {
            state = shared.wake[i]
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        while let Some(job) = state.handed[i].take().or_else(|| state.queue.pop_front()) {
            drop(state);
            send(answer.take());
            // A panicking read drops its answer's sender (its caller hears `Unavailable`);
            // the thread and its connection stay.
            answer = catch_unwind(AssertUnwindSafe(|| job(conn))).ok();
            state = shared.state();
        }
        if state.closing {
            drop(state);
            send(answer.take());
            return;
        }
        state.idle.push(i);
        // The last read's answer is sent only now that the thread is listed idle, so that
        // the caller's next read finds it free and runs on it. (A thread that took a queued
        // read instead sent it before running that read.)
        drop(state);
        send(answer.take());
        state = shared.state();
    }
}

/// Hands a read's answer to its caller. Sending cannot panic, nor can dropping an answer
/// nobody awaits without a bug elsewhere; if one did, the thread, listed idle, must not end.
fn send(answer: Option<Answer>) {
    if let Some(answer) = answer {
        let _ = catch_unwind(AssertUnwindSafe(answer));
    }
}

#[cfg(test)]
impl Readers {
    /// Threads waiting for a read.
    pub fn idle(&self) -> usize {
        self.shared.state().idle.len()
    }

    /// Reads waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.state().queue.len()
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.shared.state().closing = true;
        for wake in &self.shared.wake {
            wake.notify_one();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readers(n: usize) -> Readers {
        let conns = (0..n)
            .map(|_| Connection::open_in_memory().unwrap())
            .collect();
        Readers::start("test-reader", conns).unwrap()
    }

    #[tokio::test]
    async fn reads_run_on_the_readers_threads_and_answer() {
        let r = readers(2);
        let name = r
            .run(|c| {
                let one: i64 = c.query_row("SELECT 1", [], |row| row.get(0)).unwrap();
                assert_eq!(one, 1);
                Ok(thread::current().name().map(str::to_owned))
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("test-reader-"));
    }

    #[tokio::test]
    async fn reads_one_after_another_run_on_one_thread() {
        let r = readers(4);
        let mut threads = std::collections::HashSet::new();
        for _ in 0..50 {
            threads.insert(r.run(|_| Ok(thread::current().id())).await.unwrap());
        }
        assert_eq!(
            threads.len(),
            1,
            "reads that never overlapped ran on {threads:?}"
        );
    }

    #[tokio::test]
    async fn a_panicking_read_answers_unavailable_and_its_thread_goes_on() {
        let r = readers(1);
        let failed = r.run(|_| -> Result<()> { panic!("a bug in a read") }).await;
        assert!(
            matches!(failed, Err(StoreError::Unavailable(_))),
            "{failed:?}"
        );
        // The one thread still serves.
        assert_eq!(r.run(|_| Ok(7)).await.unwrap(), 7);
    }

    /// Occupies a thread of `r` with a read that lasts until the returned sender is
    /// dropped; returns once it has started.
    async fn occupy(r: &Arc<Readers>) -> std::sync::mpsc::Sender<()> {
        let (started, has_started) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let r = r.clone();
        tokio::spawn(async move {
            r.run(move |_| {
                let _ = started.send(());
                let _ = released.recv();
                Ok(())
            })
            .await
        });
        within(has_started).await.unwrap();
        release
    }

    /// `f`, failing the test rather than hanging it if a read is never run (after a minute,
    /// far longer than a read takes to start on a slow, busy machine).
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("a read never ran")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_beyond_the_connections_wait_their_turn_on_no_new_thread() {
        let r = Arc::new(readers(2));
        let (a, b) = (occupy(&r).await, occupy(&r).await);
        assert_eq!(r.idle(), 0);
        let third = {
            let r = r.clone();
            tokio::spawn(async move {
                r.run(|_| Ok(thread::current().name().map(str::to_owned)))
                    .await
            })
        };
        while r.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished());
        drop(a);
        // The third read runs on the thread that was freed: there is no other.
        let name = within(third).await.unwrap().unwrap().unwrap();
        assert!(name.starts_with("test-reader-"), "{name}");
        drop(b);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_whose_caller_has_gone_is_not_run() {
        let r = Arc::new(readers(1));
        let busy = occupy(&r).await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut read = Box::pin(r.run({
            let ran = ran.clone();
            move |_| {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
        }));
        assert!(poll_once(&mut read).is_none());
        assert_eq!(r.queued(), 1);
        drop(read);
        drop(busy);
        // The next read runs after the abandoned one would have.
        within(r.run(|_| Ok(()))).await.unwrap();
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        use std::task::{Context, Poll, Waker};
        match std::pin::Pin::new(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}
