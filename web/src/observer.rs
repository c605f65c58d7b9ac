//! The page as the training loop's observer: what the CLI's printer and reference check are
//! to `gpu-train train`. It reports to the page's script (one callback, `emit(kind, json)`),
//! runs the gradient check against the f64 reference at the first step and at each
//! evaluation, hands the browser's event loop a turn at every pause, and stops the run when
//! the page's stop button was pressed.

use gpu_train::backend::{Backend, GradMethod};
use gpu_train::check::Checker;
use gpu_train::data::SamplerState;
use gpu_train::session::ChecksSummary;
use gpu_train::train::{Control, EvalRecord, Observer};
use gpu_train::wait::LocalFuture;
use gpu_train::{Error, Result};
use js_sys::{Function, Promise};
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &Function, ms: i32) -> JsValue;
    /// Milliseconds since the page's navigation started.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub fn performance_now() -> f64;
}

/// Gives the browser's event loop a turn (drawing, the stop button, input): the CPU path
/// computes synchronously, so without this the page would freeze until the run ended.
pub async fn yield_to_browser() {
    let turn = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, 0);
    });
    // A timer's promise cannot reject; there is nothing to handle.
    let _ = JsFuture::from(turn).await;
}

pub struct PageObserver {
    pub emit: Function,
    pub stop: Rc<Cell<bool>>,
    pub checker: Checker,
    pub grad: GradMethod,
    pub eval_every: usize,
    /// Iterations between two turns of the event loop (and progress reports).
    pub pause_every: usize,
    pub records: Vec<Value>,
    pub checks: ChecksSummary,
    /// `performance.now()` (ms) at the first step: the page's startup figure.
    pub first_step_ms: Option<f64>,
}

impl PageObserver {
    fn send(&self, kind: &str, value: &Value) -> Result<()> {
        self.emit
            .call2(
                &JsValue::NULL,
                &JsValue::from_str(kind),
                &JsValue::from_str(&value.to_string()),
            )
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("the page's {kind} handler failed: {e:?}")))
    }

    fn check_due(&self, iter: usize) -> bool {
        iter == 0 || iter.is_multiple_of(self.eval_every)
    }

    async fn check(&mut self, iter: usize, backend: &mut dyn Backend, batch: &[u32]) -> Result<()> {
        backend.set_batch(batch)?;
        let (total, tensors) = self
            .checker
            .check_async(iter, backend, batch, self.grad)
            .await?;
        self.checks.record(total);
        let tensors: Vec<Value> = tensors
            .iter()
            .map(|t| json!({"name": t.name, "relative": t.relative, "max_abs": t.max_abs}))
            .collect();
        self.send(
            "check",
            &json!({"iteration": iter, "relative": total, "tensors": tensors}),
        )
    }
}

impl Observer for PageObserver {
    fn next_pause(&self, done: usize) -> Option<usize> {
        Some((done / self.pause_every + 1) * self.pause_every)
    }

    fn before_step_async<'a>(
        &'a mut self,
        iter: usize,
        backend: &'a mut dyn Backend,
        batch: &'a [u32],
    ) -> LocalFuture<'a, Result<()>> {
        Box::pin(async move {
            self.first_step_ms.get_or_insert_with(performance_now);
            if self.check_due(iter) {
                self.check(iter, backend, batch).await?;
            }
            yield_to_browser().await;
            Ok(())
        })
    }

    fn on_losses(&mut self, first: usize, losses: &[f64]) -> Result<()> {
        self.send("losses", &json!({"first": first, "losses": losses}))
    }

    fn on_eval(&mut self, rec: &EvalRecord) -> Result<()> {
        let record = rec.to_json();
        self.send("eval", &record)?;
        self.records.push(record);
        Ok(())
    }

    fn progress(&mut self, _done: usize) -> Control {
        if self.stop.get() {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn after_step(
        &mut self,
        done: usize,
        _backend: &mut dyn Backend,
        _sampler: &SamplerState,
    ) -> Result<Control> {
        self.send("progress", &json!({"iteration": done}))?;
        Ok(self.progress(done))
    }
}
