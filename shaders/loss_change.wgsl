// loss_change: the careful loss change both numerical-gradient shaders use, prepended to
// numerical.wgsl and numerical_memo.wgsl by their launchers (gpu::numerical::SOURCE,
// gpu::numerical_memo::SOURCE), since WGSL has no include. CPU twin: cpu::real (expm1, log1p)
// and cpu::cross_entropy::RowShift (the change from shifted logits).
//
// Why: a sample's loss changes by ~1e-4 when one parameter moves by h, against a loss ~2.3;
// subtracting two f32 losses keeps almost no digits. The change is computed directly,
// -log1p(p_t (expm1(d_t) - S) / ((1 + S)(p_t + 1e-7))), S = sum_k p_k expm1(d_k), for logits
// shifted by d from a base whose probabilities are p, with expm1 and log1p done carefully
// (WGSL has neither).
//
// Both shaders declare `theta` (the flat parameters, f32) and `cache` (the forward cache, u32
// words, f32 values as bits); the functions below read them by those names (WGSL resolves
// module-scope names in any order).

const DELTA: f32 = 1e-7;

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

// f32 element i of the forward cache.
fn cf(i: u32) -> f32 {
    return bitcast<f32>(cache[i]);
}

// The sample's loss change from p_t, expm1(d_t) and S = sum_k p_k expm1(d_k).
fn change_from(pt: f32, dt_em1: f32, s: f32) -> f32 {
    let dp = pt * (dt_em1 - s) / (1.0 + s);
    return -log1pc(dp / (pt + DELTA));
}

// The sample's loss change when a unit feeding the logits changes by dz: logit k shifts by
// dz W[j, k] (row j of W at `row`), the sample's probabilities at `probs`, its label t.
fn row_shift_change(dz: f32, row: u32, o: u32, probs: u32, t: u32) -> f32 {
    var s = 0.0;
    var dt = 0.0;
    for (var k = 0u; k < o; k++) {
        let em1 = expm1c(dz * theta[row + k]);
        s += cf(probs + k) * em1;
        if (k == t) {
            dt = em1;
        }
    }
    return change_from(cf(probs + t), dt, s);
}
