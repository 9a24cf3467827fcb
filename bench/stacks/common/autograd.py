"""torch autograd's saved tensors, counted: shared by the stacks whose backward is torch autograd.

PyTorch (``bench.stacks.pytorch``) and Keras on the torch backend (``bench.stacks.keras.torch``) both
train through torch autograd, so one counter measures both and their figures mean the same thing:
``torch.autograd.graph.saved_tensors_hooks`` sees every storage saved for the backward pass (each
once, views included, weights excluded), and each is attributed to the kind of layer that produced it
(conv / batchnorm / relu / concat / pool / linear / other), which is what explains a difference between
the twins. Imports torch lazily (inside the counter), so importing this module is free.

Published anchor (docs/anchors.md, "Memory"): at batch 64 the saved bytes (519 / 2,128 / 773 MiB for
ResNet-110, DenseNet-BC-100 naive / memory-efficient) are within 2% of the H100 allocator peaks
(514 / 2,167 / 782 MiB).
"""
from __future__ import annotations

from collections import Counter

# torch module / Keras layer class -> kind (the innermost such layer around an op names its kind)
_LAYER_KIND = {
    "Conv2d": "conv", "Conv2D": "conv", "BatchNorm2d": "batchnorm", "BatchNormalization": "batchnorm",
    "ReLU": "relu", "Activation": "relu", "Concatenate": "concat", "AvgPool2d": "pool", "AveragePooling2D": "pool",
    "AdaptiveAvgPool2d": "pool", "GlobalAvgPool2d": "pool", "GlobalAveragePooling2D": "pool", "MaxPool2d": "pool", "MaxPooling2D": "pool",
    "Linear": "linear", "Dense": "linear", "Add": "other", "ZeroPadding2D": "other", "Flatten": "other",
}
# torch function name -> kind, for ops called outside such a layer (functional relu / cat / pooling)
_OP_KIND = {
    "conv2d": "conv", "convolution": "conv", "batch_norm": "batchnorm", "relu": "relu", "relu_": "relu",
    "cat": "concat", "concat": "concat", "concatenate": "concat", "avg_pool2d": "pool", "adaptive_avg_pool2d": "pool",
    "max_pool2d": "pool", "linear": "linear",
}


class SavedBytesCounter:
    """Counts the storages torch autograd saves for backward, each once, and who produced them.

    Enter it around a forward pass (and the loss). A storage is attributed to the kind of the op that
    produced it (the innermost known layer around that op, else the op's own name); one produced
    outside the counted region (the input batch) or inside an op (BatchNorm's saved moments) goes to
    the op that saved it. Storages in ``exclude`` (the weights) are not counted.
    """

    def __init__(self, exclude: set[int]) -> None:
        import torch
        from torch.overrides import TorchFunctionMode
        self.exclude = exclude
        self.saved: dict[tuple, tuple[int, str]] = {}  # storage key -> (bytes, kind of the op that saved it)
        self.producer: dict[tuple, str] = {}
        self.layers: list[str] = []
        self.op: str | None = None
        counter = self

        class _Ops(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                prev, counter.op = counter.op, getattr(func, "__name__", "")
                try:
                    out = func(*args, **(kwargs or {}))
                finally:
                    counter.op = prev
                counter._produced(out, args, getattr(func, "__name__", ""))
                return out

        self._mode = _Ops()
        self._torch = torch
        self._hooks = []

    @staticmethod
    def _key(t) -> tuple:
        st = t.untyped_storage()
        return (str(t.device), st.data_ptr())

    def kind(self, op: str | None) -> str:
        """The layer kind of code running now: the innermost known layer, else the torch op ``op``."""
        for name in reversed(self.layers):
            if name in _LAYER_KIND:
                return _LAYER_KIND[name]
        return _OP_KIND.get((op or "").lstrip("_"), "other")

    def _produced(self, out, args, op: str) -> None:
        torch = self._torch
        if not isinstance(out, torch.Tensor) or out._base is not None or out.device.type == "meta":
            return  # views keep their base's producer
        if any(out is a for a in args if isinstance(a, torch.Tensor)):
            return  # an op that hands back its input (in place, no-op cast) produced nothing new
        self.producer[self._key(out)] = self.kind(op)

    def _pack(self, t):
        if t.device.type != "meta":
            key = self._key(t)
            if key[1] not in self.exclude and key not in self.saved:
                self.saved[key] = (t.untyped_storage().nbytes(), self.kind(self.op))
        return t

    def __enter__(self) -> SavedBytesCounter:
        from torch.nn.modules import module as M

        def enter(module, args) -> None:
            self.layers.append(type(module).__name__)

        def leave(module, args, output) -> None:  # returns None: the output stays as it is
            if self.layers:
                self.layers.pop()

        self._hooks = [M.register_module_forward_pre_hook(enter), M.register_module_forward_hook(leave, always_call=True)]
        self._saved_hooks = self._torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._saved_hooks.__enter__()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        self._saved_hooks.__exit__(*exc)
        for h in self._hooks:
            h.remove()

    @property
    def total(self) -> int:
        """Bytes of every distinct storage saved for backward."""
        return sum(b for b, _ in self.saved.values())

    def by_kind(self) -> dict[str, int]:
        """``total`` split by the kind that produced each storage (else the kind that saved it)."""
        out: Counter = Counter()
        for key, (nbytes, saver) in self.saved.items():
            out[self.producer.get(key, saver)] += nbytes
        return dict(out)


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (torch)."""
    seen = {}
    for t in tensors:
        if t is not None:
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = st.nbytes()
    return sum(seen.values())


class TorchCudaPeak:
    """The CUDA caching allocator's peak (PyTorch and Keras on torch share it); (None, reason) on a CPU."""

    def reset_peak(self) -> None:
        import torch
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> tuple[int | None, str]:
        import torch
        if not torch.cuda.is_available():
            return None, "no GPU: allocator peak not defined on the CPU"
        return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
