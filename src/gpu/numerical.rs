//! Launcher of shaders/numerical.wgsl: the numerical gradient on the device, both strategies.
//! CPU twin: `cpu::numerical`.
//!
//! The kernels read the unperturbed forward pass of the batch from ONE buffer (`cache`), which
//! the step's encoder assembles by copying the plan's labels, pre-activations, activations and
//! probabilities into it after the forward pass: one binding instead of one per layer keeps the
//! kernel within four storage bindings on every adapter.

use super::cache::{
    cache_layout, CacheLayout, HEADER_LABELS_AT, HEADER_PROBS_AT, LAYER_B_AT, LAYER_FAN_IN,
    LAYER_FAN_OUT, LAYER_POST_AT, LAYER_PRE_AT, LAYER_TABLE_AT, LAYER_WORDS, LAYER_W_AT,
};
use super::context::Context;
use super::launch::{
    build_source, decl, field_word, groups_1d, kernel_params, word, Dispatch, Kernel, Shader, Slot,
    WORKGROUP_1D,
};
use super::numerical_memo::{self, MemoPlan};
use crate::backend::PerturbStrategy;
use crate::error::{Error, Result};
use crate::model::MlpSpec;
use std::cell::OnceCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// shaders/numerical.wgsl after the shared loss_change.wgsl (WGSL has no include), with the
/// cache's word positions; WIDTH is added per model (`pipelines`).
pub(crate) const SHADER: Shader = Shader {
    file: "numerical.wgsl",
    body: concat!(
        include_str!("../../shaders/loss_change.wgsl"),
        include_str!("../../shaders/numerical.wgsl")
    ),
    consts: &[
        ("HEADER_LABELS_AT", HEADER_LABELS_AT as u32),
        ("HEADER_PROBS_AT", HEADER_PROBS_AT as u32),
        ("LAYER_TABLE_AT", LAYER_TABLE_AT as u32),
        ("LAYER_WORDS", LAYER_WORDS as u32),
        ("LAYER_FAN_IN", LAYER_FAN_IN as u32),
        ("LAYER_FAN_OUT", LAYER_FAN_OUT as u32),
        ("LAYER_W_AT", LAYER_W_AT as u32),
        ("LAYER_B_AT", LAYER_B_AT as u32),
        ("LAYER_PRE_AT", LAYER_PRE_AT as u32),
        ("LAYER_POST_AT", LAYER_POST_AT as u32),
    ],
    params: &[decl::<NumericalParams>()],
};

/// The widest layer the kernels' private arrays may hold (the classes, the hidden layers of
/// deeper nets): WIDTH in the shader is specialized to the model, up to this.
pub const MAX_WIDTH: usize = 256;

kernel_params! {
    /// shaders/numerical.wgsl's parameters.
    struct NumericalParams as "Params" {
        p_begin: u32,
        count: u32,
        rows: u32,
        layers: u32,
        classes: u32,
        /// 1 sigmoid, 2 relu (`act_code`).
        act: u32,
        h: f32,
        /// Bit 0: `full` subtracts two f32 losses (the chapter's way), to measure what the
        /// careful loss change buys; never for training. The other bits are always 0 (the
        /// shader's `kept` relies on it).
        flags: u32,
    }
}

/// Work per dispatch, so one launch stays far below an OS GPU watchdog (~2 s) on slow adapters:
/// `incremental` counts sample evaluations (parameters x rows), `full` multiply-adds.
pub const INCREMENTAL_EVALS_PER_DISPATCH: usize = 1 << 23;
pub const FULL_MACS_PER_DISPATCH: usize = 1 << 30;

/// The pipelines a run's numerical gradient uses, each built on first use: its strategy's entry
/// point, built with DEEP = false for nets with one hidden layer (without the deep path's
/// change-vector arrays, which lavapipe zero-fills on every invocation whether used or not;
/// `full` then streams the hidden layer, so it
/// may be any width), and for `incremental` on one hidden layer the memo kernels
/// (`numerical_memo`), which replace that entry point wherever the memo fits. Only what the run
/// uses is compiled: `full`'s double-f32 kernels take seconds on lavapipe. The memo assumes
/// the gather's u8 pixels over 255: for batches of any floats (`gpu::host`) it is off
/// (`pipelines_for_floats`) and the per-parameter kernel runs.
#[derive(Debug)]
pub(crate) struct Pipelines {
    strategy: PerturbStrategy,
    shallow: bool,
    /// Whether the memo may replace the per-parameter kernel (inputs are u8 pixels over 255).
    memo_allowed: bool,
    source: String,
    kernel: OnceCell<Kernel>,
    memo: OnceCell<numerical_memo::Pipelines>,
}

impl Pipelines {
    /// The per-parameter entry point of the strategy (numerical.wgsl).
    fn kernel(&self, ctx: &Context) -> Result<&Kernel> {
        if let Some(kernel) = self.kernel.get() {
            return Ok(kernel);
        }
        let (strategy, shallow) = (self.strategy, self.shallow);
        let kernel = build_source(ctx, SHADER.file, &self.source, |ctx, module| {
            let slots = [Slot::Read, Slot::Read, Slot::Read, Slot::ReadWrite];
            let entry = strategy.name();
            let (name, constants): (String, &[(&str, f64)]) = if shallow {
                (
                    format!("numerical {entry} (one hidden layer)"),
                    &[("DEEP", 0.0)],
                )
            } else {
                (format!("numerical {entry}"), &[])
            };
            Kernel::new(ctx, module, &name, entry, &slots, constants)
        })?;
        Ok(self.kernel.get_or_init(|| kernel))
    }

    /// The memo kernels (numerical_memo.wgsl).
    fn memo(&self, ctx: &Context) -> Result<&numerical_memo::Pipelines> {
        if let Some(memo) = self.memo.get() {
            return Ok(memo);
        }
        let memo = numerical_memo::pipelines(ctx)?;
        Ok(self.memo.get_or_init(|| memo))
    }
}

/// The length the kernels' private arrays need for `spec`: the classes, and on nets with more
/// than one hidden layer every hidden width (`full` holds them all, `incremental` those above
/// the first). One hidden layer needs none: `incremental` has no arrays, `full` streams it.
pub fn array_width(spec: &MlpSpec) -> usize {
    let deep = if spec.hidden.len() > 1 {
        spec.hidden.iter().copied().max().unwrap_or(0)
    } else {
        0
    };
    spec.classes.max(deep).max(1)
}

/// The numerical pipelines of `strategy` for `spec` (built when first used), numerical.wgsl's
/// arrays sized by `array_width`, at most MAX_WIDTH (`plan` refuses, with `check_widths`, a
/// model whose arrays would need more).
pub(crate) fn pipelines(spec: &MlpSpec, strategy: PerturbStrategy) -> Result<Pipelines> {
    Ok(pipelines_at(spec, strategy, WORKGROUP_1D))
}

/// `pipelines` for batches of any floats (not the gather's u8 pixels): never the memo, whose
/// table is indexed by a pixel's byte value.
pub(crate) fn pipelines_for_floats(spec: &MlpSpec, strategy: PerturbStrategy) -> Pipelines {
    Pipelines {
        memo_allowed: false,
        ..pipelines_at(spec, strategy, WORKGROUP_1D)
    }
}

/// `pipelines` with the per-parameter kernel built `workgroup` wide (tests build other widths
/// than `WORKGROUP_1D`; the grids do not depend on it: `full` is a workgroup per parameter).
fn pipelines_at(spec: &MlpSpec, strategy: PerturbStrategy, workgroup: u32) -> Pipelines {
    let width = array_width(spec).min(MAX_WIDTH) as u32;
    Pipelines {
        strategy,
        shallow: spec.layers().len() <= 2,
        memo_allowed: true,
        source: SHADER.source_with(workgroup, &[("WIDTH", width)]),
        kernel: OnceCell::new(),
        memo: OnceCell::new(),
    }
}

/// The kernels keep change vectors (and, for `full` on deeper nets, whole activations) in
/// private arrays of MAX_WIDTH: a wider layer there is a clear error rather than a wrong answer.
pub fn check_widths(spec: &MlpSpec, strategy: PerturbStrategy) -> Result<()> {
    let sizes = spec.sizes();
    // Both hold the classes; incremental every layer above the first hidden one; full on nets
    // with one hidden layer streams it, on deeper ones it holds every hidden layer.
    let from = match strategy {
        PerturbStrategy::Full if spec.hidden.len() > 1 => 1,
        _ => 2,
    };
    if let Some(&w) = sizes[from.min(sizes.len() - 1)..].iter().max() {
        if w > MAX_WIDTH {
            return Err(Error::Gpu(format!(
                "the GPU's {} numerical gradient holds layers of at most {MAX_WIDTH} units in registers, and {} has one of {w}; \
                 use {}--device cpu",
                strategy.name(),
                spec.describe(),
                if strategy == PerturbStrategy::Full { "--numgrad incremental or " } else { "" }
            )));
        }
    }
    Ok(())
}

/// Loop iterations one invocation of `strategy`'s kernel runs on `rows` samples of `spec` (an
/// upper estimate, every loop of the shader counted), for drivers that cap them
/// (`Context::loop_iteration_cap`).
pub fn loop_iterations(spec: &MlpSpec, rows: usize, strategy: PerturbStrategy) -> u64 {
    let layers = spec.layers();
    let c = spec.classes as u64;
    let rows = rows as u64;
    let exp_df = 8 + 1;
    match strategy {
        PerturbStrategy::Incremental => {
            // The costliest parameter: the first layer's, whose change runs through every layer.
            let mut change = 0u64;
            for (m, layer) in layers.iter().enumerate().skip(1) {
                let (fi, fo) = (layer.fan_in as u64, layer.fan_out as u64);
                change += if m == 1 { fo } else { 2 * fo + fi * (1 + fo) };
            }
            if layers.len() > 2 {
                change += c;
            }
            layers.len() as u64 + rows * (1 + 2 * change)
        }
        PerturbStrategy::Full => {
            let first = &layers[0];
            let (fi, h0) = (first.fan_in as u64, first.fan_out as u64);
            let unit = fi / 8 + fi % 8 + exp_df;
            let mut pass = 2 * c + h0 * unit;
            if layers.len() == 2 {
                pass += h0 * c;
            } else {
                pass += h0;
                for l in &layers[1..] {
                    let (fi, fo) = (l.fan_in as u64, l.fan_out as u64);
                    pass += fo * (fi + exp_df + 1) + fi * c;
                }
            }
            let per_sample = 2 + 2 * pass + 5 * c;
            layers.len() as u64 + rows.div_ceil(u64::from(WORKGROUP_1D)) * per_sample + 8
        }
    }
}

/// The parameter ranges of the dispatches for one gradient: (first parameter, count). Sized by
/// the work budget per dispatch and the adapter's workgroup-grid limit, so a bigger model or
/// batch runs in more dispatches rather than in one that trips a watchdog.
pub fn parameter_chunks(
    spec: &MlpSpec,
    rows: usize,
    strategy: PerturbStrategy,
    max_groups_per_dim: u32,
) -> Vec<(usize, usize)> {
    let p = spec.num_params();
    let rows = rows.max(1);
    let max_groups = max_groups_per_dim.max(1) as usize;
    let per = match strategy {
        PerturbStrategy::Incremental => {
            (INCREMENTAL_EVALS_PER_DISPATCH / rows).min(max_groups * WORKGROUP_1D as usize)
        }
        PerturbStrategy::Full => {
            let macs_per_param = 2
                * rows
                * spec
                    .layers()
                    .iter()
                    .map(|l| l.w_len() + l.fan_out)
                    .sum::<usize>();
            (FULL_MACS_PER_DISPATCH / macs_per_param.max(1)).min(max_groups)
        }
    }
    .max(1);
    (0..p)
        .step_by(per)
        .map(|start| (start, per.min(p - start)))
        .collect()
}

/// The launches of one numerical gradient on a batch of `rows`, bound once.
#[derive(Debug)]
pub(crate) struct NumericalPlan {
    pub(crate) cache: wgpu::Buffer,
    pub(crate) layout: CacheLayout,
    /// The per-parameter kernel's launches (none where the memo runs instead).
    dispatches: Vec<Dispatch>,
    /// `incremental` on one hidden layer where the memo fits: its two launches.
    memo: Option<MemoPlan>,
    h: f32,
}

/// `cache`: a buffer laid out by `cache_layout` that the forward pass writes in place (a
/// training plan's), or None for one of the plan's own, assembled by `record_cache_copies`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    k: &Pipelines,
    ctx: &Context,
    spec: &MlpSpec,
    rows: usize,
    strategy: PerturbStrategy,
    h: f32,
    subtract_losses: bool,
    theta: &wgpu::Buffer,
    x: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    cache: Option<&wgpu::Buffer>,
) -> Result<NumericalPlan> {
    check_widths(spec, strategy)?;
    let layout = cache_layout(spec, rows)?;
    let cache = match cache {
        Some(c) => c.clone(),
        None => ctx.storage("numerical-gradient cache", layout.words)?,
    };
    let memo_fits = (strategy == PerturbStrategy::Incremental && k.memo_allowed)
        .then(|| numerical_memo::fits(spec, rows, ctx))
        .flatten();
    if let Some(fits) = memo_fits {
        let memo = numerical_memo::plan(
            k.memo(ctx)?,
            ctx,
            spec,
            rows,
            &layout,
            h,
            theta,
            x,
            &cache,
            grad,
            fits,
        )?;
        return Ok(NumericalPlan {
            cache,
            layout,
            dispatches: Vec::new(),
            memo: Some(memo),
            h,
        });
    }
    // The per-parameter kernels find the cache's parts through its header (the memo kernels
    // through their parameters).
    ctx.write(&cache, 0, &layout.header);
    check_loop_cap(ctx, spec, rows, strategy)?;
    let dispatches = per_parameter_launches(
        k,
        ctx,
        spec,
        rows,
        strategy,
        h,
        subtract_losses,
        [theta, x, &cache, grad],
    )?;
    Ok(NumericalPlan {
        cache,
        layout,
        dispatches,
        memo: None,
        h,
    })
}

/// Refuses a launch that would pass the driver's per-invocation loop cap (lavapipe), which
/// would end the kernel's loops early and give a wrong gradient.
fn check_loop_cap(
    ctx: &Context,
    spec: &MlpSpec,
    rows: usize,
    strategy: PerturbStrategy,
) -> Result<()> {
    if let Some(cap) = ctx.loop_iteration_cap() {
        let need = loop_iterations(spec, rows, strategy);
        if need > cap {
            return Err(Error::Gpu(format!(
                "{}: the {} numerical gradient of {} on a batch of {rows} needs ~{need} loop \
             iterations per invocation, and this driver ends an invocation's loops after \
             {cap} (Mesa llvmpipe), which would give a wrong gradient; use {}a smaller \
             batch, --device cpu, or a hardware GPU",
                ctx.describe(),
                strategy.name(),
                spec.describe(),
                if strategy == PerturbStrategy::Full {
                    "--numgrad incremental, "
                } else {
                    ""
                }
            )));
        }
    }
    Ok(())
}

/// The per-parameter kernel's launches, chunked over the flat parameter range.
#[allow(clippy::too_many_arguments)]
fn per_parameter_launches(
    k: &Pipelines,
    ctx: &Context,
    spec: &MlpSpec,
    rows: usize,
    strategy: PerturbStrategy,
    h: f32,
    subtract_losses: bool,
    [theta, x, cache, grad]: [&wgpu::Buffer; 4],
) -> Result<Vec<Dispatch>> {
    let max_groups = ctx.limits().max_compute_workgroups_per_dimension;
    let mut dispatches = Vec::new();
    for (start, count) in parameter_chunks(spec, rows, strategy, max_groups) {
        let params = NumericalParams {
            p_begin: word("parameter", start)?,
            count: word("parameters", count)?,
            rows: word("rows", rows)?,
            layers: word("layers", spec.num_layers())?,
            classes: word("classes", spec.classes)?,
            act: super::launch::act_code(spec.activation),
            h,
            // Bit 0 only; the other bits must stay 0, the shader's `kept` relies on it.
            flags: u32::from(subtract_losses),
        };
        let kernel = k.kernel(ctx)?;
        let groups = match strategy {
            PerturbStrategy::Incremental => groups_1d(ctx, count),
            PerturbStrategy::Full => {
                let g = count as u32;
                [g.min(max_groups), g.div_ceil(max_groups.max(1)), 1]
            }
        };
        dispatches.push(kernel.dispatch(ctx, &params, &[theta, x, cache, grad], groups)?);
    }
    Ok(dispatches)
}

impl NumericalPlan {
    /// The launches of one gradient, in order.
    pub(crate) fn launches(&self) -> &[Dispatch] {
        match &self.memo {
            Some(m) => &m.dispatches,
            None => &self.dispatches,
        }
    }

    /// Asks the launches to apply the SGD update themselves (Some(lr)) or not (None); false
    /// where they cannot (the per-parameter kernels), and a separate SGD launch must follow.
    pub(crate) fn fuse_update(&mut self, ctx: &Context, lr: Option<f32>) -> bool {
        match &mut self.memo {
            Some(m) => {
                m.set_update(ctx, lr);
                true
            }
            None => false,
        }
    }

    /// Whether the launches apply the update themselves.
    pub(crate) fn updates(&self) -> bool {
        self.memo.as_ref().is_some_and(|m| m.updates())
    }

    /// Uses `h` from the next submission on.
    pub(crate) fn set_h(&mut self, ctx: &Context, h: f32) {
        if let Some(m) = &mut self.memo {
            m.set_h(ctx, h);
        }
        if self.h != h {
            for d in &self.dispatches {
                d.set_params(ctx, field_word!(NumericalParams, h), &[h.to_bits()]);
            }
            self.h = h;
        }
    }

    /// Records the copies that assemble the cache from the plan's forward buffers.
    pub(crate) fn record_cache_copies(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        labels: &wgpu::Buffer,
        pre: &[wgpu::Buffer],
        post: &[wgpu::Buffer],
        probs: &wgpu::Buffer,
    ) {
        let copy = |encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, at: usize| {
            ctx.copy(encoder, src, 0, &self.cache, (at * 4) as u64, src.size());
        };
        copy(encoder, labels, self.layout.labels_at);
        for (b, &at) in pre.iter().zip(&self.layout.pre_at) {
            copy(encoder, b, at);
        }
        for (b, &at) in post.iter().zip(&self.layout.post_at) {
            copy(encoder, b, at);
        }
        copy(encoder, probs, self.layout.probs_at);
    }
}

/// The numerical gradient's launches of `strategy` in `plans` (one batch size's), built on
/// first use over the batch's buffers (`[theta, x, grad]`, and the forward pass's cache where
/// it writes one in place), with `h` applied.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launches<'a>(
    plans: &'a mut HashMap<PerturbStrategy, NumericalPlan>,
    pipelines: &Pipelines,
    ctx: &Context,
    spec: &MlpSpec,
    rows: usize,
    strategy: PerturbStrategy,
    h: f32,
    subtract_losses: bool,
    [theta, x, grad]: [&wgpu::Buffer; 3],
    cache: Option<&wgpu::Buffer>,
) -> Result<&'a mut NumericalPlan> {
    let plan = match plans.entry(strategy) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => {
            let built = plan(
                pipelines,
                ctx,
                spec,
                rows,
                strategy,
                h,
                subtract_losses,
                theta,
                x,
                grad,
                cache,
            )?;
            ctx.check("building the numerical gradient's launches")?;
            v.insert(built)
        }
    };
    plan.set_h(ctx, h);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, MlpSpec};

    #[test]
    fn chunks_cover_every_parameter_once_and_grow_with_the_model() {
        let small = MlpSpec::two_layer(784, 50, 10).unwrap();
        let big = MlpSpec::two_layer(784, 1000, 10).unwrap();
        for (spec, strategy) in [
            (&small, PerturbStrategy::Incremental),
            (&big, PerturbStrategy::Incremental),
            (&small, PerturbStrategy::Full),
            (&big, PerturbStrategy::Full),
        ] {
            let c = parameter_chunks(spec, 100, strategy, 65535);
            assert_eq!(c.iter().map(|c| c.1).sum::<usize>(), spec.num_params());
            assert!(c.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
        assert_eq!(
            parameter_chunks(&small, 100, PerturbStrategy::Incremental, 65535).len(),
            1
        );
        assert!(parameter_chunks(&big, 100, PerturbStrategy::Incremental, 65535).len() >= 9);
        // A tight grid limit splits further.
        assert!(parameter_chunks(&small, 100, PerturbStrategy::Incremental, 16).len() >= 9);
        // `full`: a whole forward pass per parameter and sample, so many dispatches, more for
        // the bigger net.
        let full_small = parameter_chunks(&small, 100, PerturbStrategy::Full, 65535).len();
        let full_big = parameter_chunks(&big, 100, PerturbStrategy::Full, 65535).len();
        assert!(
            full_small > 100 && full_big > 10 * full_small,
            "{full_small} {full_big}"
        );
        let wide = MlpSpec::new(784, vec![50, 300], 10, Activation::Relu).unwrap();
        assert!(check_widths(&wide, PerturbStrategy::Incremental).is_err());
        assert!(check_widths(&wide, PerturbStrategy::Full).is_err());
        assert!(check_widths(&big, PerturbStrategy::Incremental).is_ok());
        // One hidden layer streams through `full`: any width.
        assert!(check_widths(&big, PerturbStrategy::Full).is_ok());
        let deep_wide = MlpSpec::new(784, vec![300, 20], 10, Activation::Relu).unwrap();
        assert!(check_widths(&deep_wide, PerturbStrategy::Incremental).is_ok());
        assert!(check_widths(&deep_wide, PerturbStrategy::Full).is_err());
    }

    /// `full` is right at any workgroup width it is built with: each workgroup's threads take
    /// the samples WORKGROUP_1D apart and reduce a WORKGROUP_1D-slot tree (a stride or a tree of
    /// 256 in a narrower workgroup would drop samples). 300 samples: more than one per thread
    /// at every width.
    #[test]
    fn full_is_right_at_any_workgroup_width() {
        use crate::gpu::launch::{run, test_context};
        use crate::tolerance::GPU_REDUCTION_WIDTH_REL;
        let Some(ctx) = test_context() else { return };
        let spec = MlpSpec::two_layer(6, 4, 3).unwrap();
        let rows = 300;
        let p = spec.num_params();
        let theta: Vec<f32> = (0..p)
            .map(|i| ((i * 29) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let x: Vec<f32> = (0..rows * 6)
            .map(|i| ((i * 13) % 11) as f32 / 10.0)
            .collect();
        let layout = cache_layout(&spec, rows).unwrap();
        let mut cache = vec![0u32; layout.words];
        for (b, l) in cache[layout.labels_at..][..rows].iter_mut().enumerate() {
            *l = (b % 3) as u32;
        }
        let theta = ctx.upload("theta", &theta).unwrap();
        let x = ctx.upload("x", &x).unwrap();
        let cache = ctx.upload("cache", &cache).unwrap();
        let gradient = |workgroup: u32| -> Vec<f64> {
            let k = pipelines_at(&spec, PerturbStrategy::Full, workgroup);
            let grad = ctx.upload("grad", &vec![f32::NAN; p]).unwrap();
            let plan = plan(
                &k,
                &ctx,
                &spec,
                rows,
                PerturbStrategy::Full,
                1e-3,
                false,
                &theta,
                &x,
                &grad,
                Some(&cache),
            )
            .unwrap();
            run(&ctx, &plan.launches().iter().collect::<Vec<_>>()).unwrap();
            let g: Vec<f32> = ctx.read(&grad, 0, p).unwrap();
            g.into_iter().map(f64::from).collect()
        };
        let wide = gradient(WORKGROUP_1D);
        assert!(wide.iter().all(|g| g.is_finite()) && wide.iter().any(|&g| g != 0.0));
        for workgroup in [32, 64] {
            let rel = crate::model::relative_error(&gradient(workgroup), &wide);
            eprintln!("full at width {workgroup} against {WORKGROUP_1D}: relative {rel:.2e}");
            assert!(
                rel < GPU_REDUCTION_WIDTH_REL,
                "width {workgroup}: {rel:.2e}"
            );
        }
    }

    #[test]
    fn arrays_are_sized_to_the_model() {
        assert_eq!(array_width(&MlpSpec::two_layer(784, 1000, 10).unwrap()), 10);
        let deep = MlpSpec::new(784, vec![64, 33], 10, Activation::Relu).unwrap();
        assert_eq!(array_width(&deep), 64);
        let src = pipelines_at(&deep, PerturbStrategy::Full, WORKGROUP_1D).source;
        assert!(src.contains("const WIDTH: u32 = 64u;"));
    }

    /// lavapipe ends an invocation's loops after 65,535 iterations in all: the chapter's runs
    /// stay well inside it, and what would cross it is refused (see plan).
    #[test]
    fn loop_iterations_stay_inside_lavapipes_cap_for_the_chapter() {
        let cap =
            crate::gpu::adapter::loop_iteration_cap("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe")
                .unwrap();
        assert_eq!(cap, 65_535);
        assert_eq!(
            crate::gpu::adapter::loop_iteration_cap("NVIDIA H200", "NVIDIA"),
            None
        );
        let chapter = MlpSpec::two_layer(784, 50, 10).unwrap();
        let inc = loop_iterations(&chapter, 100, PerturbStrategy::Incremental);
        let full = loop_iterations(&chapter, 100, PerturbStrategy::Full);
        assert!(inc < cap / 10 && full < cap / 4, "{inc} {full}");
        // Hidden 1000: `full` crosses it at any batch; `incremental` at batch 100 does not.
        let big = MlpSpec::two_layer(784, 1000, 10).unwrap();
        assert!(loop_iterations(&big, 1, PerturbStrategy::Full) > cap);
        assert!(loop_iterations(&big, 100, PerturbStrategy::Incremental) < cap);
        // Past 256 samples a `full` thread takes two: twice the count.
        let two_each = loop_iterations(&chapter, 512, PerturbStrategy::Full);
        assert!(
            two_each > full * 19 / 10 && two_each < 2 * full,
            "{two_each} {full}"
        );
        // A deep net's incremental change runs through every layer: batch 1000 crosses it.
        let deep = MlpSpec::new(784, vec![64, 33], 10, Activation::Relu).unwrap();
        assert!(loop_iterations(&deep, 20, PerturbStrategy::Incremental) < cap);
        assert!(loop_iterations(&deep, 1000, PerturbStrategy::Incremental) > cap);
    }
}
