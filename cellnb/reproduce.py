"""The one runner: ``python -m cellnb.reproduce`` executes the book's notebooks with papermill.

For each chapter it reads ``notebooks/<name>.py`` (jupytext percent format), checks the
parameters you pass against the notebook's single ``parameters`` cell (names and types; papermill
itself only warns about unknown ones), executes it headlessly into ``book/executed/<name>.ipynb``
(the folder the book renders) and reads back the ``results/<profile>/<name>.json`` it wrote.

Each chapter runs in a child process whose output (kernel messages included) goes to
``_build/logs/<name>.log``; the terminal shows a progress bar and the summary table.

**Cache.** A chapter is executed again only when something it depends on changed: its notebook
source, the ``cellnb`` modules its kernel imported (recorded at the end of each run, with the file
listing of every package folder all of whose modules it imported), its parameters and profile, the device kind, the
listing (names, sizes, modification times) of the data root, and the versions of python, torch,
torchvision and numpy. The key, the modules and the original run's date are stored in
``book/executed/<name>.cache.json`` beside the executed notebook; a cached chapter also needs its
executed notebook and an unchanged result JSON. The comparison chapter aggregates the others, so its
key also holds their current keys and result files: it is stale whenever one of them is.
``--force`` re-runs everything, ``--force NAME...`` the named chapters.

**Jobs.** ``--jobs N`` runs independent chapters in parallel (the comparison after the others),
with torch threads per job capped so that jobs x threads <= cores; on a machine with several GPUs
each job gets its own GPU through ``CUDA_VISIBLE_DEVICES``.

It keeps going past a failing notebook and exits non-zero at the end, naming each failed
notebook with the cell and error that failed. Examples::

    python -m cellnb.reproduce --list
    python -m cellnb.reproduce --profile smoke --only data
    python -m cellnb.reproduce --profile quick --data-root ../shared/data -p n_train 32
    python -m cellnb.reproduce --profile quick --jobs 2 --force ssrnet
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from cellnb.config import PROFILES, resolve_profile
from cellnb.utils import REPO_ROOT, RESULTS_DIR_ENV, results_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
EXECUTED_DIR = REPO_ROOT / "book" / "executed"
LOG_DIR = REPO_ROOT / "_build" / "logs"
PACKAGE_DIR = Path(__file__).resolve().parent
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
    "own_images",
    "speed",
)
#: Chapters that read other chapters' results (None: every other chapter). They run after those
#: chapters and are stale whenever one of them is.
AGGREGATES: dict[str, tuple[str, ...] | None] = {}
STANDARD_PARAMETERS = ("profile", "device", "seed", "data_root")
THREADS_PARAMETER = "num_threads"
HEADLINE_COUNT = 3
#: Bump when the runner changes what an executed notebook looks like: every cache entry goes stale.
CACHE_VERSION = 1
VERSIONED_LIBRARIES = ("torch", "torchvision", "numpy")
#: Shown instead of machine paths in executed notebooks (the book renders them).
DATA_ROOT_PLACEHOLDER = "<data root>"
REPO_PLACEHOLDER = "<repo>"
_DEPS_CELL_TAG = "cellnb-runner-deps"


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
    cached: bool = False  # True: not executed, the cached run is still valid
    run_date: str = ""  # when the notebook was executed (the original run's date when cached)
    reason: str = ""  # why it was executed (what changed), or "" when cached
    log: str = ""
    modules: list[str] = field(default_factory=list)  # cellnb files its kernel imported (relative paths)


# ------------------------------------------------------------------------------ notebooks, parameters
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
    for cell in notebook.cells:  # the book shows neither the defaults nor the injected values
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
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0], node.value
        else:
            raise RunnerError(f"the parameters cell may only assign literals; found: {ast.unparse(node)}")
        try:
            params[target.id] = ast.literal_eval(value)
        except ValueError:
            raise RunnerError(f"parameter {target.id!r} is not a literal: {ast.unparse(value)}") from None
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


def profile_hint(name: str, key: str, profile: str) -> Any:
    """The value of ``key`` in ``cellnb.experiments.<name>.SETTINGS[profile]`` (None if absent).

    A notebook parameter declared ``None`` means "the profile's value": its type is that value's.
    """
    import importlib

    try:
        settings = getattr(importlib.import_module(f"cellnb.experiments.{name}"), "SETTINGS", {})
        return dict(settings.get(profile) or {}).get(key)
    except Exception:
        return None


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool (True or False)"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def coerce_parameter(name: str, key: str, text: Any, default: Any, hint: Any = None) -> Any:
    """The value of ``-p key text`` for a parameter declared with ``default``, or RunnerError.

    The type must match the declared default: a bool takes ``True``/``False``; an int an integer;
    a float a number; a str any text; a ``None`` default takes ``None`` or a value of the type of
    ``hint`` (the profile's value, see :func:`profile_hint`), or any literal without a hint.
    """
    value = parse_value(text) if isinstance(text, str) else text
    reference = hint if default is None else default
    if default is None and value is None:
        return None
    if reference is None:  # None default and no hint: any literal
        return value
    expected = _type_name(reference) + (" or None" if default is None else "")

    def refuse():
        raise RunnerError(
            f"parameter {key!r} of notebook {name!r} expects {expected} (declared default {default!r}), "
            f"got {text!r}")

    if isinstance(reference, bool):
        if not isinstance(value, bool):
            refuse()
        return value
    if isinstance(reference, int):
        if isinstance(value, bool) or not isinstance(value, int):
            refuse()
        return value
    if isinstance(reference, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            refuse()
        return float(value)
    if isinstance(reference, str):
        return value if isinstance(value, str) else str(text)
    if not isinstance(value, type(reference)):
        refuse()
    return value


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


# ------------------------------------------------------------------------------ the input-hash cache
def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes, None if it does not exist."""
    try:
        return _digest(Path(path).read_bytes())
    except FileNotFoundError:
        return None


def package_digests(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """sha256 of every source and data file of the package, by path relative to its parent."""
    out = {}
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            out[path.relative_to(package_dir.parent).as_posix()] = _digest(path.read_bytes())
    return out


def complete_folders(modules: Sequence[str], digests: Mapping[str, str]) -> list[str]:
    """Package folders all of whose modules the kernel imported: a package that imports its siblings
    (``cellnb.models``, ``cellnb.methods``) would import a module added there too."""
    imported = set(modules)
    folders = sorted({m.rsplit("/", 1)[0] for m in imported})
    return [f for f in folders
            if all(p in imported for p in digests if p.endswith(".py") and p.rsplit("/", 1)[0] == f)]


def module_components(deps: Mapping[str, Any] | None, digests: Mapping[str, str]) -> dict[str, Any]:
    """What a chapter's package dependency is: the digests of the modules its kernel imported
    (``deps["modules"]``) and the file listing of the folders whose every module it imported
    (``deps["folders"]``: a new module there changes the listing). ``deps`` None (no record yet):
    every package file."""
    if not deps or not deps.get("modules"):
        return {"all": dict(digests)}
    return {
        "modules": {m: digests.get(m) for m in sorted(deps["modules"])},
        "folders": {f: sorted(p for p in digests if p.rsplit("/", 1)[0] == f) for f in deps.get("folders", [])},
    }


def data_listing(data_root: str | None) -> list[tuple[str, int, int]] | None:
    """``(relative path, size, mtime_ns)`` of every file under the data root (None: no root)."""
    if data_root is None:
        return None
    root = Path(data_root)
    rows = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            try:
                st = path.stat()
            except OSError:
                continue
            rows.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return rows


def library_versions() -> dict[str, str]:
    """Python and the versions of the libraries whose numerics the results depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in VERSIONED_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def _json_digest(value: Any) -> str:
    return _digest(json.dumps(value, sort_keys=True, default=str).encode())


def cache_path(output_dir: Path, name: str) -> Path:
    return Path(output_dir) / f"{name}.cache.json"


def read_cache(output_dir: Path, name: str) -> dict[str, Any] | None:
    path = cache_path(output_dir, name)
    try:
        entry = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return entry if entry.get("cache_version") == CACHE_VERSION else None


@dataclass
class Context:
    """What every chapter of one runner call shares."""

    notebook_dir: Path
    output_dir: Path
    results_root: Path
    log_dir: Path
    device_kind: str  # cpu | cuda: what "auto" resolves to here
    versions: dict[str, str]
    data: list | None
    chapters: list[str]  # every chapter present
    base: dict[str, Any]  # standard parameters
    extra: dict[str, Any]  # -p values (already typed)
    threads: int | None  # num_threads passed to notebooks that declare it


def chapter_parameters(ctx: Context, name: str) -> dict[str, Any]:
    """The parameters the runner passes to ``name``: standard ones, -p ones it declares, threads."""
    declared = declared_parameters(read_notebook(name, ctx.notebook_dir))
    params = {**ctx.base, **{k: v for k, v in ctx.extra.items() if k in declared}}
    if THREADS_PARAMETER in declared and THREADS_PARAMETER not in ctx.extra and ctx.threads is not None:
        params[THREADS_PARAMETER] = ctx.threads
    return params


def aggregated(name: str, chapters: Sequence[str]) -> list[str]:
    """The chapters whose results ``name`` reads."""
    if name not in AGGREGATES:
        return []
    listed = AGGREGATES[name]
    return [c for c in (chapters if listed is None else listed) if c != name and c in chapters]


def input_components(ctx: Context, name: str, params: Mapping[str, Any], deps: Mapping[str, Any] | None,
                     digests: Mapping[str, str], _seen: frozenset = frozenset()) -> dict[str, Any]:
    """Everything the run of ``name`` depends on, as digests (the cache key hashes this)."""
    components: dict[str, Any] = {
        "cache_version": CACHE_VERSION,
        "notebook": file_digest(ctx.notebook_dir / f"{name}.py"),
        "package": _json_digest(module_components(deps, digests)),
        "parameters": _json_digest(params),
        "device": ctx.device_kind,
        "data": _json_digest(ctx.data),
        "versions": _json_digest(ctx.versions),
    }
    for other in aggregated(name, ctx.chapters):
        if other in _seen:
            continue
        entry = read_cache(ctx.output_dir, other)
        other_key = cache_key(input_components(ctx, other, chapter_parameters(ctx, other),
                                               entry.get("deps") if entry else None, digests,
                                               _seen | {name}))
        results = {p: file_digest(ctx.results_root / p / f"{other}.json") for p in PROFILES}
        components[f"aggregates/{other}"] = _json_digest({"key": other_key, "results": results})
    return components


def cache_key(components: Mapping[str, Any]) -> str:
    return _json_digest(dict(components))


def module_details(deps: Mapping[str, Any] | None, digests: Mapping[str, str]) -> dict[str, str | None]:
    return dict(module_components(deps, digests).get("modules") or {})


def staleness(ctx: Context, name: str, params: Mapping[str, Any], digests: Mapping[str, str],
              forced: bool) -> tuple[dict[str, Any] | None, str, dict[str, Any]]:
    """``(cache entry if still valid else None, why stale, current components)``."""
    entry = read_cache(ctx.output_dir, name)
    deps = entry.get("deps") if entry else None
    components = input_components(ctx, name, params, deps, digests)
    if forced:
        return None, "forced", components
    if entry is None:
        return None, "no cached run", components
    result = ctx.results_root / params["profile"] / f"{name}.json"
    if not (ctx.output_dir / f"{name}.ipynb").is_file():
        return None, "executed notebook missing", components
    if file_digest(result) is None:
        return None, "result file missing", components
    if file_digest(result) != entry.get("result_sha256"):
        return None, "result file changed since the cached run", components
    if cache_key(components) == entry.get("key"):
        return entry, "", components
    changed = [k for k, v in components.items() if entry.get("components", {}).get(k) != v]
    if "package" in changed:
        old = entry.get("module_digests", {})
        new = module_details(deps, digests)
        files = [m for m in sorted(set(old) | set(new)) if old.get(m) != new.get(m)]
        changed.remove("package")
        changed.insert(0, "package: " + (", ".join(files[:4]) + (" ..." if len(files) > 4 else "")
                                         if files else "a module was added to or removed from an imported package"))
    return None, "changed: " + "; ".join(changed), components


def write_cache(ctx: Context, outcome: Outcome, params: Mapping[str, Any], digests: Mapping[str, str],
                components_before: Mapping[str, Any]) -> Path:
    """Record a successful run: the key over its inputs as they were when it started."""
    from cellnb.results import atomic_write_text

    deps = ({"modules": sorted(outcome.modules), "folders": complete_folders(outcome.modules, digests)}
            if outcome.modules else None)
    components = dict(components_before)
    components["package"] = _json_digest(module_components(deps, digests))
    result = ctx.results_root / params["profile"] / f"{outcome.name}.json"
    entry = {
        "cache_version": CACHE_VERSION,
        "name": outcome.name,
        "key": cache_key(components),
        "components": components,
        "deps": deps,
        "module_digests": module_details(deps, digests),
        "run_date": outcome.run_date,
        "seconds": outcome.seconds,
        "profile": params["profile"],
        "device": outcome.device,
        "result_sha256": file_digest(result),
        "headline": outcome.headline,
    }
    return atomic_write_text(cache_path(ctx.output_dir, outcome.name), json.dumps(entry, indent=2) + "\n")


# ------------------------------------------------------------------------------ executing one notebook
DEPS_SOURCE = """\
import json as _json, sys as _sys
_mods = sorted({getattr(_m, "__file__", None) or "" for _n, _m in list(_sys.modules.items())
                if _n == "cellnb" or _n.startswith("cellnb.")} - {""})
with open(%r, "w") as _f:
    _json.dump(_mods, _f)
"""


def redact(notebook, replacements: Sequence[tuple[str, str]]) -> None:
    """Replace machine paths in every cell's source and outputs and in papermill's metadata."""
    pairs = sorted(((old, new) for old, new in replacements if old), key=lambda p: -len(p[0]))

    def fix(value):
        if isinstance(value, str):
            for old, new in pairs:
                value = value.replace(old, new)
            return value
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            for k in list(value):
                value[k] = fix(value[k])
            return value
        return value

    for cell in notebook.cells:
        cell["source"] = fix(cell.get("source", ""))
        if "outputs" in cell:
            cell["outputs"] = fix(cell["outputs"])
    if "papermill" in notebook.metadata:
        notebook.metadata["papermill"] = fix(notebook.metadata["papermill"])


def finish_notebook(path: Path, data_root: str | None) -> None:
    """After execution: drop the runner's dependency cell, hide papermill's injected-parameters cell
    (the book shows neither) and replace machine paths (data root, repository) by placeholders."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if _DEPS_CELL_TAG not in c.get("metadata", {}).get("tags", [])]
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    redact(notebook, [(data_root or "", DATA_ROOT_PLACEHOLDER), (str(REPO_ROOT), REPO_PLACEHOLDER)])
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(notebook, tmp)
    os.replace(tmp, path)


def execute(
    name: str,
    parameters: dict[str, Any],
    output_dir: Path,
    results_root: Path,
    notebook_dir: Path = NOTEBOOK_DIR,
) -> Outcome:
    """Execute one notebook with papermill in this process; never raises for a notebook failure."""
    import nbformat
    import papermill

    outcome = Outcome(name)
    started = time.time()
    outcome.run_date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    output_dir.mkdir(parents=True, exist_ok=True)
    result_path = results_root / parameters["profile"] / f"{name}.json"
    output_path = output_dir / f"{name}.ipynb"
    env_backup = dict(os.environ)
    try:
        notebook = read_notebook(name, notebook_dir)
        with tempfile.TemporaryDirectory() as tmp:
            deps_path = Path(tmp) / "modules.json"
            deps = nbformat.v4.new_code_cell(DEPS_SOURCE % str(deps_path))
            deps.metadata["tags"] = ["remove-cell", _DEPS_CELL_TAG]
            notebook.cells.append(deps)
            source = Path(tmp) / f"{name}.ipynb"
            nbformat.write(notebook, source)
            os.environ[RESULTS_DIR_ENV] = str(results_root)
            os.environ.setdefault("CELLNB_PROGRESS", "0")
            os.environ.setdefault("TQDM_DISABLE", "1")
            try:
                papermill.execute_notebook(
                    str(source),
                    str(output_path),
                    parameters=parameters,
                    kernel_name="python3",
                    language="python",
                    cwd=str(REPO_ROOT),
                    progress_bar=False,
                    log_output=False,
                    request_save_on_cell_execute=False,
                )
            finally:
                if output_path.is_file():
                    finish_notebook(output_path, parameters.get("data_root"))
            if deps_path.is_file():
                files = [Path(f).resolve() for f in json.loads(deps_path.read_text())]
                outcome.modules = sorted(f.relative_to(PACKAGE_DIR.parent).as_posix() for f in files
                                         if f.is_relative_to(PACKAGE_DIR))
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


def worker_main(spec_path: Path) -> int:
    """Child-process entry: execute the notebook described in ``spec_path``, write the outcome beside it."""
    spec = json.loads(Path(spec_path).read_text())
    outcome = execute(spec["name"], spec["parameters"], Path(spec["output_dir"]), Path(spec["results_root"]),
                      Path(spec["notebook_dir"]))
    Path(spec["outcome"]).write_text(json.dumps(asdict(outcome)))
    return 0


def run_in_child(name: str, params: Mapping[str, Any], ctx: Context, env: Mapping[str, str],
                 children: dict | None = None, stopped: threading.Event | None = None) -> Outcome:
    """Execute one notebook in a child process; its output (kernel messages too) goes to its log."""
    ctx.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = ctx.log_dir / f"{name}.log"
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"name": name, "parameters": dict(params), "output_dir": str(ctx.output_dir),
                "results_root": str(ctx.results_root), "notebook_dir": str(ctx.notebook_dir),
                "outcome": str(Path(tmp) / "outcome.json")}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        started = time.time()
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "cellnb.reproduce", "--worker", str(spec_path)],
                                    stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=REPO_ROOT,
                                    start_new_session=True)
            if children is not None:
                children[name] = proc
            code = proc.wait()
            if children is not None:
                children.pop(name, None)
        outcome_path = Path(spec["outcome"])
        if outcome_path.is_file():
            outcome = Outcome(**json.loads(outcome_path.read_text()))
        else:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.is_file() else []
            outcome = Outcome(name, status="failed", seconds=round(time.time() - started, 1),
                              error=f"runner child exited {code}: {tail[0] if tail else 'no output'}")
            if stopped is not None and stopped.is_set():
                outcome.error = "stopped at the --time-limit"
    outcome.log = str(log_path)
    return outcome


# ------------------------------------------------------------------------------ timings and the table
def record_timings(
    outcomes: list[Outcome], profile: str, results_root: Path, total: float, all_names: Sequence[str],
    jobs: int = 1,
) -> Path | None:
    """Merge wall times (kernel start included) of the executed notebooks into
    ``results/timings/<profile>.json``; cached chapters keep their recorded times (nothing is written
    when every chapter was cached)."""
    from cellnb.results import atomic_write_text
    from cellnb.utils import versions

    executed = [o for o in outcomes if not o.cached]
    if not executed:
        return None
    path = results_root / TIMINGS_DIR_NAME / f"{profile}.json"
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"notebooks": {}}
    for outcome in executed:
        if outcome.status == "ok":
            data["notebooks"][outcome.name] = {"seconds": outcome.seconds, "device": outcome.device}
    if executed and all(o.status == "ok" for o in executed) and {o.name for o in executed} >= set(all_names):
        data["all_notebooks_seconds"] = round(total, 1)
        data["all_notebooks_jobs"] = jobs
    else:  # a partial run makes an earlier whole-run total stale
        data.pop("all_notebooks_seconds", None)
        data.pop("all_notebooks_jobs", None)
    data["versions"] = versions()
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def format_table(outcomes: list[Outcome]) -> str:
    rows = [("notebook", "status", "seconds", "device", "run", "headline metrics")]
    for o in outcomes:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in o.headline.items()) if o.status == "ok" else o.error
        run = f"cached ({o.run_date})" if o.cached else ("executed" if o.status == "ok" else "-")
        rows.append((o.name, o.status, f"{o.seconds:.1f}", o.device or "-", run, metrics))
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(n)) + "  " + r[n] for r in rows]
    lines.insert(1, "-" * min(120, max(len(line) for line in lines)))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ devices, threads, jobs
def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_job(requested: int | None, jobs: int, cores: int) -> int:
    """Torch threads per job so that ``jobs * threads <= cores``: ``requested`` (None: 1, the notebooks'
    repeatable default; 0: all a job's share of the cores), capped at the share."""
    share = max(1, cores // max(jobs, 1))
    if requested is None:
        requested = 1
    return share if requested == 0 else max(1, min(int(requested), share))


def visible_gpus(device: str) -> list[str]:
    """GPU ids to hand out one per job (empty on a CPU run or a machine without CUDA)."""
    if device == "cpu":
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return []
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def require_cuda() -> None:
    """``--device cuda`` on a machine where torch sees no CUDA device: refuse before anything runs."""
    import torch

    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise RunnerError(
            f"--device cuda requested but torch {torch.__version__} ({build}) sees no CUDA device; "
            "nothing was run (use --device cpu or auto)")


def distributed_rank() -> tuple[int, int]:
    """``(rank, world size)`` when started by torchrun, else ``(0, 1)``."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


# ------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cellnb.reproduce",
        description="Execute the book's notebooks with papermill and record their results; "
                    "a chapter whose inputs did not change is not executed again.",
    )
    parser.add_argument("--profile", default="auto", help="auto (full on CUDA, quick otherwise), smoke, quick, full")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these notebooks")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--data-root", default=None, help="folder with real data (vgg_cells/, mbm/); default: $CELLNB_DATA_ROOT or none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, then exit")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="any other notebook parameter (repeatable); its type must match the declared default")
    parser.add_argument("--force", nargs="*", metavar="NAME", default=None,
                        help="execute even if cached: every selected notebook, or the named ones")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="notebooks executed in parallel (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per notebook (default 1; 0: cores / jobs); capped so jobs x threads <= cores")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop running notebooks after this many seconds (they and the ones not started fail)")
    parser.add_argument("--output-dir", type=Path, default=EXECUTED_DIR, help="where executed notebooks go")
    parser.add_argument("--results-dir", type=Path, default=None, help="where result JSON goes (default: results/)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="where each notebook's log goes (default: _build/logs, or <output-dir>/logs)")
    parser.add_argument("--summary-json", type=Path, default=None, help="also write the outcomes as JSON here")
    parser.add_argument("--notebooks-dir", type=Path, default=NOTEBOOK_DIR, help="where notebook sources are")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def plan(args, names: list[str]) -> tuple[Context, list[tuple[str, dict[str, Any]]], int, list[str]]:
    """Validate the command line (RunnerError on any mistake) and return what to run."""
    if args.profile not in ("auto",) + PROFILES:
        raise RunnerError(f"unknown profile {args.profile!r}; choose from {['auto', *PROFILES]}")
    if args.device not in ("auto", "cpu", "cuda"):
        raise RunnerError(f"unknown device {args.device!r}; choose from ['auto', 'cpu', 'cuda']")
    if args.jobs < 1:
        raise RunnerError(f"--jobs must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 0:
        raise RunnerError(f"--threads must be >= 0, got {args.threads}")
    selected = args.only or names
    unknown = [n for n in selected + list(args.force or []) if n not in names]
    if unknown:
        raise RunnerError(f"unknown notebook(s) {unknown}; choose from {names}")
    selected = [n for n in names if n in selected]  # book order: aggregating chapters last
    raw = {key: value for key, value in args.p}
    clash = sorted(set(raw) & set(STANDARD_PARAMETERS))
    if clash:
        raise RunnerError(f"use --{clash[0].replace('_', '-')} instead of -p {clash[0]}")
    if args.device == "cuda":
        require_cuda()
    profile = resolve_profile(args.profile, args.device)
    data_root = args.data_root or os.environ.get("CELLNB_DATA_ROOT") or None
    if data_root is not None:
        data_root = str(Path(data_root).expanduser().resolve())
        if not Path(data_root).is_dir():
            raise RunnerError(f"--data-root {data_root!r} does not exist")
    base = {"profile": profile, "device": args.device, "seed": args.seed, "data_root": data_root}
    extra: dict[str, Any] = {}
    declared_by = {}
    for name in selected:
        declared = declared_parameters(read_notebook(name, args.notebooks_dir))
        declared_by[name] = declared
        check_parameters(name, declared, {**base, **raw})
        for key, text in raw.items():
            hint = profile_hint(name, key, profile) if declared[key] is None else None
            extra[key] = coerce_parameter(name, key, text, declared[key], hint)
    gpus = visible_gpus(args.device)
    cores = available_cores()
    threads = threads_per_job(args.threads, args.jobs, cores)
    if args.threads is not None and args.threads > threads:
        print(f"note: {args.jobs} job(s) x {args.threads} threads exceeds {cores} cores; using {threads} "
              "thread(s) per job", file=sys.stderr)
    device_kind = "cuda" if (args.device != "cpu" and gpus) else resolve_device_kind(args.device)
    output_dir = args.output_dir.resolve()
    log_dir = (args.log_dir or (LOG_DIR if output_dir == EXECUTED_DIR.resolve() else output_dir / "logs")).resolve()
    ctx = Context(notebook_dir=args.notebooks_dir, output_dir=output_dir,
                  results_root=(args.results_dir or results_dir()).resolve(), log_dir=log_dir,
                  device_kind=device_kind, versions=library_versions(), data=data_listing(data_root),
                  chapters=names, base=base, extra=extra, threads=threads)
    plans = [(name, chapter_parameters(ctx, name)) for name in selected]
    return ctx, plans, threads, gpus


def resolve_device_kind(device: str) -> str:
    if device == "cpu":
        return "cpu"
    from cellnb.utils import select_device

    return select_device(device).type


def child_env(threads: int, gpu: str | None, results_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[RESULTS_DIR_ENV] = str(results_root)
    env.setdefault("CELLNB_PROGRESS", "0")
    env.setdefault("TQDM_DISABLE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["JUPYTER_PLATFORM_DIRS"] = "1"  # jupyter_core's migration warning
    env["PYTHONWARNINGS"] = env.get("PYTHONWARNINGS") or "ignore::DeprecationWarning"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def longest_first(names: Sequence[str], results_root: Path, profile: str) -> list[str]:
    """``names`` ordered by their last measured wall time, longest first (book order among unknowns):
    with several jobs the long chapters start first, so the run ends sooner (LPT scheduling)."""
    path = Path(results_root) / "timings" / f"{profile}.json"
    try:
        seconds = {n: float(e["seconds"]) for n, e in json.loads(path.read_text()).get("notebooks", {}).items()}
    except (OSError, ValueError, KeyError, TypeError):
        seconds = {}
    order = {n: i for i, n in enumerate(names)}
    return sorted(names, key=lambda n: (-seconds.get(n, 0.0), order[n]))


def run_all(ctx: Context, plans: list[tuple[str, dict[str, Any]]], jobs: int, threads: int, gpus: list[str],
            force: Sequence[str] | None, quiet: bool = False, use_cache: bool = True,
            time_limit: float | None = None) -> list[Outcome]:
    """Execute (or take from the cache) every planned chapter, ``jobs`` at a time, aggregating chapters
    after the ones they read. Outcomes come back in plan order. After ``time_limit`` seconds the
    running notebooks are stopped and the pending ones not started (both reported as failed)."""
    from tqdm.auto import tqdm

    selected = [n for n, _ in plans]
    params_of = dict(plans)
    forced = set(selected if force is not None and len(force) == 0 else (force or ()))
    waits_for = {n: set(aggregated(n, ctx.chapters)) & set(selected) for n in selected}
    outcomes: dict[str, Outcome] = {}
    executed: set[str] = set()
    gpu_load = {g: 0 for g in gpus}
    lock = threading.Lock()
    bar = tqdm(total=len(plans), desc=f"notebooks ({plans[0][1]['profile'] if plans else ''})", unit="nb",
               file=sys.stdout, disable=quiet)

    def report(outcome: Outcome) -> None:
        if quiet:
            return
        if outcome.cached:
            line = f"{outcome.name}: cached (run {outcome.run_date}, {outcome.seconds:.0f} s then)"
        else:
            line = f"{outcome.name}: {outcome.status} in {outcome.seconds:.1f} s ({outcome.reason})"
            if outcome.error:
                line += f" -- {outcome.error}"
        tqdm.write(line)

    def launch(name: str) -> Outcome:
        params = params_of[name]
        digests = package_digests()  # the inputs as they are when the run starts
        components = input_components(ctx, name, params, None, digests)  # package part: write_cache
        reason = why[name]
        cache_path(ctx.output_dir, name).unlink(missing_ok=True)  # no valid entry while it runs
        with lock:
            gpu = min(gpu_load, key=gpu_load.get) if gpu_load else None
            if gpu is not None:
                gpu_load[gpu] += 1
        try:
            outcome = run_in_child(name, params, ctx, child_env(threads, gpu, ctx.results_root), children, stopped)
        finally:
            if gpu is not None:
                with lock:
                    gpu_load[gpu] -= 1
        outcome.reason = reason
        if outcome.status == "ok" and use_cache:
            write_cache(ctx, outcome, params, digests, components)
        return outcome

    why: dict[str, str] = {}
    pending = longest_first(selected, ctx.results_root, plans[0][1]["profile"]) if jobs > 1 and plans else list(selected)
    running: dict[Future, str] = {}
    children: dict[str, subprocess.Popen] = {}
    stopped = threading.Event()
    deadline = None if time_limit is None else time.time() + time_limit
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            if deadline is not None and time.time() >= deadline and not stopped.is_set():
                stopped.set()
                for proc in list(children.values()):
                    _stop(proc)
                for name in pending:
                    outcomes[name] = Outcome(name, status="failed", error="not started: --time-limit reached")
                    report(outcomes[name])
                    bar.update(1)
                pending = []
            for name in list(pending):
                if len(running) >= jobs:
                    break
                if waits_for[name] - set(outcomes):
                    continue  # an aggregated chapter is still pending or running
                pending.remove(name)
                params = params_of[name]
                is_forced = name in forced or bool(waits_for[name] & executed) or not use_cache
                entry, reason, _ = staleness(ctx, name, params, package_digests(), is_forced)
                if entry is not None:
                    record = json.loads((ctx.results_root / params["profile"] / f"{name}.json").read_text())
                    outcome = Outcome(name, status="ok", seconds=float(entry.get("seconds", 0.0)),
                                      device=record.get("device", ""), headline=headline(record, name),
                                      cached=True, run_date=entry.get("run_date", ""),
                                      modules=(entry.get("deps") or {}).get("modules", []))
                    outcomes[name] = outcome
                    report(outcome)
                    bar.update(1)
                    continue
                if not use_cache:
                    reason = "cache off under torchrun"
                elif name in forced:
                    reason = "forced"
                elif waits_for[name] & executed:
                    reason = "re-executed: " + ", ".join(sorted(waits_for[name] & executed))
                why[name] = reason
                with lock:
                    executed.add(name)
                running[pool.submit(launch, name)] = name
            if not running:
                continue
            bar.set_postfix_str(", ".join(sorted(running.values())))
            remaining = None if deadline is None or stopped.is_set() else max(0.1, deadline - time.time())
            done, _ = wait(list(running), timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                outcomes[name] = future.result()
                report(outcomes[name])
                bar.update(1)
    bar.close()
    return [outcomes[n] for n in selected]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a notebook's child process and everything in its session (its kernel exits with it)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    names = available_notebooks(args.notebooks_dir)
    rank, world = distributed_rank()
    try:
        if args.list:
            for name in names:
                params = declared_parameters(read_notebook(name, args.notebooks_dir))
                print(f"{name:20s} " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
            return 0
        if world > 1 and args.jobs != 1:
            raise RunnerError("under torchrun every rank runs the same notebooks one at a time: drop --jobs")
        ctx, plans, threads, gpus = plan(args, names)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    jobs = args.jobs
    if gpus and jobs > 1:
        print(f"{jobs} jobs over {len(gpus)} GPU(s): " + ("one chapter per GPU" if jobs <= len(gpus)
              else "GPUs are shared"), file=sys.stderr)
    if world > 1:
        # torchrun: every rank executes every chapter (the training inside is data-parallel); only
        # rank 0 writes executed notebooks, results and cache entries; the cache is off so that all
        # ranks take the same decisions.
        gpus = []  # each rank's kernel picks its GPU from LOCAL_RANK
        if rank != 0:
            scratch = Path(tempfile.mkdtemp(prefix=f"cellnb-rank{rank}-"))
            ctx.output_dir, ctx.results_root, ctx.log_dir = scratch / "executed", scratch / "results", scratch / "logs"
    start = time.time()
    outcomes = run_all(ctx, plans, jobs, threads, gpus, args.force, quiet=rank != 0, use_cache=world == 1,
                       time_limit=args.time_limit)
    total = time.time() - start
    if rank != 0:
        return 0 if all(o.status == "ok" for o in outcomes) else 1
    profile = plans[0][1]["profile"] if plans else resolve_profile(args.profile, args.device)
    record_timings(outcomes, profile, ctx.results_root, total, names, jobs)
    if args.summary_json:
        from cellnb.results import atomic_write_text

        atomic_write_text(args.summary_json, json.dumps({o.name: asdict(o) for o in outcomes}, indent=2) + "\n")
    n_cached = sum(o.cached for o in outcomes)
    print()
    print(format_table(outcomes))
    print(f"\nprofile {profile}; {len(outcomes)} notebook(s): {len(outcomes) - n_cached} executed, {n_cached} cached, "
          f"in {total:.0f} s with {jobs} job(s) x {threads} thread(s); results in {ctx.results_root / profile}; "
          f"logs in {ctx.log_dir}")
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        print("\nFAILED notebooks:", file=sys.stderr)
        for o in failed:
            where = f"{ctx.output_dir / (o.name + '.ipynb')} and {o.log}" if o.log else "nothing ran"
            print(f"  {o.name}: {o.error}  ({where})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
