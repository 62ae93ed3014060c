"""The speed chapter's checks of the declared memory format and training precision, on hand-made
measurement tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellnb.experiments import speed


def _table(rows):
    return pd.DataFrame([{"method": m, "variant": v, "steps_per_s": r, "declared": fmt, "declared_precision": prec}
                         for m, fmt, prec, rates in rows for v, r in rates.items()])


def test_format_check_allows_the_tolerance():
    table = _table([("a", "channels_last", "float32", {"default": 10.0, "channels_last": 12.0, "bfloat16": 5.0}),
                    ("b", "contiguous", "float32", {"default": 10.0, "channels_last": 10.5, "bfloat16": 5.0}),
                    ("c", "contiguous", "float32", {"default": 10.0, "channels_last": 12.0, "bfloat16": 5.0})])
    check = speed.format_check(table).set_index("method")
    assert check.loc["a", "speedup"] == 1.2 and check.loc["a", "faster"] == "channels_last"
    # b: 10 >= 0.9 * 10.5 is fine; c: 10 < 0.9 * 12 is not
    assert check["declared is fine"].to_dict() == {"a": True, "b": True, "c": False}


def test_precision_check_compares_in_the_declared_layout():
    table = _table([
        # bfloat16 1.5x the channels-last float32 rate (not the NCHW one): declared bfloat16 is right
        ("unet", "channels_last", "bfloat16", {"default": 4.0, "channels_last": 10.0, "bfloat16": 15.0}),
        # float32 declared but bfloat16 is 1.2x: wrong
        ("ssr", "contiguous", "float32", {"default": 10.0, "channels_last": 8.0, "bfloat16": 12.0}),
        # bfloat16 declared but slower: wrong
        ("gan", "contiguous", "bfloat16", {"default": 10.0, "channels_last": 8.0, "bfloat16": 8.5}),
        # no native bfloat16 (not measured): training runs float32 whatever is declared
        ("mc", "contiguous", "bfloat16", {"default": 5.0, "channels_last": 6.0, "bfloat16": np.nan}),
    ])
    check = speed.precision_check(table).set_index("method")
    assert check.loc["unet", "float32 steps/s"] == 10.0 and check.loc["unet", "speedup"] == 1.5
    assert check.loc["ssr", "faster"] == "bfloat16" and check.loc["gan", "faster"] == "float32"
    assert np.isnan(check.loc["mc", "speedup"]) and check.loc["mc", "faster"] == "float32"
    assert check["declared is fine"].to_dict() == {"unet": True, "ssr": False, "gan": False, "mc": True}
