"""PyTorch's memory counter: the CUDA caching allocator's peak; saved tensors through autograd hooks
(``bench.stacks.common.autograd``, shared with Keras on torch); the allocator's peak over a training step on any
device from the profiler's memory events (``bench.stacks.common.torch_alloc``, shared with Keras on torch)."""
from __future__ import annotations

from bench.stacks.base import MemoryCounter, StepMemory
from bench.stacks.common.autograd import SavedBytesCounter, TorchCudaPeak, storage_bytes
from bench.stacks.common.torch_alloc import profiled_step_peak


class TorchMemory(TorchCudaPeak, MemoryCounter):
    """PyTorch: the CUDA caching allocator's peak; saved tensors through autograd hooks."""

    name = "torch"
    exec_mode = "eager"

    def _device(self, device: str | None) -> str:
        import torch
        return device if device else ("cuda" if torch.cuda.is_available() else "cpu")

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        import torch
        import torch.nn.functional as F

        from bench.stacks.pytorch.step import torch_amp_dtype
        from bench.zoo import build
        dev = self._device(device)
        torch.manual_seed(0)
        net = build(model, "torch", **options).to(dev)
        net.train()
        weights = list(net.parameters()) + list(net.buffers())
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)  # as the timed step
        x = torch.randn(batch_size, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (batch_size,), device=dev)
        amp = torch_amp_dtype(precision)
        with SavedBytesCounter({w.untyped_storage().data_ptr() for w in weights}) as c:
            with torch.autocast(dev, dtype=amp or torch.float32, enabled=amp is not None):
                loss = F.cross_entropy(net(x).float(), y)
        loss.backward()
        opt.step()
        state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        m = StepMemory(saved_activations=c.total, saved_by_kind=c.by_kind(), params=storage_bytes(weights),
                       grads=storage_bytes(p.grad for p in net.parameters()), optimizer_state=storage_bytes(state),
                       source="torch.autograd.graph.saved_tensors_hooks, eager step",
                       trainable_count=sum(p.numel() for p in net.parameters() if p.requires_grad))
        if not self.with_alloc_peak:
            return m
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

        def step() -> None:  # the timed step's work (bench.stacks.pytorch.step), eager
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev, dtype=amp or torch.float32, enabled=amp is not None):
                out = F.cross_entropy(net(x).float(), y)
            out.backward()
            opt.step()
            sync()
        m.alloc_peak, m.alloc_peak_method = profiled_step_peak(step, dev)
        m.alloc_peak_kind = "runtime"
        return m
