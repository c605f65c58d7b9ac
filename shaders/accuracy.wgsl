// accuracy: how many rows have their FIRST largest score at the label (NumPy's argmax on ties),
// added to a u32 counter, so a whole split can be counted over several launches.
//
// Shapes: R rows x C classes of scores (probabilities or logits, row-major f32), R u32 labels.
// Workgroup WORKGROUP_1D x 1, one invocation per row; hits are counted in a workgroup atomic and added
//   to the global counter once per workgroup (not once per row). The grid folds into y past
//   the per-dimension limit. The caller zeroes the counter before the first launch.
// Bindings (group 0): 0 uniform Dims (gpu::accuracy's, generated ahead of this file); 1 scores (read); 2 labels (read); 3 count (atomic u32,
//   read and written).

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> count: atomic<u32>;

var<workgroup> hits: atomic<u32>;

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn accuracy(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let row = folded_index(gid, groups);
    // No early return: every invocation must reach the barrier.
    if (row < dims.rows) {
        let base = row * dims.cols;
        var best = 0u;
        for (var k = 1u; k < dims.cols; k++) {
            if (scores[base + k] > scores[base + best]) {
                best = k;
            }
        }
        if (best == labels[row]) {
            atomicAdd(&hits, 1u);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        let h = atomicLoad(&hits);
        if (h > 0u) {
            atomicAdd(&count, h);
        }
    }
}
