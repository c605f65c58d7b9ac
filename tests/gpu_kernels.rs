//! Every GPU kernel against its f64 CPU twin on fresh seeded random inputs at odd sizes (not
//! multiples of a tile or workgroup), outputs poisoned with NaN before each run so an unwritten
//! element fails. Runs on any adapter, lavapipe included; with CI=true a missing adapter fails.
//! The measured errors are printed (`cargo test --release --test gpu_kernels -- --nocapture`).

use gpu_train::cpu;
use gpu_train::data::{self, Mnist};
use gpu_train::gpu::gather::{gather, ResidentSplit};
use gpu_train::gpu::matmul::{matmul, Matmul, MatmulArgs};
use gpu_train::gpu::{
    accuracy, backprop, cross_entropy, run, sgd, softmax, Context, Kernels, Operand,
};
use gpu_train::model::{relative_error, Activation};
use gpu_train::tolerance::{
    compare, Tolerance, GPU_ACTIVATION_GRAD, GPU_BIAS_GRAD, GPU_CROSS_ENTROPY, GPU_MATMUL,
    GPU_MEAN, GPU_OUTPUT_DELTA, GPU_SGD, GPU_SOFTMAX,
};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::sync::OnceLock;

struct Gpu {
    ctx: Context,
    k: Kernels,
}

/// The device and kernels, shared by the tests; None (skip) only when there is no adapter and
/// CI is not set.
fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Context::gpu() {
        Ok(ctx) => {
            let k = Kernels::new(&ctx).unwrap_or_else(|e| panic!("{e}"));
            eprintln!("GPU kernels on {}", ctx.describe());
            Some(Gpu { ctx, k })
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and no usable GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no adapter ({e})");
            None
        }
    })
    .as_ref()
}

macro_rules! gpu_or_skip {
    () => {
        match gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| data::embedded().unwrap_or_else(|e| panic!("{e}")))
}

fn uniform(rng: &mut Pcg64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// A buffer of `pad_before + len + pad_after` NaNs: the kernel must write exactly the middle.
fn poisoned(g: &Gpu, len: usize, pad_before: usize, pad_after: usize) -> wgpu::Buffer {
    g.ctx
        .upload(
            "poisoned output",
            &vec![f32::NAN; pad_before + len + pad_after],
        )
        .unwrap()
}

/// Reads `len` values at `offset` of a poisoned buffer and checks the padding is still NaN.
fn read_poisoned(
    g: &Gpu,
    buf: &wgpu::Buffer,
    offset: usize,
    len: usize,
    pad_after: usize,
) -> Vec<f32> {
    let all: Vec<f32> = g.ctx.read(buf, 0, offset + len + pad_after).unwrap();
    let outside = all[..offset].iter().chain(&all[offset + len..]);
    assert!(
        outside.into_iter().all(|v| v.is_nan()),
        "a kernel wrote outside its output range"
    );
    all[offset..offset + len].to_vec()
}

/// Compares, panics with `compare`'s report on failure, and prints the measured errors.
fn check(what: &str, out: &[f32], reference: &[f64], tol: Tolerance) {
    let out = to_f64(out);
    let max_abs = out
        .iter()
        .zip(reference)
        .map(|(o, r)| (o - r).abs())
        .fold(0.0, f64::max);
    let used = out
        .iter()
        .zip(reference)
        .map(|(o, r)| (o - r).abs() / (tol.atol + tol.rtol * r.abs()))
        .fold(0.0, f64::max);
    let rel = relative_error(&out, reference);
    eprintln!(
        "{what}: max |err| {max_abs:.2e}, relative {rel:.2e}, {:.0}% of tolerance",
        used * 100.0
    );
    if let Err(e) = compare(what, &out, reference, tol) {
        panic!("{e}");
    }
}

const MATMUL_SIZES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 784, 10),
    (7, 33, 10),
    (10, 7, 1),
    (33, 100, 257),
    (100, 784, 50),
    (257, 10, 7),
    (784, 100, 50),
    (100, 50, 10),
    (100, 10, 50),
];

/// C (m x n) = A B in f64 from A (m x k) and B (k x n) as stored for `kind`.
fn matmul_reference(kind: Matmul, a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    match kind {
        Matmul::AtB => cpu::matmul::matmul_at_b(a, b, k, m, n),
        Matmul::ABt => cpu::matmul::matmul_a_bt(a, b, m, k, n),
        _ => cpu::matmul::matmul(a, b, m, k, n),
    }
}

fn run_matmul(g: &Gpu, kind: Matmul, m: usize, k: usize, n: usize, seed: u64) {
    let mut rng = Pcg64::seed_from_u64(seed);
    // Operands sit at odd offsets of larger buffers, as W_l and b_l do in the flat parameters.
    let (a_off, b_off, bias_off, c_off, post_off) = (3, 1, 2, 5, 4);
    let a = uniform(&mut rng, a_off + m * k, 1.0);
    let b = uniform(&mut rng, b_off + k * n, 1.0);
    let bias = uniform(&mut rng, bias_off + n, 1.0);
    let a_buf = g.ctx.upload("A", &a).unwrap();
    let b_buf = g.ctx.upload("B", &b).unwrap();
    let bias_buf = g.ctx.upload("bias", &bias).unwrap();
    let c_buf = poisoned(g, m * n, c_off, 3);
    let post_buf = poisoned(g, m * n, post_off, 2);
    let with_bias = matches!(kind, Matmul::AddBias | Matmul::AddBiasAct(_));
    let act = match kind {
        Matmul::AddBiasAct(act) => Some(act),
        _ => None,
    };
    let args = MatmulArgs {
        m,
        k,
        n,
        a: Operand::at(&a_buf, a_off),
        b: Operand::at(&b_buf, b_off),
        c: Operand::at(&c_buf, c_off),
        bias: with_bias.then(|| Operand::at(&bias_buf, bias_off)),
        post: act.map(|_| Operand::at(&post_buf, post_off)),
    };
    let d = matmul(&g.k.matmul, &g.ctx, kind, &args).unwrap();
    run(&g.ctx, &[&d]).unwrap();

    let mut want = matmul_reference(kind, &to_f64(&a[a_off..]), &to_f64(&b[b_off..]), m, k, n);
    if with_bias {
        for row in want.chunks_mut(n) {
            for (v, &bv) in row.iter_mut().zip(&bias[bias_off..]) {
                *v += f64::from(bv);
            }
        }
    }
    let what = format!("matmul {kind:?} {m}x{k}x{n}");
    check(
        &what,
        &read_poisoned(g, &c_buf, c_off, m * n, 3),
        &want,
        GPU_MATMUL,
    );
    if let Some(act) = act {
        let post_want: Vec<f64> = want
            .iter()
            .map(|&v| cpu::activation::activate(act, v))
            .collect();
        check(
            &format!("{what} post"),
            &read_poisoned(g, &post_buf, post_off, m * n, 2),
            &post_want,
            GPU_MATMUL,
        );
    } else {
        let untouched: Vec<f32> = g.ctx.read(&post_buf, 0, post_off + m * n + 2).unwrap();
        assert!(
            untouched.iter().all(|v| v.is_nan()),
            "{what} wrote a post-activation it should not"
        );
    }
}

#[test]
fn matmul_all_variants_at_odd_sizes() {
    let g = gpu_or_skip!();
    let kinds = [
        Matmul::AB,
        Matmul::AtB,
        Matmul::ABt,
        Matmul::AddBias,
        Matmul::AddBiasAct(Activation::Sigmoid),
        Matmul::AddBiasAct(Activation::Relu),
    ];
    for (i, &(m, k, n)) in MATMUL_SIZES.iter().enumerate() {
        for (j, &kind) in kinds.iter().enumerate() {
            run_matmul(g, kind, m, k, n, (i * 10 + j) as u64);
        }
    }
}

#[test]
fn softmax_rows_at_odd_sizes() {
    let g = gpu_or_skip!();
    for (i, &(rows, cols)) in [(1, 10), (7, 10), (100, 10), (257, 33), (33, 1), (10, 257)]
        .iter()
        .enumerate()
    {
        let mut rng = Pcg64::seed_from_u64(100 + i as u64);
        let x = uniform(&mut rng, rows * cols, 10.0);
        let x_buf = g.ctx.upload("logits", &x).unwrap();
        let y_buf = poisoned(g, rows * cols, 0, 1);
        let d = softmax::softmax(
            &g.k.softmax,
            &g.ctx,
            rows,
            cols,
            Operand::whole(&x_buf),
            Operand::whole(&y_buf),
        )
        .unwrap();
        run(&g.ctx, &[&d]).unwrap();
        let mut want = to_f64(&x);
        cpu::softmax::softmax_rows(&mut want, cols);
        check(
            &format!("softmax {rows}x{cols}"),
            &read_poisoned(g, &y_buf, 0, rows * cols, 1),
            &want,
            GPU_SOFTMAX,
        );
        // The logits are an input the backward pass and the numerical gradient still need.
        assert_eq!(g.ctx.read::<f32>(&x_buf, 0, rows * cols).unwrap(), x);
    }
}

#[test]
fn softmax_of_huge_logits_neither_overflows_nor_loses_the_small_ones() {
    let g = gpu_or_skip!();
    let x_buf = g.ctx.upload("logits", &[1010.0f32, 1000.0, 990.0]).unwrap();
    let y_buf = poisoned(g, 3, 0, 0);
    let d = softmax::softmax(
        &g.k.softmax,
        &g.ctx,
        1,
        3,
        Operand::whole(&x_buf),
        Operand::whole(&y_buf),
    )
    .unwrap();
    run(&g.ctx, &[&d]).unwrap();
    let y: Vec<f32> = g.ctx.read(&y_buf, 0, 3).unwrap();
    check(
        "softmax [1010, 1000, 990]",
        &y,
        &[9.99954600e-01, 4.53978686e-05, 2.06106005e-09],
        GPU_SOFTMAX,
    );
    // Relative too: the smallest probability must not be lost to the absolute floor.
    assert!(
        (f64::from(y[2]) / 2.06106005e-09 - 1.0).abs() < 1e-4,
        "{y:?}"
    );
}

/// rows x cols probabilities (softmax of random logits) and random labels.
fn probs_and_labels(rng: &mut Pcg64, rows: usize, cols: usize) -> (Vec<f32>, Vec<u8>) {
    let mut p = uniform(rng, rows * cols, 5.0);
    cpu::softmax::softmax_rows(&mut p, cols);
    let labels = (0..rows).map(|_| rng.random_range(0..cols) as u8).collect();
    (p, labels)
}

fn labels_buf(g: &Gpu, labels: &[u8]) -> wgpu::Buffer {
    g.ctx
        .upload(
            "labels",
            &labels.iter().map(|&l| u32::from(l)).collect::<Vec<u32>>(),
        )
        .unwrap()
}

#[test]
fn cross_entropy_sum_squares_and_mean() {
    let g = gpu_or_skip!();
    for (i, &(rows, cols)) in [(1, 10), (7, 10), (100, 10), (257, 33), (1000, 2)]
        .iter()
        .enumerate()
    {
        let mut rng = Pcg64::seed_from_u64(200 + i as u64);
        let (p, labels) = probs_and_labels(&mut rng, rows, cols);
        let p_buf = g.ctx.upload("probs", &p).unwrap();
        let l_buf = labels_buf(g, &labels);
        let ce_buf = poisoned(g, rows, 0, 1);
        let sse_buf = poisoned(g, rows, 0, 1);
        let mean_buf = poisoned(g, 1, 2, 1);
        let k = (&g.k, &g.ctx);
        let ce = cross_entropy::cross_entropy(
            &k.0.cross_entropy,
            k.1,
            rows,
            cols,
            &p_buf,
            &l_buf,
            &ce_buf,
        )
        .unwrap();
        let sse = cross_entropy::sum_squares(
            &k.0.cross_entropy,
            k.1,
            rows,
            cols,
            &p_buf,
            &l_buf,
            &sse_buf,
        )
        .unwrap();
        let mean =
            cross_entropy::mean(&k.0.cross_entropy, k.1, rows, &ce_buf, &mean_buf, 2).unwrap();
        run(&g.ctx, &[&ce, &sse, &mean]).unwrap();

        let p64 = to_f64(&p);
        let ce_want = cpu::cross_entropy::cross_entropy_labels(&p64, &labels, cols);
        let ce_out = read_poisoned(g, &ce_buf, 0, rows, 1);
        check(
            &format!("cross entropy {rows}x{cols}"),
            &ce_out,
            &ce_want,
            GPU_CROSS_ENTROPY,
        );
        let sse_want = cpu::cross_entropy::sum_squares_labels(&p64, &labels, cols);
        check(
            &format!("sum of squares {rows}x{cols}"),
            &read_poisoned(g, &sse_buf, 0, rows, 1),
            &sse_want,
            GPU_CROSS_ENTROPY,
        );
        // The mean of the GPU's own per-sample losses: this checks the reduction alone.
        let mean_want = cpu::cross_entropy::mean(&ce_out);
        check(
            &format!("mean of {rows}"),
            &read_poisoned(g, &mean_buf, 2, 1, 1),
            &[mean_want],
            GPU_MEAN,
        );
    }
}

#[test]
fn cross_entropy_of_a_bad_label_is_nan_not_a_wrong_number() {
    let g = gpu_or_skip!();
    let p_buf = g.ctx.upload("probs", &[0.5f32, 0.5, 0.25, 0.75]).unwrap();
    let l_buf = g.ctx.upload("labels", &[1u32, 7]).unwrap();
    let out = g.ctx.upload("losses", &[0.0f32; 2]).unwrap();
    let d = cross_entropy::cross_entropy(&g.k.cross_entropy, &g.ctx, 2, 2, &p_buf, &l_buf, &out)
        .unwrap();
    run(&g.ctx, &[&d]).unwrap();
    let v: Vec<f32> = g.ctx.read(&out, 0, 2).unwrap();
    assert!(
        (v[0] - std::f32::consts::LN_2).abs() < 1e-6 && v[1].is_nan(),
        "{v:?}"
    );
}

/// A label past the classes gives a NaN delta row through the launcher, never a value read from
/// past its row (which a robust-access driver would turn into a plausible finite delta); the
/// other rows are the CPU's.
#[test]
fn output_delta_of_a_bad_label_is_nan_not_a_read_past_the_row() {
    let g = gpu_or_skip!();
    let p = [0.5f32, 0.5, 0.25, 0.75, 0.1, 0.9];
    let p_buf = g.ctx.upload("probs", &p).unwrap();
    let l_buf = g.ctx.upload("labels", &[1u32, 7, 0]).unwrap();
    let out = poisoned(g, 6, 0, 1);
    let d = backprop::output_delta(&g.k.backprop, &g.ctx, 3, 2, &p_buf, &l_buf, &out).unwrap();
    run(&g.ctx, &[&d]).unwrap();
    let v = read_poisoned(g, &out, 0, 6, 1);
    assert!(v[2].is_nan() && v[3].is_nan(), "{v:?}");
    let p64 = to_f64(&p);
    let good = |row: usize, label: u8| {
        cpu::backprop::output_delta(&p64[2 * row..2 * row + 2], &[label], 2)
            .into_iter()
            .map(|x| x / 3.0)
            .collect::<Vec<f64>>()
    };
    let want: Vec<f64> = [good(0, 1), good(2, 0)].concat();
    check(
        "output delta beside a bad label",
        &[v[0], v[1], v[4], v[5]],
        &want,
        GPU_OUTPUT_DELTA,
    );
}

#[test]
fn backprop_output_delta_activation_derivative_and_bias_gradient() {
    let g = gpu_or_skip!();
    for (i, &(rows, cols)) in [(1, 10), (7, 10), (100, 10), (257, 33), (33, 257)]
        .iter()
        .enumerate()
    {
        let mut rng = Pcg64::seed_from_u64(300 + i as u64);
        let (p, labels) = probs_and_labels(&mut rng, rows, cols);
        let p_buf = g.ctx.upload("probs", &p).unwrap();
        let l_buf = labels_buf(g, &labels);
        let delta_buf = poisoned(g, rows * cols, 0, 1);
        let d = backprop::output_delta(
            &g.k.backprop,
            &g.ctx,
            rows,
            cols,
            &p_buf,
            &l_buf,
            &delta_buf,
        )
        .unwrap();
        run(&g.ctx, &[&d]).unwrap();
        let want = cpu::backprop::output_delta(&to_f64(&p), &labels, cols);
        check(
            &format!("output delta {rows}x{cols}"),
            &read_poisoned(g, &delta_buf, 0, rows * cols, 1),
            &want,
            GPU_OUTPUT_DELTA,
        );

        // Bias gradient: column sums of a random delta, written at an offset of the gradient.
        let delta = uniform(&mut rng, rows * cols, 1.0);
        let delta_in = g.ctx.upload("delta", &delta).unwrap();
        let grad_buf = poisoned(g, cols, 7, 3);
        let d = backprop::bias_grad(
            &g.k.backprop,
            &g.ctx,
            rows,
            cols,
            &delta_in,
            Operand::at(&grad_buf, 7),
        )
        .unwrap();
        run(&g.ctx, &[&d]).unwrap();
        let mut want = vec![0.0f64; cols];
        for row in to_f64(&delta).chunks(cols) {
            for (w, v) in want.iter_mut().zip(row) {
                *w += v;
            }
        }
        check(
            &format!("bias gradient {rows}x{cols}"),
            &read_poisoned(g, &grad_buf, 7, cols, 3),
            &want,
            GPU_BIAS_GRAD,
        );

        for act in [Activation::Sigmoid, Activation::Relu] {
            let n = rows * cols;
            let mut pre = uniform(&mut rng, n, 4.0);
            pre.iter_mut().step_by(5).for_each(|v| *v = 0.0); // relu'(0) = 0
            let post: Vec<f32> = pre
                .iter()
                .map(|&a| cpu::activation::activate(act, a))
                .collect();
            let d0 = uniform(&mut rng, n, 1.0);
            let pre_buf = g.ctx.upload("pre", &pre).unwrap();
            let post_buf = g.ctx.upload("post", &post).unwrap();
            let d_buf = g.ctx.upload("d", &d0).unwrap();
            let disp =
                backprop::act_backward(&g.k.backprop, &g.ctx, n, act, &pre_buf, &post_buf, &d_buf)
                    .unwrap();
            run(&g.ctx, &[&disp]).unwrap();
            let want: Vec<f64> = (0..n)
                .map(|i| {
                    f64::from(d0[i])
                        * cpu::activation::activate_grad(act, f64::from(pre[i]), f64::from(post[i]))
                })
                .collect();
            let out: Vec<f32> = g.ctx.read(&d_buf, 0, n).unwrap();
            check(
                &format!("{} derivative x {n}", act.name()),
                &out,
                &want,
                GPU_ACTIVATION_GRAD,
            );
        }
    }
}

#[test]
fn sgd_over_the_flat_vector() {
    let g = gpu_or_skip!();
    for (i, &n) in [1usize, 257, 1001, 39760].iter().enumerate() {
        let mut rng = Pcg64::seed_from_u64(400 + i as u64);
        let theta = uniform(&mut rng, n, 1.0);
        let grad = uniform(&mut rng, n, 0.5);
        let t_buf = g.ctx.upload("params", &theta).unwrap();
        let g_buf = g.ctx.upload("grad", &grad).unwrap();
        let d = sgd::sgd(&g.k.sgd, &g.ctx, n, 0.3, &t_buf, &g_buf).unwrap();
        run(&g.ctx, &[&d]).unwrap();
        // A second launch at another rate: the learning rate is rewritten in place.
        sgd::set_lr(&g.ctx, &d, 0.05);
        run(&g.ctx, &[&d]).unwrap();
        let mut want = to_f64(&theta);
        let g64 = to_f64(&grad);
        cpu::sgd::sgd(&mut want, &g64, f64::from(0.3f32));
        cpu::sgd::sgd(&mut want, &g64, f64::from(0.05f32));
        check(
            &format!("sgd x {n}"),
            &g.ctx.read::<f32>(&t_buf, 0, n).unwrap(),
            &want,
            GPU_SGD,
        );
    }
}

#[test]
fn accuracy_counts_exactly_with_ties_going_to_the_first_max() {
    let g = gpu_or_skip!();
    for (i, &(rows, cols)) in [(1, 10), (7, 10), (100, 10), (257, 33), (1000, 3)]
        .iter()
        .enumerate()
    {
        let mut rng = Pcg64::seed_from_u64(500 + i as u64);
        // Scores from four values, so ties between the label and an earlier column are common.
        let scores: Vec<f32> = (0..rows * cols)
            .map(|_| [0.0, 0.25, 0.5, 1.0][rng.random_range(0..4)])
            .collect();
        let labels: Vec<u8> = (0..rows).map(|_| rng.random_range(0..cols) as u8).collect();
        let s_buf = g.ctx.upload("scores", &scores).unwrap();
        let l_buf = labels_buf(g, &labels);
        let count = g.ctx.upload("count", &[0u32]).unwrap();
        let d =
            accuracy::accuracy(&g.k.accuracy, &g.ctx, rows, cols, &s_buf, &l_buf, &count).unwrap();
        // Twice without clearing: the counter accumulates (how evaluation sums its chunks).
        run(&g.ctx, &[&d, &d]).unwrap();
        let want = cpu::accuracy::correct_count(&scores, &labels, cols);
        let got: Vec<u32> = g.ctx.read(&count, 0, 1).unwrap();
        assert_eq!(got[0] as usize, 2 * want, "accuracy {rows}x{cols}");
    }
}

fn check_gather(g: &Gpu, max_rows: Option<usize>) {
    let train = &mnist().train;
    let split = ResidentSplit::upload(&g.ctx, "train", train, max_rows, false).unwrap();
    let mut rng = Pcg64::seed_from_u64(600);
    let mut indices: Vec<u32> = (0..257)
        .map(|_| rng.random_range(0..train.len() as u32))
        .collect();
    indices.extend([0, train.len() as u32 - 1, 5, 5]);
    let rows = indices.len();
    let width = train.input_width();
    let i_buf = g.ctx.upload("indices", &indices).unwrap();
    let x_buf = poisoned(g, rows * width, 0, 1);
    let l_buf = g.ctx.upload("batch labels", &vec![u32::MAX; rows]).unwrap();
    let ds = gather(&g.k.gather, &g.ctx, &split, rows, &i_buf, &x_buf, &l_buf).unwrap();
    assert_eq!(ds.len(), split.chunk_count());
    run(&g.ctx, &ds.iter().collect::<Vec<_>>()).unwrap();
    let mut want = vec![0.0f32; rows * width];
    train.fill_batch_f32(&indices, &mut want);
    let got = read_poisoned(g, &x_buf, 0, rows * width, 1);
    let mismatches = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        mismatches,
        0,
        "gather ({} chunks): {mismatches} values differ from fill_batch_f32",
        split.chunk_count()
    );
    let labels: Vec<u32> = g.ctx.read(&l_buf, 0, rows).unwrap();
    let want_labels: Vec<u32> = indices
        .iter()
        .map(|&i| u32::from(train.label(i as usize)))
        .collect();
    assert_eq!(labels, want_labels);
    eprintln!(
        "gather {rows} x {width} from {} chunk(s): bit-exact",
        split.chunk_count()
    );
}

#[test]
fn gather_is_bit_exact_with_fill_batch_f32() {
    let g = gpu_or_skip!();
    check_gather(g, None);
}

#[test]
fn gather_from_a_split_cut_into_many_buffers() {
    let g = gpu_or_skip!();
    // 997 rows per buffer: dozens of chunks, boundaries at no multiple of anything.
    check_gather(g, Some(997));
}

#[test]
fn a_device_error_becomes_an_error_on_the_next_call_not_a_panic() {
    if gpu().is_none() {
        return;
    }
    // A context of its own: the error is sticky and would fail the other tests.
    let ctx = Context::gpu().unwrap();
    let ok = ctx.upload("fine", &[1.0f32, 2.0]).unwrap();
    assert_eq!(ctx.read::<f32>(&ok, 0, 2).unwrap(), vec![1.0, 2.0]);
    // MAP_READ with MAP_WRITE is invalid: wgpu raises an uncaptured validation error.
    let _invalid = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("invalid on purpose"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::MAP_WRITE,
        mapped_at_creation: false,
    });
    let e = ctx.read::<f32>(&ok, 0, 2).unwrap_err();
    assert!(matches!(e, gpu_train::Error::Gpu(_)), "{e}");
    assert!(
        e.to_string().contains("invalid on purpose") && e.to_string().contains("--device cpu"),
        "{e}"
    );
}

#[test]
fn a_destroyed_device_is_an_error_not_a_panic_or_a_hang() {
    if gpu().is_none() {
        return;
    }
    // A context of its own: what a lost device (driver reset, GPU unplugged) leaves behind.
    let ctx = Context::gpu().unwrap();
    let ok = ctx.upload("before", &[1.0f32, 2.0]).unwrap();
    ctx.device().destroy();
    let started = std::time::Instant::now();
    let e = ctx.read::<f32>(&ok, 0, 2).unwrap_err();
    assert!(matches!(e, gpu_train::Error::Gpu(_)), "{e}");
    assert!(e.to_string().contains("--device cpu"), "{e}");
    eprintln!("after destroy: {e}");
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

/// A product over K = 70,000 (an input of 70,000 pixels): every term counts. lavapipe ends an
/// invocation's loops after 65,535 iterations in all, so a kernel whose K loop runs per element
/// of K / 32 tiles with inner loops would silently drop the tail of the sum.
#[test]
fn matmul_over_a_70000_long_k_keeps_every_term() {
    let g = gpu_or_skip!();
    for kind in [Matmul::AddBias, Matmul::ABt] {
        run_matmul(g, kind, 3, 70_000, 5, 77);
    }
}
