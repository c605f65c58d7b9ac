"""gpu_train.book against the NumPy reference written from the chapter (numpy_net.py)."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import numpy_net as ref
from conftest import VALUE_ATOL, assert_grads_close, devices, make_net
from gpu_train.book import TwoLayerNet, load_mnist

# (input, hidden, output, batch): the chapter's sizes and odd ones (hidden 1 and 7, batch 1,
# input 64, output 26).
SIZES = [(784, 50, 10, 4), (784, 1, 10, 3), (64, 7, 26, 1), (64, 7, 26, 9), (64, 1, 26, 5)]


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(normalize=True, one_hot_label=True)


def batch_for(sizes, mnist, rng):
    """Pixels of the embedded set for input 784 (labels from it); random floats otherwise."""
    n_in, _, n_out, rows = sizes
    if n_in == 784 and n_out == 10:
        (x, t), _ = mnist
        pick = rng.choice(len(x), rows)
        return x[pick], t[pick]
    return rng.standard_normal((rows, n_in)), rng.integers(0, n_out, rows)


def random_params(net, rng, std=0.3):
    """Weights big enough that the net is not near-uniform (the init's 0.01 hides mistakes)."""
    for name, v in net.params.items():
        net.params[name] = std * rng.standard_normal(v.shape)
    return {k: v.copy() for k, v in net.params.items()}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "-".join(map(str, s)))
def test_agrees_with_the_numpy_reference(device, sizes, mnist):
    rng = np.random.default_rng(sum(sizes))
    net = make_net(device, *sizes[:3], seed=1)
    params = random_params(net, rng)
    x, t = batch_for(sizes, mnist, rng)
    np.testing.assert_allclose(net.predict(x), ref.forward(params, x), rtol=0, atol=VALUE_ATOL)
    assert abs(net.loss(x, t) - ref.loss(params, x, t)) <= VALUE_ATOL
    assert abs(net.accuracy(x, t) - ref.accuracy(params, x, t)) <= VALUE_ATOL
    want = ref.numerical_gradient(params, x, t)
    assert_grads_close(net.numerical_gradient(x, t), want, f"{device} numerical {sizes}")
    assert_grads_close(net.gradient(x, t), want, f"{device} backprop {sizes}")


@pytest.mark.parametrize("device", devices())
def test_chapter_sizes_on_a_whole_split(device, mnist):
    """predict/loss/accuracy over 5,000 test images at the chapter's init and trained-like
    weights: every row's probabilities within the bound, the accuracy exactly."""
    (_, _), (x, t) = mnist
    net = make_net(device, 784, 50, 10, seed=0)
    params = {k: v.copy() for k, v in net.params.items()}
    for _ in range(2):
        np.testing.assert_allclose(net.predict(x), ref.forward(params, x), atol=VALUE_ATOL)
        assert abs(net.loss(x, t) - ref.loss(params, x, t)) <= VALUE_ATOL
        assert abs(net.accuracy(x, t) - ref.accuracy(params, x, t)) <= VALUE_ATOL
        params = random_params(net, np.random.default_rng(3), std=0.1)


@pytest.mark.parametrize("device", devices())
def test_in_place_edits_of_params_are_seen(device, mnist):
    rng = np.random.default_rng(7)
    net = make_net(device, 64, 7, 26, seed=2)
    x, t = rng.standard_normal((6, 64)), rng.integers(0, 26, 6)
    before = net.gradient(x, t)
    net.params["W1"] *= 3.0                  # in place, as the book's loop does
    net.params["b2"][:] = rng.standard_normal(26)
    net.params["W2"] = net.params["W2"] + 0.5  # replaced by a new array
    params = {k: v.copy() for k, v in net.params.items()}
    after = net.numerical_gradient(x, t)
    assert not np.allclose(after["W1"], before["W1"])
    assert_grads_close(after, ref.numerical_gradient(params, x, t), "after in-place edits")
    assert abs(net.loss(x, t) - ref.loss(params, x, t)) <= VALUE_ATOL


@pytest.mark.parametrize("device", devices())
def test_inputs_in_any_float_dtype_layout_and_label_form(device, mnist):
    (x, t), _ = mnist
    net = make_net(device, 784, 50, 10, seed=0)
    xb, tb = x[:20], t[:20]
    want = net.numerical_gradient(xb, tb)
    for x2, t2 in [(xb.astype(np.float64), tb), (np.asfortranarray(xb), tb),
                   (xb, tb.argmax(axis=1)), (xb, tb.argmax(axis=1).astype(np.uint8)),
                   (x[:40:2][:10].repeat(1, axis=0), None)]:
        if t2 is None:  # a strided slice
            x3 = x[:40][::2]
            np.testing.assert_array_equal(net.predict(x3), net.predict(np.ascontiguousarray(x3)))
            continue
        got = net.numerical_gradient(x2, t2)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    assert net.predict(xb[0]).shape == (10,)


@pytest.mark.parametrize("device", devices())
def test_two_threads_at_once_give_the_serial_results(device, mnist):
    """Two threads on one net, and a third on another net of the same device (on the GPU, the
    process's one device): each call's result is the one it gives alone, bit for bit."""
    (x, t), _ = mnist
    nets = [make_net(device, 784, 50, 10, seed=s) for s in (0, 1)]
    shared = nets[0]
    jobs = [(shared, x[:100], t[:100]), (shared, x[100:200], t[100:200]),
            (nets[1], x[200:300], t[200:300])]
    want = [n.numerical_gradient(xb, tb) for n, xb, tb in jobs]
    got = [None] * len(jobs)

    def work(i):
        for _ in range(5):
            n, xb, tb = jobs[i]
            got[i] = n.numerical_gradient(xb, tb)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for w, g in zip(want, got):
        for k in w:
            np.testing.assert_array_equal(g[k], w[k])


@pytest.mark.parametrize("device", devices())
def test_the_device_is_named_with_the_reason(device, capfd):
    net = make_net(device, 64, 7, 26, seed=0)
    assert net.device.startswith(device + " ") and net.device_reason == f'device="{device}"'
    assert capfd.readouterr().err == ""  # only "auto" says its choice
    auto = TwoLayerNet(64, 7, 26, device="auto", seed=0)
    assert auto.device_reason.startswith('device="auto": ')
    assert auto.device.split()[0] in ("cpu", "gpu")
    # The CLI's rule: a hardware GPU, never a software one (lavapipe is far slower than the CPU).
    if "llvmpipe" in auto.device_reason or "no hardware GPU" in auto.device_reason:
        assert auto.device.startswith("cpu")
    err = capfd.readouterr().err.splitlines()
    assert err == [f"gpu_train: {auto.device_reason} -> {auto.device}"], err


def test_without_an_adapter_gpu_raises_and_auto_picks_the_cpu():
    """In a fresh process (the device is opened once a process) whose adapter filter matches
    nothing: device="gpu" raises RuntimeError with the reason; "auto" computes on the CPU and
    says why."""
    code = """if True:
        import numpy as np
        from gpu_train.book import TwoLayerNet
        try:
            TwoLayerNet(64, 7, 26, device="gpu")
        except RuntimeError as e:
            print("RuntimeError:", e)
        net = TwoLayerNet(64, 7, 26, device="auto")
        print("auto:", net.device, "|", net.device_reason)
        print("loss:", net.loss(np.zeros((2, 64)), np.array([0, 1])))
    """
    env = dict(os.environ, GPU_TRAIN_ADAPTER="no-such-adapter-anywhere")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("RuntimeError:") and "no-such-adapter-anywhere" in lines[0], lines
    assert lines[1].startswith("auto: cpu f32") and "no-such-adapter-anywhere" in lines[1], lines
    assert lines[2].startswith("loss:"), lines


def test_load_mnist_has_the_books_shapes_and_dtypes():
    (x, t), (xt, tt) = load_mnist()
    assert (x.shape, x.dtype, t.shape, t.dtype) == ((30000, 784), np.float32, (30000,), np.uint8)
    assert (xt.shape, tt.shape) == ((5000, 784), (5000,))
    assert 0.0 <= x.min() and x.max() == 1.0
    (x, t), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True)
    assert (x.shape, x.dtype, t.shape, t.dtype) == ((30000, 1, 28, 28), np.uint8, (30000, 10),
                                                    np.float64)
    assert t.sum() == 30000 and list(t[:3].argmax(axis=1)) == [5, 0, 4]


def test_load_mnist_names_a_missing_folder_and_its_files(tmp_path):
    with pytest.raises(OSError) as e:
        load_mnist(dir=tmp_path / "nowhere")
    text = str(e.value)
    assert "nowhere" in text and "train-images-idx3-ubyte" in text and "t10k-labels-idx1-ubyte" in text
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03broken")
    with pytest.raises(OSError) as e:
        load_mnist(dir=tmp_path)
    assert "train-images-idx3-ubyte" in str(e.value)


def test_checkpoints_are_the_clis(tmp_path, mnist):
    """save writes the CLI's safetensors checkpoint (the tensors as the CLI names and shapes
    them, its metadata); load reads it back exactly."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    (x, t), _ = mnist
    net = TwoLayerNet(784, 50, 10, device="cpu", seed=4)
    random_params(net, np.random.default_rng(5), std=0.1)
    path = tmp_path / "net.safetensors"
    net.save(path, iteration=0)
    stored = load_file(str(path))
    assert {k: v.shape for k, v in stored.items()} == {k: v.shape for k, v in net.params.items()}
    with safe_open(str(path), framework="np") as f:
        assert f.metadata()["format"] == "gpu-train checkpoint 1"
    back = TwoLayerNet.load(path, device="cpu")
    for k in net.params:
        np.testing.assert_array_equal(back.params[k], net.params[k])
    assert back.accuracy(x[:500], t[:500]) == net.accuracy(x[:500], t[:500])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(OSError, match="net.safetensors"):
        TwoLayerNet.load(path)


def test_load_mnist_reads_full_mnist_from_mnist_dir(monkeypatch):
    from conftest import FULL_MNIST_DIR

    if FULL_MNIST_DIR is None:
        if os.environ.get("GPU_TRAIN_FULL_MNIST") == "required":
            pytest.fail("GPU_TRAIN_FULL_MNIST=required but MNIST_DIR is not set")
        pytest.skip("MNIST_DIR not set: no full MNIST here")
    monkeypatch.setenv("MNIST_DIR", FULL_MNIST_DIR)
    (x, t), (xt, tt) = load_mnist(normalize=False, flatten=False)
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert x.dtype == np.uint8 and t.shape == (60000,) and int(t.max()) == 9
