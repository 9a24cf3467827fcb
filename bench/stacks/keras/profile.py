"""What every Keras backend's step profile shares: the twin built and compiled as the timed step builds it
(``bench.stacks.keras.step``: SGD momentum 0.9, lr 0.1, sparse cross-entropy from logits), and wrapping the
optimizer's update and the loss in a named range. The layers' names and kinds are ``layers.py``'s.

How each backend attributes time is its own module: ``torch.py`` (the shared torch-autograd profiler: Keras
layers are ``torch.nn.Module`` calls there), ``tensorflow.py`` (TensorFlow's profiler, ops by name scope),
``jax.py`` (JAX's profiler, ops by their metadata's layer scope).
"""
from __future__ import annotations

import functools
from pathlib import Path

from bench.core import phases


def build_compiled(model: str, precision: str, batch: int, jit: bool, options: dict | None):
    """(net, x, y): the Keras twin compiled as the timed step compiles it, a synthetic batch, one step run."""
    import keras
    import numpy as np

    from bench.stacks.keras.inject import slow_layers
    from bench.stacks.keras.step import build_twin
    options = options or {}
    phases.enter("build")
    net = slow_layers(build_twin(model, precision, options))  # test hook: unset, net as built
    size = options.get("input_size", 32)
    phases.enter("data")
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.standard_normal((batch, size, size, 3)).astype("float32"))
    y = keras.ops.convert_to_tensor(rng.integers(0, 10, batch))
    phases.enter("build")
    net.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    phases.enter("first_step")
    net.train_on_batch(x, y)
    phases.enter("timed")  # the profiler's work: its warm-up, unprofiled and profiled steps
    return net, x, y


def fit_step(stack, net, x, y):
    """One train step as the throughput measure times a Keras step: ``fit``'s call of the compiled train function
    (``bench.stacks.keras.step.keras_train_window``, a window of 1), then the loss read back to the host."""
    from bench.stacks.keras.step import keras_train_window
    window = keras_train_window(stack, net, lambda: (x, y))
    return lambda: window(1)


def time_unprofiled(step, steps: int, warmup: int = 2) -> list[float]:
    """Seconds of each of ``steps`` steps run without the profiler, after ``warmup`` untimed ones (``step`` ends
    synchronised): the step time the profiled one is set against."""
    import time
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def wrap_in(obj, attr: str, ctx) -> None:
    """Replace ``obj.attr`` (a bound method) by one that runs inside ``ctx()``, on this instance only."""
    fn = getattr(obj, attr)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with ctx():
            return fn(*args, **kwargs)
    setattr(obj, attr, wrapped)


def trace_file(trace_dir: str | None, model: str, stack_tag: str, mode: str, batch: int, ext: str,
               options: dict | None = None) -> str | None:
    """The trace's path in ``trace_dir`` (None: no trace kept), one file per job."""
    depth = f"-d{options['depth']}" if options and "depth" in options else ""
    return str(Path(trace_dir) / f"{model}-{stack_tag}-{mode}-b{batch}{depth}{ext}") if trace_dir else None



# op type (TensorFlow) / primitive (JAX) -> kind, for ops of a composite layer or outside any layer
OP_TYPE_KIND = {"Conv2D": "conv", "Conv2DBackpropInput": "conv", "Conv2DBackpropFilter": "conv",
                "conv_general_dilated": "conv", "FusedBatchNormV3": "batchnorm", "FusedBatchNormGradV3": "batchnorm",
                "Relu": "relu", "ReluGrad": "relu", "ConcatV2": "concat", "concatenate": "concat", "AvgPool": "pool",
                "AvgPoolGrad": "pool", "MatMul": "linear", "dot_general": "linear", "AddV2": "add", "Add": "add",
                "AddN": "add"}


def scope_layer(parts: list[str], layer_kinds: dict[str, str | None]) -> str | None:
    """The innermost known layer in a name scope (``['resnet_1', 'stage1_block0_conv1_1', 'convolution']`` ->
    ``stage1_block0_conv1``): a component that is a layer name, or one with the ``_<n>`` suffix Keras adds
    to a scope it opens again."""
    import re
    found = None
    for p in parts:
        if p in layer_kinds:
            found = p
        else:
            base = re.sub(r"_\d+$", "", p)
            if base != p and base in layer_kinds:
                found = base
    return found
