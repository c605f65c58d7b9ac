// head: the last layer of a training iteration in ONE launch: logits = z W + b, softmax, each
// sample's cross entropy -ln(p_t + 1e-7), their mean, and for backprop the output delta
// c_b (p - onehot(t)) / B, c_b = p_t / (p_t + 1e-7). The same arithmetic, in the same order, as
// matmul (AddBias, fma over K in order, then the bias), softmax, cross_entropy, mean and
// output_delta, which do it in five launches.
//
// Shapes: B rows, K inputs (the last hidden layer), O classes. `acts` is the training plan's
//   forward cache (f32 words; the labels as u32 bits), laid out by the launcher: z (B x K) read
//   from in_off, logits and probabilities (B x O) written at logits_off and probs_off, labels
//   (B) at labels_off. W (K x O) and b (O) at w_off and b_off of the flat parameters.
// ONE workgroup of WORKGROUP_1D (the mean needs every row): invocation i takes rows i,
//   i + WORKGROUP_1D, ..., then a tree reduction, as `mean` does.
// A label t >= O gives a NaN loss (and a NaN delta row), never a read past the row.
// The iteration: word 0 of `chunk` (the gather read it for this iteration's batch). The mean
//   goes to losses[iteration], and the word is advanced for the next iteration.
// Bindings (group 0): 0 uniform Params (gpu::head's HeadParams, generated ahead of this file);
//   1 theta (read); 2 acts (read and written); 3 chunk (u32,
//   read and written); 4 losses (written); 5 delta (B x O, written when Params.delta is 1).

const DELTA: f32 = 1e-7;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read_write> acts: array<f32>;
@group(0) @binding(3) var<storage, read_write> chunk: array<u32>;
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;
@group(0) @binding(5) var<storage, read_write> delta: array<f32>;

var<workgroup> partial: array<f32, WORKGROUP_1D>;

// The loss of row r (its logits, probabilities and delta written on the way).
fn row_loss(r: u32) -> f32 {
    let n = params.classes;
    let zb = params.in_off + r * params.inputs;
    let lb = params.logits_off + r * n;
    let pb = params.probs_off + r * n;
    for (var k = 0u; k < n; k++) {
        var acc = 0.0;
        for (var j = 0u; j < params.inputs; j++) {
            acc = fma(acts[zb + j], theta[params.w_off + j * n + k], acc);
        }
        acts[lb + k] = acc + theta[params.b_off + k];
    }
    var m = acts[lb];
    for (var k = 1u; k < n; k++) {
        m = max(m, acts[lb + k]);
    }
    var sum = 0.0;
    for (var k = 0u; k < n; k++) {
        let e = exp(acts[lb + k] - m);
        acts[pb + k] = e;
        sum += e;
    }
    for (var k = 0u; k < n; k++) {
        acts[pb + k] = acts[pb + k] / sum;
    }
    let t = bitcast<u32>(acts[params.labels_off + r]);
    if (t >= n) {
        if (params.delta == 1u) {
            for (var k = 0u; k < n; k++) {
                delta[r * n + k] = nan();
            }
        }
        return nan();
    }
    let pt = acts[pb + t];
    if (params.delta == 1u) {
        let c = pt / (pt + DELTA) * (1.0 / f32(params.rows));
        for (var k = 0u; k < n; k++) {
            var p = acts[pb + k];
            if (k == t) {
                p -= 1.0;
            }
            delta[r * n + k] = p * c;
        }
    }
    return -log(pt + DELTA);
}

@compute @workgroup_size(WORKGROUP_1D, 1, 1)
fn head(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var r = lid; r < params.rows; r += WORKGROUP_1D) {
        s += row_loss(r);
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
        let step = chunk[0];
        losses[step] = partial[0] / f32(max(params.rows, 1u));
        chunk[0] = step + 1u;
    }
}
