"""The Hoechst-matched nuclei and CTC generators stay within tolerance of the real ndev-sampledata
nuclei (skipped without the package); the nuclei statistics on hand-made images."""

import numpy as np
import pytest

from cellnb import config, data
from cellnb.data import stats
from cellnb.experiments import data as exp

needs_ndev = pytest.mark.skipif(not data.ndev_available(), reason="ndev-sampledata not installed")


def test_nuclei_statistics_hand_made():
    img = np.full((40, 60), 0.1, np.float32)
    lab = np.zeros((40, 60), np.int32)
    lab[5:15, 5:15] = 1  # isolated 10x10 square
    lab[20:30, 20:30] = 2  # two touching squares
    lab[20:30, 30:40] = 3
    img[lab > 0] = 0.9
    img[0, 0] = 0.0  # min-max to [0, 1]: background 0.1 / 0.9, nuclei 1
    s = data.nuclei_statistics([img], [lab])
    assert s["nuclei_per_frame"] == 3 and s["nuclei_per_10k_px"] == pytest.approx(3 / 2400 * 1e4)
    assert s["area_px"] == 100 and s["solidity"] == 1.0
    assert s["touching_fraction"] == pytest.approx(2 / 3)
    assert s["fg_intensity"] == pytest.approx(1.0) and s["bg_intensity"] == pytest.approx(0.1 / 0.9)
    assert s["contrast"] == pytest.approx(0.8)
    assert s["noise"] < 1e-3 and s["texture_cv"] < 0.05
    assert stats.unlabelled_objects(img, np.where(lab == 1, 0, lab)) == 1  # the square at 5:15 is unlabelled now


def test_hoechst_timelapse_is_valid_ctc():
    s = data.ctc_timelapse(2, n_frames=8, size=96, n_cells=None, p_div=0.2, preset="hoechst")
    frames, labels, tracks = s["frames"], s["labels"], s["tracks"]
    assert frames.dtype == np.uint16 and labels.shape == frames.shape == (8, 96, 96)
    for L, B, E, P in tracks:
        assert [(labels[t] == L).any() for t in range(8)] == [B <= t <= E for t in range(8)]
        if P:
            assert B == [tr for tr in tracks if tr[0] == P][0][2] + 1
    with pytest.raises(ValueError, match="preset"):
        data.ctc_timelapse(0, preset="vgg")


@needs_ndev
def test_hoechst_generators_match_the_real_nuclei():
    cfg = config.settings_for(exp.SETTINGS, "quick")
    real = exp.real_nuclei_statistics(data.load_ndev_nuclei())
    gen = exp.nuclei_generator_statistics(cfg, names=("nuclei hoechst", "CTC hoechst"))
    for name, g in gen.items():
        within = exp.nuclei_within(g, real)
        bad = {k: round(v, 3) for k, v in exp.nuclei_gap(g, real).items() if not within[k]}
        assert not bad, (name, bad)
