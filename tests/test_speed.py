"""The speed chapter's checks of the declared memory format and training precision, on hand-made
measurement tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def test_precision_check_reads_the_training_loops_rates():
    table = _table([
        # bfloat16 1.5x float32 in its loop: declared bfloat16 is right
        ("unet", "channels_last", "bfloat16", {"float32": 10.0, "bfloat16": 15.0}),
        # float32 declared but bfloat16 is 1.2x: wrong
        ("ssr", "contiguous", "float32", {"float32": 10.0, "bfloat16": 12.0}),
        # bfloat16 declared but slower: wrong
        ("gan", "contiguous", "bfloat16", {"float32": 10.0, "bfloat16": 8.5}),
        # float32 declared, bfloat16 only 1.05x: within the tolerance
        ("sr", "contiguous", "float32", {"float32": 10.0, "bfloat16": 10.5}),
        # not measured (no native bfloat16, or no bfloat16 path): training runs float32 whatever is declared
        ("mc", "contiguous", "bfloat16", {"float32": 5.0, "bfloat16": np.nan}),
    ])
    check = speed.precision_check(table).set_index("method")
    assert check.loc["unet", "float32 steps/s"] == 10.0 and check.loc["unet", "speedup"] == 1.5
    assert check.loc["ssr", "faster"] == "bfloat16" and check.loc["gan", "faster"] == "float32"
    assert np.isnan(check.loc["mc", "speedup"]) and check.loc["mc", "faster"] == "float32"
    assert check["declared is fine"].to_dict() == {"unet": True, "ssr": False, "gan": False, "sr": True, "mc": True}


@pytest.mark.parametrize("native", [False, True])
def test_loop_precision_times_each_methods_own_loop(native, monkeypatch):
    """Each method's ``train`` runs in both precisions where bfloat16 is native; a loop that cannot run
    bfloat16 (ELMGAN's GAN loop) and an emulating CPU give NaN with a note, never a made-up rate."""
    from cellnb import utils

    monkeypatch.setattr(utils, "native_bfloat16", lambda device: native)
    cfg = dict(methods=["unet", "elmgan"], crop=32, batch_size=2, loop_steps=4, loop_repeats=1,
               loop_shapes={"unet": (48, 2)})
    table = speed.loop_precision(cfg, device="cpu").set_index(["method", "variant"])
    assert table.loc[("unet", "float32"), "steps_per_s"] > 0 and table.loc[("unet", "float32"), "ran"] == "float32"
    assert table.loc[("unet", "float32"), "crop"] == 48
    if native:
        assert table.loc[("unet", "bfloat16"), "steps_per_s"] > 0 and table.loc[("unet", "bfloat16"), "ran"] == "bfloat16"
        assert np.isnan(table.loc[("elmgan", "bfloat16"), "steps_per_s"])
        assert "no bfloat16 path" in table.loc[("elmgan", "bfloat16"), "note"]
    else:
        assert ("unet", "bfloat16") not in table.index or np.isnan(table.loc[("unet", "bfloat16"), "steps_per_s"])
    assert table.loc[("elmgan", "float32"), "crop"] % speed_multiple("elmgan") == 0
    if not native:  # everything trains float32, whatever is declared
        assert speed.precision_check(table.reset_index())["declared is fine"].all()


def speed_multiple(name):
    from cellnb.methods import get_method

    return get_method(name).multiple
