//! Losses over a batch of B rows with n_out outputs each, and the output layer's delta
//! `dz2 = dL/dz2`, the gradient with respect to the output layer's net input:
//! - `half_sse` (the article's): L = 1/B sum_b 1/2 sum_k (t - o)^2;      dL/do = (o - t) / B
//! - `mse` (PyTorch's MSELoss):  L = 1/(B n_out) sum_b sum_k (t - o)^2;  dL/do = 2 (o - t) / (B n_out)
//! - `cross_entropy` with softmax outputs: L = -1/B sum_b sum_k t log softmax(z);
//!   dL/dz = (p sum_k t_k - t) / B, which is (p - t) / B for one-hot or probability rows.
//! - `binary_cross_entropy` with sigmoid outputs (PyTorch's BCELoss, the mean over all B n_out
//!   elements like `mse`), computed from the logits z as BCEWithLogitsLoss does so that it stays finite
//!   where o rounds to 0 or 1: L = 1/(B n_out) sum (max(z, 0) - z t + ln(1 + e^-|z|));
//!   dL/dz = (o - t) / (B n_out), o = sigmoid(z).
//!
//! For the first two, `dz2 = dL/do * f'(o)` with f the output activation.

use crate::activation::{exp_minus_row_max, row_max, row_sum, Activation};
use crate::linalg::Scalar;
use crate::names::named_enum;

named_enum! {
    pub enum Loss {
        HalfSse => "half_sse",
        Mse => "mse",
        CrossEntropy => "cross_entropy",
        BinaryCrossEntropy => "binary_cross_entropy",
    }
}

impl Loss {
    /// The loss of a batch (accumulated in f64), without gradients.
    pub fn value<T: Scalar>(self, z: &[T], o: &[T], t: &[T], n_out: usize) -> f64 {
        self.value_with(z, o, t, n_out, &mut Vec::new())
    }

    /// `value`, with `scratch` as cross-entropy's work space (grown to z's length), so that a caller taking
    /// many losses allocates it once.
    fn value_with<T: Scalar>(self, z: &[T], o: &[T], t: &[T], n_out: usize, scratch: &mut Vec<T>) -> f64 {
        let batch = o.len() / n_out;
        match self {
            Self::HalfSse | Self::Mse => {
                let sse: f64 = o.iter().zip(t).map(|(&o, &t)| square(t - o)).sum();
                self.of_sse(sse, batch, o.len())
            }
            Self::CrossEntropy => {
                scratch.resize(z.len(), T::zero());
                cross_entropy(z, t, n_out, scratch, &[])
            }
            Self::BinaryCrossEntropy => {
                let total: f64 = z.iter().zip(t).map(|(&z, &t)| bce(z, t).to_f64().unwrap_or(f64::NAN)).sum();
                total / o.len() as f64
            }
        }
    }

    /// Multiplies each row's output delta `dz` (as `delta` wrote it) by its factor in `w`, and returns
    /// the batch loss with each row's loss weighted alike: `1/B sum_b w_b L_b`, with `L_b` the loss of
    /// row b alone.
    pub fn weigh_rows<T: Scalar>(self, z: &[T], o: &[T], t: &[T], n_out: usize, w: &[T], dz: &mut [T]) -> f64 {
        let (mut total, mut scratch) = (0.0, Vec::new());
        let rows = z.chunks_exact(n_out).zip(o.chunks_exact(n_out)).zip(t.chunks_exact(n_out));
        for ((((z, o), t), d), &w) in rows.zip(dz.chunks_exact_mut(n_out)).zip(w) {
            for d in d.iter_mut() {
                *d = *d * w;
            }
            total += w.to_f64().unwrap_or(f64::NAN) * self.value_with(z, o, t, n_out, &mut scratch);
        }
        total / w.len() as f64
    }

    /// Writes `dz = dL/dz` for the output layer and returns the loss. `sums`: each row's sum of
    /// `e^(z - max)` when the forward pass kept them (`Activation::apply_keeping_sums`), or empty.
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the tiny step's wide copies (`network::tiny`)
    #[allow(clippy::too_many_arguments)] // the output layer's values, each a slice
    pub fn delta<T: Scalar>(
        self,
        act: Activation,
        z: &[T],
        o: &[T],
        t: &[T],
        n_out: usize,
        dz: &mut [T],
        sums: &[T],
    ) -> f64 {
        let batch = o.len() / n_out;
        match self {
            Self::HalfSse | Self::Mse => {
                let scale = self.sse_scale(batch, o.len());
                // The loss is summed in the same pass, exactly as `value` computes it.
                let mut sse = 0.0;
                for ((d, &o), &t) in dz.iter_mut().zip(o).zip(t) {
                    let e = o - t;
                    *d = e * scale * act.derivative(o);
                    sse += square(e);
                }
                return self.of_sse(sse, batch, o.len());
            }
            Self::CrossEntropy => {
                // dz is the loss's work space before it receives the delta.
                let loss = cross_entropy(z, t, n_out, dz, sums);
                let inv_b = T::one() / T::of(batch as f64);
                for ((dr, pr), tr) in dz.chunks_exact_mut(n_out).zip(o.chunks_exact(n_out)).zip(t.chunks_exact(n_out)) {
                    let mass: T = tr.iter().copied().sum();
                    for ((d, &p), &t) in dr.iter_mut().zip(pr).zip(tr) {
                        *d = (p * mass - t) * inv_b;
                    }
                }
                return loss;
            }
            Self::BinaryCrossEntropy => {
                let scale = T::one() / T::of(o.len() as f64);
                for ((d, &o), &t) in dz.iter_mut().zip(o).zip(t) {
                    *d = (o - t) * scale;
                }
            }
        }
        self.value(z, o, t, n_out)
    }
}

impl Loss {
    /// dL/do over (o - t) for the squared-error losses on `len` outputs in `batch` rows.
    #[inline]
    pub(crate) fn sse_scale<T: Scalar>(self, batch: usize, len: usize) -> T {
        if self == Self::HalfSse {
            T::one() / T::of(batch as f64)
        } else {
            T::of(2.0 / len as f64)
        }
    }

    /// The squared-error losses from the sum of squared errors over `len` outputs in `batch` rows.
    #[inline]
    pub(crate) fn of_sse(self, sse: f64, batch: usize, len: usize) -> f64 {
        if self == Self::HalfSse {
            0.5 * sse / batch as f64
        } else {
            sse / len as f64
        }
    }
}

/// `e^2`, in f64 whatever `T` is: squared errors are summed in f64.
#[inline]
pub(crate) fn square<T: Scalar>(e: T) -> f64 {
    e.to_f64().map_or(f64::NAN, |e| e * e)
}

/// Cross-entropy of a batch from its logits, `-1/B sum_b sum_k t (z - log_sum_exp(z_b))` summed in f64,
/// each row's `log_sum_exp` taken as that function takes it: from the row sums of `e^(z - max)` in
/// `sums` when there is one per row, else with the exponentials of the whole batch at once in `scratch`
/// (as long as z).
#[inline(always)]
#[allow(clippy::inline_always)] // into the wide copies of the training steps
fn cross_entropy<T: Scalar>(z: &[T], t: &[T], n_out: usize, scratch: &mut [T], sums: &[T]) -> f64 {
    let rows = z.len() / n_out;
    let kept = sums.len() == rows;
    if !kept {
        scratch.copy_from_slice(z);
        exp_minus_row_max(scratch, n_out);
    }
    let mut total = 0.0;
    for (r, (zr, tr)) in z.chunks_exact(n_out).zip(t.chunks_exact(n_out)).enumerate() {
        let sum = if kept { sums[r] } else { row_sum(&scratch[r * n_out..(r + 1) * n_out]) };
        let lse = row_max(zr) + sum.ln();
        for (&zj, &tj) in zr.iter().zip(tr) {
            if tj != T::zero() {
                total -= (tj * (zj - lse)).to_f64().unwrap_or(f64::NAN);
            }
        }
    }
    total / rows as f64
}

/// One element's binary cross-entropy from its logit, `max(z, 0) - z t + ln(1 + e^-|z|)`: the form that
/// neither overflows nor takes the log of a rounded 0.
#[inline]
fn bce<T: Scalar>(z: T, t: T) -> T {
    z.max(T::zero()) - z * t + (-z.abs()).exp().ln_1p()
}

#[cfg(test)]
// Tests fail by panicking.
#[allow(clippy::panic)]
mod tests {
    use super::*;

    /// Deterministic values in (-2, 2), different for every index and seed.
    fn values(n: usize, seed: usize) -> Vec<f64> {
        (0..n).map(|i| (((i + 31 * seed) * 7919 % 10007) as f64 / 10007.0 - 0.5) * 4.0).collect()
    }

    /// An output activation and its derivative with respect to z, written from z with libm (independent of
    /// `Activation`, which works from the output).
    fn reference_activation(act: Activation, z: f64) -> (f64, f64) {
        match act {
            Activation::Sigmoid => {
                let s = 1.0 / (1.0 + (-z).exp());
                (s, s * (1.0 - s))
            }
            Activation::Tanh => (z.tanh(), 1.0 / z.cosh().powi(2)),
            Activation::Relu => (z.max(0.0), if z > 0.0 { 1.0 } else { 0.0 }),
            Activation::Identity => (z, 1.0),
            Activation::Softmax => panic!("softmax is a row operation"),
        }
    }

    /// The loss and dL/dz of a (batch x n_out) block, straight from the formulas at the top of the file.
    fn reference(loss: Loss, act: Activation, z: &[f64], t: &[f64], n_out: usize) -> (f64, Vec<f64>) {
        let batch = z.len() / n_out;
        match loss {
            Loss::HalfSse | Loss::Mse => {
                // L = c sum (t - o)^2, so dL/dz = 2 c (o - t) f'(z)
                let c = if loss == Loss::HalfSse { 0.5 / batch as f64 } else { 1.0 / z.len() as f64 };
                let mut total = 0.0;
                let mut dz = vec![];
                for (&z, &t) in z.iter().zip(t) {
                    let (o, d) = reference_activation(act, z);
                    total += c * (t - o) * (t - o);
                    dz.push(2.0 * c * (o - t) * d);
                }
                (total, dz)
            }
            Loss::BinaryCrossEntropy => {
                // L = -1/(B n_out) sum t ln o + (1 - t) ln(1 - o), o = sigmoid(z); dL/dz = (o - t) / (B n_out)
                let n = z.len() as f64;
                let mut total = 0.0;
                let mut dz = vec![];
                for (&z, &t) in z.iter().zip(t) {
                    let o = 1.0 / (1.0 + (-z).exp());
                    total -= (t * o.ln() + (1.0 - t) * (1.0 - o).ln()) / n;
                    dz.push((o - t) / n);
                }
                (total, dz)
            }
            Loss::CrossEntropy => {
                // L = -1/B sum t (z - ln sum exp z); dL/dz_k = (p_k sum_j t_j - t_k) / B
                let mut total = 0.0;
                let mut dz = vec![];
                for (zr, tr) in z.chunks(n_out).zip(t.chunks(n_out)) {
                    let sum_exp: f64 = zr.iter().map(|v| v.exp()).sum();
                    let mass: f64 = tr.iter().sum();
                    for (&zk, &tk) in zr.iter().zip(tr) {
                        total -= tk * (zk - sum_exp.ln()) / batch as f64;
                        dz.push((zk.exp() / sum_exp * mass - tk) / batch as f64);
                    }
                }
                (total, dz)
            }
        }
    }

    fn outputs(act: Activation, z: &[f64], n_out: usize) -> Vec<f64> {
        if act == Activation::Softmax {
            z.chunks(n_out)
                .flat_map(|r| {
                    let s: f64 = r.iter().map(|v| v.exp()).sum();
                    r.iter().map(move |v| v.exp() / s)
                })
                .collect()
        } else {
            z.iter().map(|&z| reference_activation(act, z).0).collect()
        }
    }

    /// Every loss with every output activation it is used with, on batches of several rows and more
    /// than two outputs (so that 1/B, 1/(B n_out) and 1/2 all differ), in f64 and f32. Cross-entropy
    /// targets include rows that are not probabilities (mass 0.3 and 2.5, zeros, a negative entry),
    /// where the general gradient p sum(t) - t is not p - t.
    #[test]
    fn values_and_deltas_match_the_formulas() {
        let (batch, n_out) = (4, 3);
        let z = values(batch * n_out, 1);
        let cases = [
            (Loss::HalfSse, Activation::Sigmoid),
            (Loss::HalfSse, Activation::Tanh),
            (Loss::HalfSse, Activation::Identity),
            (Loss::Mse, Activation::Sigmoid),
            (Loss::Mse, Activation::Relu),
            (Loss::Mse, Activation::Identity),
            (Loss::BinaryCrossEntropy, Activation::Sigmoid),
            (Loss::CrossEntropy, Activation::Softmax),
        ];
        for (loss, act) in cases {
            let t: Vec<f64> = if loss == Loss::CrossEntropy {
                vec![0.0, 1.0, 0.0, 0.2, 0.3, 0.5, 0.1, 0.0, 0.2, 1.5, -0.25, 1.25]
            } else {
                values(batch * n_out, 2).iter().map(|v| 0.5 + v / 5.0).collect()
            };
            let o = outputs(act, &z, n_out);
            let (want_loss, want_dz) = reference(loss, act, &z, &t, n_out);
            let mut dz = vec![f64::NAN; z.len()];
            let got = loss.delta(act, &z, &o, &t, n_out, &mut dz, &[]);
            let value = loss.value(&z, &o, &t, n_out);
            let tol = 1e-12 * want_loss.abs().max(1.0);
            assert!((got - want_loss).abs() < tol, "{loss}/{act}: delta's loss {got} vs {want_loss}");
            assert!((value - want_loss).abs() < tol, "{loss}/{act}: value {value} vs {want_loss}");
            for (i, (&g, &w)) in dz.iter().zip(&want_dz).enumerate() {
                assert!((g - w).abs() < 1e-12, "{loss}/{act}: dz[{i}] = {g} vs {w}");
            }
            // f32: the same numbers within f32's rounding
            let f = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let (z32, o32, t32) = (f(&z), f(&o), f(&t));
            let mut dz32 = vec![f32::NAN; z.len()];
            let got = loss.delta(act, &z32, &o32, &t32, n_out, &mut dz32, &[]);
            let value = loss.value(&z32, &o32, &t32, n_out);
            assert!((got - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0), "{loss}/{act} f32: {got}");
            assert!((value - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0), "{loss}/{act} f32: {value}");
            for (i, (&g, &w)) in dz32.iter().zip(&want_dz).enumerate() {
                assert!((f64::from(g) - w).abs() < 1e-6, "{loss}/{act} f32: dz[{i}] = {g} vs {w}");
            }
        }
    }

    #[test]
    fn cross_entropy_over_a_block_has_each_rows_bits() {
        // The block's exponentials and sums must be each row's own, as `log_sum_exp` and `softmax` take
        // them: rows of every length around the vector widths, and values far outside exp's range.
        for n_out in [1, 2, 3, 7, 8, 10, 16, 17, 33] {
            for batch in [1, 3, 32] {
                let z: Vec<f64> = values(batch * n_out, n_out + batch).iter().map(|v| v * 40.0).collect();
                let t: Vec<f64> =
                    (0..z.len()).map(|i| if i % n_out == i / n_out % n_out { 1.0 } else { 0.0 }).collect();
                let mut want = 0.0;
                for (zr, tr) in z.chunks_exact(n_out).zip(t.chunks_exact(n_out)) {
                    let lse = crate::activation::log_sum_exp(zr);
                    for (&zj, &tj) in zr.iter().zip(tr).filter(|(_, &t)| t != 0.0) {
                        want -= tj * (zj - lse);
                    }
                }
                want /= batch as f64;
                let mut o = z.clone();
                o.chunks_exact_mut(n_out).for_each(crate::activation::softmax);
                let mut dz = vec![f64::NAN; z.len()];
                let got = Loss::CrossEntropy.delta(Activation::Softmax, &z, &o, &t, n_out, &mut dz, &[]);
                assert_eq!(got.to_bits(), want.to_bits(), "{batch}x{n_out}");
                assert_eq!(Loss::CrossEntropy.value(&z, &o, &t, n_out).to_bits(), want.to_bits(), "{batch}x{n_out}");
                let mut block = z.clone();
                Activation::Softmax.apply(&mut block, n_out);
                assert_eq!(block, o, "{batch}x{n_out}");
                // With the sums the forward pass keeps: the same outputs, loss and delta, bit for bit.
                let (mut kept, mut sums, mut dz_kept) = (z.clone(), vec![], vec![f64::NAN; z.len()]);
                Activation::Softmax.apply_keeping_sums(&mut kept, n_out, &mut sums);
                assert_eq!((kept, sums.len()), (o.clone(), batch), "{batch}x{n_out}");
                let got = Loss::CrossEntropy.delta(Activation::Softmax, &z, &o, &t, n_out, &mut dz_kept, &sums);
                assert_eq!(got.to_bits(), want.to_bits(), "{batch}x{n_out} with the kept sums");
                assert_eq!(dz_kept, dz, "{batch}x{n_out} with the kept sums");
            }
        }
    }
}
