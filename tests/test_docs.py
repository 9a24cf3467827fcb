"""The docs cannot go stale: the site builds strictly, every page's links resolve in a real browser, every flag
of every command and every CSV column is in the built site, the README stays short and keeps the markers CI
reads, every --help is plain text, and each figure the code can recompute is checked against the code.

The site is built once per session (`mkdocs build --strict`, seconds: the reference pages are generated from
the parsers, the schema and the registry without running anything slow)."""
from __future__ import annotations

import html
import http.server
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
_spec = importlib.util.spec_from_file_location("gen_docs_ref", ROOT / "scripts" / "gen_docs_ref.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return out


def page_text(site: Path, rel: str) -> str:
    """The text of a built page (tags dropped, entities decoded)."""
    raw = (site / rel / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def table_text(site: Path, rel: str) -> str:
    """The text of a built page's tables alone."""
    raw = "".join(re.findall(r"<table>.*?</table>", (site / rel / "index.html").read_text(), re.S))
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def missing_from(names, text: str) -> list[str]:
    return [n for n in names if n not in text]


# ---------------------------------------------------------------- the build and the browser

def test_site_builds_strictly_with_every_page(site):
    for rel in ("getting-started", "concepts", "trust", "faults", "ray", "gpu-sessions", "findings", "development",
                "reading-the-report", "reference/schema", "reference/models", "reference/suites", "reference/recipes",
                *(f"reference/cli/{e}" for e in gen.ENTRY_POINTS)):
        assert (site / rel / "index.html").is_file(), rel


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _serve(directory: Path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(directory)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def crawl(browser, base: str) -> tuple[set[str], list[str]]:
    """Open every page reachable from base/ in the browser; return (pages seen, problems): a same-site link whose
    target does not load, an anchor missing on its page, an image that did not load."""
    page = browser.new_page()
    todo, seen, ids, anchors, problems, assets = ["/"], set(), {}, [], [], {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        resp = page.goto(base + path)
        if resp is None or resp.status != 200:
            problems.append(f"{path}: HTTP {resp.status if resp else 'no response'}")
            continue
        ids[path] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
        for src, ok in page.eval_on_selector_all("article img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])"):
            if not ok:
                problems.append(f"{path}: image {src} did not load")
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            if not href.startswith(base):
                continue  # another site: not checked (no network in CI)
            target, _, frag = href[len(base):].partition("#")
            target = target or path
            if target.endswith("/") or target.endswith(".html"):
                todo.append(target)
                if frag:
                    anchors.append((path, target, frag))
            elif target not in assets:
                assets[target] = page.request.get(base + target).status
                if assets[target] != 200:
                    problems.append(f"{path}: {target}: HTTP {assets[target]}")
    for src, target, frag in anchors:
        if target in ids and frag not in ids[target]:
            problems.append(f"{src}: {target}#{frag}: no such anchor")
    page.close()
    return seen, problems


@pytest.mark.browser
def test_every_page_opens_in_chromium_and_its_links_resolve(site, browser):
    srv, base = _serve(site)
    try:
        seen, problems = crawl(browser, base)
    finally:
        srv.shutdown()
    assert not problems, "\n".join(problems)
    rels = [p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")]
    built = {"/" if r == "." else f"/{r}/" for r in rels}
    unreached = sorted(built - seen - {"/404/"})
    assert not unreached, f"pages no link reaches: {unreached}"
    assert len(seen) >= 20


@pytest.mark.browser
def test_the_crawler_finds_a_broken_link_and_a_missing_anchor(tmp_path, browser):
    (tmp_path / "a").mkdir()
    (tmp_path / "index.html").write_text('<a href="a/">ok</a> <a href="gone/">broken</a> <a href="a/#nowhere">anchor</a>')
    (tmp_path / "a" / "index.html").write_text('<h1 id="here">a</h1><a href="../">home</a>')
    srv, base = _serve(tmp_path)
    try:
        seen, problems = crawl(browser, base)
    finally:
        srv.shutdown()
    assert seen >= {"/", "/a/"}
    assert any("/gone/: HTTP 404" in p for p in problems), problems
    assert any("#nowhere: no such anchor" in p for p in problems), problems
    assert len(problems) == 2, problems


# ---------------------------------------------------------------- generated reference: flags, columns, commands

@pytest.mark.parametrize("entry", gen.ENTRY_POINTS)
def test_every_flag_of_the_command_is_on_its_built_page(site, entry):
    flags = gen.flags_of(gen.parser_of(entry))
    assert "--help" in flags
    text = page_text(site, f"reference/cli/{entry}")
    assert not missing_from(flags, text)
    assert f"usage: python -m {entry}" in text


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("entry", gen.ENTRY_POINTS)
def test_every_flags_help_reads_on_its_page_as_the_parser_prints_it(site, entry):
    """Each flag's help, with argparse's own expansion of %(default)g and the like, is on the built page word for
    word: a placeholder left raw, or a `<run_id>` the browser took for a tag, fails here."""
    parser = gen.parser_of(entry)
    text = _norm(table_text(site, f"reference/cli/{entry}"))  # the flags table (the --help block above has them too)
    helps = [gen.expanded_help(parser, a) for a in parser._actions if a.help and a.help != "==SUPPRESS=="]
    assert helps
    assert [h for h in helps if _norm(h) not in text] == []


def test_every_schema_meaning_reads_on_the_built_page(site):
    from bench.results import schema
    text = _norm(table_text(site, "reference/schema"))
    meanings = [m for _, m, _ in schema.COMMON] + [m for cols in schema.KINDS.values() for _, m, _ in cols]
    assert any("<" in m for m in meanings)  # the case the escaping is for
    assert [m for m in meanings if _norm(m) not in text] == []


# a placeholder argparse did not expand, or a gap where a <tag-like> word was dropped ("reports// at")
_LOST = re.compile(r"%\(\w+\)[a-z]|(?<![:/])\w//(?=[\s,.;)])")


def test_no_built_page_shows_a_raw_placeholder_or_a_dropped_word(site):
    bad = {}
    for p in site.rglob("index.html"):
        rel = p.parent.relative_to(site).as_posix()
        hits = _LOST.findall(page_text(site, rel) if rel != "." else html.unescape(re.sub(r"<[^>]+>", "", p.read_text())))
        if hits:
            bad[rel] = hits[:5]
    assert not bad


def test_the_placeholder_check_catches_the_old_faults():
    assert _LOST.search("smallest change (default: %(default)g)")
    assert _LOST.search("do not render reports// at the end")
    assert not _LOST.search("open https://example.org/x or chrome://tracing; results/<run_id>/ here")


def test_a_cell_keeps_a_tag_like_word_as_text():
    assert gen.cell("results/<run_id>/ a | b") == "results/&lt;run_id&gt;/ a \\| b"
    assert gen.cell("`results/<run_id>/`") == "`results/<run_id>/`"  # a code span shows it literally already


@pytest.mark.parametrize("entry", gen.ENTRY_POINTS)
def test_help_fits_80_columns(entry):
    """The help block of a reference page is the --help at COLUMNS=80; a hand-laid description or epilog line
    longer than that ran past the block's right edge at 1280 px."""
    long = [line for line in gen.help_text(entry).splitlines() if len(line) > int(gen.HELP_COLUMNS)]
    assert not long


@pytest.mark.browser
def test_help_blocks_fit_the_page_at_1280_px(site, browser):
    srv, base = _serve(site)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    over = {}
    try:
        for e in gen.ENTRY_POINTS:
            page.goto(f"{base}/reference/cli/{e}/")
            widths = page.eval_on_selector_all("article pre code", "els => els.map(e => [e.scrollWidth, e.clientWidth])")
            assert widths, e
            if any(sw > cw + 1 for sw, cw in widths):
                over[e] = widths
    finally:
        page.close()
        srv.shutdown()
    assert not over


def test_no_page_carries_the_builders_paths(site):
    """Defaults such as --out's are absolute paths of the checkout: a page must not show the builder's."""
    leaks = [p.relative_to(site).as_posix() for p in site.rglob("index.html") if str(ROOT) in p.read_text()]
    assert not leaks


def test_a_flag_added_to_a_parser_is_caught_missing_from_an_old_site(site):
    parser = gen.parser_of("bench.run")
    parser.add_argument("--a-flag-nobody-documented", help="new")
    missing = missing_from(gen.flags_of(parser), page_text(site, "reference/cli/bench.run"))
    assert missing == ["--a-flag-nobody-documented"]


def test_every_csv_column_is_on_the_built_schema_page(site):
    from bench.results import schema
    text = page_text(site, "reference/schema")
    cols = [c for c, _, _ in schema.COMMON] + [c for cols in schema.KINDS.values() for c, _, _ in cols]
    assert len(cols) > 50
    assert not missing_from(cols, text)
    assert not missing_from([f"{k}.csv" for k in schema.KINDS], text)
    assert missing_from([*cols, "a_column_added_later"], text) == ["a_column_added_later"]


def test_every_model_and_suite_is_on_the_built_reference(site):
    from bench.zoo import list_models
    assert not missing_from(list_models(), page_text(site, "reference/models"))
    suites = gen.suite_jobs(gen.run_list("cpu"))
    assert "smoke" in suites
    assert not missing_from([f"{s}" for s in suites], page_text(site, "reference/suites"))


def _main_guarded_modules() -> set[str]:
    out = set()
    for p in (ROOT / "bench").rglob("*.py"):
        if re.search(r"^if __name__ == ['\"]__main__['\"]:", p.read_text(), re.M):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out.add(".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    return out


def test_every_command_is_documented_and_in_the_nav():
    assert _main_guarded_modules() == set(gen.ENTRY_POINTS) | set(gen.INTERNAL)
    nav = (ROOT / "mkdocs.yml").read_text()
    for e in gen.ENTRY_POINTS:
        assert f"reference/cli/{e}.md" in nav, e


@pytest.mark.parametrize("entry", gen.ENTRY_POINTS)
def test_help_is_plain_text(entry):
    text = gen.help_text(entry)
    assert "``" not in text
    assert not re.search(r"::\s*$", text, re.M), "reST literal block ('Examples::')"
    assert not re.search(r":(mod|func|class|meth|data|attr):`", text), "reST role"


# ---------------------------------------------------------------- the README

def _block_after(marker: str) -> str:
    """What .ci/run's awk extracts after the marker (the same awk program, read from .ci/run)."""
    ci = (ROOT / ".ci" / "run").read_text()
    prog = re.search(r"awk '(.+?)' README\.md", ci).group(1).replace("<!-- test-command -->", marker)
    return subprocess.run(["awk", prog, str(README)], capture_output=True, text=True, check=True).stdout.strip()


def test_readme_is_short_and_keeps_the_commands_ci_reads():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert _block_after("<!-- test-command -->") == 'pip install torch==2.13.0 -e ".[all,jax,ray,test]" && python -m pytest'
    main = _block_after("<!-- main-command -->")
    assert re.fullmatch(r'pip install torch==2\.13\.0 -e "\.\[[a-z,]+\]" && python -m bench\.run --suite smoke', main), main
    assert "docs/img/report-first-screen.png" in text
    assert "| 130 / 143 |" in text


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_reach_files_and_headings():
    """Every relative link of the README names a file of the checkout and, with #anchor, one of its headings
    (the report screenshot excepted: the coordinator commits it from a real smoke run)."""
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    rel = [u for u in links if not re.match(r"[a-z]+://", u)]
    assert len(rel) >= 10
    for u in rel:
        path, _, frag = u.partition("#")
        if path == "docs/img/report-first-screen.png":
            continue
        assert (ROOT / path).is_file(), u
        if frag:
            heads = [_slug(h) for h in re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.M)]
            assert frag in heads, (u, heads)


def test_readme_exit_statuses_are_the_codes():
    from bench.pipeline import preflight
    codes = {v for k, v in vars(preflight).items() if k.startswith("EXIT_") and isinstance(v, int)}
    table = set()
    for f in (README, DOCS / "faults.md"):
        rows = re.findall(r"^\| (\d+)(?: / (\d+))? \|", f.read_text(), re.M)
        got = {int(x) for r in rows for x in r if x}
        assert got >= codes, (f.name, codes - got)
        table |= got
    assert table == codes | {130, 143}


def _commands_exiting(code: int) -> list[str]:
    """The entry points whose own module (or the module its main lives in) names an EXIT_* constant of ``code``."""
    import inspect
    out = []
    for e in gen.ENTRY_POINTS:
        src = inspect.getsource(inspect.getmodule(gen._main_of(e)))
        if re.search(rf"^EXIT_\w+ = {code}\b", src, re.M):
            out.append(e)
    return out


def test_every_command_that_exits_4_is_named_where_exit_4_is_explained():
    cmds = _commands_exiting(4)
    assert {"bench.report", "bench.history"} <= set(cmds), cmds
    for f in (README, DOCS / "faults.md"):
        row = re.search(r"^\| 4 \|(.*)$", f.read_text(), re.M).group(1)
        assert [c for c in cmds if f"python -m {c} " not in row] == [], f.name
    from bench.pipeline.preflight import EXIT_STATUS_HELP
    four = _norm(EXIT_STATUS_HELP.split("\n  4 ")[1].split("\n  130")[0])
    assert [c for c in cmds if f"python -m {c} " not in four] == []


def _readme_commands() -> list[str]:
    text = README.read_text()
    block = text[text.index("## The commands people use"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("python -m ")]


def test_every_readme_command_parses_with_its_own_parser():
    cmds = _readme_commands()
    assert len(cmds) >= 12
    for cmd in cmds:
        argv = shlex.split(cmd)
        entry, args = argv[2], argv[3:]
        assert entry in gen.ENTRY_POINTS, cmd
        try:
            gen.parser_of(entry).parse_args(args)
        except SystemExit as e:
            pytest.fail(f"{cmd}: argparse refused it ({e})")


def test_every_readme_run_example_plans(capsys):
    import bench.run
    planned = 0
    for cmd in _readme_commands():
        argv = shlex.split(cmd)[3:]
        if argv[:1] != ["--suite"] or "ray" in argv:  # --list, --resume RUN_ID, a Ray cluster: nothing to plan here
            continue
        rc = bench.run.main([*argv, "--dry-run"])
        assert rc in (0, None), (cmd, capsys.readouterr().err[-500:])
        assert "estimated time" in capsys.readouterr().out, cmd
        planned += 1
    assert planned >= 4


# ---------------------------------------------------------------- figures the code can recompute

def _plan(suite: str) -> str:
    import contextlib
    import io

    import bench.run
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        bench.run.main(["--suite", suite, "--device", "cpu", "--dry-run"])
    return buf.getvalue()


def _params(name: str) -> int:
    import torch

    from bench.zoo import build
    from bench.zoo.counts import torch_param_counts
    with torch.device("meta"):
        return torch_param_counts(build(name, "torch"))[0]


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def _claims():
    """(docs file, regex with one group, the value the code gives today)."""
    from bench.core import hygiene
    from bench.measures import timing
    from bench.results import stats
    from bench.stacks.keras.step import KERAS_WINDOW
    from bench.zoo.recipes import RECIPES
    run_help = {a.dest: a.help or "" for a in gen.parser_of("bench.run")._actions}

    def help_default(dest: str) -> str:
        return re.search(r"default:? (\d+)", run_help[dest]).group(1)
    smoke_n = re.search(r"epochs/\S+/smoke/n(\d+)", _plan("smoke")).group(1)
    degr = re.search(r"epochs/plain20/torch/\S+/smoke/e(\d+)/n(\d+)", _plan("degradation"))
    return [
        ("measures/throughput.md", r"until the step time is stable \(at least (\d+);", str(timing.MIN_WARMUP)),
        ("measures/throughput.md", r"\*\*and at least ([\d.]+) s of them\*\*", f"{timing.MIN_TIMED_S:g}"),
        ("measures/throughput.md", r"\(at most ([\d,]+)\s+samples\)", _fmt(timing.MAX_SAMPLES)),
        ("measures/throughput.md", r"a window of steps \((\d+ on a GPU, \d+ on a CPU)\)",
         f"{KERAS_WINDOW['cuda']} on a GPU, {KERAS_WINDOW['cpu']} on a CPU"),
        ("measures/throughput.md", r"medians of (\d+) consecutive batches", str(stats.N_BATCHES)),
        ("measures/throughput.md", r"unstable timing \(`step_cv` > ([\d.]+)\)", f"{hygiene.UNSTABLE_CV:.2f}"),
        ("measures/throughput.md", r"others > ([\d.]+) core", f"{hygiene.CONTENDED_CORES:g}"),
        ("measures/throughput.md", r"\(`mallopt`: (mmap \d+ MiB, trim \d+ MiB)\)",
         f"mmap {hygiene.MALLOC_MMAP_THRESHOLD >> 20} MiB, trim {hygiene.MALLOC_TRIM_THRESHOLD >> 20} MiB"),
        ("trust.md", r"percentile bootstrap \(([\d,]+) resamples", _fmt(stats.N_BOOT)),
        ("trust.md", r"\(`--min-effect`, default (\d+)%\)", f"{stats.MIN_EFFECT * 100:g}"),
        ("trust.md", r"Mann-Whitney U\*\* test gives p < ([\d.]+)", f"{stats.ALPHA:g}"),
        ("trust.md", r"medians of (\d+) consecutive batches", str(stats.N_BATCHES)),
        ("trust.md", r"\(`--compare`, (\d+) or more jobs", str(stats.EMPIRICAL_MIN_JOBS)),
        ("trust.md", r"\(other processes above ([\d.]+) core", f"{hygiene.CONTENDED_CORES:g}"),
        ("trust.md", r"unstable timing \(`step_cv` > ([\d.]+)\)", f"{hygiene.UNSTABLE_CV:.2f}"),
        ("faults.md", r"`--job-timeout`, default (\d+) s", help_default("job_timeout")),
        ("ray.md", r"`--ray-retries`\s+times \(default (\d+)\)", help_default("ray_retries")),
        ("getting-started.md", r"\((\d+ epochs on [\d,]+ images)\)", f"{RECIPES['smoke'].epochs} epochs on {_fmt(int(smoke_n))} images"),
        ("findings.md", r"the CPU plan, ([\d,]+ images x \d+ epochs)", f"{_fmt(int(degr.group(2)))} images x {degr.group(1)} epochs"),
        ("findings.md", r"activations of ResNet-110 with ([\d.]+)x its parameters",
         f"{_params('densenet_bc100_k12') / _params('resnet110_v1'):.2f}"),
        ("gpu-sessions.md", r"`GPU_SESSION_DEADLINE_S` seconds after the start \(default (\d+)\)",
         re.search(r"GPU_SESSION_DEADLINE_S:-(\d+)", (ROOT / "scripts" / "gpu_session.sh").read_text()).group(1)),
    ]


def _claim_value(m: re.Match) -> str:
    return next(g for g in m.groups() if g is not None)


def test_every_recomputable_figure_in_the_docs_is_what_the_code_gives():
    stale = []
    for rel, pattern, expected in _claims():
        m = re.search(pattern, (DOCS / rel).read_text())
        if m is None:
            stale.append(f"{rel}: the sentence /{pattern}/ is gone (update the claim in tests/test_docs.py)")
        elif re.sub(r"\s+", " ", _claim_value(m)) != expected:
            stale.append(f"{rel}: says {_claim_value(m)!r}, the code gives {expected!r}")
    assert not stale, "\n".join(stale)


def test_the_figure_check_catches_a_stale_figure():
    rel, pattern, expected = _claims()[0]
    text = (DOCS / rel).read_text()
    m = re.search(pattern, text)
    stale_text = text[:m.start(1)] + "99" + text[m.end(1):]
    assert _claim_value(re.search(pattern, stale_text)) != expected


def test_no_hand_written_job_count():
    """Job counts and plan estimates change with every suite edit: only the generated suites page states them."""
    for f in [README, *DOCS.rglob("*.md")]:
        hits = re.findall(r"\b\d[\d,]* jobs\b|\b\d[\d.,]* GPU-hours\b", f.read_text())
        assert not hits, (f.name, hits)


def test_measured_figures_carry_their_commit():
    """Every table row and section of the findings and of the trust page names a commit that exists."""
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if shallow.returncode != 0 or shallow.stdout.strip() != "false":
        pytest.skip("not a full git checkout: the commits cannot be looked up")
    for rel in ("findings.md", "trust.md"):
        text = (DOCS / rel).read_text()
        commits = set(re.findall(r"`([0-9a-f]{7})`", text))
        assert commits, rel
        for c in commits:
            ok = subprocess.run(["git", "cat-file", "-e", f"{c}^{{commit}}"], cwd=ROOT, capture_output=True).returncode == 0
            assert ok, f"{rel}: commit {c} is not in this repository"
    for section in re.split(r"^## ", (DOCS / "findings.md").read_text(), flags=re.M)[1:]:
        assert re.search(r"`[0-9a-f]{7}`", section) and re.search(r"20\d\d-\d\d-\d\d", section), section[:80]


# ---------------------------------------------------------------- help texts the docs disagree with (files of other issues)
# Each is fixed by a one-line change listed in issue #37's report; strict xfail, so the fix and the removal of
# its marker land together.


def _run_help(dest: str) -> str:
    return next(a.help for a in gen.parser_of("bench.run")._actions if a.dest == dest)


def test_run_data_dir_help_names_every_place_the_loader_looks():
    h = _run_help("data_dir")
    assert all(p in h for p in ("$TWINBENCH_DATA_DIR", "./data", "~/.cache/twinbench", "download")), h


def test_run_out_help_says_where_the_report_goes():
    assert "--reports" in _run_help("out")


def test_run_recipe_help_names_every_recipe():
    from bench.zoo.recipes import RECIPES
    assert not missing_from(list(RECIPES), _run_help("recipe"))


# a duration in words or figures: "~12-15 min", "under an hour", "hours on a GPU", "minutes on a 2-core CPU"
_DURATION = re.compile(r"\b(?:\d[\d.,]*(?:-\d[\d.,]*)?\s*(?:s|sec|seconds?|min|minutes?|h|hours?)\b|an? hour\b|"
                       r"minutes\b|hours\b|seconds\b)")


def test_suite_descriptions_quote_no_duration():
    """`--list` said '~12-15 min per framework' for degradation while it was measured at 6.5 / 10.6 min, and
    'under an hour on one GPU' beside an estimate of 120 min: a duration belongs in --dry-run's estimate or in the
    findings page with its date, not in a description."""
    from bench.pipeline.suites import SUITES
    assert {k: _DURATION.findall(v) for k, v in SUITES.items() if _DURATION.search(v)} == {}
    assert _DURATION.search("15 epochs of the fast recipe: under an hour on one GPU")
    assert _DURATION.search("CPU: 8,192 images x 6 epochs (under 30 min idle)")
    assert not _DURATION.search("8,192 images x 6 epochs, 3 seeds, batch 128")


# hand-written pages whose figures are dated measurements (each with its commit: test_measured_figures_carry_their_commit)
# or published sources: a duration there is a measurement, not a claim about what the code does
_MEASURED_PAGES = ("findings.md", "trust.md", "anchors.md")


def test_every_hand_written_duration_and_default_is_checked_or_dated():
    """A duration or a "default N" in a hand-written page is either one of the figures checked against the code
    (_claims) or in a paragraph that says when and where it was measured (a date, a commit, or a link to the
    findings). The rule that forbids hand-written job counts, extended to durations and defaults."""
    checked: dict[str, list[tuple[int, int]]] = {}
    for rel, pattern, _ in _claims():
        m = re.search(pattern, (DOCS / rel).read_text())
        if m:
            checked.setdefault(rel, []).append(m.span())
    loose = []
    for f in [README, *DOCS.rglob("*.md")]:
        rel = f.relative_to(DOCS).as_posix() if f != README else "README.md"
        if rel in _MEASURED_PAGES or rel.startswith("evidence/"):
            continue
        text = f.read_text()
        # a library's own default ("PyTorch's default 1e-5") is that library's, not a figure of this code
        defaults = re.finditer(r"(?<!PyTorch's )(?<!Keras' )(?<!TensorFlow's )(?<!JAX's )\bdefault:? \d[\d.,]*", text)
        for m in [*_DURATION.finditer(text), *defaults]:
            if any(a <= m.start() < b for a, b in checked.get(rel, [])):
                continue
            para = text[text.rfind("\n\n", 0, m.start()) + 1:text.find("\n\n", m.end()) % (len(text) + 1)]
            if re.search(r"20\d\d-\d\d-\d\d|`[0-9a-f]{7}`|findings\.md|anchors\.md", para):
                continue
            loose.append(f"{rel}: {text[max(0, m.start() - 40):m.end() + 20]!r}")
    assert not loose, "\n".join(loose)


def test_the_smoke_estimate_is_within_2x_of_a_measured_smoke_run():
    """The suites page's CPU estimates come from the FLOP model (no history where the docs are built). Held
    against the job wall times of the committed smoke runs (docs/evidence): it said 13 min for a 4-min run."""
    import csv

    from bench.pipeline.suites import Options, estimate_seconds, expand
    runs = sorted(p for p in (DOCS / "evidence").rglob("jobs.csv") if "smoke" in p.parent.parent.name)
    assert runs
    jobs = expand("smoke", Options(gpu=False))
    est = sum(estimate_seconds(j) for j in jobs)
    for p in runs:
        rows = list(csv.DictReader(p.open()))
        if {r["job_id"] for r in rows} != {j.job_id for j in jobs}:
            continue  # an older plan: not the same jobs
        wall = sum(float(r["wall_s"]) for r in rows if r["wall_s"])
        assert 0.5 <= est / wall <= 2.0, (p, est, wall)


def test_no_plan_holds_a_job_its_measure_refuses():
    """The scaling suite planned GPU jobs that the data-parallel measure refuses (CPU replicas only so far): the
    suites page listed them and --replicas named GPU counts."""
    from bench.measures.scaling import DEVICES
    from bench.pipeline.suites import SUITES, Options, expand
    for gpu in (False, True):
        dev = "cuda" if gpu else "cpu"
        for su in SUITES:
            bad = [j.job_id for j in expand(su, Options(gpu=gpu)) if j.kind == "scaling" and dev not in DEVICES]
            assert not bad, (su, dev, bad[:3])
    if "cuda" not in DEVICES:
        assert "not built yet" in _run_help("replicas")
        assert "1,2,4,8" not in _run_help("replicas")


def test_the_suites_page_says_why_a_suite_has_no_job_on_a_device(site):
    from bench.measures.scaling import DEVICES
    if "cuda" in DEVICES:
        pytest.skip("GPU replicas are built")
    rows = re.findall(r"<tr>.*?</tr>", (site / "reference/suites/index.html").read_text(), re.S)
    row = html.unescape(re.sub(r"<[^>]+>", " ", next(r for r in rows if "<code>scaling</code>" in r)))
    assert "not built yet" in row, row


def test_keras_backend_help_names_every_suites_default():
    """--keras-backend's help listed the suites that run every backend by default and left out profile."""
    from bench.pipeline.suites import SUITES, Options, installed_keras_backends, keras_backends_for
    h = re.sub(r"\s+", " ", _run_help("keras_backend"))
    all_part = re.search(r"all installed for ([^;]+);", h).group(1)
    tf_part = re.search(r"tensorflow for ([^)]+)\)", h).group(1)
    named = [x.strip() for x in re.split(r",", all_part + "," + tf_part + "," + re.search(r"path for ([^;]+);", h).group(1))]
    assert sorted(named) == sorted(SUITES), named
    every = set(installed_keras_backends())
    for su in (x.strip() for x in all_part.split(",")):
        assert set(keras_backends_for(su, Options())) == every, su
    for su in (x.strip() for x in tf_part.split(",")):
        assert keras_backends_for(su, Options()) == ("tensorflow",), su


_MEASURE_PAGES = {"throughput.md": "throughput", "memory.md": "memory", "profile.md": "profile",
                  "training.md": "epochs", "scaling.md": "scaling"}


def test_a_measure_page_names_a_flag_only_for_jobs_the_flag_applies_to():
    """throughput.md said a throughput job 'times at least --steps samples' while --steps applies to profile and
    scaling jobs only. A flag whose help scopes it to some jobs ('of profile jobs', 'scaling jobs') may be named on
    another measure's page only in a sentence that says it does not apply."""
    scoped = {}
    for a in gen.parser_of("bench.run")._actions:
        kinds = set(re.findall(r"\b(throughput|memory|profile|epochs|scaling) jobs?\b", a.help or ""))
        if kinds and a.option_strings:
            scoped[a.option_strings[0]] = kinds
    assert scoped["--steps"] == {"profile", "scaling"}
    wrong = []
    for page, kind in _MEASURE_PAGES.items():
        text = re.sub(r"\s+", " ", (DOCS / "measures" / page).read_text())
        for sentence in re.split(r"(?<=[.:;])\s", text):
            for flag, kinds in scoped.items():
                if re.search(rf"`{flag}\b", sentence) and kind not in kinds and " not " not in sentence:
                    wrong.append(f"{page}: {sentence[:120]}")
    assert not wrong, "\n".join(wrong)


def test_results_and_reports_mean_the_same_in_every_command():
    """--out was the results root in bench.run and the reports root in bench.report: now --results and --reports
    are the two roots everywhere, and each remaining --out says what it means in its command."""
    for e in ("bench.run", "bench.report", "bench.history"):
        opts = {s: a for a in gen.parser_of(e)._actions for s in a.option_strings}
        assert opts["--results"].help.startswith("results root"), e
        assert opts["--reports"].help.startswith("reports root"), e
        assert "older" in opts["--out"].help, e
    assert gen.parser_of("bench.report").parse_args(["r", "--reports", "/x"]).out == "/x"
    assert gen.parser_of("bench.run").parse_args(["--suite", "smoke", "--results", "/y"]).out == "/y"


def test_the_first_screen_is_described_as_the_report_draws_it():
    """reading-the-report.md described a first screen of one sentence per answer, while the report opens with the
    scoreboard table, and the generated section list left the scoreboard out."""
    from bench.report.render import FIRST
    from bench.report.sections import scoreboard
    assert FIRST is scoreboard.section_scoreboard
    text = (DOCS / "reading-the-report.md").read_text()
    first = text[text.index("## The first screen"):].split("\n## ")[0]
    assert scoreboard.TITLE in first
    assert gen.sections_section().split("\n1. ")[1].startswith("scoreboard")


def test_docs_links_resolve_in_a_repository_browser_or_name_a_generated_page():
    """Links between hand-written pages work in a repository browser; the only ones that do not are to the
    generated reference pages, which the README says are on the built site alone."""
    generated = set(gen.pages())
    dead = []
    for f in DOCS.rglob("*.md"):
        if f.relative_to(DOCS).parts[0] == "evidence":
            continue
        for u in re.findall(r"\]\(([^)\s]+)\)", f.read_text()):
            path = u.partition("#")[0]
            if not path or re.match(r"[a-z]+:", path):
                continue
            target = (f.parent / path).resolve()
            if target.exists():
                continue
            rel = target.relative_to(DOCS.resolve()).as_posix() if target.is_relative_to(DOCS.resolve()) else str(target)
            if rel not in generated:
                dead.append(f"{f.relative_to(DOCS)}: {u}")
    assert not dead, dead
    assert "generated from the code when the site is built" in README.read_text()


def test_every_docs_pointer_in_the_code_names_a_page_that_says_it():
    """The report and the statistics pointed readers to "README, the A/A checks", which live in docs/trust.md: a
    pointer in the code names a docs page that exists, and "README, <topic>" only a topic the README has."""
    bad = []
    readme = README.read_text().lower()
    for p in (ROOT / "bench").rglob("*.py"):
        src = p.read_text()
        bad += [f"{p.name}: {m}" for m in re.findall(r"docs/[\w/.-]+\.md", src) if not (ROOT / m).is_file()]
        for topic in re.findall(r"README, (?:the )?([\w/ -]+?)[)\.,;]", src):
            if topic.lower() not in readme:
                bad.append(f"{p.name}: README, {topic}")
    assert not bad, bad
    assert "a/a check" in (DOCS / "trust.md").read_text().lower()
