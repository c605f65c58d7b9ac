//! `Kernels`: every compute pipeline but the numerical gradient's, built once per device from
//! the `shaders/*.wgsl` sources. Each family's launcher takes its own `Pipelines`; the common
//! machinery (Kernel, Dispatch, build) is in `launch`, which knows no family.

use super::context::Context;
use super::launch::build;
use super::{accuracy, backprop, cross_entropy, gather, head, matmul, sgd, softmax, sparse};
use crate::error::Result;

/// Every pipeline of the project but the numerical gradient's (built per model, see
/// `numerical::pipelines`), built once per backend.
#[derive(Debug)]
pub struct Kernels {
    pub gather: gather::Pipelines,
    pub matmul: matmul::Pipelines,
    pub softmax: softmax::Pipelines,
    pub cross_entropy: cross_entropy::Pipelines,
    pub backprop: backprop::Pipelines,
    pub sgd: sgd::Pipelines,
    pub accuracy: accuracy::Pipelines,
    pub head: head::Pipelines,
    pub sparse: sparse::Pipelines,
}

impl Kernels {
    pub fn new(ctx: &Context) -> Result<Kernels> {
        let k = Kernels {
            gather: build(ctx, "gather.wgsl", gather::SOURCE, gather::Pipelines::new)?,
            matmul: build(ctx, "matmul.wgsl", matmul::SOURCE, matmul::Pipelines::new)??,
            softmax: build(
                ctx,
                "softmax.wgsl",
                softmax::SOURCE,
                softmax::Pipelines::new,
            )?,
            cross_entropy: build(
                ctx,
                "cross_entropy.wgsl",
                cross_entropy::SOURCE,
                cross_entropy::Pipelines::new,
            )?,
            backprop: build(
                ctx,
                "backprop.wgsl",
                backprop::SOURCE,
                backprop::Pipelines::new,
            )?,
            sgd: build(ctx, "sgd.wgsl", sgd::SOURCE, sgd::Pipelines::new)?,
            accuracy: build(
                ctx,
                "accuracy.wgsl",
                accuracy::SOURCE,
                accuracy::Pipelines::new,
            )?,
            head: build(ctx, "head.wgsl", head::SOURCE, head::Pipelines::new)??,
            sparse: build(ctx, "sparse.wgsl", sparse::SOURCE, sparse::Pipelines::new)?,
        };
        ctx.check("building the kernels")?;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        accuracy, backprop, cross_entropy, gather, head, matmul, numerical, sgd, softmax, sparse,
    };

    /// Every shader's workgroup size is the one its launcher sizes grids by: 1-D kernels
    /// WORKGROUP_1D (their index arithmetic also multiplies by it), the gather 64 x 1, the matmul
    /// 8 x 8 for a BLOCK x BLOCK tile (4 x 4 outputs per invocation).
    #[test]
    fn workgroup_sizes_agree_between_rust_and_wgsl() {
        let one_d = format!(
            "@workgroup_size({}, 1, 1)",
            super::super::launch::WORKGROUP_1D
        );
        for (file, src) in [
            ("accuracy", accuracy::SOURCE),
            ("backprop", backprop::SOURCE),
            ("cross_entropy", cross_entropy::SOURCE),
            ("head", head::SOURCE),
            ("numerical", numerical::SOURCE),
            ("sgd", sgd::SOURCE),
            ("softmax", softmax::SOURCE),
        ] {
            let sizes: Vec<&str> = src
                .lines()
                .filter(|l| l.contains("@workgroup_size("))
                .collect();
            assert!(!sizes.is_empty(), "{file}");
            for l in sizes {
                assert!(l.contains(&one_d), "{file}.wgsl: {l}");
            }
        }
        let g = format!("@workgroup_size({}, 1, 1)", gather::WORKGROUP_X);
        assert!(gather::SOURCE.contains(&g));
        let per_side = matmul::BLOCK / 4;
        assert!(matmul::SOURCE.contains(&format!("@workgroup_size({per_side}, {per_side}, 1)")));
        assert!(matmul::SOURCE.contains(&format!("const WG: u32 = {per_side}u;")));
    }

    /// Every kernel's Rust parameter struct mirrors its WGSL struct: field names, types, order,
    /// and a size of 4 bytes a field (a multiple of 16, as uniforms need).
    #[test]
    fn parameter_structs_agree_between_rust_and_wgsl() {
        use super::super::launch::check_params;
        use super::super::numerical_memo;
        let checks = [
            check_params::<accuracy::Dims>("accuracy", accuracy::SOURCE),
            check_params::<backprop::Dims>("backprop", backprop::SOURCE),
            check_params::<cross_entropy::Dims>("cross_entropy", cross_entropy::SOURCE),
            check_params::<gather::GatherParams>("gather", gather::SOURCE),
            check_params::<head::HeadParams>("head", head::SOURCE),
            check_params::<matmul::Dims>("matmul", matmul::SOURCE),
            check_params::<numerical::NumericalParams>("numerical", numerical::SOURCE),
            check_params::<numerical_memo::MemoParams>("numerical_memo", numerical_memo::SOURCE),
            check_params::<sgd::Params>("sgd", sgd::SOURCE),
            check_params::<softmax::Dims>("softmax", softmax::SOURCE),
            check_params::<sparse::SparseParams>("sparse", sparse::SOURCE),
        ];
        let failures: Vec<String> = checks.into_iter().filter_map(|c| c.err()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// The check itself: a renamed, retyped, reordered or missing field is caught.
    #[test]
    fn the_parameter_check_sees_a_drifted_struct() {
        use super::super::launch::check_params;
        let src = sgd::SOURCE;
        assert!(check_params::<sgd::Params>("sgd", src).is_ok());
        for (from, to) in [
            ("    lr: f32,", "    rate: f32,"),
            ("    lr: f32,", "    lr: u32,"),
            ("    n: u32,\n    lr: f32,", "    lr: f32,\n    n: u32,"),
            ("    _pad5: u32,\n", ""),
        ] {
            let drifted = src.replacen(from, to, 1);
            assert_ne!(drifted, src, "{from}");
            assert!(
                check_params::<sgd::Params>("sgd", &drifted).is_err(),
                "{from} -> {to}"
            );
        }
    }
}
