//! Batched cross entropy with label targets (CPU twin of shaders/cross_entropy.wgsl), the sum of
//! squares error, and the precise per-sample loss CHANGE the incremental numerical gradient uses.

use super::real::{expm1_fast, expm1_series, ln_1p_fast, ln_1p_series, Real, SMALL_ARG};
use crate::backend::CEE_DELTA;

/// Per-sample losses -ln(p_t + 1e-7).
pub fn cross_entropy_labels<T: Real>(probs: &[T], labels: &[u8], classes: usize) -> Vec<T> {
    let delta = T::from_f64(CEE_DELTA);
    labels
        .iter()
        .enumerate()
        .map(|(b, &t)| -(probs[b * classes + t as usize] + delta).ln())
        .collect()
}

/// Mean of per-sample losses, accumulated in f64 so the mean itself adds no round-off.
pub fn mean<T: Real>(v: &[T]) -> f64 {
    v.iter().map(|x| x.to_f64()).sum::<f64>() / v.len().max(1) as f64
}

/// Per-sample sum of squares error 0.5 * sum_k (p_k - onehot(t)_k)^2.
pub fn sum_squares_labels<T: Real>(probs: &[T], labels: &[u8], classes: usize) -> Vec<T> {
    let half = T::from_f64(0.5);
    labels
        .iter()
        .enumerate()
        .map(|(b, &t)| {
            let row = &probs[b * classes..(b + 1) * classes];
            half * row
                .iter()
                .enumerate()
                .map(|(k, &p)| {
                    let d = if k == t as usize { p - T::ONE } else { p };
                    d * d
                })
                .sum::<T>()
        })
        .collect()
}

/// The change of one sample's loss -ln(p_t + delta) when its logits shift by `d`, computed
/// from the cached probabilities `p` without subtracting two losses near 2.3.
///
/// With S = sum_k p_k expm1(d_k), the new probability is p_t' = p_t exp(d_t) / (1 + S), so
///   p_t' - p_t = p_t (expm1(d_t) - S) / (1 + S)
///   loss' - loss = -log1p((p_t' - p_t) / (p_t + delta)),
/// every factor accurate to a few ulps even when d is ~1e-5: this is what keeps the f32
/// numerical gradient at ~1e-6 instead of ~10%.
#[inline]
pub fn cross_entropy_change<T: Real>(p: &[T], t: usize, d: &[T]) -> T {
    let mut s = T::ZERO;
    for (&pk, &dk) in p.iter().zip(d) {
        s += pk * expm1_fast(dk);
    }
    change_from_sum(p[t], expm1_fast(d[t]), s)
}

/// `cross_entropy_change` when only logit `k` moves (by `dk`): one expm1 instead of one per class.
#[inline]
pub fn cross_entropy_change_one<T: Real>(p: &[T], t: usize, k: usize, dk: T) -> T {
    let em1 = expm1_fast(dk);
    let dt_em1 = if k == t { em1 } else { T::ZERO };
    change_from_sum(p[t], dt_em1, p[k] * em1)
}

#[inline]
fn change_from_sum<T: Real>(pt: T, dt_em1: T, s: T) -> T {
    let dp = pt * (dt_em1 - s) / (T::ONE + s);
    -ln_1p_fast(dp / (pt + T::from_f64(CEE_DELTA)))
}

/// The most terms kept of the series of S(dz) below (f64's `Real::SERIES_TERMS`). With
/// |dz w_k| < 4e-4 (`series_ok`) the first term left out, (dz w)^(n+1) / (n+1)!, is below
/// 2.7e-12 of the terms' scale with f32's 3 terms and below 1e-24 with f64's 6.
const ROW_SHIFT_TERMS: usize = 6;

/// One sample's loss change when its logits shift by dz * w for a fixed row w (a unit of the
/// last hidden layer feeding the output through its row of weights), for many values of dz.
///
/// The incremental numerical gradient evaluates this for every nonzero input pixel of every
/// sample and unit (~10^6 times a step). S(dz) = sum_k p_k expm1(dz w_k) is, term by term of
/// expm1's series, sum_n dz^n / n! M_n with M_n = sum_k p_k w_k^n: regrouping the same sum, so
/// with the moments M_n precomputed once per (sample, unit) each evaluation costs a handful of
/// multiply-adds instead of one expm1 per class. Shifts too large for the series fall back to
/// the direct sum.
pub struct RowShift<'a, T> {
    p: &'a [T],
    w: &'a [T],
    t: usize,
    /// M_n / n!, n = 1..=ROW_SHIFT_TERMS.
    moments: [T; ROW_SHIFT_TERMS],
    w_max: T,
    w_t: T,
    /// p_t / (p_t + delta), hoisted out of every shift.
    c: T,
}

impl<'a, T: Real> RowShift<'a, T> {
    pub fn new(p: &'a [T], t: usize, w: &'a [T]) -> Self {
        let mut moments = [T::ZERO; ROW_SHIFT_TERMS];
        let mut w_max = T::ZERO;
        for (&pk, &wk) in p.iter().zip(w) {
            w_max = w_max.max(wk.abs());
            let mut pw = pk;
            for m in moments[..T::SERIES_TERMS].iter_mut() {
                pw *= wk;
                *m += pw;
            }
        }
        let mut fact = 1.0;
        for (n, m) in moments.iter_mut().enumerate() {
            fact *= (n + 1) as f64;
            *m = *m / T::from_f64(fact);
        }
        let pt = p[t];
        RowShift {
            p,
            w,
            t,
            moments,
            w_max,
            w_t: w[t],
            c: pt / (pt + T::from_f64(CEE_DELTA)),
        }
    }

    /// Whether every shift |dz| <= dz_max can take `change_series`: each expm1 argument below
    /// SMALL_ARG, and the log1p argument, about (expm1(d_t) - S), below it too.
    pub fn series_ok(&self, dz_max: T) -> bool {
        dz_max * self.w_max * T::from_f64(2.5) < T::from_f64(SMALL_ARG)
    }

    /// `change(dz)` where `series_ok` holds: the same arithmetic, without the branches.
    #[inline(always)]
    pub fn change_series(&self, dz: T) -> T {
        let mut s = self.moments[T::SERIES_TERMS - 1];
        for n in (0..T::SERIES_TERMS - 1).rev() {
            s = self.moments[n] + dz * s;
        }
        s *= dz;
        -ln_1p_series((expm1_series(dz * self.w_t) - s) * self.c / (T::ONE + s))
    }

    /// The loss change for logits shifted by dz * w.
    #[inline]
    pub fn change(&self, dz: T) -> T {
        if self.series_ok(dz.abs()) {
            self.change_series(dz)
        } else {
            let mut s = T::ZERO;
            for (&pk, &wk) in self.p.iter().zip(self.w) {
                s += pk * (dz * wk).exp_m1();
            }
            change_from_sum(self.p[self.t], (dz * self.w[self.t]).exp_m1(), s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::softmax::softmax_rows;

    #[test]
    fn loss_change_matches_the_difference_of_losses_in_f64() {
        let logits = [0.3f64, -1.2, 2.0, 0.01];
        let mut p = logits;
        softmax_rows(&mut p, 4);
        let loss = |l: &[f64]| {
            let mut q = l.to_vec();
            softmax_rows(&mut q, 4);
            -(q[2] + CEE_DELTA).ln()
        };
        for d in [
            [1e-3, 0.0, -2e-3, 5e-4],
            [0.0, 0.0, 0.1, 0.0],
            [0.4, -0.3, 0.0, 0.2],
        ] {
            let shifted: Vec<f64> = logits.iter().zip(&d).map(|(a, b)| a + b).collect();
            let want = loss(&shifted) - loss(&logits);
            let got = cross_entropy_change(&p, 2, &d);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1e-3),
                "{got} vs {want}"
            );
        }
        let mut d = [0.0; 4];
        d[1] = 3e-4;
        assert!(
            (cross_entropy_change_one(&p, 2, 1, 3e-4) - cross_entropy_change(&p, 2, &d)).abs()
                < 1e-18
        );
        let w = [0.7, -1.3, 0.05, 2.2];
        for dz in [1e-6, -4e-5, 2e-4, 0.05] {
            let d: Vec<f64> = w.iter().map(|wk| dz * wk).collect();
            let (a, b) = (
                RowShift::new(&p, 2, &w).change(dz),
                cross_entropy_change(&p, 2, &d),
            );
            assert!(
                (a - b).abs() <= 1e-14 * b.abs(),
                "row shift {dz}: {a:e} vs {b:e}"
            );
        }
        d = [0.0; 4];
        d[2] = -3e-4;
        assert!(
            (cross_entropy_change_one(&p, 2, 2, -3e-4) - cross_entropy_change(&p, 2, &d)).abs()
                < 1e-18
        );
    }
}
