//! A population: many networks of one shape that take the same calls, trained side by side.
//!
//! Member i is an ordinary network on its device (its own weights, optimizer settings and state, seed),
//! and every call runs the network's own code on it, so member i computes exactly what that network alone
//! would compute given the same calls: bit for bit, since a network's results do not depend on the
//! thread it runs on or on the thread count. What the population adds is the member axis: CPU members
//! run in parallel on the core's thread pool (several members per thread for small nets, each member's
//! large products threaded further), with one hand-off and no per-member Python work per call; and a
//! device may train several members together (`Backend::train_together` and `fit_together`: the CPU's
//! tiny members on one sample per step go 16 at a time, one per SIMD lane, each lane doing its network's
//! operations in order).
//!
//! Ctrl-C stays responsive while members train: the calling thread only waits, asking `keep_going` every
//! few milliseconds, and a stop is passed to every member through a flag its own training loop polls.

use crate::backend::{Backend, FitExtras, FitPlan, KeepGoing};
use crate::error::{Error, Result};
use crate::memory;
use crate::network::Config;
use crate::threads;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// Networks of one shape (widths, activations, loss, bias) whose optimizer settings may differ.
pub struct Population<B> {
    members: Vec<B>,
}

/// A population's `fit` data: rows x (n, n_in) and y (n, n_out), optional sample weights (n,), and for
/// bagging each member's own rows of them (indices into x; None: every member trains on all of x).
#[derive(Clone, Copy)]
pub struct Data<'a, T> {
    pub x: &'a [T],
    pub y: &'a [T],
    pub weights: Option<&'a [T]>,
    pub rows: Option<&'a [&'a [usize]]>,
}

/// A group's `fit` call as a device trains its members side by side (`Backend::fit_together`): the data,
/// the plan, and each member's seed and, when listed, rates per epoch.
#[derive(Clone, Copy)]
pub(crate) struct Fit<'a, T> {
    pub data: Data<'a, T>,
    pub plan: FitPlan,
    pub seeds: &'a [u64],
    pub lrs: Option<&'a [Vec<f64>]>,
}

impl<T: crate::linalg::Scalar> Fit<'_, T> {
    /// The rows each of `members` fits on, when a device may fit them side by side: each on its own rows,
    /// of one count, or all on every row; no sample weights; a seed each; every rate listed one the member
    /// takes. None otherwise (the device's own conditions are its to add).
    pub fn rows<B: Backend<T = T>>(&self, members: &[B]) -> Option<usize> {
        let FitPlan { epochs, batch_size, .. } = self.plan;
        let Data { x, y, weights, rows } = self.data;
        let all = members.first()?.config().check_pair(x, y, "Y").ok()?;
        let n = match rows {
            Some(p) => {
                let n = p.first()?.len();
                let fits = |r: &&[usize]| r.len() == n && r.iter().all(|&j| j < all);
                (p.len() == members.len() && p.iter().all(fits)).then_some(n)?
            }
            None => all,
        };
        let rates_taken = |i: usize, m: &B| {
            self.lrs.is_none_or(|lrs| {
                let rates = &lrs[i];
                rates.is_empty()
                    || rates.len() >= epochs
                        && rates[..epochs].iter().all(|&lr| m.config().optimizer.with_lr(lr).validate().is_ok())
            })
        };
        let taken = batch_size > 0
            && n > 0
            && weights.is_none()
            && self.seeds.len() == members.len()
            && members.iter().enumerate().all(|(i, m)| rates_taken(i, m));
        taken.then_some(n)
    }

    /// Member `i` of the group fitting alone from `epoch` of the call, at whose start it is (after its group
    /// failed there), so that the network's own step reports the failure; its epoch losses into `row`.
    pub fn alone<B: Backend<T = T>>(
        &self,
        m: &mut B,
        i: usize,
        epoch: usize,
        row: &mut [f64],
        keep_going: KeepGoing,
    ) -> Result<()> {
        let Self { data, plan, seeds, lrs } = *self;
        let rates = lrs.map_or(&[][..], |l| l[i].get(epoch..).unwrap_or(&[]));
        let extras = FitExtras { lrs: rates, sample_weight: None };
        let rest = FitPlan { epochs: plan.epochs - epoch, first_epoch: plan.first_epoch + epoch, ..plan };
        let (c, n) = (*m.config(), data.rows.map_or(data.y.len() / m.config().n_out, |p| p[i].len()));
        let fitted = match data.rows {
            None => m.fit_with(data.x, data.y, rest, seeds[i], extras, keep_going),
            Some(p) => {
                let (xi, yi) = (gather(data.x, c.n_in, p[i])?, gather(data.y, c.n_out, p[i])?);
                m.fit_with(&xi, &yi, rest, seeds[i], extras, keep_going)
            }
        };
        let losses = fitted.map_err(|e| e.after(epoch * n.div_ceil(plan.batch_size), &row[..epoch]))?;
        row[epoch..].copy_from_slice(&losses);
        Ok(())
    }
}

/// What a member holds besides its values: its work buffers, sizes and settings (measured: about 1 KiB
/// for the article's net), with room to spare.
const MEMBER_BYTES: u128 = 4096;

impl<B: Backend + Send + Sync> Population<B> {
    /// Member i made by `new(configs[i], seeds[i])`, after checking that all of them fit in memory.
    pub fn build(configs: &[Config], seeds: &[u64], new: impl Fn(Config, u64) -> Result<B>) -> Result<Self> {
        if configs.len() != seeds.len() {
            return Err(Error::config("seeds", format!("one per member ({})", configs.len()), seeds.len()));
        }
        // With no member there is nothing to probe; `new` refuses it.
        let member = configs.first().map_or(0, |c| c.values_held() * std::mem::size_of::<B::T>() as u128);
        memory::probe("population", (member + MEMBER_BYTES) * configs.len() as u128)?;
        let mut members = Vec::new();
        memory::reserve("population", &mut members, configs.len(), 1)?;
        for (&c, &s) in configs.iter().zip(seeds) {
            members.push(new(c, s)?);
        }
        Self::new(members)
    }

    /// A population of `members`; they must share everything but their optimizer settings.
    pub fn new(members: Vec<B>) -> Result<Self> {
        let Some(first) = members.first() else {
            return Err(Error::config("size", "at least one member", 0));
        };
        for (i, m) in members.iter().enumerate() {
            like(first, m, i)?;
        }
        Ok(Self { members })
    }

    /// Puts `member` (a network like the others) in place of member `i`.
    pub fn replace(&mut self, i: usize, member: B) -> Result<()> {
        let size = self.members.len();
        like(&self.members[0], &member, i)?;
        let slot =
            self.members.get_mut(i).ok_or_else(|| Error::config("member", format!("an index in [0, {size})"), i))?;
        *slot = member;
        Ok(())
    }

    pub fn members(&self) -> &[B] {
        &self.members
    }

    pub fn members_mut(&mut self) -> &mut [B] {
        &mut self.members
    }

    pub fn into_members(self) -> Vec<B> {
        self.members
    }

    pub fn config(&self) -> &Config {
        self.members[0].config()
    }

    /// Every member's outputs for the batch `x`, member after member: (size, batch, n_out) row-major.
    pub fn forward(&self, x: &[B::T]) -> Result<Vec<B::T>> {
        crate::network::check_rows("X", x, self.config().n_in)?;
        if let Some(all) = B::evaluate_together(&self.members, x, None) {
            return all;
        }
        let outputs = self.each(|m| m.forward(x))?;
        let mut all = Vec::new();
        crate::memory::reserve("outputs", &mut all, outputs.len(), outputs[0].len())?;
        for o in outputs {
            all.extend(o);
        }
        Ok(all)
    }

    /// Every member's loss on (x, t).
    pub fn loss(&self, x: &[B::T], t: &[B::T]) -> Result<Vec<f64>> {
        self.config().check_pair(x, t, "T")?;
        if let Some(all) = B::evaluate_together(&self.members, x, Some(t)) {
            return Ok(all?.iter().map(|l| num_traits::ToPrimitive::to_f64(l).unwrap_or(f64::NAN)).collect());
        }
        self.each(|m| m.loss(x, t))
    }

    /// `steps` steps of every member on the batch (x, t): each member's losses.
    pub fn train(&mut self, x: &[B::T], t: &[B::T], steps: usize, keep_going: KeepGoing) -> Result<Losses> {
        let rows = self.config().check_pair(x, t, "T")?;
        let together = B::together(self.config(), rows);
        self.train_each(keep_going, together, steps, 1, |members, _, losses, go| {
            if let Some(done) = B::train_together(members, x, t, steps, losses, go) {
                return done.into_iter().map(|r| r.map(|()| steps)).collect();
            }
            let rows = losses.chunks_exact_mut(steps);
            members.iter_mut().zip(rows).map(|(m, row)| put(m.train(x, t, steps, go), row)).collect()
        })
    }

    /// `Backend::fit_with` of every member on (x, y) (and the samples' `weights`), or on its own `rows` of
    /// them, all as `plan` says, each shuffled with its own seed, with its own learning rate per epoch
    /// when `lrs` lists them (one list per member); members not `active` sit out (their losses come back
    /// empty). Each active member's epoch losses.
    pub fn fit(
        &mut self,
        data: Data<'_, B::T>,
        plan: FitPlan,
        seeds: &[u64],
        lrs: Option<&[Vec<f64>]>,
        active: Option<&[bool]>,
        keep_going: KeepGoing,
    ) -> Result<Losses> {
        let Data { x, y, weights, rows } = data;
        let FitPlan { epochs, batch_size, .. } = plan;
        let size = self.members.len();
        let n = self.config().check_pair(x, y, "Y")?;
        expect_len("seeds", seeds.len(), size)?;
        if let Some(active) = active {
            expect_len("active", active.len(), size)?;
        }
        if let Some(lrs) = lrs {
            expect_len("lrs", lrs.len(), size)?;
        }
        if let Some(rows) = rows {
            expect_len("rows", rows.len(), size)?;
            if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.is_empty() || r.iter().any(|&j| j >= n)) {
                return Err(Error::config(
                    "rows",
                    format!("indices in [0, {n}), at least one"),
                    format!("member {i}: {r:?}"),
                ));
            }
        }
        let (n_in, n_out) = (self.config().n_in, self.config().n_out);
        let fit = |m: &mut B, i: usize, go: KeepGoing| {
            if active.is_some_and(|a| !a[i]) {
                return Ok(Vec::new());
            }
            let lrs = lrs.map_or(&[][..], |l| &l[i]);
            match rows {
                None => m.fit_with(x, y, plan, seeds[i], FitExtras { lrs, sample_weight: weights }, go),
                Some(rows) => {
                    let (xi, yi) = (gather(x, n_in, rows[i])?, gather(y, n_out, rows[i])?);
                    let wi = weights.map(|w| gather(w, 1, rows[i])).transpose()?;
                    let extras = FitExtras { lrs, sample_weight: wi.as_deref() };
                    m.fit_with(&xi, &yi, plan, seeds[i], extras, go)
                }
            }
        };
        // Unweighted members may fit side by side (on their own rows, when as many as every other's).
        let together = if weights.is_none() { B::together(self.config(), batch_size.min(n)) } else { 1 };
        self.train_each(keep_going, together, epochs, n.div_ceil(batch_size.max(1)), |members, first, losses, go| {
            // The members not sitting out fit together: moved to the front of the group for the call.
            let on: Vec<usize> = (0..members.len()).filter(|&k| active.is_none_or(|a| a[first + k])).collect();
            // One member alone runs faster as a network than in a group.
            if on.len() > 1 {
                let seeds: Vec<u64> = on.iter().map(|&k| seeds[first + k]).collect();
                let lrs: Option<Vec<Vec<f64>>> = lrs.map(|l| on.iter().map(|&k| l[first + k].clone()).collect());
                let rows: Option<Vec<&[usize]>> = rows.map(|r| on.iter().map(|&k| r[first + k]).collect());
                let mut fitted = vec![f64::NAN; on.len() * epochs];
                move_to_front(members, &on, true);
                let data = Data { x, y, weights, rows: rows.as_deref() };
                let done =
                    B::fit_together(&mut members[..on.len()], data, plan, &seeds, lrs.as_deref(), &mut fitted, go);
                move_to_front(members, &on, false);
                if let Some(done) = done {
                    let mut results: Vec<Result<usize>> = vec![Ok(0); members.len()];
                    for ((&k, r), row) in on.iter().zip(done).zip(fitted.chunks_exact(epochs)) {
                        losses[k * epochs..][..epochs].copy_from_slice(row);
                        results[k] = r.map(|()| epochs);
                    }
                    return results;
                }
            }
            let rows = losses.chunks_exact_mut(epochs);
            members.iter_mut().zip(rows).enumerate().map(|(k, (m, row))| put(fit(m, first + k, go), row)).collect()
        })
    }

    /// Sets each member's learning rate for the next steps, keeping its optimizer state.
    pub fn set_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        expect_len("lrs", lrs.len(), self.members.len())?;
        for (i, (m, &lr)) in self.members.iter_mut().zip(lrs).enumerate() {
            m.set_lr(lr).map_err(|e| e.in_member(i))?;
        }
        Ok(())
    }

    /// `f` on every member, in parallel on the CPU; the first error by member order.
    fn each<R: Send>(&self, f: impl Fn(&B) -> Result<R> + Sync) -> Result<Vec<R>> {
        let parallel = self.members[0].adapter().is_none();
        let results: Vec<Result<R>> = if parallel {
            threads::install(|| self.members.par_iter().map(&f).collect())
        } else {
            self.members.iter().map(&f).collect()
        };
        results.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_member(i))).collect()
    }

    /// Runs `train(members, index of the first, their rows of the losses, keep_going)` on every run of
    /// `together` members (the last may be shorter), on a worker thread (and from it on the pool, for CPU
    /// members) while this thread asks `keep_going` every `threads::POLL`; `train` writes each member's losses into
    /// its row of `width` and returns how many it wrote (NaN pads the rest). A stop reaches the members
    /// through their own `keep_going`. Every member runs to its end (or its error) whatever the others
    /// do, so each ends where the network alone would; then the first error by member order is returned,
    /// an interruption counting the steps every member completed (a finished member's losses count
    /// `steps_per_loss` steps each: one for `train`, an epoch's for `fit`).
    fn train_each(
        &mut self,
        keep_going: KeepGoing,
        together: usize,
        width: usize,
        steps_per_loss: usize,
        train: impl Fn(&mut [B], usize, &mut [f64], KeepGoing) -> Vec<Result<usize>> + Sync,
    ) -> Result<Losses> {
        let size = self.members.len();
        if width == 0 {
            return Ok(Losses { width, values: Vec::new(), lens: vec![0; size] });
        }
        // One buffer for all, which the members' training writes in place: for 10,000 members of 10,000
        // steps that is 800 MB, which a copy from rows of their own took a fifth of the training's time.
        let mut values = memory::zeros("losses", size, width)?;
        let stop = AtomicBool::new(false);
        let together = together.max(1);
        let run = |(g, (members, losses)): (usize, (&mut [B], &mut [f64]))| {
            train(members, g * together, losses, &mut || !stop.load(Ordering::Relaxed))
        };
        let parallel = self.members[0].adapter().is_none();
        let members = &mut self.members;
        let results: Vec<Result<usize>> = std::thread::scope(|s| {
            let (done, finished) = mpsc::channel::<()>();
            let (values, per) = (&mut values, together * width);
            let worker = s.spawn(move || {
                let results = if parallel {
                    let groups = members.par_chunks_mut(together).zip(values.par_chunks_mut(per));
                    threads::install(|| groups.enumerate().flat_map_iter(run).collect())
                } else {
                    members.chunks_mut(together).zip(values.chunks_mut(per)).enumerate().flat_map(run).collect()
                };
                let _ = done.send(());
                results
            });
            while finished.recv_timeout(threads::POLL) == Err(mpsc::RecvTimeoutError::Timeout) {
                if !stop.load(Ordering::Relaxed) && !keep_going() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            worker
                .join()
                .unwrap_or_else(|_| vec![Err(Error::Gpu { op: "training", message: "a worker failed".into() })])
        });
        let interrupted = results.iter().any(|r| matches!(r, Err(Error::Interrupted { .. })));
        if stop.load(Ordering::Relaxed) || interrupted {
            // Stopped by the caller: say how far every member got (members that finished count whole).
            let completed = results
                .iter()
                .filter_map(|r| match r {
                    Ok(n) if *n > 0 => Some(n * steps_per_loss),
                    Err(Error::Interrupted { completed }) => Some(*completed),
                    _ => None,
                })
                .min()
                .unwrap_or(0);
            if let Some((i, Err(e))) =
                results.iter().enumerate().find(|(_, r)| matches!(r, Err(e) if !matches!(e, Error::Interrupted { .. })))
            {
                return Err(e.clone().in_member(i));
            }
            return Err(Error::Interrupted { completed });
        }
        let lens: Vec<usize> =
            results.into_iter().enumerate().map(|(i, r)| r.map_err(|e| e.in_member(i))).collect::<Result<_>>()?;
        for (row, &len) in values.chunks_exact_mut(width).zip(&lens) {
            row[len..].fill(f64::NAN);
        }
        Ok(Losses { width, values, lens })
    }
}

/// Every member's losses from one call, in one row-major (members, width) buffer: member i's are the
/// first `lens[i]` of its row, and NaN pads the rest (a member that stopped early, or sat out).
#[derive(Debug, Clone, PartialEq)]
pub struct Losses {
    width: usize,
    values: Vec<f64>,
    lens: Vec<usize>,
}

impl Losses {
    /// Rows: one per member.
    pub fn members(&self) -> usize {
        self.lens.len()
    }

    /// Values per row: the call's steps or epochs.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The most losses any member has.
    pub fn longest(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    /// The NaN-padded (members, width) buffer, row-major.
    pub fn into_values(self) -> Vec<f64> {
        self.values
    }
}

impl std::ops::Index<usize> for Losses {
    type Output = [f64];
    /// Member i's losses.
    fn index(&self, i: usize) -> &[f64] {
        &self.values[i * self.width..][..self.lens[i]]
    }
}

/// Moves the members at the (ascending) positions `picked` to the front of `members`, in order
/// (`forward`), or back where they were.
fn move_to_front<M>(members: &mut [M], picked: &[usize], forward: bool) {
    let swaps = picked.iter().enumerate();
    if forward {
        swaps.for_each(|(slot, &k)| members.swap(slot, k));
    } else {
        swaps.rev().for_each(|(slot, &k)| members.swap(slot, k));
    }
}

/// Copies a member's losses into its row; their count.
fn put(losses: Result<Vec<f64>>, row: &mut [f64]) -> Result<usize> {
    let losses = losses?;
    row[..losses.len()].copy_from_slice(&losses);
    Ok(losses.len())
}

/// Checks that member `i` shares everything but its optimizer settings with `first`, and its device.
fn like<B: Backend>(first: &B, m: &B, i: usize) -> Result<()> {
    if (Config { optimizer: first.config().optimizer, ..*m.config() }) != *first.config() {
        return Err(Error::config(
            "members",
            format!("networks like member 0 ({})", describe(first.config())),
            format!("member {i}: {}", describe(m.config())),
        ));
    }
    if m.adapter().is_some() != first.adapter().is_some() {
        return Err(Error::config("members", "networks on one device", format!("member {i} on another")));
    }
    Ok(())
}

fn expect_len(arg: &'static str, got: usize, size: usize) -> Result<()> {
    if got == size {
        Ok(())
    } else {
        Err(Error::config(arg, format!("one value per member ({size})"), format!("{got} values")))
    }
}

fn describe(c: &Config) -> String {
    format!(
        "{}-{}-{} {}/{} {} bias={} train_bias={}",
        c.n_in, c.n_hidden, c.n_out, c.hidden_activation, c.output_activation, c.loss, c.bias, c.train_bias
    )
}

/// The rows `rows` of the row-major matrix `a` with `cols` columns.
pub(crate) fn gather<T: Copy>(a: &[T], cols: usize, rows: &[usize]) -> Result<Vec<T>> {
    crate::memory::collect(
        "a member's rows",
        rows.len() * cols,
        rows.iter().flat_map(|&r| a[r * cols..(r + 1) * cols].iter().copied()),
    )
}

impl Error {
    /// Says which member of a population failed.
    pub(crate) fn in_member(self, member: usize) -> Self {
        match self {
            Self::Member { .. } | Self::Interrupted { .. } => self,
            error => Self::Member { member, error: Box::new(error) },
        }
    }
}

#[cfg(test)]
mod tests;
