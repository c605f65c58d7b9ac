//! Hidden-layer activations (CPU twin of the GPU's fused bias + activation): the function, its
//! derivative, and the CHANGE act(a + e) - act(a) computed without cancellation, which the
//! incremental numerical gradient needs in f32.

use super::real::{expm1_fast, expm1_series, Real, SMALL_ARG};
use crate::model::Activation;

#[inline]
pub fn activate<T: Real>(act: Activation, a: T) -> T {
    match act {
        Activation::Sigmoid => T::ONE / (T::ONE + (-a).exp()),
        Activation::Relu => a.max(T::ZERO),
    }
}

/// d act / d a, from the pre-activation `a` and the activation `z` = act(a) (relu'(0) = 0).
#[inline]
pub fn activate_grad<T: Real>(act: Activation, a: T, z: T) -> T {
    match act {
        Activation::Sigmoid => z * (T::ONE - z),
        Activation::Relu => {
            if a > T::ZERO {
                T::ONE
            } else {
                T::ZERO
            }
        }
    }
}

/// act(a + e) - act(a), accurate to a few ulps of the change itself (not of act(a)).
pub fn activation_change<T: Real>(act: Activation, a: T, e: T) -> T {
    ActivationPoint::new(act, a).change(e)
}

/// One unit's activation at pre-activation `a`, with what its CHANGE under a shift needs
/// precomputed: the incremental numerical gradient shifts the same unit by many different e
/// (one per nonzero input pixel), so exp(-|a|) is paid once, not once per pixel.
#[derive(Debug, Clone, Copy)]
pub struct ActivationPoint<T> {
    act: Activation,
    a: T,
    /// sigmoid: exp(-|a|), in (0, 1].
    u: T,
    /// sigmoid: 1 / (1 + u), hoisted out of every shift.
    inv_1pu: T,
    /// sigmoid: +1 for a >= 0, -1 for a < 0 (the symmetry below).
    sign: T,
}

/// How a unit responds to every shift |e| <= e_max at once, decided once per unit so the loop
/// over its shifts can run without branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftRegime {
    /// Every change is given by `change_series` and |change| <= `max_change(e_max)`.
    Series,
    /// relu below zero for every shift: every change is exactly 0.
    Dead,
    /// Neither (large shifts, or relu's kink within reach): use `change`.
    General,
}

impl<T: Real> ActivationPoint<T> {
    #[inline]
    pub fn new(act: Activation, a: T) -> Self {
        let sign = if a >= T::ZERO { T::ONE } else { -T::ONE };
        let u = match act {
            Activation::Sigmoid => (-a.abs()).exp(),
            Activation::Relu => T::ZERO,
        };
        ActivationPoint {
            act,
            a,
            u,
            inv_1pu: T::ONE / (T::ONE + u),
            sign,
        }
    }

    pub fn regime(&self, e_max: T) -> ShiftRegime {
        match self.act {
            Activation::Sigmoid if e_max < T::from_f64(SMALL_ARG) => ShiftRegime::Series,
            Activation::Relu if self.a > e_max => ShiftRegime::Series,
            Activation::Relu if self.a + e_max <= T::ZERO => ShiftRegime::Dead,
            _ => ShiftRegime::General,
        }
    }

    /// A bound on |change(e)| for |e| <= e_max: sigmoid' <= 1/4, relu' <= 1.
    pub fn max_change(&self, e_max: T) -> T {
        match self.act {
            Activation::Sigmoid => e_max * T::from_f64(0.25),
            Activation::Relu => e_max,
        }
    }

    /// `change(e)` in the `Series` regime: the same arithmetic, without the branches.
    #[inline(always)]
    pub fn change_series(&self, e: T) -> T {
        match self.act {
            Activation::Sigmoid => {
                let em1 = expm1_series(-(self.sign * e));
                -(self.sign * em1 * self.u * self.inv_1pu) / (T::ONE + self.u * (em1 + T::ONE))
            }
            Activation::Relu => e,
        }
    }

    /// act(a + e) - act(a).
    ///
    /// Subtracting two sigmoids near 0.5 that differ by ~1e-5 keeps only 2-3 significant f32
    /// digits; instead, for a >= 0 with u = exp(-a),
    ///   sigmoid(a + e) - sigmoid(a) = -expm1(-e) u / ((1 + u exp(-e)) (1 + u)),
    /// a product of accurate factors, and for a < 0 the symmetry sigmoid(-x) = 1 - sigmoid(x)
    /// gives the change as -change(-a, -e), so u <= 1 always.
    #[inline]
    pub fn change(&self, e: T) -> T {
        match self.act {
            Activation::Sigmoid if e.abs() < T::from_f64(SMALL_ARG) => self.change_series(e),
            Activation::Sigmoid => {
                let (u, sign) = (self.u, self.sign);
                let em1 = expm1_fast(-(sign * e));
                let d = -em1 * u * self.inv_1pu / (T::ONE + u * (em1 + T::ONE));
                if d.is_finite() {
                    sign * d
                } else {
                    // Only for shifts so large that exp(-e) overflows: no cancellation there.
                    activate(self.act, self.a + e) - activate(self.act, self.a)
                }
            }
            Activation::Relu => {
                let (a, b) = (self.a, self.a + e);
                if a > T::ZERO && b > T::ZERO {
                    e
                } else if a <= T::ZERO && b <= T::ZERO {
                    T::ZERO
                } else {
                    b.max(T::ZERO) - a.max(T::ZERO)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_change_is_exact_in_f32() {
        for &a in &[-30.0f64, -3.0, -0.4, 0.0, 0.2, 1.5, 12.0] {
            for &e in &[1e-4f64, -1e-4, 3.7e-7, -2.5e-5, 0.3] {
                let want = 1.0 / (1.0 + (-(a + e)).exp()) - 1.0 / (1.0 + (-a).exp());
                let got = activation_change(Activation::Sigmoid, a as f32, e as f32) as f64;
                // e itself is rounded to f32 (relative 6e-8), so compare with that much slack.
                let want32 = {
                    let e32 = e as f32 as f64;
                    let a32 = a as f32 as f64;
                    1.0 / (1.0 + (-(a32 + e32)).exp()) - 1.0 / (1.0 + (-a32).exp())
                };
                let naive_err = 2e-15 / (1.0 + (-a).exp());
                assert!(
                    (got - want32).abs() <= 1e-6 * want32.abs() + naive_err,
                    "a {a} e {e}: {got} vs {want32} ({want})"
                );
                // The naive f64 reference itself is only good to ~1e-16 * sigmoid(a).
                let got64 = activation_change(Activation::Sigmoid, a, e);
                let naive_err = 2e-15 / (1.0 + (-a).exp());
                assert!(
                    (got64 - want).abs() <= 1e-9 * want.abs() + naive_err,
                    "f64 a {a} e {e}: {got64} vs {want}"
                );
            }
        }
    }

    #[test]
    fn relu_change() {
        assert_eq!(activation_change(Activation::Relu, 2.0f64, 1e-4), 1e-4);
        assert_eq!(activation_change(Activation::Relu, -2.0f64, 1e-4), 0.0);
        assert_eq!(
            activation_change(Activation::Relu, -0.5e-4f64, 1e-4),
            0.5e-4
        );
        assert_eq!(activation_grad_relu_at_zero(), 0.0);
    }

    fn activation_grad_relu_at_zero() -> f64 {
        activate_grad(Activation::Relu, 0.0f64, 0.0)
    }
}
