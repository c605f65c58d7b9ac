//! The first layer's two products with the zero pixels skipped: 81% of MNIST's pixels are 0, so
//! x . W1 (forward) and x^T . delta (the W1 gradient) touch a fifth of the rows of W1. Same
//! arithmetic as the dense products of `matmul`, summed in another order; used only when the batch
//! is sparse enough to win (`SPARSE_MAX_DENSITY`).
//!
//! Shapes: B rows of width I (the batch), W1 is I x H row-major, delta is B x H.

use super::real::Real;
use crate::data::NonZeroPixels;
use rayon::prelude::*;

/// Above this fraction of non-zero inputs the dense `matrixmultiply` kernels are faster (their
/// blocking beats the scattered row access; measured crossover on MNIST-like data ~0.4).
pub const SPARSE_MAX_DENSITY: f64 = 0.35;
/// Below this many multiply-adds a product runs on one thread: waking a sleeping rayon worker
/// costs tens of microseconds on a VM, as much as ~1M multiply-adds here (measured: the
/// chapter's batch of 100, 0.78M, ran slower on two threads than on one).
const PARALLEL_MIN_MACS: usize = 4_000_000;

/// The non-zero entries of each row of a batch (compressed sparse rows, columns ascending).
#[derive(Debug, Clone, Default)]
pub struct SparseRows<T> {
    pub width: usize,
    /// Row r's entries are `cols[starts[r]..starts[r + 1]]`, `vals[..]` likewise.
    pub starts: Vec<usize>,
    pub cols: Vec<u32>,
    pub vals: Vec<T>,
    /// The same entries grouped by column (for X^T . delta): column c's (row, value) pairs are
    /// `by_col[col_starts[c]..col_starts[c + 1]]`. Kept here so the buffers are reused.
    col_starts: Vec<usize>,
    by_col: Vec<(u32, T)>,
    next: Vec<u32>,
}

impl<T: Real> SparseRows<T> {
    /// Regroups the rows' entries by column (a counting sort). The fields are split into local
    /// borrows first, so the loops keep their pointers in registers.
    fn index_columns(&mut self) {
        let SparseRows {
            width,
            starts,
            cols,
            vals,
            col_starts,
            by_col,
            next,
        } = self;
        let width = *width;
        col_starts.clear();
        col_starts.resize(width + 1, 0);
        for &c in cols.iter() {
            col_starts[c as usize + 1] += 1;
        }
        for c in 0..width {
            col_starts[c + 1] += col_starts[c];
        }
        by_col.clear();
        by_col.resize(cols.len(), (0, T::ZERO));
        next.clear();
        next.extend(col_starts[..width].iter().map(|&s| s as u32));
        let (next, by_col) = (&mut next[..], &mut by_col[..]);
        for (r, w) in starts.windows(2).enumerate() {
            for (&c, &v) in cols[w[0]..w[1]].iter().zip(&vals[w[0]..w[1]]) {
                let slot = &mut next[c as usize];
                by_col[*slot as usize] = (r as u32, v);
                *slot += 1;
            }
        }
    }

    /// The rows `indices` of the data set behind `index`, x = pixel / 255 from the data set's
    /// table (as `fill_x`), keeping the allocations of earlier batches.
    pub fn fill_from_index(&mut self, index: &NonZeroPixels, indices: &[u32]) {
        let scale = T::PIXEL;
        self.width = index.width;
        self.starts.clear();
        self.cols.clear();
        self.vals.clear();
        self.starts.push(0);
        for &i in indices {
            let (a, b) = (index.starts[i as usize], index.starts[i as usize + 1]);
            self.cols.extend(index.cols[a..b].iter().map(|&c| c as u32));
            self.vals
                .extend(index.pixels[a..b].iter().map(|&p| scale[p as usize]));
            self.starts.push(self.cols.len());
        }
        self.index_columns();
    }

    /// Builds the rows from dense ones (the tests' way to make a batch without a data set).
    #[cfg(test)]
    fn fill_from_dense(&mut self, x: &[T], width: usize) {
        self.width = width;
        self.starts.clear();
        self.cols.clear();
        self.vals.clear();
        self.starts.push(0);
        for row in x.chunks(width.max(1)) {
            for (c, &v) in row.iter().enumerate() {
                if v != T::ZERO {
                    self.cols.push(c as u32);
                    self.vals.push(v);
                }
            }
            self.starts.push(self.cols.len());
        }
        self.index_columns();
    }

    pub fn rows(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Fraction of non-zero entries.
    pub fn density(&self) -> f64 {
        let cells = self.rows() * self.width;
        if cells == 0 {
            1.0
        } else {
            self.cols.len() as f64 / cells as f64
        }
    }

    fn row(&self, r: usize) -> (&[u32], &[T]) {
        let (a, b) = (self.starts[r], self.starts[r + 1]);
        (&self.cols[a..b], &self.vals[a..b])
    }
}

/// Output columns held in registers at once, in steps of BLOCK: up to 64 f32 are four AVX-512
/// (eight AVX2) registers, so each non-zero input costs one load and one multiply-add per
/// register and the accumulator never goes through memory (a store-to-load chain per term, as a
/// plain `y += a x` loop makes, cost more than the arithmetic).
const BLOCK: usize = 16;
const MAX_COLUMNS: usize = 4 * BLOCK;

/// The sum over `terms` (v, offset) of v * base[offset + start..][..W], kept in registers. A row
/// that ends less than W after `start` (the last rows of `base`) is read zero-padded; the
/// columns past the caller's width are ignored by the caller.
#[inline(always)]
fn block_sum<T: Real, const W: usize, const FMA: bool>(
    base: &[T],
    start: usize,
    terms: impl Iterator<Item = (T, usize)>,
) -> [T; W] {
    let mut acc = [T::ZERO; W];
    for (v, offset) in terms {
        let from = offset + start;
        let padded;
        let r: &[T; W] = match base.get(from..from + W) {
            Some(r) => r.try_into().expect("W columns"),
            None => {
                let mut p = [T::ZERO; W];
                let avail = &base[from.min(base.len())..];
                p[..avail.len()].copy_from_slice(avail);
                padded = p;
                &padded
            }
        };
        for k in 0..W {
            acc[k] = if FMA {
                v.mul_add(r[k], acc[k])
            } else {
                acc[k] + v * r[k]
            };
        }
    }
    acc
}

/// out (n) += sum over `terms` (v, offset) of v * base[offset..][..n]: the one inner loop of
/// both sparse products.
#[inline(always)]
fn add_scaled_rows<T: Real>(
    fma: bool,
    out: &mut [T],
    base: &[T],
    terms: impl Iterator<Item = (T, usize)> + Clone,
) {
    if fma {
        add_scaled_rows_as::<T, true>(out, base, terms);
    } else {
        add_scaled_rows_as::<T, false>(out, base, terms);
    }
}

/// `add_scaled_rows` with (FMA) or without fused multiply-adds.
#[inline(always)]
fn add_scaled_rows_as<T: Real, const FMA: bool>(
    out: &mut [T],
    base: &[T],
    terms: impl Iterator<Item = (T, usize)> + Clone,
) {
    let n = out.len();
    let mut start = 0;
    while start < n {
        let width = (n - start).min(MAX_COLUMNS);
        let mut add = |acc: &[T]| {
            for (o, &a) in out[start..start + width].iter_mut().zip(acc) {
                *o += a;
            }
        };
        match width.div_ceil(BLOCK) {
            1 => add(&block_sum::<T, BLOCK, FMA>(base, start, terms.clone())),
            2 => add(&block_sum::<T, { 2 * BLOCK }, FMA>(
                base,
                start,
                terms.clone(),
            )),
            3 => add(&block_sum::<T, { 3 * BLOCK }, FMA>(
                base,
                start,
                terms.clone(),
            )),
            _ => add(&block_sum::<T, MAX_COLUMNS, FMA>(
                base,
                start,
                terms.clone(),
            )),
        }
        start += width;
    }
}

/// Runs `body` compiled for AVX-512 or AVX2 (with FMA) when the CPU has them (the body is
/// inlined into a `target_feature` function; the default build targets baseline x86-64, 4-wide
/// SSE2), else as built. `body` is told whether fused multiply-adds are available: without the
/// feature, `mul_add` would be a libm call per element.
#[inline(always)]
fn with_wide_simd<R>(body: impl FnOnce(bool) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        unsafe fn avx512<R>(body: impl FnOnce(bool) -> R) -> R {
            body(true)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(body: impl FnOnce(bool) -> R) -> R {
            body(true)
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU was just checked to support AVX-512F and FMA.
            return unsafe { avx512(body) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU was just checked to support AVX2 and FMA.
            return unsafe { avx2(body) };
        }
    }
    body(false)
}

/// Runs `row(r, out_row, fma)` for every n-wide row r of `out`, compiled wide
/// (`with_wide_simd`), on one thread below PARALLEL_MIN_MACS multiply-adds, else split over the
/// rayon threads by rows (each thread owns its rows).
fn for_each_row<T: Real>(
    out: &mut [T],
    n: usize,
    macs: usize,
    row: impl Fn(usize, &mut [T], bool) + Sync,
) {
    let block = |first: usize, block: &mut [T]| {
        with_wide_simd(
            #[inline(always)]
            |fma| {
                for (i, r) in block.chunks_mut(n).enumerate() {
                    row(first + i, r, fma);
                }
            },
        )
    };
    let threads = rayon::current_num_threads();
    if macs < PARALLEL_MIN_MACS || threads < 2 {
        block(0, out);
    } else {
        let rows_per = (out.len() / n).div_ceil(threads).max(1);
        out.par_chunks_mut(rows_per * n)
            .enumerate()
            .for_each(|(chunk, b)| block(chunk * rows_per, b));
    }
}

/// out (B x n) += X (B x I, sparse) . w (I x n). `out` holds the bias rows on entry.
pub fn sparse_matmul_add<T: Real>(x: &SparseRows<T>, w: &[T], n: usize, out: &mut [T]) {
    assert_eq!(
        w.len(),
        x.width * n,
        "sparse_matmul_add: W is not {} x {n}",
        x.width
    );
    assert_eq!(
        out.len(),
        x.rows() * n,
        "sparse_matmul_add: out is not {} x {n}",
        x.rows()
    );
    if n == 0 {
        return;
    }
    for_each_row(
        out,
        n,
        x.cols.len() * n,
        #[inline(always)]
        |r, acc, fma| {
            let (cols, vals) = x.row(r);
            let terms = cols.iter().zip(vals).map(|(&c, &v)| (v, c as usize * n));
            add_scaled_rows(fma, acc, w, terms);
        },
    );
}

/// grad (I x n) = X^T (I x B, sparse) . delta (B x n). The batch's entries are first regrouped
/// by input column (a counting sort), so each row of `grad` is one sum accumulated in registers
/// and written once; threads own disjoint ranges of rows.
pub fn sparse_at_b_into<T: Real>(x: &SparseRows<T>, delta: &[T], n: usize, grad: &mut [T]) {
    assert_eq!(
        delta.len(),
        x.rows() * n,
        "sparse_at_b: delta is not {} x {n}",
        x.rows()
    );
    assert_eq!(
        grad.len(),
        x.width * n,
        "sparse_at_b: grad is not {} x {n}",
        x.width
    );
    if n == 0 || x.width == 0 {
        return;
    }
    let (col_starts, by_col) = (&x.col_starts, &x.by_col);
    for_each_row(
        grad,
        n,
        x.cols.len() * n,
        #[inline(always)]
        |c, g, fma| {
            g.iter_mut().for_each(|v| *v = T::ZERO);
            let terms = by_col[col_starts[c]..col_starts[c + 1]]
                .iter()
                .map(|&(r, v)| (v, r as usize * n));
            add_scaled_rows(fma, g, delta, terms);
        },
    );
}

#[cfg(test)]
mod tests {
    use super::super::matmul::{matmul, matmul_at_b};
    use super::*;
    use crate::tolerance::{compare, Tolerance};

    /// Rows with ~80% zeros, like MNIST, at sizes that split over threads and ones that don't.
    #[test]
    fn sparse_products_match_the_dense_ones() {
        for &(b, i, n) in &[
            (1, 1, 1),
            (3, 7, 5),
            (100, 784, 50),
            (257, 33, 10),
            (64, 784, 1),
            // Over PARALLEL_MIN_MACS: split over the rayon threads.
            (2000, 784, 50),
        ] {
            let x: Vec<f64> = (0..b * i)
                .map(|k| {
                    if k * 7 % 10 < 2 {
                        ((k * 37 % 101) as f64) / 101.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let w: Vec<f64> = (0..i * n)
                .map(|k| ((k * 53 % 97) as f64 - 48.0) / 48.0)
                .collect();
            let d: Vec<f64> = (0..b * n)
                .map(|k| ((k * 29 % 89) as f64 - 44.0) / 44.0)
                .collect();
            let mut s = SparseRows::default();
            s.fill_from_dense(&x, i);
            assert!(s.density() < 0.3, "{}", s.density());
            let mut got = vec![0.5; b * n];
            sparse_matmul_add(&s, &w, n, &mut got);
            let want: Vec<f64> = matmul(&x, &w, b, i, n).iter().map(|v| v + 0.5).collect();
            compare("sparse x.W", &got, &want, Tolerance::new(1e-12, 1e-12)).unwrap();
            let mut got = vec![f64::NAN; i * n];
            sparse_at_b_into(&s, &d, n, &mut got);
            compare(
                "sparse x^T.delta",
                &got,
                &matmul_at_b(&x, &d, b, i, n),
                Tolerance::new(1e-12, 1e-12),
            )
            .unwrap();
        }
    }
}
