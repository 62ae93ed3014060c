"""Floors and ceilings: what a number must beat, and the best its evaluation allows.

A model that does not beat its **floor** has not learned, and nothing is concluded from it
(:func:`cellnb.verdicts.compare`). The floors, one per task:

* count -> :func:`constant_count`: always answer the training-mean count;
* binary mask -> :func:`otsu_mask`: Otsu's threshold of the Gaussian-smoothed image;
* instances -> :func:`otsu_watershed`: Otsu mask, then a watershed of its distance transform from
  its local maxima (the classical scikit-image pipeline);
* super-resolution -> :func:`bicubic`: bicubic interpolation of the low-resolution input.

A **ceiling** runs an instance post-processing on the ground truth it would see (the true
foreground, plus the true markers or boundaries for methods that predict them): :func:`oracle_maps`
builds those maps, :func:`instance_ceiling` scores a post-processing on them. When the ceiling is
near or below the scores being compared, the metric is capped and the comparison is inconclusive.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "constant_count", "otsu_mask", "otsu_watershed", "distance_watershed", "bicubic",
    "oracle_maps", "instance_scores", "mean_instance_scores", "instance_ceiling", "capped",
]


def constant_count(train_counts: Sequence[float], n_test: int) -> np.ndarray:
    """The count floor: the mean training count, predicted for each of ``n_test`` images.

    >>> constant_count([10, 20, 30], 2).tolist()
    [20.0, 20.0]
    """
    train_counts = np.asarray(train_counts, dtype=float)
    if train_counts.size == 0:
        raise ValueError("constant_count needs at least one training count")
    return np.full(int(n_test), float(train_counts.mean()))


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        # (H, W, C) or (C, H, W): average the channels
        image = image.mean(axis=0 if image.shape[0] <= 4 and image.shape[-1] > 4 else -1)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image (or one with a channel axis), got shape {image.shape}")
    return image


def otsu_mask(image: np.ndarray, sigma: float = 1.0, bright_foreground: bool = True) -> np.ndarray:
    """The mask floor: Otsu's threshold of the image smoothed with a Gaussian of ``sigma`` px.

    ``bright_foreground=False`` for stains where cells are darker than the background
    (brightfield blood smears). Returns a (H, W) uint8 0/1 mask.
    """
    from skimage.filters import gaussian, threshold_otsu

    smooth = gaussian(_gray(image), sigma=sigma) if sigma > 0 else _gray(image)
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(smooth.shape, np.uint8)
    mask = smooth > threshold_otsu(smooth)
    return (mask if bright_foreground else ~mask).astype(np.uint8)


def distance_watershed(mask: np.ndarray, min_distance: int = 3, min_size: int = 10) -> np.ndarray:
    """Instances of a binary ``mask``: watershed of ``-distance`` from its local maxima.

    Peaks are ``skimage.feature.peak_local_max(distance, min_distance, labels=components)``, one
    seed per peak, searched only in components of at least ``min_size`` pixels; objects smaller than
    ``min_size`` pixels are removed. (H, W) int32, 0 = background.
    """
    from skimage.feature import peak_local_max
    from skimage.measure import label as cc_label
    from skimage.segmentation import relabel_sequential, watershed

    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = ndimage.distance_transform_edt(mask)
    components = cc_label(mask, connectivity=2)
    if min_size > 1:
        # a component smaller than ``min_size`` can only hold objects smaller than ``min_size`` (the
        # watershed never floods from one 8-connected component into another), which are removed
        # below: seeding it changes nothing but costs one peak search per speck of a noisy mask
        sizes = np.bincount(components.ravel())
        components[(sizes < min_size)[components]] = 0
    peaks = peak_local_max(distance, min_distance=max(1, int(min_distance)), labels=components, exclude_border=False)
    seeds = np.zeros(mask.shape, np.int32)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, seeds, mask=mask)
    if min_size > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def otsu_watershed(image: np.ndarray, sigma: float = 1.0, min_distance: int = 3, min_size: int = 10,
                   bright_foreground: bool = True) -> np.ndarray:
    """The instance floor: :func:`otsu_mask`, then :func:`distance_watershed`."""
    return distance_watershed(otsu_mask(image, sigma, bright_foreground), min_distance, min_size)


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The super-resolution floor: bicubic upsampling by ``scale`` (``torch.nn.functional.interpolate``,
    ``align_corners=False``), clipped to [0, 1]. Accepts (H, W), (C, H, W) or (N, C, H, W) floats."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(lr, dtype=np.float32))
    dims = x.ndim
    if dims not in (2, 3, 4):
        raise ValueError(f"bicubic expects (H, W), (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    while x.ndim < 4:
        x = x.unsqueeze(0)
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    for _ in range(4 - dims):
        y = y.squeeze(0)
    return y.numpy()


def oracle_maps(labels: np.ndarray, erosion: int = 2) -> dict[str, np.ndarray]:
    """The perfect inputs of every post-processing, made from true instance ``labels``.

    ``mask`` (foreground), ``marker`` (each instance eroded by ``erosion`` px, as U-SE-ResNet's
    targets), ``boundary`` (inner boundaries) and ``interior`` (mask minus boundary: the three-class
    U-Net's interior class), all float32 0/1.
    """
    from cellnb import targets

    labels = np.asarray(labels)
    mask = (labels > 0).astype(np.float32)
    boundary = targets.boundaries(labels, mode="inner").astype(np.float32)
    return {
        "mask": mask,
        "marker": (targets.markers(labels, erosion=erosion) > 0).astype(np.float32),
        "boundary": boundary,
        "interior": mask * (1 - boundary),
    }


def instance_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> dict[str, float]:
    """AJI, AP@0.5 (= TP / (TP + FP + FN) at IoU 0.5) and foreground Dice of one image."""
    from cellnb.metrics import aji, average_precision, dice

    return {
        "aji": aji(true_labels, pred_labels),
        "ap50": average_precision(true_labels, pred_labels, thresholds=(0.5,))[0.5],
        "dice": dice(pred_labels > 0, true_labels > 0),
    }


def mean_instance_scores(segment: Callable[[np.ndarray], np.ndarray],
                         true_labels: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean AJI / AP@0.5 / Dice (:func:`instance_scores`) of ``segment(labels)`` against ``labels``
    over the images. With ``segment`` = an instance step on the perfect maps of ``labels`` (e.g.
    :meth:`cellnb.methods.base.Method.ceiling`) this is that step's ceiling."""
    rows = [instance_scores(t, segment(t)) for t in true_labels]
    if not rows:
        raise ValueError("a ceiling needs at least one label image")
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def instance_ceiling(postprocess: Callable[[Mapping[str, np.ndarray]], np.ndarray],
                     true_labels: Sequence[np.ndarray], erosion: int = 2) -> dict[str, float]:
    """Mean AJI / AP@0.5 / Dice of ``postprocess(oracle_maps(labels))`` over the images: the ceiling.

    ``postprocess`` takes the dict of :func:`oracle_maps` (the same keys a method's probability maps
    have) and returns instance labels.
    """
    return mean_instance_scores(lambda t: postprocess(oracle_maps(t, erosion)), true_labels)


def capped(ceiling: float, scores: Sequence[float], slack: float = 0.05, useful: float = 0.5) -> bool:
    """True when the metric cannot separate the methods compared: the ceiling is within ``slack``
    of (or below) the best of ``scores``, or the ceiling itself is below ``useful`` (even the perfect
    input scores poorly, so differences measure the post-processing, not the model).

    >>> capped(0.14, [0.05, 0.079])
    True
    >>> capped(0.95, [0.70, 0.80])
    False
    >>> capped(0.95, [0.70, 0.92])
    True
    """
    return float(ceiling) < useful or float(ceiling) - max(float(s) for s in scores) <= slack
