"""Loads a gpu-train checkpoint with safetensors + NumPy and runs the chapter's forward pass.

Usage: python3 tests/load_checkpoint.py CHECKPOINT   (the README quotes these lines)
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

path = sys.argv[1]
params = load_file(path)  # {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}
with safe_open(path, framework="np") as f:
    meta = f.metadata()
spec = json.loads(meta["spec"])
print("spec", spec, "iteration", meta["iteration"])
for name in sorted(params):
    print(name, params[name].shape, params[name].dtype)

# The chapter's TwoLayerNet.predict on one all-zero image: sigmoid(x W1 + b1) W2 + b2.
x = np.zeros((1, spec["input"]), dtype=np.float32)
z = 1 / (1 + np.exp(-(x @ params["W1"] + params["b1"])))
y = z @ params["W2"] + params["b2"]
print("logits", " ".join(f"{v:.6f}" for v in y[0]))
