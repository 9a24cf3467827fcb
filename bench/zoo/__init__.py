"""The model zoo: the framework-neutral specs (``specs``), the registry of twins (``registry``), parameter and
FLOP counts (``counts``), training recipes (``recipes``) and published reference figures (``anchors``).
The twins' builders are ``models_torch`` and ``models_tf``; their proofs are ``bench.twins``."""
from __future__ import annotations

from bench.zoo.registry import (  # noqa: F401  (the registry's public API)
    BUILDERS,
    FRAMEWORKS,
    ModelEntry,
    build,
    get_entry,
    get_spec,
    list_models,
    load_user_twins,
    register_model,
    register_twin,
    twin_of,
    user_models,
)
from bench.zoo.twin import Twin, TwinsError  # noqa: F401
