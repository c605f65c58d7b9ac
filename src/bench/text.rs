//! Number formats shared by the table, the peer comparison, the grid and the runner.

/// "12.3 us", "4.56 ms", "1.23 s".
pub(super) fn secs(s: f64) -> String {
    crate::fmt::seconds(s)
}

/// "1.5", "23", "610".
pub(super) fn ratio(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// 3 significant digits with an SI prefix and a trailing space: "7.95 M", "39.8 k".
pub(super) fn si(v: f64) -> String {
    let (scaled, prefix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|&(f, _)| v.abs() >= f)
        .map(|(f, p)| (v / f, p))
        .unwrap_or((v, ""));
    let digits = if scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.digits$} {prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(secs(12.3e-6), "12.3 us");
        assert_eq!(secs(0.01456), "14.56 ms");
        assert_eq!(si(7.95e6), "7.95 M");
        assert_eq!(si(79520.0), "79.5 k");
        assert_eq!(ratio(613.4), "613");
    }
}
