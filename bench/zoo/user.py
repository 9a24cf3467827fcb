"""Users' twins files: the second provider of twins, beside the built-in zoo.

A twins file is a Python file (``path/to/my_twins.py``) or an importable ``module:attr`` (``attr`` names the dict;
``module`` alone means its ``TWINS``). It defines a module-level ``TWINS`` dict, name -> either

- ``(build_torch, build_keras)``: two zero-argument callables returning a ``torch.nn.Module`` (NCHW input) and a
  ``keras.Model`` (NHWC input), CIFAR-10 shaped (32x32x3 in, 10 logits out); or
- a dict: ``{"torch": build_torch, "keras": build_keras}`` and optionally ``"input_shape": (H, W, C)``,
  ``"classes": N``, ``"weight_map": {torch name: keras name}``, ``"description": "one line"``.

Every process that runs a job re-loads the file: ``--twins`` sets ``TWINBENCH_TWINS`` (``os.pathsep``-separated
references), which the local workers inherit and the Ray executor forwards (every ``TWINBENCH_*`` variable). Each
twin carries the sha256 of the file's text, so a row says which text it measured.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from bench.zoo.twin import Twin, TwinsError, _one_line

ENV = "TWINBENCH_TWINS"
PAIRS_ENV = "TWINBENCH_TWIN_PAIRS"  # {twin: {torch module path: keras layer name}}, set by a run's proof


def _import_file(path: Path, digest: str):
    name = f"twinbench_user_{path.stem}_{digest[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TwinsError(f"twins file {path} is not a Python file (give a .py file or module:attr)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if str(path.parent) not in sys.path:  # the file's own imports of its neighbours (from my_layers import ...)
        sys.path.append(str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: its own error, in one line
        del sys.modules[name]
        raise TwinsError(f"twins file {path} does not import: {type(e).__name__}: {_one_line(e)}"
                         f"{_where(e, path)}") from None
    return module


def _where(e: BaseException, path: Path) -> str:
    tb, line = e.__traceback__, None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None and isinstance(e, SyntaxError):
        line = e.lineno
    return f" (line {line})" if line else ""


def _resolve(ref: str) -> tuple[dict, str, str]:
    """(the TWINS dict, the source as rows name it, sha256 of the file's text)."""
    path = Path(ref).expanduser()
    if ref.endswith(".py") or path.exists():
        if not path.is_file():
            raise TwinsError(f"twins file {ref} does not exist")
        path = path.resolve()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        module, attr, source = _import_file(path, digest), "TWINS", str(path)
    else:
        mod_name, _, attr = ref.partition(":")
        attr = attr or "TWINS"
        try:
            module = importlib.import_module(mod_name)
        except Exception as e:
            raise TwinsError(f"twins module {mod_name} does not import: {type(e).__name__}: {_one_line(e)}") from None
        file = getattr(module, "__file__", None)
        digest = hashlib.sha256(Path(file).read_bytes()).hexdigest() if file else ""
        source = ref
    if not hasattr(module, attr):
        raise TwinsError(f"twins file {ref} defines no {attr}: give it a module-level dict "
                         f"{attr} = {{name: (build_torch, build_keras)}}")
    twins = getattr(module, attr)
    if not isinstance(twins, dict) or not twins:
        raise TwinsError(f"{attr} in {ref} is a {type(twins).__name__}, not a non-empty dict name -> "
                         "(build_torch, build_keras)")
    return twins, source, digest


def _entry(name, value, source: str, digest: str) -> Twin:
    where = f"{source}: TWINS[{name!r}]"
    if not isinstance(name, str) or not name or any(c in name for c in ",/ *?[]"):
        raise TwinsError(f"{where}: a twin's name must be a non-empty string without ',', '/', spaces or wildcards")
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = {"torch": value[0], "keras": value[1]}
    if not isinstance(value, dict) or not {"torch", "keras"} <= set(value):
        raise TwinsError(f"{where} is neither (build_torch, build_keras) nor a dict with 'torch' and 'keras' builders")
    unknown = set(value) - {"torch", "keras", "input_shape", "classes", "weight_map", "description"}
    if unknown:
        raise TwinsError(f"{where} has unknown key(s) {sorted(unknown)}; known: torch, keras, input_shape, classes, "
                         "weight_map, description")
    if not (callable(value["torch"]) and callable(value["keras"])):
        raise TwinsError(f"{where}: both builders must be zero-argument callables")
    h, w, c = value.get("input_shape", (32, 32, 3))
    classes = value.get("classes", 10)
    if h != w or not all(isinstance(v, int) and v > 0 for v in (h, c, classes)):
        raise TwinsError(f"{where}: input_shape must be (H, H, C) and classes a positive int, "
                         f"got {value.get('input_shape')!r} and {classes!r}")
    weight_map = value.get("weight_map") or {}
    if not isinstance(weight_map, dict):
        raise TwinsError(f"{where}: weight_map must be a dict {{torch name: keras name}}")
    return Twin(name=name, build_torch=value["torch"], build_keras=value["keras"], input_size=h, input_channels=c,
                num_classes=classes, source=source, sha256=digest, weight_map=dict(weight_map),
                description=value.get("description") or f"user twin from {Path(source.split(':')[0]).name}")


def load_twins(ref: str) -> list[Twin]:
    """The twins of one twins file (``path.py``) or module (``module:attr``); a TwinsError names what is wrong."""
    twins, source, digest = _resolve(ref)
    return [_entry(n, v, source, digest) for n, v in twins.items()]


ENTRY_POINT_GROUP = "twinbench.twins"  # an installed package's twins: [project.entry-points."twinbench.twins"]


_ENTRY_POINTS: list[str] | None = None  # read once per process: the installed packages do not change under it


def entry_point_refs() -> list[str]:
    """``module:attr`` of each entry point of the ``twinbench.twins`` group (installed packages' TWINS dicts).

    Read once per process and kept (``forget_entry_points`` drops it): it scans every installed distribution's
    metadata, and every registry lookup asks (a smoke report makes thousands).
    """
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        from importlib.metadata import entry_points
        _ENTRY_POINTS = sorted({ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)})
    return list(_ENTRY_POINTS)


def forget_entry_points() -> None:
    """Read the entry points again on the next lookup (tests; a package installed while the process runs)."""
    global _ENTRY_POINTS
    _ENTRY_POINTS = None


def env_refs() -> list[str]:
    """The twins refs every process loads: ``$TWINBENCH_TWINS`` (set by ``--twins``), then installed entry points."""
    refs = [r for r in os.environ.get(ENV, "").split(os.pathsep) if r]
    return refs + [r for r in entry_point_refs() if r not in refs]


def set_env(refs: list[str]) -> None:
    """Make ``refs`` the twins files of this process and of every job it starts (absolute paths: jobs run from the
    checkout)."""
    absolute = [str(Path(r).expanduser().resolve()) if (r.endswith(".py") or Path(r).exists()) else r for r in refs]
    merged = list(dict.fromkeys([r for r in os.environ.get(ENV, "").split(os.pathsep) if r] + absolute))
    os.environ[ENV] = os.pathsep.join(merged)


def paired_names(model: str) -> dict[str, str]:
    """{torch module path: keras layer name} of a user twin, as its proof before the run paired them (empty when the
    run did not prove it, or for a built-in): the torch profile names its layers by their Keras partners."""
    import json
    try:
        return json.loads(os.environ.get(PAIRS_ENV) or "{}").get(model, {})
    except ValueError:
        return {}
