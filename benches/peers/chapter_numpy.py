#!/usr/bin/env python3
"""The chapter's own way, in NumPy: the peer that `gpu-train bench --peer numpy` times.

Chapter 4 of "Deep Learning from Scratch" trains TwoLayerNet (784-H-10, sigmoid, softmax,
cross entropy with a 1e-7 inside the log) with `numerical_gradient`: every element of every
W/b is perturbed by +-h in place and the whole batch loss is re-run, two loss evaluations per
parameter. This file re-writes that code as the chapter has it (f64, np.nditer over each
array), plus one backprop step with the formulas of the chapter's TwoLayerNet.gradient, so
the Rust engine can be compared with it on this machine.

The data are random but shaped like MNIST (seeded; about 19% nonzero pixels in [0, 1], the
rest zero; one-hot labels), so no dataset is needed: the cost of both steps does not depend
on the pixel values.

    python3 chapter_numpy.py --what numerical --batch 100 --hidden 50
    python3 chapter_numpy.py --what backprop --repeat 20

Prints one JSON line: {"peer": "numpy", "what": ..., "median_s": ..., ...}. A numerical step
takes seconds (about 9 s for 784-50-10 at batch 100 on a 2-core machine), so it defaults to
one repeat and no warm-up (NumPy has no JIT: the first step is representative); backprop
defaults to 5 repeats after one warm-up.
"""

import argparse
import json
import platform
import statistics
import sys
import time

try:
    import numpy as np
except ImportError:
    print("chapter_numpy.py needs NumPy: pip install numpy", file=sys.stderr)
    sys.exit(2)

INPUT, CLASSES = 784, 10
TRAIN_SIZE = 2000  # random "training set" the batches are drawn from, like x_train
NONZERO = 0.19  # fraction of nonzero pixels in MNIST
LR = 0.1


# --- the chapter's functions -----------------------------------------------------------------

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_grad(x):
    return (1.0 - sigmoid(x)) * sigmoid(x)


def softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)  # against overflow
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    # one-hot labels -> label indices
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def numerical_gradient(f, x):
    h = 1e-4
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        idx = it.multi_index
        tmp_val = x[idx]
        x[idx] = float(tmp_val) + h
        fxh1 = f(x)  # f(x+h)
        x[idx] = tmp_val - h
        fxh2 = f(x)  # f(x-h)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val  # restore
        it.iternext()
    return grad


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, rng, weight_init_std=0.01):
        self.params = {
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }

    def predict(self, x):
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        return softmax(a2)

    def loss(self, x, t):
        y = self.predict(x)
        return cross_entropy_error(y, t)

    def numerical_gradient(self, x, t):
        # f ignores its argument: numerical_gradient perturbs the parameter arrays in place.
        loss_W = lambda W: self.loss(x, t)
        return {key: numerical_gradient(loss_W, self.params[key]) for key in ("W1", "b1", "W2", "b2")}

    def gradient(self, x, t):
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        grads = {}
        batch_num = x.shape[0]
        # forward
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        y = softmax(a2)
        # backward
        dy = (y - t) / batch_num
        grads["W2"] = np.dot(z1.T, dy)
        grads["b2"] = np.sum(dy, axis=0)
        da1 = np.dot(dy, W2.T)
        dz1 = sigmoid_grad(a1) * da1
        grads["W1"] = np.dot(x.T, dz1)
        grads["b1"] = np.sum(dz1, axis=0)
        return grads


# --- the bench -------------------------------------------------------------------------------

def mnist_shaped(rng, n):
    """n random images (about 19% nonzero pixels in [0, 1]) and one-hot labels."""
    x = rng.random((n, INPUT)) * (rng.random((n, INPUT)) < NONZERO)
    t = np.eye(CLASSES)[rng.integers(0, CLASSES, n)]
    return x, t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--what", choices=["numerical", "backprop"], default="numerical")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=None, help="timed steps (default: numerical 1, backprop 5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.batch < 1 or args.hidden < 1 or (args.repeat is not None and args.repeat < 1):
        ap.error("--batch, --hidden and --repeat must be at least 1")
    repeat = args.repeat if args.repeat is not None else (1 if args.what == "numerical" else 5)

    rng = np.random.default_rng(args.seed)
    x_train, t_train = mnist_shaped(rng, max(TRAIN_SIZE, args.batch))
    net = TwoLayerNet(INPUT, args.hidden, CLASSES, rng)
    grad_of = net.numerical_gradient if args.what == "numerical" else net.gradient

    def step():
        # One iteration of the chapter's training loop: draw a batch, gradient, update.
        batch_mask = rng.choice(x_train.shape[0], args.batch)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        grad = grad_of(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= LR * grad[key]

    if args.what == "backprop":
        step()  # warm-up: first-touch allocations; a numerical step is too long to spend twice
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)

    print(json.dumps({
        "peer": "numpy",
        "what": args.what,
        "batch": args.batch,
        "hidden": args.hidden,
        "params": sum(p.size for p in net.params.values()),
        "repeats": repeat,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
