"""Screenshot a TwinBench report in headless chromium (Debian's, through Playwright): its first screen, or one element.

    python scripts/screenshot_report.py reports/<run_id>/index.html docs/img/report-first-screen.png
    python scripts/screenshot_report.py reports/<run_id>/index.html shot.png --selector "#fig-throughput-train-fp32-b8"
    python scripts/screenshot_report.py reports/<run_id>/index.html page.png --full-page

Default viewport 1280x800 (the first screen a reader sees). Needs ``pip install playwright`` (the test extra) and a
chromium on PATH (``apt-get install chromium``); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def screenshot(page_path: Path, png: Path, width: int = 1280, height: int = 800, selector: str | None = None,
               full_page: bool = False) -> Path:
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_load_state("load")
        if selector:
            page.locator(selector).first.screenshot(path=str(png))
        else:
            page.screenshot(path=str(png), full_page=full_page)
        browser.close()
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="a report's index.html (or its folder)")
    ap.add_argument("png", help="where to write the PNG")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--selector", help="CSS selector of one element to capture (e.g. #fig-accuracy-per-epoch)")
    ap.add_argument("--full-page", action="store_true", help="the whole page, not the first screen")
    a = ap.parse_args(argv)
    page = Path(a.report)
    page = page / "index.html" if page.is_dir() else page
    if not page.is_file():
        print(f"error: no report at {page}", file=sys.stderr)
        return 2
    try:
        print(screenshot(page, Path(a.png), a.width, a.height, a.selector, a.full_page))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
