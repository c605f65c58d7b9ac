// gather: batch indices -> the f32 batch X (B x I) and its labels, from the u8 data set that
// stays resident on the GPU. Only the B indices cross the bus per step.
//
// Shapes: B = rows of the batch, I = input width (784 for MNIST).
// Layout of one chunk of a split (rows [row_start, row_end) of it): the pixels packed 4 per u32,
//   little-endian (byte j of the chunk is pixel j % I of chunk row j / I, in bits 8*(j%4)..), and
//   one u32 label per row. A chunk's pixels span at most 2^32 bytes (gpu::gather::rows_per_chunk),
//   so the u32 byte index below cannot wrap. A split larger than one storage binding (or than
//   that) is cut into several chunks;
//   the gather runs once per chunk and each run writes only the batch rows whose index lies in
//   its chunk, so every row is written exactly once whatever the number of chunks.
// Normalisation: x = pixel / 255 by the host's 256-entry table, data::PIXEL_F32, the one
//   Dataset::fill_batch_f32 uses: WGSL's `/` may be 2.5 ulp off, a table lookup is
//   bit-exact on every adapter.
// Which rows (Params.mode): 0 the batch's indices, indices[row]; 1 a training chunk: word 0 of
//   `indices` is the iteration (advanced by the head kernel), then the chunk's batches back to
//   back, so row `row` of iteration s is indices[1 + s B + row]; 2 consecutive rows from
//   `first` (an evaluation chunk: no indices at all).
// X: B x I, row-major. Workgroup GATHER_WG x 1: global x = column, global y = batch row.
// Bindings (group 0): 0 uniform Params (gpu::gather's GatherParams, generated ahead of this
//   file); 1 indices (u32); 2 pixels (packed u32); 3 labels (u32 per chunk row); 4 uniform table (256 f32 as 64 vec4); 5 x (B x I f32, written);
//   6 batch_labels (u32, written from labels_off on).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read> pixels: array<u32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<uniform> table: array<vec4<f32>, 64>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> batch_labels: array<u32>;

@compute @workgroup_size(GATHER_WG, 1, 1)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    if (row >= params.rows || col >= params.width) {
        return;
    }
    var index: u32;
    if (params.mode == 1u) {
        index = indices[1u + indices[0] * params.rows + row];
    } else if (params.mode == 2u) {
        index = params.first + row;
    } else {
        index = indices[row];
    }
    if (index < params.row_start || index >= params.row_end) {
        return; // another chunk's row
    }
    let local = index - params.row_start;
    let byte_index = local * params.width + col;
    let pixel = (pixels[byte_index / 4u] >> ((byte_index % 4u) * 8u)) & 0xffu;
    x[row * params.width + col] = table[pixel / 4u][pixel % 4u];
    if (col == 0u) {
        batch_labels[params.labels_off + row] = labels[local];
    }
}
