//! Argmax == label, counted (CPU twin of shaders/accuracy.wgsl).

use super::real::Real;

/// The number of rows whose first largest value sits at the label (NumPy's argmax on ties).
pub fn correct_count<T: Real>(scores: &[T], labels: &[u8], classes: usize) -> usize {
    labels
        .iter()
        .enumerate()
        .filter(|&(b, &t)| {
            crate::math::argmax(&scores[b * classes..(b + 1) * classes]) == t as usize
        })
        .count()
}
