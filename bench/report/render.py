"""Render results/<run_id>/ into reports/<run_id>/ (index.md, index.html, figures); the CLI."""
from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

from bench.report.common import ROOT, Section, _md_table, load_run
from bench.report.sections.accuracy import section_accuracy
from bench.report.sections.compare import section_compare
from bench.report.sections.degradation import section_degradation
from bench.report.sections.environment import section_environment
from bench.report.sections.errors import section_errors
from bench.report.sections.fidelity import section_fidelity
from bench.report.sections.memory import section_memory
from bench.report.sections.throughput import section_throughput

# The sections a report has, in this order: the one place that says so. Each is called as section(run, out_dir)
# and returns a Section; section_compare, (run, other run, out_dir), only when the report compares two runs.
SECTIONS = (section_environment, section_throughput, section_memory, section_accuracy, section_degradation,
            section_fidelity, section_errors, section_compare)


def render(run_dir: Path, out_dir: Path, compare_dir: Path | None = None) -> Path:
    """Render the report of ``run_dir`` into ``out_dir``; returns the path of index.html."""
    run = load_run(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for section in SECTIONS:
        if section is not section_compare:
            sections.append(section(run, out_dir))
        elif compare_dir is not None:  # the other run is read at its turn, after the sections before it
            sections.append(section_compare(run, load_run(compare_dir), out_dir))
    title = f"TwinBench report: {run['meta'].get('run_id', Path(run_dir).name)}"
    from bench.results.writes import write_text_atomic  # a full disk leaves the previous page, never half of one
    write_text_atomic(out_dir / "index.md", _markdown(title, sections))
    write_text_atomic(out_dir / "index.html", _html(title, sections, out_dir))
    return out_dir / "index.html"


def _markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [t + "\n" for t in s.text]
        for stem, cap in s.figures:
            lines += [f"![{cap}]({stem}.png)", f"*{cap}* ([SVG]({stem}.svg))", ""]
        for cap, df in s.tables:
            if cap:
                lines.append(f"**{cap}**\n")
            lines += [_md_table(df), ""]
    return "\n".join(lines)


def _html(title: str, sections: list[Section], out_dir: Path) -> str:
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
           "padding:3px 7px;text-align:right}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}"
           "figure{margin:1em 0}figcaption{color:#555;font-size:13px}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        for stem, cap in s.figures:
            data = base64.b64encode((out_dir / f"{stem}.png").read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(cap)} (<a href='{stem}.svg'>SVG</a>)</figcaption></figure>")
        for cap, df in s.tables:
            if cap:
                parts.append(f"<p><b>{html.escape(cap)}</b></p>")
            parts.append(df.to_html(index=False, na_rep="", border=0))
    parts.append("</body></html>")
    return "\n".join(parts)


def latest_run(results: Path) -> Path:
    runs = sorted(p for p in results.iterdir() if (p / "run_meta.json").exists()) if results.exists() else []
    if not runs:
        raise FileNotFoundError(f"no runs under {results}: run `python -m bench.run --suite smoke` first")
    return max(runs, key=lambda p: p.stat().st_mtime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description="Render results/<run_id>/ into reports/<run_id>/.")
    ap.add_argument("run_id", nargs="?", help="run id under --results, or a path to a results directory")
    ap.add_argument("--latest", action="store_true", help="the most recent run")
    ap.add_argument("--compare", metavar="OTHER_RUN_ID", help="a second run to compare with (ratios, side by side)")
    ap.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    ap.add_argument("--out", default=str(ROOT / "reports"), help="reports root (default: reports/)")
    args = ap.parse_args(argv)
    results = Path(args.results)

    def resolve(r: str) -> Path:
        p = Path(r)
        return p if p.is_dir() else results / r

    try:
        run_dir = latest_run(results) if (args.latest or not args.run_id) else resolve(args.run_id)
        other = resolve(args.compare) if args.compare else None
        for d in filter(None, (run_dir, other)):
            if not d.is_dir():
                raise FileNotFoundError(f"no results directory {d}")
            if not (d / "run_meta.json").is_file():
                raise FileNotFoundError(f"{d} is not a TwinBench results directory (no run_meta.json): give a "
                                        "results/<run_id>/ folder written by python -m bench.run")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        path = render(run_dir, Path(args.out) / run_dir.name, other)
    except OSError as e:  # disk full / not writable: one sentence, not a traceback
        print(f"error: could not write the report into {Path(args.out) / run_dir.name} "
              f"({e.strerror or e}): free space or give --out elsewhere", file=sys.stderr)
        return 3
    print(path)
    return 0
