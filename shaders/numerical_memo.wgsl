// numerical_memo: the incremental numerical gradient of a net with ONE hidden layer (the
// chapter's 784-50-10), by a memo over pixel values, with the SGD update folded in. The same
// derivative as numerical.wgsl's `incremental`, organised like the CPU twin's hot path
// (cpu::numerical, add_last_hidden_layer: the distinct-value table and the row moments).
//
// Why a memo: perturbing W1[i, j] shifts pre-activation a1[j] of sample b by e = h x[b, i], so
// the sample's loss change depends only on the VALUE x[b, i]. The data are u8 (x = v / 255 by
//   gather's table): an image takes at most 255 non-zero values (MNIST: ~67 distinct against
//   ~150 non-zero pixels), so memo[b, v, j] = g(h x_v) - g(-h x_v) is computed once per value
//   the sample holds and W1's gradient is a sum of memo entries. b1[j] moves a1[j] by h, which is
//   exactly the shift of v = 255 (x = 1): its slot is v = 255, always filled.
// Why moments: g(e) = the sample's loss change when a1[j] moves by e = -log1p(p_t (expm1(dz w_t)
//   - S) / ((1 + S)(p_t + 1e-7))), dz = sigmoid's change, S = sum_k p_k expm1(dz w_k). Term by
//   term of expm1's series S = dz M1 + dz^2 M2 / 2 + dz^3 M3 / 6, M_n = sum_k p_k w_k^n: with
//   the moments of (sample, unit) computed once, a shift costs a few multiply-adds instead of one
//   expm1 per class. Valid (exact to f32) while every argument stays below SMALL = 1e-3, the
//   CPU's rule (cpu::real::SMALL_ARG, RowShift::series_ok); otherwise the direct sum, as in
//   numerical.wgsl.
//
// Shapes: B rows, I inputs, H hidden units, O classes. Flat parameters (model::Params): W1
//   (I x H) at w1, b1 (H) at b1, W2 (H x O) at w2, b2 (O) right after W2. The forward cache
//   (f32 words, labels as u32 bits) at the offsets of numerical::cache_layout: a1 (B x H) at pre,
//   z1 (B x H) at post, probabilities (B x O) at probs, labels (B) at labels.
// Entry points:
//   memo_table: workgroup MEMO_WG x 1, grid (B + ceil(ceil(B / 32) I / MEMO_WG), ceil(H / MEMO_WG)):
//     one workgroup per sample and block of units. It marks in workgroup memory which values
//     the sample's pixels take (a 256-bit mask) and the f32 x of each, then invocation j writes
//     memo[(b 256 + v) H + j] for every marked v. The workgroups past the B samples (unit block
//     0 only) build the pixels' sample masks: one word, 32 samples' "pixel i is non-zero" bits,
//     per invocation.
//   memo_sum: workgroup WORKGROUP_1D x 1, one invocation per parameter of the flat layout (the grid
//     folded into y past the per-dimension limit). W1[i, j] adds memo[b, x[b, i], j] over the
//     set bits of pixel i's masks, in sample order; b1[j] the v = 255 entries; W2 and b2 a
//     one-logit loss change per sample (as `incremental` does them). No workgroup memory and
//     no barrier: on lavapipe a barrier switches every SIMD group of the workgroup out and in
//     (a version with workgroup memory was 3x slower: docs/PERFORMANCE.md). Each invocation writes grad[p] = sum / (2 h B)
//     and, when `update` is 1, theta[p] -= lr grad[p]: nothing else in this launch reads theta,
//     so the update needs no launch of its own.
// Branches: lavapipe (llvmpipe) runs BOTH sides of every `if` with the lanes masked, but leaves a
//   loop as soon as no lane goes on. So the rare, costly paths (the direct per-class sum, the
//   regions of memo_sum) are loops whose trip count is 0 where no lane needs them
//   (docs/PERFORMANCE.md has the measurement). A real GPU branches either way.
// Bindings (group 0): 0 uniform Params (gpu::numerical_memo's MemoParams; it, MEMO_WG and VALUES
//   are generated ahead of this file); 1 theta (memo_table: read; memo_sum: read and written);
//   2 x (B x I f32, read); 3 cache (read); 4 memo (B x 256 x H f32 as u32 bits, then the masks: memo_table writes it,
//   memo_sum reads it); memo_sum also 5 grad (P f32, written).

// Below this |argument| the 3-term series of expm1 and log1p are exact to f32 (the truncation,
// x^4 / 24, is below 2^-24 of x there). The CPU's SMALL_ARG.
const SMALL: f32 = 1e-3;

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> cache: array<u32>;
// f32 entries as u32 bits (exact both ways), then the pixels' sample masks (mask_at).
@group(0) @binding(4) var<storage, read_write> memo: array<u32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

// Where the masks start in the memo buffer: bit n of word mask_at() + w I + i says whether
// sample 32 w + n's pixel i is non-zero. They share the memo's binding because a sixth storage
// binding is past the limit the context asks of adapters (5).
fn mask_at() -> u32 {
    return u.rows * VALUES * u.hidden;
}

// The u8 value behind a gathered x = v / 255 (exact: x 255 is within an ulp of the integer v).
fn value_of(xi: f32) -> u32 {
    return min(u32(round(clamp(xi, 0.0, 1.0) * 255.0)), 255u);
}

fn expm1_series(x: f32) -> f32 {
    return x * (1.0 + x * (0.5 + x * (1.0 / 6.0)));
}

fn log1p_series(x: f32) -> f32 {
    return x * (1.0 + x * (-0.5 + x * (1.0 / 3.0)));
}

// One hidden unit of one sample, with what every shift of it needs precomputed
// (cpu::activation::ActivationPoint and cpu::cross_entropy::RowShift together).
struct Unit {
    // Pre-activation a1[j]; sigmoid: u = exp(-|a|), inv = 1 / (1 + u), sign of a.
    a: f32,
    u: f32,
    inv: f32,
    sign: f32,
    // M_n / n! of the unit's row of W2 under the sample's probabilities, n = 1, 2, 3.
    m1: f32,
    m2: f32,
    m3: f32,
    w_max: f32,
    w_t: f32,
    // p_t / (p_t + 1e-7).
    c: f32,
    // 0 every shift by the series, 1 relu dead for every shift (all changes 0), 2 the direct way.
    regime: u32,
    b: u32,
    j: u32,
}

fn unit_at(b: u32, j: u32) -> Unit {
    let o = u.classes;
    let a = cf(u.pre + b * u.hidden + j);
    var s: Unit;
    s.a = a;
    s.b = b;
    s.j = j;
    s.sign = select(-1.0, 1.0, a >= 0.0);
    s.u = 0.0;
    if (u.act == 1u) {
        s.u = exp(-abs(a));
    }
    s.inv = 1.0 / (1.0 + s.u);
    let row = u.w2 + j * o;
    let probs = u.probs + b * o;
    let t = cache[u.labels + b];
    var m1 = 0.0;
    var m2 = 0.0;
    var m3 = 0.0;
    var w_max = 0.0;
    for (var k = 0u; k < o; k++) {
        let w = theta[row + k];
        w_max = max(w_max, abs(w));
        var pw = cf(probs + k) * w;
        m1 += pw;
        pw *= w;
        m2 += pw;
        pw *= w;
        m3 += pw;
    }
    s.m1 = m1;
    s.m2 = m2 * 0.5;
    s.m3 = m3 * (1.0 / 6.0);
    s.w_max = w_max;
    s.w_t = theta[row + t];
    let pt = cf(probs + t);
    s.c = pt / (pt + DELTA);
    // Every shift of the unit is |e| <= h (x <= 1; the bias moves it by h).
    let e_max = u.h;
    if (u.act == 1u) {
        // sigmoid' <= 1/4 bounds the unit's change, 2.5 the log1p argument (RowShift::series_ok).
        s.regime = select(2u, 0u, e_max < SMALL && e_max * 0.25 * w_max * 2.5 < SMALL);
    } else if (a > e_max) {
        s.regime = select(2u, 0u, e_max * w_max * 2.5 < SMALL);
    } else if (a + e_max <= 0.0) {
        s.regime = 1u;
    } else {
        s.regime = 2u;
    }
    return s;
}

// g(e) in the series regime: the unit's change, then the loss change through its row.
fn change_series(s: Unit, e: f32) -> f32 {
    var dz = e;
    if (u.act == 1u) {
        let em1 = expm1_series(-(s.sign * e));
        dz = -(s.sign * em1 * s.u * s.inv) / (1.0 + s.u * (em1 + 1.0));
    }
    let sum = ((s.m3 * dz + s.m2) * dz + s.m1) * dz;
    return -log1p_series((expm1_series(dz * s.w_t) - sum) * s.c / (1.0 + sum));
}

// act(a + e) - act(a) without cancellation (numerical.wgsl's act_change).
fn act_change(s: Unit, e: f32) -> f32 {
    if (u.act == 1u) {
        let em1 = expm1c(-(s.sign * e));
        let d = -em1 * s.u * s.inv / (1.0 + s.u * (em1 + 1.0));
        return s.sign * d;
    }
    let a = s.a;
    let b = a + e;
    if (a > 0.0 && b > 0.0) {
        return e;
    }
    if (a <= 0.0 && b <= 0.0) {
        return 0.0;
    }
    return max(b, 0.0) - max(a, 0.0);
}

// g(e) the direct way: one expm1 per class.
fn change_direct(s: Unit, e: f32) -> f32 {
    let dz = act_change(s, e);
    if (dz == 0.0) {
        return 0.0;
    }
    let o = u.classes;
    return row_shift_change(dz, u.w2 + s.j * o, o, u.probs + s.b * o, cache[u.labels + s.b]);
}

// g(e) - g(-e) by the series (0 for a relu unit dead under every shift): the sample's share of
// a central difference whose perturbation shifts a1[j] by e. Units in the direct regime get
// `pair_direct` instead.
fn pair_series(s: Unit, e: f32) -> f32 {
    return select(change_series(s, e) - change_series(s, -e), 0.0, s.regime == 1u);
}

fn pair_direct(s: Unit, e: f32) -> f32 {
    return change_direct(s, e) - change_direct(s, -e);
}

// Which values sample b's pixels take (bit v of marks), and each one's x, as u32 bits (atomic
// stores of the same bits from every lane that holds the value: no race).
var<workgroup> marks: array<atomic<u32>, 8>;
var<workgroup> xs: array<atomic<u32>, VALUES>;

@compute @workgroup_size(MEMO_WG, 1, 1)
fn memo_table(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (wid.x >= u.rows) {
        // The extra workgroups past the samples: the pixels' sample masks, one word per
        // invocation, lanes on consecutive pixels (their reads of x are adjacent).
        if (wid.y == 0u) {
            let q = (wid.x - u.rows) * MEMO_WG + lid.x;
            let first = (q / u.inputs) * 32u;
            if (first < u.rows) {
                let i = q % u.inputs;
                let top = min(32u, u.rows - first);
                var bits = 0u;
                for (var n = 0u; n < top; n++) {
                    bits |= select(0u, 1u << n, x[(first + n) * u.inputs + i] != 0.0);
                }
                memo[mask_at() + q] = bits;
            }
        }
        return;
    }
    let b = wid.x;
    let row = b * u.inputs;
    for (var i = lid.x; i < u.inputs; i += MEMO_WG) {
        let xi = x[row + i];
        if (xi != 0.0) {
            let v = value_of(xi);
            atomicOr(&marks[v >> 5u], 1u << (v & 31u));
            atomicStore(&xs[v], bitcast<u32>(xi));
        }
    }
    if (lid.x == 0u) {
        // The bias's slot: x = 1 exactly (a pixel of 255 stores the same bits).
        atomicOr(&marks[7u], 1u << 31u);
        atomicStore(&xs[255u], bitcast<u32>(1.0));
    }
    workgroupBarrier();
    let j = wid.y * MEMO_WG + lid.x;
    if (j >= u.hidden) {
        return;
    }
    let s = unit_at(b, j);
    let h = u.h;
    let base = b * VALUES * u.hidden + j;
    for (var w = 0u; w < 8u; w++) {
        var bits = atomicLoad(&marks[w]);
        while (bits != 0u) {
            let v = w * 32u + firstTrailingBit(bits);
            bits &= bits - 1u;
            let e = h * bitcast<f32>(atomicLoad(&xs[v]));
            memo[base + v * u.hidden] = bitcast<u32>(pair_series(s, e));
        }
    }
    // The units whose shifts are too large for the series, again the direct way. A loop that no
    // lane enters unless its unit needs it, not an `if` inside the loop above: lavapipe runs both
    // sides of every `if` with the lanes masked (the per-class sum for every value), but leaves
    // a loop as soon as no lane goes on.
    let direct_words = select(0u, 8u, s.regime == 2u);
    for (var w = 0u; w < direct_words; w++) {
        var bits = atomicLoad(&marks[w]);
        while (bits != 0u) {
            let v = w * 32u + firstTrailingBit(bits);
            bits &= bits - 1u;
            let e = h * bitcast<f32>(atomicLoad(&xs[v]));
            memo[base + v * u.hidden] = bitcast<u32>(pair_direct(s, e));
        }
    }
}

// The loss change of sample b when logit k moves by e (only what one logit reaches).
fn one_logit(b: u32, k: u32, e: f32) -> f32 {
    let probs = u.probs + b * u.classes;
    let t = cache[u.labels + b];
    let em1 = expm1c(e);
    return change_from(cf(probs + t), select(0.0, em1, k == t), cf(probs + k) * em1);
}

fn finish(p: u32, acc: f32) {
    let g = acc / (2.0 * u.h * f32(u.rows));
    grad[p] = g;
    if (u.update == 1u) {
        theta[p] = theta[p] - u.lr * g;
    }
}

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn memo_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let q = folded_index(gid, groups);
    let hidden = u.hidden;
    let o = u.classes;
    let stride = VALUES * hidden;
    let w1_len = u.inputs * hidden;
    let in_w1 = q < w1_len;
    let in_b1 = !in_w1 && q < w1_len + hidden;
    // W2[jj, k] and b2[k] (jj = hidden) follow b1.
    let r = q - w1_len - hidden;
    let in_w2 = !in_w1 && !in_b1 && r < (hidden + 1u) * o;
    // Each region is a loop whose trip count is 0 outside it, not an `if`: lavapipe runs both
    // sides of an `if` with the lanes masked, but leaves a loop once every lane is done.
    var acc = 0.0;
    // W1[i, j]: the memo entry of each sample's value of pixel i, over the samples whose pixel
    // is non-zero (the masks' set bits), in sample order. Lanes of one i agree on every branch.
    let i = q / hidden;
    let j = q % hidden;
    let words = select(0u, (u.rows + 31u) / 32u, in_w1);
    for (var w = 0u; w < words; w++) {
        var bits = memo[mask_at() + w * u.inputs + i];
        while (bits != 0u) {
            let b = w * 32u + firstTrailingBit(bits);
            bits &= bits - 1u;
            acc += bitcast<f32>(memo[b * stride + value_of(x[b * u.inputs + i]) * hidden + j]);
        }
    }
    // b1[j]: the v = 255 entries.
    let jb = q - w1_len;
    let b1_rows = select(0u, u.rows, in_b1);
    for (var b = 0u; b < b1_rows; b++) {
        acc += bitcast<f32>(memo[b * stride + 255u * hidden + jb]);
    }
    // W2[jj, k] (its input z1[b, jj] shifts logit k by h z) and b2[k] (by h).
    let k = r % o;
    let jj = r / o;
    let w2_rows = select(0u, u.rows, in_w2);
    for (var b = 0u; b < w2_rows; b++) {
        var z = 1.0;
        if (jj < hidden) {
            z = cf(u.post + b * hidden + jj);
        }
        // A zero input moves nothing: both changes are exactly 0.
        let e = u.h * z;
        acc += one_logit(b, k, e) - one_logit(b, k, -e);
    }
    if (in_w1 || in_b1 || in_w2) {
        finish(select(select(u.w2 + r, u.b1 + jb, in_b1), u.w1 + q, in_w1), acc);
    }
}
