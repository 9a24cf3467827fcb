"""Reports render from fixture CSVs (GPU-like, CPU-only, OOM, failures) and open in a real browser."""
import re
import shutil

import numpy as np
import pytest

from bench.report import concat_bytes_per_image, main, render
from bench.results.schema import append_row
from bench.results.writes import write_json_atomic


def _env(fw):
    return {"framework": fw, "backend": "torch" if fw == "torch" else "tensorflow", "device": "cuda",
            "device_name": "Fixture GPU", "precision": "bf16"}


def make_run(root, run_id="fixture-gpu", gpu=True, seed=0):
    """A results directory shaped like a GPU run: figures drawn from a fixed-seed generator."""
    rng = np.random.default_rng(seed)
    d = root / run_id
    d.mkdir(parents=True)
    write_json_atomic(d / "run_meta.json", {"run_id": run_id, "suite": "fixture", "device": "cuda" if gpu else "cpu",
                                           "versions": {"torch": "x"}, "gpu_name": "Fixture GPU" if gpu else None})
    for m in ("resnet20_v1", "densenet_bc100_k12", "densenet_bc100_k12_memeff"):
        for fw in ("torch", "keras"):
            for meas in ("train", "infer"):
                times = rng.uniform(5, 6, 20)
                append_row(d / "throughput.csv", "throughput", {
                    **_env(fw), "run_id": run_id, "job_id": f"t/{m}/{fw}/{meas}", "status": "ok", "model": m,
                    "batch_size": 128, "measurement": meas, "input": "synthetic", "first_step_s": 1.0,
                    "step_ms_median": float(np.median(times)), "images_per_s": 128 / (np.median(times) / 1e3),
                    "step_times_ms": " ".join(f"{t:.3f}" for t in times)})
            for b in (64, 128, 256):
                peak = None if not gpu else (b * (40 if "densenet" in m else 8) * (0.4 if "memeff" in m else 1))
                append_row(d / "memory.csv", "memory", {
                    **_env(fw), "run_id": run_id, "job_id": f"m/{m}/{fw}/b{b}", "status": "ok", "model": m,
                    "batch_size": b, "measurement": "train", "oom": False, "peak_alloc_mib": peak,
                    "step_ms_median": 10.0 * (1.2 if "memeff" in m else 1), "null_reason": None if gpu else "no GPU"})
        if gpu:
            append_row(d / "memory.csv", "memory", {**_env("torch"), "run_id": run_id, "job_id": f"m/{m}/torch/b4096",
                                                    "status": "oom", "oom": True, "model": m, "batch_size": 4096,
                                                    "error": "CUDA out of memory", "null_reason": "out of memory"})
    for m in ("plain20", "resnet20_v1"):
        for fw in ("torch", "keras"):
            for e in range(1, 6):
                acc = 0.3 + 0.1 * e + rng.uniform(0, 0.02)
                append_row(d / "epochs.csv", "epochs", {
                    **_env(fw), "run_id": run_id, "job_id": f"e/{m}/{fw}", "status": "ok", "model": m, "batch_size": 128,
                    "recipe": "fast", "epoch": e, "epochs_total": 5, "lr": 0.1, "train_loss": 1 / e, "train_acc": acc,
                    "test_loss": 1 / e, "test_acc": acc - 0.02, "epoch_s": 2.0, "train_images_per_s": 25000.0})
    for fw, acc in (("torch", 0.8801), ("keras", 0.8701)):  # a finished paper-recipe ResNet-20 on the stand-in
        append_row(d / "epochs.csv", "epochs", {
            **_env(fw), "run_id": run_id, "job_id": f"e/resnet20_v1/{fw}/paper", "status": "ok", "model": "resnet20_v1",
            "batch_size": 128, "precision": "bf16", "recipe": "paper", "epoch": 164, "epochs_total": 164, "lr": 0.001,
            "train_loss": 0.1, "train_acc": 0.97, "test_loss": 0.4, "test_acc": acc, "epoch_s": 1.0,
            "train_images_per_s": 50000.0, "data_source": "copy (md5 differs from the official files)"})
    append_row(d / "throughput.csv", "throughput", {**_env("keras"), "run_id": run_id, "job_id": "t/broken",
                                                    "status": "error", "model": "resnet20_v1", "batch_size": 128,
                                                    "error": "worker died with exit code 3"})
    return d


def _images(html):
    return re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)


def test_render_full_run(tmp_path):
    run = make_run(tmp_path / "results")
    index = render(run, tmp_path / "reports" / run.name)
    out = index.parent
    html, md = index.read_text(), (out / "index.md").read_text()
    stems = re.findall(r"!\[[^\]]*\]\(([^)]+)\.png\)", md)
    for expected in ("memory_vs_batch", "accuracy_per_epoch", "degradation", "params_vs_accuracy"):
        assert expected in stems
    assert "memory_vs_depth" not in stems  # one depth per model: a "vs depth" chart of lone dots is not drawn
    assert any(s.startswith("throughput_train") for s in stems)
    for s in stems:
        assert (out / f"{s}.png").stat().st_size > 1000 and (out / f"{s}.svg").exists()
    assert len(_images(html)) == len(stems)
    assert "http://" not in html and "https://" not in html  # opens from disk with no network
    # the paper-recipe ResNet-20 on the stand-in data is held against the reference script's 88.13% (bf16)
    line = lambda impl: next(ln for ln in md.splitlines() if "0.8813" in ln and impl in ln)  # noqa: E731
    assert "| yes" in line("torch") and "| no" in line("keras")
    assert "worker died with exit code 3" in html and "out of memory" in html  # failures listed, not hidden
    assert "memory saved" in html and "ratio to torch (images/s of the implementation / torch" in html
    ratio = [ln for ln in md.splitlines() if "| synthetic | keras/tensorflow |" in ln]
    assert len(ratio) == 6 and all("within process" in ln for ln in ratio)  # 3 models x train/infer, each tested
    assert "Fixture GPU" in md


def test_render_cpu_only_run_says_what_is_missing(tmp_path):
    run = make_run(tmp_path / "results", "fixture-cpu", gpu=False)
    (run / "epochs.csv").unlink()
    index = render(run, tmp_path / "reports" / run.name)
    text = index.read_text()
    assert "No allocator peak was measured in this run: no GPU" in text
    assert "No training in this run." in text
    assert "throughput_train" in text
    md = (index.parent / "index.md").read_text()
    gpu_row = next(ln for ln in md.splitlines() if ln.startswith("| GPU driver / CUDA / cuDNN |"))
    assert gpu_row == "| GPU driver / CUDA / cuDNN | no GPU |", gpu_row


def test_environment_gpu_cell_is_honest():
    from bench.report.sections.environment import gpu_stack
    assert gpu_stack({}) == "no GPU"
    assert gpu_stack({"cuda": "12.4"}) == "no GPU (torch built for CUDA 12.4)"
    assert gpu_stack({"gpu_name": "H100", "gpu_driver": "550.54", "cuda": "12.4"}) == "550.54 / 12.4 / not found"


# a phrase said twice in a row ("With one process per side: one process per side: ...")
_REPEAT = re.compile(r"\b(\w[\w ]{8,}\w)\W+\1\b", re.I)


def _ratio_columns(md: str) -> list[str]:
    """Every value of every Markdown table column named 'ratio' in a report."""
    out = []
    for block in md.split("\n\n"):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if len(rows) < 3:
            continue
        head = [c.strip() for c in rows[0].split("|")]
        if "ratio" in head:
            out += [ln.split("|")[head.index("ratio")].strip() for ln in rows[2:]]
    return [v for v in out if v]


def test_every_ratio_has_three_decimals_and_no_phrase_repeats(tmp_path):
    """One ratio printed "1.1" where the others print three decimals (a float rounded to 3, shown by pandas): every
    ratio column (throughput, per-layer profile, memory twins) and every "N.NNNx [interval]" has three. And "With one
    process per side: one process per side:": no phrase of the report's prose is said twice in a row."""
    run = make_run(tmp_path / "results", "fixture-cpu", gpu=False)
    _add_profiles(run)
    md = (render(run, tmp_path / "reports" / run.name).parent / "index.md").read_text()
    prose = "\n".join(ln for ln in md.splitlines() if not ln.startswith("|"))  # a table repeats "not measured" by design
    assert _REPEAT.findall(prose) == []  # no phrase said twice in a row
    assert _REPEAT.search("With one process per side: one process per side: its steps")
    ratios = _ratio_columns(md)
    assert len(ratios) >= 6 and all(re.fullmatch(r"\d+\.\d{3}", r) for r in ratios), ratios
    assert all(re.fullmatch(r"\d+\.\d{3}x", r) for r in re.findall(r"\b\d+\.\d+x(?= \[)", md))
    assert _ratio_columns("| a | ratio |\n|---|---|\n| x | 1.1 |") == ["1.1"]


def test_compare_two_runs(tmp_path):
    a = make_run(tmp_path / "results", "run-a", seed=0)
    b = make_run(tmp_path / "results", "run-b", seed=1)
    assert main([a.name, "--compare", b.name, "--results", str(tmp_path / "results"),
                 "--out", str(tmp_path / "reports")]) == 0
    html = (tmp_path / "reports" / "run-a" / "index.html").read_text()
    assert "Compared with run-b" in html and "this run / the other" in html


def test_report_cli_errors(tmp_path, capsys):
    assert main(["nope", "--results", str(tmp_path)]) == 2
    assert "no results directory" in capsys.readouterr().err
    assert main(["--latest", "--results", str(tmp_path)]) == 2


def test_analytic_concat_cost_is_quadratic_in_block_depth():
    c40 = concat_bytes_per_image("densenet40_k12")
    assert concat_bytes_per_image("resnet20_v1") is None
    # DenseNet-40, block 1: 12 layers reading 16 + 12 i channels at 32x32, fp32
    first_block = sum(16 + 12 * i for i in range(12)) * 32 * 32 * 4
    assert c40 > first_block
    # exactly quadratic in layers per block n (depth 3n+4): constant, positive second difference
    c = [concat_bytes_per_image("densenet40_k12", depth=3 * n + 4) for n in range(4, 9)]
    d2 = np.diff(c, 2)
    assert (d2 > 0).all() and np.allclose(d2, d2[0])


def _add_profiles(run):
    """Profile rows of both twins of resnet20_v1, with their traces, as the smoke run writes them."""
    (run / "traces").mkdir()
    for stack, step, conv in ((("torch", "torch", "eager"), 10.0, 4.0), (("keras", "tensorflow", "nojit"), 24.0, 12.0)):
        fw, be, mode = stack
        base = {"run_id": run.name, "status": "ok", "model": "resnet20_v1", "device": "cpu", "precision": "bf16",
                "batch_size": 128, "measurement": "train", "framework": fw, "backend": be, "exec_mode": mode,
                "job_id": f"p/resnet20_v1/{be}"}
        for name, kind, phase, ms in (("conv1", "conv", "backward", conv), ("bn1", "batchnorm", "forward", 2.0)):
            append_row(run / "profile.csv", "profile", {**base, "layer": name, "kind": kind, "phase": phase,
                                                       "ms_per_step": ms})
        append_row(run / "profile.csv", "profile", {**base, "layer": "(step)", "ms_per_step": step, "coverage": 0.9,
                                                   "profiled_step_ms": step, "trace_path": f"traces/{be}.json.gz"})
        (run / "traces" / f"{be}.json.gz").write_bytes(b"{}")


# read in the page: the first section, the scoreboard's model rows, every link and source, images, the page width
PROBE = """() => {
  const first = document.querySelector('body > section');
  const board = [...document.querySelectorAll('#scoreboard table')].find(t => t.querySelector('th')?.textContent === 'model');
  const anchors = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href'));
  return {first: first && first.id, models: board ? [...board.querySelectorAll('tbody tr')].map(r => r.cells[0].textContent) : [],
          missing: anchors.filter(h => !document.getElementById(decodeURIComponent(h.slice(1)))), anchors: anchors.length,
          refs: [...document.querySelectorAll('[href],[src]')].map(e => e.getAttribute('href') || e.getAttribute('src'))
                .filter(r => !r.startsWith('#') && !r.startsWith('data:')),
          images: document.images.length, broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
          width: document.documentElement.scrollWidth,
          hidden: [...document.querySelectorAll('div.wide')].filter(w => w.scrollWidth > w.clientWidth + 1 &&
                   !(w.previousElementSibling && w.previousElementSibling.classList.contains('cue') &&
                     !w.previousElementSibling.hidden && w.previousElementSibling.offsetHeight > 0))
                   .map(w => [...w.querySelectorAll('th')].map(t => t.textContent).join(','))};
}"""


@pytest.mark.browser
def test_report_reads_in_chromium_scoreboard_first_links_resolve(tmp_path):
    """The smoke-like report and the compare report, opened in Debian's chromium at 1280 px and read through the DOM:
    the Scoreboard is the first section with a row per model; every in-page link has its target; every href / src
    is a file inside the report folder; every image decoded; nothing overflows the window's width."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    results = tmp_path / "results"
    run, base = make_run(results, "run-a", seed=0), make_run(results, "run-b", seed=1)
    _add_profiles(run)
    single = render(run, tmp_path / "single" / run.name)
    assert main([run.name, "--compare", base.name, "--results", str(results), "--out", str(tmp_path / "cmp")]) == 0
    compared = tmp_path / "cmp" / run.name / "index.html"
    shutil.rmtree(results)  # a report needs nothing outside its folder
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        for index in (single, compared):
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            got = page.evaluate(PROBE)
            assert got["first"] == "scoreboard", got["first"]
            assert sorted(got["models"]) == sorted(["densenet_bc100_k12", "densenet_bc100_k12_memeff", "resnet20_v1",
                                                    "plain20"])
            assert got["anchors"] >= 8 and got["missing"] == []
            assert got["refs"] and all(not r.startswith(("http:", "https:", "..", "/")) for r in got["refs"])
            assert [r for r in got["refs"] if not (index.parent / r).is_file()] == []
            assert got["images"] >= 5 and got["broken"] == 0
            assert got["width"] <= 1280, got["width"]
            assert got["hidden"] == [], got["hidden"]  # no column hidden without a visible cue
        wide = tmp_path / "wide"  # a table no wrapping can fit: the cue shows above it
        wide.mkdir()
        from bench.report.render import CSS, CUE_JS, _table_html
        frame = __import__("pandas").DataFrame([[f"value_{i}_" + "x" * 12 for i in range(60)]],
                                               columns=[f"column_{i}" for i in range(60)])
        (wide / "index.html").write_text(f"<html><head><style>{CSS}</style>{CUE_JS}</head><body>"
                                         f"{_table_html(frame)}</body></html>")
        page.goto((wide / "index.html").as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate(PROBE)["hidden"] == []
        assert page.is_visible("p.cue") and "60 columns" in page.inner_text("p.cue")
        page.goto(single.as_uri())
        refs = page.evaluate(PROBE)["refs"]
        assert "traces/tensorflow.json.gz" in refs and "traces/torch.json.gz" in refs  # the why cell's and the table's
        browser.close()


def test_exec_modes_of_one_framework_are_never_pooled(tmp_path):
    """A run with --exec-mode jit,nojit shows each mode on its own, in the report and the summary table."""
    from bench.run import summary_table
    d = tmp_path / "results" / "modes"
    d.mkdir(parents=True)
    write_json_atomic(d / "run_meta.json", {"run_id": "modes", "suite": "throughput", "device": "cpu"})
    for mode, ms in (("jit", 50.0), ("nojit", 500.0)):
        append_row(d / "throughput.csv", "throughput", {
            **_env("keras"), "run_id": "modes", "job_id": f"t/{mode}", "status": "ok", "model": "resnet20_v1",
            "batch_size": 8, "measurement": "train", "input": "synthetic", "exec_mode": mode, "first_step_s": 1.0,
            "step_ms_median": ms, "images_per_s": 8 / (ms / 1e3), "step_times_ms": f"{ms} {ms} {ms}"})
    md = (render(d, tmp_path / "reports" / "modes").parent / "index.md").read_text()
    assert "keras/tensorflow jit" in md and "keras/tensorflow nojit" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| resnet20_v1 | train"))
    assert "160" in row and "16" in row.replace("160", "")  # 8 / 50 ms and 8 / 500 ms, side by side
    table = summary_table(d)
    assert "nojit" in table and "160" in table and "16" in table.replace("160", "")
