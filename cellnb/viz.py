"""Plotting helpers (matplotlib + seaborn). Every function returns the ``Figure``; none calls
``plt.show`` (notebooks display the returned figure, tests use the Agg backend).

Arrays are numpy (torch tensors are converted): images ``(H, W)`` grey or ``(H, W, 3)`` RGB,
masks ``(H, W)`` bool/0-1, label images ``(H, W)`` int with 0 = background.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _image2d(image: Any, name: str = "image") -> np.ndarray:
    """``(H, W)``, ``(H, W, 3|4)`` or ``(1|3, H, W)`` -> displayable array."""
    img = _numpy(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
        raise ValueError(f"{name}: expected (H, W) or (H, W, 3) array, got shape {img.shape}")
    return img


def _rgb_float(image: Any) -> np.ndarray:
    """Image as float RGB in [0, 1] (grey is min-max scaled)."""
    img = _image2d(image).astype(np.float64)
    if img.ndim == 2:
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        return np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    return img / 255.0 if img.max() > 1.0 else img


def _grid(n: int, ncols: int, panel_size: float = 3.0) -> tuple[Figure, np.ndarray]:
    if n < 1:
        raise ValueError("nothing to plot: got 0 panels")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        fig.delaxes(ax)
    return fig, axes.flat[:n]


def image_panels(images: Mapping[str, Any], ncols: int = 4, cmap: str = "gray", panel_size: float = 3.0) -> Figure:
    """One panel per ``title -> array`` (grey images use ``cmap``), axes hidden."""
    fig, axes = _grid(len(images), ncols, panel_size)
    for ax, (title, image) in zip(axes, images.items()):
        img = _image2d(image, title)
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig


def overlay_mask(image: Any, mask: Any, color: Sequence[float] = (1.0, 0.2, 0.2), alpha: float = 0.4,
                 title: str | None = None) -> Figure:
    """The image with ``mask > 0`` tinted in ``color`` (alpha blend)."""
    rgb = _rgb_float(image)
    m = _numpy(mask).astype(bool)
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"overlay_mask: mask shape {m.shape} does not match image shape {rgb.shape[:2]}")
    out = rgb.copy()
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(out, interpolation="nearest")
    ax.set_title(title or f"mask: {int(m.sum())} px")
    ax.axis("off")
    fig.tight_layout()
    return fig


def overlay_contours(image: Any, labels: Any, color: Sequence[float] = (1.0, 1.0, 0.0), title: str | None = None) -> Figure:
    """Instance outlines (``skimage.segmentation.find_boundaries``, mode ``inner``) on the image."""
    from skimage.segmentation import find_boundaries

    rgb = _rgb_float(image)
    lab = _numpy(labels)
    if lab.shape != rgb.shape[:2]:
        raise ValueError(f"overlay_contours: labels shape {lab.shape} does not match image shape {rgb.shape[:2]}")
    edges = find_boundaries(lab, mode="inner")
    out = rgb.copy()
    out[edges] = np.asarray(color, dtype=np.float64)
    n = len(np.unique(lab[lab > 0]))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(out, interpolation="nearest")
    ax.set_title(title or f"{n} instances")
    ax.axis("off")
    fig.tight_layout()
    return fig


def density_panel(image: Any, density_true: Any, density_pred: Any, cmap: str = "magma") -> Figure:
    """Image | true density | predicted density, each density titled with its count (its sum)."""
    true = _numpy(density_true).squeeze()
    pred = _numpy(density_pred).squeeze()
    if true.shape != pred.shape:
        raise ValueError(f"density_panel: true density {true.shape} and prediction {pred.shape} differ in shape")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    img = _image2d(image)
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_title("image")
    vmax = float(max(true.max(), pred.max(), 1e-12))
    for ax, dens, name in ((axes[1], true, "true"), (axes[2], pred, "predicted")):
        ax.imshow(dens, cmap=cmap, vmin=0, vmax=vmax)
        ax.set_title(f"{name} density, count = {dens.sum():.1f}")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, keys: Sequence[str] | None = None, logy: bool = False) -> Figure:
    """Lines of ``keys`` (default: every column ending in ``loss``) against ``epoch``."""
    if "epoch" not in history:
        raise KeyError(f"training_curves: history needs an 'epoch' column, has {list(history.columns)}")
    keys = list(keys) if keys is not None else [c for c in history.columns if c.endswith("loss")]
    missing = [k for k in keys if k not in history]
    if missing or not keys:
        raise KeyError(f"training_curves: columns {missing or keys} not in history {list(history.columns)}")
    long = history.melt(id_vars="epoch", value_vars=keys, var_name="curve", value_name="value")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    sns.lineplot(data=long, x="epoch", y="value", hue="curve", marker="o", ax=ax)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel("value")
    fig.tight_layout()
    return fig


def count_scatter(pred: Any, true: Any, title: str | None = None) -> Figure:
    """Predicted vs true counts with the identity line; the title carries the MAE."""
    p = _numpy(pred).astype(np.float64).ravel()
    t = _numpy(true).astype(np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"count_scatter: {p.size} predictions for {t.size} true counts")
    mae = float(np.abs(p - t).mean()) if p.size else float("nan")
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    sns.scatterplot(x=t, y=p, ax=ax, s=25)
    lo, hi = float(min(p.min(), t.min())), float(max(p.max(), t.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity")
    ax.set_xlabel("true count")
    ax.set_ylabel("predicted count")
    ax.set_title(f"{title + ': ' if title else ''}MAE = {mae:.2f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def pareto_front(x: np.ndarray, y: np.ndarray, minimize_x: bool = True, maximize_y: bool = True) -> np.ndarray:
    """Boolean mask of points not dominated by any other (cheaper-or-equal and better-or-equal,
    strictly one of them)."""
    xs = np.asarray(x, dtype=np.float64) * (1 if minimize_x else -1)
    ys = np.asarray(y, dtype=np.float64) * (-1 if maximize_y else 1)
    front = np.ones(len(xs), dtype=bool)
    for i in range(len(xs)):
        dominated = (xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i]))
        front[i] = not dominated.any()
    return front


def pareto(df: pd.DataFrame, x: str, y: str, label: str, logx: bool = True, maximize_y: bool = True) -> Figure:
    """Cost ``x`` (lower is better) against quality ``y`` (higher is better unless
    ``maximize_y=False``), one labelled point per row, the Pareto front drawn as a step line."""
    missing = [c for c in (x, y, label) if c not in df]
    if missing:
        raise KeyError(f"pareto: columns {missing} not in {list(df.columns)}")
    front = pareto_front(df[x].to_numpy(), df[y].to_numpy(), maximize_y=maximize_y)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter(df[x][~front], df[y][~front], c="0.6", label="dominated")
    ax.scatter(df[x][front], df[y][front], c="C3", label="Pareto front", zorder=3)
    order = df[front].sort_values(x)
    ax.step(order[x], order[y], where="post", c="C3", lw=1)
    for _, row in df.iterrows():
        ax.annotate(str(row[label]), (row[x], row[y]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend()
    fig.tight_layout()
    return fig


__all__ = ["image_panels", "overlay_mask", "overlay_contours", "density_panel", "training_curves",
           "count_scatter", "pareto", "pareto_front"]
