//! Reader for the IDX files MNIST ships in, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
//! dimensions), one big-endian `u32` per dimension, then the items, row-major. MNIST uses two
//! kinds, both of unsigned bytes (type code 0x08):
//!
//! * images, magic `0x00000803`: dimensions `count, rows, cols`;
//! * labels, magic `0x00000801`: dimension `count`.
//!
//! Whether a file is compressed is decided by its first two bytes (the gzip magic `1f 8b`), not
//! by its name, so a renamed or half-extracted download still opens.
//!
//! The reader trusts nothing in the file. In particular the header's sizes are only a claim: a
//! raw file's body must be exactly as long as the header says, checked before any buffer is
//! sized; a gzip stream is decompressed through a bounded reader that keeps at most the claimed
//! number of bytes plus one and grows its buffer only as data actually arrives, so a 100-byte
//! file claiming 2^31 images costs 100 bytes, not gigabytes. Every error is an
//! [`Error::Data`] that names the file, says what is wrong and, where
//! there is one, the fix.
//!
//! Claims are also capped: a body larger than [`max_data_bytes`] (1 GiB by default, raised with
//! the `GPU_TRAIN_MAX_DATA_BYTES` environment variable) is refused before anything is read. Full
//! MNIST's training images are 47 MB and the largest public IDX set (EMNIST ByClass: 697,932
//! images, 0.55 GB) is half the cap; a file claiming 2^31 items (2 GiB even at one byte each)
//! is beyond it, so a small gzip bomb with such a header costs nothing however far it would
//! inflate. Only regular files are read, opened without blocking and checked through the open
//! handle (symbolic links are followed): a FIFO would block the reader and a device such as
//! `/dev/zero` never ends, so both are named for what they are.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};

/// Magic number of an IDX file of unsigned-byte images: 3 dimensions (count, rows, cols).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels: 1 dimension (count).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The default cap on one IDX file's body (see the module docs): 1 GiB.
pub const DEFAULT_MAX_DATA_BYTES: u64 = 1 << 30;

/// The environment variable that raises (or lowers) [`DEFAULT_MAX_DATA_BYTES`].
pub const MAX_DATA_BYTES_ENV: &str = "GPU_TRAIN_MAX_DATA_BYTES";

/// The largest IDX body the readers accept: `GPU_TRAIN_MAX_DATA_BYTES` when set, else
/// [`DEFAULT_MAX_DATA_BYTES`]. A value that is not a whole number of bytes is a config error.
pub fn max_data_bytes() -> Result<u64> {
    match std::env::var(MAX_DATA_BYTES_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            Error::config(
                MAX_DATA_BYTES_ENV,
                format!(
                    "{v:?} is not a number of bytes; give a whole number such as {}",
                    DEFAULT_MAX_DATA_BYTES
                ),
            )
        }),
        _ => Ok(DEFAULT_MAX_DATA_BYTES),
    }
}

/// Opens `path` for reading and checks, through the open handle, that it is a regular file
/// (symbolic links are followed); returns it and its length. On Unix the open does not block,
/// so a FIFO put at the path cannot hang the program, and checking the handle rather than the
/// path leaves no gap for the path to be swapped in between. The error text says what the path
/// is instead: missing, a dangling link, a directory, a FIFO, a device or a socket. Every file
/// the program reads goes through here (or [`read_regular`]).
pub fn open_regular(path: &Path) -> std::result::Result<(std::fs::File, u64), String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match std::fs::symlink_metadata(path) {
                Ok(_) => "is a symbolic link whose target does not exist".to_string(),
                Err(_) => "file not found".to_string(),
            });
        }
        Err(e) => return Err(format!("cannot open the file: {}", io_text(&e))),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the file: {}", io_text(&e)))?;
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok((file, meta.len()));
    }
    if kind.is_dir() {
        return Err("is a directory, not a file".to_string());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Err("is a FIFO (named pipe), not a regular file; give the file itself".into());
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Err("is a device file, not a regular file; give the file itself".into());
        }
        if kind.is_socket() {
            return Err("is a socket, not a regular file; give the file itself".into());
        }
    }
    Err("is not a regular file; give the file itself".to_string())
}

/// Why [`read_regular`] read nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Not a regular file, or unreadable; the text says which (see [`open_regular`]).
    Unreadable(String),
    /// Longer than the limit given: the bytes the file has (or had read when it passed the
    /// limit while growing).
    TooLarge(u64),
}

/// The whole of the regular file `path` ([`open_regular`]), refused unless it holds at most
/// `limit` bytes: the size is checked before anything is read, and the read itself stops one
/// byte past the limit, so a file that grows meanwhile costs no more.
pub fn read_regular(path: &Path, limit: u64) -> std::result::Result<Vec<u8>, ReadError> {
    let (file, len) = open_regular(path).map_err(ReadError::Unreadable)?;
    if len > limit {
        return Err(ReadError::TooLarge(len));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len as usize)
        .map_err(|_| ReadError::Unreadable(format!("not enough memory to read its {len} bytes")))?;
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Unreadable(format!("cannot read the file: {}", io_text(&e))))?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// An I/O error's text without the "(os error N)" detail that repeats what the text says.
pub fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Images read from an IDX file: `count` images of `rows x cols` bytes, row-major, one image
/// after the other.
#[derive(Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub pixels: Vec<u8>,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
}

impl std::fmt::Debug for IdxImages {
    // Summarised: the derived form would print every pixel.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdxImages")
            .field("count", &self.count)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("pixels", &format_args!("[{} bytes]", self.pixels.len()))
            .finish()
    }
}

/// Reads an IDX images file (magic `0x00000803`), raw or gzip-compressed.
pub fn read_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    let (dims, pixels) = read_file(path, Kind::Images)?;
    Ok(images(dims, pixels))
}

/// Reads an IDX labels file (magic `0x00000801`), raw or gzip-compressed.
///
/// The labels are not range-checked here: how many classes there are is the data set's
/// business (see [`Dataset::new`](super::Dataset::new)).
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let (_, labels) = read_file(path, Kind::Labels)?;
    Ok(labels)
}

/// Like [`read_images`], for a file already in memory; `name` is what errors call it.
pub fn images_from_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<IdxImages> {
    let (dims, pixels) = decode(name.as_ref(), bytes, bytes.len() as u64, Kind::Images)?;
    Ok(images(dims, pixels))
}

/// Like [`read_labels`], for a file already in memory; `name` is what errors call it.
pub fn labels_from_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<Vec<u8>> {
    let (_, labels) = decode(name.as_ref(), bytes, bytes.len() as u64, Kind::Labels)?;
    Ok(labels)
}

fn images(dims: Vec<usize>, pixels: Vec<u8>) -> IdxImages {
    IdxImages {
        pixels,
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
    }
}

/// Which of the two MNIST IDX kinds a file is expected to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGES_MAGIC,
            Kind::Labels => LABELS_MAGIC,
        }
    }

    fn dims(self) -> usize {
        match self {
            Kind::Images => 3,
            Kind::Labels => 1,
        }
    }

    /// Header length in bytes: the magic plus one `u32` per dimension.
    fn header_len(self) -> usize {
        4 + 4 * self.dims()
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Images => "IDX images",
            Kind::Labels => "IDX labels",
        }
    }

    fn dim_names(self) -> &'static str {
        match self {
            Kind::Images => "count, rows, cols",
            Kind::Labels => "count",
        }
    }

    fn other(self) -> Kind {
        match self {
            Kind::Images => Kind::Labels,
            Kind::Labels => Kind::Images,
        }
    }
}

/// Reads one IDX file: its type is checked before it is opened, a raw body's length is
/// compared with the file's before it is read, and a gzip stream is decompressed as it is read.
fn read_file(path: &Path, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    let (file, len) = open_regular(path).map_err(|what| Error::data(path, what))?;
    decode(path, BufReader::new(file), len, kind)
}

/// Decodes one IDX file of the given kind from `source`, which holds `len` bytes; returns its
/// dimensions (as many as the kind has) and its body.
fn decode(
    file: &Path,
    mut source: impl Read,
    len: u64,
    kind: Kind,
) -> Result<(Vec<usize>, Vec<u8>)> {
    if len == 0 {
        return Err(Error::data(
            file,
            format!(
                "file is empty (0 bytes), expected an {} file; download it again",
                kind.name()
            ),
        ));
    }
    let header_len = kind.header_len();
    let mut head = [0u8; 16];
    let got = read_up_to(&mut source, &mut head[..header_len])
        .map_err(|e| Error::data(file, format!("cannot read the file: {}", io_text(&e))))?;
    let head = &head[..got];
    if head.starts_with(&GZIP_MAGIC) {
        decode_gzip(file, head.chain(source), kind)
    } else {
        decode_raw(file, head, source, len, kind)
    }
}

/// An uncompressed file: the header's claim is checked against the file's real length before
/// the body is read.
fn decode_raw(
    file: &Path,
    head: &[u8],
    source: impl Read,
    len: u64,
    kind: Kind,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let header_len = kind.header_len();
    let dims = parse_header(file, kind, head)?;
    let expected = body_len(file, kind, &dims)?;
    let found = len.saturating_sub(header_len as u64);
    check_body_len(file, kind, &dims, expected, found)?;
    check_limit(file, kind, &dims, expected)?;
    // The file is as long as claimed and within the limit, so the claim may size the buffer.
    let mut body = Vec::new();
    body.try_reserve_exact(expected as usize).map_err(|_| {
        Error::data(
            file,
            format!("not enough memory for its {expected}-byte body"),
        )
    })?;
    source
        .take(expected)
        .read_to_end(&mut body)
        .map_err(|e| Error::data(file, format!("cannot read the file: {}", io_text(&e))))?;
    // The file changed while it was read.
    check_body_len(file, kind, &dims, expected, body.len() as u64)?;
    Ok((dims, body))
}

/// A gzip file: the decompressed length is unknown until it has been decompressed, so the body
/// is read through a bounded reader (see the module docs).
fn decode_gzip(file: &Path, compressed: impl Read, kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut stream = MultiGzDecoder::new(compressed);
    let header_len = kind.header_len();
    let mut header = [0u8; 16];
    let got =
        read_up_to(&mut stream, &mut header[..header_len]).map_err(|e| gzip_error(file, &e))?;
    let dims = parse_header(file, kind, &header[..got])?;
    let expected = body_len(file, kind, &dims)?;
    check_limit(file, kind, &dims, expected)?;
    // One byte more than claimed, so that a stream that is too long is noticed.
    let body = read_bounded(file, &mut stream, expected.saturating_add(1))?;
    check_body_len(file, kind, &dims, expected, body.len() as u64)?;
    Ok((dims, body))
}

/// Refuses a claimed body beyond [`max_data_bytes`], before anything is read or allocated.
fn check_limit(file: &Path, kind: Kind, dims: &[usize], expected: u64) -> Result<()> {
    let limit = max_data_bytes()?;
    if expected > limit {
        return Err(Error::data(
            file,
            format!(
                "header claims {} ({expected} bytes), beyond the {limit}-byte limit on data \
                 files; if the file is genuine, raise the limit with \
                 {MAX_DATA_BYTES_ENV}=<bytes>",
                items(kind, dims)
            ),
        ));
    }
    Ok(())
}

fn items(kind: Kind, dims: &[usize]) -> String {
    match kind {
        Kind::Images => format!("{} images of {}x{}", dims[0], dims[1], dims[2]),
        Kind::Labels => format!("{} labels", dims[0]),
    }
}

/// Parses and validates the header; `header` is the file's first bytes, at most the header's
/// length (fewer means the file is too short).
fn parse_header(file: &Path, kind: Kind, header: &[u8]) -> Result<Vec<usize>> {
    let header_len = kind.header_len();
    if header.len() < 4 {
        return Err(Error::data(
            file,
            format!(
                "truncated: only {} bytes, too short for an {} header ({header_len} bytes); \
                 download the file again",
                header.len(),
                kind.name()
            ),
        ));
    }
    let magic = be_u32(&header[..4]);
    if magic != kind.magic() {
        return Err(Error::data(file, magic_mismatch(kind, magic, header)));
    }
    if header.len() < header_len {
        return Err(Error::data(
            file,
            format!(
                "truncated: the file ends inside its {} header ({} of {header_len} bytes); \
                 download the file again",
                kind.name(),
                header.len()
            ),
        ));
    }
    let dims: Vec<usize> = header[4..header_len]
        .chunks_exact(4)
        // u32 -> usize only fails on 16-bit targets; saturate so the size check rejects it.
        .map(|d| usize::try_from(be_u32(d)).unwrap_or(usize::MAX))
        .collect();
    if kind == Kind::Images && (dims[1] == 0 || dims[2] == 0) {
        return Err(Error::data(
            file,
            format!(
                "header says the images are {}x{} pixels; an image needs at least one row and \
                 one column, so the file is corrupt",
                dims[1], dims[2]
            ),
        ));
    }
    Ok(dims)
}

/// The message for a magic number that is not the expected one, with a guess at the cause.
fn magic_mismatch(kind: Kind, found: u32, header: &[u8]) -> String {
    let expected = format!(
        "expected magic 0x{:08x} ({}), found 0x{found:08x}",
        kind.magic(),
        kind.name()
    );
    let [zero0, zero1, type_code, dims] = found.to_be_bytes();
    if found == kind.other().magic() {
        let hint = match kind {
            Kind::Images => "is this a label file? Images are in *-images-idx3-ubyte",
            Kind::Labels => "is this an image file? Labels are in *-labels-idx1-ubyte",
        };
        format!("{expected}: {hint}")
    } else if zero0 == 0 && zero1 == 0 && type_code == 0x08 {
        format!(
            "{expected}: an IDX file of unsigned bytes with {dims} dimensions, but {} have {} \
             ({}); this is not an MNIST {} file",
            kind.name(),
            kind.dims(),
            kind.dim_names(),
            match kind {
                Kind::Images => "images",
                Kind::Labels => "labels",
            }
        )
    } else if zero0 == 0 && zero1 == 0 && matches!(type_code, 0x09 | 0x0b | 0x0c | 0x0d | 0x0e) {
        format!(
            "{expected}: IDX data type 0x{type_code:02x} is not supported; MNIST stores unsigned \
             bytes (type 0x08)"
        )
    } else if header.first() == Some(&b'<') {
        format!("{expected}: the file looks like HTML or XML, not IDX (a failed download?); download it again")
    } else {
        format!("{expected}: not an IDX file, or a corrupt one; download it again")
    }
}

/// The body length the header claims, in bytes, computed without overflow.
fn body_len(file: &Path, kind: Kind, dims: &[usize]) -> Result<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
        .ok_or_else(|| {
            Error::data(
                file,
                format!(
                    "header claims an impossible size ({} = {dims:?}); the file is corrupt",
                    kind.dim_names()
                ),
            )
        })
}

/// Compares the body's real length with the header's claim.
fn check_body_len(
    file: &Path,
    kind: Kind,
    dims: &[usize],
    expected: u64,
    found: u64,
) -> Result<()> {
    let items = items(kind, dims);
    let header_len = kind.header_len();
    if found < expected {
        return Err(Error::data(
            file,
            format!(
                "truncated: the header promises {items} ({expected} bytes after the \
                 {header_len}-byte header) but only {found} bytes follow; the file is \
                 incomplete or corrupt, download it again"
            ),
        ));
    }
    if found > expected {
        return Err(Error::data(
            file,
            format!(
                "too long: the header promises {items} ({expected} bytes after the \
                 {header_len}-byte header) but more bytes follow; the file is corrupt or its \
                 header is wrong"
            ),
        ));
    }
    // The body is held in memory as one buffer, so it must also fit this platform's usize.
    if usize::try_from(expected).is_err() {
        return Err(Error::data(
            file,
            format!("{items} are too large for this platform's memory"),
        ));
    }
    Ok(())
}

/// Fills `buf` from `stream` as far as the stream goes; returns how many bytes were read.
fn read_up_to(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads at most `limit` bytes of `stream`. The buffer grows with the data that actually
/// arrives, never with `limit`, which comes from an untrusted header.
fn read_bounded(file: &Path, stream: &mut impl Read, limit: u64) -> Result<Vec<u8>> {
    const CHUNK: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut remaining = limit;
    while remaining > 0 {
        let want = usize::try_from(remaining).map_or(CHUNK, |r| r.min(CHUNK));
        match stream.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => {
                out.try_reserve(n).map_err(|_| {
                    Error::data(
                        file,
                        format!("out of memory after decompressing {} bytes", out.len()),
                    )
                })?;
                out.extend_from_slice(&chunk[..n]);
                remaining -= n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(gzip_error(file, &e)),
        }
    }
    Ok(out)
}

/// An error from the gzip decoder: the compressed data is damaged or cut short.
fn gzip_error(file: &Path, e: &std::io::Error) -> Error {
    let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
        format!("truncated gzip stream ({e}): the file was cut short; download it again")
    } else {
        format!("corrupt gzip data ({e}): the file is damaged; download it again")
    };
    Error::data(PathBuf::from(file), what)
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn images_file(count: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [IMAGES_MAGIC, count, rows, cols] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes.extend_from_slice(body);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(e @ Error::Data { .. }) => e.to_string(),
            other => panic!("expected a Data error, got {other:?}"),
        }
    }

    #[test]
    fn raw_and_gzip_images_decode_the_same() {
        let body: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let raw = images_file(2, 3, 4, &body);
        for bytes in [raw.clone(), gzip(&raw)] {
            let images = images_from_bytes("x", &bytes).unwrap();
            assert_eq!((images.count, images.rows, images.cols), (2, 3, 4));
            assert_eq!(images.pixels, body);
        }
    }

    #[test]
    fn labels_decode() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        raw.extend_from_slice(&3u32.to_be_bytes());
        raw.extend_from_slice(&[7, 0, 9]);
        assert_eq!(labels_from_bytes("l", &raw).unwrap(), vec![7, 0, 9]);
        assert_eq!(labels_from_bytes("l", &gzip(&raw)).unwrap(), vec![7, 0, 9]);
    }

    #[test]
    fn header_claiming_more_than_the_file_holds_is_rejected_raw_and_gzip() {
        let raw = images_file(1000, 28, 28, &[0u8; 84]);
        for bytes in [raw.clone(), gzip(&raw)] {
            let msg = message(images_from_bytes("big", &bytes));
            assert!(msg.contains("big") && msg.contains("truncated"), "{msg}");
        }
        // A gzip stream's length is unknown up front, so a claim beyond the data-size limit is
        // refused before a byte of its body is inflated.
        let raw = images_file(1 << 31, 28, 28, &[0u8; 84]);
        let msg = message(images_from_bytes("huge", &gzip(&raw)));
        assert!(
            msg.contains("huge") && msg.contains("limit") && msg.contains(MAX_DATA_BYTES_ENV),
            "{msg}"
        );
    }

    #[test]
    fn extra_bytes_are_rejected() {
        let raw = images_file(1, 2, 2, &[0u8; 5]);
        for bytes in [raw.clone(), gzip(&raw)] {
            let msg = message(images_from_bytes("long", &bytes));
            assert!(msg.contains("too long"), "{msg}");
        }
    }

    #[test]
    fn wrong_kind_is_named() {
        let mut labels = Vec::new();
        labels.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        labels.extend_from_slice(&0u32.to_be_bytes());
        let msg = message(images_from_bytes("l", &labels));
        assert!(
            msg.contains("0x00000803") && msg.contains("label file"),
            "{msg}"
        );
        let msg = message(labels_from_bytes("i", &images_file(0, 1, 1, &[])));
        assert!(msg.contains("image file"), "{msg}");
    }

    #[test]
    fn short_and_odd_inputs_never_panic() {
        let raw = images_file(1, 2, 2, &[1, 2, 3, 4]);
        let gz = gzip(&raw);
        for source in [&raw, &gz] {
            for cut in 0..source.len() {
                let _ = images_from_bytes("cut", &source[..cut]);
                let _ = labels_from_bytes("cut", &source[..cut]);
            }
        }
        assert!(images_from_bytes("zero", &images_file(1, 0, 5, &[])).is_err());
        let overflow = images_file(u32::MAX, u32::MAX, u32::MAX, &[]);
        assert!(message(images_from_bytes("o", &overflow)).contains("impossible"));
        assert!(message(images_from_bytes("h", b"<html>")).contains("HTML"));
        assert!(message(images_from_bytes("g", &[0x1f, 0x8b])).contains("gzip"));
    }
}
