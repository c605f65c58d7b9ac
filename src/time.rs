//! Wall-clock dates in UTC without a date crate: the bench's header and the run folder's name.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcDateTime {
    /// The system clock now; a clock set before 1970 reads as 1970-01-01T00:00:00Z.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// Seconds since 1970-01-01T00:00:00Z (leap seconds are not counted, as in Unix time).
    pub fn from_unix(secs: u64) -> Self {
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days as i64);
        UtcDateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// "2026-11-23T19:30:05Z", with `time_sep` between hours, minutes and seconds (':' for
    /// ISO 8601, '-' where a colon cannot go, as in a file name).
    pub fn format(&self, time_sep: char) -> String {
        let s = time_sep;
        format!(
            "{:04}-{:02}-{:02}T{:02}{s}{:02}{s}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The process's start, as near as the program can tell: the first call (the CLI makes it
/// first thing). Start-up figures (`FinalReport::startup_seconds`) count from here.
pub fn process_start() -> web_time::Instant {
    static START: std::sync::OnceLock<web_time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(web_time::Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let t = UtcDateTime::from_unix(20_780 * 86_400 + 19 * 3600 + 30 * 60 + 5);
        assert_eq!(t.format(':'), "2026-11-23T19:30:05Z");
        assert_eq!(t.format('-'), "2026-11-23T19-30-05Z");
    }
}
