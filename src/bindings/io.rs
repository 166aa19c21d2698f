//! Bindings of `crate::io`: a `Core` to and from safetensors bytes. The Python layer does the file
//! handling (atomic writes, paths) and pickling on top of these bytes.

use super::{Core, Net};
use crate::backend::to_cpu;
use crate::io::{from_safetensors, to_safetensors, LoadedNetwork};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The safetensors bytes of `core`'s network, on any device; with `optimizer`, its optimizer state too.
#[pyfunction]
pub(super) fn core_to_safetensors<'py>(
    py: Python<'py>,
    core: &Bound<'py, Core>,
    optimizer: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let guard = core.get().read()?;
    let bytes = py.detach(|| match &*guard {
        Net::F32(n) => to_safetensors(n, optimizer),
        Net::F64(n) => to_safetensors(n, optimizer),
        // A GPU network is saved as its float32 CPU copy.
        Net::Gpu(n) => to_safetensors(&to_cpu::<_, f32>(n)?, optimizer),
    })?;
    Ok(PyBytes::new(py, &bytes))
}

/// A new CPU `Core` from bytes written by `core_to_safetensors`, checked field by field.
#[pyfunction]
pub(super) fn core_from_safetensors(py: Python<'_>, data: &[u8]) -> PyResult<Core> {
    let net = match py.detach(|| from_safetensors(data))? {
        LoadedNetwork::F32(n) => Net::F32(n),
        LoadedNetwork::F64(n) => Net::F64(n),
    };
    Ok(Core::wrap(net))
}
