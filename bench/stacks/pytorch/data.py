"""The CIFAR-10 plan on a torch device: the epoch's rows copied once, crops and flips as one gather.

``bench.data.augment_numpy`` is the reference (same plan, same pixels: tests/test_data.py).
"""
from __future__ import annotations

from bench.data import BatchPlan, EpochSampler, plan_array


def augment_torch(x_padded, plan, size: int = 32):
    """Apply a plan to padded NCHW images already on the device (torch); returns (B, C, size, size).

    ``plan`` is a :class:`BatchPlan` or its ``plan_array`` rows already on the device. The training
    loops copy a whole epoch's rows once and slice them, because a blocking host-to-device copy per
    step would make the host wait for the GPU's queue to drain at every step.
    """
    import torch
    dev = x_padded.device
    if isinstance(plan, BatchPlan):
        plan = torch.from_numpy(plan_array(plan)).to(dev)
    idx, cy, cx, flip = plan[:, 0].long(), plan[:, 1], plan[:, 2], plan[:, 3]
    ar = torch.arange(size, device=dev, dtype=plan.dtype)
    rows = (cy[:, None] + ar)[:, None, :, None].long()
    cols = torch.where(flip[:, None] > 0, cx[:, None] + size - 1 - ar, cx[:, None] + ar)[:, None, None, :].long()
    chans = torch.arange(x_padded.shape[1], device=dev)[None, :, None, None]
    return x_padded[idx[:, None, None, None], chans, rows, cols]


def epoch_rows_torch(sampler: EpochSampler, epoch: int, device):
    """One epoch's plan as ``plan_array`` rows on the device, copied once; step i is ``rows[i * batch:(i + 1) * batch]``."""
    import torch
    return torch.from_numpy(plan_array(sampler.epoch(epoch))).to(device)
