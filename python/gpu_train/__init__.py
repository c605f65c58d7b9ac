"""gpu-train from Python: the engine of gpu-train (Deep Learning from Scratch, chapter 4, made
fast) behind the book's own names. ``gpu_train.book`` holds ``TwoLayerNet`` and ``load_mnist``:
change a chapter script's two import lines to them and it runs unchanged, in seconds."""

from . import _native
from ._native import __version__

__all__ = ["book", "__version__"]
