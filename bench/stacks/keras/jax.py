"""Keras on JAX: versions and GPUs, ``fit``'s train window (the one reliance on Keras' private JAX state),
the memory counter (JAX's residuals before XLA fusion; the compiled step's memory_analysis() for its allocator
peak)."""
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
        if not self.with_alloc_peak:
            return m
        m.alloc_peak, m.alloc_peak_method = compiled_step_peak(net, opt, loss_fn, x, y)
        m.alloc_peak_kind = "compile-time"
        if m.alloc_peak is None:
            m.reasons.append(f"keras/jax: no allocator peak: {m.alloc_peak_method}")
        return m


JAX_PEAK_METHOD = ("XLA memory_analysis() of Keras' train step compiled as fit compiles it (jit, state donated): "
                   "temporaries {temp:.1f} + outputs {out:.1f} - outputs aliased to donated arguments {alias:.1f} MiB "
                   "(the arguments, {args:.1f} MiB of weights, optimizer state and batch, are held before the step); "
                   "compile-time: XLA's buffer assignment, the runtime has no CPU allocator statistics (memory_stats() "
                   "is None on the CPU)")


def compiled_step_peak(net, opt, loss_fn, x, y) -> tuple[int | None, str]:
    """(bytes, method): what XLA assigns to Keras' compiled train step beyond its arguments (temporaries plus the
    outputs not written into donated arguments), from ``memory_analysis()``: the most the step can hold above what
    was held before it, as the compiler planned it."""
    import jax
    import jax.numpy as jnp
    net.compile(optimizer=opt, loss=loss_fn, jit_compile=True)
    state = tuple(tuple(v.value for v in vs) for vs in (net.trainable_variables, net.non_trainable_variables,
                                                        opt.variables, net.metrics_variables))
    ma = jax.jit(net.train_step, donate_argnums=0).lower(state, (jnp.asarray(x), jnp.asarray(y), None)) \
        .compile().memory_analysis()
    if ma is None:
        return None, f"the compiled step has no memory_analysis() on {jax.devices()[0].platform} (JAX {jax.__version__})"
    rise = ma.temp_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
    return int(rise), JAX_PEAK_METHOD.format(temp=ma.temp_size_in_bytes / 2**20, out=ma.output_size_in_bytes / 2**20,
                                             alias=ma.alias_size_in_bytes / 2**20,
                                             args=ma.argument_size_in_bytes / 2**20)
