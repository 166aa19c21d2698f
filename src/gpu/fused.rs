//! The fused kernel's side of a plan: when the network has at most `FUSED_MAX_PARAMS` parameters and
//! the batch is small, one dispatch of `fused.wgsl` (one workgroup, parameters in workgroup memory) runs many whole
//! training steps, so a step costs no launch.

use super::buffers::{Layout, Work};
use super::kernels::{FusedParams, OptimParams, FUSED_LOCAL_SCRATCH, FUSED_MAX_PARAMS};
use super::network::GpuNetwork;
use super::plan::{loss_scales, Dispatch, Kernel};
use crate::error::Result;
use crate::network::{Bias, Config};

/// Above this batch a single workgroup is slower than the tiled kernels, even for small widths.
pub const FUSED_MAX_ROWS: usize = 256;
/// Loop iterations one invocation of the fused kernel may run per dispatch. llvmpipe (lavapipe)
/// silently ends any loop after 65535 iterations, nested ones counted, so a dispatch that runs many
/// steps is cut short without an error; staying under the cap costs a hardware GPU a few extra
/// dispatches of a few microseconds each.
const FUSED_LOOP_BUDGET: usize = 50_000;

/// The fused kernel for one batch size: its settings, and two dispatches with their settings blocks, one
/// for the full dispatches of a submission and one for the remainder (step counts written before use).
pub struct Fused {
    pub params: FusedParams,
    pub full: (Dispatch, wgpu::Buffer),
    pub tail: (Dispatch, wgpu::Buffer),
    /// Steps one dispatch may run within `FUSED_LOOP_BUDGET`.
    pub steps_per_dispatch: usize,
}

/// Whether batches of `rows` rows of networks shaped as `c` train with the fused kernel.
pub fn fits(c: &Config, rows: usize) -> bool {
    Layout::new(c).n_params <= FUSED_MAX_PARAMS && rows <= FUSED_MAX_ROWS
}

/// Activation values a batch row takes in the fused kernel's `scratch`.
pub fn scratch_per_row(c: &Config) -> usize {
    2 * c.n_hidden + 3 * c.n_out + 1
}

/// Values of `scratch` that batches of up to `rows` rows need for each network: those of the largest
/// batch the fused kernel takes, when its activations do not fit in workgroup memory.
pub fn scratch_values(c: &Config, rows: usize) -> usize {
    let r = rows.min(FUSED_MAX_ROWS);
    if fits(c, r) && !local(c, r) {
        r * scratch_per_row(c)
    } else {
        0
    }
}

/// Whether a batch of `rows` rows keeps its activations in workgroup memory (`fused_local`).
pub fn local(c: &Config, rows: usize) -> bool {
    rows * scratch_per_row(c) <= FUSED_LOCAL_SCRATCH
}

impl GpuNetwork {
    /// Whether a batch of `rows` rows trains with the fused kernel.
    pub fn uses_fused(&self, rows: usize) -> bool {
        fits(&self.config, rows)
    }

    /// The fused kernel's settings for steps on batches of `rows` rows, all values at offset 0.
    pub(super) fn fused_params(&self, rows: usize) -> FusedParams {
        let c = &self.config;
        let (scale, loss_scale) = loss_scales(c.loss, rows, c.n_out);
        let o: OptimParams = self.optim_params();
        FusedParams {
            n_in: c.n_in as u32,
            n_hidden: c.n_hidden as u32,
            n_out: c.n_out as u32,
            rows: rows as u32,
            steps: 1,
            hidden_act: c.hidden_activation.id(),
            out_act: c.output_activation.id(),
            loss: c.loss.id(),
            bias_mode: c.bias.id(),
            n_trained: self.layout.n_trained as u32,
            kind: o.kind,
            n_params: self.layout.n_params as u32,
            lr: o.lr,
            mu: o.mu,
            wd: o.wd,
            beta1w: o.beta1w,
            beta2: o.beta2,
            beta2w: o.beta2w,
            eps: o.eps,
            scale,
            loss_scale,
            ..Default::default()
        }
    }

    /// The fused kernel's pipeline for batches of `rows` rows.
    pub(super) fn fused_kernel(&self, rows: usize) -> Kernel {
        if local(&self.config, rows) {
            Kernel::FusedLocal
        } else {
            Kernel::Fused
        }
    }

    /// Steps one dispatch of the fused kernel may run on batches of `rows` rows (see `FUSED_LOOP_BUDGET`).
    pub(super) fn fused_steps_per_dispatch(&self, rows: usize) -> usize {
        (FUSED_LOOP_BUDGET / self.fused_loops(rows)).max(1)
    }

    /// The fused dispatches for batches of `rows` rows, when the fused kernel applies.
    pub(super) fn fused_plan(&self, w: &Work, rows: usize) -> Result<Option<Fused>> {
        if !self.uses_fused(rows) {
            return Ok(None);
        }
        let p = self.fused_params(rows);
        let b = &self.bufs;
        let make = || -> Result<(Dispatch, wgpu::Buffer)> {
            let u = self.settings("fused", &p);
            let buffers = [&w.x, &w.t, &b.theta, &b.state, &b.sched, &b.losses, &b.counter, &w.scratch];
            // `fused_local` has no scratch binding.
            let kernel = self.fused_kernel(rows);
            let bound = if matches!(kernel, Kernel::FusedLocal) { &buffers[..7] } else { &buffers[..] };
            Ok((self.dispatch(kernel, &u, bound, [1, 1, 1])?, u))
        };
        Ok(Some(Fused {
            params: p,
            full: make()?,
            tail: make()?,
            steps_per_dispatch: self.fused_steps_per_dispatch(rows),
        }))
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
}
