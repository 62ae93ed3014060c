"""Result files with provenance: ``results/<profile>/<name>.json``, written atomically.

A notebook starts a :class:`Run` right after its parameters cell, records metrics and
claims while it runs, and calls :meth:`Run.save` at the end::

    run = results.Run("ssrnet", profile=profile, device=device, seed=seed, data_root=data_root)
    run.metric("count_mae", 1.23)
    run.claim("macs_1_20", "MACs are 1/20 of U-Net", paper="SSRNet abstract",
              measured=0.07, holds=0.07 <= 0.05, note="ratio of MACs at 256x256")
    run.save()

Schema (every key always present): ``name, profile, device, git_commit, started, seconds,
seed, versions, data_root, settings, metrics, claims, models``. ``metrics`` is flat ``key -> number``
(each model's metric sits beside its floor, ``floor_<metric>``, and, for instances, its ceiling,
``ceiling_<metric>``); ``claims`` is a list of ``{id, statement, paper, measured, holds, note, kind,
basis, n, low, high}`` with ``holds`` one of true / false / null (null = inconclusive or not testable
here), ``kind`` ``paper`` (stated in a paper or its released code's README) or ``check`` (a
self-check), ``basis`` ``measured here`` / ``other data`` / ``other device``, ``n`` the number of
paired values (None for a deterministic measurement), ``low``/``high`` the 95 % interval, ``seeds``
the number of seeds or splits behind it and ``models`` the trained models it rests on.
``models`` maps each trained model to ``{converged, beats_floor, ...}`` (:meth:`Run.model`).

Comparative verdicts come from :func:`cellnb.verdicts.compare` through :meth:`Run.verdict`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from cellnb.config import PROFILES
from cellnb.utils import device_name, git_commit, results_dir, select_device, versions

REQUIRED_KEYS = (
    "name", "profile", "device", "git_commit", "started", "seconds", "seed",
    "versions", "data_root", "settings", "metrics", "claims", "models",
)
CLAIM_KEYS = ("id", "statement", "paper", "measured", "holds", "note", "kind", "basis", "n", "low", "high",
              "seeds", "models")
KINDS = ("paper", "check")
BASES = ("measured here", "other data", "other device")


@dataclass
class Claim:
    """A statement (a paper's, or a self-check) checked against a measurement."""

    id: str
    statement: str
    paper: str
    measured: str | float | None
    holds: bool | None
    note: str = ""
    kind: str = "paper"
    basis: str = "measured here"
    n: int | None = None
    low: float | None = None
    high: float | None = None
    seeds: int | None = None
    models: list[str] = field(default_factory=list)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file + rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _number(key: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
        raise TypeError(f"metric {key!r} must be a number, got {type(value).__name__}")
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metric {key!r} is {value}; refusing to record a non-finite number")
    return int(value) if isinstance(value, int) else float(value)


class Run:
    """Collects one notebook run's metrics and claims; :meth:`save` writes them with provenance."""

    def __init__(
        self,
        name: str,
        profile: str,
        device: str = "auto",
        seed: int = 0,
        data_root: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {PROFILES}")
        self.name = name
        self.profile = profile
        self.device = select_device(device)
        self.seed = int(seed)
        self.data_root = None if data_root in (None, "") else str(data_root)
        self.settings = dict(settings or {})
        self.metrics: dict[str, float | int] = {}
        self.claims: list[Claim] = []
        self.models: dict[str, dict[str, Any]] = {}
        self._glued: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def metric(self, key: str, value: Any) -> float | int:
        """Record one number; non-finite values raise."""
        self.metrics[key] = _number(key, value)
        return self.metrics[key]

    def update(self, values: Mapping[str, Any], prefix: str = "") -> None:
        for key, value in values.items():
            self.metric(prefix + key, value)

    def claim(
        self,
        id: str,
        statement: str,
        paper: str,
        measured: Any,
        holds: bool | None,
        note: str = "",
        *,
        kind: str = "paper",
        basis: str = "measured here",
        n: int | None = None,
        low: float | None = None,
        high: float | None = None,
        seeds: int | None = None,
        models: Any = (),
    ) -> Claim:
        """Record a claim with the measurement and a verdict (None = inconclusive / not testable here).

        Deterministic measurements (parameter counts, MACs) pass no ``n``; a noisy comparison goes
        through :meth:`verdict` instead, which fills ``n`` and the interval from
        :func:`cellnb.verdicts.compare`.
        """
        if kind not in KINDS:
            raise ValueError(f"claim {id!r}: kind must be one of {KINDS}, got {kind!r}")
        if basis not in BASES:
            raise ValueError(f"claim {id!r}: basis must be one of {BASES}, got {basis!r}")
        if holds is not None:
            holds = bool(holds)
        if basis == "other device" and holds is not None:
            raise ValueError(f"claim {id!r}: a claim about a device not measured here cannot hold or fail")
        if hasattr(measured, "item"):
            measured = measured.item()
        if isinstance(measured, float):
            measured = round(measured, 6)
        rnd = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
        claim = Claim(id, statement, paper, measured, holds, note, kind, basis,
                      None if n is None else int(n), rnd(low), rnd(high),
                      None if seeds is None else int(seeds), [str(m) for m in models])
        self.claims = [c for c in self.claims if c.id != id] + [claim]
        return claim

    def verdict(self, id: str, statement: str, paper: str, verdict: Any, *, kind: str = "paper",
                basis: str = "measured here", note: str = "") -> Claim:
        """Record a comparative claim from a :class:`cellnb.verdicts.Verdict` (estimate, interval, n)."""
        text = verdict.note + (f". {note}" if note else "")
        holds = verdict.holds if basis != "other device" else None
        return self.claim(id, statement, paper, verdict.estimate, holds, text, kind=kind, basis=basis,
                          n=verdict.n, low=verdict.low, high=verdict.high, seeds=verdict.n_groups,
                          models=verdict.models)

    def model(self, name: str, *, converged: bool, beats_floor: bool, metric: str | None = None,
              value: float | None = None, floor: float | None = None, ceiling: float | None = None,
              curve: Any = None, **extra: Any) -> dict[str, Any]:
        """Record whether trained model ``name`` learned: ``converged`` (:func:`cellnb.verdicts.converged`
        on its validation curve) and ``beats_floor`` (:func:`cellnb.verdicts.beats_floor`), with the
        metric, its floor and ceiling, and the validation curve (list of floats, rounded)."""
        entry: dict[str, Any] = {"converged": bool(converged), "beats_floor": bool(beats_floor)}
        for key, val in (("metric", metric), ("value", value), ("floor", floor), ("ceiling", ceiling)):
            if val is not None:
                entry[key] = val if isinstance(val, str) else round(float(val), 6)
        if curve is not None:
            entry["val_curve"] = [round(float(v), 6) for v in curve]
        for key, val in extra.items():
            entry[key] = round(float(val), 6) if isinstance(val, float) else val
        self.models[name] = entry
        return entry

    def learned(self, *names: str) -> dict[str, bool]:
        """``{name: converged and beats_floor}`` for the named models (all when none named), the
        ``learned`` argument of :func:`cellnb.verdicts.compare`."""
        names = names or tuple(self.models)
        missing = [n for n in names if n not in self.models]
        if missing:
            raise KeyError(f"no model status recorded for {missing}; known: {sorted(self.models)}")
        return {n: self.models[n]["converged"] and self.models[n]["beats_floor"] for n in names}

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profile": self.profile,
            "device": device_name(self.device),
            "git_commit": git_commit(),
            "started": self.started,
            "seconds": round(time.perf_counter() - self._t0, 2),
            "seed": self.seed,
            "versions": versions(),
            "data_root": self.data_root,
            "settings": {k: v for k, v in self.settings.items() if isinstance(v, (int, float, str, bool, type(None), list, tuple))},
            "metrics": dict(sorted(self.metrics.items())),
            "claims": [asdict(c) for c in self.claims],
            "models": dict(sorted(self.models.items())),
        }

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``<results>/<profile>/<name>.json`` atomically and return its path."""
        record = self.record()
        validate(record)
        path = Path(directory or results_dir()) / self.profile / f"{self.name}.json"
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")
        return path

    def glue(self, prefix: str | None = None) -> None:
        """Glue every metric (rounded) for myst-nb as ``<prefix>_<key>`` (prefix = run name).

        Safe to call several times: each key is glued once (myst-nb rejects duplicate keys), and a
        metric whose value changed after it was glued raises, so prose never shows a stale number.
        """
        from myst_nb import glue

        prefix = self.name if prefix is None else prefix
        for key, value in self.metrics.items():
            value = round(value, 4) if isinstance(value, float) else value
            name = f"{prefix}_{key}"
            if name in self._glued:
                if self._glued[name] != value:
                    raise ValueError(f"metric {key!r} changed from {self._glued[name]} to {value} after it was glued")
                continue
            glue(name, value, display=False)
            self._glued[name] = value


def validate(record: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first problem in a result record."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"result record lacks keys {missing}")
    if record["profile"] not in PROFILES:
        raise ValueError(f"bad profile {record['profile']!r}")
    for key, value in record["metrics"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"metric {key!r} is not a finite number: {value!r}")
    for claim in record["claims"]:
        if tuple(claim) != CLAIM_KEYS:
            raise ValueError(f"claim has keys {tuple(claim)}, expected {CLAIM_KEYS}")
        if claim["holds"] not in (True, False, None):
            raise ValueError(f"claim {claim['id']!r}: holds must be true/false/null")
        if claim["kind"] not in KINDS or claim["basis"] not in BASES:
            raise ValueError(f"claim {claim['id']!r}: kind {claim['kind']!r} / basis {claim['basis']!r} not in {KINDS} / {BASES}")
    for name, entry in record["models"].items():
        if not isinstance(entry.get("converged"), bool) or not isinstance(entry.get("beats_floor"), bool):
            raise ValueError(f"model {name!r}: converged and beats_floor must be true/false")


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one result file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {str(path)!r}")
    record = json.loads(path.read_text())
    validate(record)
    return record


def load_all(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """All result records under ``<results>/<profile>/*.json``."""
    root = Path(directory or results_dir())
    return [load(p) for profile in PROFILES for p in sorted((root / profile).glob("*.json"))]


def best_available(name: str, directory: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The ``full`` record of a chapter if one exists, else ``quick``, else ``smoke``, else None."""
    root = Path(directory or results_dir())
    for profile in ("full", "quick", "smoke"):
        path = root / profile / f"{name}.json"
        if path.is_file():
            return load(path)
    return None
