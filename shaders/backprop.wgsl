// backprop: the pieces of the analytic gradient that are not products (those are matmul.wgsl's
// A^T B and A B^T). With them the gradient of an MLP of any depth is, from the last layer down:
//   d_L = output_delta(probs, labels);  for l = L..1: dW_l = z_{l-1}^T d_l (matmul A^T B),
//   db_l = bias_grad(d_l), and for l > 1: d_{l-1} = act_backward(d_l W_l^T (matmul A B^T)).
//
// Shapes: B batch rows; O classes; for a layer, fan_out columns. All row-major f32.
// Entry points (workgroup WORKGROUP_1D x 1 each, grid folded into y past the per-dimension
// limit), each with its own parameter struct (gpu::backprop's, generated ahead of this file):
//   output_delta (DeltaParams: rows B, cols O): delta[b][k] = c_b (p[b][k] - onehot(t_b)[k]) / B,
//     c_b = p_t / (p_t + 1e-7): the derivative of the loss AS WRITTEN, -mean ln(p_t + 1e-7),
//     delta included. One invocation per element of the B x O delta. A label t_b >= O gives a
//     NaN row (as cross_entropy's loss does), never a read of another row's probabilities.
//   act_backward (ActParams: n elements, act 1 sigmoid / 2 relu): d[i] *= act'(a[i], z[i]) in
//     place, sigmoid z (1 - z), relu (a > 0 ? 1 : 0) (relu'(0) = 0). One invocation per element
//     of B x fan_out.
//   bias_grad (BiasParams: rows, cols, grad_off): db[n] = sum_b delta[b][n], written at an
//     element offset of the flat gradient. One invocation per column; the rows are summed in
//     order, as the CPU does.
// Bindings (group 0): 0 the uniform parameters, then
//   output_delta: 1 probs, 2 labels (u32), 3 delta (written);
//   act_backward: 1 pre (a), 2 post (z), 3 d (read and written);
//   bias_grad:    1 delta, 2 grad (written from grad_off on);
//   bias_grads:   bias_grad of two layers in one launch (a training iteration of a net with one
//     hidden layer; BiasParams all): columns 0..cols from 1 delta to grad_off, then cols2
//     columns from 3 delta_in2 to grad_off2, each summed over the rows in order like bias_grad.

@group(0) @binding(0) var<uniform> delta_params: DeltaParams;
@group(0) @binding(0) var<uniform> act_params: ActParams;
@group(0) @binding(0) var<uniform> bias_params: BiasParams;

// output_delta
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> delta_out: array<f32>;

// act_backward
@group(0) @binding(1) var<storage, read> pre: array<f32>;
@group(0) @binding(2) var<storage, read> post: array<f32>;
@group(0) @binding(3) var<storage, read_write> d: array<f32>;

// bias_grad (and bias_grads: 3 the second layer's delta)
@group(0) @binding(1) var<storage, read> delta_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read> delta_in2: array<f32>;

const DELTA: f32 = 1e-7;

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn output_delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = folded_index(gid, groups);
    let cols = delta_params.cols;
    if (i >= delta_params.rows * cols) {
        return;
    }
    let row = i / cols;
    let k = i % cols;
    let t = labels[row];
    if (t >= cols) {
        delta_out[i] = nan();
        return;
    }
    let pt = probs[row * cols + t];
    let c = pt / (pt + DELTA) * (1.0 / f32(delta_params.rows));
    var p = probs[i];
    if (k == t) {
        p -= 1.0;
    }
    delta_out[i] = p * c;
}

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = folded_index(gid, groups);
    if (i >= act_params.n) {
        return;
    }
    if (act_params.act == 1u) {
        let z = post[i];
        d[i] *= z * (1.0 - z);
    } else if (pre[i] <= 0.0) {
        d[i] = 0.0;
    }
}

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let col = folded_index(gid, groups);
    let u = bias_params;
    if (col >= u.cols) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < u.rows; r++) {
        s += delta_in[r * u.cols + col];
    }
    grad[u.grad_off + col] = s;
}

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn bias_grads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let col = folded_index(gid, groups);
    let u = bias_params;
    if (col < u.cols) {
        var s = 0.0;
        for (var r = 0u; r < u.rows; r++) {
            s += delta_in[r * u.cols + col];
        }
        grad[u.grad_off + col] = s;
    } else if (col < u.cols + u.cols2) {
        let c2 = col - u.cols;
        var s = 0.0;
        for (var r = 0u; r < u.rows; r++) {
            s += delta_in2[r * u.cols2 + c2];
        }
        grad[u.grad_off2 + c2] = s;
    }
}
