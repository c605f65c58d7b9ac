//! What every kernel family's launcher uses, and nothing that knows the families (so `kernels`,
//! the registry of all pipelines, depends on the families and they only on this): `Kernel` (one
//! pipeline and its bind group layout), `Dispatch` (one launch with its bind group and
//! parameters, created once per batch size and recorded into as many command buffers as
//! needed), `KernelParams` (each kernel's `#[repr(C)]` parameter struct, checked against the
//! WGSL struct of the same name), `build`, grid helpers and `Operand`.
//!
//! Conventions every shader follows: group 0, binding 0 is the kernel's parameter uniform (its
//! `KernelParams` struct: sizes, offsets, h, lr as 4-byte fields, a multiple of 16 bytes); the
//! other bindings follow in the order given to `Kernel::dispatch`. Offsets into buffers travel in the uniform, not as binding
//! offsets, because parameter slices of the flat vector are not 256-byte aligned.

use super::context::Context;
use crate::error::{Error, Result};
use crate::model::Activation;

/// Threads per workgroup of every 1-D kernel (elementwise, per row, per column).
pub const WORKGROUP_1D: u32 = 256;

/// How a binding is used by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Uniform,
    Read,
    ReadWrite,
}

/// One compute pipeline and the layout of its bind group.
#[derive(Debug)]
pub struct Kernel {
    name: String,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    slots: Vec<Slot>,
}

impl Kernel {
    /// Builds entry point `entry` of `module`; `slots` are the bindings after the parameter
    /// uniform; `constants` specialise `override` declarations (transposes, activation).
    pub(crate) fn new(
        ctx: &Context,
        module: &wgpu::ShaderModule,
        name: &str,
        entry: &str,
        slots: &[Slot],
        constants: &[(&str, f64)],
    ) -> Kernel {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = std::iter::once(Slot::Uniform)
            .chain(slots.iter().copied())
            .enumerate()
            .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match slot {
                        Slot::Uniform => wgpu::BufferBindingType::Uniform,
                        Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Slot::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let device = &ctx.device;
        ctx.count_creations(1);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: ctx.pipeline_cache(),
        });
        Kernel {
            name: name.to_string(),
            pipeline,
            layout,
            slots: slots.to_vec(),
        }
    }

    /// One launch: a fresh parameter uniform holding `params` (the kernel's own `#[repr(C)]`
    /// struct) and a bind group over `buffers` (one per slot, whole buffers). Create once,
    /// record many times.
    pub(crate) fn dispatch<P: KernelParams>(
        &self,
        ctx: &Context,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        if buffers.len() != self.slots.len() {
            return Err(Error::Gpu(format!(
                "{}: {} buffers for {} bindings (a bug in its launcher)",
                self.name,
                buffers.len(),
                self.slots.len()
            )));
        }
        if !sized_as_declared::<P>() {
            return Err(Error::Gpu(format!(
                "{}: parameter struct {} is {} bytes for {} fields (a bug in its launcher)",
                self.name,
                P::WGSL_NAME,
                std::mem::size_of::<P>(),
                P::FIELDS.len()
            )));
        }
        let max = ctx.limits().max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Gpu(format!(
                "{}: {groups:?} workgroups exceed this adapter's max_compute_workgroups_per_dimension ({max}); \
                 use a smaller --batch",
                self.name
            )));
        }
        let uniform = wgpu::util::DeviceExt::create_buffer_init(
            &ctx.device,
            &wgpu::util::BufferInitDescriptor {
                label: Some(&self.name),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            },
        );
        let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(&uniform)
            .chain(buffers.iter().copied())
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        ctx.count_creations(2);
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&self.name),
            layout: &self.layout,
            entries: &entries,
        });
        ctx.check(&format!("binding the buffers of {}", self.name))?;
        Ok(Dispatch {
            pipeline: self.pipeline.clone(),
            bind_group,
            groups,
            params: uniform,
            empty: groups.contains(&0),
        })
    }
}

/// A kernel launch ready to record: pipeline, bind group, grid and its parameter uniform.
#[derive(Debug)]
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    params: wgpu::Buffer,
    /// Nothing to do (a zero-sized launch): recording it is skipped.
    empty: bool,
}

impl Dispatch {
    /// Records the launch (nothing for an empty one); 1 if it was recorded, for the counters.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) -> u64 {
        if self.empty {
            return 0;
        }
        {
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
        }
        1
    }

    /// Changes the parameter words from `word` on (`field_word!` names it), in one queue write,
    /// before the next submission.
    pub(crate) fn set_params(&self, ctx: &Context, word: usize, values: &[u32]) {
        ctx.write(&self.params, word, values);
    }
}

/// Records `dispatches` in order into one compute pass of `encoder` (wgpu inserts the barriers
/// between launches that read what an earlier one wrote).
pub fn record_all<'a>(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: None,
        timestamp_writes: None,
    });
    let n: u64 = dispatches.into_iter().map(|d| d.record(&mut pass)).sum();
    ctx.count_dispatches(n);
}

/// Runs `dispatches` as one submission and waits for them (tests and one-off launches).
pub fn run(ctx: &Context, dispatches: &[&Dispatch]) -> Result<()> {
    let mut encoder = ctx.encoder("run");
    record_all(ctx, &mut encoder, dispatches.iter().copied());
    let index = ctx.submit(encoder, "running kernels")?;
    ctx.wait(index, "running kernels")
}

/// Workgroups for `n` items of a 1-D kernel: along x, folded into y past the per-dimension
/// limit (the kernels index `gid.x + gid.y * num_workgroups.x * WORKGROUP_1D`).
pub(crate) fn groups_1d(ctx: &Context, n: usize) -> [u32; 3] {
    let total = n.div_ceil(WORKGROUP_1D as usize) as u64;
    let max = u64::from(ctx.limits().max_compute_workgroups_per_dimension.max(1));
    if total <= max {
        [total as u32, 1, 1]
    } else {
        [max as u32, total.div_ceil(max) as u32, 1]
    }
}

/// Workgroups covering `x` by `y` items with a `wx` by `wy` workgroup.
pub(crate) fn groups_2d(x: usize, wx: u32, y: usize, wy: u32) -> [u32; 3] {
    [
        x.div_ceil(wx as usize) as u32,
        y.div_ceil(wy as usize) as u32,
        1,
    ]
}

/// A matrix inside a buffer: `buffer` from element `offset` on (W_l inside the flat parameters).
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
}

impl<'a> Operand<'a> {
    pub fn at(buffer: &'a wgpu::Buffer, offset: usize) -> Self {
        Operand { buffer, offset }
    }
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        Operand { buffer, offset: 0 }
    }
}

/// A kernel's parameter uniform: a `#[repr(C)]` struct of 4-byte fields that mirrors the WGSL
/// struct `WGSL_NAME` field for field (a test compares names, types and order), its size a
/// multiple of 16 bytes as uniform buffers need. Declared with `kernel_params!`.
pub(crate) trait KernelParams: bytemuck::Pod {
    const WGSL_NAME: &'static str;
    /// (name, type) of each field, in order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declares a kernel's parameter struct and its `KernelParams` description from one list of
/// fields, so the two cannot drift apart.
macro_rules! kernel_params {
    (
        $(#[$meta:meta])*
        struct $name:ident as $wgsl:literal {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fmeta])* pub(crate) $field: $ty,)*
        }

        impl $crate::gpu::launch::KernelParams for $name {
            const WGSL_NAME: &'static str = $wgsl;
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty)),)*];
        }
    };
}
pub(crate) use kernel_params;

/// The word index of a parameter field, for `Dispatch::set_params`.
macro_rules! field_word {
    ($ty:ty, $field:ident) => {
        std::mem::offset_of!($ty, $field) / 4
    };
}
pub(crate) use field_word;

/// The fields of WGSL struct `name` in `source`, as (name, type), comments dropped.
#[cfg(test)]
pub(crate) fn wgsl_struct_fields(source: &str, name: &str) -> Vec<(String, String)> {
    let start = format!("struct {name} {{");
    let Some(at) = source.find(&start) else {
        return Vec::new();
    };
    source[at + start.len()..]
        .lines()
        .map(|l| l.split("//").next().unwrap_or("").trim())
        .take_while(|l| *l != "}")
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (f, t) = l.trim_end_matches(',').split_once(':')?;
            Some((f.trim().to_string(), t.trim().to_string()))
        })
        .collect()
}

/// Whether `P` mirrors its WGSL struct in `source`: the same fields, types and order, and a size
/// of 4 bytes a field, a multiple of 16.
#[cfg(test)]
pub(crate) fn check_params<P: KernelParams>(
    file: &str,
    source: &str,
) -> std::result::Result<(), String> {
    let want: Vec<(String, String)> = P::FIELDS
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    let got = wgsl_struct_fields(source, P::WGSL_NAME);
    if got != want {
        return Err(format!(
            "{file}: struct {} is {got:?} in WGSL but {want:?} in Rust",
            P::WGSL_NAME
        ));
    }
    if !sized_as_declared::<P>() {
        let size = std::mem::size_of::<P>();
        return Err(format!("{file}: {} is {size} bytes", P::WGSL_NAME));
    }
    Ok(())
}

/// Whether `P` is 4 bytes a declared field (no padding the WGSL struct lacks) and a multiple of
/// 16 bytes, as uniform buffers need.
fn sized_as_declared<P: KernelParams>() -> bool {
    let size = std::mem::size_of::<P>();
    size == 4 * P::FIELDS.len() && size.is_multiple_of(16)
}

/// A sizes/offsets value for a uniform word; the kernels index with u32.
pub(crate) fn word(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Gpu(format!(
            "{what} = {v} does not fit the kernels' 32-bit indices"
        ))
    })
}

/// The activation's code in the shaders (matmul's ACT, backprop's act_backward).
pub(crate) fn act_code(act: Activation) -> u32 {
    match act {
        Activation::Sigmoid => 1,
        Activation::Relu => 2,
    }
}

/// Compiles one shader file and builds its pipelines inside an error scope, so a shader that
/// fails names its file.
pub(crate) fn build<P>(
    ctx: &Context,
    file: &str,
    source: &str,
    pipelines: impl FnOnce(&Context, &wgpu::ShaderModule) -> P,
) -> Result<P> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(file),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
    let p = pipelines(ctx, &module);
    match pollster::block_on(scope.pop()) {
        None => Ok(p),
        Some(e) => Err(Error::Gpu(format!(
            "shaders/{file} failed to build on {}: {e}; this adapter may lack something the shader \
             uses; try another adapter or --device cpu",
            ctx.describe()
        ))),
    }
}
