//! The fused kernel's side of a plan: when every width is at most `FUSED_MAX_WIDTH` and the batch is
//! small, one dispatch of `fused.wgsl` (one workgroup, parameters in workgroup memory) runs many whole
//! training steps, so a step costs no launch.

use super::buffers::Work;
use super::kernels::{FusedParams, OptimParams, FUSED_LOCAL_SCRATCH, FUSED_MAX_WIDTH};
use super::network::GpuNetwork;
use super::plan::{loss_scales, Dispatch, Kernel};
use crate::error::Result;
use crate::network::Bias;

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

impl GpuNetwork {
    /// Whether a batch of `rows` trains with the fused kernel.
    pub fn uses_fused(&self, rows: usize) -> bool {
        let c = &self.config;
        c.n_in.max(c.n_hidden).max(c.n_out) <= FUSED_MAX_WIDTH && rows <= FUSED_MAX_ROWS
    }

    /// The fused dispatches for batches of `rows` rows, when the fused kernel applies.
    pub(super) fn fused_plan(&self, w: &Work, rows: usize) -> Result<Option<Fused>> {
        if !self.uses_fused(rows) {
            return Ok(None);
        }
        let c = &self.config;
        let (scale, loss_scale) = loss_scales(c.loss, rows, c.n_out);
        let o: OptimParams = self.optim_params();
        let p = FusedParams {
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
            pad: [0; 3],
        };
        // Activations in workgroup memory when they fit, else in the global scratch buffer.
        let local = rows * (2 * c.n_hidden + 3 * c.n_out + 1) <= FUSED_LOCAL_SCRATCH;
        let b = &self.bufs;
        let make = || -> Result<(Dispatch, wgpu::Buffer)> {
            let u = self.settings("fused", &p);
            let buffers = [&w.x, &w.t, &b.theta, &b.state, &b.sched, &b.losses, &b.counter, &w.scratch];
            let d = if local {
                self.dispatch(Kernel::FusedLocal, &u, &buffers[..7], [1, 1, 1])?
            } else {
                self.dispatch(Kernel::Fused, &u, &buffers, [1, 1, 1])?
            };
            Ok((d, u))
        };
        Ok(Some(Fused {
            params: p,
            full: make()?,
            tail: make()?,
            steps_per_dispatch: (FUSED_LOOP_BUDGET / self.fused_loops(rows)).max(1),
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
