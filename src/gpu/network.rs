//! The three-layer network on the GPU, in f32, with the math of `crate::network` (see there):
//!   forward:  h = f(X w1^T + b1), z2 = h w2^T + b2, o = g(z2)
//!   backward: dz2 = dL/dz2, dw2 = dz2^T h, dz1 = (dz2 w2) * f'(h), dw1 = dz1^T X, db = column sums
//! then the optimizer update, all from the weights before the step.
//!
//! Parameters and optimizer state live on the GPU between calls (`buffers`); each batch size gets a
//! dispatch plan built once (`plan`, `fused`); steps run in submissions with rollback (`submit`).

use super::buffers::{Buffers, Layout, Work};
use super::context::Context;
use super::plan::Kernel;
use super::submit::{plan_of, Gathers};
use super::AdapterSummary;
use crate::backend::{Backend, FitPlan, KeepGoing, OptimizerState, Params};
use crate::error::{Error, Result};
use crate::memory;
use crate::network::{Config, Network, PARAM_NAMES};
use crate::population::Data;
use std::sync::{Arc, Mutex, MutexGuard};

/// A three-layer network whose parameters and optimizer state live on a GPU.
pub struct GpuNetwork {
    pub(super) ctx: Arc<Context>,
    pub(super) config: Config,
    pub(super) layout: Layout,
    /// Optimizer updates committed so far (Adam's t).
    pub(super) updates: u64,
    pub(super) bufs: Buffers,
    /// Seconds per unit of step work (`submit::step_units`) that the last submission took; None before
    /// the first. Submissions are sized by it to take about the same time on any device.
    pub(super) pace: Option<f64>,
    /// Batch buffers and plans, grown on demand; behind a lock so that predictions take `&self`.
    work: Mutex<Option<Work>>,
}

impl std::fmt::Debug for GpuNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuNetwork")
            .field("config", &self.config)
            .field("adapter", &self.ctx.info.name)
            .finish_non_exhaustive()
    }
}

/// A `fit` data set on the GPU: inputs, targets and sample order, and the gathers that copy each batch's
/// rows into the work buffers.
pub struct DataSet {
    /// Inputs and targets, which the gathers read.
    _rows: [wgpu::Buffer; 2],
    order: wgpu::Buffer,
    gathers: Gathers,
    n: usize,
    batch_size: usize,
}

impl GpuNetwork {
    /// A network initialised exactly as `Network::<f32>::new(config, seed)`, on the GPU.
    pub fn new(config: Config, seed: u64) -> Result<Self> {
        Self::from_cpu(&Network::<f32>::new(config, seed)?)
    }

    /// A GPU copy of a CPU network: its parameters, optimizer state and update count.
    pub fn from_cpu(net: &Network<f32>) -> Result<Self> {
        Self::on(&Context::shared()?, net)
    }

    /// A GPU copy of `net` on the device of `ctx`.
    pub(crate) fn on(ctx: &Arc<Context>, net: &Network<f32>) -> Result<Self> {
        let config = *net.config();
        let layout = Layout::new(&config);
        let bufs = ctx.guarded("allocation", || Buffers::new(ctx, &layout))?;
        let gpu = Self {
            ctx: Arc::clone(ctx),
            config,
            layout,
            updates: net.optimizer_state().1,
            bufs,
            pace: None,
            work: Mutex::new(None),
        };
        gpu.write(&gpu.bufs.theta, &layout.flatten(net.params()));
        gpu.write(&gpu.bufs.state, &layout.flatten_state(net.optimizer_state().0));
        Ok(gpu)
    }

    pub(super) fn write<P: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, values: &[P]) {
        if !values.is_empty() {
            self.ctx.queue.write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
    }

    pub(super) fn lock_work(&self) -> MutexGuard<'_, Option<Work>> {
        // Work buffers are only written by whole submissions, so a poisoned lock still guards usable data.
        self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes sure work buffers and the plan for batches of `rows` rows exist (growing the buffers drops
    /// the plans built on the old ones), and returns them.
    fn ensure_plan<'w>(&self, work: &'w mut Option<Work>, rows: usize) -> Result<&'w mut Work> {
        if work.as_ref().is_none_or(|w| w.cap < rows) {
            *work = Some(self.ctx.guarded("allocation", || Work::new(&self.ctx, &self.config, rows, [1, 1]))?);
        }
        let w = work.as_mut().ok_or_else(|| Error::Gpu { op: "planning", message: "no work buffers".into() })?;
        if !w.plans.contains_key(&rows) {
            let plan = self.ctx.guarded("planning", || self.build_plan(w, rows))?;
            w.plans.insert(rows, plan);
        }
        Ok(w)
    }

    /// Plans for every size in `rows`, and the batch (x, t) uploaded when given.
    fn prepare_batches(&self, sizes: &[usize], batch: Option<(&[f32], &[f32])>) -> Result<()> {
        self.ctx.check_process()?;
        let mut work = self.lock_work();
        for &r in sizes {
            let w = self.ensure_plan(&mut work, r)?;
            if let Some((x, t)) = batch {
                self.write(&w.x, x);
                self.write(&w.t, t);
            }
        }
        Ok(())
    }

    /// A forward pass over the batch `x` reading back the outputs, or with targets `t` the loss pass
    /// reading back the batch loss.
    fn evaluate(&self, x: &[f32], t: Option<&[f32]>, rows: usize) -> Result<Vec<f32>> {
        evaluate_all(std::slice::from_ref(self), x, t, rows)
    }

    /// A readback of `len` values of a network buffer.
    fn read(&self, op: &'static str, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        if len == 0 {
            return Ok(vec![]);
        }
        self.ctx.guarded(op, || self.ctx.submit_and_read(op, self.encoder(), buffer, 0, len))
    }
}

/// `GpuNetwork::evaluate` of every one of `nets` (networks of one shape on one device) in one
/// submission: their outputs, or their batch losses, one network after another. For several, the batch
/// is uploaded once and copied on the device into each network's work buffers, and their results are
/// gathered into one buffer to read back.
pub(super) fn evaluate_all(nets: &[GpuNetwork], x: &[f32], t: Option<&[f32]>, rows: usize) -> Result<Vec<f32>> {
    let op = if t.is_some() { "loss" } else { "forward" };
    let Some(lead) = nets.first() else { return Ok(vec![]) };
    let ctx = &lead.ctx;
    ctx.check_process()?;
    let per = if t.is_some() { 1 } else { rows * lead.config.n_out };
    let mut work: Vec<_> = nets.iter().map(GpuNetwork::lock_work).collect();
    for (net, work) in nets.iter().zip(&mut work) {
        net.ensure_plan(work, rows)?;
    }
    let upload = |what, values: &[f32]| -> Result<wgpu::Buffer> {
        let b = ctx.guarded("allocation", || ctx.storage(what, values.len()))?;
        lead.write(&b, values);
        Ok(b)
    };
    let shared = match nets {
        [_] => None,
        _ => Some((
            upload("inputs", x)?,
            t.map(|t| upload("targets", t)).transpose()?,
            ctx.guarded("allocation", || ctx.storage("outputs", nets.len() * per))?,
        )),
    };
    ctx.guarded(op, || {
        let mut encoder = lead.encoder();
        let mut read = None;
        for (i, (net, work)) in nets.iter().zip(&work).enumerate() {
            let w = work.as_ref().ok_or_else(|| Error::Gpu { op, message: "no work buffers".into() })?;
            if let Some((xs, ts, _)) = &shared {
                encoder.copy_buffer_to_buffer(xs, 0, &w.x, 0, 4 * x.len() as u64);
                if let (Some(ts), Some(t)) = (ts, t) {
                    encoder.copy_buffer_to_buffer(ts, 0, &w.t, 0, 4 * t.len() as u64);
                }
            } else {
                net.write(&w.x, x);
                net.write(&w.t, t.unwrap_or_default());
            }
            net.write(&net.bufs.counter, &[0_u32, 0]);
            let plan = plan_of(w, rows)?;
            let (dispatches, src) = match t {
                Some(_) => (&plan.loss, &net.bufs.losses),
                None => (&plan.forward, &w.o),
            };
            {
                let mut pass = encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(op), timestamp_writes: None });
                for d in dispatches {
                    net.record(&mut pass, d);
                }
            }
            read = Some(match &shared {
                Some((_, _, out)) => {
                    encoder.copy_buffer_to_buffer(src, 0, out, (4 * i * per) as u64, 4 * per as u64);
                    out
                }
                None => src,
            });
        }
        let read = read.ok_or_else(|| Error::Gpu { op, message: "nothing to read".into() })?;
        ctx.submit_and_read(op, encoder, read, 0, nets.len() * per)
    })
}

impl Backend for GpuNetwork {
    type T = f32;
    type Data<'a> = DataSet;

    fn config(&self) -> &Config {
        &self.config
    }

    fn adapter(&self) -> Option<AdapterSummary> {
        Some(self.ctx.summary())
    }

    fn outputs(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        self.evaluate(x, None, rows)
    }

    fn batch_loss(&self, x: &[f32], t: &[f32], rows: usize) -> Result<f64> {
        let losses = self.evaluate(x, Some(t), rows)?;
        losses
            .first()
            .map(|&l| f64::from(l))
            .ok_or_else(|| Error::Gpu { op: "loss", message: "no loss came back".into() })
    }

    fn steps_per_poll(&self, rows: usize) -> usize {
        self.chunk_steps(rows)
    }

    fn together(config: &Config, rows: usize) -> usize {
        super::population::together(config, rows)
    }

    fn train_together(
        members: &mut [Self],
        x: &[f32],
        t: &[f32],
        steps: usize,
        losses: &mut [f64],
        keep_going: KeepGoing,
    ) -> Option<Vec<Result<()>>> {
        super::population::train_together(members, x, t, steps, losses, keep_going)
    }

    fn fit_together(
        members: &mut [Self],
        data: Data<'_, f32>,
        plan: FitPlan,
        seeds: &[u64],
        lrs: Option<&[Vec<f64>]>,
        losses: &mut [f64],
        keep_going: KeepGoing,
    ) -> Option<Vec<Result<()>>> {
        super::population::fit_together(members, data, plan, seeds, lrs, losses, keep_going)
    }

    fn evaluate_together(members: &[Self], x: &[f32], t: Option<&[f32]>) -> Option<Result<Vec<f32>>> {
        super::population::evaluate_together(members, x, t)
    }

    fn run_steps(&mut self, x: &[f32], t: &[f32], rows: usize, steps: usize, losses: &mut Vec<f64>) -> Result<()> {
        self.prepare_batches(&[rows], Some((x, t)))?;
        // One row count per step (all the same here); refused like the CPU's losses when it cannot fit.
        let per_step = memory::filled("losses", steps, rows)?;
        self.run(&per_step, None, 0, losses)
    }

    fn prepare<'a>(
        &mut self,
        x: &'a [f32],
        y: &'a [f32],
        weights: Option<&'a [f32]>,
        n: usize,
        batch_size: usize,
    ) -> Result<DataSet> {
        if weights.is_some() {
            return Err(Error::Unsupported {
                arg: "sample_weight",
                what: "sample weights are not implemented on the GPU; fit on the CPU (net.to(\"cpu\"))".into(),
            });
        }
        let full = batch_size.min(n);
        let sizes: Vec<usize> = [full, n % full].into_iter().filter(|&r| r > 0).collect();
        self.prepare_batches(&sizes, None)?;
        let ctx = Arc::clone(&self.ctx);
        let (x_buf, y_buf, order) = ctx.guarded("allocation", || {
            Ok((
                ctx.storage("data set inputs", x.len())?,
                ctx.storage("data set targets", y.len())?,
                ctx.storage("sample order", n)?,
            ))
        })?;
        self.write(&x_buf, x);
        self.write(&y_buf, y);
        let mut gathers = Gathers::new();
        let work = self.lock_work();
        let w = work.as_ref().ok_or_else(|| Error::Gpu { op: "planning", message: "no work buffers".into() })?;
        let (ni, no) = (self.config.n_in, self.config.n_out);
        for &r in &sizes {
            let gather = |width: usize, src: &wgpu::Buffer, dest: &wgpu::Buffer| {
                let u = self
                    .settings("gather", &super::kernels::Quad { a: r as u32, b: width as u32, ..Default::default() });
                self.dispatch(
                    Kernel::Gather,
                    &u,
                    &[src, &order, &self.bufs.counter, dest],
                    [self.stride_groups(r * width, 64), 1, 1],
                )
            };
            gathers.insert(r, [gather(ni, &x_buf, &w.x)?, gather(no, &y_buf, &w.t)?]);
        }
        drop(work);
        Ok(DataSet { _rows: [x_buf, y_buf], order, gathers, n, batch_size })
    }

    fn run_batches(
        &mut self,
        data: &mut DataSet,
        order: Option<&[usize]>,
        batches: std::ops::Range<usize>,
        losses: &mut Vec<f64>,
    ) -> Result<()> {
        if batches.start == 0 {
            let order32: Vec<u32> = match order {
                Some(order) => order.iter().map(|&i| i as u32).collect(),
                None => (0..data.n as u32).collect(),
            };
            self.write(&data.order, &order32);
        }
        let (n, bs) = (data.n, data.batch_size);
        let rows: Vec<usize> = batches.clone().map(|b| (n - b * bs).min(bs)).collect();
        self.run(&rows, Some(&data.gathers), batches.start * bs, losses)
    }

    fn read_params(&self) -> Result<Params<f32>> {
        Ok(self.layout.split(&self.read("reading weights", &self.bufs.theta, self.layout.n_params)?))
    }

    /// Checked by the CPU network's rules first.
    fn write_params(&mut self, params: Params<f32>) -> Result<()> {
        self.ctx.check_process()?;
        let checked = Network::<f32>::with_params(self.config, params)?;
        self.write(&self.bufs.theta, &self.layout.flatten(checked.params()));
        Ok(())
    }

    fn read_state(&self) -> Result<OptimizerState<f32>> {
        let l = self.layout;
        let flat = self.read("reading optimizer state", &self.bufs.state, l.slots * l.n_params)?;
        Ok((l.split_state(&flat), self.updates))
    }

    fn write_state(&mut self, (state, updates): OptimizerState<f32>) -> Result<()> {
        self.ctx.check_process()?;
        let l = self.layout;
        for (i, s) in state.iter().enumerate() {
            let slots = if l.trained(i) { l.slots } else { 0 };
            if s.len() != slots || s.iter().any(|v| v.len() != l.len[i]) {
                return Err(Error::ShapeMismatch {
                    arg: "optimizer_state",
                    expected: format!("{slots} buffers of {} values for {}", l.len[i], PARAM_NAMES[i]),
                    got: format!("{} buffers", s.len()),
                });
            }
            self.config.optimizer.check_state(s, updates)?;
        }
        self.write(&self.bufs.state, &l.flatten_state(&state));
        self.updates = updates;
        Ok(())
    }

    /// The rate is in the plans' settings blocks: the plans built so far are rebuilt with the new one (a fit's
    /// gathers, recorded on the work buffers, stay valid).
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        let optimizer = self.config.optimizer.with_lr(lr);
        optimizer.validate()?;
        if optimizer == self.config.optimizer {
            return Ok(());
        }
        self.config.optimizer = optimizer;
        let mut work = self.lock_work();
        if let Some(w) = work.as_mut() {
            let sizes: Vec<usize> = w.plans.keys().copied().collect();
            for rows in sizes {
                let plan = self.ctx.guarded("planning", || self.build_plan(w, rows))?;
                w.plans.insert(rows, plan);
            }
        }
        Ok(())
    }
}
