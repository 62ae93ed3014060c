"""MC-Unet chapter pipeline (Jin et al., BIBM 2022): the density/boundary ablation.

Design (see ``book/deviations/mc_unet.md``): generated nuclei with touching instances
(:func:`cellnb.data.nuclei`), training images half ``dense``, half ``sparse``; test sets of
each regime. Eight configurations — {baseline, +density, +boundary, +both} × {MC-Unet, plain
U-Net} — in the **paper-faithful** mode (separate density and boundary heads), each trained
from scratch over ``n_seeds`` seeds; optionally the **code-faithful** mode (auxiliary losses on
the segmentation logits, :mod:`cellnb.losses.mc_unet`) for MC-Unet. Metrics follow the released
``validate`` (pixel Dice, IoU, precision, sensitivity pooled over the test set) plus instance
F1 at IoU 0.5, AJI and the count error of the density head.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.measure import regionprops
from skimage.segmentation import watershed

from cellnb.losses.mc_unet import mc_unet_loss
from cellnb.models import create_model, outputs

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(size=32, n_train=4, n_test=2, epochs=1, batch_size=4, lr=1e-3, base_width=4, unet_base_width=4,
                  depth=2, n_seeds=1, sigma=2.0, radius_scale=0.5, boundary_weight=0.15, density_weight=0.5, density_scale=100.0,
                  code_variants=["boundary"], min_seed_area=4),
    "quick": dict(size=64, n_train=16, n_test=6, epochs=12, batch_size=2, lr=1e-3, base_width=8, unet_base_width=8,
                  depth=3, n_seeds=3, sigma=2.0, radius_scale=0.5, boundary_weight=0.15, density_weight=0.5, density_scale=100.0,
                  code_variants=["boundary"], min_seed_area=4),
    "full": dict(size=256, n_train=200, n_test=50, epochs=100, batch_size=4, lr=1e-3, base_width=64, unet_base_width=64,
                 depth=3, n_seeds=5, sigma=3.0, radius_scale=1.0, boundary_weight=0.15, density_weight=0.5, density_scale=100.0,
                 code_variants=["boundary", "both"], min_seed_area=8),
}

VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "density": ("density",),
    "boundary": ("boundary",),
    "both": ("density", "boundary"),
}
ARCHS = ("mc_unet", "unet")
METRICS = ("dice", "iou", "precision", "sensitivity", "instance_f1", "instance_f1_cc", "aji", "merged_fraction",
           "count_mae")


# ----------------------------------------------------------------------------------------- data
def centroids(labels: np.ndarray) -> np.ndarray:
    """Instance centroids ``(K, 2)`` float32 ``(row, col)``: the dots of the density target."""
    props = regionprops(labels)
    return np.array([p.centroid for p in props], np.float32).reshape(-1, 2)


def make_items(sample: Mapping[str, np.ndarray], sigma: float) -> dict[str, np.ndarray]:
    """Training arrays of one generated image: image ``(1,H,W)``, mask, boundary, density, labels."""
    from cellnb import targets

    labels = np.asarray(sample["labels"]).astype(np.int32)
    points = sample.get("points")
    points = centroids(labels) if points is None else np.asarray(points, np.float32)
    return {
        "image": np.asarray(sample["image"], np.float32)[None],
        "mask": (labels > 0).astype(np.int64),
        "boundary": targets.boundaries(labels, mode="inner").astype(np.float32),
        "density": targets.density_from_points(points, labels.shape, sigma=sigma).astype(np.float32),
        "labels": labels,
    }


NUCLEI_PER_256 = {"dense": 95, "sparse": 25}  # mid-points of cellnb.data.nuclei's default ranges


def make_split(seed: int, n: int, size: int, regime: str, sigma: float, radius_scale: float = 1.0) -> list[dict[str, np.ndarray]]:
    """``n`` images of ``cellnb.data.nuclei(seed + i, size, regime=regime)`` with their targets.

    ``radius_scale`` shrinks the nuclei (default radii 7–14 px) for small CPU images; the number
    of nuclei grows by ``1 / radius_scale²`` so that the covered fraction, hence the crowding of
    the regime, stays that of a 256² image.
    """
    from cellnb import data

    n_nuclei = max(1, round(NUCLEI_PER_256[regime] * (size / 256) ** 2 / radius_scale**2))
    radius_range = (7.0 * radius_scale, 14.0 * radius_scale)
    return [make_items(data.nuclei(seed + i, size=size, n_nuclei=n_nuclei, regime=regime, radius_range=radius_range), sigma)
            for i in range(n)]


def make_data(cfg: Mapping[str, Any], seed: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Train (half dense, half sparse) and one test set per regime; disjoint generator seeds."""
    base = 10_000 * (seed + 1)
    half = cfg["n_train"] // 2
    args = (cfg["size"], cfg["sigma"], cfg["radius_scale"])
    train = make_split(base, cfg["n_train"] - half, args[0], "dense", *args[1:])
    train += make_split(base + 1000, half, args[0], "sparse", *args[1:])
    return {
        "train": train,
        "test_dense": make_split(base + 2000, cfg["n_test"], args[0], "dense", *args[1:]),
        "test_sparse": make_split(base + 3000, cfg["n_test"], args[0], "sparse", *args[1:]),
    }


# -------------------------------------------------------------------------------------- training
class ScaledDensity(torch.nn.Module):
    """Wraps a model so that its ``density`` output is divided by ``scale``.

    The wrapped head then learns the density amplified by ``scale`` (per-pixel values ~1 instead
    of ~0.01, which a few Adam steps at lr 1e-3 cannot reach from softplus(0) = 0.69), while the
    output stays the count-preserving density (its sum is the count), as the model contract asks.
    """

    def __init__(self, model: torch.nn.Module, scale: float) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"density scale must be positive, got {scale}")
        self.model, self.scale = model, float(scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.model(x))
        if outputs.DENSITY in out:
            out[outputs.DENSITY] = out[outputs.DENSITY] / self.scale
        return out


def build_model(arch: str, variant: str, mode: str, cfg: Mapping[str, Any]) -> torch.nn.Module:
    """MC-Unet or U-Net with 2-class mask logits and, in paper mode, the variant's heads."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {list(VARIANTS)}")
    heads = ("mask",) + (VARIANTS[variant] if mode == "paper" else ())
    width = cfg["base_width"] if arch == "mc_unet" else cfg["unet_base_width"]
    model = create_model(arch, in_channels=1, num_classes=2, base_width=width, depth=cfg["depth"], heads=heads)
    return ScaledDensity(model, cfg["density_scale"]) if "density" in heads else model


def loss_for(variant: str, mode: str, cfg: Mapping[str, Any]):
    """The variant's loss: a branch's weight is 0 when the variant leaves it out."""
    parts = VARIANTS[variant]
    return mc_unet_loss(
        mode=mode,
        boundary_weight=cfg["boundary_weight"] if "boundary" in parts else 0.0,
        density_weight=cfg["density_weight"] if "density" in parts else 0.0,
        density_scale=cfg["density_scale"],
    )


def train_one(arch: str, variant: str, mode: str, train_items: Sequence[Mapping[str, np.ndarray]],
              cfg: Mapping[str, Any], seed: int, device: str = "auto", progress: bool = False) -> torch.nn.Module:
    """Train one configuration from scratch with :func:`cellnb.train.fit` (Adam, lr 1e-3 as the code)."""
    from cellnb.train import fit
    from cellnb.utils import seed_everything

    seed_everything(seed)
    model = build_model(arch, variant, mode, cfg)
    keys = ("image", "mask", "boundary", "density")
    dataset = [{k: torch.from_numpy(item[k]) for k in keys} for item in train_items]
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=True, generator=generator)
    fit(model, loader, loss_for(variant, mode, cfg), epochs=cfg["epochs"], lr=cfg["lr"], device=device,
        amp=False, progress=progress)
    return model


@torch.no_grad()
def predict(model: torch.nn.Module, items: Sequence[Mapping[str, np.ndarray]], device: str = "auto") -> dict[str, np.ndarray | None]:
    """Foreground probability (softmax channel 1, as the code), density and boundary probability."""
    from cellnb.utils import select_device

    dev = select_device(device)
    model = model.to(dev).eval()
    images = torch.from_numpy(np.stack([item["image"] for item in items])).to(dev)
    out = model(images)
    result: dict[str, np.ndarray | None] = {
        "foreground": torch.softmax(out[outputs.MASK_LOGITS], dim=1)[:, 1].cpu().numpy(),
        "density": out[outputs.DENSITY][:, 0].cpu().numpy() if outputs.DENSITY in out else None,
        "boundary": torch.sigmoid(out[outputs.BOUNDARY_LOGITS])[:, 0].cpu().numpy() if outputs.BOUNDARY_LOGITS in out else None,
    }
    return result


# ---------------------------------------------------------------------------------- post-process
def instances(foreground: np.ndarray, boundary: np.ndarray | None = None, density: np.ndarray | None = None,
              min_seed_area: int = 4, threshold: float = 0.5) -> np.ndarray:
    """Instance labels from one image's maps.

    - no auxiliary map: connected components of ``foreground > threshold``;
    - boundary map: seeds = components of ``foreground & boundary < threshold`` (at least
      ``min_seed_area`` px), grown back over the foreground by watershed on the boundary map;
    - density map only: seeds = local maxima of the density inside the foreground
      (``min_distance`` 2 px, at least 20% of the highest), watershed on the negated density.
    """
    if foreground.ndim != 2:
        raise ValueError(f"foreground must be a 2-D map, got shape {foreground.shape}")
    fg = foreground > threshold
    if boundary is not None:
        seeds, _ = ndimage.label(fg & (boundary < threshold))
        sizes = np.bincount(seeds.ravel())
        seeds[sizes[seeds] < min_seed_area] = 0
        return watershed(boundary, seeds, mask=fg).astype(np.int32)
    if density is not None:
        peaks = peak_local_max(density, min_distance=2, threshold_rel=0.2, labels=fg.astype(np.int32))
        seeds = np.zeros(fg.shape, np.int32)
        seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        return watershed(-density, seeds, mask=fg).astype(np.int32)
    return ndimage.label(fg)[0].astype(np.int32)


def merged_fraction(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Fraction of true cells whose best-overlapping predicted instance is also another cell's best."""
    ids = [i for i in np.unique(true_labels) if i]
    if not ids:
        return 0.0
    best = []
    for i in ids:
        overlap = np.bincount(pred_labels[true_labels == i].ravel())
        overlap[0] = 0
        best.append(int(overlap.argmax()) if overlap.sum() else 0)
    best = np.array(best)
    counts = np.bincount(best)
    return float(np.mean([(b != 0) and counts[b] > 1 for b in best]))


def evaluate(pred: Mapping[str, np.ndarray | None], items: Sequence[Mapping[str, np.ndarray]],
             min_seed_area: int = 4) -> dict[str, float]:
    """Pooled pixel metrics (released ``validate``), instance F1@0.5 and AJI (mean per image)."""
    from cellnb import metrics

    true_fg = np.stack([item["mask"] for item in items]).astype(bool)
    pred_fg = pred["foreground"] > 0.5
    row = {
        "dice": metrics.dice(pred_fg, true_fg),
        "iou": metrics.iou(pred_fg, true_fg),
        "precision": metrics.precision(pred_fg, true_fg),
        "sensitivity": metrics.recall(pred_fg, true_fg),
    }
    tp = fp = fn = tp_cc = fp_cc = fn_cc = 0
    ajis, merged = [], []
    for k, item in enumerate(items):
        labels = item["labels"]
        inst = instances(pred["foreground"][k],
                         None if pred["boundary"] is None else pred["boundary"][k],
                         None if pred["density"] is None else pred["density"][k], min_seed_area)
        m = metrics.match_instances(labels, inst, threshold=0.5)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        m_cc = metrics.match_instances(labels, instances(pred["foreground"][k]), threshold=0.5)
        tp_cc, fp_cc, fn_cc = tp_cc + m_cc.tp, fp_cc + m_cc.fp, fn_cc + m_cc.fn
        ajis.append(metrics.aji(labels, inst))
        merged.append(merged_fraction(labels, inst))
    row["instance_f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
    row["instance_f1_cc"] = 2 * tp_cc / max(2 * tp_cc + fp_cc + fn_cc, 1)
    row["aji"] = float(np.mean(ajis))
    row["merged_fraction"] = float(np.mean(merged))
    if pred["density"] is not None:
        true_counts = np.array([len(np.unique(item["labels"])) - 1 for item in items], float)
        row["count_mae"] = metrics.count_mae(pred["density"].sum(axis=(1, 2)), true_counts)
    else:
        row["count_mae"] = float("nan")
    return {k: float(v) for k, v in row.items()}


# ------------------------------------------------------------------------------------- ablation
def configurations(cfg: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(arch, mode, variant)``: the 8 paper-mode configs, then MC-Unet code-mode variants."""
    configs = [(arch, "paper", variant) for arch in ARCHS for variant in VARIANTS]
    configs += [("mc_unet", "code", variant) for variant in cfg["code_variants"]]
    return configs


def run_ablation(cfg: Mapping[str, Any], data: Mapping[str, Sequence[Mapping[str, np.ndarray]]], seed: int = 0,
                 device: str = "auto", progress: bool = False) -> tuple[pd.DataFrame, dict[tuple, dict]]:
    """Train every configuration over ``n_seeds`` seeds; one row per (config, seed, test regime).

    Returns the rows and the predictions of the first seed (for the figures).
    """
    rows, first_predictions = [], {}
    for arch, mode, variant in configurations(cfg):
        for s in range(cfg["n_seeds"]):
            t0 = time.perf_counter()
            model = train_one(arch, variant, mode, data["train"], cfg, seed + s, device, progress)
            seconds = time.perf_counter() - t0
            for regime in ("dense", "sparse"):
                items = data[f"test_{regime}"]
                pred = predict(model, items, device)
                if s == 0:
                    first_predictions[(arch, mode, variant, regime)] = pred
                rows.append(dict(arch=arch, mode=mode, variant=variant, seed=seed + s, regime=regime,
                                 train_seconds=seconds, **evaluate(pred, items, cfg["min_seed_area"])))
    return pd.DataFrame(rows), first_predictions


def summary_table(rows: pd.DataFrame, regime: str = "dense",
                  columns: Sequence[str] = ("dice", "iou", "precision", "sensitivity", "instance_f1", "aji",
                                            "merged_fraction", "count_mae")) -> pd.DataFrame:
    """Mean ± std over seeds per configuration, as strings ``"0.812 ± 0.010"``."""
    sub = rows[rows.regime == regime]
    grouped = sub.groupby(["arch", "mode", "variant"], sort=False)
    mean, std = grouped[list(columns)].mean(), grouped[list(columns)].std(ddof=1).fillna(0.0)
    table = mean.copy().astype(object)
    for col in columns:
        table[col] = [("n/a" if np.isnan(m) else f"{m:.3f} ± {s:.3f}") for m, s in zip(mean[col], std[col])]
    return table.reset_index()


def delta(rows: pd.DataFrame, arch: str, variant: str, metric: str = "dice", regime: str = "dense",
          mode: str = "paper") -> dict[str, float]:
    """Improvement of ``variant`` over the same arch's paper-mode baseline, and the seed spread.

    ``spread = sqrt(std_variant² + std_baseline²)``: the seed-to-seed standard deviation of a
    difference of two independently trained models. A claim "holds" only when ``delta > spread``.
    """
    sub = rows[(rows.arch == arch) & (rows.regime == regime)]
    base = sub[(sub["mode"] == "paper") & (sub.variant == "baseline")][metric]
    var = sub[(sub["mode"] == mode) & (sub.variant == variant)][metric]
    if base.empty or var.empty:
        raise KeyError(f"no rows for {arch}/{mode}/{variant} or its baseline in regime {regime!r}")
    std_b = float(base.std(ddof=1)) if len(base) > 1 else 0.0
    std_v = float(var.std(ddof=1)) if len(var) > 1 else 0.0
    return {"delta": float(var.mean() - base.mean()), "spread": float(np.hypot(std_b, std_v))}


def holds(d: Mapping[str, float], n_seeds: int) -> bool | None:
    """Verdict: improvement larger than the spread; None (not testable) with a single seed."""
    if n_seeds < 2:
        return None
    return bool(d["delta"] > d["spread"])


# ---------------------------------------------------------------------------------------- figures
def plot_maps(items: Sequence[Mapping[str, np.ndarray]], pred: Mapping[str, np.ndarray | None], index: int = 0):
    """Image, density (truth / prediction) and boundary (truth / prediction) side by side."""
    import matplotlib.pyplot as plt

    item = items[index]
    panels = [("image", item["image"][0], "gray"),
              (f"true density (sum {item['density'].sum():.1f})", item["density"], "magma")]
    if pred["density"] is not None:
        panels.append((f"predicted density (sum {pred['density'][index].sum():.1f})", pred["density"][index], "magma"))
    panels.append(("true boundary", item["boundary"], "gray"))
    if pred["boundary"] is not None:
        panels.append(("predicted boundary prob.", pred["boundary"][index], "gray"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (title, img, cmap) in zip(axes, panels):
        ax.imshow(img, cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_touching(items: Sequence[Mapping[str, np.ndarray]], preds: Mapping[str, Mapping[str, np.ndarray | None]],
                  index: int = 0, min_seed_area: int = 4):
    """Truth vs predicted instances per configuration; red outlines mark merged cells."""
    import matplotlib.pyplot as plt
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    item = items[index]
    labels = item["labels"]
    fig, axes = plt.subplots(1, len(preds) + 1, figsize=(3 * (len(preds) + 1), 3.4))
    axes[0].imshow(label2rgb(labels, bg_label=0))
    axes[0].set_title(f"truth ({labels.max() and len(np.unique(labels)) - 1} cells)", fontsize=9)
    for ax, (name, pred) in zip(axes[1:], preds.items()):
        inst = instances(pred["foreground"][index], None if pred["boundary"] is None else pred["boundary"][index],
                         None if pred["density"] is None else pred["density"][index], min_seed_area)
        rgb = label2rgb(inst, bg_label=0)
        # outline the predicted instances that cover two or more true cells (merges)
        merged = np.zeros_like(labels, bool)
        for p in np.unique(inst):
            if p and len([t for t in np.unique(labels[inst == p]) if t and (labels[inst == p] == t).sum() > 0.5 * (labels == t).sum()]) > 1:
                merged |= inst == p
        rgb[find_boundaries(merged, mode="inner")] = (1.0, 0.0, 0.0)
        ax.imshow(rgb)
        ax.set_title(f"{name}\n{len(np.unique(inst)) - 1} instances, {merged_fraction(labels, inst):.0%} merged", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig
