//! A JPEG's structure checked before it is decoded, so that a truncated or short file is an
//! error rather than a picture with its missing part made up.
//!
//! jpeg-decoder, on meeting a marker inside a scan (a file cut short and ended with an
//! end-of-image marker, or a header claiming more blocks than the scan holds), decodes the rest
//! of the scan from zero bits, without a word. Two checks catch that:
//!
//! * Before each marker that ends a scan, [`check`] inserts 16 bytes of one-bits (stuffed
//!   `FF 00` pairs). A complete scan never reads them (its last byte is already padded with
//!   one-bits, as the standard asks). A short one decodes into them, and a run of one-bits is
//!   no Huffman code (the standard reserves the all-ones code; tables that use it are refused
//!   here), so the decoder fails instead of inventing blocks.
//! * From the headers alone: each scan must hold at least the bits its blocks need (a baseline
//!   block at least two, its DC and end-of-block codes), which refuses a small file claiming
//!   4096x4096 before anything is allocated for it; and the scans together must cover every
//!   component (progressive: every coefficient to full precision), or the file lost its last
//!   scans.
//!
//! What this cannot see: a restart interval cut short in the middle of a scan (the padding
//! would break the decoder's search for the restart marker, so none is inserted there), and
//! a progressive DC refinement scan cut short (raw bits, no Huffman codes).

/// Stuffed one-bits inserted before each marker that ends a scan (see the module docs).
const PAD: [u8; 32] = {
    let mut pad = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        pad[i] = 0xFF;
        i += 2;
    }
    pad
};

struct Frame {
    progressive: bool,
    width: u64,
    height: u64,
    /// (id, horizontal sampling, vertical sampling)
    components: Vec<(u8, u8, u8)>,
}

impl Frame {
    /// Blocks of 8x8 in component `id`'s plane.
    fn blocks(&self, id: u8) -> u64 {
        let hmax = self
            .components
            .iter()
            .map(|c| c.1)
            .max()
            .unwrap_or(1)
            .max(1) as u64;
        let vmax = self
            .components
            .iter()
            .map(|c| c.2)
            .max()
            .unwrap_or(1)
            .max(1) as u64;
        let Some(&(_, h, v)) = self.components.iter().find(|c| c.0 == id) else {
            return 0;
        };
        let w = (self.width * h as u64).div_ceil(hmax);
        let hh = (self.height * v as u64).div_ceil(vmax);
        w.div_ceil(8) * hh.div_ceil(8)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

const TRUNCATED: &str = "the file is truncated";

/// Checks `bytes` (a whole JPEG file) as the module docs say and returns it with the padding
/// inserted, ready for the decoder; the error says what is wrong, for a message that names the
/// file.
pub(super) fn check(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("does not start with a JPEG start-of-image marker".into());
    }
    let mut walk = Walk {
        bytes,
        out: Vec::with_capacity(bytes.len() + 256),
        at: 2,
        frame: None,
        covered: Vec::new(),
    };
    walk.out.extend_from_slice(&bytes[..2]);
    loop {
        let (marker, body) = walk.next_marker()?;
        match marker {
            0xD9 => break,
            0x01 | 0xD0..=0xD7 | 0x00 => {
                walk.at = body;
                continue;
            }
            _ => {}
        }
        let seg = walk.segment(marker, body)?;
        match marker {
            0xC0..=0xC2 => walk.frame = Some(frame_header(marker, seg)?),
            0xC4 => check_huffman_tables(seg)?,
            0xDA => walk.scan(seg)?,
            _ => {}
        }
    }
    walk.finish()
}

/// The file walked marker by marker, copied to `out` with the padding inserted.
struct Walk<'a> {
    bytes: &'a [u8],
    out: Vec<u8>,
    /// Where in `bytes` the walk is: everything before it is in `out`.
    at: usize,
    frame: Option<Frame>,
    /// Per component id: which of the 64 coefficients reached full precision (bit k).
    covered: Vec<(u8, u64)>,
}

impl<'a> Walk<'a> {
    /// The next marker and where its body starts, everything up to there copied.
    fn next_marker(&mut self) -> Result<(u8, usize), String> {
        let bytes = self.bytes;
        // Anything up to the next marker is copied as it is (the decoder skips it too).
        let Some(ff) = bytes[self.at..].iter().position(|&b| b == 0xFF) else {
            return Err(format!("ends before its end-of-image marker: {TRUNCATED}"));
        };
        let mut m = self.at + ff;
        while m < bytes.len() && bytes[m] == 0xFF {
            m += 1;
        }
        if m >= bytes.len() {
            return Err(format!("ends inside a marker: {TRUNCATED}"));
        }
        let body = m + 1;
        self.out.extend_from_slice(&bytes[self.at..body]);
        Ok((bytes[m], body))
    }

    /// The segment of `marker` whose body (its length first) starts at `body`, without the
    /// length; copied, and the walk moved past it.
    fn segment(&mut self, marker: u8, body: usize) -> Result<&'a [u8], String> {
        let bytes = self.bytes;
        if body + 2 > bytes.len() {
            return Err(format!("ends inside a segment header: {TRUNCATED}"));
        }
        let len = be16(bytes, body) as usize;
        if len < 2 || body + len > bytes.len() {
            return Err(format!(
                "a segment (marker {marker:02X}) claims {len} bytes where the file has {}: \
                 {TRUNCATED} or corrupt",
                bytes.len() - body
            ));
        }
        self.out.extend_from_slice(&bytes[body..body + len]);
        self.at = body + len;
        Ok(&bytes[body + 2..body + len])
    }

    /// A scan: its header `seg`, then its entropy-coded data, checked to hold what its blocks
    /// need, copied with the padding after it.
    fn scan(&mut self, seg: &[u8]) -> Result<(), String> {
        let Some(f) = &self.frame else {
            return Err("has a scan before its frame header: the file is corrupt".into());
        };
        let scan = ScanHeader::parse(seg)?;
        let start = self.at;
        let end = entropy_coded_end(self.bytes, start)?;
        check_scan_length(f, &scan, end - start)?;
        if scan.al == 0 {
            let mask = scan.coefficients(f.progressive);
            for &id in &scan.ids {
                match self.covered.iter_mut().find(|c| c.0 == id) {
                    Some(c) => c.1 |= mask,
                    None => self.covered.push((id, mask)),
                }
            }
        }
        self.out.extend_from_slice(&self.bytes[start..end]);
        self.out.extend_from_slice(&PAD);
        self.at = end;
        Ok(())
    }

    /// The padded file, once the scans are known to cover every component of the frame.
    fn finish(self) -> Result<Vec<u8>, String> {
        let Some(f) = self.frame else {
            return Err("has no frame header (SOF): the file is corrupt".into());
        };
        let complete = f.components.iter().all(|&(id, _, _)| {
            self.covered
                .iter()
                .any(|&(cid, mask)| cid == id && mask == u64::MAX)
        });
        if !complete {
            return Err(format!(
                "its scans stop before the picture is complete (some of its {} scans are \
                 missing): {TRUNCATED}",
                if f.progressive {
                    "progressive"
                } else {
                    "sequential"
                }
            ));
        }
        Ok(self.out)
    }
}

/// A start-of-frame segment (baseline, extended or progressive) of `marker`.
fn frame_header(marker: u8, seg: &[u8]) -> Result<Frame, String> {
    if seg.len() < 6 || seg.len() < 6 + 3 * seg[5] as usize {
        return Err("its frame header is cut short: the file is corrupt".into());
    }
    Ok(Frame {
        progressive: marker == 0xC2,
        height: be16(seg, 1) as u64,
        width: be16(seg, 3) as u64,
        components: (0..seg[5] as usize)
            .map(|i| (seg[6 + 3 * i], seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 15))
            .collect(),
    })
}

/// The Huffman tables of a DHT segment, each refused when it uses the all-ones code.
fn check_huffman_tables(seg: &[u8]) -> Result<(), String> {
    let mut t = 0;
    while t < seg.len() {
        if t + 17 > seg.len() {
            return Err("a Huffman table is cut short: the file is corrupt".into());
        }
        let counts = &seg[t + 1..t + 17];
        // Kraft's sum in units of 2^-16; all 2^16 would use the all-ones code.
        let space: u64 = counts
            .iter()
            .enumerate()
            .map(|(l, &n)| (n as u64) << (15 - l))
            .sum();
        if space >= 1 << 16 {
            return Err("a Huffman table uses the all-ones code the JPEG standard \
                        reserves: the file is corrupt"
                .into());
        }
        t += 17 + counts.iter().map(|&n| n as usize).sum::<usize>();
    }
    Ok(())
}

/// What a start-of-scan segment says: the components and, for progressive scans, the
/// spectral band (`ss..=se`) and successive approximation (`ah`, `al`).
struct ScanHeader {
    ids: Vec<u8>,
    ss: u8,
    se: u8,
    ah: u8,
    al: u8,
}

impl ScanHeader {
    fn parse(seg: &[u8]) -> Result<ScanHeader, String> {
        let ns = *seg.first().unwrap_or(&0) as usize;
        if ns == 0 || seg.len() < 1 + 2 * ns + 3 {
            return Err("a scan header is cut short: the file is corrupt".into());
        }
        Ok(ScanHeader {
            ids: (0..ns).map(|i| seg[1 + 2 * i]).collect(),
            ss: seg[1 + 2 * ns],
            se: seg[2 + 2 * ns],
            ah: seg[3 + 2 * ns] >> 4,
            al: seg[3 + 2 * ns] & 15,
        })
    }

    /// The coefficients (bit k for coefficient k) this scan brings to full precision, when
    /// its `al` is 0: all 64 in a sequential frame.
    fn coefficients(&self, progressive: bool) -> u64 {
        let (lo, hi) = if progressive {
            (self.ss.min(63), self.se.min(63))
        } else {
            (0, 63)
        };
        (lo..=hi).fold(0u64, |m, k| m | 1 << k)
    }
}

/// Where the entropy-coded data starting at `start` ends: at the first marker that is not a
/// restart.
fn entropy_coded_end(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut end = start;
    loop {
        let Some(ff) = bytes[end..].iter().position(|&b| b == 0xFF) else {
            return Err(format!(
                "ends inside a scan, with no end-of-image marker: {TRUNCATED}"
            ));
        };
        end += ff;
        match bytes.get(end + 1) {
            None => return Err(format!("ends inside a scan: {TRUNCATED}")),
            Some(0x00 | 0xD0..=0xD7) => end += 2,
            Some(0xFF) => end += 1,
            Some(_) => return Ok(end),
        }
    }
}

/// Refuses a scan of `len` bytes too short for the blocks its components have in frame `f`.
fn check_scan_length(f: &Frame, scan: &ScanHeader, len: usize) -> Result<(), String> {
    let blocks: u64 = scan.ids.iter().map(|&id| f.blocks(id)).sum();
    // Baseline: a DC code and an end-of-block code of at least a bit each; a progressive DC
    // scan: one code a block; other progressive scans may be empty.
    let bits_needed = match (f.progressive, scan.ss, scan.ah) {
        (false, _, _) => 2 * blocks,
        (true, 0, 0) => blocks,
        _ => 0,
    };
    let have = 8 * len as u64;
    if have < bits_needed {
        return Err(format!(
            "its header says {}x{} pixels, but a scan holds {} bytes where those pixels need \
             at least {}: the file is truncated or corrupt",
            f.width,
            f.height,
            len,
            bits_needed.div_ceil(8)
        ));
    }
    Ok(())
}
