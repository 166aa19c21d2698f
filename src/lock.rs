//! The lock of a network shared with Python (`Core` in the bindings): a try-only reader-writer lock whose state carries the id of the process that
//! took it. `fork` copies a lock held by another thread into a child where that thread does not exist,
//! so `std::sync::RwLock` would answer "busy" there forever. Here a holder from another process is known
//! for what it is: readers left behind are dropped (they changed nothing), and a writer left behind is
//! reported as such, since the data it was changing may be half-updated in the child's copy.
//!
//! State: `pid << 32 | holders`, with `holders` the number of readers or `WRITER`.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};

const WRITER: u64 = u32::MAX as u64;
const HOLDERS: u64 = 0xffff_ffff;

/// Why a lock could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Another thread of this process holds it in a conflicting mode.
    Busy,
    /// A thread of the process this one was forked from held it for writing at the fork.
    WriterAtFork { pid: u32 },
}

/// A reader-writer lock that knows holders left behind by `fork` (see the module's comment).
pub struct ForkLock<T> {
    state: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: as `std::sync::RwLock`: the value is reached only through a guard, writers exclusively, readers
// shared, so sending the lock needs `T: Send` and sharing it needs `T: Send + Sync`.
unsafe impl<T: Send> Send for ForkLock<T> {}
unsafe impl<T: Send + Sync> Sync for ForkLock<T> {}

impl<T> ForkLock<T> {
    pub fn new(value: T) -> Self {
        Self { state: AtomicU64::new(0), value: UnsafeCell::new(value) }
    }

    /// Shared access, unless a writer holds the lock.
    pub fn try_read(&self) -> Result<ReadGuard<'_, T>, Refused> {
        self.take(false).map(|()| ReadGuard { lock: self })
    }

    /// Exclusive access, unless anyone holds the lock.
    pub fn try_write(&self) -> Result<WriteGuard<'_, T>, Refused> {
        self.take(true).map(|()| WriteGuard { lock: self })
    }

    fn take(&self, write: bool) -> Result<(), Refused> {
        let me = u64::from(crate::process::id());
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (pid, holders) = (state >> 32, state & HOLDERS);
            let next = match (pid == me, holders) {
                (_, 0) => (me << 32) | if write { WRITER } else { 1 },
                (false, WRITER) => return Err(Refused::WriterAtFork { pid: pid as u32 }),
                // Readers of the parent: they do not exist here and changed nothing.
                (false, _) => (me << 32) | if write { WRITER } else { 1 },
                (true, WRITER) => return Err(Refused::Busy),
                (true, _) if write => return Err(Refused::Busy),
                (true, n) if n + 1 >= WRITER => return Err(Refused::Busy),
                (true, _) => state + 1,
            };
            match self.state.compare_exchange_weak(state, next, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => state = now,
            }
        }
    }

    fn release(&self) {
        // A guard lives in the process that took it, so the pid in the state is this process's.
        let _ = self.state.fetch_update(Ordering::Release, Ordering::Relaxed, |s| {
            Some(if s & HOLDERS == WRITER { s & !HOLDERS } else { s - 1 })
        });
    }
}

/// Shared access to a `ForkLock`'s value.
pub struct ReadGuard<'a, T> {
    lock: &'a ForkLock<T>,
}

/// Exclusive access to a `ForkLock`'s value.
pub struct WriteGuard<'a, T> {
    lock: &'a ForkLock<T>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while the state counts it, which excludes writers.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard exists only while the state marks the lock written, excluding everyone.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the one reference through this guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;

    #[test]
    fn readers_share_and_writers_exclude() {
        let lock = ForkLock::new(1);
        let (a, b) = (lock.try_read().unwrap(), lock.try_read().unwrap());
        assert_eq!(*a + *b, 2);
        assert_eq!(lock.try_write().err(), Some(Refused::Busy));
        drop((a, b));
        let mut w = lock.try_write().unwrap();
        *w = 5;
        assert_eq!(lock.try_read().err(), Some(Refused::Busy));
        assert_eq!(lock.try_write().err(), Some(Refused::Busy));
        drop(w);
        assert_eq!(*lock.try_read().unwrap(), 5);
    }

    #[test]
    fn holders_of_another_process_are_known() {
        let lock = ForkLock::new(0);
        let parent = u64::from(crate::process::id()) + 1;
        // Readers of a parent process: taken over.
        lock.state.store(parent << 32 | 3, Ordering::Relaxed);
        drop(lock.try_write().unwrap());
        assert_eq!(lock.state.load(Ordering::Relaxed) & HOLDERS, 0);
        // A writer of a parent process: refused for what it is, in either mode.
        lock.state.store(parent << 32 | WRITER, Ordering::Relaxed);
        let pid = parent as u32;
        assert_eq!(lock.try_read().err(), Some(Refused::WriterAtFork { pid }));
        assert_eq!(lock.try_write().err(), Some(Refused::WriterAtFork { pid }));
    }
}
