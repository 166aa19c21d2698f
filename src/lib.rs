//! rustbp: a three-layer fully connected network (input -> hidden -> output, any widths) with its
//! forward and backward passes and optimizers, in f32 and f64.
//!
//! The math here knows nothing about Python or devices: `network` builds on `linalg`, `activation`,
//! `loss` and `optim`. `backend` says what a network on a device does (the `Backend` trait) and holds the
//! training loops written once over it; the CPU network and the GPU network (`gpu`, wgpu) implement it.
//! `population` holds many networks of one shape on one device that take the same calls, side by side.
//! The PyO3 bindings (feature `python`) sit on top and are the only code that imports `pyo3`.

mod names;

pub mod activation;
pub mod backend;
pub mod error;
mod exp;
pub mod io;
pub mod linalg;
pub mod lock;
pub mod loss;
pub mod memory;
pub mod network;
pub mod optim;
pub mod population;
mod process;
mod simd;
pub mod threads;

pub mod gpu;

#[cfg(feature = "python")]
mod bindings;

pub use activation::Activation;
pub use backend::{Backend, KeepGoing};
pub use error::{Error, Result};
pub use linalg::Scalar;
pub use loss::Loss;
pub use network::{Bias, Config, Network, StepTrace};
pub use optim::Optimizer;
pub use population::{Losses, Population};
