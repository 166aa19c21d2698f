//! The GPU backend: the same network math as `crate::network`, in f32, on wgpu compute shaders
//! (Vulkan, Metal, DX12), with every kernel in its own `.wgsl` file under `kernels/`.
//!
//! - `context`: the adapter, device and compiled kernels, shared by the process's networks.
//! - `kernels`: the pipelines, their settings blocks, and the constants shared with WGSL.
//! - `buffers`: parameters, optimizer state and work buffers; `plan`, `fused`: the dispatches of a
//!   step; `submit`: submissions and rollback; `network`: `GpuNetwork`, a `Backend`; `population`:
//!   a population's members trained side by side, one workgroup each.
//!
//! Built with the cargo feature `gpu`. Without it, `stand_in` provides the same names, and each of
//! them returns `Error::GpuUnavailable` saying how to get a build with the GPU path, so the crate,
//! its bindings and the CPU path build and run unchanged.

use crate::error::Error;

/// One adapter wgpu can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    pub name: String,
    /// Vulkan, Metal, Dx12...
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu`, `Other`.
    pub device_type: String,
    /// A CPU implementation such as lavapipe (Mesa's software Vulkan GPU).
    pub is_software: bool,
}

/// The environment variable that picks an adapter by a substring of its name.
pub const ADAPTER_ENV: &str = "RUSTBP_GPU_ADAPTER";

/// What to install when no adapter is found.
pub const INSTALL_HINT: &str = "install a Vulkan driver for your GPU (on Debian or Ubuntu, `apt-get install \
    mesa-vulkan-drivers libvulkan1` gives Mesa's drivers, including lavapipe, a software Vulkan GPU that runs \
    anywhere); macOS uses Metal and Windows DX12, which need no install";

#[cfg(feature = "gpu")]
mod buffers;
#[cfg(feature = "gpu")]
mod context;
#[cfg(feature = "gpu")]
mod fused;
#[cfg(feature = "gpu")]
mod kernels;
#[cfg(feature = "gpu")]
mod network;
#[cfg(feature = "gpu")]
mod plan;
#[cfg(feature = "gpu")]
mod population;
#[cfg(feature = "gpu")]
mod submit;
#[cfg(feature = "gpu")]
pub use context::devices;
#[cfg(feature = "gpu")]
pub use network::GpuNetwork;

#[cfg(not(feature = "gpu"))]
mod stand_in;
#[cfg(not(feature = "gpu"))]
pub use stand_in::{devices, GpuNetwork};

#[allow(dead_code)] // used by the stand-in only
fn not_built() -> Error {
    Error::GpuUnavailable(
        "this build of rustbp has no GPU path (the cargo feature `gpu` was off); install the published wheel, \
         or build with `maturin develop --features python,gpu`"
            .into(),
    )
}

#[cfg(all(test, feature = "gpu"))]
mod tests;
