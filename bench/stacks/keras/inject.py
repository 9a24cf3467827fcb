"""``TWINBENCH_INJECT_LAYER_SLOWDOWN`` in the Keras twin (see ``bench.stacks.common.inject``): each layer of a slowed
kind runs its call once more on a slice of the batch (real work: a graph or XLA program traces it once and runs it at
every step, where a sleep would run at trace time only)."""
from __future__ import annotations

from bench.stacks.common.inject import batch_of, extra_rows, head, layer_slowdowns


def slow_layers(net):
    """``net`` with the hook's layer kinds slowed (unchanged when the hook is unset)."""
    slow = layer_slowdowns("keras")
    if not slow:
        return net
    from bench.stacks.keras.layers import keras_kind, layers_of
    for layer in layers_of(net):
        fraction = slow.get(keras_kind(layer) or "")
        if fraction:
            _wrap(layer, fraction)
    return net


def _wrap(layer, fraction: float) -> None:
    import keras
    call = layer.call

    def slowed(*a, **k):
        out = call(*a, **k)
        extra = call(*head(a, extra_rows(batch_of(a), fraction)), **k)  # batch unknown (None): the whole batch again
        return out + keras.ops.cast(0.0 * keras.ops.mean(keras.ops.cast(extra, "float32")), out.dtype)
    layer.call = slowed
