//! Submissions and rollback. Many steps go into one command encoder and one submission; only the loss
//! history comes back at the end of each. A submission that produces a non-finite loss is rolled back
//! to its snapshot and replayed up to the last finite step, so, as on the CPU, the network keeps the
//! weights of the last finite step.

use super::buffers::{Work, MAX_CHUNK_STEPS};
use super::kernels::{FusedParams, WEIGHTS_DIVERGED};
use super::network::GpuNetwork;
use super::plan::{Dispatch, Plan};
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What one submission should take: Ctrl-C is looked for between submissions, so this bounds how late
/// it is answered, and the submission's own cost (a few tens of microseconds) stays under 1%.
const SUBMISSION_SECS: f64 = 0.05;
/// The units of step work of a network's first submission, before any pace is known: about 20 ms on
/// lavapipe (some 5e8 units a second), a fraction of that on a GPU.
const FIRST_SUBMISSION_UNITS: f64 = 1e7;
/// A step's fixed cost (dispatches, barriers, the loss readout) in units of multiply-adds: tiny nets run
/// at about this many units a step, whatever their widths.
const STEP_UNITS: usize = 32_768;
/// The unfused path records about twelve dispatches per step; this bounds one command buffer.
const MAX_TILED_CHUNK_STEPS: usize = 1_000;

/// A fit's two gathers per batch size: rows of the data set's inputs and targets into the work buffers.
pub type Gathers = HashMap<usize, [Dispatch; 2]>;

impl GpuNetwork {
    /// Steps on batches of up to `rows` rows in one submission: as many as fit in `SUBMISSION_SECS` at
    /// the pace of the last submission.
    pub(super) fn chunk_steps(&self, rows: usize) -> usize {
        steps_per_submission(self.pace, self.step_units(rows), self.most_steps(rows))
    }

    /// Steps one submission on batches of `rows` rows may hold at most.
    pub(super) fn most_steps(&self, rows: usize) -> usize {
        if self.uses_fused(rows) {
            MAX_CHUNK_STEPS
        } else {
            MAX_TILED_CHUNK_STEPS
        }
    }

    /// A step's work on `rows` rows: its multiply-adds and its fixed cost.
    pub(super) fn step_units(&self, rows: usize) -> usize {
        let c = &self.config;
        3 * rows * (c.n_in * c.n_hidden + c.n_hidden * c.n_out) + STEP_UNITS
    }

    pub(super) fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("rustbp") })
    }

    /// Runs the steps `rows` (the batch size of each; plans built), in submissions of `chunk_steps`,
    /// pushing their losses. With `gathers`, each step first gathers its batch from a fit's data set,
    /// the row cursor starting at `row0`. On divergence the network keeps the last finite step.
    pub(super) fn run(
        &mut self,
        rows: &[usize],
        gathers: Option<&Gathers>,
        mut row0: usize,
        losses: &mut Vec<f64>,
    ) -> Result<()> {
        let chunk = self.chunk_steps(rows.iter().copied().max().unwrap_or(1));
        for part in rows.chunks(chunk) {
            self.submit(part, gathers, row0, losses)?;
            row0 += part.iter().sum::<usize>();
        }
        Ok(())
    }

    /// One submission of the steps `rows`, rolled back and replayed to its last finite step if one fails.
    fn submit(&mut self, rows: &[usize], gathers: Option<&Gathers>, row0: usize, losses: &mut Vec<f64>) -> Result<()> {
        let ctx = Arc::clone(&self.ctx);
        let start = Instant::now();
        let got = ctx.guarded("training", || self.record_and_run(rows, gathers, row0))?;
        let units: usize = rows.iter().map(|&r| self.step_units(r)).sum();
        self.pace = Some(start.elapsed().as_secs_f64() / units.max(1) as f64);
        let Some(k) = got.iter().position(|l| !l.is_finite()) else {
            self.updates += rows.len() as u64;
            losses.extend(got.iter().map(|&l| f64::from(l)));
            return Ok(());
        };
        ctx.guarded("rollback", || {
            let mut encoder = self.encoder();
            encoder.copy_buffer_to_buffer(&self.bufs.theta_bak, 0, &self.bufs.theta, 0, None);
            encoder.copy_buffer_to_buffer(&self.bufs.state_bak, 0, &self.bufs.state, 0, None);
            let index = self.ctx.queue.submit([encoder.finish()]);
            self.ctx.wait("rollback", index)?;
            if k > 0 {
                self.record_and_run(&rows[..k], gathers, row0)?;
            }
            Ok(())
        })?;
        self.updates += k as u64;
        losses.extend(got[..k].iter().map(|&l| f64::from(l)));
        let what = if got[k].to_bits() == WEIGHTS_DIVERGED { "weights" } else { "loss" };
        Err(Error::Diverged { step: 0, what, losses: vec![] })
    }

    /// Records and submits the steps `rows` after a snapshot of the parameters and optimizer state;
    /// returns the loss of each step.
    fn record_and_run(&self, rows: &[usize], gathers: Option<&Gathers>, row0: usize) -> Result<Vec<f32>> {
        let n = rows.len();
        let Some(&first) = rows.first() else { return Ok(vec![]) };
        self.write(&self.bufs.counter, &[0_u32, row0 as u32]);
        self.write_schedule(n);
        let work = self.lock_work();
        let w = work.as_ref().ok_or_else(|| Error::Gpu { op: "training", message: "no work buffers".into() })?;
        let plan = |r: usize| plan_of(w, r);
        // All steps alike on the fused kernel: many steps per dispatch. Otherwise one dispatch list per step.
        let fused = plan(first)?.fused.as_ref().filter(|_| gathers.is_none() && rows.iter().all(|&r| r == first));
        if let Some(f) = fused {
            self.set_fused_steps(&f.full.1, f.params, f.steps_per_dispatch);
            self.set_fused_steps(&f.tail.1, f.params, n % f.steps_per_dispatch);
        } else {
            let mut sizes = rows.to_vec();
            sizes.sort_unstable();
            sizes.dedup();
            for r in sizes {
                if let Some(f) = &plan(r)?.fused {
                    self.set_fused_steps(&f.tail.1, f.params, 1);
                }
            }
        }
        let mut encoder = self.encoder();
        // The snapshot a diverging submission is rolled back to.
        encoder.copy_buffer_to_buffer(&self.bufs.theta, 0, &self.bufs.theta_bak, 0, None);
        encoder.copy_buffer_to_buffer(&self.bufs.state, 0, &self.bufs.state_bak, 0, None);
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("train"), timestamp_writes: None });
            if let Some(f) = fused {
                for _ in 0..n / f.steps_per_dispatch {
                    self.record(&mut pass, &f.full.0);
                }
                if n % f.steps_per_dispatch > 0 {
                    self.record(&mut pass, &f.tail.0);
                }
            } else {
                for &r in rows {
                    if let Some([gx, gy]) = gathers.and_then(|g| g.get(&r)) {
                        self.record(&mut pass, gx);
                        self.record(&mut pass, gy);
                    }
                    match &plan(r)?.fused {
                        Some(f) => self.record(&mut pass, &f.tail.0),
                        None => plan(r)?.step.iter().for_each(|d| self.record(&mut pass, d)),
                    }
                }
            }
        }
        self.ctx.submit_and_read("training", encoder, &self.bufs.losses, 0, n)
    }

    fn set_fused_steps(&self, settings: &wgpu::Buffer, params: FusedParams, steps: usize) {
        self.ctx.queue.write_buffer(settings, 0, bytemuck::bytes_of(&FusedParams { steps: steps as u32, ..params }));
    }

    /// Adam's bias corrections for the next `n` steps, in f64 on the host as the CPU optimizer computes them.
    fn write_schedule(&self, n: usize) {
        self.write(&self.bufs.sched, &self.schedule(self.updates, n));
    }

    /// Adam's (step size, bias correction) for the `n` steps after update `updates`; empty for SGD.
    pub(super) fn schedule(&self, updates: u64, n: usize) -> Vec<f32> {
        let Optimizer::Adam { lr, beta1, beta2, .. } = self.config.optimizer else { return vec![] };
        (1..=n as u64)
            .flat_map(|s| {
                let t = (updates + s) as f64;
                [(lr / (1.0 - beta1.powf(t))) as f32, (1.0 - beta2.powf(t)).sqrt() as f32]
            })
            .collect()
    }
}

/// Steps of `units` of work each (`GpuNetwork::step_units`) that fill one submission of `SUBMISSION_SECS` at
/// `pace` (seconds per unit; None: not yet measured), at most `cap`.
pub(super) fn steps_per_submission(pace: Option<f64>, units: usize, cap: usize) -> usize {
    let units = units as f64;
    let steps = match pace {
        Some(secs_per_unit) => SUBMISSION_SECS / (secs_per_unit * units),
        None => FIRST_SUBMISSION_UNITS / units,
    };
    (steps as usize).clamp(1, cap)
}

/// The plan for batches of `rows` rows (built by `GpuNetwork::ensure_plan`).
pub(super) fn plan_of(w: &Work, rows: usize) -> Result<&Plan> {
    w.plans.get(&rows).ok_or_else(|| Error::Gpu { op: "planning", message: format!("no plan for {rows} rows") })
}
