"""The SSRNet chapter's pipeline: data, training of SSRNet and the U-Net baseline, evaluation,
ablations (decoder, multitask weighting), the VGG-cells benchmark and the efficiency table.

The notebook ``notebooks/ssrnet.py`` only configures, calls these functions, plots and explains.

Protocol (released script ``SSRnet_bc05_2.py``, spec ``ssrnet.md`` §5): BBBC005 in-focus images
(both stains), gray image normalised with mean 0.387 / std 0.278, zero-padded bottom/right,
trained with the OM loss as released (10·L1(map) + 1·MSE(count)), Adam betas (0.5, 0.999).
BBBC005 is replaced by the BBBC005 look-alike generator ``cellnb.data.fluorescence_cells(
preset="bbbc005")`` (the real set cannot be downloaded); the ``quick`` and ``smoke`` profiles
downscale its 520×696 fields (the count stays that of the whole field).
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cellnb import metrics
from cellnb.losses.ssrnet import make_loss, predicted_map
from cellnb.models import create_model, outputs
from cellnb.utils import seed_everything

NORM_MEAN, NORM_STD = 0.387, 0.278  # released transforms.Normalize (per channel, gray replicated)
BBBC005_SHAPE = (520, 696)
PUBLISHED_VGG_MAE_N50 = {  # VGG cells, N = 50 training images (Cohen et al. 2017, Table 2) [S]
    "Lempitsky & Zisserman 2010": 3.5,
    "FCRN-A (Xie et al. 2016)": 2.9,
    "Count-ception (Cohen et al. 2017)": 2.3,
}
HEADLINE = ("count_mae", "unet_count_mae", "dice", "vgg_mae", "macs_ratio_vs_unet")

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        field=(128, 176), n_train=6, n_test=4, scale=0.5, pad_multiple=64, stains=(1, 2),
        epochs=1, batch_size=2, lr=1e-3, betas=(0.5, 0.999), base_width=4, unet_width=4,
        time_budget_s=None, train_released=False, ablation_loss="pixel",
        vgg_splits=1, vgg_n_train=6, vgg_n_test=6, vgg_scale=0.25, vgg_epochs=1, vgg_time_budget_s=None,
        profile_size=64, profile_width=16, bench_warmup=0, bench_repeats=1,
    ),
    "quick": dict(
        field=(520, 696), n_train=32, n_test=16, scale=0.246, pad_multiple=64, stains=(1, 2),
        epochs=25, batch_size=2, lr=1e-3, betas=(0.5, 0.999), base_width=8, unet_width=8,
        time_budget_s=None, train_released=False, ablation_loss="pixel",
        vgg_splits=2, vgg_n_train=50, vgg_n_test=100, vgg_scale=0.5, vgg_epochs=25, vgg_time_budget_s=None,
        profile_size=256, profile_width=64, bench_warmup=1, bench_repeats=3,
    ),
    "full": dict(  # released script: 520x696 padded to 768x768, batch 1, Adam 1e-4 (0.5, 0.999), 30 epochs
        field=(520, 696), n_train=960, n_test=240, scale=1.0, pad_multiple=256, stains=(1, 2),
        epochs=30, batch_size=1, lr=1e-4, betas=(0.5, 0.999), base_width=64, unet_width=64,
        time_budget_s=None, train_released=True, ablation_loss="pixel",
        vgg_splits=5, vgg_n_train=50, vgg_n_test=100, vgg_scale=1.0, vgg_epochs=100, vgg_time_budget_s=None,
        profile_size=256, profile_width=64, bench_warmup=3, bench_repeats=10,
    ),
}


# --------------------------------------------------------------------------- data
def _resize(array: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    from skimage.transform import resize

    if array.shape == shape:
        return array
    return resize(array, shape, order=order, anti_aliasing=order > 0, preserve_range=True)


def _pad(array: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad bottom/right to the next multiple (``collate_fn_bc05`` pads to 256)."""
    h, w = array.shape
    ph, pw = -h % multiple, -w % multiple
    return np.pad(array, ((0, ph), (0, pw))) if ph or pw else array


def prepare_item(image: np.ndarray, mask: np.ndarray, count: int, scale: float, pad_multiple: int) -> dict[str, Any]:
    """Downscale (``scale`` < 1), normalise (0.387, 0.278) and zero-pad one image and its mask.

    Returns ``image`` (H, W) float32 normalised and padded, ``mask`` (H, W) uint8 padded,
    ``count`` int, ``valid`` (h, w) = the unpadded size, and ``raw`` (h, w) float32 in [0, 1].
    """
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"prepare_item: need (H, W) image and mask of one shape, got {image.shape} and {mask.shape}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    raw = _resize(image.astype(np.float32), shape, order=1).astype(np.float32)
    small_mask = (_resize(mask.astype(np.float32), shape, order=1) >= 0.5).astype(np.uint8)
    normalised = (raw - NORM_MEAN) / NORM_STD
    return {
        "image": _pad(normalised, pad_multiple).astype(np.float32),
        "mask": _pad(small_mask, pad_multiple),
        "count": int(count),
        "valid": shape,
        "raw": raw,
    }


def bbbc005_items(n: int, seed: int, scale: float, pad_multiple: int, stains: Sequence[int] = (1, 2),
                  field: Sequence[int] = BBBC005_SHAPE) -> list[dict]:
    """``n`` BBBC005 look-alike fields (seeds ``seed…seed+n-1``), stains alternating as in the
    released image folder (which holds both w1 and w2 in-focus images). ``field`` smaller than
    520×696 is a crop-sized field (the generator scales the cell number with the area)."""
    from cellnb import data

    items = []
    for i in range(n):
        sample = data.fluorescence_cells(seed + i, size=tuple(field), preset="bbbc005",
                                         stain=int(stains[i % len(stains)]))
        item = prepare_item(sample["image"], sample["mask"], sample["count"], scale, pad_multiple)
        item["stain"] = int(stains[i % len(stains)])
        items.append(item)
    return items


def vgg_items(folder, scale: float, pad_multiple: int = 64) -> list[dict]:
    """The 200 real VGG cells (blue channel) with their dot counts.

    VGG has dots, not masks; SSRNet's distribution target is replaced by the Otsu foreground of
    the (σ = 1 smoothed) blue channel, an annotation-free map in the spirit of the paper's
    "non-point-based" counting (Deviations).
    """
    from skimage.filters import gaussian, threshold_otsu

    from cellnb import data

    items = []
    for it in data.load_dot_dataset(folder, kind="vgg"):
        blue = it["rgb"][..., 2].astype(np.float32) / 255.0
        smooth = gaussian(blue, sigma=1.0)
        mask = (smooth > threshold_otsu(smooth)).astype(np.uint8)
        items.append(prepare_item(blue, mask, it["count"], scale, pad_multiple) | {"name": it["name"]})
    return items


def loader(items: Sequence[dict], batch_size: int, shuffle: bool, seed: int = 0):
    from torch.utils.data import DataLoader

    from cellnb.data import DictDataset

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(DictDataset(list(items), keys=("image", "mask", "count")), batch_size=batch_size,
                      shuffle=shuffle, generator=generator)


# --------------------------------------------------------------------------- models and training
def build(kind: str, cfg: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """``kind``: ``paper``, ``released``, ``bilinear``, ``transpose`` (SSRNet) or ``unet`` (baseline)."""
    if kind == "unet":
        return create_model("unet", in_channels=1, num_classes=1, heads=("mask", "count"),
                            base_width=overrides.get("base_width", cfg["unet_width"]))
    if kind in ("paper", "released"):
        return create_model("ssrnet", variant=kind, base_width=overrides.get("base_width", cfg["base_width"]))
    if kind in ("bilinear", "transpose"):
        return create_model("ssrnet", variant="paper", decoder=kind,
                            base_width=overrides.get("base_width", cfg["base_width"]))
    raise ValueError(f"unknown model kind {kind!r}; choose from paper, released, bilinear, transpose, unet")


def train_model(kind: str, train_items: Sequence[dict], cfg: Mapping[str, Any], *, seed: int, device: str,
                loss: str = "om", epochs: int | None = None, time_budget_s: float | None = None) -> tuple[nn.Module, pd.DataFrame]:
    """Train one model with :func:`cellnb.train.fit` (Adam, the profile's lr and betas)."""
    from cellnb.train import fit

    seed_everything(seed)
    model = build(kind, cfg)
    loss_fn = make_loss(loss, model)
    history = fit(model, loader(train_items, cfg["batch_size"], True, seed), loss_fn,
                  epochs=cfg["epochs"] if epochs is None else epochs, lr=cfg["lr"], betas=tuple(cfg["betas"]),
                  device=device, time_budget_s=cfg["time_budget_s"] if time_budget_s is None else time_budget_s,
                  progress=False)
    return model, history


@torch.no_grad()
def predict(model: nn.Module, items: Sequence[dict], device: str | torch.device = "cpu", batch_size: int = 4) -> dict[str, Any]:
    """Counts and foreground maps (cropped to the unpadded area) for ``items``."""
    from cellnb.utils import select_device

    dev = select_device(device) if isinstance(device, str) else device
    model.to(dev).eval()
    counts, maps = [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        x = torch.from_numpy(np.stack([it["image"] for it in chunk])[:, None]).to(dev)
        out = model(x)
        counts.extend(out[outputs.COUNT].float().cpu().numpy().tolist())
        pm = predicted_map(out)[:, 0].float().cpu().numpy()
        maps.extend(pm[i, : it["valid"][0], : it["valid"][1]] for i, it in enumerate(chunk))
    return {"count": np.asarray(counts), "maps": maps}


def edge_contrast(pred_map: np.ndarray, mask: np.ndarray) -> float:
    """Blur measure: mean predicted map (clipped to [0, 1]) on the 1-px inner boundary band of the
    true mask minus its mean on the 1-px outer band. 1 = a step as sharp as the mask; a blurred
    edge gives less. NaN when the mask has no boundary."""
    from scipy import ndimage

    m = mask.astype(bool)
    inner = m & ~ndimage.binary_erosion(m)
    outer = ndimage.binary_dilation(m) & ~m
    if not inner.any() or not outer.any():
        return float("nan")
    p = np.clip(pred_map, 0.0, 1.0)
    return float(p[inner].mean() - p[outer].mean())


def evaluate(model: nn.Module, items: Sequence[dict], device: str = "cpu", threshold: float = 0.5) -> dict[str, float]:
    """Count MAE / RMSE (cells), pooled Dice / IoU of ``map > threshold`` on the unpadded area,
    and the mean edge contrast (:func:`edge_contrast`)."""
    pred = predict(model, items, device)
    true_counts = np.asarray([it["count"] for it in items], dtype=float)
    masks = [it["mask"][: it["valid"][0], : it["valid"][1]] for it in items]
    binary = np.concatenate([(m > threshold).ravel() for m in pred["maps"]])
    truth = np.concatenate([m.ravel() for m in masks]).astype(bool)
    contrasts = [edge_contrast(p, m) for p, m in zip(pred["maps"], masks)]
    return {
        "count_mae": metrics.count_mae(pred["count"], true_counts),
        "count_rmse": metrics.count_rmse(pred["count"], true_counts),
        "dice": metrics.dice(binary, truth),
        "iou": metrics.iou(binary, truth),
        "edge_contrast": float(np.nanmean(contrasts)) if np.isfinite(contrasts).any() else float("nan"),
    }


def planned_runs(cfg: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(name, model kind, loss)`` of every model the chapter trains on the generated data.

    ``paper`` and ``unet`` use the OM loss as released (the comparison); ``uncertainty`` is the
    paper variant with uncertainty weighting (the loss ablation); ``bilinear`` and ``transpose``
    swap the ×32 SSR step and are trained with ``cfg["ablation_loss"]``, like the SSR row they are
    compared with (the decoder ablation; ``decoder_ssr`` when that loss is neither of the others,
    e.g. ``"pixel"``: the map term alone, since upsampling quality is a property of the map).
    """
    runs = [("paper", "paper", "om"), ("unet", "unet", "om"), ("uncertainty", "paper", "uncertainty")]
    if decoder_reference(cfg) == "decoder_ssr":
        runs.append(("decoder_ssr", "paper", cfg["ablation_loss"]))
    runs += [("bilinear", "bilinear", cfg["ablation_loss"]), ("transpose", "transpose", cfg["ablation_loss"])]
    if cfg["train_released"]:
        runs.append(("released", "released", "om"))
    return runs


def decoder_reference(cfg: Mapping[str, Any]) -> str:
    """The SSR-decoder row the decoder ablation compares with (trained with the same loss)."""
    return {"om": "paper", "uncertainty": "uncertainty"}.get(cfg["ablation_loss"], "decoder_ssr")


def run_generated(cfg: Mapping[str, Any], seed: int, device: str,
                  runs: Sequence[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """Generate train/test data once, train each of ``runs`` (default :func:`planned_runs`) on it
    with the same epochs and seed, and evaluate on the test set.

    Returns the data (``train``, ``test``), ``models``, ``histories`` and a ``table`` (one row per run).
    """
    t0 = time.perf_counter()
    train_items = bbbc005_items(cfg["n_train"], seed, cfg["scale"], cfg["pad_multiple"], cfg["stains"], cfg["field"])
    test_items = bbbc005_items(cfg["n_test"], seed + 100_000, cfg["scale"], cfg["pad_multiple"], cfg["stains"], cfg["field"])
    data_seconds = time.perf_counter() - t0
    models, histories, rows = {}, {}, []
    for name, kind, loss in runs or planned_runs(cfg):
        t1 = time.perf_counter()
        model, history = train_model(kind, train_items, cfg, seed=seed, device=device, loss=loss)
        seconds = time.perf_counter() - t1
        scores = evaluate(model, test_items, device)
        models[name], histories[name] = model, history
        rows.append({"model": name, "kind": kind, "loss": loss, "epochs": int(len(history)), "train_s": seconds,
                     "params": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("loss_weights")),
                     **scores})
    return {"train": train_items, "test": test_items, "models": models, "histories": histories,
            "table": pd.DataFrame(rows).set_index("model"), "data_seconds": data_seconds}


def run_vgg(folder, cfg: Mapping[str, Any], seed: int, device: str) -> pd.DataFrame:
    """VGG cells protocol: N train images from the first 100, test on the last 100, several random
    splits (``cellnb.data.vgg_splits``); paper-variant SSRNet with the OM loss. One row per split."""
    from cellnb import data

    items = vgg_items(folder, cfg["vgg_scale"], cfg["pad_multiple"])
    rows = []
    for k, split in enumerate(data.vgg_splits(cfg["vgg_n_train"], n_splits=cfg["vgg_splits"], seed=seed,
                                             n_images=len(items))):
        train = [items[i] for i in split["train"]]
        test = [items[i] for i in split["test"][: cfg["vgg_n_test"]]]
        t1 = time.perf_counter()
        model, history = train_model("paper", train, cfg, seed=seed + k, device=device,
                                     epochs=cfg["vgg_epochs"], time_budget_s=cfg["vgg_time_budget_s"])
        scores = evaluate(model, test, device)
        rows.append({"split": k, "n_train": len(train), "n_test": len(test), "epochs": int(len(history)),
                     "train_s": time.perf_counter() - t1, "mae": scores["count_mae"], "rmse": scores["count_rmse"],
                     "dice_vs_otsu": scores["dice"]})
    return pd.DataFrame(rows)


def vgg_comparison(per_split: pd.DataFrame) -> pd.DataFrame:
    """This run's MAE ± std over splits next to the published N = 50 numbers."""
    rows = [{"method": name, "MAE": mae, "std": float("nan"), "source": "published (N = 50)"}
            for name, mae in PUBLISHED_VGG_MAE_N50.items()]
    rows.append({"method": "SSRNet (paper variant, this run)", "MAE": float(per_split["mae"].mean()),
                 "std": float(per_split["mae"].std(ddof=0)),
                 "source": f"{len(per_split)} split(s), N = {int(per_split['n_train'].iloc[0])}"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- SSR walk-through
@torch.no_grad()
def ssr_feature_maps(model: nn.Module, item: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Channel-mean |activation| after each step of the paper variant's one ×32 SSR block,
    for one prepared item (cropped to its unpadded area where the scale allows)."""
    from cellnb.models.ssrnet import SSRUpsampling

    block = model.up[0]
    if not isinstance(block, SSRUpsampling):
        raise TypeError("ssr_feature_maps needs an SSRNet whose decoder starts with an SSRUpsampling block")
    model.eval()
    device = next(model.parameters()).device
    x = torch.from_numpy(item["image"][None, None]).to(device)
    deep, _ = model.features(x)
    steps = block.intermediates(deep)
    steps["output (after ReLU)"] = torch.relu(steps.pop("output"))
    return {name: t[0].abs().mean(0).cpu().numpy() for name, t in steps.items()}


# --------------------------------------------------------------------------- efficiency
def efficiency(size: int, warmup: int, repeats: int, width: int = 64) -> pd.DataFrame:
    """Params, MACs, memory traffic (``cellnb.profile.summary``) and CPU latency
    (``cellnb.profile.benchmark``) of the full-width models on a (1, 3, size, size) input:
    SSRNet paper and released (3-channel in/out as released) and the classic 64…1024 U-Net (3→3).
    ``width`` < 64 scales both networks alike (smoke profile only)."""
    from cellnb import profile

    models = {
        "SSRNet (paper, 1×32)": create_model("ssrnet", variant="paper", in_channels=3, map_channels=3, base_width=width),
        "SSRNet (released, 5×2)": create_model("ssrnet", variant="released", in_channels=3, map_channels=3,
                                               base_width=width),
        "U-Net (classic)": create_model("unet", in_channels=3, num_classes=3, base_width=width, heads=("mask", "count")),
    }
    shape = (1, 3, size, size)
    table = profile.summary(models, shape)
    bench = profile.benchmark(models, shape, device="cpu", warmup=warmup, repeats=repeats).set_index("model")
    table["median_ms"] = bench["median_ms"]
    table["iqr_ms"] = bench["iqr_ms"]
    unet = table.loc["U-Net (classic)"]
    for col, name in (("macs", "macs_ratio"), ("memory_traffic", "traffic_ratio"), ("median_ms", "latency_ratio"),
                      ("params", "params_ratio")):
        table[name] = table[col] / unet[col]
    return table


# --------------------------------------------------------------------------- metrics and claims
def record(run, gen: Mapping[str, Any], eff: pd.DataFrame, vgg: pd.DataFrame | None) -> None:
    """Put the chapter's metrics and claims into ``run`` (a :class:`cellnb.results.Run`)."""
    table = gen["table"]
    main = table.loc["paper"]
    for key in ("count_mae", "count_rmse", "dice", "iou", "edge_contrast"):
        if np.isfinite(main[key]):
            run.metric(key, main[key])
    prefixes = {"unet": "unet_", "released": "released_", "bilinear": "ablation_bilinear_",
                "transpose": "ablation_transpose_", "uncertainty": "loss_uncertainty_", "decoder_ssr": "ablation_ssr_"}
    for kind, prefix in prefixes.items():
        if kind in table.index:
            for key in ("count_mae", "count_rmse", "dice", "iou", "edge_contrast"):
                if np.isfinite(table.loc[kind, key]):
                    run.metric(prefix + key, table.loc[kind, key])
    paper, released = eff.loc["SSRNet (paper, 1×32)"], eff.loc["SSRNet (released, 5×2)"]
    run.metric("macs_ratio_vs_unet", paper["macs_ratio"])
    run.metric("memory_traffic_ratio_vs_unet", paper["traffic_ratio"])
    run.metric("latency_ratio_vs_unet", paper["latency_ratio"])
    run.metric("released_macs_ratio_vs_unet", released["macs_ratio"])
    run.metric("released_memory_traffic_ratio_vs_unet", released["traffic_ratio"])
    run.metric("released_latency_ratio_vs_unet", released["latency_ratio"])
    run.metric("params_ssrnet_paper", int(paper["params"]))
    run.metric("params_unet_classic", int(eff.loc["U-Net (classic)", "params"]))
    if vgg is not None and len(vgg):
        run.metric("vgg_mae", vgg["mae"].mean())
        run.metric("vgg_mae_std", vgg["mae"].std(ddof=0))
        run.metric("vgg_splits", len(vgg))

    size = eff["input_shape"].iloc[0]
    run.claim("macs_1_20", "MACs 1/20 of U-Net", "SSRNet abstract", round(float(paper["macs_ratio"]), 4),
              bool(paper["macs_ratio"] <= 0.05 * 1.25),
              f"MACs(SSRNet paper variant) / MACs(classic 64…1024 U-Net) at {size}; 'about 1/20' taken as "
              f"≤ 1.25/20 = 0.0625. Released 5×2 variant: {released['macs_ratio']:.4f}.")
    run.claim("memory_1_10", "memory read/write 1/10 of U-Net", "SSRNet abstract",
              round(float(paper["traffic_ratio"]), 4), bool(paper["traffic_ratio"] <= 0.1 * 1.25),
              f"leaf-module bytes read + written (cellnb.profile.memory_traffic) at {size}; 'about 1/10' taken as "
              f"≤ 0.125. Released variant: {released['traffic_ratio']:.4f}. The paper's exact memory measure "
              f"(torchstat MemR+W?) is unknown.")
    ref_name = decoder_reference(run.settings) if "ablation_loss" in run.settings else "paper"
    ref = table.loc[ref_name] if ref_name in table.index else main
    if "bilinear" in table.index and np.isfinite(ref["edge_contrast"]):
        ssr_c, bil_c = float(ref["edge_contrast"]), float(table.loc["bilinear", "edge_contrast"])
        run.claim("x32_no_blur", "upsampling ×32 in one step without blurring", "SSRNet abstract",
                  f"edge contrast SSR {ssr_c:.3f} vs one-step bilinear ×32 {bil_c:.3f}", bool(ssr_c >= bil_c),
                  "edge contrast = mean map on the 1-px inner band of the true mask minus the 1-px outer band "
                  "(1 = as sharp as the mask); same encoder, data, epochs and loss "
                  f"({table.loc['bilinear', 'loss']}); only the ×32 step differs.")
    if {"bilinear", "transpose"} <= set(table.index):
        better = ref["dice"] >= table.loc[["bilinear", "transpose"], "dice"].max()
        run.claim("ssr_beats_traditional_upsampling",
                  "SSR-upsampling performs better than traditional upsampling", "SSRNet abstract",
                  f"Dice SSR {ref['dice']:.3f}, bilinear {table.loc['bilinear', 'dice']:.3f}, "
                  f"transposed conv {table.loc['transpose', 'dice']:.3f}", bool(better),
                  f"test Dice of the map at equal training budget (same data, epochs, seed, loss "
                  f"{table.loc['bilinear', 'loss']})")
    if "unet" in table.index:
        run.claim("beats_unet_count", "SSRNet counts better than U-Net (state of the art)", "SSRNet abstract",
                  f"count MAE SSRNet {main['count_mae']:.2f} vs U-Net {table.loc['unet', 'count_mae']:.2f}",
                  bool(main["count_mae"] < table.loc["unet", "count_mae"]),
                  "generated BBBC005-like test set; U-Net with a count head, same loss, data and epochs")
