//! Launcher of shaders/matmul.wgsl: the tiled product and its variants (transposed operands for
//! backprop, fused bias + activation for the forward pass). CPU twin: `cpu::matmul`
//! (`matmul`, `matmul_at_b`, `matmul_a_bt`) and `cpu::forward` for the epilogue.

use super::context::Context;
use super::launch::{
    act_code, decl, groups_2d, kernel_params, word, Dispatch, Kernel, Operand, Shader, Slot,
};
use crate::error::{Error, Result};
use crate::model::Activation;

pub(crate) const SHADER: Shader = Shader {
    file: "matmul.wgsl",
    body: include_str!("../../shaders/matmul.wgsl"),
    consts: &[],
    params: &[decl::<Dims>()],
};

/// Rows and columns of C per workgroup, and the step along K (shaders/matmul.wgsl: BM, BN, BK).
pub const BLOCK: u32 = 32;

/// Loop iterations one invocation runs for a product over `k` (every loop of the shader: per
/// step of BLOCK along K the step itself, 4 of staging and 4 of multiply-adds; then the store),
/// for drivers that cap them (`Context::loop_iteration_cap`).
pub fn loop_iterations(k: usize) -> u64 {
    (k as u64).div_ceil(u64::from(BLOCK)) * 9 + 5
}

/// Refuses, naming the cap, a product the driver would silently cut short.
fn check_loop_cap(ctx: &Context, k: usize) -> Result<()> {
    if let Some(cap) = ctx.loop_iteration_cap() {
        let need = loop_iterations(k);
        if need > cap {
            return Err(Error::Gpu(format!(
                "{}: a product over {k} terms (the input width or the batch) needs ~{need} loop \
                 iterations per invocation, and this driver ends an invocation's loops after {cap} \
                 (Mesa llvmpipe), which would give wrong sums; use --device cpu or a hardware GPU",
                ctx.describe()
            )));
        }
    }
    Ok(())
}

/// Which product (each a pipeline of its own, specialised by override constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matmul {
    /// C = A B (A: M x K, B: K x N).
    AB,
    /// C = A^T B (A stored K x M): weight gradients input^T . delta.
    AtB,
    /// C = A B^T (B stored N x K): delta . W^T.
    ABt,
    /// C = A B + bias (the output layer's logits).
    AddBias,
    /// C = A B + bias and POST = act(C) (a hidden layer: pre- and post-activation).
    AddBiasAct(Activation),
}

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
    ab: Kernel,
    at_b: Kernel,
    a_bt: Kernel,
    add_bias: Kernel,
    sigmoid: Kernel,
    relu: Kernel,
    a_bt_sigmoid_grad: Kernel,
    a_bt_relu_grad: Kernel,
    /// Bound where a variant has no use for a read slot (the bias of a plain product) and for a
    /// written slot (its post-activation): two buffers, because one buffer may not be both
    /// read-only and writable in one launch.
    unused_read: wgpu::Buffer,
    unused_write: wgpu::Buffer,
}

kernel_params! {
    /// shaders/matmul.wgsl's parameters (element offsets into each operand's buffer).
    struct Dims as "Dims" {
        m: u32,
        k: u32,
        n: u32,
        a_off: u32,
        b_off: u32,
        c_off: u32,
        bias_off: u32,
        post_off: u32,
    }
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Result<Self> {
        use Slot::*;
        let slots = [Read, Read, Read, ReadWrite, ReadWrite];
        let k = |name: &str, c: &[(&str, f64)]| Kernel::new(ctx, module, name, "matmul", &slots, c);
        Ok(Pipelines {
            ab: k("matmul A B", &[]),
            at_b: k("matmul A^T B", &[("TRANS_A", 1.0)]),
            a_bt: k("matmul A B^T", &[("TRANS_B", 1.0)]),
            add_bias: k("matmul + bias", &[("BIAS", 1.0)]),
            sigmoid: k(
                "matmul + bias + sigmoid",
                &[("BIAS", 1.0), ("ACT", act_code(Activation::Sigmoid).into())],
            ),
            relu: k(
                "matmul + bias + relu",
                &[("BIAS", 1.0), ("ACT", act_code(Activation::Relu).into())],
            ),
            a_bt_sigmoid_grad: k(
                "matmul A B^T * sigmoid'",
                &[
                    ("TRANS_B", 1.0),
                    ("BACK_ACT", act_code(Activation::Sigmoid).into()),
                ],
            ),
            a_bt_relu_grad: k(
                "matmul A B^T * relu'",
                &[
                    ("TRANS_B", 1.0),
                    ("BACK_ACT", act_code(Activation::Relu).into()),
                ],
            ),
            unused_read: ctx.storage("matmul: unused read binding", 1)?,
            unused_write: ctx.storage("matmul: unused written binding", 1)?,
        })
    }

    fn get(&self, kind: Matmul) -> &Kernel {
        match kind {
            Matmul::AB => &self.ab,
            Matmul::AtB => &self.at_b,
            Matmul::ABt => &self.a_bt,
            Matmul::AddBias => &self.add_bias,
            Matmul::AddBiasAct(Activation::Sigmoid) => &self.sigmoid,
            Matmul::AddBiasAct(Activation::Relu) => &self.relu,
        }
    }
}

/// Sizes and operands of one product. `bias` is needed by `AddBias` and `AddBiasAct`, `post` by
/// `AddBiasAct` only.
#[derive(Debug, Clone, Copy)]
pub struct MatmulArgs<'a> {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a: Operand<'a>,
    pub b: Operand<'a>,
    pub c: Operand<'a>,
    pub bias: Option<Operand<'a>>,
    pub post: Option<Operand<'a>>,
}

pub fn matmul(
    kernels: &Pipelines,
    ctx: &Context,
    kind: Matmul,
    args: &MatmulArgs,
) -> Result<Dispatch> {
    let wants = (
        matches!(kind, Matmul::AddBias | Matmul::AddBiasAct(_)),
        matches!(kind, Matmul::AddBiasAct(_)),
    );
    if wants != (args.bias.is_some(), args.post.is_some()) {
        return Err(Error::Gpu(format!(
            "matmul {kind:?}: bias given {}, post given {} (a bug in the caller)",
            args.bias.is_some(),
            args.post.is_some()
        )));
    }
    check_loop_cap(ctx, args.k)?;
    let bias = args.bias.unwrap_or(Operand::whole(&kernels.unused_read));
    let post = args.post.unwrap_or(Operand::whole(&kernels.unused_write));
    let dims = Dims {
        m: word("M", args.m)?,
        k: word("K", args.k)?,
        n: word("N", args.n)?,
        a_off: word("A offset", args.a.offset)?,
        b_off: word("B offset", args.b.offset)?,
        c_off: word("C offset", args.c.offset)?,
        bias_off: word("bias offset", bias.offset)?,
        post_off: word("post offset", post.offset)?,
    };
    kernels.get(kind).dispatch(
        ctx,
        &dims,
        &[
            args.a.buffer,
            args.b.buffer,
            bias.buffer,
            args.c.buffer,
            post.buffer,
        ],
        groups_2d(args.n, BLOCK, args.m, BLOCK),
    )
}

/// C = (A B^T) * act'(z), z (m x n) the layer's activation: the backward pass's
/// d_{l-1} = (d_l W_l^T) * act'(z_{l-1}) in one launch (`args.bias` and `args.post` unused).
pub fn matmul_a_bt_act_grad(
    kernels: &Pipelines,
    ctx: &Context,
    act: Activation,
    args: &MatmulArgs,
    z: Operand,
) -> Result<Dispatch> {
    check_loop_cap(ctx, args.k)?;
    let post = Operand::whole(&kernels.unused_write);
    // The activation z travels through the bias binding (BACK_ACT reads it there).
    let dims = Dims {
        m: word("M", args.m)?,
        k: word("K", args.k)?,
        n: word("N", args.n)?,
        a_off: word("A offset", args.a.offset)?,
        b_off: word("B offset", args.b.offset)?,
        c_off: word("C offset", args.c.offset)?,
        bias_off: word("activation offset", z.offset)?,
        post_off: 0,
    };
    let kernel = match act {
        Activation::Sigmoid => &kernels.a_bt_sigmoid_grad,
        Activation::Relu => &kernels.a_bt_relu_grad,
    };
    kernel.dispatch(
        ctx,
        &dims,
        &[
            args.a.buffer,
            args.b.buffer,
            z.buffer,
            args.c.buffer,
            post.buffer,
        ],
        groups_2d(args.n, BLOCK, args.m, BLOCK),
    )
}

#[cfg(test)]
mod tests {
    /// The Rust constant and the shader's tile agree.
    #[test]
    fn block_agrees_with_the_shader() {
        for name in ["BM", "BN", "BK"] {
            let line = format!("const {name}: u32 = {}u;", super::BLOCK);
            assert!(super::SHADER.body.contains(&line), "{line}");
        }
    }

    #[test]
    fn seventy_thousand_terms_fit_lavapipes_loop_cap() {
        assert!(super::loop_iterations(70_000) < 65_535);
        assert!(super::loop_iterations(300_000) > 65_535);
    }
}
