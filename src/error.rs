//! The one error type of the core. Every fallible call returns it; the Python bindings turn it into a
//! Python exception in one place (`bindings::error`), so no Rust panic ever reaches Python.

use thiserror::Error;

/// What can go wrong in the core, with enough context to say which argument and what was expected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A configuration value (width, name, optimizer setting) is out of range.
    #[error("{arg}: expected {expected}, got {got}")]
    InvalidConfig { arg: &'static str, expected: String, got: String },

    /// An array has the wrong shape for this network.
    #[error("{arg}: expected shape {expected}, got {got}")]
    ShapeMismatch { arg: &'static str, expected: String, got: String },

    /// An input, target or weight holds NaN or infinity.
    #[error("{arg}: expected finite values, found {value} at position {position}")]
    NonFinite { arg: &'static str, position: String, value: f64 },

    /// Training produced a non-finite loss or weight; the network keeps the weights of the last finite step.
    #[error(
        "training diverged at step {step}: the {what} became non-finite; the weights of the last finite step are kept"
    )]
    Diverged { step: usize, what: &'static str, losses: Vec<f64> },

    /// A member of a population failed (see `population`); `error` says how.
    #[error("member {member}: {error}")]
    Member { member: usize, error: Box<Error> },

    /// The caller asked to stop (for example Ctrl-C); the network is at its last completed step.
    #[error("interrupted after {completed} completed steps")]
    Interrupted { completed: usize },

    /// A saved network that cannot be read back: not safetensors, not rustbp's, another format
    /// version, corrupted, or inconsistent with its own configuration.
    #[error("invalid rustbp file: {reason}")]
    InvalidFile { reason: String },

    /// A buffer would not fit in memory.
    #[error("{what}: cannot allocate {elements} elements")]
    OutOfMemory { what: &'static str, elements: u128 },

    /// No GPU can be used: no adapter, none matching `RUSTBP_GPU_ADAPTER`, or a build without the
    /// `gpu` feature. The message says what to install or set.
    #[error("{0}")]
    GpuUnavailable(String),

    /// A GPU operation failed (device lost, validation error, timeout); the message says which.
    #[error("GPU {op} failed: {message}")]
    Gpu { op: &'static str, message: String },

    /// A valid request this device does not implement; the message says what to use instead.
    #[error("{arg}: {what}")]
    Unsupported { arg: &'static str, what: String },

    /// A GPU buffer would exceed one of the adapter's limits (software GPUs have small ones).
    #[error("{what} needs {needed} bytes, more than this GPU's {limit} ({max} bytes); use smaller batches or layers, or another adapter")]
    GpuLimit { what: &'static str, needed: u64, limit: &'static str, max: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(arg: &'static str, expected: impl Into<String>, got: impl std::fmt::Display) -> Self {
        Self::InvalidConfig { arg, expected: expected.into(), got: got.to_string() }
    }
}
