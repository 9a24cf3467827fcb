"""Named suites: each expands into jobs (model x framework x precision x batch x measurement).

Suites are data (``SUITE_TABLE``: measure x models x implementations x settings per device), with a comment on each
value. A job is frozen data and runs in its own process
(``bench.pipeline.worker``). Sizes adapt to the device: a CPU gets small batches and few steps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bench.core.job import Job
from bench.core.stack_registry import KERAS_BACKENDS, stacks_of  # noqa: F401  (KERAS_BACKENDS: for callers)
from bench.zoo import list_models

SUITES = {
    "smoke": "a few small models, both frameworks, tiny batches: the shortest suite (run this first)",
    "cifar10-quick": "every model: throughput and memory at one batch (a short sweep for DenseNet vs ResNet), "
                     "15 epochs of the fast recipe for 5 models",
    "cifar10-full": "every model, both frameworks: throughput, memory sweep, paper-recipe training",
    "throughput": "train and inference images/s for every model (synthetic input, plus the real pipeline)",
    "memory": "memory of a train step: allocator peak (GPU, batch sweep up to the largest that fits) and, on any "
              "device, saved activations + weights/gradients/optimizer state, over batch size and network depth",
    "train": "training alone: the published recipe (paper; --recipe to change), accuracy per epoch",
    "profile": "where each twin's train step goes, layer by layer (forward, backward, recompute, optimizer): every "
               "model, every implementation asked for, one small batch; traces kept in results/<run_id>/traces/",
    "fidelity": "the framework gap in accuracy beside the spread between seeds: resnet20_v1, each twin with 2 seeds "
                "(3 on a GPU); CPU: 8,192 images x 6 epochs; GPU: all of CIFAR-10, fast recipe",
    "degradation": "the ResNet paper's figure: plain20, plain56, resnet20_v1, resnet56_v1 trained on one plan, training "
                   "and test error per epoch, plus one-batch throughput and memory (the price of depth); CPU: 6,144 "
                   "images x 5 epochs, seed 0; GPU: the paper recipe, 3 seeds",
    "scaling": "data-parallel training of resnet20_v1 on 1 and 2 replicas (--replicas), each stack in its own API "
               "(PyTorch DDP, Keras DataParallel on JAX, MirroredStrategy on TensorFlow): images/s and the efficiency "
               "against 1 replica; on a CPU the replicas share its cores (the machinery, not a scaling result); CPU "
               "replicas only so far: on a GPU it plans no job (GPU replicas are not built yet)",
}
KINDS = ("throughput", "memory", "epochs", "profile", "scaling")
MEMORY_SWEEP = (64, 128, 256, 512, 1024, 2048)  # batch sizes tried in order until the first OOM
SMOKE_MODELS = ("resnet20_v1", "densenet40_k12_memeff")  # the smallest ResNet and DenseNet (with remat)
# 3 epochs of 3,072 images: a trainer that learns, not a result (ResNet-20 test accuracy 43.5% torch, 44.4% Keras/TF
# on a 2-core CPU, 2026-12-07; 46.9% / 45.3% with 4,096 images). 3,072 since smoke also profiles DenseNet-40 in both
# stacks (~25 s on that CPU) and keeps to the wall time it had before (issue #42)
SMOKE_TRAIN = dict(train_subset=3072, test_subset=1000, recipe="smoke")
FIDELITY_MODELS = ("resnet20_v1",)
FIDELITY_CPU = dict(train_subset=8192, test_subset=2000, epochs=6, recipe="smoke", seeds=(0, 1))
FIDELITY_GPU = dict(train_subset=None, test_subset=None, epochs=None, recipe="fast", seeds=(0, 1, 2))
# degradation: the four nets of the ResNet paper's Figure 1/6, every one on the same plan (the same EpochSampler
# batches and augmentation: train_subset, batch, recipe and seed are the suite's, never the model's)
DEGRADATION_MODELS = ("plain20", "plain56", "resnet20_v1", "resnet56_v1")
# CPU: sized from measured speed on an idle 2-core CPU at batch 64 (resnet20_v1 ~465 images/s torch, ~399 Keras/TF;
# a 56-layer net ~3x slower): one training image costs the four nets 2/399 + 2/133 = 0.020 s on Keras (0.017 s
# torch), so 6,144 images x 5 epochs (+ 1,000 test images per epoch at ~1/3 the cost) is ~650 s of Keras training
# (~560 s torch), plus ~2-4 min of process starts and the one-batch jobs: ~12-15 min, under 30 min with room for a
# shared machine.
# 480 steps of batch 64: enough for plain-56 to lag plain-20 early in training (the paper's gap opens from the
# first epochs), not to reach the paper's errors. One seed (a second would double the time).
DEGRADATION_CPU = dict(train_subset=6144, test_subset=1000, epochs=5, recipe="smoke", seeds=(0,))
# GPU: the paper's recipe (164 epochs, batch 128, SGD 0.1, /10 at 50% and 75%) on all of CIFAR-10, 3 seeds
DEGRADATION_GPU = dict(train_subset=None, test_subset=None, epochs=None, recipe="paper", seeds=(0, 1, 2))
DEGRADATION_BATCH = {False: 32, True: 128}  # one-batch throughput and memory jobs (CPU, GPU)
# suites meant for a GPU compare every installed Keras backend by default; smoke keeps one (short on a CPU)
ALL_BACKEND_SUITES = ("cifar10-quick", "cifar10-full", "throughput", "memory", "profile")
DATA_PARALLEL_SUITES = ("scaling",)  # their Keras jobs default to every installed backend with a data-parallel path
# profile jobs: (batch, profiled steps) on a GPU / a CPU; smoke profiles every model it times, in every implementation
# it runs (so that its scoreboard's "why" answers for each), at batch 8 and 2 profiled steps to stay cheap.
# CPU batch 32, not 8: at 8 a Keras/TensorFlow step of ResNet-20 (25 ms, 1,456 ops) spends 13% in the graph
# executor between ops and in Python's dispatch, which no layer owns: a profile of the framework more than the net
PROFILE_SIZES = {"cuda": (64, 10), "cpu": (32, 5)}
SMOKE_PROFILE = dict(batch=8, steps=2)
# the profile suite rebuilds DenseNet-40 (naive and memory-efficient) at these depths too: the concatenation's share
# of the step against dense-block depth, and the recompute time the memory-efficient variant pays (DenseNet: 3n+4)
PROFILE_DEPTHS = {"densenet40_k12": (16, 28), "densenet40_k12_memeff": (16, 28)}
SCALING_MODELS = ("resnet20_v1",)
# scaling: per-replica batch and timed steps; replica counts (1 always added). CPU: 2 cores hold 2 replicas (one
# process or host device each); 16 a replica keeps ResNet-20's step near 50 ms on one core (the whole suite is about
# 2 min idle: 6 jobs, each its replicas' own process start and warm-up). GPU: up to the machine's GPUs, once GPU
# replicas are built (bench.measures.scaling.DEVICES; until then a GPU plan has no scaling job).
SCALING = {"cpu": dict(batch=16, steps=10, replicas=(1, 2)), "cuda": dict(batch=128, steps=40, replicas=(1, 2, 4, 8))}
QUICK_TRAIN_MODELS = ("resnet20_v1", "resnet56_v1", "plain20", "plain56", "densenet_bc100_k12")
QUICK_TRAIN_EPOCHS = 15  # the fast recipe, shortened: the curves and the degradation gap, not final accuracy
# cifar10-quick sweeps batch size only for DenseNet (naive and memory-efficient) and the ResNets of
# similar parameter count, where the concatenation cost shows; every other model at one batch
QUICK_MEMORY_SWEEP = (128, 512, 2048)
# On a CPU a memory job measures what one step keeps (bench.measures.memory: seconds per point), not an allocator
# peak: the batch sweep stops at 64 (DenseNet-BC-100 naive keeps ~2.1 GiB there) to spare the host's RAM.
CPU_MEMORY_SWEEP = (8, 16, 32, 64)
# The depth sweep (CPU runs): each model rebuilt at these depths (Job.depth), one batch, saved activations only.
# DenseNet's naive concatenation grows quadratically with the layers per block, the memory-efficient
# variant and ResNet linearly. DenseNet-BC depths are 6n+4, DenseNet 3n+4, ResNet v1 6n+2.
DEPTH_SWEEP = {"densenet_bc100_k12": (28, 40, 52, 76, 100), "densenet_bc100_k12_memeff": (28, 40, 52, 76, 100),
               "densenet40_k12": (16, 22, 28, 34, 40), "densenet40_k12_memeff": (16, 22, 28, 34, 40),
               "resnet110_v1": (20, 32, 56, 110)}
DEPTH_SWEEP_BATCH = 32  # CPU runs only (a GPU would measure the same figure: its time goes to the allocator peaks)
QUICK_MEMORY_SWEEP_MODELS = ("resnet56_v1", "resnet110_v1", "densenet40_k12", "densenet40_k12_memeff",
                             "densenet_bc100_k12", "densenet_bc100_k12_memeff")


@dataclass(frozen=True)
class Options:
    """Narrowing options from the command line (None: the suite's default)."""

    models: tuple[str, ...] | None = None
    frameworks: tuple[str, ...] = ("torch", "keras")
    keras_backends: tuple[str, ...] | None = None  # None: the suite's default (see keras_backends_for)
    precisions: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    epochs: int | None = None
    recipe: str | None = None
    exec_modes: tuple[str, ...] | None = None
    gpu: bool = True
    repeats: int = 1  # each timed (throughput) job this many times, each in its own process
    steps: int | None = None  # profile jobs' profiled steps, scaling jobs' timed steps (None: the suite's)
    replicas: tuple[int, ...] | None = None  # scaling jobs' replica counts (None: the suite's; 1 is always added)
    strong: bool = False  # scaling jobs at a fixed global batch split over the replicas (strong scaling)


def _models(opts: Options, default: tuple[str, ...] | list[str]) -> list[str]:
    if opts.models is None:
        return list(default)
    return [m for pattern in opts.models for m in list_models(pattern)]


def installed_keras_backends() -> tuple[str, ...]:
    """The Keras backends whose library is installed, found without importing it (``importlib.util.find_spec``)."""
    import importlib.util
    return tuple(s.backend for s in stacks_of("keras") if all(importlib.util.find_spec(p) for p in s.packages[1:]))


def keras_backends_for(suite: str, opts: Options) -> tuple[str, ...]:
    """Backends the suite's Keras jobs run on: the ones asked for; else every installed backend for the GPU
    suites (ALL_BACKEND_SUITES), tensorflow alone for the others (``smoke`` stays short on a CPU)."""
    if opts.keras_backends:
        return tuple(opts.keras_backends)
    if suite in DATA_PARALLEL_SUITES:  # every installed backend with a data-parallel path
        from bench.measures.scaling import NO_DP_PATH
        return tuple(b for b in installed_keras_backends() if f"keras-{b}" not in NO_DP_PATH)
    return installed_keras_backends() if suite in ALL_BACKEND_SUITES else ("tensorflow",)


def _fw(opts: Options):
    """(framework, keras_backend) of every stack asked for: a framework with one stack runs once (backend None),
    one with several (Keras) once per backend asked for."""
    for fw in opts.frameworks:
        mine = stacks_of(fw)
        if len(mine) == 1:
            yield fw, None
        else:
            for be in opts.keras_backends or (mine[0].backend,):
                yield fw, be


def _modes(opts: Options, fw: str) -> list[str | None]:
    """Execution modes asked for this framework (None: the runner's default for the device)."""
    own = stacks_of(fw)[0].exec_modes
    return [m for m in (opts.exec_modes or ()) if m in own] or [None]


def _throughput(opts: Options, models, precisions, batches, steps, real_batch, max_warmup=100,
                real_models=None) -> list[Job]:
    dev = "cuda" if opts.gpu else "cpu"
    jobs = []
    for m in models:
        for fw, be in _fw(opts):
            for p in opts.precisions or precisions:
                for mode in _modes(opts, fw):
                    for b in opts.batch_sizes or batches:
                        for meas in ("train", "infer"):
                            jobs.append(Job("throughput", m, fw, be, p, b, meas, "synthetic", exec_mode=mode,
                                            steps=steps, max_warmup=max_warmup, device=dev))
                    # the real CIFAR-10 pipeline (augmentation included), next to the synthetic figure
                    if real_models is None or m in real_models:
                        rb = (opts.batch_sizes or (real_batch,))[0]
                        jobs.append(Job("throughput", m, fw, be, p, rb, "train", "real", exec_mode=mode,
                                        steps=steps, max_warmup=max_warmup, device=dev))
    return jobs


def _memory(opts: Options, models, sweep, steps) -> list[Job]:
    dev = "cuda" if opts.gpu else "cpu"
    return [Job("memory", m, fw, be, p, b, "train", exec_mode=mode, steps=steps, device=dev)
            for m in models for fw, be in _fw(opts) for p in (opts.precisions or ("fp32",))
            for mode in _modes(opts, fw) for b in (opts.batch_sizes or sweep)]


def _depth_sweep(opts: Options, models, batch: int) -> list[Job]:
    """Memory jobs that rebuild each DEPTH_SWEEP model at its other depths (at ``--batch-sizes``' first, if given)."""
    from bench.zoo import get_spec
    dev = "cuda" if opts.gpu else "cpu"
    b = (opts.batch_sizes or (batch,))[0]
    return [Job("memory", m, fw, be, p, b, "train", exec_mode=mode, steps=1, device=dev,
                depth=None if d == get_spec(m).depth else d)
            for m in models if m in DEPTH_SWEEP for d in DEPTH_SWEEP[m] for fw, be in _fw(opts)
            for p in (opts.precisions or ("fp32",)) for mode in _modes(opts, fw)]


def _profile(opts: Options, models, batch: int | None = None, steps: int | None = None) -> list[Job]:
    """One profile job per model, implementation, precision and exec mode (at ``--batch-sizes``' first, if given)."""
    dev = "cuda" if opts.gpu else "cpu"
    b = (opts.batch_sizes or (batch or PROFILE_SIZES[dev][0],))[0]
    n = opts.steps or steps or PROFILE_SIZES[dev][1]
    return [Job("profile", m, fw, be, p, b, "train", exec_mode=mode, steps=n, device=dev)
            for m in models for fw, be in _fw(opts) for p in (opts.precisions or ("fp32",)) for mode in _modes(opts, fw)]


def _profile_depths(opts: Options, models) -> list[Job]:
    """Profile jobs that rebuild each PROFILE_DEPTHS model at its other depths, when the plan holds the naive DenseNet
    and its memory-efficient twin both (the trade-off is asked for: the whole suite, or both names given)."""
    paired = [m for m in models if m in PROFILE_DEPTHS and (m.removesuffix("_memeff") in models) and
              (m.removesuffix("_memeff") + "_memeff" in models)]
    return [dataclasses.replace(j, depth=d) for m in paired for d in PROFILE_DEPTHS[m] for j in _profile(opts, [m])]


def smoke_memory_models(models: list[str]) -> list[str]:
    """The naive twin of each memory-efficient smoke model (not already in ``models``): smoke measures it too
    (PyTorch only, ~6 s of CPU), so that a CPU smoke report shows what the memory-efficient variant saves."""
    extra = [m.removesuffix("_memeff") for m in models if m.endswith("_memeff")]
    return [m for m in dict.fromkeys(extra) if m not in models]


def _unique(jobs: list[Job]) -> list[Job]:
    """Jobs in order, each job id once (a depth sweep meets the batch sweep at the registry depth)."""
    seen: set[str] = set()
    return [j for j in jobs if not (j.job_id in seen or seen.add(j.job_id))]


def unplanned_reason(suite: str, gpu: bool) -> str | None:
    """Why a suite plans no job on this device although it has parts for it (the data-parallel jobs on a GPU:
    ``bench.measures.scaling.DEVICES``), else None."""
    if not any(p.measure == "scaling" for p in SUITE_TABLE.get(suite, ())):
        return None
    from bench.measures.scaling import device_problem
    return device_problem("cuda" if gpu else "cpu")


def _scaling(opts: Options, models, batch: int, steps: int, replicas: tuple[int, ...]) -> list[Job]:
    """One job per model, implementation and replica count (``--replicas``, 1 always among them, first: the
    efficiency of the others is against it). Weak scaling: ``batch`` (or ``--batch-sizes``' first) per replica.
    Strong (``--strong``): a global batch, ``--batch-sizes``' first or ``batch`` x the largest count, split over the
    replicas (every count must divide it).

    Raises:
        ValueError: strong scaling with a global batch that a replica count does not divide.
    """
    dev = "cuda" if opts.gpu else "cpu"
    if unplanned_reason("scaling", opts.gpu):  # GPU replicas are not built yet: no job a run would refuse
        return []
    counts = sorted(set(opts.replicas or replicas) | {1})
    b = (opts.batch_sizes or (batch * max(counts) if opts.strong else batch,))[0]
    if opts.strong and any(b % r for r in counts):
        raise ValueError(f"--strong: the global batch {b} does not split evenly over {', '.join(map(str, counts))} "
                         "replicas; give --batch-sizes a multiple of each count")
    return [Job("scaling", m, fw, be, "fp32", b, "train", steps=opts.steps or steps, device=dev, replicas=r,
                strong=opts.strong) for m in models for fw, be in _fw(opts) for r in counts]


def _epochs(opts: Options, models, recipe, epochs=None, train_subset=None, test_subset=None,
            batch=None, seeds=(0,)) -> list[Job]:
    from bench.zoo import get_spec
    from bench.zoo.recipes import recipe_for
    dev = "cuda" if opts.gpu else "cpu"
    jobs = []
    for m in models:
        r = recipe_for(opts.recipe or recipe, get_spec(m).family)
        for fw, be in _fw(opts):
            for p in opts.precisions or (("bf16",) if opts.gpu else ("fp32",)):
                for mode in _modes(opts, fw):
                    for seed in seeds:
                        jobs.append(Job("epochs", m, fw, be, p, (opts.batch_sizes or (batch or r.batch_size,))[0],
                                        exec_mode=mode, recipe=r.name, epochs=opts.epochs or epochs,
                                        train_subset=train_subset, test_subset=test_subset, device=dev, seed=seed))
    return jobs


def expand(suite: str, opts: Options) -> list[Job]:
    """The jobs of ``suite`` under ``opts``; with ``opts.repeats`` N > 1, each throughput job N times
    (``/r1`` .. ``/rN``), in rounds: every job's first repeat, then every job's second, ... so that a slow
    drift of the machine spreads over every implementation instead of landing on one.

    Raises:
        ValueError: unknown suite, or a model pattern that matches nothing.
    """
    jobs = _expand(suite, opts)
    if opts.repeats <= 1:
        return jobs
    return [dataclasses.replace(j, repeat=i) if j.kind == "throughput" else j
            for i in range(1, opts.repeats + 1) for j in jobs if j.kind == "throughput" or i == 1]


# ---------------------------------------------------------------------------------------------- the suites, as data


@dataclass(frozen=True)
class Part:
    """One row of a suite's table: a measure over a set of models, every implementation asked for, with the
    measure's settings on a CPU and on a GPU.

    Attributes:
        measure: throughput | memory | depth (the memory depth sweep) | epochs | profile | profile_depths | scaling.
        models: a model set of ``MODEL_SETS`` (over the suite's models, after ``--models``).
        cpu: the measure's settings on a CPU (keyword arguments of its builder: batches, steps, ...).
        gpu: its settings on a GPU (None: those of the CPU).
        frameworks: the part runs these frameworks alone (of those asked for; None: every one asked for).
    """

    measure: str
    models: str = "all"
    cpu: dict = field(default_factory=dict)
    gpu: dict | None = None
    frameworks: tuple[str, ...] | None = None

    def settings(self, gpu: bool) -> dict:
        return dict(self.gpu if gpu and self.gpu is not None else self.cpu)


def _resnets_or_first(ms: list[str]) -> list[str]:
    return [m for m in ms if m.startswith("resnet")] or ms[:1]


# the model sets a part names: each a function of the suite's models (after --models)
MODEL_SETS = {
    "all": lambda ms: list(ms),
    "first": lambda ms: ms[:1],
    "resnets": _resnets_or_first,  # smoke trains its ResNet (else its first model)
    "smoke_naive": smoke_memory_models,  # the naive twin of each memory-efficient smoke model
    "quick_trained": lambda ms: [m for m in QUICK_TRAIN_MODELS if m in ms] or ms[:1],
    "quick_swept": lambda ms: [m for m in ms if m in QUICK_MEMORY_SWEEP_MODELS],
    "quick_unswept": lambda ms: [m for m in ms if m not in QUICK_MEMORY_SWEEP_MODELS],
    "none": lambda ms: [],
}
# each suite's models before --models (None: every registered model)
SUITE_MODELS = {"smoke": SMOKE_MODELS, "fidelity": FIDELITY_MODELS, "degradation": DEGRADATION_MODELS,
                "scaling": SCALING_MODELS}
_DEG_B = DEGRADATION_BATCH
_FID_CPU, _FID_GPU = ({k: v for k, v in f.items()} for f in (FIDELITY_CPU, FIDELITY_GPU))
_DEG_CPU, _DEG_GPU = dict(DEGRADATION_CPU), dict(DEGRADATION_GPU)

# The suites: measure x models x implementations x settings per device. A throughput part's settings: precisions,
# batches, steps (timed), real_batch, max_warmup, real (the model set whose real-input job runs; default all),
# train_only. A memory part's: sweep, steps. An epochs part's: recipe, epochs, train_subset, test_subset, seeds,
# batch. A profile part's: batch, steps (default PROFILE_SIZES). A scaling part's: batch (per replica), steps, replicas.
SUITE_TABLE: dict[str, tuple[Part, ...]] = {
    "smoke": (
        Part("throughput", "all", dict(precisions=("fp32",), batches=(8,), steps=6, real_batch=8, max_warmup=15,
                                       real="first")),
        Part("memory", "all", dict(sweep=(8,), steps=3)),
        Part("memory", "smoke_naive", dict(sweep=(8,), steps=3), frameworks=("torch",)),
        Part("epochs", "resnets", dict(recipe=SMOKE_TRAIN["recipe"], train_subset=SMOKE_TRAIN["train_subset"],
                                       test_subset=SMOKE_TRAIN["test_subset"])),
        Part("profile", "all", dict(batch=SMOKE_PROFILE["batch"], steps=SMOKE_PROFILE["steps"])),
    ),
    "profile": (Part("profile"), Part("profile_depths")),
    "scaling": (Part("scaling", cpu=SCALING["cpu"], gpu=SCALING["cuda"]),),
    "throughput": (
        Part("throughput", cpu=dict(precisions=("fp32",), batches=(32,), steps=10, real_batch=32),
             gpu=dict(precisions=("fp32", "bf16"), batches=(128, 512), steps=40, real_batch=128)),
    ),
    "memory": (  # the depth sweep measures saved activations alone, the same on any device: CPU runs only
        Part("memory", cpu=dict(sweep=CPU_MEMORY_SWEEP, steps=1), gpu=dict(sweep=MEMORY_SWEEP, steps=5)),
        Part("depth", cpu=dict(batch=DEPTH_SWEEP_BATCH), gpu=dict(skip=True)),
    ),
    "train": (Part("epochs", cpu=dict(recipe="paper")),),
    # the same plan for both twins and every seed; the report sets the gap between frameworks beside the spread
    # between seeds of one framework (bench.report.sections.fidelity.section_fidelity)
    "fidelity": (Part("epochs", cpu=_FID_CPU, gpu=_FID_GPU),),
    # the four nets trained on one plan (the report's Degradation section draws the paper's figure from it), and each
    # one's one-batch throughput (train) and memory: the price of depth
    "degradation": (
        Part("throughput", cpu=dict(precisions=("fp32",), batches=(_DEG_B[False],), steps=10, real_batch=_DEG_B[False],
                                    max_warmup=15, real="none", train_only=True),
             gpu=dict(precisions=("bf16",), batches=(_DEG_B[True],), steps=40, real_batch=_DEG_B[True], max_warmup=100,
                      real="none", train_only=True)),
        Part("memory", cpu=dict(sweep=(_DEG_B[False],), steps=1), gpu=dict(sweep=(_DEG_B[True],), steps=5)),
        Part("epochs", cpu=_DEG_CPU, gpu=_DEG_GPU),
    ),
    # one process per job makes job count the cost: one batch and precision for throughput, the real pipeline and
    # training only for the quick-train models, a short memory sweep where it tells
    "cifar10-quick": (
        Part("throughput", cpu=dict(precisions=("fp32",), batches=(32,), steps=10, real_batch=32, real="quick_trained"),
             gpu=dict(precisions=("bf16",), batches=(512,), steps=40, real_batch=512, real="quick_trained")),
        Part("memory", "quick_swept", dict(sweep=(32,), steps=2), gpu=dict(sweep=QUICK_MEMORY_SWEEP, steps=5)),
        Part("memory", "quick_unswept", dict(sweep=(32,), steps=2), gpu=dict(sweep=(512,), steps=5)),
        Part("epochs", "quick_trained", dict(recipe="fast", epochs=QUICK_TRAIN_EPOCHS)),
        Part("profile"),
    ),
    "cifar10-full": (
        Part("throughput", cpu=dict(precisions=("fp32",), batches=(32,), steps=10, real_batch=32),
             gpu=dict(precisions=("fp32", "bf16"), batches=(128, 512), steps=40, real_batch=128)),
        Part("memory", cpu=dict(sweep=(32,), steps=2), gpu=dict(sweep=MEMORY_SWEEP, steps=5)),
        Part("epochs", cpu=dict(recipe="paper")),
    ),
}


def _part_jobs(part: Part, opts: Options, models: list[str]) -> list[Job]:
    """The jobs of one row of a suite's table."""
    st = part.settings(opts.gpu)
    if part.frameworks is not None:
        mine = tuple(f for f in opts.frameworks if f in part.frameworks)
        opts = dataclasses.replace(opts, frameworks=mine) if mine else opts
    ms = MODEL_SETS[part.models](models)
    if st.pop("skip", False) or not ms:
        return []
    if part.measure == "throughput":
        real = MODEL_SETS[st.pop("real", "all")](models)
        train_only = st.pop("train_only", False)
        jobs = _throughput(opts, ms, st.pop("precisions"), st.pop("batches"), st.pop("steps"), st.pop("real_batch"),
                           real_models=real, **st)
        return [j for j in jobs if j.measurement == "train"] if train_only else jobs
    if part.measure == "memory":
        return _memory(opts, ms, st["sweep"], st["steps"])
    if part.measure == "depth":
        return _depth_sweep(opts, ms, st["batch"])
    if part.measure == "epochs":
        return _epochs(opts, ms, st.pop("recipe"), **st)
    if part.measure == "profile":
        return _profile(opts, ms, st.get("batch"), st.get("steps"))
    if part.measure == "profile_depths":
        return _profile_depths(opts, ms)
    if part.measure == "scaling":
        return _scaling(opts, ms, st["batch"], st["steps"], st["replicas"])
    raise KeyError(f"unknown measure {part.measure!r} in a suite's table")


def _expand(suite: str, opts: Options) -> list[Job]:
    if suite not in SUITES:
        import difflib
        close = difflib.get_close_matches(suite, SUITES, n=3)
        raise ValueError(f"unknown suite {suite!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                         + f"; suites: {', '.join(SUITES)}")
    if opts.models is not None:
        for pattern in opts.models:
            if not list_models(pattern):
                from bench.zoo import get_entry
                get_entry(pattern)  # raises KeyError with close matches
    opts = dataclasses.replace(opts, keras_backends=keras_backends_for(suite, opts))
    models = _models(opts, SUITE_MODELS.get(suite) or list_models())
    return _unique([j for part in SUITE_TABLE[suite] for j in _part_jobs(part, opts, models)])


def describe_jobs(jobs: list[Job]) -> str:
    """One line saying what a list of jobs runs: kinds, and each implementation (framework/backend, exec modes)."""
    kinds = ", ".join(dict.fromkeys(j.kind for j in jobs))
    impls: dict[str, list[str]] = {}
    for j in jobs:
        name = j.stack.name
        modes = impls.setdefault(name, [])
        if (j.exec_mode or "default") not in modes:
            modes.append(j.exec_mode or "default")
    return f"{kinds or 'nothing'}; " + ", ".join(f"{k} ({'/'.join(v)})" for k, v in impls.items())


# sustained FLOP/s the --dry-run estimate assumes where no earlier run on the machine measured a job. CPU: a 2-core
# VM trained resnet20_v1 at batch 64 at ~300 images/s (docs/evidence/2026-12-05/time-smoke: 12,288 images in ~40 s
# with the test pass), ~80 GFLOP/s of convolutions; 60 leaves room for a slower or shared CPU (15 was 3-6x slow)
ASSUMED_FLOPS = {"cpu": 60e9, "cuda": 20e12}


def estimate_seconds(job: Job) -> float:
    """A rough wall-time estimate for --dry-run: process start + FLOPs / an assumed device speed.

    Assumed sustained speed: ASSUMED_FLOPS (small CIFAR nets run far below a GPU's peak). An estimate for planning,
    never a result; tests/test_docs.py holds the CPU figure within 2x of a measured smoke run (docs/evidence/).
    """
    from bench.zoo import get_spec
    spec = get_spec(job.model, **({"depth": job.depth} if job.depth is not None else {}))
    mflops = _approx_mflops(spec)
    speed = ASSUMED_FLOPS["cuda" if job.device == "cuda" else "cpu"]
    start = job.stack.startup_s if job.device == "cuda" else job.stack.cpu_startup_s
    per_image = mflops * 1e6 * (3 if job.measurement == "train" or job.kind == "epochs" else 1)
    if job.kind == "epochs":
        from bench.zoo.recipes import recipe_for
        r = recipe_for(job.recipe, spec.family)
        n = (job.train_subset or 50000) * (job.epochs or r.epochs)
        return 20 + n * per_image / speed
    steps = job.steps + 15
    if job.kind == "profile":
        steps = 2 * job.steps + 4  # warm-up, unprofiled, profiled (+1) steps, at about twice the cost under the profiler
    if job.kind == "memory" and (job.device == "cpu" or job.depth is not None):
        steps = 1  # one measured step, no timed ones (bench.measures.memory.run_memory)
    if job.kind == "scaling":  # the job's process, then its replicas' own; on a CPU the replicas share its speed
        work = job.global_batch if job.device == "cpu" else job.per_replica_batch
        return 2 * start + (job.steps + 3) * work * per_image / speed
    return start + steps * job.batch_size * per_image / speed


def _approx_mflops(spec) -> float:
    """Forward MFLOPs per image from the spec alone (no framework import): convolutions only. A user twin has no
    spec to read: counted on its built torch twin (``bench.zoo.twin.UserSpec.fwd_mflops``)."""
    if spec.family == "user":
        return spec.fwd_mflops
    if spec.family == "resnet":
        n, hw = spec.blocks_per_stage, spec.input_size ** 2
        total = 2 * 9 * 3 * spec.stem_width * hw
        cin = spec.stem_width
        for s, c in enumerate(spec.stage_widths):
            area = hw / 4 ** s
            if spec.version == 1:
                total += 2 * 9 * c * c * area * 2 * n
            else:
                w = spec.bottleneck_width(s)
                total += 2 * (cin * w + 9 * w * w + w * c) * area * n
            cin = c
        return total / 1e6
    hw, total, k = spec.input_size ** 2, 0.0, spec.growth_rate
    for b, ((cin, _), n) in enumerate(zip(spec.channel_plan(), spec.blocks)):
        area = hw / 4 ** b
        for i in range(n):
            c = cin + i * k
            total += 2 * area * ((c * 4 * k + 9 * 4 * k * k) if spec.bottleneck else 9 * c * k)
    return total / 1e6
