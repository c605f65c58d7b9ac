//! What the GPU test files share: one device per test binary (a missing adapter FAILS with
//! CI=true, and only skips without it) and the embedded data set, loaded once.
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
