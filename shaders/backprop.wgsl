// backprop: the pieces of the analytic gradient that are not products (those are matmul.wgsl's
// A^T B and A B^T). With them the gradient of an MLP of any depth is, from the last layer down:
//   d_L = output_delta(probs, labels);  for l = L..1: dW_l = z_{l-1}^T d_l (matmul A^T B),
//   db_l = bias_grad(d_l), and for l > 1: d_{l-1} = act_backward(d_l W_l^T (matmul A B^T)).
//
// Shapes: B batch rows; O classes; for a layer, fan_out columns. All row-major f32.
// Entry points (workgroup 256 x 1 each, grid folded into y past the per-dimension limit):
//   output_delta: delta[b][k] = c_b (p[b][k] - onehot(t_b)[k]) / B, c_b = p_t / (p_t + 1e-7):
//     the derivative of the loss AS WRITTEN, -mean ln(p_t + 1e-7), delta included. One
//     invocation per element of the B x O delta.
//   act_backward: d[i] *= act'(a[i], z[i]) in place, sigmoid z (1 - z), relu (a > 0 ? 1 : 0)
//     (relu'(0) = 0). One invocation per element of B x fan_out.
//   bias_grad: db[n] = sum_b delta[b][n], written at an element offset of the flat gradient.
//     One invocation per column; the rows are summed in order, as the CPU does.
// Bindings (group 0): 0 uniform Dims, then
//   output_delta: 1 probs, 2 labels (u32), 3 delta (written);
//   act_backward: 1 pre (a), 2 post (z), 3 d (read and written);
//   bias_grad:    1 delta, 2 grad (written from grad_off on);
//   bias_grads:   bias_grad of two layers in one launch (a training iteration of a net with one
//     hidden layer): columns 0..cols from 1 delta to grad_off, then cols2 columns from
//     3 delta_in2 to grad_off2, each summed over the rows in order like bias_grad.

struct Dims {
    rows: u32,     // act_backward: n, the number of elements
    cols: u32,     // act_backward: the activation, 1 sigmoid, 2 relu
    grad_off: u32,
    cols2: u32,    // bias_grads: the second layer's columns
    grad_off2: u32, // bias_grads: where its bias gradient goes
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;

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

fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

@compute @workgroup_size(256, 1, 1)
fn output_delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= dims.rows * dims.cols) {
        return;
    }
    let row = i / dims.cols;
    let k = i % dims.cols;
    let t = labels[row];
    let pt = probs[row * dims.cols + t];
    let c = pt / (pt + DELTA) * (1.0 / f32(dims.rows));
    var p = probs[i];
    if (k == t) {
        p -= 1.0;
    }
    delta_out[i] = p * c;
}

@compute @workgroup_size(256, 1, 1)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= dims.rows) {
        return;
    }
    if (dims.cols == 1u) {
        let z = post[i];
        d[i] *= z * (1.0 - z);
    } else if (pre[i] <= 0.0) {
        d[i] = 0.0;
    }
}

@compute @workgroup_size(256, 1, 1)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let col = flat_index(gid, groups);
    if (col >= dims.cols) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < dims.rows; r++) {
        s += delta_in[r * dims.cols + col];
    }
    grad[dims.grad_off + col] = s;
}

@compute @workgroup_size(256, 1, 1)
fn bias_grads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let col = flat_index(gid, groups);
    if (col < dims.cols) {
        var s = 0.0;
        for (var r = 0u; r < dims.rows; r++) {
            s += delta_in[r * dims.cols + col];
        }
        grad[dims.grad_off + col] = s;
    } else if (col < dims.cols + dims.cols2) {
        let c2 = col - dims.cols;
        var s = 0.0;
        for (var r = 0u; r < dims.rows; r++) {
            s += delta_in2[r * dims.cols2 + c2];
        }
        grad[dims.grad_off2 + c2] = s;
    }
}
