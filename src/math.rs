//! The chapter as a small f64 library. Each function reads like its NumPy original in the
//! chapter; the tests reproduce every worked value of the chapter.

use crate::error::{Error, Result};

/// The small constant the chapter adds inside the log: ln(0) would be -inf.
pub const DELTA: f64 = 1e-7;

/// The chapter's step for numerical differentiation. Much smaller and f(x + h) rounds to f(x).
pub const H: f64 = 1e-4;

/// Sum of squares error: 0.5 * sum((y - t)^2).
pub fn sum_squares_error(y: &[f64], t: &[f64]) -> f64 {
    0.5 * y.iter().zip(t).map(|(y, t)| (y - t) * (y - t)).sum::<f64>()
}

/// The targets of a batch: one-hot rows (same shape as y) or class labels (one per row).
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    OneHot(&'a [f64]),
    Labels(&'a [usize]),
}

/// Cross entropy error, mean over the batch: -sum(t * ln(y + delta)) / batch.
///
/// `y` holds `rows` rows of `classes` values; a single row is a batch of one (the chapter's 1-D
/// case). With `delta` = 0 a term whose target is 0 counts as 0 (the limit of t ln y), so the
/// chapter's NaN (0 * -inf in NumPy) cannot appear; a target class predicted with probability 0
/// is an error (the loss is infinite), never a silent NaN.
pub fn cross_entropy_error_with_delta(
    y: &[f64],
    classes: usize,
    t: Targets,
    delta: f64,
) -> Result<f64> {
    if classes == 0 || !y.len().is_multiple_of(classes) || y.is_empty() {
        return Err(Error::config(
            "y",
            format!("{} values do not make rows of {classes} classes", y.len()),
        ));
    }
    let rows = y.len() / classes;
    let mut total = 0.0;
    match t {
        Targets::OneHot(t) => {
            if t.len() != y.len() {
                return Err(Error::config(
                    "t",
                    format!("one-hot targets have {} values, y has {}", t.len(), y.len()),
                ));
            }
            for (&yk, &tk) in y.iter().zip(t) {
                if tk != 0.0 {
                    total -= tk * (yk + delta).ln();
                }
            }
        }
        Targets::Labels(labels) => {
            if labels.len() != rows {
                return Err(Error::config(
                    "t",
                    format!("{} labels for {rows} rows", labels.len()),
                ));
            }
            for (row, &label) in labels.iter().enumerate() {
                if label >= classes {
                    return Err(Error::config(
                        "t",
                        format!("label {label} in row {row} is not below {classes}"),
                    ));
                }
                total -= (y[row * classes + label] + delta).ln();
            }
        }
    }
    if !total.is_finite() {
        return Err(Error::Numerics(format!(
            "cross entropy is infinite: a target class has probability 0 and delta is {delta}; use delta = {DELTA}"
        )));
    }
    Ok(total / rows as f64)
}

/// The chapter's cross entropy error, delta = 1e-7 inside the log.
pub fn cross_entropy_error(y: &[f64], classes: usize, t: Targets) -> Result<f64> {
    cross_entropy_error_with_delta(y, classes, t, DELTA)
}

/// Row-wise softmax; subtracting each row's max first keeps exp from overflowing.
pub fn softmax(x: &[f64], cols: usize) -> Vec<f64> {
    let mut out = x.to_vec();
    for row in out.chunks_mut(cols.max(1)) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
    out
}

/// Central difference (f(x + h) - f(x - h)) / 2h with the chapter's h = 1e-4.
pub fn numerical_diff(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    (f(x + H) - f(x - H)) / (2.0 * H)
}

/// The chapter's "bad" first try: forward difference with a caller-chosen h.
pub fn forward_diff(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x)) / h
}

/// Numerical gradient of `f` at `x`, any length: each element is perturbed by +-h, f evaluated,
/// and the element restored, exactly as the chapter does it.
pub fn numerical_gradient(mut f: impl FnMut(&[f64]) -> f64, x: &mut [f64]) -> Vec<f64> {
    let mut grad = vec![0.0; x.len()];
    for i in 0..x.len() {
        let tmp = x[i];
        x[i] = tmp + H;
        let fxh1 = f(x);
        x[i] = tmp - H;
        let fxh2 = f(x);
        grad[i] = (fxh1 - fxh2) / (2.0 * H);
        x[i] = tmp;
    }
    grad
}

/// Gradient descent: x -= lr * grad, `steps` times. Returns the end point and the path taken
/// (the start point first), which the demo plots over the function's contour.
pub fn gradient_descent(
    mut f: impl FnMut(&[f64]) -> f64,
    init: &[f64],
    lr: f64,
    steps: usize,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut x = init.to_vec();
    let mut path = Vec::with_capacity(steps + 1);
    for _ in 0..steps {
        path.push(x.clone());
        let grad = numerical_gradient(&mut f, &mut x);
        for (xi, gi) in x.iter_mut().zip(&grad) {
            *xi -= lr * gi;
        }
    }
    path.push(x.clone());
    (x, path)
}

/// The chapter's function_2: x0^2 + x1^2 (any length).
pub fn function_2(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum()
}

/// The chapter's simpleNet: one 2x3 weight matrix, no bias, softmax + cross entropy.
#[derive(Debug, Clone)]
pub struct SimpleNet {
    /// 2x3, row-major.
    pub w: Vec<f64>,
}

impl SimpleNet {
    pub const INPUTS: usize = 2;
    pub const CLASSES: usize = 3;

    /// x . W
    pub fn predict(&self, x: &[f64]) -> Vec<f64> {
        (0..Self::CLASSES)
            .map(|j| {
                (0..Self::INPUTS)
                    .map(|i| x[i] * self.w[i * Self::CLASSES + j])
                    .sum()
            })
            .collect()
    }

    pub fn loss(&self, x: &[f64], label: usize) -> Result<f64> {
        let y = softmax(&self.predict(x), Self::CLASSES);
        cross_entropy_error(&y, Self::CLASSES, Targets::Labels(&[label]))
    }

    /// dLoss/dW by the numerical gradient, as the chapter computes it.
    pub fn numerical_gradient(&mut self, x: &[f64], label: usize) -> Vec<f64> {
        let mut w = self.w.clone();
        let g = numerical_gradient(
            |w| {
                SimpleNet { w: w.to_vec() }
                    .loss(x, label)
                    .unwrap_or(f64::NAN)
            },
            &mut w,
        );
        self.w = w;
        g
    }
}

/// The index of the first largest value (NumPy's argmax).
pub fn argmax<T: PartialOrd>(x: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    //! Every worked value of the chapter, copied here from its text.
    use super::*;

    fn close(got: f64, want: f64, rtol: f64) {
        let err = (got - want).abs();
        assert!(
            err <= rtol * want.abs(),
            "got {got:.17e}, want {want:.17e}, rel err {:.3e}",
            err / want.abs()
        );
    }
    const R: f64 = crate::tolerance::SEED_VALUE_RTOL;

    fn one_hot(k: usize, n: usize) -> Vec<f64> {
        (0..n).map(|i| if i == k { 1.0 } else { 0.0 }).collect()
    }
    const Y2: [f64; 10] = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0];
    const Y7: [f64; 10] = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0];

    #[test]
    fn sum_squares_error_rows() {
        let t = one_hot(2, 10);
        close(sum_squares_error(&Y2, &t), 0.09750000000000003, R);
        close(sum_squares_error(&Y7, &t), 0.5975, R);
    }

    #[test]
    fn cross_entropy_rows() {
        let t = one_hot(2, 10);
        close(
            cross_entropy_error(&Y2, 10, Targets::OneHot(&t)).unwrap(),
            0.510825457099338,
            R,
        );
        close(
            cross_entropy_error(&Y7, 10, Targets::OneHot(&t)).unwrap(),
            2.302584092994546,
            R,
        );
        // A 1-D y with a 1-D label is a batch of one.
        close(
            cross_entropy_error(&Y2, 10, Targets::Labels(&[2])).unwrap(),
            0.510825457099338,
            R,
        );
    }

    #[test]
    fn cross_entropy_without_delta_is_never_a_silent_nan() {
        let t = one_hot(2, 10);
        // NumPy gives NaN (0 * -inf); here t = 0 terms count 0, so the value is finite: -ln(0.1).
        let v = cross_entropy_error_with_delta(&Y7, 10, Targets::OneHot(&t), 0.0).unwrap();
        assert!(v.is_finite());
        close(v, -(0.1f64.ln()), R);
        // A target predicted with probability 0 is an error, not NaN or inf.
        let e = cross_entropy_error_with_delta(&Y7, 10, Targets::Labels(&[3]), 0.0).unwrap_err();
        assert!(e.to_string().contains("infinite"), "{e}");
    }

    #[test]
    fn batched_cross_entropy_rows() {
        let y: Vec<f64> = Y2.iter().chain(Y7.iter()).cloned().collect();
        let t: Vec<f64> = one_hot(2, 10).into_iter().chain(one_hot(2, 10)).collect();
        close(
            cross_entropy_error(&y, 10, Targets::OneHot(&t)).unwrap(),
            1.406704775046942,
            R,
        );
        close(
            cross_entropy_error(&y, 10, Targets::Labels(&[2, 2])).unwrap(),
            1.406704775046942,
            R,
        );
    }

    #[test]
    fn bad_targets_are_errors() {
        assert!(cross_entropy_error(&Y2, 10, Targets::Labels(&[10])).is_err());
        assert!(cross_entropy_error(&Y2, 10, Targets::Labels(&[1, 2])).is_err());
        assert!(cross_entropy_error(&Y2[..7], 10, Targets::Labels(&[1])).is_err());
    }

    #[test]
    fn softmax_rows() {
        let s = softmax(&[1010.0, 1000.0, 990.0], 3);
        let want = [9.99954600e-01, 4.53978686e-05, 2.06106005e-09];
        for (g, w) in s.iter().zip(want) {
            close(*g, w, 1e-8); // the table gives 9 significant digits
        }
        let naive: Vec<f64> = [1010.0f64, 1000.0, 990.0].iter().map(|v| v.exp()).collect();
        assert!(naive[0].is_infinite(), "the naive way overflows");
        let s = softmax(&[0.3, 2.9, 4.0], 3);
        for (g, w) in s.iter().zip([0.01821127, 0.24519181, 0.73659691]) {
            close(*g, w, 1e-6);
        }
        close(s.iter().sum::<f64>(), 1.0, R);
    }

    #[test]
    fn numerical_diff_rows() {
        // The chapter's 0.01*x**2 + 0.1*x: x**2 first, then the product (the order moves the last digits).
        let f1 = |x: f64| 0.01 * (x * x) + 0.1 * x;
        close(numerical_diff(f1, 5.0), 0.1999999999990898, R);
        close(numerical_diff(f1, 10.0), 0.2999999999986347, R);
        let f2 = |x: f64| 2.0 * (x * x) + 2.0;
        close(numerical_diff(f2, 4.0), 15.999999999998238, R);
        assert_eq!(forward_diff(f2, 4.0, 10e-50), 0.0, "h vanishes in rounding");
        let f3 = |x: f64| 3.0 * x.powi(4) + 2.0 * x.powi(3) + 6.0 * x * x + 7.0;
        close(numerical_diff(f3, 6.0), 2880.0000007368, 1e-9);
        // Partial derivatives of x0^2 + x1^2 at (3, 4).
        close(
            numerical_diff(|x0| x0 * x0 + 4.0f64 * 4.0, 3.0),
            6.00000000000378,
            R,
        );
        close(
            numerical_diff(|x1| 3.0f64 * 3.0 + x1 * x1, 4.0),
            7.999999999999119,
            R,
        );
    }

    #[test]
    fn gradient_of_function_2_rows() {
        let g = numerical_gradient(function_2, &mut [3.0, 4.0]);
        close(g[0], 6.0, 1e-9);
        close(g[1], 8.0, 1e-9);
        let g = numerical_gradient(function_2, &mut [0.0, 2.0]);
        assert!(g[0].abs() < 1e-9);
        close(g[1], 4.0, 1e-9);
        let g = numerical_gradient(function_2, &mut [3.0, 0.0]);
        close(g[0], 6.0, 1e-9);
        assert!(g[1].abs() < 1e-9);
    }

    #[test]
    fn gradient_descent_rows() {
        let init = [-3.0, 4.0];
        let (x, path) = gradient_descent(function_2, &init, 0.1, 100);
        close(x[0], -6.111107928998789e-10, 1e-6);
        close(x[1], 8.148143905314271e-10, 1e-6);
        assert_eq!(path.len(), 101);
        assert_eq!(path[0], vec![-3.0, 4.0]);
        let (x, _) = gradient_descent(function_2, &init, 10.0, 100);
        close(x[0], -25898374737328.363, 1e-6);
        close(x[1], -1295248616896.5398, 1e-6);
        let (x, _) = gradient_descent(function_2, &init, 1e-10, 100);
        close(x[0], -2.999999939999995, R);
        close(x[1], 3.9999999199999934, R);
    }

    fn simple_net() -> SimpleNet {
        SimpleNet {
            w: vec![
                0.47355232, 0.9977393, 0.84668094, 0.85557411, 0.03563661, 0.69422093,
            ],
        }
    }

    #[test]
    fn simple_net_rows() {
        let mut net = simple_net();
        let x = [0.6, 0.9];
        let p = net.predict(&x);
        for (g, w) in p.iter().zip([1.05414809, 0.63071653, 1.1328074]) {
            assert!((g - w).abs() <= 1e-8, "predict {g} vs {w}");
        }
        assert_eq!(argmax(&p), 2);
        close(net.loss(&x, 2).unwrap(), 0.9280682857864075, 1e-10);
        let g = net.numerical_gradient(&x, 2);
        let want = [
            0.2192475712392561,
            0.14356242984070455,
            -0.3628100010055757,
            0.3288713569016277,
            0.21534364482433954,
            -0.5442150014745017,
        ];
        for (g, w) in g.iter().zip(want) {
            close(*g, w, 1e-8);
        }
        assert_eq!(
            net.w,
            simple_net().w,
            "each element restored after perturbation"
        );
    }
}
