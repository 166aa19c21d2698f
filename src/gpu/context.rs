//! The GPU context: adapter selection, the device and its queue, the compiled kernels, and the
//! guards that turn every wgpu failure into an `Error` instead of a panic or a hang.
//!
//! One context per process (per value of `RUSTBP_GPU_ADAPTER`) is shared by all networks: creating a
//! device and compiling the kernels costs far more than a training step. Errors are captured with
//! error scopes around each operation, plus an uncaptured-error handler and a device-lost callback
//! (wgpu's defaults panic); every wait on the GPU has a timeout.

use super::kernels::Kernels;
use super::{AdapterSummary, ADAPTER_ENV, INSTALL_HINT};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long one wait on the GPU may take before it is reported as a failure. Submissions are sized
/// to take well under a second, so this only trips on a GPU that stopped answering.
const WAIT: Duration = Duration::from_secs(300);

pub(crate) struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub kernels: Kernels,
    /// Errors no scope caught, and the reason the device was lost, if it was.
    uncaptured: Arc<Mutex<Vec<String>>>,
    lost: Arc<AtomicBool>,
    /// The process that opened the device: a forked child cannot use it.
    pid: u32,
}

/// Why a forked process cannot use its parent's GPU.
fn forked() -> Error {
    Error::GpuUnavailable(
        "this process was forked from one that had opened the GPU, and a GPU device does not survive a fork; \
         start worker processes with the 'spawn' or 'forkserver' method (multiprocessing.get_context('spawn')), \
         or open the GPU only in the workers"
            .into(),
    )
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    // No validation layers: they are slow and, when installed, print rather than fail.
    desc.flags = wgpu::InstanceFlags::empty();
    wgpu::Instance::new(desc)
}

fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        is_software: info.device_type == wgpu::DeviceType::Cpu,
    }
}

/// Every adapter wgpu sees, best first.
pub fn devices() -> Result<Vec<AdapterSummary>> {
    Ok(adapters().iter().map(|a| summary(&a.get_info())).collect())
}

fn adapters() -> Vec<wgpu::Adapter> {
    let mut all = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::PRIMARY));
    // Hardware first, software last: a machine with both should train on its GPU.
    all.sort_by_key(|a| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    });
    all
}

fn pick_adapter(selector: Option<&str>) -> Result<wgpu::Adapter> {
    let all = adapters();
    if all.is_empty() {
        return Err(Error::GpuUnavailable(format!("no GPU adapter found: {INSTALL_HINT}")));
    }
    let Some(want) = selector else {
        return all.into_iter().next().ok_or_else(|| Error::GpuUnavailable(INSTALL_HINT.into()));
    };
    let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
    all.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want.to_lowercase())).ok_or_else(|| {
        Error::GpuUnavailable(format!("{ADAPTER_ENV}={want:?} matches none of the GPU adapters {names:?}"))
    })
}

static SHARED: Mutex<Option<(Option<String>, Arc<Context>)>> = Mutex::new(None);

impl Context {
    /// The shared context for the adapter `RUSTBP_GPU_ADAPTER` picks, created on first use and again
    /// after its device was lost.
    pub fn shared() -> Result<Arc<Context>> {
        let selector = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty());
        let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((sel, ctx)) = slot.as_ref() {
            if ctx.pid != crate::process::id() {
                return Err(forked());
            }
            if *sel == selector && !ctx.lost.load(Ordering::SeqCst) {
                return Ok(Arc::clone(ctx));
            }
        }
        let ctx = Arc::new(Self::new(selector.as_deref())?);
        *slot = Some((selector, Arc::clone(&ctx)));
        Ok(ctx)
    }

    pub(crate) fn new(selector: Option<&str>) -> Result<Self> {
        let adapter = pick_adapter(selector)?;
        let info = adapter.get_info();
        // The adapter's own limits, not WebGPU's defaults: wide layers need large storage bindings.
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("rustbp"),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            Error::GpuUnavailable(format!("the GPU adapter {:?} refused a device: {e}; {INSTALL_HINT}", info.name))
        })?;
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let lost = Arc::new(AtomicBool::new(false));
        {
            let sink = Arc::clone(&uncaptured);
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                sink.lock().unwrap_or_else(PoisonError::into_inner).push(e.to_string());
            }));
            let (sink, flag) = (Arc::clone(&uncaptured), Arc::clone(&lost));
            device.set_device_lost_callback(move |reason, message| {
                flag.store(true, Ordering::SeqCst);
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("device lost ({reason:?}): {message}"));
            });
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = Kernels::new(&device);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu { op: "kernel compilation", message: e.to_string() });
        }
        Ok(Self { device, queue, info, limits, kernels, uncaptured, lost, pid: crate::process::id() })
    }

    /// Fails in a process forked from the one that opened the device (checked before any use of it).
    pub fn check_process(&self) -> Result<()> {
        if self.pid == crate::process::id() {
            Ok(())
        } else {
            Err(forked())
        }
    }

    pub fn summary(&self) -> AdapterSummary {
        summary(&self.info)
    }

    /// Runs `f` (which records and submits GPU work) with every wgpu error captured and returned.
    pub fn guarded<R>(&self, op: &'static str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.check_process()?;
        if self.lost.load(Ordering::SeqCst) {
            return Err(self.failure(op, String::new()));
        }
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        match validation.or(oom).map(|e| e.to_string()).or_else(|| self.take_uncaptured()) {
            Some(message) => Err(self.failure(op, message)),
            None => result,
        }
    }

    /// The error for a failed `op`. On a lost device every call fails with validation errors about
    /// invalid buffers, so the loss, once wgpu reports it, is named as the cause instead.
    fn failure(&self, op: &'static str, message: String) -> Error {
        let _ = self.device.poll(wgpu::PollType::Poll); // runs a pending device-lost callback
        if !self.lost.load(Ordering::SeqCst) {
            return Error::Gpu { op, message };
        }
        let reason = self.take_uncaptured().unwrap_or(message);
        Error::Gpu {
            op,
            message: format!(
                "the GPU device was lost ({reason}); networks on it cannot be used again, create them anew"
            ),
        }
    }

    fn take_uncaptured(&self) -> Option<String> {
        let mut errors = self.uncaptured.lock().unwrap_or_else(PoisonError::into_inner);
        (!errors.is_empty()).then(|| std::mem::take(&mut *errors).join("; "))
    }

    /// Fails with `GpuLimit` when a storage buffer of `bytes` exceeds what the adapter allows.
    pub fn check_size(&self, what: &'static str, bytes: u64) -> Result<()> {
        let binding = self.limits.max_storage_buffer_binding_size;
        if bytes > binding {
            return Err(Error::GpuLimit {
                what,
                needed: bytes,
                limit: "max_storage_buffer_binding_size",
                max: binding,
            });
        }
        if bytes > self.limits.max_buffer_size {
            return Err(Error::GpuLimit {
                what,
                needed: bytes,
                limit: "max_buffer_size",
                max: self.limits.max_buffer_size,
            });
        }
        Ok(())
    }

    /// A storage buffer of `len` f32 values (at least one, since empty bindings are invalid).
    pub fn storage(&self, what: &'static str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = 4 * len.max(2) as u64;
        self.check_size(what, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// Waits for submission `index`, failing after `WAIT` instead of hanging.
    pub fn wait(&self, op: &'static str, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: Some(WAIT) })
            .map(|_| ())
            .map_err(|e| Error::Gpu { op, message: format!("{e} (waited {} s)", WAIT.as_secs()) })
    }

    /// Submits `encoder` after appending a copy of `len` f32 values of `src` from element `offset`,
    /// waits, and returns the copy.
    pub fn submit_and_read(
        &self,
        op: &'static str,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<f32>> {
        let bytes = 4 * len.max(1) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(src, 4 * offset as u64, &staging, 0, bytes);
        let index = self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            // The receiver waits below; if it is gone there is nobody left to tell.
            let _ = tx.send(r);
        });
        self.wait(op, index)?;
        match rx.recv_timeout(WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu { op, message: format!("reading results back: {e}") }),
            Err(_) => return Err(Error::Gpu { op, message: "reading results back: no answer from the GPU".into() }),
        }
        let data = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu { op, message: format!("reading results back: {e}") })?;
            bytemuck::cast_slice::<u8, f32>(&view)[..len].to_vec()
        };
        staging.unmap();
        Ok(data)
    }
}
