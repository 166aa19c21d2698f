//! Activations `a = f(z)`, applied element by element (softmax: row by row), and their derivatives
//! written in terms of the output `a`, which is what backpropagation keeps:
//! sigmoid' = a(1 - a), tanh' = 1 - a^2, relu' = [a > 0], identity' = 1.
//! Softmax has no elementwise derivative here: it is only used with cross-entropy, whose combined
//! gradient with respect to z is `p - t` (see `loss`).

use crate::linalg::Scalar;
use crate::names::named_enum;
use crate::simd;
use rayon::prelude::*;

/// Blocks of at least this many values are activated on every rayon thread (below it, waking the threads
/// costs more than they save).
pub(crate) const PARALLEL: usize = 1 << 18;

named_enum! {
    pub enum Activation {
        Sigmoid => "sigmoid",
        Tanh => "tanh",
        Relu => "relu",
        Identity => "identity",
        Softmax => "softmax",
    }
}

impl Activation {
    /// `a = f(z)` in place over a (rows x cols) row-major block. Large blocks are split over rayon's
    /// threads (whole rows each, so softmax stays per row): elementwise work, so results do not depend
    /// on the thread count.
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the wide copies of the training steps
    pub fn apply<T: Scalar>(self, z: &mut [T], cols: usize) {
        if z.len() >= PARALLEL && self != Self::Identity {
            self.apply_parallel(z, cols);
        } else {
            self.apply_serial(z, cols);
        }
    }

    /// `apply`, keeping in `sums` each row's sum of `e^(z - max)` when this is a softmax run on this
    /// thread (`sums` is left empty otherwise), so that cross-entropy need not take the exponentials again.
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the wide copies of the training steps
    pub(crate) fn apply_keeping_sums<T: Scalar>(self, z: &mut [T], cols: usize, sums: &mut Vec<T>) {
        sums.clear();
        if self == Self::Softmax && z.len() < PARALLEL {
            exp_minus_row_max(z, cols);
            sums.extend(z.chunks_exact_mut(cols).map(normalise));
        } else {
            self.apply(z, cols);
        }
    }

    /// Out of line, so that `apply` stays small enough to inline into the tiny networks' step.
    #[inline(never)]
    fn apply_parallel<T: Scalar>(self, z: &mut [T], cols: usize) {
        let rows_per_chunk = (PARALLEL / 4 / cols).max(1);
        crate::threads::install(|| {
            z.par_chunks_mut(rows_per_chunk * cols).for_each(|z| simd::widest(Apply { act: self, z, cols }));
        });
    }

    /// Always inlined, so that callers compiled for wider vectors (the lanes of `network::lanes`) run it
    /// with them.
    #[inline(always)]
    #[allow(clippy::inline_always)]
    pub(crate) fn apply_serial<T: Scalar>(self, z: &mut [T], cols: usize) {
        match self {
            Self::Sigmoid => z.iter_mut().for_each(|v| *v = sigmoid(*v)),
            Self::Tanh => z.iter_mut().for_each(|v| *v = v.tanh()),
            Self::Relu => z.iter_mut().for_each(|v| *v = v.max(T::zero())),
            Self::Identity => {}
            Self::Softmax => softmax_rows(z, cols),
        }
    }

    /// `delta *= f'(z)`, elementwise from the outputs `a`: backpropagation through the activation. Large
    /// blocks use every rayon thread.
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the wide copies of the training steps
    pub fn backprop<T: Scalar>(self, delta: &mut [T], a: &[T]) {
        if delta.len() >= PARALLEL && !matches!(self, Self::Identity | Self::Softmax) {
            self.backprop_parallel(delta, a);
        } else {
            self.backprop_serial(delta, a);
        }
    }

    /// Out of line, as `apply_parallel` is.
    #[inline(never)]
    fn backprop_parallel<T: Scalar>(self, delta: &mut [T], a: &[T]) {
        crate::threads::install(|| {
            let blocks = delta.par_chunks_mut(PARALLEL / 4).zip(a.par_chunks(PARALLEL / 4));
            blocks.for_each(|(delta, a)| simd::widest(Backprop { act: self, delta, a }));
        });
    }

    /// The match is outside the loops so that each one vectorises.
    #[inline(always)]
    #[allow(clippy::inline_always)]
    fn backprop_serial<T: Scalar>(self, delta: &mut [T], a: &[T]) {
        #[inline(always)]
        #[allow(clippy::inline_always)]
        fn each<T: Scalar>(delta: &mut [T], a: &[T], f: impl Fn(T) -> T) {
            delta.iter_mut().zip(a).for_each(|(d, &a)| *d = *d * f(a));
        }
        match self {
            Self::Sigmoid => each(delta, a, |a| a * (T::one() - a)),
            Self::Tanh => each(delta, a, |a| T::one() - a * a),
            Self::Relu => each(delta, a, |a| if a > T::zero() { T::one() } else { T::zero() }),
            Self::Identity | Self::Softmax => {}
        }
    }

    /// `f'(z)` from the output `a`; not defined for softmax (callers use the cross-entropy shortcut).
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the wide copies of `network::tiny` and `network::lanes`
    pub fn derivative<T: Scalar>(self, a: T) -> T {
        match self {
            Self::Sigmoid => a * (T::one() - a),
            Self::Tanh => T::one() - a * a,
            Self::Relu => {
                if a > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Self::Identity | Self::Softmax => T::one(),
        }
    }
}

/// A block of `Activation::apply` on a pool thread, compiled per instruction set: work handed to
/// another thread is compiled apart from the wide step that sent it.
struct Apply<'a, T> {
    act: Activation,
    z: &'a mut [T],
    cols: usize,
}

impl<T: Scalar> simd::Kernel for Apply<'_, T> {
    type Output = ();
    #[inline(always)]
    #[allow(clippy::inline_always)] // see `simd::Kernel`
    fn run(self) {
        self.act.apply_serial(self.z, self.cols);
    }
}

/// A block of `Activation::backprop` on a pool thread, compiled per instruction set (see `Apply`).
struct Backprop<'a, T> {
    act: Activation,
    delta: &'a mut [T],
    a: &'a [T],
}

impl<T: Scalar> simd::Kernel for Backprop<'_, T> {
    type Output = ();
    #[inline(always)]
    #[allow(clippy::inline_always)] // see `simd::Kernel`
    fn run(self) {
        self.act.backprop_serial(self.delta, self.a);
    }
}

/// The logistic function, evaluated so that `exp` never overflows: with e = exp(-|z|), 1 / (1 + e)
/// for z >= 0 and e / (1 + e) for z < 0 (both exact to rounding; a select, not a branch).
#[inline]
pub fn sigmoid<T: Scalar>(z: T) -> T {
    let e = (-z.abs()).exp_nonpos();
    let num = if z >= T::zero() { T::one() } else { e };
    num / (T::one() + e)
}

/// Softmax of one row in place, shifted by the row's maximum so that `exp` never overflows.
pub fn softmax<T: Scalar>(row: &mut [T]) {
    softmax_rows(row, row.len());
}

/// `softmax` of every row of a (rows x cols) block, in passes over the whole block so that the
/// exponentials run a vector at a time even for short rows (10 classes); each value goes through the
/// same operations as in `softmax` of its row alone.
#[inline(always)]
#[allow(clippy::inline_always)] // into the wide copies of the training steps
pub fn softmax_rows<T: Scalar>(z: &mut [T], cols: usize) {
    exp_minus_row_max(z, cols);
    for row in z.chunks_exact_mut(cols) {
        normalise(row);
    }
}

/// A row of exponentials divided by their sum, which is returned.
#[inline(always)]
#[allow(clippy::inline_always)]
fn normalise<T: Scalar>(row: &mut [T]) -> T {
    let sum = row_sum(row);
    for v in row.iter_mut() {
        *v = *v / sum;
    }
    sum
}

/// A row's sum in index order, as softmax and cross-entropy's log-sum-exp take it.
#[inline(always)]
#[allow(clippy::inline_always)]
pub(crate) fn row_sum<T: Scalar>(row: &[T]) -> T {
    row.iter().fold(T::zero(), |s, &v| s + v)
}

/// `e^(z - max)` in place, with each row's own maximum, in two passes over the block (see `softmax_rows`).
#[inline(always)]
#[allow(clippy::inline_always)]
pub(crate) fn exp_minus_row_max<T: Scalar>(z: &mut [T], cols: usize) {
    for row in z.chunks_exact_mut(cols) {
        let max = row_max(row);
        for v in row.iter_mut() {
            *v = *v - max;
        }
    }
    for v in z.iter_mut() {
        *v = v.exp_nonpos();
    }
}

/// `log(sum(exp(z)))` of one row, as `max + log(sum(exp(z - max)))` so that it is finite for any finite
/// z; `log softmax(z)_j = z_j - log_sum_exp(z)`.
pub fn log_sum_exp<T: Scalar>(row: &[T]) -> T {
    let max = row_max(row);
    let sum: T = row.iter().map(|&v| (v - max).exp_nonpos()).sum();
    max + sum.ln()
}

/// A row's largest value, NaNs ignored (-inf if all are), as `T::max` folds it. Written as a comparison,
/// which is one instruction where `max` adds a NaN fix-up to each step of the chain; the two differ
/// only in which of 0 and -0 they keep, and `e^(z - max)` and `max + ln(sum)` come out the same for
/// either.
#[inline(always)]
#[allow(clippy::inline_always)]
pub(crate) fn row_max<T: Scalar>(row: &[T]) -> T {
    row.iter().fold(T::neg_infinity(), |m, &v| if v > m { v } else { m })
}

#[cfg(test)]
// Tests fail by panicking, and compare exact values.
#[allow(clippy::panic, clippy::float_cmp)]
mod tests {
    use super::*;

    #[test]
    fn stable_for_large_inputs() {
        for z in [-1e308_f64, -800.0, -40.0, 0.0, 40.0, 800.0, 1e308] {
            let s = sigmoid(z);
            assert!(s.is_finite() && (0.0..=1.0).contains(&s), "sigmoid({z}) = {s}");
            assert!(f64::tanh(z).is_finite());
        }
        assert_eq!(sigmoid(-800.0_f64), 0.0);
        assert_eq!(sigmoid(800.0_f64), 1.0);
        let mut row = [1000.0_f64, -1000.0, 999.0];
        softmax(&mut row);
        assert!(row.iter().all(|p| p.is_finite()));
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let lse = log_sum_exp(&[1000.0_f64, -1000.0, 999.0]);
        assert!((lse - 1000.0 - (1.0 + (-1.0f64).exp()).ln()).abs() < 1e-9, "{lse}");
    }

    /// Deterministic values in (-4, 4), different for every index.
    fn values(n: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 7919 % 10007) as f64 / 10007.0 - 0.5) * 8.0).collect()
    }

    #[test]
    fn large_blocks_activate_on_threads_exactly_as_one_pass() {
        // 2^18 values and more take the threaded path, in chunks of whole rows; 1000 columns do not divide
        // the chunk size, so a chunk that split a row would give a wrong softmax.
        for (rows, cols) in [(263, 1000), (PARALLEL + 3, 1)] {
            let z = values(rows * cols);
            for act in
                [Activation::Sigmoid, Activation::Tanh, Activation::Relu, Activation::Identity, Activation::Softmax]
            {
                let (mut threaded, mut serial) = (z.clone(), z.clone());
                act.apply(&mut threaded, cols);
                act.apply_serial(&mut serial, cols);
                assert!(threaded.iter().zip(&serial).all(|(a, b)| a.to_bits() == b.to_bits()), "{act} {rows}x{cols}");
                // ...and the serial pass is the activation, element by element (softmax: row by row).
                let want: Vec<f64> = match act {
                    Activation::Sigmoid => z.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
                    Activation::Tanh => z.iter().map(|v| v.tanh()).collect(),
                    Activation::Relu => z.iter().map(|&v| v.max(0.0)).collect(),
                    Activation::Identity => z.clone(),
                    Activation::Softmax => z
                        .chunks(cols)
                        .flat_map(|r| {
                            let s: f64 = r.iter().map(|v| v.exp()).sum();
                            r.iter().map(move |v| v.exp() / s)
                        })
                        .collect(),
                };
                let err = threaded.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-12, "{act} {rows}x{cols}: off by {err:e}");
            }
        }
    }

    #[test]
    fn large_blocks_backpropagate_on_threads_exactly_as_one_pass() {
        for n in [PARALLEL - 1, PARALLEL + 5] {
            let a: Vec<f64> = values(n).iter().map(|v| v / 8.0 + 0.5).collect(); // outputs in (0, 1)
            let delta: Vec<f64> = values(n + 1)[1..].to_vec();
            for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu, Activation::Identity] {
                let mut got = delta.clone();
                act.backprop(&mut got, &a);
                for (i, ((&g, &d), &a)) in got.iter().zip(&delta).zip(&a).enumerate() {
                    assert!(g.to_bits() == (d * act.derivative(a)).to_bits(), "{act}, n = {n}, at {i}");
                }
            }
        }
    }

    #[test]
    fn relu_derivative_is_zero_at_zero_and_softmax_passes_through() {
        assert_eq!(Activation::Relu.derivative(0.0_f64), 0.0);
        assert_eq!(Activation::Relu.derivative(1e-300_f64), 1.0);
        assert_eq!(Activation::Identity.derivative(5.0_f64), 1.0);
        assert_eq!(Activation::Softmax.derivative(0.3_f64), 1.0);
        let mut delta = [2.0_f64, 2.0, 2.0];
        Activation::Relu.backprop(&mut delta, &[0.0, 0.5, -0.0]);
        assert_eq!(delta, [0.0, 2.0, 0.0]);
        let mut delta = [2.0_f64, 3.0];
        Activation::Softmax.backprop(&mut delta, &[0.1, 0.9]);
        assert_eq!(delta, [2.0, 3.0], "softmax's delta comes whole from the cross-entropy shortcut");
        let mut z = [1.0_f64, -2.0];
        Activation::Identity.apply(&mut z, 2);
        assert_eq!(z, [1.0, -2.0]);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu, Activation::Identity] {
            for z in [-2.5_f64, -0.3, 0.7, 3.1] {
                let f = |z: f64| {
                    let mut v = [z];
                    act.apply(&mut v, 1);
                    v[0]
                };
                let h = 1e-6;
                let numeric = (f(z + h) - f(z - h)) / (2.0 * h);
                let analytic = act.derivative(f(z));
                assert!((numeric - analytic).abs() < 1e-8, "{act} at {z}: {numeric} vs {analytic}");
            }
        }
    }

    #[test]
    fn softmax_of_large_inputs_has_the_exact_probabilities() {
        // Rows far outside exp's range, whose probabilities are known in closed form: equal shifts of a row
        // do not change its softmax, so [1000, -1000, 999] is [1, -1999, 0] shifted by 999.
        let e = (-1.0_f64).exp();
        for (row, want) in [
            (vec![1000.0_f64, -1000.0, 999.0], [1.0 / (1.0 + e), 0.0, e / (1.0 + e)]),
            (vec![-1000.0, -999.0, -1000.0], [e / (1.0 + 2.0 * e), 1.0 / (1.0 + 2.0 * e), e / (1.0 + 2.0 * e)]),
            (vec![700.0, 700.0, -700.0], [0.5, 0.5, 0.0]),
        ] {
            let mut got = row.clone();
            softmax(&mut got);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-15, "softmax({row:?}) = {got:?}, want {want:?}");
            }
        }
    }
}
