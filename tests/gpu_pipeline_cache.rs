//! wgpu's pipeline cache on disk (`GPU_TRAIN_CACHE_DIR`): a run leaves a cache file named by
//! the adapter's `pipeline_cache_key` where the adapter offers PIPELINE_CACHE (and none where it
//! does not, said so), the next run loads it, damaged, foreign and oversized files change
//! nothing but the speed, and `off` writes nothing. Each test opens its own device with the
//! cache in a directory of its own (`Context::gpu_with_cache`: no environment variable is set
//! in this process); the `off` test runs the binary. With CI=true a missing adapter fails.

mod common;
use common::mnist;

use gpu_train::backend::{Backend, GradMethod, PerturbStrategy};
use gpu_train::cpu::CpuBackend;
use gpu_train::data::{Sampler, SamplerKind};
use gpu_train::gpu::pipeline_cache::{Loaded, MAX_CACHE_BYTES};
use gpu_train::gpu::{Context, GpuBackend, PipelineCacheFile};
use gpu_train::model::{relative_error, MlpSpec, Params};
use gpu_train::tolerance::GPU_BACKPROP_REL;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    common::fresh_dir("plc", name)
}

/// A device whose pipeline cache lives in `dir` (None: no cache); None (skip) only without an
/// adapter and without CI=true.
fn open(dir: Option<&Path>) -> Option<Context> {
    match Context::gpu_with_cache(dir) {
        Ok(ctx) => Some(ctx),
        Err(e) if common::ci() => panic!("CI=true and no usable GPU adapter: {e}"),
        Err(e) => {
            eprintln!("skipped: no adapter ({e})");
            None
        }
    }
}

/// Whether this device uses a pipeline cache file: the adapter offers PIPELINE_CACHE and wgpu
/// names a file for it.
fn offers_cache(ctx: &Context) -> bool {
    ctx.device()
        .features()
        .contains(wgpu::Features::PIPELINE_CACHE)
        && wgpu::util::pipeline_cache_key(ctx.adapter_info()).is_some()
}

/// Builds every pipeline a numerical and a backprop run use (the numerical ones are built on
/// first use) and checks what they compute against the CPU: the batch loss, the backprop
/// gradient, and the numerical gradient against the f64 reference. Returns the context.
fn kernels_work(ctx: Context) -> Context {
    let ctx = Arc::new(ctx);
    let spec = MlpSpec::two_layer(784, 16, 10).unwrap();
    let params = Params::init(&spec, 7);
    let mut b = Vec::new();
    Sampler::new(SamplerKind::WithReplacement, mnist().train.len(), 8)
        .unwrap()
        .next_batch(40, &mut b)
        .unwrap();
    {
        let mut g =
            GpuBackend::new(ctx.clone(), spec.clone(), mnist()).unwrap_or_else(|e| panic!("{e}"));
        let mut c = CpuBackend::<f32>::new(spec.clone(), mnist()).unwrap();
        let mut r = gpu_train::reference::ReferenceBackend::new(spec.clone(), mnist()).unwrap();
        for backend in [&mut g as &mut dyn Backend, &mut c, &mut r] {
            backend.set_params(&params).unwrap();
            backend.set_batch(&b).unwrap();
        }
        let (gl, cl) = (g.batch_loss().unwrap(), c.batch_loss().unwrap());
        assert!((gl - cl).abs() <= 1e-5 * cl, "batch loss gpu {gl} cpu {cl}");
        let rel = relative_error(
            &g.gradient(GradMethod::Backprop).unwrap(),
            &c.gradient(GradMethod::Backprop).unwrap(),
        );
        assert!(rel <= GPU_BACKPROP_REL, "backprop gradient: {rel:e}");
        let numerical = GradMethod::Numerical {
            strategy: PerturbStrategy::Incremental,
            h: 1e-4,
        };
        let rel = relative_error(
            &g.gradient(numerical).unwrap_or_else(|e| panic!("{e}")),
            &r.gradient(numerical).unwrap(),
        );
        assert!(rel <= 1e-4, "numerical gradient vs f64 reference: {rel:e}");
    }
    ctx.check("after the kernels")
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::try_unwrap(ctx).expect("the backend holds no other reference")
}

fn key_of(ctx: &Context) -> Option<String> {
    wgpu::util::pipeline_cache_key(ctx.adapter_info())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// (1) A run leaves a non-empty cache file named by the key (the directory created on the way),
/// saved when the context is dropped; the next device on the same directory is given it and
/// still computes right. An adapter without PIPELINE_CACHE writes nothing, and says so.
#[test]
fn a_run_leaves_a_cache_file_named_by_the_adapter_key() {
    let dir = scratch("write").join("not/yet/there");
    let Some(ctx) = open(Some(&dir)) else { return };
    let info = ctx.adapter_info().clone();
    if !offers_cache(&ctx) {
        eprintln!(
            "{} offers no pipeline cache (PIPELINE_CACHE {}, key {:?}): checking that nothing is written",
            ctx.describe(),
            ctx.device().features().contains(wgpu::Features::PIPELINE_CACHE),
            key_of(&ctx)
        );
        assert!(ctx.pipeline_cache().is_none() && ctx.pipeline_cache_path().is_none());
        drop(kernels_work(ctx));
        assert!(!dir.exists(), "{} was created", dir.display());
        return;
    }
    let key = key_of(&ctx).unwrap();
    let path = dir.join(&key);
    assert_eq!(ctx.pipeline_cache_path(), Some(path.as_path()));
    assert!(ctx.pipeline_cache().is_some() && !ctx.pipeline_cache_loaded());
    let ctx = kernels_work(ctx);
    assert!(!path.exists(), "nothing is written before the save");
    drop(ctx);
    let bytes = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    let payload = match PipelineCacheFile::at(&dir, &info).unwrap().load() {
        Loaded::Data(d) => d,
        other => panic!("{other:?}"),
    };
    eprintln!(
        "{}: {} offers PIPELINE_CACHE; {} written, {bytes} bytes ({} of wgpu's data)",
        ctx_name(&info),
        key,
        path.display(),
        payload.len()
    );
    // wgpu's own 64-byte header at least, after ours.
    assert!(
        payload.len() >= 64 && payload.starts_with(b"WGPUPLCH"),
        "{payload:?}"
    );
    assert_eq!(
        entries(&dir),
        vec![key.clone()],
        "only the cache file, no temporary one"
    );

    // The next device is given the file, computes the same, and an unchanged cache is not
    // written again.
    let ctx = open(Some(&dir)).unwrap();
    assert!(
        ctx.pipeline_cache_loaded(),
        "the second device did not load the file"
    );
    let ctx = kernels_work(ctx);
    let again = ctx.save_pipeline_cache().unwrap();
    eprintln!(
        "second run: the cache {}",
        if again {
            "grew, rewritten"
        } else {
            "unchanged"
        }
    );
    assert!(
        !ctx.save_pipeline_cache().unwrap(),
        "an unchanged cache was rewritten"
    );
    drop(ctx);
    assert!(matches!(
        PipelineCacheFile::at(&dir, &info).unwrap().load(),
        Loaded::Data(_)
    ));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap().parent().unwrap().parent().unwrap());
}

fn ctx_name(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?})", info.name, info.backend)
}

/// (2) Garbage, a file over the size cap (sparse: never read), a damaged wgpu payload inside a
/// valid file of ours, and a cache made for another device (wgpu reports that one as a
/// validation error, which must not reach the run): each start builds every pipeline, computes
/// right, reports no device error, and leaves a good cache file behind.
#[test]
fn damaged_foreign_or_oversized_cache_files_do_not_break_startup() {
    let dir = scratch("bad");
    let Some(ctx) = open(Some(&dir)) else { return };
    let info = ctx.adapter_info().clone();
    let Some(key) = key_of(&ctx).filter(|_| offers_cache(&ctx)) else {
        eprintln!(
            "{} offers no pipeline cache: nothing to damage",
            ctx.describe()
        );
        return;
    };
    let path = dir.join(&key);
    let file = PipelineCacheFile::at(&dir, &info).unwrap();
    // A real cache to damage.
    let good = match kernels_work(ctx)
        .pipeline_cache()
        .and_then(|c| c.get_data())
    {
        Some(d) if d.len() >= 64 => d,
        other => panic!("no cache data: {other:?}"),
    };
    let mut foreign = good.clone();
    foreign[23] ^= 0x5a; // wgpu's header: the vendor id's low byte (adapter key, bytes 17..32)
    let mut damaged = good.clone();
    for b in &mut damaged[64..] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    damaged.truncate(64.max(good.len() - 5)); // wgpu's recorded length no longer matches
    type Write = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Write, bool)> = vec![
        (
            "garbage",
            Box::new(|p: &Path| std::fs::write(p, b"\x00\xffnot a cache\n".repeat(100)).unwrap()),
            false,
        ),
        (
            "over the cap",
            Box::new(|p: &Path| {
                std::fs::File::create(p)
                    .unwrap()
                    .set_len(MAX_CACHE_BYTES + 1)
                    .unwrap()
            }),
            false,
        ),
        (
            "damaged wgpu data in a file of ours",
            Box::new({
                let file = file.clone();
                move |_: &Path| file.store(&damaged).unwrap()
            }),
            true,
        ),
        (
            "made for another device",
            Box::new({
                let file = file.clone();
                move |_: &Path| file.store(&foreign).unwrap()
            }),
            false,
        ),
    ];
    for (what, write, reaches_the_device) in cases {
        let _ = std::fs::remove_file(&path);
        write(&path);
        let ctx = open(Some(&dir)).unwrap();
        if !reaches_the_device {
            assert!(!ctx.pipeline_cache_loaded(), "{what}: loaded");
        }
        assert!(ctx.pipeline_cache().is_some(), "{what}: no cache at all");
        let ctx = kernels_work(ctx);
        ctx.check(what).unwrap_or_else(|e| panic!("{what}: {e}"));
        drop(ctx);
        match file.load() {
            Loaded::Data(d) => assert!(d.starts_with(b"WGPUPLCH"), "{what}"),
            other => panic!("{what}: the file was not replaced by a good one: {other:?}"),
        }
        eprintln!("{what}: ignored, pipelines built, replaced by a good cache");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The directory Mesa's shader cache uses in this process, so that a child with another HOME
/// keeps using it (a cold Mesa cache only makes the child slower).
fn mesa_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MESA_SHADER_CACHE_DIR") {
        return Some(d.into());
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Some(Path::new(&x).join("mesa_shader_cache"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/mesa_shader_cache"))
}

/// `gpu-train train --device gpu` for one backprop step with `cache_dir` as GPU_TRAIN_CACHE_DIR
/// (None: unset) and HOME and XDG_CACHE_HOME inside `root`; the run folder too.
fn train_in(root: &Path, cache_dir: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-train"));
    cmd.args([
        "train", "--device", "gpu", "--grad", "backprop", "--iters", "1",
    ])
    .args(["--check-every", "0", "--quiet", "--out"])
    .arg(root.join("run"))
    .env("HOME", root.join("home"))
    .env("XDG_CACHE_HOME", root.join("xdg"));
    match cache_dir {
        Some(d) => cmd.env(gpu_train::gpu::CACHE_DIR_ENV, d),
        None => cmd.env_remove(gpu_train::gpu::CACHE_DIR_ENV),
    };
    if let Some(m) = mesa_cache_dir() {
        cmd.env("MESA_SHADER_CACHE_DIR", m);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir` whose name says it is a pipeline cache, or under a gpu-train folder.
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() && name != "run" {
            if name == "gpu-train" {
                out.push(p.clone());
            }
            out.extend(cache_files(&p));
        } else if name.contains("pipeline_cache") {
            out.push(p);
        }
    }
    out
}

/// (3) `GPU_TRAIN_CACHE_DIR=off` (and empty) write nothing anywhere, checked on the binary
/// against a run without the variable, which writes `$XDG_CACHE_HOME/gpu-train/<key>` where the
/// adapter offers a cache; in process, no directory means no cache.
#[test]
fn off_writes_nothing() {
    // Whether the adapter offers a cache (a device without a cache directory never asks for it).
    let probe = scratch("probe");
    let Some(ctx) = open(Some(&probe)) else {
        return;
    };
    let key = key_of(&ctx).filter(|_| offers_cache(&ctx));
    drop(ctx);
    let _ = std::fs::remove_dir_all(&probe);
    let ctx = open(None).unwrap();
    assert!(ctx.pipeline_cache().is_none() && ctx.pipeline_cache_path().is_none());
    assert!(!ctx
        .device()
        .features()
        .contains(wgpu::Features::PIPELINE_CACHE));
    assert!(!ctx.save_pipeline_cache().unwrap());
    drop(ctx);
    assert_eq!(
        gpu_train::gpu::pipeline_cache::dir_from(Some("off".into()), None, None),
        None
    );

    for value in ["off", ""] {
        let root = scratch(&format!("off-{}", value.len()));
        train_in(&root, Some(value));
        assert_eq!(
            cache_files(&root),
            Vec::<PathBuf>::new(),
            "GPU_TRAIN_CACHE_DIR={value:?} wrote a cache"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    let root = scratch("on");
    train_in(&root, None);
    let want: Vec<PathBuf> = match &key {
        Some(k) => vec![
            root.join("xdg/gpu-train"),
            root.join("xdg/gpu-train").join(k),
        ],
        None => Vec::new(),
    };
    assert_eq!(cache_files(&root), want);
    let _ = std::fs::remove_dir_all(&root);
}

/// (4) What the binary says about a bad cache: one line per warning (wgpu's validation error
/// of a cache made for another device spans six), a cache directory that is a file or a device
/// named as such with the variable to change (not "File exists (os error 17)", not "writable by
/// other users" for /dev/full's 0666), and the run still succeeds.
#[test]
fn cache_warnings_are_one_line_and_name_the_problem() {
    let probe = scratch("warn-probe");
    let Some(ctx) = open(Some(&probe)) else {
        return;
    };
    let Some(key) = key_of(&ctx).filter(|_| offers_cache(&ctx)) else {
        eprintln!(
            "{} offers no pipeline cache: nothing to warn about",
            ctx.describe()
        );
        return;
    };
    drop(ctx);
    let warnings = |out: &std::process::Output| -> Vec<String> {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<String> = stderr.lines().map(str::to_string).collect();
        assert!(
            lines.iter().all(|l| l.starts_with("warning: ")),
            "a warning over several lines:\n{stderr}"
        );
        lines
    };

    // A cache made for another device: wgpu's own (multi-line) error, one warning line.
    // Each run in a root of its own (a run folder is not reused); the cache directory shared.
    let root = scratch("warn-foreign");
    let roots: Vec<PathBuf> = (0..4).map(|i| root.join(format!("r{i}"))).collect();
    let dir = root.join("cache");
    train_in(&roots[0], Some(dir.to_str().unwrap()));
    let file = PipelineCacheFile::named(&dir, &key).unwrap();
    let Loaded::Data(mut data) = file.load() else {
        panic!("the first run left no cache in {}", dir.display());
    };
    data[23] ^= 0x5a; // wgpu's header: the vendor id's low byte
    file.store(&data).unwrap();
    let lines = warnings(&train_in(&roots[1], Some(dir.to_str().unwrap())));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("did not accept it") && lines[0].contains("device); ignored"),
        "{lines:?}"
    );

    // The directory is a file.
    let plain = root.join("plain-file");
    std::fs::write(&plain, b"not a directory").unwrap();
    let lines = warnings(&train_in(&roots[2], Some(plain.to_str().unwrap())));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("{} is a file, not a directory", plain.display()))
            && lines[0].contains("GPU_TRAIN_CACHE_DIR")
            && !lines[0].contains("os error"),
        "{lines:?}"
    );
    assert_eq!(std::fs::read(&plain).unwrap(), b"not a directory");

    // The directory is a device.
    if Path::new("/dev/full").exists() {
        let lines = warnings(&train_in(&roots[3], Some("/dev/full")));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("/dev/full is a character device, not a directory")
                && !lines[0].contains("writable by other users"),
            "{lines:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&probe);
}
