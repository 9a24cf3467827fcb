"""bench.measures.roofline: the join of a step profile's layer kinds with this machine's roofs (a real, tiny profile
against roofs measured here), the bound rule, and a throughput row's achieved GFLOP/s and fraction of the roof."""
import csv
import json

import pytest

from bench.measures import roofline


@pytest.fixture(scope="module")
def roofs():
    """This machine's roofs through torch's kernels (quick sizes), as a run records them in run_meta.json; with the
    load other processes put on the machine meanwhile (``contended``, in cores)."""
    from bench.core.hygiene import CpuWindow
    from bench.core.roofs import measure_roofs
    from bench.stacks.common.torch_peaks import TorchRoofKernels
    with CpuWindow() as w:
        r = measure_roofs(TorchRoofKernels("cpu"), "cpu", ("fp32",), quick=True, sweep=True, min_s=1.0)
    return {"libraries": {"torch": r}, "bandwidth_gbs": r["triad_gbs"], "sweep": r["sweep"], "measured_at": "now",
            "method": "test", "contended": w.others_cores or 0.0}


def _run_dir(tmp_path, roofs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "run_meta.json").write_text(json.dumps({"run_id": "r", "roofs": roofs}))
    return tmp_path


def test_bound_rule():
    c = roofline.classify(10.0, 0.1, 20.0)  # t_min 10 ms at the compute roof, measured 20 ms
    assert c["limiting_roof"] == "compute" and c["bound"] == "compute" and c["efficiency"] == pytest.approx(0.5)
    m = roofline.classify(0.1, 10.0, 20.0)
    assert m["limiting_roof"] == "memory" and m["bound"] == "memory" and m["t_min_ms"] == pytest.approx(10.0)
    slow = roofline.classify(0.1, 10.0, 10.0 / (roofline.OVERHEAD_EFFICIENCY / 2))
    assert slow["limiting_roof"] == "memory" and slow["bound"] == "overhead"
    assert roofline.classify(0.0, 0.0, 1.0)["bound"] == "overhead"  # no compulsory work


def test_join_holds_each_layer_to_the_bandwidth_of_its_working_set():
    from bench.core.roofs import bandwidth_at
    roofs = {"libraries": {"torch": {}}, "bandwidth_gbs": 10.0,
             "sweep": [{"working_set_kib": 64, "gbs": 100.0}, {"working_set_kib": 1024, "gbs": 40.0},
                       {"working_set_kib": 4096, "gbs": 1.0}]}  # a noisy point: the envelope ignores it
    assert bandwidth_at(roofs, 32 * 2**10) == 100.0 and bandwidth_at(roofs, 512 * 2**10) == 40.0
    assert bandwidth_at(roofs, 2 * 2**20) == 10.0 and bandwidth_at(roofs, 2**30) == 10.0
    small, big = 32 * 2**10, 2 * 2**20
    (r,) = roofline.join({("relu", "forward"): 1.0, ("other", "other"): 1.0},
                         {("relu", "forward"): [(0.0, small), (0.0, big)]}, 100.0, roofs)
    t = small / 100e9 + big / 10e9
    assert r["t_min_ms"] == pytest.approx(t * 1e3) and r["memory_roof_gbs"] == pytest.approx((small + big) / t / 1e9)
    assert r["limiting_roof"] == "memory" and r["achieved_gbs"] == pytest.approx((small + big) / 1e9 / 1e-3)
    (bare,) = roofline.join({("relu", "forward"): 2.0}, {("relu", "forward"): [(1e6, 8e6)]}, None, None)
    assert bare["intensity_flop_per_byte"] == pytest.approx(0.125) and "no roofs" in bare["null_reason"]


def _profile(tmp_path, roofs, model, batch, depth=None):
    from bench.core.job import Job
    from bench.measures.profile import run_profile
    out = _run_dir(tmp_path, roofs)
    job = Job("profile", model, "torch", None, "fp32", batch, steps=2, device="cpu", depth=depth)
    run_profile(job, out, job.base_row("r"), None)
    return {(r["layer_kind"], r["phase"]): r for r in csv.DictReader(open(out / "roofline.csv"))}


def test_real_profile_every_kind_at_most_its_roof_and_elementwise_kinds_under_the_memory_roof(tmp_path, roofs):
    """Batch 16: the stage-1 feature maps (2 MB a BatchNorm) outgrow a core's L2, as the suites' batches do. Roofs
    and a profile taken while other processes load the machine are not comparable (a contended GEMM loses far more
    than a triad): the comparisons with the roofs are skipped then, as the report keeps contended rows out of its
    verdicts."""
    from bench.core.hygiene import CONTENDED_CORES, CpuWindow
    with CpuWindow() as w:
        rows = _profile(tmp_path / "resnet", roofs, "resnet20_v1", 16)
        rows.update({(k, p): r for (k, p), r in _profile(tmp_path / "densenet", roofs, "densenet_bc100_k12", 8,
                                                         depth=10).items() if k == "concat"})
    assert {k for k, _ in rows} >= {"conv", "batchnorm", "relu", "add", "concat", "pool", "linear"}
    for key, r in rows.items():
        assert r["efficiency"] and r["bound"] and r["compute_roof_gflops"] and r["memory_roof_gbs"], (key, r)
        assert r["roofs_measured"] == "now (test)"
    assert rows[("add", "backward")]["bound"] == "overhead"  # no compulsory work
    load = max(roofs["contended"], w.others_cores or 0.0)
    if load > CONTENDED_CORES:
        pytest.skip(f"contended: other processes used {load:.1f} cores while the roofs or the profile were measured")
    for key, r in rows.items():
        assert float(r["efficiency"]) <= 1.05, (key, r)
    for kind in ("relu", "add", "concat"):  # under 0.2 FLOP a byte: memory-limited below any CPU's ridge point
        r = rows[(kind, "forward")]
        assert r["limiting_roof"] == "memory" and r["bound"] in ("memory", "overhead"), r
    # BatchNorm does about 1 FLOP a byte: memory-limited wherever the ridge point (compute roof / bandwidth) is
    # above that. On this project's 2-core VM the ridge is about 2 FLOP/B and BN's side flipped between runs as
    # the quick GEMM roof moved, so the test holds BN's intensity, not its side, and its bound never to compute.
    bn = rows[("batchnorm", "forward")]
    assert float(bn["achieved_gflops"]) / float(bn["achieved_gbs"]) <= 1.5, bn
    assert bn["bound"] != "compute" or float(bn["compute_roof_gflops"]) / float(bn["memory_roof_gbs"]) < 1.5, bn
    assert rows[("conv", "forward")]["limiting_roof"] == "compute"


def test_throughput_row_has_achieved_gflops_and_roof_fraction(tmp_path, roofs, monkeypatch):
    from bench.core.job import Job
    from bench.measures import throughput
    monkeypatch.setattr(throughput, "MIN_TIMED_S", 0.1)
    out = _run_dir(tmp_path, roofs)
    job = Job("throughput", "resnet20_v1", "torch", None, "fp32", 64, "train", steps=2, max_warmup=10, device="cpu")
    throughput.run_throughput(job, out, job.base_row("r"), None)
    (row,) = list(csv.DictReader(open(out / "throughput.csv")))
    gflop = roofline.model_gflop("resnet20_v1", "train")
    assert 0.24 < gflop < 0.25  # ~244 MFLOP per image, forward and backward
    assert float(row["achieved_gflops"]) == pytest.approx(gflop * float(row["images_per_s"]), rel=1e-4)
    roof = roofs["libraries"]["torch"]["gemm_gflops"]["fp32"]
    assert float(row["roof_gflops"]) == pytest.approx(roof, rel=1e-4)
    assert float(row["roof_fraction"]) == pytest.approx(float(row["achieved_gflops"]) / roof, rel=1e-4)


def test_report_draws_the_roofline_names_memory_bound_kinds_and_the_why_gains_the_headroom(tmp_path):
    from bench.report import render
    from bench.results.schema import FILES, append_row
    from bench.zoo import get_spec
    run = tmp_path / "results" / "r1"
    run.mkdir(parents=True)
    roofs = {"machine": "m", "libraries": {"torch": {"gemm_gflops": {"fp32": 100.0}},
                                            "tensorflow": {"gemm_gflops": {"fp32": 120.0}}},
             "bandwidth_gbs": 20.0, "bandwidth_library": "torch", "sweep": [], "measured_at": "2026-12-06",
             "method": "test", "theoretical": {"gflops": {"fp32": 300.0}, "upper_bound": True}}
    (run / "run_meta.json").write_text(json.dumps({"run_id": "r1", "gpu": False, "device": "cpu", "roofs": roofs}))
    base = dict(run_id="r1", model="resnet20_v1", precision="fp32", batch_size=8, status="ok", device="cpu")
    work = roofline.layer_lists(get_spec("resnet20_v1"), 8, 4)
    impls = {("torch", "torch", "eager"): {"conv": 10.0, "batchnorm": 4.0, "relu": 1.0},
             ("keras", "tensorflow", "nojit"): {"conv": 6.0, "batchnorm": 1.0, "relu": 1.0}}
    joined = {}
    for (fw, be, mode), kinds in impls.items():
        job = f"profile/resnet20_v1/{fw}-{be}/fp32/b8/train/{mode}/n3"
        who = {**base, "job_id": job, "framework": fw, "backend": be, "exec_mode": mode}
        step = sum(kinds.values()) * 2 + 1.0
        times = {(k, ph): ms for k, ms in kinds.items() for ph in ("forward", "backward")}
        for (k, ph), ms in times.items():
            append_row(run / FILES["profile"], "profile", {**who, "measurement": "train", "layer": f"x_{k}", "kind": k,
                                                           "phase": ph, "ms_per_step": ms, "share_of_step": ms / step})
        append_row(run / FILES["profile"], "profile", {**who, "layer": "(step)", "ms_per_step": step,
                                                       "profiled_step_ms": step, "unprofiled_step_ms": step / 1.5,
                                                       "coverage": 1 - 1 / step})
        joined[be] = roofline.join(times, work, roofs["libraries"][be]["gemm_gflops"]["fp32"], roofs)
        for r in joined[be]:
            append_row(run / FILES["roofline"], "roofline", {**who, **r})
    index = render(run, tmp_path / "reports" / "r1")
    md = (index.parent / "index.md").read_text()
    assert (index.parent / "roofline_resnet20_v1.png").is_file() and "roofline_resnet20_v1.png" in md
    relu = next(r for r in joined["tensorflow"] if r["layer_kind"] == "relu" and r["phase"] == "forward")
    assert relu["bound"] == "memory"
    assert (f"relu forward ({relu['mbytes_per_step']:.1f} MB a step: {relu['t_min_ms']:.2f} ms at the bandwidth roof, "
            f"measured 1.00 ms)") in md
    # the why: keras/tensorflow (17 ms profiled, 11.3 unprofiled) is the fastest
    rows = joined["tensorflow"]
    frac = sum(r["gflop_per_step"] for r in rows) / (17.0 / 1.5 / 1e3) / 120.0
    at = 17.0 - sum(r["ms_per_step"] for r in rows) + sum(r["t_min_ms"] for r in rows)
    assert f"keras/tensorflow nojit reaches {frac:.2f} of its compute roof" in md
    assert f"with every layer kind at its roof its profiled step would take {at:.1f} of 17.0 ms" in md
    assert "Roofs of m measured 2026-12-06" in md
    env = md[md.index("## Environment"):]
    assert "| roofs | Roofs of m measured 2026-12-06 by python -m bench.peaks: GEMM torch fp32 100 GFLOP/s" in env


def test_a_run_written_before_the_added_columns_is_read_and_resumed(tmp_path):
    """Columns added to schema v1 later (ADDED_IN_V1: the roofline's, the user twins'): an older file reads with them
    empty, and rows appended to it (a resumed run) keep its header, so every row stays whole."""
    from bench.results.read import read_rows, read_table
    from bench.results.schema import ADDED_IN_V1, append_row, columns
    path = tmp_path / "throughput.csv"
    old = [c for c in columns("throughput") if c not in ADDED_IN_V1]
    path.write_text(",".join(old) + "\n" + ",".join("1" if c == "schema_version" else "" for c in old) + "\n")
    append_row(path, "throughput", {"run_id": "r", "job_id": "j", "status": "ok", "roof_fraction": 0.5})
    t = read_table(path, "throughput")
    assert t.dropped == 0 and len(t.rows) == 2 and t.later == list(ADDED_IN_V1)
    assert read_rows(path, "throughput")[1]["roof_fraction"] == "" and t.frame().roof_fraction.isna().all()
    path.write_text(",".join(old[:-1]) + "\n")  # a column of the first schema missing: still refused
    with pytest.raises(Exception, match="no valid header"):
        read_table(path, "throughput")


def test_quick_roofs_say_so_where_the_report_names_them():
    """Roofs a run measured itself (bench.run, quick mode) are named as such, with how to measure the full ones."""
    from bench.report.sections.roofline import roofs_line
    roofs = {"machine": "m", "measured_at": "2026-12-06", "bandwidth_gbs": 10.0, "bandwidth_library": "torch",
             "libraries": {"torch": {"gemm_gflops": {"fp32": 100.0}}}}
    assert "quick mode" not in roofs_line({"meta": {"roofs": roofs}})
    line = roofs_line({"meta": {"roofs": {**roofs, "quick": True}}})
    assert "by python -m bench.peaks in quick mode" in line and "--remeasure" in line
