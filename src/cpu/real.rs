//! `Real`: the two precisions of the CPU backend. f64 is the oracle every other path is checked
//! against; f32 is the honest fast path (and what the GPU computes in).

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NAME: &'static str;
    /// x = pixel / 255 for every byte value (the data set's table).
    const PIXEL: &'static [Self; 256];
    /// Terms kept of the short series below (`expm1_series`, `ln_1p_series`, the row moments of
    /// the loss change): enough that the first term left out, for arguments under SMALL_ARG, is
    /// far below this precision's round-off.
    const SERIES_TERMS: usize;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn exp_m1(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn is_finite(self) -> bool;
    /// self * a + b rounded once. Fast only where compiled with the `fma` target feature
    /// (elsewhere it is a libm call): use it only behind a feature check.
    fn mul_add(self, a: Self, b: Self) -> Self;

    /// C (m x n) = alpha * A (m x k) . B (k x n) + beta * C, with explicit row/column strides so
    /// that transposes cost nothing.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );
}

/// Checks that a strided m x n matrix fits in `len` elements, so the unsafe gemm call below
/// never reads or writes outside its slice. Every product and sum is checked: a wrapped offset
/// would pass the comparison and let the call run outside the slice.
fn fits(rows: usize, cols: usize, rs: isize, cs: isize, len: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let (Ok(rs), Ok(cs)) = (usize::try_from(rs), usize::try_from(cs)) else {
        return false;
    };
    (rows - 1)
        .checked_mul(rs)
        .zip((cols - 1).checked_mul(cs))
        .and_then(|(a, b)| a.checked_add(b))
        .is_some_and(|last| last < len)
}

macro_rules! impl_real {
    ($t:ty, $name:expr, $gemm:path, $pixel:expr, $terms:expr) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            const PIXEL: &'static [Self; 256] = &$pixel;
            const SERIES_TERMS: usize = $terms;
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline]
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                rsa: isize,
                csa: isize,
                b: &[Self],
                rsb: isize,
                csb: isize,
                beta: Self,
                c: &mut [Self],
                rsc: isize,
                csc: isize,
            ) {
                assert!(fits(m, k, rsa, csa, a.len()), "gemm: A out of bounds");
                assert!(fits(k, n, rsb, csb, b.len()), "gemm: B out of bounds");
                assert!(fits(m, n, rsc, csc, c.len()), "gemm: C out of bounds");
                if m == 0 || n == 0 {
                    return;
                }
                // SAFETY: the three asserts above keep every strided access inside its slice.
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        alpha,
                        a.as_ptr(),
                        rsa,
                        csa,
                        b.as_ptr(),
                        rsb,
                        csb,
                        beta,
                        c.as_mut_ptr(),
                        rsc,
                        csc,
                    )
                }
            }
        }
    };
}

// Series terms: with |x| < SMALL_ARG = 1e-3 the first term left out is below x^3 / 4 <= 2.5e-10
// relative with 3 terms (f32's round-off is 6e-8) and below x^6 / 7 <= 1.5e-19 with 6 (f64's is
// 1.1e-16).
impl_real!(f32, "f32", matrixmultiply::sgemm, crate::data::PIXEL_F32, 3);
impl_real!(f64, "f64", matrixmultiply::dgemm, crate::data::PIXEL_F64, 6);

/// Below this |x| the short series of `expm1_fast` and `ln_1p_fast` are exact to the precision
/// (`Real::SERIES_TERMS` terms).
pub const SMALL_ARG: f64 = 1e-3;

/// expm1(x): its Taylor polynomial of `Real::SERIES_TERMS` terms where |x| < 1e-3 (exact to the
/// precision, and ~10x cheaper than libm's), libm's expm1 elsewhere. The incremental numerical
/// gradient calls it ~10^6 times a step with |x| ~ 1e-5.
#[inline]
pub fn expm1_fast<T: Real>(x: T) -> T {
    if x.abs() < T::from_f64(SMALL_ARG) {
        expm1_series(x)
    } else {
        x.exp_m1()
    }
}

/// The series of expm1 alone, for callers that checked |x| < SMALL_ARG themselves (branch-free,
/// so loops over it vectorise).
#[inline(always)]
pub fn expm1_series<T: Real>(x: T) -> T {
    let c = |v: f64| T::from_f64(v);
    if T::SERIES_TERMS == 3 {
        return x * (T::ONE + x * (c(0.5) + x * c(1.0 / 6.0)));
    }
    x * (T::ONE
        + x * (c(0.5)
            + x * (c(1.0 / 6.0) + x * (c(1.0 / 24.0) + x * (c(1.0 / 120.0) + x * c(1.0 / 720.0))))))
}

/// ln(1 + x): its alternating series of `Real::SERIES_TERMS` terms where |x| < 1e-3 (exact as
/// above), libm's log1p elsewhere.
#[inline]
pub fn ln_1p_fast<T: Real>(x: T) -> T {
    if x.abs() < T::from_f64(SMALL_ARG) {
        ln_1p_series(x)
    } else {
        x.ln_1p()
    }
}

/// The series of ln(1 + x) alone, for |x| < SMALL_ARG checked by the caller.
#[inline(always)]
pub fn ln_1p_series<T: Real>(x: T) -> T {
    let c = |v: f64| T::from_f64(v);
    if T::SERIES_TERMS == 3 {
        return x * (T::ONE + x * (c(-0.5) + x * c(1.0 / 3.0)));
    }
    x * (T::ONE
        + x * (c(-0.5) + x * (c(1.0 / 3.0) + x * (c(-0.25) + x * (c(0.2) + x * c(-1.0 / 6.0))))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_series_match_libm() {
        for &x in &[
            0.0f64, 1e-12, -3.3e-9, 2.5e-5, -7.7e-5, 9.99e-4, -9.99e-4, 1.5e-3, -0.4, 3.0,
        ] {
            let (a, b) = (expm1_fast(x), x.exp_m1());
            assert!(
                (a - b).abs() <= 2.5e-16 * b.abs(),
                "expm1 {x}: {a:e} vs {b:e}"
            );
            let (a, b) = (ln_1p_fast(x), x.ln_1p());
            assert!(
                (a - b).abs() <= 2.5e-16 * b.abs(),
                "ln_1p {x}: {a:e} vs {b:e}"
            );
            let xf = x as f32;
            let (a, b) = (expm1_fast(xf) as f64, (xf as f64).exp_m1());
            assert!((a - b).abs() <= 1.2e-7 * b.abs(), "f32 expm1 {x}");
            let (a, b) = (ln_1p_fast(xf) as f64, (xf as f64).ln_1p());
            assert!((a - b).abs() <= 1.2e-7 * b.abs(), "f32 ln_1p {x}");
        }
    }
}
