//! PyO3 bindings: a thin `Core` class over `Network<f32>` / `Network<f64>`. It takes numpy arrays of
//! the network's dtype (the Python layer converts everything else), copies them into owned Rust data,
//! releases the GIL for any sizeable work, and returns numpy arrays. Configuration, validation of
//! Python types, logging and the public API live in `python/rustbp`.

mod error;
mod gpu;
mod io;

use crate::activation::Activation;
use crate::error::Error;
use crate::loss::Loss;
use crate::network::{Bias, Config, Network, PARAM_NAMES};
use crate::optim::Optimizer;
use crate::Scalar;
use numpy::{Element, IntoPyArray, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::str::FromStr;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

pub use error::{GpuUnavailableError, TrainingDivergedError};

/// Below this many multiply-adds a call keeps the GIL: releasing it would cost more than the work.
const DETACH_WORK: usize = 50_000;

enum Net {
    F32(Network<f32>),
    F64(Network<f64>),
}

/// Runs `$body` with `$n` bound to the typed network, whichever dtype it has.
macro_rules! dispatch {
    ($net:expr, $n:ident => $body:expr) => {
        match $net {
            Net::F32($n) => $body,
            Net::F64($n) => $body,
        }
    };
}

/// The compiled network. Use `rustbp.Network`, which wraps it.
#[pyclass(module = "rustbp._rustbp", frozen)]
struct Core {
    // A lock, not `&mut self`: training holds it for writing with the GIL released, so other threads
    // run Python meanwhile; one that wants the network then fails fast with a clear error instead of
    // reading half-updated weights. Predictions share it for reading, so many threads predict at once.
    net: RwLock<Net>,
}

/// A network's settings as the Python layer passes them, a dict with these keys (shared by `Core` and
/// `GpuCore`; `Network.__init__` has checked their types).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub(crate) struct Settings {
    n_in: usize,
    n_hidden: usize,
    n_out: usize,
    hidden_activation: String,
    output_activation: String,
    loss: String,
    bias: String,
    train_bias: bool,
    optimizer: String,
    lr: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Settings {
    /// The core's `Config`; names are parsed here, ranges checked by the core.
    pub(crate) fn into_config(self) -> PyResult<Config> {
        let Self { lr, momentum, nesterov, weight_decay, beta1, beta2, eps, .. } = self;
        let optimizer = match self.optimizer.as_str() {
            "sgd" => Optimizer::Sgd { lr, momentum, nesterov, weight_decay },
            "adam" => Optimizer::Adam { lr, beta1, beta2, eps, weight_decay },
            other => return Err(PyValueError::new_err(format!("optimizer: expected sgd or adam, got {other:?}"))),
        };
        Ok(Config {
            n_in: self.n_in,
            n_hidden: self.n_hidden,
            n_out: self.n_out,
            hidden_activation: parse("hidden_activation", &self.hidden_activation, Activation::NAMES)?,
            output_activation: parse("output_activation", &self.output_activation, Activation::NAMES)?,
            loss: parse::<Loss>("loss", &self.loss, Loss::NAMES)?,
            bias: parse::<Bias>("bias", &self.bias, Bias::NAMES)?,
            train_bias: self.train_bias,
            optimizer,
        })
    }
}

fn parse<V: FromStr>(arg: &'static str, value: &str, accepted: &str) -> PyResult<V> {
    value.parse().map_err(|_| PyValueError::new_err(format!("{arg}: expected one of {accepted}, got {value:?}")))
}

impl Core {
    fn new_locked(net: Net) -> Self {
        Self { net: RwLock::new(net) }
    }

    fn read(&self) -> PyResult<RwLockReadGuard<'_, Net>> {
        unpoisoned(self.net.try_read())
    }

    fn write(&self) -> PyResult<RwLockWriteGuard<'_, Net>> {
        unpoisoned(self.net.try_write())
    }
}

fn unpoisoned<G>(lock: Result<G, TryLockError<G>>) -> PyResult<G> {
    match lock {
        Ok(guard) => Ok(guard),
        Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
            "the network is busy: another thread is training it or reading it; retry when that call returns",
        )),
        // The core does not panic; if it ever did, the data is still consistent, since updates are
        // committed by swapping whole buffers.
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
    }
}

#[pymethods]
impl Core {
    #[new]
    fn new(settings: Settings, dtype: &str, seed: u64) -> PyResult<Self> {
        let config = settings.into_config()?;
        let net = match dtype {
            "float32" => Net::F32(Network::new(config, seed)?),
            "float64" => Net::F64(Network::new(config, seed)?),
            other => return Err(PyValueError::new_err(format!("dtype: expected float64 or float32, got {other:?}"))),
        };
        Ok(Self::new_locked(net))
    }

    /// The article's 2-2-2 network, exactly (float64).
    #[staticmethod]
    fn article() -> Self {
        Self::new_locked(Net::F64(Network::article()))
    }

    #[getter]
    fn dtype(&self) -> PyResult<&'static str> {
        Ok(match *self.read()? {
            Net::F32(_) => "float32",
            Net::F64(_) => "float64",
        })
    }

    /// The configuration as plain values, for the Python layer's config objects.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.read()?;
        config_dict(py, dispatch!(&*guard, n => n.config()))
    }

    /// Outputs for X of shape (batch, n_in) or (n_in,); the result has the same rank.
    fn forward<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self.read()?;
        dispatch!(&*guard, n => {
            let (x, rows, one_d) = rows_of(x, "X", n.config().n_in)?;
            let work = rows.saturating_mul(n.config().n_hidden * (n.config().n_in + n.config().n_out));
            let o = maybe_detach(py, work, || n.forward(&x))?;
            to_numpy(py, o, if one_d { None } else { Some(rows) })
        })
    }

    /// The loss on (X, T) without training.
    fn loss(&self, py: Python<'_>, x: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<f64> {
        let guard = self.read()?;
        dispatch!(&*guard, n => {
            let (x, t, rows) = pair_of(n.config(), x, t, "T")?;
            Ok(maybe_detach(py, rows.saturating_mul(n.config().n_in * n.config().n_hidden), || n.loss(&x, &t))?)
        })
    }

    /// One training step; returns the loss before the update.
    fn train_step(&self, py: Python<'_>, x: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<f64> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let (x, t, rows) = pair_of(n.config(), x, t, "T")?;
            let work = rows.saturating_mul(3 * n.config().n_hidden * (n.config().n_in + n.config().n_out));
            Ok(maybe_detach(py, work, || n.train_step(&x, &t))?)
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
            let (x, t, _) = pair_of(n.config(), x, t, "T")?;
            let losses = interruptible(py, |keep_going| n.train(&x, &t, steps, keep_going))?;
            Ok(losses.into_pyarray(py).into_any())
        })
    }

    /// Mini-batch training over (X, Y); the mean loss of each epoch.
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
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let (x, y, _) = pair_of(n.config(), x, y, "Y")?;
            let losses = interruptible(py, |keep_going| n.fit(&x, &y, epochs, batch_size, shuffle, seed, first_epoch, keep_going))?;
            Ok(losses.into_pyarray(py).into_any())
        })
    }

    /// {"w1": (n_hidden, n_in), "b1": ..., "w2": (n_out, n_hidden), "b2": ...} as numpy copies;
    /// biases are absent when the network has none.
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.read()?;
        dispatch!(&*guard, n => weights_dict(py, n.config(), n.params()))
    }

    /// Replaces the weights from a dict shaped like `get_weights()`'s (shapes and finiteness checked).
    fn set_weights(&self, weights: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let params = params_of(weights, n.config())?;
            Ok(n.set_params(params)?)
        })
    }

    /// Optimizer state per parameter, as lists of flat arrays, and the number of updates so far.
    fn get_optimizer_state<'py>(&self, py: Python<'py>) -> PyResult<(Vec<Vec<Bound<'py, PyAny>>>, u64)> {
        let guard = self.read()?;
        dispatch!(&*guard, n => {
            let (state, updates) = n.optimizer_state();
            Ok(state_lists(py, state, updates))
        })
    }

    /// Restores what `get_optimizer_state` returned.
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts the argument by value
    fn set_optimizer_state(&self, state: Vec<Vec<Bound<'_, PyAny>>>, updates: u64) -> PyResult<()> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => Ok(n.set_optimizer_state(state_of(&state)?, updates)?))
    }

    /// One training step on one sample, returning every intermediate (see `Network.explain_step`).
    fn explain_step<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut guard = self.write()?;
        dispatch!(&mut *guard, n => {
            let (x, t, _) = pair_of(n.config(), x, t, "T")?;
            let s = n.explain_step(&x, &t)?;
            trace_dict(py, s, n.config())
        })
    }
}

/// The configuration as a dict of plain values.
fn config_dict<'py>(py: Python<'py>, c: &Config) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("n_in", c.n_in)?;
    d.set_item("n_hidden", c.n_hidden)?;
    d.set_item("n_out", c.n_out)?;
    d.set_item("hidden_activation", c.hidden_activation.name())?;
    d.set_item("output_activation", c.output_activation.name())?;
    d.set_item("loss", c.loss.name())?;
    d.set_item("bias", c.bias.name())?;
    d.set_item("train_bias", c.train_bias)?;
    match c.optimizer {
        Optimizer::Sgd { lr, momentum, nesterov, weight_decay } => {
            d.set_item("optimizer", ("sgd", lr, momentum, nesterov, weight_decay))?;
        }
        Optimizer::Adam { lr, beta1, beta2, eps, weight_decay } => {
            d.set_item("optimizer", ("adam", lr, (beta1, beta2), eps, weight_decay))?;
        }
    }
    Ok(d)
}

/// {"w1": (n_hidden, n_in), "b1": ..., "w2": (n_out, n_hidden), "b2": ...} as numpy arrays; biases
/// are absent when the network has none.
fn weights_dict<'py, T: Element + Scalar>(
    py: Python<'py>,
    c: &Config,
    params: &[Vec<T>; 4],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let shapes = c.shapes();
    for (i, p) in params.iter().enumerate() {
        if shapes[i].1 > 0 {
            let rows = if i % 2 == 0 { Some(shapes[i].0) } else { None };
            d.set_item(PARAM_NAMES[i], to_numpy(py, p.clone(), rows)?)?;
        }
    }
    Ok(d)
}

/// Parameters from a dict shaped like `weights_dict`'s (shapes checked here, values by the core).
fn params_of<T: Element + Scalar>(weights: &Bound<'_, PyDict>, c: &Config) -> PyResult<[Vec<T>; 4]> {
    let shapes = c.shapes();
    let mut params: [Vec<T>; 4] = Default::default();
    for (i, p) in params.iter_mut().enumerate() {
        let (rows, cols) = shapes[i];
        match weights.get_item(PARAM_NAMES[i])? {
            Some(v) => *p = exact_shape(&v, PARAM_NAMES[i], &if i % 2 == 0 { vec![rows, cols] } else { vec![cols] })?,
            None if cols == 0 => {}
            None => return Err(PyValueError::new_err(format!("weights: missing {:?}", PARAM_NAMES[i]))),
        }
    }
    Ok(params)
}

/// Optimizer state as lists of flat arrays per parameter, and the update count.
fn state_lists<'py, T: Element + Scalar>(
    py: Python<'py>,
    state: &[Vec<Vec<T>>; 4],
    updates: u64,
) -> (Vec<Vec<Bound<'py, PyAny>>>, u64) {
    let arrays =
        state.iter().map(|slots| slots.iter().map(|s| s.clone().into_pyarray(py).into_any()).collect()).collect();
    (arrays, updates)
}

/// The reverse of `state_lists` (layout checked by the core).
fn state_of<T: Element + Scalar>(state: &[Vec<Bound<'_, PyAny>>]) -> PyResult<[Vec<Vec<T>>; 4]> {
    if state.len() != 4 {
        return Err(PyValueError::new_err("optimizer_state: expected 4 parameter entries"));
    }
    let mut typed: [Vec<Vec<T>>; 4] = Default::default();
    for (slot, arrays) in typed.iter_mut().zip(state) {
        for a in arrays {
            let (v, _, _) = rows_of(a, "optimizer_state", 0)?;
            slot.push(v);
        }
    }
    Ok(typed)
}

/// Every intermediate of an explained step as a dict of numpy arrays.
fn trace_dict<'py, T: Element + Scalar>(
    py: Python<'py>,
    s: crate::StepTrace<T>,
    c: &Config,
) -> PyResult<Bound<'py, PyDict>> {
    let shapes = c.shapes();
    let d = PyDict::new(py);
    d.set_item("net_hidden", s.net_hidden.into_pyarray(py))?;
    d.set_item("out_hidden", s.out_hidden.into_pyarray(py))?;
    d.set_item("net_output", s.net_output.into_pyarray(py))?;
    d.set_item("out_output", s.out_output.into_pyarray(py))?;
    d.set_item("loss", s.loss)?;
    d.set_item("delta_output", s.delta_output.into_pyarray(py))?;
    d.set_item("delta_hidden", s.delta_hidden.into_pyarray(py))?;
    for (i, (g, p)) in s.grads.into_iter().zip(s.params_after).enumerate() {
        let rows = if i % 2 == 0 { Some(shapes[i].0) } else { None };
        if !g.is_empty() {
            d.set_item(format!("grad_{}", PARAM_NAMES[i]), to_numpy(py, g, rows)?)?;
        }
        if !p.is_empty() {
            d.set_item(format!("{}_after", PARAM_NAMES[i]), to_numpy(py, p, rows)?)?;
        }
    }
    Ok(d)
}

/// Runs `f` with the GIL released when the work is large enough to be worth it.
fn maybe_detach<R: Send>(py: Python<'_>, work: usize, f: impl FnOnce() -> R + Send) -> R {
    if work >= DETACH_WORK {
        py.detach(f)
    } else {
        f()
    }
}

/// Runs a long loop with the GIL released, checking for Ctrl-C (and other signals) whenever the
/// loop asks; a pending signal's exception (KeyboardInterrupt) is raised once the loop has stopped
/// at a completed step.
fn interruptible<R: Send>(
    py: Python<'_>,
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
    match (result, pending) {
        (Err(Error::Interrupted { completed }), Some(signal)) => {
            // Say where training stopped: the network keeps the weights of exactly these steps.
            // Best effort: a handler may raise an exception type that takes no attributes.
            let _ = signal.value(py).setattr("completed_steps", completed);
            Err(signal)
        }
        (result, _) => Ok(result?),
    }
}

/// Copies a 1-D or 2-D numpy array of exactly the network's dtype into owned data, checking that it
/// holds rows of `cols` values (any count when `cols` is 0). Returns the data, the number of rows and
/// whether it was 1-D.
fn rows_of<T: Element + Scalar>(
    obj: &Bound<'_, PyAny>,
    arg: &'static str,
    cols: usize,
) -> PyResult<(Vec<T>, usize, bool)> {
    let array = array_of::<T>(obj, arg)?;
    let shape = array.shape().to_vec();
    let (rows, width, one_d) = match shape[..] {
        [w] => (1, w, true),
        [r, w] => (r, w, false),
        _ => {
            return Err(Error::ShapeMismatch {
                arg,
                expected: format!("(batch, {cols}) or ({cols},)"),
                got: format!("{shape:?}"),
            }
            .into())
        }
    };
    if (cols > 0 && width != cols) || rows == 0 || (cols == 0 && !one_d) {
        let expected = if cols > 0 { format!("(batch >= 1, {cols}) or ({cols},)") } else { "a 1-D array".into() };
        return Err(Error::ShapeMismatch { arg, expected, got: format!("{shape:?}") }.into());
    }
    let readonly = array.readonly();
    // The copy may not fit beside the caller's array: a MemoryError, not an abort.
    let mut data = Vec::new();
    crate::memory::reserve(arg, &mut data, rows, width)?;
    // `as_slice` also accepts Fortran order, whose memory is not row-major: copy by index then.
    match readonly.as_slice() {
        Ok(s) if readonly.is_c_contiguous() => data.extend_from_slice(s),
        _ => data.extend(readonly.as_array().iter().copied()),
    }
    Ok((data, rows, one_d))
}

/// `obj` as a numpy array of `T`, or a TypeError naming `arg` (the Python layer converts dtypes first).
fn array_of<'a, 'py, T: Element>(obj: &'a Bound<'py, PyAny>, arg: &str) -> PyResult<&'a Bound<'py, PyArrayDyn<T>>> {
    obj.cast::<PyArrayDyn<T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a numpy array of {}, got {}",
            std::any::type_name::<T>(),
            describe(obj)
        ))
    })
}

/// Copies an array that must have exactly `shape`.
fn exact_shape<T: Element + Scalar>(obj: &Bound<'_, PyAny>, arg: &'static str, shape: &[usize]) -> PyResult<Vec<T>> {
    let array = array_of::<T>(obj, arg)?;
    if array.shape() != shape {
        return Err(
            Error::ShapeMismatch { arg, expected: format!("{shape:?}"), got: format!("{:?}", array.shape()) }.into()
        );
    }
    Ok(array.readonly().as_array().iter().copied().collect())
}

/// X and its targets (`t_name`: T, or Y for fit) as rows of `c.n_in` and `c.n_out` values with the same
/// number of rows; shared by the CPU and GPU cores.
pub(crate) fn pair_of<T: Element + Scalar>(
    c: &Config,
    x: &Bound<'_, PyAny>,
    t: &Bound<'_, PyAny>,
    t_name: &'static str,
) -> PyResult<(Vec<T>, Vec<T>, usize)> {
    let (x, rows, _) = rows_of(x, "X", c.n_in)?;
    let (t, t_rows, _) = rows_of(t, t_name, c.n_out)?;
    if rows != t_rows {
        return Err(Error::ShapeMismatch {
            arg: t_name,
            expected: format!("{rows} rows, like X"),
            got: format!("{t_rows} rows"),
        }
        .into());
    }
    Ok((x, t, rows))
}

fn describe(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "an object".into(), |n| n.to_string())
}

/// A flat vector as a numpy array: 1-D, or `rows` x (len / rows).
fn to_numpy<T: Element>(py: Python<'_>, v: Vec<T>, rows: Option<usize>) -> PyResult<Bound<'_, PyAny>> {
    let array = v.into_pyarray(py);
    match rows {
        None => Ok(array.into_any()),
        Some(r) => {
            let cols = array.len().checked_div(r).unwrap_or(0);
            Ok(array.reshape([r, cols])?.into_any())
        }
    }
}

#[pymodule]
fn _rustbp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_function(wrap_pyfunction!(io::core_to_safetensors, m)?)?;
    m.add_function(wrap_pyfunction!(io::core_from_safetensors, m)?)?;
    m.add_class::<gpu::GpuCore>()?;
    m.add_function(wrap_pyfunction!(gpu::gpu_devices, m)?)?;
    m.add("TrainingDivergedError", m.py().get_type::<TrainingDivergedError>())?;
    m.add("GpuUnavailableError", m.py().get_type::<GpuUnavailableError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
