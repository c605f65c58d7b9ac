"""Shared helpers: the devices under test, and the project's tolerances, each with its why."""

import os

import numpy as np
import pytest

import gpu_train.book as book

# predict, loss, accuracy against the float64 reference: the bound. The engine's f32
# forward pass rounds probabilities at ~1e-7 of themselves (<= 1), and -ln of them at ~1e-7.
VALUE_ATOL = 1e-6
# Gradients, per tensor, relative ||got - ref|| / ||ref||: the project's documented f32 gradient
# tolerance (src/tolerance.rs F32_NUMERICAL_VS_F64, used by src/check.rs for every device):
# measured 1.5e-7..5.3e-7 on 784-50-10, the bound 22x the worst.
GRAD_REL = 1e-5
# ...or every element within f32's epsilon (src/tolerance.rs GRADIENT_CHECK_ATOL): a tensor
# whose gradient is tiny by cancellation keeps f32's absolute, not relative, error.
GRAD_ATOL = float(np.finfo(np.float32).eps)


def devices():
    """The CPU always; the GPU (lavapipe on CI) too. With CI=true a GPU that cannot be had
    FAILS its tests (the constructor raises); elsewhere they are skipped with the reason."""
    return ["cpu"] + (["gpu"] if GPU_BUILT else [])


# Whether the package has its GPU path (src/gpu/host.rs: the engine's kernels over the caller's
# batch). On lavapipe every test runs on "gpu" too, the 784-50-10 numerical gradient included
# (batch 4: ~0.01 s on the GPU; the NumPy reference's own takes ~2 s).
GPU_BUILT = True


def make_net(device, *sizes, **kw):
    try:
        return book.TwoLayerNet(*sizes, device=device, **kw)
    except RuntimeError as e:
        if device == "gpu" and os.environ.get("CI") != "true":
            pytest.skip(f"no GPU here: {e}")
        raise


def assert_grads_close(got, ref, what):
    assert set(got) == {"W1", "b1", "W2", "b2"}
    for name in ref:
        g, r = got[name], ref[name]
        assert g.shape == r.shape and g.dtype == np.float64, (what, name, g.shape, g.dtype)
        rel = np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-300)
        worst = np.max(np.abs(g - r))
        assert rel <= GRAD_REL or worst <= GRAD_ATOL, (
            f"{what} {name}: relative {rel:.3e} (bound {GRAD_REL:g}), worst |err| {worst:.3e}")


# The folder of full MNIST CI points MNIST_DIR at, kept for the test that loads it; every other
# test runs on the embedded subset, whatever the environment says.
FULL_MNIST_DIR = os.environ.get("MNIST_DIR")


@pytest.fixture(autouse=True)
def _embedded_data_unless_asked(monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
