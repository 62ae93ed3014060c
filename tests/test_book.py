"""Slow tier: the book builds with warnings as errors and its pages work in headless Chromium.

Chromium comes from Debian (`apt-get install chromium`, done here as root when missing); Playwright
drives it through `executable_path`, so no browser is downloaded. A screenshot of each checked page
is saved under `_build/test-book/_build/screenshots/` for people to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytestmark = pytest.mark.book

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("chromium is not installed and this is not root: run `apt-get install chromium`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def built_book(smoke_book):
    if smoke_book["returncode"] != 0:
        pytest.fail(f"notebooks failed at smoke; see test_notebooks: {smoke_book['outcomes']}")
    root = smoke_book["root"]
    jb = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jb), "build", str(root), "--builder", "html", "-W", "-n", "--keep-going"],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"book build failed (warnings are errors):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    html = root / "_build" / "html"
    assert (html / "index.html").is_file()
    return html


def test_book_builds_every_toc_page(built_book):
    for page in ("index.html", "book/intro.html", "book/results.html", "book/reproducing.html",
                 "book/deviations.html", "book/executed/data.html"):
        assert (built_book / page).is_file(), page


def check_page(page, url: str, html_root: Path, lands_on: str | None = None) -> dict:
    page.goto(url)
    if lands_on:  # a redirect page: wait until the browser has followed it
        page.wait_for_url(f"**/{lands_on}", timeout=15_000)
    page.wait_for_load_state("load")
    broken = page.evaluate(
        "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    dead = []
    for href in hrefs:
        parsed = urlparse(href)
        if parsed.scheme != "file":
            continue
        target = Path(unquote(parsed.path))
        if not target.exists():
            dead.append(href)
        elif parsed.fragment and target.suffix == ".html":
            text = target.read_text(errors="ignore")
            if f'id="{parsed.fragment}"' not in text:
                dead.append(href)
    return {"broken_images": broken, "dead_links": dead,
            "images": page.evaluate("() => document.images.length"),
            "table_rows": page.evaluate("() => document.querySelectorAll('table tbody tr').length"),
            "text": page.evaluate("() => document.body.innerText")}


def test_pages_in_headless_chromium(built_book):
    from playwright.sync_api import sync_playwright

    shots = built_book.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    # index.html is the book's redirect to its root page (book/intro.html)
    pages = {"index": ("index.html", "book/intro.html"), "data": ("book/executed/data.html", None),
             "results": ("book/results.html", None)}
    report = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        for name, (rel, lands_on) in pages.items():
            report[name] = check_page(page, (built_book / rel).as_uri(), built_book, lands_on)
            page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
        browser.close()
    for name, found in report.items():
        assert not found["broken_images"], f"{name}: missing figures {found['broken_images']}"
        assert not found["dead_links"], f"{name}: broken internal links {found['dead_links']}"
    assert report["data"]["images"] >= 5, f"the data chapter shows too few figures: {report['data']}"
    assert report["results"]["table_rows"] > 0, "the results page has an empty results table"
    results_text = report["results"]["text"]
    assert report["results"]["images"] >= 1, "the results page lacks the verdict figure"
    results_text = results_text.replace("\u2019", "'")  # MyST renders the apostrophe typographically
    for heading in ("The papers' claims", "Our own checks", "Reproduction summary per paper"):
        assert heading in results_text, f"the results page lacks {heading!r}"


def test_no_process_words_in_the_book(built_book):
    """Readers see claims and checks, not the project's issue numbers or requirement labels."""
    import re

    offenders = []
    for page in built_book.rglob("*.html"):
        text = re.sub(r"<[^>]+>", " ", page.read_text(errors="ignore"))
        for pattern in (r"\bissue \d+", r"cellnb requirement"):
            if re.search(pattern, text, flags=re.IGNORECASE):
                offenders.append(f"{page.relative_to(built_book)}: {pattern}")
    assert not offenders, offenders
