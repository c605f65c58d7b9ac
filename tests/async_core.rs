//! The async core: `train::train_from_async` is the one loop, `train_from` the native blocking
//! wrapper over it. Natively every GPU future is resolved when first polled (the read-back
//! waits inside, as before: the core costs native no extra wait), and a loop whose observer
//! really suspends at each pause, as the page does to give the browser's event loop a turn,
//! trains to exactly the same records as the blocking call. With CI=true a missing adapter
//! fails.

mod common;
use common::mnist;

use gpu_train::backend::{Backend, GradMethod, PerturbStrategy, Split};
use gpu_train::gpu::GpuBackend;
use gpu_train::model::{MlpSpec, Params};
use gpu_train::train::{self, EvalRecord, Observer, TrainConfig};
use gpu_train::wait::LocalFuture;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

fn backend() -> Option<GpuBackend> {
    let ctx = common::context()?;
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let mut g = GpuBackend::new(ctx, spec.clone(), mnist()).unwrap_or_else(|e| panic!("{e}"));
    g.set_params(&Params::init(&spec, 3)).unwrap();
    Some(g)
}

/// Polls `fut` once with a waker that does nothing: Some(output) when it was resolved.
fn poll_once<T>(fut: Pin<&mut dyn Future<Output = T>>) -> Option<T> {
    match fut.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

#[test]
fn native_gpu_futures_are_resolved_at_the_first_poll_and_agree_with_the_blocking_calls() {
    let Some(mut g) = backend() else { return };
    let batch: Vec<u32> = (0..100).collect();
    g.set_batch(&batch).unwrap();
    let method = GradMethod::Numerical {
        strategy: PerturbStrategy::Incremental,
        h: 1e-4,
    };
    let blocking = g.gradient(method).unwrap();
    let mut fut = g.gradient_async(method);
    let awaited = poll_once(fut.as_mut()).expect("a native read-back resolves when first polled");
    drop(fut);
    assert_eq!(
        awaited.unwrap(),
        blocking,
        "the same core, the same gradient"
    );

    let eval = g.evaluate(Split::Test).unwrap();
    let mut fut = g.evaluate_async(Split::Test);
    assert_eq!(poll_once(fut.as_mut()).expect("resolved").unwrap(), eval);
    drop(fut);
    let mut fut = g.params_async();
    let params = poll_once(fut.as_mut()).expect("resolved").unwrap();
    drop(fut);
    assert_eq!(params.data.len(), 39_760);
}

/// Keeps the evaluations, and at every pause suspends once (Pending, then Ready after waking
/// itself), as a browser's yield to its event loop does.
#[derive(Default)]
struct Yielding {
    evals: Vec<EvalRecord>,
    suspended: usize,
    every: usize,
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Observer for Yielding {
    fn next_pause(&self, done: usize) -> Option<usize> {
        Some((done / self.every + 1) * self.every)
    }
    fn before_step_async<'a>(
        &'a mut self,
        _iter: usize,
        backend: &'a mut dyn Backend,
        _batch: &'a [u32],
    ) -> LocalFuture<'a, gpu_train::Result<()>> {
        Box::pin(async move {
            YieldOnce(false).await;
            self.suspended += 1;
            // An awaited read-back at the pause, as the page's gradient check makes.
            backend.params_async().await.map(drop)
        })
    }
    fn on_eval(&mut self, rec: &EvalRecord) -> gpu_train::Result<()> {
        self.evals.push(*rec);
        Ok(())
    }
}

fn without_seconds(r: &EvalRecord) -> (usize, Option<f64>, f64, usize, f64, usize) {
    (
        r.iter,
        r.batch_loss,
        r.train.loss,
        r.train.correct,
        r.test.loss,
        r.test.correct,
    )
}

#[test]
fn a_loop_that_suspends_at_every_pause_trains_exactly_as_the_blocking_one() {
    let Some(mut a) = backend() else { return };
    let Some(mut b) = backend() else { return };
    let cfg = TrainConfig {
        batch: 100,
        lr: 0.1,
        iters: 60,
        seed: 5,
        eval_every: 30,
        grad: GradMethod::Backprop,
        ..TrainConfig::default()
    };
    let n = mnist().train.len();
    let mut blocking = Vec::new();
    train::train(&mut a, n, &cfg, |r: &EvalRecord| blocking.push(*r)).unwrap();

    let mut obs = Yielding {
        every: 7,
        ..Yielding::default()
    };
    let summary =
        pollster::block_on(train::train_from_async(&mut b, n, &cfg, None, &mut obs)).unwrap();
    assert_eq!(summary.iters, 60);
    // Pauses at 0, 7, 14, ..., 56, and after each evaluation (30): chunks 0-7-14-21-28-30-35-...
    assert!(obs.suspended >= 9, "suspended {} times", obs.suspended);
    let got: Vec<_> = obs.evals.iter().map(without_seconds).collect();
    let want: Vec<_> = blocking.iter().map(without_seconds).collect();
    assert_eq!(got.len(), 3, "evaluations at 0, 30 and 60");
    assert_eq!(got, want, "the same loop: bit-identical records");
    assert_eq!(a.params().unwrap().data, b.params().unwrap().data);
}
