"""Training targets built from dots or instance label images.

All functions take numpy arrays and return numpy arrays (CONTRIBUTING.md, "Data contract").

- :func:`density_from_points` — Gaussian density map whose sum equals the number of points
  (Lempitsky & Zisserman 2010; SAU-Net ``gaussian_filter`` targets), renormalised near borders.
- :func:`boundaries` — instance boundaries (``skimage.segmentation.find_boundaries``), MC-Unet's
  boundary target.
- :func:`markers` — per-instance erosion (U-SE-ResNet ``get_markers``: square e×e element).
- :func:`unet_weight_map` — Ronneberger et al. 2015, eq. 2.
- :func:`distance_weight` — U-SE-ResNet edge weight ``(1 - d/d_max)^p``.
- :func:`three_class` — background / interior / boundary map (StarDist / U-Net-3class baselines).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

__all__ = [
    "density_from_points",
    "dots_from_points",
    "boundaries",
    "markers",
    "unet_weight_map",
    "distance_weight",
    "three_class",
]


def _check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be a 2-D label image (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{name} must have an integer dtype (instance ids), got {labels.dtype}")
    if labels.dtype != bool and labels.size and labels.min() < 0:
        raise ValueError(f"{name} must be non-negative (0 = background), got minimum {labels.min()}")
    return labels.astype(np.int64, copy=False)


def _check_points(points, shape) -> tuple[np.ndarray, tuple[int, int]]:
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (K, 2) as (row, col), got {pts.shape}")
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape}")
    h, w = int(shape[0]), int(shape[1])
    return pts, (h, w)


def dots_from_points(points, shape) -> np.ndarray:
    """Dot map ``(H, W)`` uint16: number of points whose rounded position falls in each pixel.

    Points outside the image raise ``ValueError`` (the caller decides whether to clip).
    """
    pts, (h, w) = _check_points(points, shape)
    rc = np.floor(pts + 0.5).astype(np.int64)
    rc[:, 0] = np.clip(rc[:, 0], 0, h - 1) if len(rc) else rc[:, 0]
    rc[:, 1] = np.clip(rc[:, 1], 0, w - 1) if len(rc) else rc[:, 1]
    if len(pts) and ((pts[:, 0] < -0.5) | (pts[:, 0] >= h - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] >= w - 0.5)).any():
        raise ValueError(f"points lie outside the image of shape {(h, w)}")
    dots = np.zeros((h, w), np.uint16)
    np.add.at(dots, (rc[:, 0], rc[:, 1]), 1)
    return dots


def density_from_points(points, shape, sigma: float = 2.0, truncate: float = 4.0) -> np.ndarray:
    """Gaussian density map ``(H, W)`` float32 whose sum is ``len(points)`` exactly.

    Each point contributes a Gaussian of standard deviation ``sigma`` centred on its rounded
    pixel, truncated at ``truncate * sigma`` and cut at the image border; every kernel is
    renormalised to sum to 1 after the cut, so cells near the border keep their full mass
    (plain ``scipy.ndimage.gaussian_filter(mode="constant")`` of the dot map loses it).
    ``sigma=0`` gives the dot map itself. Follows the dots-convolved-with-a-Gaussian targets of
    Lempitsky & Zisserman (NIPS 2010) and SAU-Net (``gaussian_filter``).
    """
    pts, (h, w) = _check_points(points, shape)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    dots = dots_from_points(pts, (h, w)).astype(np.float64)
    if sigma == 0 or len(pts) == 0:
        return dots.astype(np.float32)
    # kernel mass kept inside the image for a dot at each pixel: separable, so the product of
    # the 1-D masses along rows and columns (the same filter applied to an all-ones image)
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    mass_r = ndimage.correlate1d(np.ones(h), k, mode="constant")
    mass_c = ndimage.correlate1d(np.ones(w), k, mode="constant")
    # renormalise per source: a source at pixel p divides its kernel by mass(p); do it by
    # filtering dots / mass instead of density / mass (the kernel is symmetric)
    scaled = dots / np.outer(mass_r, mass_c)
    density = ndimage.gaussian_filter(scaled, sigma, mode="constant", truncate=truncate)
    return density.astype(np.float32)


def boundaries(labels: np.ndarray, mode: str = "inner") -> np.ndarray:
    """Boundary map ``(H, W)`` uint8 (1 on boundaries) of an instance label image.

    Thin wrapper over ``skimage.segmentation.find_boundaries(labels, mode=mode)``; ``mode`` is
    one of ``inner`` (pixels of the object next to another label or background), ``outer``,
    ``thick`` (2 px contours) or ``subpixel`` is not accepted. Touching instances get a boundary
    on their shared interface, which is what the MC-Unet boundary head learns.
    """
    labels = _check_labels(labels)
    if mode not in ("inner", "outer", "thick"):
        raise ValueError(f"unknown boundary mode {mode!r}; choose from ['inner', 'outer', 'thick']")
    return find_boundaries(labels, connectivity=1, mode=mode, background=0).astype(np.uint8)


def markers(labels: np.ndarray, erosion: int = 2) -> np.ndarray:
    """Markers ``(H, W)`` int32: each instance eroded on its own, ids kept.

    U-SE-ResNet ``get_markers`` (CIVA-Lab repo): binary erosion of each instance with a square
    ``erosion × erosion`` structuring element (``np.ones((e, e))``), then the union; ``erosion``
    is the dataset's E-p (2 for small nuclei, 10–20 for big cells). ``erosion`` 0 or 1 keeps the
    instances unchanged. Instances that vanish under erosion are dropped (as in the released code).
    Even ``erosion`` shifts markers by half a pixel, as in the released code.
    """
    labels = _check_labels(labels)
    if erosion < 0:
        raise ValueError(f"erosion must be >= 0, got {erosion}")
    out = np.zeros(labels.shape, np.int32)
    if erosion <= 1:
        out[:] = labels
        return out
    structure = np.ones((erosion, erosion), bool)
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        # pad the box so erosion treats the image border like background (as a full-image erosion does)
        pad = erosion
        r0, r1 = max(sl[0].start - pad, 0), min(sl[0].stop + pad, labels.shape[0])
        c0, c1 = max(sl[1].start - pad, 0), min(sl[1].stop + pad, labels.shape[1])
        obj = labels[r0:r1, c0:c1] == lab
        er = ndimage.binary_erosion(obj, structure=structure, border_value=0)
        out[r0:r1, c0:c1][er] = lab
    return out


def unet_weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0, class_balance: bool = True) -> np.ndarray:
    """U-Net loss weight map ``(H, W)`` float32 (Ronneberger et al., MICCAI 2015, eq. 2).

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` where d1, d2 are the distances
    to the nearest and second-nearest instance. ``w_c`` balances class frequencies
    (``w_c = 1 / frequency`` normalised so the more frequent class has weight 1) when
    ``class_balance``, otherwise 1. The border term is applied on background pixels only (the
    separating gaps between touching cells), as in the paper's Fig. 3d; with fewer than two
    instances it is zero. Distances are computed only within ``sigma * sqrt(2 ln(w0 / 1e-6))``
    of each instance's bounding box (farther out the border term is below 1e-6).
    """
    labels = _check_labels(labels)
    fg = labels > 0
    wc = np.ones(labels.shape, np.float64)
    if class_balance and fg.any() and (~fg).any():
        n_fg, n_bg = fg.sum(), (~fg).sum()
        wc[fg] = max(n_fg, n_bg) / n_fg
        wc[~fg] = max(n_fg, n_bg) / n_bg
    ids = np.unique(labels[fg])
    if len(ids) < 2:
        return wc.astype(np.float32)
    # d1, d2 only matter where the border term is not negligible: d1 + d2 <= reach, so each
    # instance's distance map is computed in its bounding box grown by ``reach`` (exact there,
    # because all of the instance lies inside the window); farther pixels keep d = inf
    reach = int(np.ceil(sigma * np.sqrt(2 * np.log(max(w0, 1e-12) / 1e-6)))) if w0 > 0 else 0
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        r0, r1 = max(sl[0].start - reach, 0), min(sl[0].stop + reach, labels.shape[0])
        c0, c1 = max(sl[1].start - reach, 0), min(sl[1].stop + reach, labels.shape[1])
        d = ndimage.distance_transform_edt(labels[r0:r1, c0:c1] != lab)
        w1, w2 = d1[r0:r1, c0:c1], d2[r0:r1, c0:c1]
        w2[:] = np.where(d < w1, w1, np.minimum(w2, d))
        w1[:] = np.minimum(w1, d)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return (wc + np.where(fg, 0.0, border)).astype(np.float32)


def distance_weight(labels: np.ndarray, power: float = 1.0, per_instance: bool = True) -> np.ndarray:
    """Edge weight ``(1 - d/d_max)^power`` ``(H, W)`` float32 (U-SE-ResNet, CIVA-Lab ``get_weight_map``).

    ``d`` is the Euclidean distance of a foreground pixel to the nearest pixel outside its own
    instance (background or another cell), so weights are 1 on cell edges (including interfaces
    between touching cells) and fall to 0 at the most central pixel. With ``per_instance`` (default,
    as the contract asks), ``d_max`` is each instance's own maximum distance, so every cell has a
    0 at its centre; with ``per_instance=False`` one ``d_max`` for the whole image is used, as the
    released code does. Background pixels get weight 1 (they are "on" the edge side; the released
    code measures distance to Canny edges, so background far from cells gets a low weight there —
    listed as a deviation). ``power`` is the epoch-dependent sharpening p = (epoch/50)^5;
    ``power=0`` gives uniform weights.
    """
    labels = _check_labels(labels)
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    weight = np.ones(labels.shape, np.float64)
    fg = labels > 0
    if not fg.any():
        return weight.astype(np.float32)
    # d = distance to the nearest pixel outside the own instance, minus 1, so edge pixels have d = 0;
    # a per-instance transform makes interfaces between touching cells edges too
    d = np.zeros(labels.shape, np.float64)
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, labels.shape[0])
        c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, labels.shape[1])
        obj = labels[r0:r1, c0:c1] == lab
        padded = np.pad(obj, 1, constant_values=False)
        dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1] - 1.0
        d[r0:r1, c0:c1][obj] = dist[obj]
    if per_instance:
        dmax = ndimage.maximum(d, labels, index=np.arange(labels.max() + 1))
        dmax = np.asarray(dmax, np.float64)[labels]
    else:
        dmax = np.full(labels.shape, d.max())
    ratio = np.divide(d, dmax, out=np.zeros_like(d), where=dmax > 0)
    weight[fg] = (1.0 - ratio[fg]) ** power
    return weight.astype(np.float32)


def three_class(labels: np.ndarray, mode: str = "inner") -> np.ndarray:
    """3-class map ``(H, W)`` uint8: 0 background, 1 cell interior, 2 boundary (``find_boundaries``)."""
    labels = _check_labels(labels)
    out = (labels > 0).astype(np.uint8)
    out[boundaries(labels, mode=mode) > 0] = 2
    return out
