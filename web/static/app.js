// The page's script: the form, the device, the charts and the drawing. The training itself
// (the loop, the gradient checks, the preparation of a drawing) is the library's, in
// pkg/gpu_train_web.js (web/src/lib.rs); this file only shows what it reports.
import init, { Data, Trainer, open_webgpu, parse_settings, tolerances } from './pkg/gpu_train_web.js';

const $ = (id) => document.getElementById(id);
const FILES = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
               't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'];

const state = {
  data: null, trainer: null, device: null, adapter: null, fallback: null,
  running: false, runs: 0, losses: [], records: [], checks: [], iters: 0, bound: 1e-6,
};
window.gpuTrain = { done: false };

// wgpu wraps a browser's exception as `JsValue(Name: message\n<stack>)`: keep the message.
function plain(message) {
  return String(message).replace(/JsValue\(([^\n)]*)[\s\S]*?\)/g, '$1');
}

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = !message;
}

function say(text) { $('status').textContent = text; }

async function fetchBytes(name) {
  const url = `data/${name}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: the server answered ${response.status}; build the page with bash web/serve.sh`);
  return new Uint8Array(await response.arrayBuffer());
}

// The device the reader asked for: WebGPU when the browser has it and a device opens, else
// the wasm CPU path, saying why.
async function openDevice(wish) {
  state.trainer = null; state.adapter = null; state.fallback = null;
  if (wish === 'webgpu') {
    if (!('gpu' in navigator)) {
      state.fallback = 'this browser has no WebGPU (navigator.gpu is missing: an old browser, ' +
        'a page not served from https or localhost, or WebGPU turned off)';
    } else {
      // The browser's own description of its adapter (wgpu's leaves the name empty on the web).
      const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) {
        state.fallback = 'this browser offers no WebGPU adapter (WebGPU is turned off, or it ' +
          'supports no GPU here)';
      } else {
        try {
          const gpu = await open_webgpu();
          const info = adapter.info || {};
          state.adapter = { ...JSON.parse(gpu.info()), vendor: info.vendor, architecture: info.architecture,
            device: info.device, browser_description: info.description, is_fallback_adapter: !!info.isFallbackAdapter };
          state.trainer = Trainer.on_webgpu(gpu, state.data);
        } catch (e) {
          state.fallback = `WebGPU could not be used: ${plain(e.message)}`;
        }
      }
    }
  }
  if (!state.trainer) state.trainer = Trainer.on_cpu(state.data);
  state.device = state.trainer.device();
  showDevice();
}

function showDevice() {
  const el = $('device');
  if (state.adapter) {
    const a = state.adapter, l = a.limits;
    const name = a.name || [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || 'an adapter';
    el.textContent = `WebGPU: ${name}${a.is_fallback_adapter ? ' (the browser calls it a fallback adapter)' : ''}; storage buffers per stage ${l.max_storage_buffers_per_shader_stage}, ` +
      `largest binding ${(l.max_storage_buffer_binding_size / 2 ** 20).toFixed(0)} MiB, ` +
      `workgroup ${l.max_compute_invocations_per_workgroup} invocations`;
  } else if (state.fallback) {
    el.textContent = `CPU (wasm, SIMD128): ${state.fallback}. Training runs on this page's CPU path instead.`;
  } else {
    el.textContent = 'CPU (wasm, SIMD128), as asked.';
  }
}

function readForm() {
  const f = new FormData($('settings'));
  const q = new URLSearchParams();
  for (const key of ['grad', 'iters', 'batch', 'lr', 'seed', 'device']) q.set(key, String(f.get(key)).trim());
  return q.toString();
}

function fillForm(s) {
  const form = $('settings');
  for (const key of ['grad', 'iters', 'batch', 'lr', 'seed', 'device']) form.elements[key].value = s[key];
}

// ---- charts ----

function drawChart(canvas, series, opts) {
  const g = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 52, R = 10, T = 14, B = 26;
  g.clearRect(0, 0, W, H);
  g.font = '11px system-ui, sans-serif';
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => Number.isFinite(v) && (!opts.log || v > 0));
  if (opts.bound) ys.push(opts.bound);
  const xMax = Math.max(opts.xMax || 1, 1);
  let yMin = opts.yMin ?? Math.min(...ys), yMax = opts.yMax ?? Math.max(...ys);
  if (!ys.length) { yMin = opts.log ? 1e-8 : 0; yMax = 1; }
  if (opts.log) { yMin = Math.log10(yMin) - 0.3; yMax = Math.log10(yMax) + 0.3; }
  if (yMax - yMin < 1e-12) yMax = yMin + 1;
  const fy = (v) => T + (H - T - B) * (1 - ((opts.log ? Math.log10(v) : v) - yMin) / (yMax - yMin));
  const fx = (x) => L + (W - L - R) * x / xMax;
  g.strokeStyle = '#bbb'; g.fillStyle = '#555'; g.lineWidth = 1;
  g.strokeRect(L, T, W - L - R, H - T - B);
  for (let k = 0; k <= 4; k++) {
    const v = yMin + (yMax - yMin) * k / 4, y = T + (H - T - B) * (1 - k / 4);
    const label = opts.log ? `1e${v.toFixed(1)}` : v.toFixed(opts.digits ?? 2);
    g.fillText(label, 4, y + 4);
  }
  g.fillText('0', L, H - 8);
  g.fillText(`${xMax} iterations`, W - R - 80, H - 8);
  if (opts.bound) {
    g.setLineDash([5, 4]); g.strokeStyle = '#a00';
    g.beginPath(); g.moveTo(L, fy(opts.bound)); g.lineTo(W - R, fy(opts.bound)); g.stroke();
    g.setLineDash([]);
  }
  series.forEach((s, i) => {
    g.strokeStyle = s.color; g.fillStyle = s.color; g.beginPath();
    s.points.forEach(([x, y], k) => {
      if (!Number.isFinite(y) || (opts.log && y <= 0)) return;
      if (s.dots) { g.fillRect(fx(x) - 2.5, fy(y) - 2.5, 5, 5); return; }
      if (k === 0) g.moveTo(fx(x), fy(y)); else g.lineTo(fx(x), fy(y));
    });
    if (!s.dots) g.stroke();
    g.fillText(s.label, L + 8 + i * 120, T + 14);
  });
}

let drawPending = false;
function redraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    const xMax = state.iters;
    drawChart($('loss-chart'), [{ label: 'batch loss', color: '#1f77b4', points: state.losses }], { xMax });
    drawChart($('acc-chart'), [
      { label: 'train acc', color: '#2ca02c', points: state.records.map((r) => [r.iteration, r.train_acc]) },
      { label: 'test acc', color: '#d62728', points: state.records.map((r) => [r.iteration, r.test_acc]) },
    ], { xMax, yMin: 0, yMax: 1 });
    drawChart($('check-chart'), [{ label: 'vs f64 reference', color: '#9467bd', dots: true,
      points: state.checks.map((c) => [c.iteration, c.relative]) }], { xMax, log: true, bound: state.bound });
  });
}

// ---- a run ----

function onEvent(kind, json) {
  const v = JSON.parse(json);
  if (kind === 'losses') {
    // Every step's loss is kept (the chapter's train_loss_list); the chart thins them.
    const stride = Math.max(1, Math.floor(state.iters / 2000));
    v.losses.forEach((l, k) => { if ((v.first + k) % stride === 0) state.losses.push([v.first + k, l]); });
  } else if (kind === 'eval') {
    state.records.push(v);
    say(`iteration ${v.iteration}: train loss ${v.train_loss.toFixed(4)}, train acc ${(100 * v.train_acc).toFixed(2)}%, test acc ${(100 * v.test_acc).toFixed(2)}%`);
  } else if (kind === 'check') {
    state.checks.push(v);
  } else if (kind === 'progress') {
    const rate = v.iteration / ((performance.now() - state.started) / 1000);
    say(`iteration ${v.iteration} / ${state.iters} on ${state.device} (${rate.toFixed(1)} it/s)`);
  }
  redraw();
}

async function train() {
  if (state.running) return;
  showError('');
  const query = readForm();
  let settings;
  try { settings = JSON.parse(parse_settings(query)); } catch (e) { showError(e.message); return; }
  history.replaceState(null, '', `?${settings.query}`);
  if (settings.device !== state.device) await openDevice(settings.device);
  Object.assign(state, { running: true, losses: [], records: [], checks: [], iters: settings.iters, started: performance.now() });
  state.runs += 1;
  window.gpuTrain = { done: false, run: state.runs, device: state.device };
  $('train').disabled = true; $('stop').disabled = false;
  say(`training on ${state.device}: evaluating iteration 0 (the first WebGPU step compiles the kernels)...`);
  const base = { run: state.runs, device: state.device, adapter: state.adapter, fallback: state.fallback, settings,
                 data: state.dataInfo, tolerances: JSON.parse(tolerances()) };
  try {
    const fin = JSON.parse(await state.trainer.train(settings.query, onEvent));
    say(`${fin.ending} after ${fin.iteration} iterations on ${state.device}: test acc ${(100 * fin.test_acc).toFixed(2)}%, ` +
        `${fin.iterations_per_second.toFixed(1)} it/s; gradient checks: ${fin.checks.passed}, worst ${fin.checks.worst?.toExponential(1)}`);
    window.gpuTrain = { ...base, done: true, records: state.records, checks: state.checks, final: fin };
  } catch (e) {
    const message = plain(e && e.message ? e.message : e);
    showError(`The run stopped: ${message}`);
    window.gpuTrain = { ...base, done: true, error: message, records: state.records, checks: state.checks };
    if (state.device === 'webgpu') {
      // A failed WebGPU run (a lost device, a driver error) leaves the page usable on the CPU.
      state.fallback = `the WebGPU run failed (${message})`;
      state.adapter = null;
      state.trainer = Trainer.on_cpu(state.data);
      state.device = 'cpu';
      $('settings').elements.device.value = 'cpu';
      showDevice();
    }
  } finally {
    state.running = false;
    $('train').disabled = false; $('stop').disabled = true;
    redraw();
  }
}

// ---- the drawing ----

function setUpDrawing() {
  const canvas = $('draw'), g = canvas.getContext('2d', { willReadFrequently: true });
  const clear = () => { g.fillStyle = '#fff'; g.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let last = null;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  canvas.addEventListener('pointerdown', (e) => { last = at(e); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener('pointermove', (e) => {
    if (!last) return;
    const p = at(e);
    g.strokeStyle = '#000'; g.lineWidth = 20; g.lineCap = 'round';
    g.beginPath(); g.moveTo(...last); g.lineTo(...p); g.stroke();
    last = p;
  });
  canvas.addEventListener('pointerup', () => { last = null; guess(); });
  $('clear').addEventListener('click', () => { clear(); $('top3').innerHTML = '<li>draw a digit</li>'; });
}

function guess() {
  const canvas = $('draw');
  const img = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  const top3 = $('top3');
  try {
    const r = JSON.parse(state.trainer.predict(img.width, img.height, new Uint8Array(img.data.buffer)));
    top3.innerHTML = '';
    for (const [k, p] of r.top) {
      const li = document.createElement('li');
      li.textContent = `${k}: ${(100 * p).toFixed(1)}%`;
      top3.appendChild(li);
    }
    const seen = $('seen').getContext('2d'), px = seen.createImageData(28, 28);
    r.pixels.forEach((v, i) => { px.data.set([v, v, v, 255], 4 * i); });
    const tmp = new OffscreenCanvas(28, 28);
    tmp.getContext('2d').putImageData(px, 0, 0);
    seen.imageSmoothingEnabled = false;
    seen.drawImage(tmp, 0, 0, 112, 112);
    window.gpuTrain.prediction = r.top;
  } catch (e) {
    top3.innerHTML = '';
    const li = document.createElement('li');
    li.textContent = e.message;
    top3.appendChild(li);
  }
}

async function main() {
  await init();
  state.bound = JSON.parse(tolerances()).numerical_check_rel;
  $('check-bound').textContent = state.bound.toExponential(0);
  let settings;
  try {
    settings = JSON.parse(parse_settings(location.search));
  } catch (e) {
    showError(`${e.message}. The page starts with its defaults instead.`);
    settings = JSON.parse(parse_settings(''));
  }
  fillForm(settings);
  setUpDrawing();
  $('settings').addEventListener('submit', (e) => { e.preventDefault(); train(); });
  $('stop').addEventListener('click', () => { state.trainer.stop(); say('stopping at the next pause...'); });
  const t0 = performance.now();
  const files = await Promise.all(FILES.map(fetchBytes));
  state.data = new Data(...files);
  const bytes = files.reduce((n, f) => n + f.length, 0);
  const seconds = (performance.now() - t0) / 1000;
  state.dataInfo = { describe: state.data.describe(), bytes, load_seconds: seconds };
  $('data').textContent = `Data: the embedded MNIST subset, ${state.data.describe()}, ` +
    `${(bytes / 1e6).toFixed(1)} MB from this server, loaded and checked in ${seconds.toFixed(2)} s.`;
  await openDevice(settings.device);
  $('train').disabled = false;
  window.gpuTrain = { done: false, ready: true, device: state.device, adapter: state.adapter, fallback: state.fallback };
  redraw();
  if (settings.autostart) await train();
}

main().catch((e) => {
  showError(`The page could not start: ${e.message || e}`);
  window.gpuTrain = { done: true, error: String(e.message || e) };
});
