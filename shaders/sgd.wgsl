// sgd: params -= lr * grad over the whole flat parameter vector (every W_l and b_l at once).
//
// Shapes: P = number of parameters; params and grad are P f32 in the flat layout of
//   model::Params (per layer W_l, fan_in x fan_out row-major, then b_l).
// Workgroup WORKGROUP_1D x 1, one invocation per parameter; the grid folds into y past the
//   per-dimension limit (folded_index).
// Bindings (group 0): 0 uniform Params (gpu::sgd's, generated ahead of this file: n, lr as f32
//   bits, rewritten when lr changes); 1 params (read and written); 2 grad (read).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = folded_index(gid, groups);
    if (i >= params.n) {
        return;
    }
    theta[i] = theta[i] - params.lr * grad[i];
}
