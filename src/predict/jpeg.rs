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

/// Checks `bytes` (a whole JPEG file) as the module docs say and returns it with the padding
/// inserted, ready for the decoder; the error says what is wrong, for a message that names the
/// file.
pub(super) fn check(bytes: &[u8]) -> Result<Vec<u8>, String> {
    const TRUNCATED: &str = "the file is truncated";
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("does not start with a JPEG start-of-image marker".into());
    }
    let mut out = Vec::with_capacity(bytes.len() + 256);
    out.extend_from_slice(&bytes[..2]);
    let mut at = 2;
    let mut frame: Option<Frame> = None;
    // Per component id: which of the 64 coefficients reached full precision (bit k).
    let mut covered: Vec<(u8, u64)> = Vec::new();
    loop {
        // Anything up to the next marker is copied as it is (the decoder skips it too).
        let Some(ff) = bytes[at..].iter().position(|&b| b == 0xFF) else {
            return Err(format!("ends before its end-of-image marker: {TRUNCATED}"));
        };
        let mut m = at + ff;
        while m < bytes.len() && bytes[m] == 0xFF {
            m += 1;
        }
        if m >= bytes.len() {
            return Err(format!("ends inside a marker: {TRUNCATED}"));
        }
        let marker = bytes[m];
        let body = m + 1;
        out.extend_from_slice(&bytes[at..body]);
        match marker {
            0xD9 => break,
            0x01 | 0xD0..=0xD7 | 0x00 => {
                at = body;
                continue;
            }
            _ => {}
        }
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
        let seg = &bytes[body + 2..body + len];
        out.extend_from_slice(&bytes[body..body + len]);
        at = body + len;
        match marker {
            0xC0..=0xC2 => {
                if seg.len() < 6 || seg.len() < 6 + 3 * seg[5] as usize {
                    return Err("its frame header is cut short: the file is corrupt".into());
                }
                frame = Some(Frame {
                    progressive: marker == 0xC2,
                    height: be16(seg, 1) as u64,
                    width: be16(seg, 3) as u64,
                    components: (0..seg[5] as usize)
                        .map(|i| (seg[6 + 3 * i], seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 15))
                        .collect(),
                });
            }
            0xC4 => {
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
            }
            0xDA => {
                let Some(f) = &frame else {
                    return Err("has a scan before its frame header: the file is corrupt".into());
                };
                let ns = *seg.first().unwrap_or(&0) as usize;
                if ns == 0 || seg.len() < 1 + 2 * ns + 3 {
                    return Err("a scan header is cut short: the file is corrupt".into());
                }
                let ids: Vec<u8> = (0..ns).map(|i| seg[1 + 2 * i]).collect();
                let (ss, se, ah, al) = (
                    seg[1 + 2 * ns],
                    seg[2 + 2 * ns],
                    seg[3 + 2 * ns] >> 4,
                    seg[3 + 2 * ns] & 15,
                );
                // The entropy-coded data runs to the first marker that is not a restart.
                let start = at;
                let mut end = at;
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
                        Some(_) => break,
                    }
                }
                let blocks: u64 = ids.iter().map(|&id| f.blocks(id)).sum();
                // Baseline: a DC code and an end-of-block code of at least a bit each; a
                // progressive DC scan: one code a block; other progressive scans may be empty.
                let bits_needed = match (f.progressive, ss, ah) {
                    (false, _, _) => 2 * blocks,
                    (true, 0, 0) => blocks,
                    _ => 0,
                };
                let have = 8 * (end - start) as u64;
                if have < bits_needed {
                    return Err(format!(
                        "its header says {}x{} pixels, but a scan holds {} bytes where those \
                         pixels need at least {}: the file is truncated or corrupt",
                        f.width,
                        f.height,
                        end - start,
                        bits_needed.div_ceil(8)
                    ));
                }
                if al == 0 {
                    let (lo, hi) = if f.progressive {
                        (ss.min(63), se.min(63))
                    } else {
                        (0, 63)
                    };
                    let mask = (lo..=hi).fold(0u64, |m, k| m | 1 << k);
                    for id in ids {
                        match covered.iter_mut().find(|c| c.0 == id) {
                            Some(c) => c.1 |= mask,
                            None => covered.push((id, mask)),
                        }
                    }
                }
                out.extend_from_slice(&bytes[start..end]);
                out.extend_from_slice(&PAD);
                at = end;
            }
            _ => {}
        }
    }
    let Some(f) = frame else {
        return Err("has no frame header (SOF): the file is corrupt".into());
    };
    let complete = f.components.iter().all(|&(id, _, _)| {
        covered
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
    Ok(out)
}
