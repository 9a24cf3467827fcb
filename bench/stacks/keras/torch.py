"""Keras on torch: versions and GPUs, ``fit``'s call of the train function, and the memory counter, which
reuses PyTorch's autograd hooks and CUDA peak (``bench.stacks.common.autograd``: shared, not copied)."""
from __future__ import annotations

import contextlib
import functools

from bench.stacks.base import StepMemory, StepProfile
from bench.stacks.common.autograd import SavedBytesCounter, TorchCudaPeak, storage_bytes
from bench.stacks.common.torch_alloc import profiled_step_peak
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

    def roof_kernels(self, device):
        from bench.stacks.common.torch_peaks import TorchRoofKernels
        return TorchRoofKernels(device)

    def fit_window(self, model, train_function, batch, n):
        import keras
        logs = None
        for _ in range(n):  # as torch's fit: the train function takes a list of tensor batches
            x, y = batch()
            logs = train_function([(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y), None)])
        return logs

    def memory(self):
        return KerasTorchMemory()

    def profile(self, spec):
        """The shared torch-autograd profiler (``bench.stacks.common.torch_profile``) on Keras' own
        train step (called as ``fit`` calls it): each Keras layer is a module call, named by its layer name, whose
        range opens when Keras' ``Layer.__call__`` is entered (Keras' own per-call work, before torch's module
        hooks run, is the layer's: see :func:`keras_call_ranges`); the optimizer's ``apply`` and the loss are wrapped
        in named ranges on this model's instances."""
        import torch

        from bench.stacks.common.torch_profile import LOSS, OPT, profile_torch_steps
        from bench.stacks.keras.layers import keras_kind, layers_of
        from bench.stacks.keras.profile import build_compiled, fit_step, trace_file, wrap_in
        model, batch_size, precision, steps, trace_dir = spec.model, spec.batch_size, spec.precision, spec.steps, spec.trace_dir
        model_options = spec.model_options
        env = self.env(spec.device)
        mode = self.check_exec_mode(spec.exec_mode or self.default_exec_mode(env["device"]))
        if mode == "jit":
            return StepProfile(env=env, exec_mode=mode, null_reason="keras/torch jit (torch.compile): per-layer "
                               "attribution is implemented for nojit only (Inductor fuses across layers)")
        net, x, y = build_compiled(model, precision, batch_size, False, model_options)
        rf = torch.autograd.profiler.record_function
        wrap_in(net.optimizer, "apply", lambda: rf(OPT))
        wrap_in(net, "_compute_loss", lambda: rf(LOSS))
        names = {id(la): (la.name, keras_kind(la)) for la in layers_of(net)}
        sync = torch.cuda.synchronize if env["device"] == "cuda" else (lambda: None)
        p = profile_torch_steps(fit_step(self, net, x, y), names, steps,
                                trace_file(trace_dir, model, "keras-torch", mode, batch_size, ".pt.trace.json.gz",
                                           model_options), sync, call_ranges=keras_call_ranges)
        p.env, p.exec_mode = env, mode
        p.source += "; Keras layer names, a layer's range from its Keras __call__; the train function called as fit calls it"
        return p


@contextlib.contextmanager
def keras_call_ranges(profiler):
    """While profiling, ``keras.layers.Layer.__call__`` opens the layer's range (``profiler.enter_layer``) before
    Keras' own per-call work (dtype policy, autocast, masking, name scope) and closes it after: that Python runs
    outside torch's module hooks, and without this it is time no layer owns. Restored on exit."""
    import keras
    layer_cls = keras.layers.Layer
    call = layer_cls.__call__

    @functools.wraps(call)
    def ranged(self, *args, **kwargs):
        profiler.enter_layer(self, args)
        try:
            return call(self, *args, **kwargs)
        finally:
            profiler.exit_layer(self, args, None)
    layer_cls.__call__ = ranged
    try:
        yield
    finally:
        layer_cls.__call__ = call


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
        if not self.with_alloc_peak:
            return m
        # the allocator peak over Keras' own train step (train_on_batch: fit's train function, nojit), by the same
        # profiler method as PyTorch's (bench.stacks.common.torch_alloc); the batch is already a tensor
        net.compile(optimizer=opt, loss=loss_fn, jit_compile=False)
        dev = x.device.type
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

        def step() -> None:
            net.train_on_batch(x, y)  # returns the loss on the host: the step has finished
            sync()
        m.alloc_peak, m.alloc_peak_method = profiled_step_peak(step, dev)
        m.alloc_peak_method += "; Keras train_on_batch (jit_compile=False)"
        m.alloc_peak_kind = "runtime"
        return m
