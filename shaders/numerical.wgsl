// numerical: the numerical gradient (L(theta + h e_p) - L(theta - h e_p)) / 2h of the mean
// batch loss L = mean_b -ln(p_t + 1e-7), for a chunk of parameters p in [p_begin, p_begin + count),
// written straight into the flat gradient. CPU twin: cpu::numerical.
//
// Shapes: B = rows of the batch, I = input width, hidden widths H_1.., O = classes; P = number
//   of parameters in the flat layout of model::Params (per layer W_l fan_in x fan_out row-major,
//   then b_l). O and hidden layers above the first are at most WIDTH <= 256 wide; so is the
//   first hidden layer for `full` on deeper nets.
// Entry points:
//   incremental: workgroup WORKGROUP_1D x 1, one invocation per parameter (grid folded into y past the
//     per-dimension limit), each looping over the B samples. From the cached unperturbed pass it
//     re-computes only what the parameter reaches: perturbing W_l[i, j] (or b_l[j]) shifts
//     pre-activation a_l[j] of sample b by e = h x_i (or h); a zero input skips the sample.
//   full: workgroup WORKGROUP_1D x 1, one WORKGROUP per parameter; its threads share the samples
//     (one each up to B = WORKGROUP_1D, which keeps lavapipe's per-invocation loop cap far off), each
//     running two whole forward passes of its sample, theta + h e_p and theta - h e_p (the
//     chapter's way; nothing from the cached pass but the labels), then a workgroup reduction.
// Precision (f32): each sample's loss CHANGE is computed directly,
//   -log1p(p_t (expm1(d_t) - S) / ((1 + S)(p_t + 1e-7))), S = sum_k p_k expm1(d_k), for logits
//   shifted by d from a base whose probabilities are p, with careful expm1/log1p (WGSL has
//   neither): subtracting two f32 losses near 2.3 would keep almost no digits. `incremental`:
//   the base is the cached pass, the shift computed as a change (the sigmoid's as a product of
//   accurate factors). `full`: the base is the (-) pass and d = plus - minus, both passes in
//   double-f32 arithmetic (see below), since two f32 passes would differ by rounding ~6e-8 of
//   values ~1 against a change of ~1e-4.
// Bindings (group 0): 0 uniform Params (gpu::numerical's NumericalParams, generated ahead of this
//   file); 1 theta (P f32, read); 2 x (B x I f32, read);
//   3 cache (u32 words, read; f32 values as bits), laid out by the launcher (gpu::numerical's
//     cache_layout, whose word positions are generated ahead of this file too): a header (where
//     the labels and the probabilities start), a table of LAYER_WORDS words per layer l from
//     LAYER_TABLE_AT (fan_in, fan_out, w_at, b_at, pre_at: a_l, B x fan_out; post_at: z_l,
//     hidden layers only), read through the layer_* functions below; then the labels (B u32),
//     every a_l and z_l, and the probabilities (B x O);
//   4 grad (P f32, written at [p_begin, p_begin + count)).

// WIDTH, the private arrays' length, is generated ahead of this file: the model's widest layer
// they hold (gpu::numerical::array_width, at most MAX_WIDTH = 256). Not an override: WGSL sizes
// function-scope arrays by const-expressions only. Why bother: lavapipe's compile time grows with
// the arrays (docs/PERFORMANCE.md), and a GPU's registers are few.
// False for nets with one hidden layer (the launcher's choice): their pipelines then have no
// trace of the deep paths' arrays, which would otherwise be zero-filled on every invocation, and
// `full` streams the hidden layer (any width).
override DEEP: bool = true;
@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

// The cache's header and layer table (gpu::numerical::cache_layout), by name: the word
// positions are the launcher's constants, generated ahead of this file.
fn cache_labels() -> u32 {
    return cache[HEADER_LABELS_AT];
}
fn cache_probs() -> u32 {
    return cache[HEADER_PROBS_AT];
}
fn layer_word(l: u32, field: u32) -> u32 {
    return cache[LAYER_TABLE_AT + LAYER_WORDS * l + field];
}
fn layer_fan_in(l: u32) -> u32 {
    return layer_word(l, LAYER_FAN_IN);
}
fn layer_fan_out(l: u32) -> u32 {
    return layer_word(l, LAYER_FAN_OUT);
}
// Where W_l and b_l start in theta.
fn layer_w_at(l: u32) -> u32 {
    return layer_word(l, LAYER_W_AT);
}
fn layer_b_at(l: u32) -> u32 {
    return layer_word(l, LAYER_B_AT);
}
// Where a_l (B x fan_out) and, for hidden layers, z_l start in the cache.
fn layer_pre_at(l: u32) -> u32 {
    return layer_word(l, LAYER_PRE_AT);
}
fn layer_post_at(l: u32) -> u32 {
    return layer_word(l, LAYER_POST_AT);
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

// act_change(a, e) and act_change(a, -e) with one exp between them (the same arithmetic).
fn act_change_pair(a: f32, e: f32) -> vec2<f32> {
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
        let em1p = expm1c(-ee);
        let em1m = expm1c(ee);
        return vec2<f32>(
            s * (-em1p * v / ((1.0 + v * (em1p + 1.0)) * (1.0 + v))),
            s * (-em1m * v / ((1.0 + v * (em1m + 1.0)) * (1.0 + v))),
        );
    }
    return vec2<f32>(act_change(a, e), act_change(a, -e));
}

// unit_change(l, j, b, e) - unit_change(l, j, b, -e) for a unit of the last hidden layer (whose
// changes stream into the logits): both signs in one pass over the classes, sharing the exp, the
// reads of the weight row and of the probabilities. Same values, same order, as the two calls.
fn hidden_pair_change(l: u32, j: u32, b: u32, e: f32) -> f32 {
    let fo = layer_fan_out(l);
    let dz = act_change_pair(cf(layer_pre_at(l) + b * fo + j), e);
    let nfo = layer_fan_out(l + 1u);
    let row = layer_w_at(l + 1u) + j * nfo;
    let probs = cache_probs() + b * u.classes;
    let t = cache[cache_labels() + b];
    var sp = 0.0;
    var sm = 0.0;
    var dtp = 0.0;
    var dtm = 0.0;
    for (var k = 0u; k < nfo; k++) {
        let w = theta[row + k];
        let p = cf(probs + k);
        let ep = expm1c(dz.x * w);
        let em = expm1c(dz.y * w);
        sp += p * ep;
        sm += p * em;
        if (k == t) {
            dtp = ep;
            dtm = em;
        }
    }
    let pt = cf(probs + t);
    var plus = 0.0;
    var minus = 0.0;
    if (dz.x != 0.0) {
        plus = change_from(pt, dtp, sp);
    }
    if (dz.y != 0.0) {
        minus = change_from(pt, dtm, sm);
    }
    return plus - minus;
}

// Loss change of sample b when its logits shift by d (the first O entries).
fn logit_change(b: u32, d: ptr<function, array<f32, WIDTH>>) -> f32 {
    let probs = cache_probs() + b * u.classes;
    let t = cache[cache_labels() + b];
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
    let probs = cache_probs() + b * u.classes;
    let t = cache[cache_labels() + b];
    if (l == last) {
        let em1 = expm1c(e);
        var dt = 0.0;
        if (j == t) {
            dt = em1;
        }
        return change_from(cf(probs + t), dt, cf(probs + j) * em1);
    }
    let fo = layer_fan_out(l);
    let dz = act_change(cf(layer_pre_at(l) + b * fo + j), e);
    if (dz == 0.0) {
        return 0.0;
    }
    // Layer l + 1 sees row j of its weights only.
    let nfo = layer_fan_out(l + 1u);
    let row = layer_w_at(l + 1u) + j * nfo;
    if (l + 1u == last) {
        // The logits themselves (the chapter's two-layer net): stream the logit shifts
        // dz W[j, k] straight into S, with no array. Same values, same order as logit_change.
        return row_shift_change(dz, row, nfo, probs, t);
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
// used or not, which cost nearly all of a step (docs/PERFORMANCE.md).
fn deep_unit_change(l: u32, b: u32, dz: f32, row: u32, nfo: u32) -> f32 {
    let last = u.layers - 1u;
    var da: array<f32, WIDTH>;
    for (var k = 0u; k < nfo; k++) {
        da[k] = dz * theta[row + k];
    }
    // Every layer above that: a dense change vector through activation and weights.
    var dn: array<f32, WIDTH>;
    for (var m = l + 1u; m < last; m++) {
        let mfo = layer_fan_out(m);
        let mpre = layer_pre_at(m) + b * mfo;
        let wfo = layer_fan_out(m + 1u);
        let w = layer_w_at(m + 1u);
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
    while (l + 1u < u.layers && p >= layer_w_at(l + 1u)) {
        l += 1u;
    }
    return l;
}

// The perturbed parameter: layer l, weight [i, j] or (bias) b_l[j].
struct Site {
    l: u32,
    i: u32,
    j: u32,
    bias: bool,
}

fn site_of(p: u32) -> Site {
    let l = layer_of(p);
    let fo = layer_fan_out(l);
    if (p >= layer_b_at(l)) {
        return Site(l, 0u, p - layer_b_at(l), true);
    }
    let q = p - layer_w_at(l);
    return Site(l, q / fo, q % fo, false);
}

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn incremental(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let idx = folded_index(gid, groups);
    if (idx >= u.count) {
        return;
    }
    let p = u.p_begin + idx;
    let h = u.h;
    let s = site_of(p);
    let fi = layer_fan_in(s.l);
    var acc = 0.0;
    for (var b = 0u; b < u.rows; b++) {
        var e = h;
        if (!s.bias) {
            var input: f32;
            if (s.l == 0u) {
                input = x[b * fi + s.i];
            } else {
                input = cf(layer_post_at(s.l - 1u) + b * fi + s.i);
            }
            if (input == 0.0) {
                continue;
            }
            e = h * input;
        }
        if (s.l + 2u == u.layers) {
            acc += hidden_pair_change(s.l, s.j, b, e);
        } else {
            acc += unit_change(s.l, s.j, b, e) - unit_change(s.l, s.j, b, -e);
        }
    }
    grad[p] = acc / (2.0 * h * f32(u.rows));
}

// ---- full, in double-f32: a value is hi + lo, a vec2 of f32s, ~44 significant bits ----
// Why: `full` recomputes every pre-activation, activation and logit of both perturbed passes. In
// plain f32 each carries a rounding error ~6e-8 of its size (~1), against the ~1e-4 change the
// perturbation makes, so ~3 digits of the gradient went before any loss was formed (measured
// 6e-4..1.5e-3 against the f64 oracle). Carried as double-f32, each pass is exact to ~1e-13 and
// the change between the two to ~1e-9 of itself.
// These rest on f32 + and * being correctly rounded and done as written (WGSL's rules). Products
// split by masking (not Veltkamp's 4097 a), so a compiler that fuses a multiply into an add
// cannot change a result. Sums are kept from rewriting by `kept`; should a compiler still
// reassociate them, the run's check against the CPU reference (--check-every: the first step at
// least) stops it.

// v itself, through an XOR with a zero the compiler cannot prove (the launcher sets only bit 0 of
// u.flags): it hides where v came from, so the optimizer cannot rewrite (a + b) - a as b, which
// Mesa does to float math not marked exact (and WGSL has no way to mark it). Without it, lavapipe
// turned every error term below into 0 and `full` back into plain f32 (1.2e-3 vs the oracle).
fn kept(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ unproven_zero());
}

fn unproven_zero() -> u32 {
    return u.flags >> 1u;
}

fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = kept(a + b);
    let bb = kept(s - a);
    return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}

// For |a| >= |b|.
fn fast_two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = kept(a + b);
    return vec2<f32>(s, b - (s - a));
}

// a = hi + lo, each of at most 12 significant bits, so products of halves are exact in f32.
fn split(a: f32) -> vec2<f32> {
    let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
    return vec2<f32>(hi, a - hi);
}

// a b = p + e exactly (Dekker). p through `kept` so no compiler fuses it into the addition
// that consumes it (fl(s + a b) in one rounding is not the sum two_sum's error term describes).
fn two_prod(a: f32, b: f32) -> vec2<f32> {
    let p = kept(a * b);
    let sa = split(a);
    let sb = split(b);
    return vec2<f32>(p, ((sa.x * sb.x - p) + sa.x * sb.y + sa.y * sb.x) + sa.y * sb.y);
}

fn df_add(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let s = two_sum(a.x, b.x);
    let t = two_sum(a.y, b.y);
    let u1 = fast_two_sum(s.x, s.y + t.x);
    return fast_two_sum(u1.x, u1.y + t.y);
}

fn df_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let p = two_prod(a.x, b.x);
    return fast_two_sum(p.x, p.y + (a.x * b.y + a.y * b.x));
}

fn df_mul_f(a: vec2<f32>, b: f32) -> vec2<f32> {
    let p = two_prod(a.x, b);
    return fast_two_sum(p.x, p.y + a.y * b);
}

// a / b: f32's quotient corrected by the exact remainder (so WGSL's 2.5-ulp division is enough).
fn df_div(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let q1 = a.x / b.x;
    let r = df_add(a, -df_mul_f(b, q1));
    return fast_two_sum(q1, r.x / b.x);
}

// s + a b into a running dot product (Ogita-Rump-Oishi Dot2): the sum's hi by error-free
// additions, every rounding error into lo. Normalize with fast_two_sum(s.x, s.y) at the end.
fn dot2(s: vec2<f32>, a: vec2<f32>, b: f32) -> vec2<f32> {
    let p = two_prod(a.x, b);
    let t = two_sum(s.x, p.x);
    return vec2<f32>(t.x, s.y + (t.y + (p.y + a.y * b)));
}

// ln 2 = LN2_HI + LN2_LO, LN2_HI with 12 significant bits so k LN2_HI is exact for |k| < 2^12.
const LN2_HI: f32 = 0.693145751953125;
const LN2_LO: f32 = 1.4286068e-6;

// exp(m) for -87 <= m <= 0: m = k ln 2 + r, expm1(r / 256) by its Taylor series (|r / 256| <
// 1.4e-3, so five terms reach 1e-17), squared back up as expm1(2y) = 2 expm1(y) + expm1(y)^2
// (which keeps the small value's digits), then 2^k. Relative error ~1e-13 (CPU simulation).
fn exp_df(m: vec2<f32>) -> vec2<f32> {
    let k = round(m.x / 0.6931472);
    var r = df_add(df_add(m, vec2<f32>(-k * LN2_HI, 0.0)), two_prod(-k, LN2_LO));
    r = r * (1.0 / 256.0);
    let t = r.x * (1.0 / 6.0 + r.x * (1.0 / 24.0 + r.x * (1.0 / 120.0 + r.x * (1.0 / 720.0))));
    var e = df_add(r, df_mul(df_mul(r, r), two_sum(0.5, t)));
    for (var n = 0u; n < 8u + unproven_zero(); n++) {
        e = df_add(2.0 * e, df_mul(e, e));
    }
    let v = df_add(e, vec2<f32>(1.0, 0.0));
    return vec2<f32>(ldexp(v.x, i32(k)), ldexp(v.y, i32(k)));
}

// act(a) in double-f32. Sigmoid through v = exp(-|a|) <= 1, as 1 / (1 + v) or v / (1 + v).
fn activate_df(a: vec2<f32>) -> vec2<f32> {
    if (u.act != 1u) {
        return select(vec2<f32>(0.0), a, a.x > 0.0);
    }
    let neg = a.x < 0.0;
    let m = select(-a, a, neg);
    if (m.x < -87.0) {
        return select(vec2<f32>(1.0, 0.0), vec2<f32>(0.0), neg);
    }
    let v = exp_df(m);
    let d = df_add(v, vec2<f32>(1.0, 0.0));
    return df_div(select(vec2<f32>(1.0, 0.0), v, neg), d);
}

// Pre-activation a_0[j] of sample b with the parameter at `s` moved by dh. The unperturbed
// products round alike in both passes (which moves the point the gradient is taken at by ~1e-8
// relative, in both alike), so only the sum needs the extra digits: f32 products, Dot2 sum. Zero
// pixels add nothing.
fn first_layer_unit(s: Site, dh: f32, b: u32, j: u32) -> vec2<f32> {
    let fi = layer_fan_in(0u);
    let fo = layer_fan_out(0u);
    let w = layer_w_at(0u);
    let row = b * fi;
    var acc = vec2<f32>(theta[layer_b_at(0u) + j], 0.0);
    // Eight pixels an iteration: lavapipe ends an invocation's loops after 65,535 iterations in
    // all (gpu::numerical::loop_iterations), and this loop is most of them.
    var i = 0u;
    for (; i + 8u <= fi; i += 8u) {
        acc = add_product(acc, x[row + i], theta[w + i * fo + j]);
        acc = add_product(acc, x[row + i + 1u], theta[w + (i + 1u) * fo + j]);
        acc = add_product(acc, x[row + i + 2u], theta[w + (i + 2u) * fo + j]);
        acc = add_product(acc, x[row + i + 3u], theta[w + (i + 3u) * fo + j]);
        acc = add_product(acc, x[row + i + 4u], theta[w + (i + 4u) * fo + j]);
        acc = add_product(acc, x[row + i + 5u], theta[w + (i + 5u) * fo + j]);
        acc = add_product(acc, x[row + i + 6u], theta[w + (i + 6u) * fo + j]);
        acc = add_product(acc, x[row + i + 7u], theta[w + (i + 7u) * fo + j]);
    }
    for (; i < fi; i++) {
        acc = add_product(acc, x[row + i], theta[w + i * fo + j]);
    }
    if (s.l == 0u && s.j == j) {
        acc = dot2(acc, vec2<f32>(select(x[row + s.i], 1.0, s.bias), 0.0), dh);
    }
    return fast_two_sum(acc.x, acc.y);
}

// acc + fl(xi w) with an error-free addition; a zero pixel adds nothing.
fn add_product(acc: vec2<f32>, xi: f32, w: f32) -> vec2<f32> {
    if (xi == 0.0) {
        return acc;
    }
    let t = two_sum(acc.x, kept(xi * w));
    return vec2<f32>(t.x, acc.y + t.y);
}

// The logits of sample b after a whole forward pass with the parameter at `s` moved by dh. One
// hidden layer (DEEP = false): hidden units stream into the logits, so the hidden layer may be
// any width. Deeper: whole layers in private arrays of WIDTH.
fn forward_df(s: Site, dh: f32, b: u32, out: ptr<function, array<vec2<f32>, WIDTH>>) {
    let last = u.layers - 1u;
    let lb = layer_b_at(last);
    for (var k = 0u; k < u.classes; k++) {
        (*out)[k] = vec2<f32>(theta[lb + k], 0.0);
    }
    if (!DEEP) {
        let hidden = layer_fan_out(0u);
        let w = layer_w_at(1u);
        for (var j = 0u; j < hidden; j++) {
            let z = activate_df(first_layer_unit(s, dh, b, j));
            if (z.x != 0.0) {
                for (var k = 0u; k < u.classes; k++) {
                    (*out)[k] = dot2((*out)[k], z, theta[w + j * u.classes + k]);
                }
            }
            if (s.l == 1u && !s.bias && s.i == j) {
                (*out)[s.j] = dot2((*out)[s.j], z, dh);
            }
        }
    } else {
        // One call site per helper: lavapipe compiles every inlined copy.
        var cur: array<vec2<f32>, WIDTH>;
        var nxt: array<vec2<f32>, WIDTH>;
        var width = 0u;
        for (var l = 0u; l < last; l++) {
            let fo = layer_fan_out(l);
            let w = layer_w_at(l);
            for (var j = 0u; j < fo; j++) {
                var a: vec2<f32>;
                if (l == 0u) {
                    a = first_layer_unit(s, dh, b, j);
                } else {
                    var acc = vec2<f32>(theta[layer_b_at(l) + j], 0.0);
                    for (var i = 0u; i < width; i++) {
                        acc = dot2(acc, cur[i], theta[w + i * fo + j]);
                    }
                    if (s.l == l && s.j == j) {
                        acc = dot2(acc, select(cur[s.i], vec2<f32>(1.0, 0.0), s.bias), dh);
                    }
                    a = fast_two_sum(acc.x, acc.y);
                }
                nxt[j] = activate_df(a);
            }
            for (var j = 0u; j < fo; j++) {
                cur[j] = nxt[j];
            }
            width = fo;
        }
        let w = layer_w_at(last);
        for (var i = 0u; i < width; i++) {
            for (var k = 0u; k < u.classes; k++) {
                (*out)[k] = dot2((*out)[k], cur[i], theta[w + i * u.classes + k]);
            }
        }
        if (s.l == last && !s.bias) {
            (*out)[s.j] = dot2((*out)[s.j], cur[s.i], dh);
        }
    }
    if (s.l == last && s.bias) {
        (*out)[s.j] = dot2((*out)[s.j], vec2<f32>(1.0, 0.0), dh);
    }
    for (var k = 0u; k < u.classes; k++) {
        (*out)[k] = fast_two_sum((*out)[k].x, (*out)[k].y);
    }
}

// L(+) - L(-) of one sample from its two sets of logits. Careful (u.subtract_losses == 0): the
// loss change with (-) as the base, q = softmax(minus), d = plus - minus (exact to ~1e-9 of
// itself, so f32 holds it); else the chapter's way, two f32 losses subtracted, to measure what
// the careful form buys.
fn pass_difference(b: u32, plus: ptr<function, array<vec2<f32>, WIDTH>>, minus: ptr<function, array<vec2<f32>, WIDTH>>) -> f32 {
    let t = cache[cache_labels() + b];
    let m = softmax_scale(minus);
    let qt = exp((*minus)[t].x - m.x) / m.y;
    if ((u.flags & 1u) != 0u) {
        let mp = softmax_scale(plus);
        let pt = exp((*plus)[t].x - mp.x) / mp.y;
        return -log(pt + DELTA) + log(qt + DELTA);
    }
    var s = 0.0;
    var dt = 0.0;
    for (var k = 0u; k < u.classes; k++) {
        let d = df_add((*plus)[k], -(*minus)[k]);
        let em1 = expm1c(d.x + d.y);
        s += exp((*minus)[k].x - m.x) / m.y * em1;
        if (k == t) {
            dt = em1;
        }
    }
    return change_from(qt, dt, s);
}

// (top, sum) of a sample's logits (their hi parts), so that its softmax is exp(l_k - top) / sum.
fn softmax_scale(l: ptr<function, array<vec2<f32>, WIDTH>>) -> vec2<f32> {
    var top = (*l)[0].x;
    for (var k = 1u; k < u.classes; k++) {
        top = max(top, (*l)[k].x);
    }
    var sum = 0.0;
    for (var k = 0u; k < u.classes; k++) {
        sum += exp((*l)[k].x - top);
    }
    return vec2<f32>(top, sum);
}

var<workgroup> partial: array<f32, WORKGROUP_1D>;

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
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
    let s = site_of(p);
    var acc = 0.0;
    for (var b = lid.x; b < u.rows; b += WORKGROUP_1D) {
        var plus: array<vec2<f32>, WIDTH>;
        var minus: array<vec2<f32>, WIDTH>;
        // One inlined forward pass, run twice: (-) first, kept, then (+).
        for (var n = 0u; n < 2u + unproven_zero(); n++) {
            forward_df(s, select(-h, h, n == 1u), b, &plus);
            if (n == 0u) {
                for (var k = 0u; k < u.classes; k++) {
                    minus[k] = plus[k];
                }
            }
        }
        acc += pass_difference(b, &plus, &minus);
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var stride = WORKGROUP_1D / 2u; stride > 0u; stride = stride / 2u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        grad[p] = partial[0] / (2.0 * h * f32(u.rows));
    }
}
