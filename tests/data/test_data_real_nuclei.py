"""The ndev-sampledata real nuclei loader (skipped cleanly when the package is not installed)."""

import numpy as np
import pytest

from cellnb import data
from cellnb.data import real_nuclei

needs_ndev = pytest.mark.skipif(not data.ndev_available(), reason=f"ndev-sampledata not installed ({real_nuclei.INSTALL_HINT})")


@needs_ndev
def test_loader_shapes_dtypes_and_counts():
    d = data.load_ndev_nuclei()
    assert d["frames"].shape == d["labels"].shape == d["raw"].shape == (10, 210, 576)
    assert d["frames"].dtype == np.float32 and d["labels"].dtype == np.int32 and d["raw"].dtype == np.uint16
    assert 0.0 <= d["frames"].min() and d["frames"].max() <= 1.0
    assert d["pixel_size"] == pytest.approx(0.619)
    for t in range(10):
        ids = np.unique(d["labels"][t])
        ids = ids[ids > 0]
        assert 59 <= len(ids) <= 83
        assert ids.tolist() == list(range(1, len(ids) + 1))  # relabelled consecutively per frame
        assert d["counts"][t] == len(ids)
    assert d["counts"][0] == 59 and d["counts"][-1] == 83
    # nuclei are brighter than background
    fg = d["frames"][d["labels"] > 0].mean()
    bg = d["frames"][d["labels"] == 0].mean()
    assert fg > 2 * bg
    raw = data.load_ndev_nuclei(normalize="none")["frames"]
    assert raw.dtype == np.float32 and raw.max() > 1000


def test_missing_package_raises_clear_error(monkeypatch):
    monkeypatch.setattr(real_nuclei, "_package_dir", lambda: None)
    assert not data.ndev_available()
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps ndev-sampledata"):
        data.load_ndev_nuclei()


def test_bad_normalize():
    with pytest.raises(ValueError, match="normalize"):
        data.load_ndev_nuclei(normalize="zscore")
