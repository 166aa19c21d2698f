//! The one-sample step of `tiny` for up to `LANES` networks side by side: member l of a population is
//! lane l of every value, so that one vector instruction does the same operation for all of them.
//! Each lane computes exactly what `tiny`'s step computes for its network alone (the same operations in
//! the same order, elementwise across lanes), so members train bit for bit as networks. The loops run
//! over widths with the lanes innermost, compiled again for AVX2 and AVX-512 and chosen at run time,
//! since the wheel targets baseline x86-64.
//!
//! Only the common case runs here: optimizers of one kind, every step on one sample per member (`train`
//! on one sample, or `fit` in one-sample batches, each lane shuffling its own way). A step where any
//! lane's loss or new value is not finite is not committed: the members go back to their networks (at
//! their last completed step, or for `fit` at the start of the epoch) and go on alone, where the
//! network's own step reports the divergence.

// Everything a step calls is inlined into the functions compiled for AVX2 and AVX-512, or it would run
// with baseline instructions.
#![allow(clippy::inline_always)]

use super::Network;
use crate::activation::Activation;
use crate::backend::{Backend, FitPlan, KeepGoing};
use crate::error::{Error, Result};
use crate::linalg::Scalar;
use crate::loss::{square, Loss};
use crate::network::{Bias, Config};
use crate::optim::{self, AdamStep, Optimizer, Rule};
use crate::population::{Data, Fit};
use crate::simd;

/// Members per group: two AVX-512 registers of f64 (four AVX2 ones), so that two independent chains of
/// divisions (sigmoid, exp) overlap. Measured on the 2-2-2, one thread: 56 ns a member-step with 8 lanes,
/// 48 with 16.
pub const LANES: usize = 16;

/// Members with every width up to this go side by side (the widths the lanes were measured on); wider
/// ones train alone, on the network's one-sample path up to its `tiny::WIDEST`.
const WIDEST: usize = 16;

/// One value of every lane.
type V<T> = [T; LANES];

/// `$body` with `$act` bound to a constant in each arm, so that the matches on it inside the body's
/// loops fold away (a match per lane keeps the lanes from vectorising). A macro, not a closure, since
/// a closure called from five arms is not always inlined, and then runs without the wide instructions.
macro_rules! constant {
    ($act:expr, |$a:ident| $body:block) => {
        constant!(@arms $act, $a, $body, Sigmoid Tanh Relu Identity Softmax)
    };
    (@arms $act:expr, $a:ident, $body:block, $($variant:ident)*) => {
        match $act {
            $(Activation::$variant => {
                let $a = Activation::$variant;
                $body
            })*
        }
    };
}

/// A group's optimizer constants for one update, lane by lane.
#[derive(Clone, Copy)]
enum Rules<T> {
    /// Every lane's the same (one rate for all, the common case): the network's own update runs over
    /// the interleaved values as one long array.
    Same(Rule<T>),
    Sgd {
        lr: V<T>,
        wd: V<T>,
    },
    Momentum {
        lr: V<T>,
        mu: V<T>,
        wd: V<T>,
        nesterov: bool,
    },
    Adam(AdamStep<V<T>>),
}

/// A group of networks of one shape, their values interleaved lane by lane.
#[derive(Clone)]
struct Lanes<T> {
    config: Config,
    trained: [bool; 4],
    params: [Vec<V<T>>; 4],
    /// Gradients, then the new values (swapped in when every one is finite).
    grads: [Vec<V<T>>; 4],
    state: [Vec<Vec<V<T>>>; 4],
    state_next: [Vec<Vec<V<T>>>; 4],
    optimizers: [Optimizer; LANES],
    updates: [u64; LANES],
    /// One step's activations and deltas: h, z2, o, dz2, dz1.
    work: [Vec<V<T>>; 5],
}

impl<T: Scalar> Network<T> {
    /// How many networks like this one train side by side on batches of `rows` rows.
    pub(super) fn lanes(config: &Config, rows: usize) -> usize {
        if rows == 1 && [config.n_in, config.n_hidden, config.n_out].iter().all(|&n| n <= WIDEST) {
            LANES
        } else {
            1
        }
    }

    /// Whether `members` (of one shape) can go side by side on batches of `rows` rows: at most `LANES` of
    /// them, tiny, with optimizers of one kind.
    fn side_by_side(members: &[Self], rows: usize) -> bool {
        let kind = |m: &Self| match m.config.optimizer {
            Optimizer::Sgd { momentum, nesterov, .. } => (0, momentum != 0.0, nesterov),
            Optimizer::Adam { .. } => (1, true, false),
        };
        match members.first() {
            Some(first) => {
                members.len() <= LANES
                    && Self::lanes(&first.config, rows) > 1
                    && members.iter().all(|m| kind(m) == kind(first))
            }
            None => false,
        }
    }

    /// `train` of each of `members` (at most `LANES`, of one shape) on the one sample (x, t), side by
    /// side, member i's losses written to row i of `losses` (rows of `steps`); None when their optimizers
    /// are of different kinds. Polls `keep_going` as `train` does. Also returns how many steps they took
    /// side by side (the rest, after a step one of them failed, alone).
    pub(crate) fn train_lanes(
        members: &mut [Self],
        x: &[T],
        t: &[T],
        steps: usize,
        losses: &mut [f64],
        keep_going: KeepGoing,
    ) -> Option<(Vec<Result<()>>, usize)> {
        let rows = members.first()?.config.check_pair(x, t, "T").ok()?;
        if !Self::side_by_side(members, rows) {
            return None;
        }
        let rows: Vec<&mut [f64]> = losses.chunks_exact_mut(steps.max(1)).take(members.len()).collect();
        if steps == 0 {
            return Some((members.iter().map(|_| Ok(())).collect(), 0));
        }
        let mut lanes = Lanes::pack(members);
        let mut feed = Repeat { x: broadcast(x), t: broadcast(t), rows, at: 0 };
        let every = (members[0].steps_per_poll(1) / LANES).max(1);
        let (mut done, mut stopped) = (0, false);
        while done < steps {
            if !keep_going() {
                stopped = true;
                break;
            }
            let run = every.min(steps - done);
            feed.at = done;
            let ran = lanes.run(run, &mut feed);
            done += ran;
            if ran < run {
                break; // a lane cannot complete step `done`
            }
        }
        lanes.unpack(members);
        let results = members.iter_mut().zip(feed.rows).map(|(m, row)| {
            if stopped {
                Err(Error::Interrupted { completed: done })
            } else if done == steps {
                Ok(())
            } else {
                // Alone from the step that failed, which the network's own step reports.
                let rest = m.train_on(x, t, steps, row[..done].to_vec(), keep_going)?;
                row.copy_from_slice(&rest);
                Ok(())
            }
        });
        Some((results.collect(), done))
    }

    /// `fit_with` (no sample weights) of each of `members` (at most `LANES`, of one shape) on `data`
    /// (member i on its own `rows` of it when given, all of one count) in one-sample batches, side by
    /// side, each shuffling with its own seed and taking its own rate per epoch when `lrs` lists them;
    /// member i's epoch losses written to row i of `losses` (rows of `plan.epochs`). None when they
    /// cannot go side by side (batches of more than one row, sample weights, rows of different counts,
    /// optimizers of different kinds, a rate the member would refuse). Polls `keep_going` as `fit` does.
    /// Also returns how many steps they took side by side. When a step cannot be completed in some lane, every
    /// member goes back to the start of that epoch and fits the rest alone, so that the network's own
    /// step reports the failure where it would alone.
    pub(crate) fn fit_lanes(
        members: &mut [Self],
        data: Data<'_, T>,
        plan: FitPlan,
        seeds: &[u64],
        lrs: Option<&[Vec<f64>]>,
        losses: &mut [f64],
        keep_going: KeepGoing,
    ) -> Option<(Vec<Result<()>>, usize)> {
        let FitPlan { epochs, batch_size, shuffle, first_epoch } = plan;
        let Data { x, y, rows: picks, .. } = data;
        let fit = Fit { data, plan, seeds, lrs };
        let n = fit.rows(members).filter(|&n| Self::side_by_side(members, batch_size.min(n)))?;
        let mut rows: Vec<&mut [f64]> = losses.chunks_exact_mut(epochs.max(1)).take(members.len()).collect();
        if epochs == 0 {
            return Some((members.iter().map(|_| Ok(())).collect(), 0));
        }
        let (config, size) = (members[0].config, members.len());
        let mut lanes = Lanes::pack(members);
        let mut feed = Batches {
            x,
            y,
            n_in: config.n_in,
            n_out: config.n_out,
            orders: vec![Vec::new(); if shuffle { LANES } else { 0 }],
            picks: picks.map_or_else(Vec::new, |p| (0..LANES).map(|l| p[l.min(size - 1)]).collect()),
            first: 0,
            xs: vec![[T::zero(); LANES]; config.n_in],
            ys: vec![[T::zero(); LANES]; config.n_out],
            losses: Vec::with_capacity(n),
        };
        let every = (members[0].steps_per_poll(1) / LANES).max(1);
        let (mut epoch, mut stopped) = (0, false);
        'epochs: while epoch < epochs {
            let start = lanes.clone();
            for (l, order) in feed.orders.iter_mut().enumerate() {
                crate::network::epoch_order(n, seeds[l.min(size - 1)], first_epoch + epoch, order);
            }
            if let Some(lrs) = lrs {
                for (l, o) in lanes.optimizers.iter_mut().enumerate() {
                    if let Some(&lr) = lrs[l.min(size - 1)].get(epoch) {
                        *o = o.with_lr(lr);
                    }
                }
            }
            feed.losses.clear();
            while feed.losses.len() < n {
                if !keep_going() {
                    stopped = true;
                    break 'epochs;
                }
                feed.first = feed.losses.len();
                let run = every.min(n - feed.first);
                if lanes.run(run, &mut feed) < run {
                    lanes = start; // a lane cannot complete this epoch
                    break 'epochs;
                }
            }
            for (l, row) in rows.iter_mut().enumerate() {
                row[epoch] = crate::backend::epoch_loss(feed.losses.iter().map(|v| v[l]), n, batch_size);
            }
            epoch += 1;
        }
        lanes.unpack(members);
        let done = epoch * n + if stopped { feed.losses.len() } else { 0 };
        let results = members.iter_mut().zip(rows).enumerate().map(|(i, (m, row))| {
            if stopped {
                Err(Error::Interrupted { completed: done })
            } else if epoch == epochs {
                Ok(())
            } else {
                fit.alone(m, i, epoch, row, keep_going)
            }
        });
        Some((results.collect(), done))
    }
}

/// Where a run of steps takes each step's sample from, and where each step's losses go.
trait Feed<T> {
    /// Every lane's sample (x, t) for step `step` of the run.
    fn sample(&mut self, step: usize) -> (&[V<T>], &[V<T>]);
    /// Every lane's loss at step `step` of the run.
    fn loss(&mut self, step: usize, loss: V<f64>);
}

/// `train`'s: one sample for every step, and member l's losses into `rows[l]`, the run's first at `at`.
struct Repeat<'a, T> {
    x: Vec<V<T>>,
    t: Vec<V<T>>,
    rows: Vec<&'a mut [f64]>,
    at: usize,
}

impl<T> Feed<T> for Repeat<'_, T> {
    #[inline(always)]
    fn sample(&mut self, _: usize) -> (&[V<T>], &[V<T>]) {
        (&self.x, &self.t)
    }

    #[inline(always)]
    fn loss(&mut self, step: usize, loss: V<f64>) {
        for (row, loss) in self.rows.iter_mut().zip(loss) {
            row[self.at + step] = loss;
        }
    }
}

/// `fit`'s in one-sample batches: lane l's sample at batch b is its row `orders[l][b]` (row b when not
/// shuffled), the run's first batch being `first`; its rows are `picks[l]` of (x, y), or all of them.
/// The epoch's losses are kept.
struct Batches<'a, T> {
    x: &'a [T],
    y: &'a [T],
    n_in: usize,
    n_out: usize,
    /// Each lane's order of its rows this epoch; none when not shuffled.
    orders: Vec<Vec<usize>>,
    /// Each lane's rows of (x, y); none when every lane has them all.
    picks: Vec<&'a [usize]>,
    first: usize,
    xs: Vec<V<T>>,
    ys: Vec<V<T>>,
    losses: Vec<V<f64>>,
}

impl<T: Scalar> Feed<T> for Batches<'_, T> {
    #[inline(always)]
    fn sample(&mut self, step: usize) -> (&[V<T>], &[V<T>]) {
        let b = self.first + step;
        for l in 0..LANES {
            let r = self.orders.get(l).map_or(b, |order| order[b]);
            let r = self.picks.get(l).map_or(r, |rows| rows[r]);
            let (x, y) = (&self.x[r * self.n_in..][..self.n_in], &self.y[r * self.n_out..][..self.n_out]);
            self.xs.iter_mut().zip(x).for_each(|(v, &x)| v[l] = x);
            self.ys.iter_mut().zip(y).for_each(|(v, &y)| v[l] = y);
        }
        (&self.xs, &self.ys)
    }

    #[inline(always)]
    fn loss(&mut self, _: usize, loss: V<f64>) {
        self.losses.push(loss);
    }
}

/// The sample as every lane sees it.
fn broadcast<T: Scalar>(v: &[T]) -> Vec<V<T>> {
    v.iter().map(|&v| [v; LANES]).collect()
}

impl<T: Scalar> Lanes<T> {
    /// The members' values, lane l from member l; lanes past the last member repeat it.
    fn pack(members: &[Network<T>]) -> Self {
        let member = |l: usize| &members[l.min(members.len() - 1)];
        let interleave = |of: &dyn Fn(&Network<T>) -> &[T]| -> Vec<V<T>> {
            (0..of(member(0)).len()).map(|e| std::array::from_fn(|l| of(member(l))[e])).collect()
        };
        let first = member(0);
        let (n_hidden, n_out) = (first.config.n_hidden, first.config.n_out);
        Self {
            config: first.config,
            trained: first.trained,
            params: std::array::from_fn(|i| interleave(&|m| &m.params[i])),
            // Written by every step before they are read.
            grads: std::array::from_fn(|i| vec![[T::zero(); LANES]; first.grads[i].len()]),
            state: std::array::from_fn(|i| {
                (0..first.state[i].len()).map(|s| interleave(&|m| &m.state[i][s])).collect()
            }),
            state_next: std::array::from_fn(|i| {
                first.state[i].iter().map(|s| vec![[T::zero(); LANES]; s.len()]).collect()
            }),
            optimizers: std::array::from_fn(|l| member(l).config.optimizer),
            updates: std::array::from_fn(|l| member(l).updates),
            work: [n_hidden, n_out, n_out, n_out, n_hidden].map(|n| vec![[T::zero(); LANES]; n]),
        }
    }

    /// Writes lane l back into member l.
    fn unpack(&self, members: &mut [Network<T>]) {
        for (l, m) in members.iter_mut().enumerate() {
            for i in 0..4 {
                m.params[i].iter_mut().zip(&self.params[i]).for_each(|(p, v)| *p = v[l]);
                for (s, v) in m.state[i].iter_mut().zip(&self.state[i]) {
                    s.iter_mut().zip(v).for_each(|(s, v)| *s = v[l]);
                }
            }
            m.updates = self.updates[l];
            m.config.optimizer = self.optimizers[l]; // a rate set by `fit`
            m.changed();
        }
    }

    /// Up to `steps` steps, each on `feed`'s sample and giving `feed` its losses; stops before a step
    /// that any lane cannot complete. Returns the steps done. Compiled for the widest vectors the CPU
    /// has (see `simd`).
    fn run(&mut self, steps: usize, feed: &mut impl Feed<T>) -> usize {
        simd::widest(Run { lanes: self, steps, feed })
    }

    #[inline(always)]
    fn run_steps(&mut self, steps: usize, feed: &mut impl Feed<T>) -> usize {
        // Adam's constants change with every update, SGD's stay.
        let adam = matches!(self.optimizers[0], Optimizer::Adam { .. });
        let mut rules = self.rules();
        for done in 0..steps {
            if adam && done > 0 {
                rules = self.rules();
            }
            let (x, t) = feed.sample(done);
            let Some(loss) = self.step(x, t, &rules) else { return done };
            feed.loss(done, loss);
        }
        steps
    }

    /// One step of every lane (`tiny`'s step, lane by lane); None, with nothing committed,
    /// when any lane's loss or new values are not finite.
    #[inline(always)]
    fn step(&mut self, x: &[V<T>], t: &[V<T>], rules: &Rules<T>) -> Option<V<f64>> {
        let c = self.config;
        let (n_in, n_hidden) = (c.n_in, c.n_hidden);
        let Self { params: [w1, b1, w2, b2], grads, work: [h, z2, o, dz2, dz1], .. } = self;
        affine(x, w1, b1, c.bias, h);
        activate(c.hidden_activation, h);
        affine(h, w2, b2, c.bias, z2);
        o.copy_from_slice(z2);
        activate(c.output_activation, o);

        let loss = delta(&c, z2, o, t, dz2);
        if loss.iter().any(|l| !l.is_finite()) {
            return None;
        }
        let [gw1, gb1, gw2, gb2] = grads;
        for (k, d) in dz2.iter().enumerate() {
            let row = k * n_hidden..(k + 1) * n_hidden;
            for (g, h) in gw2[row.clone()].iter_mut().zip(h.iter()) {
                simd::whole_rows();
                *g = each(|l| T::zero() + d[l] * h[l]);
            }
            for (s, w) in dz1.iter_mut().zip(&w2[row]) {
                simd::whole_rows();
                *s = if k == 0 { each(|l| T::zero() + d[l] * w[l]) } else { each(|l| s[l] + d[l] * w[l]) };
            }
        }
        constant!(c.hidden_activation, |act| {
            for (d, h) in dz1.iter_mut().zip(h.iter()) {
                simd::whole_rows();
                *d = each(|l| d[l] * act.derivative(h[l]));
            }
        });
        for (j, d) in dz1.iter().enumerate() {
            for (g, x) in gw1[j * n_in..(j + 1) * n_in].iter_mut().zip(x) {
                simd::whole_rows();
                *g = each(|l| T::zero() + d[l] * x[l]);
            }
        }
        if c.train_bias {
            bias_grad(dz1, gb1);
            bias_grad(dz2, gb2);
        }
        self.update(rules).then_some(loss)
    }

    /// `Network::update` lane by lane: commits only if every lane's new values are finite.
    #[inline(always)]
    fn update(&mut self, rules: &Rules<T>) -> bool {
        // 0 while every new value is finite, NaN after one that is not (v - v is 0 only for finite v):
        // a sum vectorises where a flag per lane does not.
        let mut check = [T::zero(); LANES];
        #[allow(clippy::eq_op)] // v - v: 0, or NaN for a value that is not finite
        let mut note = |v: &V<T>| check = each(|l| check[l] + (v[l] - v[l]));
        for i in (0..4).filter(|&i| self.trained[i]) {
            let (p, g) = (&self.params[i], &mut self.grads[i]);
            // Each new array takes its own pass over the lanes (the shared terms computed again), and
            // Nesterov's test sits outside the loop, so that every pass vectorises.
            match *rules {
                Rules::Same(rule) => {
                    let (p, g) = (p.as_flattened(), g.as_flattened_mut());
                    let (s, n) = (&self.state[i], &mut self.state_next[i]);
                    let ok = match (&s[..], &mut n[..]) {
                        ([], []) => rule.kernel(p, g, (&[], &[]), (&mut [], &mut [])),
                        ([s], [n]) => rule.kernel(p, g, (s.as_flattened(), &[]), (n.as_flattened_mut(), &mut [])),
                        ([m, v], [mn, vn]) => rule.kernel(
                            p,
                            g,
                            (m.as_flattened(), v.as_flattened()),
                            (mn.as_flattened_mut(), vn.as_flattened_mut()),
                        ),
                        _ => false,
                    };
                    if !ok {
                        return false;
                    }
                }
                Rules::Sgd { lr, wd } => {
                    for (g, p) in g.iter_mut().zip(p) {
                        simd::whole_rows();
                        *g = each(|l| optim::sgd(p[l], g[l], lr[l], wd[l]));
                        note(g);
                    }
                }
                Rules::Momentum { lr, mu, wd, nesterov } => {
                    let (b, b_next) = (&self.state[i][0], &mut self.state_next[i][0]);
                    let mut update = |g: &mut V<T>, p: &V<T>, b: &V<T>, b_next: &mut V<T>, nesterov: bool| {
                        let step = |l: usize| optim::momentum(p[l], g[l], b[l], lr[l], mu[l], wd[l], nesterov);
                        let (new, b) = (each(|l| step(l).0), each(|l| step(l).1));
                        *b_next = each(|l| optim::kept(b[l]));
                        note(&new);
                        note(&b);
                        *g = new;
                    };
                    for ((g, p), (b, b_next)) in g.iter_mut().zip(p).zip(b.iter().zip(b_next)) {
                        simd::whole_rows();
                        if nesterov {
                            update(g, p, b, b_next, true);
                        } else {
                            update(g, p, b, b_next, false);
                        }
                    }
                }
                Rules::Adam(a) => {
                    let ([m, v], [m_next, v_next]) = (&self.state[i][..], &mut self.state_next[i][..]) else {
                        return false;
                    };
                    for (((g, p), (m, v)), (m_next, v_next)) in
                        g.iter_mut().zip(p).zip(m.iter().zip(v)).zip(m_next.iter_mut().zip(v_next.iter_mut()))
                    {
                        simd::whole_rows();
                        let step = |l: usize| {
                            let lane = AdamStep {
                                step_size: a.step_size[l],
                                bc2_sqrt: a.bc2_sqrt[l],
                                b2: a.b2[l],
                                w1: a.w1[l],
                                w2: a.w2[l],
                                eps: a.eps[l],
                                wd: a.wd[l],
                            };
                            optim::adam(p[l], g[l], m[l], v[l], lane)
                        };
                        let (new, m, v) = (each(|l| step(l).0), each(|l| step(l).1), each(|l| step(l).2));
                        *m_next = each(|l| optim::kept(m[l]));
                        *v_next = each(|l| optim::kept(v[l]));
                        note(&new);
                        note(&m);
                        note(&v);
                        *g = new;
                    }
                }
            }
        }
        if check.iter().any(|c| *c != T::zero()) {
            return false;
        }
        for i in (0..4).filter(|&i| self.trained[i]) {
            std::mem::swap(&mut self.params[i], &mut self.grads[i]);
            std::mem::swap(&mut self.state[i], &mut self.state_next[i]);
        }
        self.updates.iter_mut().for_each(|u| *u += 1);
        true
    }

    /// Every lane's constants for its next update (`Optimizer::rule`). Every lane's optimizer is of lane
    /// 0's kind (`train_lanes` checks).
    #[inline(always)]
    fn rules(&self) -> Rules<T> {
        let rule: V<Rule<T>> = std::array::from_fn(|l| self.optimizers[l].rule(self.updates[l] + 1));
        if rule.iter().all(|r| *r == rule[0]) {
            return Rules::Same(rule[0]);
        }
        match rule[0] {
            Rule::Sgd { mu, nesterov, .. } => {
                let part = |f: fn(T, T, T) -> T| {
                    each(|l| match rule[l] {
                        Rule::Sgd { lr, mu, wd, .. } => f(lr, mu, wd),
                        Rule::Adam(_) => T::zero(),
                    })
                };
                let (lr, wd) = (part(|lr, _, _| lr), part(|_, _, wd| wd));
                if mu == T::zero() {
                    Rules::Sgd { lr, wd }
                } else {
                    Rules::Momentum { lr, mu: part(|_, mu, _| mu), wd, nesterov }
                }
            }
            Rule::Adam(first) => {
                let a: V<AdamStep<T>> = each(|l| if let Rule::Adam(a) = rule[l] { a } else { first });
                Rules::Adam(AdamStep {
                    step_size: each(|l| a[l].step_size),
                    bc2_sqrt: each(|l| a[l].bc2_sqrt),
                    b2: each(|l| a[l].b2),
                    w1: each(|l| a[l].w1),
                    w2: each(|l| a[l].w2),
                    eps: each(|l| a[l].eps),
                    wd: each(|l| a[l].wd),
                })
            }
        }
    }
}

/// A run of steps of a group (see `Lanes::run`).
struct Run<'a, T, F> {
    lanes: &'a mut Lanes<T>,
    steps: usize,
    feed: &'a mut F,
}

impl<T: Scalar, F: Feed<T>> simd::Kernel for Run<'_, T, F> {
    type Output = usize;

    #[inline(always)]
    fn run(self) -> usize {
        self.lanes.run_steps(self.steps, self.feed)
    }
}

/// A value of every lane, lane l being `f(l)`.
#[inline(always)]
fn each<R: Copy + Default>(mut f: impl FnMut(usize) -> R) -> V<R> {
    // A plain loop: `std::array::from_fn` is not always inlined, and then nothing vectorises.
    let mut out = [R::default(); LANES];
    for (l, out) in out.iter_mut().enumerate() {
        *out = f(l);
    }
    out
}

/// An affine layer as `tiny` computes it (each sum from zero in index order, then the bias), lane by lane.
#[inline(always)]
fn affine<T: Scalar>(x: &[V<T>], w: &[V<T>], b: &[V<T>], bias: Bias, z: &mut [V<T>]) {
    let n = x.len();
    for (j, z) in z.iter_mut().enumerate() {
        let mut dot = [T::zero(); LANES];
        for (x, w) in x.iter().zip(&w[j * n..(j + 1) * n]) {
            dot = each(|l| dot[l] + x[l] * w[l]);
        }
        *z = match bias {
            Bias::PerNeuron => each(|l| dot[l] + b[j][l]),
            Bias::Shared => each(|l| dot[l] + b[0][l]),
            Bias::None => dot,
        };
    }
}

/// `Activation::apply` on one sample of every lane, straight over the lanes (softmax as `softmax` does it
/// on each lane's row).
#[inline(always)]
fn activate<T: Scalar>(act: Activation, z: &mut [V<T>]) {
    if act == Activation::Softmax {
        let max = row_max(z);
        let mut sum = [T::zero(); LANES];
        for v in z.iter_mut() {
            *v = each(|l| (v[l] - max[l]).exp_nonpos());
            sum = each(|l| sum[l] + v[l]);
        }
        for v in z.iter_mut() {
            *v = each(|l| v[l] / sum[l]);
        }
    } else {
        // A value of every lane at a time: over the whole flattened slice, a short one would run in the
        // scalar remainder of a wide vector loop.
        for v in z.iter_mut() {
            simd::whole_rows();
            act.apply_serial(v, 1);
        }
    }
}

/// Each lane's largest value of a row, folded as `softmax` and `log_sum_exp` fold it.
#[inline(always)]
fn row_max<T: Scalar>(row: &[V<T>]) -> V<T> {
    let mut max = [T::neg_infinity(); LANES];
    for v in row {
        max = each(|l| max[l].max(v[l]));
    }
    max
}

/// `Loss::delta` on one sample of every lane: the squared errors and cross-entropy straight over the
/// lanes (but for cross-entropy's logarithm, a call per lane), binary cross-entropy lane by lane. Each
/// lane's loss.
#[inline(always)]
fn delta<T: Scalar>(c: &Config, z: &[V<T>], o: &[V<T>], t: &[V<T>], dz: &mut [V<T>]) -> V<f64> {
    let (loss, act, n_out) = (c.loss, c.output_activation, c.n_out);
    match loss {
        Loss::HalfSse | Loss::Mse => {
            let scale: T = loss.sse_scale(1, n_out);
            let mut sse = [0.0; LANES];
            constant!(act, |act| {
                for ((d, o), t) in dz.iter_mut().zip(o).zip(t) {
                    simd::whole_rows();
                    let e = each(|l| o[l] - t[l]);
                    *d = each(|l| e[l] * scale * act.derivative(o[l]));
                    sse = each(|l| sse[l] + square(e[l]));
                }
            });
            sse.map(|s| loss.of_sse(s, 1, n_out))
        }
        Loss::CrossEntropy => {
            // `Iterator::sum`'s sums, as `Loss::delta` and `log_sum_exp` take them: from its empty sum.
            let zero: T = std::iter::empty().sum();
            let mut mass = [zero; LANES];
            for t in t {
                mass = each(|l| mass[l] + t[l]);
            }
            let inv_b = T::one() / T::of(1.0);
            for ((d, p), t) in dz.iter_mut().zip(o).zip(t) {
                *d = each(|l| (p[l] * mass[l] - t[l]) * inv_b);
            }
            // The loss, as `Loss::value` computes it from the logits.
            let max = row_max(z);
            let mut sum = [zero; LANES];
            for v in z {
                sum = each(|l| sum[l] + (v[l] - max[l]).exp_nonpos());
            }
            let lse = each(|l| max[l] + sum[l].ln());
            let mut total = [0.0; LANES];
            for (z, t) in z.iter().zip(t) {
                total = each(|l| {
                    if t[l] == T::zero() {
                        total[l]
                    } else {
                        total[l] - (t[l] * (z[l] - lse[l])).to_f64().unwrap_or(f64::NAN)
                    }
                });
            }
            total.map(|t| t / 1.0)
        }
        Loss::BinaryCrossEntropy => each(|l| {
            let lane = |v: &[V<T>]| -> [T; WIDEST] { std::array::from_fn(|k| v.get(k).map_or(T::zero(), |v| v[l])) };
            let (z, o, t, mut d) = (lane(z), lane(o), lane(t), [T::zero(); WIDEST]);
            let value = loss.delta(act, &z[..n_out], &o[..n_out], &t[..n_out], n_out, &mut d[..n_out], &[]);
            dz.iter_mut().zip(d).for_each(|(dz, d)| dz[l] = d);
            value
        }),
    }
}

/// `bias_grad` of one sample of every lane: per-neuron gradients are the deltas, a shared one their sum
/// (summed as `Iterator::sum` does, lane by lane).
#[inline(always)]
fn bias_grad<T: Scalar>(delta: &[V<T>], g: &mut [V<T>]) {
    match g.len() {
        0 => {}
        1 if delta.len() != 1 => g[0] = each(|l| delta.iter().map(|d| d[l]).sum()),
        _ => g.iter_mut().zip(delta).for_each(|(g, d)| *g = each(|l| T::zero() + d[l])),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)] // tests fail loudly, and compare exact values
mod tests {
    use super::*;

    /// A member's own runs of steps keep a padded copy of it (`tiny`); the lanes' writes must reach the
    /// next one.
    #[test]
    fn members_trained_alone_before_and_after_the_lanes_train_as_networks() {
        let c = Config { optimizer: Optimizer::adam(0.05), ..Config::new(2, 3, 2) };
        let (x, t) = ([0.4, -0.3], [0.1, 0.8]);
        let mut members: Vec<_> = (0..4).map(|s| Network::<f64>::new(c, s).unwrap()).collect();
        let mut alone = members.clone();
        let mut losses = vec![0.0; 4 * 3];
        for m in &mut members {
            m.train(&x, &t, 2, &mut || true).unwrap();
        }
        let (results, _) = Network::train_lanes(&mut members, &x, &t, 3, &mut losses, &mut || true).unwrap();
        assert!(results.iter().all(Result::is_ok));
        for (m, a) in members.iter_mut().zip(&mut alone) {
            assert_eq!(m.train(&x, &t, 2, &mut || true).unwrap(), a.train(&x, &t, 7, &mut || true).unwrap()[5..]);
            assert_eq!(m.params(), a.params());
            assert_eq!(m.optimizer_state(), a.optimizer_state());
        }
    }

    /// A build of `Lanes::run_steps`.
    type Build = fn(&mut Lanes<f64>, usize, &mut Repeat<'_, f64>) -> usize;

    /// Every value of a group, as bits: parameters, optimizer state, and each lane's losses.
    fn bits(lanes: &Lanes<f64>, losses: &[f64]) -> Vec<u64> {
        let values = lanes.params.iter().chain(lanes.state.iter().flatten()).flatten().flatten();
        values.chain(losses).map(|v| v.to_bits()).collect()
    }

    /// The population tests run the lanes built for this CPU's widest instructions; here every build this
    /// CPU can run must give the baseline build's bits.
    #[test]
    fn every_instruction_set_gives_the_baseline_bits() {
        for (hidden, output, loss, optimizer) in crate::network::tests::three_settings() {
            let c = Config {
                hidden_activation: hidden,
                output_activation: output,
                loss,
                optimizer,
                ..Config::new(3, 5, 4)
            };
            // Each member its own rate, so that the lanes' own update runs (one rate for all takes the network's).
            let members: Vec<Network<f64>> = (0..LANES)
                .map(|i| {
                    let optimizer = optimizer.with_lr(0.01 * (i + 1) as f64);
                    Network::new(Config { optimizer, ..c }, i as u64).unwrap()
                })
                .collect();
            let trained = |run: Build| {
                let (mut lanes, mut losses) = (Lanes::pack(&members), vec![f64::NAN; LANES * 50]);
                let rows: Vec<&mut [f64]> = losses.chunks_exact_mut(50).collect();
                let (x, t) = (broadcast(&[0.5, -0.25, 0.125]), broadcast(&[0.0, 1.0, 0.0, 0.0]));
                let mut feed = Repeat { x, t, rows, at: 0 };
                // In two runs, as `train_lanes` polls between them.
                assert_eq!(run(&mut lanes, 30, &mut feed), 30);
                feed.at = 30;
                assert_eq!(run(&mut lanes, 20, &mut feed), 20);
                assert!(losses.iter().all(|l| l.is_finite()));
                bits(&lanes, &losses)
            };
            let baseline = trained(|lanes, steps, feed| simd::baseline(Run { lanes, steps, feed }));
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    assert_eq!(
                        trained(|lanes, steps, feed| unsafe { simd::avx2(Run { lanes, steps, feed }) }),
                        baseline,
                        "AVX2 {c:?}"
                    );
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    assert_eq!(
                        trained(|lanes, steps, feed| unsafe { simd::avx512(Run { lanes, steps, feed }) }),
                        baseline,
                        "AVX-512 {c:?}"
                    );
                }
            }
            assert_eq!(trained(|l, s, f| l.run(s, f)), baseline);
        }
    }
}
