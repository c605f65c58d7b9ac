//! Plain SGD over the flat parameter vector (CPU twin of shaders/sgd.wgsl).

use super::real::Real;

/// params -= lr * grad
pub fn sgd<T: Real>(params: &mut [T], grad: &[T], lr: T) {
    for (p, g) in params.iter_mut().zip(grad) {
        *p -= lr * *g;
    }
}
