//! The one place where core errors become Python exceptions.

use crate::error::Error;
use pyo3::exceptions::{
    PyFloatingPointError, PyKeyboardInterrupt, PyMemoryError, PyNotImplementedError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    rustbp,
    TrainingDivergedError,
    PyFloatingPointError,
    "Training produced a non-finite loss or weight. `step` is the index of the failing step in this call, \
     `losses` the losses before it; the network keeps the weights of the last finite step."
);

pyo3::create_exception!(
    rustbp,
    GpuUnavailableError,
    PyRuntimeError,
    "No GPU could be used (no adapter, none matching RUSTBP_GPU_ADAPTER, a build without the GPU path, or a \
     GPU that failed); the message says what to install or set."
);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let message = e.to_string();
        exception(e, message)
    }
}

/// The Python exception for `e`, saying `message`.
fn exception(e: Error, message: String) -> PyErr {
    match e {
        Error::InvalidConfig { .. }
        | Error::ShapeMismatch { .. }
        | Error::NonFinite { .. }
        | Error::InvalidFile { .. } => PyValueError::new_err(message),
        Error::OutOfMemory { .. } | Error::GpuLimit { .. } => PyMemoryError::new_err(message),
        // A GPU that fails mid-way (device lost, timeout) is as unusable as one never found.
        Error::GpuUnavailable(_) | Error::Gpu { .. } => GpuUnavailableError::new_err(message),
        Error::Interrupted { .. } => PyKeyboardInterrupt::new_err(message),
        Error::Unsupported { .. } => PyNotImplementedError::new_err(message),
        Error::Diverged { step, losses, .. } => Python::attach(|py| {
            let err = TrainingDivergedError::new_err(message);
            let value = err.value(py);
            match value.setattr("step", step).and_then(|()| value.setattr("losses", losses)) {
                Ok(()) => err,
                Err(e) => e,
            }
        }),
        // The member's own exception, with the message naming the member and a `member` attribute.
        Error::Member { member, error } => Python::attach(|py| {
            let err = exception(*error, message);
            match err.value(py).setattr("member", member) {
                Ok(()) => err,
                Err(e) => e,
            }
        }),
    }
}
