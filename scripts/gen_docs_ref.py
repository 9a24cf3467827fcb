"""The docs' reference pages, generated from the code at build time (mkdocs-gen-files runs this file).

Every page here is what the code says today, so it cannot drift: each command's page is its argparse
parser's --help, the CSV schema comes from bench.results.schema, the model table from the registry
(parameters counted on the PyTorch twin built on torch's meta device: no weights, about a second), the
suites and their job counts from `python -m bench.run --list` on a CPU and on a GPU plan. Nothing here
times anything, trains anything or counts FLOPs, so `mkdocs build` takes seconds.

Run alone (`python scripts/gen_docs_ref.py OUTDIR`) it writes the same pages into OUTDIR.
"""
from __future__ import annotations

import argparse
import contextlib
import html
import importlib
import inspect
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Every `python -m X` a user runs. tests/test_docs.py fails when a module with a __main__ guard is in
# neither this list nor INTERNAL.
ENTRY_POINTS = ("bench.run", "bench.report", "bench.history", "bench.profile", "bench.twins", "bench.overhead",
                "bench.models", "bench.schema", "bench.scaling", "bench.peaks")
# Modules with a __main__ guard that users do not run: the job's process, started by the executors.
INTERNAL = ("bench.pipeline.worker", "bench.twins.dp_parity",  # dp_parity: one parity case per process
            "bench.measures.scaling")  # one (stack, replica count) of a scaling job, in its own process
HELP_COLUMNS = "80"  # argparse wraps at $COLUMNS: fixed so the pages do not depend on the terminal


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


def _main_of(entry: str):
    """The `main` that `python -m entry` runs (a package runs its __main__)."""
    mod = importlib.import_module(entry)
    if hasattr(mod, "__path__"):  # a package
        mod = importlib.import_module(entry + ".__main__")
    return mod.main


def parser_of(entry: str) -> argparse.ArgumentParser:
    """The argparse parser of `python -m entry`: its module's build_parser() where there is one, else the
    parser main() builds, caught at its parse_args (main runs no further)."""
    main = _main_of(entry)
    impl = inspect.getmodule(main)
    if hasattr(impl, "build_parser"):
        return impl.build_parser()
    orig_parse_args, orig_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def catch(self, *a, **k):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = catch
    argparse.ArgumentParser.parse_known_args = catch
    try:
        main([])
    except _Captured as c:
        return c.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = orig_parse_args, orig_known
    raise RuntimeError(f"{entry}: main() returned without parsing arguments")


def help_text(entry: str) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        return parser_of(entry).format_help()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string and positional name a user can type or read in --help (hidden ones left out)."""
    out = []
    for a in parser._actions:
        if a.help == argparse.SUPPRESS:
            continue
        if a.option_strings:
            out += [s for s in a.option_strings if s.startswith("--")] or list(a.option_strings)
        else:
            out.append(a.metavar if isinstance(a.metavar, str) else a.dest)
    return out


def cell(text) -> str:
    """A Markdown table cell: HTML-escaped (a ``<run_id>`` stays text, not a tag the browser drops), pipes escaped,
    on one line. Code spans (between backticks) are left as they are: Markdown shows them literally."""
    parts = str(text).split("`")
    parts = [p if i % 2 else html.escape(p, quote=False) for i, p in enumerate(parts)]
    return "`".join(parts).replace("|", "\\|").replace("\n", " ")


def expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """A flag's help as --help prints it: argparse's own expansion of every ``%(...)`` (``%(default)g`` too)."""
    if not action.help:
        return ""
    return parser._get_formatter()._expand_help(action)


def cli_page(entry: str) -> str:
    parser = parser_of(entry)
    text = help_text(entry)
    lines = [f"# python -m {entry}", "",
             f"Generated at build time from the command's own parser (`python -m {entry} --help`), so this "
             "page and the program cannot disagree.", "", "```text", text.rstrip(), "```", "", "## Flags", "",
             "| flag | help |", "|---|---|"]
    for a in parser._actions:
        if a.help == argparse.SUPPRESS:
            continue
        name = ", ".join(a.option_strings) if a.option_strings else (a.metavar if isinstance(a.metavar, str) else a.dest)
        lines.append(f"| `{name}` | {cell(expanded_help(parser, a))} |")
    return "\n".join(lines) + "\n"


def schema_page() -> str:
    from bench.results import schema
    lines = ["# Results schema", "",
             f"Generated at build time from `bench.results.schema` (schema version {schema.SCHEMA_VERSION}); "
             "`python -m bench.schema` prints the same. Every CSV under `results/<run_id>/` has the common "
             "columns, then its own. A figure that could not be measured is empty and `null_reason` says why.", "",
             "## Common columns (every CSV)", "", "| column | meaning | filled by |", "|---|---|---|"]
    lines += [f"| `{c}` | {cell(m)} | `{p}` |" for c, m, p in schema.COMMON]
    for kind, cols in schema.KINDS.items():
        lines += ["", f"## {schema.FILES.get(kind, kind + '.csv')}", "", "| column | meaning | filled by |", "|---|---|---|"]
        lines += [f"| `{c}` | {cell(m)} | `{p}` |" for c, m, p in cols]
    return "\n".join(lines) + "\n"


def _param_counts() -> dict[str, tuple[int, int]] | None:
    """Trainable and total parameters per model, counted on the PyTorch twin built on the meta device
    (shapes only: no memory, no initialisation, ~1 s for the zoo). None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from bench.zoo import build, list_models
    from bench.zoo.counts import torch_param_counts
    out = {}
    with torch.device("meta"):
        for n in list_models():
            t, nt = torch_param_counts(build(n, "torch"))
            out[n] = (t, t + nt)
    return out


def models_page() -> str:
    from bench.zoo import get_entry, get_spec, list_models
    counts = _param_counts()
    lines = ["# Models", "",
             "Generated at build time from the registry (`bench.zoo`). Parameters are counted on the PyTorch "
             "twin (the Keras twin has the same counts: `tests/test_twins.py`); `paper` is the figure the "
             "paper quotes. `python -m bench.models` prints this table with forward FLOPs per image too.", "",
             "| model | params (trainable) | params (total, with BN statistics) | paper | depth | description |",
             "|---|---|---|---|---|---|"]
    for n in list_models():
        spec, entry = get_spec(n), get_entry(n)
        t, tot = (f"{counts[n][0]:,}", f"{counts[n][1]:,}") if counts else ("n/a (no torch)", "n/a (no torch)")
        lines.append(f"| `{n}` | {t} | {tot} | {entry.paper_params or '-'} | {spec.depth} | {cell(entry.description)} |")
    return "\n".join(lines) + "\n"


def recipes_page() -> str:
    import dataclasses

    from bench.zoo.recipes import RECIPES, recipe_for
    fields = [f.name for f in dataclasses.fields(next(iter(RECIPES.values())))]
    lines = ["# Recipes", "", "Generated at build time from `bench.zoo.recipes` (`--recipe NAME`; `--epochs` overrides "
             "the epochs). Milestones are (epoch, factor): from that epoch on, lr = base x factor; below 1.0 an "
             "epoch is a fraction of the training. `paper` on a DenseNet is the DenseNet paper's recipe, listed "
             "as `paper (densenet)`.", "", "| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    rows = [(n, r) for n, r in RECIPES.items()] + [("paper (densenet)", recipe_for("paper", "densenet"))]
    for label, r in rows:
        vals = [label if f == "name" else getattr(r, f) for f in fields]
        lines.append("| " + " | ".join(f"`{v}`" if i == 0 else str(v) for i, v in enumerate(vals)) + " |")
    return "\n".join(lines) + "\n"


def run_list(device: str) -> str:
    """`python -m bench.run --list --device DEVICE`, in-process (it prints and exits without running)."""
    import bench.run
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = bench.run.main(["--list", "--device", device])
    if rc not in (0, None):
        raise RuntimeError(f"bench.run --list --device {device} exited {rc}")
    return buf.getvalue()


def dry_run(argv: list[str]) -> tuple[int, float]:
    """(jobs, estimated minutes) of `python -m bench.run ARGV --dry-run`, in-process: the plan's own rough
    estimate (FLOPs at an assumed device speed + process start; counted from the specs, nothing built)."""
    import re

    import bench.run
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = bench.run.main([*argv, "--dry-run"])
    m = re.search(r"^(\d+) jobs .*estimated time for the rest: ([\d.]+) min", buf.getvalue(), re.M)
    if rc not in (0, None) or m is None:
        raise RuntimeError(f"bench.run {' '.join(argv)} --dry-run: exit {rc}, no plan line in {buf.getvalue()[-300:]!r}")
    return int(m.group(1)), float(m.group(2))


def _duration(minutes: float) -> str:
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h" if minutes < 6000 else f"{minutes / 60:,.0f} h"


def suite_jobs(listing: str) -> dict[str, int]:
    """{suite: job count} from a --list output."""
    out = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "jobs" and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def suites_page() -> str:
    from bench.pipeline.suites import unplanned_reason
    cpu, gpu = run_list("cpu"), run_list("cuda")
    suites = list(suite_jobs(cpu))
    counts = {"cpu": suite_jobs(cpu), "cuda": suite_jobs(gpu)}
    plans = {(su, dev): dry_run(["--suite", su, "--device", dev]) for su in suites for dev in ("cpu", "cuda")
             if counts[dev].get(su)}
    lines = ["# Suites", "",
             "Generated at build time from `python -m bench.run --list` and `python -m bench.run --suite NAME "
             "--dry-run`, each with `--device cpu` and `--device cuda`. A suite's plan depends on the device (a GPU "
             "sweeps more batches, trains longer, runs more seeds) and on the Keras backends installed where the "
             "docs were built (the GPU suites run every installed one by default). The time is the plan's own "
             "rough estimate (FLOPs at an assumed device speed plus process start), one job after another on "
             "one device: a guide to the order of magnitude, not a measurement (on a CPU, within 2x of a measured smoke run: "
             "`tests/test_docs.py` holds it there).", "",
             "| suite | jobs on a CPU | estimate on a CPU | jobs on a GPU | estimate on one GPU |", "|---|---|---|---|---|"]
    for su in suites:
        cells = []
        for dev in ("cpu", "cuda"):
            if (su, dev) in plans:
                n, minutes = plans[(su, dev)]
                cells += [f"{n:,}", _duration(minutes)]
            else:  # a suite with no job on this device: why, in the code's own words
                cells += ["none", cell(unplanned_reason(su, dev == "cuda") or "no job matches on this device")]
        lines.append(f"| `{su}` | " + " | ".join(cells) + " |")
    lines += ["", "## `python -m bench.run --list --device cpu`", "", "```text", cpu.rstrip(), "```", "",
              "## `python -m bench.run --list --device cuda`", "", "```text", gpu.rstrip(), "```"]
    return "\n".join(lines) + "\n"


GPU_SESSION = ROOT / "scripts" / "gpu_session.sh"


def gpu_phases() -> list[tuple[str, str, list[list[str]]]]:
    """(phase, its line in the script's header, [bench.run argv, ...]) for every phase of scripts/gpu_session.sh,
    read from the script itself: its header's phase list and the `suite` calls of its phase() function."""
    import re
    import shlex
    text = GPU_SESSION.read_text()
    models = re.search(r"^MODELS=(\S+)", text, re.M).group(1)
    header = text[text.index("# Phases"):text.index("# A 30-minute session")]
    phases = []
    for m in re.finditer(r"^#   (\S+)\s+(.*(?:\n#\s{10,}.*)*)", header, re.M):
        desc = " ".join(x.strip("# ").strip() for x in m.group(2).splitlines())
        desc = re.sub(r"\s*\[#\d+\]", "", re.sub(r"\s+", " ", desc)).strip()  # the issue it was filed for: not a user's concern
        body = re.search(r"^\s+" + re.escape(m.group(1)) + r"\)(.*?);;", text[text.index("phase() {"):], re.M | re.S)
        runs = []
        for call in re.findall(r"suite (?:\"\$1\"|\S+) (--suite [^\n&|;]*)", body.group(1) if body else ""):
            runs.append(shlex.split(call.replace('"$MODELS"', models)))
        phases.append((m.group(1), desc, runs))
    return phases


def gpu_session_section() -> str:
    lines = ["\n## Each phase's plan\n",
             "Generated at build time from `scripts/gpu_session.sh` itself: each phase that runs a suite, with its "
             "`bench.run` flags and the plan's rough estimate on one GPU (`--dry-run --device cuda`). Phases "
             "that run a script (`reference`, `overhead`, `bench`, `anchors`) have no plan; like every phase they "
             "stop at the session's deadline and resume in the next call.", "",
             "| phase | what it measures | bench.run flags | jobs | estimate on one GPU |", "|---|---|---|---|---|"]
    for name, desc, runs in gpu_phases():
        if not runs:
            lines.append(f"| `{name}` | {cell(desc)} | (a script) | | |")
            continue
        plans = [dry_run([*argv, "--device", "cuda"]) for argv in runs]
        flags = "<br>".join("`" + " ".join(a) + "`" for a in runs)
        lines.append(f"| `{name}` | {cell(desc)} | {flags} | {sum(p[0] for p in plans):,} | "
                     f"{_duration(sum(p[1] for p in plans))} |")
    return "\n".join(lines) + "\n"


def cli_index() -> str:
    lines = ["# Commands", "", "Every command is `python -m bench.X`; each page below is the command's `--help`, "
             "generated from its parser when the docs are built.", ""]
    lines += [f"- [`python -m {e}`]({e}.md)" for e in ENTRY_POINTS]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """{path under docs/: markdown} of every generated page."""
    out = {"reference/cli/index.md": cli_index()}
    for e in ENTRY_POINTS:
        out[f"reference/cli/{e}.md"] = cli_page(e)
    out["reference/schema.md"] = schema_page()
    out["reference/models.md"] = models_page()
    out["reference/suites.md"] = suites_page()
    out["reference/recipes.md"] = recipes_page()
    return out


def sections_section() -> str:
    """The report's sections in the order the renderer writes them (bench.report.render.SECTIONS)."""
    from bench.report.render import FIRST, SECTIONS
    order = [FIRST, *SECTIONS]
    names = [f.__name__.removeprefix("section_").replace("_", " ") for f in order]
    body = "\n".join(f"{i}. {n} (`{f.__module__}`)" for i, (n, f) in enumerate(zip(names, order), 1))
    return ("\n## The sections, in order\n\nGenerated from `bench.report.render` (`FIRST`, then `SECTIONS`) when the "
            "docs were built; the comparison section is there only with `--compare`.\n\n"
            + body + "\n")


def contracts_section() -> str:
    """The import contracts of pyproject.toml, as they stand."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["\n## The import contracts\n", "Generated from `pyproject.toml` (`[tool.importlinter]`) when the docs were "
             "built. A layers contract lists its layers from the top: a layer may import only from the layers "
             "below it.", ""]
    for c in conf["contracts"]:
        lines.append(f"- **{c['name']}** ({c['type']})")
        for key in ("layers", "modules", "source_modules", "forbidden_modules"):
            if key in c:
                lines.append(f"    - {key.replace('_', ' ')}: " + ", ".join(f"`{m}`" for m in c[key]))
    return "\n".join(lines) + "\n"


def screenshots_section(img_dir: Path) -> str:
    """The report screenshots that exist under docs/img/ (committed separately), so no link can dangle."""
    shots = sorted(p.name for p in img_dir.glob("*.png")) if img_dir.is_dir() else []
    if not shots:
        return ("\n## Screenshots\n\nNo screenshot is committed under `docs/img/` yet; "
                "`python -m bench.run --suite smoke` writes a report you can open.\n")
    body = "\n\n".join(f"![{s[:-4].replace('-', ' ')}](img/{s})" for s in shots)
    return f"\n## Screenshots\n\n{body}\n"


def _gen_files() -> None:
    import mkdocs_gen_files
    for path, text in pages().items():
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(text)
    with mkdocs_gen_files.open("reading-the-report.md", "a") as f:
        f.write(sections_section() + screenshots_section(ROOT / "docs" / "img"))
    with mkdocs_gen_files.open("development.md", "a") as f:
        f.write(contracts_section())
    with mkdocs_gen_files.open("gpu-sessions.md", "a") as f:
        f.write(gpu_session_section())


if __name__ == "__main__":
    if len(sys.argv) == 2:
        outdir = Path(sys.argv[1])
        for path, text in pages().items():
            (outdir / path).parent.mkdir(parents=True, exist_ok=True)
            (outdir / path).write_text(text)
    else:
        raise SystemExit("usage: python scripts/gen_docs_ref.py OUTDIR   (mkdocs build runs it through mkdocs-gen-files)")
elif __name__ == "<run_path>":  # mkdocs-gen-files runs its scripts with runpy.run_path
    _gen_files()
