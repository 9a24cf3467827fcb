"""Reports: results/<run_id>/ -> reports/<run_id>/ (``python -m bench.report``, see :mod:`bench.report.render`)."""
from bench.report.render import (
    Section,
    _label,
    concat_bytes_per_image,
    fidelity_table,
    latest_run,
    load_run,
    main,
    render,
)

__all__ = ["Section", "_label", "concat_bytes_per_image", "fidelity_table", "latest_run", "load_run", "main", "render"]
