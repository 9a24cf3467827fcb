"""The "How to read this report" part, at the end: the method behind every verdict and figure, one click from the
answers (each section's own notes sit under it, collapsed)."""
from __future__ import annotations

from pathlib import Path

from bench.report.common import WITHIN_PROCESS_SENTENCE, Section
from bench.results.stats import METHOD, MIN_EFFECT


def section_howto(run: dict, out: Path | None = None) -> Section:
    """What the verdicts, the flags, the memory measures and the figures mean (``out`` unused: no figure)."""
    s = Section("How to read this report")
    s.text.append("The Scoreboard answers first; each answer links to the section, figure or trace it comes from, and "
                  "each section's method sits under it in 'How to read this section'.")
    s.notes += [
        f"Verdicts (minimum effect {run.get('min_effect', MIN_EFFECT):.0%}): {METHOD}.",
        WITHIN_PROCESS_SENTENCE,
        "Flagged rows (contended: other processes used the cores; unstable: the step time drifted) are drawn hatched "
        "and faded, and left out of every verdict; the run-health line names them.",
        "Memory measures compare only like with like: an allocator peak (GPU, or the CPU allocator of Keras on "
        "TensorFlow) counts weights, gradients, optimizer state, activations and transient buffers; 'state + saved "
        "activations' counts what autograd keeps, without transient buffers. Where two implementations have no common "
        "measure, the Scoreboard says 'not comparable' and gives each its own figure.",
        "Colours: one per implementation in every figure (PyTorch blues, Keras on TensorFlow oranges, JAX greens, "
        "Keras on torch purples; a darker shade for the first exec mode). Bars further apart than 10x are drawn one "
        "panel per model. Published reference points are black crosses.",
        "Every figure is also an SVG beside index.html; the traces the report links are copied into the report folder "
        "(traces/), so the folder can be moved or zipped whole.",
    ]
    return s
