// sparse: the first layer of a training iteration over the batch's NON-ZERO pixels only:
// a[r, j] = sum over the non-zero pixels i of image idx_r, in increasing i, of x_i W[i, j], then
// + b[j], and z = act(a). The same fma chain in the same order as matmul.wgsl's product over the
// dense X (an fma with a zero pixel adds exactly nothing), then the same epilogue as its
// AddBiasAct variant: bit-identical to the dense layer for finite weights (an inf or NaN in W
// would reach the dense sum through a zero pixel's fma, not this one), at ~19% of its
// multiply-adds on MNIST (81% of the pixels are 0) and without its staging and barriers. CPU
// twin: cpu::sparse (sparse_matmul_add) with cpu::forward's epilogue.
//
// Shapes: B rows, I inputs, H units. W (I x H) at w_off and b (H) at b_off of the flat
//   parameters; a (B x H) written at pre_off and z = act(a) at post_off of `acts` (the training
//   plan's forward cache, gpu::numerical::cache_layout).
// Data: the training split's non-zero pixels, uploaded once (gpu::gather::ResidentSplit, from
//   data::NonZeroPixels): `starts` (N + 1 u32: image n's pixels are entries starts[n] ..
//   starts[n + 1]) and `entries` (u32: column << 8 | pixel value), x = table[value] exactly as
//   the gather makes it.
// Rows: word 0 of `chunk` is the iteration, row r's image chunk[1 + iteration B + r] (the
//   gather's mode 1; the head advances the word after this launch).
// Workgroup SPARSE_WG x 1, grid (ceil(H / SPARSE_WG), B): invocation j of workgroup (bx, r)
//   computes unit bx SPARSE_WG + j of row r; the workgroup walks one image's pixels together
//   (a uniform loop: no divergence, W's row read contiguously across the lanes).
// Bindings (group 0): 0 uniform Params (gpu::sparse's SparseParams, generated ahead of this
//   file); 1 chunk (read); 2 starts (read); 3 entries (read);
//   4 theta (read); 5 uniform table (256 f32 as 64 vec4); 6 acts (written).

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> chunk: array<u32>;
@group(0) @binding(2) var<storage, read> starts: array<u32>;
@group(0) @binding(3) var<storage, read> entries: array<u32>;
@group(0) @binding(4) var<storage, read> theta: array<f32>;
@group(0) @binding(5) var<uniform> table: array<vec4<f32>, 64>;
@group(0) @binding(6) var<storage, read_write> acts: array<f32>;

@compute @workgroup_size(SPARSE_WG, 1, 1)
fn sparse_layer(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.y;
    let j = wid.x * SPARSE_WG + lid.x;
    if (r >= u.rows || j >= u.hidden) {
        return;
    }
    let image = chunk[1u + chunk[0] * u.rows + r];
    var first = 0u;
    var end = 0u;
    if (image < u.images) {
        first = starts[image];
        end = starts[image + 1u];
    }
    var acc = 0.0;
    for (var e = first; e < end; e++) {
        let entry = entries[e];
        let v = entry & 0xffu;
        let x = table[v / 4u][v % 4u];
        acc = fma(x, theta[u.w_off + (entry >> 8u) * u.hidden + j], acc);
    }
    let a = acc + theta[u.b_off + j];
    let at = r * u.hidden + j;
    acts[u.pre_off + at] = a;
    if (u.act == 1u) {
        acts[u.post_off + at] = 1.0 / (1.0 + exp(-a));
    } else {
        acts[u.post_off + at] = max(a, 0.0);
    }
}
