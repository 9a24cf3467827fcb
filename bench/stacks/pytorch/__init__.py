"""PyTorch: the timed step (``step``), the training loop (``train``), the memory counter (``memory``), the
plain-script baseline (``baseline``),
the step profile (``profile``) and the device-side data plan (``data``), behind :class:`PyTorchStack`."""
from __future__ import annotations

from bench.core.env import cpu_name
from bench.stacks.base import Stack


class PyTorchStack(Stack):
    name = "torch"
    framework = "torch"
    backend = "torch"
    checkpoint_ext = ".pt"

    def env(self, device: str | None = None) -> dict:
        import torch
        cuda = torch.cuda.is_available() and device != "cpu"
        return {"framework": "torch", "backend": "torch", "framework_version": torch.__version__,
                "backend_version": torch.__version__, "device": "cuda" if cuda else "cpu",
                "device_name": torch.cuda.get_device_name(0) if cuda else cpu_name()}

    def threads(self) -> int:
        import torch
        return torch.get_num_threads()

    def param_counts(self, net) -> tuple[int, int]:
        from bench.zoo.counts import torch_param_counts
        return torch_param_counts(net)

    def make_step(self, spec):
        from bench.stacks.pytorch.step import make_torch_step
        return make_torch_step(self, spec)

    def train(self, cfg, data, on_epoch):
        from bench.stacks.pytorch.train import train_torch
        return train_torch(self, cfg, data, on_epoch)

    def memory(self):
        from bench.stacks.pytorch.memory import TorchMemory
        return TorchMemory()

    def plain_baseline(self, model, batch, precision, device, steps):
        from bench.stacks.pytorch.baseline import bare_loop
        return bare_loop(model, batch, precision, device, steps)

    def roof_kernels(self, device):
        from bench.stacks.common.torch_peaks import TorchRoofKernels
        return TorchRoofKernels(device)

    def profile(self, spec):
        from bench.stacks.pytorch.profile import profile_torch
        return profile_torch(self, spec)
