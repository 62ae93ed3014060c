"""Metrics of the book: plain numpy functions that return Python floats (or frozen dataclasses).

* counting: :func:`count_mae`, :func:`count_rmse`, :func:`relative_count_error`, :func:`game`
* pixel: :func:`dice`, :func:`iou`, :func:`precision`, :func:`recall`, :func:`accuracy`,
  :func:`per_class_dice`, :func:`confusion_counts`
* instance: :func:`match_instances` (-> :class:`Matching`), :func:`average_precision`,
  :func:`dsb_score`, :func:`per_cell_dice`, :func:`aji`, :func:`overlap_table`
* image quality: :func:`psnr`, :func:`ssim`
* Cell Tracking Challenge: :func:`ctc_seg`, :func:`ctc_det`, :func:`ctc_evaluate`,
  :func:`write_ctc_result`
"""

from cellnb.metrics.counting import count_mae, count_rmse, game, relative_count_error
from cellnb.metrics.ctc import ctc_det, ctc_evaluate, ctc_seg, write_ctc_result
from cellnb.metrics.image_quality import psnr, ssim
from cellnb.metrics.instance import (
    DSB_THRESHOLDS,
    Matching,
    aji,
    average_precision,
    dsb_score,
    match_instances,
    overlap_table,
    per_cell_dice,
)
from cellnb.metrics.pixel import accuracy, confusion_counts, dice, iou, per_class_dice, precision, recall

__all__ = [
    "count_mae",
    "count_rmse",
    "relative_count_error",
    "game",
    "dice",
    "iou",
    "precision",
    "recall",
    "accuracy",
    "per_class_dice",
    "confusion_counts",
    "Matching",
    "DSB_THRESHOLDS",
    "overlap_table",
    "match_instances",
    "average_precision",
    "dsb_score",
    "per_cell_dice",
    "aji",
    "psnr",
    "ssim",
    "ctc_seg",
    "ctc_det",
    "ctc_evaluate",
    "write_ctc_result",
]
