"""Training a twin on CIFAR-10 with a recipe: one CSV row per epoch, checkpoint/resume, progress bars.

Both frameworks train from the same :class:`bench.data.EpochSampler` plan (order, crops, flips), the
same learning-rate formula (:meth:`bench.recipes.Recipe.lr_at`) and the same coupled weight decay.
Both keep the whole (normalised, padded) training set on the device and augment there: PyTorch with
``bench.data.augment_torch``, Keras in-graph through ``bench.train_keras.PlanAugment``, fed only the
plan's integers by ``model.fit`` one epoch at a time.

Each epoch's row is handed to ``on_epoch`` (``bench.worker`` appends it to ``epochs.csv`` in one write +
fsync) as the epoch ends, then the checkpoint of that epoch replaces the previous one, so a killed run
(or a full disk) loses at most the running epoch and resumes from its checkpoint when started again
with the same checkpoint path; an epoch whose row is in but whose checkpoint is not is trained again
and its row not written twice (``bench.worker.run_epochs``).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data import Cifar10, EpochSampler, augment_torch, epoch_rows_torch, normalize, pad_images, plan_array
from bench.recipes import Recipe
from bench.runners import KERAS_POLICY, PRECISIONS, torch_amp_dtype


@dataclass
class TrainConfig:
    """Attributes:
        model: registry name.
        recipe: resolved recipe.
        precision: fp32 | bf16 | fp16 (mixed precision for the latter two).
        seed: init and sampler seed.
        device: cuda | cpu | None (auto).
        train_subset / test_subset: use only the first N examples (tests, smoke runs).
        channels_last: torch memory format (default: on for GPU).
        checkpoint: path stem for the per-epoch checkpoint (None: no checkpoint).
        progress: show a progress bar per epoch.
        exec_mode: torch eager | compile | step-compile, keras jit | nojit (bench.runners; None: the
            framework's default, as in the throughput jobs).
    """

    model: str
    recipe: Recipe
    precision: str = "fp32"
    seed: int = 0
    device: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    channels_last: bool | None = None
    checkpoint: str | None = None
    progress: bool = True
    exec_mode: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def _subset(data: Cifar10, cfg: TrainConfig):
    ntr = cfg.train_subset or len(data.y_train)
    nte = cfg.test_subset or len(data.y_test)
    return data.x_train[:ntr], data.y_train[:ntr], data.x_test[:nte], data.y_test[:nte]


def _bar(cfg: TrainConfig, total: int, desc: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=not cfg.progress, dynamic_ncols=True)


def _atomic_save(save: Callable[[str], None], path: str) -> None:
    """``save`` into ``<base>.tmp<ext>``, renamed over ``path`` when complete (ResultsWriteError on a full disk)."""
    from bench.writes import atomic_write
    atomic_write(path, save)


def train_torch(cfg: TrainConfig, data: Cifar10, on_epoch: Callable[[dict], None]) -> list[dict]:
    """Train the PyTorch twin; calls ``on_epoch(row)`` after each epoch; returns the rows."""
    import torch
    import torch.nn.functional as F

    from bench.memory import peak_bytes, reset_peak
    from bench.models import build
    from bench.runners import TORCH_MODES, compile_torch_step

    mode = cfg.exec_mode or "eager"
    if mode not in TORCH_MODES:
        raise ValueError(f"torch exec_mode must be one of {TORCH_MODES}, got {mode!r}")
    dev = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels, as the runners do
    torch.manual_seed(cfg.seed)
    r = cfg.recipe
    xtr, ytr, xte, yte = _subset(data, cfg)
    cl = (dev == "cuda") if cfg.channels_last is None else cfg.channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format
    # the whole dataset lives on the device, normalised and padded once; not part of the epoch time
    xpad = torch.from_numpy(pad_images(normalize(xtr))).permute(0, 3, 1, 2).contiguous().to(dev)
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
    start = 0
    if cfg.checkpoint and os.path.exists(cfg.checkpoint):
        ck = torch.load(cfg.checkpoint, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        scaler.load_state_dict(ck["scaler"])
        start = ck["epoch"]
    rows = []
    for epoch in range(start, r.epochs):
        model.train()
        reset_peak("torch", "torch")
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        bar = _bar(cfg, spe, f"{cfg.model} torch epoch {epoch + 1}/{r.epochs}")
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
        peak, why = peak_bytes("torch", "torch")
        test_loss, test_acc = _eval_torch(model, xte_d, yte_d, amp_dtype, dev)
        n = spe * r.batch_size
        row = {"epoch": epoch + 1, "epochs_total": r.epochs, "lr": lr, "train_loss": loss_sum.item() / n,
               "train_acc": correct.item() / n, "test_loss": test_loss, "test_acc": test_acc, "epoch_s": epoch_s,
               "train_images_per_s": n / epoch_s, "peak_mem_mib": None if peak is None else peak / 2**20,
               "null_reason": None if peak is not None else why, "train_examples": n, "seed": cfg.seed}
        rows.append(row)
        on_epoch(row)  # the row first: a checkpoint never gets ahead of the rows written
        if cfg.checkpoint:
            ck = {"model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict(),
                  "epoch": epoch + 1}
            _atomic_save(lambda p: torch.save(ck, p), cfg.checkpoint)
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


def keras_optimizer(recipe: Recipe, steps_per_epoch: int):
    """Keras optimizer with the recipe's schedule and coupled weight decay (see bench.train_keras)."""
    from bench.train_keras import CoupledAdam, CoupledSGD, RecipeSchedule
    sched = RecipeSchedule(recipe, steps_per_epoch)
    if recipe.optimizer == "sgd":
        return CoupledSGD(learning_rate=sched, momentum=recipe.momentum, nesterov=recipe.nesterov,
                          l2=recipe.weight_decay)
    return CoupledAdam(learning_rate=sched, l2=recipe.weight_decay)


def train_keras(cfg: TrainConfig, data: Cifar10, on_epoch: Callable[[dict], None]) -> list[dict]:
    """Train the Keras twin on the current backend; calls ``on_epoch(row)`` after each epoch."""
    import keras

    from bench.env import framework_env
    from bench.memory import peak_bytes, reset_peak
    from bench.models import build
    from bench.runners import default_keras_exec_mode
    from bench.train_keras import PlanModel, ProgressCallback, load_checkpoint, save_checkpoint

    r = cfg.recipe
    backend = keras.backend.backend()
    keras.utils.set_random_seed(cfg.seed)
    keras.config.set_dtype_policy(KERAS_POLICY[cfg.precision])
    xtr, ytr, xte, yte = _subset(data, cfg)
    xte_n = normalize(xte)
    sampler = EpochSampler(len(ytr), r.batch_size, cfg.seed)
    spe = sampler.steps_per_epoch
    on_gpu = framework_env("keras", cfg.device)["device"] == "cuda"
    mode = cfg.exec_mode or default_keras_exec_mode("cuda" if on_gpu else "cpu", backend)
    if mode not in ("jit", "nojit"):
        raise ValueError(f"keras exec_mode must be jit or nojit, got {mode!r}")
    jit = mode == "jit"
    net = build(cfg.model, "keras")
    # the whole (normalised, padded) training set lives on the device; each step gathers its batch
    # in-graph from the shared plan, as the PyTorch loop does (bench.train_keras.PlanAugment)
    trainer = _compile_keras(PlanModel(net, pad_images(normalize(xtr))), keras_optimizer(r, spe), jit)
    _compile_keras(net, None, jit)  # evaluation on the plain test images
    start = 0
    if cfg.checkpoint and os.path.exists(cfg.checkpoint):
        trainer.optimizer.build(trainer.trainable_variables)
        start = load_checkpoint(cfg.checkpoint, net, trainer.optimizer)
    rows = []
    for epoch in range(start, r.epochs):
        reset_peak("keras", backend)
        plans = sampler.epoch(epoch)
        cb = ProgressCallback(cfg.progress, spe, f"{cfg.model} keras/{backend} epoch {epoch + 1}/{r.epochs}", r.batch_size)
        t0 = time.perf_counter()
        hist = trainer.fit(plan_array(plans), np.concatenate([ytr[p.index] for p in plans]), batch_size=r.batch_size,
                           epochs=epoch + 1, initial_epoch=epoch, verbose=0, callbacks=[cb], shuffle=False)
        epoch_s = time.perf_counter() - t0
        peak, why = peak_bytes("keras", backend) if on_gpu else (None, "no GPU: allocator peak not defined on the CPU")
        ev = net.evaluate(xte_n, yte, batch_size=1000, verbose=0, return_dict=True)
        n = spe * r.batch_size
        row = {"epoch": epoch + 1, "epochs_total": r.epochs, "lr": r.lr_at((epoch + 1) * spe - 1, spe),
               "train_loss": float(hist.history["loss"][-1]), "train_acc": float(hist.history["accuracy"][-1]),
               "test_loss": float(ev["loss"]), "test_acc": float(ev["accuracy"]), "epoch_s": epoch_s,
               "train_images_per_s": n / epoch_s, "peak_mem_mib": None if peak is None else peak / 2**20,
               "null_reason": None if peak is not None else why, "train_examples": n, "seed": cfg.seed}
        rows.append(row)
        on_epoch(row)  # the row first: a checkpoint never gets ahead of the rows written
        if cfg.checkpoint:
            save_checkpoint(cfg.checkpoint, net, trainer.optimizer, epoch + 1)
    return rows


def _compile_keras(model, optimizer, jit: bool):
    import keras
    model.compile(optimizer=optimizer or "sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    return model


def checkpoint_path(directory: Path, model: str, framework: str, backend: str, precision: str, recipe: str) -> str:
    ext = ".pt" if framework == "torch" else ".npz"
    return str(directory / f"{model}-{framework}-{backend}-{precision}-{recipe}{ext}")
