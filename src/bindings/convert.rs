//! Conversions between Python and the core: the settings dict, numpy arrays in (copied into owned
//! data, checked against the network's shapes) and out, and the dicts the Python layer reads.

use crate::activation::Activation;
use crate::error::Error;
use crate::gpu::AdapterSummary;
use crate::loss::Loss;
use crate::network::{Bias, Config, PARAM_NAMES};
use crate::optim::Optimizer;
use crate::Scalar;
use numpy::{Element, IntoPyArray, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::str::FromStr;

/// A network's settings as the Python layer passes them, a dict with these keys (`NetworkConfig` has
/// checked their types).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct Settings {
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
    pub fn into_config(self) -> PyResult<Config> {
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

/// The configuration as a dict of plain values.
pub fn config_dict<'py>(py: Python<'py>, c: &Config) -> PyResult<Bound<'py, PyDict>> {
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
pub fn weights_dict<'py, T: Element + Scalar>(
    py: Python<'py>,
    c: &Config,
    params: [Vec<T>; 4],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let shapes = c.shapes();
    for (i, p) in params.into_iter().enumerate() {
        if shapes[i].1 > 0 {
            let rows = if i % 2 == 0 { Some(shapes[i].0) } else { None };
            d.set_item(PARAM_NAMES[i], to_numpy(py, p, rows)?)?;
        }
    }
    Ok(d)
}

/// Parameters from a dict shaped like `weights_dict`'s (shapes checked here, values by the core).
pub fn params_of<T: Element + Scalar>(weights: &Bound<'_, PyDict>, c: &Config) -> PyResult<[Vec<T>; 4]> {
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
pub fn state_lists<T: Element + Scalar>(
    py: Python<'_>,
    state: [Vec<Vec<T>>; 4],
    updates: u64,
) -> (Vec<Vec<Bound<'_, PyAny>>>, u64) {
    let arrays =
        state.into_iter().map(|slots| slots.into_iter().map(|s| s.into_pyarray(py).into_any()).collect()).collect();
    (arrays, updates)
}

/// The reverse of `state_lists` (layout checked by the core).
pub fn state_of<T: Element + Scalar>(state: &[Vec<Bound<'_, PyAny>>]) -> PyResult<[Vec<Vec<T>>; 4]> {
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
pub fn trace_dict<'py, T: Element + Scalar>(
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

/// Copies a 1-D or 2-D numpy array of exactly the network's dtype into owned data, checking that it
/// holds rows of `cols` values (any count when `cols` is 0). Returns the data, the number of rows and
/// whether it was 1-D.
pub fn rows_of<T: Element + Scalar>(
    obj: &Bound<'_, PyAny>,
    arg: &'static str,
    cols: usize,
) -> PyResult<(Vec<T>, usize, bool)> {
    let array = array_of::<T>(obj, arg)?;
    if array.data().cast::<u8>().align_offset(align_of::<T>()) != 0 {
        // Values are read as T only where they are aligned for it: numpy copies the array first.
        return rows_of(&obj.call_method0("copy")?, arg, cols);
    }
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
    // The copy may not fit beside the caller's array: a MemoryError, not an abort.
    let mut data = Vec::new();
    crate::memory::reserve(arg, &mut data, rows, width)?;
    if rows * width * size_of::<T>() <= COPY_BLOCK {
        // Read at once, with the GIL held throughout: numpy's own `to_vec`, without the borrow bookkeeping
        // that a small call would spend a fifth of its time on.
        if let Some((s, _, _)) = rows_in_place::<T>(obj, width) {
            data.extend_from_slice(s);
            return Ok((data, rows, one_d));
        }
    }
    let readonly = array.readonly();
    // `as_slice` also accepts Fortran order, whose memory is not row-major: copy by index then.
    match readonly.as_slice() {
        Ok(s) if readonly.is_c_contiguous() => copy_yielding(obj.py(), s, &mut data),
        _ => data.extend(readonly.as_array().iter().copied()),
    }
    Ok((data, rows, one_d))
}

/// A C-contiguous, aligned numpy array of exactly T holding rows of `cols` values (1-D: one row), read
/// in place, with its row count and whether it was 1-D; None for anything else (which `rows_of` copies,
/// or explains). While the slice lives the caller must hold the GIL, so that nothing writes the array.
pub fn rows_in_place<'a, T: Element>(obj: &'a Bound<'_, PyAny>, cols: usize) -> Option<(&'a [T], usize, bool)> {
    let array = obj.cast::<PyArrayDyn<T>>().ok()?;
    let (rows, one_d) = match *array.shape() {
        [w] if w == cols => (1, true),
        [r, w] if w == cols && r > 0 => (r, false),
        _ => return None,
    };
    if !array.is_c_contiguous() || array.data().cast::<u8>().align_offset(align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: the GIL is held while the slice lives (see above), and the array is C-contiguous and aligned.
    unsafe { array.as_slice() }.ok().map(|s| (s, rows, one_d))
}

/// Bytes copied with the GIL held before other threads get a turn.
const COPY_BLOCK: usize = 1 << 20;

/// Copies `s` into `data` a block at a time, letting other Python threads run between blocks, so that a
/// large input does not stop them for the whole copy. Each block is copied with the GIL held, never
/// with it released: Python code writing to the array from another thread would then race with the
/// copy (numpy's borrow flags do not bind Python code). Between blocks such a writer may run, as it
/// could between any two calls: the copy then holds a mix of both, as numpy's own copies would.
fn copy_yielding<T: Copy>(py: Python<'_>, s: &[T], data: &mut Vec<T>) {
    let block = (COPY_BLOCK / size_of::<T>().max(1)).max(1);
    for (i, chunk) in s.chunks(block).enumerate() {
        if i > 0 {
            // Releasing the GIL lets a thread that asked for it take it (CPython hands it over).
            py.detach(|| ());
        }
        data.extend_from_slice(chunk);
    }
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
pub fn exact_shape<T: Element + Scalar>(
    obj: &Bound<'_, PyAny>,
    arg: &'static str,
    shape: &[usize],
) -> PyResult<Vec<T>> {
    let array = array_of::<T>(obj, arg)?;
    if array.shape() != shape {
        return Err(
            Error::ShapeMismatch { arg, expected: format!("{shape:?}"), got: format!("{:?}", array.shape()) }.into()
        );
    }
    Ok(array.readonly().as_array().iter().copied().collect())
}

/// X and its targets (`t_name`: T, or Y for fit) as rows of `c.n_in` and `c.n_out` values with the same
/// number of rows.
pub fn pair_of<T: Element + Scalar>(
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
pub fn to_numpy<T: Element>(py: Python<'_>, v: Vec<T>, rows: Option<usize>) -> PyResult<Bound<'_, PyAny>> {
    let array = v.into_pyarray(py);
    match rows {
        None => Ok(array.into_any()),
        Some(r) => {
            let cols = array.len().checked_div(r).unwrap_or(0);
            Ok(array.reshape([r, cols])?.into_any())
        }
    }
}

/// An adapter as a dict: `name`, `backend`, `device_type`, `is_software`.
pub fn adapter_dict(py: Python<'_>, a: AdapterSummary) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", a.name)?;
    d.set_item("backend", a.backend)?;
    d.set_item("device_type", a.device_type)?;
    d.set_item("is_software", a.is_software)?;
    Ok(d)
}
