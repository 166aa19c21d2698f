//! Training steps on one sample through a small network (every width at most `WIDEST`), as the
//! article's 2-2-2 net: the same formulas, in the same order, as the batched path (so results are
//! bit-identical up to width 32, where the batched path's products are direct loops too; wider, they are
//! `gemm`'s and agree to rounding), but with no matrix-product calls, allocations or loops of unknown
//! length, since at this size that overhead would be most of the step.
//!
//! For a run of steps the network is copied into a padded form (`Pad`): every row of its weights, and
//! every layer's values, zero-padded to P, the next power of two of the widest layer, so that each row
//! has a length known at compile time and each product is a run of whole-row multiply-adds that
//! vectorises across neurons:
//!   z1[j] = sum_i x[i] w1t[i][j]     (w1 transposed: row i holds input i's weights)
//!   z2[k] = sum_j h[j] w2t[j][k]     (w2 transposed, for the forward pass)
//!   dz1[j] = sum_k dz2[k] w2[k][j]   (w2 as stored, for the backward pass)
//! Each sum still runs from zero in index order, as the batched path's dot products do. Padded entries
//! are zero and stay zero: padded inputs, hidden activations and output deltas are zero, so their
//! gradients are zero, and every optimizer maps a zero weight with a zero gradient and state to zero.
//! The two copies of w2 get the same gradients and so the same updates.
//!
//! SGD's update is written over the old values, each weight's gradient made in registers from the two
//! vectors of its outer product, when bounds on the values (kept from step to step) prove every new value
//! finite; otherwise, and for Adam, the gradients go into a second buffer, the update is computed there,
//! and it is swapped in only if every value is finite. Both compute the same operations, so the same bits.

use super::{bias_grad, Network};
use crate::error::{Error, Result};
use crate::linalg::Scalar;
use crate::network::{Bias, Config};
use crate::optim::{self, Rule};
use crate::{memory, simd};

/// Widths up to this take the one-sample path (wider than `ALWAYS`, only shapes it pads little).
pub const WIDEST: usize = 256;
/// Widths up to this take the one-sample path whatever the shape.
const ALWAYS: usize = 32;

/// A network in the padded form (see `Layout`), with its gradients and optimizer state in the same
/// layout. The scratch of a network, reused.
#[derive(Debug, Clone, Default)]
pub(super) struct Pad<T> {
    params: Vec<T>,
    grads: Vec<T>,
    state: Vec<Vec<T>>,
    next: Vec<Vec<T>>,
    /// Bounds on |parameter| and |momentum buffer| while SGD's updates are written in place (see
    /// `Rule::bounds_after`); None when they are to be measured again.
    bounds: Option<(f64, f64)>,
    /// Whether this still equals the network, as after a run of steps, so that the next run (a loop of
    /// single steps) need not copy it in again. Whatever else writes the network's parameters, state
    /// or update count calls `Network::changed`.
    fresh: bool,
}

impl<T: Scalar> Network<T> {
    pub(super) fn is_tiny(&self, batch: usize) -> bool {
        takes(&self.config, batch)
    }

    /// `steps` steps, step s on row `row(s)` of (x, t), each giving its loss to `loss`, compiled for the
    /// widest vectors the CPU has. Stops at the first step that cannot be completed, and returns its
    /// error; the network then holds the steps before it.
    pub(super) fn train_tiny(
        &mut self,
        (x, t): (&[T], &[T]),
        row: impl Fn(usize) -> usize,
        steps: usize,
        loss: &mut impl FnMut(f64),
    ) -> Result<()> {
        let c = &self.config;
        match c.n_in.max(c.n_hidden).max(c.n_out).next_power_of_two() {
            0..=2 => simd::widest(Run::<T, _, _, 2> { net: self, x, t, row, steps, loss }),
            4 => simd::widest(Run::<T, _, _, 4> { net: self, x, t, row, steps, loss }),
            8 => simd::widest(Run::<T, _, _, 8> { net: self, x, t, row, steps, loss }),
            16 => simd::widest(Run::<T, _, _, 16> { net: self, x, t, row, steps, loss }),
            32 => simd::widest(Run::<T, _, _, 32> { net: self, x, t, row, steps, loss }),
            64 => simd::widest(Run::<T, _, _, 64> { net: self, x, t, row, steps, loss }),
            128 => simd::widest(Run::<T, _, _, 128> { net: self, x, t, row, steps, loss }),
            _ => simd::widest(Run::<T, _, _, 256> { net: self, x, t, row, steps, loss }),
        }
    }

    /// Marks the padded copy out of date: to be called by everything that writes the parameters, the
    /// optimizer state or the update count, other than the one-sample path.
    pub(super) fn changed(&mut self) {
        self.pad.fresh = false;
    }

    /// Copies the parameters and optimizer state into `pad`, padded to P.
    fn pad<const P: usize>(&mut self) -> Result<()> {
        let c = self.config;
        let at = Layout::of::<P>(&c);
        let pad = &mut self.pad;
        // Biases are always there for the forward pass; the state covers what the update does.
        fill(&mut pad.params, at.len, "network parameters")?;
        pad.bounds = None;
        put::<T, P>(&mut pad.params, self.params.each_ref().map(Vec::as_slice), &c, at);
        // The untrained values (biases when frozen) are in both buffers, so a swap keeps them.
        fill(&mut pad.grads, at.len, "gradients")?;
        pad.grads.copy_from_slice(&pad.params);
        let slots = c.optimizer.slots();
        pad.state.resize_with(slots, Vec::new);
        pad.next.resize_with(slots, Vec::new);
        for (s, (slot, next)) in pad.state.iter_mut().zip(&mut pad.next).enumerate() {
            fill(slot, at.trained(&c), "optimizer state")?;
            fill(next, at.trained(&c), "optimizer state")?;
            put::<T, P>(slot, self.state.each_ref().map(|v| v.get(s).map_or(&[][..], Vec::as_slice)), &c, at);
        }
        Ok(())
    }

    /// Copies the padded parameters and optimizer state back, after `done` more updates.
    fn unpad<const P: usize>(&mut self, done: usize) {
        let c = self.config;
        let at = Layout::of::<P>(&c);
        take::<T, P>(&self.pad.params, self.params.each_mut().map(Vec::as_mut_slice), &c, at);
        for (s, slot) in self.pad.state.iter().enumerate() {
            let slots = self.state.each_mut().map(|v| v.get_mut(s).map_or(&mut [][..], Vec::as_mut_slice));
            take::<T, P>(slot, slots, &c, at);
        }
        self.updates += done as u64;
        self.pad.fresh = true;
    }

    /// Whether the padded parameters and state equal the network's (for a debug check).
    fn pad_is_fresh<const P: usize>(&self) -> bool {
        let mut copy = self.clone();
        copy.unpad::<P>(0);
        copy.params == self.params && copy.state == self.state
    }
}

/// Whether a step of `config` on `batch` rows takes the one-sample path.
pub(super) fn takes(c: &Config, batch: usize) -> bool {
    let p = c.n_in.max(c.n_hidden).max(c.n_out).next_power_of_two();
    // Wider, every matrix row is padded to the widest layer: a narrow layer beside a wide one (64-256-10)
    // would pad w2's transpose to 256 x 256 for 2,560 weights, and the batched path does better.
    let padded = (c.n_in + c.n_hidden + c.n_out + 2) * p;
    let params = c.n_hidden * (c.n_in + c.n_out) + c.n_hidden + c.n_out;
    batch == 1 && (p <= ALWAYS || (p <= WIDEST && padded <= 2 * params))
}

/// Where each part of the padded form starts: `[w1t | w2 | w2t | b1 | b2]`, each bias P values, each
/// weight matrix as many rows of P values as it has rows (w1t n_in, w2 n_out, w2t n_hidden). Up to P = 8
/// every matrix has P rows (the padded ones zero), so that every loop has a length known at compile
/// time and unrolls; wider, the padded rows would cost more than a loop of unknown length.
#[derive(Debug, Clone, Copy)]
struct Layout {
    w2: usize,
    w2t: usize,
    b1: usize,
    b2: usize,
    len: usize,
}

impl Layout {
    #[inline(always)]
    #[allow(clippy::inline_always)]
    fn of<const P: usize>(c: &Config) -> Self {
        let rows = |n: usize| if P <= 8 { P } else { n };
        let w2 = rows(c.n_in) * P;
        let w2t = w2 + rows(c.n_out) * P;
        let b1 = w2t + rows(c.n_hidden) * P;
        Self { w2, w2t, b1, b2: b1 + P, len: b1 + 2 * P }
    }

    /// Where w1t, w2 and w2t start and end.
    #[inline(always)]
    #[allow(clippy::inline_always)]
    fn weights(self) -> [(usize, usize); 3] {
        [(0, self.w2), (self.w2, self.w2t), (self.w2t, self.b1)]
    }

    /// Values an update covers: the weights, and the biases when they are trained.
    #[inline(always)]
    #[allow(clippy::inline_always)]
    fn trained(self, c: &Config) -> usize {
        if c.train_bias && c.bias != Bias::None {
            self.len
        } else {
            self.b1
        }
    }
}

/// `x w` for a row `x` and the rows of `w`: out[j] = sum_i x[i] w[i][j], each sum from zero in index
/// order, a whole row of `w` at a time.
#[inline(always)]
#[allow(clippy::inline_always)]
fn vec_mat<T: Scalar, const P: usize>(x: &[T; P], w: &[T]) -> [T; P] {
    let mut out = [T::zero(); P];
    for (&x, row) in x.iter().zip(w.chunks_exact(P)) {
        simd::whole_rows();
        for (o, &w) in out.iter_mut().zip(row) {
            *o = *o + x * w;
        }
    }
    out
}

/// The outer product `g = a b^T` of as many rows as `g` has (a's first values), each value as `0 + a b`
/// like the batched path's.
#[inline(always)]
#[allow(clippy::inline_always)]
fn outer<T: Scalar, const P: usize>(a: &[T; P], b: &[T; P], g: &mut [T]) {
    for (&a, row) in a.iter().zip(g.chunks_exact_mut(P)) {
        simd::whole_rows();
        // Built in registers and stored whole: written into `row` one by one, wide rows stayed scalar.
        let mut g = [T::zero(); P];
        for j in 0..P {
            g[j] = T::zero() + a * b[j];
        }
        row.copy_from_slice(&g);
    }
}

/// SGD (lr, momentum, nesterov, weight decay) written over the padded parameters `p` and momentum
/// buffer `s` (empty for plain SGD): each weight matrix's gradient is the outer product of its pair in
/// `outers` (w1t, w2, w2t), made in registers as the update goes; the biases' are `biases`, when trained.
/// The same operations as `Rule::kernel`, so the same bits.
#[inline(always)]
#[allow(clippy::inline_always)]
fn sgd_in_place<T: Scalar, const P: usize>(
    p: &mut [T],
    s: &mut [T],
    at: Layout,
    outers: [(&[T; P], &[T; P]); 3],
    biases: Option<&[[T; P]; 2]>,
    k: (T, T, bool, T),
) {
    for ((a, b), (start, end)) in outers.into_iter().zip(at.weights()) {
        for (r, i) in (start..end).step_by(P).enumerate() {
            simd::whole_rows();
            sgd_row(&mut p[i..i + P], s.get_mut(i..i + P), Some(a[r]), b, k);
        }
    }
    if let Some(biases) = biases {
        for (g, i) in biases.iter().zip([at.b1, at.b2]) {
            sgd_row(&mut p[i..i + P], s.get_mut(i..i + P), None, g, k);
        }
    }
}

/// One row of `sgd_in_place`: P values `p` and their momentum buffer `s` (None for plain SGD), with the
/// gradient `0 + a g` (a row of an outer product, as the batched path computes it) or, with no `a`, `g`
/// itself. A row of up to `LANES` values is one block, a wider one a run of blocks of `LANES`.
#[inline(always)]
#[allow(clippy::inline_always)]
fn sgd_row<T: Scalar, const P: usize>(p: &mut [T], s: Option<&mut [T]>, a: Option<T>, g: &[T; P], k: (T, T, bool, T)) {
    if P <= LANES {
        sgd_block::<T, P>(p, s, a, g, k);
        return;
    }
    match s {
        None => {
            for (p, g) in p.chunks_exact_mut(LANES).zip(g.chunks_exact(LANES)) {
                simd::whole_rows();
                sgd_block::<T, LANES>(p, None, a, g, k);
            }
        }
        Some(s) => {
            for ((p, s), g) in p.chunks_exact_mut(LANES).zip(s.chunks_exact_mut(LANES)).zip(g.chunks_exact(LANES)) {
                simd::whole_rows();
                sgd_block::<T, LANES>(p, Some(s), a, g, k);
            }
        }
    }
}

/// B values of `sgd_row`, built whole in registers and stored at once (stored one by one, wide rows
/// stayed scalar; built in a block wider than B, narrow rows went through the stack).
#[inline(always)]
#[allow(clippy::inline_always)]
fn sgd_block<T: Scalar, const B: usize>(
    p: &mut [T],
    s: Option<&mut [T]>,
    a: Option<T>,
    g: &[T],
    (lr, mu, nesterov, wd): (T, T, bool, T),
) {
    let (p, g): (&mut [T; B], &[T; B]) = (fixed_mut(p), fixed(g));
    let grad = |g: T| a.map_or(g, |a| T::zero() + a * g);
    let mut new = [T::zero(); B];
    match s {
        None => {
            for j in 0..B {
                new[j] = optim::sgd(p[j], grad(g[j]), lr, wd);
            }
        }
        Some(s) => {
            let s: &mut [T; B] = fixed_mut(s);
            let mut b = [T::zero(); B];
            for j in 0..B {
                let (v, m) = optim::momentum(p[j], grad(g[j]), s[j], lr, mu, wd, nesterov);
                new[j] = v;
                b[j] = optim::kept(m);
            }
            *s = b;
        }
    }
    *p = new;
}

/// Values `sgd_row` updates at once: an AVX-512 vector of f32, two of f64.
const LANES: usize = 16;

/// The biases' gradients (each P values, zero past the layer's biases), when they are trained.
#[inline(always)]
#[allow(clippy::inline_always)]
fn bias_grads<T: Scalar, const P: usize>(c: &Config, dz1: &[T; P], dz2: &[T; P]) -> Option<[[T; P]; 2]> {
    if !c.train_bias || c.bias == Bias::None {
        return None;
    }
    let mut g = [[T::zero(); P]; 2];
    for ((g, d), n) in g.iter_mut().zip([dz1, dz2]).zip([c.n_hidden, c.n_out]) {
        if c.bias == Bias::PerNeuron {
            // One row: each neuron's delta summed from zero, as `bias_grad` does, but over the whole padded
            // row (its padding is zero) in registers: a loop of the layer's width went through the stack,
            // a third of a 2-2-2 step.
            for j in 0..P {
                g[j] = T::zero() + d[j];
            }
        } else {
            bias_grad(&d[..n], n, &mut g[..1]);
        }
    }
    Some(g)
}

/// The largest |v| as an f64, or infinity if a value is not finite.
#[inline(always)]
#[allow(clippy::inline_always)]
fn max_abs<T: Scalar, const P: usize>(v: &[T; P]) -> f64 {
    let (mut m, mut finite) = (T::zero(), true);
    for &v in v {
        let a = v.abs();
        m = if a > m { a } else { m };
        finite &= a <= T::max_value(); // false for a NaN
    }
    if finite {
        m.to_f64().unwrap_or(f64::INFINITY)
    } else {
        f64::INFINITY
    }
}

/// Exact bounds on |parameter| and |momentum buffer| of `pad` (see `Pad::bounds`).
fn measure<T: Scalar>(pad: &Pad<T>) -> (f64, f64) {
    let max = |v: &[T]| v.iter().fold(0.0_f64, |m, v| m.max(v.abs().to_f64().unwrap_or(f64::INFINITY)));
    let finite = |v: &[T]| v.iter().all(|v| v.is_finite());
    let s = pad.state.first().map_or(&[][..], Vec::as_slice);
    if finite(&pad.params) && finite(s) {
        (max(&pad.params), max(s))
    } else {
        (f64::INFINITY, f64::INFINITY)
    }
}

/// A layer's biases (its P values in the padded layout) added to `z` as the batched path adds them.
#[inline(always)]
#[allow(clippy::inline_always)]
fn add_bias<T: Scalar, const P: usize>(z: &mut [T; P], b: &[T; P], bias: Bias) {
    match bias {
        Bias::PerNeuron => z.iter_mut().zip(b).for_each(|(z, &b)| *z = *z + b),
        Bias::Shared => z.iter_mut().for_each(|z| *z = *z + b[0]),
        Bias::None => {}
    }
}

/// The first P values of `v` (which has them) as an array.
#[inline(always)]
#[allow(clippy::inline_always)]
fn fixed<T, const P: usize>(v: &[T]) -> &[T; P] {
    v.first_chunk().unwrap_or_else(|| unreachable!("the padded layout has P values here"))
}

/// `fixed`, writable.
#[inline(always)]
#[allow(clippy::inline_always)]
fn fixed_mut<T, const P: usize>(v: &mut [T]) -> &mut [T; P] {
    v.first_chunk_mut().unwrap_or_else(|| unreachable!("the padded layout has P values here"))
}

/// `v` as `len` zeros, reusing its room.
fn fill<T: Scalar>(v: &mut Vec<T>, len: usize, what: &'static str) -> Result<()> {
    v.clear();
    memory::reserve(what, v, len, 1)?;
    v.resize(len, T::zero());
    Ok(())
}

/// Writes w1, b1, w2, b2 (the network's layout; empty where a parameter has no such slot) into `pad`,
/// which holds zeros.
fn put<T: Scalar, const P: usize>(
    pad: &mut [T],
    [w1, b1, w2, b2]: [&[T]; 4],
    &Config { n_in, n_hidden, .. }: &Config,
    at: Layout,
) {
    for (j, row) in w1.chunks_exact(n_in).enumerate() {
        for (i, &w) in row.iter().enumerate() {
            pad[i * P + j] = w;
        }
    }
    for (k, row) in w2.chunks_exact(n_hidden).enumerate() {
        for (j, &w) in row.iter().enumerate() {
            pad[at.w2 + k * P + j] = w;
            pad[at.w2t + j * P + k] = w;
        }
    }
    for (at, b) in [(at.b1, b1), (at.b2, b2)] {
        if let Some(dst) = pad.get_mut(at..at + b.len()) {
            dst.copy_from_slice(b);
        }
    }
}

/// Reads w1, b1, w2, b2 back from `pad` into the network's layout (the inverse of `put`).
fn take<T: Scalar, const P: usize>(
    pad: &[T],
    [w1, b1, w2, b2]: [&mut [T]; 4],
    &Config { n_in, n_hidden, .. }: &Config,
    at: Layout,
) {
    for (j, row) in w1.chunks_exact_mut(n_in).enumerate() {
        for (i, w) in row.iter_mut().enumerate() {
            *w = pad[i * P + j];
        }
    }
    for (k, row) in w2.chunks_exact_mut(n_hidden).enumerate() {
        for (j, w) in row.iter_mut().enumerate() {
            *w = pad[at.w2 + k * P + j];
        }
    }
    for (at, b) in [(at.b1, b1), (at.b2, b2)] {
        if let Some(src) = pad.get(at..at + b.len()) {
            b.copy_from_slice(src);
        }
    }
}

/// A run of one-sample steps (see `Network::train_tiny`).
struct Run<'a, T, R, F, const P: usize> {
    net: &'a mut Network<T>,
    x: &'a [T],
    t: &'a [T],
    row: R,
    steps: usize,
    loss: &'a mut F,
}

impl<T: Scalar, R: Fn(usize) -> usize, F: FnMut(f64), const P: usize> simd::Kernel for Run<'_, T, R, F, P> {
    type Output = Result<()>;

    #[inline(always)]
    #[allow(clippy::inline_always)] // see `simd::Kernel`
    fn run(self) -> Result<()> {
        let Self { net, x, t, row, steps, loss } = self;
        if !net.pad.fresh {
            net.pad::<P>()?;
        }
        debug_assert!(net.pad_is_fresh::<P>(), "the network changed without `Network::changed`");
        let c = net.config;
        let (n_in, n_out) = (c.n_in, c.n_out);
        let mut xp = [T::zero(); P];
        // Adam's constants change with every update, SGD's stay.
        let adam = c.optimizer.slots() == 2;
        let mut rule = c.optimizer.rule::<T>(net.updates + 1);
        let mut done = 0;
        let result = loop {
            if done == steps {
                break Ok(());
            }
            if adam && done > 0 {
                rule = c.optimizer.rule::<T>(net.updates + done as u64 + 1);
            }
            let r = row(done);
            let (Some(xr), Some(tr)) = (row_of(x, r, n_in), row_of(t, r, n_out)) else {
                let got = format!("{} rows", x.len() / n_in.max(1));
                break Err(Error::ShapeMismatch { arg: "x", expected: format!("a row {r}"), got });
            };
            xp[..n_in].copy_from_slice(xr);
            match step::<T, P>(&c, &mut net.pad, &xp, tr, &rule) {
                Ok(l) => loss(l),
                Err(e) => break Err(e),
            }
            done += 1;
        };
        net.unpad::<P>(done);
        result
    }
}

/// Row `r` of a row-major matrix `width` values wide, if it has one.
#[inline(always)]
#[allow(clippy::inline_always)]
fn row_of<T>(v: &[T], r: usize, width: usize) -> Option<&[T]> {
    v.get(r.checked_mul(width)?..)?.get(..width)
}

/// One step of the padded network on the padded sample `x` and the targets `t` (n_out values); commits
/// the update and returns the loss, or commits nothing when the loss or a new value is not finite.
#[inline(always)]
#[allow(clippy::inline_always)] // into `train_tiny`'s wide copies
#[allow(clippy::needless_range_loop)] // indices of whole rows read clearer than zips of zips here
fn step<T: Scalar, const P: usize>(c: &Config, pad: &mut Pad<T>, x: &[T; P], t: &[T], rule: &Rule<T>) -> Result<f64> {
    let (n_hidden, n_out) = (c.n_hidden, c.n_out);
    let p = &pad.params;
    let at = Layout::of::<P>(c);
    let (w1t, w2, w2t) = (&p[..at.w2], &p[at.w2..at.w2t], &p[at.w2t..at.b1]);

    // forward: z = x w^T + b, a = f(z); padded hidden units are then set to zero
    let mut h = vec_mat(x, w1t);
    add_bias(&mut h, fixed(&p[at.b1..]), c.bias);
    c.hidden_activation.apply_serial(&mut h, P);
    h[n_hidden..].fill(T::zero());
    let mut z2 = vec_mat(&h, w2t);
    add_bias(&mut z2, fixed(&p[at.b2..]), c.bias);
    let mut o = z2;
    c.output_activation.apply_serial(&mut o[..n_out], n_out);

    // backward: dz2, then dz1 = (w2^T dz2) * f'(h)
    let mut dz2 = [T::zero(); P];
    let loss = c.loss.delta(c.output_activation, &z2[..n_out], &o[..n_out], t, n_out, &mut dz2[..n_out], &[]);
    if !loss.is_finite() {
        return Err(Error::Diverged { step: 0, what: "loss", losses: vec![] });
    }
    let mut dz1 = vec_mat(&dz2, w2);
    for j in 0..P {
        dz1[j] = dz1[j] * c.hidden_activation.derivative(h[j]);
    }

    // Gradients and update. SGD's update is written over the old values when bounds prove every new
    // value finite (the usual case: it then needs no second buffer, no gradient matrices, no checks);
    // otherwise the gradients go into the second buffer, are updated there, and are swapped in if finite.
    let gb = bias_grads::<T, P>(c, &dz1, &dz2);
    let bounds = match *rule {
        // Not at P = 8, where the checked update is the faster: LLVM splits an in-place row of 8 into
        // pieces of 1, 4, 2 and 1 values.
        Rule::Sgd { .. } if P != 8 => {
            let (x_, h_, d1, d2) = (max_abs(x), max_abs(&h), max_abs(&dz1), max_abs(&dz2));
            let mut g = (x_ * d1).max(d2 * h_);
            if gb.is_some() {
                // A bias's gradient is its neuron's delta, or, shared, the sum of the layer's.
                let n = |width: usize| if c.bias == Bias::Shared { width as f64 } else { 1.0 };
                g = g.max(d1 * n(n_hidden)).max(d2 * n(n_out));
            }
            let before = pad.bounds.unwrap_or_else(|| measure(pad));
            rule.bounds_after(before, g * 1.01) // with room for each product's rounding
        }
        Rule::Sgd { .. } | Rule::Adam(_) => None,
    };
    // The factors of each weight matrix's gradient, an outer product: w1t's, w2's, w2t's.
    let outers = [(x, &dz1), (&dz2, &h), (&h, &dz2)];
    if let (Some(after), &Rule::Sgd { lr, mu, nesterov, wd }) = (bounds, rule) {
        let (p, s) = (&mut pad.params[..], pad.state.first_mut().map_or(&mut [][..], Vec::as_mut_slice));
        // With a constant zero, the decay folds away, as in `Rule::kernel`.
        if wd == T::zero() {
            sgd_in_place(p, s, at, outers, gb.as_ref(), (lr, mu, nesterov, T::zero()));
        } else {
            sgd_in_place(p, s, at, outers, gb.as_ref(), (lr, mu, nesterov, wd));
        }
        pad.bounds = Some(after);
    } else {
        let (p, new) = (&pad.params, &mut pad.grads);
        for ((a, b), (start, end)) in outers.into_iter().zip(at.weights()) {
            outer(a, b, &mut new[start..end]);
        }
        if let Some([gb1, gb2]) = &gb {
            new[at.b1..at.b2].copy_from_slice(gb1);
            new[at.b2..at.len].copy_from_slice(gb2);
        }
        let n = at.trained(c);
        if !rule.apply(&p[..n], &mut new[..n], &pad.state, &mut pad.next) {
            return Err(Error::Diverged { step: 0, what: "weights", losses: vec![] });
        }
        std::mem::swap(&mut pad.params, &mut pad.grads);
        std::mem::swap(&mut pad.state, &mut pad.next);
        pad.bounds = None;
    }
    Ok(loss)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Clone, Copy)]
    enum Set {
        Baseline,
        #[cfg(target_arch = "x86_64")]
        Avx2,
        #[cfg(target_arch = "x86_64")]
        Avx512,
    }

    /// Losses, and every parameter and state value, after 25 steps compiled for `set` (which the CPU must
    /// have).
    fn trained<const P: usize>(c: Config, x: &[f32], t: &[f32], set: Set) -> (Vec<f64>, Vec<f32>) {
        let mut net = Network::<f32>::new(c, 7).unwrap();
        let mut losses = vec![];
        let mut sink = |l| losses.push(l);
        let k = Run::<f32, _, _, P> { net: &mut net, x, t, row: |_| 0, steps: 25, loss: &mut sink };
        match set {
            Set::Baseline => simd::baseline(k),
            // SAFETY: the caller checked that the CPU has AVX2.
            #[cfg(target_arch = "x86_64")]
            Set::Avx2 => unsafe { simd::avx2(k) },
            // SAFETY: the caller checked that the CPU has AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Set::Avx512 => unsafe { simd::avx512(k) },
        }
        .unwrap();
        let state = net.optimizer_state().0.iter().flatten().flatten();
        (losses, net.params().iter().flatten().chain(state).copied().collect())
    }

    /// The one-sample path is compiled for each instruction set and picked at run time: every set the
    /// CPU can run must give the baseline build's bits.
    #[test]
    fn every_instruction_set_gives_the_baseline_bits() {
        let shapes = [(2, 2, 2), (13, 16, 10), (30, 17, 3)];
        for ((hidden_activation, output_activation, loss, optimizer), (n_in, n_hidden, n_out)) in
            crate::network::tests::three_settings().into_iter().zip(shapes)
        {
            let c =
                Config { hidden_activation, output_activation, loss, optimizer, ..Config::new(n_in, n_hidden, n_out) };
            let x: Vec<f32> = (0..n_in).map(|i| (i as f32 * 0.37).sin()).collect();
            let t: Vec<f32> = (0..n_out).map(|k| if k == 1 { 1.0 } else { 0.0 }).collect();
            // Padded to 32 as the narrow shapes are, and to 128: a wide row is a loop of blocks.
            sets_agree::<32>(c, &x, &t);
            sets_agree::<128>(Config { n_in: n_in + 70, n_hidden: n_hidden + 100, n_out: n_out + 90, ..c }, &x, &t);
        }
    }

    fn sets_agree<const P: usize>(c: Config, x: &[f32], t: &[f32]) {
        let x: Vec<f32> = x.iter().copied().cycle().take(c.n_in).collect();
        let t: Vec<f32> = t.iter().copied().chain(std::iter::repeat(0.0)).take(c.n_out).collect();
        let baseline = trained::<P>(c, &x, &t, Set::Baseline);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                assert_eq!(trained::<P>(c, &x, &t, Set::Avx2), baseline, "AVX2 {c:?}");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                assert_eq!(trained::<P>(c, &x, &t, Set::Avx512), baseline, "AVX-512 {c:?}");
            }
        }
    }
}
