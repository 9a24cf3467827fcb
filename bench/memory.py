"""Memory per framework/backend, in one place: allocator peaks, the bytes a training step keeps, OOM detection.

Two figures, measured by one small class per implementation (``TorchMemory``, ``KerasTorchMemory``,
``KerasJaxMemory``, ``KerasTensorFlowMemory``); callers get theirs from :func:`for_framework` and
never branch on the framework themselves.

* The allocator peak (GPU only): PyTorch ``max_memory_allocated``, TensorFlow
  ``get_memory_info(...)["peak"]``, JAX ``peak_bytes_in_use``, preallocation turned off by the worker.
  On a CPU there is no allocator peak to read: (None, reason).
* The step's memory on any device (:meth:`MemoryBackend.step_memory`): the bytes one training step
  keeps for the backward pass, counted with ``torch.autograd.graph.saved_tensors_hooks`` (each
  storage once, weights excluded), plus the bytes of weights, gradients and optimizer state, each
  measured on a real step. The PyTorch twins and the Keras twins on the torch backend go through the
  same hooks, so their figures mean the same thing. Each saved storage is attributed to the kind of
  layer that produced it (conv / batchnorm / relu / concat / pool / linear / other), which is what
  explains a difference between twins. Keras on JAX reports the residuals JAX lists for the step's
  VJP (``jax.ad_checkpoint``, before XLA fusion: a different quantity, in its own column); Keras on
  TensorFlow has no sound measure (null, with the reason).

ANCHORS.md §3: at batch 64 the saved bytes (519 / 2,128 / 773 MiB for ResNet-110, DenseNet-BC-100
naive / memory-efficient) are within 2% of the H100 allocator peaks (514 / 2,167 / 782 MiB).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

PREALLOC_OFF = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
NO_GPU = "no GPU: allocator peak not defined on the CPU"
MIB = 2 ** 20

# Layer kinds of the saved-bytes breakdown, in report order.
LAYER_KINDS = ("conv", "batchnorm", "relu", "concat", "pool", "linear", "other")
# torch module / Keras layer class -> kind (the innermost such layer around an op names its kind)
_LAYER_KIND = {
    "Conv2d": "conv", "Conv2D": "conv", "BatchNorm2d": "batchnorm", "BatchNormalization": "batchnorm",
    "ReLU": "relu", "Activation": "relu", "Concatenate": "concat", "AvgPool2d": "pool", "AveragePooling2D": "pool",
    "AdaptiveAvgPool2d": "pool", "GlobalAveragePooling2D": "pool", "MaxPool2d": "pool", "MaxPooling2D": "pool",
    "Linear": "linear", "Dense": "linear", "Add": "other", "ZeroPadding2D": "other", "Flatten": "other",
}
# torch function name -> kind, for ops called outside such a layer (functional relu / cat / pooling)
_OP_KIND = {
    "conv2d": "conv", "convolution": "conv", "batch_norm": "batchnorm", "relu": "relu", "relu_": "relu",
    "cat": "concat", "concat": "concat", "concatenate": "concat", "avg_pool2d": "pool", "adaptive_avg_pool2d": "pool",
    "max_pool2d": "pool", "linear": "linear",
}


@dataclass
class StepMemory:
    """What one training step keeps, in bytes (None: not measured; ``reasons`` says why).

    Attributes:
        saved_activations: bytes autograd keeps for the backward pass (torch autograd only).
        saved_by_kind: the same bytes split by the layer kind that produced each storage.
        jax_residuals: bytes of the residuals ``jax.ad_checkpoint`` lists (Keras on JAX only).
        params: bytes of every weight (trainable and moving statistics).
        grads: bytes of the gradients of one step.
        optimizer_state: bytes of the optimizer's state after one step (SGD momentum).
        source: what measured the activation figure.
        trainable_count: trainable parameters (a count, not bytes).
        reasons: why a figure is None.
    """

    saved_activations: int | None = None
    saved_by_kind: dict[str, int] = field(default_factory=dict)
    jax_residuals: int | None = None
    params: int | None = None
    grads: int | None = None
    optimizer_state: int | None = None
    source: str | None = None
    trainable_count: int | None = None
    reasons: list[str] = field(default_factory=list)

    def columns(self, peak: int | None = None) -> dict:
        """The memory.csv columns of this measure (MiB); ``peak``: the allocator peak in bytes, if any."""
        mib = lambda b: None if b is None else b / MIB  # noqa: E731
        state = None if None in (self.params, self.grads, self.optimizer_state) else (
            self.params + self.grads + self.optimizer_state)
        total = None if state is None or self.saved_activations is None else state + self.saved_activations
        kinds = ";".join(f"{k}={self.saved_by_kind.get(k, 0) / MIB:.1f}" for k in LAYER_KINDS) if self.saved_by_kind else None
        return {"saved_activations_mib": mib(self.saved_activations), "saved_by_kind_mib": kinds,
                "jax_residuals_mib": mib(self.jax_residuals), "params_mib": mib(self.params),
                "grads_mib": mib(self.grads), "optimizer_state_mib": mib(self.optimizer_state),
                "state_plus_activations_mib": mib(total), "activations_source": self.source,
                "peak_over_state_activations": None if peak is None or not total else peak / total}


def parse_by_kind(text) -> dict[str, float]:
    """``"conv=1.0;relu=2.5"`` (a saved_by_kind_mib cell) -> {"conv": 1.0, "relu": 2.5}; {} for an empty cell."""
    if not isinstance(text, str) or not text:
        return {}
    return {k: float(v) for k, v in (p.split("=", 1) for p in text.split(";") if "=" in p)}


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


def _storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (torch)."""
    seen = {}
    for t in tensors:
        if t is not None:
            st = t.untyped_storage()
            seen[(str(t.device), st.data_ptr())] = st.nbytes()
    return sum(seen.values())


class MemoryBackend:
    """The memory pieces of one implementation (a framework on a backend)."""

    name = "?"
    exec_mode = "nojit"  # how step_memory runs the step (the memory row's exec_mode when no timed step ran)
    measure_on_gpu = True  # False: step_memory is left to CPU runs (its cost would eat a GPU session's time)

    def reset_peak(self) -> None:
        """Start a new allocator-peak window (no-op where there is none)."""

    def peak_bytes(self) -> tuple[int | None, str]:
        """(allocator peak bytes since the last reset, its source) or (None, reason)."""
        return None, f"no allocator peak for {self.name}"

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        """Measure what one training step of ``model`` keeps (a fresh model, one real SGD step).

        Args:
            model: registry name.
            batch_size: examples in the step.
            precision: fp32 | bf16 | fp16 (mixed, as the runners do).
            device: cuda | cpu | None (the GPU when there is one).
            **options: spec overrides (e.g. ``depth``) passed to ``bench.models.build``.
        """
        raise NotImplementedError


class TorchMemory(MemoryBackend):
    """PyTorch: the CUDA caching allocator's peak; saved tensors through autograd hooks."""

    name = "torch"
    exec_mode = "eager"

    def reset_peak(self) -> None:
        import torch
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> tuple[int | None, str]:
        import torch
        if not torch.cuda.is_available():
            return None, NO_GPU
        return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"

    def _device(self, device: str | None) -> str:
        import torch
        return device if device else ("cuda" if torch.cuda.is_available() else "cpu")

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        import torch
        import torch.nn.functional as F

        from bench.models import build
        from bench.runners import torch_amp_dtype
        dev = self._device(device)
        torch.manual_seed(0)
        net = build(model, "torch", **options).to(dev)
        net.train()
        weights = list(net.parameters()) + list(net.buffers())
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)  # as bench.runners
        x = torch.randn(batch_size, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (batch_size,), device=dev)
        amp = torch_amp_dtype(precision)
        with SavedBytesCounter({w.untyped_storage().data_ptr() for w in weights}) as c:
            with torch.autocast(dev, dtype=amp or torch.float32, enabled=amp is not None):
                loss = F.cross_entropy(net(x).float(), y)
        loss.backward()
        opt.step()
        state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        return StepMemory(saved_activations=c.total, saved_by_kind=c.by_kind(), params=_storage_bytes(weights),
                          grads=_storage_bytes(p.grad for p in net.parameters()), optimizer_state=_storage_bytes(state),
                          source="torch.autograd.graph.saved_tensors_hooks, eager step",
                          trainable_count=sum(p.numel() for p in net.parameters() if p.requires_grad))


class _KerasMemory(MemoryBackend):
    """Shared by the Keras backends: the model, the optimizer, weights and optimizer state."""

    def _build(self, model: str, precision: str, **options):
        import keras

        from bench.models import build
        from bench.runners import KERAS_POLICY
        keras.utils.set_random_seed(0)
        keras.config.set_dtype_policy(KERAS_POLICY[precision])
        try:
            net = build(model, "keras", **options)
        finally:
            keras.config.set_dtype_policy("float32")
        opt = keras.optimizers.SGD(0.1, momentum=0.9)  # as bench.runners
        opt.build(net.trainable_variables)
        return net, opt

    @staticmethod
    def _nbytes(variables) -> int:
        import numpy as np
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)

    def _state(self, net, opt) -> StepMemory:
        import numpy as np
        return StepMemory(params=self._nbytes(net.weights), grads=self._nbytes(net.trainable_variables),
                          optimizer_state=self._nbytes(opt.variables),
                          trainable_count=sum(int(np.prod(v.shape)) for v in net.trainable_variables))


class KerasTorchMemory(_KerasMemory, TorchMemory):
    """Keras on the torch backend: its train step is torch autograd, so the same hooks count it."""

    name = "keras/torch"
    exec_mode = "nojit"

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        import keras
        import numpy as np
        import torch
        net, opt = self._build(model, precision, **options)
        rng = np.random.default_rng(0)
        x = keras.ops.convert_to_tensor(rng.standard_normal((batch_size, 32, 32, 3)).astype("float32"))
        y = keras.ops.convert_to_tensor(rng.integers(0, 10, batch_size))
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        exclude = {v.value.untyped_storage().data_ptr() for v in net.weights + opt.variables}
        with SavedBytesCounter(exclude) as c:
            loss = loss_fn(y, net(x, training=True))  # what keras' torch train_step runs under autograd
        loss.backward()
        grads = [v.value.grad for v in net.trainable_variables]
        with torch.no_grad():
            opt.apply(grads, net.trainable_variables)
        m = self._state(net, opt)
        m.grads = _storage_bytes(grads)
        m.saved_activations, m.saved_by_kind = c.total, c.by_kind()
        m.source = "torch.autograd.graph.saved_tensors_hooks, eager step (keras torch backend)"
        return m


class KerasJaxMemory(_KerasMemory):
    """Keras on JAX: residuals JAX saves for the step's VJP, listed before XLA compiles the step."""

    name = "keras/jax"
    exec_mode = "jit"
    # tracing the step costs ~30 s of CPU for DenseNet-BC-100 at any batch (measured on a 2-core CPU): a GPU
    # memory sweep would pay it at every batch, so the figure comes from CPU memory runs
    measure_on_gpu = False

    def peak_bytes(self) -> tuple[int | None, str]:
        import jax
        dev = jax.devices()[0]
        if dev.platform != "gpu":
            return None, NO_GPU
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" not in stats:
            return None, "jax device reports no peak_bytes_in_use"
        return stats["peak_bytes_in_use"], "jax peak_bytes_in_use (whole process)"
    # JAX has no reset: the worker measures one configuration per fresh process instead.

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        import keras
        import numpy as np
        from jax._src.ad_checkpoint import saved_residuals  # what jax.ad_checkpoint.print_saved_residuals prints
        net, opt = self._build(model, precision, **options)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        trainable = [v.value for v in net.trainable_variables]
        frozen = [v.value for v in net.non_trainable_variables]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch_size, 32, 32, 3)).astype("float32")
        y = rng.integers(0, 10, batch_size)

        def loss(tv, x):
            out, _ = net.stateless_call(tv, frozen, x, training=True)
            return loss_fn(y, out)

        res = saved_residuals(loss, trainable, x)
        # arguments (the weights, the input batch) are held anyway; count what the forward pass adds
        nbytes = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a, why in res
                     if not str(why).startswith("from the argument"))
        m = self._state(net, opt)
        m.jax_residuals = nbytes
        m.source = "jax.ad_checkpoint saved_residuals (before XLA fusion)"
        m.reasons.append("keras/jax: no autograd saved-tensor count, jax_residuals_mib counts residuals before XLA "
                         "fusion instead")
        return m


class KerasTensorFlowMemory(_KerasMemory):
    """Keras on TensorFlow: allocator peak on a GPU; no sound saved-for-backward measure."""

    name = "keras/tensorflow"

    def reset_peak(self) -> None:
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_bytes(self) -> tuple[int | None, str]:
        import tensorflow as tf
        if not tf.config.list_physical_devices("GPU"):
            return None, NO_GPU
        return tf.config.experimental.get_memory_info("GPU:0")["peak"], "tf get_memory_info peak"

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        net, opt = self._build(model, precision, **options)
        m = self._state(net, opt)
        m.reasons.append("keras/tensorflow: no sound saved-for-backward measure (GradientTape exposes none, and "
                         "get_memory_info('CPU:0') reads zeros)")
        return m


_BACKENDS = {"torch": TorchMemory, "keras/torch": KerasTorchMemory, "keras/jax": KerasJaxMemory,
             "keras/tensorflow": KerasTensorFlowMemory}


def for_framework(framework: str, backend: str | None = None) -> MemoryBackend:
    """The memory pieces of ``framework`` (torch | keras) on ``backend`` (Keras: tensorflow | jax | torch).

    Raises:
        ValueError: an unknown framework/backend pair.
    """
    key = "torch" if framework == "torch" else f"keras/{backend}"
    if key not in _BACKENDS:
        raise ValueError(f"no memory measure for {key!r}; known: {', '.join(_BACKENDS)}")
    return _BACKENDS[key]()


def reset_peak(framework: str, backend: str) -> None:
    """Start a new allocator-peak window for ``framework`` on ``backend`` (see :func:`for_framework`)."""
    for_framework(framework, backend).reset_peak()


def peak_bytes(framework: str, backend: str) -> tuple[int | None, str]:
    """(peak bytes, source or null reason)."""
    try:
        return for_framework(framework, backend).peak_bytes()
    except ValueError:
        return None, f"unknown backend {backend}"


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory errors of torch, TensorFlow and JAX/XLA."""
    name = type(exc).__name__
    text = str(exc)
    return (name in ("OutOfMemoryError", "ResourceExhaustedError")
            or "out of memory" in text.lower() or "RESOURCE_EXHAUSTED" in text)
