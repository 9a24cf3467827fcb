"""``python -m bench.report [RUN_ID | --latest] [--compare OTHER_RUN_ID]``: results/<run_id>/ -> reports/<run_id>/.

Writes ``index.html`` (self-contained: figures embedded, opens from disk with no network),
``index.md`` (readable on a code host), and every figure as PNG and SVG. Each section renders from
whatever the run has; a missing kind of data (a CPU-only run, OOM rows) is said, not hidden.

``render.py`` renders and holds the CLI, ``common.py`` what the sections share, ``sections/`` one module per section.
"""
from bench.report.common import Section, impl_label, load_run
from bench.report.render import latest_run, main, render
from bench.report.sections.fidelity import fidelity_table
from bench.report.sections.memory import concat_bytes_per_image

__all__ = ["Section", "concat_bytes_per_image", "fidelity_table", "impl_label", "latest_run", "load_run", "main", "render"]
