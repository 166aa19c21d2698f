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

/// Where a plan's kernels find the values of the members they train: buffers holding `members`
/// networks' values side by side. Member m's parameters and gradients start m n_params values in, its
/// loss history m `history`, its step counter is the m-th (its optimizer state and Adam's schedule are
/// where its row of `optim` says); its activations follow the previous member's in the work buffers, and so
/// do its inputs and targets with `own_batches` (else every member reads the one batch). A network
/// alone is a stack of one.
pub struct Stack<'a> {
    pub members: usize,
    pub theta: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    pub sched: &'a wgpu::Buffer,
    pub counters: &'a wgpu::Buffer,
    pub losses: &'a wgpu::Buffer,
    /// The optimizer kernel's settings: one `OptimParams` per member (`GpuNetwork::member_optim`).
    pub optim: &'a wgpu::Buffer,
    pub history: usize,
    pub own_batches: bool,
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

    /// C = A B (flags, offsets and strides in `p`) for each member of `s`, with `bias` and `d` for the
    /// epilogue, into `c`.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        s: &Stack<'_>,
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
            [(p.n as usize).div_ceil(tile), (p.m as usize).div_ceil(tile), s.members],
        )
    }

    /// Builds the dispatches for batches of `rows` rows on the work buffers `w`.
    pub(super) fn build_plan(&self, w: &Work, rows: usize) -> Result<Plan> {
        let b = &self.bufs;
        let optim = self.settings("optim", &self.member_optim(0, 0, 0));
        let s = Stack {
            members: 1,
            theta: &b.theta,
            grads: &b.grads,
            state: &b.state,
            sched: &b.sched,
            counters: &b.counter,
            losses: &b.losses,
            optim: &optim,
            history: 0,
            own_batches: false,
        };
        let fwd = self.forward_products(w, rows, &s)?;
        let loss = self.loss_dispatches(w, rows, &s, &fwd)?;
        let step = self.step_dispatches(w, rows, &s, &fwd)?;
        let [fwd1, fwd2] = fwd;
        let outputs = self.rows_dispatch(w, rows, &s, LOSS_NONE)?;
        Ok(Plan { forward: vec![fwd1, fwd2, outputs], loss, step, fused: self.fused_plan(w, rows)? })
    }

    /// The dispatches of a training step of every member of `s` on batches of `rows` rows (a population
    /// whose members are too large for the fused kernel): the network's own, each over all members.
    pub(super) fn stack_step(&self, w: &Work, rows: usize, s: &Stack<'_>) -> Result<Vec<Dispatch>> {
        self.step_dispatches(w, rows, s, &self.forward_products(w, rows, s)?)
    }

    /// A training step after the forward products `fwd`: the loss pass, the backward pass and the update.
    fn step_dispatches(&self, w: &Work, rows: usize, s: &Stack<'_>, fwd: &[Dispatch; 2]) -> Result<Vec<Dispatch>> {
        let mut step = self.loss_dispatches(w, rows, s, fwd)?;
        self.backward_dispatches(w, rows, s, &mut step)?;
        self.update_dispatches(&mut step, rows, s)?;
        Ok(step)
    }

    /// h = f(x w1^T + b1) and z2 = h w2^T + b2.
    fn forward_products(&self, w: &Work, rows: usize, s: &Stack<'_>) -> Result<[Dispatch; 2]> {
        let c = &self.config;
        let n_params = self.layout.n_params as u32;
        // Each member's input follows the previous member's (the hidden layer's always, the batch when
        // each member has its own); its output too.
        let layer =
            |(input, own): (&wgpu::Buffer, bool), out, (n, k): (usize, usize), (weights, bias), act: Activation| {
                let p = MatmulParams {
                    m: rows as u32,
                    n: n as u32,
                    k: k as u32,
                    flags: TRANS_B,
                    b_off: self.layout.off[weights] as u32,
                    bias_off: self.layout.off[bias] as u32,
                    epilogue: Epilogue::BiasAct.id(),
                    act: act.id(),
                    bias_mode: c.bias.id(),
                    a_stride: if own { rows * k } else { 0 } as u32,
                    b_stride: n_params,
                    bias_stride: n_params,
                    c_stride: (rows * n) as u32,
                    ..Default::default()
                };
                self.matmul(s, p, input, s.theta, s.theta, &self.bufs.dummy, out)
            };
        let (ni, nh, no) = (c.n_in, c.n_hidden, c.n_out);
        Ok([
            layer((&w.x, s.own_batches), &w.h, (nh, ni), (W1, B1), c.hidden_activation)?,
            layer((&w.h, true), &w.z2, (no, nh), (W2, B2), Activation::Identity)?,
        ])
    }

    /// o = g(z2), and with a loss the row losses and dz2.
    fn rows_dispatch(&self, w: &Work, rows: usize, s: &Stack<'_>, loss: u32) -> Result<Dispatch> {
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
                t_stride: if s.own_batches { rows * c.n_out } else { 0 } as u32,
                pad: [0; 2],
            },
        );
        let groups = [self.stride_groups(rows, 64), s.members, 1];
        self.dispatch(Kernel::Rows, &u, &[&w.z2, &w.t, &w.o, &w.dz2, &w.row_loss], groups)
    }

    /// For each member of `s`: `out[out_off (+ its step)] = scale * sum(x[0..n])`, its x n values after
    /// the previous member's and its out `out_stride` after; into the loss history when `at_step`.
    #[allow(clippy::too_many_arguments)]
    fn reduce(
        &self,
        s: &Stack<'_>,
        n: usize,
        (out_off, out_stride): (usize, usize),
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
            out_stride: out_stride as u32,
            pad: [0; 2],
        };
        self.dispatch(Kernel::Reduce, &self.settings("reduce", &p), &[x, s.counters, out], [s.members, 1, 1])
    }

    /// The forward products `fwd`, the row losses and dz2, and the batch loss into the history.
    fn loss_dispatches(&self, w: &Work, rows: usize, s: &Stack<'_>, fwd: &[Dispatch; 2]) -> Result<Vec<Dispatch>> {
        let (_, loss_scale) = loss_scales(self.config.loss, rows, self.config.n_out);
        Ok(vec![
            fwd[0].again(),
            fwd[1].again(),
            self.rows_dispatch(w, rows, s, self.config.loss.id())?,
            self.reduce(s, rows, (0, s.history), true, loss_scale, &w.row_loss, s.losses)?,
        ])
    }

    /// dw2 = dz2^T h, dz1 = (dz2 w2) * f'(h), dw1 = dz1^T x, and the bias gradients.
    fn backward_dispatches(&self, w: &Work, rows: usize, s: &Stack<'_>, step: &mut Vec<Dispatch>) -> Result<()> {
        let c = &self.config;
        let (b, nh, no, ni) = (rows as u32, c.n_hidden as u32, c.n_out as u32, c.n_in as u32);
        let n_params = self.layout.n_params as u32;
        let x_stride = if s.own_batches { b * ni } else { 0 };
        let off = |i: usize| self.layout.off[i] as u32;
        let dummy = &self.bufs.dummy;
        let store = |m: u32, n: u32, c_off: u32, a_stride: u32, b_stride: u32| MatmulParams {
            m,
            n,
            k: b,
            flags: TRANS_A,
            c_off,
            epilogue: Epilogue::Store.id(),
            a_stride,
            b_stride,
            c_stride: n_params,
            ..Default::default()
        };
        step.push(self.matmul(s, store(no, nh, off(W2), b * no, b * nh), &w.dz2, &w.h, dummy, dummy, s.grads)?);
        let deriv = MatmulParams {
            m: b,
            n: nh,
            k: no,
            b_off: off(W2),
            epilogue: Epilogue::Deriv.id(),
            act: c.hidden_activation.id(),
            a_stride: b * no,
            b_stride: n_params,
            d_stride: b * nh,
            c_stride: b * nh,
            ..Default::default()
        };
        step.push(self.matmul(s, deriv, &w.dz2, s.theta, dummy, &w.h, &w.dz1)?);
        step.push(self.matmul(s, store(nh, ni, off(W1), b * nh, x_stride), &w.dz1, &w.x, dummy, dummy, s.grads)?);
        if c.train_bias && c.bias != Bias::None {
            let shared = c.bias == Bias::Shared;
            for (delta, width, i) in [(&w.dz1, nh, B1), (&w.dz2, no, B2)] {
                // A shared bias sums its column sums, through `colsum`.
                let (dest, at) = if shared { (&w.colsum, (0, width)) } else { (s.grads, (off(i), n_params)) };
                let u = self.settings("bias_grad", &Quad { a: width, b, c: at.0, d: at.1 });
                let groups = [(width as usize).div_ceil(64), s.members, 1];
                step.push(self.dispatch(Kernel::BiasGrad, &u, &[delta, dest], groups)?);
                if shared {
                    let to = (off(i) as usize, n_params as usize);
                    step.push(self.reduce(s, width as usize, to, false, 1.0, &w.colsum, s.grads)?);
                }
            }
        }
        Ok(())
    }

    /// The optimizer over the trained prefix, then the step counter.
    fn update_dispatches(&self, step: &mut Vec<Dispatch>, rows: usize, s: &Stack<'_>) -> Result<()> {
        let l = &self.layout;
        if l.n_trained > 0 {
            step.push(self.dispatch(
                Kernel::Optim,
                s.optim,
                &[s.theta, s.grads, s.state, s.sched, s.counters, s.losses],
                [self.stride_groups(l.n_trained, 64), s.members, 1],
            )?);
        }
        let u = self.settings("tick", &Quad { a: rows as u32, b: s.members as u32, ..Default::default() });
        step.push(self.dispatch(Kernel::Tick, &u, &[s.counters], [s.members.div_ceil(64), 1, 1])?);
        Ok(())
    }

    /// optim.wgsl's settings for this network as a member whose parameters, optimizer state and loss
    /// history start at those offsets.
    pub(super) fn member_optim(&self, theta_off: usize, state_off: usize, step_off: usize) -> OptimParams {
        OptimParams {
            n: self.layout.n_trained as u32,
            stride: self.layout.n_params as u32,
            theta_off: theta_off as u32,
            state_off: state_off as u32,
            step_off: step_off as u32,
            ..self.optim_params()
        }
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
