//! A population's members side by side on the GPU: one dispatch of the fused kernel trains them all,
//! workgroup i training member i, so a step of a thousand small networks costs one launch, not a
//! thousand. Members too large for the fused kernel (or batches too long for it) take the tiled
//! kernels' step instead, each dispatch over every member (workgroups (., ., i) or (., i) take member
//! i, see `plan::Stack`). For a call, the members' parameters and optimizer state are copied into
//! shared buffers, member after member, and back; each member's settings and offsets are its row of the
//! kernel's settings array. The kernels, their operations and their order are those a member runs
//! alone, so every member computes what its network would, bit for bit.
//!
//! As the CPU's lanes do, a group steps together until a member fails; then every member goes on alone
//! from where the failure happened (`train`: the failing step; `fit`: the start of its epoch), so that the
//! network's own code reports it.

use super::buffers::{Layout, Work};
use super::context::Context;
use super::fused;
use super::kernels::{FusedParams, OptimParams, Quad};
use super::network::{evaluate_all, GpuNetwork};
use super::plan::{Dispatch, Kernel, Stack};
use super::submit::steps_per_submission;
use crate::backend::{epoch_loss, Backend, FitPlan, KeepGoing};
use crate::error::{Error, Result};
use crate::memory;
use crate::network::{epoch_order, Config};
use crate::population::{Data, Fit};
use std::sync::Arc;
use std::time::Instant;
use wgpu::util::DeviceExt;

/// Members trained side by side at most; a larger population trains in several groups.
const MAX_MEMBERS: usize = 8192;
/// Values of one member's optimizer settings.
const OPTIM_VALUES: usize = std::mem::size_of::<OptimParams>() / 4;
/// Values one shared buffer may hold: the 128 MiB storage binding that lavapipe and WebGPU's defaults allow.
const BUFFER_VALUES: usize = 1 << 25;
/// The loss history's values at most (members times steps per submission).
const LOSS_VALUES: usize = 1 << 22;

/// How many members shaped as `c` train side by side on batches of `rows` rows: as many as the shared
/// buffers hold.
pub fn together(c: &Config, rows: usize) -> usize {
    // The tiled kernels' batch buffers hold every member's activations and deltas too.
    let widest = if fused::fits(c, rows) { c.n_in.max(c.n_out) } else { c.n_in.max(c.n_hidden).max(c.n_out) };
    let per_member = (2 * Layout::new(c).n_params).max(rows * widest).max(fused::scratch_values(c, rows));
    (BUFFER_VALUES / per_member.max(1)).clamp(1, MAX_MEMBERS)
}

/// `Backend::train_together` on the GPU (see there): None unless the members share a device.
pub fn train_together(
    members: &mut [GpuNetwork],
    x: &[f32],
    t: &[f32],
    steps: usize,
    losses: &mut [f64],
    keep_going: KeepGoing,
) -> Option<Vec<Result<()>>> {
    // A batch that does not fit the shape goes the members' own way, which says so.
    members.first()?.config.check_pair(x, t, "T").ok()?;
    if !together_on_one_device(members) {
        return None;
    }
    let mut out: Vec<&mut [f64]> = losses.chunks_exact_mut(steps.max(1)).take(members.len()).collect();
    let ended =
        if steps == 0 { Ok((Ended::Completed, 0)) } else { train_group(members, x, t, steps, &mut out, keep_going) };
    let results = members.iter_mut().zip(out).map(|(m, row)| {
        // Alone from the step that failed, which the network's own step reports.
        result(&ended, |done| {
            let rest = m.train_on(x, t, steps, row[..done].to_vec(), keep_going)?;
            row.copy_from_slice(&rest);
            Ok(())
        })
    });
    Some(results.collect())
}

/// `Backend::fit_together` on the GPU (see there): None unless the members share a device, fit on rows
/// of one count without sample weights, and take every rate given.
pub fn fit_together(
    members: &mut [GpuNetwork],
    data: Data<'_, f32>,
    plan: FitPlan,
    seeds: &[u64],
    lrs: Option<&[Vec<f64>]>,
    losses: &mut [f64],
    keep_going: KeepGoing,
) -> Option<Vec<Result<()>>> {
    let (epochs, size) = (plan.epochs, members.len());
    let fit = Fit { data, plan, seeds, lrs };
    let n = fit.rows(members).filter(|_| together_on_one_device(members))?;
    let mut out: Vec<&mut [f64]> = losses.chunks_exact_mut(epochs.max(1)).take(size).collect();
    // Each member's sample order is a row of one buffer: groups small enough for it to fit.
    let per_group = (BUFFER_VALUES / n).max(1);
    let mut results = Vec::with_capacity(size);
    for (g, (group, out)) in members.chunks_mut(per_group).zip(out.chunks_mut(per_group)).enumerate() {
        let these = g * per_group..g * per_group + group.len();
        let fit = Fit {
            data: Data { rows: data.rows.map(|p| &p[these.clone()]), ..data },
            seeds: &seeds[these.clone()],
            lrs: lrs.map(|l| &l[these.clone()]),
            plan,
        };
        let ended = if epochs == 0 { Ok((Ended::Completed, 0)) } else { fit_group(group, &fit, n, out, keep_going) };
        for (i, (m, row)) in group.iter_mut().zip(out.iter_mut()).enumerate() {
            results.push(result(&ended, |epoch| fit.alone(m, i, epoch, row, keep_going)));
        }
    }
    Some(results)
}

/// `Backend::evaluate_together` on the GPU (see there): a submission for each group of members whose
/// results fit one buffer; None unless the members share a device.
pub fn evaluate_together(members: &[GpuNetwork], x: &[f32], t: Option<&[f32]>) -> Option<Result<Vec<f32>>> {
    if !together_on_one_device(members) {
        return None;
    }
    let lead = &members[0];
    let rows = x.len() / lead.config.n_in;
    let per = if t.is_some() { 1 } else { rows * lead.config.n_out };
    let group = (BUFFER_VALUES / per.max(1)).clamp(1, MAX_MEMBERS);
    let all = || {
        let mut all = Vec::new();
        memory::reserve("outputs", &mut all, members.len(), per)?;
        for members in members.chunks(group) {
            all.extend(evaluate_all(members, x, t, rows)?);
        }
        Ok(all)
    };
    Some(all())
}

/// Whether `members` are two or more, all on one device: what any work they do together needs.
fn together_on_one_device(members: &[GpuNetwork]) -> bool {
    members.len() > 1 && members.iter().all(|m| Arc::ptr_eq(&m.ctx, &members[0].ctx))
}

/// How a group's run ended.
enum Ended {
    /// Every step taken.
    Completed,
    /// `keep_going` said stop, after the steps counted with it.
    Stopped,
    /// A member could not complete a step: counted with it, `train`'s step or `fit`'s epoch where every
    /// member goes on alone.
    Failed,
}

/// A member's result from its group's end, with `alone` finishing it after a failure.
fn result(ended: &Result<(Ended, usize)>, alone: impl FnOnce(usize) -> Result<()>) -> Result<()> {
    match ended {
        Err(e) => Err(e.clone()),
        Ok((Ended::Completed, _)) => Ok(()),
        Ok((Ended::Stopped, done)) => Err(Error::Interrupted { completed: *done }),
        Ok((Ended::Failed, at)) => alone(*at),
    }
}

/// `steps` steps of `members` on (x, t): how it ended and the steps taken together (with a failure, up to
/// the step that failed).
fn train_group(
    members: &mut [GpuNetwork],
    x: &[f32],
    t: &[f32],
    steps: usize,
    out: &mut [&mut [f64]],
    keep_going: KeepGoing,
) -> Result<(Ended, usize)> {
    let rows = x.len() / members[0].config.n_in;
    let mut g = Group::new(members, steps, rows, false)?;
    let batch = g.batch(members, Some((x, t)))?;
    let run_of = g.steps(members, rows, &batch)?;
    let lead = &members[0];
    let mut done = 0;
    let run = |g: &mut Group, n: usize, done: usize| -> Result<Vec<f32>> {
        run_of.set(g, members, n);
        g.submit(members, n, done, 0, rows, &|pass| run_of.record(lead, pass, n))
    };
    let ended = loop {
        if done == steps {
            break Ended::Completed;
        }
        if !keep_going() {
            break Ended::Stopped;
        }
        let n = g.chunk(members, rows).min(steps - done);
        let got = run(&mut g, n, done)?;
        let k = g.first_failure(&got, n);
        let taken = if k < n {
            g.rollback()?;
            if k > 0 {
                run(&mut g, k, done)?
            } else {
                vec![]
            }
        } else {
            got
        };
        g.put_losses(&taken, k, done, out);
        done += k;
        if k < n {
            break Ended::Failed;
        }
    };
    g.unpack(members, done)?;
    Ok((ended, done))
}

/// `fit` of `members` on `n` rows each, epoch losses into `out`: how it ended and, stopped, the steps
/// taken, or, failed, the epoch that failed (the members hold the weights of its start).
fn fit_group(
    members: &mut [GpuNetwork],
    fit: &Fit<'_, f32>,
    n: usize,
    out: &mut [&mut [f64]],
    keep_going: KeepGoing,
) -> Result<(Ended, usize)> {
    let Fit { data, plan, seeds, lrs } = *fit;
    let FitPlan { epochs, batch_size, shuffle, first_epoch } = plan;
    let (size, n_batches) = (members.len(), n.div_ceil(batch_size));
    let (ni, no) = (members[0].config.n_in, members[0].config.n_out);
    let full = batch_size.min(n);
    let last = n - (n_batches - 1) * batch_size;
    let mut g = Group::new(members, n_batches, full, true)?;
    let (xs, ys) = (g.upload("data set inputs", data.x)?, g.upload("data set targets", data.y)?);
    let order = g.ctx.guarded("allocation", || g.ctx.storage("sample orders", size * n))?;
    let batch = g.batch(members, None)?;
    let lead = &members[0];
    // Per batch size: the gathers of every member's batch, and a step on them.
    let mut sizes = vec![full];
    if last != full {
        sizes.push(last);
    }
    let mut launches = Vec::new();
    for &r in &sizes {
        let gather = |cols: usize, src: &wgpu::Buffer, dest: &wgpu::Buffer| {
            let u = lead.settings("gather", &Quad { a: r as u32, b: cols as u32, c: n as u32, d: 0 });
            lead.dispatch(
                Kernel::Gather,
                &u,
                &[src, &order, &g.counters, dest],
                [lead.stride_groups(r * cols, 64), size, 1],
            )
        };
        let gathers = [gather(ni, &xs, &batch.x)?, gather(no, &ys, &batch.t)?];
        launches.push((r, gathers, g.steps(members, r, &batch)?));
    }
    let rows_of = |b: usize| if b + 1 == n_batches { last } else { full };
    let (mut flat, mut one) = (Vec::with_capacity(size * n), Vec::with_capacity(n));
    let mut step_losses = vec![Vec::with_capacity(n_batches); size];
    for epoch in 0..epochs {
        flat.clear();
        for (i, seed) in seeds.iter().enumerate() {
            if shuffle {
                epoch_order(n, *seed, first_epoch + epoch, &mut one);
            } else {
                one.clear();
                one.extend(0..n);
            }
            let picks = data.rows.map(|p| &p[i]);
            flat.extend(one.iter().map(|&j| picks.map_or(j, |p| p[j]) as u32));
        }
        g.ctx.queue.write_buffer(&order, 0, bytemuck::cast_slice(&flat));
        if let Some(lrs) = lrs {
            for (m, rates) in members.iter_mut().zip(lrs) {
                if let Some(&lr) = rates.get(epoch) {
                    m.set_lr(lr)?;
                }
            }
        }
        for (_, _, steps) in &launches {
            steps.set(&g, members, 1);
        }
        step_losses.iter_mut().for_each(Vec::clear);
        let mut b = 0;
        while b < n_batches {
            if !keep_going() {
                g.unpack(members, b)?;
                return Ok((Ended::Stopped, epoch * n_batches + b));
            }
            let k = g.chunk(members, full).min(n_batches - b);
            let lead = &members[0];
            let got = g.submit(members, k, b, b * batch_size, full, &|pass| {
                for j in b..b + k {
                    let Some((_, [gx, gy], steps)) = launches.iter().find(|l| l.0 == rows_of(j)) else { continue };
                    lead.record(pass, gx);
                    lead.record(pass, gy);
                    steps.record(lead, pass, 1);
                }
            })?;
            if g.first_failure(&got, k) < k {
                // The members still hold the weights of this epoch's start.
                return Ok((Ended::Failed, epoch));
            }
            for (m, losses) in step_losses.iter_mut().enumerate() {
                losses.extend(got[m * g.cap..][..k].iter().map(|&l| f64::from(l)));
            }
            b += k;
        }
        for (row, losses) in out.iter_mut().zip(&step_losses) {
            row[epoch] = epoch_loss(losses.iter().copied(), n, batch_size);
        }
        g.unpack(members, n_batches)?;
    }
    Ok((Ended::Completed, epochs * n_batches))
}

/// The fused kernel's dispatch over a group, on batches of `rows` rows, and its settings array.
struct Launch {
    settings: wgpu::Buffer,
    dispatch: Dispatch,
    rows: usize,
}

/// A group's steps on batches of one size: the fused kernel, `per` steps a dispatch (`full`, and `tail`
/// for the rest of a submission), or the tiled kernels' dispatches of one step of every member.
enum Steps {
    Fused { full: Launch, tail: Launch, per: usize },
    Tiled(Vec<Dispatch>),
}

impl Steps {
    /// Readies the next submission of `n` steps, with the members' rates as they are now.
    fn set(&self, g: &Group, members: &[GpuNetwork], n: usize) {
        match self {
            Self::Fused { full, tail, per } => {
                g.set_steps(members, full, *per);
                g.set_steps(members, tail, n % per);
            }
            Self::Tiled(_) => g.set_rates(members),
        }
    }

    /// Records `n` steps.
    fn record(&self, lead: &GpuNetwork, pass: &mut wgpu::ComputePass<'_>, n: usize) {
        match self {
            Self::Fused { full, tail, per } => {
                for _ in 0..n / per {
                    lead.record(pass, &full.dispatch);
                }
                if n % per > 0 {
                    lead.record(pass, &tail.dispatch);
                }
            }
            Self::Tiled(step) => {
                for d in (0..n).flat_map(|_| step) {
                    lead.record(pass, d);
                }
            }
        }
    }
}

/// Where a group's batches (one batch, or every member's) and the fused kernel's activations that do not
/// fit in workgroup memory are; with `work`, the tiled kernels' buffers, which hold them, for a largest
/// batch the fused kernel does not take.
struct Batch {
    x: wgpu::Buffer,
    t: wgpu::Buffer,
    scratch: wgpu::Buffer,
    work: Option<Work>,
}

/// A group's shared buffers for one call: member i's parameters (and gradients) at i * n_params, its
/// optimizer state at i * state_stride, its step counter, and its row of `cap` values in the loss
/// history (and Adam's schedule), with the snapshot a failed submission is rolled back to.
struct Group {
    ctx: Arc<Context>,
    size: usize,
    n_params: usize,
    state_stride: usize,
    /// Batches of this many rows at most, each member its own when `own_batches`.
    rows: usize,
    own_batches: bool,
    /// Whether the fused kernel takes the largest batch (else the group holds the tiled kernels' buffers).
    fused: bool,
    /// Steps one submission may run.
    cap: usize,
    theta: wgpu::Buffer,
    state: wgpu::Buffer,
    theta_bak: wgpu::Buffer,
    state_bak: wgpu::Buffer,
    counters: wgpu::Buffer,
    losses: wgpu::Buffer,
    sched: wgpu::Buffer,
    /// The tiled kernels' gradients and each member's optimizer settings (empty for the fused kernel).
    grads: wgpu::Buffer,
    optim: wgpu::Buffer,
    /// Seconds per unit of step work (`GpuNetwork::step_units`) of the last submission.
    pace: Option<f64>,
}

impl Group {
    /// Shared buffers for `members`, submissions of at most `steps` steps on batches of at most `rows`
    /// rows (each member its own when `own_batches`), holding the members' values.
    fn new(members: &[GpuNetwork], steps: usize, rows: usize, own_batches: bool) -> Result<Self> {
        let (lead, size) = (&members[0], members.len());
        let ctx = Arc::clone(&lead.ctx);
        ctx.check_process()?;
        let n_params = lead.layout.n_params;
        let state_stride = members.iter().map(|m| m.layout.slots).max().unwrap_or(0) * n_params;
        let fused = lead.uses_fused(rows);
        let cap = steps.min(lead.most_steps(rows)).min(LOSS_VALUES / size).max(1);
        let adam = members.iter().any(|m| !m.schedule(0, 1).is_empty());
        let tiled = |len: usize| if fused { 0 } else { len };
        let g = ctx.guarded("allocation", || {
            Ok(Self {
                theta: ctx.storage("population parameters", size * n_params)?,
                state: ctx.storage("population optimizer state", size * state_stride)?,
                theta_bak: ctx.storage("population parameter snapshot", size * n_params)?,
                state_bak: ctx.storage("population optimizer state snapshot", size * state_stride)?,
                counters: ctx.storage("step counters", 2 * size)?,
                losses: ctx.storage("population loss history", size * cap)?,
                sched: ctx.storage("population Adam schedule", if adam { 2 * size * cap } else { 0 })?,
                grads: ctx.storage("population gradients", tiled(size * n_params))?,
                optim: ctx.storage("population optimizer settings", tiled(size * OPTIM_VALUES))?,
                ctx: Arc::clone(&ctx),
                size,
                n_params,
                state_stride,
                rows,
                own_batches,
                fused,
                cap,
                pace: lead.pace,
            })
        })?;
        g.copy(members, true)?;
        Ok(g)
    }

    fn buffer(&self, what: &'static str, len: usize) -> Result<wgpu::Buffer> {
        self.ctx.guarded("allocation", || self.ctx.storage(what, len))
    }

    fn upload(&self, what: &'static str, values: &[f32]) -> Result<wgpu::Buffer> {
        let b = self.buffer(what, values.len())?;
        self.ctx.queue.write_buffer(&b, 0, bytemuck::cast_slice(values));
        Ok(b)
    }

    /// Buffers for the group's batches, holding `given` when given (the one batch every member trains on).
    fn batch(&self, members: &[GpuNetwork], given: Option<(&[f32], &[f32])>) -> Result<Batch> {
        let c = &members[0].config;
        let batches = if self.own_batches { self.size } else { 1 };
        let batch = if self.fused {
            Batch {
                x: self.buffer("inputs", batches * self.rows * c.n_in)?,
                t: self.buffer("targets", batches * self.rows * c.n_out)?,
                scratch: self.buffer("population activations", self.size * fused::scratch_values(c, self.rows))?,
                work: None,
            }
        } else {
            let w = self.ctx.guarded("allocation", || Work::new(&self.ctx, c, self.rows, [self.size, batches]))?;
            Batch { x: w.x.clone(), t: w.t.clone(), scratch: w.scratch.clone(), work: Some(w) }
        };
        if let Some((x, t)) = given {
            self.ctx.queue.write_buffer(&batch.x, 0, bytemuck::cast_slice(x));
            self.ctx.queue.write_buffer(&batch.t, 0, bytemuck::cast_slice(t));
        }
        Ok(batch)
    }

    /// Steps of every member on batches of `rows` rows in `batch`: the fused kernel's when it takes them,
    /// as for a network alone.
    fn steps(&self, members: &[GpuNetwork], rows: usize, batch: &Batch) -> Result<Steps> {
        let lead = &members[0];
        match &batch.work {
            _ if lead.uses_fused(rows) => {
                let launch = || self.launch(members, rows, [&batch.x, &batch.t], &batch.scratch);
                // A fit's step gathers its batches first: one step a dispatch.
                let per = if self.own_batches { 1 } else { lead.fused_steps_per_dispatch(rows) };
                Ok(Steps::Fused { full: launch()?, tail: launch()?, per })
            }
            None => Err(Error::Gpu { op: "planning", message: "no work buffers for the tiled kernels".into() }),
            Some(work) => {
                let stack = Stack {
                    members: self.size,
                    theta: &self.theta,
                    grads: &self.grads,
                    state: &self.state,
                    sched: &self.sched,
                    counters: &self.counters,
                    losses: &self.losses,
                    optim: &self.optim,
                    history: self.cap,
                    own_batches: self.own_batches,
                };
                Ok(Steps::Tiled(self.ctx.guarded("planning", || lead.stack_step(work, rows, &stack))?))
            }
        }
    }

    /// The fused kernel over every member on batches of `rows` rows in `batch`; its steps are written by
    /// `set_steps`.
    fn launch(
        &self,
        members: &[GpuNetwork],
        rows: usize,
        batch: [&wgpu::Buffer; 2],
        scratch: &wgpu::Buffer,
    ) -> Result<Launch> {
        let lead = &members[0];
        let settings = self.ctx.guarded("planning", || {
            let params = self.params(members, rows, 1);
            Ok(self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("population fused"),
                contents: bytemuck::cast_slice(&params),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            }))
        })?;
        let kernel = lead.fused_kernel(rows);
        let bufs = [batch[0], batch[1], &self.theta, &self.state, &self.sched, &self.losses, &self.counters, scratch];
        let bound = if matches!(kernel, Kernel::FusedLocal) { &bufs[..7] } else { &bufs[..] };
        let dispatch = self.ctx.guarded("planning", || lead.dispatch(kernel, &settings, bound, [self.size, 1, 1]))?;
        Ok(Launch { settings, dispatch, rows })
    }

    /// Every member's fused settings for `steps` steps on batches of `rows` rows, with its offsets.
    fn params(&self, members: &[GpuNetwork], rows: usize, steps: usize) -> Vec<FusedParams> {
        let c = &members[0].config;
        let global = !fused::local(c, rows);
        let at = |i: usize, per: usize| (i * per) as u32;
        members
            .iter()
            .enumerate()
            .map(|(i, m)| FusedParams {
                steps: steps as u32,
                x_off: if self.own_batches { at(i, rows * c.n_in) } else { 0 },
                t_off: if self.own_batches { at(i, rows * c.n_out) } else { 0 },
                theta_off: at(i, self.n_params),
                state_off: at(i, self.state_stride),
                loss_off: at(i, self.cap),
                sched_off: at(i, self.cap),
                scratch_off: if global { at(i, rows * fused::scratch_per_row(c)) } else { 0 },
                ..m.fused_params(rows)
            })
            .collect()
    }

    /// Writes the settings of `launch` for `steps` steps, with the members' rates as they are now.
    fn set_steps(&self, members: &[GpuNetwork], launch: &Launch, steps: usize) {
        let params = self.params(members, launch.rows, steps);
        self.ctx.queue.write_buffer(&launch.settings, 0, bytemuck::cast_slice(&params));
    }

    /// Writes every member's optimizer settings for the tiled kernels, with its rate as it is now.
    fn set_rates(&self, members: &[GpuNetwork]) {
        let params: Vec<OptimParams> = members
            .iter()
            .enumerate()
            .map(|(i, m)| m.member_optim(i * self.n_params, i * self.state_stride, i * self.cap))
            .collect();
        self.ctx.queue.write_buffer(&self.optim, 0, bytemuck::cast_slice(&params));
    }

    /// Steps per submission at the pace measured so far.
    fn chunk(&self, members: &[GpuNetwork], rows: usize) -> usize {
        steps_per_submission(self.pace, self.size * members[0].step_units(rows), self.cap)
    }

    /// One submission of `n` steps recorded by `record`, after a snapshot of the values: every member's
    /// losses in its row of `cap`. `done`: the members' steps this call before it (for Adam's schedule);
    /// `row0`: where in its sample order each member's first batch starts.
    fn submit(
        &mut self,
        members: &[GpuNetwork],
        n: usize,
        done: usize,
        row0: usize,
        rows: usize,
        record: &dyn Fn(&mut wgpu::ComputePass<'_>),
    ) -> Result<Vec<f32>> {
        let ctx = Arc::clone(&self.ctx);
        let start = Instant::now();
        let got = ctx.guarded("training", || {
            let counters: Vec<u32> = (0..self.size).flat_map(|_| [0, row0 as u32]).collect();
            ctx.queue.write_buffer(&self.counters, 0, bytemuck::cast_slice(&counters));
            for (i, m) in members.iter().enumerate() {
                let sched = m.schedule(m.updates + done as u64, n);
                if !sched.is_empty() {
                    ctx.queue.write_buffer(&self.sched, (8 * i * self.cap) as u64, bytemuck::cast_slice(&sched));
                }
            }
            let mut encoder = members[0].encoder();
            encoder.copy_buffer_to_buffer(&self.theta, 0, &self.theta_bak, 0, None);
            encoder.copy_buffer_to_buffer(&self.state, 0, &self.state_bak, 0, None);
            {
                let mut pass = encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("train"), timestamp_writes: None });
                record(&mut pass);
            }
            ctx.submit_and_read("training", encoder, &self.losses, 0, (self.size - 1) * self.cap + n)
        })?;
        let units = n * self.size * members[0].step_units(rows);
        self.pace = Some(start.elapsed().as_secs_f64() / units.max(1) as f64);
        Ok(got)
    }

    /// The first step of `n` at which some member's loss is not finite; `n` when none.
    fn first_failure(&self, losses: &[f32], n: usize) -> usize {
        (0..self.size)
            .filter_map(|i| losses[i * self.cap..][..n].iter().position(|l| !l.is_finite()))
            .min()
            .unwrap_or(n)
    }

    /// The first `k` losses of every member's row of `losses` into `out`, at step `done`.
    fn put_losses(&self, losses: &[f32], k: usize, done: usize, out: &mut [&mut [f64]]) {
        for (i, row) in out.iter_mut().enumerate() {
            for (o, &l) in row[done..done + k].iter_mut().zip(&losses[i * self.cap..][..k]) {
                *o = f64::from(l);
            }
        }
    }

    /// Puts the snapshot of the last submission back.
    fn rollback(&self) -> Result<()> {
        self.ctx.guarded("rollback", || {
            let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            encoder.copy_buffer_to_buffer(&self.theta_bak, 0, &self.theta, 0, None);
            encoder.copy_buffer_to_buffer(&self.state_bak, 0, &self.state, 0, None);
            let index = self.ctx.queue.submit([encoder.finish()]);
            self.ctx.wait("rollback", index)
        })
    }

    /// Copies every member's values into the shared buffers (`into`) or back to the member.
    fn copy(&self, members: &[GpuNetwork], into: bool) -> Result<()> {
        self.ctx.guarded("copying members", || {
            let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            for (i, m) in members.iter().enumerate() {
                let values = [
                    (&m.bufs.theta, &self.theta, i * self.n_params, self.n_params),
                    (&m.bufs.state, &self.state, i * self.state_stride, m.layout.slots * self.n_params),
                ];
                for (own, shared, at, len) in values {
                    if len == 0 {
                        continue;
                    }
                    let (at, len) = (4 * at as u64, 4 * len as u64);
                    if into {
                        encoder.copy_buffer_to_buffer(own, 0, shared, at, len);
                    } else {
                        encoder.copy_buffer_to_buffer(shared, at, own, 0, len);
                    }
                }
            }
            let index = self.ctx.queue.submit([encoder.finish()]);
            self.ctx.wait("copying members", index)
        })
    }

    /// Copies the shared values back to the members, which have taken `steps` more steps.
    fn unpack(&self, members: &mut [GpuNetwork], steps: usize) -> Result<()> {
        self.copy(members, false)?;
        for m in members {
            m.updates += steps as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
