//! Launcher of shaders/gather.wgsl and the resident data set it reads: each split uploaded
//! ONCE as its u8 bytes (read by the shader 4 pixels per u32) plus u32 labels, in chunks of
//! whole images when a split is larger than one storage binding or than the shader's u32 byte
//! index reaches. CPU twin: `Dataset::fill_batch_f32` (bit-exact).

use super::context::Context;
use super::launch::{
    decl, groups_2d, kernel_params, word, Dispatch, Kernel, Operand, Shader, Slot,
};
use crate::data::{Dataset, PIXEL_F32};
use crate::error::{Error, Result};

/// The shader's workgroup width (columns per workgroup; GATHER_WG in the shader).
pub(crate) const WORKGROUP_X: u32 = 64;

pub(crate) const SHADER: Shader = Shader {
    file: "gather.wgsl",
    body: include_str!("../../shaders/gather.wgsl"),
    consts: &[("GATHER_WG", WORKGROUP_X)],
    params: &[decl::<GatherParams>()],
};

/// The bytes a chunk's pixels may span: the shader indexes them with a u32 byte offset.
pub(crate) const MAX_CHUNK_BYTES: u64 = 1 << 32;

#[derive(Debug)]
/// The family's pipelines (built once, in `Kernels`).
pub struct Pipelines {
    gather: Kernel,
    /// i / 255 for every byte value: the CPU's own table (`data::PIXEL_F32`, see the shader's
    /// header).
    table: wgpu::Buffer,
}

impl Pipelines {
    pub(crate) fn new(ctx: &Context, module: &wgpu::ShaderModule) -> Self {
        use Slot::*;
        ctx.count_creations(1);
        Pipelines {
            gather: Kernel::new(
                ctx,
                module,
                "gather",
                "gather",
                &[Read, Read, Read, Uniform, ReadWrite, ReadWrite],
                &[],
            ),
            table: wgpu::util::DeviceExt::create_buffer_init(
                ctx.device(),
                &wgpu::util::BufferInitDescriptor {
                    label: Some("pixel table"),
                    contents: bytemuck::cast_slice(&PIXEL_F32),
                    usage: wgpu::BufferUsages::UNIFORM,
                },
            ),
        }
    }
}

impl Pipelines {
    /// The pixel table (x = v / 255, as the CPU computes it), for kernels that read pixels too.
    pub(crate) fn table(&self) -> &wgpu::Buffer {
        &self.table
    }
}

/// The non-zero pixels of every image of a split (data::NonZeroPixels), resident for the
/// sparse first layer (shaders/sparse.wgsl): `starts` (N + 1 u32) and `entries` (u32: column
/// << 8 | pixel value).
#[derive(Debug)]
pub struct NonZeroBuffers {
    pub(crate) starts: wgpu::Buffer,
    pub(crate) entries: wgpu::Buffer,
    pub(crate) images: usize,
    pub(crate) width: usize,
}

impl NonZeroBuffers {
    /// None where the index is unavailable (images too wide) or too big for one binding or for
    /// u32 offsets: the dense first layer runs then.
    fn upload(ctx: &Context, label: &str, data: &Dataset) -> Result<Option<NonZeroBuffers>> {
        let Some(nz) = data.nonzero_pixels() else {
            return Ok(None);
        };
        let count = nz.cols.len();
        let limit = ctx.max_binding_bytes() as usize;
        if count == 0
            || count.saturating_mul(4) > limit
            || (data.len() + 1).saturating_mul(4) > limit
            || u32::try_from(count).is_err()
        {
            return Ok(None);
        }
        let starts: Vec<u32> = nz.starts.iter().map(|&s| s as u32).collect();
        let entries: Vec<u32> = nz
            .cols
            .iter()
            .zip(&nz.pixels)
            .map(|(&c, &p)| (u32::from(c) << 8) | u32::from(p))
            .collect();
        Ok(Some(NonZeroBuffers {
            starts: ctx.upload(&format!("{label} non-zero starts"), &starts)?,
            entries: ctx.upload(&format!("{label} non-zero pixels"), &entries)?,
            images: data.len(),
            width: nz.width,
        }))
    }
}

/// Rows [row_start, row_end) of a split, resident on the device.
#[derive(Debug)]
struct Chunk {
    pixels: wgpu::Buffer,
    labels: wgpu::Buffer,
    row_start: usize,
    row_end: usize,
}

/// One split (train or test) resident on the device.
#[derive(Debug)]
pub struct ResidentSplit {
    chunks: Vec<Chunk>,
    /// The non-zero pixels, where asked for and the split is one chunk.
    nonzero: Option<NonZeroBuffers>,
    len: usize,
    width: usize,
}

/// Images per chunk of a split of `width`-pixel images: whole images whose pixels (`width`
/// bytes each) and labels (4 bytes each) each fit one binding of `limit` bytes, whose bytes the
/// shader's u32 byte index reaches (`MAX_CHUNK_BYTES`), and at most `max_rows` (tests cut splits
/// small). Refuses an image that fits no binding.
pub(crate) fn rows_per_chunk(width: usize, limit: u64, max_rows: Option<usize>) -> Result<usize> {
    let pixel_bytes = limit.min(MAX_CHUNK_BYTES);
    let by_limit = (pixel_bytes / width.max(1) as u64).min(limit / 4);
    if by_limit == 0 {
        return Err(Error::Gpu(format!(
            "one {width}-pixel image does not fit this adapter's max_storage_buffer_binding_size \
             ({limit} bytes); use smaller images or --device cpu"
        )));
    }
    let by_limit = usize::try_from(by_limit).unwrap_or(usize::MAX);
    Ok(max_rows.unwrap_or(usize::MAX).min(by_limit).max(1))
}

impl ResidentSplit {
    /// Uploads `data` once. `max_rows` caps the rows per chunk below what the binding limit
    /// allows (tests use it to exercise the split path on small data). `with_nonzero` also
    /// uploads its non-zero pixels (the training split: the sparse first layer reads them),
    /// where the split is one chunk.
    pub fn upload(
        ctx: &Context,
        label: &str,
        data: &Dataset,
        max_rows: Option<usize>,
        with_nonzero: bool,
    ) -> Result<Self> {
        let width = data.input_width();
        let per_chunk = rows_per_chunk(width, ctx.max_binding_bytes(), max_rows)?;
        let (images, labels) = (data.images(), data.labels());
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let end = (start + per_chunk).min(data.len());
            let name = format!("{label} rows {start}..{end}");
            chunks.push(Chunk {
                pixels: ctx.upload_bytes(
                    &format!("{name} pixels"),
                    &images[start * width..end * width],
                )?,
                labels: ctx.upload(
                    &format!("{name} labels"),
                    &labels[start..end]
                        .iter()
                        .map(|&l| u32::from(l))
                        .collect::<Vec<u32>>(),
                )?,
                row_start: start,
                row_end: end,
            });
            start = end;
        }
        let nonzero = if with_nonzero && chunks.len() == 1 {
            NonZeroBuffers::upload(ctx, label, data)?
        } else {
            None
        };
        Ok(ResidentSplit {
            chunks,
            nonzero,
            len: data.len(),
            width,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn input_width(&self) -> usize {
        self.width
    }

    /// The split's non-zero pixels on the device, if uploaded.
    pub fn nonzero(&self) -> Option<&NonZeroBuffers> {
        self.nonzero.as_ref()
    }

    /// How many device buffers (pairs of pixels and labels) hold the split.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// Which images a gather reads (shaders/gather.wgsl, Params.mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// `indices[row]`: a batch selected by `set_batch`.
    Indices,
    /// A training chunk: word 0 of `indices` is the iteration, then the batches back to back.
    Chunk,
    /// Consecutive images from this one on (an evaluation chunk; `indices` is not read).
    From(usize),
}

kernel_params! {
    /// shaders/gather.wgsl's parameters.
    struct GatherParams as "Params" {
        rows: u32,
        width: u32,
        row_start: u32,
        row_end: u32,
        mode: u32,
        labels_off: u32,
        first: u32,
    }
}

/// X (rows x width f32) and labels (rows u32) of the images named by `indices` (rows u32):
/// one launch per chunk of the split, to be recorded in order.
pub fn gather(
    k: &Pipelines,
    ctx: &Context,
    split: &ResidentSplit,
    rows: usize,
    indices: &wgpu::Buffer,
    x: &wgpu::Buffer,
    batch_labels: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    gather_rows(
        k,
        ctx,
        split,
        rows,
        Rows::Indices,
        indices,
        x,
        Operand::whole(batch_labels),
    )
}

/// `gather` with the rows chosen by `which`, and the labels written from an offset.
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    k: &Pipelines,
    ctx: &Context,
    split: &ResidentSplit,
    rows: usize,
    which: Rows,
    indices: &wgpu::Buffer,
    x: &wgpu::Buffer,
    batch_labels: Operand,
) -> Result<Vec<Dispatch>> {
    let p = k;
    let groups = groups_2d(split.width, WORKGROUP_X, rows, 1);
    let (mode, first) = match which {
        Rows::Indices => (0, 0),
        Rows::Chunk => (1, 0),
        Rows::From(first) => (2, word("first row", first)?),
    };
    split
        .chunks
        .iter()
        .map(|c| {
            let params = GatherParams {
                rows: word("batch rows", rows)?,
                width: word("input width", split.width)?,
                row_start: word("row", c.row_start)?,
                row_end: word("row", c.row_end)?,
                mode,
                labels_off: word("labels offset", batch_labels.offset)?,
                first,
            };
            p.gather.dispatch(
                ctx,
                &params,
                &[
                    indices,
                    &c.pixels,
                    &c.labels,
                    &p.table,
                    x,
                    batch_labels.buffer,
                ],
                groups,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk's pixels never span more bytes than the shader's u32 byte index reaches, however
    /// large the binding: the last pixel's offset fits a u32 (a 6 GiB split of 784-pixel images,
    /// past GPU_TRAIN_MAX_DATA_BYTES' default, on an adapter with 8 GiB bindings, is cut into
    /// chunks instead of wrapping), and the binding limit and `max_rows` still bound it.
    #[test]
    fn a_chunk_stays_within_the_u32_byte_index() {
        let max_index = u64::from(u32::MAX);
        for (width, limit) in [
            (784, 8u64 << 30),
            (784, u64::MAX),
            (1, 1 << 40),
            (3, 1 << 33),
            (4096, (1 << 32) + 4096),
        ] {
            let rows = rows_per_chunk(width, limit, None).unwrap() as u64;
            let bytes = rows * width as u64;
            assert!(
                bytes - 1 <= max_index,
                "{width} x {rows}: byte {}",
                bytes - 1
            );
            assert!(bytes <= limit && rows * 4 <= limit);
            // As many whole images as fit: one more would pass the index or the limit.
            let more = (rows + 1) * width as u64;
            assert!(more - 1 > max_index || more > limit || (rows + 1) * 4 > limit);
        }
        let images = (6u64 << 30) / 784;
        let rows = rows_per_chunk(784, 8 << 30, None).unwrap() as u64;
        assert!(images.div_ceil(rows) >= 2);
        // Within 4 GiB the binding decides, as before.
        assert_eq!(rows_per_chunk(784, 1 << 30, None).unwrap(), (1 << 30) / 784);
        assert_eq!(rows_per_chunk(784, 1 << 30, Some(10)).unwrap(), 10);
        let e = rows_per_chunk(784, 700, None).unwrap_err().to_string();
        assert!(
            e.contains("max_storage_buffer_binding_size (700 bytes)"),
            "{e}"
        );
    }

    /// The bytes go up as they are, read as little-endian u32 words, the last one zero-padded.
    #[test]
    fn bytes_upload_as_little_endian_words() {
        let Some(ctx) = crate::gpu::launch::test_context() else {
            return;
        };
        for (bytes, want) in [
            (
                &[1u8, 2, 3, 4, 5, 6, 7][..],
                &[0x0403_0201u32, 0x0007_0605][..],
            ),
            (&[9, 8, 7, 6][..], &[0x0607_0809][..]),
            (&[255][..], &[255][..]),
        ] {
            let b = ctx.upload_bytes("bytes", bytes).unwrap();
            let got: Vec<u32> = ctx.read(&b, 0, want.len()).unwrap();
            assert_eq!(got, want, "{bytes:?}");
        }
    }
}
