//! The GPU network's memory: where each parameter sits in the one parameter buffer, the buffers that live
//! as long as the network (parameters, gradients, optimizer state, their snapshots, the loss history),
//! the per-batch work buffers, and copies in and out.
//!
//! Parameters are laid out [w1 | w2 | b1 | b2], so that the trained values are a prefix when biases are
//! frozen; optimizer state slot s of element i is at s * n_params + i.

use super::context::Context;
use super::plan::Plan;
use crate::error::Result;
use crate::network::{Config, B1, B2, W1, W2};
use std::collections::HashMap;

/// Steps per submission at most (the loss history and Adam's schedule are sized for it).
pub const MAX_CHUNK_STEPS: usize = 100_000;

/// Where each parameter tensor sits in the one parameter buffer.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub off: [usize; 4],
    pub len: [usize; 4],
    pub n_params: usize,
    /// The trained values are the prefix `[0, n_trained)`: weights, then biases when trained.
    pub n_trained: usize,
    pub slots: usize,
}

impl Layout {
    pub fn new(c: &Config) -> Self {
        let len = c.shapes().map(|(r, k)| r * k);
        let mut off = [0; 4];
        off[W2] = len[W1];
        off[B1] = len[W1] + len[W2];
        off[B2] = off[B1] + len[B1];
        let n_params = off[B2] + len[B2];
        let n_trained = if c.train_bias { n_params } else { off[B1] };
        Self { off, len, n_params, n_trained, slots: c.optimizer.slots() }
    }

    pub fn trained(&self, i: usize) -> bool {
        self.len[i] > 0 && self.off[i] < self.n_trained
    }

    /// w1, b1, w2, b2 as one flat parameter vector.
    pub fn flatten(&self, params: &[Vec<f32>; 4]) -> Vec<f32> {
        let mut flat = vec![0.0_f32; self.n_params];
        for (i, p) in params.iter().enumerate() {
            flat[self.off[i]..self.off[i] + p.len()].copy_from_slice(p);
        }
        flat
    }

    /// Optimizer state per parameter as one flat vector of `slots` slots.
    pub fn flatten_state(&self, state: &[Vec<Vec<f32>>; 4]) -> Vec<f32> {
        let mut flat = vec![0.0_f32; self.slots * self.n_params];
        for (i, slots) in state.iter().enumerate() {
            for (s, values) in slots.iter().enumerate() {
                let at = s * self.n_params + self.off[i];
                flat[at..at + values.len()].copy_from_slice(values);
            }
        }
        flat
    }

    /// The reverse of `flatten`.
    pub fn split(&self, flat: &[f32]) -> [Vec<f32>; 4] {
        std::array::from_fn(|i| flat[self.off[i]..self.off[i] + self.len[i]].to_vec())
    }

    /// The reverse of `flatten_state`: trained parameters get their slots, the others none.
    pub fn split_state(&self, flat: &[f32]) -> [Vec<Vec<f32>>; 4] {
        std::array::from_fn(|i| {
            if !self.trained(i) {
                return vec![];
            }
            let at = |s: usize| s * self.n_params + self.off[i];
            (0..self.slots).map(|s| flat[at(s)..at(s) + self.len[i]].to_vec()).collect()
        })
    }
}

/// The buffers that live as long as the network.
pub struct Buffers {
    pub theta: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    pub state: wgpu::Buffer,
    /// The snapshot a diverging submission is rolled back to.
    pub theta_bak: wgpu::Buffer,
    pub state_bak: wgpu::Buffer,
    /// The submission's step and row cursor.
    pub counter: wgpu::Buffer,
    /// The loss of each step of a submission.
    pub losses: wgpu::Buffer,
    /// Adam's (step size, bias correction) for each step of a submission.
    pub sched: wgpu::Buffer,
    /// Bound where a kernel's binding is unused.
    pub dummy: wgpu::Buffer,
}

impl Buffers {
    pub fn new(ctx: &Context, layout: &Layout) -> Result<Self> {
        let state_len = layout.slots * layout.n_params;
        Ok(Self {
            theta: ctx.storage("parameters", layout.n_params)?,
            grads: ctx.storage("gradients", layout.n_params)?,
            state: ctx.storage("optimizer state", state_len)?,
            theta_bak: ctx.storage("parameter snapshot", layout.n_params)?,
            state_bak: ctx.storage("optimizer state snapshot", state_len)?,
            counter: ctx.storage("step counter", 2)?,
            losses: ctx.storage("loss history", MAX_CHUNK_STEPS)?,
            sched: ctx.storage("Adam schedule", 2 * MAX_CHUNK_STEPS)?,
            dummy: ctx.storage("unused binding", 2)?,
        })
    }
}

/// Buffers for batches of up to `cap` rows, and the dispatch plans built on them (per batch size).
pub struct Work {
    pub cap: usize,
    pub x: wgpu::Buffer,
    pub t: wgpu::Buffer,
    pub h: wgpu::Buffer,
    pub z2: wgpu::Buffer,
    pub o: wgpu::Buffer,
    pub dz2: wgpu::Buffer,
    pub dz1: wgpu::Buffer,
    pub row_loss: wgpu::Buffer,
    pub colsum: wgpu::Buffer,
    /// The fused kernel's activations when they do not fit in workgroup memory.
    pub scratch: wgpu::Buffer,
    pub plans: HashMap<usize, Plan>,
}

impl Work {
    /// Buffers for `rows` rows of each of `members` networks (see `plan::Stack`), with `batches` batches
    /// of inputs and targets (1: one for every member), and the fused kernel's scratch for each.
    pub fn new(ctx: &Context, c: &Config, rows: usize, [members, batches]: [usize; 2]) -> Result<Self> {
        let each = rows * members;
        Ok(Self {
            cap: rows,
            x: ctx.storage("inputs", rows * batches * c.n_in)?,
            t: ctx.storage("targets", rows * batches * c.n_out)?,
            h: ctx.storage("hidden activations", each * c.n_hidden)?,
            z2: ctx.storage("output net inputs", each * c.n_out)?,
            o: ctx.storage("outputs", each * c.n_out)?,
            dz2: ctx.storage("output deltas", each * c.n_out)?,
            dz1: ctx.storage("hidden deltas", each * c.n_hidden)?,
            row_loss: ctx.storage("row losses", each)?,
            colsum: ctx.storage("bias gradient sums", members * c.n_hidden.max(c.n_out))?,
            scratch: ctx.storage("fused activations", members * super::fused::scratch_values(c, rows))?,
            plans: HashMap::new(),
        })
    }
}
