//! Matrix products on row-major matrices: `C (m x n) = op(A) (m x k) * op(B) (k x n)`, optionally added
//! to C, where `op` is the identity or a transpose. Transposes cost nothing: they only swap strides.
//!
//! Large products go to the `gemm` crate (runtime-dispatched AVX2/AVX-512/NEON kernels, threaded with
//! rayon). Tiny ones, like the article's 2x2 layers, skip its packing and dispatch and run as a direct
//! loop, since for them the per-call overhead is the whole cost.

use num_traits::Float;
use rayon::prelude::*;

/// Products with fewer multiply-adds than this run as a direct loop.
const SMALL: usize = 2048;
/// Products with at least this many multiply-adds use every rayon thread; smaller ones run on one core,
/// where waking the threads costs more than they gain. Measured on the 2-core development machine, whole
/// steps of 64-H-10: threads slowed steps whose products were 1M multiply-adds by up to half and gave no
/// clear gain below about 16M (the caller is not a rayon thread, so each threaded region hands work over
/// and waits for it).
pub(crate) const PARALLEL: usize = 1 << 24;

/// Whether a product of `work` multiply-adds is split over the pool's threads: from `PARALLEL`, or from a
/// quarter of it on a thread of the pool already (a whole call handed over because its steps have larger
/// regions), where a split costs a join and no hand-off. 64-1024-10 at batch 1024: its three products of
/// 10M multiply-adds went from one core to two, 3.8-4.0 ms a step to 3.5-3.6.
fn threaded(work: usize) -> bool {
    work >= PARALLEL || (work >= PARALLEL / 4 && rayon::current_thread_index().is_some())
}

/// The element types the network computes in: f32 and f64.
pub trait Scalar: Float + Send + Sync + std::fmt::Debug + Default + std::iter::Sum + 'static {
    /// Converts from f64, rounding to nearest for f32.
    fn of(x: f64) -> Self;
    /// `e^self` for `self <= 0`, vectorisable (see `crate::exp`).
    #[must_use]
    fn exp_nonpos(self) -> Self;
}

impl Scalar for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn exp_nonpos(self) -> Self {
        crate::exp::exp_nonpos_f32(self)
    }
}

impl Scalar for f64 {
    fn of(x: f64) -> Self {
        x
    }
    #[inline]
    fn exp_nonpos(self) -> Self {
        crate::exp::exp_nonpos_f64(self)
    }
}

/// A row-major operand as stored, and whether the product reads it transposed.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    /// Columns of the matrix as stored (its row stride).
    pub cols: usize,
    pub transposed: bool,
}

impl<'a, T> Mat<'a, T> {
    pub fn n(data: &'a [T], cols: usize) -> Self {
        Self { data, cols, transposed: false }
    }
    pub fn t(data: &'a [T], cols: usize) -> Self {
        Self { data, cols, transposed: true }
    }
    /// (row stride, column stride) of the logical (possibly transposed) matrix.
    fn strides(&self) -> (usize, usize) {
        if self.transposed {
            (1, self.cols)
        } else {
            (self.cols, 1)
        }
    }
}

/// `c = a * b` (or `c += a * b` when `accumulate`), with `c` row-major (m x n).
///
/// The caller guarantees the slices are large enough for the given shapes (the network sizes every
/// buffer from its widths); this is checked in debug builds.
#[inline]
pub fn matmul<T: Scalar>(m: usize, n: usize, k: usize, a: Mat<T>, b: Mat<T>, c: &mut [T], accumulate: bool) {
    debug_assert!(c.len() >= m * n && a.data.len() >= m * k && b.data.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if m * n * k < SMALL || k == 0 {
        small(m, n, k, a, b, &mut c[..m * n], accumulate);
    } else {
        large(m, n, k, a, b, c, accumulate);
    }
}

/// The direct loop, written so that every inner loop runs over contiguous rows: dot products of rows
/// for `a b^T` (the forward pass), sums of outer products for `a^T b` (weight gradients), and row
/// updates for `a b` (the hidden delta).
#[inline]
fn small<T: Scalar>(m: usize, n: usize, k: usize, a: Mat<T>, b: Mat<T>, c: &mut [T], accumulate: bool) {
    if !accumulate {
        c.fill(T::zero());
    }
    let axpy = |c: &mut [T], s: T, x: &[T]| c.iter_mut().zip(x).for_each(|(c, &x)| *c = *c + s * x);
    match (a.transposed, b.transposed) {
        (false, true) => {
            for (c_row, a_row) in c.chunks_exact_mut(n).zip(a.data.chunks_exact(k)) {
                for (c, b_row) in c_row.iter_mut().zip(b.data.chunks_exact(k)) {
                    *c = *c + a_row.iter().zip(b_row).fold(T::zero(), |s, (&x, &y)| s + x * y);
                }
            }
        }
        (true, false) => {
            for (a_row, b_row) in a.data.chunks_exact(m).zip(b.data.chunks_exact(n)).take(k) {
                for (c_row, &s) in c.chunks_exact_mut(n).zip(a_row) {
                    axpy(c_row, s, b_row);
                }
            }
        }
        (false, false) => {
            for (c_row, a_row) in c.chunks_exact_mut(n).zip(a.data.chunks_exact(k)) {
                for (&s, b_row) in a_row.iter().zip(b.data.chunks_exact(n)) {
                    axpy(c_row, s, b_row);
                }
            }
        }
        (true, true) => {
            // Unused by the network; kept correct for completeness.
            for (i, c_row) in c.chunks_exact_mut(n).enumerate() {
                for (j, c) in c_row.iter_mut().enumerate() {
                    *c = *c + (0..k).fold(T::zero(), |s, p| s + a.data[p * m + i] * b.data[j * k + p]);
                }
            }
        }
    }
}

/// `C`'s base pointer, shared with rayon's threads; each thread writes a disjoint block of `C`.
#[derive(Clone, Copy)]
struct Out<T>(*mut T);
// SAFETY: the blocks written through it never overlap (see `large`).
unsafe impl<T> Send for Out<T> {}
unsafe impl<T> Sync for Out<T> {}
impl<T> Out<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

#[inline(never)]
fn large<T: Scalar>(m: usize, n: usize, k: usize, a: Mat<T>, b: Mat<T>, c: &mut [T], accumulate: bool) {
    let threads = if threaded(m * n * k) { crate::threads::count() } else { 1 };
    // Two blocks per thread: gemm's own threading scales poorly when the right operand is transposed,
    // as in the forward pass (256x1024x784 on 2 cores: 2.0 ms threaded by gemm, 1.5 ms in 4 blocks).
    let parts = if threads > 1 { 2 * threads } else { 1 };
    blocks(m, n, k, a, b, c, accumulate, parts);
}

/// The product as `parts` gemm calls on blocks of rows (when m >= n) or columns of `C`, run on rayon's
/// threads. The result is the same bit for bit whatever `parts` is: gemm's depth blocking depends on k
/// only, so every element sums its k products in the same order (tested).
fn blocks<T: Scalar>(m: usize, n: usize, k: usize, a: Mat<T>, b: Mat<T>, c: &mut [T], accumulate: bool, parts: usize) {
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    let by_rows = m >= n;
    let len = if by_rows { m } else { n };
    let parts = parts.min(len / 32).max(1); // blocks narrower than 32 would waste gemm's register tiles
    let out = Out(c.as_mut_ptr());
    let block = |p: usize| {
        let (start, end) = (len * p / parts, len * (p + 1) / parts);
        let (rows, cols, c_at, a_at, b_at) = if by_rows {
            (end - start, n, start * n, start * a_rs, 0)
        } else {
            (m, end - start, start, 0, start * b_cs)
        };
        // SAFETY: the shapes and strides describe memory inside the three slices (asserted in debug
        // builds, guaranteed by the network's buffer sizes); blocks of C are disjoint row or column
        // ranges, so no two calls write the same element; `c` does not alias `a` or `b` (it is borrowed
        // mutably); T is f32 or f64, both supported by `gemm`.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                k,
                out.get().add(c_at),
                1,
                n as isize,
                accumulate,
                a.data.as_ptr().add(a_at),
                a_cs as isize,
                a_rs as isize,
                b.data.as_ptr().add(b_at),
                b_cs as isize,
                b_rs as isize,
                T::one(),
                T::one(),
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    if parts == 1 {
        block(0);
    } else {
        crate::threads::install(|| (0..parts).into_par_iter().for_each(block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain reference product, to check both the direct loop and the gemm path.
    fn reference(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn transpose(rows: usize, cols: usize, x: &[f64]) -> Vec<f64> {
        let mut t = vec![0.0; x.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = x[i * cols + j];
            }
        }
        t
    }

    #[test]
    fn blocked_products_are_bit_identical_whatever_the_split() {
        // Large enough for gemm's packed kernels, with a depth over its blocking of k; split by rows
        // (m >= n) and by columns.
        for (m, n, k) in [(150, 97, 1100), (97, 150, 1100)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7919 % 1009) as f64).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 104_729 % 997) as f64).cos()).collect();
            for (am, bm) in
                [(Mat::n(&a, k), Mat::n(&b, n)), (Mat::t(&a, m), Mat::n(&b, n)), (Mat::n(&a, k), Mat::t(&b, k))]
            {
                let mut one = vec![0.5; m * n];
                blocks(m, n, k, am, bm, &mut one, true, 1);
                for parts in [2, 3, 4, 7] {
                    let mut split = vec![0.5; m * n];
                    blocks(m, n, k, am, bm, &mut split, true, parts);
                    assert!(one.iter().zip(&split).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{n}: {parts} parts");
                }
            }
        }
    }

    #[test]
    fn a_product_split_on_the_pool_has_the_bits_of_one_on_the_caller() {
        // 64 x 256 x 512 multiply-adds: under PARALLEL, so one core from the caller's thread, but split
        // over the pool's threads when called from one of them.
        let (m, n, k) = (64, 256, 512);
        assert!(!threaded(m * n * k) && m * n * k >= PARALLEL / 4);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1009) as f32).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729 % 997) as f32).cos()).collect();
        let mut alone = vec![0.0_f32; m * n];
        matmul(m, n, k, Mat::n(&a, k), Mat::t(&b, k), &mut alone, false);
        let (on_pool, split) = crate::threads::install(|| {
            let mut c = vec![0.0_f32; m * n];
            matmul(m, n, k, Mat::n(&a, k), Mat::t(&b, k), &mut c, false);
            (threaded(m * n * k), c)
        });
        assert!(on_pool || crate::threads::count() == 1, "not split on the pool");
        assert!(alone.iter().zip(&split).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(alone.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn products_match_reference_for_every_transpose_and_size() {
        for &(m, n, k) in &[(1, 2, 2), (3, 5, 7), (64, 33, 70), (129, 65, 100)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64 - 6.0) / 7.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 5 % 11) as f64 - 5.0) / 3.0).collect();
            let want = reference(m, n, k, &a, &b);
            let at = transpose(m, k, &a);
            let bt = transpose(k, n, &b);
            for (am, bm) in [
                (Mat::n(&a, k), Mat::n(&b, n)),
                (Mat::t(&at, m), Mat::n(&b, n)),
                (Mat::n(&a, k), Mat::t(&bt, k)),
                (Mat::t(&at, m), Mat::t(&bt, k)),
            ] {
                let mut c = vec![1.0; m * n];
                matmul(m, n, k, am, bm, &mut c, false);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-10, "{m}x{n}x{k}: {x} vs {y}");
                }
                matmul(m, n, k, am, bm, &mut c, true);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - 2.0 * y).abs() < 1e-10, "accumulate {m}x{n}x{k}");
                }
            }
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // untouched means the same bits
    fn products_with_no_rows_or_no_columns_write_nothing() {
        // m or n = 0: C has no element, whatever k is (the widths the network passes are all >= 1, and so
        // is k).
        let (a, b) = (vec![1.0_f64; 64 * 64], vec![1.0_f64; 64 * 64]);
        for (m, n, k) in [(0, 3, 4), (3, 0, 4), (0, 64, 64), (64, 0, 64)] {
            let mut c = vec![7.0; 8];
            matmul(m, n, k, Mat::n(&a, k), Mat::n(&b, n), &mut c, false);
            matmul(m, n, k, Mat::t(&a, m), Mat::t(&b, k), &mut c, true);
            assert!(c.iter().all(|&v| v == 7.0), "{m}x{n}x{k} wrote outside C");
        }
    }
}
