"""Generate the results tables from ``results/<profile>/*.json``: never edit the outputs by hand.

``python -m cellnb.tables`` writes:

- ``results/summary.csv``: one row per (chapter, profile, metric) with provenance columns;
- ``results/claims.csv``: every paper claim with its measurement and verdict;
- ``book/generated/results.md``: per-chapter metric tables for the results page;
- ``book/generated/claims.md`` and ``claims_summary.md``: the claims table and its one-line summary;
- ``book/generated/timings.md``: wall time of every notebook per profile and device.

Only ``quick`` and ``full`` results are tabulated (``smoke`` is a pipeline check, never a result).
The book shows ``full`` results where they exist and ``quick`` otherwise, and says which on every table. ``python -m cellnb.tables --check`` exits 1 if a committed file is stale.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from cellnb.config import PROFILES
from cellnb.results import atomic_write_text, load_all
from cellnb.utils import REPO_ROOT

BOOK_PROFILES = ("full", "quick")  # what the book shows, best first
GENERATED_DIR = REPO_ROOT / "book" / "generated"
VERDICT = {True: "holds", False: "does not hold", None: "not testable here"}


def fmt(value: Any) -> str:
    """Numbers to 4 significant digits; everything else as text, pipes escaped for Markdown."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def chapter_order(records: list[dict[str, Any]]) -> list[str]:
    from cellnb.reproduce import CHAPTERS

    names = {r["name"] for r in records}
    return [n for n in CHAPTERS if n in names] + sorted(names - set(CHAPTERS))


def book_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per chapter: ``full`` if present, else ``quick``; smoke never reaches the book."""
    chosen = []
    for name in chapter_order(records):
        for profile in BOOK_PROFILES:
            match = [r for r in records if r["name"] == name and r["profile"] == profile]
            if match:
                chosen.append(match[0])
                break
    return chosen


def provenance_line(record: dict[str, Any]) -> str:
    v = record["versions"]
    return (
        f"Profile **{record['profile']}** on **{record['device']}**, seed {record['seed']}, "
        f"commit `{record['git_commit'][:12]}`, started {record['started']}, "
        f"{record['seconds']:.0f} s; torch {v.get('torch')}, numpy {v.get('numpy')}."
    )


def results_markdown(records: list[dict[str, Any]]) -> str:
    chosen = book_records(records)
    if not chosen:
        return "```{note}\nNo `quick` or `full` results are committed yet.\n```\n"
    parts = []
    for record in chosen:
        parts.append(f"### `{record['name']}` ({record['profile']} profile)\n")
        parts.append(provenance_line(record) + "\n")
        parts.append(markdown_table(["metric", "value"], sorted(record["metrics"].items())))
    return "\n".join(parts)


def claims_rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for record in book_records(records):
        for claim in record["claims"]:
            rows.append([record["name"], claim["statement"], VERDICT[claim["holds"]], claim["measured"],
                         record["profile"], claim["paper"], claim["note"]])
    return rows


def claims_markdown(records: list[dict[str, Any]]) -> str:
    rows = claims_rows(records)
    if not rows:
        return "```{note}\nNo claims recorded yet.\n```\n"
    return markdown_table(["chapter", "claim", "verdict", "measured", "profile", "paper", "note"], rows)


def claims_summary_markdown(records: list[dict[str, Any]]) -> str:
    rows = claims_rows(records)
    verdicts = [r[2] for r in rows]
    chapters = sorted({r[0] for r in rows})
    return (
        f"Of the **{len(rows)}** paper claims checked in {len(chapters)} chapter(s), "
        f"**{verdicts.count('holds')}** hold, **{verdicts.count('does not hold')}** do not hold and "
        f"**{verdicts.count('not testable here')}** are not testable here.\n"
    )


def timings_markdown(records: list[dict[str, Any]], results_root: Path) -> str:
    rows = []
    for record in sorted(records, key=lambda r: (PROFILES.index(r["profile"]), r["name"])):
        rows.append([record["name"], record["profile"], record["device"], record["seconds"]])
    text = markdown_table(["notebook", "profile", "device", "seconds inside the notebook"], rows) if rows else ""
    totals = []
    for profile in BOOK_PROFILES[::-1]:
        path = results_root / "timings" / f"{profile}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            for name, entry in sorted(data.get("notebooks", {}).items()):
                totals.append([name, profile, entry["device"], entry["seconds"]])
            if "all_notebooks_seconds" in data:
                totals.append(["all notebooks (one runner call)", profile, "", data["all_notebooks_seconds"]])
    if totals:
        text += "\nWall time seen by the runner (kernel start included):\n\n"
        text += markdown_table(["notebook", "profile", "device", "seconds"], totals)
    return text or "```{note}\nNo timings recorded yet.\n```\n"


README_START = "<!-- costs:start (generated by python -m cellnb.tables) -->"
README_END = "<!-- costs:end -->"


def readme_costs(results_root: Path) -> str:
    """The README's cost lines: per profile and device, total and per-notebook wall time."""
    lines = []
    for profile in ("smoke", "quick", "full"):
        path = results_root / "timings" / f"{profile}.json"
        if not path.is_file() or profile == "smoke":
            continue
        data = json.loads(path.read_text())
        devices = sorted({e["device"] for e in data["notebooks"].values()})
        per = ", ".join(f"{n} {e['seconds'] / 60:.1f} min" for n, e in data["notebooks"].items())
        total = data.get("all_notebooks_seconds")
        summed = sum(e["seconds"] for e in data["notebooks"].values())
        total_text = (f"all notebooks in one run: **{total / 60:.0f} min**; " if total
                      else f"sum over the notebooks: **{summed / 60:.0f} min**; ")
        lines.append(f"- `{profile}` on {', '.join(devices)}: {total_text}{per}.")
    if not any("full" in line[:10] for line in lines):
        lines.append("- `full` on a GPU: not measured yet (no GPU run has been committed).")
    return "\n".join(lines)


def readme_text(results_root: Path, readme: Path) -> str | None:
    if not readme.is_file():
        return None
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return None
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return head + README_START + "\n" + readme_costs(results_root) + "\n" + README_END + tail


def generate(results_root: Path | None = None, generated_dir: Path | None = None) -> dict[Path, str]:
    """Every generated file's path and text (nothing is written)."""
    results_root = Path(results_root or REPO_ROOT / "results")
    generated_dir = Path(generated_dir or GENERATED_DIR)
    records = [r for r in load_all(results_root) if r["profile"] in BOOK_PROFILES]
    summary_rows = []
    for r in records:
        for metric, value in sorted(r["metrics"].items()):
            summary_rows.append([r["name"], r["profile"], r["device"], r["git_commit"], r["seed"],
                                 r["seconds"], r["started"], metric, value])
    claim_rows = [[r["name"], r["profile"], c["id"], c["statement"], c["paper"], c["measured"],
                   "" if c["holds"] is None else c["holds"], c["note"]] for r in records for c in r["claims"]]
    header = "<!-- generated by `python -m cellnb.tables` from results/; do not edit -->\n\n"
    files: dict[Path, str] = {}
    readme = readme_text(results_root, REPO_ROOT / "README.md") if results_root == REPO_ROOT / "results" else None
    if readme is not None:
        files[REPO_ROOT / "README.md"] = readme
    return files | {
        results_root / "summary.csv": csv_text(
            ["name", "profile", "device", "git_commit", "seed", "seconds", "started", "metric", "value"], summary_rows),
        results_root / "claims.csv": csv_text(
            ["name", "profile", "id", "statement", "paper", "measured", "holds", "note"], claim_rows),
        generated_dir / "results.md": header + results_markdown(records),
        generated_dir / "claims.md": header + claims_markdown(records),
        generated_dir / "claims_summary.md": header + claims_summary_markdown(records),
        generated_dir / "timings.md": header + timings_markdown(records, results_root),
    }


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.is_file() or p.read_text() != text]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellnb.tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    files = generate(args.results_dir)
    if args.check:
        bad = stale(files)
        if bad:
            print("stale generated files (run `python -m cellnb.tables`):", *map(str, bad), sep="\n  ")
            return 1
        print(f"{len(files)} generated files are up to date")
        return 0
    for path, text in files.items():
        atomic_write_text(path, text)
    print(f"wrote {len(files)} files: " + ", ".join(p.name for p in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
