"""The ``epochs`` measure: a twin trained with a recipe by its stack (``Stack.train``), one row per epoch,
checkpoints in ``results/<run_id>/checkpoints/``, resumable (an epoch whose row is in is never written twice; an
epoch whose row was lost is written again from the checkpoint, or trained again: the job always ends with every
epoch's row)."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.core import phases
from bench.core.job import Job
from bench.results.schema import FILES, append_row


def checkpoint_path(directory: Path, model: str, stack, precision: str, recipe: str) -> str:
    """Where a training job keeps its checkpoint (one file, replaced each epoch)."""
    return str(directory / f"{model}-{stack.framework}-{stack.backend}-{precision}-{recipe}{stack.checkpoint_ext}")


def run_epochs(job: Job, out: Path, row: dict, data_dir: str | None) -> None:
    from bench.data import load_cifar10
    from bench.stacks import get_stack
    from bench.stacks.base import TrainConfig
    from bench.zoo import get_spec
    from bench.zoo.recipes import recipe_for
    stack = get_stack(job.framework, job.keras_backend)
    recipe = recipe_for(job.recipe, get_spec(job.model).family, epochs=job.epochs, batch_size=job.batch_size)
    row.update(stack.env(job.device), recipe=recipe.name)
    phases.enter("data")
    data = load_cifar10(data_dir)
    row["data_source"] = data.kind
    ckdir = out / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(job.model, recipe, job.precision, seed=job.seed, device=job.device, train_subset=job.train_subset,
                      exec_mode=job.exec_mode, test_subset=job.test_subset, progress=sys.stderr.isatty(),
                      checkpoint=checkpoint_path(ckdir, job.model, stack, job.precision,
                                                 f"{recipe.name}-{job.job_id.replace('/', '_')}"))
    row["exec_mode"] = resolved_exec_mode(job)
    written = _epochs_written(out / FILES["epochs"], job.job_id)

    def on_epoch(r: dict) -> None:
        if r["epoch"] not in written:  # else: its row went in, then a kill or a full disk cut the checkpoint
            append_row(out / FILES["epochs"], "epochs", {**row, **r, "status": "ok"})
            written.add(r["epoch"])
    phases.enter("timed")  # the training run: build, compile and every epoch (its rows written as they come)
    stack.train(cfg, data, on_epoch)
    missing = sorted(set(range(1, recipe.epochs + 1)) - written)
    if missing:  # a checkpoint ahead of the rows that cannot give them back (one written before it held rows)
        print(f"note: epoch row(s) {', '.join(map(str, missing))} of {job.job_id} are missing and its checkpoint "
              "does not hold them: training runs again from the start to write them", file=sys.stderr)
        from bench.stacks.common.checkpoint import previous
        for p in (Path(cfg.checkpoint), previous(cfg.checkpoint)):
            p.unlink(missing_ok=True)
        stack.train(cfg, data, on_epoch)
    phases.enter("write")


def _epochs_written(path: Path, job_id: str) -> set[int]:
    """Epochs of this training that already have their row (a resumed job)."""
    from bench.results.read import read_rows  # whole rows only: an epoch whose row was torn runs again
    return {int(r["epoch"]) for r in read_rows(path, "epochs") if r["job_id"] == job_id and r["status"] == "ok" and r["epoch"]}


def resolved_exec_mode(job: Job) -> str:
    """The exec mode a training job runs in (its own, or the framework's default on its device and backend)."""
    if job.exec_mode:
        return job.exec_mode
    return job.stack.default_modes[job.device]
