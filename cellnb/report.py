"""Display helpers for notebooks: the profile banner, tables and the claims table.

All output is rich (Markdown/HTML) so it renders in the book; nothing here computes results.
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from cellnb.results import Run

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
