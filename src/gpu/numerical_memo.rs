//! Launcher of shaders/numerical_memo.wgsl: the incremental numerical gradient of a net with one
//! hidden layer in two launches, a memo over pixel values (`memo_table`) and the sums
//! (`memo_sum`, which may apply the SGD update too). CPU twin: `cpu::numerical` (its
//! distinct-value table and row moments, `add_last_hidden_layer`).
//!
//! It replaces numerical.wgsl's `incremental` entry point where it applies (`applies`): one
//! hidden layer, a memo of B x 256 x H floats (and the pixels' sample masks after it) within
//! `MEMO_MAX_BYTES` and the adapter's binding size, and a grid and loops within its limits. The inputs must be the gather's u8 pixels over 255 (every GPU batch is).

use super::cache::CacheLayout;
use super::context::Context;
use super::launch::{
    act_code, build, decl, field_word, groups_1d, kernel_params, word, Dispatch, Kernel, Shader,
    Slot,
};
use crate::error::Result;
use crate::model::MlpSpec;

/// shaders/numerical_memo.wgsl after the shared loss_change.wgsl (WGSL has no include).
pub(crate) const SHADER: Shader = Shader {
    file: "numerical_memo.wgsl",
    body: concat!(
        include_str!("../../shaders/loss_change.wgsl"),
        include_str!("../../shaders/numerical_memo.wgsl")
    ),
    consts: &[("MEMO_WG", MEMO_WG), ("VALUES", VALUES as u32)],
    params: &[decl::<MemoParams>()],
};

/// Threads per workgroup of memo_table (MEMO_WG in the shader); memo_sum is a
/// 1-D kernel of `launch::WORKGROUP_1D`.
pub const MEMO_WG: u32 = 64;

/// Distinct u8 values: the memo holds one entry per (sample, value, unit) (VALUES in the shader).
pub const VALUES: usize = 256;

/// The largest memo the plan allocates (batch 1000 x hidden 250 is 256 MB); past it the
/// per-parameter kernel runs instead, which needs no memo.
pub const MEMO_MAX_BYTES: u64 = 256 << 20;

/// Bytes of the memo (and the pixels' sample masks after it) for `rows` samples of `spec`.
pub fn memo_bytes(spec: &MlpSpec, rows: usize) -> u64 {
    let hidden = spec.hidden.first().copied().unwrap_or(0) as u64;
    if hidden == 0 {
        return 0;
    }
    (rows as u64 * VALUES as u64 * hidden + mask_words(spec.input, rows) as u64) * 4
}

/// Words of the pixels' sample masks: bit n of word `w I + i` says whether sample 32 w + n's
/// pixel i is non-zero (memo_table builds them once a batch, memo_sum walks only the set bits).
pub fn mask_words(inputs: usize, rows: usize) -> usize {
    rows.div_ceil(32) * inputs
}

/// Loop iterations the busiest invocation of either launch runs (every loop counted), for
/// drivers that cap them (`Context::loop_iteration_cap`).
pub fn loop_iterations(spec: &MlpSpec, rows: usize) -> u64 {
    let (i, c) = (spec.input as u64, spec.classes as u64);
    let rows = rows as u64;
    let wg = u64::from(MEMO_WG);
    // lavapipe counts every loop of an invocation (of its SIMD vector) against one counter, and
    // runs a loop no lane enters once. memo_table: its share of the pixels, the row's moments,
    // then the values by the series, then again the direct way (two loops over the classes each).
    let values = 8 + VALUES as u64;
    let table = i.div_ceil(wg) + c + values + values * (1 + 2 * c);
    // memo_sum: a vector may straddle two regions, and runs all three loops: W1's mask words and
    // their set bits, b1's samples, W2's samples.
    let sum = 3 * rows + rows.div_ceil(32) + 3;
    table.max(sum)
}

/// Whether the memo kernels compute `spec`'s incremental gradient on batches of `rows` here:
/// the memo within `max_binding`, memo_table's workgroups (a row each, then the masks') within
/// `max_groups` per dimension, and every loop within the driver's cap.
pub fn applies(
    spec: &MlpSpec,
    rows: usize,
    max_binding: u64,
    max_groups: u32,
    loop_cap: Option<u64>,
) -> bool {
    let bytes = memo_bytes(spec, rows);
    spec.hidden.len() == 1
        && bytes > 0
        && bytes <= MEMO_MAX_BYTES.min(max_binding)
        && table_groups(spec, rows) <= u64::from(max_groups)
        && loop_cap.is_none_or(|cap| loop_iterations(spec, rows) <= cap)
}

/// Proof that the memo computes a net's gradient on a batch size here: made only by `fits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fits(());

/// `applies`, as the proof `plan` requires.
pub(crate) fn fits(spec: &MlpSpec, rows: usize, ctx: &Context) -> Option<Fits> {
    let limits = ctx.limits();
    applies(
        spec,
        rows,
        limits.max_storage_buffer_binding_size,
        limits.max_compute_workgroups_per_dimension,
        ctx.loop_iteration_cap(),
    )
    .then_some(Fits(()))
}

/// memo_table's workgroups along x: one per sample, then those that build the masks.
fn table_groups(spec: &MlpSpec, rows: usize) -> u64 {
    (rows + mask_words(spec.input, rows).div_ceil(MEMO_WG as usize)) as u64
}

/// The two pipelines (built only for runs that use them).
#[derive(Debug)]
pub(crate) struct Pipelines {
    table: Kernel,
    sum: Kernel,
}

pub(crate) fn pipelines(ctx: &Context) -> Result<Pipelines> {
    use Slot::*;
    build(ctx, &SHADER, |ctx, module| Pipelines {
        table: Kernel::new(
            ctx,
            module,
            "numerical memo: table",
            "memo_table",
            &[ReadWrite, Read, Read, ReadWrite],
            &[],
        ),
        sum: Kernel::new(
            ctx,
            module,
            "numerical memo: sums (+ SGD)",
            "memo_sum",
            &[ReadWrite, Read, Read, ReadWrite, ReadWrite],
            &[],
        ),
    })
}

kernel_params! {
    /// The kernels' parameters (shaders/numerical_memo.wgsl).
    struct MemoParams as "Params" {
        rows: u32,
        inputs: u32,
        hidden: u32,
        classes: u32,
        w1: u32,
        b1: u32,
        w2: u32,
        /// 1 sigmoid, 2 relu (`act_code`).
        act: u32,
        pre: u32,
        post: u32,
        probs: u32,
        labels: u32,
        h: f32,
        lr: f32,
        /// 1: memo_sum applies theta -= lr grad.
        update: u32,
    }
}

/// The two launches of one gradient, bound once, and the memo they share.
#[derive(Debug)]
pub(crate) struct MemoPlan {
    #[allow(dead_code)]
    memo: wgpu::Buffer,
    pub(crate) dispatches: Vec<Dispatch>,
    h: f32,
    /// The learning rate memo_sum applies, or None when it only writes the gradient.
    lr: Option<f32>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    k: &Pipelines,
    ctx: &Context,
    spec: &MlpSpec,
    rows: usize,
    layout: &CacheLayout,
    h: f32,
    theta: &wgpu::Buffer,
    x: &wgpu::Buffer,
    cache: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    _fits: Fits,
) -> Result<MemoPlan> {
    let layers = spec.layers();
    let (l0, l1) = (layers[0], layers[1]);
    let hidden = l0.fan_out;
    // The memo, then the masks (one binding: see the shader's mask_at).
    let memo = ctx.storage(
        "numerical memo and pixel sample masks",
        rows * VALUES * hidden + mask_words(l0.fan_in, rows),
    )?;
    let params = MemoParams {
        rows: word("rows", rows)?,
        inputs: word("inputs", l0.fan_in)?,
        hidden: word("hidden units", hidden)?,
        classes: word("classes", l1.fan_out)?,
        w1: word("parameter offset", l0.w_offset)?,
        b1: word("parameter offset", l0.b_offset)?,
        w2: word("parameter offset", l1.w_offset)?,
        act: act_code(spec.activation),
        pre: word("cache offset", layout.pre_at[0])?,
        post: word("cache offset", layout.post_at[0])?,
        probs: word("cache offset", layout.probs_at)?,
        labels: word("cache offset", layout.labels_at)?,
        h,
        lr: 0.0,
        update: 0,
    };
    let blocks = hidden.div_ceil(MEMO_WG as usize);
    // One workgroup per sample, then the workgroups that build the masks.
    let table = k.table.dispatch(
        ctx,
        &params,
        &[theta, x, cache, &memo],
        [
            word("memo table workgroups", table_groups(spec, rows) as usize)?,
            word("unit blocks", blocks)?,
            1,
        ],
    )?;
    let grid = groups_1d(ctx, spec.num_params());
    let sum = k
        .sum
        .dispatch(ctx, &params, &[theta, x, cache, &memo, grad], grid)?;
    Ok(MemoPlan {
        memo,
        dispatches: vec![table, sum],
        h,
        lr: None,
    })
}

impl MemoPlan {
    pub(crate) fn set_h(&mut self, ctx: &Context, h: f32) {
        if self.h != h {
            for d in &self.dispatches {
                d.set_params(ctx, field_word!(MemoParams, h), &[h.to_bits()]);
            }
            self.h = h;
        }
    }

    /// From the next submission on, memo_sum also applies theta -= lr grad (Some), or only
    /// writes the gradient (None).
    pub(crate) fn set_update(&mut self, ctx: &Context, lr: Option<f32>) {
        if self.lr != lr {
            // One queue write: lr and update are neighbours (the test below checks it).
            self.dispatches[1].set_params(
                ctx,
                field_word!(MemoParams, lr),
                &[lr.unwrap_or(0.0).to_bits(), u32::from(lr.is_some())],
            );
            self.lr = lr;
        }
    }

    /// Whether the launches apply the update themselves.
    pub(crate) fn updates(&self) -> bool {
        self.lr.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_match_the_shader_and_the_memo_is_bounded() {
        assert_eq!(std::mem::size_of::<MemoParams>(), 60);
        let body = SHADER.body;
        assert!(body.contains("@workgroup_size(MEMO_WG, 1, 1)\nfn memo_table"));
        assert!(body.contains("@workgroup_size(WORKGROUP_1D, 1, 1)\nfn memo_sum"));
        assert_eq!(
            field_word!(MemoParams, update),
            field_word!(MemoParams, lr) + 1
        );
        let chapter = MlpSpec::two_layer(784, 50, 10).unwrap();
        assert_eq!(memo_bytes(&chapter, 100), (100 * 256 * 50 + 4 * 784) * 4);
        let cap = Some(65_535);
        let groups = 65_535;
        assert!(applies(&chapter, 100, 128 << 20, groups, cap));
        assert!(applies(&chapter, 1000, 128 << 20, groups, cap));
        // Too big a memo, or a deeper net: the per-parameter kernel.
        let big = MlpSpec::two_layer(784, 1000, 10).unwrap();
        assert!(!applies(&big, 1000, u64::MAX, groups, None));
        let deep = MlpSpec::new(784, vec![20, 10], 10, crate::model::Activation::Sigmoid).unwrap();
        assert!(!applies(&deep, 100, u64::MAX, groups, None));
        // lavapipe's loop cap with a huge batch.
        assert!(!applies(
            &MlpSpec::two_layer(784, 2, 10).unwrap(),
            70_000,
            u64::MAX,
            u32::MAX,
            cap
        ));
        // A memo that fits, but memo_table's grid (50,000 rows + 19,147 mask workgroups) passes
        // 65,535; and a batch whose memo_sum vector straddling b1 and W2 runs 2 x 33,000 loop
        // iterations on lavapipe.
        let narrow = MlpSpec::two_layer(784, 4, 10).unwrap();
        assert!(memo_bytes(&narrow, 50_000) <= MEMO_MAX_BYTES);
        assert!(!applies(&narrow, 50_000, u64::MAX, groups, None));
        let three = MlpSpec::two_layer(784, 3, 10).unwrap();
        assert!(memo_bytes(&three, 33_000) <= MEMO_MAX_BYTES);
        assert!(!applies(&three, 33_000, u64::MAX, u32::MAX, cap));
    }
}
