//! The dispatch plan of a batch size: the list of kernel dispatches a forward pass, a loss and a training
//! step run, with their settings blocks and bind groups, built once per batch size and reused.
//!
//! A step: the tiled matmul with bias and activation fused (hidden, then output layer), the output/loss
//! rows kernel, a reduction into the loss history, the backward products (dw2 = dz2^T h,
//! dz1 = (dz2 w2) * f'(h), dw1 = dz1^T x), bias gradients, the optimizer, and the step counter.

use super::buffers::Work;
use super::fused::Fused;
use super::kernels::{
    Epilogue, MatmulParams, OptimKind, OptimParams, Quad, ReduceParams, RowsParams, LOSS_NONE, TRANS_A, TRANS_B,
    WIDE_MIN,
};
use super::network::GpuNetwork;
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::network::{Bias, B1, B2, W1, W2};
use crate::optim::Optimizer;
use wgpu::util::DeviceExt;

#[derive(Clone, Copy)]
pub enum Kernel {
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

/// One recorded dispatch: which kernel, its bindings, how many workgroups.
pub struct Dispatch {
    pub kernel: Kernel,
    pub bind: wgpu::BindGroup,
    pub groups: [u32; 3],
}

impl Dispatch {
    /// A second handle on the same dispatch (bind groups are reference counted).
    fn again(&self) -> Self {
        Self { kernel: self.kernel, bind: self.bind.clone(), groups: self.groups }
    }
}

/// The dispatches for one batch size.
pub struct Plan {
    pub forward: Vec<Dispatch>,
    pub loss: Vec<Dispatch>,
    pub step: Vec<Dispatch>,
    /// The fused kernel, when the widths and batch allow it.
    pub fused: Option<Fused>,
}

/// The scale of dL/dz2 and of the batch loss (the sum of row losses): 1/B for half_sse and cross-entropy,
/// 2/(B n_out) and 1/(B n_out) for mse, 1/(B n_out) for binary cross-entropy, as `crate::loss` computes
/// them.
pub fn loss_scales(loss: Loss, rows: usize, n_out: usize) -> (f32, f32) {
    let (dz, l) = match loss {
        Loss::HalfSse | Loss::CrossEntropy => (1.0 / rows as f64, 1.0 / rows as f64),
        Loss::Mse => (2.0 / (rows * n_out) as f64, 1.0 / (rows * n_out) as f64),
        Loss::BinaryCrossEntropy => (1.0 / (rows * n_out) as f64, 1.0 / (rows * n_out) as f64),
    };
    (dz as f32, l as f32)
}

impl GpuNetwork {
    /// A kernel's settings block, bound read-only as binding 0. It is a storage buffer, not a uniform
    /// one: lavapipe inlines the values of uniforms that steer loops into the shader and compiles it
    /// again at every dispatch, which cost 15 ms and 0.6 MB that was never returned per dispatch.
    pub(super) fn settings<P: bytemuck::Pod>(&self, label: &'static str, params: &P) -> wgpu::Buffer {
        self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
    }

    pub(super) fn pipeline(&self, k: Kernel) -> &wgpu::ComputePipeline {
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

    /// A dispatch of `k` over `groups` workgroups with `settings` and then `buffers` as bindings 0, 1...
    pub(super) fn dispatch(
        &self,
        k: Kernel,
        settings: &wgpu::Buffer,
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
        let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(settings)
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
    pub(super) fn stride_groups(&self, n: usize, per_group: usize) -> usize {
        n.div_ceil(per_group).clamp(1, self.ctx.limits.max_compute_workgroups_per_dimension as usize)
    }

    /// C = A B (flags and offsets in `p`) with `bias` and `d` for the epilogue, into `c`.
    fn matmul(
        &self,
        p: MatmulParams,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        d: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let u = self.settings("matmul", &p);
        let (kernel, tile) =
            if p.m >= WIDE_MIN && p.n >= WIDE_MIN { (Kernel::MatmulWide, 128) } else { (Kernel::Matmul, 64) };
        self.dispatch(
            kernel,
            &u,
            &[a, b, bias, d, c],
            [(p.n as usize).div_ceil(tile), (p.m as usize).div_ceil(tile), 1],
        )
    }

    /// Builds the dispatches for batches of `rows` rows on the work buffers `w`.
    pub(super) fn build_plan(&self, w: &Work, rows: usize) -> Result<Plan> {
        let [fwd1, fwd2] = self.forward_products(w, rows)?;
        let outputs = self.rows_dispatch(w, rows, LOSS_NONE)?;
        let loss = self.loss_dispatches(w, rows, &fwd1, &fwd2)?;
        let mut step = self.loss_dispatches(w, rows, &fwd1, &fwd2)?;
        self.backward_dispatches(w, rows, &mut step)?;
        self.update_dispatches(&mut step, rows)?;
        Ok(Plan { forward: vec![fwd1, fwd2, outputs], loss, step, fused: self.fused_plan(w, rows)? })
    }

    /// h = f(x w1^T + b1) and z2 = h w2^T + b2.
    fn forward_products(&self, w: &Work, rows: usize) -> Result<[Dispatch; 2]> {
        let c = &self.config;
        let layer = |n: usize, k: usize, weights: usize, bias: usize, act: Activation| MatmulParams {
            m: rows as u32,
            n: n as u32,
            k: k as u32,
            flags: TRANS_B,
            b_off: self.layout.off[weights] as u32,
            bias_off: self.layout.off[bias] as u32,
            epilogue: Epilogue::BiasAct.id(),
            act: act.id(),
            bias_mode: c.bias.id(),
            ..Default::default()
        };
        let (theta, dummy) = (&self.bufs.theta, &self.bufs.dummy);
        Ok([
            self.matmul(layer(c.n_hidden, c.n_in, W1, B1, c.hidden_activation), &w.x, theta, theta, dummy, &w.h)?,
            self.matmul(layer(c.n_out, c.n_hidden, W2, B2, Activation::Identity), &w.h, theta, theta, dummy, &w.z2)?,
        ])
    }

    /// o = g(z2), and with a loss the row losses and dz2.
    fn rows_dispatch(&self, w: &Work, rows: usize, loss: u32) -> Result<Dispatch> {
        let c = &self.config;
        let (dz_scale, _) = loss_scales(c.loss, rows, c.n_out);
        let u = self.settings(
            "rows",
            &RowsParams {
                n_out: c.n_out as u32,
                rows: rows as u32,
                act: c.output_activation.id(),
                loss,
                scale: dz_scale,
                pad: [0; 3],
            },
        );
        self.dispatch(Kernel::Rows, &u, &[&w.z2, &w.t, &w.o, &w.dz2, &w.row_loss], [self.stride_groups(rows, 64), 1, 1])
    }

    /// `out[out_off (+ step)] = scale * sum(x[0..n])`, into the loss history when `at_step`.
    fn reduce(
        &self,
        n: usize,
        out_off: usize,
        at_step: bool,
        scale: f32,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Dispatch> {
        let p = ReduceParams {
            n: n as u32,
            in_off: 0,
            out_off: out_off as u32,
            at_step: u32::from(at_step),
            scale,
            pad: [0; 3],
        };
        self.dispatch(Kernel::Reduce, &self.settings("reduce", &p), &[x, &self.bufs.counter, out], [1, 1, 1])
    }

    /// The forward pass, the row losses and dz2, and the batch loss into the history.
    fn loss_dispatches(&self, w: &Work, rows: usize, fwd1: &Dispatch, fwd2: &Dispatch) -> Result<Vec<Dispatch>> {
        let (_, loss_scale) = loss_scales(self.config.loss, rows, self.config.n_out);
        Ok(vec![
            fwd1.again(),
            fwd2.again(),
            self.rows_dispatch(w, rows, self.config.loss.id())?,
            self.reduce(rows, 0, true, loss_scale, &w.row_loss, &self.bufs.losses)?,
        ])
    }

    /// dw2 = dz2^T h, dz1 = (dz2 w2) * f'(h), dw1 = dz1^T x, and the bias gradients.
    fn backward_dispatches(&self, w: &Work, rows: usize, step: &mut Vec<Dispatch>) -> Result<()> {
        let c = &self.config;
        let (b, nh, no, ni) = (rows as u32, c.n_hidden as u32, c.n_out as u32, c.n_in as u32);
        let off = |i: usize| self.layout.off[i] as u32;
        let (theta, grads, dummy) = (&self.bufs.theta, &self.bufs.grads, &self.bufs.dummy);
        let store = |m: u32, n: u32, c_off: u32| MatmulParams {
            m,
            n,
            k: b,
            flags: TRANS_A,
            c_off,
            epilogue: Epilogue::Store.id(),
            ..Default::default()
        };
        step.push(self.matmul(store(no, nh, off(W2)), &w.dz2, &w.h, dummy, dummy, grads)?);
        let deriv = MatmulParams {
            m: b,
            n: nh,
            k: no,
            b_off: off(W2),
            epilogue: Epilogue::Deriv.id(),
            act: c.hidden_activation.id(),
            ..Default::default()
        };
        step.push(self.matmul(deriv, &w.dz2, theta, dummy, &w.h, &w.dz1)?);
        step.push(self.matmul(store(nh, ni, off(W1)), &w.dz1, &w.x, dummy, dummy, grads)?);
        if c.train_bias && c.bias != Bias::None {
            let shared = c.bias == Bias::Shared;
            for (delta, width, i) in [(&w.dz1, nh, B1), (&w.dz2, no, B2)] {
                // A shared bias sums its column sums, through `colsum`.
                let u = self.settings("bias_grad", &Quad { a: width, b, c: if shared { 0 } else { off(i) }, d: 0 });
                let dest = if shared { &w.colsum } else { grads };
                step.push(self.dispatch(
                    Kernel::BiasGrad,
                    &u,
                    &[delta, dest],
                    [(width as usize).div_ceil(64), 1, 1],
                )?);
                if shared {
                    step.push(self.reduce(width as usize, off(i) as usize, false, 1.0, &w.colsum, grads)?);
                }
            }
        }
        Ok(())
    }

    /// The optimizer over the trained prefix, then the step counter.
    fn update_dispatches(&self, step: &mut Vec<Dispatch>, rows: usize) -> Result<()> {
        let l = &self.layout;
        let bufs = &self.bufs;
        if l.n_trained > 0 {
            let p = OptimParams { n: l.n_trained as u32, stride: l.n_params as u32, ..self.optim_params() };
            step.push(self.dispatch(
                Kernel::Optim,
                &self.settings("optim", &p),
                &[&bufs.theta, &bufs.grads, &bufs.state, &bufs.sched, &bufs.counter, &bufs.losses],
                [self.stride_groups(l.n_trained, 64), 1, 1],
            )?);
        }
        let u = self.settings("tick", &Quad { a: rows as u32, ..Default::default() });
        step.push(self.dispatch(Kernel::Tick, &u, &[&bufs.counter], [1, 1, 1])?);
        Ok(())
    }

    /// optim.wgsl's kind and settings.
    pub(super) fn optim_params(&self) -> OptimParams {
        let kind = OptimKind::of(&self.config.optimizer).id();
        match self.config.optimizer {
            Optimizer::Sgd { lr, momentum, weight_decay, .. } => {
                OptimParams { kind, lr: lr as f32, mu: momentum as f32, wd: weight_decay as f32, ..Default::default() }
            }
            Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => OptimParams {
                kind,
                lr: lr as f32,
                wd: weight_decay as f32,
                beta1w: (1.0 - beta1) as f32,
                beta2: beta2 as f32,
                beta2w: (1.0 - beta2) as f32,
                eps: eps as f32,
                ..Default::default()
            },
        }
    }

    /// Records `d` into `pass`.
    pub(super) fn record(&self, pass: &mut wgpu::ComputePass<'_>, d: &Dispatch) {
        pass.set_pipeline(self.pipeline(d.kernel));
        pass.set_bind_group(0, &d.bind, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}
