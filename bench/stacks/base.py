"""The interface every stack implements, and the types the measures exchange with it.

A :class:`Stack` is one implementation of the twins' execution: PyTorch, or Keras 3 on one backend.
The measures (``bench.measures``) drive it through these methods only:

=====================  =====================================================================
``env(device)``        the framework/backend/device columns of a row in this process
``param_counts(net)``  (trainable, non-trainable) parameters of a built twin
``make_step(...)``     a :class:`StepRunner`: one train or inference step, ready to time
``train(cfg, ...)``    the training loop of a recipe, one row per epoch, with checkpoints
``memory()``           a :class:`MemoryCounter`: allocator peaks and what one step keeps
``plain_baseline()``   images/s of the plain script a careful user of the stack writes
``profile(...)``       a :class:`StepProfile`: where one train step's time goes, layer by layer
=====================  =====================================================================

Adding a measure: its driver in ``bench.measures`` plus, where the stacks differ, one method here and
one implementation per stack. Nothing in this module imports a framework.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.results.schema import LAYER_KINDS
from bench.zoo.recipes import Recipe

MEASUREMENTS = ("train", "infer")
INPUTS = ("synthetic", "real")
PRECISIONS = ("fp32", "bf16", "fp16")  # bf16 / fp16: mixed precision (float32 weights) in both frameworks
NO_GPU = "no GPU: allocator peak not defined on the CPU"
MIB = 2 ** 20


@dataclass
class StepRunner:
    """A built twin's step, ready to time.

    Attributes:
        step: runs one step.
        sync: waits for the device (PyTorch: ``torch.cuda.synchronize``; Keras: a no-op, its steps read
            a value back to the host).
        env: the framework/backend/device columns (``Stack.env``).
        exec_mode: the mode the step runs in.
        channels_last: torch memory format (None for Keras: always NHWC).
        params: (trainable, non-trainable) parameter counts.
        extra: "weights": () -> the twin's trainable weights as numpy, "loss": the last loss (tests).
        window: Keras train: n steps as fit runs them, one read-back at the end.
        steps_per_sample: steps per timed sample (a Keras train window; 1 elsewhere).
    """

    step: Callable[[], None]
    sync: Callable[[], None]
    env: dict
    exec_mode: str
    channels_last: bool | None
    params: tuple[int, int]
    extra: dict = field(default_factory=dict)
    window: Callable[[int], None] | None = None
    steps_per_sample: int = 1


def check_step_args(measurement: str, input: str, precision: str) -> None:
    """Raises ValueError for a measurement, input or precision no stack knows."""
    for name, value, known in (("measurement", measurement, MEASUREMENTS), ("input", input, INPUTS),
                               ("precision", precision, PRECISIONS)):
        if value not in known:
            raise ValueError(f"{name} must be one of {known}, got {value!r}")


@dataclass(frozen=True)
class StepSpec:
    """What ``Stack.make_step`` builds: one frozen object, as ``TrainConfig`` is for training.

    Attributes:
        model: registry name.
        measurement: train (forward + backward + SGD momentum 0.9, lr 0.1) | infer.
        batch_size: examples per step.
        precision: fp32 | bf16 | fp16.
        input: synthetic (random batch on the device) | real (CIFAR-10 + augmentation per step).
        device: cuda | cpu | None (GPU when there is one).
        exec_mode: one of the stack's modes (None: ``default_exec_mode``).
        channels_last: torch memory format (None: on for a GPU). A Keras twin is always NHWC: a Keras stack refuses
            True or False instead of dropping it.
        data_dir: CIFAR-10 location for input=real.
        seed: init and input seed.
        model_options: spec overrides for ``bench.zoo.build`` (tests: a shallow, small-input twin).
    """

    model: str
    measurement: str = "train"
    batch_size: int = 32
    precision: str = "fp32"
    input: str = "synthetic"
    device: str | None = None
    exec_mode: str | None = None
    channels_last: bool | None = None
    data_dir: str | None = None
    seed: int = 0
    model_options: dict | None = None

    def __post_init__(self) -> None:
        check_step_args(self.measurement, self.input, self.precision)


@dataclass(frozen=True)
class ProfileSpec:
    """What ``Stack.profile`` profiles (a train step on synthetic input).

    Attributes:
        model: registry name.
        batch_size: examples per step.
        precision: fp32 | bf16 | fp16.
        device: cuda | cpu | None (GPU when there is one).
        exec_mode: one of the stack's modes (None: ``default_exec_mode``).
        steps: profiled steps (plus one discarded profiler warm-up step) and unprofiled timed steps.
        trace_dir: folder for the trace (None: no trace kept).
        model_options: spec overrides for ``bench.zoo.build`` (tests).
    """

    model: str
    batch_size: int = 8
    precision: str = "fp32"
    device: str | None = None
    exec_mode: str | None = None
    steps: int = 5
    trace_dir: str | None = None
    model_options: dict | None = None

    def __post_init__(self) -> None:
        check_step_args("train", "synthetic", self.precision)


@dataclass
class TrainConfig:
    """Attributes:
        model: registry name.
        recipe: resolved recipe.
        precision: fp32 | bf16 | fp16 (mixed precision for the latter two).
        seed: init and sampler seed.
        device: cuda | cpu | None (auto).
        train_subset / test_subset: use only the first N examples (tests, smoke runs).
        channels_last: torch memory format (default: on for GPU).
        checkpoint: path stem for the per-epoch checkpoint (None: no checkpoint).
        progress: show a progress bar per epoch.
        exec_mode: the stack's exec mode (None: its default on the device, as in the throughput jobs).
    """

    model: str
    recipe: Recipe
    precision: str = "fp32"
    seed: int = 0
    device: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    channels_last: bool | None = None
    checkpoint: str | None = None
    progress: bool = True
    exec_mode: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def subset(data, cfg: TrainConfig):
    """(x_train, y_train, x_test, y_test), each cut to the config's subset."""
    ntr = cfg.train_subset or len(data.y_train)
    nte = cfg.test_subset or len(data.y_test)
    return data.x_train[:ntr], data.y_train[:ntr], data.x_test[:nte], data.y_test[:nte]


def progress_bar(enabled: bool, total: int, desc: str):
    """The per-epoch bar both training loops show."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=not enabled, dynamic_ncols=True)


def epoch_row(cfg: TrainConfig, epoch: int, lr: float, train: tuple[float, float], test: tuple[float, float],
              epoch_s: float, n: int, peak: int | None, why: str) -> dict:
    """One ``epochs.csv`` row of a training loop (the columns both stacks fill)."""
    return {"epoch": epoch + 1, "epochs_total": cfg.recipe.epochs, "lr": lr, "train_loss": train[0],
            "train_acc": train[1], "test_loss": test[0], "test_acc": test[1], "epoch_s": epoch_s,
            "train_images_per_s": n / epoch_s, "peak_mem_mib": None if peak is None else peak / MIB,
            "null_reason": None if peak is not None else why, "train_examples": n, "seed": cfg.seed}


@dataclass
class StepMemory:
    """What one training step keeps, in bytes (None: not measured; ``reasons`` says why).

    Attributes:
        saved_activations: bytes autograd keeps for the backward pass (torch autograd only).
        saved_by_kind: the same bytes split by the layer kind that produced each storage.
        jax_residuals: bytes of the residuals ``jax.ad_checkpoint`` lists (Keras on JAX only).
        params: bytes of every weight (trainable and moving statistics).
        grads: bytes of the gradients of one step.
        optimizer_state: bytes of the optimizer's state after one step (SGD momentum).
        source: what measured the activation figure.
        trainable_count: trainable parameters (a count, not bytes).
        cpu_alloc_peak: the CPU allocator's peak over one compiled training step (weights, gradients, optimizer
            state, activations and transient buffers alike, as a GPU allocator peak), where the stack's CPU
            allocator keeps one (Keras on TensorFlow with its BFC allocator).
        cpu_alloc_source: which allocator counter gave ``cpu_alloc_peak``.
        alloc_peak: the one like-for-like figure of every stack: the most bytes the framework's allocator held
            during one training step minus what it held before the step (``bench.stacks.<stack>`` says how).
        alloc_peak_method: how ``alloc_peak`` was measured.
        alloc_peak_kind: runtime (the allocator's own record of the step) | compile-time (the compiler's buffer
            assignment of the compiled step).
        reasons: why a figure is None.
    """

    saved_activations: int | None = None
    saved_by_kind: dict[str, int] = field(default_factory=dict)
    jax_residuals: int | None = None
    params: int | None = None
    grads: int | None = None
    optimizer_state: int | None = None
    source: str | None = None
    trainable_count: int | None = None
    cpu_alloc_peak: int | None = None
    cpu_alloc_source: str | None = None
    alloc_peak: int | None = None
    alloc_peak_method: str | None = None
    alloc_peak_kind: str | None = None
    reasons: list[str] = field(default_factory=list)

    def columns(self, peak: int | None = None) -> dict:
        """The memory.csv columns of this measure (MiB); ``peak``: the allocator peak in bytes, if any."""
        mib = lambda b: None if b is None else b / MIB  # noqa: E731
        state = None if None in (self.params, self.grads, self.optimizer_state) else (
            self.params + self.grads + self.optimizer_state)
        total = None if state is None or self.saved_activations is None else state + self.saved_activations
        kinds = ";".join(f"{k}={self.saved_by_kind.get(k, 0) / MIB:.1f}" for k in LAYER_KINDS) if self.saved_by_kind else None
        source = {"peak_alloc_source": self.cpu_alloc_source} if self.cpu_alloc_peak is not None else {}
        return {"saved_activations_mib": mib(self.saved_activations), "saved_by_kind_mib": kinds,
                "jax_residuals_mib": mib(self.jax_residuals), "params_mib": mib(self.params),
                "grads_mib": mib(self.grads), "optimizer_state_mib": mib(self.optimizer_state),
                "state_plus_activations_mib": mib(total), "activations_source": self.source,
                "peak_over_state_activations": None if peak is None or not total else peak / total,
                "cpu_alloc_peak_mib": mib(self.cpu_alloc_peak), **source, "alloc_peak_mib": mib(self.alloc_peak),
                "alloc_peak_method": self.alloc_peak_method if self.alloc_peak is not None else None,
                "alloc_peak_kind": self.alloc_peak_kind if self.alloc_peak is not None else None}


class MemoryCounter:
    """The memory pieces of one stack: the allocator peak (GPU) and what one training step keeps (any device)."""

    name = "?"
    exec_mode = "nojit"  # how step_memory runs the step (the memory row's exec_mode when no timed step ran)
    measure_on_gpu = True  # False: step_memory is left to CPU runs (its cost would eat a GPU session's time)
    with_alloc_peak = True  # False: step_memory leaves alloc_peak out (a caller that reads the other figures alone)

    def reset_peak(self) -> None:
        """Start a new allocator-peak window (no-op where there is none)."""

    def peak_bytes(self) -> tuple[int | None, str]:
        """(allocator peak bytes since the last reset, its source) or (None, reason)."""
        return None, f"no allocator peak for {self.name}"

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        """Measure what one training step of ``model`` keeps (a fresh model, one real SGD step).

        Args:
            model: registry name.
            batch_size: examples in the step.
            precision: fp32 | bf16 | fp16 (mixed, as the steps do).
            device: cuda | cpu | None (the GPU when there is one).
            **options: spec overrides (e.g. ``depth``) passed to ``bench.zoo.build``.
        """
        raise NotImplementedError


# What an allocator failure says, on a GPU and on a CPU alike: torch (CUDA "out of memory", the CPU's
# DefaultCPUAllocator "can't allocate memory"), TensorFlow (ResourceExhaustedError, "OOM when allocating tensor"),
# JAX/XLA ("RESOURCE_EXHAUSTED", "Out of memory"), numpy and Python (MemoryError), C++ (std::bad_alloc).
OOM_NAMES = ("OutOfMemoryError", "ResourceExhaustedError", "MemoryError")
OOM_TEXTS = ("out of memory", "resource_exhausted", "resource exhausted", "can't allocate memory",
             "oom when allocating", "std::bad_alloc")


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory errors of torch, TensorFlow and JAX/XLA, on every device (a CPU allocator's
    failure is the same result as a GPU's: the batch did not fit)."""
    if any(cls.__name__ in OOM_NAMES for cls in type(exc).__mro__):
        return True
    text = str(exc).lower()
    return any(t in text for t in OOM_TEXTS)


PHASES = ("forward", "backward", "recompute", "optimizer", "other")
UNATTRIBUTED = "(unattributed)"


@dataclass
class LayerTime:
    """One row of a step profile: the time of one layer in one phase, per step.

    Attributes:
        layer: the twin's canonical layer name (``bench.zoo.specs.keras_name`` of the PyTorch module path, the
            Keras layer name), ``(optimizer)``, ``(loss)`` or ``(unattributed)``.
        kind: conv | batchnorm | relu | concat | pool | linear | add | other (``bench.results.schema.PROFILE_KINDS``).
        phase: forward | backward | recompute | optimizer | other (unattributed time outside every phase).
        ms_per_step: milliseconds per profiled step (the layer's own time: nested layers' time excluded).
        calls: ranges per step (module calls, backward nodes, ops).
    """

    layer: str
    kind: str
    phase: str
    ms_per_step: float
    calls: float


@dataclass
class StepProfile:
    """Where one training step's time goes (``Stack.profile``).

    Attributes:
        rows: one :class:`LayerTime` per (layer, kind, phase); unattributed time is its own ``(unattributed)`` row.
        profiled_step_ms: mean step time under the profiler.
        unprofiled_step_ms: median step time of the same step without the profiler.
        coverage: share of the profiled step attributed to a named layer, the loss or the optimizer (None: no
            attribution, ``null_reason`` says why).
        fused_share: share of the profiled step in ops fused across layers (None where nothing is fused).
        trace_path: the kept trace (Perfetto / chrome://tracing / TensorBoard), None if none was written.
        source: what measured the times.
        env: the stack's env columns; exec_mode: the mode the step ran in.
        null_reason: why a figure is None.
    """

    rows: list[LayerTime] = field(default_factory=list)
    profiled_step_ms: float | None = None
    unprofiled_step_ms: float | None = None
    coverage: float | None = None
    fused_share: float | None = None
    trace_path: str | None = None
    source: str | None = None
    env: dict = field(default_factory=dict)
    exec_mode: str | None = None
    null_reason: str | None = None


class Stack:
    """One implementation of the twins' execution (see the module docstring for the methods).

    Class attributes ``name``, ``framework`` and ``backend`` match the stack's registry entry
    (``bench.stacks.STACKS``).
    """

    name = "?"
    framework = "?"
    backend = "?"
    checkpoint_ext = ".ckpt"

    def default_exec_mode(self, device: str) -> str:
        """The exec mode a job without ``--exec-mode`` runs in on ``device`` (the registry's ``default_modes``)."""
        from bench.core.stack_registry import stack_info
        return stack_info(self.framework, self.backend).default_modes[device]

    def env(self, device: str | None = None) -> dict:
        """framework/backend/version/device columns for a job in *this* process (imports the framework)."""
        raise NotImplementedError

    def param_counts(self, net) -> tuple[int, int]:
        """(trainable, non-trainable) parameters of a built twin."""
        raise NotImplementedError

    def threads(self) -> int:
        """CPU threads this stack's ops use in this process. Default: ``OMP_NUM_THREADS`` when set, else the
        cores this process may run on (what XLA and TensorFlow size their pools by)."""
        import os
        env = os.environ.get("OMP_NUM_THREADS", "")
        if env.isdigit() and int(env) > 0:
            return int(env)
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def between_jobs(self) -> None:
        """A reused worker (``bench.pipeline.pool``) calls this after each job: drop what the job left in the
        framework's global state, so the next job starts as in a fresh process. Default: nothing."""

    def make_step(self, spec: StepSpec) -> StepRunner:
        """Build this stack's twin of ``spec.model`` and return its step, ready to time (``StepSpec``)."""
        raise NotImplementedError

    def train(self, cfg: TrainConfig, data, on_epoch: Callable[[dict], None]) -> list[dict]:
        """Train the twin with ``cfg``'s recipe; ``on_epoch(row)`` after each epoch, then the checkpoint."""
        raise NotImplementedError

    def memory(self) -> MemoryCounter:
        """The stack's memory counter."""
        raise NotImplementedError

    def plain_baseline(self, model: str, batch: int, precision: str, device: str, steps: int) -> float:
        """images/s of the plain script a careful user of this stack writes (``bench.overhead``)."""
        raise NotImplementedError

    def roof_kernels(self, device: str):
        """This stack's library's roof kernels for ``bench.core.roofs.measure_roofs`` (``python -m bench.peaks``): an
        object with ``gemm(n, precision)`` and ``triad(elements)`` returning ``(call, sync)``, ``threads`` (the
        thread count jobs use), ``library``, ``gemm_name``, ``triad_name``. None: no kernels (no roof measured)."""
        return None

    def profile(self, spec: ProfileSpec) -> StepProfile:
        """Profile ``spec.steps`` training steps of ``spec.model`` (synthetic input; ``ProfileSpec``): each layer's
        forward, backward and recompute time, the optimizer's, and what could not be attributed. Never spreads or
        guesses a time: a stack without a sound attribution returns ``StepProfile(coverage=None, null_reason=...)``."""
        return StepProfile(null_reason=f"{self.name}: no profiler implemented")
