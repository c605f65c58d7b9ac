// matmul: C (M x N) = op(A) op(B) over K, tiled through workgroup memory, for any M, N, K
// (tiles at the edges are zero-padded, so sizes need not be multiples of the tile).
//
// Variants (pipeline-overridable constants, one pipeline each, chosen by the launcher):
//   TRANS_A: A is stored K x M (C = A^T B: the weight gradient input^T . delta, K = batch);
//            else M x K.
//   TRANS_B: B is stored N x K (C = A B^T: the back-propagated delta . W^T); else K x N.
//   BIAS:    C += bias[n] (the forward pass; bias is b_l of the flat parameter vector).
//   ACT:     0 none; 1 sigmoid, 2 relu: also writes POST = act(C), keeping C, the
//            pre-activation, for the backward pass and the numerical gradient.
// Layouts: all row-major f32; every operand starts at an element offset of its buffer (so W_l,
//   b_l and the gradient's slices live inside the one flat parameter/gradient buffer).
// In the MLP: forward a_l = z_{l-1} W_l + b_l with M = B, K = fan_in, N = fan_out
//   (B batch rows, I input width, H hidden units, O classes).
// Workgroup 8 x 8 invocations for a 32 x 32 block of C, 4 x 4 outputs per invocation (see
//   "Blocking" below). Grid: (ceil(N / 32), ceil(M / 32)).
// Bindings (group 0): 0 uniform Dims (gpu::matmul's: m, k, n and an element offset per
//   operand, generated ahead of this file); 1 a; 2 b; 3 bias (read); 4 c (written); 5 post (written).

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override BIAS: bool = false;
override ACT: u32 = 0u;
// 1 sigmoid, 2 relu: C = (A B^T) * act'(z) with z read through the bias binding (the layer's
// activation, rows x N from bias_off): the backward pass's d_{l-1} in one launch. act' from z
// alone: sigmoid z (1 - z); relu 1 where z > 0 (z = max(a, 0) > 0 exactly where a > 0).
override BACK_ACT: u32 = 0u;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> post: array<f32>;

// Blocking: invocation (tx, ty) accumulates rows 4 ty + (0..4) and columns 4 tx + (0..4) of the
// block in four vec4 registers. Per step of BK = 32 along K the workgroup stages a 32 x 32
// slice of op(A) and of op(B) in workgroup memory (2 x 4 KiB, as vec4 so one load feeds four
// multiply-adds), then each invocation does 32 x 16 multiply-adds between one barrier pair.
// One output per invocation with 16 x 16 tiles ran at 0.05 GFLOP/s on lavapipe (its barriers
// and workgroup loads are slow); this runs at ~0.45, and on hardware it cuts workgroup-memory
// traffic 4-fold. Edge blocks are zero-padded at staging and masked at the store.
const WG: u32 = 8u;
const BM: u32 = 32u;
const BN: u32 = 32u;
const BK: u32 = 32u;
const INVOCATIONS: u32 = 64u; // WG * WG
const STAGED: u32 = 16u; // elements of each slice staged per invocation: BK * BM / INVOCATIONS

var<workgroup> tile_a: array<vec4<f32>, 256>; // [k][m / 4], BK x BM
var<workgroup> tile_b: array<vec4<f32>, 256>; // [k][n / 4], BK x BN

// Element (m, k) of op(A), zero outside the matrix.
fn load_a(m: u32, k: u32) -> f32 {
    if (m >= dims.m || k >= dims.k) {
        return 0.0;
    }
    if (TRANS_A) {
        return a[dims.a_off + k * dims.m + m];
    }
    return a[dims.a_off + m * dims.k + k];
}

// Element (k, n) of op(B), zero outside the matrix.
fn load_b(k: u32, n: u32) -> f32 {
    if (k >= dims.k || n >= dims.n) {
        return 0.0;
    }
    if (TRANS_B) {
        return b[dims.b_off + n * dims.k + k];
    }
    return b[dims.b_off + k * dims.n + n];
}

fn store(row: u32, col: u32, acc: f32) {
    if (row >= dims.m || col >= dims.n) {
        return;
    }
    var v = acc;
    if (BIAS) {
        v += bias[dims.bias_off + col];
    }
    if (BACK_ACT == 1u) {
        let z = bias[dims.bias_off + row * dims.n + col];
        v *= z * (1.0 - z);
    } else if (BACK_ACT == 2u) {
        if (bias[dims.bias_off + row * dims.n + col] <= 0.0) {
            v = 0.0;
        }
    }
    c[dims.c_off + row * dims.n + col] = v;
    if (ACT == 1u) {
        post[dims.post_off + row * dims.n + col] = 1.0 / (1.0 + exp(-v));
    } else if (ACT == 2u) {
        post[dims.post_off + row * dims.n + col] = max(v, 0.0);
    }
}

// Element e of this K step's slices of op(A) and op(B) into workgroup memory. Neighbouring
// invocations read neighbouring addresses of each operand as it is stored: along K for A, along N
// for B, swapped when the operand is transposed.
fn stage(e: u32, row0: u32, col0: u32, k0: u32) {
    if (TRANS_A) {
        let m = e % BM;
        tile_a[(e / BM) * (BM / 4u) + m / 4u][m % 4u] = load_a(row0 + m, k0 + e / BM);
    } else {
        let m = e / BK;
        tile_a[(e % BK) * (BM / 4u) + m / 4u][m % 4u] = load_a(row0 + m, k0 + e % BK);
    }
    if (TRANS_B) {
        let n = e / BK;
        tile_b[(e % BK) * (BN / 4u) + n / 4u][n % 4u] = load_b(k0 + e % BK, col0 + n);
    } else {
        let n = e % BN;
        tile_b[(e / BN) * (BN / 4u) + n / 4u][n % 4u] = load_b(k0 + e / BN, col0 + n);
    }
}

// One step along K of the invocation's 4 x 4 outputs.
fn step(
    kk: u32,
    lid: vec3<u32>,
    acc0: ptr<function, vec4<f32>>,
    acc1: ptr<function, vec4<f32>>,
    acc2: ptr<function, vec4<f32>>,
    acc3: ptr<function, vec4<f32>>,
) {
    let av = tile_a[kk * (BM / 4u) + lid.y];
    let bv = tile_b[kk * (BN / 4u) + lid.x];
    *acc0 = fma(vec4<f32>(av.x), bv, *acc0);
    *acc1 = fma(vec4<f32>(av.y), bv, *acc1);
    *acc2 = fma(vec4<f32>(av.z), bv, *acc2);
    *acc3 = fma(vec4<f32>(av.w), bv, *acc3);
}

@compute @workgroup_size(8, 8, 1)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    // acc_i: row 4 ty + i of the block, columns 4 tx + (0..4).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < dims.k; k0 += BK) {
        // Unrolled by hand, four stagings and eight steps along K per loop iteration: lavapipe
        // ends an invocation's loops after 65,535 iterations in all, and this keeps a tile at 9
        // (1 + 4 + 4), i.e. K up to ~233,000 (gpu::matmul::loop_iterations).
        for (var s = 0u; s < STAGED; s += 4u) {
            stage(li + s * INVOCATIONS, row0, col0, k0);
            stage(li + (s + 1u) * INVOCATIONS, row0, col0, k0);
            stage(li + (s + 2u) * INVOCATIONS, row0, col0, k0);
            stage(li + (s + 3u) * INVOCATIONS, row0, col0, k0);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += 8u) {
            step(kk, lid, &acc0, &acc1, &acc2, &acc3);
            step(kk + 1u, lid, &acc0, &acc1, &acc2, &acc3);
            step(kk + 2u, lid, &acc0, &acc1, &acc2, &acc3);
            step(kk + 3u, lid, &acc0, &acc1, &acc2, &acc3);
            step(kk + 4u, lid, &acc0, &acc1, &acc2, &acc3);
            step(kk + 5u, lid, &acc0, &acc1, &acc2, &acc3);
            step(kk + 6u, lid, &acc0, &acc1, &acc2, &acc3);
            step(kk + 7u, lid, &acc0, &acc1, &acc2, &acc3);
        }
        workgroupBarrier();
    }
    let r = row0 + lid.y * 4u;
    let cc = col0 + lid.x * 4u;
    for (var j = 0u; j < 4u; j++) {
        store(r, cc + j, acc0[j]);
        store(r + 1u, cc + j, acc1[j]);
        store(r + 2u, cc + j, acc2[j]);
        store(r + 3u, cc + j, acc3[j]);
    }
}
