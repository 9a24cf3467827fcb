"""PyTorch's training loop: one row per epoch, the dataset resident on the device, checkpoint/resume.

Both stacks train from the same :class:`bench.data.EpochSampler` plan (order, crops, flips), the same
learning-rate formula (:meth:`bench.zoo.recipes.Recipe.lr_at`) and the same coupled weight decay.
PyTorch keeps the whole (normalised, padded) training set on the device and augments there
(``bench.stacks.pytorch.data.augment_torch``).

Each epoch's row is handed to ``on_epoch`` (the ``epochs`` measure appends it to ``epochs.csv`` in one
write + fsync) as the epoch ends, then the checkpoint of that epoch (with the rows so far) replaces the previous
one, which is kept until the new one is whole (``bench.stacks.common.checkpoint``), so a killed run (or a full
disk) loses at most the running epoch and resumes from its checkpoint; a damaged checkpoint is set aside.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from bench.data import Cifar10, EpochSampler, normalize, normalize_padded
from bench.stacks.base import TrainConfig, epoch_row, progress_bar, subset
from bench.stacks.common import checkpoint
from bench.stacks.pytorch.data import augment_torch, epoch_rows_torch
from bench.stacks.pytorch.step import TORCH_MODES, compile_torch_step, torch_amp_dtype
from bench.zoo.recipes import Recipe


def train_torch(stack, cfg: TrainConfig, data: Cifar10, on_epoch: Callable[[dict], None]) -> list[dict]:
    """Train the PyTorch twin; calls ``on_epoch(row)`` after each epoch; returns the rows."""
    import torch
    import torch.nn.functional as F

    from bench.zoo import build

    mode = cfg.exec_mode or "eager"
    mem = stack.memory()
    if mode not in TORCH_MODES:
        raise ValueError(f"torch exec_mode must be one of {TORCH_MODES}, got {mode!r}")
    dev = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels, as the runners do
    torch.manual_seed(cfg.seed)
    r = cfg.recipe
    xtr, ytr, xte, yte = subset(data, cfg)
    cl = (dev == "cuda") if cfg.channels_last is None else cfg.channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format
    # the whole dataset lives on the device, normalised and padded once; not part of the epoch time
    xpad = torch.from_numpy(normalize_padded(xtr, channels_first=True)).to(dev)
    ytr_d = torch.from_numpy(ytr).to(dev)
    xte_d = torch.from_numpy(normalize(xte)).permute(0, 3, 1, 2).contiguous().to(dev).to(memory_format=fmt)
    yte_d = torch.from_numpy(yte).to(dev)
    model = build(cfg.model, "torch").to(dev).to(memory_format=fmt)
    # step-compile: the lr is a tensor updated in place, so a new lr value does not recompile the step
    opt = torch_optimizer(r, model, lr=torch.tensor(r.lr, device=dev) if mode == "step-compile" else None)
    amp_dtype = torch_amp_dtype(cfg.precision)
    scaler = torch.amp.GradScaler(dev, enabled=cfg.precision == "fp16")
    sampler = EpochSampler(len(ytr), r.batch_size, cfg.seed)
    spe = sampler.steps_per_epoch
    fwd = torch.compile(model) if mode == "compile" else model

    def train_step(x, y):
        """forward, backward, update; (loss, correct predictions) as device tensors."""
        with torch.autocast(dev, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = fwd(x)
            loss = F.cross_entropy(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach(), (logits.argmax(1) == y).sum()

    run_step = compile_torch_step(train_step, dev) if mode == "step-compile" else train_step
    start, rows = 0, []

    def restore(path: str) -> dict:  # the whole checkpoint read and applied, or an exception (set aside)
        ck = torch.load(path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        scaler.load_state_dict(ck["scaler"])
        return ck
    ck = checkpoint.load(cfg.checkpoint, restore)
    if ck is not None:
        start, rows = ck["epoch"], list(ck.get("rows", []))
        for row in rows:  # rows lost from epochs.csv since are written again from the checkpoint (else skipped)
            on_epoch(row)
    for epoch in range(start, r.epochs):
        model.train()
        mem.reset_peak()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        bar = progress_bar(cfg.progress, spe, f"{cfg.model} torch epoch {epoch + 1}/{r.epochs}")
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        rows_d = epoch_rows_torch(sampler, epoch, dev)  # one copy per epoch, none per step
        for i in range(spe):
            lr = r.lr_at(epoch * spe + i, spe)
            for g in opt.param_groups:
                if isinstance(g["lr"], torch.Tensor):
                    g["lr"].fill_(lr)
                else:
                    g["lr"] = lr
            plan = rows_d[i * r.batch_size:(i + 1) * r.batch_size]
            x = augment_torch(xpad, plan).contiguous(memory_format=fmt)
            y = ytr_d[plan[:, 0].long()]
            opt.zero_grad(set_to_none=True)
            loss, hits = run_step(x, y)
            loss_sum += loss * len(y)
            correct += hits
            if cfg.progress and (i % 20 == 0 or i == spe - 1):
                seen = (i + 1) * r.batch_size
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}",
                                img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update(1)
        if dev == "cuda":
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - t0
        bar.close()
        peak, why = mem.peak_bytes()
        test_loss, test_acc = _eval_torch(model, xte_d, yte_d, amp_dtype, dev)
        n = spe * r.batch_size
        row = epoch_row(cfg, epoch, lr, (loss_sum.item() / n, correct.item() / n), (test_loss, test_acc), epoch_s, n,
                        peak, why)
        rows.append(row)
        on_epoch(row)  # the row first: a checkpoint never gets ahead of the rows written
        if cfg.checkpoint:
            ck = {"model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict(),
                  "epoch": epoch + 1, "rows": rows}
            checkpoint.save(cfg.checkpoint, lambda p: torch.save(ck, p))
    return rows


def _eval_torch(model, x, y, amp_dtype, dev: str, batch: int = 1000) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad(), torch.autocast(dev, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        for i in range(0, len(y), batch):
            logits = model(x[i:i + batch]).float()
            loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
            correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return loss / len(y), correct / len(y)


def torch_optimizer(recipe: Recipe, model, lr=None):
    """torch optimizer of the recipe over every trainable parameter (coupled weight decay: torch's ``weight_decay``).

    Args:
        lr: the initial learning rate (default: the recipe's); a tensor keeps a compiled step from
            recompiling when the schedule changes it.
    """
    import torch
    params = [p for p in model.parameters() if p.requires_grad]
    r = recipe
    lr = r.lr if lr is None else lr
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=r.momentum, nesterov=r.nesterov, weight_decay=r.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=r.weight_decay)
