"""Keras' training loop (every backend): one row per epoch, ``model.fit`` one epoch at a time, checkpoints.

Both stacks train from the same :class:`bench.data.EpochSampler` plan, the same learning-rate formula
and the same coupled weight decay (``bench.stacks.keras.optimizers``). The whole (normalised, padded)
training set lives on the device (``bench.stacks.keras.data.PlanModel``); ``fit`` gets the plan's
integers. Checkpoints are one ``.npz`` (weights, optimizer variables, epoch, its rows so far), replaced atomically,
the previous one kept; a damaged one is set aside (``bench.stacks.common.checkpoint``).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import keras
import numpy as np

from bench.data import Cifar10, EpochSampler, normalize, normalize_padded, plan_array
from bench.stacks.base import NO_GPU, TrainConfig, epoch_row, subset
from bench.stacks.common import checkpoint
from bench.stacks.keras.data import PlanModel
from bench.stacks.keras.optimizers import compile_keras, keras_optimizer
from bench.stacks.keras.step import KERAS_POLICY


def train_keras(stack, cfg: TrainConfig, data: Cifar10, on_epoch: Callable[[dict], None]) -> list[dict]:
    """Train the Keras twin on the current backend; calls ``on_epoch(row)`` after each epoch."""
    from bench.zoo import build

    r = cfg.recipe
    backend = keras.backend.backend()
    keras.utils.set_random_seed(cfg.seed)
    keras.config.set_dtype_policy(KERAS_POLICY[cfg.precision])
    xtr, ytr, xte, yte = subset(data, cfg)
    xte_n = normalize(xte)
    sampler = EpochSampler(len(ytr), r.batch_size, cfg.seed)
    spe = sampler.steps_per_epoch
    on_gpu = stack.env(cfg.device)["device"] == "cuda"
    mode = stack.check_exec_mode(cfg.exec_mode or stack.default_exec_mode("cuda" if on_gpu else "cpu"))
    mem = stack.memory()
    jit = mode == "jit"
    net = build(cfg.model, "keras")
    # the whole (normalised, padded) training set lives on the device; each step gathers its batch
    # in-graph from the shared plan, as the PyTorch loop does (bench.stacks.keras.data.PlanAugment)
    trainer = compile_keras(PlanModel(net, normalize_padded(xtr)), keras_optimizer(r, spe), jit)
    compile_keras(net, None, jit)  # evaluation on the plain test images
    start, rows = 0, []
    if cfg.checkpoint and any(os.path.exists(p) for p in (cfg.checkpoint, checkpoint.previous(cfg.checkpoint))):
        trainer.optimizer.build(trainer.trainable_variables)
        got = checkpoint.load(cfg.checkpoint, lambda p: load_checkpoint(p, net, trainer.optimizer))
        if got is not None:
            start, rows = got
            for row in rows:  # rows lost from epochs.csv since are written again from the checkpoint (else skipped)
                on_epoch(row)
    for epoch in range(start, r.epochs):
        mem.reset_peak()
        plans = sampler.epoch(epoch)
        cb = ProgressCallback(cfg.progress, spe, f"{cfg.model} keras/{backend} epoch {epoch + 1}/{r.epochs}", r.batch_size)
        t0 = time.perf_counter()
        hist = trainer.fit(**stack.fit_data(plan_array(plans), np.concatenate([ytr[p.index] for p in plans]),
                                            r.batch_size),
                           epochs=epoch + 1, initial_epoch=epoch, verbose=0, callbacks=[cb], shuffle=False)
        epoch_s = time.perf_counter() - t0
        peak, why = mem.peak_bytes() if on_gpu else (None, NO_GPU)
        ev = net.evaluate(**stack.fit_data(xte_n, yte, 1000), verbose=0, return_dict=True)
        n = spe * r.batch_size
        row = epoch_row(cfg, epoch, r.lr_at((epoch + 1) * spe - 1, spe),
                        (float(hist.history["loss"][-1]), float(hist.history["accuracy"][-1])),
                        (float(ev["loss"]), float(ev["accuracy"])), epoch_s, n, peak, why)
        rows.append(row)
        on_epoch(row)  # the row first: a checkpoint never gets ahead of the rows written
        if cfg.checkpoint:
            save_checkpoint(cfg.checkpoint, net, trainer.optimizer, epoch + 1, rows)
    return rows


def save_checkpoint(path: str, net: keras.Model, optimizer, epoch: int, rows: list[dict] | None = None) -> None:
    """The twin's weights, the optimizer's variables, the epoch and its rows so far in one ``.npz``, replaced
    atomically, the previous one kept (``bench.stacks.common.checkpoint``)."""
    store: dict = {}
    optimizer.save_own_variables(store)
    arrays = {f"w{i}": keras.ops.convert_to_numpy(w) for i, w in enumerate(net.weights)}
    arrays.update({f"o{k}": np.asarray(v) for k, v in store.items()})
    arrays["rows"] = np.asarray(json.dumps(rows or []))
    # a full disk: ResultsWriteError, the previous checkpoint stays
    checkpoint.save(path, lambda tmp: np.savez(tmp, epoch=np.int64(epoch), **arrays), tmp_suffix=".tmp.npz")


def load_checkpoint(path: str, net: keras.Model, optimizer) -> tuple[int, list[dict]]:
    """Restore what ``save_checkpoint`` wrote into a built ``net`` and an optimizer built on its variables; returns
    (its epoch, its epoch rows)."""
    with np.load(path) as ck:
        stored = sorted((k for k in ck.files if k.startswith("w")), key=lambda k: int(k[1:]))
        shapes = [tuple(ck[k].shape) for k in stored]
        if shapes != [tuple(v.shape) for v in net.weights]:
            raise ValueError(f"checkpoint {path} holds {len(stored)} weights that do not match {net.name} "
                             f"({len(net.weights)} weights): a checkpoint of another model? Delete it to start over.")
        weights = [ck[k] for k in stored]
        store = {k[1:]: ck[k] for k in ck.files if k.startswith("o")}
        epoch = int(ck["epoch"])
        rows = json.loads(str(ck["rows"])) if "rows" in ck.files else []
    for v, w in zip(net.weights, weights, strict=True):
        v.assign(w)
    optimizer.load_own_variables(store)
    return epoch, rows


class ProgressCallback(keras.callbacks.Callback):
    """A tqdm bar per epoch with loss, accuracy and images/s (the same bar as the PyTorch loop)."""

    def __init__(self, enabled: bool, steps: int, desc: str, batch_size: int) -> None:
        super().__init__()
        self.enabled, self.steps, self.desc, self.batch_size = enabled, steps, desc, batch_size

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.steps, desc=self.desc, unit="step", leave=False, disable=not self.enabled,
                        dynamic_ncols=True)
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.enabled and (batch % 20 == 0 or batch == self.steps - 1) and logs:
            img_s = (batch + 1) * self.batch_size / (time.perf_counter() - self.t0)
            self.bar.set_postfix(loss=f"{float(logs.get('loss', 0)):.3f}",
                                 acc=f"{float(logs.get('accuracy', 0)):.3f}", img_s=f"{img_s:.0f}")
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
