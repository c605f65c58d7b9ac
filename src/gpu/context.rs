//! The wgpu device: which adapter to use (`auto`: the best hardware adapter, else the CPU
//! backend, saying why; `gpu`: any adapter, software ones included), the limits a run needs,
//! error capture (validation errors and a lost device become `Error::Gpu` on the next call,
//! never a panic or a hang), and the buffer/submit/read-back helpers every launcher shares.

use crate::backend::DeviceCounters;
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wgpu::util::DeviceExt;

/// Substring (case-insensitive) of the adapter name to use, e.g. `llvmpipe` or `nvidia`.
pub const ADAPTER_ENV: &str = "GPU_TRAIN_ADAPTER";
/// Graphics API to search: vulkan, metal, dx12 or gl (default: all that are compiled in).
pub const BACKEND_ENV: &str = "GPU_TRAIN_BACKEND";

/// How long one wait for the GPU may take before it is reported as a hang. Generous, because a
/// software adapter on two cores evaluating a whole split is slow, but finite.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the kernels need of a device. Everything else is requested at the adapter's own value
/// (binding and buffer sizes) or left at wgpu's downlevel minimum.
mod needs {
    /// 256-wide 1-D kernels and 8 x 8 matmul workgroups.
    pub const INVOCATIONS_PER_WORKGROUP: u32 = 256;
    pub const WORKGROUP_SIZE_X: u32 = 256;
    pub const WORKGROUP_SIZE_Y: u32 = 8;
    /// The matmul's two 32 x 32 f32 slices (8 KiB); the mean's reduction needs 1 KiB.
    pub const WORKGROUP_STORAGE_BYTES: u32 = 2 * 32 * 32 * 4;
    /// The widest kernel (gather, matmul) binds five storage buffers.
    pub const STORAGE_BUFFERS_PER_STAGE: u32 = 5;
    /// gather binds its parameters and the pixel table as two uniforms.
    pub const UNIFORM_BUFFERS_PER_STAGE: u32 = 2;
    /// Below this a storage binding could not even hold one layer of a small net.
    pub const MIN_STORAGE_BINDING_BYTES: u64 = 1 << 20;
}

/// `--device auto` or `--device gpu` (the CPU choice never reaches this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The best hardware adapter (discrete > integrated > virtual); with only a software adapter
    /// or none, the CPU backend.
    Auto,
    /// Any adapter, software ones included (how CI runs the GPU path on lavapipe).
    Gpu,
}

/// The outcome of `Context::auto`: a device, or the CPU backend and why.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once at start-up; boxing would only add noise
pub enum AutoChoice {
    Gpu(Context),
    Cpu { reason: String },
}

/// One adapter as `gpu-train devices` shows it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// A physical GPU (discrete, integrated or virtual), not a software rasteriser.
    pub hardware: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    /// Why this adapter cannot run the kernels (no compute shaders, a limit too low); None if it can.
    pub problem: Option<String>,
}

impl AdapterSummary {
    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)"
    pub fn describe(&self) -> String {
        describe(&self.name, &self.backend, &self.device_type, &self.driver)
    }
}

/// "name (backend, type, driver)", the driver left out when the adapter reports none.
/// See `Context::loop_iteration_cap`.
pub fn loop_iteration_cap(name: &str, driver: &str) -> Option<u64> {
    let llvmpipe = |s: &str| s.to_ascii_lowercase().contains("llvmpipe");
    (llvmpipe(name) || llvmpipe(driver)).then_some(65_535)
}

/// The longest adapter description (start-up line, `Backend::name`): long enough for every
/// real adapter name, short enough for one line.
pub const MAX_DESCRIPTION: usize = 96;

fn describe(name: &str, backend: &str, device_type: &str, driver: &str) -> String {
    // A driver that repeats the name (llvmpipe) or is long adds nothing to the line.
    let driver = if driver.is_empty() || name.contains(driver) || driver.len() > 24 {
        String::new()
    } else {
        format!(", {driver}")
    };
    let tail = format!(" ({backend}, {device_type}{driver})");
    let room = MAX_DESCRIPTION.saturating_sub(tail.chars().count()).max(8);
    let name = if name.chars().count() > room {
        let cut: String = name.chars().take(room - 3).collect();
        format!("{}...", cut.trim_end())
    } else {
        name.to_string()
    };
    format!("{name}{tail}")
}

/// The adapter filter from the environment.
#[derive(Debug, Clone)]
struct Selection {
    backends: wgpu::Backends,
    /// The backend variable as given, for messages.
    backend: Option<String>,
    name: Option<String>,
}

impl Selection {
    fn from_env() -> Result<Self> {
        let var = |name| {
            std::env::var(name)
                .ok()
                .map(|s: String| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let backend = var(BACKEND_ENV);
        let backends = match &backend {
            Some(b) => {
                let wanted = parse_backend(b)?;
                check_available(b, wanted, wgpu::Instance::enabled_backend_features())?;
                wanted
            }
            None => wgpu::Backends::all(),
        };
        Ok(Selection {
            backends,
            backend,
            name: var(ADAPTER_ENV).map(|n| n.to_lowercase()),
        })
    }

    fn matches(&self, info: &wgpu::AdapterInfo) -> bool {
        self.backends.contains(wgpu::Backends::from(info.backend))
            && self
                .name
                .as_ref()
                .is_none_or(|n| info.name.to_lowercase().contains(n))
    }

    /// "GPU_TRAIN_BACKEND=vulkan, GPU_TRAIN_ADAPTER=nvidia", or "" without a filter.
    fn describe(&self) -> String {
        let parts: Vec<String> = [(BACKEND_ENV, &self.backend), (ADAPTER_ENV, &self.name)]
            .iter()
            .filter_map(|(var, v)| v.as_ref().map(|v| format!("{var}={v}")))
            .collect();
        parts.join(", ")
    }
}

fn parse_backend(s: &str) -> Result<wgpu::Backends> {
    match s.to_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::config(
            BACKEND_ENV,
            format!("unknown backend {other:?}; use vulkan, metal, dx12 or gl"),
        )),
    }
}

/// A backend this build cannot use on this platform (Metal off Apple, DX12 off Windows) is
/// named as such, rather than reported later as "no adapter found" with a driver to install.
fn check_available(name: &str, wanted: wgpu::Backends, built: wgpu::Backends) -> Result<()> {
    if built.contains(wanted) {
        return Ok(());
    }
    let have: Vec<&str> = [
        (wgpu::Backends::VULKAN, "vulkan"),
        (wgpu::Backends::METAL, "metal"),
        (wgpu::Backends::DX12, "dx12"),
        (wgpu::Backends::GL, "gl"),
    ]
    .iter()
    .filter(|(b, _)| built.contains(*b))
    .map(|(_, n)| *n)
    .collect();
    Err(Error::config(
        BACKEND_ENV,
        format!(
            "the {} backend is not available on this platform ({}); this build has {}, or unset the variable",
            name.to_lowercase(),
            std::env::consts::OS,
            if have.is_empty() { "none".to_string() } else { have.join(", ") }
        ),
    ))
}

/// Discrete > integrated > virtual > software > unknown; then the native APIs before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    (ty, u8::from(info.backend == wgpu::Backend::Gl))
}

fn is_hardware(info: &wgpu::AdapterInfo) -> bool {
    rank(info).0 <= 2
}

/// The limits to request, or which one the adapter cannot give (named, with need and offer).
fn required_limits(adapter: &wgpu::Adapter) -> std::result::Result<wgpu::Limits, String> {
    let compute = adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
    limits_for(&adapter.limits(), compute)
}

/// `required_limits` of an adapter offering `offered` (with compute shaders or not).
fn limits_for(offered: &wgpu::Limits, compute: bool) -> std::result::Result<wgpu::Limits, String> {
    let offered = offered.clone();
    if !compute {
        return Err(
            "no compute shaders (a GL ES 3.0-level driver); use its Vulkan/Metal/DX12 driver"
                .into(),
        );
    }
    let checks: [(&str, u64, u64); 7] = [
        (
            "max_compute_invocations_per_workgroup",
            needs::INVOCATIONS_PER_WORKGROUP.into(),
            offered.max_compute_invocations_per_workgroup.into(),
        ),
        (
            "max_compute_workgroup_size_x",
            needs::WORKGROUP_SIZE_X.into(),
            offered.max_compute_workgroup_size_x.into(),
        ),
        (
            "max_compute_workgroup_size_y",
            needs::WORKGROUP_SIZE_Y.into(),
            offered.max_compute_workgroup_size_y.into(),
        ),
        (
            "max_compute_workgroup_storage_size",
            needs::WORKGROUP_STORAGE_BYTES.into(),
            offered.max_compute_workgroup_storage_size.into(),
        ),
        (
            "max_storage_buffers_per_shader_stage",
            needs::STORAGE_BUFFERS_PER_STAGE.into(),
            offered.max_storage_buffers_per_shader_stage.into(),
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            needs::UNIFORM_BUFFERS_PER_STAGE.into(),
            offered.max_uniform_buffers_per_shader_stage.into(),
        ),
        (
            "max_storage_buffer_binding_size",
            needs::MIN_STORAGE_BINDING_BYTES,
            offered
                .max_storage_buffer_binding_size
                .min(offered.max_buffer_size),
        ),
    ];
    if let Some((name, need, offer)) = checks.iter().find(|(_, need, offer)| need > offer) {
        return Err(format!(
            "{name}: the kernels need {need}, the adapter offers {offer}"
        ));
    }
    let mut req = wgpu::Limits::downlevel_defaults();
    req.max_compute_invocations_per_workgroup = needs::INVOCATIONS_PER_WORKGROUP;
    req.max_compute_workgroup_size_x = needs::WORKGROUP_SIZE_X;
    req.max_compute_workgroup_size_y =
        needs::WORKGROUP_SIZE_Y.max(req.max_compute_workgroup_size_y);
    req.max_compute_workgroup_storage_size =
        needs::WORKGROUP_STORAGE_BYTES.max(req.max_compute_workgroup_storage_size);
    req.max_storage_buffers_per_shader_stage = needs::STORAGE_BUFFERS_PER_STAGE;
    req.max_uniform_buffers_per_shader_stage =
        needs::UNIFORM_BUFFERS_PER_STAGE.max(req.max_uniform_buffers_per_shader_stage);
    // Sizes: as large as the adapter allows, since data and evaluation are split by them.
    req.max_storage_buffer_binding_size = offered.max_storage_buffer_binding_size;
    req.max_buffer_size = offered.max_buffer_size;
    req.max_compute_workgroups_per_dimension = offered.max_compute_workgroups_per_dimension;
    // Never ask for more than is offered (downlevel minima above what a small adapter offers).
    Ok(req.or_worse_values_from(&offered))
}

fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let l = adapter.limits();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        hardware: is_hardware(&info),
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
        problem: required_limits(adapter).err(),
    }
}

/// Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment." while wgpu lists adapters on a machine without a session (a server, a
/// container, CI): they look for a display, which compute never uses. Where the variable is
/// unset or names no directory, the process gets a private one (0700, in the temporary
/// directory, reused by later runs of the same user) before the first instance is made.
fn ensure_runtime_dir() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let valid =
            std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
        if !valid {
            if let Some(dir) = private_runtime_dir() {
                // Before any instance exists, so no driver thread reads the environment yet.
                std::env::set_var("XDG_RUNTIME_DIR", dir);
            }
        }
    });
}

#[cfg(unix)]
fn private_runtime_dir() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
    let name = match uid {
        Some(uid) => format!("gpu-train-runtime-{uid}"),
        None => format!("gpu-train-runtime-pid{}", std::process::id()),
    };
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // Only a directory of ours that nobody else can read (one made by another user is skipped).
    let m = std::fs::symlink_metadata(&dir).ok()?;
    let ours = uid.is_none_or(|u| m.uid() == u);
    (m.is_dir() && ours && m.mode() & 0o777 == 0o700).then_some(dir)
}

#[cfg(not(unix))]
fn private_runtime_dir() -> Option<std::path::PathBuf> {
    None
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    ensure_runtime_dir();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu finds, best first (as `Gpu` would rank them), with what it can't do.
fn enumerate(backends: wgpu::Backends) -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    let instance = new_instance(backends);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| rank(&a.get_info()));
    (instance, adapters)
}

/// Every adapter this build can see (all backends, ignoring the environment's filter), best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    enumerate(wgpu::Backends::all())
        .1
        .iter()
        .map(summarize)
        .collect()
}

/// Where `/dev/nvidia*` exists (an NVIDIA GPU is there) but Vulkan lists no NVIDIA adapter,
/// typically a container started without the graphics capability: how to expose it.
pub fn nvidia_hint() -> Option<String> {
    let dev = std::fs::read_dir("/dev").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("nvidia").then_some(name)
    })?;
    let (_i, adapters) = enumerate(wgpu::Backends::all());
    if adapters
        .iter()
        .any(|a| a.get_info().name.to_lowercase().contains("nvidia"))
    {
        return None;
    }
    Some(nvidia_hint_text(&dev))
}

fn nvidia_hint_text(dev: &str) -> String {
    format!(
        "/dev/{dev} exists but no Vulkan driver lists an NVIDIA GPU: in a container, start it with \
         NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics (the graphics capability brings the \
         Vulkan driver), or provide the NVIDIA Vulkan ICD (nvidia_icd.json in /usr/share/vulkan/icd.d \
         or VK_ICD_FILENAMES)"
    )
}

const INSTALL_HINT: &str =
    "install a Vulkan driver (on Debian/Ubuntu `apt-get install mesa-vulkan-drivers \
    libvulkan1` gives the software adapter lavapipe), or use --device cpu";

/// The printable report of `gpu-train devices`: every adapter, its limits, and what `auto`
/// and `gpu` would pick under the current environment.
pub fn devices_report() -> String {
    // One enumeration serves the list and both choices (`choose` applies the filter).
    let (_instance, adapters) = enumerate(wgpu::Backends::all());
    let all: Vec<AdapterSummary> = adapters.iter().map(summarize).collect();
    let mut out = String::new();
    if all.is_empty() {
        let _ = writeln!(out, "No GPU adapter found; {INSTALL_HINT}.");
    }
    for (i, a) in all.iter().enumerate() {
        let _ = writeln!(out, "[{i}] {}", a.describe());
        let _ = writeln!(
            out,
            "    driver info: {}",
            if a.driver_info.is_empty() {
                "-"
            } else {
                &a.driver_info
            }
        );
        let _ = writeln!(
            out,
            "    {}; max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, \
             {} invocations/workgroup, {} storage buffers/stage",
            if a.hardware { "hardware" } else { "software" },
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup,
            a.max_storage_buffers_per_shader_stage
        );
        if let Some(p) = &a.problem {
            let _ = writeln!(out, "    unusable: {p}");
        }
    }
    match Selection::from_env() {
        Err(e) => {
            let _ = writeln!(out, "Environment: {e}");
        }
        Ok(sel) => {
            if !sel.describe().is_empty() {
                let _ = writeln!(out, "Filter from the environment: {}", sel.describe());
            }
            let _ = match choose(&adapters, &sel, DeviceRequest::Auto) {
                Ok(a) => writeln!(out, "--device auto picks: {}", summarize(a).describe()),
                Err(reason) => writeln!(out, "--device auto picks: the CPU backend ({reason})"),
            };
            let _ = match choose(&adapters, &sel, DeviceRequest::Gpu) {
                Ok(a) => writeln!(out, "--device gpu picks:  {}", summarize(a).describe()),
                Err(reason) => writeln!(out, "--device gpu: {reason}"),
            };
        }
    }
    out
}

/// The adapter a request picks from `adapters` (sorted best first), or why there is none.
fn choose<'a>(
    adapters: &'a [wgpu::Adapter],
    sel: &Selection,
    request: DeviceRequest,
) -> std::result::Result<&'a wgpu::Adapter, String> {
    if adapters.is_empty() {
        let searched = match sel.backend {
            Some(_) => format!(" ({})", sel.describe()),
            None => String::new(),
        };
        if let Some(hint) = nvidia_hint() {
            return Err(format!("no GPU adapter found{searched}; {hint}"));
        }
        return Err(format!("no GPU adapter found{searched}; {INSTALL_HINT}"));
    }
    let found: Vec<String> = adapters.iter().map(|a| summarize(a).describe()).collect();
    let found = found.join("; ");
    let matching: Vec<&wgpu::Adapter> = adapters
        .iter()
        .filter(|a| sel.matches(&a.get_info()))
        .collect();
    if matching.is_empty() {
        return Err(format!(
            "no adapter matches {} (found: {found}); change or unset the variable",
            sel.describe()
        ));
    }
    let wanted: Vec<&wgpu::Adapter> = match request {
        DeviceRequest::Gpu => matching,
        DeviceRequest::Auto => {
            let hw: Vec<&wgpu::Adapter> = matching
                .into_iter()
                .filter(|a| is_hardware(&a.get_info()))
                .collect();
            if hw.is_empty() {
                let hint = nvidia_hint().map(|h| format!("; {h}")).unwrap_or_default();
                let mut names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                names.dedup();
                return Err(format!(
                    "no hardware GPU, only software ({}; --device gpu uses it){hint}",
                    names.join(", ")
                ));
            }
            hw
        }
    };
    let mut problems = Vec::new();
    for a in &wanted {
        match required_limits(a) {
            Ok(_) => return Ok(a),
            Err(p) => problems.push(format!("{}: {p}", summarize(a).describe())),
        }
    }
    Err(format!(
        "no adapter can run the kernels: {}",
        problems.join("; ")
    ))
}

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

impl Context {
    /// `--device auto`: the best hardware adapter, or the CPU backend with the reason.
    /// Errors only on a bad environment variable or an adapter that fails to open.
    pub fn auto() -> Result<AutoChoice> {
        Self::request(DeviceRequest::Auto)
    }

    /// `--device gpu`: any adapter, software ones included; an error listing what was found
    /// (or how to install one) when none can be used.
    pub fn gpu() -> Result<Context> {
        match Self::request(DeviceRequest::Gpu)? {
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
        for i in wanted {
            match Self::open(instance.clone(), &adapters[i]) {
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
        let sel = Selection::from_env()?;
        let (instance, adapters) = enumerate(sel.backends);
        let adapter = match choose(&adapters, &sel, request) {
            Ok(a) => a,
            Err(reason) if request == DeviceRequest::Auto => return Ok(AutoChoice::Cpu { reason }),
            Err(reason) => return Err(Error::Gpu(reason)),
        };
        Self::open(instance, adapter).map(AutoChoice::Gpu)
    }

    fn open(instance: wgpu::Instance, adapter: &wgpu::Adapter) -> Result<Context> {
        let info = adapter.get_info();
        let describe = summarize(adapter).describe();
        let required_limits = required_limits(adapter)
            .map_err(|p| Error::Gpu(format!("{describe} cannot run the kernels: {p}")))?;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let desc = wgpu::DeviceDescriptor {
            label: Some("gpu-train"),
            required_features: if timestamps {
                wgpu::Features::TIMESTAMP_QUERY
            } else {
                wgpu::Features::empty()
            },
            required_limits,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            Error::Gpu(format!(
                "could not open a device on {describe}: {e}; try another adapter ({ADAPTER_ENV}=...) or --device cpu"
            ))
        })?;
        let errors: ErrorSlot = Arc::new(Mutex::new(None));
        let slot = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| record(&slot, e.to_string())));
        let slot = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            // Dropping the device reports `Destroyed`: that is us shutting down, not a failure.
            if reason != wgpu::DeviceLostReason::Destroyed {
                record(
                    &slot,
                    format!("the device was lost ({reason:?}): {msg}; re-run, or use --device cpu"),
                );
            }
        });
        let limits = device.limits();
        Ok(Context {
            _instance: instance,
            device,
            queue,
            info,
            limits,
            errors,
            timestamps,
            counts: Counts::default(),
        })
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

    /// Whether the adapter is a CPU (lavapipe, WARP, SwiftShader): launchers size grids for it.
    pub fn is_cpu_adapter(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
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
        let index = self.submit(encoder, what)?;
        self.read_submitted(index, staging, len, what)
    }

    /// Waits for submission `index` (which copied the wanted data into `staging`) and returns
    /// the first `len` elements of `staging`: one blocking wait.
    pub(crate) fn read_submitted<T: bytemuck::Pod>(
        &self,
        index: wgpu::SubmissionIndex,
        staging: &wgpu::Buffer,
        len: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        let bytes = (len.max(1) * std::mem::size_of::<T>()) as u64;
        let slice = staging.slice(..bytes);
        let (tx, rx) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            // The receiver is alive until after the wait below; a failed send is harmless.
            let _ = tx.send(r);
        });
        self.wait(index, what)?;
        // With several threads on one device, another thread's poll may be the one running this
        // callback, and it can still be on its way when our wait returns: keep polling briefly.
        let deadline = std::time::Instant::now() + WAIT_TIMEOUT;
        let mapped = loop {
            match rx.recv_timeout(std::time::Duration::from_millis(2)) {
                Ok(r) => break Some(r),
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                Err(mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() > deadline => {
                    break None
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.device.poll(wgpu::PollType::Poll);
                }
            }
        };
        match mapped {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(Error::Gpu(format!(
                    "{what}: mapping the read-back buffer failed: {e}"
                )))
            }
            None => {
                return Err(Error::Gpu(format!(
                    "{what}: the read-back buffer was never mapped although the GPU finished; \
                     this is a driver problem, try --device cpu"
                )))
            }
        }
        let out = {
            let view = slice.get_mapped_range().map_err(|e| {
                Error::Gpu(format!("{what}: reading the mapped buffer failed: {e}"))
            })?;
            bytemuck::cast_slice::<u8, T>(&view)[..len].to_vec()
        };
        staging.unmap();
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        assert_eq!(parse_backend("Vulkan").ok(), Some(wgpu::Backends::VULKAN));
        assert_eq!(parse_backend("gl").ok(), Some(wgpu::Backends::GL));
        let e = parse_backend("cuda").unwrap_err().to_string();
        assert!(e.contains("vulkan, metal, dx12 or gl"), "{e}");
    }

    #[test]
    fn no_adapter_says_how_to_get_one() {
        let sel = Selection {
            backends: wgpu::Backends::METAL,
            backend: Some("metal".into()),
            name: None,
        };
        let e = choose(&[], &sel, DeviceRequest::Gpu).unwrap_err();
        assert!(
            e.contains("no GPU adapter found (GPU_TRAIN_BACKEND=metal)"),
            "{e}"
        );
        assert!(
            e.contains("apt-get install mesa-vulkan-drivers libvulkan1")
                && e.contains("--device cpu"),
            "{e}"
        );
    }

    /// An adapter that cannot give a limit the kernels need is refused, naming the limit, what
    /// the kernels need and what it offers; one without compute shaders likewise.
    #[test]
    fn a_limit_the_adapter_cannot_give_is_named() {
        let good = wgpu::Limits::default();
        assert!(limits_for(&good, true).is_ok());
        let small = wgpu::Limits {
            max_storage_buffer_binding_size: 64 << 10,
            ..good.clone()
        };
        let e = limits_for(&small, true).unwrap_err();
        assert!(
            e.contains("max_storage_buffer_binding_size")
                && e.contains("1048576")
                && e.contains("65536"),
            "{e}"
        );
        let narrow = wgpu::Limits {
            max_compute_invocations_per_workgroup: 128,
            ..good.clone()
        };
        let e = limits_for(&narrow, true).unwrap_err();
        assert!(
            e.contains("max_compute_invocations_per_workgroup") && e.contains("need 256"),
            "{e}"
        );
        let e = limits_for(&good, false).unwrap_err();
        assert!(e.contains("no compute shaders"), "{e}");
        // What is asked for never exceeds what is offered.
        let asked = limits_for(&good, true).unwrap();
        assert!(asked.max_storage_buffer_binding_size <= good.max_storage_buffer_binding_size);
    }

    #[test]
    fn a_backend_this_platform_lacks_is_named_not_blamed_on_a_driver() {
        let e = check_available(
            "metal",
            wgpu::Backends::METAL,
            wgpu::Backends::VULKAN | wgpu::Backends::GL,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("the metal backend is not available on this platform")
                && e.contains("vulkan, gl")
                && !e.contains("install"),
            "{e}"
        );
        assert!(check_available("vulkan", wgpu::Backends::VULKAN, wgpu::Backends::VULKAN).is_ok());
    }

    #[test]
    fn adapter_descriptions_fit_one_line() {
        let long = "An Adapter Whose Vendor Put The Marketing Name, The Board, The Memory Size And The Firmware In Its Name";
        let d = describe(
            long,
            "Vulkan",
            "DiscreteGpu",
            "a driver with a very long description",
        );
        assert!(
            d.chars().count() <= MAX_DESCRIPTION,
            "{} chars: {d}",
            d.chars().count()
        );
        assert!(
            d.starts_with("An Adapter Whose") && d.ends_with("(Vulkan, DiscreteGpu)"),
            "{d}"
        );
        assert_eq!(
            describe(
                "llvmpipe (LLVM 15.0.6, 256 bits)",
                "Vulkan",
                "Cpu",
                "llvmpipe"
            ),
            "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)"
        );
        assert_eq!(
            describe("AMD Radeon 780M", "Vulkan", "IntegratedGpu", "radv"),
            "AMD Radeon 780M (Vulkan, IntegratedGpu, radv)"
        );
        assert_eq!(
            describe("NVIDIA H100", "Vulkan", "DiscreteGpu", "NVIDIA"),
            "NVIDIA H100 (Vulkan, DiscreteGpu)"
        );
    }

    #[test]
    fn the_nvidia_hint_says_how_to_expose_the_gpu() {
        let h = nvidia_hint_text("nvidia0");
        assert!(
            h.contains("/dev/nvidia0")
                && h.contains("NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics")
                && h.contains("nvidia_icd.json"),
            "{h}"
        );
    }

    #[test]
    fn hardware_ranks_before_software() {
        let mut a = wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan);
        let b = wgpu::AdapterInfo::new(wgpu::DeviceType::IntegratedGpu, wgpu::Backend::Gl);
        assert!(rank(&b) < rank(&a));
        assert!(!is_hardware(&a) && is_hardware(&b));
        a.device_type = wgpu::DeviceType::DiscreteGpu;
        assert!(rank(&a) < rank(&b));
    }
}
