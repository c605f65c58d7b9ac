//! The chapter's walkthrough: every worked number of chapter 4 computed with `crate::math` and
//! printed in the chapter's order, plus the two gradient figures when asked for.
//!
//! Numbers print the way Python's repr does (shortest round-trip digits, exponent below 1e-4),
//! so they read exactly like the chapter's table.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::math::{self, SimpleNet, Targets};
use crate::report::plot;

const Y2: [f64; 10] = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0];
const Y7: [f64; 10] = [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0];
const W: [f64; 6] = [
    0.47355232, 0.9977393, 0.84668094, 0.85557411, 0.03563661, 0.69422093,
];

/// Prints the walkthrough to `w`. With `out` = Some(dir), also writes `gradient_field` and
/// `descent_path` as .png and .svg into `dir` (created if missing) and returns their paths.
pub fn run(out: Option<&Path>, w: &mut dyn Write) -> Result<Vec<PathBuf>> {
    let sections = [
        losses()?,
        softmax(),
        derivatives(),
        gradients(),
        descent(),
        simple_net()?,
    ];
    let text = sections.join("\n");
    w.write_all(text.as_bytes())
        .map_err(|e| Error::io("demo output", e))?;
    let Some(dir) = out else {
        return Ok(Vec::new());
    };

    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // The chapter's figure 4-10: lr 0.1, 20 steps from (-3, 4).
    let (_, path) = math::gradient_descent(math::function_2, &[-3.0, 4.0], 0.1, 20);
    let mut written = Vec::new();
    for ext in ["png", "svg"] {
        let field = dir.join(format!("gradient_field.{ext}"));
        plot::gradient_field(&field)?;
        let descent = dir.join(format!("descent_path.{ext}"));
        plot::descent_path(&descent, &path)?;
        written.extend([field, descent]);
    }
    let mut listing = String::from("\n== Figures ==\n");
    for p in &written {
        let _ = writeln!(listing, "wrote {}", p.display());
    }
    w.write_all(listing.as_bytes())
        .map_err(|e| Error::io("demo output", e))?;
    Ok(written)
}

/// Appends a line to a String; writing to a String cannot fail.
macro_rules! say {
    ($s:ident, $($arg:tt)*) => {{ let _ = writeln!($s, $($arg)*); }};
}

fn losses() -> Result<String> {
    let mut s = String::from("== 4.2 Loss functions ==\n");
    let t: Vec<f64> = (0..10).map(|i| if i == 2 { 1.0 } else { 0.0 }).collect();
    let cee = |y: &[f64]| math::cross_entropy_error(y, 10, Targets::OneHot(&t));
    say!(s, "t  = {} (the answer is 2)", list(&t));
    say!(s, "y2 = {} (most on 2: correct)", list(&Y2));
    say!(s, "y7 = {} (most on 7: wrong)", list(&Y7));
    say!(s, "{:<24}{:<22}{}", "", "y2 (correct)", "y7 (wrong)");
    let (sse2, sse7) = (
        math::sum_squares_error(&Y2, &t),
        math::sum_squares_error(&Y7, &t),
    );
    // 15 decimals: the 16th depends on the summation order (NumPy's SSE(y7) is 0.5975, a
    // left-to-right sum gives 0.5974999999999999).
    say!(
        s,
        "{:<24}{:<22}{:.15}",
        "sum of squares error",
        format!("{sse2:.15}"),
        sse7
    );
    say!(
        s,
        "{:<24}{:<22}{:.15}",
        "cross entropy error",
        format!("{:.15}", cee(&Y2)?),
        cee(&Y7)?
    );
    say!(s, "Both losses are smaller for the correct prediction.");
    let no_delta = math::cross_entropy_error_with_delta(&Y7, 10, Targets::OneHot(&t), 0.0)?;
    say!(
        s,
        "CEE of y7 without delta: {} (NumPy gives NaN from 0 * ln 0; here t = 0 terms count 0)",
        py(no_delta)
    );

    say!(
        s,
        "\n== 4.2.4 Mini-batch cross entropy (rows y2, y7, mean over the batch) =="
    );
    let y: Vec<f64> = Y2.iter().chain(&Y7).copied().collect();
    let tt: Vec<f64> = t.iter().chain(&t).copied().collect();
    let one_hot = math::cross_entropy_error(&y, 10, Targets::OneHot(&tt))?;
    let labels = math::cross_entropy_error(&y, 10, Targets::Labels(&[2, 2]))?;
    say!(s, "one-hot targets [t, t]: {one_hot:.15}");
    say!(
        s,
        "label targets [2, 2]:   {labels:.15} (the two forms agree)"
    );
    Ok(s)
}

fn softmax() -> String {
    let mut s = String::from("== 3.5 Softmax (subtract the row max first) ==\n");
    let a = [1010.0, 1000.0, 990.0];
    let naive: Vec<f64> = a.iter().map(|v: &f64| v.exp()).collect();
    let naive_sum: f64 = naive.iter().sum();
    say!(
        s,
        "naive exp({}) = {}, divided by their sum: {} (overflow)",
        list(&a),
        list(&naive),
        naive[0] / naive_sum
    );
    let fixed = math::softmax(&a, 3);
    say!(
        s,
        "softmax({}) = [{}]",
        list(&a),
        fixed
            .iter()
            .map(|v| sci(*v, 8))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let b = [0.3, 2.9, 4.0];
    let y = math::softmax(&b, 3);
    say!(
        s,
        "softmax({}) = [{}], sum {}",
        list(&b),
        y.iter()
            .map(|v| format!("{v:.8}"))
            .collect::<Vec<_>>()
            .join(", "),
        py(y.iter().sum())
    );
    s
}

fn derivatives() -> String {
    let mut s =
        String::from("== 4.3 Numerical differentiation (central difference, h = 1e-4) ==\n");
    let f1 = |x: f64| 0.01 * (x * x) + 0.1 * x;
    say!(s, "f(x) = 0.01x^2 + 0.1x, true derivative 0.02x + 0.1");
    for (x, exact) in [(5.0, 0.2), (10.0, 0.3)] {
        let d = math::numerical_diff(f1, x);
        say!(
            s,
            "  f'({x}): numerical {}  true {exact}  error {}",
            py(d),
            sci(d - exact, 2)
        );
    }
    let f2 = |x: f64| 2.0 * (x * x) + 2.0;
    say!(
        s,
        "f(x) = 2x^2 + 2: f'(4) = {} (true 16)",
        py(math::numerical_diff(f2, 4.0))
    );
    let forward = math::forward_diff(f2, 4.0, 1e-50);
    say!(
        s,
        "  forward difference with h = 1e-50: {} (x + h rounds to x: why h = 1e-4)",
        py(forward)
    );
    let f3 = |x: f64| 3.0 * x.powi(4) + 2.0 * x.powi(3) + 6.0 * x * x + 7.0;
    say!(
        s,
        "f(x) = 3x^4 + 2x^3 + 6x^2 + 7: f'(6) = {} (true 2880)",
        py(math::numerical_diff(f3, 6.0))
    );
    say!(s, "partial derivatives of x0^2 + x1^2 at (3, 4):");
    say!(
        s,
        "  d/dx0 = {} (true 6)",
        py(math::numerical_diff(|x0| x0 * x0 + 4.0f64 * 4.0, 3.0))
    );
    say!(
        s,
        "  d/dx1 = {} (true 8)",
        py(math::numerical_diff(|x1| 3.0f64 * 3.0 + x1 * x1, 4.0))
    );
    s
}

fn gradients() -> String {
    let mut s = String::from("== 4.4 Gradient of f(x0, x1) = x0^2 + x1^2 ==\n");
    for p in [[3.0, 4.0], [0.0, 2.0], [3.0, 0.0]] {
        let g = math::numerical_gradient(math::function_2, &mut p.clone());
        say!(
            s,
            "at {}: {}  (true {})",
            list(&p),
            list(&g),
            list(&[2.0 * p[0], 2.0 * p[1]])
        );
    }
    s
}

fn descent() -> String {
    let mut s = String::from("== 4.4.1 Gradient descent from (-3, 4), 100 steps ==\n");
    for (lr, comment) in [
        (0.1, "converges to the minimum (0, 0)"),
        (10.0, "too large: diverges"),
        (1e-10, "too small: barely moves"),
    ] {
        let (x, _) = math::gradient_descent(math::function_2, &[-3.0, 4.0], lr, 100);
        say!(s, "lr = {:<6} -> {}  {comment}", py(lr), list(&x));
    }
    s
}

fn simple_net() -> Result<String> {
    let mut s = String::from("== 4.4.2 simpleNet (2x3 weights, softmax + cross entropy) ==\n");
    let mut net = SimpleNet { w: W.to_vec() };
    let x = [0.6, 0.9];
    say!(s, "W = {}\n    {}", list(&net.w[..3]), list(&net.w[3..]));
    let p = net.predict(&x);
    say!(s, "x = {}, target label 2", list(&x));
    // 8 decimals as NumPy prints it: W has 8, so more digits are noise.
    let fixed8: Vec<String> = p.iter().map(|v| format!("{v:.8}")).collect();
    say!(s, "predict(x) = x.W = [{}]", fixed8.join(", "));
    say!(s, "argmax = {}", math::argmax(&p));
    say!(s, "loss = {}", py(net.loss(&x, 2)?));
    let dw = net.numerical_gradient(&x, 2);
    say!(s, "dW = {}\n     {}", list(&dw[..3]), list(&dw[3..]));
    Ok(s)
}

/// A number as Python's repr writes it: shortest round-trip digits, `.0` on whole numbers,
/// exponent form (two-digit exponent) below 1e-4 or from 1e16.
fn py(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-4..1e16).contains(&v.abs()) {
        exp_form(format!("{v:e}"))
    } else if v.is_finite() && v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Exponent form with `digits` after the point, as NumPy prints it (9.99954600e-01).
fn sci(v: f64, digits: usize) -> String {
    exp_form(format!("{v:.digits$e}"))
}

/// Rust's `1.5e-9` as Python's `1.5e-09`.
fn exp_form(rust: String) -> String {
    match rust.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => rust,
    }
}

fn list(v: &[f64]) -> String {
    format!(
        "[{}]",
        v.iter().map(|x| py(*x)).collect::<Vec<_>>().join(", ")
    )
}
