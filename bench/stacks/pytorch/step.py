"""PyTorch's timed step: eager, ``torch.compile`` of the model, or the whole train step compiled.

Execution modes: ``eager``; ``compile`` (``torch.compile`` of the model, the optimizer eager);
``step-compile`` (the whole train step -- forward, loss, backward, optimizer update -- is one
``torch.compile``'d function, the backward captured by compiled autograd; on CUDA with mode
``reduce-overhead``, i.e. CUDA graphs, on a CPU with the default mode). The optimizer's own
``torch._dynamo.graph_break`` (torch/optim/optimizer.py: it keeps the update in place) splits the
step into a few compiled graphs; each is compiled and, on CUDA, graph-replayed.

Training step = forward + backward + optimizer (SGD, momentum 0.9, lr 0.1, as the plain scripts of
docs/anchors.md, "Plain scripts"). ``sync`` is ``torch.cuda.synchronize`` on a GPU.
"""
from __future__ import annotations

from collections.abc import Callable

from bench.core import phases
from bench.stacks.base import StepRunner, StepSpec
from bench.stacks.pytorch.inject import slow_layers

TORCH_MODES = ("eager", "compile", "step-compile")


def torch_amp_dtype(precision: str):
    """The autocast dtype of a precision (None for fp32: no autocast)."""
    import torch
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def torch_compile_mode(device: str) -> str:
    """torch.compile mode of ``step-compile``: CUDA graphs (reduce-overhead) on a GPU, the default on a CPU."""
    return "reduce-overhead" if device == "cuda" else "default"


def compile_torch_step(fn: Callable, device: str) -> Callable:
    """``fn`` (a whole train step: forward, ``loss.backward()``, ``opt.step()``) compiled as one function.

    The backward inside the compiled region is captured by compiled autograd (torch tutorial "Compiled
    Autograd"); the optimizer step is compiled as in "Compiling the optimizer with torch.compile". On
    CUDA each call is marked as a new CUDA-graph step, so a tensor returned by one call is read before
    the next call overwrites it.
    """
    import torch
    compiled = torch.compile(fn, mode=torch_compile_mode(device))
    cuda = device == "cuda"

    def run(*args):
        if cuda:
            torch.compiler.cudagraph_mark_step_begin()
        with torch._dynamo.config.patch(compiled_autograd=True):
            return compiled(*args)
    return run


def _real_input(state: dict, data_dir: str | None, batch: int, seed: int, dev: str, fmt) -> Callable[[], None]:
    """``next_batch()`` of the real pipeline: the training set resident on the device, each step's batch
    cropped and flipped there from the shared plan, written into ``state["x"]`` / ``state["y"]``."""
    import torch

    from bench.data import real_batches
    from bench.stacks.pytorch.data import augment_torch, epoch_rows_torch
    xpad_np, ytr, sampler = real_batches(data_dir, batch, seed, channels_first=True)
    xpad = torch.from_numpy(xpad_np).to(dev)  # NCHW, resident on the device
    ytr_d = torch.from_numpy(ytr).to(dev)

    def device_rows():  # each epoch's plan copied once (a copy per step would block on the GPU queue)
        epoch = 0
        while True:
            rows_d = epoch_rows_torch(sampler, epoch, dev)
            for i in range(sampler.steps_per_epoch):
                yield rows_d[i * batch:(i + 1) * batch]
            epoch += 1
    plans = device_rows()

    def next_batch():
        rows = next(plans)
        state["x"] = augment_torch(xpad, rows).contiguous(memory_format=fmt)
        state["y"] = ytr_d[rows[:, 0].long()]
    return next_batch


def make_torch_step(stack, spec: StepSpec) -> StepRunner:
    """``PyTorchStack.make_step`` (``bench.stacks.base.StepSpec`` says what it builds)."""
    import torch
    import torch.nn.functional as F

    from bench.zoo import build

    model, measurement, batch, precision, input = spec.model, spec.measurement, spec.batch_size, spec.precision, spec.input
    device, channels_last, data_dir, seed = spec.device, spec.channels_last, spec.data_dir, spec.seed
    mode, options = spec.exec_mode or "eager", spec.model_options or {}
    if mode not in TORCH_MODES:
        raise ValueError(f"torch exec_mode must be one of {TORCH_MODES}, got {mode!r}")
    env = stack.env(device)
    dev = env["device"]
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)
    cl = (dev == "cuda") if channels_last is None else channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format
    phases.enter("build")
    net = slow_layers(build(model, "torch", **options)).to(dev).to(memory_format=fmt)  # test hook: unset, net as built
    size = options.get("input_size", 32)
    params = stack.param_counts(net)
    run = torch.compile(net) if mode == "compile" else net
    amp = torch_amp_dtype(precision)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(dev, enabled=precision == "fp16")
    phases.enter("data")
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g).to(dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)
    state = {"x": x, "y": y}
    next_batch = _real_input(state, data_dir, batch, seed, dev, fmt) if input == "real" else (lambda: None)
    phases.enter("build")

    ctx = lambda: torch.autocast(dev, dtype=amp or torch.float32, enabled=amp is not None)  # noqa: E731
    if measurement == "train":
        net.train()
        if mode == "step-compile":
            def whole_step(x, y):
                with ctx():
                    loss = F.cross_entropy(net(x).float(), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                return loss.detach()

            compiled = compile_torch_step(whole_step, dev)

            def step():
                next_batch()
                opt.zero_grad(set_to_none=True)
                state["loss"] = compiled(state["x"], state["y"])
        else:
            def step():
                next_batch()
                with ctx():
                    loss = F.cross_entropy(run(state["x"]).float(), state["y"])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                state["loss"] = loss.detach()
    else:
        net.eval()
        if mode == "step-compile":  # inference: the whole forward step, compiled the same way (CUDA graphs on a GPU)
            run = torch.compile(net, mode=torch_compile_mode(dev))

        def step():
            next_batch()
            if mode == "step-compile" and dev == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            with torch.inference_mode(), ctx():
                run(state["x"])

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    weights = lambda: [p.detach().float().cpu().numpy().copy() for p in net.parameters()]  # noqa: E731
    loss = lambda: float(state["loss"])  # noqa: E731  (the last train step's loss: tests)
    return StepRunner(step, sync, env, mode, cl, params, extra={"weights": weights, "loss": loss})
