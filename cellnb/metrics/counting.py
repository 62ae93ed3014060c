"""Counting metrics: MAE, RMSE, relative count error and GAME.

All functions take per-image counts (or density maps for :func:`game`) as array-likes and
return Python floats.

References:
    * MAE / RMSE as computed in SSRNet's released code (``Roin626/SSRnet``,
      ``SSRnet_bc05_2.py``): the value that code prints as "mse" is the square root of
      the mean squared count error, i.e. the RMSE of :func:`count_rmse`.
    * GAME: Guerrero-Gómez-Olmedo et al., "Extremely overlapping vehicle counting",
      IbPRIA 2015, Eq. (1).
"""

from __future__ import annotations

import numpy as np

__all__ = ["count_mae", "count_rmse", "relative_count_error", "game"]


def _counts_pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """Validate two count vectors (scalars allowed) and return them as float64 1-D arrays."""
    pred_arr = np.atleast_1d(np.asarray(pred, dtype=np.float64))
    true_arr = np.atleast_1d(np.asarray(true, dtype=np.float64))
    if pred_arr.shape != true_arr.shape:
        raise ValueError(
            f"predicted and true counts must have the same shape, got pred {pred_arr.shape} "
            f"and true {true_arr.shape}"
        )
    if pred_arr.ndim != 1:
        raise ValueError(f"counts must be a scalar or a 1-D sequence (one per image), got shape {pred_arr.shape}")
    if pred_arr.size == 0:
        raise ValueError("counts are empty: need at least one image")
    if not (np.all(np.isfinite(pred_arr)) and np.all(np.isfinite(true_arr))):
        raise ValueError("counts contain NaN or inf")
    return pred_arr, true_arr


def count_mae(pred, true) -> float:
    """Mean absolute count error, ``mean_i |ĉ_i - c_i|``.

    Args:
        pred: Predicted counts, a scalar or one value per image.
        true: True counts, same shape as ``pred``.

    Returns:
        The mean absolute error as a Python float.

    Raises:
        ValueError: If the shapes differ, the input is empty or not finite.

    Example:
        >>> count_mae([10, 12, 7], [11, 12, 4])  # (1 + 0 + 3) / 3
        1.3333333333333333
    """
    pred_arr, true_arr = _counts_pair(pred, true)
    return float(np.mean(np.abs(pred_arr - true_arr)))


def count_rmse(pred, true) -> float:
    """Root mean squared count error, ``sqrt(mean_i (ĉ_i - c_i)^2)``.

    SSRNet's code prints this quantity under the name "mse" (it takes the square root).

    Args:
        pred: Predicted counts, a scalar or one value per image.
        true: True counts, same shape as ``pred``.

    Returns:
        The RMSE as a Python float.

    Raises:
        ValueError: If the shapes differ, the input is empty or not finite.

    Example:
        >>> count_rmse([10, 12, 7], [11, 12, 4])  # sqrt((1 + 0 + 9) / 3)
        1.8257418583505538
    """
    pred_arr, true_arr = _counts_pair(pred, true)
    return float(np.sqrt(np.mean((pred_arr - true_arr) ** 2)))


def relative_count_error(pred, true) -> float:
    """Mean relative count error, ``mean_i |ĉ_i - c_i| / max(c_i, 1)``.

    The ``max(c_i, 1)`` guard is our choice: it keeps images with no cells defined (their
    error is then the absolute error) and equals the plain relative error whenever the
    true count is at least one, which is always the case for the book's datasets.

    Args:
        pred: Predicted counts, a scalar or one value per image.
        true: True counts (non-negative), same shape as ``pred``.

    Returns:
        The mean relative error as a Python float (0.1 means 10 %).

    Raises:
        ValueError: If the shapes differ, the input is empty or not finite, or a true
            count is negative.

    Example:
        >>> round(relative_count_error([110, 0, 2], [100, 0, 4]), 12)  # (0.1 + 0 + 0.5) / 3
        0.2
    """
    pred_arr, true_arr = _counts_pair(pred, true)
    if np.any(true_arr < 0):
        raise ValueError(f"true counts must be non-negative, got minimum {true_arr.min()}")
    return float(np.mean(np.abs(pred_arr - true_arr) / np.maximum(true_arr, 1.0)))


def game(pred_density, true_density, level: int) -> float:
    """Grid Average Mean absolute Error GAME(L) (Guerrero-Gómez-Olmedo et al. 2015, Eq. 1).

    Each map is split into a ``2^L x 2^L`` grid (4^L cells; cell edges at
    ``floor(k * H / 2^L)``); for every image the absolute count errors of the cells are
    summed, and the sums are averaged over images. GAME(0) is the count MAE.

    Args:
        pred_density: Predicted density map ``(H, W)`` or a batch ``(N, H, W)``.
        true_density: True density map(s), same shape.
        level: Grid level ``L >= 0``.

    Returns:
        GAME(L) as a Python float.

    Raises:
        ValueError: If shapes differ or are not 2-D/3-D, ``level`` is negative, or the
            map is smaller than the grid.

    Example:
        >>> true = np.zeros((4, 4)); true[0, 0] = 1.0; true[3, 3] = 1.0
        >>> pred = np.zeros((4, 4)); pred[0, 3] = 2.0   # right total, wrong places
        >>> game(pred, true, 0), game(pred, true, 1)    # cells: |0-1| + |2-0| + |0-0| + |0-1|
        (0.0, 4.0)
    """
    pred_arr = np.asarray(pred_density, dtype=np.float64)
    true_arr = np.asarray(true_density, dtype=np.float64)
    if pred_arr.shape != true_arr.shape:
        raise ValueError(
            f"density maps must have the same shape, got pred {pred_arr.shape} and true {true_arr.shape}"
        )
    if pred_arr.ndim == 2:
        pred_arr, true_arr = pred_arr[None], true_arr[None]
    if pred_arr.ndim != 3:
        raise ValueError(f"density maps must be (H, W) or (N, H, W), got shape {pred_arr.shape}")
    if int(level) != level or level < 0:
        raise ValueError(f"GAME level must be a non-negative integer, got {level!r}")
    cells = 2 ** int(level)
    _, height, width = pred_arr.shape
    if height < cells or width < cells:
        raise ValueError(f"GAME({level}) needs maps of at least {cells}x{cells} pixels, got {height}x{width}")
    row_edges = np.floor(np.linspace(0, height, cells + 1)).astype(int)[:-1]
    col_edges = np.floor(np.linspace(0, width, cells + 1)).astype(int)[:-1]
    difference = pred_arr - true_arr
    cell_errors = np.add.reduceat(np.add.reduceat(difference, row_edges, axis=1), col_edges, axis=2)
    return float(np.mean(np.abs(cell_errors).sum(axis=(1, 2))))
