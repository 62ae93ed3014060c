"""Pixel-wise (semantic) segmentation metrics for binary and multiclass masks.

Binary masks may be ``bool``, integer or float arrays whose values are exactly 0 or 1
(threshold probabilities, or pass ``labels > 0`` for a label image, before calling).
With TP, FP, FN, TN the pixel confusion counts:

* Dice = 2TP / (2TP + FP + FN)  (Sørensen-Dice; equal to the F1 score of pixels)
* IoU = TP / (TP + FP + FN)  (Jaccard index)
* precision = TP / (TP + FP), recall = sensitivity = TP / (TP + FN)
* accuracy = (TP + TN) / (TP + FP + FN + TN)

Empty-mask conventions (``CONTRIBUTING.md``, metric contract): when both masks are empty
every ratio is 1.0 (a perfect answer); when a ratio's denominator is zero because one
mask is empty (precision with an empty prediction, recall with an empty truth) it is 0.0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dice", "iou", "precision", "recall", "accuracy", "per_class_dice", "confusion_counts"]


def _binary(mask, name: str) -> np.ndarray:
    """Return ``mask`` as a bool array, rejecting values other than 0 and 1."""
    arr = np.asarray(mask)
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name} must be a numeric or bool array, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(
            f"{name} must be a binary mask with values in {{0, 1}}, got values in "
            f"[{arr.min()}, {arr.max()}]; threshold probabilities or use `labels > 0` first"
        )
    return arr.astype(bool)


def confusion_counts(pred, true) -> tuple[int, int, int, int]:
    """Pixel confusion counts ``(tp, fp, fn, tn)`` of two binary masks.

    Args:
        pred: Predicted binary mask (bool, or numbers in {0, 1}).
        true: True binary mask, same shape.

    Returns:
        ``(tp, fp, fn, tn)`` as Python ints.

    Raises:
        ValueError: If the shapes differ, a mask is empty (size 0) or not binary.

    Example:
        >>> confusion_counts([1, 1, 0, 0], [1, 0, 1, 0])
        (1, 1, 1, 1)
    """
    pred_b, true_b = _binary(pred, "pred"), _binary(true, "true")
    if pred_b.shape != true_b.shape:
        raise ValueError(f"masks must have the same shape, got pred {pred_b.shape} and true {true_b.shape}")
    if pred_b.size == 0:
        raise ValueError("masks are empty arrays (size 0)")
    tp = int(np.count_nonzero(pred_b & true_b))
    fp = int(np.count_nonzero(pred_b & ~true_b))
    fn = int(np.count_nonzero(~pred_b & true_b))
    tn = int(pred_b.size - tp - fp - fn)
    return tp, fp, fn, tn


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    if both_empty:
        return 1.0
    return float(numerator / denominator) if denominator > 0 else 0.0


def dice(pred, true) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two binary masks.

    Args:
        pred: Predicted binary mask.
        true: True binary mask, same shape.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Example:
        >>> dice([1, 1, 0, 0], [1, 0, 0, 0])  # 2*1 / (2 + 1)
        0.6666666666666666
        >>> dice([0, 0], [0, 0]), dice([0, 0], [1, 0])
        (1.0, 0.0)
    """
    tp, fp, fn, _ = confusion_counts(pred, true)
    return _ratio(2 * tp, 2 * tp + fp + fn, tp + fp + fn == 0)


def iou(pred, true) -> float:
    """Intersection over union (Jaccard) |A∩B| / |A∪B| of two binary masks.

    Args:
        pred: Predicted binary mask.
        true: True binary mask, same shape.

    Returns:
        IoU in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Example:
        >>> iou([1, 1, 0, 0], [1, 0, 0, 0])  # 1 / 2
        0.5
    """
    tp, fp, fn, _ = confusion_counts(pred, true)
    return _ratio(tp, tp + fp + fn, tp + fp + fn == 0)


def precision(pred, true) -> float:
    """Pixel precision TP / (TP + FP).

    Args:
        pred: Predicted binary mask.
        true: True binary mask, same shape.

    Returns:
        Precision in [0, 1]; 1.0 when both masks are empty; 0.0 for an empty prediction of
        a non-empty truth (undefined by design).

    Example:
        >>> precision([1, 1, 1, 0], [1, 0, 0, 0])  # 1 / 3
        0.3333333333333333
        >>> precision([0, 0], [1, 0])
        0.0
    """
    tp, fp, fn, _ = confusion_counts(pred, true)
    return _ratio(tp, tp + fp, tp + fp + fn == 0)


def recall(pred, true) -> float:
    """Pixel recall (sensitivity) TP / (TP + FN).

    Args:
        pred: Predicted binary mask.
        true: True binary mask, same shape.

    Returns:
        Recall in [0, 1]; 1.0 when both masks are empty; 0.0 for any prediction of an
        empty truth (undefined by design).

    Example:
        >>> recall([1, 0, 0, 0], [1, 1, 0, 0])  # 1 / 2
        0.5
        >>> recall([1, 0], [0, 0])
        0.0
    """
    tp, fp, fn, _ = confusion_counts(pred, true)
    return _ratio(tp, tp + fn, tp + fp + fn == 0)


def accuracy(pred, true) -> float:
    """Pixel accuracy (TP + TN) / number of pixels.

    Args:
        pred: Predicted binary mask.
        true: True binary mask, same shape.

    Returns:
        Accuracy in [0, 1] (always defined for non-empty arrays).

    Example:
        >>> accuracy([1, 1, 0, 0], [1, 0, 0, 0])  # 3 of 4 pixels agree
        0.75
    """
    tp, fp, fn, tn = confusion_counts(pred, true)
    return float((tp + tn) / (tp + fp + fn + tn))


def per_class_dice(pred, true, num_classes: int) -> list[float]:
    """Dice of every class of two integer class maps (one-vs-rest per class).

    A class absent from both maps gets 1.0 (the binary convention), so take care when
    macro-averaging over classes that may be absent.

    Args:
        pred: Predicted class map of integers in ``[0, num_classes)``.
        true: True class map, same shape.
        num_classes: Number of classes, including background class 0.

    Returns:
        ``[dice_0, ..., dice_{num_classes-1}]`` as Python floats.

    Raises:
        ValueError: If shapes differ, ``num_classes < 1`` or a value is out of range.
        TypeError: If a map is not integer typed.

    Example:
        >>> per_class_dice([0, 1, 2, 2], [0, 1, 1, 2], num_classes=3)  # class 1: 2/3, class 2: 2/3
        [1.0, 0.6666666666666666, 0.6666666666666666]
    """
    pred_arr, true_arr = np.asarray(pred), np.asarray(true)
    if pred_arr.shape != true_arr.shape:
        raise ValueError(f"class maps must have the same shape, got pred {pred_arr.shape} and true {true_arr.shape}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    for name, arr in (("pred", pred_arr), ("true", true_arr)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise TypeError(f"{name} must be an integer class map, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(
                f"{name} has class values in [{arr.min()}, {arr.max()}], outside [0, {num_classes})"
            )
    return [dice(pred_arr == c, true_arr == c) for c in range(int(num_classes))]
