//! The device runtime: `Context`, an open wgpu device on the adapter that `adapter.rs` chose
//! (with the limits it requires), error capture (validation errors and a lost device become
//! `Error::Gpu` on the next call, never a panic or a hang), the host-side counters, the
//! pipeline cache every pipeline is built with (`pipeline_cache.rs`, saved on drop), and the
//! buffer/submit/wait/read-back helpers every launcher shares.

use super::adapter::{
    choose, describe, enumerate, is_hardware, loop_iteration_cap, required_limits, summarize,
    DeviceRequest, Selection, ADAPTER_ENV,
};
use super::pipeline_cache::{self, DiskCache};
use crate::backend::DeviceCounters;
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wgpu::util::DeviceExt;

/// The outcome of `Context::auto`: a device, or the CPU backend and why.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once at start-up; boxing would only add noise
pub enum AutoChoice {
    Gpu(Context),
    Cpu { reason: String },
}

/// How long one wait for the GPU may take before it is reported as a hang. Generous, because a
/// software adapter on two cores evaluating a whole split is slow, but finite.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The first error the device reported, kept so that the next call fails with it.
type ErrorSlot = Arc<Mutex<Option<String>>>;

fn record(slot: &ErrorSlot, msg: String) {
    let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
    if s.is_none() {
        *s = Some(msg);
    }
}

/// An open device on the chosen adapter, with its queue and error capture.
pub struct Context {
    // Kept so the instance outlives the device on every backend.
    _instance: wgpu::Instance,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    errors: ErrorSlot,
    /// Whether the device was opened with TIMESTAMP_QUERY (requested whenever the adapter has
    /// it: the bench times kernels with it).
    timestamps: bool,
    /// wgpu's pipeline cache and its file (`pipeline_cache.rs`), where the adapter offers one
    /// (PIPELINE_CACHE, Vulkan) and a cache directory is set; every pipeline is built with it,
    /// and it is saved when the context is dropped (or by `save_pipeline_cache`).
    pipeline_cache: Option<DiskCache>,
    /// What the host has asked of this device so far (see `counters`).
    counts: Counts,
}

/// `DeviceCounters` as atomics: the helpers below count as they go, so no launcher can forget.
#[derive(Debug, Default)]
struct Counts {
    submissions: AtomicU64,
    blocking_waits: AtomicU64,
    dispatches: AtomicU64,
    copies: AtomicU64,
    creations: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.describe())
            .finish()
    }
}

impl Drop for Context {
    /// Saves the pipeline cache (built pipelines, the lazily built numerical ones included), so
    /// that the next run on this adapter starts faster; a failure is a warning, never an error.
    fn drop(&mut self) {
        if let Err(e) = self.save_pipeline_cache() {
            if let Some(path) = self.pipeline_cache_path() {
                eprintln!(
                    "warning: could not write the pipeline cache {}: {e}; the next run starts \
                     slower (make the directory writable, or set {}=off or to another directory)",
                    path.display(),
                    pipeline_cache::CACHE_DIR_ENV
                );
            }
        }
    }
}

impl Context {
    /// `--device auto`: the best hardware adapter, or the CPU backend with the reason.
    /// Errors only on a bad environment variable or an adapter that fails to open.
    pub fn auto() -> Result<AutoChoice> {
        Self::request(DeviceRequest::Auto)
    }

    /// `--device gpu`: any adapter, software ones included; an error listing what was found
    /// (or how to install one) when none can be used.
    pub fn gpu() -> Result<Context> {
        Self::gpu_with_cache(pipeline_cache::dir_from_env().as_deref())
    }

    /// `gpu` with the pipeline cache in `cache_dir` (None: no cache) rather than where the
    /// environment says (`GPU_TRAIN_CACHE_DIR`, see `pipeline_cache`).
    pub fn gpu_with_cache(cache_dir: Option<&Path>) -> Result<Context> {
        match Self::request_with_cache(DeviceRequest::Gpu, cache_dir)? {
            AutoChoice::Gpu(ctx) => Ok(ctx),
            AutoChoice::Cpu { reason } => Err(Error::Gpu(reason)),
        }
    }

    /// `--device auto`'s candidates: a device on every adapter that matches the environment's
    /// filter, can run the kernels and is hardware (any, with `allow_software`), best first; or
    /// why there is none (an NVIDIA GPU not exposed to Vulkan named with the fix).
    pub fn candidates(allow_software: bool) -> std::result::Result<Vec<Context>, String> {
        let sel = Selection::from_env().map_err(|e| e.to_string())?;
        let (instance, adapters) = enumerate(sel.backends);
        let request = if allow_software {
            DeviceRequest::Gpu
        } else {
            DeviceRequest::Auto
        };
        choose(&adapters, &sel, request)?;
        let wanted: Vec<usize> = adapters
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                let info = a.get_info();
                sel.matches(&info)
                    && (allow_software || is_hardware(&info))
                    && required_limits(a).is_ok()
            })
            .map(|(i, _)| i)
            .collect();
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let cache_dir = pipeline_cache::dir_from_env();
        for i in wanted {
            match Self::open(instance.clone(), &adapters[i], cache_dir.as_deref()) {
                Ok(ctx) => out.push(ctx),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if out.is_empty() {
            return Err(format!("no GPU could be opened: {}", problems.join("; ")));
        }
        Ok(out)
    }

    /// Either request; `Gpu` never answers `Cpu` (it fails instead).
    pub fn request(request: DeviceRequest) -> Result<AutoChoice> {
        Self::request_with_cache(request, pipeline_cache::dir_from_env().as_deref())
    }

    fn request_with_cache(request: DeviceRequest, cache_dir: Option<&Path>) -> Result<AutoChoice> {
        let sel = Selection::from_env()?;
        let (instance, adapters) = enumerate(sel.backends);
        let adapter = match choose(&adapters, &sel, request) {
            Ok(a) => a,
            Err(reason) if request == DeviceRequest::Auto => return Ok(AutoChoice::Cpu { reason }),
            Err(reason) => return Err(Error::Gpu(reason)),
        };
        Self::open(instance, adapter, cache_dir).map(AutoChoice::Gpu)
    }

    fn open(
        instance: wgpu::Instance,
        adapter: &wgpu::Adapter,
        cache_dir: Option<&Path>,
    ) -> Result<Context> {
        crate::wait::block(Self::open_async(instance, adapter, cache_dir))
    }

    /// A device on the browser's WebGPU adapter (`navigator.gpu`), without blocking: what the
    /// page opens. Natively this is `Context::gpu()`.
    pub async fn request_async() -> Result<Context> {
        #[cfg(target_arch = "wasm32")]
        {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = wgpu::Backends::BROWSER_WEBGPU;
            let instance = wgpu::Instance::new(desc);
            let options = wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            };
            let adapter = instance.request_adapter(&options).await.map_err(|e| {
                Error::Gpu(format!(
                    "this browser offers no WebGPU adapter ({e}); the page trains on the CPU instead"
                ))
            })?;
            Self::open_async(instance, &adapter, None).await
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Self::gpu()
        }
    }

    async fn open_async(
        instance: wgpu::Instance,
        adapter: &wgpu::Adapter,
        cache_dir: Option<&Path>,
    ) -> Result<Context> {
        let info = adapter.get_info();
        let describe = summarize(adapter).describe();
        let required_limits = required_limits(adapter)
            .map_err(|p| Error::Gpu(format!("{describe} cannot run the kernels: {p}")))?;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        // Asked for only where it will be used: a cache directory is set and wgpu has a cache
        // file name for this adapter (Vulkan).
        let pipeline_cache = cache_dir.is_some()
            && wgpu::util::pipeline_cache_key(&info).is_some()
            && adapter.features().contains(wgpu::Features::PIPELINE_CACHE);
        let mut required_features = wgpu::Features::empty();
        if timestamps {
            required_features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if pipeline_cache {
            required_features |= wgpu::Features::PIPELINE_CACHE;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("gpu-train"),
            required_features,
            required_limits,
            ..Default::default()
        };
        let (device, queue) = adapter.request_device(&desc).await.map_err(|e| {
            if cfg!(target_arch = "wasm32") {
                Error::Gpu(format!("could not open a device on the browser's WebGPU adapter: {e}"))
            } else {
                Error::Gpu(format!(
                    "could not open a device on {describe}: {e}; try another adapter ({ADAPTER_ENV}=...) or --device cpu"
                ))
            }
        })?;
        let errors: ErrorSlot = Arc::new(Mutex::new(None));
        let slot = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| record(&slot, e.to_string())));
        let slot = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            // Natively, dropping the device reports `Destroyed`: that is us shutting down, not a
            // failure. In a browser a page (or the browser) may destroy it under us.
            if cfg!(target_arch = "wasm32") {
                record(
                    &slot,
                    format!("the WebGPU device was lost ({reason:?}): {msg}; train on the CPU, or reload the page"),
                );
            } else if reason != wgpu::DeviceLostReason::Destroyed {
                record(
                    &slot,
                    format!("the device was lost ({reason:?}): {msg}; re-run, or use --device cpu"),
                );
            }
        });
        let limits = device.limits();
        let pipeline_cache = DiskCache::open(&device, &info, cache_dir);
        Ok(Context {
            _instance: instance,
            device,
            queue,
            info,
            limits,
            errors,
            timestamps,
            pipeline_cache,
            counts: Counts::default(),
        })
    }

    /// The pipeline cache every pipeline is built with, where there is one.
    pub fn pipeline_cache(&self) -> Option<&wgpu::PipelineCache> {
        self.pipeline_cache.as_ref().map(|c| &c.cache)
    }

    /// The pipeline cache's file, where there is a cache.
    pub fn pipeline_cache_path(&self) -> Option<&Path> {
        self.pipeline_cache.as_ref().map(|c| c.path())
    }

    /// Whether the device was given a cache file's data at start (an earlier run's pipelines).
    pub fn pipeline_cache_loaded(&self) -> bool {
        self.pipeline_cache.as_ref().is_some_and(|c| c.loaded())
    }

    /// Writes the pipeline cache to its file now, unless there is no cache, the file already
    /// holds this data, or the device reported an error (its state is not trusted); true when
    /// it wrote. Dropping the context does this too, with a warning instead of an error.
    pub fn save_pipeline_cache(&self) -> std::io::Result<bool> {
        match &self.pipeline_cache {
            Some(cache) if self.check("").is_ok() => cache.save(),
            _ => Ok(false),
        }
    }

    /// Submissions, blocking waits, dispatches, copies (queue writes included) and creations
    /// (buffers, bind groups, pipelines) made through this context since it was opened, by every
    /// backend on it.
    pub fn counters(&self) -> DeviceCounters {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeviceCounters {
            submissions: get(&c.submissions),
            blocking_waits: get(&c.blocking_waits),
            dispatches: get(&c.dispatches),
            copies: get(&c.copies),
            creations: get(&c.creations),
        }
    }

    pub(crate) fn count_dispatches(&self, n: u64) {
        bump(&self.counts.dispatches, n);
    }

    pub(crate) fn count_creations(&self, n: u64) {
        bump(&self.counts.creations, n);
    }

    /// Records a buffer-to-buffer copy of `bytes` bytes (counted).
    pub(crate) fn copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        src_at: u64,
        dst: &wgpu::Buffer,
        dst_at: u64,
        bytes: u64,
    ) {
        bump(&self.counts.copies, 1);
        encoder.copy_buffer_to_buffer(src, src_at, dst, dst_at, bytes);
    }

    /// Whether kernels can be timed with timestamp queries on this device.
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Maps `staging` (whose copies were part of a submission that has finished) and returns
    /// its first `len` elements, without submitting anything.
    pub(crate) fn read_finished<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        len: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        self.submit_and_read(self.encoder(what), staging, len, what)
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)" for the start-up line.
    pub fn describe(&self) -> String {
        let i = &self.info;
        describe(
            &i.name,
            &format!("{:?}", i.backend),
            &format!("{:?}", i.device_type),
            &i.driver,
        )
    }

    /// The most loop iterations one invocation may run, where the driver caps them: Mesa's
    /// llvmpipe (lavapipe) ends every loop of an invocation once their iterations reach 65,535
    /// in all (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS, one counter shared by every loop), with no
    /// error: the kernels would just compute less. Launchers check their counts against it.
    pub fn loop_iteration_cap(&self) -> Option<u64> {
        loop_iteration_cap(&self.info.name, &self.info.driver)
    }

    /// The device, for kernels built outside this module (they should report errors through
    /// `check` like the ones here).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's limits (what was requested, not everything the adapter could give).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The largest storage binding (and buffer) this device accepts, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Fails with the first error the device reported (validation, out of memory, device lost).
    /// Sticky: after one, the GPU state can't be trusted.
    pub fn check(&self, what: &str) -> Result<()> {
        let slot = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            None => Ok(()),
            Some(msg) => Err(Error::Gpu(format!(
                "{what}: {msg} (the GPU state can't be trusted after this; re-run with --device cpu, \
                 and report it if it repeats)"
            ))),
        }
    }

    /// A zero-filled f32/u32 storage buffer of `len` elements that kernels, copies and
    /// writes may use; fails if it is over the device's binding limit.
    pub fn storage(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = self.check_size(label, len)?;
        self.count_creations(1);
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: storage_usage(),
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data` (f32 or u32).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        self.check_size(label, data.len())?;
        if data.is_empty() {
            return self.storage(label, 0);
        }
        self.count_creations(1);
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: storage_usage(),
            }))
    }

    /// A storage buffer holding `bytes` as the shaders' u32 words: byte j in bits 8*(j % 4) of
    /// word j / 4, which is the buffer's own little-endian layout, so the bytes are written
    /// straight into the mapped buffer (no packed copy); only the last word's tail is zeroed.
    pub fn upload_bytes(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let size = self.check_size(label, bytes.len().div_ceil(4))?;
        self.count_creations(1);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: storage_usage(),
            mapped_at_creation: true,
        });
        {
            let mut view = buffer.slice(..).get_mapped_range_mut().map_err(|e| {
                Error::Gpu(format!(
                    "{label}: writing the new buffer failed: {e}; this is a driver problem, \
                     try --device cpu"
                ))
            })?;
            view.slice(..bytes.len()).copy_from_slice(bytes);
            let pad = [0u8; 4];
            view.slice(bytes.len()..)
                .copy_from_slice(&pad[..size as usize - bytes.len()]);
        }
        buffer.unmap();
        Ok(buffer)
    }

    /// Overwrites `buffer` from element `offset` on; takes effect before the next submission.
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, offset: usize, data: &[T]) {
        if !data.is_empty() {
            bump(&self.counts.copies, 1);
            let at = (offset * std::mem::size_of::<T>()) as u64;
            self.queue
                .write_buffer(buffer, at, bytemuck::cast_slice(data));
        }
    }

    /// Bytes of `len` 4-byte elements (at least 4: wgpu has no empty bindings), checked
    /// against the binding limit with a message that names it.
    fn check_size(&self, label: &str, len: usize) -> Result<u64> {
        let bytes = (len.max(1) * 4) as u64;
        let max = self.max_binding_bytes();
        if bytes > max {
            return Err(Error::Gpu(format!(
                "{label} needs {bytes} bytes, over this adapter's max_storage_buffer_binding_size \
                 ({max} bytes, {}); use a smaller --batch or model, or --device cpu",
                self.describe()
            )));
        }
        Ok(bytes)
    }

    /// A read-back buffer of `len` 4-byte elements.
    pub(crate) fn staging(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.staging_bytes(label, (len.max(1) * 4) as u64)
    }

    /// A read-back buffer of `bytes` bytes.
    pub(crate) fn staging_bytes(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.count_creations(1);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub(crate) fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Submits one command buffer and reports any error the recording or submission raised.
    pub(crate) fn submit(
        &self,
        encoder: wgpu::CommandEncoder,
        what: &str,
    ) -> Result<wgpu::SubmissionIndex> {
        bump(&self.counts.submissions, 1);
        let index = self.queue.submit([encoder.finish()]);
        self.check(what)?;
        Ok(index)
    }

    /// Blocks until submission `index` has finished (and its callbacks ran), or times out.
    pub(crate) fn wait(&self, index: wgpu::SubmissionIndex, what: &str) -> Result<()> {
        bump(&self.counts.blocking_waits, 1);
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(WAIT_TIMEOUT),
        });
        if let Err(e) = polled {
            // A device error (lost, destroyed, validation) says more than the wait's own.
            self.check(what)?;
            return Err(Error::Gpu(match e {
                wgpu::PollError::Timeout => format!(
                    "{what}: the GPU did not finish within {} s; the adapter may be hung or far \
                     too slow for this size; try a smaller --batch or --device cpu",
                    WAIT_TIMEOUT.as_secs()
                ),
                wgpu::PollError::WrongSubmissionIndex(..) => format!(
                    "{what}: the GPU refused the work ({e}); the device is probably lost (a driver \
                     reset or a removed GPU): re-run, or use --device cpu"
                ),
            }));
        }
        self.check(what)
    }

    /// Submits `encoder` (which must end with a copy of the wanted data into `staging`), waits,
    /// and returns the first `len` elements of `staging`.
    pub(crate) fn submit_and_read<T: bytemuck::Pod>(
        &self,
        encoder: wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        len: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        crate::wait::block(self.submit_and_read_async(encoder, staging, len, what))
    }

    /// `submit_and_read` as a future: the async core every read-back of the backend goes through.
    pub(crate) async fn submit_and_read_async<T: bytemuck::Pod>(
        &self,
        encoder: wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        len: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        let index = self.submit(encoder, what)?;
        self.read_submitted_async(index, staging, len, what).await
    }

    /// Waits for submission `index` (which copied the wanted data into `staging`) and returns
    /// the first `len` elements of `staging`. Natively one blocking wait inside (the future is
    /// resolved when first polled); in the browser the future resolves from the event loop.
    pub(crate) async fn read_submitted_async<T: bytemuck::Pod>(
        &self,
        index: wgpu::SubmissionIndex,
        staging: &wgpu::Buffer,
        len: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        let bytes = (len.max(1) * std::mem::size_of::<T>()) as u64;
        let slice = staging.slice(..bytes);
        let (sender, mapped) = super::mapping::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| sender.send(r));
        self.settle(index, &mapped, what)?;
        match mapped.await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                // A lost device fails the mapping; its own message says more.
                self.check(what)?;
                // In a browser the map can fail before the device's lost callback has run.
                let hint = if cfg!(target_arch = "wasm32") {
                    "; the WebGPU device is gone or broken: train on the CPU, or reload the page"
                } else {
                    ""
                };
                return Err(Error::Gpu(format!(
                    "{what}: mapping the read-back buffer failed: {e}{hint}"
                )));
            }
            None => {
                return Err(Error::Gpu(format!(
                    "{what}: the read-back buffer was never mapped although the GPU finished; \
                     this is a driver problem, try --device cpu"
                )))
            }
        }
        self.check(what)?;
        let out = {
            let view = slice.get_mapped_range().map_err(|e| {
                Error::Gpu(format!("{what}: reading the mapped buffer failed: {e}"))
            })?;
            bytemuck::cast_slice::<u8, T>(&view)[..len].to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Natively: waits for submission `index`, then until the mapping's callback has run. With
    /// several threads on one device, another thread's poll may be the one running it, and it
    /// can still be on its way when our wait returns: keep polling briefly.
    #[cfg(not(target_arch = "wasm32"))]
    fn settle(
        &self,
        index: wgpu::SubmissionIndex,
        mapped: &super::mapping::Mapped,
        what: &str,
    ) -> Result<()> {
        self.wait(index, what)?;
        let deadline = std::time::Instant::now() + WAIT_TIMEOUT;
        while !mapped.is_settled() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
        mapped.give_up_waiting();
        Ok(())
    }

    /// In the browser nothing waits here: the mapping resolves from the event loop.
    #[cfg(target_arch = "wasm32")]
    fn settle(
        &self,
        _index: wgpu::SubmissionIndex,
        _mapped: &super::mapping::Mapped,
        _what: &str,
    ) -> Result<()> {
        Ok(())
    }

    /// Reads `len` elements of `buffer` from element `offset` (a one-off staging buffer: for
    /// tests and tools; the backend reuses its own).
    pub fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<T>> {
        let size = (len * std::mem::size_of::<T>()) as u64;
        let staging = self.staging_bytes("read-back", size);
        let mut encoder = self.encoder("read-back");
        if size > 0 {
            self.copy(
                &mut encoder,
                buffer,
                (offset * std::mem::size_of::<T>()) as u64,
                &staging,
                0,
                size,
            );
        }
        self.submit_and_read(encoder, &staging, len, "reading a buffer back")
    }
}

fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}
