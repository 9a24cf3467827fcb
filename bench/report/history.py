"""History: every run under results/ (and other results folders) in one table, and a report of each figure
over runs, per implementation, per machine, with its change points and the changes a per-pair test detects marked.

A run is a folder with ``run_meta.json``; it is keyed by git commit, machine and package versions. The
machine is the host name (runs written before it was recorded: the platform) with its CPU, cores and GPU;
runs of different machines are never pooled: each machine has its own figures and its own change list.
Changes: each pair of consecutive runs (by time) of one job on one machine is compared as the report's
ratio tables are (``bench.results.stats.compare_groups``: within one process, ratio of medians, bootstrap interval and
Mann-Whitney U; with repeats, Welch t on the per-process medians; minimum effect); a ``faster`` / ``slower`` verdict is a
pairwise change, marked as such: over many runs, pairwise tests alert on noise.
Change points: each series (a throughput job's step time, a memory figure, a final accuracy; per machine and
implementation) is searched for levels (:mod:`bench.results.changepoints`): a change point is the first run of a new
level, tested level against level; it is marked with the commits before and after, the step and its 95% interval, and,
where both runs hold profile rows, the per-layer diff that explains it. ``--fail-on-change PCT`` exits 4 when a
throughput slowdown or a memory increase beyond PCT starts within the latest ``--change-window`` runs of its series.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench.core.env import machine_of
from bench.core.helpfmt import RawWrappedFormatter
from bench.report.common import (
    ROOT,
    Section,
    _plt,
    _save,
    compare_rows,
    distinct_twins,
    impl_colour,
    impl_gid,
    impl_label,
    load_run,
)
from bench.results.changepoints import METHOD as CP_METHOD
from bench.results.changepoints import change_points
from bench.results.stats import FASTER, METHOD, MIN_EFFECT, SLOWER

EXIT_CHANGE = 4  # --fail-on-change PCT: a change point beyond PCT in the latest runs (as bench.report's exit 4)
CHANGE_WINDOW = 3
MEMORY_FIGURES = ("peak_alloc_mib", "saved_activations_mib")
MEMORY_JOB = ["model", "impl", "measurement", "precision", "batch_size"]
ACCURACY_JOB = ["model", "impl", "recipe", "precision", "batch_size"]
WORDS = {"step time": ("slower", "faster"), "final test accuracy": ("higher", "lower")}

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


def gather(dirs: list[Path], extra: dict | None = None,
           skipped: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs: one row per run; throughput rows of every run; memory rows of every run), each row with its
    run_id, started time and machine. ``extra``, when given, receives ``epochs`` (ok epoch rows of every run, keyed
    alike) and ``runs`` ({run_id: the loaded run}: profile rows and folder, for the profile diff). A run that cannot
    be read is skipped with a note, and its sentence added to ``skipped``."""
    from bench.results.read import Unreadable, note
    runs, tp, mem, ep = [], [], [], []
    loaded = {}
    for d in find_runs(dirs):
        try:
            run = load_run(d)
        except Unreadable as e:  # one damaged run never hides the others: it is named and skipped
            note(f"skipped the run {d.name}: {e}")
            (skipped if skipped is not None else []).append(f"{d.name}: {e}")
            continue
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
        loaded[key["run_id"]] = run
        for df, out in ((t, tp), (run["memory"], mem), (run["epochs"], ep)):
            if df is not None and len(df):
                ok = distinct_twins(df[df.status == "ok"])  # two networks sharing a name: kept apart
                if len(ok):
                    ok["impl"] = impl_label(ok)
                    out.append(ok.assign(**key))
    cat = lambda parts: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()  # noqa: E731
    runs_df = pd.DataFrame(runs)
    if extra is not None:
        extra.update(epochs=cat(ep), runs=loaded)
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


def _series(df: pd.DataFrame, keys: list[str], value) -> list[tuple[str, tuple, str, dict]]:
    """(machine, job key, figure name, {run_id: values, oldest first}) per series; ``value``: (column, figure name)
    or a function of the rows giving one value per row."""
    out = []
    if not len(df):
        return out
    col, name = value
    if col not in df or not df[col].notna().any():
        return out
    for (machine, *job), g in df.groupby(["machine"] + [k for k in keys if k in df], sort=False, dropna=False):
        g = g[g[col].notna()]
        order = g.groupby("run_id").started.min().sort_values(kind="stable")
        out.append((machine, tuple(job), name, {r: g[g.run_id == r][col].astype(float).tolist() for r in order.index}))
    return out


def _step_ms(tp: pd.DataFrame) -> pd.DataFrame:
    """Throughput rows with their step time (the row's median step; from images/s where a row has none)."""
    if not len(tp):
        return tp
    ms = tp.step_ms_median if "step_ms_median" in tp else pd.Series(float("nan"), index=tp.index)
    return tp.assign(step_ms=ms.fillna(1e3 * tp.batch_size / tp.images_per_s))


def _final_accuracy(ep: pd.DataFrame) -> pd.DataFrame:
    if not len(ep) or "test_acc" not in ep:
        return pd.DataFrame()
    keys = ["run_id"] + ACCURACY_JOB + [k for k in ("seed",) if k in ep]
    return ep.sort_values("epoch").groupby(keys, dropna=False).tail(1)


def change_point_table(runs: pd.DataFrame, tp: pd.DataFrame, mem: pd.DataFrame, ep: pd.DataFrame,
                       min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """One row per change point of every series (throughput step time per job, memory figures, final test accuracy;
    per machine and implementation): the first run of the new level, the commits before and after, the step in
    percent (later level / earlier level - 1) with its 95% interval, p, the runs on each level."""
    commit = dict(zip(runs.run_id, runs.git_commit)) if len(runs) else {}
    series = [(s, JOB) for s in _series(_step_ms(tp), JOB, ("step_ms", "step time"))]
    mkeys = MEMORY_JOB + (["depth"] if "depth" in mem else [])  # the depth sweep's rows are series of their own
    series += [(s, mkeys) for f in MEMORY_FIGURES for s in _series(mem, mkeys, (f, f))]
    series += [(s, ACCURACY_JOB) for s in _series(_final_accuracy(ep), ACCURACY_JOB, ("test_acc", "final test accuracy"))]
    out = []
    for (machine, job, figure, per_run), keys in series:
        order = list(per_run)
        for cp in change_points(list(per_run.values()), min_effect):
            up, down = WORDS.get(figure, ("heavier", "lighter"))
            c = cp.cmp
            out.append({"machine": machine, "figure": figure, **dict(zip(keys, job)), "run": order[cp.index],
                        "run_before": order[cp.index - 1], "commit_before": commit.get(order[cp.index - 1], ""),
                        "commit_after": commit.get(order[cp.index], ""), "change": f"{cp.step:+.1f}%",
                        "95% interval": f"[{100 * (c.lo - 1):+.1f}%, {100 * (c.hi - 1):+.1f}%]", "p": f"{c.p:.2g}",
                        "direction": up if c.verdict == SLOWER else down,
                        "runs_before_after": f"{cp.n_before} / {cp.n_after}", "runs_in_series": len(order),
                        "position": cp.index, "_step": cp.step})
    return pd.DataFrame(out)


def gate_changes(cps: pd.DataFrame, pct: float, window: int = CHANGE_WINDOW) -> list[str]:
    """One sentence per change point that ``--fail-on-change PCT`` fails on: a throughput slowdown or a memory increase
    beyond ``pct`` percent whose first run is among the latest ``window`` runs of its series."""
    if not len(cps):
        return []
    hit = cps[(cps.direction.isin(["slower", "heavier"])) & (cps._step > pct)
              & (cps.position >= cps.runs_in_series - window)]
    return [f"{r.machine}: {r.impl} {r.model} {r.figure} {r.direction} by {r.change} {r['95% interval']} from run "
            f"{r.run} (commit {r.commit_before or '?'} -> {r.commit_after or '?'}; p {r.p}; {r.runs_before_after} runs)"
            for _, r in hit.iterrows()]


def _figure(g: pd.DataFrame, ch: pd.DataFrame, runs: list[str], title: str, out: Path, stem: str,
            cps: pd.DataFrame | None = None) -> str:
    """images/s (median, one point per run) per implementation x model; pairwise changes marked (triangles), change
    points marked (a dashed line at the first run of the new level, with the step)."""
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
        mine = cps[(cps.figure == "step time") & (cps.model == model) & (cps.impl == impl)] if cps is not None and len(cps) else ()
        for r in mine.itertuples() if len(mine) else ():
            if r.run in x and ((g.run_id == r.run) & (g.measurement == r.measurement)).any():
                ax.axvline(x[r.run] - 0.5, color="purple", ls="--", lw=1)
                ax.annotate(f"change point {r.change} ({impl})", (x[r.run] - 0.5, 0.97), xycoords=("data", "axes fraction"),
                            fontsize=7, color="purple", rotation=90, va="top", ha="right")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(runs, rotation=30, ha="right", fontsize=8)
    ax.set(title=title, ylabel="images/s (median step)")
    ax.legend(fontsize=7)
    return _save(fig, out, stem)


def history_sections(runs: pd.DataFrame, tp: pd.DataFrame, mem: pd.DataFrame, out: Path,
                     min_effect: float = MIN_EFFECT, extra: dict | None = None,
                     cps: pd.DataFrame | None = None) -> list[Section]:
    """The Runs section, then one section per machine. ``extra``: :func:`gather`'s (epochs, loaded runs); ``cps``:
    :func:`change_point_table` (computed here when not given)."""
    s = Section("Runs")
    if not len(runs):
        s.text.append("No runs found (a run is a folder with run_meta.json, written by python -m bench.run).")
        return [s]
    extra = extra or {}
    s.text.append(f"{len(runs)} run(s) on {runs.machine.nunique()} machine(s); runs of different machines are "
                  "never pooled: each machine has its own figures and changes.")
    s.tables.append(("every run, once (oldest first)", runs.drop(columns=["folder"])))
    sections = [s]
    ch = changes(tp, min_effect)
    if cps is None:
        cps = change_point_table(runs, tp, mem, extra.get("epochs", pd.DataFrame()), min_effect)
    for i, (machine, mruns) in enumerate(runs.groupby("machine", sort=False)):
        m = Section(f"Throughput over runs: {machine}")
        order = mruns.run_id.tolist()
        mtp = tp[tp.machine == machine] if len(tp) else tp
        mch = ch[ch.machine == machine] if len(ch) else ch
        mcp = cps[cps.machine == machine] if len(cps) else cps
        if not len(mtp):
            m.text.append("No throughput rows on this machine.")
        for j, (cfg, g) in enumerate(mtp.groupby(["measurement", "precision", "batch_size", "input"], sort=False)
                                     if len(mtp) else ()):
            title = f"{cfg[0]}, {cfg[1]}, batch {cfg[2]}, {cfg[3]}: images/s over runs"
            m.figures.append((_figure(g, mch, order, title, out, f"history_m{i}_{j}", mcp),
                              title + " (dashed line: a change point, the first run of a new level; triangles: a "
                                      "pairwise change, one pair of consecutive runs tested alone)"))
        _change_point_parts(m, mcp, extra.get("runs", {}), out)
        if len(mch):
            found = mch[mch.verdict.isin([FASTER, SLOWER])]
            m.text.append(f"Pairwise changes between consecutive runs ({METHOD}; minimum effect {min_effect:.0%}): "
                          f"{len(found)} of {len(mch)} pair(s) changed. Each pair is tested alone: over many runs, "
                          "pairwise tests alert on noise; the change points above are the levels the series holds.")
            m.tables.append(("pairwise: consecutive runs, per job: images/s later / earlier", mch.drop(columns=["machine"])))
        _memory_tables(m, mem, machine, order)
        sections.append(m)
    return sections


def _change_point_parts(m: Section, mcp: pd.DataFrame, loaded: dict, out: Path) -> None:
    """The change points of one machine's series: a sentence, their table, and for each throughput change point whose
    two sides hold profile rows of its implementation, the profile diff that explains it."""
    m.text.append(f"Change points ({CP_METHOD}): {len(mcp)} found in this machine's series (throughput step time per "
                  "job, memory figures, final test accuracy; per implementation).")
    if not len(mcp):
        return
    m.tables.append(("change points: the first run of each new level; change = later level / earlier level - 1 "
                     "(step time: > 0 slower)", mcp.drop(columns=["machine", "position", "_step"])))
    from bench.report.sections.profile_diff import profile_diff_parts
    tp_cps = mcp[mcp.figure == "step time"].drop_duplicates(["impl", "model", "run"])
    for r in tp_cps.itertuples():
        a, b = loaded.get(r.run), loaded.get(r.run_before)
        if a is None or b is None:
            continue

        def only(run, r=r):
            p = run.get("profile")
            if p is not None and len(p):
                p = p[(impl_label(p) == r.impl) & (p.model == r.model)]
            return {**run, "profile": p}
        texts, tables = profile_diff_parts(only(a), only(b), out, models=[r.model], first={(r.impl, r.model)},
                                           labels=(f"run {r.run}", f"run {r.run_before}"))
        m.text += [f"Change point of {r.impl} {r.model} at run {r.run} ({r.change}): " + texts[0]] + texts[1:]
        m.tables += tables


def _memory_tables(m: Section, mem: pd.DataFrame, machine: str, order: list[str]) -> None:
    if len(mem) and (mem.machine == machine).any():
        mm = mem[mem.machine == machine]
        fig_cols = [c for c in MEMORY_FIGURES if c in mm and mm[c].notna().any()]
        for c in fig_cols:
            piv = mm.pivot_table(index=["model", "impl", "measurement", "batch_size"], columns="run_id", values=c,
                                 aggfunc="median")
            piv = piv[[r for r in order if r in piv.columns]]
            piv.columns.name = None
            m.tables.append((f"{c} per run (MiB)", piv.round(2).reset_index()))


def render_history(dirs: list[Path], out_dir: Path, min_effect: float = MIN_EFFECT,
                   change_points_out: list | None = None) -> Path:
    """Render the history of the runs under ``dirs`` into ``out_dir``; returns index.html's path.
    ``change_points_out``, when given, receives the change point table (for ``--fail-on-change``)."""
    from bench.report.render import _html, _markdown
    from bench.results.writes import write_text_atomic
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    extra: dict = {}
    runs, tp, mem = gather(dirs, extra, skipped)
    cps = change_point_table(runs, tp, mem, extra["epochs"], min_effect) if len(runs) else pd.DataFrame()
    if change_points_out is not None:
        change_points_out.append(cps)
    sections = history_sections(runs, tp, mem, out_dir, min_effect, extra, cps)
    if skipped:
        sections.insert(1, Section("Runs skipped (cannot be read)", text=skipped))
    title = "TwinBench history"
    write_text_atomic(out_dir / "index.md", _markdown(title, sections))
    write_text_atomic(out_dir / "index.html", _html(title, sections, out_dir))
    return out_dir / "index.html"


HISTORY_EXIT_HELP = """exit status:
  0    the history was written (and, with --fail-on-change, no change point beyond PCT in the latest runs)
  2    bad input: no such folder
  3    the history could not be written (disk full, no permission)
  4    --fail-on-change PCT: a change point (a new level of a series, tested level against level, not one pair of
       runs) says a throughput job got slower or a memory figure heavier by more than PCT percent, starting within
       the latest --change-window runs of its series; each is printed in one sentence (the history is written all
       the same)"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.history",
                                 description="Every run under results/ (and the folders given) in one table, and a "
                                             "history report per machine: each figure over runs, change points and "
                                             "pairwise changes marked.",
                                 epilog=HISTORY_EXIT_HELP, formatter_class=RawWrappedFormatter)
    ap.add_argument("dirs", nargs="*", help="results folders (a run, or a folder of runs) besides results/")
    ap.add_argument("--results", default=str(ROOT / "results"), metavar="DIR",
                    help="results root (default: results/), as bench.run's --results")
    ap.add_argument("--reports", default=str(ROOT / "reports"), metavar="DIR",
                    help="reports root, as bench.run's --reports: the history goes to its history/ (default: reports/)")
    ap.add_argument("--out", default=None, metavar="DIR",
                    help="the history's own folder, instead of --reports' history/ (the older flag; in bench.run, "
                         "--out is the results root)")
    ap.add_argument("--min-effect", type=float, default=100 * MIN_EFFECT, metavar="PCT",
                    help="smallest change, in percent, called a change (default: %(default)g)")
    ap.add_argument("--fail-on-change", type=float, metavar="PCT",
                    help="exit 4 when a change point in the latest runs says slower (or heavier) by more than PCT percent")
    ap.add_argument("--change-window", type=int, default=CHANGE_WINDOW, metavar="N",
                    help="--fail-on-change looks at change points starting within the latest N runs of each series "
                         "(default: %(default)s; a new level needs 2 runs, so a change is seen from the run after it)")
    args = ap.parse_args(argv)
    args.out = args.out or str(Path(args.reports) / "history")
    dirs = [Path(args.results), *map(Path, args.dirs)]
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.change_window < 1:
        print(f"error: --change-window must be 1 or more runs, got {args.change_window}", file=sys.stderr)
        return 2
    if args.fail_on_change is not None and not args.fail_on_change > 0:
        print(f"error: --fail-on-change must be a positive percentage, got {args.fail_on_change:g}", file=sys.stderr)
        return 2
    cps: list = []
    try:
        path = render_history(dirs, Path(args.out), args.min_effect / 100, cps)
    except OSError as e:
        print(f"error: could not write the history report into {args.out} ({e.strerror or e})", file=sys.stderr)
        return 3
    print(path)
    if args.fail_on_change is None:
        return 0
    found = gate_changes(cps[0] if cps else pd.DataFrame(), args.fail_on_change, args.change_window)
    for line in found:
        print(line, file=sys.stderr)
    print(f"{len(found) or 'no'} change point(s) beyond {args.fail_on_change:g}% in the latest {args.change_window} runs",
          file=sys.stderr)
    return EXIT_CHANGE if found else 0
