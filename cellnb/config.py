"""Profiles and per-chapter settings.

Every chapter keeps its sizes and epochs in ``cellnb.experiments.<name>.SETTINGS``, a dict
``{"smoke": {...}, "quick": {...}, "full": {...}}`` with the same keys in each profile.
A notebook picks one with :func:`settings_for`; it never edits sizes in its own source.

- ``smoke``: CI, seconds per notebook, numbers are meaningless except as a pipeline check;
- ``quick``: the CPU default, minutes per notebook (a 2-core laptop);
- ``full``: paper scale, for a GPU.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

PROFILES: tuple[str, ...] = ("smoke", "quick", "full")


def resolve_profile(profile: str, device: str = "auto") -> str:
    """``auto`` -> ``full`` on a CUDA device, ``quick`` otherwise; validates the name."""
    if profile == "auto":
        from cellnb.utils import select_device

        return "full" if select_device(device).type == "cuda" else "quick"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {('auto',) + PROFILES}")
    return profile


class Settings(Mapping[str, Any]):
    """Read-only settings with attribute access (``cfg.epochs``) and a readable repr."""

    def __init__(self, values: Mapping[str, Any], profile: str) -> None:
        self._values = MappingProxyType(dict(values))
        self.profile = profile

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no setting {key!r}; known: {sorted(self._values)}") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Settings[{self.profile}]({body})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def settings_for(
    table: Mapping[str, Mapping[str, Any]], profile: str, **overrides: Any
) -> Settings:
    """Pick ``table[profile]`` and apply ``overrides``; unknown keys raise a clear error.

    >>> s = settings_for({"smoke": {"epochs": 1}, "quick": {"epochs": 5}, "full": {"epochs": 50}},
    ...                  "quick", epochs=2)
    >>> s.epochs
    2
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {PROFILES}")
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ValueError(f"settings table lacks profiles {missing}")
    keys = set(table[profile])
    for other in PROFILES:
        if set(table[other]) != keys:
            diff = sorted(set(table[other]) ^ keys)
            raise ValueError(f"profiles {profile!r} and {other!r} differ in keys {diff}")
    unknown = sorted(set(overrides) - keys)
    if unknown:
        raise KeyError(f"unknown setting(s) {unknown}; known: {sorted(keys)}")
    values = dict(table[profile])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(values, profile)


def start_chapter(name: str, table: Mapping[str, Mapping[str, Any]], *, profile: str, device: str = "auto",
                  seed: int = 0, data_root: str | None = None, num_threads: int | None = None,
                  **overrides: Any) -> tuple[Settings, str, Any]:
    """The set-up of every chapter's first code cell, in one place: fix torch's CPU threads
    (:func:`cellnb.utils.set_cpu_threads`), pick the profile's settings (:func:`settings_for` with
    ``overrides``), resolve the device, seed every generator and open the chapter's
    :class:`cellnb.results.Run`. Returns ``(cfg, dev, run)``: the settings, the resolved device
    as a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...) and the run that collects the chapter's results."""
    from cellnb import results, utils

    utils.set_cpu_threads(num_threads, device)
    cfg = settings_for(table, profile, **overrides)
    dev = str(utils.select_device(device))
    utils.seed_everything(seed)
    run = results.Run(name, profile=profile, device=device, seed=seed, data_root=data_root, settings=cfg)
    return cfg, dev, run
