//! The binding of `crate::population`: `PopulationCore`, a population of networks on one device, over
//! an enum of populations as `Core` is over an enum of networks. `rustbp.Population` wraps it.

use super::convert::{config_dict, exact_shape, pair_of, rows_of, Settings};
use super::{interruptible, refused, unsupported, Core, Net};
use crate::backend::{to_cpu, Backend, FitPlan};
use crate::gpu::GpuNetwork;
use crate::lock::{ForkLock, ReadGuard, WriteGuard};
use crate::network::{Network, PARAM_NAMES};
use crate::population::{Data, Losses, Population};
use crate::Scalar;
use numpy::{Element, IntoPyArray, PyArrayMethods};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PySequence};

/// The members of a `PopulationCore`, on their device.
enum Members {
    F32(Population<Network<f32>>),
    F64(Population<Network<f64>>),
    Gpu(Population<GpuNetwork>),
}

/// Runs `$body` with `$p` bound to the population, whichever device and dtype it has.
macro_rules! on_members {
    ($members:expr, $p:ident => $body:expr) => {
        match $members {
            Members::F32($p) => $body,
            Members::F64($p) => $body,
            Members::Gpu($p) => $body,
        }
    };
}

/// A network type a population can hold, and how it comes from and goes back to a `Core`'s network.
trait Member: Backend + Send + Sync + Sized {
    fn copy_of(net: &Net) -> crate::Result<Self>;
}

impl<T: Scalar> Member for Network<T> {
    fn copy_of(net: &Net) -> crate::Result<Self> {
        super::dispatch!(net, n => to_cpu(n))
    }
}

impl Member for GpuNetwork {
    fn copy_of(net: &Net) -> crate::Result<Self> {
        super::dispatch!(net, n => GpuNetwork::from_cpu(&to_cpu(n)?))
    }
}

/// Copies of `nets` as a population of `M`.
fn stacked<M: Member>(nets: &[&Net]) -> crate::Result<Population<M>> {
    Population::new(nets.iter().map(|n| M::copy_of(n)).collect::<crate::Result<_>>()?)
}

impl Members {
    /// (device, dtype)
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::F32(_) => ("cpu", "float32"),
            Self::F64(_) => ("cpu", "float64"),
            Self::Gpu(_) => ("gpu", "float32"),
        }
    }
}

/// Many networks of one shape trained as one. Use `rustbp.Population`, which wraps it.
#[pyclass(module = "rustbp._rustbp", frozen)]
pub(super) struct PopulationCore {
    // A lock for the same reason as `Core`'s: training holds it with the GIL released.
    members: ForkLock<Members>,
}

impl PopulationCore {
    fn read(&self) -> PyResult<ReadGuard<'_, Members>> {
        self.members.try_read().map_err(refused)
    }

    fn write(&self) -> PyResult<WriteGuard<'_, Members>> {
        self.members.try_write().map_err(refused)
    }

    fn of(device: &str, dtype: &str, nets: &[&Net]) -> PyResult<Self> {
        let members = match (device, dtype) {
            ("cpu", "float64") => Members::F64(stacked(nets)?),
            ("cpu", "float32") => Members::F32(stacked(nets)?),
            ("gpu", "float32") => Members::Gpu(stacked(nets)?),
            _ => return Err(unsupported(device, dtype)),
        };
        Ok(Self { members: ForkLock::new(members) })
    }
}

#[pymethods]
impl PopulationCore {
    /// Member i built from `settings[i]` and seeded with `seeds[i]`.
    #[new]
    fn new(
        py: Python<'_>,
        settings: &Bound<'_, PySequence>,
        dtype: &str,
        device: &str,
        seeds: &Bound<'_, PySequence>,
    ) -> PyResult<Self> {
        // One at a time into vectors reserved fallibly: their length is the caller's.
        let configs = each(settings, "settings", |s| s.extract::<Settings>()?.into_config())?;
        let seeds = each(seeds, "seeds", |s| s.extract::<u64>())?;
        let members = py.detach(|| -> PyResult<Members> {
            Ok(match (device, dtype) {
                ("cpu", "float64") => Members::F64(Population::build(&configs, &seeds, Network::new)?),
                ("cpu", "float32") => Members::F32(Population::build(&configs, &seeds, Network::new)?),
                ("gpu", "float32") => Members::Gpu(Population::build(&configs, &seeds, GpuNetwork::new)?),
                _ => return Err(unsupported(device, dtype)),
            })
        })?;
        Ok(Self { members: ForkLock::new(members) })
    }

    /// Copies of `cores` (networks of one shape, device and dtype) as a population.
    #[staticmethod]
    #[allow(clippy::needless_pass_by_value)]
    fn stack(py: Python<'_>, cores: Vec<Bound<'_, Core>>) -> PyResult<Self> {
        let guards = cores.iter().map(|c| c.get().read()).collect::<PyResult<Vec<_>>>()?;
        let nets: Vec<&Net> = guards.iter().map(|g| &**g).collect();
        let Some(first) = nets.first() else {
            return Err(crate::Error::config("networks", "at least one network", 0).into());
        };
        if let Some(i) = nets.iter().position(|n| (n.device(), n.dtype()) != (first.device(), first.dtype())) {
            return Err(crate::Error::config(
                "networks",
                format!("networks of one device and dtype ({} {})", first.device(), first.dtype()),
                format!("network {i} on {} in {}", nets[i].device(), nets[i].dtype()),
            )
            .into());
        }
        let (device, dtype) = (first.device(), first.dtype());
        py.detach(|| Self::of(device, dtype, &nets))
    }

    /// How many members.
    fn __len__(&self) -> PyResult<usize> {
        Ok(on_members!(&*self.read()?, p => p.members().len()))
    }

    #[getter]
    fn dtype(&self) -> PyResult<&'static str> {
        Ok(self.read()?.kind().1)
    }

    #[getter]
    fn device(&self) -> PyResult<&'static str> {
        Ok(self.read()?.kind().0)
    }

    /// Member `i` as a network of its own (weights and optimizer state copied), on the population's
    /// device or on `device`.
    #[pyo3(signature = (i, device=None))]
    fn member(&self, py: Python<'_>, i: usize, device: Option<&str>) -> PyResult<Core> {
        let guard = self.read()?;
        on_members!(&*guard, p => {
            let m = p.members().get(i).ok_or_else(|| out_of_range(i, p.members().len()))?;
            let (own, dtype) = guard.kind();
            Ok(Core::wrap(py.detach(|| Net::copy_of(m, device.unwrap_or(own), dtype))?))
        })
    }

    /// Every member copied to the CPU under one lock: all from the same moment, even while another
    /// thread trains the population.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Vec<Core>> {
        let guard = self.read()?;
        let dtype = guard.kind().1;
        on_members!(&*guard, p => {
            let mut copies = Vec::new();
            crate::memory::reserve("population snapshot", &mut copies, p.members().len(), 1)?;
            py.detach(|| -> PyResult<()> {
                for m in p.members() {
                    copies.push(Net::copy_of(m, "cpu", dtype)?);
                }
                Ok(())
            })?;
            Ok(copies.into_iter().map(Core::wrap).collect())
        })
    }

    /// Replaces member `i` with a copy of `core`'s network (same shape, device and dtype).
    fn replace(&self, py: Python<'_>, i: usize, core: &Bound<'_, Core>) -> PyResult<()> {
        let net = core.get().read()?;
        let net: &Net = &net;
        let mut guard = self.write()?;
        on_members!(&mut *guard, p => {
            let copy = py.detach(|| Member::copy_of(net))?;
            Ok(p.replace(i, copy)?)
        })
    }

    /// Member `i`'s configuration as plain values.
    fn config<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.read()?;
        on_members!(&*guard, p => {
            let m = p.members().get(i).ok_or_else(|| out_of_range(i, p.members().len()))?;
            config_dict(py, m.config())
        })
    }

    /// Every member's outputs for X (batch, n_in), as (size * batch, n_out).
    fn forward<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self.read()?;
        on_members!(&*guard, p => {
            let c = *p.config();
            let (x, rows, _) = rows_of(x, "X", c.n_in)?;
            let o = py.detach(|| p.forward(&x))?;
            super::convert::to_numpy(py, o, Some(rows * p.members().len()))
        })
    }

    /// Every member's loss on (X, T).
    fn loss<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, t: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self.read()?;
        on_members!(&*guard, p => {
            let (x, t, _) = pair_of(p.config(), x, t, "T")?;
            Ok(py.detach(|| p.loss(&x, &t))?.into_pyarray(py).into_any())
        })
    }

    /// `steps` steps of every member on (X, T): (size, steps) losses.
    fn train<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        t: &Bound<'py, PyAny>,
        steps: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.write()?;
        on_members!(&mut *guard, p => {
            let (x, t, _) = pair_of(p.config(), x, t, "T")?;
            let losses = interruptible(py, Losses::longest, |keep_going| p.train(&x, &t, steps, keep_going))?;
            matrix(py, losses)
        })
    }

    /// Mini-batch training of every member (each shuffling with its seed, on its own rows when given,
    /// with its own rate per epoch when `lrs` lists them); members not `active` sit out. (size, epochs)
    /// epoch losses, NaN where a member sat out.
    #[pyo3(signature = (x, y, epochs, batch_size, shuffle, seeds, first_epoch=0, active=None, rows=None, lrs=None, sample_weight=None))]
    #[allow(clippy::needless_pass_by_value)]
    fn fit<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        epochs: usize,
        batch_size: usize,
        shuffle: bool,
        seeds: Vec<u64>,
        first_epoch: usize,
        active: Option<Vec<bool>>,
        rows: Option<Vec<Vec<usize>>>,
        lrs: Option<Vec<Vec<f64>>>,
        sample_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let plan = FitPlan { epochs, batch_size, shuffle, first_epoch };
        let mut guard = self.write()?;
        on_members!(&mut *guard, p => {
            let (x, y, n) = pair_of(p.config(), x, y, "Y")?;
            let weights = sample_weight.map(|w| rows_of(w, "sample_weight", 0).map(|(w, _, _)| w)).transpose()?;
            let rows: Option<Vec<&[usize]>> = rows.as_ref().map(|r| r.iter().map(Vec::as_slice).collect());
            let data = Data { x: &x, y: &y, weights: weights.as_deref(), rows: rows.as_deref() };
            let steps_per_epoch = n.div_ceil(batch_size.max(1));
            let losses = interruptible(py, |l: &Losses| l.longest() * steps_per_epoch, |keep_going| {
                p.fit(data, plan, &seeds, lrs.as_deref(), active.as_deref(), keep_going)
            })?;
            matrix(py, losses)
        })
    }

    /// Sets each member's learning rate for the next steps, keeping the optimizer state.
    #[allow(clippy::needless_pass_by_value)]
    fn set_lrs(&self, py: Python<'_>, lrs: Vec<f64>) -> PyResult<()> {
        let mut guard = self.write()?;
        on_members!(&mut *guard, p => Ok(py.detach(|| p.set_lrs(&lrs))?))
    }

    /// {"w1": (size, n_hidden, n_in), "b1": (size, ...), ...}: every member's weights stacked, in the
    /// layout of `torch.func.stack_module_state`; biases absent when the networks have none.
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.read()?;
        on_members!(&*guard, p => stacked_weights(py, p))
    }

    /// Replaces every member's weights from a dict shaped like `get_weights()`'s.
    fn set_weights(&self, py: Python<'_>, weights: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut guard = self.write()?;
        on_members!(&mut *guard, p => {
            let (size, shapes) = (p.members().len(), p.config().shapes());
            let mut params: Vec<[Vec<_>; 4]> = (0..size).map(|_| Default::default()).collect();
            for (i, &(rows, cols)) in shapes.iter().enumerate() {
                let shape = if i % 2 == 0 { vec![size, rows, cols] } else { vec![size, cols] };
                let all = match weights.get_item(PARAM_NAMES[i])? {
                    Some(v) => exact_shape(&v, PARAM_NAMES[i], &shape)?,
                    None if cols == 0 => continue,
                    None => return Err(pyo3::exceptions::PyValueError::new_err(format!("weights: missing {:?}", PARAM_NAMES[i]))),
                };
                for (m, chunk) in params.iter_mut().zip(all.chunks_exact(rows * cols)) {
                    m[i] = chunk.to_vec();
                }
            }
            py.detach(|| {
                // Checked first for every member, so a bad one leaves all as they were.
                for (m, (member, p)) in p.members_mut().iter_mut().zip(&params).enumerate() {
                    Backend::write_params(member, p.clone()).map_err(|e| e.in_member(m))?;
                }
                Ok(())
            })
        })
    }
}

/// `f` of each item of `items`, collected into a vector reserved fallibly.
fn each<T>(
    items: &Bound<'_, PySequence>,
    what: &'static str,
    f: impl Fn(Bound<'_, PyAny>) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    let mut v = Vec::new();
    crate::memory::reserve(what, &mut v, items.len()?, 1)?;
    for item in items.try_iter()? {
        v.push(f(item?)?);
    }
    Ok(v)
}

fn out_of_range(i: usize, size: usize) -> PyErr {
    PyIndexError::new_err(format!("member: expected an index in [0, {size}), got {i}"))
}

/// Per-member losses as a (members, width) array, NaN-padded: numpy takes the core's buffer as it is (a
/// population's losses can be hundreds of megabytes: 10,000 members x 10,000 steps is 800 MB).
fn matrix(py: Python<'_>, losses: Losses) -> PyResult<Bound<'_, PyAny>> {
    let shape = [losses.members(), losses.width()];
    Ok(losses.into_values().into_pyarray(py).reshape(shape)?.into_any())
}

fn stacked_weights<'py, B: Backend + Send + Sync>(py: Python<'py>, p: &Population<B>) -> PyResult<Bound<'py, PyDict>>
where
    B::T: Element,
{
    let d = PyDict::new(py);
    let size = p.members().len();
    let params = py.detach(|| p.members().iter().map(Backend::read_params).collect::<crate::Result<Vec<_>>>())?;
    for (i, &(rows, cols)) in p.config().shapes().iter().enumerate() {
        if cols == 0 {
            continue;
        }
        let mut all = Vec::new();
        crate::memory::reserve("weights", &mut all, size, rows * cols)?;
        for m in &params {
            all.extend_from_slice(&m[i]);
        }
        let array = all.into_pyarray(py);
        let shaped = if i % 2 == 0 {
            array.reshape([size, rows, cols])?.into_any()
        } else {
            array.reshape([size, cols])?.into_any()
        };
        d.set_item(PARAM_NAMES[i], shaped)?;
    }
    Ok(d)
}
