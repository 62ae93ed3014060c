"""Result files with provenance: ``results/<profile>/<name>.json``, written atomically.

A notebook starts a :class:`Run` right after its parameters cell, records metrics and
claims while it runs, and calls :meth:`Run.save` at the end::

    run = results.Run("ssrnet", profile=profile, device=device, seed=seed, data_root=data_root)
    run.metric("count_mae", 1.23)
    run.claim("macs_1_20", "MACs are 1/20 of U-Net", paper="SSRNet abstract",
              measured=0.07, holds=0.07 <= 0.05, note="ratio of MACs at 256x256")
    run.save()

Schema (every key always present): ``name, profile, device, git_commit, started, seconds,
seed, versions, data_root, settings, metrics, claims``. ``metrics`` is flat ``key -> number``;
``claims`` is a list of ``{id, statement, paper, measured, holds, note}`` with ``holds`` one of
true / false / null (null = not testable here).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from cellnb.config import PROFILES
from cellnb.utils import device_name, git_commit, results_dir, select_device, versions

REQUIRED_KEYS = (
    "name", "profile", "device", "git_commit", "started", "seconds", "seed",
    "versions", "data_root", "settings", "metrics", "claims",
)
CLAIM_KEYS = ("id", "statement", "paper", "measured", "holds", "note")


@dataclass
class Claim:
    """A paper's statement checked against a measurement."""

    id: str
    statement: str
    paper: str
    measured: str | float | None
    holds: bool | None
    note: str = ""


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
    ) -> Claim:
        """Record a paper claim with the measurement and a verdict (None = not testable here)."""
        if holds is not None:
            holds = bool(holds)
        if hasattr(measured, "item"):
            measured = measured.item()
        if isinstance(measured, float):
            measured = round(measured, 6)
        claim = Claim(id, statement, paper, measured, holds, note)
        self.claims = [c for c in self.claims if c.id != id] + [claim]
        return claim

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
