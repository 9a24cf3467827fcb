"""Many verdicts, one error rate: the report's ratio table and a compare's verdicts judged together (Benjamini-Hochberg,
bench.report.fdr), said in one line with the number of tests; the gate reads the corrected verdicts."""
import pandas as pd

from bench.report.fdr import Q_COLUMN, apply_fdr, fdr_sentence
from bench.results.stats import SAME, SLOWER, Comparison, verdict_of


def _row(p, ratio=1.1, verdict=None):
    lo, hi = ratio * 0.97, ratio * 1.03
    c = Comparison(ratio, lo, hi, p, verdict or verdict_of(ratio, lo, hi, p), 3, 3)
    return {"job": "x", "p": f"{p:.2g}", "verdict": c.verdict, "_cmp": c}


def test_a_lone_p_below_alpha_is_no_longer_a_verdict_among_many_nulls():
    alone = apply_fdr(pd.DataFrame([_row(0.004)]), 0.02)
    assert alone.verdict.tolist() == [SLOWER] and alone[Q_COLUMN].tolist() == ["0.004"]
    many = apply_fdr(pd.DataFrame([_row(0.004)] + [_row(0.5, 1.0) for _ in range(9)]), 0.02)
    assert many.verdict.iloc[0] == SAME and many[Q_COLUMN].iloc[0] == "0.04"  # 0.004 x 10 / 1
    assert list(many.columns).index(Q_COLUMN) == list(many.columns).index("p") + 1
    strong = apply_fdr(pd.DataFrame([_row(1e-5)] + [_row(0.5, 1.0) for _ in range(9)]), 0.02)
    assert strong.verdict.iloc[0] == SLOWER
    flagged = apply_fdr(pd.DataFrame([_row(0.004), {**_row(0.001), "verdict": "excluded (contended)"}]), 0.02)
    assert flagged.verdict.tolist() == [SLOWER, "excluded (contended)"] and flagged[Q_COLUMN].tolist() == ["0.004", ""]
    assert "over the 1 test(s)" in fdr_sentence(flagged) and "Benjamini-Hochberg at 0.01" in fdr_sentence(flagged)
    assert fdr_sentence(pd.DataFrame({"p": []})) is None


def test_the_compare_section_says_so_and_the_gate_reads_the_corrected_verdicts(tmp_path, capsys):
    from test_changepoints import _make_run

    from bench.report import main
    root = tmp_path / "results"
    a, b = _make_run(root, 4, profile=True), _make_run(root, 5, factor=1.5, profile=True)
    rc = main([b.name, "--compare", a.name, "--results", str(root), "--out", str(tmp_path / "reports"),
               "--fail-on-regression", "10"])
    md = (tmp_path / "reports" / b.name / "index.md").read_text()
    assert "False discovery rate controlled over the 2 test(s) of this table: Benjamini-Hochberg at 0.01" in md
    assert f"| {Q_COLUMN} |" in md
    assert "False discovery rate controlled over the 1 test(s)" in md  # the Throughput section's ratio table
    err = capsys.readouterr().err
    assert rc == 4 and "torch eager resnet20_v1" in err and ", q " in err  # the corrected q the verdict rests on
    assert "torch eager resnet20_v1 fp32 batch 32: profiled step" in md and "conv changed most" in md
