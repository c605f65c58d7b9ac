"""The Python package's calls on "gpu" against "cpu", one sitting: a `gradient` and a
`numerical_gradient` call of the chapter's 784-50-10 net at batch 100 (medians), their ratio,
and each device's distance from the float64 NumPy net (python/tests/numpy_net.py, whose own
numerical gradient takes 15 s to 3 min on 2 cores, with the load). Run from the repository root after
`pip install ./python`: python python/examples/device_figures.py
"""

import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import numpy_net as ref  # noqa: E402
from gpu_train.book import TwoLayerNet, load_mnist  # noqa: E402


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_seconds(f, n):
    f()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    print(f"CPU {cpu_model()} ({os.cpu_count()} logical), load {os.getloadavg()[0]:.2f}")
    (x, t), _ = load_mnist(normalize=True, one_hot_label=True)
    pick = np.random.default_rng(0).choice(len(x), 100)
    xb, tb = x[pick], t[pick]
    nets = {d: TwoLayerNet(784, 50, 10, device=d, seed=0) for d in ("cpu", "gpu")}
    for d, net in nets.items():
        print(f"{d}: {net.device}")
    params = {k: v.copy() for k, v in nets["cpu"].params.items()}
    start = time.perf_counter()
    want = ref.numerical_gradient(params, xb, tb)
    print(f"NumPy float64 numerical gradient: {time.perf_counter() - start:.1f} s")
    for name, repeats in (("gradient", 20), ("numerical_gradient", 5)):
        took = {}
        for d, net in nets.items():
            f = getattr(net, name)
            took[d] = median_seconds(lambda: f(xb, tb), repeats)
            g = f(xb, tb)
            errs = {k: np.linalg.norm(g[k] - want[k]) / np.linalg.norm(want[k]) for k in want}
            per = " ".join(f"{k} {v:.1e}" for k, v in errs.items())
            print(f"{name} on {d}: {took[d] * 1e3:.2f} ms (engine {net.last_engine_seconds * 1e3:.2f}"
                  f" ms); vs NumPy f64: max {max(errs.values()):.2e} ({per})")
        print(f"{name}: gpu / cpu = {took['gpu'] / took['cpu']:.1f}")
    for d, net in nets.items():
        p_err = np.abs(net.predict(xb) - ref.forward(params, xb)).max()
        l_err = abs(net.loss(xb, tb) - ref.loss(params, xb, tb))
        start = time.perf_counter()
        acc = net.accuracy(x, t)
        print(f"{d}: predict within {p_err:.1e}, loss within {l_err:.1e} of f64; accuracy over "
              f"{len(x)} rows {time.perf_counter() - start:.2f} s ({acc:.4f})")


if __name__ == "__main__":
    main()
