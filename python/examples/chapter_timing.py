"""Figures for docs/PERFORMANCE.md: the chapter's training loop from Python with
numerical_gradient (10,000 iterations on the embedded set, accuracy every epoch), its wall time
and final accuracies; the bindings' overhead per numerical_gradient call against the engine's
own time; and the same loop with a plain float64 NumPy net (python/tests/numpy_net.py), a few
steps timed and extrapolated. Run from the repository root after `pip install ./python`:

    python python/examples/chapter_timing.py [ITERS] [NUMPY_STEPS]
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy_net  # noqa: E402
from gpu_train.book import TwoLayerNet, load_mnist  # noqa: E402

iters = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
numpy_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)
np.random.seed(0)
network = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, device="cpu")
train_size, batch_size, learning_rate = x_train.shape[0], 100, 0.1
iter_per_epoch = max(train_size // batch_size, 1)
call_s, engine_s = [], []
start = time.perf_counter()
for i in range(iters):
    batch_mask = np.random.choice(train_size, batch_size)
    x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
    t0 = time.perf_counter()
    grad = network.numerical_gradient(x_batch, t_batch)
    call_s.append(time.perf_counter() - t0)
    engine_s.append(network.last_engine_seconds)
    for key in ("W1", "b1", "W2", "b2"):
        network.params[key] -= learning_rate * grad[key]
    loss = network.loss(x_batch, t_batch)
    if i % iter_per_epoch == 0:
        train_acc = network.accuracy(x_train, t_train)
        test_acc = network.accuracy(x_test, t_test)
        print(f"iter {i:5d} | loss {loss:.4f} | train acc, test acc | {train_acc:.4f}, {test_acc:.4f}")
wall = time.perf_counter() - start
train_acc, test_acc = network.accuracy(x_train, t_train), network.accuracy(x_test, t_test)
call, eng = np.median(call_s), np.median(engine_s)
print(f"{iters} iterations: {wall:.1f} s; final train acc {train_acc:.4f}, test acc {test_acc:.4f}")
print(f"numerical_gradient per call: median {call * 1e3:.3f} ms, engine {eng * 1e3:.3f} ms, "
      f"bindings overhead {(call - eng) * 1e6:.0f} us = {(call - eng) / eng * 100:.1f}% of the engine")

params = {k: 0.01 * np.random.randn(*v.shape) for k, v in network.params.items()}
t0 = time.perf_counter()
for _ in range(numpy_steps):
    batch_mask = np.random.choice(train_size, batch_size)
    g = numpy_net.numerical_gradient(params, x_train[batch_mask].astype(np.float64), t_train[batch_mask])
    for key in params:
        params[key] -= learning_rate * g[key]
per_step = (time.perf_counter() - t0) / numpy_steps
print(f"plain NumPy float64 net: {per_step:.1f} s a step ({numpy_steps} steps), "
      f"{iters} iterations extrapolated: {per_step * iters / 3600:.1f} h")
