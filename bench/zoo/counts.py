"""Parameter counts and FLOPs per image, counted the same way for both twins.

Convention (both frameworks): *trainable* = weights that receive gradients (conv/dense kernels and
biases, BN gamma/beta); *non-trainable* = BN moving mean and variance. PyTorch's
``num_batches_tracked`` counter is not a weight and is not counted.
FLOPs: ``torch.utils.flop_counter`` on the PyTorch twin (convolutions and matmuls, 2 FLOPs per
multiply-add; BN, ReLU, pooling not counted), the convention of docs/anchors.md (FLOPs).
"""
from __future__ import annotations


def torch_param_counts(model) -> tuple[int, int]:
    """(trainable, non_trainable) of a torch.nn.Module under the shared convention."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return trainable, frozen + buffers


def keras_param_counts(model) -> tuple[int, int]:
    """(trainable, non_trainable) of a keras.Model under the shared convention."""
    def size(ws):
        total = 0
        for w in ws:
            n = 1
            for s in w.shape:
                n *= int(s)
            total += n
        return total
    return size(model.trainable_weights), size(model.non_trainable_weights)


def flops_per_image(model, input_size: int = 32, channels: int = 3) -> tuple[float, float]:
    """(forward, train step) FLOPs per image of a PyTorch model, counted on a batch of 2 on the CPU.

    The train figure is forward + backward, as ``FlopCounterMode`` counts them.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(2, channels, input_size, input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    fwd = fc.get_total_flops() / 2
    model.train()
    with FlopCounterMode(display=False) as fc2:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    train = fc2.get_total_flops() / 2
    model.train(was_training)
    return float(fwd), float(train)
