"""Slow tier: ``--jobs 2`` gives the same results as a serial run (two smoke chapters, real notebooks)."""

import json
import re
import subprocess
import sys

import pytest

from cellnb import reproduce

pytestmark = pytest.mark.notebooks

CHAPTERS = ("data", "mc_unet")
#: Wall-clock measurements differ between any two runs; everything else must be identical.
TIMED = ("seconds", "per_s", "latency", "throughput", "wall")


def run(tmp, *extra):
    command = [sys.executable, "-m", "cellnb.reproduce", "--profile", "smoke", "--device", "cpu",
               "--only", *CHAPTERS, "--output-dir", str(tmp / "executed"), "--results-dir", str(tmp / "results"),
               "--summary-json", str(tmp / "summary.json"), *extra]
    data_root = reproduce.REPO_ROOT.parent / "shared" / "data"
    if data_root.is_dir():
        command += ["--data-root", str(data_root)]
    result = subprocess.run(command, cwd=reproduce.REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result, json.loads((tmp / "summary.json").read_text())


def untimed(metrics):
    return {k: v for k, v in metrics.items() if not any(t in k for t in TIMED)}


def test_two_jobs_give_the_serial_results(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run(serial)
    out, summary = run(parallel, "--jobs", "2")
    assert "2 executed, 0 cached" in out.stdout and "with 2 job(s) x 1 thread(s)" in out.stdout
    for name in CHAPTERS:
        assert summary[name]["status"] == "ok" and not summary[name]["cached"]
        assert (parallel / "executed" / "logs" / f"{name}.log").is_file()  # each job's log kept
        a = json.loads((serial / "results" / "smoke" / f"{name}.json").read_text())
        b = json.loads((parallel / "results" / "smoke" / f"{name}.json").read_text())
        assert a["metrics"] and untimed(a["metrics"]) == untimed(b["metrics"]), name
        assert a["claims"] == b["claims"] or [c["id"] for c in a["claims"]] == [c["id"] for c in b["claims"]]
    # the parallel run overlapped: its wall time is below the sum of its notebooks' times
    total = float(re.search(r"cached, in (\d+) s with", out.stdout).group(1))
    assert total < sum(summary[n]["seconds"] for n in CHAPTERS)
