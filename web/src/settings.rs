//! The page's settings, from its URL query or its form (which the page turns into the same
//! query): `?grad=numerical&iters=300&batch=100&lr=0.1&seed=0&device=webgpu&autostart=1`.
//! Every value comes from outside, so each is checked here, against bounds that say why,
//! before anything is allocated from it; an error names the key and the fix.

use gpu_train::backend::{GradMethod, PerturbStrategy, DEFAULT_H};

/// The most iterations a page run may ask for: 100 epochs of the embedded subset at batch 100,
/// ten times the chapter's 10,000.
pub const MAX_ITERS: usize = 100_000;
/// The largest batch: the embedded subset's whole training set fits.
pub const MAX_BATCH: usize = 30_000;
/// Learning rates above this diverge on the chapter's net at once (0.1 is the chapter's).
pub const MAX_LR: f64 = 100.0;

/// Which device the reader asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceWish {
    /// The browser's WebGPU adapter, or the wasm CPU path (saying why) when there is none.
    WebGpu,
    /// The wasm CPU path.
    Cpu,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub grad: GradMethod,
    pub iters: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
    pub device: DeviceWish,
    pub autostart: bool,
}

impl Default for Settings {
    /// The page's defaults: the chapter's net and learning rate, one epoch of the embedded
    /// subset (300 iterations at batch 100) by its numerical gradient.
    fn default() -> Self {
        Settings {
            grad: GradMethod::Numerical {
                strategy: PerturbStrategy::Incremental,
                h: DEFAULT_H,
            },
            iters: 300,
            batch: 100,
            lr: 0.1,
            seed: 0,
            device: DeviceWish::WebGpu,
            autostart: false,
        }
    }
}

impl Settings {
    /// Parses a URL query (with or without its `?`); keys left out keep their defaults. An
    /// unknown key, a repeated one or a bad value is an error naming it.
    pub fn from_query(query: &str) -> Result<Settings, String> {
        let mut s = Settings::default();
        let mut seen: Vec<&str> = Vec::new();
        let query = query.strip_prefix('?').unwrap_or(query);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if seen.contains(&key) {
                return Err(format!("`{key}` is given twice in the URL; keep one"));
            }
            seen.push(key);
            s.set(key, value)?;
        }
        Ok(s)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "grad" => {
                self.grad = match value {
                    "numerical" => Settings::default().grad,
                    "backprop" => GradMethod::Backprop,
                    _ => return Err(bad(key, value, "numerical or backprop")),
                }
            }
            "iters" => self.iters = count(key, value, MAX_ITERS)?,
            "batch" => self.batch = count(key, value, MAX_BATCH)?,
            "lr" => {
                self.lr = value
                    .parse::<f64>()
                    .ok()
                    .filter(|lr| lr.is_finite() && *lr > 0.0 && *lr <= MAX_LR)
                    .ok_or_else(|| {
                        bad(key, value, &format!("a number above 0, at most {MAX_LR}"))
                    })?
            }
            "seed" => {
                self.seed = value
                    .parse::<u64>()
                    .map_err(|_| bad(key, value, "a whole number from 0 to 2^64 - 1"))?
            }
            "device" => {
                self.device = match value {
                    "webgpu" | "gpu" | "auto" => DeviceWish::WebGpu,
                    "cpu" => DeviceWish::Cpu,
                    _ => return Err(bad(key, value, "webgpu or cpu")),
                }
            }
            "autostart" => {
                self.autostart = match value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(bad(key, value, "1 or 0")),
                }
            }
            _ => {
                return Err(format!(
                    "`{key}` is not a setting of this page; use grad, iters, batch, lr, seed, \
                     device or autostart"
                ))
            }
        }
        Ok(())
    }

    /// The `grad` value of the query: "numerical" or "backprop".
    pub fn grad_name(&self) -> &'static str {
        match self.grad {
            GradMethod::Backprop => "backprop",
            GradMethod::Numerical { .. } => "numerical",
        }
    }

    /// The `device` value of the query: "webgpu" or "cpu".
    pub fn device_name(&self) -> &'static str {
        match self.device {
            DeviceWish::WebGpu => "webgpu",
            DeviceWish::Cpu => "cpu",
        }
    }

    /// The query that gives these settings back (the page's address after a change).
    pub fn to_query(&self) -> String {
        format!(
            "grad={}&iters={}&batch={}&lr={}&seed={}&device={}&autostart={}",
            self.grad_name(),
            self.iters,
            self.batch,
            self.lr,
            self.seed,
            self.device_name(),
            u8::from(self.autostart)
        )
    }
}

fn bad(key: &str, value: &str, expected: &str) -> String {
    let shown: String = value.chars().take(40).collect();
    format!("`{key}={shown}` in the URL: {key} must be {expected}")
}

fn count(key: &str, value: &str, max: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| bad(key, value, &format!("a whole number from 1 to {max}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_query_parses_to_its_values() {
        let s = Settings::from_query(
            "?grad=backprop&iters=1000&batch=7&lr=0.5&seed=3&device=cpu&autostart=1",
        )
        .unwrap();
        assert_eq!(s.grad, GradMethod::Backprop);
        assert_eq!((s.iters, s.batch, s.lr, s.seed), (1000, 7, 0.5, 3));
        assert_eq!((s.device, s.autostart), (DeviceWish::Cpu, true));
        assert_eq!(Settings::from_query(&s.to_query()).unwrap(), s);
        assert_eq!(Settings::from_query("").unwrap(), Settings::default());
    }

    #[test]
    fn hostile_values_are_refused_naming_the_key() {
        for (q, key) in [
            ("iters=0", "iters"),
            ("iters=99999999999999999999", "iters"),
            ("batch=-1", "batch"),
            ("batch=30001", "batch"),
            ("lr=NaN", "lr"),
            ("lr=inf", "lr"),
            ("lr=0", "lr"),
            ("seed=1.5", "seed"),
            ("grad=fast", "grad"),
            ("device=tpu", "device"),
            ("autostart=yes", "autostart"),
            ("iters=5&iters=6", "iters"),
            ("bogus=1", "bogus"),
        ] {
            let e = Settings::from_query(q).unwrap_err();
            assert!(e.contains(&format!("`{key}")), "{q}: {e}");
        }
    }
}
