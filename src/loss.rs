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

use crate::activation::{log_sum_exp, Activation};
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
        let batch = o.len() / n_out;
        match self {
            Self::HalfSse | Self::Mse => {
                let sse: f64 = o.iter().zip(t).map(|(&o, &t)| (t - o).to_f64().map_or(f64::NAN, |d| d * d)).sum();
                if self == Self::HalfSse {
                    0.5 * sse / batch as f64
                } else {
                    sse / o.len() as f64
                }
            }
            Self::CrossEntropy => {
                let mut total = 0.0;
                for (zr, tr) in z.chunks_exact(n_out).zip(t.chunks_exact(n_out)) {
                    let lse = log_sum_exp(zr);
                    for (&zj, &tj) in zr.iter().zip(tr) {
                        if tj != T::zero() {
                            total -= (tj * (zj - lse)).to_f64().unwrap_or(f64::NAN);
                        }
                    }
                }
                total / batch as f64
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
        let mut total = 0.0;
        let rows = z.chunks_exact(n_out).zip(o.chunks_exact(n_out)).zip(t.chunks_exact(n_out));
        for ((((z, o), t), d), &w) in rows.zip(dz.chunks_exact_mut(n_out)).zip(w) {
            for d in d.iter_mut() {
                *d = *d * w;
            }
            total += w.to_f64().unwrap_or(f64::NAN) * self.value(z, o, t, n_out);
        }
        total / w.len() as f64
    }

    /// Writes `dz = dL/dz` for the output layer and returns the loss.
    #[inline]
    pub fn delta<T: Scalar>(self, act: Activation, z: &[T], o: &[T], t: &[T], n_out: usize, dz: &mut [T]) -> f64 {
        let batch = o.len() / n_out;
        match self {
            Self::HalfSse | Self::Mse => {
                let scale =
                    if self == Self::HalfSse { T::one() / T::of(batch as f64) } else { T::of(2.0 / o.len() as f64) };
                // The loss is summed in the same pass, exactly as `value` computes it.
                let mut sse = 0.0;
                for ((d, &o), &t) in dz.iter_mut().zip(o).zip(t) {
                    let e = o - t;
                    *d = e * scale * act.derivative(o);
                    sse += e.to_f64().map_or(f64::NAN, |e| e * e);
                }
                return if self == Self::HalfSse { 0.5 * sse / batch as f64 } else { sse / o.len() as f64 };
            }
            Self::CrossEntropy => {
                let inv_b = T::one() / T::of(batch as f64);
                for ((dr, pr), tr) in dz.chunks_exact_mut(n_out).zip(o.chunks_exact(n_out)).zip(t.chunks_exact(n_out)) {
                    let mass: T = tr.iter().copied().sum();
                    for ((d, &p), &t) in dr.iter_mut().zip(pr).zip(tr) {
                        *d = (p * mass - t) * inv_b;
                    }
                }
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

/// One element's binary cross-entropy from its logit, `max(z, 0) - z t + ln(1 + e^-|z|)`: the form that
/// neither overflows nor takes the log of a rounded 0.
#[inline]
fn bce<T: Scalar>(z: T, t: T) -> T {
    z.max(T::zero()) - z * t + (-z.abs()).exp().ln_1p()
}
