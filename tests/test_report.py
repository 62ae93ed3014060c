"""Hand-checked rendering of the book's tables (cellnb.report.table_html)."""

import numpy as np
import pandas as pd

from cellnb.report import table_html


def test_table_html_formats_numbers_and_shows_missing_values_as_a_dash():
    df = pd.DataFrame({"variant": ["float32", "bfloat16"], "steps_per_s": [13.2345, np.nan], "note": ["", None]})
    html = table_html(df, caption="loop rates", floatfmt="{:.2f}")
    assert "13.23" in html and "loop rates" in html
    assert "nan" not in html.lower() and "None" not in html
    assert html.count("—") == 2  # the missing rate and the missing note
