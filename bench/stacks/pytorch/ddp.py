"""PyTorch data parallelism: ``DistributedDataParallel`` over R processes (gloo on CPUs, nccl on GPUs).

``ddp_train`` runs ``steps`` training steps of a model at global batch ``B`` on ``replicas`` processes
(``torch.multiprocessing.spawn``), each taking its contiguous slice ``B / R`` of every batch, in order.
BatchNorm is ``local`` (plain ``BatchNorm2d``: each replica normalises with its own slice's statistics
and keeps its own running statistics; rank 0's are returned) or ``sync`` (``SyncBatchNorm``: the
statistics of the global batch, all-reduced). DDP averages the gradients, so with ``sync`` the step is
the step of one replica at batch ``B`` up to the order of the sums.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

BN_MODES = ("local", "sync")
NO_SYNC_BN_CPU = ("torch.nn.SyncBatchNorm runs on GPU (or XPU) tensors only and refuses CPU input under gloo, "
                  "so DDP on a CPU has local BatchNorm only")


def bn_modes(device: str) -> tuple[str, ...]:
    """The BatchNorm modes DDP offers on ``device``: SyncBatchNorm needs GPUs."""
    return BN_MODES if device == "cuda" else ("local",)


def collective_backend(device: str) -> str:
    """The process group's backend DDP uses on ``device``."""
    return "nccl" if device == "cuda" else "gloo"


def max_replicas(device: str) -> int:
    """How many replicas this machine holds: one per GPU, or one process per CPU core."""
    if device == "cuda":
        import torch
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def _exit_now() -> None:
    """A replica that finished its work leaves without running C++ static destructors: torch's gloo process group
    sometimes aborts in them at interpreter exit ("terminate called without an active exception", SIGABRT), which
    turns a finished job into a failed one: 1 of 40 two-replica jobs failed before this exit, 0 of 40 after, on a
    2-core CPU (docs/evidence/2026-12-05/ddp-teardown, scripts/ddp_teardown_check.py)."""
    import sys
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _rendezvous(d: str) -> str:
    """The replicas meet through a file in the job's temporary folder (a ``FileStore``), not a TCP port picked
    free and then released: no other process can take it in between."""
    return "file://" + os.path.join(d, "rendezvous")


def _worker(rank: int, cfg: dict, out: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    from bench.stacks.pytorch.train import torch_optimizer
    from bench.zoo import build

    torch.set_num_threads(1)
    R = cfg["replicas"]
    dist.init_process_group("gloo", init_method=cfg["rendezvous"], rank=rank, world_size=R)
    try:
        dtype = torch.float64 if cfg["precision"] == "fp64" else torch.float32
        model = build(cfg["model"], "torch", **cfg["options"])
        model.load_state_dict({k: torch.from_numpy(v) for k, v in cfg["state"].items()})
        model = model.to(dtype)
        if cfg["bn"] == "sync":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = DDP(model)
        opt = torch_optimizer(cfg["recipe"], ddp)
        ddp.train()
        steps = len(cfg["batches"])
        for step, (x, y) in enumerate(cfg["batches"]):
            n = len(x) // R
            xs = torch.from_numpy(x[rank * n:(rank + 1) * n]).to(dtype)
            ys = torch.from_numpy(y[rank * n:(rank + 1) * n])
            for g in opt.param_groups:
                g["lr"] = cfg["recipe"].lr_at(step, steps)
            loss = F.cross_entropy(ddp(xs), ys)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if rank == 0:
            torch.save({k: v.detach().double().cpu() for k, v in model.state_dict().items()}, out)
        dist.barrier()  # no replica tears the group down while another still talks to it (gloo aborts: SIGABRT)
    finally:
        dist.destroy_process_group()
    _exit_now()


def ddp_train(model: str, options: dict, state: dict[str, np.ndarray], batches: list, replicas: int, bn: str,
              recipe, precision: str = "fp64") -> dict[str, np.ndarray]:
    """Train with DDP on ``replicas`` CPU processes (gloo); returns rank 0's state dict as float64 arrays.

    Args:
        model, options: registry name and spec overrides (``bench.zoo.build``).
        state: the starting ``state_dict`` as numpy arrays (every replica starts from it).
        batches: ``[(x NCHW float32, y int64)]`` global batches, in order; ``len(x)`` divisible by ``replicas``.
        bn: ``local`` or ``sync``. recipe: ``bench.zoo.recipes.Recipe`` (optimizer, lr schedule over the steps).
    """
    import torch
    import torch.multiprocessing as mp

    if bn not in bn_modes("cpu"):
        raise ValueError(NO_SYNC_BN_CPU if bn == "sync" else f"bn must be one of {BN_MODES}, got {bn!r}")
    if any(len(x) % replicas for x, _ in batches):
        raise ValueError(f"the global batch must divide into {replicas} replicas")
    cfg = dict(model=model, options=options, state=state, batches=batches, replicas=replicas, bn=bn,
               recipe=recipe, precision=precision)
    with tempfile.TemporaryDirectory() as d:
        cfg["rendezvous"] = _rendezvous(d)
        out = os.path.join(d, "state.pt")
        mp.spawn(_worker, args=(cfg, out), nprocs=replicas, join=True)
        return {k: v.numpy() for k, v in torch.load(out).items()}


def _timing_worker(rank: int, cfg: dict, out: str) -> None:
    import time

    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    from bench.stacks.pytorch.train import torch_optimizer
    from bench.zoo import build, get_spec
    from bench.zoo.recipes import recipe_for

    torch.set_num_threads(cfg["threads"])
    dist.init_process_group("gloo", init_method=cfg["rendezvous"], rank=rank,
                            world_size=cfg["replicas"])
    try:
        torch.manual_seed(0)
        spec = get_spec(cfg["model"], **cfg["options"])
        ddp = DDP(build(cfg["model"], "torch", **cfg["options"]))
        opt = torch_optimizer(recipe_for("paper", spec.family, batch_size=cfg["batch"]), ddp)
        x = torch.randn(cfg["batch"], spec.input_channels, spec.input_size, spec.input_size)
        y = torch.randint(0, spec.num_classes, (cfg["batch"],))
        times = []
        for i in range(cfg["warmup"] + cfg["steps"]):
            t0 = time.perf_counter()
            loss = F.cross_entropy(ddp(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP all-reduces the gradients here: every replica leaves the step together
            opt.step()
            if i >= cfg["warmup"]:
                times.append(time.perf_counter() - t0)
        if rank == 0:
            torch.save(times, out)
        dist.barrier()  # no replica tears the group down while another still talks to it (gloo aborts: SIGABRT)
    finally:
        dist.destroy_process_group()
    _exit_now()


def ddp_step_times(model: str, options: dict, replicas: int, per_replica_batch: int, steps: int,
                   warmup: int = 3) -> list[float]:
    """Seconds of each of ``steps`` DDP training steps (rank 0's clock) on ``replicas`` CPU processes (gloo),
    each replica at ``per_replica_batch`` (weak scaling), after ``warmup`` steps; one thread per replica share
    of the cores."""
    import torch
    import torch.multiprocessing as mp

    cfg = dict(model=model, options=options, replicas=replicas, batch=per_replica_batch, steps=steps,
               warmup=warmup, threads=max(1, (os.cpu_count() or 1) // replicas))
    with tempfile.TemporaryDirectory() as d:
        cfg["rendezvous"] = _rendezvous(d)
        out = os.path.join(d, "times.pt")
        mp.spawn(_timing_worker, args=(cfg, out), nprocs=replicas, join=True)
        return list(torch.load(out))


def step_times_job(backend: str, replicas: int, model: str, options: dict, per_replica_batch: int,
                   steps: int) -> list[float]:
    """``bench.scaling``'s job for PyTorch (``backend`` is torch): :func:`ddp_step_times`."""
    return ddp_step_times(model, options, replicas, per_replica_batch, steps)
