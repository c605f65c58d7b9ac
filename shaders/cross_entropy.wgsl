// cross_entropy: batched losses with label targets, and the mean of per-sample values.
//
// Shapes: B rows x O classes of probabilities (row-major f32), B u32 labels, B per-sample losses.
// Entry points:
//   cross_entropy: loss[b] = -ln(p[b][t_b] + 1e-7) (the chapter's delta inside the log);
//   sum_squares:   loss[b] = 0.5 * sum_k (p[b][k] - onehot(t_b)[k])^2 (the chapter's SSE);
//     both one invocation per row, workgroup 256 x 1, the grid folded into y past the limit;
//     a label outside 0..O gives NaN, so a bad label can't pass silently.
//   mean: out[out_index] = sum_i values[i] / n, ONE workgroup of 256: each invocation sums a
//     strided share, then a tree reduction in workgroup memory (1 KiB).
// Bindings (group 0), cross_entropy and sum_squares: 0 uniform Dims; 1 probs (read);
//   2 labels (read); 3 losses (written). mean: 0 uniform Dims; 1 values (read); 2 out (written).

struct Dims {
    rows: u32,     // mean: n, the number of values
    cols: u32,     // mean: out_index, where the mean goes
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;

// cross_entropy and sum_squares
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;

// mean (its own layout: bindings 1 and 2 are the values and the output there)
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const DELTA: f32 = 1e-7;

fn nan() -> f32 {
    var bits = 0x7fc00000u; // a runtime value, so no constant folding rejects the NaN
    return bitcast<f32>(bits);
}

fn row_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

@compute @workgroup_size(256, 1, 1)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = row_index(gid, groups);
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

@compute @workgroup_size(256, 1, 1)
fn sum_squares(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = row_index(gid, groups);
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

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn mean(@builtin(local_invocation_index) lid: u32) {
    let n = dims.rows;
    var s = 0.0;
    for (var i = lid; i < n; i += 256u) {
        s += values[i];
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[dims.cols] = partial[0] / f32(max(n, 1u));
    }
}
