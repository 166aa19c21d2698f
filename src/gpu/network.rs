//! The three-layer network on the GPU, in f32, with the math of `crate::network` (see there):
//!   forward:  h = f(X w1^T + b1), z2 = h w2^T + b2, o = g(z2)
//!   backward: dz2 = dL/dz2, dw2 = dz2^T h, dz1 = (dz2 w2) * f'(h), dw1 = dz1^T X, db = column sums
//! then the optimizer update, all from the weights before the step.
//!
//! Parameters live in one GPU buffer laid out [w1 | w2 | b1 | b2] and stay there between calls;
//! `params()` reads them back. A step is a fixed list of dispatches (a "plan" per batch size, built
//! once): the tiled matmul with bias and activation fused, the output/loss rows kernel, a reduction
//! into the loss history, the backward products, bias gradients, the optimizer and a step counter.
//! When every width is at most 32, one dispatch of `fused.wgsl` runs all steps of a submission
//! instead. Many steps go into one command encoder and one submission; only the loss history comes
//! back at the end of each. A submission that produces a non-finite loss is rolled back to its
//! snapshot and replayed up to the last finite step, so, as on the CPU, the weights of the last
//! finite step are kept.

use super::context::Context;
use super::kernels::{
    FusedParams, MatmulParams, OptimParams, Quad, ReduceParams, RowsParams, EPI_BIAS_ACT, EPI_DERIV, EPI_STORE,
    FUSED_LOCAL_SCRATCH, FUSED_MAX_WIDTH, LOSS_NONE, TRANS_A, TRANS_B, WIDE_MIN,
};
use super::AdapterSummary;
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::memory;
use crate::network::{check_rows, epoch_order, Bias, Config, KeepGoing, Network, StepTrace, B1, B2, W1, W2};
use crate::optim::Optimizer;
use std::collections::HashMap;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Multiply-adds per submission: large enough to amortise a submission, small enough that Ctrl-C
/// is answered within about a second even on a software GPU.
const CHUNK_WORK: usize = 200_000_000;
/// Steps per submission at most (the loss history and Adam's schedule are sized for it).
const MAX_CHUNK_STEPS: usize = 100_000;
/// The unfused path records about twelve dispatches per step; this bounds one command buffer.
const MAX_TILED_CHUNK_STEPS: usize = 1_000;
/// Above this batch a single workgroup is slower than the tiled kernels, even for small widths.
const FUSED_MAX_ROWS: usize = 256;
/// Loop iterations one invocation of the fused kernel may run per dispatch. llvmpipe (lavapipe)
/// silently ends any loop after 65535 iterations, nested ones counted, so a dispatch that runs many
/// steps is cut short without an error; staying under the cap costs a hardware GPU a few extra
/// dispatches of a few microseconds each.
const FUSED_LOOP_BUDGET: usize = 50_000;

fn act_id(a: Activation) -> u32 {
    match a {
        Activation::Sigmoid => 0,
        Activation::Tanh => 1,
        Activation::Relu => 2,
        Activation::Identity => 3,
        Activation::Softmax => 4,
    }
}

fn bias_id(b: Bias) -> u32 {
    match b {
        Bias::None => 0,
        Bias::PerNeuron => 1,
        Bias::Shared => 2,
    }
}

fn loss_id(l: Loss) -> u32 {
    match l {
        Loss::HalfSse => 0,
        Loss::Mse => 1,
        Loss::CrossEntropy => 2,
    }
}

/// Where each parameter tensor sits in the one parameter buffer.
#[derive(Debug, Clone, Copy)]
struct Layout {
    off: [usize; 4],
    len: [usize; 4],
    n_params: usize,
    /// The trained values are the prefix `[0, n_trained)`: weights, then biases when trained.
    n_trained: usize,
    slots: usize,
}

impl Layout {
    fn new(c: &Config) -> Self {
        let len = c.shapes().map(|(r, k)| r * k);
        let mut off = [0; 4];
        off[W2] = len[W1];
        off[B1] = len[W1] + len[W2];
        off[B2] = off[B1] + len[B1];
        let n_params = off[B2] + len[B2];
        let n_trained = if c.train_bias { n_params } else { off[B1] };
        Self { off, len, n_params, n_trained, slots: c.optimizer.slots() }
    }

    fn trained(&self, i: usize) -> bool {
        self.len[i] > 0 && self.off[i] < self.n_trained
    }
}

#[derive(Clone, Copy)]
enum Kernel {
    Matmul,
    MatmulWide,
    Rows,
    Reduce,
    BiasGrad,
    Optim,
    Tick,
    Gather,
    Fused,
    FusedLocal,
}

struct Dispatch {
    kernel: Kernel,
    bind: wgpu::BindGroup,
    groups: [u32; 3],
}

/// The dispatches for one batch size.
struct Plan {
    forward: Vec<Dispatch>,
    loss: Vec<Dispatch>,
    step: Vec<Dispatch>,
    /// The fused kernel: settings, and two dispatches with their uniform blocks, one for the full
    /// dispatches of a submission and one for the remainder (step counts written before each use).
    fused: Option<Fused>,
}

struct Fused {
    params: FusedParams,
    full: (Dispatch, wgpu::Buffer),
    tail: (Dispatch, wgpu::Buffer),
    /// Steps one dispatch may run within `FUSED_LOOP_BUDGET`.
    steps_per_dispatch: usize,
}

/// Buffers sized for a batch of up to `cap` rows.
struct Work {
    cap: usize,
    x: wgpu::Buffer,
    t: wgpu::Buffer,
    h: wgpu::Buffer,
    z2: wgpu::Buffer,
    o: wgpu::Buffer,
    dz2: wgpu::Buffer,
    dz1: wgpu::Buffer,
    row_loss: wgpu::Buffer,
    colsum: wgpu::Buffer,
    scratch: wgpu::Buffer,
    plans: HashMap<usize, Plan>,
}

/// A fit call's data set and sample order.
struct Data {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    order: wgpu::Buffer,
}

/// A three-layer network whose parameters and optimizer state live on a GPU.
pub struct GpuNetwork {
    ctx: Arc<Context>,
    config: Config,
    layout: Layout,
    /// Optimizer updates committed so far (Adam's t).
    updates: u64,
    theta: wgpu::Buffer,
    grads: wgpu::Buffer,
    state: wgpu::Buffer,
    theta_bak: wgpu::Buffer,
    state_bak: wgpu::Buffer,
    counter: wgpu::Buffer,
    losses: wgpu::Buffer,
    sched: wgpu::Buffer,
    dummy: wgpu::Buffer,
    work: Option<Work>,
}

impl std::fmt::Debug for GpuNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuNetwork")
            .field("config", &self.config)
            .field("adapter", &self.ctx.info.name)
            .finish_non_exhaustive()
    }
}

/// The loss entry the optimizer kernels write when an update made the weights non-finite (a NaN with
/// this payload; `WEIGHTS_DIVERGED` in common.wgsl).
const WEIGHTS_DIVERGED: u32 = 0x7fc0_0bad;

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
        let c = Arc::clone(ctx);
        let mut gpu = ctx.guarded("allocation", || {
            let state_len = layout.slots * layout.n_params;
            let counter = c.storage("step counter", 2)?;
            Ok(Self {
                theta: c.storage("parameters", layout.n_params)?,
                grads: c.storage("gradients", layout.n_params)?,
                state: c.storage("optimizer state", state_len)?,
                theta_bak: c.storage("parameter snapshot", layout.n_params)?,
                state_bak: c.storage("optimizer state snapshot", state_len)?,
                losses: c.storage("loss history", MAX_CHUNK_STEPS)?,
                sched: c.storage("Adam schedule", 2 * MAX_CHUNK_STEPS)?,
                dummy: c.storage("unused binding", 2)?,
                counter,
                ctx: c,
                config,
                layout,
                updates: 0,
                work: None,
            })
        })?;
        gpu.upload_params(net.params());
        let (state, updates) = net.optimizer_state();
        gpu.upload_state(state);
        gpu.updates = updates;
        Ok(gpu)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The adapter this network runs on.
    pub fn adapter(&self) -> AdapterSummary {
        self.ctx.summary()
    }

    /// Whether a batch of `rows` trains with the fused kernel.
    pub fn uses_fused(&self, rows: usize) -> bool {
        let c = &self.config;
        c.n_in.max(c.n_hidden).max(c.n_out) <= FUSED_MAX_WIDTH && rows <= FUSED_MAX_ROWS
    }

    fn upload_params(&self, params: &[Vec<f32>; 4]) {
        let mut flat = vec![0.0_f32; self.layout.n_params];
        for (i, p) in params.iter().enumerate() {
            flat[self.layout.off[i]..self.layout.off[i] + p.len()].copy_from_slice(p);
        }
        self.write(&self.theta, &flat);
    }

    fn upload_state(&self, state: &[Vec<Vec<f32>>; 4]) {
        let l = &self.layout;
        let mut flat = vec![0.0_f32; l.slots * l.n_params];
        for (i, slots) in state.iter().enumerate() {
            for (s, values) in slots.iter().enumerate() {
                let at = s * l.n_params + l.off[i];
                flat[at..at + values.len()].copy_from_slice(values);
            }
        }
        self.write(&self.state, &flat);
    }

    fn write<P: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, values: &[P]) {
        if !values.is_empty() {
            self.ctx.queue.write_buffer(buffer, 0, bytemuck::cast_slice(values));
        }
    }

    fn uniform<P: bytemuck::Pod>(&self, label: &'static str, params: &P) -> wgpu::Buffer {
        self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    fn pipeline(&self, k: Kernel) -> &wgpu::ComputePipeline {
        let ks = &self.ctx.kernels;
        match k {
            Kernel::Matmul => &ks.matmul,
            Kernel::MatmulWide => &ks.matmul_wide,
            Kernel::Rows => &ks.rows,
            Kernel::Reduce => &ks.reduce,
            Kernel::BiasGrad => &ks.bias_grad,
            Kernel::Optim => &ks.optim,
            Kernel::Tick => &ks.tick,
            Kernel::Gather => &ks.gather,
            Kernel::Fused => &ks.fused,
            Kernel::FusedLocal => &ks.fused_local,
        }
    }

    /// A dispatch of `k` over `groups` workgroups with `uniform` and then `buffers` as bindings 0, 1...
    fn dispatch(
        &self,
        k: Kernel,
        uniform: &wgpu::Buffer,
        buffers: &[&wgpu::Buffer],
        groups: [usize; 3],
    ) -> Result<Dispatch> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        let mut g = [0_u32; 3];
        for (gi, &n) in g.iter_mut().zip(&groups) {
            *gi = u32::try_from(n.max(1)).ok().filter(|&n| n <= max).ok_or(Error::GpuLimit {
                what: "a batch this large",
                needed: n as u64,
                limit: "max_compute_workgroups_per_dimension",
                max: u64::from(max),
            })?;
        }
        let layout = self.pipeline(k).get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(uniform)
            .chain(buffers.iter().copied())
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        Ok(Dispatch { kernel: k, bind, groups: g })
    }

    /// Grid-stride kernels need no more workgroups than this.
    fn stride_groups(&self, n: usize, per_group: usize) -> usize {
        n.div_ceil(per_group).clamp(1, self.ctx.limits.max_compute_workgroups_per_dimension as usize)
    }

    fn matmul(
        &self,
        p: MatmulParams,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        d: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let u = self.uniform("matmul", &p);
        let (kernel, tile) =
            if p.m >= WIDE_MIN && p.n >= WIDE_MIN { (Kernel::MatmulWide, 128) } else { (Kernel::Matmul, 64) };
        self.dispatch(
            kernel,
            &u,
            &[a, b, bias, d, c],
            [(p.n as usize).div_ceil(tile), (p.m as usize).div_ceil(tile), 1],
        )
    }

    /// Makes sure buffers for `rows` rows exist (growing them drops the plans built on the old ones).
    fn ensure_work(&mut self, rows: usize) -> Result<()> {
        if self.work.as_ref().is_some_and(|w| w.cap >= rows) {
            return Ok(());
        }
        let c = self.config;
        let ctx = Arc::clone(&self.ctx);
        let scratch_len = rows * (2 * c.n_hidden + 3 * c.n_out + 1);
        let work = ctx.guarded("allocation", || {
            Ok(Work {
                cap: rows,
                x: ctx.storage("inputs", rows * c.n_in)?,
                t: ctx.storage("targets", rows * c.n_out)?,
                h: ctx.storage("hidden activations", rows * c.n_hidden)?,
                z2: ctx.storage("output net inputs", rows * c.n_out)?,
                o: ctx.storage("outputs", rows * c.n_out)?,
                dz2: ctx.storage("output deltas", rows * c.n_out)?,
                dz1: ctx.storage("hidden deltas", rows * c.n_hidden)?,
                row_loss: ctx.storage("row losses", rows)?,
                colsum: ctx.storage("bias gradient sums", c.n_hidden.max(c.n_out))?,
                scratch: if self.uses_fused(rows.min(FUSED_MAX_ROWS)) {
                    ctx.storage(
                        "fused activations",
                        scratch_len.min(FUSED_MAX_ROWS * (2 * c.n_hidden + 3 * c.n_out + 1)),
                    )?
                } else {
                    ctx.storage("fused activations", 1)?
                },
                plans: HashMap::new(),
            })
        })?;
        self.work = Some(work);
        Ok(())
    }

    /// Builds the dispatches for batches of `rows` rows, once.
    fn ensure_plan(&mut self, rows: usize) -> Result<()> {
        self.ensure_work(rows)?;
        if self.work.as_ref().is_some_and(|w| w.plans.contains_key(&rows)) {
            return Ok(());
        }
        let plan = {
            let Some(w) = self.work.as_ref() else {
                return Err(Error::Gpu { op: "planning", message: "no work buffers".into() });
            };
            let ctx = Arc::clone(&self.ctx);
            ctx.guarded("planning", || self.build_plan(w, rows))?
        };
        if let Some(w) = self.work.as_mut() {
            w.plans.insert(rows, plan);
        }
        Ok(())
    }

    #[allow(clippy::too_many_lines)] // one list of dispatches, in the order a step runs them
    fn build_plan(&self, w: &Work, rows: usize) -> Result<Plan> {
        let c = &self.config;
        let l = &self.layout;
        let (ni, nh, no) = (c.n_in as u32, c.n_hidden as u32, c.n_out as u32);
        let b = rows as u32;
        let bias_mode = bias_id(c.bias);
        let (dz_scale, loss_scale) = match c.loss {
            Loss::HalfSse | Loss::CrossEntropy => (1.0 / rows as f64, 1.0 / rows as f64),
            Loss::Mse => (2.0 / (rows * c.n_out) as f64, 1.0 / (rows * c.n_out) as f64),
        };
        let off = |i: usize| l.off[i] as u32;
        let fwd1 = self.matmul(
            MatmulParams {
                m: b,
                n: nh,
                k: ni,
                flags: TRANS_B,
                b_off: off(W1),
                bias_off: off(B1),
                epilogue: EPI_BIAS_ACT,
                act: act_id(c.hidden_activation),
                bias_mode,
                ..Default::default()
            },
            &w.x,
            &self.theta,
            &self.theta,
            &self.dummy,
            &w.h,
        )?;
        let fwd2 = self.matmul(
            MatmulParams {
                m: b,
                n: no,
                k: nh,
                flags: TRANS_B,
                b_off: off(W2),
                bias_off: off(B2),
                epilogue: EPI_BIAS_ACT,
                act: act_id(Activation::Identity),
                bias_mode,
                ..Default::default()
            },
            &w.h,
            &self.theta,
            &self.theta,
            &self.dummy,
            &w.z2,
        )?;
        let row_groups = [self.stride_groups(rows, 64), 1, 1];
        let rows_of = |loss: u32| -> Result<Dispatch> {
            let u = self.uniform(
                "rows",
                &RowsParams {
                    n_out: no,
                    rows: b,
                    act: act_id(c.output_activation),
                    loss,
                    scale: dz_scale as f32,
                    pad: [0; 3],
                },
            );
            self.dispatch(Kernel::Rows, &u, &[&w.z2, &w.t, &w.o, &w.dz2, &w.row_loss], row_groups)
        };
        let reduce = |n: u32,
                      out_off: u32,
                      at_step: u32,
                      scale: f64,
                      x: &wgpu::Buffer,
                      out: &wgpu::Buffer|
         -> Result<Dispatch> {
            let u = self
                .uniform("reduce", &ReduceParams { n, in_off: 0, out_off, at_step, scale: scale as f32, pad: [0; 3] });
            self.dispatch(Kernel::Reduce, &u, &[x, &self.counter, out], [1, 1, 1])
        };
        let forward = vec![self.matmul_clone(&fwd1), self.matmul_clone(&fwd2), rows_of(LOSS_NONE)?];
        let loss_pass = || -> Result<Vec<Dispatch>> {
            Ok(vec![
                self.matmul_clone(&fwd1),
                self.matmul_clone(&fwd2),
                rows_of(loss_id(c.loss))?,
                reduce(b, 0, 1, loss_scale, &w.row_loss, &self.losses)?,
            ])
        };
        let loss = loss_pass()?;
        let mut step = loss_pass()?;
        step.push(self.matmul(
            MatmulParams {
                m: no,
                n: nh,
                k: b,
                flags: TRANS_A,
                c_off: off(W2),
                epilogue: EPI_STORE,
                ..Default::default()
            },
            &w.dz2,
            &w.h,
            &self.dummy,
            &self.dummy,
            &self.grads,
        )?);
        step.push(self.matmul(
            MatmulParams {
                m: b,
                n: nh,
                k: no,
                b_off: off(W2),
                epilogue: EPI_DERIV,
                act: act_id(c.hidden_activation),
                ..Default::default()
            },
            &w.dz2,
            &self.theta,
            &self.dummy,
            &w.h,
            &w.dz1,
        )?);
        step.push(self.matmul(
            MatmulParams {
                m: nh,
                n: ni,
                k: b,
                flags: TRANS_A,
                c_off: off(W1),
                epilogue: EPI_STORE,
                ..Default::default()
            },
            &w.dz1,
            &w.x,
            &self.dummy,
            &self.dummy,
            &self.grads,
        )?);
        if c.train_bias && c.bias != Bias::None {
            for (delta, width, i) in [(&w.dz1, nh, B1), (&w.dz2, no, B2)] {
                let shared = c.bias == Bias::Shared;
                let out_off = if shared { 0 } else { off(i) };
                let u = self.uniform("bias_grad", &Quad { a: width, b, c: out_off, d: 0 });
                let dest = if shared { &w.colsum } else { &self.grads };
                step.push(self.dispatch(
                    Kernel::BiasGrad,
                    &u,
                    &[delta, dest],
                    [(width as usize).div_ceil(64), 1, 1],
                )?);
                if shared {
                    step.push(reduce(width, off(i), 0, 1.0, &w.colsum, &self.grads)?);
                }
            }
        }
        let (kind, o) = self.optim_params();
        if l.n_trained > 0 {
            let u = self.uniform("optim", &OptimParams { n: l.n_trained as u32, kind, stride: l.n_params as u32, ..o });
            step.push(self.dispatch(
                Kernel::Optim,
                &u,
                &[&self.theta, &self.grads, &self.state, &self.sched, &self.counter, &self.losses],
                [self.stride_groups(l.n_trained, 64), 1, 1],
            )?);
        }
        let u = self.uniform("tick", &Quad { a: b, ..Default::default() });
        step.push(self.dispatch(Kernel::Tick, &u, &[&self.counter], [1, 1, 1])?);

        let fused = if self.uses_fused(rows) {
            let p = FusedParams {
                n_in: ni,
                n_hidden: nh,
                n_out: no,
                rows: b,
                steps: 1,
                hidden_act: act_id(c.hidden_activation),
                out_act: act_id(c.output_activation),
                loss: loss_id(c.loss),
                bias_mode,
                n_trained: l.n_trained as u32,
                kind,
                n_params: l.n_params as u32,
                lr: o.lr,
                mu: o.mu,
                wd: o.wd,
                beta1w: o.beta1w,
                beta2: o.beta2,
                beta2w: o.beta2w,
                eps: o.eps,
                scale: dz_scale as f32,
                loss_scale: loss_scale as f32,
                pad: [0; 3],
            };
            // Activations in workgroup memory when they fit, else in the global scratch buffer.
            let local = rows * (2 * c.n_hidden + 3 * c.n_out + 1) <= FUSED_LOCAL_SCRATCH;
            let make = || -> Result<(Dispatch, wgpu::Buffer)> {
                let u = self.uniform("fused", &p);
                let buffers =
                    [&w.x, &w.t, &self.theta, &self.state, &self.sched, &self.losses, &self.counter, &w.scratch];
                let d = if local {
                    self.dispatch(Kernel::FusedLocal, &u, &buffers[..7], [1, 1, 1])?
                } else {
                    self.dispatch(Kernel::Fused, &u, &buffers, [1, 1, 1])?
                };
                Ok((d, u))
            };
            Some(Fused {
                params: p,
                full: make()?,
                tail: make()?,
                steps_per_dispatch: (FUSED_LOOP_BUDGET / self.fused_loops(rows)).max(1),
            })
        } else {
            None
        };
        Ok(Plan { forward, loss, step, fused })
    }

    /// The most loop iterations one invocation of fused.wgsl runs per step, phase by phase.
    fn fused_loops(&self, rows: usize) -> usize {
        let c = &self.config;
        let (ni, nh, no) = (c.n_in, c.n_hidden, c.n_out);
        let per = |n: usize| n.div_ceil(256);
        let shared = if c.bias == Bias::Shared { rows * nh.max(no) } else { 0 };
        let owned = self.layout.n_params.div_ceil(256);
        per(rows * nh) * (ni + 1)
            + per(rows * no) * (nh + 1)
            + per(rows) * (3 * no + 4)
            + per(rows * nh) * (no + 1)
            + 8
            + owned * (rows + 1)
            + shared
            + 16
    }

    /// A second handle on the same dispatch (bind groups are reference counted).
    #[allow(clippy::unused_self)]
    fn matmul_clone(&self, d: &Dispatch) -> Dispatch {
        Dispatch { kernel: d.kernel, bind: d.bind.clone(), groups: d.groups }
    }

    /// optim.wgsl's kind and settings.
    fn optim_params(&self) -> (u32, OptimParams) {
        match self.config.optimizer {
            Optimizer::Sgd { lr, momentum, nesterov, weight_decay } => {
                let kind = if momentum == 0.0 {
                    0
                } else if nesterov {
                    2
                } else {
                    1
                };
                (
                    kind,
                    OptimParams { lr: lr as f32, mu: momentum as f32, wd: weight_decay as f32, ..Default::default() },
                )
            }
            Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => (
                3,
                OptimParams {
                    lr: lr as f32,
                    wd: weight_decay as f32,
                    beta1w: (1.0 - beta1) as f32,
                    beta2: beta2 as f32,
                    beta2w: (1.0 - beta2) as f32,
                    eps: eps as f32,
                    ..Default::default()
                },
            ),
        }
    }

    fn record(&self, pass: &mut wgpu::ComputePass<'_>, d: &Dispatch) {
        pass.set_pipeline(self.pipeline(d.kernel));
        pass.set_bind_group(0, &d.bind, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }

    fn plan(&self, rows: usize) -> Result<&Plan> {
        self.work
            .as_ref()
            .and_then(|w| w.plans.get(&rows))
            .ok_or_else(|| Error::Gpu { op: "planning", message: format!("no plan for {rows} rows") })
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("rustbp") })
    }

    /// Records and submits the steps `rows` (the batch size of each), reading batches from the
    /// work buffers, or gathering them first from a fit's data set when `gathers` is given, with
    /// the row cursor starting at `row0`. Returns the loss of each step.
    fn run_chunk(
        &self,
        rows: &[usize],
        gathers: Option<&HashMap<usize, [Dispatch; 2]>>,
        row0: usize,
    ) -> Result<Vec<f32>> {
        let n = rows.len();
        let Some(&first) = rows.first() else { return Ok(vec![]) };
        self.write(&self.counter, &[0_u32, row0 as u32]);
        if let Optimizer::Adam { lr, beta1, beta2, .. } = self.config.optimizer {
            // Bias corrections in f64 on the host, as the CPU optimizer computes them.
            let sched: Vec<f32> = (1..=n as u64)
                .flat_map(|s| {
                    let t = (self.updates + s) as f64;
                    [(lr / (1.0 - beta1.powf(t))) as f32, (1.0 - beta2.powf(t)).sqrt() as f32]
                })
                .collect();
            self.write(&self.sched, &sched);
        }
        // All steps alike on the fused kernel: many steps per dispatch. Otherwise one dispatch list per step.
        let many_per_dispatch = gathers.is_none() && rows.iter().all(|&r| r == first) && self.uses_fused(first);
        let mut sizes: Vec<usize> = rows.to_vec();
        sizes.sort_unstable();
        sizes.dedup();
        let mut full_dispatches = 0;
        for &r in &sizes {
            if let Some(f) = &self.plan(r)?.fused {
                let (full, tail) =
                    if many_per_dispatch { (f.steps_per_dispatch, n % f.steps_per_dispatch) } else { (1, 1) };
                full_dispatches = if many_per_dispatch { n / f.steps_per_dispatch } else { 0 };
                self.ctx.queue.write_buffer(
                    &f.full.1,
                    0,
                    bytemuck::bytes_of(&FusedParams { steps: full as u32, ..f.params }),
                );
                self.ctx.queue.write_buffer(
                    &f.tail.1,
                    0,
                    bytemuck::bytes_of(&FusedParams { steps: tail as u32, ..f.params }),
                );
            }
        }
        let mut encoder = self.encoder();
        // The snapshot a diverging submission is rolled back to.
        encoder.copy_buffer_to_buffer(&self.theta, 0, &self.theta_bak, 0, None);
        encoder.copy_buffer_to_buffer(&self.state, 0, &self.state_bak, 0, None);
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("train"), timestamp_writes: None });
            if many_per_dispatch {
                if let Some(f) = &self.plan(first)?.fused {
                    for _ in 0..full_dispatches {
                        self.record(&mut pass, &f.full.0);
                    }
                    if n % f.steps_per_dispatch > 0 {
                        self.record(&mut pass, &f.tail.0);
                    }
                }
            } else {
                for &r in rows {
                    let plan = self.plan(r)?;
                    if let Some([gx, gy]) = gathers.and_then(|g| g.get(&r)) {
                        self.record(&mut pass, gx);
                        self.record(&mut pass, gy);
                    }
                    match &plan.fused {
                        Some(f) => self.record(&mut pass, &f.tail.0),
                        None => plan.step.iter().for_each(|d| self.record(&mut pass, d)),
                    }
                }
            }
        }
        self.ctx.submit_and_read("training", encoder, &self.losses, 0, n)
    }

    /// Runs the steps `rows` in submissions of about `CHUNK_WORK`, asking `keep_going` between them.
    /// A non-finite loss rolls the submission back and replays its finite steps, then fails with
    /// `Diverged` at that step (counted within this list).
    fn run_steps(
        &mut self,
        rows: &[usize],
        gathers: Option<&HashMap<usize, [Dispatch; 2]>>,
        keep_going: KeepGoing,
    ) -> Result<Vec<f64>> {
        let mut sizes = rows.to_vec();
        sizes.sort_unstable();
        sizes.dedup();
        for &r in &sizes {
            self.ensure_plan(r)?;
        }
        let c = &self.config;
        let widest = sizes.last().copied().unwrap_or(1);
        let work = 3 * widest * (c.n_in * c.n_hidden + c.n_hidden * c.n_out);
        let cap = if self.uses_fused(widest) { MAX_CHUNK_STEPS } else { MAX_TILED_CHUNK_STEPS };
        let chunk = (CHUNK_WORK / work.max(1)).clamp(1, cap);
        let mut out = Vec::with_capacity(rows.len());
        let (mut start, mut row0) = (0, 0);
        let ctx = Arc::clone(&self.ctx);
        while start < rows.len() {
            if start > 0 && !keep_going() {
                return Err(Error::Interrupted { completed: start });
            }
            let end = (start + chunk).min(rows.len());
            let part = &rows[start..end];
            let losses = ctx.guarded("training", || self.run_chunk(part, gathers, row0))?;
            if let Some(k) = losses.iter().position(|l| !l.is_finite()) {
                ctx.guarded("rollback", || {
                    let mut encoder = self.encoder();
                    encoder.copy_buffer_to_buffer(&self.theta_bak, 0, &self.theta, 0, None);
                    encoder.copy_buffer_to_buffer(&self.state_bak, 0, &self.state, 0, None);
                    let index = self.ctx.queue.submit([encoder.finish()]);
                    self.ctx.wait("rollback", index)?;
                    if k > 0 {
                        self.run_chunk(&part[..k], gathers, row0)?;
                    }
                    Ok(())
                })?;
                self.updates += k as u64;
                out.extend(losses[..k].iter().map(|&l| f64::from(l)));
                let what = if losses[k].to_bits() == WEIGHTS_DIVERGED { "weights" } else { "loss" };
                return Err(Error::Diverged { step: start + k, what, losses: out });
            }
            self.updates += part.len() as u64;
            out.extend(losses.iter().map(|&l| f64::from(l)));
            row0 += part.iter().sum::<usize>();
            start = end;
        }
        Ok(out)
    }

    /// Uploads a batch into the work buffers.
    fn upload_batch(&mut self, x: &[f32], t: Option<&[f32]>, rows: usize) -> Result<()> {
        self.ensure_plan(rows)?;
        if let Some(w) = &self.work {
            self.write(&w.x, x);
            if let Some(t) = t {
                self.write(&w.t, t);
            }
        }
        Ok(())
    }

    /// Outputs for a batch `x` (rows, `n_in`).
    pub fn forward(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let rows = check_rows("X", x, self.config.n_in)?;
        self.upload_batch(x, None, rows)?;
        let ctx = Arc::clone(&self.ctx);
        ctx.guarded("forward", || {
            let mut encoder = self.encoder();
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes: None,
                });
                self.plan(rows)?.forward.iter().for_each(|d| self.record(&mut pass, d));
            }
            let o =
                &self.work.as_ref().ok_or_else(|| Error::Gpu { op: "forward", message: "no work buffers".into() })?.o;
            self.ctx.submit_and_read("forward", encoder, o, 0, rows * self.config.n_out)
        })
    }

    /// The loss on (x, t) without training.
    pub fn loss(&mut self, x: &[f32], t: &[f32]) -> Result<f64> {
        let rows = self.config.check_pair(x, t, "T")?;
        self.upload_batch(x, Some(t), rows)?;
        let ctx = Arc::clone(&self.ctx);
        let losses = ctx.guarded("loss", || {
            self.write(&self.counter, &[0_u32, 0]);
            let mut encoder = self.encoder();
            {
                let mut pass = encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("loss"), timestamp_writes: None });
                self.plan(rows)?.loss.iter().for_each(|d| self.record(&mut pass, d));
            }
            self.ctx.submit_and_read("loss", encoder, &self.losses, 0, 1)
        })?;
        losses
            .first()
            .map(|&l| f64::from(l))
            .ok_or_else(|| Error::Gpu { op: "loss", message: "no loss came back".into() })
    }

    /// One training step; the loss before the update.
    pub fn train_step(&mut self, x: &[f32], t: &[f32]) -> Result<f64> {
        let losses = self.train(x, t, 1, &mut || true)?;
        losses.first().copied().ok_or_else(|| Error::Gpu { op: "training", message: "no loss came back".into() })
    }

    /// `steps` training steps on one batch; the loss of each.
    pub fn train(&mut self, x: &[f32], t: &[f32], steps: usize, keep_going: KeepGoing) -> Result<Vec<f64>> {
        let rows = self.config.check_pair(x, t, "T")?;
        self.upload_batch(x, Some(t), rows)?;
        // One row count per step (all the same here); refused like the CPU's losses when it cannot fit.
        let per_step = memory::filled("losses", steps, rows)?;
        self.run_steps(&per_step, None, keep_going)
    }

    /// Mini-batch training, with the same batches, order and epoch losses as `Network::fit`.
    pub fn fit(
        &mut self,
        x: &[f32],
        y: &[f32],
        epochs: usize,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        first_epoch: usize,
        keep_going: KeepGoing,
    ) -> Result<Vec<f64>> {
        let n = self.config.check_pair(x, y, "Y")?;
        if batch_size == 0 {
            return Err(Error::config("batch_size", "a positive integer", 0));
        }
        let ctx = Arc::clone(&self.ctx);
        let data = ctx.guarded("allocation", || {
            Ok(Data {
                x: ctx.storage("data set inputs", x.len())?,
                y: ctx.storage("data set targets", y.len())?,
                order: ctx.storage("sample order", n)?,
            })
        })?;
        self.write(&data.x, x);
        self.write(&data.y, y);
        let full = batch_size.min(n);
        let rows: Vec<usize> = (0..n).step_by(batch_size).map(|s| (n - s).min(batch_size)).collect();
        let mut gathers = HashMap::new();
        for &r in &[full, n % full] {
            if r == 0 || gathers.contains_key(&r) {
                continue;
            }
            self.ensure_plan(r)?;
            let Some(w) = self.work.as_ref() else { continue };
            let (ni, no) = (self.config.n_in, self.config.n_out);
            let gx = self.uniform("gather", &Quad { a: r as u32, b: ni as u32, ..Default::default() });
            let gy = self.uniform("gather", &Quad { a: r as u32, b: no as u32, ..Default::default() });
            let dx = self.dispatch(
                Kernel::Gather,
                &gx,
                &[&data.x, &data.order, &self.counter, &w.x],
                [self.stride_groups(r * ni, 64), 1, 1],
            )?;
            let dy = self.dispatch(
                Kernel::Gather,
                &gy,
                &[&data.y, &data.order, &self.counter, &w.t],
                [self.stride_groups(r * no, 64), 1, 1],
            )?;
            gathers.insert(r, [dx, dy]);
        }
        let mut order: Vec<usize> = (0..n).collect();
        let mut epoch_losses = Vec::new();
        memory::reserve("losses", &mut epoch_losses, epochs, 1)?;
        let mut order32: Vec<u32> = order.iter().map(|&i| i as u32).collect();
        self.write(&data.order, &order32);
        for epoch in 0..epochs {
            if shuffle {
                epoch_order(n, seed, first_epoch + epoch, &mut order);
                order32 = order.iter().map(|&i| i as u32).collect();
                self.write(&data.order, &order32);
            }
            if epoch > 0 && !keep_going() {
                return Err(Error::Interrupted { completed: epoch * rows.len() });
            }
            let before = epoch * rows.len();
            let losses = self.run_steps(&rows, Some(&gathers), keep_going).map_err(|e| match e {
                Error::Diverged { step, what, .. } => {
                    Error::Diverged { step: before + step, what, losses: epoch_losses.clone() }
                }
                Error::Interrupted { completed } => Error::Interrupted { completed: before + completed },
                other => other,
            })?;
            let total: f64 = losses.iter().zip(&rows).map(|(&l, &r)| l * r as f64).sum();
            epoch_losses.push(total / n as f64);
        }
        Ok(epoch_losses)
    }

    /// w1, b1, w2, b2, read back from the GPU.
    pub fn params(&self) -> Result<[Vec<f32>; 4]> {
        let l = self.layout;
        let flat = self.ctx.guarded("reading weights", || {
            self.ctx.submit_and_read("reading weights", self.encoder(), &self.theta, 0, l.n_params)
        })?;
        Ok(std::array::from_fn(|i| flat[l.off[i]..l.off[i] + l.len[i]].to_vec()))
    }

    /// Replaces the parameters after the CPU network's checks; optimizer state is kept.
    pub fn set_params(&mut self, params: [Vec<f32>; 4]) -> Result<()> {
        let checked = Network::<f32>::with_params(self.config, params)?;
        self.upload_params(checked.params());
        Ok(())
    }

    /// Optimizer state per parameter, laid out as `Network::optimizer_state`, and the update count.
    pub fn optimizer_state(&self) -> Result<([Vec<Vec<f32>>; 4], u64)> {
        let l = self.layout;
        let flat = if l.slots == 0 {
            vec![]
        } else {
            self.ctx.guarded("reading optimizer state", || {
                self.ctx.submit_and_read(
                    "reading optimizer state",
                    self.encoder(),
                    &self.state,
                    0,
                    l.slots * l.n_params,
                )
            })?
        };
        let state = std::array::from_fn(|i| {
            if l.trained(i) {
                (0..l.slots)
                    .map(|s| flat[s * l.n_params + l.off[i]..s * l.n_params + l.off[i] + l.len[i]].to_vec())
                    .collect()
            } else {
                vec![]
            }
        });
        Ok((state, self.updates))
    }

    /// Restores what `optimizer_state` returned, after checking its layout.
    #[allow(clippy::needless_pass_by_value)] // the signature of `Network::set_optimizer_state`
    pub fn set_optimizer_state(&mut self, state: [Vec<Vec<f32>>; 4], updates: u64) -> Result<()> {
        let l = self.layout;
        for (i, s) in state.iter().enumerate() {
            let slots = if l.trained(i) { l.slots } else { 0 };
            if s.len() != slots || s.iter().any(|v| v.len() != l.len[i]) {
                return Err(Error::ShapeMismatch {
                    arg: "optimizer_state",
                    expected: format!("{slots} buffers of {} values for {}", l.len[i], crate::network::PARAM_NAMES[i]),
                    got: format!("{} buffers", s.len()),
                });
            }
        }
        self.upload_state(&state);
        self.updates = updates;
        Ok(())
    }

    /// One explained step on one sample: computed by the CPU network from the GPU's weights and
    /// optimizer state (a teaching tool, not a hot path), which then go back to the GPU.
    pub fn explain_step(&mut self, x: &[f32], t: &[f32]) -> Result<StepTrace<f32>> {
        let mut cpu = Network::<f32>::with_params(self.config, self.params()?)?;
        let (state, updates) = self.optimizer_state()?;
        cpu.set_optimizer_state(state, updates)?;
        let trace = cpu.explain_step(x, t)?;
        self.upload_params(cpu.params());
        let (state, updates) = cpu.optimizer_state();
        self.upload_state(state);
        self.updates = updates;
        Ok(trace)
    }
}
