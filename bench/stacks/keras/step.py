"""Keras' timed step, on whichever backend this process runs: ``train_on_batch`` / ``predict_on_batch``,
and the train window ``fit`` runs.

A Keras train runner also has ``window(n)``: n steps run the way ``model.fit`` runs them between
batches (the compiled train function called back to back, no host read-back), then one read-back;
``steps_per_sample`` is the window the suites time (``bench.measures.timing.measure``). How each backend
calls its train function is the backend's own code (``KerasStack.fit_window``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.core import phases
from bench.stacks.base import StepRunner, StepSpec
from bench.stacks.keras.inject import slow_layers

KERAS_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# Keras train steps per timed sample (a window run as fit runs it, one read-back at its end): fit reads nothing
# back between batches, and on JAX it keeps the training state in flight for the whole epoch; per-step read-backs
# (train_on_batch) cost a GPU its queue and JAX a state write-back per step, on a CPU too
KERAS_WINDOW = {"cuda": 10, "cpu": 4}


def build_twin(model: str, precision: str, options: dict | None = None):
    """The Keras twin of ``model`` built as the measures build it: seed 0, the precision's dtype policy for its
    layers (float32 restored after, so nothing built later inherits it)."""
    import keras

    from bench.zoo import build
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        return build(model, "keras", **(options or {}))
    finally:
        keras.config.set_dtype_policy("float32")


def make_keras_step(stack, spec: StepSpec) -> StepRunner:
    """``KerasStack.make_step`` (``bench.stacks.base.StepSpec`` says what it builds). A Keras twin is always NHWC:
    a ``channels_last`` given is refused, not dropped."""
    import keras

    from bench.zoo import build

    if spec.channels_last is not None:
        raise ValueError(f"channels_last={spec.channels_last} is a torch memory format; a Keras twin is always NHWC "
                         "(leave it None)")
    model, measurement, batch, precision, input = spec.model, spec.measurement, spec.batch_size, spec.precision, spec.input
    device, mode, data_dir, seed = spec.device, spec.exec_mode, spec.data_dir, spec.seed
    options = spec.model_options or {}
    env = stack.env(device)
    mode = stack.check_exec_mode(mode or stack.default_exec_mode(env["device"]))
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    phases.enter("build")
    net = slow_layers(build(model, "keras", **options))  # test hook: unset, net as built
    params = stack.param_counts(net)
    phases.enter("data")
    rng = np.random.default_rng(seed)
    size = options.get("input_size", 32)
    x_host = rng.standard_normal((batch, size, size, 3)).astype("float32")
    y_host = rng.integers(0, 10, batch)
    # synthetic input is converted once, so it sits on the device before timing starts
    state = {"x": keras.ops.convert_to_tensor(x_host), "y": keras.ops.convert_to_tensor(y_host)}
    run = net
    if input == "real":
        # the training set resident on the device, the batch gathered in-graph from the plan (as in training)
        from bench.data import plan_array, real_batches
        from bench.stacks.keras.data import PlanModel
        xpad, ytr, sampler = real_batches(data_dir, batch, seed)
        run = PlanModel(net, xpad)
        plans = sampler.forever()

        def next_batch():
            plan = next(plans)
            state["x"], state["y"] = plan_array(plan), ytr[plan.index]
    else:
        def next_batch():
            pass

    phases.enter("build")
    run.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=mode == "jit")
    window = None
    if measurement == "train":
        def step():
            next_batch()
            run.train_on_batch(state["x"], state["y"])  # returns the loss as a host value: synchronous

        def batch():
            next_batch()
            return state["x"], state["y"]
        window = keras_train_window(stack, run, batch)
    else:
        def step():
            next_batch()
            run.predict_on_batch(state["x"])  # returns host numpy: synchronous

    return StepRunner(step, lambda: None, env, mode, None, params,
                      extra={"jit_compile": bool(getattr(run, "jit_compile", False)),
                             "weights": lambda: [keras.ops.convert_to_numpy(w) for w in net.trainable_weights]},
                      window=window, steps_per_sample=KERAS_WINDOW[env["device"]] if window else 1)


def keras_train_window(stack, model, batch: Callable[[], tuple]) -> Callable[[int], None]:
    """``window(n)``: n train steps of a compiled Keras ``model`` as ``fit`` runs them, then one read-back.

    ``fit`` calls the backend's compiled ``train_function`` once per batch and reads nothing back until
    the epoch ends (no callback asks for logs here); ``train_on_batch`` instead reads the loss back after
    every step (and, on JAX, writes the state back into the variables every step). The window calls
    ``train_function`` exactly as each backend's ``fit`` does (``stack.fit_window``) and ends with the
    loss read back to the host, so the device has finished. The model must have run ``train_on_batch``
    once (built and compiled).
    """
    import keras

    def window(n: int) -> None:
        model.make_train_function()
        logs = stack.fit_window(model, model.train_function, batch, n)
        float(keras.ops.convert_to_numpy(logs["loss"]))  # one host read-back: the window has finished
    return window
