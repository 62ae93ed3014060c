"""Counting metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellnb.metrics import count_mae, count_rmse, game, relative_count_error


def test_mae_rmse_hand_values():
    pred, true = [3, 5, 10, 0], [4, 5, 6, 2]  # errors -1, 0, 4, -2
    assert count_mae(pred, true) == pytest.approx(7 / 4)
    assert count_rmse(pred, true) == pytest.approx(math.sqrt(21 / 4))
    assert isinstance(count_mae(pred, true), float)
    assert count_mae(3.5, 3) == 0.5  # scalars are one image


def test_rmse_is_sqrt_of_mse_like_ssrnet_code():
    pred, true = np.array([1.0, 3.0]), np.array([0.0, 0.0])
    assert count_rmse(pred, true) == pytest.approx(np.sqrt(np.mean((pred - true) ** 2))) == pytest.approx(math.sqrt(5))


def test_relative_error_guards_zero_counts():
    assert relative_count_error([2], [0]) == 2.0  # |2 - 0| / max(0, 1)
    assert relative_count_error([90, 55], [100, 50]) == pytest.approx((0.1 + 0.1) / 2)
    with pytest.raises(ValueError, match="non-negative"):
        relative_count_error([1], [-1])


@pytest.mark.parametrize("fn", [count_mae, count_rmse, relative_count_error])
def test_counts_shape_mismatch_and_empty(fn):
    with pytest.raises(ValueError, match=r"pred \(3,\) and true \(2,\)"):
        fn([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="NaN"):
        fn([np.nan], [1])


def test_game_levels_hand_values():
    true = np.zeros((2, 4, 4))
    pred = np.zeros((2, 4, 4))
    true[0, 0, 0] = 1
    pred[0, 0, 3] = 1  # image 0: right count, wrong quadrant
    true[1, 1, 1] = 2
    pred[1, 2, 2] = 1  # image 1: count off by one, wrong quadrant
    assert game(pred, true, 0) == pytest.approx((0 + 1) / 2)  # = count MAE
    assert game(pred, true, 0) == pytest.approx(count_mae(pred.sum((1, 2)), true.sum((1, 2))))
    assert game(pred, true, 1) == pytest.approx((2 + 3) / 2)
    assert game(pred, true, 2) == pytest.approx((2 + 3) / 2)  # 4x4 cells of one pixel


def test_game_uneven_grid_and_errors():
    true = np.zeros((5, 5))
    true[2, 2] = 1.0  # edges at floor(5/2)=2: pixel (2,2) is in the bottom-right cell
    pred = np.zeros((5, 5))
    pred[1, 1] = 1.0
    assert game(pred, true, 1) == 2.0
    with pytest.raises(ValueError, match="at least 8x8"):
        game(pred, true, 3)
    with pytest.raises(ValueError, match="non-negative integer"):
        game(pred, true, -1)
    with pytest.raises(ValueError, match="same shape"):
        game(pred, true[:4], 1)
