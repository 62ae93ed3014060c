"""Procedural microscopy generators (numpy / scipy / scikit-image), deterministic per seed.

Every generator draws all its randomness from ``numpy.random.default_rng(seed)``, so the same
seed gives the same arrays on every machine. Recipes: ``shared/DATASETS.md`` §4.0 (SIMCEP,
Lehmussola et al., IEEE TMI 26(7):1010–1016, 2007), §4a (VGG cells / BBBC005), §4b (blood
smear), §4c (touching nuclei), §4d (Cell Tracking Challenge time-lapse).

Deviations from SIMCEP (all for speed, listed in the book's data page):

- the space-variant optics blur is a blend of 5 pre-blurred layers (sigma 0.5, 1, 2, 3.5, 5),
  each connected component assigned to the two nearest layers by its depth, instead of the
  per-pixel scatter kernel of ``blur.c``;
- the Perlin texture is one image-wide field multiplied into every object, not one field per object;
- the energy-matched illumination and autofluorescence are replaced by an additive background of
  a fixed level with polynomial vignetting, tuned so the VGG statistics match
  (:func:`cellnb.data.vgg_statistics`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.transform import resize

__all__ = [
    "fluorescence_cells",
    "fluorescence_batch",
    "bbbc005_name",
    "save_bbbc005",
    "BBBC005_COUNTS",
    "blood_smear",
    "lowres_pair",
    "nuclei",
    "ctc_timelapse",
    "write_ctc",
    "write_ctc_result",
]

# --------------------------------------------------------------------------------------------
# SIMCEP building blocks
# --------------------------------------------------------------------------------------------


def _octave_noise(rng: np.random.Generator, shape: tuple[int, int], persistence: float, n1: int, n2: int) -> np.ndarray:
    """Perlin-like octave noise in [0, 1] (SIMCEP ``texture.m``): random 2^k grids, 3x3 smoothed,
    resized to ``shape`` (bilinear), weighted by ``persistence**k``, summed, min-max normalised."""
    out = np.zeros(shape, np.float64)
    for k in range(n1, n1 + n2):
        g = 2**k
        grid = rng.random((g + 2, g + 2))
        grid = ndimage.uniform_filter(grid, 3, mode="nearest")[1:-1, 1:-1]
        out += persistence**k * resize(grid, shape, order=1, mode="edge", anti_aliasing=False)
    lo, hi = out.min(), out.max()
    return (out - lo) / (hi - lo) if hi > lo else np.zeros(shape)


def _simcep_shape(rng: np.random.Generator, radius: float, alpha: float, beta: float, n_samples: int = 64):
    """Random closed blob (SIMCEP ``shape.m``): 10 points on a circle perturbed as
    y_k = alpha U(-1,1) + sin(t_k + beta U(-1,1)), x_k = alpha U(-1,1) + cos(t_k + beta U(-1,1)),
    joined by a smooth closed curve and scaled by ``radius``.

    Deviations for speed: the closed curve is the periodic trigonometric interpolant of the 10
    points (SIMCEP: closed cubic spline ``cscvn``), and it is rasterised in polar form
    (pixel inside when its distance to the centre is below the curve's radius at its angle;
    exact for star-shaped curves, which these near-circles are).
    Returns (mask, row offset, col offset) of the mask's top-left corner relative to the centre.
    """
    t = 2 * np.pi * np.arange(10) / 10
    y = alpha * rng.uniform(-1, 1, 10) + np.sin(t + beta * rng.uniform(-1, 1, 10))
    x = alpha * rng.uniform(-1, 1, 10) + np.cos(t + beta * rng.uniform(-1, 1, 10))
    curve = []
    for v in (y, x):
        spec = np.fft.rfft(v)
        spec[5] *= 0.5  # split the Nyquist term between +/- frequency
        pad = np.zeros(n_samples // 2 + 1, complex)
        pad[:6] = spec
        curve.append(np.fft.irfft(pad, n_samples) * (n_samples / 10))
    cy, cx = curve[0] * radius, curve[1] * radius
    ang = np.arctan2(cy, cx)
    rad = np.hypot(cy, cx)
    order = np.argsort(ang)
    ang, rad = ang[order], rad[order]
    ang = np.concatenate([ang[-1:] - 2 * np.pi, ang, ang[:1] + 2 * np.pi])
    rad = np.concatenate([rad[-1:], rad, rad[:1]])
    rmax = int(np.ceil(rad.max())) + 1
    yy, xx = np.mgrid[-rmax : rmax + 1, -rmax : rmax + 1]
    mask = np.hypot(yy, xx) < np.interp(np.arctan2(yy, xx), ang, rad)
    return mask, -rmax, -rmax


def _clip_box(shape, top: int, left: int, mask: np.ndarray):
    """Intersect a local mask placed at (top, left) with the image. Returns slices and cropped mask."""
    h, w = mask.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + h, shape[0]), min(left + w, shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    return (slice(r0, r1), slice(c0, c1)), mask[r0 - top : r1 - top, c0 - left : c1 - left]


def _draw_centres(rng, n, shape, clust, clustprob, spatvar):
    """SIMCEP placement (``generate_objects.m``): ``clust`` uniform cluster centres; each object is
    near a cluster centre (normal, std ``spatvar * mean side``) with probability ``clustprob``,
    otherwise uniform."""
    h, w = shape
    centres_c = rng.uniform([0, 0], [h, w], size=(max(clust, 1), 2))
    in_cluster = rng.random(n) < clustprob
    which = rng.integers(0, len(centres_c), n)
    near = centres_c[which] + rng.normal(0, spatvar * (h + w) / 2, size=(n, 2))
    uniform = rng.uniform([0, 0], [h, w], size=(n, 2))
    pts = np.where(in_cluster[:, None], near, uniform)
    return np.clip(pts, 0, [h - 1, w - 1])


def _place_blobs(rng, shape, n, radius, alpha, beta, clust, clustprob, spatvar, overlap, radius_jitter=0.0, max_failures=50):
    """Place SIMCEP blobs with the overlap rule of ``add_object.m``.

    A new object is rejected when it shares more than ``overlap`` of its own area, or of the area
    of any object it touches, with existing objects; after ``max_failures`` consecutive rejections
    placement stops early (as SIMCEP). Returns the accepted objects as dicts (centre, slices,
    mask) and an arbitrated label image where overlapping pixels go to the nearest centre.
    """
    h, w = shape
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf, np.float32)
    areas = [0]
    objects = []
    failures = 0
    # draw more candidates than needed; each failure consumes one
    cand = _draw_centres(rng, n * 3 + max_failures + 10, shape, clust, clustprob, spatvar)
    k = 0
    while len(objects) < n and failures < max_failures and k < len(cand):
        centre = cand[k]
        k += 1
        r = radius * (1 + radius_jitter * rng.uniform(-1, 1)) if radius_jitter else radius
        mask, dr, dc = _simcep_shape(rng, r, alpha, beta)
        top, left = int(round(centre[0])) + dr, int(round(centre[1])) + dc
        clipped = _clip_box(shape, top, left, mask)
        if clipped is None:
            failures += 1
            continue
        sl, m = clipped
        area = int(m.sum())
        if area == 0:
            failures += 1
            continue
        owners = labels[sl][m]
        shared = np.bincount(owners, minlength=len(areas))
        shared[0] = 0
        tot = shared.sum()
        touched = np.nonzero(shared)[0]
        if tot / area > overlap or any(shared[o] / areas[o] > overlap for o in touched):
            failures += 1
            continue
        failures = 0
        lab = len(areas)
        areas.append(area)
        rr, cc = np.mgrid[sl[0], sl[1]]
        d2 = ((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2).astype(np.float32)
        take = m & (d2 < best[sl])
        labels[sl][take] = lab
        best[sl][take] = d2[take]
        objects.append({"centre": centre, "slices": sl, "mask": m, "area": area})
    return objects, labels


def _blend_blur(ideal: np.ndarray, union: np.ndarray, rng, sigma_range=(0.5, 5.0), depth_std=0.5) -> np.ndarray:
    """SIMCEP optics (``optics.m``) approximated: each connected component of ``union`` gets a
    depth |N(0, depth_std^2)| mapped to a blur sigma in ``sigma_range``; the image is split into
    layers by sigma (linear weights between the 5 nearest levels), each layer is blurred with its
    sigma and the layers are summed (scatter form, so intensity is conserved)."""
    levels = np.array([0.5, 1.0, 2.0, 3.5, 5.0])
    levels = sigma_range[0] + (levels - 0.5) / 4.5 * (sigma_range[1] - sigma_range[0])
    comp, n = ndimage.label(union)
    if n == 0:
        return ndimage.gaussian_filter(ideal, levels[0])
    depth = np.abs(rng.normal(0, depth_std, n + 1))
    sig = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * depth / max(depth[1:].max(), 1e-9)
    sig[0] = levels[0]
    pos = np.interp(sig, levels, np.arange(len(levels)))
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    per_pixel_lo, per_pixel_frac = lo[comp], frac[comp]
    out = np.zeros_like(ideal)
    for i, s in enumerate(levels):
        wgt = np.where(per_pixel_lo == i, 1 - per_pixel_frac, 0.0) + np.where(per_pixel_lo == i - 1, per_pixel_frac, 0.0)
        if wgt.any():
            out += ndimage.gaussian_filter(ideal * wgt, s, mode="nearest")
    return out


def _vignetting(rng, shape, misalignment: float = 0.3) -> np.ndarray:
    """SIMCEP uneven illumination: 1 - Z/max Z with Z = X^2 + Y^2 on a grid shifted by a random
    misalignment (bright off-centre spot, darker corners / one darker side)."""
    h, w = shape
    y = np.linspace(-1, 1, h)[:, None] - rng.uniform(-misalignment, misalignment)
    x = np.linspace(-1, 1, w)[None, :] - rng.uniform(-misalignment, misalignment)
    z = x**2 + y**2
    return 1 - z / z.max()


def _jpeg(gray_u8: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(gray_u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"))


# --------------------------------------------------------------------------------------------
# fluorescence cells: VGG cells and BBBC005
# --------------------------------------------------------------------------------------------

#: the 24 cell counts of BBBC005 plate columns 1..24 (from memory in papers/ssrnet.md, to check
#: against real filenames: a rounded linear spacing from 1 to 100)
BBBC005_COUNTS = (1, 5, 10, 14, 18, 23, 27, 31, 35, 40, 44, 48, 53, 57, 61, 66, 70, 74, 78, 83, 87, 91, 96, 100)

_VGG = dict(
    radius=5.3, alpha=0.1, beta=0.1, texture=(0.5, 2, 5, 0.2), clust=3, clustprob=0.25, spatvar=0.05,
    overlap=0.3, sigma_range=(0.8, 2.8), bg_level=0.245, vignette=0.09, misalignment=0.3,
    brightness=(0.7, 1.0), gain=1.03, autofluor=0.03, ccd=1e-4, jpeg=90,
)


def _focus_blur(img: np.ndarray, focus_blur: float) -> np.ndarray:
    """BBBC005 focus blur: MATLAB ``fspecial('gaussian', F, 0.25 F)`` = Gaussian of sigma 0.25·F
    truncated to diameter F (radius F/2)."""
    if focus_blur <= 0:
        return img
    sigma = 0.25 * focus_blur
    return ndimage.gaussian_filter(img, sigma, truncate=max((focus_blur / 2) / sigma, 1.0), mode="nearest")


def fluorescence_cells(
    seed: int,
    size: tuple[int, int] | None = None,
    n_cells: int | None = None,
    preset: str = "vgg",
    focus_blur: float = 0.0,
    stain: int = 2,
) -> dict:
    """SIMCEP-style fluorescence cells with clustering and overlap (DATASETS.md §4.0, §4a, §2.5).

    Returns ``image`` (H, W) float32 in [0, 1] (the stained channel), ``rgb`` (H, W, 3) uint8
    (SIMCEP convention: nuclei in blue, cytoplasm in red), ``points`` (K, 2) float32 (row, col)
    of the accepted centres, ``dots`` (H, W) uint8, ``mask`` (H, W) uint8 foreground,
    ``labels`` (H, W) int32 (overlaps go to the nearest centre) and ``count`` = K.

    ``preset="vgg"``: 256×256 look-alike of the VGG cells set (Lempitsky & Zisserman 2010): nuclei
    only (r ≈ 5.3 px), N ~ N(176, 61) clipped to [74, 317], blue channel only, JPEG q 90; tuned so
    :func:`cellnb.data.vgg_statistics` matches the real set within 15%.
    ``preset="bbbc005"``: 520×696 BBBC005 look-alike: cells with a cytoplasm (r ≈ 25, red) and a
    nucleus (r ≈ 10, blue), clustering 25%, CCD noise variance 1e-4, N ~ one of the 24 BBBC005
    counts, ``focus_blur`` F → Gaussian sigma 0.25·F; ``stain`` 1 = cell body (w1), 2 = nuclei
    (w2) selects ``image``, ``mask`` and ``labels``. ``focus_blur`` also applies to ``vgg``.
    """
    if preset not in ("vgg", "bbbc005"):
        raise ValueError(f"unknown preset {preset!r}; choose from ['vgg', 'bbbc005']")
    if stain not in (1, 2):
        raise ValueError(f"stain must be 1 (cell body, w1) or 2 (nuclei, w2), got {stain}")
    if focus_blur < 0:
        raise ValueError(f"focus_blur must be >= 0, got {focus_blur}")
    rng = np.random.default_rng(seed)
    if size is None:
        size = (256, 256) if preset == "vgg" else (520, 696)
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (H, W) with both sides >= 16, got {size}")
    shape = (int(size[0]), int(size[1]))
    area_scale = shape[0] * shape[1] / (256 * 256 if preset == "vgg" else 520 * 696)
    if n_cells is None:
        if preset == "vgg":
            n_cells = int(np.clip(round(rng.normal(176, 61)), 74, 317) * area_scale)
        else:
            n_cells = int(round(rng.choice(BBBC005_COUNTS) * area_scale))
    if n_cells < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    return _fluo_vgg(rng, shape, n_cells, focus_blur) if preset == "vgg" else _fluo_bbbc005(rng, shape, n_cells, focus_blur, stain)


def _finish_points(objects, shape):
    pts = np.array([o["centre"] for o in objects], np.float32).reshape(-1, 2)
    dots = np.zeros(shape, np.uint8)
    if len(pts):
        rc = np.clip(np.floor(pts + 0.5).astype(int), 0, [shape[0] - 1, shape[1] - 1])
        np.add.at(dots, (rc[:, 0], rc[:, 1]), 1)
    return pts, dots


def _fluo_vgg(rng, shape, n_cells, focus_blur):
    p = _VGG
    objects, labels = _place_blobs(
        rng, shape, n_cells, p["radius"], p["alpha"], p["beta"], p["clust"], p["clustprob"], p["spatvar"], p["overlap"], radius_jitter=0.1
    )
    texture = p["texture"][3] + (1 - p["texture"][3]) * _octave_noise(rng, shape, *p["texture"][:3])
    total = np.zeros(shape)
    cover = np.zeros(shape)
    for o in objects:
        total[o["slices"]] += o["mask"] * rng.uniform(*p["brightness"])
        cover[o["slices"]] += o["mask"]
    union = cover > 0
    ideal = np.divide(total, cover, out=np.zeros(shape), where=union) * texture  # overlaps averaged (generate_image.m)
    blurred = _blend_blur(ideal, union, rng, p["sigma_range"])
    illum = _vignetting(rng, shape, p["misalignment"])
    auto = _octave_noise(rng, shape, 1.0, 1, 2)
    img = p["bg_level"] + p["vignette"] * (illum - illum.mean()) + p["autofluor"] * auto + p["gain"] * blurred
    img = _focus_blur(img, focus_blur)
    img = img + rng.normal(0, np.sqrt(p["ccd"]), shape)
    blue = _jpeg(np.clip(np.round(img * 255), 0, 255).astype(np.uint8), p["jpeg"])
    rgb = np.zeros(shape + (3,), np.uint8)
    rgb[..., 2] = blue
    pts, dots = _finish_points(objects, shape)
    return {
        "image": (blue / 255.0).astype(np.float32),
        "rgb": rgb,
        "points": pts,
        "dots": dots,
        "mask": union.astype(np.uint8),
        "labels": labels,
        "count": len(pts),
    }


def _fluo_bbbc005(rng, shape, n_cells, focus_blur, stain):
    # cytoplasm r = 25, (alpha, beta) = (0.3, 0.05); nucleus r = 10, (0.1, 0.1) (SIMCEP defaults)
    objects, cell_labels = _place_blobs(rng, shape, n_cells, 25.0, 0.3, 0.05, 3, 0.25, 0.05, 0.3, radius_jitter=0.15)
    cyto_tex = 0.2 + 0.8 * _octave_noise(rng, shape, 0.9, 2, 6)
    nuc_tex = 0.2 + 0.8 * _octave_noise(rng, shape, 0.5, 2, 5)
    cyto_sum, cyto_cov = np.zeros(shape), np.zeros(shape)
    nuc_sum, nuc_cov = np.zeros(shape), np.zeros(shape)
    nuc_labels = np.zeros(shape, np.int32)
    for i, o in enumerate(objects, start=1):
        cyto_sum[o["slices"]] += o["mask"] * rng.uniform(0.6, 1.0)
        cyto_cov[o["slices"]] += o["mask"]
        m, dr, dc = _simcep_shape(rng, 10.0 * rng.uniform(0.85, 1.15), 0.1, 0.1)
        clipped = _clip_box(shape, int(round(o["centre"][0])) + dr, int(round(o["centre"][1])) + dc, m)
        if clipped is None:
            continue
        sl, mm = clipped
        nuc_sum[sl] += mm * rng.uniform(0.6, 1.0)
        nuc_cov[sl] += mm
        nuc_labels[sl][mm] = i
    chans = []
    for s, c, tex in ((cyto_sum, cyto_cov, cyto_tex), (nuc_sum, nuc_cov, nuc_tex)):
        union = c > 0
        ideal = np.divide(s, c, out=np.zeros(shape), where=union) * tex
        blurred = _blend_blur(ideal, union, rng, (0.5, 2.0))
        illum = _vignetting(rng, shape, 0.3)
        img = 0.02 + 0.02 * illum + 0.01 * _octave_noise(rng, shape, 1.0, 1, 2) + 0.55 * blurred
        img = _focus_blur(img, focus_blur)
        img = img + rng.normal(0, 1e-2, shape)  # CCD noise variance 1e-4
        chans.append(np.clip(img, 0, 1))
    cyto_img, nuc_img = chans
    rgb = np.zeros(shape + (3,), np.uint8)
    rgb[..., 0] = np.round(cyto_img * 255)
    rgb[..., 2] = np.round(nuc_img * 255)
    pts, dots = _finish_points(objects, shape)
    image = (rgb[..., 0] if stain == 1 else rgb[..., 2]) / 255.0
    return {
        "image": image.astype(np.float32),
        "rgb": rgb,
        "points": pts,
        "dots": dots,
        "mask": ((cyto_cov > 0) if stain == 1 else (nuc_cov > 0)).astype(np.uint8),
        "labels": cell_labels if stain == 1 else nuc_labels,
        "mask_cells": (cyto_cov > 0).astype(np.uint8),
        "mask_nuclei": (nuc_cov > 0).astype(np.uint8),
        "count": len(pts),
    }


def fluorescence_batch(n: int, seed: int, **kw) -> dict:
    """``n`` images of :func:`fluorescence_cells` with seeds ``seed, seed+1, ...``, stacked.

    Returns ``image`` (N, H, W) float32, ``mask`` (N, H, W) uint8, ``dots`` (N, H, W) uint8,
    ``labels`` (N, H, W) int32, ``rgb`` (N, H, W, 3) uint8, ``count`` (N,) int64 and
    ``points`` as a list of (K_i, 2) arrays.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    items = [fluorescence_cells(seed + i, **kw) for i in range(n)]
    out = {k: np.stack([it[k] for it in items]) for k in ("image", "mask", "dots", "labels", "rgb")}
    out["count"] = np.array([it["count"] for it in items], np.int64)
    out["points"] = [it["points"] for it in items]
    return out


def bbbc005_name(well: str, count: int, focus: int, sample: int, stain: int = 1) -> str:
    """BBBC005 file name ``SIMCEP_images_<well>_C<count>_F<focus>_s<sample:02d>_w<stain>.TIF``.

    Example: ``bbbc005_name("A05", 18, 1, 3) == "SIMCEP_images_A05_C18_F1_s03_w1.TIF"``.
    """
    if not (isinstance(well, str) and len(well) >= 2 and well[0].isalpha() and well[1:].isdigit()):
        raise ValueError(f"well must look like 'A05' (row letter + column number), got {well!r}")
    if stain not in (1, 2):
        raise ValueError(f"stain must be 1 or 2, got {stain}")
    for name, v in (("count", count), ("focus", focus), ("sample", sample)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v}")
    return f"SIMCEP_images_{well}_C{int(count)}_F{int(focus)}_s{int(sample):02d}_w{stain}.TIF"


def save_bbbc005(folder, n: int, seed: int, focus_levels=(1,), stains=(1,), size=None, write_masks: bool = True) -> list[Path]:
    """Write ``n`` BBBC005-style images (8-bit TIF) per focus level and stain into ``folder``.

    Layout as the released SSRNet loader expects: images in ``<folder>/BBBC005_v1_images/`` and
    foreground masks (0/255, only for F = 1, as in BBBC005) in ``<folder>/BBBC005_v1_ground_truth/``
    under the same name. Image i uses plate column ``i % 24 + 1`` with its BBBC005 count, row
    letter = focus index, sample ``i // 24 + 1``. Returns the image paths.
    """
    import tifffile

    folder = Path(folder)
    img_dir, gt_dir = folder / "BBBC005_v1_images", folder / "BBBC005_v1_ground_truth"
    img_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fi, focus in enumerate(focus_levels):
        for i in range(n):
            col = i % 24 + 1
            count = BBBC005_COUNTS[col - 1]
            for stain in stains:
                s = fluorescence_cells(seed + i, size=size, n_cells=count, preset="bbbc005", focus_blur=focus, stain=stain)
                name = bbbc005_name(f"{chr(ord('A') + fi)}{col:02d}", s["count"], focus, i // 24 + 1, stain)
                tifffile.imwrite(img_dir / name, np.round(s["image"] * 255).astype(np.uint8))
                if write_masks and focus == 1:
                    gt_dir.mkdir(parents=True, exist_ok=True)
                    tifffile.imwrite(gt_dir / name, (s["mask"] * 255).astype(np.uint8))
                paths.append(img_dir / name)
    return paths


# --------------------------------------------------------------------------------------------
# blood smear (DATASETS.md §4b) and the low-resolution pair
# --------------------------------------------------------------------------------------------


def _polar_blob(rng, cy, cx, radius, ecc=0.06, wobble=0.0, shape=None):
    """Near-circular ellipse (axes radius·(1 ± ecc·U(0,1)), random orientation).
    Returns slices and rho = normalised elliptical distance (rho < 1 inside) on the bounding box.
    (``wobble`` is accepted for call compatibility and ignored: plain ellipses are 3x faster.)"""
    e = ecc * rng.uniform(0, 1)
    a, b = radius * (1 + e), radius * (1 - e)
    r_max = a + 2
    r0, r1 = max(int(cy - r_max), 0), min(int(cy + r_max) + 2, shape[0])
    c0, c1 = max(int(cx - r_max), 0), min(int(cx + r_max) + 2, shape[1])
    if r0 >= r1 or c0 >= c1:
        return None, None
    th = rng.uniform(0, np.pi)
    yy = (np.arange(r0, r1, dtype=np.float32) - cy)[:, None]
    xx = (np.arange(c0, c1, dtype=np.float32) - cx)[None, :]
    u = xx * np.cos(th) + yy * np.sin(th)
    v = yy * np.cos(th) - xx * np.sin(th)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (slice(r0, r1), slice(c0, c1)), rho


def blood_smear(seed: int, size: int = 1200, n_rbc: int | None = None, n_wbc: int | None = None, n_platelets: int | None = None, render_scale: float = 0.5) -> dict:
    """Giemsa/Wright-like thin blood smear with masks (DATASETS.md §4b), Beer–Lambert rendering.

    Red cells (radius ≈ 3.5% of the side, biconcave stain profile d = 0.55 + 0.45 ρ², so a pale
    centre and dark rim; 10–20% in short rouleaux chains, overlap ≤ 0.3), 1–4 white cells
    (lilac cytoplasm, lobed / round / kidney nucleus, drawn last so they win overlaps), a few
    platelets (image only; background in the masks). Imaging: I = bg · exp(−Σ k·d) per channel,
    stain jitter ±10%, Gaussian blur, Poisson shot noise.

    The RGB image is rendered at ``render_scale × size`` and resized (bilinear) to ``size`` for
    speed; the masks are rendered at full size. Returns ``image`` (H, W, 3) uint8, ``labels``
    (H, W) int32 (one id per cell), ``semantic`` uint8 (0 background, 1 RBC, 2 WBC), ``mask``
    uint8 0/1 (any blood cell).
    """
    if size < 64:
        raise ValueError(f"size must be >= 64, got {size}")
    if not 0 < render_scale <= 1:
        raise ValueError(f"render_scale must be in (0, 1], got {render_scale}")
    rng = np.random.default_rng(seed)
    R = 0.035 * size
    if n_rbc is None:
        n_rbc = int(rng.integers(90, 130))  # R scales with size, so the count does not
    if n_wbc is None:
        n_wbc = int(rng.integers(1, 5))
    if n_platelets is None:
        n_platelets = int(rng.integers(0, 12))
    shape = (size, size)
    labels = np.zeros(shape, np.int32)
    semantic = np.zeros(shape, np.uint8)
    # absorbance per channel (R, G, B) accumulated at render resolution
    rs = max(int(round(size * render_scale)), 16)
    scale = rs / size
    absorb = np.zeros((rs, rs, 3))
    stain = rng.uniform(0.9, 1.1, 3)
    k_rbc = np.array([0.10, 0.55, 0.40]) * stain
    k_nuc = np.array([1.1, 1.5, 0.5]) * stain
    k_cyt = np.array([0.15, 0.25, 0.1]) * stain
    k_plt = np.array([0.8, 1.1, 0.4]) * stain
    # RBC centres: mostly uniform, 15% in short chains (rouleaux)
    centres = []
    while len(centres) < n_rbc * 3:
        if rng.random() < 0.15:
            c = rng.uniform(0, size, 2)
            ang = rng.uniform(0, np.pi)
            for j in range(int(rng.integers(2, 5))):
                centres.append(c + j * 1.5 * R * np.array([np.sin(ang), np.cos(ang)]))
        else:
            centres.append(rng.uniform(0, size, 2))
    cover = np.zeros(shape, bool)
    lab = 0
    for cy, cx in centres:
        if lab >= n_rbc:
            break
        r = rng.normal(R, 0.08 * R)
        sl, rho = _polar_blob(rng, cy, cx, r, shape=shape)
        if sl is None:
            continue
        inside = rho < 1
        if not inside.any():
            continue
        shared = (cover[sl] & inside).sum() / inside.sum()
        if shared > 0.3:
            continue
        lab += 1
        labels[sl][inside & (labels[sl] == 0)] = lab
        semantic[sl][inside] = 1
        cover[sl] |= inside
        # render at low resolution
        s2, rho2 = _polar_blob(rng, cy * scale, cx * scale, r * scale, ecc=0.0, wobble=0.0, shape=(rs, rs))
        if s2 is not None:
            dens = np.where(rho2 < 1, 0.55 + 0.45 * rho2**2, 0.0) * rng.uniform(0.85, 1.1)
            absorb[s2] += dens[..., None] * k_rbc
    # platelets: small purple blobs, background in the masks
    for _ in range(n_platelets):
        cy, cx = rng.uniform(0, size, 2)
        s2, rho2 = _polar_blob(rng, cy * scale, cx * scale, rng.uniform(0.2, 0.3) * R * scale, ecc=0.2, wobble=0.1, shape=(rs, rs))
        if s2 is not None:
            absorb[s2] += np.clip(1.2 - rho2, 0, 1)[..., None] * k_plt
    # WBCs, drawn last so they win overlaps
    for _ in range(n_wbc):
        cy, cx = rng.uniform(0.1 * size, 0.9 * size, 2)
        rw = rng.uniform(1.6, 2.2) * R
        sl, rho = _polar_blob(rng, cy, cx, rw, ecc=0.04, wobble=0.03, shape=shape)
        inside = rho < 1
        lab += 1
        labels[sl][inside] = lab
        semantic[sl][inside] = 2
        s2, rho2 = _polar_blob(rng, cy * scale, cx * scale, rw * scale, ecc=0.0, wobble=0.0, shape=(rs, rs))
        cell = (rho2 < 1).astype(float)
        yy = (np.arange(s2[0].start, s2[0].stop)[:, None] - cy * scale) / (rw * scale)
        xx = (np.arange(s2[1].start, s2[1].stop)[None, :] - cx * scale) / (rw * scale)
        kind = rng.choice(["neutrophil", "lymphocyte", "monocyte"])
        if kind == "lymphocyte":
            nuc = (yy - 0.05) ** 2 + (xx + 0.05) ** 2 < 0.8**2
        elif kind == "monocyte":
            nuc = ((yy / 0.55) ** 2 + (xx / 0.75) ** 2 < 1) & ~((yy - 0.45) ** 2 + xx**2 < 0.3**2)
        else:
            nuc = np.zeros_like(cell, bool)
            n_lobes = int(rng.integers(2, 6))
            t0 = rng.uniform(0, 2 * np.pi)
            for j in range(n_lobes):
                t = t0 + j * 1.1
                ly, lx = 0.4 * np.sin(t), 0.4 * np.cos(t)
                nuc |= (yy - ly) ** 2 + (xx - lx) ** 2 < 0.22**2
        tex = 0.8 + 0.4 * rng.random(cell.shape)
        absorb[s2] = absorb[s2] * (1 - cell[..., None]) + cell[..., None] * (0.6 * k_cyt + 0.05) + (nuc * cell * tex)[..., None] * k_nuc
    # imaging: background with smooth variation, Beer-Lambert, blur, shot noise
    bg = np.array([235.0, 218.0, 225.0]) * rng.uniform(0.97, 1.03, 3)
    var = 1 + 0.03 * (2 * _octave_noise(rng, (rs, rs), 0.5, 1, 3) - 1)
    img = bg * var[..., None] * np.exp(-absorb)
    img = ndimage.gaussian_filter(img, (max(1.0 * scale, 0.5), max(1.0 * scale, 0.5), 0))
    img = rng.poisson(np.clip(img, 0, None) * 4) / 4.0
    if rs != size:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
        img = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    return {
        "image": np.clip(np.round(img), 0, 255).astype(np.uint8),
        "labels": labels,
        "semantic": semantic,
        "mask": (semantic > 0).astype(np.uint8),
    }


def lowres_pair(image: np.ndarray, mask: np.ndarray, hr_size: int = 256, lr_size: int = 64) -> dict:
    """Low-/high-resolution training pair for the MobileSR + TinyU-Net chapter (DATASETS.md §4b).

    ``hr`` = ``image`` area-averaged to ``hr_size`` (``torch.nn.functional.interpolate(mode="area")``,
    i.e. exact box averaging), ``lr`` = ``hr`` area-averaged to ``lr_size``, ``bicubic`` = ``lr``
    upscaled back to ``hr_size`` with bicubic interpolation (clamped to [0, 1], the SR baseline),
    ``mask`` = ``mask`` resized to ``hr_size`` with nearest neighbour, int64.
    Images are returned channel-first float32 in [0, 1]: ``lr`` (3, lr, lr), ``hr`` and
    ``bicubic`` (3, hr, hr). ``image`` is (H, W, 3) uint8 or float in [0, 1].
    Deviation from the released code (v1 resizes the 1200² crop directly with bicubic to both
    sizes): area averaging as DATASETS.md recommends, LR made from HR.
    """
    import torch
    import torch.nn.functional as F

    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    if hr_size % lr_size:
        raise ValueError(f"hr_size {hr_size} must be a multiple of lr_size {lr_size}")
    x = torch.from_numpy(image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)).permute(2, 0, 1)[None]
    hr = F.interpolate(x, size=(hr_size, hr_size), mode="area")
    lr = F.interpolate(hr, size=(lr_size, lr_size), mode="area")
    bic = F.interpolate(lr, size=(hr_size, hr_size), mode="bicubic", align_corners=False).clamp(0, 1)
    m = torch.from_numpy(mask.astype(np.int64))[None, None].float()
    m = F.interpolate(m, size=(hr_size, hr_size), mode="nearest-exact")[0, 0].long()
    return {"lr": lr[0].numpy(), "hr": hr[0].numpy(), "bicubic": bic[0].numpy(), "mask": m.numpy()}


# --------------------------------------------------------------------------------------------
# nuclei with touching instances (§4c) and time-lapse (§4d)
# --------------------------------------------------------------------------------------------


def _render_ellipses(shape, centres, axes_a, axes_b, thetas, ids, wobble=None):
    """Label image by nearest-centre arbitration in normalised elliptical distance (§4c): each
    pixel inside at least one ellipse goes to the ellipse with the smallest q = (u/a)^2 + (v/b)^2."""
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf, np.float32)
    for i, ((cy, cx), a, b, th, lab) in enumerate(zip(centres, axes_a, axes_b, thetas, ids)):
        r = a * 1.15 + 1
        r0, r1 = max(int(cy - r), 0), min(int(cy + r) + 2, shape[0])
        c0, c1 = max(int(cx - r), 0), min(int(cx + r) + 2, shape[1])
        if r0 >= r1 or c0 >= c1:
            continue
        yy = np.arange(r0, r1)[:, None] - cy
        xx = np.arange(c0, c1)[None, :] - cx
        u = xx * np.cos(th) + yy * np.sin(th)
        v = -xx * np.sin(th) + yy * np.cos(th)
        q = (u / a) ** 2 + (v / b) ** 2
        if wobble is not None:
            amp, phase = wobble[i]
            q = q / (1 + amp * np.cos(3 * np.arctan2(v, u) + phase)) ** 2
        take = (q < 1) & (q < best[r0:r1, c0:c1])
        labels[r0:r1, c0:c1][take] = lab
        best[r0:r1, c0:c1][take] = q[take]
    return labels


def _nuclei_image(rng, labels, brightness, blur=(1.0, 2.0), bg=0.08, photons=300.0):
    """Nuclei appearance (§4c): per-nucleus brightness × octave texture, blur, background offset
    with a smooth gradient, Poisson–Gaussian noise. Float in [0, 1]."""
    shape = labels.shape
    tex = 0.7 + 0.3 * _octave_noise(rng, shape, 0.5, 2, 4)
    signal = brightness[labels] * tex * (labels > 0)
    signal = ndimage.gaussian_filter(signal, rng.uniform(*blur))
    gy, gx = rng.normal(0, 0.03, 2)
    grad = np.linspace(-1, 1, shape[0])[:, None] * gy + np.linspace(-1, 1, shape[1])[None, :] * gx
    img = bg + grad + 0.8 * signal
    img = rng.poisson(np.clip(img, 0, None) * photons) / photons + rng.normal(0, 0.01, shape)
    return np.clip(img, 0, 1).astype(np.float32)


def nuclei(seed: int, size: int = 256, n_nuclei: int | None = None, regime: str = "dense", radius_range=None) -> dict:
    """Fluorescent nuclei with touching, disjoint instances (DATASETS.md §4c, DSB2018-like).

    Ellipses with a ~ U(radius_range), b/a ~ U(0.6, 1), random orientation and a small 3-fold
    outline perturbation, placed in SIMCEP clusters (``dense``: clustprob 0.5, many touching;
    ``sparse``: clustprob 0.1, fewer nuclei); shape overlap ≤ 0.2, resolved by nearest-centre
    arbitration; objects left with < 30% of their area are dropped. Returns ``image`` (H, W)
    float32, ``labels`` (H, W) int32 (1..K), ``mask`` uint8, ``points`` (K, 2) centroids,
    ``count`` K. ``radius_range`` defaults to (7, 14) px.

    ``regime="hoechst"`` imitates the real Hoechst-stained nuclei of ``ndev-sampledata``
    (:func:`cellnb.data.load_ndev_nuclei`; the statistics it was matched on are in
    ``cellnb.data.stats.nuclei_statistics``): smaller, more elongated nuclei, sparse (few touch),
    chromatin texture, a faint cytoplasm halo, lower noise, and a few very bright, small,
    *unlabelled* objects (mitotic / apoptotic nuclei, which the real labels leave out). See
    :data:`HOECHST`. There ``n_nuclei=None`` gives the real density (±20 %), and a given
    ``radius_range`` replaces the matched semi-major-axis distribution by U(radius_range).
    """
    if regime not in ("dense", "sparse", "hoechst"):
        raise ValueError(f"unknown regime {regime!r}; choose from ['dense', 'sparse', 'hoechst']")
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    rng = np.random.default_rng(seed)
    shape = (size, size)
    if regime == "hoechst":
        return _nuclei_hoechst(rng, shape, n_nuclei, radius_range)
    if radius_range is None:
        radius_range = (7.0, 14.0)
    scale = (size / 256) ** 2
    if n_nuclei is None:
        lo, hi = (70, 120) if regime == "dense" else (15, 35)
        n_nuclei = int(rng.integers(lo, hi) * scale)
    clustprob = 0.5 if regime == "dense" else 0.1
    cand = _draw_centres(rng, n_nuclei * 4 + 60, shape, 4, clustprob, 0.06)
    cover = np.zeros(shape, bool)
    cs, aa, bb, tt, wob, areas = [], [], [], [], [], []
    failures = 0
    for c in cand:
        if len(cs) >= n_nuclei or failures >= 50:
            break
        a = rng.uniform(*radius_range)
        b = a * rng.uniform(0.6, 1.0)
        th = rng.uniform(0, np.pi)
        w = (rng.uniform(0, 0.1), rng.uniform(0, 2 * np.pi))
        one = _render_ellipses(shape, [c], [a], [b], [th], [1], [w]) > 0
        area = one.sum()
        if area == 0 or (one & cover).sum() / area > 0.2:
            failures += 1
            continue
        failures = 0
        cover |= one
        cs.append(c), aa.append(a), bb.append(b), tt.append(th), wob.append(w), areas.append(area)
    ids = np.arange(1, len(cs) + 1)
    labels = _render_ellipses(shape, cs, aa, bb, tt, ids, wob)
    kept = np.bincount(labels.ravel(), minlength=len(cs) + 1)[1:]
    keep = kept >= 0.3 * np.array(areas, dtype=float).reshape(-1)
    remap = np.zeros(len(cs) + 1, np.int32)
    remap[1:][keep] = np.arange(1, keep.sum() + 1)
    labels = remap[labels]
    k = int(keep.sum())
    brightness = np.concatenate([[0.0], rng.uniform(0.4, 1.0, k)])
    image = _nuclei_image(rng, labels, brightness)
    pts = np.array(ndimage.center_of_mass(labels > 0, labels, np.arange(1, k + 1)), np.float32).reshape(-1, 2)
    return {"image": image, "labels": labels, "mask": (labels > 0).astype(np.uint8), "points": pts, "count": k}


# --------------------------------------------------------------------------------------------
# Hoechst nuclei: the look of the real ndev-sampledata scratch assay (cellnb.data.load_ndev_nuclei)
# --------------------------------------------------------------------------------------------

# Parameters of regime/preset "hoechst", set so that cellnb.data.stats.nuclei_statistics of the
# generated images match those of the 10 real frames (tests/data/test_data_nuclei_match.py).
HOECHST = dict(
    density=6.0e-4,  # labelled nuclei per px (real: 6.0 per 10^4 px)
    a_mean=7.2, a_std=1.3, a_clip=(4.5, 11.0),  # semi-major axis, px (real median 6.9)
    ratio_mean=0.73, ratio_std=0.11, ratio_clip=(0.4, 0.95),  # b / a (real median 0.72)
    n_clusters=3, clustprob=0.15, spatvar=0.12, overlap=0.05, gap=1.5, repel_gap=2.0,
    bright_density=0.5e-4, bright_radius=(2.5, 4.5), bright_level=(0.8, 1.4),  # unlabelled bright objects
    bg=0.049, bg_var=0.25,  # background level and its smooth relative variation
    level=0.26, level_cv=0.24,  # nucleus level above background and its spread
    tex_amp=0.8, dome=0.5, halo=0.02, blur=(0.6, 1.1), photons=550.0, read_noise=0.006,
)


def _hoechst_axes(rng, n, radius_range=None):
    P = HOECHST
    if radius_range is None:
        a = np.clip(rng.normal(P["a_mean"], P["a_std"], n), *P["a_clip"])
    else:
        a = rng.uniform(*radius_range, n)
    ratio = np.clip(rng.normal(P["ratio_mean"], P["ratio_std"], n), *P["ratio_clip"])
    return a, a * ratio


def _hoechst_layout(rng, shape, n, radius_range=None):
    """Non-overlapping ellipses (shape overlap <= HOECHST['overlap']) in loose SIMCEP clusters."""
    P = HOECHST
    cand = _draw_centres(rng, n * 4 + 60, shape, P["n_clusters"], P["clustprob"], P["spatvar"])
    a_all, b_all = _hoechst_axes(rng, len(cand), radius_range)
    cover = np.zeros(shape, bool)
    cs, aa, bb, tt, wob, areas = [], [], [], [], [], []
    failures = 0
    for c, a, b in zip(cand, a_all, b_all):
        if len(cs) >= n or failures >= 50:
            break
        th = rng.uniform(0, np.pi)
        w = (rng.uniform(0, 0.08), rng.uniform(0, 2 * np.pi))
        one = _render_ellipses(shape, [c], [a], [b], [th], [1], [w]) > 0
        area = one.sum()
        # overlap test on the ellipse grown by ``gap`` px: real nuclei keep their cytoplasm apart
        grown = _render_ellipses(shape, [c], [a + P["gap"]], [b + P["gap"]], [th], [1], [w]) > 0 if P["gap"] else one
        if area == 0 or (grown & cover).sum() / grown.sum() > P["overlap"]:
            failures += 1
            continue
        failures = 0
        cover |= one
        cs.append(c), aa.append(a), bb.append(b), tt.append(th), wob.append(w), areas.append(area)
    return cs, aa, bb, tt, wob, areas


def _hoechst_levels(rng, n):
    P = HOECHST
    return P["level"] * rng.lognormal(-0.5 * P["level_cv"] ** 2, P["level_cv"], n)


def _bright_objects(rng, labels):
    """Very bright small round objects where there is no labelled nucleus (label 0): at least one
    per image, as the real frames' mitotic nuclei, which set their min-max range."""
    P = HOECHST
    shape = labels.shape
    n = 1 + rng.poisson(P["bright_density"] * labels.size)
    out = np.zeros(shape, np.float64)
    free = ~ndimage.binary_dilation(labels > 0, iterations=2)
    yy, xx = np.nonzero(free)
    if len(yy) == 0:
        return out
    for _ in range(n):
        i = rng.integers(len(yy))
        r = rng.uniform(*P["bright_radius"])
        r0, r1 = max(int(yy[i] - r - 1), 0), min(int(yy[i] + r + 2), shape[0])
        c0, c1 = max(int(xx[i] - r - 1), 0), min(int(xx[i] + r + 2), shape[1])
        d2 = (np.arange(r0, r1)[:, None] - yy[i]) ** 2 + (np.arange(c0, c1)[None, :] - xx[i]) ** 2
        disk = (d2 < r * r) & free[r0:r1, c0:c1]
        out[r0:r1, c0:c1][disk] = np.maximum(out[r0:r1, c0:c1][disk], rng.uniform(*P["bright_level"]))
    return out


def _hoechst_image(rng, labels, levels):
    """Hoechst appearance: background with smooth variation, faint cytoplasm halo, nuclei of level
    ``levels[label]`` × chromatin texture, bright unlabelled objects, blur, Poisson–Gaussian noise.
    Float32 in [0, 1]."""
    P = HOECHST
    shape = labels.shape
    fg = labels > 0
    tex = _octave_noise(rng, shape, 0.8, 5, 3)
    tex = np.clip(1 + P["tex_amp"] * (tex - tex.mean()), 0.2, None)
    # dome profile: dimmer towards the rim (real nuclei: rim ~0.7x the centre)
    inner = fg & (ndimage.maximum_filter(labels, size=3) == ndimage.minimum_filter(np.where(fg, labels, labels.max() + 1), size=3))
    dt = ndimage.distance_transform_edt(inner)
    dmax = ndimage.maximum(dt, labels, np.arange(labels.max() + 1)) if labels.max() else np.zeros(1)
    r = np.where(fg, dt / np.maximum(np.asarray(dmax)[labels], 1.0), 0.0)
    dome = 1 - P["dome"] * (1 - r) ** 2
    signal = levels[labels] * tex * dome * fg + _bright_objects(rng, labels)
    halo = P["halo"] * ndimage.gaussian_filter(ndimage.binary_dilation(fg, iterations=3).astype(np.float64), 3.0)
    signal = ndimage.gaussian_filter(signal, rng.uniform(*P["blur"]))
    bg = P["bg"] * (1 + P["bg_var"] * (_octave_noise(rng, shape, 0.5, 1, 3) - 0.5))
    img = bg + halo + signal
    photons = P["photons"]
    img = rng.poisson(np.clip(img, 0, None) * photons) / photons + rng.normal(0, P["read_noise"], shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _repel(cells, size, gap=None, iterations=3):
    """Push apart nuclei whose centres are closer than the sum of their mean semi-axes plus a gap
    (hoechst preset: real nuclei keep their cytoplasm between them, so few touch)."""
    if len(cells) < 2:
        return
    gap = HOECHST["repel_gap"] if gap is None else gap
    for _ in range(iterations):
        c = np.array([cell["c"] for cell in cells])
        a = np.array([0.5 * (cell["a"] + cell["b"]) for cell in cells])
        diff = c[:, None, :] - c[None, :, :]
        dist = np.hypot(diff[..., 0], diff[..., 1])
        need = a[:, None] + a[None, :] + gap
        np.fill_diagonal(dist, np.inf)
        short = np.clip(need - dist, 0, None)
        if not short.any():
            return
        unit = diff / np.maximum(dist, 1e-6)[..., None]
        push = (0.5 * short[..., None] * unit).sum(1)
        for cell, p in zip(cells, push):
            cell["c"] = np.clip(cell["c"] + p, 0, size - 1e-3)


def _nuclei_hoechst(rng, shape, n_nuclei, radius_range):
    if n_nuclei is None:
        mean = HOECHST["density"] * shape[0] * shape[1]
        n_nuclei = max(1, int(rng.integers(int(0.8 * mean), int(1.2 * mean) + 2)))
    cs, aa, bb, tt, wob, areas = _hoechst_layout(rng, shape, n_nuclei, radius_range)
    ids = np.arange(1, len(cs) + 1)
    labels = _render_ellipses(shape, cs, aa, bb, tt, ids, wob)
    kept = np.bincount(labels.ravel(), minlength=len(cs) + 1)[1:]
    keep = kept >= 0.3 * np.array(areas, dtype=float).reshape(-1)
    remap = np.zeros(len(cs) + 1, np.int32)
    remap[1:][keep] = np.arange(1, keep.sum() + 1)
    labels = remap[labels]
    k = int(keep.sum())
    image = _hoechst_image(rng, labels, np.concatenate([[0.0], _hoechst_levels(rng, k)]))
    pts = np.array(ndimage.center_of_mass(labels > 0, labels, np.arange(1, k + 1)), np.float32).reshape(-1, 2)
    return {"image": image, "labels": labels, "mask": (labels > 0).astype(np.uint8), "points": pts, "count": k}


def ctc_timelapse(seed: int, n_frames: int = 20, size: int = 256, n_cells: int | None = 12, p_div: float = 0.03, min_division_age: int = 3,
                  preset: str = "default") -> dict:
    """2-D time-lapse with moving, dividing and leaving nuclei and tracked ground truth (§4d).

    Velocity is an AR(1) walk v_t = 0.7 v_{t-1} + N(0, 1) px/frame with a small orientation
    drift. A cell whose centre leaves the field ends its track. With probability ``p_div`` per
    frame (age ≥ ``min_division_age``) a cell divides: its track ends at t−1 and two daughters
    with new ids start at t, ±0.6a along the major axis, axes ×0.75 / ×0.8, growing back. A cell
    that loses all its pixels to a neighbour ends its track the frame before (so tracks never
    have gaps). Returns ``frames`` (T, H, W) uint16, ``labels`` (T, H, W) int32 (= track ids),
    ``tracks`` list of (L, B, E, P) as in CTC ``man_track.txt``.

    ``preset="hoechst"`` gives the nuclei the size, shape, spacing and appearance of the real
    Hoechst time-lapse (:data:`HOECHST`, as ``nuclei(regime="hoechst")``): the first frame is laid
    out without overlap, ``n_cells=None`` means the real density (6 nuclei per 10⁴ px, 39 at
    256²), each track keeps its brightness (daughters inherit it), and every frame has a few bright
    unlabelled objects. ``preset="default"`` (n_cells 12, a ~ U(7, 12) px) is unchanged.
    """
    if preset not in ("default", "hoechst"):
        raise ValueError(f"unknown preset {preset!r}; choose from ['default', 'hoechst']")
    if n_cells is None:
        n_cells = 12 if preset == "default" else max(1, round(HOECHST["density"] * size * size))
    if n_frames < 1 or size < 32 or n_cells < 1:
        raise ValueError(f"need n_frames >= 1, size >= 32, n_cells >= 1; got {n_frames}, {size}, {n_cells}")
    if not 0 <= p_div <= 1:
        raise ValueError(f"p_div must be in [0, 1], got {p_div}")
    rng = np.random.default_rng(seed)
    shape = (size, size)
    next_id = 1
    cells = []  # dicts: id, c, v, a, b, a0, th, age, wob
    tracks: dict[int, list[int]] = {}

    def new_cell(c, a, b, th, parent, t):
        nonlocal next_id
        cid = next_id
        next_id += 1
        tracks[cid] = [cid, t, t, parent]
        return {"id": cid, "c": np.asarray(c, float), "v": rng.normal(0, 1, 2), "a": a, "b": b, "a0": a / 0.75 if parent else a,
                "th": th, "age": 0, "wob": (rng.uniform(0, 0.08), rng.uniform(0, 2 * np.pi))}

    margin = 0.1 * size
    if preset == "default":
        for _ in range(n_cells):
            a = rng.uniform(7, 12)
            cells.append(new_cell(rng.uniform(margin, size - margin, 2), a, a * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), 0, 0))
    else:
        for c, a, b, th, _w, _area in zip(*_hoechst_layout(rng, shape, n_cells)):
            cells.append(new_cell(c, a, b, th, 0, 0))
    frames_l = []
    for t in range(n_frames):
        if t > 0:
            nxt = []
            for cell in cells:
                if cell["age"] >= min_division_age and rng.random() < p_div:
                    d = 0.6 * cell["a"] * np.array([np.sin(cell["th"]), np.cos(cell["th"])])
                    for sgn in (1, -1):
                        c = cell["c"] + sgn * d
                        if 0 <= c[0] < size and 0 <= c[1] < size:
                            nxt.append(new_cell(c, cell["a"] * 0.75, cell["b"] * 0.8, cell["th"], cell["id"], t))
                    continue
                cell["v"] = 0.7 * cell["v"] + rng.normal(0, 1, 2)
                cell["c"] = cell["c"] + cell["v"]
                cell["th"] += rng.normal(0, 0.05)
                cell["age"] += 1
                if cell["a"] < cell["a0"]:
                    grow = min(1.05, cell["a0"] / cell["a"])
                    cell["a"] *= grow
                    cell["b"] *= grow
                if not (0 <= cell["c"][0] < size and 0 <= cell["c"][1] < size):
                    continue  # left the field: its track ends at t-1
                nxt.append(cell)
            cells = nxt
            if preset == "hoechst":
                _repel(cells, size)
        while True:
            lab = _render_ellipses(shape, [c["c"] for c in cells], [c["a"] for c in cells], [c["b"] for c in cells],
                                   [c["th"] for c in cells], [c["id"] for c in cells], [c["wob"] for c in cells])
            present = set(np.unique(lab)) - {0}
            gone = [c for c in cells if c["id"] not in present]
            if not gone:
                break
            for c in gone:  # arbitrated away: end the track before this frame (or drop it)
                if tracks[c["id"]][1] == t:
                    del tracks[c["id"]]
            cells = [c for c in cells if c["id"] in present]
        for c in cells:
            tracks[c["id"]][2] = t
        frames_l.append(lab)
    labels = np.stack(frames_l).astype(np.int32)
    # drop parents that were removed (dropped daughters of dropped tracks cannot exist: B > E_parent)
    track_list = []
    for L, B, E, P in sorted(tracks.values()):
        track_list.append((L, B, E, P if P in tracks else 0))
    if preset == "hoechst":
        ids = sorted(tracks)
        drawn = dict(zip(ids, _hoechst_levels(rng, len(ids))))
        lut = np.zeros(int(labels.max()) + 1)
        for cid in ids:  # a daughter inherits its (kept) parent's level
            parent = tracks[cid][3]
            lut[cid] = lut[parent] if parent in tracks and parent < cid else drawn[cid]
        frames = np.stack([np.round(_hoechst_image(rng, labels[t], lut) * 4000).astype(np.uint16) for t in range(n_frames)])
        return {"frames": frames, "labels": labels, "tracks": track_list}
    frames = np.stack([
        np.round(_nuclei_image(rng, labels[t], np.concatenate([[0.0], rng.uniform(0.5, 1.0, labels[t].max())]) if labels[t].max() else np.zeros(1)) * 4000).astype(np.uint16)
        for t in range(n_frames)
    ])
    return {"frames": frames, "labels": labels, "tracks": track_list}


def _fmt_digits(n_frames: int) -> int:
    return 4 if n_frames > 1000 else 3


def write_ctc(root, dataset: str, frames, labels, tracks, sequence: str = "01", seg_frames=None) -> Path:
    """Write a sequence in Cell Tracking Challenge layout (DATASETS.md §5.1) and return
    ``<root>/<dataset>``:

    ``<seq>/tTTT.tif`` (raw frames), ``<seq>_GT/TRA/man_trackTTT.tif`` (labels = track ids, every
    frame), ``<seq>_GT/TRA/man_track.txt`` (``L B E P`` per line), ``<seq>_GT/SEG/man_segTTT.tif``
    (full instance masks for ``seg_frames``, default all frames). 3 digits, 4 when T > 1000; uint16.
    """
    import tifffile

    frames, labels = np.asarray(frames), np.asarray(labels)
    if frames.ndim != 3 or labels.shape != frames.shape:
        raise ValueError(f"frames and labels must both be (T, H, W); got {frames.shape} and {labels.shape}")
    if labels.max(initial=0) > 65535 or labels.min(initial=0) < 0:
        raise ValueError("labels must fit in uint16")
    base = Path(root) / dataset
    raw, tra, seg = base / sequence, base / f"{sequence}_GT" / "TRA", base / f"{sequence}_GT" / "SEG"
    for d in (raw, tra, seg):
        d.mkdir(parents=True, exist_ok=True)
    nd = _fmt_digits(len(frames))
    seg_frames = range(len(frames)) if seg_frames is None else seg_frames
    for t in range(len(frames)):
        tifffile.imwrite(raw / f"t{t:0{nd}d}.tif", frames[t].astype(np.uint16))
        tifffile.imwrite(tra / f"man_track{t:0{nd}d}.tif", labels[t].astype(np.uint16))
    for t in seg_frames:
        tifffile.imwrite(seg / f"man_seg{t:0{nd}d}.tif", labels[t].astype(np.uint16))
    _write_track_txt(tra / "man_track.txt", tracks)
    return base


def _write_track_txt(path: Path, tracks) -> None:
    lines = [f"{int(L)} {int(B)} {int(E)} {int(P)}" for L, B, E, P in tracks]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))


def write_ctc_result(res_dir, labels, tracks) -> Path:
    """Write a result sequence (``maskTTT.tif`` uint16 + ``res_track.txt``) into ``res_dir``
    (e.g. ``<root>/<dataset>/01_RES``), the layout py-ctcmetrics evaluates."""
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (T, H, W), got {labels.shape}")
    res_dir = Path(res_dir)
    res_dir.mkdir(parents=True, exist_ok=True)
    nd = _fmt_digits(len(labels))
    for t in range(len(labels)):
        tifffile.imwrite(res_dir / f"mask{t:0{nd}d}.tif", labels[t].astype(np.uint16))
    _write_track_txt(res_dir / "res_track.txt", tracks)
    return res_dir
