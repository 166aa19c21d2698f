//! The three-layer network: input (n_in) -> hidden (n_hidden) -> output (n_out), on batches of B rows.
//!
//! Weights are stored like PyTorch's `nn.Linear.weight`, (out, in) row-major, so for a batch X (B, n_in):
//!   forward:  z1 = X w1^T + b1,  h = f(z1),  z2 = h w2^T + b2,  o = g(z2)
//!   backward: dz2 = dL/dz2 (see `loss`),  dw2 = dz2^T h,  db2 = sum_b dz2,
//!             dz1 = (dz2 w2) * f'(h),      dw1 = dz1^T X,  db1 = sum_b dz1
//! A shared bias is one scalar per layer (the article's), so its gradient sums over neurons too.
//! Both layers' gradients are computed from the weights before the update, as the article does.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::linalg::{matmul, Mat, Scalar};
use crate::loss::Loss;
use crate::memory;
use crate::names::named_enum;
use crate::optim::Optimizer;
use crate::simd;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// Indices of the four parameter tensors, in state-dict order.
pub const W1: usize = 0;
pub const B1: usize = 1;
pub const W2: usize = 2;
pub const B2: usize = 3;
pub const PARAM_NAMES: [&str; 4] = ["w1", "b1", "w2", "b2"];

named_enum! {
    /// How each layer's bias is shaped.
    pub enum Bias {
        /// One bias per neuron, like `nn.Linear`.
        PerNeuron => "per_neuron",
        /// One scalar per layer, shared by its neurons (the article's).
        Shared => "shared",
        /// No bias.
        None => "none",
    }
}

impl Bias {
    /// Number of bias values of a layer with `width` neurons.
    pub fn len(self, width: usize) -> usize {
        match self {
            Self::PerNeuron => width,
            Self::Shared => 1,
            Self::None => 0,
        }
    }
}

/// Everything that defines a network but its weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub n_in: usize,
    pub n_hidden: usize,
    pub n_out: usize,
    pub hidden_activation: Activation,
    pub output_activation: Activation,
    pub loss: Loss,
    pub bias: Bias,
    pub train_bias: bool,
    pub optimizer: Optimizer,
}

/// Networks with more parameters than this are refused before anything is allocated.
const MAX_PARAMS: u128 = 1 << 32;

impl Config {
    /// A network with PyTorch's defaults for everything but the widths: sigmoid, half_sse, SGD(0.5).
    pub fn new(n_in: usize, n_hidden: usize, n_out: usize) -> Self {
        Self {
            n_in,
            n_hidden,
            n_out,
            hidden_activation: Activation::Sigmoid,
            output_activation: Activation::Sigmoid,
            loss: Loss::HalfSse,
            bias: Bias::PerNeuron,
            train_bias: true,
            optimizer: Optimizer::sgd(0.5),
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (arg, width) in [("n_in", self.n_in), ("n_hidden", self.n_hidden), ("n_out", self.n_out)] {
            if width == 0 {
                return Err(Error::config(arg, "a positive integer", width));
            }
        }
        let params: u128 = self.shapes().iter().map(|&(r, c)| r as u128 * c as u128).sum();
        if params > MAX_PARAMS {
            return Err(Error::OutOfMemory { what: "network parameters", elements: params });
        }
        if self.hidden_activation == Activation::Softmax {
            return Err(Error::config("hidden_activation", "one of sigmoid, tanh, relu, identity", "softmax"));
        }
        let softmax_out = self.output_activation == Activation::Softmax;
        if softmax_out != (self.loss == Loss::CrossEntropy) {
            return Err(Error::config(
                if softmax_out { "loss" } else { "output_activation" },
                "softmax output with cross_entropy loss (they go together)",
                format!("output_activation={}, loss={}", self.output_activation, self.loss),
            ));
        }
        let bce = self.loss == Loss::BinaryCrossEntropy;
        if bce && self.output_activation != Activation::Sigmoid {
            return Err(Error::config(
                "output_activation",
                "sigmoid output with binary_cross_entropy loss (its gradient is o - t through the sigmoid)",
                format!("output_activation={}, loss={}", self.output_activation, self.loss),
            ));
        }
        self.optimizer.validate()
    }

    /// (rows, cols) of w1, b1, w2, b2.
    pub fn shapes(&self) -> [(usize, usize); 4] {
        [
            (self.n_hidden, self.n_in),
            (1, self.bias.len(self.n_hidden)),
            (self.n_out, self.n_hidden),
            (1, self.bias.len(self.n_out)),
        ]
    }

    /// Whether parameter `i` is updated by training.
    fn trained(&self, i: usize) -> bool {
        (i == W1 || i == W2 || self.train_bias) && self.shapes()[i].1 > 0
    }

    /// Multiply-adds of one training step on a batch of `batch` rows, plus the fixed cost of a step
    /// (about 2000 multiply-adds' worth), which dominates tiny networks: without it the article's 2-2-2
    /// net would check for Ctrl-C only every 160 ms or so.
    fn step_work(&self, batch: usize) -> usize {
        (self.n_in * self.n_hidden + self.n_hidden * self.n_out)
            .saturating_mul(batch)
            .saturating_mul(3)
            .saturating_add(2048)
    }

    /// Whether a step on `batch` rows has a region that runs on several threads: a product, activation or
    /// update at least its kind's `PARALLEL`.
    pub(crate) fn has_parallel_regions(&self, batch: usize) -> bool {
        let (i, h, o) = (self.n_in, self.n_hidden, self.n_out);
        let product = |a: usize, b: usize| batch.saturating_mul(a).saturating_mul(b) >= crate::linalg::PARALLEL;
        let values = |width: usize| batch.saturating_mul(width) >= crate::activation::PARALLEL;
        product(i, h) || product(h, o) || values(h) || values(o) || i * h + h * o >= crate::optim::PARALLEL
    }

    /// The values of `T` a network holds: parameters, gradients, optimizer state and its double buffer.
    pub fn values_held(&self) -> u128 {
        let params: u128 = self.shapes().iter().map(|&(r, c)| r as u128 * c as u128).sum();
        params * (2 + 2 * self.optimizer.slots() as u128)
    }

    /// Refuses a network whose parameters, gradients and optimizer state would not fit in memory.
    fn check_fits<T>(&self) -> Result<()> {
        memory::check::<T>("network parameters", self.values_held()).map(|_| ())
    }
}

/// The activations of one forward pass on a batch: h = f(z1) (B, n_hidden), z2 and o = g(z2) (B, n_out).
#[derive(Debug, Clone, Default)]
pub struct Forward<T> {
    pub h: Vec<T>,
    pub z2: Vec<T>,
    pub o: Vec<T>,
    /// Each row's sum of `e^(z2 - max)` behind softmax outputs, for the loss (empty when not kept; see
    /// `Activation::apply_keeping_sums`).
    pub sums: Vec<T>,
}

impl<T> Forward<T> {
    /// Room for a pass over `batch` rows, so that a batch too large for memory is an error up front.
    fn reserve(&mut self, c: &Config, batch: usize) -> Result<()> {
        memory::reserve("hidden activations", &mut self.h, batch, c.n_hidden)?;
        memory::reserve("output activations", &mut self.z2, batch, c.n_out)?;
        memory::reserve("output activations", &mut self.o, batch, c.n_out)?;
        memory::reserve("softmax sums", &mut self.sums, batch, 1)
    }
}

/// Every intermediate of one training step on one sample, for teaching (see `Network::explain_step`).
#[derive(Debug, Clone)]
pub struct StepTrace<T> {
    pub net_hidden: Vec<T>,
    pub out_hidden: Vec<T>,
    pub net_output: Vec<T>,
    pub out_output: Vec<T>,
    pub loss: f64,
    pub delta_output: Vec<T>,
    pub delta_hidden: Vec<T>,
    /// Gradients of w1, b1, w2, b2 (empty where a bias is absent or frozen).
    pub grads: [Vec<T>; 4],
    /// w1, b1, w2, b2 after the update.
    pub params_after: [Vec<T>; 4],
}

/// A three-layer fully connected network and its optimizer state.
#[derive(Debug, Clone)]
pub struct Network<T> {
    config: Config,
    params: [Vec<T>; 4],
    grads: [Vec<T>; 4],
    /// Optimizer state per parameter (momentum buffer, or Adam's two moments), and its double buffer.
    state: [Vec<Vec<T>>; 4],
    state_next: [Vec<Vec<T>>; 4],
    /// Optimizer updates committed so far (Adam's t).
    updates: u64,
    /// Which of w1, b1, w2, b2 training updates (`Config::trained`), computed once.
    trained: [bool; 4],
    acts: Forward<T>,
    dz2: Vec<T>,
    dz1: Vec<T>,
    /// The one-sample path's padded copy (see `tiny`).
    pad: tiny::Pad<T>,
}

impl<T: Scalar> Network<T> {
    /// A network initialised like PyTorch's `nn.Linear`: every weight and bias uniform in
    /// (-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn in f64 from a seeded generator (so f32 and f64
    /// networks with one seed start from the same weights, and a seed always gives the same ones).
    pub fn new(config: Config, seed: u64) -> Result<Self> {
        config.validate()?;
        config.check_fits::<T>()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let shapes = config.shapes();
        let mut params: [Vec<T>; 4] = Default::default();
        for (i, p) in params.iter_mut().enumerate() {
            let bound = 1.0 / (shapes[i & !1].1 as f64).sqrt(); // fan_in of the layer
            let len = shapes[i].0 * shapes[i].1;
            let draws = (0..len).map(|_| T::of(bound * (2.0 * rng.random::<f64>() - 1.0)));
            *p = memory::collect("network parameters", len, draws)?;
        }
        Self::with_params(config, params)
    }

    /// A network with the given parameters (w1, b1, w2, b2 as flat row-major arrays).
    pub fn with_params(config: Config, params: [Vec<T>; 4]) -> Result<Self> {
        config.validate()?;
        config.check_fits::<T>()?;
        let mut net = Self {
            config,
            params: Default::default(),
            grads: Default::default(),
            state: Default::default(),
            state_next: Default::default(),
            updates: 0,
            trained: std::array::from_fn(|i| config.trained(i)),
            acts: Forward::default(),
            dz2: vec![],
            dz1: vec![],
            pad: tiny::Pad::default(),
        };
        net.set_params(params)?;
        // Sized by the caller: every allocation may fail with MemoryError, whatever limits the process.
        for i in 0..4 {
            let len = net.params[i].len();
            let slots = if config.trained(i) { config.optimizer.slots() } else { 0 };
            net.grads[i] = memory::filled("gradients", len, T::zero())?;
            for _ in 0..slots {
                net.state[i].push(memory::filled("optimizer state", len, T::zero())?);
                net.state_next[i].push(memory::filled("optimizer state", len, T::zero())?);
            }
        }
        Ok(net)
    }

    /// The article's worked example: 2-2-2, its eight weights, shared biases 0.35 and 0.60 that are
    /// not trained, sigmoid on both layers, half_sse, plain SGD with lr 0.5.
    pub fn article() -> Self {
        let config = Config { bias: Bias::Shared, train_bias: false, ..Config::new(2, 2, 2) };
        let params = [[0.15, 0.20, 0.25, 0.30].as_slice(), &[0.35], &[0.40, 0.45, 0.50, 0.55], &[0.60]]
            .map(|p| p.iter().map(|&v| T::of(v)).collect());
        match Self::with_params(config, params) {
            Ok(net) => net,
            Err(e) => unreachable!("the article's network is valid: {e}"),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// w1, b1, w2, b2 as flat row-major arrays (shapes in `Config::shapes`).
    pub fn params(&self) -> &[Vec<T>; 4] {
        &self.params
    }

    /// Replaces the parameters after checking their sizes and finiteness; optimizer state is kept.
    pub fn set_params(&mut self, params: [Vec<T>; 4]) -> Result<()> {
        for (i, (p, &(rows, cols))) in params.iter().zip(&self.config.shapes()).enumerate() {
            if p.len() != rows * cols {
                return Err(Error::ShapeMismatch {
                    arg: PARAM_NAMES[i],
                    expected: format!("{} values ({rows} x {cols})", rows * cols),
                    got: format!("{} values", p.len()),
                });
            }
            check_finite(PARAM_NAMES[i], p, cols.max(1))?;
        }
        self.params = params;
        self.changed();
        Ok(())
    }

    /// Optimizer state per parameter (empty for plain SGD) and the number of updates so far.
    pub fn optimizer_state(&self) -> (&[Vec<Vec<T>>; 4], u64) {
        (&self.state, self.updates)
    }

    /// Restores optimizer state saved by `optimizer_state`, checking its layout.
    pub fn set_optimizer_state(&mut self, state: [Vec<Vec<T>>; 4], updates: u64) -> Result<()> {
        for (i, s) in state.iter().enumerate() {
            let expected = &self.state[i];
            if s.len() != expected.len() || s.iter().zip(expected).any(|(a, b)| a.len() != b.len()) {
                return Err(Error::ShapeMismatch {
                    arg: "optimizer_state",
                    expected: format!(
                        "{} buffers of {} values for {}",
                        expected.len(),
                        self.params[i].len(),
                        PARAM_NAMES[i]
                    ),
                    got: format!("{} buffers", s.len()),
                });
            }
            self.config.optimizer.check_state(s, updates)?;
        }
        self.state = state;
        self.updates = updates;
        self.changed();
        Ok(())
    }

    /// One training step on one sample, returning every intermediate: net inputs and outputs of each
    /// layer, the loss, both deltas, every gradient, and the parameters after the update (which this
    /// network takes: `Backend::explain_step` runs it on a copy).
    pub fn trace_step(&mut self, x: &[T], t: &[T]) -> Result<StepTrace<T>> {
        let batch = self.config.check_pair(x, t, "T")?;
        if batch != 1 {
            return Err(Error::ShapeMismatch { arg: "x", expected: "one sample".into(), got: format!("{batch} rows") });
        }
        let (n_hidden, bias) = (self.config.n_hidden, self.config.bias);
        let mut net_hidden = vec![T::zero(); n_hidden];
        affine(x, &self.params[W1], &self.params[B1], 1, self.config.n_in, n_hidden, bias, &mut net_hidden);
        self.forward_train(x, 1);
        let loss = self.backward(x, t, 1);
        let grads = std::array::from_fn(|i| if self.trained[i] { self.grads[i].clone() } else { vec![] });
        let trace_pre = (self.acts.clone(), self.dz2.clone(), self.dz1.clone());
        self.update(loss).map_err(|e| e.at_step(0, vec![]))?;
        let (acts, delta_output, delta_hidden) = trace_pre;
        Ok(StepTrace {
            net_hidden,
            out_hidden: acts.h,
            net_output: acts.z2,
            out_output: acts.o,
            loss,
            delta_output,
            delta_hidden,
            grads,
            params_after: self.params.clone(),
        })
    }

    /// Room in the training buffers for steps on `batch` rows (see `memory`).
    fn reserve(&mut self, batch: usize) -> Result<()> {
        self.acts.reserve(&self.config, batch)?;
        memory::reserve("output deltas", &mut self.dz2, batch, self.config.n_out)?;
        memory::reserve("hidden deltas", &mut self.dz1, batch, self.config.n_hidden)
    }

    fn step(&mut self, x: &[T], t: &[T], batch: usize) -> Result<f64> {
        if self.is_tiny(batch) {
            let mut loss = f64::NAN;
            self.train_tiny((x, t), |_| 0, 1, &mut |l| loss = l)?;
            return Ok(loss);
        }
        simd::widest(Step { net: self, x, t, w: None, batch })
    }

    /// `step` with each row's loss and gradient multiplied by its factor in `w` (when given).
    fn step_weighted(&mut self, x: &[T], t: &[T], w: Option<&[T]>, batch: usize) -> Result<f64> {
        match w {
            None => self.step(x, t, batch),
            w => simd::widest(Step { net: self, x, t, w, batch }),
        }
    }

    #[inline(always)]
    #[allow(clippy::inline_always)] // into `Step`'s wide copies
    fn forward_train(&mut self, x: &[T], batch: usize) {
        let mut acts = std::mem::take(&mut self.acts);
        self.forward_into(x, batch, &mut acts);
        self.acts = acts;
    }

    /// The forward pass of `rows` rows into buffers of its own (so many threads may run it at once),
    /// compiled for the widest vectors as `Step` is.
    fn forward_wide(&self, x: &[T], rows: usize) -> Result<Forward<T>> {
        let mut acts = Forward::default();
        acts.reserve(&self.config, rows)?;
        Ok(simd::widest(Pass { net: self, x, rows, acts }))
    }

    #[inline(always)]
    #[allow(clippy::inline_always)] // into `Step`'s wide copies
    fn forward_into(&self, x: &[T], batch: usize, acts: &mut Forward<T>) {
        let c = &self.config;
        acts.h.resize(batch * c.n_hidden, T::zero());
        acts.z2.resize(batch * c.n_out, T::zero());
        affine(x, &self.params[W1], &self.params[B1], batch, c.n_in, c.n_hidden, c.bias, &mut acts.h);
        c.hidden_activation.apply(&mut acts.h, c.n_hidden);
        affine(&acts.h, &self.params[W2], &self.params[B2], batch, c.n_hidden, c.n_out, c.bias, &mut acts.z2);
        acts.o.clear();
        acts.o.extend_from_slice(&acts.z2);
        c.output_activation.apply_keeping_sums(&mut acts.o, c.n_out, &mut acts.sums);
    }

    /// Fills `grads` from the activations of the last forward pass; returns the loss.
    fn backward(&mut self, x: &[T], t: &[T], batch: usize) -> f64 {
        self.backward_weighted(x, t, None, batch)
    }

    /// `backward` with each row's loss and output delta multiplied by its factor in `w` (when given).
    #[inline(always)]
    #[allow(clippy::inline_always)] // into `Step`'s wide copies
    fn backward_weighted(&mut self, x: &[T], t: &[T], w: Option<&[T]>, batch: usize) -> f64 {
        let c = self.config;
        let (n_in, n_hidden, n_out) = (c.n_in, c.n_hidden, c.n_out);
        self.dz2.resize(batch * n_out, T::zero());
        self.dz1.resize(batch * n_hidden, T::zero());
        let Self { params, grads, acts, dz2, dz1, .. } = self;
        let mut loss = c.loss.delta(c.output_activation, &acts.z2, &acts.o, t, n_out, dz2, &acts.sums);
        if let Some(w) = w {
            loss = c.loss.weigh_rows(&acts.z2, &acts.o, t, n_out, w, dz2);
        }
        matmul(n_out, n_hidden, batch, Mat::t(dz2, n_out), Mat::n(&acts.h, n_hidden), &mut grads[W2], false);
        matmul(batch, n_hidden, n_out, Mat::n(dz2, n_out), Mat::n(&params[W2], n_hidden), dz1, false);
        c.hidden_activation.backprop(dz1, &acts.h);
        matmul(n_hidden, n_in, batch, Mat::t(dz1, n_hidden), Mat::n(x, n_in), &mut grads[W1], false);
        if c.train_bias {
            bias_grad(dz1, n_hidden, &mut grads[B1]);
            bias_grad(dz2, n_out, &mut grads[B2]);
        }
        loss
    }

    /// Applies the optimizer to every trained parameter, committing only if all results are finite.
    #[inline(always)]
    #[allow(clippy::inline_always)] // into the tiny step's wide copies (`tiny`)
    fn update(&mut self, loss: f64) -> Result<()> {
        if !loss.is_finite() {
            return Err(Error::Diverged { step: 0, what: "loss", losses: vec![] });
        }
        let t = self.updates + 1;
        let rule = self.config.optimizer.rule::<T>(t);
        let mut finite = true;
        for i in (0..4).filter(|&i| self.trained[i]) {
            finite &= rule.apply(&self.params[i], &mut self.grads[i], &self.state[i], &mut self.state_next[i]);
        }
        if !finite {
            return Err(Error::Diverged { step: 0, what: "weights", losses: vec![] });
        }
        for i in (0..4).filter(|&i| self.trained[i]) {
            std::mem::swap(&mut self.params[i], &mut self.grads[i]);
            std::mem::swap(&mut self.state[i], &mut self.state_next[i]);
        }
        self.updates = t;
        self.changed();
        Ok(())
    }
}

/// A batched training step (forward pass, backward pass, update) compiled per instruction set (see
/// `simd`): its elementwise work (activations, the loss and its delta, the update) runs with the widest
/// vectors the CPU has, and with the same bits on every set.
struct Step<'a, T> {
    net: &'a mut Network<T>,
    x: &'a [T],
    t: &'a [T],
    /// Each row's factor on its loss and gradient, if any.
    w: Option<&'a [T]>,
    batch: usize,
}

impl<T: Scalar> simd::Kernel for Step<'_, T> {
    type Output = Result<f64>;
    #[inline(always)]
    #[allow(clippy::inline_always)] // see `simd::Kernel`
    fn run(self) -> Result<f64> {
        let Self { net, x, t, w, batch } = self;
        net.forward_train(x, batch);
        let loss = net.backward_weighted(x, t, w, batch);
        net.update(loss)?;
        Ok(loss)
    }
}

/// A forward pass into its own buffers, compiled per instruction set like `Step`.
struct Pass<'a, T> {
    net: &'a Network<T>,
    x: &'a [T],
    rows: usize,
    acts: Forward<T>,
}

impl<T: Scalar> simd::Kernel for Pass<'_, T> {
    type Output = Forward<T>;
    #[inline(always)]
    #[allow(clippy::inline_always)] // see `simd::Kernel`
    fn run(mut self) -> Forward<T> {
        self.net.forward_into(self.x, self.rows, &mut self.acts);
        self.acts
    }
}

/// z = x w^T + b for a batch of `batch` rows: x (batch, n_in), w (n_out, n_in), z (batch, n_out).
#[inline(always)]
#[allow(clippy::inline_always)] // into `Step`'s wide copies
fn affine<T: Scalar>(x: &[T], w: &[T], b: &[T], batch: usize, n_in: usize, n_out: usize, bias: Bias, z: &mut [T]) {
    matmul(batch, n_out, n_in, Mat::n(x, n_in), Mat::t(w, n_in), z, false);
    match bias {
        Bias::PerNeuron => {
            z.chunks_exact_mut(n_out).for_each(|row| row.iter_mut().zip(b).for_each(|(v, &b)| *v = *v + b));
        }
        Bias::Shared => z.iter_mut().for_each(|v| *v = *v + b[0]),
        Bias::None => {}
    }
}

/// Bias gradient from a layer's delta (batch, width): per-neuron column sums, or one total if shared.
#[inline(always)]
#[allow(clippy::inline_always)] // into the tiny step's wide copies (`tiny`)
fn bias_grad<T: Scalar>(delta: &[T], width: usize, g: &mut [T]) {
    match g.len() {
        0 => {}
        1 if width != 1 => g[0] = delta.iter().copied().sum(),
        _ => {
            g.fill(T::zero());
            for row in delta.chunks_exact(width) {
                g.iter_mut().zip(row).for_each(|(g, &d)| *g = *g + d);
            }
        }
    }
}

/// The order of the `n` samples in epoch `epoch` of a shuffled `fit` seeded with `seed`: each epoch has
/// its own generator, seeded with `seed + (epoch + 1) * 2^64/phi` (mod 2^64), which spreads consecutive
/// epochs over the seed space; so any epoch can be reproduced alone (the GPU's `fit` uses it too).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, order: &mut Vec<usize>) {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_add((epoch as u64).wrapping_add(1).wrapping_mul(GOLDEN)));
    order.clear();
    order.extend(0..n);
    order.shuffle(&mut rng);
}

/// Copies rows `rows` of a (n, cols) matrix into `out`.
fn gather<T: Scalar>(src: &[T], cols: usize, rows: &[usize], out: &mut Vec<T>) {
    out.clear();
    for &r in rows {
        out.extend_from_slice(&src[r * cols..(r + 1) * cols]);
    }
}

/// Fails with the first non-finite value's position as `[row, col]`.
/// Checks that `x` holds whole, finite rows of `cols` values; returns the number of rows.
pub fn check_rows<T: Scalar>(arg: &'static str, x: &[T], cols: usize) -> Result<usize> {
    if x.is_empty() || x.len() % cols != 0 {
        return Err(Error::ShapeMismatch {
            arg,
            expected: format!("(batch >= 1, {cols})"),
            got: format!("{} values", x.len()),
        });
    }
    check_finite(arg, x, cols)?;
    Ok(x.len() / cols)
}

impl Config {
    /// Checks inputs `x` and targets `t` (named `t_name`: T, or Y for fit) of a batch for this network
    /// (CPU or GPU); returns its rows.
    pub(crate) fn check_pair<T: Scalar>(&self, x: &[T], t: &[T], t_name: &'static str) -> Result<usize> {
        let batch = check_rows("X", x, self.n_in)?;
        if t.len() != batch * self.n_out {
            return Err(Error::ShapeMismatch {
                arg: t_name,
                expected: format!("({batch}, {})", self.n_out),
                got: format!("{} values", t.len()),
            });
        }
        check_finite(t_name, t, self.n_out)?;
        Ok(batch)
    }
}

pub fn check_finite<T: Scalar>(arg: &'static str, x: &[T], cols: usize) -> Result<()> {
    // Blocks without an early exit vectorise; the position is looked for only once one is found.
    if x.chunks(256).all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite())) {
        return Ok(());
    }
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            arg,
            position: format!("[{}, {}]", i / cols, i % cols),
            value: x[i].to_f64().unwrap_or(f64::NAN),
        }),
    }
}

mod backend;
mod lanes;
mod tiny;

#[cfg(test)]
pub(crate) use lanes::LANES;

pub use backend::Rows;

#[cfg(test)]
mod tests;
