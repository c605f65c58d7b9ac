//! What the test files share: one device per test binary (a missing adapter FAILS with
//! CI=true, and only skips without it), the embedded data set, loaded once, and a CPU backend
//! with a known-wrong gradient for the checks to catch.
#![allow(dead_code)]

use gpu_train::data::{self, Mnist};
use gpu_train::gpu::Context;
use std::sync::{Arc, OnceLock};

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// One device for the whole binary; None (skip) only without an adapter and without CI=true.
pub fn context() -> Option<Arc<Context>> {
    static CTX: OnceLock<Option<Arc<Context>>> = OnceLock::new();
    CTX.get_or_init(|| match Context::gpu() {
        Ok(ctx) => {
            eprintln!("GPU tests on {}", ctx.describe());
            Some(Arc::new(ctx))
        }
        Err(e) if ci() => panic!("CI=true and no usable GPU adapter: {e}"),
        Err(e) => {
            eprintln!("skipped: no adapter ({e})");
            None
        }
    })
    .clone()
}

/// The device, or return from the test (only possible without CI=true, see `context`).
#[macro_export]
macro_rules! ctx_or_skip {
    () => {
        match common::context() {
            Some(c) => c,
            None => return,
        }
    };
}

pub fn mnist() -> Arc<Mnist> {
    static DATA: OnceLock<Arc<Mnist>> = OnceLock::new();
    DATA.get_or_init(|| Arc::new(data::embedded().unwrap_or_else(|e| panic!("{e}"))))
        .clone()
}

/// The CPU f32 backend with its b2 gradient 1% too large (every method): what a gradient check
/// must catch.
pub struct WrongB2(pub gpu_train::cpu::CpuBackend<f32>);

impl gpu_train::backend::Backend for WrongB2 {
    fn name(&self) -> String {
        "cpu f32 (wrong b2)".into()
    }
    fn spec(&self) -> &gpu_train::model::MlpSpec {
        self.0.spec()
    }
    fn set_params(&mut self, p: &gpu_train::model::Params) -> gpu_train::Result<()> {
        self.0.set_params(p)
    }
    fn params(&mut self) -> gpu_train::Result<gpu_train::model::Params> {
        self.0.params()
    }
    fn set_batch(&mut self, i: &[u32]) -> gpu_train::Result<()> {
        self.0.set_batch(i)
    }
    fn batch_loss(&mut self) -> gpu_train::Result<f64> {
        self.0.batch_loss()
    }
    fn gradient(&mut self, m: gpu_train::backend::GradMethod) -> gpu_train::Result<Vec<f64>> {
        let mut g = self.0.gradient(m)?;
        let n = g.len();
        for v in &mut g[n - 10..] {
            *v *= 1.01;
        }
        Ok(g)
    }
    fn step(&mut self, m: gpu_train::backend::GradMethod, lr: f64) -> gpu_train::Result<()> {
        self.0.step(m, lr)
    }
    fn evaluate(
        &mut self,
        s: gpu_train::backend::Split,
    ) -> gpu_train::Result<gpu_train::backend::Evaluation> {
        self.0.evaluate(s)
    }
}
