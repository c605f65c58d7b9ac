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
            gather: build(ctx, &gather::SHADER, gather::Pipelines::new)?,
            matmul: build(ctx, &matmul::SHADER, matmul::Pipelines::new)??,
            softmax: build(ctx, &softmax::SHADER, softmax::Pipelines::new)?,
            cross_entropy: build(ctx, &cross_entropy::SHADER, cross_entropy::Pipelines::new)?,
            backprop: build(ctx, &backprop::SHADER, backprop::Pipelines::new)?,
            sgd: build(ctx, &sgd::SHADER, sgd::Pipelines::new)?,
            accuracy: build(ctx, &accuracy::SHADER, accuracy::Pipelines::new)?,
            head: build(ctx, &head::SHADER, head::Pipelines::new)??,
            sparse: build(ctx, &sparse::SHADER, sparse::Pipelines::new)?,
        };
        ctx.check("building the kernels")?;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::super::launch::{Shader, WORKGROUP_1D};
    use super::super::{
        accuracy, backprop, cross_entropy, gather, head, matmul, numerical, numerical_memo, sgd,
        softmax, sparse,
    };

    /// Every shader, as its launcher builds it.
    const SHADERS: [Shader; 11] = [
        accuracy::SHADER,
        backprop::SHADER,
        cross_entropy::SHADER,
        gather::SHADER,
        head::SHADER,
        matmul::SHADER,
        numerical::SHADER,
        numerical_memo::SHADER,
        sgd::SHADER,
        softmax::SHADER,
        sparse::SHADER,
    ];

    /// The source as built, with the constant a launcher adds per model (numerical's WIDTH).
    fn source(shader: &Shader) -> String {
        let extra: &[(&str, u32)] = if shader.file == "numerical.wgsl" {
            &[("WIDTH", 10)]
        } else {
            &[]
        };
        shader.source_with(WORKGROUP_1D, extra)
    }

    /// Every workgroup size is a named constant the launcher sizes grids by, never a number in
    /// the shader: the 1-D kernels WORKGROUP_1D (prepended, as their folded index and their
    /// reductions' strides), the gather GATHER_WG, the sparse layer SPARSE_WG, memo_table MEMO_WG,
    /// the matmul WG x WG for a BLOCK x BLOCK tile (4 x 4 outputs per invocation).
    #[test]
    fn workgroup_sizes_are_the_launchers_constants() {
        for shader in SHADERS {
            let sizes: Vec<&str> = shader
                .body
                .lines()
                .filter(|l| l.contains("@workgroup_size("))
                .collect();
            assert!(!sizes.is_empty(), "{}", shader.file);
            for l in sizes {
                let named = l.contains("@workgroup_size(WORKGROUP_1D, 1, 1)")
                    || l.contains("@workgroup_size(GATHER_WG, 1, 1)")
                    || l.contains("@workgroup_size(SPARSE_WG, 1, 1)")
                    || l.contains("@workgroup_size(MEMO_WG, 1, 1)")
                    || (shader.file == "matmul.wgsl" && l.contains("@workgroup_size(8, 8, 1)"));
                assert!(named, "{}: {l}", shader.file);
            }
            // No invocation index or reduction steps by a number of its own.
            for bad in ["* 256u", "+= 256u", "= 128u", "array<f32, 256>"] {
                assert!(!shader.body.contains(bad), "{}: {bad}", shader.file);
            }
        }
        let per_side = matmul::BLOCK / 4;
        assert_eq!(per_side, 8);
        assert!(matmul::SHADER
            .body
            .contains(&format!("const WG: u32 = {per_side}u;")));
        let consts = |s: Shader| s.consts.to_vec();
        assert_eq!(consts(gather::SHADER), [("GATHER_WG", gather::WORKGROUP_X)]);
        assert_eq!(consts(sparse::SHADER), [("SPARSE_WG", sparse::SPARSE_WG)]);
        assert!(consts(numerical_memo::SHADER).contains(&("MEMO_WG", numerical_memo::MEMO_WG)));
    }

    /// The parameter structs are declared once, in Rust: no shader file declares one of its own
    /// (nor pads one by hand), and each is generated into its shader's source exactly once.
    #[test]
    fn parameter_structs_come_only_from_the_rust_declarations() {
        for shader in SHADERS {
            assert!(!shader.params.is_empty(), "{}", shader.file);
            assert!(!shader.body.contains("_pad"), "{}", shader.file);
            let src = source(&shader);
            for d in shader.params {
                let line = format!("struct {} {{", d.name);
                assert!(!shader.body.contains(&line), "{}: {line}", shader.file);
                assert_eq!(src.matches(&line).count(), 1, "{}: {line}", shader.file);
            }
        }
    }

    /// Every shader parses and validates (naga, as wgpu builds it) with its generated
    /// declarations: a field a shader reads that Rust does not declare fails here, without a
    /// device.
    #[test]
    fn every_shader_validates_with_its_generated_declarations() {
        for shader in SHADERS {
            if let Err(e) = validate(&source(&shader)) {
                panic!("{}: {e}", shader.file);
            }
        }
    }

    /// The check itself: a shader reading a field that the Rust struct lacks (renamed,
    /// dropped) or with another type does not validate.
    #[test]
    fn a_field_the_rust_struct_lacks_fails_validation() {
        use super::super::launch::ParamsDecl;
        let base = sgd::SHADER;
        assert!(validate(&source(&base)).is_ok());
        for fields in [
            &[("n", "u32"), ("rate", "f32")][..],
            &[("n", "u32")][..],
            &[("n", "u32"), ("lr", "u32")][..],
        ] {
            let params = [ParamsDecl {
                name: "Params",
                fields,
            }];
            let drifted = Shader {
                params: Box::leak(Box::new(params)),
                ..base
            };
            assert!(validate(&source(&drifted)).is_err(), "{fields:?}");
        }
    }

    fn validate(source: &str) -> Result<(), String> {
        let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
    }
}
