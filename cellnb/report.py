"""Display helpers for notebooks: the profile banner, tables and the claims table.

All output is rich (Markdown/HTML) so it renders in the book; nothing here computes results.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from cellnb.results import Run

#: Caption text of the "gain of the 2nd half" column (:func:`half_budget_cell`), for every chapter's
#: table of trained models.
HALF_BUDGET_CAPTION = ("gain of the 2nd half: how much lower the validation loss ended than at half the budget, "
                       "annealed (cellnb.methods.training.half_budget_branch), mean over the seeds, with the seeds "
                       "under 5 %, converged by that rule")


def half_budget_cell(model: Mapping[str, Any]) -> str:
    """The "gain of the 2nd half" cell of one :meth:`cellnb.results.Run.model` record: the mean gain
    and how many of the seeds that measured it gained under 5 % (``"–"`` where none measured it;
    :func:`cellnb.methods.training.half_budget_fields`).

    >>> half_budget_cell({"half_budget_gain": 0.114, "seeds_converged_over_budget": 1, "seeds_half_budget": 3})
    '+11 % (1/3 seeds < 5 %)'
    >>> half_budget_cell({"converged": True})
    '–'
    """
    gain = model.get("half_budget_gain")
    if gain is None or not np.isfinite(float(gain)):
        return "–"
    n = model.get("seeds_half_budget", model.get("seeds", model.get("n_seeds", "?")))
    return f"{fmt_gain(gain)} ({model.get('seeds_converged_over_budget', '?')}/{n} seeds < 5 %)"


def fmt_gain(gain: float) -> str:
    """A relative gain in percent, signed: one decimal under 10 % (so 4.8 % does not read as the
    5 % of the rule), whole percent above; ``"–"`` when not finite. Under 10 % the decimal is cut, not
    rounded, so a shown number never crosses the 5 % line the other way (0.0496 shows 4.9 %, not 5.0 %).

    >>> fmt_gain(0.0477), fmt_gain(0.114), fmt_gain(-0.05), fmt_gain(float("nan"))
    ('+4.7 %', '+11 %', '-5.0 %', '–')
    >>> fmt_gain(0.0496), fmt_gain(0.0999), fmt_gain(0.029)
    ('+4.9 %', '+9.9 %', '+2.9 %')
    """
    if gain is None or not np.isfinite(float(gain)):
        return "–"
    pct = 100 * float(gain)
    if abs(pct) < 10:  # 0.029 is 2.8999... in binary: cut after the representation error
        return f"{math.trunc(pct * 10 + math.copysign(1e-9, pct)) / 10:+.1f} %"
    return f"{int(round(pct)):+d} %"


_PROFILE_NOTE = {
    "smoke": "a pipeline check on tiny data: its numbers mean nothing",
    "quick": "the CPU profile: small data and few epochs, so numbers are indicative, not paper scale",
    "full": "paper-scale settings",
}


def banner_html(run: Run) -> str:
    """An admonition (the book theme's own classes) naming the profile, device and seed of this run."""
    from html import escape

    from cellnb.utils import device_name

    kind = "warning" if run.profile != "full" else "note"
    return (
        f'<div class="admonition {kind}"><p class="admonition-title">Profile <code>{run.profile}</code> on '
        f"<code>{escape(device_name(run.device))}</code>, seed {run.seed}</p>"
        f"<p>These results come from the <code>{run.profile}</code> profile: {_PROFILE_NOTE[run.profile]}. "
        f"Regenerate them with <code>python -m cellnb.reproduce --profile {run.profile} --only {run.name}</code>.</p></div>"
    )


def note(text: str, kind: str = "note") -> None:
    """Display a short admonition (``note`` or ``warning``) in the rendered book, e.g. a skipped section."""
    from html import escape

    from IPython.display import HTML, display

    display(HTML(f'<div class="admonition {kind}"><p class="admonition-title">{kind.title()}</p>'
                 f"<p>{escape(text)}</p></div>"))


def banner(run: Run) -> None:
    from IPython.display import HTML, display

    display(HTML(banner_html(run)))


def show_table(df: pd.DataFrame, caption: str | None = None, floatfmt: str = "{:.4g}", index: bool = False) -> None:
    """Display a DataFrame as a compact HTML table with an optional caption (:func:`table_html`)."""
    from IPython.display import HTML, display

    display(HTML(table_html(df, caption, floatfmt, index)))


def table_html(df: pd.DataFrame, caption: str | None = None, floatfmt: str = "{:.4g}", index: bool = False) -> str:
    """``df`` as compact HTML: numbers through ``floatfmt``, a missing value (NaN, None: not measured
    here, e.g. a bfloat16 rate on a CPU without native bfloat16) as "—" rather than "nan"."""
    styler = df.style.format(precision=4, formatter={c: floatfmt for c in df.select_dtypes("number").columns},
                             na_rep="—")
    if not index:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    return styler.to_html()


def verdict(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "not testable here"}[holds]


def claims_frame(claims: Iterable[Any]) -> pd.DataFrame:
    """Claims (dataclasses or dicts) as a DataFrame with a readable verdict column."""
    rows = [c if isinstance(c, dict) else c.__dict__ for c in claims]
    frame = pd.DataFrame(rows, columns=["id", "statement", "paper", "measured", "holds", "note"])
    frame["verdict"] = [verdict(h) for h in frame["holds"]]
    return frame[["statement", "paper", "measured", "verdict", "note"]]


def show_claims(run: Run) -> None:
    """The chapter's claims table: paper statement, measurement, verdict."""
    show_table(claims_frame(run.claims), caption=f"Paper claims checked in this run ({run.profile} profile)")
