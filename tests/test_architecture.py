"""The architecture, checked: import contracts (import-linter), no file-level import circle (grimp), complexity
(ruff C901), dispatch on the stack.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``): layers from the commands down to
``bench.core``, stacks independent of each other, the Keras backends independent, no circle in the
pipeline or the twins. ``lint-imports`` must keep them all, and must break on a forbidden import.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    if not Path(LINT_IMPORTS).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)})


def test_import_contracts_are_kept():
    p = _lint_imports(ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


@pytest.mark.parametrize("module, line, names", [
    # the executors imported run_job / done_jobs back from the CLI module (run <-> executors <-> preflight)
    ("bench/pipeline/executors.py", "from bench.run import main", "bench.pipeline.executors -> bench.run"),
    # the CLI of the twins was the library of the training parity (twins <-> train_parity)
    ("bench/twins/transfer.py", "from bench.twins.__main__ import main", "bench.twins.transfer -> bench.twins.__main__"),
    # a lower layer importing a higher one
    ("bench/stacks/base.py", "from bench.measures import timing", "bench.stacks.base -> bench.measures"),
    # one stack importing another
    ("bench/stacks/keras/torch.py", "from bench.stacks.pytorch import memory", "bench.stacks.keras.torch -> bench.stacks.pytorch"),
])
def test_a_forbidden_import_breaks_a_contract_and_is_named(tmp_path, module, line, names):
    for item in ("bench", "models_torch", "models_tf", "pyproject.toml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n\ndef _forbidden():\n    {line}  # noqa\n")
    p = _lint_imports(tmp_path)
    assert p.returncode != 0, p.stdout[-2000:]
    assert "BROKEN" in p.stdout and names in p.stdout, p.stdout[-3000:]


def test_ruff_with_the_complexity_rule_passes():
    """ruff's rules of pyproject.toml, C901 at max-complexity 15 included, on the code and the twins."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    p = subprocess.run([ruff, "check", "bench", "models_torch", "models_tf", "tests"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout[-3000:]


DISPATCH = re.compile(r"""(framework|backend|keras_backend)\s*(==|!=)\s*["']|["'](torch|keras|tensorflow|jax)["']\s*(==|!=)\s*"""
                      r"""\w*(framework|backend)\b|(framework|backend)\s+(not\s+)?in\s*\(""")


def test_no_stack_dispatch_outside_the_stacks():
    """Measures, the pipeline, the worker, the report and the commands read the stack registry or call a Stack
    method; ``if framework == ...`` lives nowhere outside bench/stacks but in the registration that lists the
    stacks (bench/core/stack_registry.py), at most 5 lines there."""
    offenders, registration = [], []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("bench/stacks/"):
            continue
        for n, text in enumerate(path.read_text().splitlines(), 1):
            if DISPATCH.search(text.split("#")[0]):
                (registration if rel == "bench/core/stack_registry.py" else offenders).append(f"{rel}:{n}: {text.strip()}")
    assert not offenders, "stack dispatch outside bench/stacks:\n" + "\n".join(offenders)
    assert len(registration) <= 5, "\n".join(registration)


def test_the_dispatch_check_catches_dispatch():
    assert DISPATCH.search('if job.framework == "torch":') and DISPATCH.search("if backend != 'jax':")
    assert DISPATCH.search('if framework in ("torch", "keras"):')
    assert not DISPATCH.search('stack = get_stack(job.framework, job.keras_backend)')


def test_every_registered_stack_implements_the_interface():
    """Each registry entry names a Stack subclass whose identity matches its entry and that overrides every
    method of the interface (a stack that forgot one would fail inside a job, far from here)."""
    import importlib

    from bench.core.stack_registry import STACKS
    from bench.stacks.base import Stack
    methods = [m for m in ("env", "param_counts", "make_step", "train", "memory", "plain_baseline")]
    for info in STACKS.values():
        module, name = info.target.split(":")
        cls = getattr(importlib.import_module(module), name)  # stack modules import no framework at import time
        assert issubclass(cls, Stack)
        assert (cls.name, cls.framework, cls.backend) == (info.name, info.framework, info.backend)
        for m in methods:
            assert getattr(cls, m) is not getattr(Stack, m), f"{info.name} does not implement {m}"
        assert set(info.default_modes.values()) <= set(info.exec_modes)


def test_registering_a_stack_twice_raises():
    from bench.core.stack_registry import STACKS, register_stack
    with pytest.raises(ValueError, match="already registered"):
        register_stack(STACKS["torch"])


@pytest.mark.slow
def test_keras_private_jax_state_the_fit_window_reads_exists():
    """The fit-like Keras window reads Keras' private JAX trainer state (bench.stacks.keras.jax.fit_window); on a
    Keras that renames it this test fails loudly with the version, before any benchmark does."""
    code = ("import keras\nfrom bench.stacks.keras.jax import check_private_api\n"
            "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
            "m.compile(optimizer='sgd', loss='mse')\nm.train_on_batch(keras.ops.ones((2, 4)), keras.ops.ones((2, 2)))\n"
            "check_private_api(m)\nprint('ok', keras.__version__)")
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr[-2000:]


def test_the_private_api_check_names_what_is_missing():
    from bench.stacks.keras.jax import check_private_api
    with pytest.raises(RuntimeError, match="_get_jax_state"):
        check_private_api(object())


def test_jax_private_saved_residuals_exists():
    """The Keras-on-JAX memory counter reads JAX's private saved_residuals; a JAX that moves it fails here."""
    pytest.importorskip("jax")
    from bench.stacks.keras.jax import saved_residuals_fn
    assert callable(saved_residuals_fn())


# ---- no file-level import circle --------------------------------------------------------------------------------
# A circle between two files (a imports b, b imports a, at the top or inside a function) is a design circle: neither
# file can be read, tested or moved without the other, and a top-level one fails at import time in the wrong order.
# grimp (import-linter's graph) reports every import statement of a file, function-level (lazy) ones included.
# Imports under ``if TYPE_CHECKING:`` do not count: they never run, they name a type for an annotation only, and
# they are Python's own way for a module to annotate with a class of a module that imports it.
# A package's __init__ is a file like any other; a child is not an import of its parent (grimp's graph).

CIRCLE_PACKAGES = ("bench", "models_torch", "models_tf")


def import_circles(*packages: str) -> list[str]:
    """One line per file-level import circle among ``packages`` (each strongly connected group of modules, shown
    as one shortest closed chain, ``a -> b -> a``); [] when there is none. The packages are found on sys.path."""
    import grimp
    graph = grimp.build_graph(*packages, cache_dir=None, exclude_type_checking_imports=True)
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in adj:
        if m not in index:
            visit(m)
    lines = []
    for group in sorted(groups):
        first = group[0]
        back = min((graph.find_shortest_chain(importer=w, imported=first) or () for w in adj[first] if w in group),
                   key=len)
        lines.append(" -> ".join((first, *back)))
    return lines


def test_no_file_level_import_circle():
    circles = import_circles(*CIRCLE_PACKAGES)
    assert not circles, ("file-level import circles (move what both files need into a third, lower file):\n"
                         + "\n".join(circles))


CIRCLE_FIXTURE = {
    # package file -> its text; each case names the circle the check must find (None: none)
    "top-level": ({"a.py": "from {p} import b\n", "b.py": "from {p} import a\n"}, "{p}.a -> {p}.b -> {p}.a"),
    "function-level": ({"a.py": "from {p}.b import g\ndef f():\n    return g()\n",
                        "b.py": "def g():\n    from {p}.a import f\n    return f\n"}, "{p}.a -> {p}.b -> {p}.a"),
    "three files": ({"a.py": "import {p}.b\n", "b.py": "import {p}.c\n", "c.py": "def h():\n    import {p}.a\n"},
                    "{p}.a -> {p}.b -> {p}.c -> {p}.a"),
    "type-checking only": ({"a.py": "from {p} import b\n",
                            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from {p} import a\n"},
                           None),
    "no circle": ({"a.py": "from {p} import b\n", "b.py": "import json\n"}, None),
}


@pytest.mark.parametrize("case", list(CIRCLE_FIXTURE))
def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch, case):
    files, circle = CIRCLE_FIXTURE[case]
    pkg = "circlefixture_" + re.sub(r"\W", "_", case)
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / pkg / name).write_text(text.format(p=pkg))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_circles(pkg) == ([circle.format(p=pkg)] if circle else [])


def test_the_circle_check_finds_a_circle_put_back_into_bench(tmp_path):
    """The check on a copy of the code with one of the two circles #40 broke put back (a lazy import, as it was)."""
    for item in CIRCLE_PACKAGES:
        shutil.copytree(ROOT / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "bench/results/schema.py"
    target.write_text(target.read_text() + "\n\ndef _circle():\n    from bench.results.read import read_frame  # noqa\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from test_architecture import import_circles; "
            "print('\\n'.join(import_circles('bench', 'models_torch', 'models_tf')))")
    p = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], cwd=tmp_path, capture_output=True,
                       text=True, env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split("\n")[0] == "bench.results.read -> bench.results.schema -> bench.results.read", p.stdout
