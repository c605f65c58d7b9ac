//! Where and when the bench ran: the command line, the date, the CPU, the load, the adapter.

use crate::gpu::Context;
use crate::time::UtcDateTime;
use std::path::Path;

pub(super) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown (no \"model name\" in /proc/cpuinfo)".into())
}

pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The command line as typed, quoted where a shell would need it.
pub(super) fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "gpu-train".into());
    std::iter::once(program)
        .chain(args)
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.,/=:+@%".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Now, as "2026-11-23T19:30:05Z".
pub(super) fn utc_now() -> String {
    UtcDateTime::now().format(':')
}

/// The adapter in words: "llvmpipe (LLVM 15.0.6, 256 bits); Vulkan; software, runs on the CPU;
/// driver llvmpipe".
pub(super) fn adapter(ctx: &Context) -> String {
    let info = ctx.adapter_info();
    let api = match info.backend {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "Direct3D 12",
        wgpu::Backend::Gl => "OpenGL",
        wgpu::Backend::BrowserWebGpu => "WebGPU",
        _ => "an unnamed graphics API",
    };
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software, runs on the CPU",
        wgpu::DeviceType::Other => "unknown kind",
    };
    let mut text = format!("{}; {api}; {kind}", info.name);
    if !info.driver.is_empty() {
        text.push_str(&format!("; driver {}", info.driver));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_command_lines() {
        let now = super::utc_now();
        assert!(now.ends_with('Z') && now.len() == 20, "{now}");
        assert!(!super::command_line().is_empty());
    }
}
