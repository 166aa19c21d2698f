//! PyO3 bindings: one class, `Core`, over the networks of every device (an enum of `Backend`
//! implementations, as tokenizers wraps its models). It takes numpy arrays of the network's dtype (the
//! Python layer converts everything else), copies them into owned Rust data, releases the GIL for any
//! sizeable work, and returns numpy arrays. Configuration, validation of Python types, logging and the
//! public API live in `python/rustbp`.

mod convert;
mod error;
mod io;
mod population;

use crate::backend::{to_cpu, Backend, FitExtras, FitPlan};
use crate::error::Error;
use crate::gpu::GpuNetwork;
use crate::lock::{ForkLock, ReadGuard, Refused, WriteGuard};
use crate::network::Network;
use convert::{
    adapter_dict, config_dict, pair_of, params_of, rows_in_place, rows_of, state_lists, state_of, to_numpy, trace_dict,
    weights_dict, Settings,
};
use numpy::IntoPyArray;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pub use error::{GpuUnavailableError, TrainingDivergedError};

/// Below this many multiply-adds a call keeps the GIL: releasing it would cost more than the work.
const DETACH_WORK: usize = 50_000;

/// From this many multiply-adds (a large validation set: a good fraction of a second and more), `forward`
/// and `loss` run in row blocks of about `BLOCK_WORK`, looking for Ctrl-C between blocks. Smaller calls
/// run in one piece: blocks round differently from one pass (the products are split otherwise).
const POLLED_WORK: usize = 1 << 30;
const BLOCK_WORK: usize = 1 << 26;

/// The network of a `Core`, on its device.
#[allow(clippy::large_enum_variant)] // one per Python object, behind its lock: the size is no cost
enum Net {
    F32(Network<f32>),
    F64(Network<f64>),
    Gpu(GpuNetwork),
}

/// Runs `$body` with `$n` bound to the network, whichever device and dtype it has: the one `match`
/// over devices.
macro_rules! dispatch {
    ($net:expr, $n:ident => $body:expr) => {
        match $net {
            Net::F32($n) => $body,
            Net::F64($n) => $body,
            Net::Gpu($n) => $body,
        }
    };
}
pub(crate) use dispatch;

impl Net {
    /// A network of `config` seeded with `seed`, on `device` in `dtype`.
    fn new(config: crate::Config, seed: u64, device: &str, dtype: &str) -> PyResult<Self> {
        Ok(match (device, dtype) {
            ("cpu", "float64") => Self::F64(Network::new(config, seed)?),
            ("cpu", "float32") => Self::F32(Network::new(config, seed)?),
            ("gpu", "float32") => Self::Gpu(GpuNetwork::new(config, seed)?),
            _ => return Err(unsupported(device, dtype)),
        })
    }

    /// A copy of `net` (weights, optimizer state) on `device` in `dtype`.
    fn copy_of<B: Backend + ?Sized>(net: &B, device: &str, dtype: &str) -> PyResult<Self> {
        Ok(match (device, dtype) {
            ("cpu", "float64") => Self::F64(to_cpu(net)?),
            ("cpu", "float32") => Self::F32(to_cpu(net)?),
            ("gpu", "float32") => Self::Gpu(GpuNetwork::from_cpu(&to_cpu(net)?)?),
            _ => return Err(unsupported(device, dtype)),
        })
    }

    fn device(&self) -> &'static str {
        if matches!(self, Self::Gpu(_)) {
            "gpu"
        } else {
            "cpu"
        }
    }

    fn dtype(&self) -> &'static str {
        if matches!(self, Self::F64(_)) {
            "float64"
        } else {
            "float32"
        }
    }
}

/// `NetworkConfig` lets only valid pairs through; this guards the class used directly.
fn unsupported(device: &str, dtype: &str) -> PyErr {
    PyValueError::new_err(format!(
        "device, dtype: expected cpu with float64 or float32, or gpu with float32, got {device:?}, {dtype:?}"
    ))
}

/// The compiled network, on any device. Use `rustbp.Network`, which wraps it.
#[pyclass(module = "rustbp._rustbp", frozen)]
struct Core {
    // A lock, not `&mut self`: training holds it for writing with the GIL released, so other threads
    // run Python meanwhile; one that wants the network then fails fast with a clear error instead of
    // reading half-updated weights. Predictions share it for reading, so many threads predict at once.
    // Fork-aware: a child forked while another thread held it is not told "busy" forever.
    net: ForkLock<Net>,
}

impl Core {
    fn wrap(net: Net) -> Self {
        Self { net: ForkLock::new(net) }
    }

    fn read(&self) -> PyResult<ReadGuard<'_, Net>> {
        self.net.try_read().map_err(refused)
    }

    fn write(&self) -> PyResult<WriteGuard<'_, Net>> {
        self.net.try_write().map_err(refused)
    }
}

fn refused(why: Refused) -> PyErr {
    PyRuntimeError::new_err(match why {
        Refused::Busy => {
            "the network is busy: another thread is training it or reading it; retry when that call returns".to_owned()
        }
        Refused::WriterAtFork { pid } => format!(
            "the network was being changed by another thread of process {pid} when this process was forked \
             from it, so its copy here may be half-updated: load it from a file or rebuild it in this process"
        ),
    })
}

/// Multiply-adds of a forward pass over `rows` rows.
fn forward_work(c: &crate::Config, rows: usize) -> usize {
    rows.saturating_mul(c.n_hidden * (c.n_in + c.n_out))
}

#[pymethods]
impl Core {
    #[new]
    fn new(py: Python<'_>, settings: Settings, dtype: &str, device: &str, seed: u64) -> PyResult<Self> {
        let config = settings.into_config()?;
        let (dtype, device) = (dtype.to_owned(), device.to_owned());
        Ok(Self::wrap(py.detach(|| Net::new(config, seed, &device, &dtype))?))
    }

    /// The article's 2-2-2 network, exactly (float64 on the CPU, float32 on the GPU).
    #[staticmethod]
    fn article(py: Python<'_>, device: &str) -> PyResult<Self> {
        let dtype = if device == "gpu" { "float32" } else { "float64" };
        let device = device.to_owned();
        Ok(Self::wrap(py.detach(|| Net::copy_of(&Network::<f64>::article(), &device, dtype))?))
    }

    /// A copy of this network (weights, optimizer state) on `device` in `dtype`.
    fn to(&self, py: Python<'_>, device: &str, dtype: &str) -> PyResult<Self> {
        let guard = self.read()?;
        let (device, dtype) = (device.to_owned(), dtype.to_owned());
        Ok(Self::wrap(py.detach(|| dispatch!(&*guard, n => Net::copy_of(n, &device, &dtype)))?))
    }

    #[getter]
    fn dtype(&self) -> PyResult<&'static str> {
        Ok(self.read()?.dtype())
    }

    #[getter]
    fn device(&self) -> PyResult<&'static str> {
        Ok(self.read()?.device())
    }

    /// The GPU adapter the network runs on, as a dict; None on the CPU.
    fn adapter<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let adapter = dispatch!(&*self.read()?, n => n.adapter());
        adapter.map(|a| adapter_dict(py, a)).transpose()
    }

    /// Whether a batch of `rows` rows trains with the GPU's fused kernel (all steps in few dispatches).
    fn uses_fused(&self, rows: usize) -> PyResult<bool> {
        Ok(match &*self.read()? {
            Net::Gpu(n) => n.uses_fused(rows),
            Net::F32(_) | Net::F64(_) => false,
        })
    }

    /// The configuration as plain values, for the Python layer's config objects.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.read()?;
        config_dict(py, dispatch!(&*guard, n => Backend::config(n)))
    }

    /// Outputs for X of shape (batch, n_in) or (n_in,); the result has the same rank.
    fn forward<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self.read()?;
        dispatch!(&*guard, n => {
            let c = *Backend::config(n);
            if let Some((x, rows, one_d)) = rows_in_place(x, c.n_in).filter(|&(_, r, _)| forward_work(&c, r) < DETACH_WORK) {
                return to_numpy(py, n.forward(x)?, if one_d { None } else { Some(rows) });
            }
            let (x, rows, one_d) = rows_of(x, "X", c.n_in)?;
            let o = if forward_work(&c, rows) >= POLLED_WORK {
                fits_at_once(n, &c, rows)?;
                let blocks = in_row_blocks(py, &c, rows, |r0, r1| n.forward(&x[r0 * c.n_in..r1 * c.n_in]))?;
                blocks.into_iter().flat_map(|(_, o)| o).collect()
            } else {
                maybe_detach(py, forward_work(&c, rows), || n.forward(&x))?
            };
            to_numpy(py, o, if one_d { None } else { Some(rows) })
        })
    }

    /// The loss on (X, T) without training.
    fn loss(&self, py: Python<'_>, x: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<f64> {
        let guard = self.read()?;
        dispatch!(&*guard, n => {
            let c = *Backend::config(n);
            if let Some((x, t)) = small_pair(&c, x, t, 1) {
                return Ok(n.loss(x, t)?);
            }
            let (x, t, rows) = pair_of(&c, x, t, "T")?;
            if forward_work(&c, rows) >= POLLED_WORK {
                fits_at_once(n, &c, rows)?;
                // Every loss is a mean over rows: the blocks' means weighted by their rows.
                let blocks = in_row_blocks(py, &c, rows, |r0, r1| {
                    n.loss(&x[r0 * c.n_in..r1 * c.n_in], &t[r0 * c.n_out..r1 * c.n_out])
                })?;
                return Ok(blocks.into_iter().map(|(r, l)| l * r as f64).sum::<f64>() / rows as f64);
            }
            Ok(maybe_detach(py, forward_work(&c, rows), || n.loss(&x, &t))?)
        })
    }

    /// Sets the learning rate of the next steps, keeping the optimizer state.
    fn set_lr(&self, lr: f64) -> PyResult<()> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => Ok(n.set_lr(lr)?))
    }

    /// One training step; returns the loss before the update.
    fn train_step(&self, py: Python<'_>, x: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<f64> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let c = *Backend::config(n);
            if let Some((x, t)) = small_pair(&c, x, t, 3) {
                return Ok(n.train_step(x, t)?);
            }
            let (x, t, rows) = pair_of(&c, x, t, "T")?;
            Ok(maybe_detach(py, 3 * forward_work(&c, rows), || n.train_step(&x, &t))?)
        })
    }

    /// `steps` training steps on one batch, looped in Rust with the GIL released; the loss of each.
    fn train<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        steps: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let (x, t, _) = pair_of(Backend::config(n), x, t, "T")?;
            let losses = interruptible(py, Vec::len, |keep_going| n.train(&x, &t, steps, keep_going))?;
            Ok(losses.into_pyarray(py).into_any())
        })
    }

    /// Mini-batch training over (X, Y); the mean loss of each epoch. `lrs`: the learning rate of each
    /// epoch, set at its start (the network keeps the last); `sample_weight`: one weight per sample.
    #[pyo3(signature = (x, y, epochs, batch_size, shuffle, seed, first_epoch=0, lrs=None, sample_weight=None))]
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
        lrs: Option<Vec<f64>>,
        sample_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let plan = FitPlan { epochs, batch_size, shuffle, first_epoch };
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let (x, y, rows) = pair_of(Backend::config(n), x, y, "Y")?;
            let weights = sample_weight.map(|w| rows_of(w, "sample_weight", 0).map(|(w, _, _)| w)).transpose()?;
            let lrs = lrs.unwrap_or_default();
            let steps_per_epoch = rows.div_ceil(batch_size.max(1));
            let losses = interruptible(py, |l: &Vec<f64>| l.len() * steps_per_epoch, |keep_going| {
                let extras = FitExtras { lrs: &lrs, sample_weight: weights.as_deref() };
                n.fit_with(&x, &y, plan, seed, extras, keep_going)
            })?;
            Ok(losses.into_pyarray(py).into_any())
        })
    }

    /// {"w1": (n_hidden, n_in), "b1": ..., "w2": (n_out, n_hidden), "b2": ...} as numpy copies;
    /// biases are absent when the network has none.
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.read()?;
        dispatch!(&*guard, n => weights_dict(py, Backend::config(n), py.detach(|| n.read_params())?))
    }

    /// Replaces the weights from a dict shaped like `get_weights()`'s (shapes and finiteness checked).
    fn set_weights(&self, py: Python<'_>, weights: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let params = params_of(weights, Backend::config(n))?;
            Ok(py.detach(|| n.write_params(params))?)
        })
    }

    /// Optimizer state per parameter, as lists of flat arrays, and the number of updates so far.
    fn get_optimizer_state<'py>(&self, py: Python<'py>) -> PyResult<(Vec<Vec<Bound<'py, PyAny>>>, u64)> {
        let guard = self.read()?;
        dispatch!(&*guard, n => {
            let (state, updates) = py.detach(|| n.read_state())?;
            Ok(state_lists(py, state, updates))
        })
    }

    /// Restores what `get_optimizer_state` returned.
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts the argument by value
    fn set_optimizer_state(&self, py: Python<'_>, state: Vec<Vec<Bound<'_, PyAny>>>, updates: u64) -> PyResult<()> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let state = state_of(&state)?;
            Ok(py.detach(|| n.write_state((state, updates)))?)
        })
    }

    /// One training step on one sample, returning every intermediate (see `Network.explain_step`); with
    /// `apply` false the network is left as it was.
    #[pyo3(signature = (x, t, apply=true))]
    fn explain_step<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        apply: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let c = *Backend::config(n);
            let (x, t, _) = pair_of(&c, x, t, "T")?;
            let s = py.detach(|| n.explain_step(&x, &t, apply))?;
            trace_dict(py, s, &c)
        })
    }
}

/// The adapters wgpu sees, best first, as dicts: `name`, `backend`, `device_type`, `is_software`.
#[pyfunction]
fn gpu_devices(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    py.detach(crate::gpu::devices)?.into_iter().map(|a| adapter_dict(py, a)).collect()
}

/// X and T read in place (see `rows_in_place`) when they are rows of the network's dtype and a call doing
/// `passes` forward passes' work on them is too small to release the GIL for: the hot path of a Python loop
/// of single steps, which would otherwise spend more time copying its arguments than computing.
fn small_pair<'a, T: numpy::Element>(
    c: &crate::Config,
    x: &'a Bound<'_, PyAny>,
    t: &'a Bound<'_, PyAny>,
    passes: usize,
) -> Option<(&'a [T], &'a [T])> {
    let (x, rows, _) = rows_in_place(x, c.n_in)?;
    let (t, t_rows, _) = rows_in_place(t, c.n_out)?;
    (rows == t_rows && passes * forward_work(c, rows) < DETACH_WORK).then_some((x, t))
}

/// Runs `f` with the GIL released when the work is large enough to be worth it.
fn maybe_detach<R: Send>(py: Python<'_>, work: usize, f: impl FnOnce() -> R + Send) -> R {
    if work >= DETACH_WORK {
        py.detach(f)
    } else {
        f()
    }
}

/// Refuses a batch whose activations one pass could not hold with that pass's `MemoryError`, as without
/// row blocks, rather than computing it block by block for hours.
fn fits_at_once<B: Backend + ?Sized>(_net: &B, c: &crate::Config, rows: usize) -> crate::Result<()> {
    crate::memory::check::<B::T>("hidden activations", rows as u128 * c.n_hidden as u128)?;
    crate::memory::check::<B::T>("output activations", 2 * rows as u128 * c.n_out as u128)?;
    Ok(())
}

/// Runs `f` on the row blocks `[r0, r1)` of a batch of `rows` rows with the GIL released, checking for
/// Ctrl-C (and other signals) between blocks: a pending signal's exception is raised once the block in
/// progress is done. Returns each block's row count and result.
fn in_row_blocks<R: Send>(
    py: Python<'_>,
    c: &crate::Config,
    rows: usize,
    mut f: impl FnMut(usize, usize) -> crate::Result<R> + Send,
) -> PyResult<Vec<(usize, R)>> {
    let block = (BLOCK_WORK / forward_work(c, 1).max(1)).max(1);
    let mut pending: Option<PyErr> = None;
    let blocks = py.detach(|| -> crate::Result<Vec<(usize, R)>> {
        let mut out = Vec::with_capacity(rows.div_ceil(block));
        for r0 in (0..rows).step_by(block) {
            if r0 > 0 {
                // A closure, as in `interruptible`: the method's lifetime is not general enough for `attach`.
                #[allow(clippy::redundant_closure_for_method_calls)]
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    pending = Some(e);
                    break;
                }
            }
            let r1 = (r0 + block).min(rows);
            out.push((r1 - r0, f(r0, r1)?));
        }
        Ok(out)
    })?;
    match pending {
        Some(signal) => Err(signal),
        None => Ok(blocks),
    }
}

/// Runs a long loop with the GIL released, checking for Ctrl-C (and other signals) whenever the
/// loop asks; a pending signal's exception (KeyboardInterrupt) is raised once the loop has stopped
/// at a completed step, with `completed_steps` saying which (`steps` counts them in a finished run).
fn interruptible<R: Send>(
    py: Python<'_>,
    steps: impl Fn(&R) -> usize,
    f: impl FnOnce(&mut dyn FnMut() -> bool) -> crate::Result<R> + Send,
) -> PyResult<R> {
    let mut pending: Option<PyErr> = None;
    let result = py.detach(|| {
        // A closure, not `Python::check_signals`: the method's lifetime is not general enough for `attach`.
        #[allow(clippy::redundant_closure_for_method_calls)]
        let mut keep_going = || match Python::attach(|py| py.check_signals()) {
            Ok(()) => true,
            Err(e) => {
                pending = Some(e);
                false
            }
        };
        f(&mut keep_going)
    });
    // Say where training stopped: the network keeps the weights of exactly these steps. Best effort: a
    // handler may raise an exception type that takes no attributes.
    let stopped = |signal: PyErr, completed: usize| {
        let _ = signal.value(py).setattr("completed_steps", completed);
        Err(signal)
    };
    match (result, pending) {
        (Err(Error::Interrupted { completed }), Some(signal)) => stopped(signal, completed),
        // A signal that came after the loop's last question: raised here, with every step of the run
        // counted, rather than by Python after the return, where nothing would say how far it got.
        (Ok(r), None) => match py.check_signals() {
            Ok(()) => Ok(r),
            Err(signal) => stopped(signal, steps(&r)),
        },
        (result, _) => Ok(result?),
    }
}

#[pymodule]
fn _rustbp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_class::<population::PopulationCore>()?;
    m.add_function(wrap_pyfunction!(io::core_to_safetensors, m)?)?;
    m.add_function(wrap_pyfunction!(io::core_from_safetensors, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_devices, m)?)?;
    m.add("TrainingDivergedError", m.py().get_type::<TrainingDivergedError>())?;
    m.add("GpuUnavailableError", m.py().get_type::<GpuUnavailableError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
