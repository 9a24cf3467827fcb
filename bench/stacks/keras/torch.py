"""Keras on torch: versions and GPUs, ``fit``'s call of the train function, and the memory counter, which
reuses PyTorch's autograd hooks and CUDA peak (``bench.stacks.common.autograd``: shared, not copied)."""
from __future__ import annotations

from bench.stacks.base import StepMemory
from bench.stacks.common.autograd import SavedBytesCounter, TorchCudaPeak, storage_bytes
from bench.stacks.keras import KerasStack
from bench.stacks.keras.memory import KerasMemory


class KerasTorchStack(KerasStack):
    name = "keras/torch"
    backend = "torch"

    def backend_version_and_gpus(self):
        import torch
        return torch.__version__, (["cuda"] if torch.cuda.is_available() else [])

    def threads(self) -> int:
        import torch
        return torch.get_num_threads()

    def fit_window(self, model, train_function, batch, n):
        import keras
        logs = None
        for _ in range(n):  # as torch's fit: the train function takes a list of tensor batches
            x, y = batch()
            logs = train_function([(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y), None)])
        return logs

    def memory(self):
        return KerasTorchMemory()


class KerasTorchMemory(KerasMemory, TorchCudaPeak):
    """Keras on the torch backend: its train step is torch autograd, so the same hooks count it."""

    name = "keras/torch"
    exec_mode = "nojit"

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        import keras
        import numpy as np
        import torch
        net, opt = self._build(model, precision, **options)
        rng = np.random.default_rng(0)
        x = keras.ops.convert_to_tensor(rng.standard_normal((batch_size, 32, 32, 3)).astype("float32"))
        y = keras.ops.convert_to_tensor(rng.integers(0, 10, batch_size))
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        exclude = {v.value.untyped_storage().data_ptr() for v in net.weights + opt.variables}
        with SavedBytesCounter(exclude) as c:
            loss = loss_fn(y, net(x, training=True))  # what keras' torch train_step runs under autograd
        loss.backward()
        grads = [v.value.grad for v in net.trainable_variables]
        with torch.no_grad():
            opt.apply(grads, net.trainable_variables)
        m = self._state(net, opt)
        m.grads = storage_bytes(grads)
        m.saved_activations, m.saved_by_kind = c.total, c.by_kind()
        m.source = "torch.autograd.graph.saved_tensors_hooks, eager step (keras torch backend)"
        return m
