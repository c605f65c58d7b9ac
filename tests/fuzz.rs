//! Fuzzing the readers of untrusted files: valid IDX files (raw and gzip) and checkpoints are
//! mutated (bit flips, truncations, extensions, header fields set to 0, 1, the maximum and
//! random values, metadata numbers out of range) and the real readers run on each, from memory
//! and from a file. Every case must end in Ok or in an error that names the file, with no panic
//! (proptest reports one as a failure) and no allocation beyond [`PEAK_BOUND`], measured by the
//! counting allocator below (the largest number of bytes held at once during the case, above
//! what was held before it).

mod common;

use gpu_train::checkpoint::{self, Checkpoint, StoredPrecision};
use gpu_train::data::{idx, Sampler, SamplerKind, SamplerState};
use gpu_train::model::{MlpSpec, Params};
use gpu_train::train::TrainConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The most a reader may hold at once on any of these inputs, all under 4 KiB valid (the
/// readers' fixed buffers: a 64 KiB inflate chunk, the gzip window, the file's own bytes).
const PEAK_BOUND: usize = 64 << 20;

/// Cases per IDX and checkpoint fuzz test (the picture and classes.txt tests have their own).
const CASES: u32 = 10_000;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time, so that the peak belongs to the case being measured.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result and the most bytes held at once above the level before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpu-train-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `bytes` to a new file `dir/<n>-name`. A new name each time: rewriting one file in place
/// makes some file systems flush it on every close (ext4's replace-by-truncate heuristic).
fn fresh_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = dir.join(format!("{}-{name}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for w in [idx::IMAGES_MAGIC, count, rows, cols] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    b.extend((0..count * rows * cols).map(|i| (i * 37) as u8));
    b
}

fn idx_labels(count: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for w in [idx::LABELS_MAGIC, count] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    b.extend((0..count).map(|i| (i % 10) as u8));
    b
}

/// A change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit (position taken modulo the length).
    Flip(usize, u8),
    /// Keep only the first bytes (modulo the length + 1).
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Set the big-endian u32 header word `.0` (IDX: 0 magic, 1..=3 dimensions).
    Word(usize, u32),
}

/// 0, 1, the maximum, powers of two around the limits, or anything.
fn edge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(28),
        Just(u32::MAX),
        Just(1 << 31),
        Just(1 << 16),
        any::<u32>(),
    ]
}

fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 32),
        Just(1 << 62),
        0u64..100_000,
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..200).prop_map(Mutation::Extend),
        3 => (0usize..4, edge_u32()).prop_map(|(w, v)| Mutation::Word(w, v)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(at, bit) if !bytes.is_empty() => {
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        Mutation::Flip(..) => {}
        Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Word(w, v) => {
            let at = 4 * w;
            if bytes.len() >= at + 4 {
                bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
}

#[track_caller]
fn named(result: Result<(), String>, name: &str) -> Result<(), TestCaseError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.contains(name) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!(
            "error does not name {name}: {e}"
        ))),
    }
}

/// A fixed seed, so that CI is reproducible; PROPTEST_RNG_SEED=<n> explores other cases.
fn runner() -> TestRunner {
    let config = Config::default();
    let rng_seed = match config.rng_seed {
        RngSeed::Random => RngSeed::Fixed(0x6770_752d_7472_6169),
        fixed => fixed,
    };
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        rng_seed,
        ..config
    })
}

#[test]
fn the_counter_sees_a_large_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (v, peak) = peak_of(|| vec![1u8; PEAK_BOUND + 1]);
    assert_eq!(v.len(), PEAK_BOUND + 1);
    assert!(peak > PEAK_BOUND, "{peak}");
}

#[test]
fn mutated_idx_files_give_ok_or_a_named_error_within_the_memory_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("idx");
    let valid = [idx_images(6, 5, 4), idx_labels(9)];
    let strategy = (
        0usize..2,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(mutation(), 1..4),
    );
    let worst = std::cell::Cell::new(0usize);
    let oks = std::cell::Cell::new(0usize);
    runner()
        .run(&strategy, |(which, gz, before_gzip, mutations)| {
            // Mutations before compressing reach the header through a valid gzip stream;
            // after, they damage the stream itself.
            let mut bytes = valid[which].clone();
            if gz && before_gzip {
                mutations.iter().for_each(|m| apply(&mut bytes, m));
                bytes = gzip(&bytes);
            } else {
                if gz {
                    bytes = gzip(&bytes);
                }
                mutations.iter().for_each(|m| apply(&mut bytes, m));
            }
            let name = if which == 0 {
                "fuzz-images"
            } else {
                "fuzz-labels"
            };
            let path = fresh_file(&dir, name, &bytes);
            let (results, peak) = peak_of(|| {
                let text = |e: gpu_train::Error| e.to_string();
                if which == 0 {
                    [
                        idx::images_from_bytes(name, &bytes)
                            .map(|_| ())
                            .map_err(text),
                        idx::read_images(&path).map(|_| ()).map_err(text),
                    ]
                } else {
                    [
                        idx::labels_from_bytes(name, &bytes)
                            .map(|_| ())
                            .map_err(text),
                        idx::read_labels(&path).map(|_| ()).map_err(text),
                    ]
                }
            });
            worst.set(worst.get().max(peak));
            prop_assert!(peak <= PEAK_BOUND, "held {peak} bytes at once");
            let [from_bytes, from_file] = results;
            prop_assert_eq!(from_bytes.is_ok(), from_file.is_ok());
            oks.set(oks.get() + from_bytes.is_ok() as usize);
            named(from_bytes, name)?;
            named(from_file, name)?;
            Ok(())
        })
        .unwrap();
    eprintln!(
        "idx: {CASES} cases, {} read fine, the rest named errors; peak {} bytes",
        oks.get(),
        worst.get()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn valid_checkpoint(precision: StoredPrecision, kind: SamplerKind) -> Vec<u8> {
    let spec = MlpSpec::two_layer(6, 3, 10).unwrap();
    let mut sampler = Sampler::new(kind, 40, 5).unwrap();
    let mut batch = Vec::new();
    for _ in 0..7 {
        sampler.next_batch(8, &mut batch).unwrap();
    }
    let ckpt = Checkpoint {
        params: Params::init(&spec, 3),
        iteration: 7,
        sampler: sampler.state(),
        config: TrainConfig::default(),
        pending: Default::default(),
        notes: [("device".to_string(), "cpu".to_string())].into(),
    };
    checkpoint::to_bytes(&ckpt, precision).unwrap()
}

/// A change to a checkpoint: to its bytes, its header length, or one number in its metadata.
#[derive(Debug, Clone)]
enum CkptMutation {
    Bytes(Mutation),
    HeaderLen(u64),
    /// Set `key`'s JSON field (by index among its numeric fields, modulo their count) to a value.
    Number(usize, usize, serde_json::Value),
    /// Replace `key`'s whole value with a string.
    Text(usize, String),
}

const META_KEYS: [&str; 4] = ["spec", "sampler", "config", "iteration"];

fn json_number() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    prop_oneof![
        edge_u64().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(-1)),
        Just(Value::from(f64::MAX)),
        Just(Value::from(1e-300)),
        any::<f64>().prop_map(Value::from),
        Just(Value::Null),
        Just(Value::from("7")),
        prop::collection::vec(edge_u64(), 0..4).prop_map(Value::from),
    ]
}

fn ckpt_mutation() -> impl Strategy<Value = CkptMutation> {
    prop_oneof![
        4 => mutation().prop_map(CkptMutation::Bytes),
        1 => edge_u64().prop_map(CkptMutation::HeaderLen),
        5 => (0usize..4, any::<usize>(), json_number())
            .prop_map(|(k, f, v)| CkptMutation::Number(k, f, v)),
        1 => (0usize..4, "[0-9a-z{}\\[\\],:\"-]{0,40}").prop_map(|(k, t)| CkptMutation::Text(k, t)),
    ]
}

/// The numeric leaves of a JSON value (and arrays of them), by path.
fn numeric_paths(v: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                path.push(k.clone());
                numeric_paths(child, path, out);
                path.pop();
            }
        }
        serde_json::Value::Number(_) | serde_json::Value::Array(_) => out.push(path.clone()),
        _ => {}
    }
}

fn set_path(v: &mut serde_json::Value, path: &[String], new: serde_json::Value) {
    match path.split_first() {
        None => *v = new,
        Some((first, rest)) => {
            if let Some(child) = v.get_mut(first) {
                set_path(child, rest, new);
            }
        }
    }
}

fn mutate_checkpoint(valid: &[u8], m: &CkptMutation) -> Vec<u8> {
    match m {
        CkptMutation::Bytes(b) => {
            let mut bytes = valid.to_vec();
            // IDX header words mean nothing here; aim them at the safetensors header.
            if let Mutation::Word(w, v) = b {
                let at = 8 + 4 * w;
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            } else {
                apply(&mut bytes, b);
            }
            bytes
        }
        CkptMutation::HeaderLen(n) => {
            let mut bytes = valid.to_vec();
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            bytes
        }
        CkptMutation::Number(k, f, value) => {
            let key = META_KEYS[*k];
            edit_meta(valid, key, |text| {
                // An earlier Text mutation may have left no JSON to edit.
                let Ok(mut json) = serde_json::from_str::<serde_json::Value>(text) else {
                    return value.to_string();
                };
                let mut paths = Vec::new();
                numeric_paths(&json, &mut Vec::new(), &mut paths);
                if paths.is_empty() {
                    // "iteration" is a bare number in a string.
                    return value.to_string();
                }
                set_path(&mut json, &paths[f % paths.len()], value.clone());
                json.to_string()
            })
        }
        CkptMutation::Text(k, t) => edit_meta(valid, META_KEYS[*k], |_| t.clone()),
    }
}

fn edit_meta(valid: &[u8], key: &str, f: impl FnOnce(&str) -> String) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(valid).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(valid).unwrap();
    let mut meta = header.metadata().clone().unwrap_or_default();
    // A bit flip may have renamed the key.
    let new = f(meta.get(key).map_or("", String::as_str));
    meta.insert(key.to_string(), new);
    safetensors::serialize(st.tensors(), Some(meta)).unwrap()
}

#[test]
fn mutated_checkpoints_give_ok_or_a_named_error_within_the_memory_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("ckpt");
    let valid = [
        valid_checkpoint(StoredPrecision::F32, SamplerKind::WithReplacement),
        valid_checkpoint(StoredPrecision::F64, SamplerKind::Epochs),
    ];
    for v in &valid {
        assert!(checkpoint::from_bytes(Path::new("v"), v).is_ok());
    }
    let strategy = (0usize..2, prop::collection::vec(ckpt_mutation(), 1..3));
    let name = "fuzz-checkpoint.safetensors";
    let worst = std::cell::Cell::new(0usize);
    let oks = std::cell::Cell::new(0usize);
    runner()
        .run(&strategy, |(which, mutations)| {
            let mut bytes = valid[which].clone();
            for m in &mutations {
                bytes = mutate_checkpoint(&bytes, m);
                // A mutation that broke the file leaves later metadata edits nothing to edit.
                if safetensors::SafeTensors::deserialize(&bytes).is_err() {
                    break;
                }
            }
            let path = fresh_file(&dir, name, &bytes);
            let (results, peak) = peak_of(|| {
                let from_bytes = checkpoint::from_bytes(Path::new(name), &bytes);
                let from_file = checkpoint::load(&path);
                // What a resume does with the sampler state next (after checking that `n` is
                // its data set's size): restore it, promptly and within the bound.
                let restored = match &from_bytes {
                    Ok(c) if c.sampler.n == 40 => Sampler::from_state(c.sampler).map(|_| ()),
                    _ => Ok(()),
                };
                (from_bytes, from_file, restored)
            });
            worst.set(worst.get().max(peak));
            prop_assert!(peak <= PEAK_BOUND, "held {peak} bytes at once");
            let (from_bytes, from_file, restored) = results;
            prop_assert_eq!(from_bytes.is_ok(), from_file.is_ok());
            if let Ok(c) = &from_bytes {
                oks.set(oks.get() + 1);
                prop_assert!(c.params.data.iter().all(|v| v.is_finite()));
                prop_assert_eq!(c.params.data.len(), c.params.spec.num_params());
            }
            let text = |r: gpu_train::Result<Checkpoint>| r.map(|_| ()).map_err(|e| e.to_string());
            named(text(from_bytes), name)?;
            named(text(from_file), name)?;
            // The loader checked the state; only the epoch's re-drawn order is left to differ.
            if let Err(e) = restored {
                prop_assert!(e.to_string().contains("re-drawing"), "{e}");
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "checkpoints: {CASES} cases, {} loaded, the rest named errors; peak {} bytes",
        oks.get(),
        worst.get()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A gzip stream of an IDX images header claiming `count` images of `side` x `side`, followed by
/// 32 MiB of zeros (about 32 KB compressed; what matters is the claim, refused before them).
fn bomb(count: u32, side: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for w in [idx::IMAGES_MAGIC, count, side, side] {
        e.write_all(&w.to_be_bytes()).unwrap();
    }
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..32 {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap()
}

#[test]
fn a_small_gzip_claiming_two_to_the_31_images_costs_little() {
    // Was: 2.1 GB held before the error. The header's claim is beyond the data-size limit, so
    // nothing past it is inflated, whatever the stream holds.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("bomb");
    for (count, side) in [(1u32 << 31, 28u32), (1 << 31, 1), (u32::MAX, 1)] {
        let path = dir.join("bomb.gz");
        std::fs::write(&path, bomb(count, side)).unwrap();
        let (result, peak) = peak_of(|| idx::read_images(&path));
        let e = result.unwrap_err().to_string();
        assert!(e.contains("bomb.gz") && e.contains("limit"), "{e}");
        assert!(peak <= PEAK_BOUND, "held {peak} bytes");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_two_gigabyte_raw_file_whose_header_says_78_kb_is_not_read() {
    // Was: read whole before "too long". A sparse file: 2 GB on paper, nothing on disk.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("sparse");
    let path = dir.join("train-images-idx3-ubyte");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&idx_images(100, 28, 28)[..16]).unwrap();
    f.set_len(2_000_000_000).unwrap();
    drop(f);
    let (result, peak) = peak_of(|| idx::read_images(&path));
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("too long"),
        "{e}"
    );
    assert!(peak <= PEAK_BOUND, "held {peak} bytes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn weights_from_dev_zero_are_refused_without_reading() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (result, peak) = peak_of(|| checkpoint::load(Path::new("/dev/zero")));
    let e = result.unwrap_err().to_string();
    assert!(e.contains("/dev/zero") && e.contains("device"), "{e}");
    assert!(peak <= PEAK_BOUND, "held {peak} bytes");
}

#[test]
fn an_old_sampler_state_far_along_is_refused_at_once() {
    // Was: resume replayed ~10^10 draws.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let state = SamplerState {
        batches_drawn: 100_000_000,
        batch_size: 100,
        ..SamplerState::fresh(SamplerKind::WithReplacement, 60_000, 1)
    };
    let e = Sampler::from_state(state).unwrap_err().to_string();
    assert!(e.contains("older gpu-train"), "{e}");
}

// ---- pictures for predict and classes.txt

/// zlib of `len` bytes made by `byte(i)`, streamed (the input is never held whole).
fn zlib_of(len: usize, byte: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let mut chunk = Vec::with_capacity(1 << 16);
    for start in (0..len).step_by(1 << 16) {
        chunk.clear();
        chunk.extend((start..len.min(start + (1 << 16))).map(&byte));
        z.write_all(&chunk).unwrap();
    }
    z.finish().unwrap()
}

fn encoded(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn stroke(w: u32, h: u32) -> image::GrayImage {
    image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if x.abs_diff(w / 2) < 3 && y > 3 && y + 3 < h {
            20
        } else {
            240
        }])
    })
}

/// Decodes and prepares `bytes` as predict does; the error's text, or Ok.
fn predict_path(name: &str, bytes: &[u8]) -> Result<(), String> {
    let file = Path::new(name);
    gpu_train::predict::decode_image(file, bytes)
        .and_then(|g| gpu_train::predict::prepare(file, &g, 28))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn picture_bombs_are_refused_or_decoded_within_their_bound() {
    // Was: a 28x28 PNG whose colour profile inflates to 256 MiB (1 GiB in the report) peaked at
    // its inflated size; a 1 x 2^24 PNG took 456 MB; a JPEG claiming 4096x4096 over a small
    // scan 213 MB.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let small = encoded(stroke(28, 28).into(), image::ImageFormat::Png);
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend(zlib_of(256 << 20, |_| 0));
    let mut profile_bomb = small[..33].to_vec();
    profile_bomb.extend(common::png_chunk(b"iCCP", &iccp));
    profile_bomb.extend_from_slice(&small[33..]);

    let tall: u32 = 1 << 24;
    let mut ihdr = 1u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&tall.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut tall_png = b"\x89PNG\r\n\x1a\n".to_vec();
    tall_png.extend(common::png_chunk(b"IHDR", &ihdr));
    // Rows of (filter 0, one pixel): white, with a dark stroke in the middle eighth.
    let idat = zlib_of(2 * tall as usize, |i| {
        let row = i / 2;
        match (i % 2, (row >> 21) == 4) {
            (0, _) => 0,
            (_, true) => 0,
            _ => 255,
        }
    });
    tall_png.extend(common::png_chunk(b"IDAT", &idat));
    tall_png.extend(common::png_chunk(b"IEND", &[]));

    let mut big_jpeg = encoded(stroke(16, 16).into(), image::ImageFormat::Jpeg);
    let sof = big_jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    big_jpeg[sof + 5..sof + 9].copy_from_slice(&[0x10, 0x00, 0x10, 0x00]);

    // The profile is ignored past 4 MiB and the picture read; the tall one is read within its
    // bound; the JPEG is refused from its headers before anything is sized from them.
    for (name, bytes, bound, needle) in [
        ("profile-bomb.png", &profile_bomb, 16usize << 20, ""),
        ("tall.png", &tall_png, 100 << 20, ""),
        ("big.jpg", &big_jpeg, 8 << 20, "4096x4096"),
    ] {
        let (result, peak) = peak_of(|| predict_path(name, bytes));
        eprintln!(
            "{name}: {} bytes, peak {peak} bytes: {result:?}",
            bytes.len()
        );
        assert!(peak <= bound, "{name}: held {peak} bytes at once");
        match result {
            Ok(()) => assert!(needle.is_empty(), "{name} decoded"),
            Err(e) if needle.is_empty() => panic!("{name}: {e}"),
            Err(e) => assert!(e.contains(name) && e.contains(needle), "{e}"),
        }
    }
}

/// The most predict's decoding and preparation may hold at once for a picture at the pixel cap
/// (16.7 million pixels at 8 bytes decoding and 4 bytes of grey levels, and the header's 4 MiB).
const PICTURE_PEAK_BOUND: usize = (gpu_train::predict::MAX_IMAGE_PIXELS as usize) * 12 + (24 << 20);

/// Image cases, and classes.txt cases (on top of the IDX and checkpoint cases above).
const PICTURE_CASES: u32 = 6_000;
const CLASS_CASES: u32 = 4_000;

fn runner_with(cases: u32) -> TestRunner {
    let mut r = runner();
    let config = Config {
        cases,
        ..r.config().clone()
    };
    r = TestRunner::new(config);
    r
}

#[test]
fn mutated_pictures_give_a_prediction_or_a_named_error_within_the_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rgba = image::RgbaImage::from_fn(20, 12, |x, y| {
        image::Rgba([
            (x * 12) as u8,
            (y * 20) as u8,
            90,
            if x > 10 { 255 } else { 40 },
        ])
    });
    let valid = [
        encoded(stroke(28, 28).into(), image::ImageFormat::Png),
        encoded(rgba.into(), image::ImageFormat::Png),
        encoded(stroke(28, 28).into(), image::ImageFormat::Jpeg),
        encoded(
            image::DynamicImage::ImageLuma8(stroke(24, 16))
                .to_rgb8()
                .into(),
            image::ImageFormat::Jpeg,
        ),
    ];
    let image_mutation = prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..200).prop_map(Mutation::Extend),
        3 => (0usize..48, edge_u32()).prop_map(|(w, v)| Mutation::Word(w, v)),
    ];
    let strategy = (0usize..4, prop::collection::vec(image_mutation, 1..4));
    let (oks, worst) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner_with(PICTURE_CASES)
        .run(&strategy, |(which, mutations)| {
            let mut bytes = valid[which].clone();
            mutations.iter().for_each(|m| apply(&mut bytes, m));
            let name = if which < 2 { "fuzz.png" } else { "fuzz.jpg" };
            let (result, peak) = peak_of(|| predict_path(name, &bytes));
            worst.set(worst.get().max(peak));
            prop_assert!(peak <= PICTURE_PEAK_BOUND, "held {peak} bytes at once");
            oks.set(oks.get() + result.is_ok() as usize);
            named(result, name)
        })
        .unwrap();
    eprintln!(
        "pictures: {PICTURE_CASES} cases, {} predicted, the rest named errors; peak {} bytes",
        oks.get(),
        worst.get()
    );
}

#[test]
fn mutated_class_lists_give_checked_names_or_a_named_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("classes");
    let valid = b"T-shirt/top\nTrouser\nPullover\nDress\nCoat\nSandal\nShirt\n".to_vec();
    let strategy = prop_oneof![
        (prop::collection::vec(mutation(), 1..4)).prop_map(move |ms| {
            let mut b = valid.clone();
            ms.iter().for_each(|m| apply(&mut b, m));
            b
        }),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(
            prop_oneof![
                Just("\u{feff}"),
                Just("\n"),
                Just("\r\n"),
                Just("\x1b[2J"),
                Just("a"),
                Just("b"),
                Just(" "),
                Just("\u{202e}"),
                Just("é"),
                Just("\0")
            ],
            0..80
        )
        .prop_map(|parts| parts.concat().into_bytes()),
    ];
    let oks = std::cell::Cell::new(0);
    runner_with(CLASS_CASES)
        .run(&strategy, |bytes| {
            let path = fresh_file(&dir, "classes.txt", &bytes);
            let (result, peak) = peak_of(|| gpu_train::data::read_class_names(&path));
            prop_assert!(peak <= 1 << 20, "held {peak} bytes at once");
            match result {
                Ok(names) => {
                    oks.set(oks.get() + 1);
                    prop_assert!(gpu_train::data::check_class_names(&names).is_ok());
                    for n in &names {
                        prop_assert!(!n.is_empty() && n.chars().count() <= 64);
                        prop_assert!(!n.chars().any(gpu_train::fmt::is_unsafe_char), "{n:?}");
                    }
                    Ok(())
                }
                Err(e) => named(Err(e.to_string()), "classes.txt"),
            }
        })
        .unwrap();
    eprintln!(
        "classes.txt: {CLASS_CASES} cases, {} read fine, the rest named errors",
        oks.get()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
