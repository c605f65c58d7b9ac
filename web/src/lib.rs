//! The page's side of gpu-train: a thin front end over the library, as the CLI is. It parses
//! the page's settings, opens the browser's WebGPU device (or says why not and uses the wasm
//! CPU path), runs the library's one training loop (`train_from_async`) with the page as its
//! observer, and predicts a drawn digit through `gpu-train predict`'s own preparation. No
//! training logic lives here.
//!
//! JavaScript sees: `Data` (the four IDX files fetched by the page), `open_webgpu()`,
//! `Trainer` (`train(query, emit)`, `stop()`, `predict(w, h, rgba)`), `parse_settings(query)`
//! and `tolerances()`.

mod observer;
pub mod settings;

use gpu_train::backend::{Backend, GradMethod};
use gpu_train::check::{tolerance_for, Checker};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{Mnist, SamplerKind};
use gpu_train::gpu::{Context, GpuBackend};
use gpu_train::model::{MlpSpec, Params};
use gpu_train::session::ChecksSummary;
use gpu_train::train::{iters_per_epoch, train_from_async, Ending, TrainConfig, TrainSummary};
use observer::{performance_now, PageObserver};
use serde_json::{json, Value};
use settings::Settings;
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// The chapter's hidden layer.
const HIDDEN: usize = 50;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The settings in a query, as JSON (`{grad, iters, batch, lr, seed, device, autostart}`), or
/// an error naming the key at fault.
#[wasm_bindgen]
pub fn parse_settings(query: &str) -> Result<String, JsError> {
    let s = Settings::from_query(query).map_err(js_error)?;
    Ok(
        json!({"grad": s.grad_name(), "iters": s.iters, "batch": s.batch, "lr": s.lr,
              "seed": s.seed, "device": s.device_name(), "autostart": s.autostart,
              "query": s.to_query()})
        .to_string(),
    )
}

/// The project's tolerances the page and its test hold results to (src/tolerance.rs, where
/// each one's reason is written), as JSON.
#[wasm_bindgen]
pub fn tolerances() -> String {
    use gpu_train::tolerance::{
        GRADIENT_CHECK_ATOL, WEB_LOSS_VS_NATIVE_CPU_REL, WEB_NUMERICAL_CHECK_REL,
    };
    json!({
        "loss_vs_native_cpu_rel": WEB_LOSS_VS_NATIVE_CPU_REL,
        "numerical_check_rel": WEB_NUMERICAL_CHECK_REL,
        "backprop_check_rel": tolerance_for(GradMethod::Backprop),
        "check_atol": GRADIENT_CHECK_ATOL,
    })
    .to_string()
}

/// MNIST as the page fetched it: the four canonical `.gz` files, checked by the library's IDX
/// reader exactly as the CLI checks them.
#[wasm_bindgen]
pub struct Data {
    mnist: Arc<Mnist>,
}

#[wasm_bindgen]
impl Data {
    #[wasm_bindgen(constructor)]
    pub fn new(
        train_images: &[u8],
        train_labels: &[u8],
        test_images: &[u8],
        test_labels: &[u8],
    ) -> Result<Data, JsError> {
        let files = [train_images, train_labels, test_images, test_labels];
        let mnist = gpu_train::data::from_idx_bytes("data/", files, None).map_err(js_error)?;
        Ok(Data {
            mnist: Arc::new(mnist),
        })
    }

    /// "30000 train / 5000 test, 28x28"-style line for the page.
    pub fn describe(&self) -> String {
        let (tr, te) = (&self.mnist.train, &self.mnist.test);
        format!(
            "{} train / {} test images, {}x{}",
            tr.len(),
            te.len(),
            tr.cols(),
            tr.rows()
        )
    }
}

/// The browser's WebGPU device.
#[wasm_bindgen]
pub struct WebGpu {
    ctx: Arc<Context>,
}

#[wasm_bindgen]
impl WebGpu {
    /// The adapter as JSON: name, backend, vendor, driver, and the limits the kernels lean on.
    pub fn info(&self) -> String {
        let i = self.ctx.adapter_info();
        let l = self.ctx.limits();
        json!({
            "name": i.name, "backend": format!("{:?}", i.backend), "vendor": i.vendor,
            "device_type": format!("{:?}", i.device_type), "driver": i.driver,
            "description": self.ctx.describe(),
            "limits": {
                "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "max_compute_workgroup_size_x": l.max_compute_workgroup_size_x,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
            },
        })
        .to_string()
    }
}

/// Opens a device on the browser's WebGPU adapter; the error says why there is none (the
/// page then trains on the CPU and shows it).
#[wasm_bindgen]
pub async fn open_webgpu() -> Result<WebGpu, JsError> {
    let ctx = Context::request_async().await.map_err(js_error)?;
    Ok(WebGpu { ctx: Arc::new(ctx) })
}

struct Inner {
    backend: Box<dyn Backend>,
    data: Arc<Mnist>,
    device: &'static str,
    /// The net the last run ended with (f32, the model's layout), for `predict`.
    trained: Option<Vec<f32>>,
}

/// One net on one device, trained by the library's loop.
#[wasm_bindgen]
pub struct Trainer {
    inner: Rc<RefCell<Inner>>,
    stop: Rc<Cell<bool>>,
}

fn chapter_spec(data: &Mnist) -> gpu_train::Result<MlpSpec> {
    MlpSpec::two_layer(data.train.input_width(), HIDDEN, data.train.classes())
}

#[wasm_bindgen]
impl Trainer {
    /// The chapter's 784-50-10 net on the WebGPU device.
    pub fn on_webgpu(gpu: &WebGpu, data: &Data) -> Result<Trainer, JsError> {
        let spec = chapter_spec(&data.mnist).map_err(js_error)?;
        let backend =
            GpuBackend::new(gpu.ctx.clone(), spec, data.mnist.clone()).map_err(js_error)?;
        Ok(Trainer::with(Box::new(backend), data, "webgpu"))
    }

    /// The chapter's net on the wasm CPU path (f32, SIMD128).
    pub fn on_cpu(data: &Data) -> Result<Trainer, JsError> {
        let spec = chapter_spec(&data.mnist).map_err(js_error)?;
        let backend = CpuBackend::<f32>::new(spec, data.mnist.clone()).map_err(js_error)?;
        Ok(Trainer::with(Box::new(backend), data, "cpu"))
    }

    fn with(backend: Box<dyn Backend>, data: &Data, device: &'static str) -> Trainer {
        Trainer {
            inner: Rc::new(RefCell::new(Inner {
                backend,
                data: data.mnist.clone(),
                device,
                trained: None,
            })),
            stop: Rc::new(Cell::new(false)),
        }
    }

    /// "webgpu" or "cpu".
    pub fn device(&self) -> String {
        self.inner
            .try_borrow()
            .map(|i| i.device.to_string())
            .unwrap_or_else(|_| "busy".into())
    }

    /// Asks the run in progress to stop at its next pause.
    pub fn stop(&self) {
        self.stop.set(true);
    }

    /// Trains a fresh net with the settings of `query`, calling `emit(kind, json)` with
    /// "check", "losses", "eval" and "progress" events; resolves to the final record (JSON).
    // The net stays borrowed for the whole run, awaits included, on purpose: a second `train`
    // or a `predict` meanwhile gets a clear "busy" error from `try_borrow` instead of a net
    // that changes under it.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn train(&self, query: String, emit: js_sys::Function) -> js_sys::Promise {
        let (inner, stop) = (self.inner.clone(), self.stop.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let mut inner = inner
                .try_borrow_mut()
                .map_err(|_| JsValue::from_str("a run is in progress: stop it first"))?;
            stop.set(false);
            let settings = Settings::from_query(&query).map_err(|e| JsValue::from_str(&e))?;
            let fin = run(&mut inner, &settings, emit, stop)
                .await
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            Ok(JsValue::from_str(&fin.to_string()))
        })
    }

    /// The top 3 classes of a drawing (`width x height` RGBA pixels, a canvas's
    /// `getImageData`) under the net just trained, prepared exactly as `gpu-train predict`
    /// prepares a picture: JSON `{top: [[class, probability], ...], pixels: [784 bytes]}`.
    pub fn predict(&self, width: usize, height: usize, rgba: Vec<u8>) -> Result<String, JsError> {
        use gpu_train::predict::{
            as_dataset, grey_from_rgba, prepare, probabilities_f32, top_k, MNIST_FIELD,
        };
        let inner = self
            .inner
            .try_borrow()
            .map_err(|_| js_error("the net is training: wait for the run to end, or stop it"))?;
        let params = inner
            .trained
            .as_ref()
            .ok_or_else(|| js_error("no net trained yet: train one first"))?;
        let spec = inner.backend.spec();
        let what = Path::new("the drawing");
        let grey = grey_from_rgba(what, width, height, rgba).map_err(js_error)?;
        let prepared = prepare(what, &grey, MNIST_FIELD).map_err(js_error)?;
        let ds = as_dataset(std::slice::from_ref(&prepared), MNIST_FIELD, spec.classes)
            .map_err(js_error)?;
        let probs = probabilities_f32(spec, params, &ds);
        let top: Vec<Value> = top_k(&probs, 3)
            .into_iter()
            .map(|(k, p)| json!([k, p]))
            .collect();
        Ok(json!({"top": top, "pixels": prepared.pixels}).to_string())
    }
}

/// One run: the chapter's initial net for the seed, the library's loop, the final record.
async fn run(
    inner: &mut Inner,
    s: &Settings,
    emit: js_sys::Function,
    stop: Rc<Cell<bool>>,
) -> gpu_train::Result<Value> {
    let train_size = inner.data.train.len();
    let spec = inner.backend.spec().clone();
    inner.backend.set_params(&Params::init(&spec, s.seed))?;
    inner.trained = None;
    let cfg = TrainConfig {
        batch: s.batch,
        lr: s.lr,
        iters: s.iters,
        seed: s.seed,
        eval_every: iters_per_epoch(train_size, s.batch),
        grad: s.grad,
        sampler: SamplerKind::WithReplacement,
        loss_every: 1,
    };
    let mut page = PageObserver {
        emit,
        stop,
        checker: Checker::new(spec, inner.data.clone())?,
        grad: s.grad,
        eval_every: cfg.eval_every,
        pause_every: pause_every(s, inner.device),
        records: Vec::new(),
        checks: ChecksSummary::default(),
        first_step_ms: None,
    };
    let started = performance_now();
    let summary = train_from_async(&mut *inner.backend, train_size, &cfg, None, &mut page).await?;
    let elapsed = (performance_now() - started) / 1e3;
    let params = inner.backend.params_async().await?;
    inner.trained = Some(params.to_f32());
    Ok(final_record(&summary, &page, inner.device, elapsed))
}

/// Iterations between two turns of the browser's event loop: about a tenth of a second of
/// work on the slower path, so the page keeps drawing and the stop button answers.
fn pause_every(s: &Settings, device: &str) -> usize {
    let per_turn = match (s.grad, device) {
        (GradMethod::Backprop, _) => 50,
        (GradMethod::Numerical { .. }, "cpu") => 10,
        (GradMethod::Numerical { .. }, _) => 25,
    };
    (per_turn * 100 / s.batch.max(1)).clamp(1, per_turn)
}

/// The run's last line, with the keys of `gpu-train train --json`'s final record that a page
/// has (docs/SCHEMA.md; no run folder, no checkpoint).
fn final_record(summary: &TrainSummary, page: &PageObserver, device: &str, elapsed: f64) -> Value {
    let last = summary.last();
    let ending = match &summary.ending {
        Ending::Completed => json!("completed"),
        Ending::Interrupted => json!("interrupted"),
        Ending::Diverged { .. } => json!("diverged"),
    };
    let why = match &summary.ending {
        Ending::Diverged { why, .. } => Some(why.clone()),
        _ => None,
    };
    json!({
        "final": true,
        "ending": ending,
        "diverged_because": why,
        "device": device,
        "iteration": summary.iters,
        "epoch": last.map(|r| r.epoch),
        "train_loss": last.map(|r| r.train.loss),
        "train_acc": last.map(|r| r.train.accuracy()),
        "test_loss": last.map(|r| r.test.loss),
        "test_acc": last.map(|r| r.test.accuracy()),
        "best_test_acc": summary.best_test_accuracy(),
        "seconds": summary.seconds,
        "iterations_per_second": summary.iters as f64 / elapsed.max(1e-9),
        "startup_seconds": page.first_step_ms.map(|ms| ms / 1e3),
        "checks": {"passed": page.checks.passed, "worst": page.checks.worst},
    })
}
