//! What every kernel family's launcher uses, and nothing that knows the families (so `kernels`,
//! the registry of all pipelines, depends on the families and they only on this): `Kernel` (one
//! pipeline and its bind group layout), `Dispatch` (one launch with its bind group and
//! parameters, created once per batch size and recorded into as many command buffers as
//! needed), `KernelParams` (each kernel's `#[repr(C)]` parameter struct, declared once, in
//! Rust: the WGSL struct is generated from it), `Shader` (a shader file with the declarations
//! its launcher prepends), `build`, grid helpers and `Operand`.
//!
//! Conventions every shader follows: group 0, binding 0 is the kernel's parameter uniform (its
//! `KernelParams` struct: sizes, offsets, h, lr as 4-byte fields; the generated WGSL struct and
//! the uploaded uniform are padded to a multiple of 16 bytes); the other bindings follow in the
//! order given to `Kernel::dispatch`. Offsets into buffers travel in the uniform, not as binding
//! offsets, because parameter slices of the flat vector are not 256-byte aligned.

use super::context::Context;
use crate::error::{Error, Result};
use crate::model::Activation;

/// Threads per workgroup of every 1-D kernel (elementwise, per row, per column, and the
/// one-workgroup reductions). The shaders see it as `WORKGROUP_1D` (prepended by `Shader`); their
/// tree reductions halve it, so it is a power of two.
pub const WORKGROUP_1D: u32 = 256;
const _: () = assert!(WORKGROUP_1D.is_power_of_two());

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
                contents: &uniform_bytes(params),
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

/// A kernel's parameter uniform: a `#[repr(C)]` struct of 4-byte fields (u32, i32, f32), the
/// only declaration of it: the WGSL struct `WGSL_NAME` is generated from `FIELDS` (`wgsl_struct`)
/// and prepended to the shader by `Shader`. No padding is declared: the generated struct and the
/// uploaded uniform (`uniform_bytes`) add it. Declared with `kernel_params!`.
pub(crate) trait KernelParams: bytemuck::Pod {
    const WGSL_NAME: &'static str;
    /// (name, type) of each field, in order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declares a kernel's parameter struct and its `KernelParams` description from one list of
/// fields, the one place the fields are written.
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

/// Whether `P` is 4 bytes a declared field: no padding Rust added that the generated WGSL
/// struct would lack, and no field of another size.
fn sized_as_declared<P: KernelParams>() -> bool {
    std::mem::size_of::<P>() == 4 * P::FIELDS.len()
}

/// The uniform's bytes: `params`, zero-filled up to the next multiple of 16 bytes (uniform
/// buffers need it; the generated WGSL struct has the same pad words, `wgsl_struct`).
fn uniform_bytes<P: KernelParams>(params: &P) -> Vec<u8> {
    let mut bytes = bytemuck::bytes_of(params).to_vec();
    bytes.resize(bytes.len().next_multiple_of(16).max(16), 0);
    bytes
}

/// A parameter struct as the shader generator sees it (`KernelParams`' name and fields).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamsDecl {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [(&'static str, &'static str)],
}

/// `P`'s declaration, for a `Shader`'s list.
pub(crate) const fn decl<P: KernelParams>() -> ParamsDecl {
    ParamsDecl {
        name: P::WGSL_NAME,
        fields: P::FIELDS,
    }
}

/// The WGSL struct of `d`: its fields in order, then `_pad` words up to a multiple of 16 bytes
/// (what `uniform_bytes` uploads there: zeros).
pub(crate) fn wgsl_struct(d: &ParamsDecl) -> String {
    let mut s = format!("struct {} {{\n", d.name);
    for (field, ty) in d.fields {
        s += &format!("    {field}: {ty},\n");
    }
    let words = d.fields.len().next_multiple_of(4).max(4);
    for pad in 0..words - d.fields.len() {
        s += &format!("    _pad{pad}: u32,\n");
    }
    s + "}\n"
}

/// A shader file as its launcher builds it: `body` (the file, or files joined: WGSL has no
/// include) after the generated declarations: `WORKGROUP_1D`, `folded_index`, `nan`, the
/// launcher's `consts` (workgroup widths, array sizes) and a struct per entry of `params`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shader {
    /// The file's name under shaders/ (for errors).
    pub(crate) file: &'static str,
    pub(crate) body: &'static str,
    pub(crate) consts: &'static [(&'static str, u32)],
    pub(crate) params: &'static [ParamsDecl],
}

impl Shader {
    /// The source the launcher builds.
    pub(crate) fn source(&self) -> String {
        self.source_with(WORKGROUP_1D, &[])
    }

    /// The source with the 1-D workgroup width `workgroup` (tests build other widths) and
    /// `extra` constants after the shader's own.
    pub(crate) fn source_with(&self, workgroup: u32, extra: &[(&str, u32)]) -> String {
        let mut s = format!(
            "// Generated by gpu::launch::Shader from the launcher's Rust declarations.\n\
             const WORKGROUP_1D: u32 = {workgroup}u;\n\
             // A 1-D kernel's invocation: its grid is folded into y past the per-dimension limit\n\
             // (launch::groups_1d).\n\
             fn folded_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {{\n    \
             return gid.x + gid.y * groups.x * WORKGROUP_1D;\n}}\n\
             // A quiet NaN, for results a bad input must not pass as a number (a runtime value,\n\
             // so that no constant folding rejects it).\n\
             fn nan() -> f32 {{\n    var bits = 0x7fc00000u;\n    return bitcast<f32>(bits);\n}}\n"
        );
        for (name, v) in self.consts.iter().chain(extra) {
            s += &format!("const {name}: u32 = {v}u;\n");
        }
        for d in self.params {
            s += &wgsl_struct(d);
        }
        s + &format!("// ---- shaders/{} ----\n", self.file) + self.body
    }
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

/// Compiles `shader` (its generated declarations prepended) and builds its pipelines.
pub(crate) fn build<P>(
    ctx: &Context,
    shader: &Shader,
    pipelines: impl FnOnce(&Context, &wgpu::ShaderModule) -> P,
) -> Result<P> {
    build_source(ctx, shader.file, &shader.source(), pipelines)
}

/// Compiles `source` (a `Shader`'s, maybe specialised) and builds its pipelines inside an error
/// scope, so a shader that fails names its file.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn build_source<P>(
    ctx: &Context,
    file: &str,
    source: &str,
    pipelines: impl FnOnce(&Context, &wgpu::ShaderModule) -> P,
) -> Result<P> {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let p = pipelines(ctx, &shader_module(ctx, file, source));
    match pollster::block_on(scope.pop()) {
        None => Ok(p),
        Some(e) => Err(Error::Gpu(format!(
            "shaders/{file} failed to build on {}: {e}; this adapter may lack something the shader \
             uses; try another adapter or --device cpu",
            ctx.describe()
        ))),
    }
}

/// In the browser an error scope answers only through the event loop, which a pipeline built
/// mid-step can't wait for: a failure reaches the device's error slot instead (its message
/// names the module's label, the file) and fails the next read-back.
#[cfg(target_arch = "wasm32")]
pub(crate) fn build_source<P>(
    ctx: &Context,
    file: &str,
    source: &str,
    pipelines: impl FnOnce(&Context, &wgpu::ShaderModule) -> P,
) -> Result<P> {
    let p = pipelines(ctx, &shader_module(ctx, file, source));
    ctx.check(&format!("building shaders/{file}"))?;
    Ok(p)
}

fn shader_module(ctx: &Context, file: &str, source: &str) -> wgpu::ShaderModule {
    ctx.device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(file),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        })
}

/// The device for the library's GPU tests: None (skip) without an adapter, unless CI=true,
/// where a missing adapter fails the test.
#[cfg(test)]
pub(crate) fn test_context() -> Option<Context> {
    match Context::gpu() {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and no usable GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no adapter ({e})");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    kernel_params! {
        struct Three as "Three" {
            a: u32,
            b: f32,
            c: u32,
        }
    }

    /// The generated struct pads to 16 bytes exactly as the upload does, with zeros.
    #[test]
    fn the_generated_struct_and_the_upload_pad_alike() {
        let d = decl::<Three>();
        assert_eq!(
            wgsl_struct(&d),
            "struct Three {\n    a: u32,\n    b: f32,\n    c: u32,\n    _pad0: u32,\n}\n"
        );
        let p = Three { a: 7, b: 1.5, c: 9 };
        let bytes = uniform_bytes(&p);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..12], bytemuck::bytes_of(&p));
        assert_eq!(&bytes[12..], &[0; 4]);
        assert!(sized_as_declared::<Three>());
        assert_eq!(field_word!(Three, c), 2);
        // Four fields need no pad; five need three.
        let four = ParamsDecl {
            name: "F",
            fields: &[("a", "u32"), ("b", "u32"), ("c", "u32"), ("d", "u32")],
        };
        assert!(!wgsl_struct(&four).contains("_pad"));
        let five = ParamsDecl {
            name: "F",
            fields: &[
                ("a", "u32"),
                ("b", "u32"),
                ("c", "u32"),
                ("d", "u32"),
                ("e", "f32"),
            ],
        };
        assert!(wgsl_struct(&five).contains("_pad2: u32,\n}"));
    }

    /// The prelude carries the width a test asks for, and the launcher's constants.
    #[test]
    fn the_source_starts_with_the_generated_declarations() {
        const S: Shader = Shader {
            file: "t.wgsl",
            body: "// body\n",
            consts: &[("T_WG", 64)],
            params: &[decl::<Three>()],
        };
        let src = S.source();
        assert!(src.contains(&format!("const WORKGROUP_1D: u32 = {WORKGROUP_1D}u;")));
        assert!(src.contains("const T_WG: u32 = 64u;"));
        assert!(src.contains("struct Three {"));
        assert!(src.ends_with("// ---- shaders/t.wgsl ----\n// body\n"));
        let other = S.source_with(32, &[("W", 5)]);
        assert!(
            other.contains("const WORKGROUP_1D: u32 = 32u;")
                && other.contains("const W: u32 = 5u;")
        );
    }
}
