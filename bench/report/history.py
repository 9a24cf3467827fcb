"""History: every run under results/ (and other results folders) in one table, and a report of each figure
over runs, per implementation, per machine, with the changes a per-pair test detects marked.

A run is a folder with ``run_meta.json``; it is keyed by git commit, machine and package versions. The
machine is the host name (runs written before it was recorded: the platform) with its CPU, cores and GPU;
runs of different machines are never pooled: each machine has its own figures and its own change list.
Changes: each pair of consecutive runs (by time) of one job on one machine is compared as the report's
ratio tables are (``bench.results.stats.compare_groups``: within one process, ratio of medians, bootstrap interval and
Mann-Whitney U; with repeats, Welch t on the per-process medians; minimum effect); a ``faster`` / ``slower`` verdict is a detected change.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench.report.common import ROOT, Section, _plt, _save, compare_rows, impl_colour, impl_gid, impl_label, load_run
from bench.results.stats import FASTER, METHOD, MIN_EFFECT, SLOWER

JOB = ["model", "measurement", "precision", "batch_size", "input", "impl"]
PACKAGES = ("torch", "keras", "tensorflow", "jax")


def find_runs(dirs: list[Path]) -> list[Path]:
    """Every results directory (a folder with run_meta.json) given, or directly under a folder given; each once."""
    seen: dict[Path, None] = {}
    for d in map(Path, dirs):
        if (d / "run_meta.json").is_file():
            seen[d.resolve()] = None
        elif d.is_dir():
            for p in sorted(d.iterdir()):
                if (p / "run_meta.json").is_file():
                    seen[p.resolve()] = None
    return list(seen)


def machine_of(meta: dict) -> str:
    """The machine a run ran on: host (or platform), CPU x cores, GPU."""
    host = meta.get("hostname") or meta.get("platform") or "unknown host"
    gpu = f", {meta['gpu_name']}" if meta.get("gpu_name") else ""
    return f"{host} ({meta.get('cpu') or '?'} x{meta.get('cpu_count') or '?'}{gpu})"


def gather(dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs: one row per run; throughput rows of every run; memory rows of every run), each row with its
    run_id, started time and machine."""
    runs, tp, mem = [], [], []
    for d in find_runs(dirs):
        run = load_run(d)
        meta = run["meta"]
        started = pd.Timestamp(d.stat().st_mtime, unit="s")
        t = run["throughput"]
        first = t.timestamp.dropna().min() if t is not None and "timestamp" in t and len(t) else None
        if first:
            started = pd.Timestamp(first).tz_localize(None)
        key = {"run_id": meta.get("run_id", d.name), "started": started, "machine": machine_of(meta)}
        v = meta.get("versions") or {}
        runs.append({**key, "git_commit": (meta.get("git_commit") or "")[:10] + ("+dirty" if meta.get("git_dirty") else ""),
                     "versions": ", ".join(f"{p} {v[p]}" for p in PACKAGES if v.get(p)),
                     "suite": meta.get("suite"), "device": meta.get("device"), "folder": str(d),
                     "throughput_rows": 0 if t is None else int((t.status == "ok").sum())})
        for df, out in ((t, tp), (run["memory"], mem)):
            if df is not None and len(df):
                ok = df[df.status == "ok"].copy()
                if len(ok):
                    ok["impl"] = impl_label(ok)
                    out.append(ok.assign(**key))
    cat = lambda parts: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()  # noqa: E731
    runs_df = pd.DataFrame(runs)
    if len(runs_df):
        runs_df = runs_df.sort_values(["started", "run_id"]).reset_index(drop=True)
    return runs_df, cat(tp), cat(mem)


def changes(tp: pd.DataFrame, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """Each pair of consecutive runs of one throughput job on one machine, tested; one row per pair."""
    if not len(tp):
        return pd.DataFrame()
    out = []
    for (machine, *job), g in tp.groupby(["machine"] + JOB, sort=False):
        order = g.groupby("run_id").started.min().reset_index().sort_values(["started", "run_id"]).run_id.tolist()
        for before, after in zip(order, order[1:]):
            c = compare_rows(g[g.run_id == after], g[g.run_id == before], min_effect)
            c.pop("_cmp")
            out.append({"machine": machine, **dict(zip(JOB, job)), "from_run": before, "to_run": after,
                        "images_per_s_ratio": c["ratio"], "95% interval": c["95% interval"], "p": c["p"],
                        "verdict": c["verdict"], "noise": c["noise"]})
    return pd.DataFrame(out)


def _figure(g: pd.DataFrame, ch: pd.DataFrame, runs: list[str], title: str, out: Path, stem: str) -> str:
    """images/s (median, one point per run) per implementation x model; detected changes marked."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(runs) + 3), 4))
    x = {r: i for i, r in enumerate(runs)}
    import itertools
    marks = {m: itertools.repeat(mk) for m, mk in zip(sorted(g.model.unique()), itertools.cycle("osD^vP*X"))}
    for (model, impl), s in g.groupby(["model", "impl"], sort=False):
        med = s.groupby("run_id").images_per_s.median()
        xs = [x[r] for r in med.index]
        order = sorted(range(len(xs)), key=xs.__getitem__)
        ax.plot([xs[i] for i in order], [med.iloc[i] for i in order], marker=next(marks[model]), color=impl_colour(impl),
                label=f"{impl} {model}", gid=impl_gid(impl))
        if len(ch):
            mine = ch[(ch.model == model) & (ch.impl == impl)]
            for r in mine.itertuples():
                if r.verdict in (FASTER, SLOWER) and r.to_run in med.index:
                    ax.plot(x[r.to_run], med[r.to_run], marker="^" if r.verdict == FASTER else "v", ms=14,
                            color="green" if r.verdict == FASTER else "red", ls="none")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(runs, rotation=30, ha="right", fontsize=8)
    ax.set(title=title, ylabel="images/s (median step)")
    ax.legend(fontsize=7)
    return _save(fig, out, stem)


def history_sections(runs: pd.DataFrame, tp: pd.DataFrame, mem: pd.DataFrame, out: Path,
                     min_effect: float = MIN_EFFECT) -> list[Section]:
    s = Section("Runs")
    if not len(runs):
        s.text.append("No runs found (a run is a folder with run_meta.json, written by python -m bench.run).")
        return [s]
    s.text.append(f"{len(runs)} run(s) on {runs.machine.nunique()} machine(s); runs of different machines are "
                  "never pooled: each machine has its own figures and changes.")
    s.tables.append(("every run, once (oldest first)", runs.drop(columns=["folder"])))
    sections = [s]
    ch = changes(tp, min_effect)
    for i, (machine, mruns) in enumerate(runs.groupby("machine", sort=False)):
        m = Section(f"Throughput over runs: {machine}")
        order = mruns.run_id.tolist()
        mtp = tp[tp.machine == machine] if len(tp) else tp
        mch = ch[ch.machine == machine] if len(ch) else ch
        if not len(mtp):
            m.text.append("No throughput rows on this machine.")
        for j, (cfg, g) in enumerate(mtp.groupby(["measurement", "precision", "batch_size", "input"], sort=False)
                                     if len(mtp) else ()):
            title = f"{cfg[0]}, {cfg[1]}, batch {cfg[2]}, {cfg[3]}: images/s over runs"
            m.figures.append((_figure(g, mch, order, title, out, f"history_m{i}_{j}"),
                              title + " (triangles: a change the test detected)"))
        if len(mch):
            found = mch[mch.verdict.isin([FASTER, SLOWER])]
            m.text.append(f"Changes between consecutive runs ({METHOD}; minimum effect {min_effect:.0%}): "
                          f"{len(found)} of {len(mch)} pair(s) changed.")
            m.tables.append(("consecutive runs, per job: images/s later / earlier", mch.drop(columns=["machine"])))
        if len(mem) and (mem.machine == machine).any():
            mm = mem[mem.machine == machine]
            fig_cols = [c for c in ("peak_alloc_mib", "saved_activations_mib") if c in mm and mm[c].notna().any()]
            for c in fig_cols:
                piv = mm.pivot_table(index=["model", "impl", "measurement", "batch_size"], columns="run_id", values=c,
                                     aggfunc="median")
                piv = piv[[r for r in order if r in piv.columns]]
                piv.columns.name = None
                m.tables.append((f"{c} per run (MiB)", piv.round(2).reset_index()))
        sections.append(m)
    return sections


def render_history(dirs: list[Path], out_dir: Path, min_effect: float = MIN_EFFECT) -> Path:
    """Render the history of the runs under ``dirs`` into ``out_dir``; returns index.html's path."""
    from bench.report.render import _html, _markdown
    from bench.results.writes import write_text_atomic
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, tp, mem = gather(dirs)
    sections = history_sections(runs, tp, mem, out_dir, min_effect)
    title = "TwinBench history"
    write_text_atomic(out_dir / "index.md", _markdown(title, sections))
    write_text_atomic(out_dir / "index.html", _html(title, sections, out_dir))
    return out_dir / "index.html"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.history",
                                 description="Every run under results/ (and the folders given) in one table, and a "
                                             "history report per machine: each figure over runs, changes marked.")
    ap.add_argument("dirs", nargs="*", help="results folders (a run, or a folder of runs) besides results/")
    ap.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "history"), help="where to write (default: reports/history/)")
    ap.add_argument("--min-effect", type=float, default=100 * MIN_EFFECT, metavar="PCT",
                    help="smallest change, in percent, called a change (default: %(default)g)")
    args = ap.parse_args(argv)
    dirs = [Path(args.results), *map(Path, args.dirs)]
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        path = render_history(dirs, Path(args.out), args.min_effect / 100)
    except OSError as e:
        print(f"error: could not write the history report into {args.out} ({e.strerror or e})", file=sys.stderr)
        return 3
    print(path)
    return 0
