"""Binary and multiclass pixel metrics: hand values and empty-mask conventions."""

from __future__ import annotations

import numpy as np
import pytest

from cellnb.metrics import accuracy, dice, iou, per_class_dice, precision, recall

# 2x4 masks: TP = 2, FP = 1, FN = 1, TN = 4
PRED = np.array([[1, 1, 1, 0], [0, 0, 0, 0]])
TRUE = np.array([[1, 1, 0, 1], [0, 0, 0, 0]])


def test_hand_values():
    assert dice(PRED, TRUE) == pytest.approx(4 / 6)
    assert iou(PRED, TRUE) == pytest.approx(2 / 4)
    assert precision(PRED, TRUE) == pytest.approx(2 / 3)
    assert recall(PRED, TRUE) == pytest.approx(2 / 3)
    assert accuracy(PRED, TRUE) == pytest.approx(6 / 8)


def test_dtypes_bool_int_float_agree():
    for p, t in [(PRED.astype(bool), TRUE.astype(bool)), (PRED.astype(np.uint8), TRUE), (PRED.astype(np.float32), TRUE)]:
        assert dice(p, t) == pytest.approx(4 / 6)


@pytest.mark.parametrize("fn", [dice, iou, precision, recall, accuracy])
def test_both_empty_is_perfect(fn):
    empty = np.zeros((3, 3), bool)
    assert fn(empty, empty) == 1.0


def test_one_empty_conventions():
    empty = np.zeros_like(TRUE)
    # empty prediction of a non-empty truth
    assert (dice(empty, TRUE), iou(empty, TRUE), precision(empty, TRUE), recall(empty, TRUE)) == (0.0, 0.0, 0.0, 0.0)
    assert accuracy(empty, TRUE) == pytest.approx(5 / 8)
    # non-empty prediction of an empty truth
    assert (dice(PRED, empty), iou(PRED, empty), precision(PRED, empty), recall(PRED, empty)) == (0.0, 0.0, 0.0, 0.0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"pred \(2, 4\) and true \(4, 2\)"):
        dice(PRED, TRUE.T)
    with pytest.raises(ValueError, match="binary mask"):
        iou(PRED * 3, TRUE)
    with pytest.raises(ValueError, match="binary mask"):
        dice(PRED * 0.7, TRUE)


def test_per_class_dice():
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    true = np.array([[0, 1, 2], [2, 2, 2]])
    # class 0: pred {0,5} true {0} -> 2/3; class 1: pred {1,2} true {1} -> 2/3; class 2: pred {3,4} true {2,3,4,5} -> 4/6
    assert per_class_dice(pred, true, 3) == pytest.approx([2 / 3, 2 / 3, 4 / 6])
    assert per_class_dice(pred, true, 4)[3] == 1.0  # absent from both
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        per_class_dice(pred, true, 2)
    with pytest.raises(TypeError, match="integer class map"):
        per_class_dice(pred.astype(float), true, 3)
