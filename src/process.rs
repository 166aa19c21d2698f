//! This process's id, read once and again after a fork. `std::process::id()` is a system call each time
//! (glibc no longer caches it), and the lock of every call from Python asks for it.

use std::sync::atomic::{AtomicU32, Ordering};

/// The id, or 0 before the first use and in a child just forked.
static PID: AtomicU32 = AtomicU32::new(0);

pub fn id() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => first_use(),
        pid => pid,
    }
}

#[cold]
fn first_use() -> u32 {
    #[cfg(unix)]
    {
        static FORGET_AT_FORK: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers a handler that only stores to an atomic, which is async-signal-safe as a
        // forked child's handlers must be.
        FORGET_AT_FORK.call_once(|| unsafe {
            libc::pthread_atfork(None, None, Some(forget));
        });
    }
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

#[cfg(unix)]
extern "C" fn forget() {
    PID.store(0, Ordering::Relaxed);
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn a_forked_child_has_its_own_id() {
        let parent = super::id();
        assert_eq!(parent, std::process::id());
        // SAFETY: the child only reads ids and exits without returning into the test harness.
        match unsafe { libc::fork() } {
            0 => {
                let ok = super::id() == std::process::id() && super::id() != parent;
                unsafe { libc::_exit(i32::from(!ok)) }
            }
            child => {
                let mut status = 0;
                assert_eq!(unsafe { libc::waitpid(child, &raw mut status, 0) }, child);
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child saw the parent's id");
            }
        }
    }
}
