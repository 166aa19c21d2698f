//! The compute pipelines, one per `.wgsl` file in `kernels/` (each prefixed with `common.wgsl`), and
//! the uniform blocks they read, laid out exactly as the WGSL `Params` structs (16-byte multiples).

use bytemuck::{Pod, Zeroable};
use std::borrow::Cow;

const COMMON: &str = include_str!("kernels/common.wgsl");
const MATMUL: &str = include_str!("kernels/matmul.wgsl");
const FUSED: &str = include_str!("kernels/fused.wgsl");
const FUSED_SCRATCH_BINDING: &str = "@group(0) @binding(8) var<storage, read_write> scratch: array<f32>;";

/// Values of activations `fused_local` holds: with the 2 * 32 * 32 + 2 * 32 weights and 256 partial
/// sums, this fills the 16 KiB of workgroup memory every adapter offers.
pub const FUSED_LOCAL_SCRATCH: usize = 1536;

/// fused.wgsl with `scratch` in workgroup memory: only this workgroup touches it, so workgroup
/// barriers order it.
fn fused_local() -> String {
    FUSED
        .replace(FUSED_SCRATCH_BINDING, &format!("var<workgroup> scratch: array<f32, {FUSED_LOCAL_SCRATCH}>;"))
        .replace("storageBarrier();", "workgroupBarrier();")
}

pub(crate) struct Kernels {
    pub matmul: wgpu::ComputePipeline,
    /// The same product with 128 x 128 tiles, for large matrices.
    pub matmul_wide: wgpu::ComputePipeline,
    pub rows: wgpu::ComputePipeline,
    pub reduce: wgpu::ComputePipeline,
    pub bias_grad: wgpu::ComputePipeline,
    pub optim: wgpu::ComputePipeline,
    pub tick: wgpu::ComputePipeline,
    pub gather: wgpu::ComputePipeline,
    pub fused: wgpu::ComputePipeline,
    /// The fused kernel with its activations in workgroup memory, for batches whose activations fit.
    pub fused_local: wgpu::ComputePipeline,
}

fn pipeline(device: &wgpu::Device, label: &'static str, source: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(Cow::Owned(format!("{COMMON}\n{source}"))),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        // Layouts derived from the shaders: each kernel has one bind group, described in its file.
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    })
}

impl Kernels {
    /// Compiles every kernel; errors surface through the caller's error scope.
    pub fn new(device: &wgpu::Device) -> Self {
        Self {
            matmul: pipeline(device, "matmul", MATMUL),
            matmul_wide: pipeline(
                device,
                "matmul_wide",
                &MATMUL.replace("const PER: u32 = 4u;", "const PER: u32 = 8u;"),
            ),
            rows: pipeline(device, "rows", include_str!("kernels/rows.wgsl")),
            reduce: pipeline(device, "reduce", include_str!("kernels/reduce.wgsl")),
            bias_grad: pipeline(device, "bias_grad", include_str!("kernels/bias_grad.wgsl")),
            optim: pipeline(device, "optim", include_str!("kernels/optim.wgsl")),
            tick: pipeline(device, "tick", include_str!("kernels/tick.wgsl")),
            gather: pipeline(device, "gather", include_str!("kernels/gather.wgsl")),
            fused: pipeline(device, "fused", FUSED),
            fused_local: pipeline(device, "fused_local", &fused_local()),
        }
    }
}

/// Products whose both sides reach this use `matmul_wide`.
pub const WIDE_MIN: u32 = 128;
/// matmul.wgsl's epilogues.
pub const EPI_STORE: u32 = 0;
pub const EPI_BIAS_ACT: u32 = 1;
pub const EPI_DERIV: u32 = 2;
/// matmul.wgsl's flags.
pub const TRANS_A: u32 = 1;
pub const TRANS_B: u32 = 2;
/// rows.wgsl's "no loss, outputs only".
pub const LOSS_NONE: u32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub c_off: u32,
    pub bias_off: u32,
    pub d_off: u32,
    pub epilogue: u32,
    pub act: u32,
    pub bias_mode: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct RowsParams {
    pub n_out: u32,
    pub rows: u32,
    pub act: u32,
    pub loss: u32,
    pub scale: f32,
    pub pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct ReduceParams {
    pub n: u32,
    pub in_off: u32,
    pub out_off: u32,
    pub at_step: u32,
    pub scale: f32,
    pub pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct Quad {
    pub a: u32,
    pub b: u32,
    pub c: u32,
    pub d: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct OptimParams {
    pub n: u32,
    pub kind: u32,
    pub stride: u32,
    pub pad: u32,
    pub lr: f32,
    pub mu: f32,
    pub wd: f32,
    pub beta1w: f32,
    pub beta2: f32,
    pub beta2w: f32,
    pub eps: f32,
    pub pad1: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub struct FusedParams {
    pub n_in: u32,
    pub n_hidden: u32,
    pub n_out: u32,
    pub rows: u32,
    pub steps: u32,
    pub hidden_act: u32,
    pub out_act: u32,
    pub loss: u32,
    pub bias_mode: u32,
    pub n_trained: u32,
    pub kind: u32,
    pub n_params: u32,
    pub lr: f32,
    pub mu: f32,
    pub wd: f32,
    pub beta1w: f32,
    pub beta2: f32,
    pub beta2w: f32,
    pub eps: f32,
    pub scale: f32,
    pub loss_scale: f32,
    pub pad: [u32; 3],
}

/// The largest width the fused kernel holds (its workgroup arrays are sized for it).
pub const FUSED_MAX_WIDTH: usize = 32;
