"""Keras on JAX: versions and GPUs, ``fit``'s train window (the one reliance on Keras' private JAX state),
the memory counter (JAX's residuals before XLA fusion)."""
from __future__ import annotations

from bench.stacks.base import NO_GPU, StepMemory
from bench.stacks.keras import KerasStack
from bench.stacks.keras.memory import KerasMemory

# Keras' private JAX trainer state that fit() keeps in flight (keras/src/backend/jax/trainer.py); read by
# fit_window alone. check_private_api() fails loudly on a Keras that renames any of it (tests/test_architecture.py).
PRIVATE_JAX_STATE = ("_get_jax_state", "_jax_state_synced", "jax_state_sync")
STATE_NAMES = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")


def check_private_api(model) -> None:
    """Raise RuntimeError naming the Keras version if a compiled ``model`` lacks the private JAX state
    ``fit_window`` relies on."""
    import keras
    missing = [a for a in PRIVATE_JAX_STATE if not hasattr(model, a)]
    if missing:
        raise RuntimeError(f"Keras {keras.__version__} has no {', '.join(missing)} on its JAX trainer: "
                           "bench.stacks.keras.jax.fit_window reads Keras' private JAX state as fit() does; "
                           "update it for this Keras version")


def saved_residuals_fn():
    """JAX's ``saved_residuals`` (what ``jax.ad_checkpoint.print_saved_residuals`` prints), a private JAX function
    the memory counter relies on; RuntimeError naming the JAX version where it moved."""
    import jax
    try:
        from jax._src.ad_checkpoint import saved_residuals
    except ImportError as e:
        raise RuntimeError(f"JAX {jax.__version__} has no jax._src.ad_checkpoint.saved_residuals: "
                           "bench.stacks.keras.jax.KerasJaxMemory needs updating for this JAX version") from e
    return saved_residuals


class KerasJaxStack(KerasStack):
    name = "keras/jax"
    backend = "jax"

    def backend_version_and_gpus(self):
        import jax
        return jax.__version__, [d for d in jax.devices() if d.platform == "gpu"]

    def fit_window(self, model, train_function, batch, n):
        """As JAX's fit: the state stays in flight between steps and is written back once at the end."""
        check_private_api(model)
        state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                     optimizer_variables=True, metrics_variables=True, purge_model_variables=False)
        model._jax_state_synced = False
        logs = None
        for _ in range(n):
            x, y = batch()
            logs, state = train_function(state, iter([(x, y, None)]))
        model._jax_state = dict(zip(STATE_NAMES, state))
        model.jax_state_sync()
        return logs

    def roof_kernels(self, device):
        from bench.stacks.keras.jax_peaks import JaxRoofKernels
        return JaxRoofKernels(device, self.threads())

    def memory(self):
        return KerasJaxMemory()

    def profile(self, spec):
        from bench.stacks.keras.jax_trace import profile_jax
        return profile_jax(self, spec.model, spec.batch_size, spec.precision, spec.device, spec.exec_mode, spec.steps,
                           spec.trace_dir, spec.model_options)


class KerasJaxMemory(KerasMemory):
    """Keras on JAX: residuals JAX saves for the step's VJP, listed before XLA compiles the step."""

    name = "keras/jax"
    exec_mode = "jit"
    # tracing the step costs ~30 s of CPU for DenseNet-BC-100 at any batch (measured on a 2-core CPU): a GPU
    # memory sweep would pay it at every batch, so the figure comes from CPU memory runs
    measure_on_gpu = False

    def peak_bytes(self) -> tuple[int | None, str]:
        import jax
        dev = jax.devices()[0]
        if dev.platform != "gpu":
            return None, NO_GPU
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" not in stats:
            return None, "jax device reports no peak_bytes_in_use"
        return stats["peak_bytes_in_use"], "jax peak_bytes_in_use (whole process)"
    # JAX has no reset: the worker measures one configuration per fresh process instead.

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        import keras
        import numpy as np
        saved_residuals = saved_residuals_fn()
        net, opt = self._build(model, precision, **options)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        trainable = [v.value for v in net.trainable_variables]
        frozen = [v.value for v in net.non_trainable_variables]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch_size, 32, 32, 3)).astype("float32")
        y = rng.integers(0, 10, batch_size)

        def loss(tv, x):
            out, _ = net.stateless_call(tv, frozen, x, training=True)
            return loss_fn(y, out)

        res = saved_residuals(loss, trainable, x)
        # arguments (the weights, the input batch) are held anyway; count what the forward pass adds
        nbytes = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a, why in res
                     if not str(why).startswith("from the argument"))
        m = self._state(net, opt)
        m.jax_residuals = nbytes
        m.source = "jax.ad_checkpoint saved_residuals (before XLA fusion)"
        m.reasons.append("keras/jax: no autograd saved-tensor count, jax_residuals_mib counts residuals before XLA "
                         "fusion instead")
        return m
