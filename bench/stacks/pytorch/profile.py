"""PyTorch's step profile: the eager train step of ``bench.stacks.pytorch.step`` (SGD momentum 0.9, lr 0.1,
weight decay 1e-4, cross-entropy) with every module of the twin named by its canonical path, attributed by
the shared torch-autograd profiler (``bench.stacks.common.torch_profile``)."""
from __future__ import annotations

from pathlib import Path

from bench.core import phases
from bench.stacks.base import ProfileSpec, StepProfile
from bench.stacks.pytorch.inject import slow_layers

SOURCE_NOTE = "; PyTorch module paths as keras_name (stage1.block0.conv1 -> stage1_block0_conv1)"


def module_names(net, paired: dict[str, str] | None = None) -> dict[int, tuple[str, str | None]]:
    """``id(module) -> (canonical name, kind)`` for every module but the root: the module path as the Keras
    twin spells it (``bench.zoo.specs.keras_name``), so the twins' rows join. A user twin's paired modules take
    their Keras partner's name (``paired``: ``bench.zoo.user.paired_names``)."""
    from bench.stacks.common.torch_profile import module_kind
    from bench.zoo.specs import keras_name
    paired = paired or {}
    return {id(m): (paired.get(path) or keras_name(path), module_kind(m)) for path, m in net.named_modules() if path}


def profile_torch(stack, spec: ProfileSpec) -> StepProfile:
    """``PyTorchStack.profile`` (see ``bench.stacks.base.Stack.profile``). Eager only: under ``torch.compile``
    the layers' modules no longer run as calls, so the profile says so (coverage None) instead."""
    import torch
    import torch.nn.functional as F

    from bench.stacks.common.torch_profile import LOSS, OPT, profile_torch_steps
    from bench.stacks.pytorch.step import torch_amp_dtype
    from bench.zoo import build

    model, batch, precision, device, steps, trace_dir = (spec.model, spec.batch_size, spec.precision, spec.device,
                                                         spec.steps, spec.trace_dir)
    mode, options = spec.exec_mode or "eager", spec.model_options or {}
    env = stack.env(device)
    if mode != "eager":
        return StepProfile(env=env, exec_mode=mode, null_reason=f"torch {mode}: per-layer attribution is implemented "
                           "for eager only (Inductor fuses across layers; not attributed)")
    dev = env["device"]
    torch.manual_seed(0)
    phases.enter("build")
    net = slow_layers(build(model, "torch", **options)).to(dev)  # test hook: unset, net as built
    net.train()
    size = options.get("input_size", 32)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    phases.enter("data")
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(dev)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)
    phases.enter("timed")  # the profiler's work: its warm-up, unprofiled and profiled steps
    amp = torch_amp_dtype(precision)
    scaler = torch.amp.GradScaler(dev, enabled=precision == "fp16")
    rf = torch.autograd.profiler.record_function

    def step():
        with torch.autocast(dev, dtype=amp or torch.float32, enabled=amp is not None):
            out = net(x)
            with rf(LOSS):
                loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        with rf(OPT):
            scaler.step(opt)
            scaler.update()

    tag = f"{model}-torch-eager-b{batch}" + (f"-d{options['depth']}" if "depth" in options else "")
    trace = str(Path(trace_dir) / f"{tag}.pt.trace.json.gz") if trace_dir else None
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    from bench.zoo.user import paired_names
    p = profile_torch_steps(step, module_names(net, paired_names(model)), steps, trace, sync)
    p.env, p.exec_mode = env, mode
    p.source += SOURCE_NOTE
    if dev == "cuda":
        p.null_reason = "host (CPU) time per layer: CUDA kernels are asynchronous and not correlated to layers yet"
    return p
