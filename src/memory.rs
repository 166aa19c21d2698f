//! Fallible allocation for buffers whose size comes from the caller (widths, batch sizes, step counts).
//! A size is computed with checked arithmetic, refused when it exceeds the memory the machine can give
//! now, and reserved with `try_reserve_exact`; so an absurd request is an `Error::OutOfMemory` (Python's
//! MemoryError) before any work, never an allocation failure that aborts the process, and never an
//! allocation that succeeds lazily only to be killed by the kernel when the pages are touched.

use crate::error::{Error, Result};
use std::mem::size_of;

/// Requests below this many bytes skip the look at the machine's free memory: they cannot hurt.
const PROBE_BYTES: u128 = 64 << 20;

/// Checks that `elements` values of `T` may be allocated; returns the count as a usize.
pub fn check<T>(what: &'static str, elements: u128) -> Result<usize> {
    let bytes = elements.saturating_mul(size_of::<T>() as u128);
    let fits = usize::try_from(elements).ok().filter(|_| bytes <= isize::MAX as u128);
    match fits {
        Some(n) if bytes < PROBE_BYTES || available().is_none_or(|free| bytes <= u128::from(free)) => Ok(n),
        _ => Err(Error::OutOfMemory { what, elements }),
    }
}

/// Checks that `bytes` spread over many allocations may be made, by reserving them at once and handing
/// them back (the pages are never touched, so this costs no memory). For what is allocated piecemeal,
/// such as a population's members, whose small allocations would abort the process one by one where a
/// process limit (`ulimit -v`, a cgroup) stops them.
pub fn probe(what: &'static str, bytes: u128) -> Result<()> {
    let n = check::<u8>(what, bytes)?;
    Vec::<u8>::new().try_reserve_exact(n).map_err(|_| Error::OutOfMemory { what, elements: bytes })
}

/// Room in `v` for `rows * cols` values, so that resizing it to that length cannot fail.
pub fn reserve<T>(what: &'static str, v: &mut Vec<T>, rows: usize, cols: usize) -> Result<()> {
    let elements = rows as u128 * cols as u128;
    if elements <= v.capacity() as u128 {
        return Ok(()); // the usual case in a training loop: the buffers are already there
    }
    let len = check::<T>(what, elements)?;
    v.try_reserve_exact(len.saturating_sub(v.len())).map_err(|_| Error::OutOfMemory { what, elements: len as u128 })
}

/// `rows * cols` zeros, or `OutOfMemory`. Allocated zeroed, so that a large buffer comes as fresh pages
/// from the system that take memory only where they are written, as a reserved vector's would.
pub fn zeros(what: &'static str, rows: usize, cols: usize) -> Result<Vec<f64>> {
    let len = check::<f64>(what, rows as u128 * cols as u128)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let layout =
        std::alloc::Layout::array::<f64>(len).map_err(|_| Error::OutOfMemory { what, elements: len as u128 })?;
    // SAFETY: the layout has a non-zero size (len > 0); a null result is a failed allocation.
    #[allow(clippy::cast_ptr_alignment)] // allocated with f64's alignment
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<f64>();
    if ptr.is_null() {
        return Err(Error::OutOfMemory { what, elements: len as u128 });
    }
    // SAFETY: `ptr` comes from the global allocator (which `Box` uses) with the layout of `len` f64s,
    // all of them initialised: zero bits are 0.0.
    Ok(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }.into_vec())
}

/// A vector of `len` copies of `value`, or `OutOfMemory`.
pub fn filled<T: Clone>(what: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(what, &mut v, len, 1)?;
    v.resize(len, value);
    Ok(v)
}

/// `len` values collected into a new vector, or `OutOfMemory` (where `collect` or `clone` would abort).
pub fn collect<T>(what: &'static str, len: usize, values: impl Iterator<Item = T>) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(what, &mut v, len, 1)?;
    v.extend(values.take(len));
    Ok(v)
}

/// A copy of `values`, or `OutOfMemory`.
pub fn copy<T: Clone>(what: &'static str, values: &[T]) -> Result<Vec<T>> {
    collect(what, values.len(), values.iter().cloned())
}

/// Bytes the machine can give now without swapping out live memory: Linux's MemAvailable plus free
/// swap. `None` where that is unknown (other systems), and then only `try_reserve` guards.
fn available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let rest = info.lines().find_map(|l| l.strip_prefix(name))?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib.saturating_mul(1024))
    };
    Some(field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;
    use crate::backend::{Backend, FitPlan};

    #[test]
    fn absurd_sizes_are_errors_not_aborts() {
        let mut v: Vec<f64> = Vec::new();
        for (rows, cols) in [(usize::MAX, 2), (1 << 40, 1 << 30), (1 << 62, 1)] {
            assert!(matches!(reserve("x", &mut v, rows, cols), Err(Error::OutOfMemory { what: "x", .. })));
        }
        assert!(matches!(filled("y", usize::MAX / 4, 0.0_f64), Err(Error::OutOfMemory { .. })));
        assert!(matches!(zeros("w", 1 << 40, 1 << 30), Err(Error::OutOfMemory { what: "w", .. })));
        assert!(check::<f64>("z", u128::MAX).is_err());
        for bytes in [u128::MAX, 1 << 62] {
            assert!(matches!(probe("p", bytes), Err(Error::OutOfMemory { what: "p", .. })));
        }
        probe("p", 1 << 20).unwrap();
    }

    /// What an `OutOfMemory` error says could not be allocated.
    fn what<V>(r: &Result<V>) -> Option<&'static str> {
        match r {
            Err(Error::OutOfMemory { what, .. }) => Some(what),
            _ => None,
        }
    }

    #[test]
    fn networks_refuse_what_cannot_fit() {
        use crate::network::{Config, Network};
        let no_stop = &mut || true;
        // 4.2 G parameters, under the cap on parameters, but 203 GB with gradients and Adam's moments.
        let huge = Config { optimizer: crate::Optimizer::adam(1e-3), ..Config::new(65_000, 65_000, 1) };
        assert!(matches!(Network::<f64>::new(huge, 0), Err(Error::OutOfMemory { .. })));
        let mut net = Network::<f64>::new(Config::new(1, 100_000, 1), 0).unwrap();
        let x = vec![0.0; 10_000_000]; // 80 MB of input, 8 TB of hidden activations
        let acts = Some("hidden activations");
        assert_eq!(what(&net.forward(&x)), acts);
        assert_eq!(what(&net.loss(&x, &x)), acts);
        assert_eq!(what(&net.train_step(&x, &x)), acts);
        let plan = FitPlan { epochs: 1, batch_size: 10_000_000, shuffle: false, first_epoch: 0 };
        assert_eq!(what(&net.fit(&x, &x, plan, 0, no_stop)), acts);
        let steps = net.train(&x[..1], &x[..1], 1 << 62, no_stop);
        assert_eq!(what(&steps), Some("losses"));
        let plan = FitPlan { epochs: 1 << 62, batch_size: 1, ..plan };
        let epochs = net.fit(&x[..2], &x[..2], plan, 0, no_stop);
        assert_eq!(what(&epochs), Some("losses"));
        assert_eq!(net.forward(&[1.0]).map(|o| o.len()), Ok(1), "the network still works");
    }

    #[test]
    fn ordinary_sizes_are_reserved() {
        let mut v: Vec<f32> = vec![1.0; 3];
        assert!(reserve("x", &mut v, 100, 10).is_ok());
        assert!(v.capacity() >= 1000 && v.len() == 3);
        assert_eq!(filled("y", 5, 2.0_f64).ok(), Some(vec![2.0; 5]));
        assert_eq!(zeros("w", 3, 4).ok(), Some(vec![0.0; 12]));
        assert_eq!(zeros("w", 0, 4).ok(), Some(vec![]));
        assert!(available().is_none_or(|free| free > 0));
    }
}
