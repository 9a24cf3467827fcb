"""The Scoreboard: the report's answers first, one row per model -- which implementation is fastest (with its margin
over the runner-up, 95% interval and verdict), which is leanest (like with like only), why (the largest attributed
difference in the profile rows, :func:`bench.report.sections.profile.gap_why`) and whether the twins reach the same accuracy -- each
cell linking to the section, figure or trace it comes from; a run-health line; with ``--compare``, the regressions
and improvements first. It computes nothing of its own: the verdicts are the Throughput section's
(``compare_rows``, ``bench.results.stats``), the memory figures the Memory section's."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Cell, Link, Section, _flagged, anchor, compare_rows, impl_label, no_difference_why, ratio_text
from bench.results.stats import FASTER, FEW, MIN_EFFECT, SAME, SLOWER

TITLE = "Scoreboard"


def _fig(stem: str, figures: list[str], fallback: str) -> str:
    return f"#fig-{anchor(stem)}" if stem in figures else f"#{anchor(fallback)}"


def fastest_cells(run: dict, figures: list[str]) -> dict:
    """{(model, precision, batch, measurement): Cell}: the fastest implementation on synthetic input, its images/s,
    and its margin over the runner-up (images/s ratio, 95% interval, verdict) from the rows."""
    df = run.get("throughput")
    if df is None or not len(df) or not (df.status == "ok").any():
        return {}
    ok = df[(df.status == "ok") & (df.input == "synthetic")].copy()
    ok["impl"] = impl_label(ok)
    min_effect = run.get("min_effect", MIN_EFFECT)
    out = {}
    for (m, p, b, meas), g in ok.groupby(["model", "precision", "batch_size", "measurement"], sort=False):
        med = g.groupby("impl").images_per_s.median().sort_values(ascending=False)
        href = _fig(f"throughput_{meas}_{p}_b{b}", figures, "Throughput")
        best = med.index[0]
        head = Link(f"{best} {med.iloc[0]:,.0f} images/s", href)
        if len(med) == 1:
            out[(m, p, b, meas)] = Cell((head, "; the only implementation measured"))
            continue
        second = med.index[1]
        c = compare_rows(g[g.impl == best], g[g.impl == second], min_effect)
        verdict = c["verdict"]
        if verdict.startswith("excluded"):
            why = [w for w in ("contended", "unstable") if w in verdict]
            verdict = f"no verdict (flagged: {', '.join(why) or verdict[len('excluded '):].strip('()')})"
        elif verdict == FEW:
            verdict = "no verdict: too few samples"
        elif verdict == SAME:  # say which condition it missed: the interval alone may exclude 1
            why = no_difference_why(c["_cmp"], min_effect)
            verdict += f" ({why})" if why else ""
        out[(m, p, b, meas)] = Cell((head, f"; {ratio_text(c['ratio'])}x {c['95% interval']} over {second} "
                                           f"({med.iloc[1]:,.0f}): {verdict}"))
    return out


def leanest_cells(run: dict, figures: list[str]) -> dict:
    """{model: Cell}: the leanest implementation by the allocator peak of a training step, the Memory section's
    decision (``leanest_by_model``: one place decides), with its ratio to the runner-up; "not comparable" only where a
    stack has no like measure on this device, naming it and why."""
    from bench.report.sections.memory import lean_figure, leanest_by_model, not_comparable_line
    href = _fig("alloc_peak_vs_batch", figures, "Memory")
    out = {}
    for m, d in leanest_by_model(run.get("memory")).items():
        if d.what is None:
            out[m] = Cell((Link("not comparable", href), f": {not_comparable_line(d)}"))
            continue
        (i, mib, kind) = d.ranked[0]
        head = Link(lean_figure(i, mib, kind), href)
        if len(d.ranked) == 1:
            out[m] = Cell((head, f" ({d.what}, batch {d.batch}); the only one measured"))
            continue
        j, other, okind = d.ranked[1]
        out[m] = Cell((head, f" ({d.what}, batch {d.batch}); {mib / other:.3f}x of {lean_figure(j, other, okind)}"
                             + (f"; {len(d.ranked) - 2} more" if len(d.ranked) > 2 else "")))
    return out


def _twins_flag(model: str) -> str:
    """`` --twins FILE`` for a user twin's command (its twins file), empty for a built-in model."""
    from bench.zoo import get_entry
    try:
        twin = get_entry(model).twin
    except KeyError:
        return ""
    return f" --twins {twin.source}" if twin is not None else ""


def why_cells(run: dict, figures: list[str], models) -> dict:
    """{model: Cell}: the Where-the-time-goes section's :func:`~bench.report.sections.profile.gap_why` (the largest
    attributed difference between the slowest and the fastest profiled implementation, and its share of their gap),
    linked to the slow one's trace; where the run has no profile of two implementations, what is missing and the
    command that fills it."""
    from bench.report.common import at_registry_depth
    from bench.report.sections.profile import _split, gap_why
    device = run.get("meta", {}).get("device") or "cpu"
    df = run.get("profile")
    steps, layers = (_split(df[df.status == "ok"]) if df is not None and len(df) else (pd.DataFrame(), pd.DataFrame()))
    if len(steps):
        steps, layers = steps[at_registry_depth(steps)], layers[at_registry_depth(layers)]
    out = {}
    for m in models:
        w = gap_why(steps, layers, m) if len(steps) else None
        if w is None:
            st = steps[steps.model == m].dropna(subset=["coverage"]) if len(steps) else steps
            have = ", ".join(sorted(set(st.impl))) if len(st) else ""
            out[m] = Cell(((f"only {have} profiled" if have else "not profiled" if len(steps) else "no profile in this run")
                           + f": `python -m bench.profile {m} --device {device}{_twins_flag(m)}` profiles both twins",))
            continue
        trace = w.slow.get("trace_path") if isinstance(w.slow.get("trace_path"), str) and w.slow.get("trace_path") else None
        if trace and run.get("dir") is not None and not (Path(run["dir"]) / trace).is_file():
            trace = None  # gone since the run: link the figure instead of a dead file
        href = trace or _fig("profile_split", figures, "Where the time goes")
        if w.gap_ms <= 0 or w.top is None:
            out[m] = Cell((Link(f"{w.slow.impl} and {w.fast.impl}", href), " profile at the same step time"))
            continue
        tail = w.unattributed_phrase()
        top, _, rest = w.phrase().partition(": ")
        cell = (Link(top, href), f": {rest}, {w.slow.impl} {w.slow.profiled_step_ms:.1f} vs {w.fast.impl} "
                f"{w.fast.profiled_step_ms:.1f} ms per profiled step" + (f"; {tail}" if tail else ""))
        st = steps[(steps.model == m) & (steps.batch_size == w.batch_size)].dropna(subset=["coverage"])
        out[m] = Cell(cell + _headroom(run, st, m, w.fast.impl, w.batch_size, figures))  # the roofline's half
    return out


def _headroom(run: dict, steps: pd.DataFrame, model: str, impl: str, batch, figures: list[str]) -> tuple:
    """The why's second half: the fastest implementation's fraction of its compute roof and its step time with every
    layer kind at its roof (``bench.report.sections.roofline``), linked to the model's roofline; () without roofs."""
    from bench.report.sections.roofline import headroom_text, roofline_rows
    text = headroom_text(roofline_rows(run), steps, model, impl, batch)
    if not text:
        return ()
    return ("; ", Link("roofline", _fig(f"roofline_{model}", figures, "Where the time goes")), ": " + text)


def accuracy_cells(run: dict, figures: list[str]) -> dict:
    """{model: Cell}: the twins' final test accuracy gap against the spread between seeds (the Fidelity table), or
    "one seed: no spread" with the gap alone."""
    from bench.report.sections.fidelity import fidelity_table
    df = run.get("epochs")
    if df is None or not len(df) or not (df.status == "ok").any():
        return {}
    ok = df[df.status == "ok"].copy()
    ok["impl"] = impl_label(ok)
    ok["seed"] = ok.seed.fillna(0) if "seed" in ok else 0
    plan = [c for c in ("recipe", "precision", "train_examples") if c in ok]
    for c in plan:
        ok[c] = ok[c].fillna(-1) if pd.api.types.is_numeric_dtype(ok[c]) else ok[c].fillna("")
    href = _fig("accuracy_per_epoch", figures, "Accuracy")
    fid = fidelity_table(ok.assign(train_examples=ok.train_examples.where(ok.train_examples != -1))) \
        if "train_examples" in ok else pd.DataFrame()
    out = {}
    for m, g in ok.groupby("model"):
        if plan:  # one plan (recipe, precision, subset) per cell: the one most implementations trained
            n = g.groupby(plan).impl.nunique()
            g = g[(g[plan] == pd.Series(n.idxmax() if len(plan) > 1 else (n.idxmax(),), index=plan)).all(axis=1)]
        last = g.sort_values("epoch").groupby(["impl", "seed"]).tail(1)
        acc = last.groupby("impl").test_acc.mean().sort_values(ascending=False)
        if len(acc) < 2:
            out[m] = Cell((Link(f"{acc.index[0]} {acc.iloc[0]:.1%}", href), "; one implementation trained"))
            continue
        gap = 100 * (acc.iloc[0] - acc.iloc[-1])
        accs = ", ".join(f"{i} {a:.1%}" for i, a in acc.items())
        f = fid[fid.model == m] if len(fid) else fid
        if len(f) and f["largest seed spread"].notna().any():
            r = f.sort_values("epoch").iloc[-1]
            spread = 100 * r["largest seed spread"]
            word = "within" if gap <= spread else "beyond"
            out[m] = Cell((Link(f"gap {gap:.1f} pt {word} the seed spread {spread:.1f} pt", "#fidelity"), f" ({accs})"))
        else:
            out[m] = Cell((Link(f"gap {gap:.1f} pt", href), f"; one seed: no spread ({accs})"))
    return out


# what fills a cell the run cannot answer: (the words, the suite whose run answers it)
UNANSWERED = {"train": ("not timed in {suite}", "throughput"), "infer": ("not timed in {suite}", "throughput"),
              "leanest": ("not measured in {suite}", "memory"), "accuracy": ("not trained in {suite}{why}", "train")}
# ... where {suite} reads "the smoke suite" (the run's suite) or "this run"


def unanswered_cell(what: str, model: str, run: dict) -> Cell:
    """A cell this run cannot answer: in a few words why, and the command whose run answers it."""
    meta = run.get("meta", {})
    suite, device = meta.get("suite"), meta.get("device") or "cpu"
    words, fills = UNANSWERED[what]
    why = " (minutes on a CPU)" if what == "accuracy" and device == "cpu" else ""
    return Cell((words.format(suite=f"the {suite} suite" if suite else "this run", why=why)
                 + f": `python -m bench.run --suite {fills} --models {model} --device {device}`",))


def health_line(run: dict) -> str:
    """Jobs ok, flagged and failed over every CSV of the run, and what the verdicts left out."""
    status: dict[str, str] = {}
    for kind in ("throughput", "memory", "epochs", "profile", "scaling"):
        df = run.get(kind)
        if df is None or not len(df):
            continue
        for job, st in df.groupby("job_id", sort=False).status:
            status[job] = str(st.iloc[-1])  # rows in the order written: a job's last attempt wins
    if not status:
        return "Run health: no job rows in this run."
    tp = run.get("throughput")
    flagged = []
    if tp is not None and len(tp) and (tp.status == "ok").any():
        ok = tp[tp.status == "ok"]
        flagged = sorted(set(ok[_flagged(ok)].job_id))
    results = {"oom": "out of memory (a memory sweep's result)", "skipped": "skipped after an out of memory"}
    failed = {j: s for j, s in status.items() if s not in ("ok", *results)}
    n_ok = sum(s == "ok" for s in status.values())
    kinds = pd.Series(list(failed.values())).value_counts() if failed else pd.Series(dtype=int)
    more = "".join(f", {n} {what}" for k, what in results.items() if (n := sum(s == k for s in status.values())))
    text = (f"Run health: {len(status)} jobs, {n_ok} ok ({len(flagged)} flagged contended or unstable){more}, "
            f"{len(failed)} not ok" + (f" ({', '.join(f'{n} {k}' for k, n in kinds.items())})" if failed else "") + ".")
    short = [" ".join(p for i, p in enumerate(j.split("/")) if i in (1, 2, 5) or (i == 7 and p != "synthetic"))
             for j in flagged]  # model, stack, measurement (and a real-data input)
    more = f" and {len(short) - 3} more" if len(short) > 3 else ""
    text += (f" Left out of the verdicts: {len(short)} flagged throughput job(s), {', '.join(short[:3])}{more} "
             "(each named under Throughput, How to read this section)." if flagged else " Nothing left out of the verdicts.")
    return text


def changes_table(run: dict, other: dict) -> tuple[list[str], pd.DataFrame]:
    """A --compare report's opening: the throughput jobs slower and faster than in the other run (the Compare
    section's test), regressions first."""
    from bench.report.sections.compare import throughput_table
    t = throughput_table(run, other, run.get("min_effect", MIN_EFFECT))
    name = other["meta"].get("run_id", Path(other["dir"]).name)
    if not len(t):
        return [f"Against {name}: no throughput job in common."], pd.DataFrame()
    sig = t[t.verdict.isin([SLOWER, FASTER])].copy()
    n_slow, n_fast = int((sig.verdict == SLOWER).sum()), int((sig.verdict == FASTER).sum())
    text = [f"Against {name}: {n_slow} regression(s) and {n_fast} improvement(s) in {len(t)} throughput job(s) in "
            "common; the rest show no measurable difference or were left out (flagged)."]
    if not len(sig):
        return text, pd.DataFrame()
    sig["order"] = (sig.verdict != SLOWER).astype(int)
    sig = sig.sort_values(["order", "_time_ratio"], ascending=[True, False])
    href = f"#{anchor('Compared with ' + name)}"
    rows = [{"change": Link(r.verdict, href), "implementation": r.implementation, "model": r.model,
             "measurement": r.measurement, "batch": r.batch_size,
             "images/s (this / other)": f"{r.images_per_s:,.1f} / {r.images_per_s_other:,.1f}",
             "ratio [95% interval]": f"{r.ratio:.3f} {r.interval}"}
            for r in sig.rename(columns={"95% interval": "interval"}).itertuples()]
    return text, pd.DataFrame(rows)


def section_scoreboard(run: dict, out: Path, other: dict | None = None, figures: list[str] | None = None) -> Section:
    """One row per model (and precision / batch where the run holds several): fastest train and inference step,
    leanest, why, same accuracy; the run-health line above it; with ``other``, the changes against it first."""
    figures = figures or []
    s = Section(TITLE)
    s.text.append(health_line(run))
    if other is not None:
        text, changes = changes_table(run, other)
        s.text += text
        if len(changes):
            s.tables.append(("regressions, then improvements, against the compared run", changes))
    fast = fastest_cells(run, figures)
    lean, acc = leanest_cells(run, figures), accuracy_cells(run, figures)
    keys = sorted({(m, p, b) for m, p, b, _ in fast})
    prof = run.get("profile")
    profiled = set(prof[prof.status == "ok"].model) if prof is not None and len(prof) else set()
    models = list(dict.fromkeys([k[0] for k in keys] + sorted(set(lean) | set(acc) | profiled)))
    why = why_cells(run, figures, models)
    several = len({(p, b) for _, p, b in keys}) > 1
    rows = []
    for m in models:
        mine = [k for k in keys if k[0] == m] or [(m, None, None)]
        for _, p, b in mine:
            rows.append({"model": m + (f" ({p}, batch {b})" if several and p is not None else ""),
                         "fastest train step": fast.get((m, p, b, "train")) or unanswered_cell("train", m, run),
                         "fastest inference": fast.get((m, p, b, "infer")) or unanswered_cell("infer", m, run),
                         "leanest (training step)": lean.get(m) or unanswered_cell("leanest", m, run),
                         "why (largest twin time difference)": why[m],
                         "same accuracy?": acc.get(m) or unanswered_cell("accuracy", m, run)})
    from bench.report.sections.scaling import scaling_answers
    scaling = scaling_answers(run.get("scaling"))
    s.text += [f"{line} ([Scaling](#{anchor('Scaling')}))" for line in scaling]
    if rows:
        s.tables.insert(0 if other is None else len(s.tables),
                        ("one row per model: each answer links to its evidence", pd.DataFrame(rows)))
    elif not scaling:
        s.text.append("No model was measured in this run: `python -m bench.run --suite smoke` fills this board.")
    s.notes.append("fastest: the highest median images/s on synthetic input, against the runner-up: images/s ratio, its "
                   "95% interval and the verdict of the Throughput section's test (a flagged row gets no verdict). "
                   "leanest: the lowest allocator peak of a training step (the most bytes the framework's allocator held "
                   "during the step above what it held before it: alloc_peak_mib, the same quantity in every stack on "
                   "any device; compile-time where the stack states it from the compiled step), the Memory section's "
                   "decision; 'not comparable' only where a stack has none, with why. why: the largest attributed "
                   "difference (a layer kind and phase) between the slowest and the fastest profiled implementation, with "
                   "its share of their gap: the figure Where the time goes gives; then, where the run recorded roofs "
                   "(python -m bench.peaks), the fastest implementation's model FLOPs per unprofiled step against its "
                   "library's GEMM roof, and its profiled step with every layer kind at its roof (the rest as measured). "
                   "A 'no measurable difference' says which condition of the verdict it missed (the test's p or q, the "
                   "minimum effect or the interval). same accuracy: the gap in final test accuracy against the spread "
                   "between seeds of one implementation (the Fidelity section), where there is one.")
    return s
