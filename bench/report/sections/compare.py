"""The comparison section (--compare): this run against another, like with like (exec mode in the keys):
throughput with a 95% interval and a verdict, memory and final accuracy beside it; and the regressions
``--fail-on-regression`` gates on."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import (
    WITHIN_PROCESS_SENTENCE,
    Section,
    _plt,
    _save,
    compare_rows,
    distinct_twins,
    impl_label,
    impl_palette,
    ratio_text,
)
from bench.report.fdr import Q_COLUMN, apply_fdr, fdr_sentence
from bench.report.sections.profile_diff import profile_diff_parts
from bench.results.stats import FASTER, METHOD, MIN_EFFECT, SLOWER, empirical_scale, with_floor

THROUGHPUT_KEYS = ["model", "framework", "backend", "exec_mode", "measurement", "precision", "batch_size", "input"]
MEMORY_KEYS = ["model", "framework", "backend", "exec_mode", "measurement", "precision", "batch_size", "depth"]
MEMORY_FIGURES = ("peak_alloc_mib", "saved_activations_mib", "state_plus_activations_mib")
ACCURACY_KEYS = ["model", "framework", "backend", "exec_mode", "recipe", "precision", "batch_size", "seed"]


def _ok(df: pd.DataFrame | None, keys: list[str]) -> pd.DataFrame | None:
    """Rows with status ok, each key present (older runs without exec_mode / depth: empty)."""
    if df is None or not len(df):
        return None
    df = distinct_twins(df[df.status == "ok"])  # a user twin's rows: its name and its file's hash
    for k in keys:
        df[k] = df[k].fillna("").astype(str) if k in df else ""
    return df


def throughput_table(run: dict, other: dict, min_effect: float) -> pd.DataFrame:
    """One row per throughput job both runs hold: images/s this / other, interval, p, verdict (this run's)."""
    a, b = _ok(run["throughput"], THROUGHPUT_KEYS), _ok(other["throughput"], THROUGHPUT_KEYS)
    if a is None or b is None:
        return pd.DataFrame()
    out = []
    other_groups = dict(iter(b.groupby(THROUGHPUT_KEYS, sort=False)))
    for k, ga in a.groupby(THROUGHPUT_KEYS, sort=False):
        gb = other_groups.get(k)
        if gb is None:
            continue
        c = compare_rows(ga, gb, min_effect)
        cmp = c.pop("_cmp")
        out.append({**dict(zip(THROUGHPUT_KEYS, k)), "implementation": impl_label(ga.iloc[:1]).iloc[0],
                    "images_per_s": round(float(ga.images_per_s.median()), 1),
                    "images_per_s_other": round(float(gb.images_per_s.median()), 1), **c,
                    "_time_ratio": cmp.time_ratio, "_cmp": cmp})
    return _across_jobs(pd.DataFrame(out), min_effect)


def _across_jobs(t: pd.DataFrame, min_effect: float) -> pd.DataFrame:
    """Pairs judged on one process a side see only the noise inside each process; a fresh process of the same job
    lands further away (docs/trust.md, the A/A checks). With enough such pairs, each is judged again against the spread of
    all their log ratios (:func:`bench.results.stats.empirical_scale`) where that is the larger: the noise column
    says so."""
    if not len(t):
        return t
    t = _with_floors(t, min_effect)
    return apply_fdr(t, min_effect).drop(columns=["_cmp"])  # the verdicts judged together (BH): the gate's too


def _with_floors(t: pd.DataFrame, min_effect: float) -> pd.DataFrame:
    within = t.noise.str.startswith("within")
    single = within & ~t.verdict.str.startswith("excluded")
    scale = empirical_scale(t.loc[within, "_time_ratio"])  # flagged pairs too: they can only widen the spread
    if scale == scale:
        for i in t.index[single]:
            c = with_floor(t.at[i, "_cmp"], scale, min_effect)
            t.loc[i, ["ratio", "95% interval", "p", "verdict", "noise"]] = [
                round(c.speed_ratio, 3), c.interval_text(), "" if c.p != c.p else f"{c.p:.2g}", c.verdict,
                t.at[i, "noise"] + f"; spread across {int(within.sum())} jobs' ratios {scale:.1%} (empirical null)"]
            t.at[i, "_cmp"] = c
    return t


def memory_table(run: dict, other: dict) -> pd.DataFrame:
    """Memory figures both runs measured for the same job: this / other (counts are exact: no test)."""
    a, b = _ok(run["memory"], MEMORY_KEYS), _ok(other["memory"], MEMORY_KEYS)
    if a is None or b is None:
        return pd.DataFrame()
    m = a.merge(b, on=MEMORY_KEYS, suffixes=("", "_other"))
    out = []
    for r in m.itertuples(index=False):
        for fig in MEMORY_FIGURES:
            x, y = getattr(r, fig, None), getattr(r, f"{fig}_other", None)
            if pd.notna(x) and pd.notna(y) and y:
                out.append({**{k: getattr(r, k) for k in MEMORY_KEYS}, "figure": fig, "this": round(float(x), 2),
                            "other": round(float(y), 2), "ratio": round(float(x) / float(y), 3)})
    return pd.DataFrame(out)


def accuracy_table(run: dict, other: dict) -> pd.DataFrame:
    """Final test accuracy (last epoch of each training) of both runs, and the difference in points."""
    a, b = _ok(run["epochs"], ACCURACY_KEYS), _ok(other["epochs"], ACCURACY_KEYS)
    if a is None or b is None:
        return pd.DataFrame()
    last = lambda d: d.sort_values("epoch").groupby(ACCURACY_KEYS + ["epochs_total"]).tail(1)  # noqa: E731
    m = last(a).merge(last(b), on=ACCURACY_KEYS + ["epochs_total"], suffixes=("", "_other"))
    if not len(m):
        return pd.DataFrame()
    t = m[ACCURACY_KEYS + ["epoch", "test_acc", "test_acc_other"]].copy()
    t["difference_points"] = ((t.test_acc - t.test_acc_other) * 100).round(2)
    return t


def one_way(verdicts) -> str | None:
    """A sentence when the significant verdicts nearly all point one way (at least 4, 90% or more the same, in two or
    more implementations): every implementation moving together is what a machine-wide change looks like (the host's
    load, clocks, another tenant of a shared VM: an idle-machine A/A on a 2-core VM saw 10 of 10 the same way), or a
    change shared by every stack; None otherwise."""
    sig = [(impl, v) for impl, v in verdicts if v in (SLOWER, FASTER)]
    if len(sig) < 4 or len({impl for impl, _ in sig}) < 2:
        return None
    way = max((SLOWER, FASTER), key=lambda w: sum(v == w for _, v in sig))
    same = sum(v == way for _, v in sig)
    if same < 0.9 * len(sig):
        return None
    return (f"{same} of {len(sig)} significant differences say this run is {way}, across "
            f"{len({impl for impl, v in sig if v == way})} implementations: a shift of the whole machine between the "
            "runs (host load, clocks, a shared VM) moves every job the same way, as would a change every stack shares. "
            "Before reading them as the code's, rerun both in one session (--repeats interleaves rounds) or check the "
            "machine")


def regressions(run: dict, other: dict, pct: float, min_effect: float = MIN_EFFECT) -> tuple[list[str], str | None]:
    """(one sentence per implementation slower (a significant test, beyond ``pct`` percent) or heavier in
    memory (beyond ``pct`` percent) in ``run`` than in ``other``; :func:`one_way`'s note on the same verdicts)."""
    out = []
    t = throughput_table(run, other, min_effect)
    shift = one_way(zip(t.implementation, t.verdict)) if len(t) else None
    for r in t.to_dict("records") if len(t) else ():
        if r["verdict"] == SLOWER and r["_time_ratio"] > 1 + pct / 100:
            out.append(f"{r['implementation']} {r['model']} {r['measurement']} {r['precision']} batch {r['batch_size']} "
                       f"({r['input']}): step {100 * (r['_time_ratio'] - 1):.1f}% slower ({r['images_per_s']} vs "
                       f"{r['images_per_s_other']} images/s, ratio {r['ratio']} {r['95% interval']}, p {r['p']}, "
                       f"q {r.get(Q_COLUMN) or 'n/a'} (BH))")
    m = memory_table(run, other)
    for r in m.itertuples(index=False) if len(m) else ():
        if r.ratio > 1 + pct / 100:
            out.append(f"{r.framework}/{r.backend} {r.exec_mode} {r.model} {r.measurement} batch {r.batch_size}: "
                       f"{r.figure} {100 * (r.ratio - 1):.1f}% heavier ({r.this} vs {r.other} MiB)")
    return out, shift


def section_compare(run: dict, other: dict, out: Path) -> Section:
    s = Section(f"Compared with {other['meta'].get('run_id', other['dir'].name)}")
    min_effect = run.get("min_effect", MIN_EFFECT)
    t = throughput_table(run, other, min_effect)
    if not len(t):
        s.text.append("No throughput job in common (same model, stack, exec mode, measurement, precision, batch, input).")
    else:
        counts = t.verdict.str.replace(r" \(.*", " (flagged rows)", regex=True).value_counts()  # reasons: in the table
        s.text.append("Throughput, this run against the other, job by job (exec mode included): "
                      + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".")
        s.notes.append(f"Minimum effect {min_effect:.0%}; {METHOD}."
                       + (f" {WITHIN_PROCESS_SENTENCE}" if t.noise.str.startswith("within").any() else ""))
        if t.noise.str.contains("empirical null").any():
            s.notes.append("Pairs of one process a side are judged against the larger of their own spread and the spread "
                          "of all such pairs' log ratios (1.4826 x their median absolute deviation: Efron's empirical "
                          "null), which carries the noise between processes that one process cannot show.")
        s.text += [x for x in [fdr_sentence(t)] if x]
        shift = one_way(zip(t.implementation, t.verdict))
        if shift:
            s.text.append(shift + ".")
        s.tables.append(("images/s, this run / the other (1.0 = same; > 1 = this run faster), 95% interval, verdict",
                         t.drop(columns=["_time_ratio"]).assign(ratio=t.ratio.map(ratio_text))))
        plt, sns = _plt()
        t["job"] = t.implementation + " " + t.model + " " + t.measurement + " b" + t.batch_size.astype(str)
        fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(t))))
        sns.barplot(data=t, y="job", x="ratio", ax=ax, hue="implementation", palette=impl_palette(t.implementation),
                    dodge=False, legend=False)
        ax.axvline(1.0, color="black", lw=1)
        ax.set(title="Throughput ratio to the compared run", xlabel="this / other")
        s.figures.append((_save(fig, out, "compare_throughput"), "throughput ratio to the compared run"))
    changed = t[t.verdict.isin([FASTER, SLOWER])] if len(t) else t
    texts, tables = profile_diff_parts(run, other, out, models=set(t.model) if len(t) else (),
                                       first=set(zip(changed.implementation, changed.model)) if len(t) else ())
    s.text += texts
    s.tables += tables
    m = memory_table(run, other)
    if len(m):
        s.tables.append(("memory, this run / the other (MiB; > 1 = heavier; exact counts, no test)",
                         m.assign(ratio=m.ratio.map(ratio_text))))
    acc = accuracy_table(run, other)
    if len(acc):
        s.tables.append(("final test accuracy, this run and the other (one training each: no test)", acc))
    return s
