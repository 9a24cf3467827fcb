"""One train or inference step of a twin, ready to time: ``make_step(...) -> StepRunner``.

A ``StepRunner`` holds a built model, its input already on the device (synthetic) or the real
CIFAR-10 pipeline (the training set resident on the device, each batch cropped and flipped there), and
two callables: ``step()`` runs one step, ``sync()`` waits for the device (PyTorch:
``torch.cuda.synchronize``; Keras: the step returns a value read back to the host, so it is
synchronous already). Keras train runners also have ``window(n)``: n steps run the way ``model.fit``
runs them between batches (the compiled train function called back to back, no host read-back), then
one read-back; ``steps_per_sample`` is the window the suites time (see ``bench.timing.measure``).
Used by ``bench.worker`` (the suites), ``bench.overhead`` and ``tests/test_benchmarks.py``
(pytest-benchmark), so all time exactly the same code.

PyTorch execution modes: ``eager``; ``compile`` (``torch.compile`` of the model, the optimizer eager);
``step-compile`` (the whole train step -- forward, loss, backward, optimizer update -- is one
``torch.compile``'d function, the backward captured by compiled autograd; on CUDA with mode
``reduce-overhead``, i.e. CUDA graphs, on a CPU with the default mode). The optimizer's own
``torch._dynamo.graph_break`` (torch/optim/optimizer.py: it keeps the update in place) splits the
step into a few compiled graphs; each is compiled and, on CUDA, graph-replayed.

Training step = forward + backward + optimizer (SGD, momentum 0.9, lr 0.1, as in ANCHORS.md §3).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

MEASUREMENTS = ("train", "infer")
INPUTS = ("synthetic", "real")
PRECISIONS = ("fp32", "bf16", "fp16")  # bf16 / fp16: mixed precision (float32 weights) in both frameworks
KERAS_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def torch_amp_dtype(precision: str):
    """The autocast dtype of a precision (None for fp32: no autocast)."""
    import torch
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


@dataclass
class StepRunner:
    step: Callable[[], None]
    sync: Callable[[], None]
    env: dict
    exec_mode: str
    channels_last: bool | None
    params: tuple[int, int]
    extra: dict = field(default_factory=dict)  # "weights": () -> the twin's trainable weights as numpy (tests)
    window: Callable[[int], None] | None = None  # Keras train: n steps as fit runs them, one read-back at the end
    steps_per_sample: int = 1  # steps per timed sample (a Keras train window: KERAS_WINDOW; 1 elsewhere)


TORCH_MODES = ("eager", "compile", "step-compile")
# Keras train steps per timed sample (a window run as fit runs it, one read-back at its end): fit reads nothing
# back between batches, and on JAX it keeps the training state in flight for the whole epoch; per-step read-backs
# (train_on_batch) cost a GPU its queue and JAX a state write-back per step, on a CPU too
KERAS_WINDOW = {"cuda": 10, "cpu": 4}


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


def make_step(model: str, framework: str, measurement: str = "train", batch_size: int = 32,
              precision: str = "fp32", input: str = "synthetic", device: str | None = None,
              exec_mode: str | None = None, channels_last: bool | None = None, data_dir: str | None = None,
              seed: int = 0, model_options: dict | None = None) -> StepRunner:
    """Build the ``framework`` twin of ``model`` and return its step, ready to time.

    Args:
        model: registry name.
        framework: torch | keras (Keras uses the backend of this process).
        measurement: train | infer.
        batch_size: examples per step.
        precision: fp32 | bf16 | fp16.
        input: synthetic (random batch on the device) | real (CIFAR-10 + augmentation per step).
        device: cuda | cpu | None (GPU when there is one).
        exec_mode: torch: eager | compile | step-compile (see the module docstring); keras: jit | nojit.
            Default: torch eager; keras jit on a
            GPU and on JAX, nojit on a CPU otherwise. On a 2-core CPU, TensorFlow's XLA only adds
            compile time (`bench.run --suite throughput --models densenet_bc100_k12 --frameworks keras
            --exec-mode jit,nojit --batch-sizes 8 --device cpu`: first train step 78.6 s jit vs 40.0 s
            nojit, median step 623 vs 631 ms), while JAX without jit runs op by op (the Keras case of
            tests/test_train.py::test_short_training_rises_above_chance: 190 s nojit, 101 s jit).
        channels_last: torch memory format (default: on for GPU).
        data_dir: CIFAR-10 location for input=real.
        model_options: spec overrides for ``bench.models.build`` (tests: a shallow, small-input twin).
    """
    if measurement not in MEASUREMENTS:
        raise ValueError(f"measurement must be one of {MEASUREMENTS}, got {measurement!r}")
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if framework == "torch":
        return _torch_step(model, measurement, batch_size, precision, input, device, exec_mode or "eager",
                           channels_last, data_dir, seed, model_options or {})
    if framework == "keras":
        return _keras_step(model, measurement, batch_size, precision, input, device, exec_mode, data_dir, seed,
                           model_options or {})
    raise ValueError(f"unknown framework {framework!r}")


def default_keras_exec_mode(device: str, backend: str = "tensorflow") -> str:
    """XLA (jit) on a GPU, and always on JAX (JAX without jit runs op by op); on a CPU, TensorFlow and
    torch run without it (TensorFlow's graph mode; XLA there only adds compile time)."""
    return "jit" if device == "cuda" or backend == "jax" else "nojit"


def _real_batches(data_dir: str | None, batch_size: int, seed: int):
    from bench.data import EpochSampler, load_cifar10, normalize, pad_images
    data = load_cifar10(data_dir)
    sampler = EpochSampler(len(data.y_train), batch_size, seed)
    return pad_images(normalize(data.x_train)), data.y_train, sampler


def _torch_step(model, measurement, batch, precision, input, device, mode, channels_last, data_dir, seed, options):
    import torch
    import torch.nn.functional as F

    from bench.counts import torch_param_counts
    from bench.env import framework_env
    from bench.models import build

    if mode not in TORCH_MODES:
        raise ValueError(f"torch exec_mode must be one of {TORCH_MODES}, got {mode!r}")
    env = framework_env("torch", device)
    dev = env["device"]
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)
    cl = (dev == "cuda") if channels_last is None else channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format
    net = build(model, "torch", **options).to(dev).to(memory_format=fmt)
    size = options.get("input_size", 32)
    params = torch_param_counts(net)
    run = torch.compile(net) if mode == "compile" else net
    amp = torch_amp_dtype(precision)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(dev, enabled=precision == "fp16")
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g).to(dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)
    state = {"x": x, "y": y}
    if input == "real":
        from bench.data import augment_torch, epoch_rows_torch
        xpad_np, ytr, sampler = _real_batches(data_dir, batch, seed)
        xpad = torch.from_numpy(xpad_np).permute(0, 3, 1, 2).contiguous().to(dev)  # resident on the device
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
    else:
        def next_batch():
            pass

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


def _keras_step(model, measurement, batch, precision, input, device, mode, data_dir, seed, options):
    import keras

    from bench.counts import keras_param_counts
    from bench.env import framework_env
    from bench.models import build

    env = framework_env("keras", device)
    mode = mode or default_keras_exec_mode(env["device"], keras.backend.backend())
    if mode not in ("jit", "nojit"):
        raise ValueError(f"keras exec_mode must be jit or nojit, got {mode!r}")
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    net = build(model, "keras", **options)
    params = keras_param_counts(net)
    rng = np.random.default_rng(seed)
    size = options.get("input_size", 32)
    x_host = rng.standard_normal((batch, size, size, 3)).astype("float32")
    y_host = rng.integers(0, 10, batch)
    # synthetic input is converted once, so it sits on the device before timing starts
    state = {"x": keras.ops.convert_to_tensor(x_host), "y": keras.ops.convert_to_tensor(y_host)}
    run = net
    if input == "real":
        # the training set resident on the device, the batch gathered in-graph from the plan (as in bench.train)
        from bench.data import plan_array
        from bench.train_keras import PlanModel
        xpad, ytr, sampler = _real_batches(data_dir, batch, seed)
        run = PlanModel(net, xpad)
        plans = sampler.forever()

        def next_batch():
            plan = next(plans)
            state["x"], state["y"] = plan_array(plan), ytr[plan.index]
    else:
        def next_batch():
            pass

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
        window = keras_train_window(run, batch)
    else:
        def step():
            next_batch()
            run.predict_on_batch(state["x"])  # returns host numpy: synchronous

    return StepRunner(step, lambda: None, env, mode, None, params,
                      extra={"jit_compile": bool(getattr(run, "jit_compile", False)),
                             "weights": lambda: [keras.ops.convert_to_numpy(w) for w in net.trainable_weights]},
                      window=window, steps_per_sample=KERAS_WINDOW[env["device"]] if window else 1)


def keras_train_window(model, batch: Callable[[], tuple]) -> Callable[[int], None]:
    """``window(n)``: n train steps of a compiled Keras ``model`` as ``fit`` runs them, then one read-back.

    ``fit`` calls the backend's compiled ``train_function`` once per batch and reads nothing back until
    the epoch ends (no callback asks for logs here); ``train_on_batch`` instead reads the loss back after
    every step (and, on JAX, writes the state back into the variables every step). The window calls
    ``train_function`` exactly as each backend's ``fit`` does (TensorFlow and JAX: an iterator of
    batches; torch: a list), keeps JAX's state in flight between steps as ``fit`` does, and ends with the
    loss read back to the host, so the device has finished. The model must have run ``train_on_batch``
    once (built and compiled).
    """
    import keras
    backend = keras.backend.backend()

    def window(n: int) -> None:
        model.make_train_function()
        fn = model.train_function
        logs = None
        if backend == "jax":
            state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                         optimizer_variables=True, metrics_variables=True,
                                         purge_model_variables=False)
            model._jax_state_synced = False
            for _ in range(n):
                x, y = batch()
                logs, state = fn(state, iter([(x, y, None)]))
            names = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")
            model._jax_state = dict(zip(names, state))
            model.jax_state_sync()
        elif backend == "tensorflow":
            for _ in range(n):
                x, y = batch()
                logs = fn(iter([(x, y, None)]))
        else:
            for _ in range(n):
                x, y = batch()
                logs = fn([(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y), None)])
        float(keras.ops.convert_to_numpy(logs["loss"]))  # one host read-back: the window has finished
    return window
