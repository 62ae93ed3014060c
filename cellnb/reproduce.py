"""The one runner: ``python -m cellnb.reproduce`` executes the book's notebooks with papermill.

For each chapter it reads ``notebooks/<name>.py`` (jupytext percent format), checks the
parameters you pass against the notebook's single ``parameters`` cell (papermill itself only
warns about unknown ones), executes it headlessly into ``book/executed/<name>.ipynb`` (the
folder the book renders) and reads back the ``results/<profile>/<name>.json`` it wrote.

It keeps going past a failing notebook and exits non-zero at the end, naming each failed
notebook with the cell and error that failed. Examples::

    python -m cellnb.reproduce --list
    python -m cellnb.reproduce --profile smoke --only data
    python -m cellnb.reproduce --profile quick --data-root ../shared/data -p n_train 32
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cellnb.config import PROFILES, resolve_profile
from cellnb.utils import REPO_ROOT, RESULTS_DIR_ENV, results_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
EXECUTED_DIR = REPO_ROOT / "book" / "executed"
TIMINGS_DIR_NAME = "timings"
#: Book order. The comparison chapter reads every other chapter's results, so it runs last.
CHAPTERS: tuple[str, ...] = (
    "data",
    "ssrnet",
    "elmgan",
    "lowres_bloodcell",
    "mc_unet",
    "u_se_resnet",
    "comparison",
)
STANDARD_PARAMETERS = ("profile", "device", "seed", "data_root")
HEADLINE_COUNT = 3


class RunnerError(Exception):
    """A usage error: unknown notebook, profile or parameter. The message lists valid choices."""


@dataclass
class Outcome:
    """What happened to one notebook."""

    name: str
    status: str = "pending"  # ok | failed
    seconds: float = 0.0
    device: str = ""
    headline: dict[str, float] = field(default_factory=dict)
    error: str = ""


def available_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[str]:
    """Chapters with a notebook source, in book order (unknown extras sorted at the end)."""
    present = {p.stem for p in notebook_dir.glob("*.py") if not p.stem.startswith("_")}
    ordered = [n for n in CHAPTERS if n in present]
    return ordered + sorted(present - set(CHAPTERS))


def read_notebook(name: str, notebook_dir: Path = NOTEBOOK_DIR):
    """The notebook ``name`` as an nbformat object (via jupytext), with a python3 kernelspec."""
    import jupytext

    path = notebook_dir / f"{name}.py"
    if not path.is_file():
        raise RunnerError(f"no notebook source at {path}")
    notebook = jupytext.read(path, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.setdefault("language_info", {"name": "python"})
    for cell in notebook.cells:  # the book shows papermill's injected values, not the defaults
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    return notebook


def declared_parameters(notebook) -> dict[str, Any]:
    """Names and default values assigned in the notebook's one ``parameters`` cell.

    Raises RunnerError if there is not exactly one such cell, or if it holds anything but
    assignments of literals (the notebook contract).
    """
    cells = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RunnerError(f"expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise RunnerError(f"the parameters cell may only assign literals; found: {ast.unparse(node)}")
        try:
            params[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise RunnerError(f"parameter {node.targets[0].id!r} is not a literal: {ast.unparse(node.value)}") from None
    missing = [p for p in STANDARD_PARAMETERS if p not in params]
    if missing:
        raise RunnerError(f"the parameters cell lacks the standard parameter(s) {missing}")
    return params


def parse_value(text: str) -> Any:
    """``-p KEY VALUE``: a Python literal if it parses as one (``3``, ``0.5``, ``None``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(name: str, declared: dict[str, Any], given: dict[str, Any]) -> None:
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise RunnerError(
            f"notebook {name!r} does not declare parameter(s) {unknown}; its parameters are {sorted(declared)}"
        )


def headline(record: dict[str, Any], name: str) -> dict[str, float]:
    """The chapter's headline metrics: ``HEADLINE`` in its experiments module, else the first few."""
    keys: Sequence[str] = ()
    try:
        import importlib

        keys = getattr(importlib.import_module(f"cellnb.experiments.{name}"), "HEADLINE", ())
    except Exception:
        keys = ()
    metrics = record.get("metrics", {})
    chosen = [k for k in keys if k in metrics] or list(metrics)[:HEADLINE_COUNT]
    return {k: metrics[k] for k in chosen}


def describe_failure(error: BaseException) -> str:
    """One line naming the failed cell and the error, from papermill's exception."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        return f"cell {error.cell_index} (execution count {error.exec_count}): {error.ename}: {error.evalue}"
    return f"{type(error).__name__}: {error}"


def execute(
    name: str,
    parameters: dict[str, Any],
    output_dir: Path,
    results_root: Path,
    notebook_dir: Path = NOTEBOOK_DIR,
) -> Outcome:
    """Execute one notebook with papermill; never raises for a notebook failure."""
    import nbformat
    import papermill

    outcome = Outcome(name)
    started = time.time()
    output_dir.mkdir(parents=True, exist_ok=True)
    result_path = results_root / parameters["profile"] / f"{name}.json"
    env_backup = dict(os.environ)
    try:
        notebook = read_notebook(name, notebook_dir)
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / f"{name}.ipynb"
            nbformat.write(notebook, source)
            os.environ[RESULTS_DIR_ENV] = str(results_root)
            os.environ.setdefault("CELLNB_PROGRESS", "0")
            os.environ.setdefault("TQDM_DISABLE", "1")
            papermill.execute_notebook(
                str(source),
                str(output_dir / f"{name}.ipynb"),
                parameters=parameters,
                kernel_name="python3",
                language="python",
                cwd=str(REPO_ROOT),
                progress_bar=False,
                log_output=False,
                request_save_on_cell_execute=False,
            )
        if not result_path.is_file() or result_path.stat().st_mtime < started:
            raise RuntimeError(f"the notebook finished but did not write {result_path} (call run.save())")
        from cellnb.results import load

        record = load(result_path)
        outcome.status = "ok"
        outcome.device = record["device"]
        outcome.headline = headline(record, name)
    except Exception as error:  # keep going; reported at the end
        outcome.status = "failed"
        outcome.error = describe_failure(error)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
        outcome.seconds = round(time.time() - started, 1)
    return outcome


def record_timings(
    outcomes: list[Outcome], profile: str, results_root: Path, total: float, all_names: Sequence[str]
) -> Path:
    """Merge wall times (kernel start included) into ``results/timings/<profile>.json``."""
    from cellnb.results import atomic_write_text
    from cellnb.utils import versions

    path = results_root / TIMINGS_DIR_NAME / f"{profile}.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"notebooks": {}}
    for outcome in outcomes:
        if outcome.status == "ok":
            data["notebooks"][outcome.name] = {"seconds": outcome.seconds, "device": outcome.device}
    if outcomes and all(o.status == "ok" for o in outcomes) and {o.name for o in outcomes} >= set(all_names):
        data["all_notebooks_seconds"] = round(total, 1)
    else:  # a partial run makes an earlier whole-run total stale
        data.pop("all_notebooks_seconds", None)
    data["versions"] = versions()
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def format_table(outcomes: list[Outcome]) -> str:
    rows = [("notebook", "status", "seconds", "device", "headline metrics")]
    for o in outcomes:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in o.headline.items()) if o.status == "ok" else o.error
        rows.append((o.name, o.status, f"{o.seconds:.1f}", o.device or "-", metrics))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    lines.insert(1, "-" * min(120, max(len(line) for line in lines)))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cellnb.reproduce",
        description="Execute the book's notebooks with papermill and record their results.",
    )
    parser.add_argument("--profile", default="auto", help="auto (full on CUDA, quick otherwise), smoke, quick, full")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these notebooks")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--data-root", default=None, help="folder with real data (vgg_cells/, mbm/); default: $CELLNB_DATA_ROOT or none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, then exit")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="any other notebook parameter (repeatable)")
    parser.add_argument("--output-dir", type=Path, default=EXECUTED_DIR, help="where executed notebooks go")
    parser.add_argument("--results-dir", type=Path, default=None, help="where result JSON goes (default: results/)")
    parser.add_argument("--summary-json", type=Path, default=None, help="also write the outcomes as JSON here")
    parser.add_argument("--notebooks-dir", type=Path, default=NOTEBOOK_DIR, help="where notebook sources are")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = available_notebooks(args.notebooks_dir)
    try:
        if args.list:
            for name in names:
                params = declared_parameters(read_notebook(name, args.notebooks_dir))
                print(f"{name:20s} " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
            return 0
        if args.profile not in ("auto",) + PROFILES:
            raise RunnerError(f"unknown profile {args.profile!r}; choose from {['auto', *PROFILES]}")
        if args.device not in ("auto", "cpu", "cuda"):
            raise RunnerError(f"unknown device {args.device!r}; choose from ['auto', 'cpu', 'cuda']")
        profile = resolve_profile(args.profile, args.device)
        selected = args.only or names
        unknown = [n for n in selected if n not in names]
        if unknown:
            raise RunnerError(f"unknown notebook(s) {unknown}; choose from {names}")
        extra = {key: parse_value(value) for key, value in args.p}
        clash = sorted(set(extra) & set(STANDARD_PARAMETERS))
        if clash:
            raise RunnerError(f"use --{clash[0].replace('_', '-')} instead of -p {clash[0]}")
        data_root = args.data_root or os.environ.get("CELLNB_DATA_ROOT") or None
        if data_root is not None:
            data_root = str(Path(data_root).expanduser().resolve())
            if not Path(data_root).is_dir():
                raise RunnerError(f"--data-root {data_root!r} does not exist")
        base = {"profile": profile, "device": args.device, "seed": args.seed, "data_root": data_root}
        plans = []
        for name in selected:
            params = {**base, **extra}
            check_parameters(name, declared_parameters(read_notebook(name, args.notebooks_dir)), params)
            plans.append((name, params))
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from tqdm.auto import tqdm

    results_root = (args.results_dir or results_dir()).resolve()
    outcomes: list[Outcome] = []
    start = time.time()
    bar = tqdm(plans, desc=f"notebooks ({profile})", unit="nb", file=sys.stdout)
    for name, params in bar:
        bar.set_postfix_str(name)
        outcome = execute(name, params, args.output_dir.resolve(), results_root, args.notebooks_dir)
        outcomes.append(outcome)
        tqdm.write(f"{name}: {outcome.status} in {outcome.seconds:.1f} s" + (f" -- {outcome.error}" if outcome.error else ""))
    bar.close()
    total = time.time() - start
    record_timings(outcomes, profile, results_root, total, names)
    if args.summary_json:
        from dataclasses import asdict

        from cellnb.results import atomic_write_text

        atomic_write_text(args.summary_json, json.dumps({o.name: asdict(o) for o in outcomes}, indent=2) + "\n")
    print()
    print(format_table(outcomes))
    print(f"\nprofile {profile}; {len(outcomes)} notebook(s) in {total:.0f} s; results in {results_root / profile}")
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        print("\nFAILED notebooks:", file=sys.stderr)
        for o in failed:
            print(f"  {o.name}: {o.error}  (see {args.output_dir / (o.name + '.ipynb')})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
