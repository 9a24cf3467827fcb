"""Render results/<run_id>/ into reports/<run_id>/ (index.md, index.html, figures); the CLI."""
from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

from bench.core.helpfmt import RawWrappedFormatter
from bench.report.common import ROOT, Cell, Link, Section, _md_table, anchor, load_run
from bench.report.sections.accuracy import section_accuracy
from bench.report.sections.compare import regressions, section_compare
from bench.report.sections.degradation import section_degradation
from bench.report.sections.environment import section_environment
from bench.report.sections.errors import section_errors
from bench.report.sections.fidelity import section_fidelity
from bench.report.sections.harness import section_harness
from bench.report.sections.howto import section_howto
from bench.report.sections.memory import section_memory
from bench.report.sections.profile import section_profile
from bench.report.sections.scaling import section_scaling
from bench.report.sections.scoreboard import section_scoreboard
from bench.report.sections.throughput import section_throughput
from bench.results.stats import MIN_EFFECT

# The sections a report has, in this order: the one place that says so (a new section: one more entry). Each is
# called as section(run, out_dir) and returns a Section; section_compare, (run, other run, out_dir), only when the
# report compares two runs. The scoreboard opens every report: it is drawn last (it answers from the rows the
# sections read, and the compared run once that is read) and placed first.
FIRST = section_scoreboard  # rendered after SECTIONS (it links their figures), shown before them
SECTIONS = [section_environment, section_throughput, section_profile, section_memory, section_accuracy,
            section_degradation, section_fidelity, section_scaling, section_harness, section_errors, section_compare, section_howto]


EXIT_REGRESSION = 4  # the same number as bench.pipeline.preflight.EXIT_REGRESSION (a test holds them equal)
REPORT_EXIT_HELP = """exit status:
  0    the report was written (and, with --fail-on-regression, no regression was found)
  2    bad input: no such results directory, or not one written by python -m bench.run
  3    the report could not be written (disk full, no permission)
  4    --fail-on-regression PCT: some implementation is slower (a significant test: ratio beyond PCT, Benjamini-Hochberg
       q < 0.01 over the compare's tests, 95% interval excluding 1) or heavier in memory than in the --compare run by more than PCT percent;
       each such row is printed in one sentence (the report is written all the same)"""


def render(run_dir: Path, out_dir: Path, compare_dir: Path | None = None, min_effect: float = MIN_EFFECT) -> Path:
    """Render the report of ``run_dir`` into ``out_dir``; returns the path of index.html. ``min_effect``: the
    smallest ratio change (a fraction) a verdict calls faster / slower."""
    run = load_run(run_dir)
    run["min_effect"] = min_effect
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, other = [], None
    for section in SECTIONS:
        if section is not section_compare:
            sections.append(section(run, out_dir))
        elif compare_dir is not None:  # the other run is read at its turn, after the sections before it
            other = load_run(compare_dir)
            sections.append(section_compare(run, other, out_dir))
    sections.insert(0, FIRST(run, out_dir, other, [st for sec in sections for st, _ in sec.figures]))
    sections[0].text[:0] = [f"Damaged results file: {d}." for d in run.get("damage", [])]  # rows dropped: said first
    title = f"TwinBench report: {run['meta'].get('run_id', Path(run_dir).name)}"
    from bench.results.run_state import state_sentence
    from bench.results.writes import write_text_atomic  # a full disk leaves the previous page, never half of one
    banner = state_sentence(run_dir, run["meta"])  # an unfinished run says so at the top
    write_text_atomic(out_dir / "index.md", _markdown(title, sections, banner))
    write_text_atomic(out_dir / "index.html", _html(title, sections, out_dir, banner))
    return out_dir / "index.html"


def _markdown(title: str, sections: list[Section], banner: str | None = None) -> str:
    lines = [f"# {title}", ""] + ([f"> **Not a finished run.** {banner}", ""] if banner else [])
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [t + "\n" for t in s.text]
        for stem, cap in s.figures:
            lines += [f"![{cap}]({stem}.png)", f"*{cap}* ([SVG]({stem}.svg))", ""]
        for cap, df in s.tables:
            if cap:
                lines.append(f"**{cap}**\n")
            lines += [_md_table(df), ""]
        if s.notes:
            lines += ["<details><summary>How to read this section</summary>", ""]
            lines += [t + "\n" for t in s.notes] + ["</details>", ""]
    return "\n".join(lines)


CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
       "padding:3px 7px;text-align:right}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}"
       "figure{margin:1em 0}figcaption{color:#555;font-size:13px}.wide{overflow-x:auto;max-width:100%}"
       "details{margin:.3em 0 1.5em;color:#444;font-size:14px}summary{cursor:pointer;color:#0b5cad}"
       "table.scoreboard td,table.scoreboard th{text-align:left;vertical-align:top;max-width:22em}table.scoreboard{font-size:14px}"
       "p.health{background:#eef5ee;border:1px solid #9c9;padding:.4em .6em}"
       # a long token (a trace file, a job id) wraps anywhere, so a table's columns fit the page; a table still wider
       # than the page gets a visible cue above it (CUE_JS), never columns hidden without a word
       "td{overflow-wrap:anywhere}p.cue{color:#8a5a00;font-size:13px;margin:.2em 0}")
# shows the cue above each table wider than its box (at load and on resize): "more columns to the right"
CUE_JS = ("<script>function twinbenchCues(){document.querySelectorAll('div.wide').forEach(function(w){"
          "var c=w.previousElementSibling;if(c&&c.classList.contains('cue')){c.hidden=!(w.scrollWidth>w.clientWidth+1);}"
          "});}window.addEventListener('load',twinbenchCues);window.addEventListener('resize',twinbenchCues);</script>")


def _breakable(escaped: str) -> str:
    """Escaped text with a line-break opportunity after each '_' and '/' (``batch_<wbr>size``,
    ``keras/<wbr>tensorflow``): a column of long names narrows at those, not in the middle of a word."""
    return escaped.replace("_", "_<wbr>").replace("/", "/<wbr>")


def _cell_html(v) -> str:
    """A table cell as HTML: a Link an <a href>, a Cell its parts, a null empty, anything else escaped text."""
    if isinstance(v, Link):
        return f"<a href='{html.escape(v.href, quote=True)}'>{_breakable(html.escape(v.text))}</a>"
    if isinstance(v, Cell):
        return "".join(_cell_html(p) for p in v.parts)
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return _code(_breakable(html.escape(str(v))))


def _code(escaped: str) -> str:
    """`a command` (Markdown code) as <code>, and [text](#anchor) (a Markdown link inside the report) as <a>, in
    escaped HTML text."""
    import re
    linked = re.sub(r"\[([^\]]+)\]\((#[A-Za-z0-9_-]+)\)", r'<a href="\2">\1</a>', escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", linked)


def _table_html(df, cls: str = "") -> str:
    head = "".join(f"<th>{_breakable(html.escape(str(c)))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell_html(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    cue = (f"<p class='cue' hidden>This table has {len(df.columns)} columns, more than the window shows: scroll it "
           "sideways for the rest.</p>")
    return (f"{cue}<div class='wide'><table class='{cls}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _html(title: str, sections: list[Section], out_dir: Path, banner: str | None = None) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style>{CUE_JS}</head><body><h1>{html.escape(title)}</h1>"]
    if banner:
        parts.append(f"<p class='unfinished' style='background:#fff3cd;border:1px solid #e0c060;padding:.6em'>"
                     f"<b>Not a finished run.</b> {html.escape(banner)}</p>")
    for s in sections:
        parts.append(f"<section id='{s.anchor}'><h2>{html.escape(s.title)}</h2>")
        first = s.anchor == "scoreboard"
        parts += [f"<p{' class=health' if first and i == 0 else ''}>{_code(html.escape(t))}</p>" for i, t in enumerate(s.text)]
        for stem, cap in s.figures:
            data = base64.b64encode((out_dir / f"{stem}.png").read_bytes()).decode()
            parts.append(f"<figure id='fig-{anchor(stem)}'><img alt='{html.escape(cap)}' src='data:image/png;base64,"
                         f"{data}'><figcaption>{html.escape(cap)} (<a href='{stem}.svg'>SVG</a>, "
                         f"<a href='{stem}.png'>PNG</a>)</figcaption></figure>")
        for i, (cap, df) in enumerate(s.tables):
            tid = f"tbl-{s.anchor}-{i + 1}"
            if cap:
                parts.append(f"<p id='{tid}'><b>{html.escape(cap)}</b></p>")
            parts.append(_table_html(df, f"scoreboard board-{i + 1}" if first else ""))
        if s.notes:
            parts.append("<details><summary>How to read this section</summary>"
                         + "".join(f"<p>{html.escape(t)}</p>" for t in s.notes) + "</details>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def latest_run(results: Path) -> Path:
    if results.exists() and not results.is_dir():
        raise FileNotFoundError(f"--results {results} is a file, not a directory: give the results root (results/)")
    runs = sorted(p for p in results.iterdir() if (p / "run_meta.json").exists()) if results.exists() else []
    if not runs:
        raise FileNotFoundError(f"no runs under {results}: run `python -m bench.run --suite smoke` first")
    return max(runs, key=lambda p: p.stat().st_mtime)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description="Render results/<run_id>/ into reports/<run_id>/.",
                                 epilog=REPORT_EXIT_HELP, formatter_class=RawWrappedFormatter)
    ap.add_argument("run_id", nargs="?", help="run id under --results, or a path to a results directory")
    ap.add_argument("--latest", action="store_true", help="the most recent run")
    ap.add_argument("--compare", metavar="OTHER_RUN_ID", help="a second run to compare with (ratios, side by side)")
    ap.add_argument("--min-effect", type=float, default=100 * MIN_EFFECT, metavar="PCT",
                    help="smallest change, in percent, a verdict calls faster / slower (default: %(default)g)")
    ap.add_argument("--fail-on-regression", type=float, metavar="PCT",
                    help="with --compare: exit 4 when an implementation is slower (significant test) or heavier in "
                         "memory than in the compared run by more than PCT percent, listing each such row")
    ap.add_argument("--results", default=str(ROOT / "results"), metavar="DIR",
                    help="results root (default: results/), as bench.run's --results")
    ap.add_argument("--reports", "--out", dest="out", default=str(ROOT / "reports"), metavar="DIR",
                    help="reports root (default: reports/), as bench.run's --reports; --out is its older name here "
                         "(in bench.run, --out is the results root)")
    return ap


def _readable_run(d: Path) -> None:
    """Raise FileNotFoundError / ValueError (one sentence) unless ``d`` is a run folder this code can read (damaged
    rows alone are dropped with a note: ``bench.results.read``)."""
    from bench.results.read import check_run
    if not d.is_dir():
        raise FileNotFoundError(f"no results directory {d}")
    check_run(d)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("run_id", "compare", "results", "out"):
        v = getattr(args, name)
        if v is not None and not v.strip():
            flag = {"run_id": "RUN_ID", "out": "--reports (--out)"}.get(name, f"--{name}")
            print(f"error: {flag} is empty ({v!r}): give a value, or leave it out for its default", file=sys.stderr)
            return 2
    if not (0 <= args.min_effect < 100):
        print(f"error: --min-effect must be a percentage in [0, 100), got {args.min_effect:g}", file=sys.stderr)
        return 2
    if args.fail_on_regression is not None and not args.fail_on_regression > 0:
        print(f"error: --fail-on-regression must be a positive percentage, got {args.fail_on_regression:g}", file=sys.stderr)
        return 2
    results = Path(args.results)

    def resolve(r: str) -> Path:
        p = Path(r)
        return p if p.is_dir() else results / r

    try:
        run_dir = latest_run(results) if (args.latest or not args.run_id) else resolve(args.run_id)
        other = resolve(args.compare) if args.compare else None
        for d in filter(None, (run_dir, other)):
            _readable_run(d)
        if args.fail_on_regression is not None and other is None:
            raise FileNotFoundError("--fail-on-regression needs --compare BASE: the run to hold this one against")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from bench.results.run_state import describe_holder, holder
    h = holder(run_dir)
    if h is not None:
        print(f"note: {run_dir.name} is still being written ({describe_holder(h)}): the report holds the rows so far",
              file=sys.stderr)
    try:
        path = render(run_dir, Path(args.out) / run_dir.name, other, args.min_effect / 100)
    except OSError as e:  # disk full / not writable: one sentence, not a traceback
        print(f"error: could not write the report into {Path(args.out) / run_dir.name} "
              f"({e.strerror or e}): free space or give --out elsewhere", file=sys.stderr)
        return 3
    print(path)
    return _gate(run_dir, other, args) if args.fail_on_regression is not None else 0


def _gate(run_dir: Path, other: Path, args) -> int:
    """--fail-on-regression: each regression in one sentence on stderr; EXIT_REGRESSION when there is one."""
    found, shift = regressions(load_run(run_dir), load_run(other), args.fail_on_regression, args.min_effect / 100)
    for sentence in found:
        print(f"regression: {sentence}", file=sys.stderr)
    if shift:
        print(f"note: {shift}", file=sys.stderr)
    if found:
        print(f"{len(found)} regression(s) beyond {args.fail_on_regression:g}% against {other.name}", file=sys.stderr)
        return EXIT_REGRESSION
    print(f"no regression beyond {args.fail_on_regression:g}% against {other.name}", file=sys.stderr)
    return 0
