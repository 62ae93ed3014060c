"""Slow tier: every notebook runs at the smoke profile through the runner (as CI does)."""

import pytest

from cellnb import reproduce
from cellnb.results import load

pytestmark = pytest.mark.notebooks


@pytest.mark.parametrize("name", reproduce.available_notebooks())
def test_notebook_runs_at_smoke(smoke_book, name):
    outcome = smoke_book["outcomes"][name]
    assert outcome["status"] == "ok", f"{name} failed: {outcome['error']}"
    record = load(smoke_book["results"] / "smoke" / f"{name}.json")
    assert record["profile"] == "smoke" and record["name"] == name and record["device"] == "cpu"
    assert record["metrics"], f"{name} recorded no metrics"
    assert (smoke_book["executed"] / f"{name}.ipynb").is_file()


def test_every_notebook_is_in_the_toc():
    toc = (reproduce.REPO_ROOT / "_toc.yml").read_text()
    missing = [n for n in reproduce.available_notebooks() if f"book/executed/{n}\n" not in toc + "\n"]
    assert not missing, f"notebooks missing from _toc.yml: {missing}"
