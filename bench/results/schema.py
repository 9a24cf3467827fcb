"""The CSV schema of ``results/<run_id>/``, defined once, with a version number.

Every CSV kind has the ``COMMON`` columns (who, where, with what), then its own. Units are in the
column names. A figure that cannot be measured is left empty and ``null_reason`` says why; a failed
job is a row with ``status`` != ``ok`` and its ``error``. ``python -m bench.schema`` prints the
columns with their meaning; each column's producer is named there too, so a reader can go from a CSV
column to the code that fills it in one step.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

SCHEMA_VERSION = 1

# Layer kinds of the saved-bytes breakdown (``saved_by_kind_mib``), in report order.
LAYER_KINDS = ("conv", "batchnorm", "relu", "concat", "pool", "linear", "other")
# Layer kinds of the step profile (``profile.csv``): the residual add is its own kind there.
PROFILE_KINDS = ("conv", "batchnorm", "relu", "concat", "pool", "linear", "add", "other")
PROFILE_STEP_ROW = "(step)"  # the layer of a profile job's summary row

# (column, meaning, produced by)
COMMON = (
    ("schema_version", "version of this schema", "bench.results.schema.SCHEMA_VERSION"),
    ("run_id", "results/<run_id>/ this row belongs to", "bench.run.main"),
    ("job_id", "the job within the suite (model/framework/measurement/precision/batch)", "bench.core.job.Job.job_id"),
    ("timestamp", "UTC ISO time the row was written", "bench.results.schema.append_row"),
    ("status", "ok | error | oom | timeout | skipped", "bench.pipeline.worker.main"),
    ("error", "error message of a failed job (empty when ok)", "bench.pipeline.worker.main"),
    ("null_reason", "why some figure of this row is empty (e.g. 'no GPU: allocator peak not defined')", "bench.pipeline.worker.main"),
    ("model", "registry name (bench.zoo)", "bench.core.job.Job.base_row"),
    ("framework", "torch | keras", "bench.core.job.Job.base_row"),
    ("backend", "torch, or the Keras backend: tensorflow | jax | torch", "bench.stacks.base.Stack.env"),
    ("framework_version", "torch or keras version", "bench.stacks.base.Stack.env"),
    ("backend_version", "version of the backend library (tensorflow, jax, torch)", "bench.stacks.base.Stack.env"),
    ("exec_mode", "torch: eager | compile (the model) | step-compile (forward+backward+optimizer in one "
     "torch.compile; CUDA graphs on a GPU); keras: jit | nojit. Throughput/memory: the step's mode; epochs: the "
     "training loop's", "bench.stacks.base.Stack.make_step"),
    ("device", "cuda | cpu (where the step ran)", "bench.stacks.base.Stack.env"),
    ("device_name", "GPU or CPU model name", "bench.stacks.base.Stack.env"),
    ("precision", "fp32 | bf16 | fp16 (mixed)", "bench.core.job.Job.base_row"),
    ("batch_size", "examples per step", "bench.core.job.Job.base_row"),
    ("twin_source", "a user twin's twins file (path, or module:attr; python -m bench.run --twins); empty for a "
     "built-in model (bench.zoo)", "bench.core.job.Job.base_row"),
    ("twin_sha256", "sha256 of that twins file's text: two networks that share a name are never joined",
     "bench.core.job.Job.base_row"),
    ("parity", "a user twin's proof before the run (bench.twins.proof): proven, or unproven (run with --no-parity); "
     "empty for a built-in (its parity is proven by the tests)", "bench.pipeline.user_twins.prove_jobs"),
)

KINDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "throughput": (
        ("measurement", "train (forward+backward+optimizer) | infer (forward, inference mode)", "bench.core.job.Job.base_row"),
        ("input", "synthetic (already on the device) | real (CIFAR-10 pipeline, augmentation included)", "bench.core.job.Job.base_row"),
        ("channels_last", "torch memory format (keras twins are always NHWC)", "bench.stacks.pytorch.step.make_torch_step"),
        ("warmup_steps", "untimed steps run before timing (until step time was stable, >= 10)", "bench.measures.timing.warmup"),
        ("timed_steps", "timed samples (step_times_ms has one step time per sample; each sample is "
         "steps_per_sample steps): the job's steps, and more until the samples took 2 s (MIN_TIMED_S; at most 1,000)",
         "bench.measures.timing.measure"),
        ("steps_per_sample", "steps per timed sample. torch: 1, each step timed alone, device synchronised before "
         "and after. Keras train: a window of steps (10 on a GPU, 4 on a CPU) run as model.fit runs them (the "
         "compiled train function back to back, no host read-back between batches, JAX state kept in flight), one "
         "read-back at its end; the sample's step time is the window's time / its steps. Keras inference: 1 "
         "(predict_on_batch, which reads back every step)", "bench.stacks.keras.step.KERAS_WINDOW"),
        ("first_step_s", "wall time of the first step: compilation / tracing / autotuning", "bench.measures.timing.measure"),
        ("step_ms_median", "median over the timed samples of the step time (one step, or a sample's mean step when "
         "steps_per_sample > 1); the device is synchronised at every clock read", "bench.measures.timing.summarize"),
        ("step_ms_iqr", "interquartile range of the samples' step times (a window's spread is its mean's, "
         "smaller than single steps')", "bench.measures.timing.summarize"),
        ("step_ms_mean", "mean step time", "bench.measures.timing.summarize"),
        ("step_ms_std", "standard deviation of step times", "bench.measures.timing.summarize"),
        ("step_ms_min", "fastest sample's step time", "bench.measures.timing.summarize"),
        ("step_ms_max", "slowest sample's step time", "bench.measures.timing.summarize"),
        ("images_per_s", "batch_size / median step time", "bench.measures.timing.summarize"),
        ("params_trainable", "trainable parameters (bench.zoo.counts convention)", "bench.stacks.base.Stack.param_counts"),
        ("params_total", "trainable + BN moving statistics", "bench.stacks.base.Stack.param_counts"),
        ("fwd_mflops_per_image", "forward MFLOPs per image (torch FlopCounter on the torch twin)", "bench.zoo.counts.flops_per_image"),
        ("achieved_gflops", "the model's analytic FLOPs per image (bench.zoo.work, every layer kind; forward for infer, "
         "forward + backward for train) x images_per_s, in GFLOP/s", "bench.measures.roofline.throughput_columns"),
        ("roof_gflops", "the compute roof it is held against: the GEMM GFLOP/s of the row's library (backend) in its "
         "precision, from the roofs the run recorded in run_meta.json (python -m bench.peaks)",
         "bench.measures.roofline.throughput_columns"),
        ("roof_fraction", "achieved_gflops / roof_gflops (empty with null_reason where no roof was recorded)",
         "bench.measures.roofline.throughput_columns"),
        ("step_times_ms", "every timed sample's step time, space separated", "bench.measures.throughput.run_throughput"),
        ("warmup_converged", "true when warm-up stopped because the step time was stable (false: it hit its cap)",
         "bench.measures.timing.warmup"),
        ("step_cv", "coefficient of variation (std / mean) of the timed samples' step times; with 20 or more samples, "
         "of the medians of 10 consecutive batches of them (how far the step time drifted while it was timed, "
         "single-step jitter averaged out: what the report's verdicts test)", "bench.results.stats.drift_cv"),
        ("cpu_others_load_cores", "CPU time other processes used during the timed samples, in cores (the machine's "
         "busy jiffies in /proc/stat minus this process's in /proc/self/stat, over the window's wall time)",
         "bench.core.hygiene.CpuWindow"),
        ("cpu_threads", "CPU threads the stack's ops use in the job's process (torch.get_num_threads; "
         "OMP_NUM_THREADS or the usable cores for the others)", "bench.stacks.base.Stack.threads"),
        ("cpu_malloc", "the C allocator's thresholds the worker fixed in the job's process (glibc mallopt: without "
         "them a CPU step's cost depended on what the process had freed before it, by up to 10%); null where not "
         "set (not glibc, or not run by the worker): null_reason", "bench.core.hygiene.pin_malloc"),
        ("gpu_sm_clock_mhz", "SM clock at the end of the timed samples (GPU rows)", "bench.core.hygiene.GpuWindow"),
        ("gpu_power_w", "board power at the end of the timed samples (GPU rows)", "bench.core.hygiene.GpuWindow"),
        ("gpu_temp_c", "GPU temperature at the end of the timed samples (GPU rows)", "bench.core.hygiene.GpuWindow"),
        ("gpu_throttle_reasons", "NVML clock throttle reasons at the end of the timed samples, one per bit, "
         "'+'-joined, a bit's aliases '/'-joined ('none': clocks not held back)", "bench.core.hygiene.throttle_names"),
        ("gpu_other_processes", "other compute processes on the GPU at the end of the timed samples",
         "bench.core.hygiene.GpuWindow"),
        ("energy_mj_per_image", "energy the GPU drew during the timed samples (NVML total energy counter) / their "
         "images, millijoules (null on a CPU or a device without the counter: null_reason)",
         "bench.core.hygiene.GpuWindow.columns"),
        ("hygiene_flag", "why this row should not be trusted: 'contended: ...' (others' load > 0.5 core, or other "
         "processes on the GPU) and/or 'unstable: CV ...' (step_cv > 0.10); empty when clean. The report keeps a "
         "flagged row out of its verdicts, except where every repeat of a job is unstable (none contended): then "
         "their spread is the job's own (bench.report.common.left_out)", "bench.core.hygiene.flag"),
    ),
    "memory": (
        ("measurement", "train | infer", "bench.core.job.Job.base_row"),
        ("oom", "true when the batch did not fit (the batch tried is batch_size)", "bench.measures.memory.run_memory"),
        ("peak_alloc_mib", "allocator peak over the measured steps (torch max_memory_allocated, "
         "TF get_memory_info peak, JAX peak_bytes_in_use)", "bench.stacks.base.MemoryCounter.peak_bytes"),
        ("peak_alloc_source", "which allocator counter gave peak_alloc_mib (GPU rows) or cpu_alloc_peak_mib (CPU rows)",
         "bench.stacks.base.MemoryCounter.peak_bytes"),
        ("nvml_peak_used_mib", "peak device memory used seen by the NVML sampler (whole device)", "bench.core.nvml.Sampler"),
        ("nvml_mean_util_pct", "mean GPU utilisation during the measured steps", "bench.core.nvml.Sampler"),
        ("nvml_max_power_w", "peak board power", "bench.core.nvml.Sampler"),
        ("nvml_mean_sm_clock_mhz", "mean SM clock", "bench.core.nvml.Sampler"),
        ("nvml_samples", "NVML samples taken (rate >= 20 Hz)", "bench.core.nvml.Sampler"),
        ("step_ms_median", "median step time of the measured steps (memory-efficient variants' time cost); GPU rows "
         "only: a CPU memory job runs one untimed step", "bench.measures.timing.summarize"),
        ("images_per_s", "batch_size / median step time", "bench.measures.timing.summarize"),
        ("params_trainable", "trainable parameters (Stack.param_counts on GPU rows, StepMemory.trainable_count otherwise)",
         "bench.stacks.base.Stack.param_counts"),
        ("depth", "depth of the network measured: the registry model's, or the depth-sweep job's override "
         "(bench.core.job.Job.depth)", "bench.measures.memory.run_memory"),
        ("saved_activations_mib", "bytes one training step keeps for backward: every storage torch autograd saves "
         "(saved_tensors_hooks), each once, weights excluded; torch and keras/torch only, any device",
         "bench.stacks.common.autograd.SavedBytesCounter"),
        ("saved_by_kind_mib", "saved_activations_mib split by the layer kind that produced each storage, "
         "'conv=..;batchnorm=..;relu=..;concat=..;pool=..;linear=..;other=..' (MiB)",
         "bench.stacks.common.autograd.SavedBytesCounter.by_kind"),
        ("jax_residuals_mib", "keras/jax only: bytes of the residuals jax.ad_checkpoint lists for the step's VJP "
         "(arguments excluded), counted before XLA fusion: NOT comparable with saved_activations_mib",
         "bench.stacks.keras.jax.KerasJaxMemory.step_memory"),
        ("params_mib", "bytes of every weight (trainable and BN moving statistics)", "bench.stacks.base.MemoryCounter.step_memory"),
        ("grads_mib", "bytes of the gradients of one step", "bench.stacks.base.MemoryCounter.step_memory"),
        ("optimizer_state_mib", "bytes of the optimizer state after one step (SGD momentum buffers)",
         "bench.stacks.base.MemoryCounter.step_memory"),
        ("state_plus_activations_mib", "params_mib + grads_mib + optimizer_state_mib + saved_activations_mib",
         "bench.stacks.base.StepMemory.columns"),
        ("activations_source", "what measured saved_activations_mib / jax_residuals_mib", "bench.stacks.base.StepMemory.columns"),
        ("peak_over_state_activations", "peak_alloc_mib / state_plus_activations_mib (GPU rows; 1.0 = the allocator "
         "held exactly state + saved activations)", "bench.stacks.base.StepMemory.columns"),
        ("cpu_alloc_peak_mib", "CPU rows: the CPU allocator's peak over one compiled training step (tf.function, "
         "SGD momentum; the median of 5 steps' peaks after a warm-up step): weights, gradients, optimizer state, "
         "activations and transient buffers, as a GPU allocator peak counts them, so comparable with peak_alloc_mib "
         "and NOT with saved_activations_mib. keras/tensorflow only: tf.config.experimental.get_memory_info('CPU:0')"
         "['peak'] after reset_memory_stats, with TF_CPU_ALLOCATOR_USE_BFC=true set for the memory job's process "
         "alone (StackInfo.job_env). It depends on the order TensorFlow's executor runs ops in (each filter gradient "
         "takes a ~32 MiB scratch buffer, and one or two are alive at once; a few % at the suites' sizes, more on tiny "
         "nets; other inter-op threads change it further): peak_alloc_source names the steps' range and the threads. "
         "PyTorch and JAX keep no absolute CPU allocator peak (every stack's rise over a step is alloc_peak_mib)",
         "bench.stacks.keras.tensorflow.KerasTensorFlowMemory.step_memory"),
        ("alloc_peak_mib", "the like-for-like figure of every stack, on any device: the most bytes the framework's "
         "allocator held during one training step minus what it held before the step (activations, gradients and "
         "transient buffers; not the weights and optimizer state held before). torch and keras/torch: the torch "
         "profiler's allocation and free events (profile_memory=True) summed over the second of two profiled eager "
         "steps; keras/tensorflow: the BFC allocator's get_memory_info peak minus its current bytes, compiled step "
         "(median of 5 after a warm-up; on a CPU it needs TF_CPU_ALLOCATOR_USE_BFC, set for memory jobs); keras/jax: "
         "the compiled step's memory_analysis(), temporaries + outputs - outputs aliased to donated arguments. Empty "
         "with null_reason where the stack cannot give it (keras/jax on a GPU: step memory is left to CPU runs)",
         "bench.stacks.base.StepMemory.columns"),
        ("alloc_peak_method", "how alloc_peak_mib was measured (the counter, the step, the spread of the steps)",
         "bench.stacks.base.StepMemory.columns"),
        ("alloc_peak_kind", "runtime (the allocator's record of a step that ran: torch, keras/torch, keras/tensorflow) "
         "| compile-time (XLA's buffer assignment of the compiled step: keras/jax)", "bench.stacks.base.StepMemory.columns"),
    ),
    "epochs": (
        ("recipe", "training recipe name (bench.zoo.recipes)", "bench.zoo.recipes.recipe_for"),
        ("epoch", "1-based epoch number", "bench.stacks.base.epoch_row"),
        ("epochs_total", "epochs the recipe runs", "bench.zoo.recipes.Recipe"),
        ("lr", "learning rate at the last step of the epoch", "bench.zoo.recipes.Recipe.lr_at"),
        ("train_loss", "mean training cross-entropy over the epoch", "bench.stacks.base.epoch_row"),
        ("train_acc", "training accuracy over the epoch (augmented batches)", "bench.stacks.base.epoch_row"),
        ("test_loss", "cross-entropy on the test set (inference mode)", "bench.stacks.base.epoch_row"),
        ("test_acc", "test accuracy", "bench.stacks.base.epoch_row"),
        ("epoch_s", "wall seconds of the training part of the epoch", "bench.stacks.base.epoch_row"),
        ("train_images_per_s", "training images / epoch_s", "bench.stacks.base.epoch_row"),
        ("peak_mem_mib", "allocator peak during the epoch", "bench.stacks.base.MemoryCounter.peak_bytes"),
        ("train_examples", "examples per epoch (a subset when asked)", "bench.stacks.base.epoch_row"),
        ("seed", "sampler and init seed", "bench.stacks.base.epoch_row"),
        ("data_source", "official (md5-verified) or a copy such as the JPEG stand-in", "bench.data.data_kind"),
    ),
    "profile": (
        ("measurement", "train (a profile is always of a train step: forward, backward, optimizer)", "bench.core.job.Job.base_row"),
        ("layer", "the twin's canonical layer name (PyTorch module path as bench.zoo.specs.keras_name spells it = the "
         "Keras layer name), or (loss), (optimizer), (unattributed); (step) on the job's summary row",
         "bench.stacks.base.Stack.profile"),
        ("kind", "conv | batchnorm | relu | concat | pool | linear | add | other (a container's own ops: by op)",
         "bench.stacks.base.LayerTime"),
        ("phase", "forward | backward | recompute (a checkpointed forward re-run in the backward pass) | optimizer | "
         "other (unattributed time outside every phase); empty on the summary row", "bench.stacks.base.LayerTime"),
        ("ms_per_step", "the layer's own milliseconds per profiled step in this phase (nested layers excluded); the "
         "summary row: profiled_step_ms", "bench.stacks.base.LayerTime"),
        ("calls", "ranges per step: module calls, backward nodes, graph or XLA ops", "bench.stacks.base.LayerTime"),
        ("share_of_step", "ms_per_step / profiled_step_ms", "bench.measures.profile.run_profile"),
        ("profiled_step_ms", "mean step time under the profiler (the first profiled step discarded)",
         "bench.stacks.base.StepProfile"),
        ("unprofiled_step_ms", "median step time of the same step without the profiler", "bench.stacks.base.StepProfile"),
        ("profiler_overhead", "profiled_step_ms / unprofiled_step_ms (contended CPUs make it noisy)",
         "bench.measures.profile.run_profile"),
        ("coverage", "share of the profiled step attributed to a named layer, the loss or the optimizer (summary row; "
         "empty with null_reason where the stack has no sound attribution)", "bench.stacks.base.StepProfile"),
        ("fused_share", "share of the profiled step in ops fused across layers (XLA; empty where nothing is fused)",
         "bench.stacks.base.StepProfile"),
        ("profile_steps", "profiled steps (and unprofiled timed steps)", "bench.core.job.Job.steps"),
        ("depth", "depth of the network profiled: the registry model's, or the depth-sweep job's override "
         "(bench.core.job.Job.depth)", "bench.measures.profile.run_profile"),
        ("profile_source", "what measured and attributed the times", "bench.stacks.base.StepProfile"),
        ("trace_path", "the kept trace, relative to results/<run_id>/ (Perfetto / chrome://tracing; TensorFlow also "
         "keeps the .xplane.pb for TensorBoard's profile plugin)", "bench.measures.profile.run_profile"),
    ),
    "roofline": (
        ("layer_kind", "conv | linear | batchnorm | relu | pool | add | concat: a profile's layer rows of that kind "
         "summed", "bench.measures.roofline.join"),
        ("phase", "forward | backward (recompute, optimizer and unattributed time have no analytic work: not joined)",
         "bench.measures.roofline.join"),
        ("ms_per_step", "the kind's profiled milliseconds per step in this phase (profile.csv's rows summed)",
         "bench.measures.roofline.profile_times"),
        ("gflop_per_step", "the kind's analytic GFLOP per step for the job's batch (bench.zoo.work)", "bench.zoo.work.work_by_kind"),
        ("mbytes_per_step", "the kind's compulsory traffic per step, MB (each tensor read or written once: a floor on "
         "the real traffic)", "bench.zoo.work.work_by_kind"),
        ("intensity_flop_per_byte", "gflop_per_step / compulsory bytes (empty when no bytes)", "bench.measures.roofline.join"),
        ("achieved_gflops", "gflop_per_step / measured seconds per step", "bench.measures.roofline.join"),
        ("achieved_gbs", "compulsory GB / measured seconds per step", "bench.measures.roofline.join"),
        ("compute_roof_gflops", "the run's measured GEMM roof of the job's library and precision (run_meta.json roofs)",
         "bench.core.roofs.compute_roof"),
        ("memory_roof_gbs", "the bandwidth roof the kind's bytes were held against: its layers' compulsory bytes over "
         "their summed time at each one's roof, a layer's roof being the triad bandwidth of its working set (the "
         "sweep's cache levels; never below the DRAM roof, the STREAM triad over arrays far beyond the last-level "
         "cache)", "bench.measures.roofline.join"),
        ("t_min_ms", "max(FLOPs / compute roof, bytes / bandwidth roof): the kind's time at its roof",
         "bench.measures.roofline.classify"),
        ("efficiency", "t_min_ms / ms_per_step (1 = at the roof; above 1: data served from caches faster than the "
         "DRAM roof)", "bench.measures.roofline.classify"),
        ("limiting_roof", "compute (the kind's intensity at or above the ridge point: compute roof / bandwidth roof) | "
         "memory (below it) | none (no compulsory work): which roof t_min comes from", "bench.measures.roofline.classify"),
        ("bound", "compute (intensity at or above the ridge point) | memory (below it) | overhead (efficiency below "
         "bench.measures.roofline.OVERHEAD_EFFICIENCY, or no compulsory work)", "bench.measures.roofline.classify"),
        ("depth", "depth of the network profiled", "bench.measures.profile.run_profile"),
        ("roofs_measured", "when and how the roofs used were measured (run_meta.json roofs)", "bench.measures.profile.run_profile"),
    ),
    "jobs": (
        ("job_kind", "throughput | memory | epochs | profile: the CSV the job's figures are in", "bench.pipeline.jobs.record_job"),
        ("isolation", "fresh (the job had a process of its own) | reused (it ran in a long-lived worker of its stack, "
         "after other jobs: bench.run --isolation)", "bench.pipeline.executors.LocalExecutor.run"),
        ("worker_jobs", "jobs the job's process had run before this one (0: a fresh process, or a reused worker's first)",
         "bench.pipeline.jobs.record_job"),
        ("wall_s", "seconds from the job's spawn (fresh) or hand-over to its worker (reused) to its rows written and, "
         "fresh, its process gone", "bench.pipeline.jobs.record_job"),
        ("start_s", "process start and imports, until the measure began (reused: the hand-over alone)",
         "bench.core.phases.PhaseClock"),
        ("data_s", "the input made: a synthetic batch, or CIFAR-10 loaded and placed", "bench.core.phases.PhaseClock"),
        ("build_s", "the twin built with its optimizer (epochs and CPU memory jobs: inside timed_s)",
         "bench.core.phases.PhaseClock"),
        ("first_step_s", "the first step: compile, trace, autotune (the cold start / compile figure; throughput and GPU "
         "memory jobs)", "bench.core.phases.PhaseClock"),
        ("warmup_s", "untimed steps until the step time was stable (throughput: at least 10, at most the job's "
         "max_warmup)", "bench.core.phases.PhaseClock"),
        ("timed_s", "the timed work: timed samples (throughput), measured steps (memory), the training run (epochs), "
         "the profiler's steps (profile)", "bench.core.phases.PhaseClock"),
        ("write_s", "rows written, then (fresh) the process's exit or (reused) the worker's clean-up between jobs "
         "(Stack.between_jobs, garbage collection), until the parent saw it", "bench.pipeline.jobs.record_job"),
        ("other_s", "wall_s minus every phase above: time in no phase (hygiene windows, counts); large only when a "
         "phase is missing", "bench.pipeline.jobs.record_job"),
    ),
    "scaling": (
        ("stack", "pytorch | keras-jax | keras-tensorflow", "bench.measures.scaling.run_job"),
        ("scaling", "weak: a fixed per-replica batch (batch_size = replicas x per_replica_batch) | strong: one global batch "
         "split over the replicas", "bench.measures.scaling.rows_for"),
        ("replicas", "data-parallel replicas (processes or host devices on a CPU, GPUs on a GPU machine)", "bench.core.job.Job.base_row"),
        ("per_replica_batch", "examples per replica per step", "bench.measures.scaling.rows_for"),
        ("collective", "backend of the gradient all-reduce: gloo | nccl (DDP), XLA (Keras DataParallel on JAX), "
         "MirroredStrategy all-reduce (Keras on TensorFlow)", "bench.measures.scaling.run_job"),
        ("bn_mode", "BatchNorm under data parallelism: local (each replica's slice) | sync (the global batch)",
         "bench.measures.scaling.run_job"),
        ("input_size", "image side (the model's, or the job's override)", "bench.measures.scaling.run_scaling"),
        ("step_times_ms", "one global step time per timed step, ';'-separated", "bench.measures.scaling.run_job"),
        ("images_per_s", "batch_size / median step time", "bench.measures.scaling.rows_for"),
        ("efficiency", "scaling efficiency, 1 = ideal: median step time at 1 replica / at this count (weak), / (count x "
         "at this count) (strong)",
         "bench.measures.scaling.rows_for"),
        ("efficiency_lo", "95% interval of the efficiency, low (bench.results.stats.bootstrap_ratio)", "bench.measures.scaling.rows_for"),
        ("efficiency_hi", "95% interval of the efficiency, high", "bench.measures.scaling.rows_for"),
    ),
    "nvml": (
        ("t_s", "seconds since the sampler started", "bench.core.nvml.Sampler"),
        ("mem_used_mib", "device memory used", "bench.core.nvml.Sampler"),
        ("util_pct", "GPU utilisation", "bench.core.nvml.Sampler"),
        ("power_w", "board power", "bench.core.nvml.Sampler"),
        ("sm_clock_mhz", "SM clock", "bench.core.nvml.Sampler"),
    ),
}

FILES = {kind: f"{kind}.csv" for kind in KINDS}

# Columns added to schema version 1 after files of it were written: a file without them is read as if each were
# empty (the figure did not exist when it was written), not refused. A column removed or renamed needs a new version.
ADDED_IN_V1 = ("twin_source", "twin_sha256", "parity", "achieved_gflops", "roof_gflops", "roof_fraction")


def columns(kind: str) -> list[str]:
    """Ordered column names of a CSV kind."""
    if kind not in KINDS:
        raise KeyError(f"unknown CSV kind {kind!r}; kinds: {', '.join(KINDS)}")
    return [c[0] for c in COMMON + KINDS[kind]]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def append_row(path: str | os.PathLike, kind: str, row: dict) -> None:
    """Append one row to ``path`` as a single write + fsync (the header first when the file is new).

    Raises:
        KeyError: a key that is not a column of ``kind`` (the schema is the contract).
        bench.results.writes.ResultsWriteError: disk full or not writable; the file is left as it was (a header
            is never written without its row), so every CSV still parses.
    """
    append_rows(path, kind, [row])


def append_rows(path: str | os.PathLike, kind: str, rows: list[dict]) -> None:
    """Append ``rows`` to ``path`` as one write + fsync: all of them or none (a job's profile, its layers and its
    summary row, is whole or absent after a crash; one fsync instead of one per row: a DenseNet profile's ~200
    rows took ~1 s of fsyncs). Raises as :func:`append_row` does; no row is written when one has a bad key."""
    if not rows:
        return
    cols = columns(kind)
    for row in rows:
        extra = sorted(set(row) - set(cols))
        if extra:
            raise KeyError(f"columns {extra} are not in the {kind} schema (bench/results/schema.py)")
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path = Path(path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    new = not path.exists() or path.stat().st_size == 0
    if new:
        w.writerow(cols)
    else:
        cols = _file_columns(path, cols)
    for row in rows:
        row = {"schema_version": SCHEMA_VERSION, **row}
        if not row.get("timestamp"):
            row["timestamp"] = now
        w.writerow([_fmt(row.get(c)) for c in cols])
    from bench.results.writes import append_bytes
    append_bytes(path, buf.getvalue().encode())  # all or nothing: a failed write leaves the file as it was


def _file_columns(path: Path, cols: list[str]) -> list[str]:
    """The columns to append under: the file's own header where it predates columns of ``ADDED_IN_V1`` (a resumed
    older run keeps one header; those columns stay empty in it), else the schema's."""
    with open(path, newline="") as f:
        have = next(csv.reader([f.readline()]), [])
    if have != cols and set(have) <= set(cols) and set(cols) - set(have) <= set(ADDED_IN_V1):
        return have
    return cols


def parse_by_kind(text) -> dict[str, float]:
    """``"conv=1.0;relu=2.5"`` (a saved_by_kind_mib cell) -> {"conv": 1.0, "relu": 2.5}; {} for an empty cell."""
    if not isinstance(text, str) or not text:
        return {}
    return {k: float(v) for k, v in (p.split("=", 1) for p in text.split(";") if "=" in p)}


def describe() -> str:
    lines = [f"TwinBench CSV schema v{SCHEMA_VERSION}", ""]
    for kind in KINDS:
        lines.append(f"## {FILES[kind]}")
        for name, meaning, producer in COMMON + KINDS[kind]:
            lines.append(f"  {name:<24} {meaning}  [{producer}]")
        lines.append("")
    return "\n".join(lines)
