"""Image statistics used to match the synthetic generators to real data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def vgg_statistics(images_rgb: Sequence[np.ndarray] | np.ndarray, dots: Sequence[np.ndarray] | np.ndarray) -> dict[str, float]:
    """Summary statistics of VGG-cells-like images, to compare generated and real data.

    ``images_rgb``: ``(H, W, 3)`` uint8 images (signal in the blue channel) or ``(H, W)`` grey
    images in 0–255; ``dots``: matching ``(H, W)`` maps (non-zero = one cell; a count > 1 is
    allowed) or ``(H, W, 3)`` VGG dot images (red channel). Per image, the blue channel is split
    with Otsu's threshold; the returned values are the means over images of

    - ``cells_mean``: cells per image (sum of the dot map);
    - ``cell_area_px``: mean area of *isolated* cells = foreground connected components that
      contain exactly one dot;
    - ``fg_intensity`` / ``bg_intensity``: median blue value above / below the threshold.
    """
    if len(images_rgb) != len(dots):
        raise ValueError(f"got {len(images_rgb)} images but {len(dots)} dot maps")
    if len(images_rgb) == 0:
        raise ValueError("vgg_statistics needs at least one image")
    counts, areas, fgs, bgs = [], [], [], []
    for img, dot in zip(images_rgb, dots):
        img = np.asarray(img)
        blue = img[..., 2] if img.ndim == 3 else img
        if blue.ndim != 2:
            raise ValueError(f"image must be (H, W, 3) or (H, W), got {img.shape}")
        blue = blue.astype(np.float64)
        dot = np.asarray(dot)
        dot = dot[..., 0] if dot.ndim == 3 else dot
        if dot.shape != blue.shape:
            raise ValueError(f"dots shape {dot.shape} does not match image shape {blue.shape}")
        dot = dot.astype(np.int64)
        if dot.max() > 1 and np.unique(dot).size == 2:  # 0/255 VGG dot image
            dot = (dot > 0).astype(np.int64)
        counts.append(dot.sum())
        thr = threshold_otsu(blue)
        fg = blue > thr
        fgs.append(np.median(blue[fg]))
        bgs.append(np.median(blue[~fg]))
        comp, n = ndimage.label(fg)
        if n:
            dots_per = np.bincount(comp.ravel(), weights=dot.ravel(), minlength=n + 1)[1:]
            area = np.bincount(comp.ravel(), minlength=n + 1)[1:]
            iso = area[dots_per == 1]
            if len(iso):
                areas.append(iso.mean())
    return {
        "cells_mean": float(np.mean(counts)),
        "cell_area_px": float(np.mean(areas)) if areas else float("nan"),
        "fg_intensity": float(np.mean(fgs)),
        "bg_intensity": float(np.mean(bgs)),
    }
