// cross_entropy: batched losses with label targets, and the mean of per-sample values.
//
// Shapes: B rows x O classes of probabilities (row-major f32), B u32 labels, B per-sample losses.
// Entry points:
//   cross_entropy: loss[b] = -ln(p[b][t_b] + 1e-7) (the chapter's delta inside the log);
//   sum_squares:   loss[b] = 0.5 * sum_k (p[b][k] - onehot(t_b)[k])^2 (the chapter's SSE);
//     both one invocation per row, workgroup WORKGROUP_1D x 1, the grid folded into y past the
//     limit; a label outside 0..O gives NaN, so a bad label can't pass silently.
//   mean: out[out_index] = sum_i values[i] / n, ONE workgroup of WORKGROUP_1D: each invocation
//     sums a strided share (stride WORKGROUP_1D), then a tree reduction in workgroup memory.
// Bindings (group 0), cross_entropy and sum_squares: 0 uniform Dims (rows, cols); 1 probs
//   (read); 2 labels (read); 3 losses (written). mean: 0 uniform MeanParams (n, out_index);
//   1 values (read); 2 out (written). Both structs are gpu::cross_entropy's, generated ahead of
//   this file.

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(0) var<uniform> mean_params: MeanParams;

// cross_entropy and sum_squares
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;

// mean (its own layout: bindings 1 and 2 are the values and the output there)
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const DELTA: f32 = 1e-7;

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = folded_index(gid, groups);
    if (row >= dims.rows) {
        return;
    }
    let t = labels[row];
    if (t >= dims.cols) {
        losses[row] = nan();
        return;
    }
    losses[row] = -log(probs[row * dims.cols + t] + DELTA);
}

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn sum_squares(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = folded_index(gid, groups);
    if (row >= dims.rows) {
        return;
    }
    let t = labels[row];
    if (t >= dims.cols) {
        losses[row] = nan();
        return;
    }
    var s = 0.0;
    for (var k = 0u; k < dims.cols; k++) {
        var d = probs[row * dims.cols + k];
        if (k == t) {
            d -= 1.0;
        }
        s += d * d;
    }
    losses[row] = 0.5 * s;
}

var<workgroup> partial: array<f32, WORKGROUP_1D>;

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn mean(@builtin(local_invocation_index) lid: u32) {
    let n = mean_params.n;
    var s = 0.0;
    for (var i = lid; i < n; i += WORKGROUP_1D) {
        s += values[i];
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WORKGROUP_1D / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[mean_params.out_index] = partial[0] / f32(max(n, 1u));
    }
}
