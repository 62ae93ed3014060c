"""cellnb.sim2real: the real split by time, ceilings, and a tiny end-to-end run (skipped without ndev-sampledata)."""

import numpy as np
import pytest

from cellnb import data, sim2real
from cellnb.methods import get_method

pytestmark = pytest.mark.skipif(not data.ndev_available(), reason="ndev-sampledata not installed")


def test_real_split_is_by_time_and_holds_out_validation():
    split = sim2real.real_split()
    assert len(split["train"]) == len(split["val"]) == 5 and len(split["test"]) == 5
    assert split["test"][0]["image"].shape == (210, 576)
    assert split["train"][0]["image"].shape == (210, 576 - sim2real.VAL_COLUMNS)
    assert split["val"][0]["image"].shape == (sim2real.VAL_ROWS, sim2real.VAL_COLUMNS)
    for s in split["train"] + split["val"] + split["test"]:
        ids = np.unique(s["labels"])[1:]
        assert ids.tolist() == list(range(1, len(ids) + 1)) and len(s["points"]) == len(ids)


@pytest.mark.parametrize("name", ["unet", "mc_unet", "u_se_resnet", "classical"])
def test_ceiling_of_each_instance_method_is_high_on_real_labels(name):
    from cellnb import floors

    lab = sim2real.real_split()["test"][0]["labels"]
    pred = get_method(name).ceiling(lab)
    assert floors.instance_scores(lab, pred)["ap50"] > 0.8


def test_evaluate_end_to_end_tiny():
    r = sim2real.evaluate("unet", seeds=(0,), steps=2, n_generated=3, train_kwargs={"batch_size": 2, "crop": 32})
    s = r["scores"]
    assert set(s["scenario"]) == set(sim2real.SCENARIOS) and len(s) == 15
    assert set(r["floor"]["frame"]) == set(sim2real.TEST_FRAMES)
    assert r["ceiling"]["ap50"] > 0.8 and r["floor"]["ap50"].mean() > 0.3
    table = sim2real.summary(r)
    assert list(table["training"])[-2:] == ["floor: Otsu + watershed", "ceiling: oracle maps"]
    v = sim2real.floor_verdict(r, "real")  # one seed: no verdict
    assert v.holds is None
    with pytest.raises(ValueError, match="scenarios"):
        sim2real.evaluate("unet", scenarios=("sim",))
