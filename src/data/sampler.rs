//! Mini-batch index sampling, seeded and reproducible.
//!
//! Two ways to pick a batch of training indices:
//!
//! * [`SamplerKind::WithReplacement`] (the default), as the book does with
//!   `np.random.choice(train_size, batch_size)`: every index independently uniform in `0..n`,
//!   so a batch can hold an index twice and an epoch is only a nominal `n / batch` steps;
//! * [`SamplerKind::Epochs`]: shuffled epochs without replacement. Each epoch is a fresh
//!   permutation of `0..n`, cut into consecutive batches; when fewer than a batch's worth of
//!   indices remain, the rest is dropped and a new epoch starts with a new permutation, so every
//!   batch is full and no index appears twice within an epoch.
//!
//! The generator is [`rand_pcg::Pcg64`] seeded with [`SeedableRng::seed_from_u64`], and indices
//! are drawn as `u32` ranges (never `usize`), so a seed gives the same batches on every platform
//! for a given `rand`/`rand_pcg` version (both promise value stability within a minor version).
//!
//! # Checkpoints
//!
//! [`Sampler::state`] returns a [`SamplerState`] of plain numbers: kind, `n`, seed, batch size,
//! the number of batches drawn so far and the generator's position ([`RngPosition`]: how many
//! 64-bit words it has produced, and for epochs where the current permutation began and how far
//! into it the sampler is). [`Sampler::from_state`] re-seeds and jumps the generator to that
//! position with PCG's `advance` (logarithmic in the distance, so no stored number can make it
//! slow), and for epochs re-draws the current permutation (one shuffle of `n`). The restored
//! sampler continues with exactly the batches the original would have produced.
//!
//! Checkpoints written before the position was stored hold only the count of batches; those are
//! restored by re-seeding and replaying the draws, up to [`MAX_REPLAY_DRAWS`] (a few seconds),
//! and beyond that refused with a message saying the checkpoint is from an older version. For
//! the state to describe the draws, one sampler uses one batch size throughout;
//! [`Sampler::next_batch`] refuses a change.

use std::fmt;

use rand::{Rng, RngCore, SeedableRng};
use rand_pcg::Pcg64;

use crate::error::{Error, Result};

/// How a [`Sampler`] picks batch indices; see the [module docs](self).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Independent uniform indices, like `np.random.choice(n, batch)`; the book's way.
    #[default]
    #[cfg_attr(feature = "cli", value(name = "replacement"))]
    WithReplacement,
    /// Shuffled epochs without replacement; a short tail is dropped, every batch is full.
    Epochs,
}

impl SamplerKind {
    /// The name used on the command line and in checkpoints.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerKind::WithReplacement => "replacement",
            SamplerKind::Epochs => "epochs",
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most index draws a checkpoint without an [`RngPosition`] (from an older version) is
/// replayed for: about a second or two of work; a normal run of 10,000 batches of 100 is 10^6.
pub const MAX_REPLAY_DRAWS: u64 = 1 << 30;

/// Everything needed to rebuild a [`Sampler`] exactly: plain numbers, easy to store in a
/// checkpoint; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SamplerState {
    pub kind: SamplerKind,
    /// Size of the index range, `0..n` (the training set's length).
    pub n: usize,
    pub seed: u64,
    /// Batches handed out so far.
    pub batches_drawn: u64,
    /// The size of every batch drawn so far; 0 while none has been drawn.
    pub batch_size: usize,
    /// Where the generator is; None in checkpoints of older versions (restored by replay) and
    /// in states built by hand (see [`SamplerState::fresh`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rng: Option<RngPosition>,
}

/// The generator's position, so that a restore jumps instead of replaying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RngPosition {
    /// 64-bit words the generator has produced since it was seeded.
    pub words: u64,
    /// Epochs only: words produced before the current permutation was drawn.
    pub epoch_words: u64,
    /// Epochs only: where the next batch starts in the current permutation.
    pub position: usize,
}

impl SamplerState {
    /// Checks the numbers without building anything: what [`Sampler::from_state`] would refuse,
    /// except the one check that needs the epoch's permutation re-drawn. Cheap whatever the
    /// numbers are; a checkpoint's loader calls it.
    pub fn check(&self) -> Result<()> {
        Sampler::check_size(self.n)?;
        if self.batches_drawn == 0 {
            return Ok(());
        }
        check_batch_size(self.kind, self.n, self.batch_size)?;
        let corrupt = |what: String| {
            Err(Error::config(
                "sampler state",
                format!("{what}; the checkpoint is corrupt: use an earlier one"),
            ))
        };
        let Some(pos) = self.rng else {
            let draws = self.batches_drawn.checked_mul(self.batch_size as u64);
            if draws.is_none_or(|d| d > MAX_REPLAY_DRAWS) {
                return Err(Error::config(
                    "sampler state",
                    format!(
                        "{} batches of {} without the generator's position: the checkpoint is \
                         from an older gpu-train (or corrupt), and replaying more than \
                         {MAX_REPLAY_DRAWS} draws to find the position would take too long; \
                         start a fresh run or resume it with the version that wrote it",
                        self.batches_drawn, self.batch_size
                    ),
                ));
            }
            return Ok(());
        };
        // Each index costs at least one word, so fewer words than indices cannot be.
        match self.kind {
            SamplerKind::WithReplacement => {
                let min_words = self.batches_drawn.saturating_mul(self.batch_size as u64);
                if pos.words < min_words {
                    return corrupt(format!(
                        "the generator produced {} words for {} batches of {}",
                        pos.words, self.batches_drawn, self.batch_size
                    ));
                }
            }
            SamplerKind::Epochs => {
                let batch = self.batch_size;
                // check_batch_size made sure 1 <= batch <= n.
                let per_epoch = (self.n / batch) as u64;
                let in_epoch = (self.batches_drawn - 1) % per_epoch + 1;
                if pos.position as u64 != in_epoch * batch as u64 {
                    return corrupt(format!(
                        "position {} in the epoch after {} batches of {batch} (epochs of \
                         {per_epoch} batches) should be {}",
                        pos.position,
                        self.batches_drawn,
                        in_epoch * batch as u64
                    ));
                }
                // Each epoch's shuffle draws n - 1 indices, each of at least one word.
                let epochs = self.batches_drawn.div_ceil(per_epoch);
                let min_words = epochs.saturating_mul(self.n as u64 - 1);
                if pos.words < min_words {
                    return corrupt(format!(
                        "the generator produced {} words for {epochs} epochs of {} indices",
                        pos.words, self.n
                    ));
                }
                if pos.epoch_words > pos.words {
                    return corrupt(format!(
                        "the epoch began at word {} after the generator's {}",
                        pos.epoch_words, pos.words
                    ));
                }
            }
        }
        Ok(())
    }

    /// The state of a sampler that has drawn nothing yet.
    pub fn fresh(kind: SamplerKind, n: usize, seed: u64) -> SamplerState {
        SamplerState {
            kind,
            n,
            seed,
            batches_drawn: 0,
            batch_size: 0,
            rng: None,
        }
    }
}

/// [`Pcg64`] counting the 64-bit words it produces, so that its position is one number.
/// (Pcg64 makes a `u32` from one 64-bit step and fills bytes 8 at a time, one step each.)
#[derive(Clone, Debug)]
struct CountingRng {
    rng: Pcg64,
    words: u64,
}

impl CountingRng {
    fn new(seed: u64) -> Self {
        CountingRng {
            rng: Pcg64::seed_from_u64(seed),
            words: 0,
        }
    }

    /// The generator seeded with `seed` after it has produced `words` words.
    fn at(seed: u64, words: u64) -> Self {
        let mut rng = Pcg64::seed_from_u64(seed);
        rng.advance(u128::from(words));
        CountingRng { rng, words }
    }
}

impl RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.words += 1;
        self.rng.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.words += 1;
        self.rng.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.words += dst.len().div_ceil(8) as u64;
        self.rng.fill_bytes(dst)
    }
}

/// A seeded source of mini-batch indices into `0..n`; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Sampler {
    kind: SamplerKind,
    n: usize,
    seed: u64,
    rng: CountingRng,
    batches_drawn: u64,
    batch_size: usize,
    /// Epochs only: the generator's words before the current permutation was drawn.
    epoch_words: u64,
    /// Epochs only: the current epoch's order (empty before the first batch).
    permutation: Vec<u32>,
    /// Epochs only: where the next batch starts in `permutation`.
    position: usize,
}

impl Sampler {
    /// A sampler over `0..n` seeded with `seed`. `n` must be at least 1 and fit in a `u32`
    /// (indices are handed out as `u32`).
    pub fn new(kind: SamplerKind, n: usize, seed: u64) -> Result<Self> {
        Sampler::check_size(n)?;
        Ok(Sampler {
            kind,
            n,
            seed,
            rng: CountingRng::new(seed),
            batches_drawn: 0,
            batch_size: 0,
            epoch_words: 0,
            permutation: Vec::new(),
            position: 0,
        })
    }

    fn check_size(n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::config(
                "data",
                "the training set is empty; there is nothing to sample batches from",
            ));
        }
        if u32::try_from(n).is_err() {
            return Err(Error::config(
                "data",
                format!(
                    "the training set has {n} items; at most {} are supported",
                    u32::MAX
                ),
            ));
        }
        Ok(())
    }

    /// Rebuilds a sampler from a saved [`SamplerState`] (see the [module docs](self)); the result
    /// continues exactly where the saved one stopped. The state is checked like any other input
    /// (it comes from a file): inconsistent numbers are a config error, never a long wait.
    /// The caller makes sure `state.n` is the training set's size (as [`train_from`] does): an
    /// epochs sampler holds a permutation of `n` indices.
    ///
    /// [`train_from`]: crate::train::train_from
    pub fn from_state(state: SamplerState) -> Result<Self> {
        state.check()?;
        let mut sampler = Sampler::new(state.kind, state.n, state.seed)?;
        if state.batches_drawn == 0 {
            return Ok(sampler);
        }
        sampler.batch_size = state.batch_size;
        let Some(pos) = state.rng else {
            return sampler.replay(state);
        };
        sampler.batches_drawn = state.batches_drawn;
        match state.kind {
            SamplerKind::WithReplacement => {
                sampler.rng = CountingRng::at(state.seed, pos.words);
            }
            SamplerKind::Epochs => {
                sampler.rng = CountingRng::at(state.seed, pos.epoch_words);
                sampler.reshuffle();
                if sampler.rng.words != pos.words {
                    return Err(Error::config(
                        "sampler state",
                        format!(
                            "re-drawing the epoch's order ends at word {}, the state says {}; \
                             the checkpoint is corrupt: use an earlier one",
                            sampler.rng.words, pos.words
                        ),
                    ));
                }
                sampler.position = pos.position;
            }
        }
        Ok(sampler)
    }

    /// Restores a state that has no generator position (an older checkpoint) by replaying its
    /// draws, up to [`MAX_REPLAY_DRAWS`].
    fn replay(mut self, state: SamplerState) -> Result<Self> {
        let mut scratch = Vec::with_capacity(state.batch_size);
        for _ in 0..state.batches_drawn {
            self.draw(state.batch_size, &mut scratch);
        }
        Ok(self)
    }

    /// The state to save in a checkpoint; see [`Sampler::from_state`].
    pub fn state(&self) -> SamplerState {
        SamplerState {
            kind: self.kind,
            n: self.n,
            seed: self.seed,
            batches_drawn: self.batches_drawn,
            batch_size: self.batch_size,
            rng: Some(RngPosition {
                words: self.rng.words,
                epoch_words: self.epoch_words,
                position: self.position,
            }),
        }
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    /// The size of the index range, `0..n`.
    pub fn n(&self) -> usize {
        self.n
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Batches handed out so far.
    pub fn batches_drawn(&self) -> u64 {
        self.batches_drawn
    }

    /// Completed-or-started epochs: for [`SamplerKind::Epochs`] the number of permutations made
    /// so far, for [`SamplerKind::WithReplacement`] the nominal `indices drawn / n`.
    pub fn epoch(&self) -> f64 {
        match self.kind {
            SamplerKind::Epochs if self.permutation.is_empty() => 0.0,
            SamplerKind::Epochs => {
                let per_epoch = (self.n / self.batch_size.max(1)).max(1) as u64;
                self.batches_drawn.div_ceil(per_epoch) as f64
            }
            SamplerKind::WithReplacement => {
                self.batches_drawn as f64 * self.batch_size as f64 / self.n as f64
            }
        }
    }

    /// Replaces the contents of `out` with the next batch of `batch` indices.
    ///
    /// Errors (a [`Config`](Error::Config) error on `batch_size`) when `batch` is 0, when it
    /// exceeds `n` for [`SamplerKind::Epochs`], or when it differs from this sampler's earlier
    /// batches (the checkpoint state assumes one batch size).
    pub fn next_batch(&mut self, batch: usize, out: &mut Vec<u32>) -> Result<()> {
        self.check_batch_size(batch)?;
        if self.batches_drawn > 0 && batch != self.batch_size {
            return Err(Error::config(
                "batch_size",
                format!(
                    "changed from {} to {batch} mid-run; a sampler draws one batch size \
                     throughout (its checkpoint state replays that size), so make a new sampler",
                    self.batch_size
                ),
            ));
        }
        self.batch_size = batch;
        self.draw(batch, out);
        Ok(())
    }

    fn check_batch_size(&self, batch: usize) -> Result<()> {
        check_batch_size(self.kind, self.n, batch)
    }

    /// Draws one batch; the caller has checked `batch`.
    fn draw(&mut self, batch: usize, out: &mut Vec<u32>) {
        out.clear();
        // `new` checked that n fits in u32.
        let n = self.n as u32;
        match self.kind {
            SamplerKind::WithReplacement => {
                out.extend((0..batch).map(|_| self.rng.random_range(0..n)));
            }
            SamplerKind::Epochs => {
                if self.permutation.is_empty() || self.position + batch > self.permutation.len() {
                    self.reshuffle();
                }
                out.extend_from_slice(&self.permutation[self.position..self.position + batch]);
                self.position += batch;
            }
        }
        self.batches_drawn += 1;
    }

    /// Starts a new epoch: a fresh uniform permutation of `0..n` (Fisher-Yates, written out so
    /// that the draws are `u32` ranges on every platform).
    fn reshuffle(&mut self) {
        self.epoch_words = self.rng.words;
        let n = self.n as u32;
        self.permutation.clear();
        self.permutation.extend(0..n);
        for i in (1..n).rev() {
            let j = self.rng.random_range(0..=i);
            self.permutation.swap(i as usize, j as usize);
        }
        self.position = 0;
    }
}

/// A batch size a sampler of `kind` over `0..n` can draw.
fn check_batch_size(kind: SamplerKind, n: usize, batch: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::config("batch_size", "must be at least 1"));
    }
    if kind == SamplerKind::Epochs && batch > n {
        return Err(Error::config(
            "batch_size",
            format!(
                "{batch} is larger than the training set ({n}); epochs without replacement \
                 need batch_size <= {n}, or use the \"replacement\" sampler"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(sampler: &mut Sampler, count: usize, size: usize) -> Vec<Vec<u32>> {
        (0..count)
            .map(|_| {
                let mut out = Vec::new();
                sampler.next_batch(size, &mut out).unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn same_seed_same_batches_different_seed_different_batches() {
        for kind in [SamplerKind::WithReplacement, SamplerKind::Epochs] {
            let a = batches(&mut Sampler::new(kind, 1000, 7).unwrap(), 20, 50);
            let b = batches(&mut Sampler::new(kind, 1000, 7).unwrap(), 20, 50);
            let c = batches(&mut Sampler::new(kind, 1000, 8).unwrap(), 20, 50);
            assert_eq!(a, b, "{kind}");
            assert_ne!(a, c, "{kind}");
        }
    }

    #[test]
    fn indices_are_in_range_and_batches_full() {
        for kind in [SamplerKind::WithReplacement, SamplerKind::Epochs] {
            let mut sampler = Sampler::new(kind, 37, 1).unwrap();
            for batch in batches(&mut sampler, 100, 10) {
                assert_eq!(batch.len(), 10);
                assert!(batch.iter().all(|&i| i < 37), "{kind}: {batch:?}");
            }
        }
        // With replacement, a batch may be larger than n.
        let mut sampler = Sampler::new(SamplerKind::WithReplacement, 3, 1).unwrap();
        let batch = &batches(&mut sampler, 1, 100)[0];
        assert!(batch.iter().all(|&i| i < 3));
        for i in 0..3 {
            assert!(
                batch.contains(&i),
                "100 uniform draws from 0..3 should hit {i}"
            );
        }
    }

    #[test]
    fn epochs_cover_every_index_once() {
        // 100 = 4 batches of 25: each epoch is exactly a permutation.
        let mut sampler = Sampler::new(SamplerKind::Epochs, 100, 3).unwrap();
        let mut previous = Vec::new();
        for _ in 0..5 {
            let mut epoch: Vec<u32> = batches(&mut sampler, 4, 25).concat();
            assert_ne!(epoch, previous, "each epoch is reshuffled");
            previous = epoch.clone();
            epoch.sort_unstable();
            assert_eq!(epoch, (0..100).collect::<Vec<u32>>());
        }
        // 10 = 3 batches of 3 and a dropped tail of 1: no repeats within an epoch.
        let mut sampler = Sampler::new(SamplerKind::Epochs, 10, 3).unwrap();
        for _ in 0..5 {
            let mut epoch: Vec<u32> = batches(&mut sampler, 3, 3).concat();
            epoch.sort_unstable();
            epoch.dedup();
            assert_eq!(epoch.len(), 9);
        }
        assert_eq!(sampler.epoch(), 5.0);
    }

    #[test]
    fn from_state_continues_exactly() {
        for kind in [SamplerKind::WithReplacement, SamplerKind::Epochs] {
            let mut original = Sampler::new(kind, 1000, 42).unwrap();
            batches(&mut original, 33, 64);
            let state = original.state();
            assert_eq!(state.batches_drawn, 33);
            assert_eq!(state.batch_size, 64);
            let mut restored = Sampler::from_state(state).unwrap();
            assert_eq!(restored.state(), state);
            assert_eq!(
                batches(&mut restored, 40, 64),
                batches(&mut original, 40, 64),
                "{kind}"
            );
        }
        let fresh = Sampler::new(SamplerKind::Epochs, 5, 1).unwrap().state();
        assert_eq!(Sampler::from_state(fresh).unwrap().batches_drawn(), 0);
    }

    #[test]
    fn bad_sizes_are_config_errors() {
        assert!(matches!(
            Sampler::new(SamplerKind::Epochs, 0, 1),
            Err(Error::Config { .. })
        ));
        let mut sampler = Sampler::new(SamplerKind::Epochs, 10, 1).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            sampler.next_batch(0, &mut out),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            sampler.next_batch(11, &mut out),
            Err(Error::Config { .. })
        ));
        sampler.next_batch(5, &mut out).unwrap();
        assert!(matches!(
            sampler.next_batch(4, &mut out),
            Err(Error::Config { .. })
        ));
        let corrupt = SamplerState {
            batches_drawn: u64::MAX,
            batch_size: 5,
            ..sampler.state()
        };
        assert!(matches!(
            Sampler::from_state(corrupt),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn counting_words_changes_no_draw() {
        // The batches are Pcg64's own draws, as before the generator counted its words.
        let mut plain = Pcg64::seed_from_u64(1);
        let expected: Vec<u32> = (0..500).map(|_| plain.random_range(0..60_000u32)).collect();
        let mut sampler = Sampler::new(SamplerKind::WithReplacement, 60_000, 1).unwrap();
        assert_eq!(batches(&mut sampler, 5, 100).concat(), expected);
        // One word per draw here (60,000 leaves almost no rejections); never fewer.
        assert!(sampler.rng.words >= 500);
    }

    #[test]
    fn a_far_position_is_restored_by_a_jump_not_a_replay() {
        // 10^10 batches of 100: replaying them would take hours; the stored position is a jump.
        let state = SamplerState {
            batches_drawn: 10_000_000_000,
            batch_size: 100,
            rng: Some(RngPosition {
                words: 1_000_000_000_000,
                epoch_words: 0,
                position: 0,
            }),
            ..SamplerState::fresh(SamplerKind::WithReplacement, 60_000, 3)
        };
        let mut restored = Sampler::from_state(state).unwrap();
        // The jump lands where drawing that many words one by one does.
        let mut stepped = Pcg64::seed_from_u64(3);
        stepped.advance(1_000_000_000_000 - 1);
        let mut jumped = Pcg64::seed_from_u64(3);
        jumped.advance(1_000_000_000_000);
        assert_eq!(restored.rng.rng, jumped);
        stepped.next_u64();
        assert_eq!(stepped, jumped);
        assert_eq!(batches(&mut restored, 1, 100)[0].len(), 100);
        // Without a stored position (an older checkpoint), the same count is refused at once.
        let old = SamplerState { rng: None, ..state };
        let e = Sampler::from_state(old).unwrap_err().to_string();
        assert!(e.contains("older gpu-train"), "{e}");
    }

    #[test]
    fn an_older_state_without_a_position_is_replayed() {
        for kind in [SamplerKind::WithReplacement, SamplerKind::Epochs] {
            let mut original = Sampler::new(kind, 1000, 9).unwrap();
            batches(&mut original, 40, 64);
            let old = SamplerState {
                rng: None,
                ..original.state()
            };
            let mut restored = Sampler::from_state(old).unwrap();
            assert_eq!(restored.state(), original.state(), "{kind}");
            assert_eq!(
                batches(&mut restored, 30, 64),
                batches(&mut original, 30, 64),
                "{kind}"
            );
        }
    }

    #[test]
    fn inconsistent_positions_are_config_errors() {
        for kind in [SamplerKind::WithReplacement, SamplerKind::Epochs] {
            let mut sampler = Sampler::new(kind, 100, 1).unwrap();
            batches(&mut sampler, 7, 30);
            let good = sampler.state();
            let pos = good.rng.unwrap();
            let bad = [
                RngPosition { words: 0, ..pos },
                RngPosition {
                    words: pos.words + 1,
                    ..pos
                },
                RngPosition {
                    position: pos.position + 1,
                    ..pos
                },
                RngPosition {
                    epoch_words: u64::MAX,
                    ..pos
                },
            ];
            let mut refused = 0;
            for rng in bad {
                let state = SamplerState {
                    rng: Some(rng),
                    ..good
                };
                match Sampler::from_state(state) {
                    Err(Error::Config { .. }) => refused += 1,
                    Err(e) => panic!("{kind}: {e}"),
                    Ok(_) => {}
                }
            }
            // With replacement only the word count is checkable (a lower bound); epochs check
            // all three.
            let expected = if kind == SamplerKind::Epochs { 4 } else { 1 };
            assert_eq!(refused, expected, "{kind}");
        }
    }

    #[test]
    #[cfg(feature = "cli")]
    fn kind_names_are_the_command_lines() {
        use clap::ValueEnum;
        for kind in [SamplerKind::WithReplacement, SamplerKind::Epochs] {
            assert_eq!(SamplerKind::from_str(kind.as_str(), false).unwrap(), kind);
        }
        assert!(SamplerKind::from_str("sometimes", false).is_err());
    }
}
