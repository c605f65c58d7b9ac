// numerical: the numerical gradient (L(theta + h e_p) - L(theta - h e_p)) / 2h of the mean
// batch loss L = mean_b -ln(p_t + 1e-7), for a chunk of parameters p in [p_begin, p_begin + count),
// written straight into the flat gradient. CPU twin: cpu::numerical.
//
// Shapes: B = rows of the batch, I = input width, hidden widths H_1.., O = classes; P = number
//   of parameters in the flat layout of model::Params (per layer W_l fan_in x fan_out row-major,
//   then b_l). Layers above the first (and O) are at most MAX_WIDTH = 256 wide.
// Entry points:
//   incremental: workgroup 256 x 1, one invocation per parameter (grid folded into y past the
//     per-dimension limit), each looping over the B samples. From the cached unperturbed pass it
//     re-computes only what the parameter reaches: perturbing W_l[i, j] (or b_l[j]) shifts
//     pre-activation a_l[j] of sample b by e = h x_i (or h); a zero input skips the sample.
//   full: workgroup 64 x 1, one WORKGROUP per parameter; its threads share the samples, each
//     running a whole forward pass of its sample with theta +- h e_p (the chapter's way), then a
//     workgroup reduction.
// Precision (f32): each sample's loss CHANGE is computed from the cached probabilities,
//   -log1p(p_t (expm1(d_t) - S) / ((1 + S)(p_t + 1e-7))), S = sum_k p_k expm1(d_k), with careful
//   expm1/log1p (WGSL has neither) and the sigmoid's change as a product of accurate factors:
//   subtracting two f32 losses near 2.3 would keep almost no digits. `full` gets its logit shift
//   d as (perturbed logits - cached logits), which costs it ~3 digits: the faithful baseline.
// Bindings (group 0): 0 uniform U; 1 theta (P f32, read); 2 x (B x I f32, read);
//   3 cache (u32 words, read; f32 values as bits), laid out by the launcher (gpu::numerical):
//     [0] labels offset, [1] probs offset, [8 + 8 l ..] per layer l: fan_in, fan_out, w_offset,
//     b_offset, pre offset (a_l, B x fan_out), post offset (z_l, hidden layers only);
//     then the labels (B u32), every a_l and z_l, and the probabilities (B x O);
//   4 grad (P f32, written at [p_begin, p_begin + count)).

struct U {
    p_begin: u32,
    count: u32,
    rows: u32,
    layers: u32,
    classes: u32,
    // 1 sigmoid, 2 relu
    act: u32,
    h: f32,
    _pad: u32,
}

const MAX_WIDTH: u32 = 256u;
// False for nets with one hidden layer (the launcher's choice): their pipeline then has no trace
// of deep_unit_change, whose arrays would otherwise be zero-filled on every invocation.
override DEEP: bool = true;
const DELTA: f32 = 1e-7;

@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

fn cf(i: u32) -> f32 {
    return bitcast<f32>(cache[i]);
}

fn table(l: u32, field: u32) -> u32 {
    return cache[8u + 8u * l + field];
}

// expm1 to a few ulps: the Taylor series where |x| < 1e-2 (truncation below 2^-40 relative),
// else Kahan's (exp(x) - 1) * x / log(exp(x)), which cancels exp's own rounding.
fn expm1c(x: f32) -> f32 {
    if (abs(x) < 1e-2) {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x * (1.0 / 720.0))))));
    }
    let e = exp(x);
    let em1 = e - 1.0;
    if (em1 == -1.0) {
        return -1.0;
    }
    return em1 * x / log(e);
}

// log1p likewise: the series where |x| < 1e-2, else log(1 + x) * x / ((1 + x) - 1).
fn log1pc(x: f32) -> f32 {
    if (abs(x) < 1e-2) {
        return x * (1.0 + x * (-0.5 + x * (1.0 / 3.0 + x * (-0.25 + x * (0.2 + x * (-1.0 / 6.0))))));
    }
    let v = 1.0 + x;
    return log(v) * x / (v - 1.0);
}

fn activate(a: f32) -> f32 {
    if (u.act == 1u) {
        return 1.0 / (1.0 + exp(-a));
    }
    return max(a, 0.0);
}

// act(a + e) - act(a) without cancellation. Sigmoid, for a >= 0 with v = exp(-a):
// -expm1(-e) v / ((1 + v exp(-e)) (1 + v)); for a < 0 by symmetry, so v <= 1 always.
fn act_change(a: f32, e: f32) -> f32 {
    if (u.act == 1u) {
        var s = 1.0;
        var aa = a;
        var ee = e;
        if (a < 0.0) {
            s = -1.0;
            aa = -a;
            ee = -e;
        }
        let v = exp(-aa);
        let em1 = expm1c(-ee);
        return s * (-em1 * v / ((1.0 + v * (em1 + 1.0)) * (1.0 + v)));
    }
    let b = a + e;
    if (a > 0.0 && b > 0.0) {
        return e;
    }
    if (a <= 0.0 && b <= 0.0) {
        return 0.0;
    }
    return max(b, 0.0) - max(a, 0.0);
}

// The sample's loss change from p_t, expm1(d_t) and S = sum_k p_k expm1(d_k).
fn change_from(pt: f32, dt_em1: f32, s: f32) -> f32 {
    let dp = pt * (dt_em1 - s) / (1.0 + s);
    return -log1pc(dp / (pt + DELTA));
}

// Loss change of sample b when its logits shift by d (the first O entries).
fn logit_change(b: u32, d: ptr<function, array<f32, 256>>) -> f32 {
    let probs = cache[1u] + b * u.classes;
    let t = cache[cache[0u] + b];
    var s = 0.0;
    var dt = 0.0;
    for (var k = 0u; k < u.classes; k++) {
        let em1 = expm1c((*d)[k]);
        s += cf(probs + k) * em1;
        if (k == t) {
            dt = em1;
        }
    }
    return change_from(cf(probs + t), dt, s);
}

// Loss change of sample b when pre-activation a_l[j] shifts by e: only what it reaches.
fn unit_change(l: u32, j: u32, b: u32, e: f32) -> f32 {
    let last = u.layers - 1u;
    let probs = cache[1u] + b * u.classes;
    let t = cache[cache[0u] + b];
    if (l == last) {
        let em1 = expm1c(e);
        var dt = 0.0;
        if (j == t) {
            dt = em1;
        }
        return change_from(cf(probs + t), dt, cf(probs + j) * em1);
    }
    let fo = table(l, 1u);
    let dz = act_change(cf(table(l, 4u) + b * fo + j), e);
    if (dz == 0.0) {
        return 0.0;
    }
    // Layer l + 1 sees row j of its weights only.
    let nfo = table(l + 1u, 1u);
    let row = table(l + 1u, 2u) + j * nfo;
    if (l + 1u == last) {
        // The logits themselves (the chapter's two-layer net): stream the logit shifts
        // dz W[j, k] straight into S, with no array. Same values, same order as logit_change.
        var s = 0.0;
        var dt = 0.0;
        for (var k = 0u; k < nfo; k++) {
            let em1 = expm1c(dz * theta[row + k]);
            s += cf(probs + k) * em1;
            if (k == t) {
                dt = em1;
            }
        }
        return change_from(cf(probs + t), dt, s);
    }
    if (!DEEP) {
        // Not reached: with DEEP = false every hidden layer is the last one.
        return 0.0;
    }
    return deep_unit_change(l, b, dz, row, nfo);
}

// unit_change above the last hidden layer: change vectors through every layer up to the logits.
// Kept out of the one-hidden-layer pipeline (DEEP = false): WGSL zero-fills function-scope
// arrays, and lavapipe does it at the start of the (inlined) entry point, for every invocation,
// used or not: these two 1 KB arrays cost 1.9 s of its 2.0 s step on 784-50-10.
fn deep_unit_change(l: u32, b: u32, dz: f32, row: u32, nfo: u32) -> f32 {
    let last = u.layers - 1u;
    var da: array<f32, 256>;
    for (var k = 0u; k < nfo; k++) {
        da[k] = dz * theta[row + k];
    }
    // Every layer above that: a dense change vector through activation and weights.
    var dn: array<f32, 256>;
    for (var m = l + 1u; m < last; m++) {
        let mfo = table(m, 1u);
        let mpre = table(m, 4u) + b * mfo;
        let wfo = table(m + 1u, 1u);
        let w = table(m + 1u, 2u);
        for (var q = 0u; q < wfo; q++) {
            dn[q] = 0.0;
        }
        for (var k = 0u; k < mfo; k++) {
            let dzk = act_change(cf(mpre + k), da[k]);
            if (dzk != 0.0) {
                for (var q = 0u; q < wfo; q++) {
                    dn[q] += dzk * theta[w + k * wfo + q];
                }
            }
        }
        for (var q = 0u; q < wfo; q++) {
            da[q] = dn[q];
        }
    }
    return logit_change(b, &da);
}

// Which layer holds parameter p (the last whose weights start at or before p).
fn layer_of(p: u32) -> u32 {
    var l = 0u;
    while (l + 1u < u.layers && p >= table(l + 1u, 2u)) {
        l += 1u;
    }
    return l;
}

@compute @workgroup_size(256, 1, 1)
fn incremental(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = gid.x + gid.y * groups.x * 256u;
    if (idx >= u.count) {
        return;
    }
    let p = u.p_begin + idx;
    let h = u.h;
    let l = layer_of(p);
    let fi = table(l, 0u);
    let fo = table(l, 1u);
    let bias = p >= table(l, 3u);
    var i = 0u;
    var j = p - table(l, 3u);
    if (!bias) {
        i = (p - table(l, 2u)) / fo;
        j = (p - table(l, 2u)) % fo;
    }
    var acc = 0.0;
    for (var b = 0u; b < u.rows; b++) {
        var e = h;
        if (!bias) {
            var input: f32;
            if (l == 0u) {
                input = x[b * fi + i];
            } else {
                input = cf(table(l - 1u, 5u) + b * fi + i);
            }
            if (input == 0.0) {
                continue;
            }
            e = h * input;
        }
        acc += unit_change(l, j, b, e) - unit_change(l, j, b, -e);
    }
    grad[p] = acc / (2.0 * h * f32(u.rows));
}

// The logits of sample b after a whole forward pass with theta[p] + dh, into `out`.
fn forward_perturbed(p: u32, dh: f32, b: u32, out: ptr<function, array<f32, 256>>) {
    var cur: array<f32, 256>;
    for (var l = 0u; l < u.layers; l++) {
        let fi = table(l, 0u);
        let fo = table(l, 1u);
        let w = table(l, 2u);
        let bo = table(l, 3u);
        for (var j = 0u; j < fo; j++) {
            var a = theta[bo + j] + select(0.0, dh, bo + j == p);
            for (var i = 0u; i < fi; i++) {
                var input: f32;
                if (l == 0u) {
                    input = x[b * fi + i];
                } else {
                    input = cur[i];
                }
                a += input * (theta[w + i * fo + j] + select(0.0, dh, w + i * fo + j == p));
            }
            (*out)[j] = a;
        }
        if (l + 1u < u.layers) {
            for (var j = 0u; j < fo; j++) {
                cur[j] = activate((*out)[j]);
            }
        }
    }
}

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn full(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let idx = wid.x + wid.y * groups.x;
    // idx is the same for the whole workgroup, so this return keeps the barriers uniform.
    if (idx >= u.count) {
        return;
    }
    let p = u.p_begin + idx;
    let h = u.h;
    let last = u.layers - 1u;
    let logits_at = table(last, 4u);
    var acc = 0.0;
    for (var b = lid.x; b < u.rows; b += 64u) {
        var plus: array<f32, 256>;
        var minus: array<f32, 256>;
        forward_perturbed(p, h, b, &plus);
        forward_perturbed(p, -h, b, &minus);
        for (var k = 0u; k < u.classes; k++) {
            let a = cf(logits_at + b * u.classes + k);
            plus[k] = plus[k] - a;
            minus[k] = minus[k] - a;
        }
        acc += logit_change(b, &plus) - logit_change(b, &minus);
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride = stride / 2u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        grad[p] = partial[0] / (2.0 * h * f32(u.rows));
    }
}
