//! Numbers as people read them in messages: a flag's value echoed back in at most a dozen
//! characters, whatever its size (`1e308` stays `1e308`, not 309 digits); and text from outside
//! (file names, class names) made safe to print, so that it cannot drive the terminal.

use std::borrow::Cow;
use std::path::Path;

/// Whether `c` must not reach a terminal raw: control characters (C0 with tab, CR, LF and
/// ESC; DEL; C1, which some terminals obey like ESC sequences) and the invisible format
/// characters that reorder or hide text (bidi overrides and isolates such as U+202E, zero-width
/// characters, the BOM).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
}

/// `text` as it may be printed: every [`is_unsafe_char`] written as a Rust-style escape
/// (`\u{1b}`, `\n`, `\r`, `\t`), so an ESC sequence, a carriage return or a newline in a file or
/// class name shows as text instead of clearing the screen or forging a line. Borrowed when
/// there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path as it may be printed ([`printable`] of its display form).
pub fn path(p: &Path) -> String {
    printable(&p.display().to_string()).into_owned()
}

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
    use super::{number, printable};

    #[test]
    fn text_from_outside_cannot_drive_the_terminal() {
        assert_eq!(printable("Ankle boot"), "Ankle boot");
        assert!(matches!(printable("cat"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("\x1b[2Jx"), "\\u{1b}[2Jx");
        assert_eq!(printable("a\nb\rc\td\x08\0"), "a\\nb\\rc\\td\\u{8}\\u{0}");
        assert_eq!(printable("\u{202e}gnp.exe"), "\\u{202e}gnp.exe");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(printable("\u{feff}T-shirt"), "\\u{feff}T-shirt");
        // Letters of every script are kept.
        assert_eq!(printable("ä ß 日本 \u{05d0}"), "ä ß 日本 \u{05d0}");
    }

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
