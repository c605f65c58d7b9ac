//! The adapter policy: which adapter to run on and what the project requires of it. The
//! environment's filter (`GPU_TRAIN_ADAPTER`, `GPU_TRAIN_BACKEND`), the ranking (`auto`: the best
//! hardware adapter, else the CPU backend, saying why; `gpu`: any adapter, software ones
//! included), the limits the kernels need, adapter descriptions, the hints for a missing driver
//! or an NVIDIA GPU Vulkan cannot see, and the `gpu-train devices` report. Opening a device on
//! the chosen adapter, and everything done with it, is the runtime in `context.rs`.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::fmt::Write as _;

/// Substring (case-insensitive) of the adapter name to use, e.g. `llvmpipe` or `nvidia`.
pub const ADAPTER_ENV: &str = "GPU_TRAIN_ADAPTER";
/// Graphics API to search: vulkan, metal, dx12 or gl (default: all that are compiled in).
pub const BACKEND_ENV: &str = "GPU_TRAIN_BACKEND";

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
/// See `Context::loop_iteration_cap` (gpu/context.rs).
pub fn loop_iteration_cap(name: &str, driver: &str) -> Option<u64> {
    let llvmpipe = |s: &str| s.to_ascii_lowercase().contains("llvmpipe");
    (llvmpipe(name) || llvmpipe(driver)).then_some(65_535)
}

/// The longest adapter description (start-up line, `Backend::name`): long enough for every
/// real adapter name, short enough for one line.
pub const MAX_DESCRIPTION: usize = 96;

pub(crate) fn describe(name: &str, backend: &str, device_type: &str, driver: &str) -> String {
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
pub(crate) struct Selection {
    pub(crate) backends: wgpu::Backends,
    /// The backend variable as given, for messages.
    backend: Option<String>,
    name: Option<String>,
}

impl Selection {
    pub(crate) fn from_env() -> Result<Self> {
        Self::from_vars(std::env::var_os(BACKEND_ENV), std::env::var_os(ADAPTER_ENV))
    }

    /// `from_env` given GPU_TRAIN_BACKEND and GPU_TRAIN_ADAPTER.
    pub(crate) fn from_vars(backend: Option<OsString>, adapter: Option<OsString>) -> Result<Self> {
        // A value that is not UTF-8 is an error, not "unset": the user asked for a filter.
        let text =
            |name: &str, value: Option<OsString>, accepted: &str| -> Result<Option<String>> {
                match value.map(OsString::into_string) {
                    None => Ok(None),
                    Some(Ok(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
                    Some(Err(raw)) => Err(Error::config(
                        name,
                        format!("{raw:?} is not valid UTF-8; {accepted}, or unset it",),
                    )),
                }
            };
        let backend = text(BACKEND_ENV, backend, "use vulkan, metal, dx12 or gl")?;
        let name = text(
            ADAPTER_ENV,
            adapter,
            "use part of an adapter's name (`gpu-train devices` lists them)",
        )?;
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
            name: name.map(|n| n.to_lowercase()),
        })
    }

    pub(crate) fn matches(&self, info: &wgpu::AdapterInfo) -> bool {
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

pub(crate) fn is_hardware(info: &wgpu::AdapterInfo) -> bool {
    rank(info).0 <= 2
}

/// The limits to request, or which one the adapter cannot give (named, with need and offer).
pub(crate) fn required_limits(
    adapter: &wgpu::Adapter,
) -> std::result::Result<wgpu::Limits, String> {
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

pub(crate) fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
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
pub(crate) fn enumerate(backends: wgpu::Backends) -> (wgpu::Instance, Vec<wgpu::Adapter>) {
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
pub(crate) fn choose<'a>(
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

    /// A variable that is not UTF-8 is an error naming it and what it takes, never "unset".
    #[cfg(unix)]
    #[test]
    fn a_filter_that_is_not_utf8_is_an_error() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || Some(OsString::from_vec(vec![b'v', 0xff]));
        let e = Selection::from_vars(bad(), None).unwrap_err().to_string();
        assert!(
            e.contains(BACKEND_ENV)
                && e.contains("UTF-8")
                && e.contains("vulkan, metal, dx12 or gl"),
            "{e}"
        );
        let e = Selection::from_vars(None, bad()).unwrap_err().to_string();
        assert!(
            e.contains(ADAPTER_ENV) && e.contains("gpu-train devices"),
            "{e}"
        );
        let s = Selection::from_vars(Some(" Vulkan ".into()), Some("LLVM".into())).unwrap();
        assert_eq!(
            s.describe(),
            "GPU_TRAIN_BACKEND=Vulkan, GPU_TRAIN_ADAPTER=llvm"
        );
        let s = Selection::from_vars(Some("".into()), None).unwrap();
        assert_eq!(s.describe(), "");
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
