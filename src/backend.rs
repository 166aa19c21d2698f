//! What a network does on a device, and the training loops written once over it.
//!
//! A `Backend` is the three-layer network of `crate::network` held by one device: the CPU network
//! (`Network<f32>`, `Network<f64>`) or the GPU network (`GpuNetwork`, f32; its stand-in when the `gpu`
//! feature is off). Its required methods are the device's primitives: forward, loss, a run of training
//! steps on one batch, a run of an epoch's mini-batches over a prepared data set, and parameters and
//! optimizer state in and out. Its provided methods are what is the same on every device: the training
//! loops with their Ctrl-C polling, `fit`'s epochs, shuffling order and loss averaging, the step
//! numbering of divergence and interruption errors, and `explain_step`'s plumbing.
//!
//! The contract (what every implementation keeps):
//! - Every method runs eagerly on the calling thread and returns when its work is done; results are
//!   deterministic for given inputs, and the same on one device whatever the thread count.
//! - `forward` and `loss` take `&self`: they never change parameters, so many threads may call them at
//!   once (the GPU serialises them internally).
//! - Training methods change parameters and optimizer state only by whole steps: after any error the
//!   network holds the weights of its last completed (finite) step.
//! - Inputs reach the primitives already checked (`Config::check_pair`): whole, finite rows.

use crate::error::{Error, Result};
use crate::gpu::AdapterSummary;
use crate::linalg::Scalar;
use crate::memory;
use crate::network::{epoch_order, Config, Network, StepTrace};
use num_traits::ToPrimitive;

/// w1, b1, w2, b2 as flat row-major arrays (shapes in `Config::shapes`).
pub type Params<T> = [Vec<T>; 4];
/// Optimizer state per parameter (empty for plain SGD or a frozen parameter) and the updates so far.
pub type OptimizerState<T> = ([Vec<Vec<T>>; 4], u64);

/// Asks the caller whether to go on; called between runs of steps of a few milliseconds.
pub type KeepGoing<'a> = &'a mut dyn FnMut() -> bool;

/// How a `fit` call walks its data; the same for every member of a population.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitPlan {
    /// Passes over the data.
    pub epochs: usize,
    /// Rows per mini-batch; the last of an epoch may be smaller.
    pub batch_size: usize,
    /// Whether each epoch takes its rows in the order `epoch_order(seed, epoch)` rather than as stored.
    pub shuffle: bool,
    /// The number of the call's first epoch, so that one call of k epochs trains exactly like k calls of one.
    pub first_epoch: usize,
}

/// What `Backend::fit_with` adds to `fit`: a learning rate per epoch and a weight per sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct FitExtras<'a, T> {
    /// The learning rate of each epoch of the call, set at its start (a schedule's rates); empty: the
    /// optimizer's rate throughout. When given, at least one per epoch.
    pub lrs: &'a [f64],
    /// One weight per sample, finite and >= 0 with a positive sum. Sample i's loss and gradient count
    /// `w_i n / sum(w)` times an unweighted sample's, so the loss of a full batch is the weighted mean
    /// `sum w_i l_i / sum w_i`, and integer weights train like repeated rows on average.
    pub sample_weight: Option<&'a [T]>,
}

/// A three-layer network on one device. See the module docs for the contract.
pub trait Backend {
    /// The element type the device computes in.
    type T: Scalar;
    /// A `fit` data set as the device holds it (borrowed rows on the CPU, uploaded buffers on a GPU).
    type Data<'a>
    where
        Self: 'a;

    fn config(&self) -> &Config;
    /// The GPU adapter the network runs on; None on the CPU.
    fn adapter(&self) -> Option<AdapterSummary>;

    /// Outputs for `rows` checked rows of `x`.
    fn outputs(&self, x: &[Self::T], rows: usize) -> Result<Vec<Self::T>>;
    /// The loss on `rows` checked rows of (x, t).
    fn batch_loss(&self, x: &[Self::T], t: &[Self::T], rows: usize) -> Result<f64>;

    /// How many steps on batches of `rows` rows to run between two questions to `keep_going`: a few
    /// milliseconds of work on the CPU, one submission on a GPU. Asked before each run of steps, so that
    /// a device may size them by the time the last ones took.
    fn steps_per_poll(&self, rows: usize) -> usize;
    /// Runs `work`, a whole call's steps on batches of `rows` rows, which polls the `KeepGoing` it is
    /// given between runs. Here on the calling thread; the CPU network moves work whose steps have
    /// parallel regions onto its thread pool in one hand-off (see `threads::polled`).
    fn whole_call<R: Send>(
        &mut self,
        _rows: usize,
        keep_going: KeepGoing,
        work: impl FnOnce(&mut Self, KeepGoing) -> R + Send,
    ) -> R {
        work(self, keep_going)
    }
    /// `steps` training steps on the checked batch (x, t) of `rows` rows, pushing each step's loss (the
    /// loss of its forward pass, before its update) onto `losses`. On divergence `losses` holds the steps
    /// before the failing one, and the network their weights.
    fn run_steps(
        &mut self,
        x: &[Self::T],
        t: &[Self::T],
        rows: usize,
        steps: usize,
        losses: &mut Vec<f64>,
    ) -> Result<()>;

    /// The data set (x, y) of `n` checked rows, ready for mini-batches of up to `batch_size` rows; with
    /// `weights`, each sample's factor on its loss and gradient (see `FitExtras::sample_weight`).
    fn prepare<'a>(
        &mut self,
        x: &'a [Self::T],
        y: &'a [Self::T],
        weights: Option<&'a [Self::T]>,
        n: usize,
        batch_size: usize,
    ) -> Result<Self::Data<'a>>;
    /// Mini-batches `batches` (numbered from 0 within the epoch) of an epoch over `data` whose samples
    /// come in `order` (None: as stored); pushes each step's loss onto `losses` as `run_steps` does. Each
    /// epoch's first call has `batches.start == 0`.
    fn run_batches(
        &mut self,
        data: &mut Self::Data<'_>,
        order: Option<&[usize]>,
        batches: std::ops::Range<usize>,
        losses: &mut Vec<f64>,
    ) -> Result<()>;

    /// Copies of the parameters.
    fn read_params(&self) -> Result<Params<Self::T>>;
    /// Replaces the parameters after checking their shapes and finiteness; optimizer state is kept.
    fn write_params(&mut self, params: Params<Self::T>) -> Result<()>;
    /// Copies of the optimizer state and the update count.
    fn read_state(&self) -> Result<OptimizerState<Self::T>>;
    /// Restores what `read_state` returned, after checking its layout.
    fn write_state(&mut self, state: OptimizerState<Self::T>) -> Result<()>;
    /// Sets the optimizer's learning rate for the next steps (checked: finite, > 0), keeping its state.
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// How many members of a population this device trains side by side on batches of `rows` rows (see
    /// `train_together`); 1: each member trains alone.
    fn together(_config: &Config, _rows: usize) -> usize
    where
        Self: Sized,
    {
        1
    }

    /// `train` of each of `members` (networks of one population, at most `together` of them) side by
    /// side, each exactly as it would train alone, member i's losses written to row i of `losses` (rows
    /// of `steps`); None when the device cannot take these members together, which then train one by one.
    fn train_together(
        _members: &mut [Self],
        _x: &[Self::T],
        _t: &[Self::T],
        _steps: usize,
        _losses: &mut [f64],
        _keep_going: KeepGoing,
    ) -> Option<Vec<Result<()>>>
    where
        Self: Sized,
    {
        None
    }

    /// `fit_with` of each of `members` (networks of one population, at most `together` of them) on
    /// `data` (member i on its own `rows` of it when given), side by side, each exactly as it would fit
    /// alone with its own seed and, when `lrs` lists them, its own rates; member i's epoch losses written
    /// to row i of `losses` (rows of `plan.epochs`). None when the device cannot take these members
    /// together, which then fit one by one.
    fn fit_together(
        _members: &mut [Self],
        _data: crate::population::Data<'_, Self::T>,
        _plan: FitPlan,
        _seeds: &[u64],
        _lrs: Option<&[Vec<f64>]>,
        _losses: &mut [f64],
        _keep_going: KeepGoing,
    ) -> Option<Vec<Result<()>>>
    where
        Self: Sized,
    {
        None
    }

    /// The outputs on the batch `x` of each of `members` (networks of one population), one member's after
    /// another, or with targets `t` each member's loss, computed together; None when the device cannot
    /// take them together, which then compute one by one. Inputs are checked by the caller.
    fn evaluate_together(_members: &[Self], _x: &[Self::T], _t: Option<&[Self::T]>) -> Option<Result<Vec<Self::T>>>
    where
        Self: Sized,
    {
        None
    }

    /// Outputs for a batch `x` (B, n_in) row-major.
    fn forward(&self, x: &[Self::T]) -> Result<Vec<Self::T>> {
        let rows = crate::network::check_rows("X", x, self.config().n_in)?;
        self.outputs(x, rows)
    }

    /// The loss of the network on (x, t) without training.
    fn loss(&self, x: &[Self::T], t: &[Self::T]) -> Result<f64> {
        let rows = self.config().check_pair(x, t, "T")?;
        self.batch_loss(x, t, rows)
    }

    /// One training step on a batch; returns the loss of its forward pass, taken before the update.
    fn train_step(&mut self, x: &[Self::T], t: &[Self::T]) -> Result<f64> {
        let rows = self.config().check_pair(x, t, "T")?;
        let mut losses = Vec::with_capacity(1);
        match self.run_steps(x, t, rows, 1, &mut losses) {
            Ok(()) => losses.pop().ok_or(Error::Gpu { op: "training", message: "no loss came back".into() }),
            Err(e) => Err(e.at_step(0, vec![])),
        }
    }

    /// `steps` training steps on the same batch; returns the loss of each.
    fn train(&mut self, x: &[Self::T], t: &[Self::T], steps: usize, keep_going: KeepGoing) -> Result<Vec<f64>> {
        let mut losses = Vec::new();
        memory::reserve("losses", &mut losses, steps, 1)?;
        self.train_on(x, t, steps, losses, keep_going)
    }

    /// The rest of `train`'s `steps` steps when those whose `losses` are given are done.
    fn train_on(
        &mut self,
        x: &[Self::T],
        t: &[Self::T],
        steps: usize,
        mut losses: Vec<f64>,
        keep_going: KeepGoing,
    ) -> Result<Vec<f64>> {
        let rows = self.config().check_pair(x, t, "T")?;
        self.whole_call(rows, keep_going, move |net, keep_going| {
            while losses.len() < steps {
                if !keep_going() {
                    return Err(Error::Interrupted { completed: losses.len() });
                }
                let run = net.steps_per_poll(rows).max(1).min(steps - losses.len());
                if let Err(e) = net.run_steps(x, t, rows, run, &mut losses) {
                    return Err(e.at_step(losses.len(), losses));
                }
            }
            Ok(losses)
        })
    }

    /// Passes over (x, y) in mini-batches as `plan` says (see `FitPlan`), shuffled with `seed`. Returns
    /// each epoch's mean loss over its samples, as measured in the forward passes of its steps. Errors
    /// number steps from this call's first.
    fn fit(
        &mut self,
        x: &[Self::T],
        y: &[Self::T],
        plan: FitPlan,
        seed: u64,
        keep_going: KeepGoing,
    ) -> Result<Vec<f64>> {
        self.fit_with(x, y, plan, seed, FitExtras::default(), keep_going)
    }

    /// `fit` with a learning rate per epoch and sample weights (see `FitExtras`); an epoch's loss is then
    /// the weighted mean over its samples. After an error the network keeps the rate of the epoch it was in.
    fn fit_with(
        &mut self,
        x: &[Self::T],
        y: &[Self::T],
        plan: FitPlan,
        seed: u64,
        extras: FitExtras<'_, Self::T>,
        keep_going: KeepGoing,
    ) -> Result<Vec<f64>> {
        let FitPlan { epochs, batch_size, shuffle, first_epoch } = plan;
        let n = self.config().check_pair(x, y, "Y")?;
        if batch_size == 0 {
            return Err(Error::config("batch_size", "a positive integer", 0));
        }
        if !extras.lrs.is_empty() && extras.lrs.len() < epochs {
            return Err(Error::config("lrs", format!("a rate for each of the {epochs} epochs"), extras.lrs.len()));
        }
        let factors = match extras.sample_weight {
            // Equal weights change nothing: train exactly as without them.
            Some(w) => Some(sample_factors(w, n)?).filter(|_| w.iter().any(|&v| v != w[0])),
            None => None,
        };
        let n_batches = n.div_ceil(batch_size);
        self.whole_call(batch_size.min(n), keep_going, move |net, keep_going| {
            let mut data = net.prepare(x, y, factors.as_deref(), n, batch_size)?;
            let mut epoch_losses = Vec::new();
            memory::reserve("losses", &mut epoch_losses, epochs, 1)?;
            let (mut order, mut step_losses) = (Vec::new(), Vec::with_capacity(n_batches));
            for epoch in first_epoch..first_epoch + epochs {
                if shuffle {
                    epoch_order(n, seed, epoch, &mut order);
                }
                let done = (epoch - first_epoch) * n_batches;
                if let Some(&lr) = extras.lrs.get(epoch - first_epoch) {
                    net.set_lr(lr)?;
                }
                step_losses.clear();
                while step_losses.len() < n_batches {
                    if !keep_going() {
                        return Err(Error::Interrupted { completed: done + step_losses.len() });
                    }
                    let start = step_losses.len();
                    let every = net.steps_per_poll(batch_size.min(n)).max(1);
                    let batches = start..(start + every).min(n_batches);
                    let shuffled = if shuffle { Some(&order[..]) } else { None };
                    if let Err(e) = net.run_batches(&mut data, shuffled, batches, &mut step_losses) {
                        return Err(e.at_step(done + step_losses.len(), epoch_losses));
                    }
                }
                epoch_losses.push(epoch_loss(step_losses.iter().copied(), n, batch_size));
            }
            Ok(epoch_losses)
        })
    }

    /// One training step on one sample, returning every intermediate (computed by the CPU network from
    /// this network's weights and optimizer state: a teaching tool, not a hot path). With `apply` the
    /// network takes the step; without, it is left as it was and the trace shows what the step would do.
    fn explain_step(&mut self, x: &[Self::T], t: &[Self::T], apply: bool) -> Result<StepTrace<Self::T>> {
        let mut cpu: Network<Self::T> = to_cpu(self)?;
        let trace = cpu.trace_step(x, t)?;
        if apply {
            let (state, updates) = cpu.optimizer_state();
            let state = (state.clone(), updates);
            self.write_params(cpu.params().clone())?;
            self.write_state(state)?;
        }
        Ok(trace)
    }
}

/// An epoch's loss from its batches' losses in order: the mean over its `n` samples in batches of
/// `batch_size` (the last may be shorter).
pub(crate) fn epoch_loss(batch_losses: impl Iterator<Item = f64>, n: usize, batch_size: usize) -> f64 {
    let rows = |b: usize| (n - b * batch_size).min(batch_size);
    let total: f64 = batch_losses.enumerate().map(|(b, l)| l * rows(b) as f64).sum();
    total / n as f64
}

/// Each sample's factor on its loss and gradient, `w_i n / sum(w)` (see `FitExtras::sample_weight`),
/// after checking the weights: one per sample, finite, >= 0, with a positive sum.
fn sample_factors<T: Scalar>(w: &[T], n: usize) -> Result<Vec<T>> {
    if w.len() != n {
        return Err(Error::ShapeMismatch {
            arg: "sample_weight",
            expected: format!("({n},), one weight per sample"),
            got: format!("{} values", w.len()),
        });
    }
    crate::network::check_finite("sample_weight", w, 1)?;
    if let Some(&v) = w.iter().find(|&&v| v < T::zero()) {
        return Err(Error::config("sample_weight", "weights >= 0", v.to_f64().unwrap_or(f64::NAN)));
    }
    let total: f64 = w.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).sum();
    if total <= 0.0 || !total.is_finite() {
        return Err(Error::config("sample_weight", "weights with a positive, finite sum", total));
    }
    let scale = n as f64 / total;
    memory::collect("sample weights", n, w.iter().map(|&v| T::of(v.to_f64().unwrap_or(f64::NAN) * scale)))
}

/// A CPU copy of any network, in element type `U` (rounded when narrowing): parameters, optimizer state
/// and update count.
pub fn to_cpu<B: Backend + ?Sized, U: Scalar>(net: &B) -> Result<Network<U>> {
    let cast = |v: &Vec<B::T>| {
        memory::collect("a copy of the network", v.len(), v.iter().map(|&a| U::of(a.to_f64().unwrap_or(f64::NAN))))
    };
    let mut params: Params<U> = Default::default();
    for (p, from) in params.iter_mut().zip(net.read_params()?.iter()) {
        *p = cast(from)?;
    }
    let mut cpu = Network::with_params(*net.config(), params)?;
    let (from, updates) = net.read_state()?;
    let mut state: [Vec<Vec<U>>; 4] = Default::default();
    for (slots, from) in state.iter_mut().zip(&from) {
        for s in from {
            slots.push(cast(s)?);
        }
    }
    cpu.set_optimizer_state(state, updates)?;
    Ok(cpu)
}

impl Error {
    /// Places a divergence at step `step` of a loop, with the losses recorded before it.
    pub(crate) fn at_step(self, step: usize, losses: Vec<f64>) -> Self {
        match self {
            Self::Diverged { what, .. } => Self::Diverged { step, what, losses },
            other => other,
        }
    }

    /// The error of training that went on from `steps` steps done with these `losses`: its step counts
    /// and losses as the whole run's.
    pub(crate) fn after(self, steps: usize, losses: &[f64]) -> Self {
        match self {
            Self::Diverged { step, what, losses: later } => {
                Self::Diverged { step: steps + step, what, losses: [losses, &later].concat() }
            }
            Self::Interrupted { completed } => Self::Interrupted { completed: steps + completed },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
