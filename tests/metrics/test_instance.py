"""Instance metrics on hand-made label images with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from cellnb.metrics import (
    DSB_THRESHOLDS,
    Matching,
    aji,
    average_precision,
    dsb_score,
    match_instances,
    per_cell_dice,
)


def squares(*boxes, shape=(12, 12)) -> np.ndarray:
    """Label image with object k+1 filling boxes[k] = (r0, r1, c0, c1)."""
    labels = np.zeros(shape, np.int32)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        labels[r0:r1, c0:c1] = k + 1
    return labels


def test_identical_and_permuted_ids():
    true = squares((0, 4, 0, 4), (6, 10, 6, 10), (0, 3, 8, 12))
    permuted = np.select([true == 1, true == 2, true == 3], [30, 7, 12], 0)
    m = match_instances(true, permuted)
    assert isinstance(m, Matching)
    assert (m.tp, m.fp, m.fn, m.precision, m.recall, m.f1, m.mean_true_score) == (3, 0, 0, 1.0, 1.0, 1.0, 1.0)
    assert sorted(p[:2] for p in m.pairs) == [(1, 30), (2, 7), (3, 12)]
    assert dsb_score(true, permuted) == 1.0
    assert per_cell_dice(true, permuted) == 1.0
    assert aji(true, permuted) == 1.0


def test_shifted_square_iou_one_third():
    true = squares((0, 4, 0, 4))
    pred = squares((0, 4, 2, 6))  # overlap 8, union 24
    m = match_instances(true, pred, threshold=0.5)
    assert (m.tp, m.fp, m.fn, m.accuracy) == (0, 1, 1, 0.0)
    low = match_instances(true, pred, threshold=0.3)
    assert (low.tp, low.fp, low.fn) == (1, 0, 0)
    assert low.mean_matched_score == pytest.approx(1 / 3)
    assert average_precision(true, pred, (0.3, 1 / 3, 0.34)) == pytest.approx({0.3: 1.0, 1 / 3: 1.0, 0.34: 0.0})
    assert per_cell_dice(true, pred) == pytest.approx(2 * 8 / 32)
    assert aji(true, pred) == pytest.approx(8 / 24)


def test_one_object_split_in_two():
    true = squares((0, 4, 0, 4))  # 16 px
    pred = squares((0, 4, 0, 2), (0, 4, 2, 4))  # two halves, IoU 0.5 each
    m = match_instances(true, pred, threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)  # one-to-one: only one half may match
    assert (m.precision, m.recall) == (0.5, 1.0)
    assert m.f1 == pytest.approx(2 / 3)
    assert average_precision(true, pred)[0.5] == 0.5 and average_precision(true, pred)[0.55] == 0.0
    assert dsb_score(true, pred) == pytest.approx(0.05)
    assert per_cell_dice(true, pred) == pytest.approx(2 * 8 / 24)
    # AJI: best half chosen (C = 8, U = 16), the other half unused (U += 8) -> 8 / 24
    assert aji(true, pred) == pytest.approx(1 / 3)


def test_two_objects_merged():
    true = squares((0, 4, 0, 4), (0, 4, 4, 8))  # two 16-px neighbours
    pred = squares((0, 4, 0, 8))  # one 32-px object
    m = match_instances(true, pred, threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert m.mean_true_score == pytest.approx(0.5 / 2)
    assert m.mean_matched_score == pytest.approx(0.5)
    # AJI: both true cells pick the merged object: C = 16 + 16, U = 32 + 32
    assert aji(true, pred) == pytest.approx(0.5)
    assert per_cell_dice(true, pred) == pytest.approx(2 * 16 / 48)


def test_hungarian_maximises_matches_below_half():
    # true A (cols 0-5), true B (cols 6-9); pred P overlaps A well and B a bit, pred Q overlaps A only a bit.
    true = np.zeros((1, 10), np.int32)
    true[0, 0:6] = 1
    true[0, 6:10] = 2
    pred = np.zeros((1, 10), np.int32)
    pred[0, 2:8] = 1  # IoU with A = 4/8, with B = 2/8
    pred[0, 0:2] = 2  # IoU with A = 2/6
    m = match_instances(true, pred, threshold=0.25)
    # greedy on IoU would give A-P only; the optimum pairs A-Q (1/3) and B-P (1/4)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)


@pytest.mark.parametrize("true_empty,pred_empty", [(True, True), (True, False), (False, True)])
def test_empty_conventions(true_empty, pred_empty):
    cell = squares((2, 6, 2, 6))
    empty = np.zeros_like(cell)
    true = empty if true_empty else cell
    pred = empty if pred_empty else cell
    m = match_instances(true, pred)
    expected = 1.0 if (true_empty and pred_empty) else 0.0
    assert (m.precision, m.recall, m.f1, m.accuracy, m.mean_true_score) == (expected,) * 5
    assert (m.tp, m.fp, m.fn) == (0, int(not pred_empty), int(not true_empty))
    assert dsb_score(true, pred) == expected
    assert per_cell_dice(true, pred) == expected
    assert aji(true, pred) == expected


def test_average_precision_keys_and_scalar_threshold():
    true = squares((0, 4, 0, 4))
    pred = squares((0, 4, 0, 3))  # IoU 12/16 = 0.75
    ap = average_precision(true, pred)
    assert list(ap) == list(DSB_THRESHOLDS) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert [ap[t] for t in DSB_THRESHOLDS] == [1.0] * 6 + [0.0] * 4  # IoU >= tau (stardist)
    assert average_precision(true, pred, 0.8) == {0.8: 0.0}
    assert dsb_score(true, pred) == pytest.approx(0.6)


def test_aji_unmatched_true_cell_adds_area():
    true = squares((0, 4, 0, 4), (8, 12, 8, 12))
    pred = squares((0, 4, 0, 4))  # second true cell missed
    assert aji(true, pred) == pytest.approx(16 / (16 + 16))
    assert per_cell_dice(true, pred) == pytest.approx(0.5)


def test_errors_name_the_problem():
    a = squares((0, 4, 0, 4))
    with pytest.raises(ValueError, match=r"true \(12, 12\) and pred \(12, 11\)"):
        match_instances(a, a[:, :11])
    with pytest.raises(TypeError, match="integer label image, got dtype float64"):
        aji(a.astype(float), a)
    with pytest.raises(ValueError, match="negative label"):
        per_cell_dice(a, -a)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        match_instances(a, a, threshold=0)


def test_overlap_table_direct_and_sparse_ids_agree():
    """Small ids index the table directly, huge ones go through np.unique: same table either way."""
    from cellnb.metrics import overlap_table

    rng = np.random.default_rng(3)
    true = rng.integers(0, 6, size=(20, 20)).astype(np.int32)
    pred = rng.integers(0, 9, size=(20, 20)).astype(np.int32)
    pred[pred == 4] = 0  # an id that does not occur must not get a row or column
    small = overlap_table(true, pred)
    big = overlap_table(true * 10_000_000, pred * 3_000_000)  # 5e7 x 2.4e7 ids: the np.unique path
    assert small.true_ids.tolist() == [1, 2, 3, 4, 5]
    assert small.pred_ids.tolist() == [1, 2, 3, 5, 6, 7, 8]
    assert big.true_ids.tolist() == [10_000_000 * i for i in small.true_ids]
    assert big.pred_ids.tolist() == [3_000_000 * i for i in small.pred_ids]
    for name in ("intersection", "true_areas", "pred_areas"):
        assert np.array_equal(getattr(small, name), getattr(big, name)), name
    hand = [[int(((true == t) & (pred == p)).sum()) for p in small.pred_ids] for t in small.true_ids]
    assert small.intersection.tolist() == hand
    assert small.true_areas.tolist() == [int((true == t).sum()) for t in small.true_ids]
    # empty and bool images
    empty = overlap_table(np.zeros((3, 3), np.uint16), np.zeros((3, 3), np.uint16))
    assert empty.true_ids.size == 0 and empty.intersection.shape == (0, 0)
    masks = overlap_table(np.eye(3, dtype=bool), np.ones((3, 3), bool))
    assert masks.intersection.tolist() == [[3]] and masks.pred_areas.tolist() == [9]
