"""The book's ``TwoLayerNet`` and ``load_mnist`` (Deep Learning from Scratch, chapter 4), with
the work done by the gpu-train engine. A chapter script changes only its two import lines::

    from gpu_train.book import load_mnist
    from gpu_train.book import TwoLayerNet

Precision: the engine computes in float32 (its fast path, CPU or GPU, the same arithmetic on
both) and hands back float64 arrays. Measured against a float64 NumPy net written from the chapter's formulas
(python/tests/numpy_net.py): ``predict`` and ``loss`` agree to at most 1.4e-7 and 1.8e-7, and
per tensor the gradients to a relative error of 4e-8 to 3.5e-7 (``numerical_gradient``) and
4e-8 to 8.3e-7 (``gradient``) of the float64 numerical gradient, on 784-50-10, 784-1-10 and
64-7-26 nets at batches 1 to 9 (the project's gradient tolerance is 1e-5). The numerical gradient is the book's
central difference at h = 1e-4, computed by the engine's ``incremental`` strategy: each
sample's loss *change* is computed directly, which in float32 keeps its digits, where
subtracting two float32 losses would not.
"""

import sys

import numpy as np

from . import _native

__all__ = ["TwoLayerNet", "load_mnist"]

_NAMES = ("W1", "b1", "W2", "b2")


class TwoLayerNet:
    """The book's two-layer net: sigmoid hidden layer, softmax output, cross entropy loss
    (with the book's 1e-7 inside the log).

    ``params`` is a plain dict of float64 arrays ``W1`` (input, hidden), ``b1`` (hidden,),
    ``W2`` (hidden, output), ``b2`` (output,). Read, replace or update them in place as the
    book's loop does (``network.params[key] -= learning_rate * grad[key]``): every method reads
    their current values.

    ``device``: ``"cpu"``; ``"gpu"``, the engine's WGSL kernels through wgpu on any adapter
    (Vulkan, Metal, DX12, GL; software ones such as Mesa's lavapipe included; raises
    ``RuntimeError`` with the reason when there is none); or ``"auto"``: a hardware GPU when
    there is one, else the CPU (as the CLI's ``--device auto``, a software adapter is not
    picked: it is far slower than the CPU path), saying its choice in ``device`` and
    ``device_reason``, and in one line on stderr. A process opens its GPU once, on first use,
    and every net shares it.
    ``seed``: None draws the weights from NumPy's global generator as the book does (so
    ``np.random.seed`` makes a script repeatable); an integer uses the engine's seeded
    generator, the same initial net as ``gpu-train train --seed N``.

    The engine computes in float32; see the module's docstring for its measured distance from
    the float64 gradient. Errors are Python exceptions: a wrong shape, dtype or a NaN raises
    ``ValueError`` naming the argument, the shape given and the one expected.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *,
                 device="auto", seed=None):
        self._engine = _native.Engine(input_size, hidden_size, output_size, device)
        self.device = self._engine.device
        self.device_reason = self._engine.device_reason
        if device == "auto":
            print(f"gpu_train: {self.device_reason} -> {self.device}", file=sys.stderr)
        if seed is None:
            std = float(weight_init_std)
            # Checked by the engine first: the same rule as for a seed.
            self._engine.init_params(std, 0)
            self.params = {
                "W1": std * np.random.randn(input_size, hidden_size),
                "b1": np.zeros(hidden_size),
                "W2": std * np.random.randn(hidden_size, output_size),
                "b2": np.zeros(output_size),
            }
        else:
            self.params = dict(self._engine.init_params(float(weight_init_std), int(seed)))

    def predict(self, x):
        """softmax(sigmoid(x W1 + b1) W2 + b2), float64 of shape (batch, output)."""
        return self._engine.predict(self.params, x)

    def loss(self, x, t):
        """The mean cross entropy of the batch; ``t`` one-hot rows or integer labels."""
        return self._engine.loss(self.params, x, t)

    def accuracy(self, x, t):
        """The share of rows whose largest output is the label (``t`` one-hot or labels)."""
        correct, rows = self._engine.correct(self.params, x, t)
        return correct / float(rows)

    def numerical_gradient(self, x, t):
        """The book's numerical gradient (central difference, h = 1e-4) of ``loss(x, t)`` with
        respect to every parameter: a dict of float64 arrays shaped as ``params``."""
        return self._engine.numerical_gradient(self.params, x, t)

    def gradient(self, x, t):
        """The gradient by backpropagation (of the loss as written, 1e-7 included): a dict of
        float64 arrays shaped as ``params``."""
        return self._engine.gradient(self.params, x, t)

    def save(self, path, iteration=0):
        """Writes ``params`` to ``path`` as the safetensors checkpoint the CLI writes (f64,
        atomically): ``gpu-train eval --weights PATH`` and ``predict --weights PATH`` read it."""
        w1, w2 = np.shape(self.params["W1"]), np.shape(self.params["W2"])
        if len(w1) != 2 or len(w2) != 2:
            raise ValueError(f"params['W1'], params['W2']: shapes {w1}, {w2}, expected 2-D")
        _native.save_checkpoint(str(path), self.params, w1[0], w1[1], w2[1], iteration)

    @classmethod
    def load(cls, path, *, device="auto"):
        """A net with the parameters of a checkpoint (one the CLI wrote, or ``save``)."""
        params, n_in, n_hidden, n_out, _ = _native.load_checkpoint(str(path))
        net = cls(n_in, n_hidden, n_out, device=device, seed=0)
        net.params = dict(params)
        return net

    @property
    def last_engine_seconds(self):
        """Seconds the engine itself spent on the last call (after checks and conversions)."""
        return self._engine.last_engine_seconds


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, dir=None):
    """The book's ``load_mnist``: ``(x_train, t_train), (x_test, t_test)``.

    The data: the folder ``dir`` of the four MNIST IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
    optionally ``.gz``), else the folder in the ``MNIST_DIR`` environment variable, else the
    subset embedded in the package (the first 30,000 training and 5,000 test images). It never
    downloads; a missing or broken folder raises ``OSError`` naming it and the files expected.

    ``normalize``: float32 pixels in [0, 1] (else uint8 0..255); ``flatten``: rows of 784
    (else (N, 1, 28, 28)); ``one_hot_label``: labels as one-hot float64 rows (else uint8).
    """
    raw = _native.load_mnist_raw(None if dir is None else str(dir))
    rows, cols, classes = raw["rows"], raw["cols"], raw["classes"]

    def images(a):
        if normalize:
            a = a.astype(np.float32) / 255.0
        return a if flatten else a.reshape(-1, 1, rows, cols)

    def labels(t):
        if one_hot_label:
            one_hot = np.zeros((t.size, classes))
            one_hot[np.arange(t.size), t] = 1
            return one_hot
        return t

    return ((images(raw["train_images"]), labels(raw["train_labels"])),
            (images(raw["test_images"]), labels(raw["test_labels"])))
