"""Shared fixtures. Slow tiers (notebooks, book) are marked and run by default in `make test`."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("CELLNB_PROGRESS", "0")

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_BOOK = REPO / "_build" / "test-book"


@pytest.fixture(scope="session")
def smoke_book():
    """Run every notebook at the smoke profile once, into a copy of the book under _build/test-book.

    The committed results/ and book/executed/ are never touched: results go to the copy.
    """
    if TEST_BOOK.exists():
        shutil.rmtree(TEST_BOOK)
    TEST_BOOK.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, TEST_BOOK / name)
    shutil.copytree(REPO / "book", TEST_BOOK / "book", ignore=shutil.ignore_patterns("executed"))
    summary = TEST_BOOK / "outcomes.json"
    command = [sys.executable, "-m", "cellnb.reproduce", "--profile", "smoke", "--device", "cpu",
               "--output-dir", str(TEST_BOOK / "book" / "executed"), "--results-dir", str(TEST_BOOK / "results"),
               "--summary-json", str(summary)]
    data_root = REPO.parent / "shared" / "data"
    if data_root.is_dir():
        command += ["--data-root", str(data_root)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    print(result.stdout[-3000:], result.stderr[-3000:])
    if not summary.is_file():
        pytest.fail(f"the runner wrote no summary (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return {"root": TEST_BOOK, "results": TEST_BOOK / "results", "executed": TEST_BOOK / "book" / "executed",
            "outcomes": json.loads(summary.read_text()), "returncode": result.returncode}
