// softmax: row-wise, max-subtracted, so that huge logits (1010, 1000, 990) neither overflow nor
// lose the small probabilities: y[r][k] = exp(x[r][k] - max_r) / sum_j exp(x[r][j] - max_r).
//
// Shapes: R rows (the batch, B) x C columns (the classes, O); row-major f32, each starting at an
//   element offset of its buffer. x is the logits (the last layer's pre-activation, kept), y the
//   probabilities.
// Workgroup WORKGROUP_1D x 1: one invocation per row (C is small: 10 for MNIST); the grid folds
//   into y past the per-dimension limit (folded_index).
// Bindings (group 0): 0 uniform Dims (gpu::softmax's, generated ahead of this file: rows, cols,
//   x_off, y_off); 1 x (read); 2 y (written).

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = folded_index(gid, groups);
    if (row >= dims.rows) {
        return;
    }
    let xb = dims.x_off + row * dims.cols;
    let yb = dims.y_off + row * dims.cols;
    var m = x[xb];
    for (var k = 1u; k < dims.cols; k++) {
        m = max(m, x[xb + k]);
    }
    var sum = 0.0;
    for (var k = 0u; k < dims.cols; k++) {
        let e = exp(x[xb + k] - m);
        y[yb + k] = e;
        sum += e;
    }
    for (var k = 0u; k < dims.cols; k++) {
        y[yb + k] = y[yb + k] / sum;
    }
}
