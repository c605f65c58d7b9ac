//! Matrix products (CPU twin of shaders/matmul.wgsl), row-major, through the `matrixmultiply`
//! kernels; large products are split by rows over the rayon pool.

use super::real::Real;
use rayon::prelude::*;

/// Rows per parallel chunk: below ~1 MFLOP a chunk, splitting costs more than it saves.
const ROWS_PER_CHUNK: usize = 64;
const PARALLEL_MIN_FLOPS: usize = 4_000_000;

/// C = A (m x k) . B (k x n).
pub fn matmul<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::ZERO; m * n];
    matmul_into(a, b, m, k, n, &mut c);
    c
}

/// C = A (m x k) . B (k x n), overwriting `c`.
pub fn matmul_into<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize, c: &mut [T]) {
    assert_eq!(a.len(), m * k, "matmul: A is not {m} x {k}");
    assert_eq!(b.len(), k * n, "matmul: B is not {k} x {n}");
    assert_eq!(c.len(), m * n, "matmul: C is not {m} x {n}");
    if n == 0 {
        return;
    }
    if 2 * m * k * n < PARALLEL_MIN_FLOPS || m <= ROWS_PER_CHUNK {
        T::gemm(
            m,
            k,
            n,
            T::ONE,
            a,
            k as isize,
            1,
            b,
            n as isize,
            1,
            T::ZERO,
            c,
            n as isize,
            1,
        );
        return;
    }
    c.par_chunks_mut(ROWS_PER_CHUNK * n)
        .enumerate()
        .for_each(|(chunk, c)| {
            let rows = c.len() / n;
            let a = &a[chunk * ROWS_PER_CHUNK * k..][..rows * k];
            T::gemm(
                rows,
                k,
                n,
                T::ONE,
                a,
                k as isize,
                1,
                b,
                n as isize,
                1,
                T::ZERO,
                c,
                n as isize,
                1,
            );
        });
}

/// C = A^T . B where A is (k x m) and B is (k x n): the weight gradient input^T . delta.
pub fn matmul_at_b<T: Real>(a: &[T], b: &[T], k: usize, m: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::ZERO; m * n];
    T::gemm(
        m,
        k,
        n,
        T::ONE,
        a,
        1,
        m as isize,
        b,
        n as isize,
        1,
        T::ZERO,
        &mut c,
        n as isize,
        1,
    );
    c
}

/// C = A . B^T where A is (m x k) and B is (n x k): the back-propagated delta . W^T.
pub fn matmul_a_bt<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::ZERO; m * n];
    T::gemm(
        m,
        k,
        n,
        T::ONE,
        a,
        k as isize,
        1,
        b,
        1,
        k as isize,
        T::ZERO,
        &mut c,
        n as isize,
        1,
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_match_the_naive_loops() {
        for &(m, k, n) in &[(1, 1, 1), (7, 33, 10), (257, 784, 50), (100, 50, 10)] {
            let a: Vec<f64> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f64 - 50.0) / 50.0)
                .collect();
            let b: Vec<f64> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f64 - 48.0) / 48.0)
                .collect();
            let want = naive(&a, &b, m, k, n);
            let got = matmul(&a, &b, m, k, n);
            crate::tolerance::compare(
                "matmul",
                &got,
                &want,
                crate::tolerance::Tolerance::new(1e-12, 1e-12),
            )
            .unwrap();
            // A^T B with A stored k x m.
            let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let got = matmul_at_b(&at, &b, k, m, n);
            crate::tolerance::compare(
                "matmul_at_b",
                &got,
                &want,
                crate::tolerance::Tolerance::new(1e-12, 1e-12),
            )
            .unwrap();
            let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let got = matmul_a_bt(&a, &bt, m, k, n);
            crate::tolerance::compare(
                "matmul_a_bt",
                &got,
                &want,
                crate::tolerance::Tolerance::new(1e-12, 1e-12),
            )
            .unwrap();
        }
    }
}
