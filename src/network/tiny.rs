//! The training step for one sample through a small network (every width at most `TINY`), as the
//! article's 2-2-2 net: the same formulas, in the same order, as the batched path (so results are
//! bit-identical), but on stack arrays with no matrix-product calls, allocations or divisions, since at
//! this size that overhead would be most of the step.

use super::{bias_grad, Network};
use crate::error::Result;
use crate::linalg::Scalar;
use crate::network::{Bias, Config};

/// Widths up to this take the one-sample path.
pub const TINY: usize = 16;

impl<T: Scalar> Network<T> {
    pub(super) fn is_tiny(&self, batch: usize) -> bool {
        takes(&self.config, batch)
    }

    /// One training step on one sample (x: n_in values, t: n_out values); returns the loss.
    pub(super) fn step_tiny(&mut self, x: &[T], t: &[T]) -> Result<f64> {
        let c = self.config;
        let (n_in, n_hidden, n_out) = (c.n_in, c.n_hidden, c.n_out);
        let (mut h, mut z2, mut o, mut dz2, mut dz1) =
            ([T::zero(); TINY], [T::zero(); TINY], [T::zero(); TINY], [T::zero(); TINY], [T::zero(); TINY]);
        let (h, z2, o, dz2, dz1) =
            (&mut h[..n_hidden], &mut z2[..n_out], &mut o[..n_out], &mut dz2[..n_out], &mut dz1[..n_hidden]);
        let [w1, b1, w2, b2] = &self.params;

        // forward: z = x w^T + b, a = f(z)
        affine_one(x, w1, b1, c.bias, h);
        c.hidden_activation.apply(h, n_hidden);
        affine_one(h, w2, b2, c.bias, z2);
        o.copy_from_slice(z2);
        c.output_activation.apply(o, n_out);

        // backward: dw2 = dz2 h^T, dz1 = (w2^T dz2) * f'(h), dw1 = dz1 x^T
        let loss = c.loss.delta(c.output_activation, z2, o, t, n_out, dz2);
        let [gw1, gb1, gw2, gb2] = &mut self.grads;
        // Rows are sliced by index, not `chunks_exact`, whose division costs more than these loops.
        for (k, &d) in dz2.iter().enumerate() {
            let row = k * n_hidden..(k + 1) * n_hidden;
            gw2[row.clone()].iter_mut().zip(h.iter()).for_each(|(g, &h)| *g = T::zero() + d * h);
            if k == 0 {
                dz1.iter_mut().zip(&w2[row]).for_each(|(s, &w)| *s = T::zero() + d * w);
            } else {
                dz1.iter_mut().zip(&w2[row]).for_each(|(s, &w)| *s = *s + d * w);
            }
        }
        for (d, &h) in dz1.iter_mut().zip(h.iter()) {
            *d = *d * c.hidden_activation.derivative(h);
        }
        for (j, &d) in dz1.iter().enumerate() {
            gw1[j * n_in..(j + 1) * n_in].iter_mut().zip(x).for_each(|(g, &x)| *g = T::zero() + d * x);
        }
        if c.train_bias {
            bias_grad(dz1, n_hidden, gb1);
            bias_grad(dz2, n_out, gb2);
        }
        self.update(loss)?;
        Ok(loss)
    }
}

/// Whether a step of `config` on `batch` rows takes the one-sample path.
pub(super) fn takes(c: &Config, batch: usize) -> bool {
    batch == 1 && c.n_in <= TINY && c.n_hidden <= TINY && c.n_out <= TINY
}

/// z = W x + b for one sample, summing each dot product from zero in index order as the batched path does.
#[inline]
fn affine_one<T: Scalar>(x: &[T], w: &[T], b: &[T], bias: Bias, z: &mut [T]) {
    let n = x.len();
    for (j, z) in z.iter_mut().enumerate() {
        let dot = x.iter().zip(&w[j * n..(j + 1) * n]).fold(T::zero(), |s, (&x, &w)| s + x * w);
        *z = match bias {
            Bias::PerNeuron => dot + b[j],
            Bias::Shared => dot + b[0],
            Bias::None => dot,
        };
    }
}
