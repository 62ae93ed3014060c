"""Generate the results tables from ``results/<profile>/*.json``: never edit the outputs by hand.

``python -m cellnb.tables`` writes:

- ``results/summary.csv``: one row per (chapter, profile, metric) with provenance columns;
- ``results/claims.csv``: the claim ledger: every claim with its kind (``paper`` / ``check``), basis
  (``measured here`` / ``other data`` / ``other device``), measurement, interval, n and verdict;
- ``book/generated/results.md``: per chapter, the trained models beside their floors and ceilings
  (converged? beats its floor?) and all metrics;
- ``book/generated/claims.md`` and ``claims_summary.md``: the papers' claims and our own checks in two
  tables, and the headline, which counts paper claims only and says why the inconclusive ones are;
- ``book/generated/reproduction.md``: a [Re]/[¬Re] summary per paper, generated from the ledger;
- ``book/generated/verdicts.svg``: every paper verdict at a glance;
- ``book/generated/timings.md``: wall time of every notebook per profile and device;
- ``book/generated/convergence.md``: per chapter, how many trained models the book's convergence
  rule passes, and how the half-budget measurement (what the second half of the budget bought)
  agrees with it.

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
        f"{record['seconds']:.0f} s; torch {v.get('torch')}, numpy {v.get('numpy')}"
        + (f"; CPU {v['cpu']}" if v.get("cpu") and record["device"] == "cpu" else "")
        + (f"; CPU bfloat16 {v['cpu_bfloat16']}" if v.get("cpu_bfloat16") and record["device"] == "cpu" else "") + "."
    )


def models_markdown(record: dict[str, Any]) -> str:
    """Did each trained model learn? Metric, floor, ceiling, converged, beats floor, and what the
    second half of the budget bought where it was measured (:func:`cellnb.report.half_budget_cell`)."""
    from cellnb.report import half_budget_cell

    models = record.get("models") or {}
    if not models:
        return ""
    rows = []
    for name, m in models.items():
        rows.append([name, m.get("metric", ""), m.get("value"), m.get("floor"), m.get("ceiling"),
                     "yes" if m["converged"] else "**no**", "yes" if m["beats_floor"] else "**no**", half_budget_cell(m)])
    return markdown_table(["model", "metric", "value", "floor", "ceiling", "converged", "beats floor",
                           "gain of the 2nd half"], rows)


def _seeds_half_budget(model: dict[str, Any]) -> int:
    """How many seeds of a model record measured the half budget (records before
    ``seeds_half_budget`` existed: all of its seeds)."""
    return int(model.get("seeds_half_budget", model.get("seeds", model.get("n_seeds", 1))))


def _measured_half_budget(model: dict[str, Any]) -> bool:
    gain = model.get("half_budget_gain")
    return gain is not None and gain == gain and _seeds_half_budget(model) > 0


def convergence_markdown(records: list[dict[str, Any]]) -> str:
    """Per chapter (book records): trained models, how many the book's rule calls converged
    (:func:`cellnb.verdicts.converged`, the last quarter), how many measured the half budget, how
    many of those gained under 5 % on every seed (:func:`cellnb.verdicts.converged_over_budget`),
    on how many the two answers agree, and the median gain."""
    import numpy as np

    from cellnb.report import fmt_gain

    rows, totals = [], [0, 0, 0, 0, 0]
    gains_all: list[float] = []
    for record in book_records(records):
        models = list((record.get("models") or {}).values())
        if not models:
            continue
        measured = [m for m in models if _measured_half_budget(m)]
        over = [m.get("seeds_converged_over_budget", 0) == _seeds_half_budget(m) for m in measured]
        agree = sum(bool(m["converged"]) == o for m, o in zip(measured, over))
        gains = [float(m["half_budget_gain"]) for m in measured]
        gains_all += gains
        counts = [len(models), sum(bool(m["converged"]) for m in models), len(measured), sum(over), agree]
        totals = [a + b for a, b in zip(totals, counts)]
        rows.append([record["name"], record["profile"], *counts,
                     fmt_gain(float(np.median(gains))) if gains else "–"])
    if not rows:
        return "```{note}\nNo trained models in the committed results yet.\n```\n"
    rows.append(["**all chapters**", "", *totals, fmt_gain(float(np.median(gains_all))) if gains_all else "–"])
    return markdown_table(["chapter", "profile", "trained models", "converged (last quarter)", "measured half budget",
                           "2nd half gained < 5 % (every seed)", "the two agree", "median gain of the 2nd half"], rows)


def results_markdown(records: list[dict[str, Any]]) -> str:
    chosen = book_records(records)
    if not chosen:
        return "```{note}\nNo `quick` or `full` results are committed yet.\n```\n"
    parts = []
    for record in chosen:
        parts.append(f"### `{record['name']}` ({record['profile']} profile)\n")
        parts.append(provenance_line(record) + "\n")
        learned = models_markdown(record)
        if learned:
            parts.append("Trained models, each next to its floor (and ceiling where instances are scored):\n")
            parts.append(learned)
        parts.append(f":::{{dropdown}} All {len(record['metrics'])} metrics of `{record['name']}`\n")
        parts.append(markdown_table(["metric", "value"], sorted(record["metrics"].items())))
        parts.append(":::\n")
    return "\n".join(parts)


def verdict_label(claim: dict[str, Any]) -> str:
    """``holds`` / ``does not hold`` / ``inconclusive`` / ``not testable here`` (other device or data)."""
    if claim["holds"] is True:
        return "holds" if claim.get("kind", "paper") == "paper" else "passes"
    if claim["holds"] is False:
        return "does not hold" if claim.get("kind", "paper") == "paper" else "fails"
    if claim.get("basis") in ("other device", "other data"):
        return "not testable here"
    return "inconclusive"


REASONS = (  # (substring of the note, reason shown in the headline)
    ("not learned", "a model did not learn"),
    ("seed(s)/split(s)", "too few seeds"),
    ("capped", "metric capped by its post-processing"),
    ("overlaps", "interval overlaps the claimed threshold"),
)


def inconclusive_reason(claim: dict[str, Any]) -> str:
    if claim.get("basis") in ("other device", "other data"):
        return f"measured on {claim['basis']}"
    note = str(claim.get("note", ""))
    for key, reason in REASONS:
        if key in note:
            return reason
    return "no decisive measurement"


def claims_rows(records: list[dict[str, Any]], kind: str | None = None) -> list[list[Any]]:
    rows = []
    for record in book_records(records):
        for claim in record["claims"]:
            if kind is not None and claim.get("kind", "paper") != kind:
                continue
            interval = ("" if claim.get("low") is None else f"[{fmt(claim['low'])}, {fmt(claim['high'])}]")
            rows.append([record["name"], claim["statement"], verdict_label(claim), claim["measured"], interval,
                         claim.get("n") or "", claim.get("basis", ""), record["profile"], claim["paper"], claim["note"]])
    return rows


CLAIM_HEADER = ["chapter", "claim", "verdict", "measured", "95% interval", "n", "basis", "profile", "source", "note"]


def claims_markdown(records: list[dict[str, Any]]) -> str:
    paper = claims_rows(records, "paper")
    checks = claims_rows(records, "check")
    if not paper and not checks:
        return "```{note}\nNo claims recorded yet.\n```\n"
    text = "### The papers' claims\n\n" + (markdown_table(CLAIM_HEADER, paper) if paper else "None recorded.\n")
    text += ("\n### Our own checks\n\nParameter counts, generator statistics and consistency checks of the "
             "implementation: they test cellnb, not the papers.\n\n")
    text += markdown_table(CLAIM_HEADER, checks) if checks else "None recorded.\n"
    return text


def claims_summary_markdown(records: list[dict[str, Any]]) -> str:
    paper = [(r["name"], c) for r in book_records(records) for c in r["claims"] if c.get("kind", "paper") == "paper"]
    checks = [c for r in book_records(records) for c in r["claims"] if c.get("kind", "paper") == "check"]
    labels = [verdict_label(c) for _, c in paper]
    chapters = sorted({n for n, _ in paper})
    reasons: dict[str, int] = {}
    for _, c in paper:
        if c["holds"] is None and c.get("basis") not in ("other device", "other data"):
            reason = inconclusive_reason(c)
            reasons[reason] = reasons.get(reason, 0) + 1
    why = "; ".join(f"{n} because {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    untestable = [c for _, c in paper if verdict_label(c) == "not testable here"]
    devices = sum(c.get("basis") == "other device" for c in untestable)
    text = (
        f"Of the **{len(paper)}** claims of the papers checked in {len(chapters)} chapter(s), "
        f"**{labels.count('holds')}** hold, **{labels.count('does not hold')}** do not hold, "
        f"**{labels.count('inconclusive')}** are inconclusive" + (f" ({why})" if why else "") +
        f" and **{len(untestable)}** are not testable here"
        + (f" ({devices} concern hardware not measured here, {len(untestable) - devices} other data)" if untestable else "")
        + "."
    )
    if checks:
        ok = sum(c["holds"] is True for c in checks)
        bad = sum(c["holds"] is False for c in checks)
        text += (f" Separately, **{len(checks)}** of our own checks (parameter counts, generator statistics): "
                 f"{ok} pass, {bad} fail, {len(checks) - ok - bad} undecided.")
    return text + "\n"


CHAPTER_TITLES = {
    "data": "Data", "ssrnet": "SSRNet", "elmgan": "ELMGAN", "lowres_bloodcell": "Low-resolution blood cells",
    "mc_unet": "MC-Unet", "u_se_resnet": "U-SE-ResNet", "comparison": "Comparison",
}


def reproduction_markdown(records: list[dict[str, Any]]) -> str:
    """Per paper, in the spirit of ReScience's [Re]/[¬Re]: what was reproduced, what was not and why,
    which models did not learn, and what it cost. Generated from the claim ledger."""
    parts = []
    for record in book_records(records):
        paper = [c for c in record["claims"] if c.get("kind", "paper") == "paper"]
        if not paper:
            continue
        title = CHAPTER_TITLES.get(record["name"], record["name"])
        parts.append(f"### {title}\n")
        parts.append(f"Scope: {len(paper)} claim(s) of the paper checked at the `{record['profile']}` profile on "
                     f"{record['device']} ({record['seconds'] / 60:.1f} min).\n")
        groups = [("[Re] reproduced", [c for c in paper if c["holds"] is True]),
                  ("[¬Re] not reproduced", [c for c in paper if c["holds"] is False]),
                  ("inconclusive", [c for c in paper if verdict_label(c) == "inconclusive"]),
                  ("not testable here", [c for c in paper if verdict_label(c) == "not testable here"])]
        for head, claims in groups:
            if not claims:
                continue
            items = []
            for c in claims:
                extra = f" — {inconclusive_reason(c)}" if c["holds"] is None else ""
                measured = c["measured"]
                measured = fmt(measured) if isinstance(measured, float) else measured
                items.append(f"  - {c['statement']} (measured: {measured}{extra})")
            parts.append(f"- **{head}** ({len(claims)}):\n" + "\n".join(items))
        models = record.get("models") or {}
        failed = [n for n, m in models.items() if not (m["converged"] and m["beats_floor"])]
        if models:
            parts.append(f"- **Training**: {len(models) - len(failed)} of {len(models)} trained models converged "
                         f"and beat their floor" + (f"; not: {', '.join(failed)}" if failed else "") + ".")
        parts.append("")
    return "\n".join(parts) + "\n" if parts else "```{note}\nNo claims recorded yet.\n```\n"


VERDICT_COLOURS = {"holds": "#2e7d32", "does not hold": "#c62828", "inconclusive": "#f9a825",
                   "not testable here": "#9e9e9e"}


def verdict_figure_svg(records: list[dict[str, Any]]) -> str:
    """All paper verdicts at a glance: one row per chapter, one square per claim (SVG text, deterministic)."""
    rows = []
    for record in book_records(records):
        labels = [verdict_label(c) for c in record["claims"] if c.get("kind", "paper") == "paper"]
        if labels:
            rows.append((CHAPTER_TITLES.get(record["name"], record["name"]), labels))
    legend = sum(30 + 8 * len(label) for label in VERDICT_COLOURS) + 20
    width = max(210 + 26 * max([len(l) for _, l in rows] + [4]), legend)
    height = 30 * len(rows) + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="13">']
    for i, (title, labels) in enumerate(rows):
        y = 20 + 30 * i
        out.append(f'<text x="200" y="{y + 15}" text-anchor="end">{title}</text>')
        for j, label in enumerate(labels):
            out.append(f'<rect x="{210 + 26 * j}" y="{y}" width="22" height="22" rx="3" '
                       f'fill="{VERDICT_COLOURS[label]}"><title>{label}</title></rect>')
    y = 30 * len(rows) + 35
    x = 10
    for label, colour in VERDICT_COLOURS.items():
        out.append(f'<rect x="{x}" y="{y}" width="14" height="14" fill="{colour}"/>'
                   f'<text x="{x + 18}" y="{y + 12}">{label}</text>')
        x += 30 + 8 * len(label)
    out.append("</svg>")
    return "\n".join(out) + "\n"


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
    claim_rows = [[r["name"], r["profile"], c["id"], c.get("kind", ""), c.get("basis", ""), c["statement"],
                   c["paper"], c["measured"], "" if c["holds"] is None else c["holds"], c.get("n") or "",
                   "" if c.get("low") is None else c["low"], "" if c.get("high") is None else c["high"], c["note"]]
                  for r in records for c in r["claims"]]
    header = "<!-- generated by `python -m cellnb.tables` from results/; do not edit -->\n\n"
    files: dict[Path, str] = {}
    readme = readme_text(results_root, REPO_ROOT / "README.md") if results_root == REPO_ROOT / "results" else None
    if readme is not None:
        files[REPO_ROOT / "README.md"] = readme
    return files | {
        results_root / "summary.csv": csv_text(
            ["name", "profile", "device", "git_commit", "seed", "seconds", "started", "metric", "value"], summary_rows),
        results_root / "claims.csv": csv_text(
            ["name", "profile", "id", "kind", "basis", "statement", "paper", "measured", "holds", "n", "low", "high",
             "note"], claim_rows),
        generated_dir / "results.md": header + results_markdown(records),
        generated_dir / "claims.md": header + claims_markdown(records),
        generated_dir / "claims_summary.md": header + claims_summary_markdown(records),
        generated_dir / "reproduction.md": header + reproduction_markdown(records),
        generated_dir / "verdicts.svg": verdict_figure_svg(records),
        generated_dir / "timings.md": header + timings_markdown(records, results_root),
        generated_dir / "convergence.md": header + convergence_markdown(records),
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
