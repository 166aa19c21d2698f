//! The threads the core's parallel work runs on: one rayon pool per process, made on first use and made
//! again in a process forked from one that had it. Rayon's global pool cannot serve here: its threads
//! do not exist in a forked child (multiprocessing's fork start method, joblib's and Dask's process
//! workers, pre-forking servers), whose first parallel region would then wait for them forever.
//!
//! Every parallel region runs through `install`: from a thread of the pool it runs in place; from any
//! other thread (Python's) the work is handed to the pool once, and the caller waits for it.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex, PoisonError};

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

/// The threads parallel regions split their work over.
pub fn count() -> usize {
    if rayon::current_thread_index().is_some() {
        return rayon::current_num_threads();
    }
    pool().map_or(1, |p| p.current_num_threads())
}
