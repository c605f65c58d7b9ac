"""A plain float64 NumPy two-layer net written for these tests from the chapter's formulas
(sigmoid, softmax, cross entropy with 1e-7 inside the log, the central-difference numerical
gradient): the reference the package is checked against. Deliberately slow and simple."""

import numpy as np

DELTA = 1e-7  # the chapter's constant inside the log of the cross entropy
H = 1e-4      # the chapter's step of the central difference


def forward(params, x):
    a1 = x @ params["W1"] + params["b1"]
    z1 = 1.0 / (1.0 + np.exp(-a1))
    a2 = z1 @ params["W2"] + params["b2"]
    e = np.exp(a2 - a2.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def labels_of(t):
    t = np.asarray(t)
    return t.argmax(axis=1) if t.ndim == 2 else t


def loss(params, x, t):
    y = forward(params, x)
    labels = labels_of(t)
    return -np.mean(np.log(y[np.arange(len(labels)), labels] + DELTA))


def accuracy(params, x, t):
    return float(np.mean(forward(params, x).argmax(axis=1) == labels_of(t)))


def numerical_gradient(params, x, t):
    """(L(p + h) - L(p - h)) / 2h, one parameter at a time, every tensor, in float64."""
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        flat, gflat = value.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + H
            plus = loss(params, x, t)
            flat[i] = keep - H
            minus = loss(params, x, t)
            flat[i] = keep
            gflat[i] = (plus - minus) / (2 * H)
        grads[name] = g
    return grads
