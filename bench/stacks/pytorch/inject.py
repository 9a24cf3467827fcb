"""``TWINBENCH_INJECT_LAYER_SLOWDOWN`` in the PyTorch twin (see ``bench.stacks.common.inject``): each module of a
slowed kind runs its forward once more on a slice of the batch."""
from __future__ import annotations

from bench.stacks.common.inject import batch_of, extra_rows, head, layer_slowdowns


def slow_layers(net):
    """``net`` with the hook's layer kinds slowed (unchanged, the same object, when the hook is unset)."""
    slow = layer_slowdowns("torch")
    if not slow:
        return net
    from bench.stacks.common.torch_profile import module_kind
    for m in net.modules():
        fraction = slow.get(module_kind(m) or "")
        if fraction:
            _wrap(m, fraction)
    return net


def _wrap(module, fraction: float) -> None:
    forward = module.forward

    def slowed(*a, **k):
        out = forward(*a, **k)
        extra = forward(*head(a, extra_rows(batch_of(a), fraction)), **k)
        return out + 0.0 * extra.float().mean().to(out.dtype)
    module.forward = slowed
