"""Instance segmentation metrics on label images (0 = background, each object its own id).

* :func:`match_instances` — one-to-one matching by IoU with the semantics of StarDist's
  ``stardist.matching.matching`` (Schmidt et al. 2018; released code): a true/predicted
  pair may match when IoU >= threshold; the matching maximises the number of matches
  (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``) with IoU as tie-breaker.
  For threshold > 0.5 the matching is unique anyway (IoU > 0.5 admits one partner only).
* :func:`average_precision` — AP_τ = TP / (TP + FP + FN) per threshold (called "accuracy"
  in StarDist), and :func:`dsb_score`, its mean over τ ∈ {0.50, 0.55, ..., 0.95}
  (Data Science Bowl 2018, Caicedo et al. 2019).
* :func:`per_cell_dice` — mean over true cells of the Dice with the best predicted cell.
* :func:`aji` — Aggregated Jaccard Index (Kumar et al., IEEE TMI 36(7), 2017, Algorithm 1).

Label ids need not be consecutive; only equality matters, so relabelled (permuted)
labelings score identically. Empty conventions follow the contract: both images without
objects -> perfect scores (1.0); exactly one without objects -> 0.0.

Deviations: StarDist returns 0 for precision/recall/F1 when there are no objects at all
(its ``_safe_divide``); we return 1.0 there, as for the pixel metrics. The DSB 2018
Kaggle metric counted a hit at IoU > τ (strict); we use IoU >= τ like StarDist, which
differs only for pairs with IoU exactly on a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "Matching",
    "DSB_THRESHOLDS",
    "overlap_table",
    "match_instances",
    "average_precision",
    "dsb_score",
    "per_cell_dice",
    "aji",
]

#: IoU thresholds of the Data Science Bowl 2018 score: 0.50, 0.55, ..., 0.95.
DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def check_label_pair(true_labels, pred_labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate two label images: same shape, integer (or bool) dtype, no negative ids."""
    true_arr, pred_arr = np.asarray(true_labels), np.asarray(pred_labels)
    if true_arr.shape != pred_arr.shape:
        raise ValueError(
            f"label images must have the same shape, got true {true_arr.shape} and pred {pred_arr.shape}"
        )
    for name, arr in (("true_labels", true_arr), ("pred_labels", pred_arr)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise TypeError(f"{name} must be an integer label image, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise ValueError(f"{name} has negative label {arr.min()}; labels must be >= 0 (0 = background)")
    return true_arr, pred_arr


@dataclass(frozen=True)
class OverlapTable:
    """Pixel overlaps between the objects of two label images.

    Attributes:
        true_ids: Object ids of the true image (background excluded), sorted.
        pred_ids: Object ids of the predicted image, sorted.
        intersection: ``(n_true, n_pred)`` pixel counts |T_i ∩ P_j|.
        true_areas: ``(n_true,)`` object areas.
        pred_areas: ``(n_pred,)`` object areas.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    intersection: np.ndarray
    true_areas: np.ndarray
    pred_areas: np.ndarray

    @property
    def union(self) -> np.ndarray:
        """``(n_true, n_pred)`` |T_i ∪ P_j|."""
        return self.true_areas[:, None] + self.pred_areas[None, :] - self.intersection

    @property
    def iou(self) -> np.ndarray:
        """``(n_true, n_pred)`` IoU matrix."""
        union = self.union
        return np.divide(self.intersection, union, out=np.zeros(union.shape), where=union > 0)


def overlap_table(true_labels, pred_labels) -> OverlapTable:
    """Contingency table of two label images (one ``np.bincount`` over the pixel pairs; ids go
    through ``np.unique`` first only when they are too large to index the table directly).

    Args:
        true_labels: Integer label image, 0 = background.
        pred_labels: Integer label image of the same shape.

    Returns:
        An :class:`OverlapTable`.

    Example:
        >>> t = overlap_table(np.array([[1, 1, 0, 2]]), np.array([[5, 0, 0, 5]]))
        >>> t.true_ids.tolist(), t.pred_ids.tolist(), t.intersection.tolist()
        ([1, 2], [5], [[1], [1]])
    """
    true_arr, pred_arr = check_label_pair(true_labels, pred_labels)
    true_flat, pred_flat = true_arr.ravel(), pred_arr.ravel()
    n_t = int(true_flat.max()) + 1 if true_flat.size else 1
    n_p = int(pred_flat.max()) + 1 if pred_flat.size else 1
    if n_t * n_p <= max(4 * true_flat.size, 1 << 16):
        # ids small enough to index directly: one bincount, no sort (the common case: labels from
        # skimage.measure.label or a watershed); ids that do not occur are dropped afterwards
        full = np.bincount(true_flat.astype(np.int64) * n_p + pred_flat, minlength=n_t * n_p).reshape(n_t, n_p)
        true_present, pred_present = np.flatnonzero(full.sum(axis=1)), np.flatnonzero(full.sum(axis=0))
        table = full[np.ix_(true_present, pred_present)]
        true_vals, pred_vals = true_present.astype(true_arr.dtype), pred_present.astype(pred_arr.dtype)
    else:  # sparse, large ids: relabel through np.unique first
        true_vals, true_inv = np.unique(true_flat, return_inverse=True)
        pred_vals, pred_inv = np.unique(pred_flat, return_inverse=True)
        n_t, n_p = len(true_vals), len(pred_vals)
        table = np.bincount(true_inv * n_p + pred_inv, minlength=n_t * n_p).reshape(n_t, n_p)
    true_areas, pred_areas = table.sum(axis=1), table.sum(axis=0)
    true_keep, pred_keep = true_vals != 0, pred_vals != 0
    return OverlapTable(
        true_ids=true_vals[true_keep],
        pred_ids=pred_vals[pred_keep],
        intersection=table[np.ix_(true_keep, pred_keep)].astype(np.int64),
        true_areas=true_areas[true_keep].astype(np.int64),
        pred_areas=pred_areas[pred_keep].astype(np.int64),
    )


@dataclass(frozen=True)
class Matching:
    """Result of :func:`match_instances` (field names follow ``stardist.matching``).

    Attributes:
        tp: Matched pairs. fp: unmatched predictions. fn: unmatched true objects.
        precision: TP / (TP + FP). recall: TP / (TP + FN). f1: 2TP / (2TP + FP + FN).
        mean_true_score: Sum of matched IoUs / n_true (StarDist's name).
        mean_matched_score: Mean IoU of the matched pairs (sum / TP).
        accuracy: AP at this threshold, TP / (TP + FP + FN).
        n_true: Number of true objects. n_pred: number of predicted objects.
        threshold: IoU threshold used.
        pairs: The matched ``(true_id, pred_id, iou)`` triples.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    mean_true_score: float
    mean_matched_score: float
    accuracy: float
    n_true: int
    n_pred: int
    threshold: float
    pairs: tuple[tuple[int, int, float], ...] = ()


def _safe(numerator: float, denominator: float, nothing_at_all: bool) -> float:
    if nothing_at_all:
        return 1.0
    return float(numerator / denominator) if denominator > 0 else 0.0


def _match_from_table(table: OverlapTable, threshold: float) -> Matching:
    n_true, n_pred = len(table.true_ids), len(table.pred_ids)
    scores = table.iou
    pairs: list[tuple[int, int, float]] = []
    n_min = min(n_true, n_pred)
    if n_min > 0:
        # StarDist's cost: first maximise the number of pairs with IoU >= threshold, then their IoU.
        costs = -(scores >= threshold).astype(float) - scores / (2 * n_min)
        rows, cols = linear_sum_assignment(costs)
        for r, c in zip(rows, cols):
            if scores[r, c] >= threshold and scores[r, c] > 0:
                pairs.append((int(table.true_ids[r]), int(table.pred_ids[c]), float(scores[r, c])))
    tp = len(pairs)
    fp, fn = n_pred - tp, n_true - tp
    nothing = n_true == 0 and n_pred == 0
    sum_iou = float(sum(p[2] for p in pairs))
    return Matching(
        threshold=float(threshold),
        tp=tp,
        fp=fp,
        fn=fn,
        n_true=n_true,
        n_pred=n_pred,
        precision=_safe(tp, tp + fp, nothing),
        recall=_safe(tp, tp + fn, nothing),
        f1=_safe(2 * tp, 2 * tp + fp + fn, nothing),
        accuracy=_safe(tp, tp + fp + fn, nothing),
        mean_true_score=_safe(sum_iou, n_true, nothing),
        mean_matched_score=_safe(sum_iou, tp, nothing),
        pairs=tuple(pairs),
    )


def _check_threshold(threshold: float) -> float:
    if not (0.0 < float(threshold) <= 1.0):
        raise ValueError(f"IoU threshold must be in (0, 1], got {threshold!r}")
    return float(threshold)


def match_instances(true_labels, pred_labels, threshold: float = 0.5) -> Matching:
    """One-to-one matching of true and predicted objects at an IoU threshold.

    Follows ``stardist.matching.matching``: pairs with IoU >= ``threshold`` are matched by
    ``linear_sum_assignment`` maximising the number of matches (IoU breaks ties).

    Args:
        true_labels: Integer label image, 0 = background.
        pred_labels: Integer label image of the same shape.
        threshold: IoU threshold in (0, 1].

    Returns:
        A frozen :class:`Matching` with counts, precision, recall, F1, AP and mean IoUs.

    Raises:
        ValueError: If shapes differ, labels are negative, or the threshold is outside (0, 1].
        TypeError: If a label image is not integer typed.

    Example:
        Two 4x4 squares shifted by 2 px overlap in 8 px: IoU = 8 / 24 = 1/3.

        >>> true = np.zeros((4, 6), int); true[:, 0:4] = 1
        >>> pred = np.zeros((4, 6), int); pred[:, 2:6] = 7
        >>> m = match_instances(true, pred, threshold=0.5)
        >>> m.tp, m.fp, m.fn, m.f1
        (0, 1, 1, 0.0)
        >>> match_instances(true, pred, threshold=0.3).mean_matched_score
        0.3333333333333333
    """
    return _match_from_table(overlap_table(true_labels, pred_labels), _check_threshold(threshold))


def average_precision(
    true_labels, pred_labels, thresholds=DSB_THRESHOLDS
) -> dict[float, float]:
    """AP_τ = TP / (TP + FP + FN) at each IoU threshold τ (DSB 2018 / StarDist "accuracy").

    Args:
        true_labels: Integer label image, 0 = background.
        pred_labels: Integer label image of the same shape.
        thresholds: An IoU threshold or a sequence of them, each in (0, 1].
            Default: :data:`DSB_THRESHOLDS` (0.50, 0.55, ..., 0.95).

    Returns:
        ``{threshold: AP}`` with Python float keys and values.

    Example:
        One object split into two halves: each half has IoU 0.5 with the object.

        >>> true = np.zeros((2, 4), int); true[:, :] = 1
        >>> pred = np.zeros((2, 4), int); pred[:, :2] = 1; pred[:, 2:] = 2
        >>> average_precision(true, pred, thresholds=(0.5, 0.75))  # 1 / (1 + 1 + 0), then 0 / 3
        {0.5: 0.5, 0.75: 0.0}
    """
    table = overlap_table(true_labels, pred_labels)
    if np.isscalar(thresholds):
        thresholds = (thresholds,)
    return {
        float(t): _match_from_table(table, _check_threshold(t)).accuracy for t in thresholds
    }


def dsb_score(true_labels, pred_labels) -> float:
    """Data Science Bowl 2018 score of one image: mean AP over τ = 0.50, 0.55, ..., 0.95.

    The Kaggle score of a data set is the mean of this value over its images.

    Args:
        true_labels: Integer label image, 0 = background.
        pred_labels: Integer label image of the same shape.

    Returns:
        The mean of :func:`average_precision` over :data:`DSB_THRESHOLDS`.

    Example:
        A 10-px object predicted with 8 px (IoU 0.8) is a hit for τ <= 0.8: 7 of 10 thresholds.

        >>> true = np.zeros((1, 10), int); true[0, :] = 1
        >>> pred = np.zeros((1, 10), int); pred[0, :8] = 3
        >>> round(dsb_score(true, pred), 10)
        0.7
    """
    return float(np.mean(list(average_precision(true_labels, pred_labels, DSB_THRESHOLDS).values())))


def per_cell_dice(true_labels, pred_labels) -> float:
    """Mean over true cells of the Dice with their best-matching predicted cell.

    For every true object T the predicted object P maximising 2|T∩P| / (|T| + |P|) is
    taken (0 when no predicted object touches T); the values are averaged over true
    objects, so false-positive objects are not penalised.

    Args:
        true_labels: Integer label image, 0 = background.
        pred_labels: Integer label image of the same shape.

    Returns:
        Mean per-cell Dice; 1.0 when neither image has objects, 0.0 when exactly one has.

    Example:
        >>> true = np.array([[1, 1, 0, 2, 2]])
        >>> pred = np.array([[4, 4, 0, 5, 0]])  # cell 1 exact; cell 2: 2*1 / (2 + 1)
        >>> round(per_cell_dice(true, pred), 10)
        0.8333333333
    """
    table = overlap_table(true_labels, pred_labels)
    n_true, n_pred = len(table.true_ids), len(table.pred_ids)
    if n_true == 0 or n_pred == 0:
        return 1.0 if n_true == n_pred else 0.0
    dice_matrix = 2.0 * table.intersection / (table.true_areas[:, None] + table.pred_areas[None, :])
    return float(dice_matrix.max(axis=1).mean())


def aji(true_labels, pred_labels) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017, Algorithm 1).

    For each true object G_i take the predicted object S_j with the largest IoU; add
    |G_i ∩ S_j| to C and |G_i ∪ S_j| to U (a G_i without any overlapping prediction adds
    |G_i| to U only). Predicted objects never chosen add their area to U. AJI = C / U.
    A predicted object may be chosen by several true objects (as in the paper and in
    HoVer-Net's ``get_fast_aji``).

    Args:
        true_labels: Integer label image, 0 = background.
        pred_labels: Integer label image of the same shape.

    Returns:
        AJI in [0, 1]; 1.0 when neither image has objects, 0.0 when exactly one has.

    Example:
        Two true cells of 2 px merged into one 5-px prediction (gap pixel included):
        C = 2 + 2, U = 5 + 5, AJI = 0.4.

        >>> true = np.array([[1, 1, 0, 2, 2]])
        >>> pred = np.array([[9, 9, 9, 9, 9]])
        >>> aji(true, pred)
        0.4
    """
    table = overlap_table(true_labels, pred_labels)
    n_true, n_pred = len(table.true_ids), len(table.pred_ids)
    if n_true == 0 or n_pred == 0:
        return 1.0 if n_true == n_pred else 0.0
    ious = table.iou
    best = ious.argmax(axis=1)
    has_partner = ious[np.arange(n_true), best] > 0
    rows = np.flatnonzero(has_partner)
    intersection = int(table.intersection[rows, best[rows]].sum())
    union = int(table.union[rows, best[rows]].sum()) + int(table.true_areas[~has_partner].sum())
    unused = np.ones(n_pred, dtype=bool)
    unused[best[rows]] = False
    union += int(table.pred_areas[unused].sum())
    return float(intersection / union)
