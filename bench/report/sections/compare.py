"""The comparison section (--compare): throughput of this run over another's."""
from __future__ import annotations

from pathlib import Path

from bench.report.common import Section, _plt, _save


def section_compare(run: dict, other: dict, out: Path) -> Section:
    s = Section(f"Compared with {other['meta'].get('run_id', other['dir'].name)}")
    keys = ["model", "framework", "backend", "measurement", "precision", "batch_size", "input"]
    a, b = run["throughput"], other["throughput"]
    if a is None or b is None:
        s.text.append("One of the runs has no throughput data.")
        return s
    a, b = a[a.status == "ok"], b[b.status == "ok"]
    m = a.merge(b, on=keys, suffixes=("", "_other"))[keys + ["images_per_s", "images_per_s_other"]]
    if not len(m):
        s.text.append("No throughput job in common.")
        return s
    m["ratio"] = m.images_per_s / m.images_per_s_other
    s.tables.append(("images/s, this run / the other (1.0 = same)", m.round(3)))
    plt, sns = _plt()
    m["job"] = m.model + " " + m.framework + " " + m.measurement + " b" + m.batch_size.astype(str)
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(m))))
    sns.barplot(data=m, y="job", x="ratio", ax=ax, color="steelblue")
    ax.axvline(1.0, color="black", lw=1)
    ax.set(title="Throughput ratio to the compared run", xlabel="this / other")
    s.figures.append((_save(fig, out, "compare_throughput"), "throughput ratio to the compared run"))
    return s
