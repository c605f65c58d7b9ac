//! Numbers as people read them in messages: a flag's value echoed back in at most a dozen
//! characters, whatever its size (`1e308` stays `1e308`, not 309 digits).

/// `v` in the shortest of plain or scientific notation that reads back as the same f64.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let plain = format!("{v}");
    let sci = format!("{v:e}");
    // Everyday magnitudes read best written out; only the extremes need an exponent.
    if v == 0.0 || (1e-4..1e6).contains(&v.abs()) || plain.len() <= sci.len() {
        plain
    } else {
        sci
    }
}

/// A suggested value near `v`, in two significant digits: 1e29 rather than 1.0000000000000001e29.
pub fn rounded(v: f64) -> String {
    match format!("{v:.1e}").parse::<f64>() {
        Ok(r) => number(r),
        Err(_) => number(v),
    }
}

/// A duration for people: "12.3 us", "4.56 ms", "7.89 s", "123 s" (bench's tables, gradcheck).
pub fn seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else if s < 100.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_stay_short_and_exact() {
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(1e308), "1e308");
        assert_eq!(number(-1e-3), "-0.001");
        assert_eq!(number(1e-30), "1e-30");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(123456.0), "123456");
        assert_eq!(number(1e-7), "1e-7");
        assert_eq!(number(250.0), "250");
        assert!(number(1e308).len() < 10);
        assert_eq!(super::rounded(1e30 / 10.0), "1e29");
        assert_eq!(super::rounded(0.01), "0.01");
        for v in [1e308, 3.7e-9, 0.1, 12.5, 1e6] {
            assert_eq!(number(v).parse::<f64>().unwrap(), v);
        }
    }
}
