//! The threads the core's parallel work runs on: one rayon pool per process, made on first use and made
//! again in a process forked from one that had it. Rayon's global pool cannot serve here: its threads
//! do not exist in a forked child (multiprocessing's fork start method, joblib's and Dask's process
//! workers, pre-forking servers), whose first parallel region would then wait for them forever.
//!
//! Every parallel region runs through `install`: from a thread of the pool it runs in place; from any
//! other thread (Python's) the work is handed to the pool once, and the caller waits for it. A whole
//! call of many steps goes to the pool with `polled`, so that its regions run in place; the caller then
//! asks whether to go on, since only Python's main thread sees signals such as Ctrl-C.

use crate::backend::KeepGoing;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often a thread whose work runs on the pool asks its caller whether to go on.
pub const POLL: Duration = Duration::from_millis(5);

/// The pool and the process that made it.
static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

/// This process's pool: as many threads as `RAYON_NUM_THREADS` says, else one per core.
fn pool() -> Option<Arc<ThreadPool>> {
    let pid = crate::process::id();
    let mut slot = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    match slot.as_ref() {
        Some((owner, pool)) if *owner == pid => Some(Arc::clone(pool)),
        _ => {
            let pool = Arc::new(ThreadPoolBuilder::new().thread_name(|i| format!("rustbp-{i}")).build().ok()?);
            *slot = Some((pid, Arc::clone(&pool)));
            Some(pool)
        }
    }
}

/// Runs `f` on this process's pool (in place when already on it). Should no pool be possible (no
/// thread can be spawned), `f` runs on the caller's thread, where its parallel regions run serially.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    match pool() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Runs `work` on this process's pool in one hand-off, so that its parallel regions run in place rather
/// than each handing its work over and waiting. Meanwhile this thread asks `keep_going` every `POLL`;
/// once it says no, the `KeepGoing` that `work` polls says no too. On the pool already, or should no pool
/// be possible, `work` runs here and polls `keep_going` itself.
pub fn polled<R: Send>(keep_going: KeepGoing, work: impl FnOnce(KeepGoing) -> R + Send) -> R {
    let pool = match pool() {
        Some(pool) if rayon::current_thread_index().is_none() => pool,
        _ => return work(keep_going),
    };
    let stop = AtomicBool::new(false);
    let (done, finished) = mpsc::channel();
    let result = pool.in_place_scope(|s| {
        let stop = &stop;
        s.spawn(move |_| {
            let _ = done.send(work(&mut || !stop.load(Ordering::Relaxed)));
        });
        loop {
            match finished.recv_timeout(POLL) {
                Ok(result) => break Some(result),
                Err(RecvTimeoutError::Timeout) => {
                    if !stop.load(Ordering::Relaxed) && !keep_going() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                // `work` panicked; the scope raises its panic here.
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        }
    });
    result.unwrap_or_else(|| unreachable!("the scope re-raises the panic of work that sent nothing"))
}

/// The threads parallel regions split their work over.
pub fn count() -> usize {
    if rayon::current_thread_index().is_some() {
        return rayon::current_num_threads();
    }
    pool().map_or(1, |p| p.current_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn polled_work_runs_on_the_pool_while_the_caller_decides_when_it_stops() {
        let caller = std::thread::current().id();
        // The caller says no once the work has polled twice: with the pool busy (other tests share
        // it), the work may start only after several of the caller's asks.
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let mut said_no = false;
        let mut keep_going = || {
            assert_eq!(std::thread::current().id(), caller, "only the caller asks");
            assert!(!said_no, "asked again after the first no");
            said_no = seen.load(Ordering::SeqCst) >= 2;
            !said_no
        };
        let start = Instant::now();
        let (on_pool, polls) = polled(&mut keep_going, |go| {
            let mut polls = 0;
            while go() {
                polls += 1;
                seen.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
                assert!(start.elapsed() < Duration::from_secs(30), "the stop never came");
            }
            (rayon::current_thread_index().is_some(), polls)
        });
        assert!(on_pool, "work ran on the caller's thread");
        assert!(said_no, "the caller was not asked until it said no");
        assert!(polls >= 2, "the work went on until the no: {polls} polls");
        // From a thread of the pool, the work runs in place and polls the caller's `keep_going` itself.
        let inner = install(|| {
            let thread = rayon::current_thread_index();
            let mut asked = 0;
            let mut keep_going = || {
                asked += 1;
                asked < 4
            };
            let polls = polled(&mut keep_going, |go| {
                assert_eq!(rayon::current_thread_index(), thread);
                std::iter::from_fn(|| go().then_some(())).count()
            });
            (polls, asked)
        });
        assert_eq!(inner, (3, 4));
        // Work that never asks comes back with its result.
        assert_eq!(polled(&mut || true, |_| 42), 42);
    }
}
