//! One training step of the chapter's 784-50-10 net at batch 100, f32 on the CPU:
//! the numerical gradient by both strategies, and backprop. `cargo bench --bench steps`.

use criterion::{criterion_group, criterion_main, Criterion};
use gpu_train::backend::{Backend, GradMethod, PerturbStrategy, DEFAULT_H};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{self, Sampler, SamplerKind};
use gpu_train::model::{MlpSpec, Params};
use std::sync::Arc;
use std::time::Duration;

fn step_bench(c: &mut Criterion) {
    let data = Arc::new(data::embedded().expect("embedded MNIST"));
    let spec = MlpSpec::two_layer(784, 50, 10).unwrap();
    let mut sampler = Sampler::new(SamplerKind::WithReplacement, data.train.len(), 0).unwrap();
    let mut batch = Vec::new();
    let mut bench = |c: &mut Criterion, name: &str, method: GradMethod, slow: bool| {
        let mut cpu = CpuBackend::<f32>::new(spec.clone(), data.clone()).unwrap();
        cpu.set_params(&Params::init(&spec, 0)).unwrap();
        let mut group = c.benchmark_group("cpu_f32_784_50_10_batch_100");
        if slow {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(60));
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                sampler.next_batch(100, &mut batch).unwrap();
                cpu.set_batch(&batch).unwrap();
                cpu.step(method, 0.1).unwrap();
            })
        });
        group.finish();
    };
    bench(c, "backprop_step", GradMethod::Backprop, false);
    bench(
        c,
        "numerical_incremental_step",
        GradMethod::Numerical {
            strategy: PerturbStrategy::Incremental,
            h: DEFAULT_H,
        },
        false,
    );
    if std::env::var_os("BENCH_SKIP_FULL").is_none() {
        bench(
            c,
            "numerical_full_step",
            GradMethod::Numerical {
                strategy: PerturbStrategy::Full,
                h: DEFAULT_H,
            },
            true,
        );
    }
}

criterion_group!(benches, step_bench);
criterion_main!(benches);
