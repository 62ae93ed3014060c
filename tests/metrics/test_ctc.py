"""CTC measures: ctc_seg / ctc_det against hand values and against py-ctcmetrics on a 2-frame sequence."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellnb.metrics import ctc_det, ctc_evaluate, ctc_seg, write_ctc_result

SHAPE = (16, 16)


def _reference() -> np.ndarray:
    """Two frames, three 4x4 cells (ids 1, 2, 3) that do not move."""
    frame = np.zeros(SHAPE, np.uint16)
    frame[0:4, 0:4] = 1
    frame[10:14, 0:4] = 2
    frame[10:14, 6:10] = 3
    return np.stack([frame, frame])


def _result() -> np.ndarray:
    """Frame 0: cell 1 exact, cells 2+3 merged into one 4x10 object (40 px), one false positive.
    Frame 1: cell 1 covered 12/16, cell 2 missed, cell 3 exact. Ids are arbitrary."""
    f0 = np.zeros(SHAPE, np.int32)
    f0[0:4, 0:4] = 11
    f0[10:14, 0:10] = 12
    f0[0:3, 12:15] = 13
    f1 = np.zeros(SHAPE, np.int32)
    f1[0:3, 0:4] = 21
    f1[10:14, 6:10] = 23
    return np.stack([f0, f1])


# Hand values. SEG: frame 0: 1, 16/40, 16/40; frame 1: 12/16, 0, 1  -> 3.55 / 6.
SEG_HAND = (1 + 0.4 + 0.4 + 0.75 + 0 + 1) / 6
# DET: NS = 1 (merge), FN = 1 (cell 2 at t=1), FP = 1; AOGM-D = 5 + 10 + 1 = 16; |V| = 6.
DET_HAND = 1 - 16 / 60
# TRA: reference edges 1-1, 2-2, 3-3 between t=0 and t=1 (|E| = 3); AOGM0 = 60 + 1.5*3 = 64.5.
TRA_UNLINKED_HAND = 1 - (16 + 1.5 * 3) / 64.5  # no result edges: EA = 3
TRA_LINKED_HAND = 1 - (16 + 1.5 * 2) / 64.5  # link 11->21 (IoU 0.75) restores the edge of cell 1


def _write_gt(root, reference):
    gt = root / "01_GT"
    (gt / "SEG").mkdir(parents=True)
    (gt / "TRA").mkdir(parents=True)
    for t, frame in enumerate(reference):
        tifffile.imwrite(gt / "SEG" / f"man_seg{t:03d}.tif", frame)
        tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", frame)
    (gt / "TRA" / "man_track.txt").write_text("1 0 1 0\n2 0 1 0\n3 0 1 0\n")
    return gt


def test_ctc_seg_hand_value():
    assert ctc_seg(_reference(), _result()) == pytest.approx(SEG_HAND)
    assert ctc_seg(list(_reference()), list(_result())) == pytest.approx(SEG_HAND)


def test_ctc_seg_match_needs_more_than_half_of_reference():
    ref = np.zeros((1, 4), np.int32)
    ref[0, :] = 1
    half = np.array([[5, 5, 0, 0]])
    more = np.array([[5, 5, 5, 0]])
    assert ctc_seg(ref, half) == 0.0
    assert ctc_seg(ref, more) == pytest.approx(0.75)


def test_ctc_seg_ignores_false_positives_and_permuted_ids():
    ref = _reference()[0]
    permuted = np.where(ref > 0, 10 - ref, 0)
    with_fp = permuted.copy()
    with_fp[0:3, 12:15] = 50
    assert ctc_seg(ref, with_fp) == 1.0
    assert ctc_seg(np.zeros(SHAPE, int), with_fp) == 0.0  # no reference: py-ctcmetrics gives 0


def test_ctc_det_hand_value_and_counts():
    det, counts = ctc_det(_reference(), _result(), return_counts=True)
    assert counts == {"NS": 1, "FN": 1, "FP": 1, "TP": 5, "num_vertices": 6, "AOGM_D": 16}
    assert det == pytest.approx(DET_HAND)
    with pytest.raises(ValueError, match="undefined"):
        ctc_det(np.zeros(SHAPE, int), _result()[0])


def test_frame_count_mismatch_raises():
    with pytest.raises(ValueError, match="2 true frames but 1"):
        ctc_seg(_reference(), _result()[:1])


def test_write_ctc_result_layout_and_tracks(tmp_path):
    res = write_ctc_result(tmp_path / "01_RES", _result())
    assert sorted(p.name for p in res.iterdir()) == ["mask000.tif", "mask001.tif", "res_track.txt"]
    assert res.joinpath("res_track.txt").read_text() == "1 0 0 0\n2 0 0 0\n3 0 0 0\n4 1 1 0\n5 1 1 0\n"
    mask0 = tifffile.imread(res / "mask000.tif")
    assert mask0.dtype == np.uint16 and sorted(np.unique(mask0).tolist()) == [0, 1, 2, 3]
    linked = write_ctc_result(tmp_path / "01_RES", _result(), link=True)  # replaces the folder
    assert linked.joinpath("res_track.txt").read_text() == "1 0 1 0\n2 0 0 0\n3 0 0 0\n4 1 1 0\n"
    assert tifffile.imread(linked / "mask001.tif")[0, 0] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_ctc_evaluate_matches_hand_values_and_ctc_seg(tmp_path, capsys):
    gt = _write_gt(tmp_path, _reference())
    res = write_ctc_result(tmp_path / "01_RES", _result())
    scores = ctc_evaluate(gt, res)
    assert capsys.readouterr().out == ""  # py-ctcmetrics' prints are swallowed
    assert scores["SEG"] == pytest.approx(SEG_HAND)
    assert scores["SEG"] == pytest.approx(ctc_seg(_reference(), _result()))
    assert scores["DET"] == pytest.approx(DET_HAND)
    assert scores["TRA"] == pytest.approx(TRA_UNLINKED_HAND)
    assert (scores["AOGM_NS"], scores["AOGM_FN"], scores["AOGM_FP"], scores["AOGM_EA"]) == (1, 1, 1, 3)
    assert scores["OP_CSB"] == pytest.approx((SEG_HAND + DET_HAND) / 2)
    assert scores["OP_CTB"] == pytest.approx((SEG_HAND + TRA_UNLINKED_HAND) / 2)
    linked = ctc_evaluate(gt, write_ctc_result(tmp_path / "01_RES", _result(), link=True))
    assert linked["DET"] == pytest.approx(DET_HAND)
    assert linked["TRA"] == pytest.approx(TRA_LINKED_HAND)


def test_ctc_evaluate_perfect_and_empty_results(tmp_path):
    gt = _write_gt(tmp_path, _reference())
    perfect = ctc_evaluate(gt, write_ctc_result(tmp_path / "01_RES", _reference(), link=True))
    assert {k: perfect[k] for k in ("SEG", "DET", "TRA", "OP_CSB", "OP_CTB")} == {
        "SEG": 1.0, "DET": 1.0, "TRA": 1.0, "OP_CSB": 1.0, "OP_CTB": 1.0}
    empty = ctc_evaluate(gt, write_ctc_result(tmp_path / "01_RES", np.zeros((2, *SHAPE), np.int32)))
    assert empty == {"SEG": 0.0, "DET": 0.0, "TRA": 0.0, "OP_CSB": 0.0, "OP_CTB": 0.0}


def test_ctc_evaluate_rejects_bad_input(tmp_path):
    gt = _write_gt(tmp_path, _reference())
    with pytest.raises(FileNotFoundError, match="res_track.txt"):
        (tmp_path / "02_RES").mkdir()
        ctc_evaluate(gt, tmp_path / "02_RES")
    res = write_ctc_result(tmp_path / "01_RES", _result()[:1])
    with pytest.raises(ValueError, match="Number of result masks"):
        ctc_evaluate(gt, res)
    res = write_ctc_result(tmp_path / "01_RES", _result())
    (res / "res_track.txt").write_text("1 0 0 0\n2 0 0 0\n3 0 0 0\n4 1 1 0\n")  # label 5 missing
    with pytest.raises(ValueError, match="invalid"):
        ctc_evaluate(gt, res)


def test_ctc_evaluate_refuses_inputs_py_ctcmetrics_gets_wrong(tmp_path):
    gt = _write_gt(tmp_path, _reference())
    full = _result()
    full[0][full[0] == 0] = 99  # frame 0 without background
    res = write_ctc_result(tmp_path / "01_RES", full)
    with pytest.raises(ValueError, match="no background"):
        ctc_evaluate(gt, res)
    res = write_ctc_result(tmp_path / "01_RES", _result())
    big = tifffile.imread(res / "mask000.tif")
    tifffile.imwrite(res / "mask000.tif", np.where(big == 1, 65534, big).astype(np.uint16))
    (res / "res_track.txt").write_text("65534 0 0 0\n2 0 0 0\n3 0 0 0\n4 1 1 0\n5 1 1 0\n")
    with pytest.raises(ValueError, match="overflows"):
        ctc_evaluate(gt, res)
