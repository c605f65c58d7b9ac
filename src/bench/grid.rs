//! The grid of cases (devices x kinds of work x batch x hidden) and what each case costs.

use super::{BenchArgs, Device, Work};
use crate::error::{Error, Result};
use crate::model::MlpSpec;
use serde::Serialize;

/// Input width and classes of MNIST; the grid varies the hidden layer and the batch.
pub(super) const INPUT: usize = 784;
pub(super) const CLASSES: usize = 10;
/// The batch size numerical cases use when `--batch` is not given (the chapter's).
pub(super) const NUMERICAL_DEFAULT_BATCH: usize = 100;
/// Rough cost of one perturbation reaching one sample in the incremental numerical gradient,
/// in FLOP-equivalents per class: a logit shift, an expm1 and a multiply-add per class (expm1
/// counted as ~10). Only used to price a case before running it, never to report a rate.
const INCREMENTAL_FLOPS_PER_CLASS: f64 = 12.0;

/// The validated grid: distinct devices and kinds of work in the order given, sorted distinct
/// sizes.
pub(super) struct Grid {
    pub devices: Vec<Device>,
    pub what: Vec<Work>,
    pub batches: Option<Vec<usize>>,
    /// One 784-H-10 net per --hidden size, ascending.
    pub specs: Vec<MlpSpec>,
    pub repeat: usize,
    pub chunk: usize,
    pub budget: f64,
}

fn distinct<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for &x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn sizes(flag: &str, v: &[usize], example: &str) -> Result<Vec<usize>> {
    if v.is_empty() || v.contains(&0) {
        return Err(Error::config(
            flag,
            format!("sizes must be at least 1, comma-separated (e.g. {flag} {example})"),
        ));
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The flags clap lets through but the bench cannot use: empty lists, zero counts, a budget
/// that is not a positive number of seconds.
fn check_counts(args: &BenchArgs) -> Result<()> {
    // What clap lists for a bad value; here for an empty list, which clap lets through.
    let choices = |flag: &str, names: Vec<&str>| {
        Error::config(flag, format!("give at least one of: {}", names.join(", ")))
    };
    if args.device.is_empty() {
        return Err(choices("--device", vec!["cpu", "gpu"]));
    }
    if args.what.is_empty() {
        return Err(choices(
            "--what",
            Work::ALL.iter().map(|w| w.name()).collect(),
        ));
    }
    if args.repeat == 0 {
        return Err(Error::config(
            "--repeat",
            "must be at least 1 (timed repeats after the warm-up)",
        ));
    }
    if args.chunk == 0 {
        return Err(Error::config(
            "--chunk",
            "must be at least 1 (training steps per call in the train-step cases, e.g. --chunk 20)",
        ));
    }
    if !(args.budget.is_finite() && args.budget > 0.0) {
        return Err(Error::config(
            "--budget",
            "must be a positive number of seconds per case (e.g. --budget 10)",
        ));
    }
    Ok(())
}

impl Grid {
    pub fn new(args: &BenchArgs) -> Result<Self> {
        check_counts(args)?;
        let specs = sizes("--hidden", &args.hidden, "50,100,200")?
            .into_iter()
            .map(|h| MlpSpec::two_layer(INPUT, h, CLASSES))
            .collect::<Result<_>>()?;
        Ok(Grid {
            devices: distinct(&args.device),
            what: distinct(&args.what),
            batches: args
                .batch
                .as_deref()
                .map(|b| sizes("--batch", b, "100,1000"))
                .transpose()?,
            specs,
            repeat: args.repeat,
            chunk: args.chunk,
            budget: args.budget,
        })
    }

    /// The batch sizes of one kind of work: --batch when given, else 100 and 1000, the
    /// numerical gradient at 100 only.
    pub fn batches_for(&self, what: Work) -> Vec<usize> {
        match &self.batches {
            Some(b) => b.clone(),
            None if what.is_numerical() => vec![NUMERICAL_DEFAULT_BATCH],
            None => vec![100, 1000],
        }
    }

    /// Every batch size any kind of work runs at, sorted.
    pub fn all_batches(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self
            .what
            .iter()
            .flat_map(|&w| self.batches_for(w))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The kinds of work that run at `batch`, in --what order.
    pub fn work_at(&self, batch: usize) -> Vec<Work> {
        let runs = |&w: &Work| self.batches_for(w).contains(&batch);
        self.what.iter().copied().filter(runs).collect()
    }

    /// Steps per timed call of `what`.
    pub fn steps_per_call(&self, what: Work) -> usize {
        if what.train_method().is_some() {
            self.chunk
        } else {
            1
        }
    }
}

/// What a rate is counted in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpUnit {
    Flop,
    Perturbation,
}

impl OpUnit {
    /// The table's short unit.
    fn symbol(self) -> &'static str {
        match self {
            OpUnit::Flop => "FLOP",
            OpUnit::Perturbation => "pert",
        }
    }
    pub(super) fn amount(self, v: f64) -> String {
        format!("{}{}", super::text::si(v), self.symbol())
    }
    pub(super) fn rate(self, v: f64) -> String {
        format!("{}{}/s", super::text::si(v), self.symbol())
    }
    pub(super) fn rate_unit(self) -> &'static str {
        match self {
            OpUnit::Flop => "FLOP/s",
            OpUnit::Perturbation => "perturbations/s",
        }
    }
}

pub(super) struct Cost {
    pub ops: f64,
    pub unit: OpUnit,
    /// The call's cost in forward passes of the same batch and net.
    pub forwards: f64,
}

/// One grid point: the 784-`hidden`-10 net at `batch`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub batch: usize,
    pub hidden: usize,
    pub params: usize,
    /// 2 * batch * sum(fan_in * fan_out): the matmuls of one forward pass.
    pub forward_flops: f64,
    /// Fraction of nonzero pixels in the training set (about 0.19 for MNIST).
    pub nonzero: f64,
}

impl Shape {
    pub fn new(spec: &MlpSpec, batch: usize, nonzero: f64) -> Self {
        let macs: usize = spec.layers().iter().map(|l| l.fan_in * l.fan_out).sum();
        Shape {
            batch,
            hidden: spec.hidden.first().copied().unwrap_or(0),
            params: spec.num_params(),
            forward_flops: 2.0 * batch as f64 * macs as f64,
            nonzero,
        }
    }

    /// The incremental numerical gradient: 2P perturbations, and what they cost in forward
    /// passes. A first-layer weight reaches a sample only through a nonzero pixel; every other
    /// parameter reaches every sample. Each reach costs O(classes).
    fn incremental(&self) -> Cost {
        let w1 = (INPUT * self.hidden) as f64;
        let reach = self.nonzero * w1 + (self.params as f64 - w1);
        let equivalent =
            2.0 * self.batch as f64 * reach * CLASSES as f64 * INCREMENTAL_FLOPS_PER_CLASS;
        Cost {
            ops: 2.0 * self.params as f64,
            unit: OpUnit::Perturbation,
            forwards: equivalent / self.forward_flops,
        }
    }
}

impl Work {
    /// What one call (one step for the train-step kinds) counts as (the figure its rate is
    /// reported in), and what it costs in forward passes of the same size (to price it against
    /// the measured forward pass).
    pub(super) fn cost(self, s: &Shape) -> Cost {
        let flops = |forwards: f64| Cost {
            ops: forwards * s.forward_flops,
            unit: OpUnit::Flop,
            forwards,
        };
        match self {
            Work::Forward => flops(1.0),
            // The backward pass is two matmuls per layer to the forward's one.
            Work::Backprop => flops(3.0),
            // Backprop's forward + backward (3), then a forward for the step's loss (1); the
            // SGD update (2P) is noise next to them.
            Work::TrainStep => flops(4.0),
            Work::NumericalFull => flops(2.0 * s.params as f64),
            Work::NumericalIncremental => s.incremental(),
            // The gradient's perturbations, plus a forward pass for the step's loss.
            Work::TrainStepNumerical => {
                let c = s.incremental();
                Cost {
                    forwards: c.forwards + 1.0,
                    ..c
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerical_defaults_to_batch_100() {
        let grid = Grid::new(&BenchArgs::try_parse_from(Vec::<String>::new()).unwrap()).unwrap();
        assert_eq!(grid.batches_for(Work::NumericalFull), vec![100]);
        assert_eq!(grid.batches_for(Work::TrainStepNumerical), vec![100]);
        assert_eq!(grid.batches_for(Work::Forward), vec![100, 1000]);
        assert_eq!(grid.steps_per_call(Work::TrainStep), 20);
        assert_eq!(grid.steps_per_call(Work::Backprop), 1);
        let grid = Grid::new(&BenchArgs::try_parse_from(["--batch", "10,20"]).unwrap()).unwrap();
        assert_eq!(grid.batches_for(Work::NumericalFull), vec![10, 20]);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_choices() {
        let e = BenchArgs::try_parse_from(["--what", "sideways"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--what") && e.contains("numerical-incremental") && e.contains("train-step"),
            "{e}"
        );
        let e = BenchArgs::try_parse_from(["--device", "tpu"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--device") && e.contains("cpu") && e.contains("gpu"),
            "{e}"
        );
        for (flag, value) in [("--hidden", "0"), ("--budget", "-1"), ("--chunk", "0")] {
            let args = BenchArgs::try_parse_from([flag, value]).unwrap();
            let e = Grid::new(&args).err().unwrap().to_string();
            assert!(e.contains(flag), "{flag} {value}: {e}");
        }
    }
}
