"""The layers of a built Keras twin and their kinds: what the step profile (``profile.py``) attributes time to and
the test hook slows (``inject.py``). A leaf: it imports nothing of TwinBench, so both can read it without a
circle."""
from __future__ import annotations

# Keras layer class (or a base class of it) -> kind
KERAS_KIND = {"Conv2D": "conv", "BatchNormalization": "batchnorm", "ReLU": "relu", "Activation": "relu",
              "Concatenate": "concat", "AveragePooling2D": "pool", "GlobalAveragePooling2D": "pool",
              "MaxPooling2D": "pool", "Dense": "linear", "Add": "add", "ZeroPadding2D": "other", "Flatten": "other"}


def keras_kind(layer) -> str | None:
    """The kind of a Keras layer from its class or a base class (None: a composite layer, e.g. the DenseNet's
    ``ConcatBNReLUConv``: its own ops are classified one by one where the profiler sees them)."""
    for cls in type(layer).__mro__:
        if cls.__name__ in KERAS_KIND:
            return KERAS_KIND[cls.__name__]
    return None


def layers_of(net) -> list:
    """Every layer of a built Keras twin, nested ones included (the model itself and its input excluded)."""
    return [la for la in net._flatten_layers(include_self=False, recursive=True) if type(la).__name__ != "InputLayer"]
