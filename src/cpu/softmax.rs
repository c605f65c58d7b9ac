//! Row-wise softmax (CPU twin of shaders/softmax.wgsl).

use super::real::Real;

/// In place, row by row; subtracting the row max first keeps exp from overflowing.
pub fn softmax_rows<T: Real>(x: &mut [T], cols: usize) {
    for row in x.chunks_mut(cols) {
        let mut max = row[0];
        for &v in row.iter() {
            if v > max {
                max = v;
            }
        }
        let mut sum = T::ZERO;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v = *v / sum;
        }
    }
}
