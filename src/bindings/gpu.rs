//! `PyO3` bindings of the GPU backend: `GpuCore`, with the methods of `Core` on a float32 network that
//! lives on a GPU, and `gpu_devices()`. Built with or without the `gpu` feature: without it the
//! backend's stand-in makes every constructor raise `GpuUnavailableError`.

use super::{
    config_dict, interruptible, pair_of, params_of, rows_of, state_lists, state_of, to_numpy, trace_dict, weights_dict,
    Settings,
};
use crate::gpu::GpuNetwork;
use crate::network::Network;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// The adapters wgpu sees, best first, as dicts: `name`, `backend`, `device_type`, `is_software`.
#[pyfunction]
pub fn gpu_devices(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let found = py.detach(crate::gpu::devices)?;
    found
        .into_iter()
        .map(|a| {
            let d = PyDict::new(py);
            d.set_item("name", a.name)?;
            d.set_item("backend", a.backend)?;
            d.set_item("device_type", a.device_type)?;
            d.set_item("is_software", a.is_software)?;
            Ok(d)
        })
        .collect()
}

/// The compiled network on a GPU (float32). Use `rustbp.Network(..., device="gpu")`, which wraps it.
#[pyclass(module = "rustbp._rustbp", frozen)]
pub struct GpuCore {
    // Every call uses the network's GPU work buffers, predictions too, so access is exclusive; a
    // second thread fails fast with a clear error instead of waiting behind a long training run.
    net: Mutex<GpuNetwork>,
}

impl GpuCore {
    fn lock(&self) -> PyResult<MutexGuard<'_, GpuNetwork>> {
        match self.net.try_lock() {
            Ok(guard) => Ok(guard),
            Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
                "the network is busy: another thread is using it on the GPU; retry when that call returns",
            )),
            // GPU state is committed by whole submissions, so a poisoned lock still guards consistent data.
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        }
    }
}

#[pymethods]
impl GpuCore {
    #[new]
    fn new(py: Python<'_>, settings: Settings, dtype: &str, seed: u64) -> PyResult<Self> {
        if dtype != "float32" {
            return Err(PyValueError::new_err(format!(
                "dtype: GPU compute is float32, so device='gpu' needs dtype='float32' (got {dtype:?}); use device='cpu' for float64"
            )));
        }
        let config = settings.into_config()?;
        let net = py.detach(|| GpuNetwork::new(config, seed))?;
        Ok(Self { net: Mutex::new(net) })
    }

    /// The article's 2-2-2 network (in float32), on the GPU.
    #[staticmethod]
    fn article(py: Python<'_>) -> PyResult<Self> {
        let net = py.detach(|| GpuNetwork::from_cpu(&Network::<f32>::article()))?;
        Ok(Self { net: Mutex::new(net) })
    }

    #[getter]
    #[allow(clippy::unused_self)] // a getter, for the same interface as `Core`
    fn dtype(&self) -> &'static str {
        "float32"
    }

    /// The adapter this network runs on: `name`, `backend`, `device_type`, `is_software`.
    fn adapter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let a = self.lock()?.adapter();
        let d = PyDict::new(py);
        d.set_item("name", a.name)?;
        d.set_item("backend", a.backend)?;
        d.set_item("device_type", a.device_type)?;
        d.set_item("is_software", a.is_software)?;
        Ok(d)
    }

    /// Whether a batch of `rows` rows trains with the fused kernel (all steps in few dispatches).
    fn uses_fused(&self, rows: usize) -> PyResult<bool> {
        Ok(self.lock()?.uses_fused(rows))
    }

    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, self.lock()?.config())
    }

    /// Outputs for X of shape (batch, `n_in`) or (`n_in`,); the result has the same rank.
    fn forward<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let (x, rows, one_d) = rows_of::<f32>(x, "X", n.config().n_in)?;
        let o = py.detach(|| n.forward(&x))?;
        to_numpy(py, o, if one_d { None } else { Some(rows) })
    }

    fn loss(&self, py: Python<'_>, x: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<f64> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let (x, t, _) = pair_of::<f32>(n.config(), x, t, "T")?;
        Ok(py.detach(|| n.loss(&x, &t))?)
    }

    fn train_step(&self, py: Python<'_>, x: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<f64> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let (x, t, _) = pair_of::<f32>(n.config(), x, t, "T")?;
        Ok(py.detach(|| n.train_step(&x, &t))?)
    }

    fn train<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        steps: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let (x, t, _) = pair_of::<f32>(n.config(), x, t, "T")?;
        let losses = interruptible(py, |keep_going| n.train(&x, &t, steps, keep_going))?;
        Ok(numpy::IntoPyArray::into_pyarray(losses, py).into_any())
    }

    #[pyo3(signature = (x, y, epochs, batch_size, shuffle, seed, first_epoch=0))]
    fn fit<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        epochs: usize,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        first_epoch: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let (x, y, _) = pair_of::<f32>(n.config(), x, y, "Y")?;
        let losses =
            interruptible(py, |keep_going| n.fit(&x, &y, epochs, batch_size, shuffle, seed, first_epoch, keep_going))?;
        Ok(numpy::IntoPyArray::into_pyarray(losses, py).into_any())
    }

    /// The weights, read back from the GPU.
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.lock()?;
        let n = &*guard;
        let params = py.detach(|| n.params())?;
        weights_dict(py, n.config(), &params)
    }

    fn set_weights(&self, py: Python<'_>, weights: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let params = params_of::<f32>(weights, n.config())?;
        Ok(py.detach(|| n.set_params(params))?)
    }

    fn get_optimizer_state<'py>(&self, py: Python<'py>) -> PyResult<(Vec<Vec<Bound<'py, PyAny>>>, u64)> {
        let guard = self.lock()?;
        let n = &*guard;
        let (state, updates) = py.detach(|| n.optimizer_state())?;
        Ok(state_lists(py, &state, updates))
    }

    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts the argument by value
    fn set_optimizer_state(&self, py: Python<'_>, state: Vec<Vec<Bound<'_, PyAny>>>, updates: u64) -> PyResult<()> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let typed = state_of::<f32>(&state)?;
        Ok(py.detach(|| n.set_optimizer_state(typed, updates))?)
    }

    /// One explained step on one sample (computed on the CPU from the GPU's weights, see the core).
    fn explain_step<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut guard = self.lock()?;
        let n = &mut *guard;
        let (x, t, _) = pair_of::<f32>(n.config(), x, t, "T")?;
        let s = py.detach(|| n.explain_step(&x, &t))?;
        trace_dict(py, s, n.config())
    }
}
