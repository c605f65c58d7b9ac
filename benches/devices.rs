//! CPU against GPU for the forward pass (batch loss, read back) and a backprop gradient (read
//! back), 784-50-10, batch 100 and 1000, f32 on both. `cargo bench --bench devices`.
//!
//! On the project's machine the GPU is lavapipe (a CPU emulating a GPU), so these figures say the
//! path works and how its cost grows, not how fast a GPU is. Without any adapter the GPU rows
//! are left out, saying so (a benchmark, unlike a test, has nothing to fail).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gpu_train::backend::{Backend, GradMethod};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{self, Mnist, Sampler, SamplerKind};
use gpu_train::gpu::{Context, GpuBackend};
use gpu_train::model::{MlpSpec, Params};
use std::sync::Arc;

fn backends(spec: &MlpSpec, data: &Arc<Mnist>) -> Vec<(&'static str, Box<dyn Backend>)> {
    let mut out: Vec<(&'static str, Box<dyn Backend>)> = vec![(
        "cpu",
        Box::new(CpuBackend::<f32>::new(spec.clone(), data.clone()).expect("cpu backend")),
    )];
    match Context::gpu() {
        Ok(ctx) => match GpuBackend::new(Arc::new(ctx), spec.clone(), data.clone()) {
            Ok(g) => out.push(("gpu", Box::new(g))),
            Err(e) => eprintln!("GPU rows left out: {e}"),
        },
        Err(e) => eprintln!("GPU rows left out: {e}"),
    }
    for (_, b) in out.iter_mut() {
        b.set_params(&Params::init(spec, 0)).expect("params");
    }
    out
}

fn devices(c: &mut Criterion) {
    let data = Arc::new(data::embedded().expect("embedded MNIST"));
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let mut all = backends(&spec, &data);
    let mut batch = Vec::new();
    for (work, group_name) in [(0, "forward_784_50_10"), (1, "backprop_784_50_10")] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10);
        for rows in [100usize, 1000] {
            // A sampler draws one batch size: a new one per size.
            let mut sampler =
                Sampler::new(SamplerKind::WithReplacement, data.train.len(), 0).unwrap();
            for (name, backend) in all.iter_mut() {
                group.bench_with_input(BenchmarkId::new(*name, rows), &rows, |b, &rows| {
                    b.iter(|| {
                        sampler.next_batch(rows, &mut batch).unwrap();
                        backend.set_batch(&batch).unwrap();
                        if work == 0 {
                            backend.batch_loss().unwrap();
                        } else {
                            backend.gradient(GradMethod::Backprop).unwrap();
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, devices);
criterion_main!(benches);
