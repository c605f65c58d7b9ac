"""Bad arguments raise ValueError naming the argument, the shape given and the one expected;
nothing from Python reaches the engine unchecked."""

import numpy as np
import pytest

from conftest import devices, make_net
from gpu_train.book import TwoLayerNet


@pytest.fixture(params=devices())
def net(request):
    """Every device refuses the same inputs the same way: they are checked before any work."""
    return make_net(request.param, 64, 7, 26, seed=0)


def raises(match, f, *args):
    with pytest.raises(ValueError, match=match):
        f(*args)


def test_bad_shapes(net):
    x, t = np.zeros((3, 64)), np.array([0, 1, 2])
    raises(r"x: shape \(3, 63\), expected \(batch, 64\)", net.loss, np.zeros((3, 63)), t)
    raises(r"x: shape \(0, 64\)", net.predict, np.zeros((0, 64)))
    raises(r"x: shape \(2, 3, 64\)", net.predict, np.zeros((2, 3, 64)))
    raises(r"t: shape \(4,\), expected \(3,\) labels or \(3, 26\)", net.gradient, x, np.zeros(4, int))
    raises(r"t: shape \(3, 10\)", net.numerical_gradient, x, np.zeros((3, 10)))
    net.params["W1"] = np.zeros((64, 8))
    raises(r"params\['W1'\]: shape \(64, 8\), expected \(64, 7\)", net.loss, x, t)


def test_bad_dtypes_and_values(net):
    x, t = np.zeros((3, 64)), np.array([0, 1, 2])
    raises(r"x: dtype complex128, expected a float array", net.predict, x.astype(complex))
    raises(r"x: dtype <U1", net.predict, np.full((3, 64), "a"))
    raises(r"t: dtype float64 for labels", net.loss, x, np.array([0.0, 1.0, 2.0]))
    raises(r"t: label 26 at row 2 is outside 0..=25", net.loss, x, np.array([0, 1, 26]))
    raises(r"t: label -1 at row 0", net.loss, x, np.array([-1, 1, 2]))
    bad = x.copy()
    bad[1, 5] = np.nan
    raises(r"x: x\[1, 5\] is NaN", net.numerical_gradient, bad, t)
    bad[1, 5] = np.inf
    raises(r"x: x\[1, 5\] is inf", net.gradient, bad, t)
    onehot = np.eye(26)[t]
    onehot[0, 0] = np.nan
    raises(r"t: entry 0 of the one-hot rows is NaN", net.loss, x, onehot)
    net.params["b1"][3] = np.nan
    raises(r"params\['b1'\]: entry 3", net.predict, x)
    net.params = {"W1": net.params["W1"]}
    raises(r"params\['b1'\]: missing", net.predict, x)
    net.params = [1, 2]
    raises(r"params: a list, expected a dict", net.predict, x)


def test_bad_constructor_arguments():
    raises(r"hidden_size: 0, expected an integer in 1", TwoLayerNet, 784, 0, 10)
    raises(r"output_size: 300, expected an integer in 2..=256", TwoLayerNet, 784, 50, 300)
    raises(r"input_size: -5", TwoLayerNet, -5, 50, 10)
    raises(r"parameters; at most", TwoLayerNet, 1 << 24, 1 << 24, 10)
    raises(r"weight_init_std: NaN", TwoLayerNet, 784, 50, 10, float("nan"))
    raises(r'device: "tpu", expected', lambda: TwoLayerNet(784, 50, 10, device="tpu"))


def test_a_panic_in_the_engine_is_a_runtime_error_not_an_abort():
    from gpu_train import _native

    with pytest.raises(RuntimeError, match="a deliberate panic"):
        _native._panic_for_tests()
    # The interpreter and the engine go on.
    net = TwoLayerNet(64, 7, 26, device="cpu", seed=0)
    assert net.predict(np.zeros((2, 64))).shape == (2, 26)
