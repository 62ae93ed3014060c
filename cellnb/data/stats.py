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


# --------------------------------------------------------------------------------------------
# fluorescent nuclei: generated vs real (cellnb.data.nuclei / ctc_timelapse vs ndev-sampledata)

NUCLEI_STATISTICS = (
    "nuclei_per_frame",
    "nuclei_per_10k_px",
    "fg_fraction",
    "area_px",
    "fg_intensity",
    "bg_intensity",
    "contrast",
    "snr",
    "noise",
    "texture_cv",
    "brightness_cv",
    "eccentricity",
    "solidity",
    "touching_fraction",
    "nn_distance_px",
)

_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def minmax(image: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] as float64 (the default input normalisation of ``cellnb.methods``)."""
    image = np.asarray(image, dtype=np.float64)
    lo, hi = image.min(), image.max()
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def noise_sigma(image: np.ndarray, where: np.ndarray | None = None) -> float:
    """Gaussian noise level by Immerkær's estimator (1996): ``sqrt(pi/2) / 6 * mean |L * image|``
    with the 3×3 Laplacian-difference mask ``L``, over the pixels ``where`` (default all)."""
    conv = np.abs(ndimage.convolve(np.asarray(image, dtype=np.float64), _LAPLACE, mode="reflect"))
    vals = conv[where] if where is not None else conv.ravel()
    return float(np.sqrt(np.pi / 2) / 6 * vals.mean()) if vals.size else float("nan")


def nucleus_table(image: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-nucleus measurements of one image (min-max normalised first): ``area``, ``mean``
    intensity, ``texture_cv`` (std/mean inside the 1-px-eroded nucleus of the σ=1-smoothed image),
    ``eccentricity``, ``solidity``, ``touching`` (shares an 8-neighbour with another nucleus),
    ``border`` (touches the image edge), ``nn_distance`` (to the nearest other centroid)."""
    from skimage.measure import regionprops

    img = minmax(image)
    labels = np.asarray(labels)
    if img.shape != labels.shape:
        raise ValueError(f"image {img.shape} and labels {labels.shape} differ")
    smooth = ndimage.gaussian_filter(img, 1.0)
    props = regionprops(labels.astype(np.int32), intensity_image=img)
    # touching: a different non-zero label among the 8 neighbours
    mx = ndimage.maximum_filter(labels, size=3, mode="constant", cval=0)
    mn = ndimage.minimum_filter(np.where(labels > 0, labels, np.iinfo(np.int32).max), size=3, mode="constant",
                                cval=np.iinfo(np.int32).max)
    touch_px = (labels > 0) & ((mx != labels) | (mn != labels))
    touching_ids = set(np.unique(labels[touch_px]).tolist()) - {0}
    h, w = labels.shape
    rows = {k: [] for k in ("area", "mean", "texture_cv", "eccentricity", "solidity", "touching", "border", "cy", "cx")}
    for p in props:
        r0, c0, r1, c1 = p.bbox
        inner = ndimage.binary_erosion(p.image)
        vals = smooth[r0:r1, c0:c1][inner if inner.any() else p.image]
        rows["area"].append(p.area)
        rows["mean"].append(p.intensity_mean)
        rows["texture_cv"].append(vals.std() / vals.mean() if vals.mean() > 0 else np.nan)
        rows["eccentricity"].append(p.eccentricity)
        rows["solidity"].append(p.solidity)
        rows["touching"].append(p.label in touching_ids)
        rows["border"].append(r0 == 0 or c0 == 0 or r1 == h or c1 == w)
        rows["cy"].append(p.centroid[0])
        rows["cx"].append(p.centroid[1])
    out = {k: np.asarray(v, dtype=float if k not in ("touching", "border") else bool) for k, v in rows.items()}
    pts = np.stack([out["cy"], out["cx"]], 1) if len(props) else np.zeros((0, 2))
    if len(pts) > 1:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(pts).query(pts, k=2)
        out["nn_distance"] = d[:, 1]
    else:
        out["nn_distance"] = np.full(len(pts), np.nan)
    return out


def nuclei_statistics(images: Sequence[np.ndarray] | np.ndarray, labels: Sequence[np.ndarray] | np.ndarray) -> dict[str, float]:
    """Summary statistics of fluorescent-nuclei images with instance labels.

    Every image is min-max normalised to [0, 1] first (what a network of ``cellnb.methods`` sees),
    so the statistics do not depend on a data set's raw intensity scale. Image-level values are
    averaged over images; nucleus-level values are pooled over all nuclei (shape, area and
    texture only over nuclei that do not touch the image edge):

    - ``nuclei_per_frame``, ``nuclei_per_10k_px`` (crowding), ``fg_fraction`` (labelled area);
    - ``area_px``: mean nucleus area; ``eccentricity``, ``solidity``: mean shape;
    - ``fg_intensity`` / ``bg_intensity``: median inside the labels / outside the labels dilated
      by 3 px; ``contrast`` = (fg − bg) / (fg + bg);
    - ``noise``: Immerkær's noise σ over the background; ``snr`` = (fg − bg) / noise;
    - ``texture_cv``: mean within-nucleus coefficient of variation (σ = 1 smoothed);
    - ``brightness_cv``: coefficient of variation of the nuclei's mean intensity above background;
    - ``touching_fraction``: fraction of nuclei sharing a border with another nucleus;
    - ``nn_distance_px``: mean distance from a nucleus centroid to its nearest neighbour's.
    """
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} label images")
    if len(images) == 0:
        raise ValueError("nuclei_statistics needs at least one image")
    per_image = {k: [] for k in ("nuclei_per_frame", "nuclei_per_10k_px", "fg_fraction", "fg_intensity",
                                 "bg_intensity", "contrast", "noise", "snr", "brightness_cv")}
    pooled = {k: [] for k in ("area", "texture_cv", "eccentricity", "solidity", "touching", "nn_distance", "border")}
    for image, lab in zip(images, labels):
        img = minmax(image)
        lab = np.asarray(lab)
        fg = lab > 0
        bg = ~ndimage.binary_dilation(fg, iterations=3)
        k = int(len(np.unique(lab[fg])))
        fgi = float(np.median(img[fg])) if fg.any() else float("nan")
        bgi = float(np.median(img[bg])) if bg.any() else float("nan")
        # noise away from nuclei and from the image edge (the Laplacian mask needs a 1-px margin)
        inner = np.zeros_like(bg)
        inner[1:-1, 1:-1] = True
        sigma = noise_sigma(img, bg & inner)
        t = nucleus_table(img, lab)
        per_image["nuclei_per_frame"].append(k)
        per_image["nuclei_per_10k_px"].append(k / lab.size * 1e4)
        per_image["fg_fraction"].append(fg.mean())
        per_image["fg_intensity"].append(fgi)
        per_image["bg_intensity"].append(bgi)
        per_image["contrast"].append((fgi - bgi) / (fgi + bgi) if fgi + bgi > 0 else np.nan)
        per_image["noise"].append(sigma)
        per_image["snr"].append((fgi - bgi) / sigma if sigma > 0 else np.nan)
        above = t["mean"] - bgi
        per_image["brightness_cv"].append(above.std() / above.mean() if len(above) > 1 and above.mean() > 0 else np.nan)
        for key in pooled:
            pooled[key].append(t[key] if key != "area" else t["area"])
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in pooled.items()}
    whole = ~cat["border"]
    out = {k: float(np.nanmean(v)) for k, v in per_image.items()}
    out["area_px"] = float(np.mean(cat["area"][whole])) if whole.any() else float("nan")
    for key in ("texture_cv", "eccentricity", "solidity"):
        out[key] = float(np.nanmean(cat[key][whole])) if whole.any() else float("nan")
    out["touching_fraction"] = float(np.mean(cat["touching"])) if cat["touching"].size else float("nan")
    out["nn_distance_px"] = float(np.nanmean(cat["nn_distance"])) if cat["nn_distance"].size else float("nan")
    return {k: out[k] for k in NUCLEI_STATISTICS}


def unlabelled_objects(image: np.ndarray, labels: np.ndarray, min_area: int = 30, sigma: float = 1.0) -> int:
    """Bright objects the labels leave out: connected components of the Otsu foreground of the
    σ-smoothed image, of at least ``min_area`` px, that touch no labelled pixel."""
    img = ndimage.gaussian_filter(minmax(image), sigma)
    fg = img > threshold_otsu(img)
    comp, n = ndimage.label(fg)
    if n == 0:
        return 0
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(img), comp, idx)
    hit = ndimage.maximum(np.asarray(labels) > 0, comp, idx)
    return int(np.sum((area >= min_area) & (np.asarray(hit) == 0)))
