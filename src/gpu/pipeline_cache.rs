//! wgpu's pipeline cache on disk (`Features::PIPELINE_CACHE`, Vulkan today): the driver's
//! compiled pipelines of one run, handed back to the device of the next run on the same adapter
//! so that it starts faster. A cache is an optimisation and what is on disk is untrusted: a
//! missing, unreadable, oversized, damaged or foreign file is ignored (a one-line warning at
//! most) and replaced at the end of the run; nothing here ever fails a run or panics.
//!
//! Where: `GPU_TRAIN_CACHE_DIR` if set (`off` or empty: no cache), else
//! `$XDG_CACHE_HOME/gpu-train`, else `$HOME/.cache/gpu-train`; one file per adapter class, named
//! by `wgpu::util::pipeline_cache_key` (e.g. `wgpu_pipeline_cache_vulkan_65541_0`). The file is
//! a 24-byte header of ours (magic, format version, CRC-32 and length of the rest) followed by
//! exactly the bytes `wgpu::PipelineCache::get_data` returned; it is written atomically (a
//! temporary file in the same directory, then a rename) and only when the data changed.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The cache's directory; `off` (or an empty value) disables the cache.
pub const CACHE_DIR_ENV: &str = "GPU_TRAIN_CACHE_DIR";

/// The largest cache file read or written (this project's ~20 pipelines need far less).
pub const MAX_CACHE_BYTES: u64 = 64 << 20;

const MAGIC: [u8; 8] = *b"GTPCACHE";
const VERSION: u32 = 1;
/// Magic, version (u32), CRC-32 of the payload (u32), payload length (u64); little-endian.
const HEADER_BYTES: usize = 24;

/// The cache directory from the environment (see the module doc); None: no cache.
pub fn dir_from_env() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name);
    dir_from(var(CACHE_DIR_ENV), var("XDG_CACHE_HOME"), var("HOME"))
}

/// `dir_from_env` given the three variables' values.
pub fn dir_from(
    cache_dir: Option<std::ffi::OsString>,
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    if let Some(dir) = cache_dir {
        let s = dir.to_string_lossy();
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("off") {
            return None;
        }
        return Some(PathBuf::from(dir));
    }
    // The XDG spec: a relative XDG_CACHE_HOME is invalid and must be ignored.
    if let Some(xdg) = xdg_cache_home.map(PathBuf::from) {
        if xdg.is_absolute() {
            return Some(xdg.join("gpu-train"));
        }
    }
    let home = PathBuf::from(home?);
    home.is_absolute()
        .then(|| home.join(".cache").join("gpu-train"))
}

/// Length and CRC-32 of some cache data: what the file holds, to skip a write that would not
/// change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: usize,
    crc: u32,
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

impl Fingerprint {
    fn of(data: &[u8]) -> Self {
        Fingerprint {
            len: data.len(),
            crc: crc32(data),
        }
    }
}

/// What `PipelineCacheFile::load` found.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet (the first run on this adapter).
    Missing,
    /// The data an earlier run saved (header checked).
    Data(Vec<u8>),
    /// A file that is not usable (too large, damaged, not ours, unreadable): why, in words. It
    /// is replaced when this run saves.
    Ignored(String),
    /// Something that is not a regular file is at the path: what it is ("a directory", "a
    /// character device", ...). Never read nor replaced.
    NotAFile(&'static str),
    /// The cache's directory is something else (a file, a device): what it is. Nothing is read
    /// or written.
    NotADirectory(&'static str),
    /// The file or its directory belongs to another user or others may write it (Unix): its
    /// bytes could be anyone's, and they would reach an unsafe call. Never read nor written.
    Untrusted(String),
}

/// The cache file of one adapter class in one directory.
#[derive(Debug, Clone)]
pub struct PipelineCacheFile {
    path: PathBuf,
}

impl PipelineCacheFile {
    /// The file for `adapter` in `dir`; None where wgpu has no pipeline cache for its backend
    /// (`pipeline_cache_key` is None: everything but Vulkan today).
    pub fn at(dir: &Path, adapter: &wgpu::AdapterInfo) -> Option<Self> {
        let key = wgpu::util::pipeline_cache_key(adapter)?;
        Self::named(dir, &key)
    }

    /// The file `key` in `dir`; None for a key that is not a plain file name.
    pub fn named(dir: &Path, key: &str) -> Option<Self> {
        let plain = !key.is_empty()
            && !key.starts_with('.')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        plain.then(|| PipelineCacheFile {
            path: dir.join(key),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache data stored at the path, checked (size from the metadata before anything is
    /// read, then our header: magic, version, length, CRC-32).
    pub fn load(&self) -> Loaded {
        if let Some(dir) = self.path.parent().filter(|d| d.exists()) {
            match fs::metadata(dir) {
                // Before the owner and mode: a device node's mode (0666) says nothing about
                // who may write a cache there.
                Ok(m) if !m.is_dir() => return Loaded::NotADirectory(kind(&m)),
                Ok(m) => {
                    if let Err(why) = trusted("its directory", &m) {
                        return Loaded::Untrusted(why);
                    }
                }
                Err(e) => return Loaded::Ignored(format!("its directory cannot be read ({e})")),
            }
        }
        // Open first (without blocking on a FIFO), then look at what was opened: no window
        // between the check and the read for another file to be put in its place.
        let file = match open_nonblocking(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
            Err(e) => return Loaded::Ignored(format!("cannot be read ({e})")),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Loaded::Ignored(format!("cannot be read ({e})")),
        };
        if !meta.is_file() {
            // A directory or a FIFO is not ours to read or replace.
            return Loaded::NotAFile(kind(&meta));
        }
        if let Err(why) = trusted("the file", &meta) {
            return Loaded::Untrusted(why);
        }
        if meta.len() > MAX_CACHE_BYTES {
            return Loaded::Ignored(too_large(meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // The file may have grown since the metadata was read: never read past the cap.
        let read = file.take(MAX_CACHE_BYTES + 1).read_to_end(&mut bytes);
        if let Err(e) = read {
            return Loaded::Ignored(format!("cannot be read ({e})"));
        }
        if bytes.len() as u64 > MAX_CACHE_BYTES {
            return Loaded::Ignored(too_large(bytes.len() as u64));
        }
        match unwrap(&bytes) {
            Ok(data) => Loaded::Data(data.to_vec()),
            Err(why) => Loaded::Ignored(why),
        }
    }

    /// Writes `data` (what `get_data` returned) atomically: a temporary file beside the target,
    /// then a rename, so a reader sees the old file or the new one, never a part (a crash before
    /// the rename leaves at most a stray temporary file; one after it, on a file system that
    /// loses unsynced data, a file the header check refuses). Creates the directory (0700 on
    /// Unix: wgpu leaves protecting the data to the application).
    pub fn store(&self, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 + HEADER_BYTES as u64 > MAX_CACHE_BYTES {
            return Err(io::Error::other(too_large(data.len() as u64)));
        }
        let dir = self
            .path
            .parent()
            .ok_or_else(|| io::Error::other("the cache path has no directory"))?;
        if let Some(m) = fs::metadata(dir).ok().filter(|m| !m.is_dir()) {
            return Err(io::Error::other(format!(
                "{} is {}, not a directory",
                dir.display(),
                kind(&m)
            )));
        }
        create_private_dir(dir)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = fs::File::create_new(&tmp)?;
            f.write_all(&header(data))?;
            f.write_all(data)?;
            f.flush()?;
            drop(f);
            fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// What a file system entry is, for messages: "a file", "a directory", "a character device", ...
fn kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        return "a file";
    }
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Opens `path` for reading; on Unix without blocking, so a FIFO put at the path cannot hang
/// the run (the caller then refuses anything that is not a regular file).
fn open_nonblocking(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Whether a cache file or directory is this user's alone to write (Unix): owned by the
/// effective user, no group or other write bit. Elsewhere, the user profile's ACLs decide.
#[cfg(unix)]
fn trusted(what: &str, meta: &fs::Metadata) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "{what} belongs to user {}, not to this one ({me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{what} is writable by other users (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn trusted(_what: &str, _meta: &fs::Metadata) -> std::result::Result<(), String> {
    Ok(())
}

fn too_large(bytes: u64) -> String {
    format!(
        "is {bytes} bytes, over the {} MiB a pipeline cache may take",
        MAX_CACHE_BYTES >> 20
    )
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

fn header(data: &[u8]) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&crc32(data).to_le_bytes());
    h[16..24].copy_from_slice(&(data.len() as u64).to_le_bytes());
    h
}

/// The payload of a file `store` wrote, or why `bytes` is not one.
fn unwrap(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    let not_ours = "is not a pipeline cache gpu-train wrote (or is damaged)";
    if bytes.len() < HEADER_BYTES || bytes[..8] != MAGIC {
        return Err(not_ours.into());
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != VERSION {
        return Err(format!(
            "has format version {version}, this build reads {VERSION}"
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[16..24]);
    let payload = &bytes[HEADER_BYTES..];
    if u64::from_le_bytes(len) != payload.len() as u64 || word(12) != crc32(payload) {
        return Err(format!("{not_ours}: its length or checksum does not match"));
    }
    Ok(payload)
}

fn warn(path: &Path, what: &str) {
    eprintln!(
        "warning: pipeline cache {}: {}",
        path.display(),
        one_line(what)
    );
}

/// A message on one line: wgpu's errors span several ("Validation Error\n\nCaused by:\n  In
/// ..."), which a warning must not.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .collect::<Vec<_>>()
        .join(": ")
}

/// A context's pipeline cache: the wgpu object every pipeline is built with, and the file it
/// came from and goes back to.
#[derive(Debug)]
pub(crate) struct DiskCache {
    pub(crate) cache: wgpu::PipelineCache,
    file: PipelineCacheFile,
    /// What the file holds now (None: nothing usable), so an unchanged cache is not rewritten.
    on_disk: Mutex<Option<Fingerprint>>,
    /// Whether the device was given data from the file.
    loaded: bool,
    /// False where the path holds something that is not a regular file: left alone.
    writable: bool,
}

impl DiskCache {
    /// The cache for `device` on adapter `info`, primed from `dir`'s file where it holds one;
    /// None without a directory, on a backend without pipeline caches, or when the device
    /// refuses even an empty one. Never fails the caller.
    pub(crate) fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        dir: Option<&Path>,
    ) -> Option<DiskCache> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let file = PipelineCacheFile::at(dir?, info)?;
        let (data, writable) = match file.load() {
            Loaded::Missing => (None, true),
            Loaded::Data(d) => (Some(d), true),
            Loaded::Ignored(why) => {
                warn(
                    file.path(),
                    &format!("{why}; ignored, and replaced at the end of this run (or delete it)"),
                );
                (None, true)
            }
            Loaded::NotAFile(what) => {
                warn(
                    file.path(),
                    &format!(
                        "is {what}, not a regular file; no pipeline cache is read or written \
                         (remove it, or set {CACHE_DIR_ENV} to another directory or to off)"
                    ),
                );
                (None, false)
            }
            Loaded::NotADirectory(what) => {
                let dir = file.path().parent().unwrap_or(file.path());
                eprintln!(
                    "warning: pipeline cache directory {} is {what}, not a directory; no \
                     pipeline cache is read or written (set {CACHE_DIR_ENV} to a directory, or \
                     to off)",
                    dir.display()
                );
                (None, false)
            }
            Loaded::Untrusted(why) => {
                warn(
                    file.path(),
                    &format!(
                        "{why}; no pipeline cache is read or written (set GPU_TRAIN_CACHE_DIR to \
                         a directory of your own, or to off)"
                    ),
                );
                (None, false)
            }
        };
        let (cache, loaded) = match data.as_deref().map(|d| create(device, Some(d))) {
            Some(Ok(cache)) => (cache, true),
            Some(Err(e)) => {
                warn(
                    file.path(),
                    &format!(
                        "the device did not accept it ({e}); ignored, and replaced at the end of \
                         this run (or delete it)"
                    ),
                );
                (create(device, None).ok()?, false)
            }
            None => (create(device, None).ok()?, false),
        };
        let on_disk = match (&data, loaded) {
            (Some(d), true) => Some(Fingerprint::of(d)),
            _ => None,
        };
        Some(DiskCache {
            cache,
            file,
            on_disk: Mutex::new(on_disk),
            loaded,
            writable,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn loaded(&self) -> bool {
        self.loaded
    }

    /// Writes the cache's data to its file unless the file already holds it (or is not ours to
    /// write); true when it wrote.
    pub(crate) fn save(&self) -> io::Result<bool> {
        if !self.writable {
            return Ok(false);
        }
        let Some(data) = self.cache.get_data() else {
            return Ok(false);
        };
        let print = Fingerprint::of(&data);
        let mut on_disk = self.on_disk.lock().unwrap_or_else(|p| p.into_inner());
        if *on_disk == Some(print) {
            return Ok(false);
        }
        self.file.store(&data)?;
        *on_disk = Some(print);
        Ok(true)
    }
}

/// A pipeline cache primed with `data` (or empty), inside error scopes: wgpu reports data made
/// for another device as a validation error, which must neither reach the context's error slot
/// (it would fail the run) nor leave an invalid cache that every pipeline would then reject.
fn create(
    device: &wgpu::Device,
    data: Option<&[u8]>,
) -> std::result::Result<wgpu::PipelineCache, String> {
    let scopes = [
        wgpu::ErrorFilter::Validation,
        wgpu::ErrorFilter::OutOfMemory,
        wgpu::ErrorFilter::Internal,
    ]
    .map(|filter| device.push_error_scope(filter));
    // SAFETY: `create_pipeline_cache` requires `data` to come from `PipelineCache::get_data` on
    // an adapter with the same `pipeline_cache_key`. It does: `data` is the payload of the file
    // named by this adapter's key, and `PipelineCacheFile::load` returned it only after checking
    // that `store` wrote it (our magic, version, exact length and CRC-32 of the payload), and
    // `store` writes only what `get_data` returned. An accidentally damaged, truncated or
    // foreign file therefore never gets here. wgpu then checks its own header (magic, wgpu's
    // format and pointer width, backend, vendor and device ids, the driver's pipeline cache UUID,
    // the length) and falls back to an empty cache (`fallback: true`) when the data is outdated
    // or was made by another driver, reporting a validation error (caught below) when it names
    // another device; the Vulkan driver checks its own header too. What none of this can stop
    // is a deliberately forged file, hence `load` reads only a file and a directory that this
    // user owns and no one else may write (Unix; the directory is created 0700): whoever can
    // write there can already change the user's files and programs.
    let cache = unsafe {
        device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
            label: Some("gpu-train pipeline cache"),
            data,
            fallback: true,
        })
    };
    let mut error = None;
    for scope in scopes.into_iter().rev() {
        if let Some(e) = pollster::block_on(scope.pop()) {
            error.get_or_insert(one_line(&e.to_string()));
        }
    }
    match error {
        None => Ok(cache),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("gpu-train-plc-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn the_directory_comes_from_the_variable_then_xdg_then_home() {
        assert_eq!(
            dir_from(os("/c"), os("/x"), os("/h")),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            dir_from(None, os("/x"), os("/h")),
            Some(PathBuf::from("/x/gpu-train"))
        );
        assert_eq!(
            dir_from(None, None, os("/h")),
            Some(PathBuf::from("/h/.cache/gpu-train"))
        );
        // A relative XDG_CACHE_HOME is invalid (XDG spec); no home: no cache.
        assert_eq!(
            dir_from(None, os("rel"), os("/h")),
            Some(PathBuf::from("/h/.cache/gpu-train"))
        );
        assert_eq!(dir_from(None, None, None), None);
        assert_eq!(dir_from(None, None, os("")), None);
    }

    #[test]
    fn off_or_empty_disables_the_cache() {
        for v in ["off", "OFF", "", "  "] {
            assert_eq!(dir_from(os(v), os("/x"), os("/h")), None, "{v:?}");
        }
    }

    #[test]
    fn the_key_must_be_a_plain_file_name() {
        let d = Path::new("/c");
        assert!(PipelineCacheFile::named(d, "wgpu_pipeline_cache_vulkan_65541_0").is_some());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(PipelineCacheFile::named(d, bad).is_none(), "{bad:?}");
        }
        let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan);
        info.vendor = 0x10005;
        let f = PipelineCacheFile::at(d, &info).unwrap();
        assert_eq!(f.path(), Path::new("/c/wgpu_pipeline_cache_vulkan_65541_0"));
        info.backend = wgpu::Backend::Gl;
        assert!(PipelineCacheFile::at(d, &info).is_none());
    }

    #[test]
    fn stored_data_loads_back_and_the_directory_is_created() {
        let d = tmp("roundtrip");
        let f = PipelineCacheFile::named(&d.join("sub/dir"), "key").unwrap();
        assert!(matches!(f.load(), Loaded::Missing));
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        f.store(&data).unwrap();
        match f.load() {
            Loaded::Data(back) => assert_eq!(back, data),
            other => panic!("{other:?}"),
        }
        // Overwritten in place; no temporary file is left behind.
        f.store(b"second").unwrap();
        assert!(matches!(f.load(), Loaded::Data(b) if b == b"second"));
        let names: Vec<_> = fs::read_dir(d.join("sub/dir"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("key")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(d.join("sub/dir"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let _ = fs::remove_dir_all(&d);
    }

    /// Garbage, a truncated file, a flipped bit, another version and an empty file are all
    /// refused before the device sees them.
    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let d = tmp("damaged");
        let f = PipelineCacheFile::named(&d, "key").unwrap();
        f.store(b"some cache data").unwrap();
        let good = fs::read(f.path()).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let mut version = good.clone();
        version[8] = 9;
        let cases: [(&str, Vec<u8>); 5] = [
            ("garbage", b"this is not a cache at all, just text".to_vec()),
            ("truncated", good[..good.len() - 3].to_vec()),
            ("flipped", flipped),
            ("version", version),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            fs::write(f.path(), &bytes).unwrap();
            match f.load() {
                Loaded::Ignored(why) => assert!(!why.is_empty(), "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let _ = fs::remove_dir_all(&d);
    }

    /// A cache file or directory that others may write is neither read nor trusted (its bytes
    /// would reach an unsafe call); with the modes made private again it loads.
    #[cfg(unix)]
    #[test]
    fn a_file_or_directory_others_may_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmp("untrusted");
        let f = PipelineCacheFile::named(&d.join("c"), "key").unwrap();
        f.store(b"cache bytes").unwrap();
        assert!(matches!(f.load(), Loaded::Data(_)));
        let set =
            |p: &Path, mode: u32| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        set(f.path(), 0o666);
        assert!(
            matches!(f.load(), Loaded::Untrusted(w) if w.contains("the file") && w.contains("666"))
        );
        set(f.path(), 0o600);
        set(&d.join("c"), 0o777);
        assert!(matches!(f.load(), Loaded::Untrusted(w) if w.contains("its directory")));
        set(&d.join("c"), 0o700);
        assert!(matches!(f.load(), Loaded::Data(b) if b == b"cache bytes"));
        let _ = fs::remove_dir_all(&d);
    }

    /// Over the cap is refused from the metadata (a sparse file: nothing is read).
    #[test]
    fn a_file_over_the_cap_is_refused_unread() {
        let d = tmp("large");
        let f = PipelineCacheFile::named(&d, "key").unwrap();
        fs::File::create(f.path())
            .unwrap()
            .set_len(MAX_CACHE_BYTES + 1)
            .unwrap();
        match f.load() {
            Loaded::Ignored(why) => assert!(why.contains("over the 64 MiB"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(f.store(&vec![0u8; MAX_CACHE_BYTES as usize]).is_err());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_at_the_path_is_left_alone() {
        let d = tmp("dir");
        let f = PipelineCacheFile::named(&d, "key").unwrap();
        fs::create_dir(f.path()).unwrap();
        assert!(matches!(f.load(), Loaded::NotAFile("a directory")));
        assert!(f.store(b"x").is_err());
        assert!(f.path().is_dir());
        let _ = fs::remove_dir_all(&d);
    }

    /// A cache directory that is a file or a device is named as such, before its mode (a
    /// device's 0666 is not "writable by other users"), and store says so too.
    #[test]
    fn a_file_or_device_as_the_directory_is_named() {
        let d = tmp("dir-is-file");
        let file = d.join("plain");
        fs::write(&file, b"x").unwrap();
        let f = PipelineCacheFile::named(&file, "key").unwrap();
        assert!(
            matches!(f.load(), Loaded::NotADirectory("a file")),
            "{:?}",
            f.load()
        );
        let e = f.store(b"data").unwrap_err().to_string();
        assert!(e.contains("plain is a file, not a directory"), "{e}");
        #[cfg(unix)]
        if Path::new("/dev/full").exists() {
            let f = PipelineCacheFile::named(Path::new("/dev/full"), "key").unwrap();
            let got = f.load();
            assert!(
                matches!(got, Loaded::NotADirectory("a character device")),
                "{got:?}"
            );
            // A link to a device at the file's own path: not a regular file.
            let link = d.join("link");
            std::os::unix::fs::symlink("/dev/full", &link).unwrap();
            let f = PipelineCacheFile::named(&d, "link").unwrap();
            assert!(matches!(f.load(), Loaded::NotAFile("a character device")));
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn wgpu_errors_become_one_line() {
        let e = "Validation Error\n\nCaused by:\n  In Device::device_create_pipeline_cache_init, \
                 label = 'c'\n    Pipeline cache validation failed\n      The cache data was \
                 created for a different device\n";
        assert_eq!(
            one_line(e),
            "Validation Error: In Device::device_create_pipeline_cache_init, label = 'c': \
             Pipeline cache validation failed: The cache data was created for a different device"
        );
        assert_eq!(one_line("plain"), "plain");
    }
}
