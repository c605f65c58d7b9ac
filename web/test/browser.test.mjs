// The page's browser test (run by .ci/web.sh): Debian's Chromium, headless, driven by
// playwright-core, against the page served on 127.0.0.1 from web/dist.
//
// 1. On the browser's WebGPU adapter (SwiftShader when headless): 300 numerical iterations
//    from the URL, then 1,000 backprop iterations from the form; each evaluation's losses
//    against `gpu-train train --device cpu` natively (same seed and data), every gradient check
//    within the page's bound of the f64 reference, no error or warning in the console, a
//    drawn digit classified, a screenshot kept.
// 2. WebGPU off: the same 300 numerical iterations run on the wasm CPU path, and the page says so.
// 3. Hostile: a WebGPU adapter whose device creation fails, and a device lost mid-run: the
//    page falls back to, or continues on, the CPU with a clear message and trains again.
//
// Environment: GPU_TRAIN_BIN (the native binary, default target/release/gpu-train),
// GPU_TRAIN_ARTIFACTS (where screenshots go, default target/ci-artifacts), CHROMIUM
// (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const bin = process.env.GPU_TRAIN_BIN || path.join(root, 'target/release/gpu-train');
const artifacts = path.resolve(root, process.env.GPU_TRAIN_ARTIFACTS || 'target/ci-artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// The background-networking flags: this network refuses outside connections.
const QUIET = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic', '--disable-default-apps'];
const WEBGPU = ['--enable-unsafe-webgpu'];
const RUN_MS = 20 * 60 * 1000;
const cpuModel = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1];
const figures = [];
const seconds = {};
// One row of the figures: the training seconds of the two runs (the library's clock, the same
// for the CLI and the page: evaluations included), and ratios to the native CPU's.
function figure(label, numericalFinal, backpropFinal, extra = '') {
  seconds[label] = [numericalFinal?.seconds, backpropFinal?.seconds];
  const base = seconds['native cpu'];
  const cell = (k) => (seconds[label][k] == null ? 'not run'
    : `${seconds[label][k].toFixed(2)} s (${(seconds[label][k] / base[k]).toFixed(1)}x native cpu)`);
  figures.push(`${label}: 300 numerical ${cell(0)}, 1000 backprop ${cell(1)}${extra}`);
}
let failures = 0;

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function serve() {
  const port = await freePort();
  const server = spawn('python3', [path.join(root, 'web/server.py'), '--port', String(port),
    '--directory', path.join(root, 'web/dist')], { stdio: 'inherit' });
  for (let k = 0; k < 100; k++) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (up) return { server, base: `http://127.0.0.1:${port}/` };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('web/server.py did not start');
}

// The page trains on the embedded subset, so the native run must too: CI's MNIST_DIR (full
// MNIST, for the other tests) is left out of its environment.
function embeddedOnly() {
  const env = { ...process.env };
  delete env.MNIST_DIR;
  return env;
}

// The native CPU path's records for the same settings: the reference the page is held to.
function native(grad, iters, device = 'cpu') {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'gpu-train-native-'));
  const t0 = Date.now();
  const text = execFileSync(bin, ['train', '--device', device, '--grad', grad, '--iters', String(iters),
    '--batch', '100', '--lr', '0.1', '--seed', '0', '--json', '--out', out, '--overwrite'],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], env: embeddedOnly() });
  const seconds = (Date.now() - t0) / 1000;
  fs.rmSync(out, { recursive: true, force: true });
  const lines = text.trim().split('\n').map((l) => JSON.parse(l));
  return { records: lines.filter((l) => !l.final), final: lines.find((l) => l.final), seconds };
}

async function browser(flags, init) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpu-train-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath, headless: true, args: [...QUIET, ...flags] });
  const page = ctx.pages()[0] || await ctx.newPage();
  const console_ = [];
  page.on('console', (m) => console_.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => console_.push({ type: 'pageerror', text: e.message }));
  if (init) await page.addInitScript(init);
  return { ctx, page, console: console_, close: async () => { await ctx.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

// Waits for run number `run` of the page (1: the first) to end.
async function finished(page, run = 1) {
  await page.waitForFunction((n) => window.gpuTrain && window.gpuTrain.done && (window.gpuTrain.run ?? 1) >= n,
    run, { timeout: RUN_MS, polling: 250 });
  return page.evaluate(() => window.gpuTrain);
}

async function check(name, body) {
  const t0 = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

// Each evaluation's losses against the native run's, within the documented tolerance; the
// first few pairs and the worst error are printed either way.
function compareRecords(label, got, want, tol) {
  assert.equal(got.length, want.length, `${label}: ${got.length} evaluations, native has ${want.length}`);
  let worst = { err: 0 };
  const rows = [];
  got.forEach((g, k) => {
    const w = want[k];
    assert.equal(g.iteration, w.iteration, `${label}: evaluation ${k} at iteration ${g.iteration}, native ${w.iteration}`);
    for (const key of ['batch_loss', 'train_loss', 'test_loss']) {
      if (w[key] === null) { assert.equal(g[key], null, `${label}: ${key} at ${w.iteration}`); continue; }
      const err = Math.abs(g[key] - w[key]) / Math.abs(w[key]);
      rows.push(`${key}@${w.iteration} (native ${w[key].toFixed(9)}, page ${g[key].toFixed(9)})`);
      if (err > worst.err) worst = { err, key, iteration: w.iteration };
    }
  });
  console.log(`     ${label}: ${rows.slice(0, 3).join(', ')}; worst relative error ${worst.err.toExponential(2)} ` +
    `(${worst.key}@${worst.iteration}); bound ${tol.toExponential(0)}`);
  assert.ok(worst.err <= tol, `${label}: loss ${worst.key} at iteration ${worst.iteration} is ${worst.err} off the native CPU's (bound ${tol})`);
  return worst.err;
}

function assertChecks(label, checks, t) {
  assert.ok(checks.length >= 1, `${label}: no gradient check was made`);
  const worst = Math.max(...checks.map((c) => c.relative));
  for (const c of checks) {
    assert.ok(c.relative <= t.numerical_check_rel, `${label}: check at ${c.iteration}: ${c.relative} > ${t.numerical_check_rel}`);
    for (const tensor of c.tensors) {
      assert.ok(tensor.relative <= t.numerical_check_rel || tensor.max_abs <= t.check_atol,
        `${label}: check at ${c.iteration}: ${tensor.name} ${tensor.relative} relative, ${tensor.max_abs} absolute`);
    }
  }
  console.log(`     ${label}: ${checks.length} gradient checks, worst ${worst.toExponential(2)} (bound ${t.numerical_check_rel})`);
  return worst;
}

function noConsoleNoise(label, messages) {
  const bad = messages.filter((m) => ['error', 'warning', 'pageerror', 'assert'].includes(m.type));
  assert.deepEqual(bad, [], `${label}: the console has ${bad.length} errors or warnings`);
}

async function drawAndGuess(page) {
  await page.locator('#draw').scrollIntoViewIfNeeded();
  const box = await page.locator('#draw').boundingBox();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.15);
  await page.mouse.down();
  for (let k = 1; k <= 12; k++) await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * (0.15 + 0.7 * k / 12));
  await page.mouse.up();
  try {
    await page.waitForFunction(() => window.gpuTrain.prediction, null, { timeout: 10000 });
  } catch (e) {
    throw new Error(`no prediction after drawing; the page shows: ${await page.textContent('#top3')}`);
  }
  return page.evaluate(() => window.gpuTrain.prediction);
}

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  console.log(`CPU: ${cpuModel} (${os.cpus().length} threads); Chromium: ${execFileSync(executablePath, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()}`);
  const numerical = native('numerical', 300);
  const backprop = native('backprop', 1000);
  // The same runs natively on the GPU (lavapipe on CI): figures only, for the ratios.
  const lavapipe = [native('numerical', 300, 'gpu'), native('backprop', 1000, 'gpu')];
  figure('native cpu', numerical.final, backprop.final, `; start to first step ${numerical.final.startup_seconds.toFixed(2)} s`);
  figure('native gpu', ...lavapipe.map((r) => r.final), `; start to first step ${lavapipe[0].final.startup_seconds.toFixed(2)} s`);
  const { server, base } = await serve();
  try {
    await check('WebGPU: 300 numerical, 1000 backprop, against the native CPU path', async () => {
      const b = await browser(WEBGPU);
      try {
        const t0 = Date.now();
        await b.page.goto(`${base}?grad=numerical&iters=300&batch=100&lr=0.1&seed=0&device=webgpu&autostart=1`);
        const num = await finished(b.page);
        assert.equal(num.error, undefined, `the numerical run failed: ${num.error}`);
        assert.equal(num.device, 'webgpu', `trained on ${num.device}: ${num.fallback}`);
        assert.ok(num.adapter && num.adapter.backend === 'BrowserWebGpu', `adapter ${JSON.stringify(num.adapter)}`);
        assert.equal(num.fallback, null);
        const t = num.tolerances;
        compareRecords('numerical', num.records, numerical.records, t.loss_vs_native_cpu_rel);
        assertChecks('numerical', num.checks, t);
        const loadToDone = (Date.now() - t0) / 1000;
        // The second run from the form, as a reader would start it.
        await b.page.selectOption('select[name=grad]', 'backprop');
        await b.page.fill('input[name=iters]', '1000');
        await b.page.click('#train');
        const bp = await finished(b.page, 2);
        assert.equal(bp.error, undefined, `the backprop run failed: ${bp.error}`);
        assert.equal(bp.device, 'webgpu');
        compareRecords('backprop', bp.records, backprop.records, t.loss_vs_native_cpu_rel);
        assertChecks('backprop', bp.checks, t);
        figure('page webgpu', num.final, bp.final, `; page load to first step ${num.final.startup_seconds.toFixed(1)} s ` +
          `(to done ${loadToDone.toFixed(1)} s); adapter ${num.adapter.vendor} ${num.adapter.architecture} ` +
          `(the browser calls it a fallback adapter: ${num.adapter.is_fallback_adapter})`);
        const top = await drawAndGuess(b.page);
        assert.equal(top.length, 3, `top-3 of the drawing: ${JSON.stringify(top)}`);
        assert.equal(top[0][0], 1, `a vertical stroke read as ${JSON.stringify(top)}`);
        console.log(`     a drawn vertical stroke: top 3 ${JSON.stringify(top)}`);
        const shot = path.join(artifacts, 'web-webgpu.png');
        await b.page.screenshot({ path: shot, fullPage: true });
        console.log(`     screenshot: ${shot}`);
        noConsoleNoise('WebGPU runs', b.console);
      } finally { await b.close(); }
    });

    await check('WebGPU off: the same run on the wasm CPU path, and the page says so', async () => {
      const b = await browser(['--disable-gpu']);
      try {
        await b.page.goto(`${base}?grad=numerical&iters=300&batch=100&lr=0.1&seed=0&device=webgpu&autostart=1`);
        const r = await finished(b.page);
        assert.equal(r.error, undefined, `the run failed: ${r.error}`);
        assert.equal(r.device, 'cpu');
        assert.match(r.fallback, /WebGPU/);
        const shown = await b.page.textContent('#device');
        assert.match(shown, /^CPU \(wasm, SIMD128\): .*WebGPU/, `the page says: ${shown}`);
        console.log(`     the page says: ${shown}`);
        compareRecords('wasm cpu numerical', r.records, numerical.records, r.tolerances.loss_vs_native_cpu_rel);
        assertChecks('wasm cpu numerical', r.checks, r.tolerances);
        await b.page.selectOption('select[name=grad]', 'backprop');
        await b.page.fill('input[name=iters]', '1000');
        await b.page.click('#train');
        const bp = await finished(b.page, 2);
        assert.equal(bp.error, undefined, `the backprop run failed: ${bp.error}`);
        compareRecords('wasm cpu backprop', bp.records, backprop.records, r.tolerances.loss_vs_native_cpu_rel);
        figure('page wasm cpu', r.final, bp.final, `; page load to first step ${r.final.startup_seconds.toFixed(1)} s`);
        // The stop button: a long run, stopped after its first pause, ends interrupted and the
        // page trains again.
        await b.page.fill('input[name=iters]', '100000');
        await b.page.click('#train');
        await b.page.waitForFunction(() => /iteration [1-9]\d* \//.test(document.getElementById('status').textContent), null, { timeout: RUN_MS });
        await b.page.click('#stop');
        const stopped = await finished(b.page, 3);
        assert.equal(stopped.error, undefined, `the stopped run failed: ${stopped.error}`);
        assert.equal(stopped.final.ending, 'interrupted');
        assert.ok(stopped.final.iteration < 100000, `stopped at ${stopped.final.iteration}`);
        console.log(`     stop pressed: the run ended interrupted at iteration ${stopped.final.iteration}`);
        const shot = path.join(artifacts, 'web-cpu.png');
        await b.page.screenshot({ path: shot, fullPage: true });
        const bad = b.console.filter((m) => m.type === 'pageerror');
        assert.deepEqual(bad, []);
      } finally { await b.close(); }
    });

    await check('hostile: device creation fails, the page falls back to the CPU and trains', async () => {
      const b = await browser(WEBGPU, () => {
        GPUAdapter.prototype.requestDevice = () => Promise.reject(new DOMException('injected by the test: no device', 'OperationError'));
      });
      try {
        await b.page.goto(`${base}?grad=backprop&iters=30&autostart=1`);
        const r = await finished(b.page);
        assert.equal(r.error, undefined, `the run failed: ${r.error}`);
        assert.equal(r.device, 'cpu');
        assert.match(r.fallback, /could not open a device on the browser's WebGPU adapter: OperationError: injected by the test: no device$/);
        console.log(`     the page says: ${await b.page.textContent('#device')}`);
        assert.equal(r.final.ending, 'completed');
      } finally { await b.close(); }
    });

    await check('hostile: the device is lost mid-run, the page stops with a message and trains on the CPU', async () => {
      const b = await browser(WEBGPU, () => {
        const request = GPUAdapter.prototype.requestDevice;
        GPUAdapter.prototype.requestDevice = async function (...args) {
          const device = await request.apply(this, args);
          window.__testDevice = device;
          return device;
        };
      });
      try {
        await b.page.goto(`${base}?grad=backprop&iters=600&autostart=1`);
        await b.page.waitForFunction(() => /iteration [1-9]\d* \//.test(document.getElementById('status').textContent), null, { timeout: RUN_MS });
        await b.page.evaluate(() => window.__testDevice.destroy());
        const r = await finished(b.page);
        assert.ok(r.error, 'the run went on after its device was destroyed');
        const shown = await b.page.textContent('#error');
        assert.match(shown, /^The run stopped: .*WebGPU device is gone or broken/);
        console.log(`     the page says: ${shown}`);
        assert.equal(await b.page.inputValue('select[name=device]'), 'cpu');
        await b.page.fill('input[name=iters]', '30');
        await b.page.click('#train');
        const again = await finished(b.page, 2);
        assert.equal(again.error, undefined, `the CPU run after the loss failed: ${again.error}`);
        assert.equal(again.device, 'cpu');
        assert.equal(again.final.ending, 'completed');
      } finally { await b.close(); }
    });
  } finally {
    server.kill();
  }
  console.log(`figures (${cpuModel}):\n  ${figures.join('\n  ')}`);
  if (failures) {
    console.log(`${failures} browser test(s) FAILED`);
    process.exit(1);
  }
  console.log('browser tests: all passed');
}

main().catch((e) => { console.log(`FAIL: ${e.stack || e}`); process.exit(1); });
