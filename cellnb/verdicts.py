"""One rule for every verdict: convergence, floors, and paired bootstrap intervals.

The book's rule (README, "What a verdict needs"): a claim's verdict is printed only when the models
behind it learned. This module is the single home of that rule.

* :func:`converged` decides whether a training curve has plateaued (one documented rule, below).
* :func:`beats_floor` decides whether a model is better than its floor (constant mean count, Otsu,
  Otsu + watershed, bicubic — see :mod:`cellnb.floors`) by an interval that excludes 0.
* :func:`compare` is the verdict of a comparative claim: paired per-image differences pooled over
  >= 3 seeds (or splits), a 95 % two-level bootstrap interval (seeds, then images within a seed),
  ``holds`` True when the interval lies on the claimed side (beyond the claimed margin), False when it
  lies on the other side, None (inconclusive) otherwise — and None whenever a model in the
  comparison does not beat its floor or fewer than ``min_groups`` seeds were run.

Every function returns plain Python values and a ``note`` that names the interval and ``n``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "CONVERGENCE_WINDOW", "CONVERGENCE_TOL", "MIN_SEEDS", "KINDS", "BASES",
    "Verdict", "converged", "converged_over_budget", "convergence_report", "bootstrap_interval", "compare", "beats_floor",
    "threshold_verdict",
]

#: The convergence rule: the validation curve has converged when its median over the last
#: ``CONVERGENCE_WINDOW`` of the evaluations improves on the median of the window before it by less than
#: ``CONVERGENCE_TOL`` (relative), i.e. more training of the same kind would change the loss by < 5 %.
CONVERGENCE_WINDOW = 0.25
CONVERGENCE_TOL = 0.05
#: Fewest seeds (or splits) behind a true/false verdict.
MIN_SEEDS = 3
#: Claim kinds: ``paper`` = stated in a paper's abstract / released README; ``check`` = a self-check
#: (parameter counts, generator statistics, consistency of the implementation).
KINDS = ("paper", "check")
#: Where the measurement comes from relative to the claim.
BASES = ("measured here", "other data", "other device")


@dataclass(frozen=True)
class Verdict:
    """The outcome of a comparative claim.

    ``estimate`` is the mean paired difference ``a - b`` (in the metric's units), ``low``/``high`` its
    95 % bootstrap interval, ``n`` the number of paired values and ``n_groups`` the number of seeds or
    splits they come from. ``holds`` is True / False / None (inconclusive) and ``reason`` says why
    when None.
    """

    holds: bool | None
    estimate: float
    low: float
    high: float
    n: int
    n_groups: int
    reason: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- convergence


def converged(curve: Sequence[float], window: float = CONVERGENCE_WINDOW, tol: float = CONVERGENCE_TOL,
              min_points: int = 8) -> bool:
    """The one convergence rule of the book.

    ``curve`` is the validation loss per evaluation (epoch or fixed step interval), on data held out
    from the training set (never the test set). With ``k = max(2, round(window * len(curve)))``, the
    curve has converged when ``median(curve[-2k:-k]) - median(curve[-k:]) < tol * |median(curve[-2k:-k])|``:
    the last quarter of training improved the validation loss by less than 5 %. A curve with fewer
    than ``min_points`` finite values has not converged (too short to tell).

    The rule reads "would more steps help?" off the curve. Under a schedule that anneals to the end
    it errs both ways: the anneal improves the last quarter whatever the budget, and a curve can
    look flat while doubling the budget still pays. :func:`converged_over_budget` asks the budget
    question directly where a loop measures the half budget; the chapters show it next to this rule.

    >>> converged([1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.11, 0.105, 0.104, 0.104, 0.103, 0.103])
    True
    >>> converged([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    False
    """
    values = np.asarray([v for v in curve if v is not None and np.isfinite(v)], dtype=float)
    if len(values) < min_points:
        return False
    k = max(2, int(round(window * len(values))))
    before, last = np.median(values[-2 * k:-k]), np.median(values[-k:])
    return bool(before - last < tol * abs(before))


def converged_over_budget(final: float, half: float, tol: float = CONVERGENCE_TOL) -> bool:
    """The budget question behind :func:`converged`, asked directly: did the second half of the
    budget improve the validation loss by less than ``tol`` (relative)? ``final`` is the validation
    loss at the end of the budget, ``half`` the one the same run reached with half of it, annealed
    (:func:`cellnb.methods.training.half_budget_branch`): converged when ``half - final < tol * |half|``.

    It exists for schedules that anneal to the end (one-cycle, cosine): their last quarter improves
    by construction, so the last-quarter rule of :func:`converged` reads the anneal as "still
    learning" whatever the budget. Not finite values have not converged.

    >>> converged_over_budget(0.97, 1.0)
    True
    >>> converged_over_budget(0.80, 1.0)
    False
    >>> converged_over_budget(1.1, 1.0)  # worse with the whole budget: more steps did not help
    True
    """
    final, half = float(final), float(half)
    if not (np.isfinite(final) and np.isfinite(half)):
        return False
    return bool(half - final < tol * abs(half))


def convergence_report(curve: Sequence[float], **kwargs: Any) -> dict[str, Any]:
    """``converged`` with the numbers behind it (for result files and notes)."""
    values = [float(v) for v in curve if v is not None and np.isfinite(v)]
    k = max(2, int(round(kwargs.get("window", CONVERGENCE_WINDOW) * len(values)))) if values else 0
    before = float(np.median(values[-2 * k:-k])) if len(values) >= 2 * k and k else float("nan")
    last = float(np.median(values[-k:])) if values and k else float("nan")
    rel = (before - last) / abs(before) if before == before and before != 0 else float("nan")
    return {"converged": converged(values, **kwargs), "points": len(values),
            "last_window_improvement": rel, "final": values[-1] if values else float("nan")}


# --------------------------------------------------------------------------- bootstrap


def _groups(values: Sequence[float], groups: Sequence[Any] | None) -> list[np.ndarray]:
    values = np.asarray(values, dtype=float)
    if groups is None:
        return [values]
    groups = np.asarray(list(groups))
    if len(groups) != len(values):
        raise ValueError(f"groups has {len(groups)} entries for {len(values)} values")
    return [values[groups == g] for g in dict.fromkeys(groups.tolist())]


def bootstrap_interval(values: Sequence[float], groups: Sequence[Any] | None = None, *, n_boot: int = 4000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval at ``level``.

    With ``groups`` (the seed or split of each value) the bootstrap has two levels: groups are
    resampled with replacement, then values within each drawn group, so that the interval carries
    the seed-to-seed variation as well as the image-to-image one.

    >>> mean, low, high = bootstrap_interval([1.0] * 10)
    >>> (mean, low, high)
    (1.0, 1.0, 1.0)
    """
    parts = [p for p in _groups(values, groups) if len(p)]
    if not parts:
        raise ValueError("bootstrap_interval needs at least one value")
    rng = np.random.default_rng(seed)
    mean = float(np.mean(np.concatenate(parts)))
    stats = np.empty(n_boot)
    for b in range(n_boot):
        chosen = rng.integers(0, len(parts), len(parts)) if len(parts) > 1 else [0]
        draws = [parts[g][rng.integers(0, len(parts[g]), len(parts[g]))] for g in chosen]
        stats[b] = np.mean(np.concatenate(draws))
    alpha = (1 - level) / 2
    return mean, float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def compare(a: Sequence[float], b: Sequence[float], *, better: str = "lower", groups: Sequence[Any] | None = None,
            margin: float = 0.0, relative: bool = False, learned: Mapping[str, bool] | None = None,
            min_groups: int = MIN_SEEDS, labels: tuple[str, str] = ("a", "b"), seed: int = 0) -> Verdict:
    """Verdict of the claim "``a`` is better than ``b``" from paired per-image values.

    ``a[i]`` and ``b[i]`` are the metric of the same test image (same seed) for the two models;
    ``groups[i]`` is that pair's seed or split. ``better`` is ``"lower"`` (errors) or ``"higher"``
    (Dice, AJI, PSNR). ``margin`` is the claimed magnitude in the metric's units (or, with
    ``relative``, as a fraction of ``b``'s mean): the claim holds when the whole 95 % interval of the
    improvement is beyond ``margin``, fails when the whole interval is on the other side of it, and
    is inconclusive otherwise. ``learned`` maps model names to ``beats_floor``/``converged`` flags:
    any False makes the verdict inconclusive (a model that did not learn decides nothing), and so does
    ``n_groups < min_groups``.

    >>> v = compare([1.0, 1.1, 0.9] * 4, [2.0, 2.1, 1.9] * 4, groups=[0] * 4 + [1] * 4 + [2] * 4)
    >>> v.holds, round(v.estimate, 3)
    (True, -1.0)
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D paired values of one length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("compare needs at least one pair")
    diff = a - b
    mean, low, high = bootstrap_interval(diff, groups, seed=seed)
    n_groups = 1 if groups is None else len(set(np.asarray(list(groups)).tolist()))
    sign = -1.0 if better == "lower" else 1.0  # improvement = sign * diff > 0
    claimed = margin * abs(float(np.mean(b))) if relative else margin
    gain_low, gain_high = sorted((sign * low, sign * high))
    if gain_low > claimed:
        holds: bool | None = True
    elif gain_high < claimed:
        holds = False
    else:
        holds = None
    reason = "" if holds is not None else "interval overlaps the claimed threshold"
    not_learned = [name for name, ok in (learned or {}).items() if not ok]
    if not_learned:
        holds, reason = None, f"not learned (fails its floor or did not converge): {', '.join(not_learned)}"
    elif n_groups < min_groups:
        holds, reason = None, f"only {n_groups} seed(s)/split(s); a verdict needs >= {min_groups}"
    la, lb = labels
    what = f"{la} − {lb}"
    note = (f"{what} = {_fmt(mean)} (95% CI {_fmt(low)} to {_fmt(high)}; n = {len(a)} paired images over "
            f"{n_groups} seed(s)); {better} is better" + (f", claimed margin {_fmt(claimed)}" if claimed else ""))
    if reason:
        note += f"; inconclusive: {reason}"
    return Verdict(holds, mean, low, high, int(len(a)), int(n_groups), reason, note,
                   {"mean_a": float(a.mean()), "mean_b": float(b.mean())}, tuple(learned or ()))


def beats_floor(model: Sequence[float], floor: Sequence[float], *, better: str = "lower",
                groups: Sequence[Any] | None = None, seed: int = 0) -> bool:
    """True when the model beats its floor on the same images by a 95 % interval that excludes 0.

    >>> beats_floor([1.0, 1.2, 0.8, 1.1], [5.0, 5.5, 4.0, 6.0])
    True
    >>> beats_floor([5.0, 5.5, 4.0, 6.0], [5.0, 5.4, 4.1, 6.0])
    False
    """
    v = compare(model, floor, better=better, groups=groups, min_groups=1, seed=seed)
    return bool(v.holds)


def threshold_verdict(value: float, threshold: float, *, better: str = "lower", basis: str = "measured here",
                      low: float | None = None, high: float | None = None) -> bool | None:
    """Verdict of a claim "value is at most (or at least) threshold".

    Deterministic measurements (parameter counts, MACs) pass no interval; a noisy one passes its
    interval ``low``/``high`` and is inconclusive while the interval straddles the threshold. A claim
    measured on another device than the one it concerns is not testable here (None).

    >>> threshold_verdict(0.059, 0.0625)
    True
    >>> threshold_verdict(2.0, 10.0, better="higher", basis="other device") is None
    True
    """
    if basis == "other device":
        return None
    low = value if low is None else low
    high = value if high is None else high
    if better == "lower":
        return True if high <= threshold else False if low > threshold else None
    return True if low >= threshold else False if high < threshold else None


def pooled(rows: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """Values of ``key`` from a list of per-image rows (helper for notebooks)."""
    return [float(r[key]) for r in rows]
