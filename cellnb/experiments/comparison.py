"""The closing chapter (issue 9): the five papers' models side by side on one benchmark.

One run trains every model that can do a task on the same generated (and, with a data root,
real) data, with the same seeds, epochs, optimiser and time budget, with **plain supervised
losses** (no GAN for ELMGAN's generator, no auxiliary boundary/marker branches), and evaluates
them with the same metrics and the same post-processing (connected components of the
foreground at 0.5 for instances). Costs of the full-width paper configurations are measured in
one interleaved benchmark. Finally the chapter gathers every other chapter's claims and wall
times from ``results/``.

Tasks (keys used in metric names):

- ``count_gen``: BBBC005-like fields (:func:`cellnb.data.fluorescence_cells`, ``preset="bbbc005"``,
  nuclei stain) downscaled ×0.5; count MAE / RMSE.
- ``count_vgg`` / ``count_mbm``: the real VGG cells (Lempitsky & Zisserman protocol, N = 50
  training images per split, 100 test images) and MBM (15 train / 29 test), when a data root is
  given. Foreground targets are the Otsu foreground (as in the SSRNet chapter's ``vgg_items``).
- ``nuclei``: generated nuclei with touching instances (:func:`cellnb.data.nuclei`, dense regime),
  pixel Dice / IoU, instance F1 at IoU 0.5, AJI (:func:`cellnb.experiments.mc_unet.evaluate`).
- ``blood``: generated blood smears through :func:`cellnb.data.lowres_pair` (the HR image as input),
  the same segmentation metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cellnb import metrics
from cellnb.models import create_model, outputs

NAME = "comparison"
#: the chapters whose results this chapter gathers, in book order
CHAPTERS: tuple[str, ...] = ("data", "ssrnet", "elmgan", "lowres_bloodcell", "mc_unet", "u_se_resnet")
#: display names of the compared models (registry name in brackets in the book)
MODELS: tuple[str, ...] = ("unet", "ssrnet", "elmgan", "mc_unet", "tiny_unet", "u_se_resnet")
COUNT_MODELS: tuple[str, ...] = ("unet", "ssrnet", "elmgan", "mc_unet")
SEG_METRICS: tuple[str, ...] = ("dice", "iou", "instance_f1", "aji")
COUNT_METRICS: tuple[str, ...] = ("mae", "rmse")
HEADLINE = ("ssrnet_count_gen_mae", "unet_count_gen_mae", "claims_hold")
DENSITY_SCALE = 100.0  # MC-Unet density MSE amplification (cellnb.experiments.mc_unet settings)

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        size=64, n_train=2, n_test=2, n_seeds=1, epochs=1, batch_size=2, lr=1e-3, time_budget_s=None,
        slim_width=4, tiny_widths=[16, 32, 64, 128], use_width=0.0625, use_blocks=[1, 1, 1, 1],
        nuclei_radius_scale=0.5, smear_size=300, sigma=2.0,
        real_n_train=2, real_n_test=2, mbm_n_train=2, mbm_n_test=2,
        cost_full_width=False, cost_sizes=[64], bench_sizes=[64], bench_warmup=0, bench_repeats=1,
        slim_bench_repeats=1,
    ),
    "quick": dict(
        size=128, n_train=12, n_test=8, n_seeds=2, epochs=12, batch_size=4, lr=1e-3, time_budget_s=None,
        slim_width=8, tiny_widths=[16, 32, 64, 128], use_width=0.125, use_blocks=[1, 1, 1, 1],
        nuclei_radius_scale=0.5, smear_size=600, sigma=2.0,
        real_n_train=50, real_n_test=100, mbm_n_train=15, mbm_n_test=29,
        cost_full_width=True, cost_sizes=[256, 512], bench_sizes=[256], bench_warmup=1, bench_repeats=1,
        slim_bench_repeats=3,
    ),
    "full": dict(  # paper scale, for a GPU: full widths, 256² images, many epochs, 5 seeds
        size=256, n_train=200, n_test=50, n_seeds=5, epochs=100, batch_size=4, lr=1e-3, time_budget_s=None,
        slim_width=64, tiny_widths=[64, 128, 256, 512], use_width=1.0, use_blocks=[3, 4, 6, 3],
        nuclei_radius_scale=1.0, smear_size=1200, sigma=3.0,
        real_n_train=50, real_n_test=100, mbm_n_train=15, mbm_n_test=29,
        cost_full_width=True, cost_sizes=[256, 512], bench_sizes=[256, 512], bench_warmup=3, bench_repeats=10,
        slim_bench_repeats=10,
    ),
}


# ------------------------------------------------------------------------------------------ data
def _resize(array: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    from skimage.transform import resize

    if array.shape[:2] == tuple(shape):
        return array
    return resize(array, shape, order=order, anti_aliasing=order > 0, preserve_range=True)


def count_item(image: np.ndarray, points: np.ndarray, mask: np.ndarray, size: int, sigma: float) -> dict[str, np.ndarray]:
    """One counting item at ``size``×``size``: image ``(1,H,W)``, mask, density ``(H,W)`` (sums to the
    number of points inside the field), count (float32 scalar = number of dots of the full field)."""
    from cellnb import targets

    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(f"count_item: need a (H, W) image and a mask of that shape, got {image.shape}, {mask.shape}")
    points = np.asarray(points, np.float32).reshape(-1, 2)
    scale = np.array([size / image.shape[0], size / image.shape[1]], np.float32)
    small = _resize(image.astype(np.float32), (size, size), order=1).astype(np.float32)
    small_mask = (_resize(mask.astype(np.float32), (size, size), order=1) >= 0.5).astype(np.int64)
    pts = np.clip((points + 0.5) * scale - 0.5, 0, size - 1)  # pixel centres map to pixel centres
    return {
        "image": small[None],
        "mask": small_mask,
        "labels": np.zeros((size, size), np.int32),
        "density": targets.density_from_points(pts, (size, size), sigma=sigma).astype(np.float32),
        "count": np.float32(len(points)),
    }


def generated_count_items(n: int, seed: int, size: int, sigma: float) -> list[dict[str, np.ndarray]]:
    """``n`` BBBC005-like fields of 2·size (nuclei stain, seeds ``seed…``), downscaled to ``size``."""
    from cellnb import data

    items = []
    for i in range(n):
        s = data.fluorescence_cells(seed + i, size=(2 * size, 2 * size), preset="bbbc005", stain=2)
        items.append(count_item(s["image"], s["points"], s["mask"], size, sigma))
    return items


def otsu_foreground(gray: np.ndarray) -> np.ndarray:
    """Otsu foreground of the σ = 1 smoothed image (the SSRNet chapter's annotation-free map)."""
    from skimage.filters import gaussian, threshold_otsu

    smooth = gaussian(gray, sigma=1.0)
    return (smooth > threshold_otsu(smooth)).astype(np.uint8)


def real_count_items(records: Sequence[Mapping[str, Any]], size: int, sigma: float, kind: str) -> list[dict[str, np.ndarray]]:
    """Dot-annotated real images (:func:`cellnb.data.load_dot_dataset`) as counting items.

    VGG: the blue channel; MBM: the inverted grey level (stained cells are dark)."""
    if kind not in ("vgg", "mbm"):
        raise ValueError(f"unknown real counting set {kind!r}; choose 'vgg' or 'mbm'")
    items = []
    for rec in records:
        rgb = np.asarray(rec["rgb"], np.float32) / 255.0
        gray = rgb[..., 2] if kind == "vgg" else 1.0 - rgb.mean(axis=2)
        items.append(count_item(gray, rec["points"], otsu_foreground(gray), size, sigma))
    return items


def nuclei_items(n: int, seed: int, cfg: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    """Dense generated nuclei (touching instances) via :func:`cellnb.experiments.mc_unet.make_split`."""
    from cellnb.experiments import mc_unet

    return mc_unet.make_split(seed, n, cfg["size"], "dense", cfg["sigma"], cfg["nuclei_radius_scale"])


def blood_items(n: int, seed: int, cfg: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    """Blood smears → :func:`cellnb.data.lowres_pair`; the HR image (3, size, size) is the input
    (:func:`cellnb.experiments.lowres_bloodcell.make_split`)."""
    from cellnb.experiments import lowres_bloodcell

    size = cfg["size"]
    split = lowres_bloodcell.make_split(range(seed, seed + n), smear_size=cfg["smear_size"], hr_size=size,
                                        lr_size=size // 4)
    return [{"image": split["hr"][i].astype(np.float32), "mask": split["mask"][i], "labels": split["labels"][i]}
            for i in range(n)]


# ---------------------------------------------------------------------------------------- models
def build(name: str, cfg: Mapping[str, Any], in_channels: int = 1, count: bool = False) -> nn.Module:
    """The slim model ``name`` as trained here (widths from the profile); ``count`` adds a count
    output (U-Net count head, MC-Unet density head; SSRNet and ELMGAN always count)."""
    w = cfg["slim_width"]
    if name == "unet":
        return create_model("unet", in_channels=in_channels, num_classes=1, base_width=w,
                            heads=("mask", "count") if count else ("mask",))
    if name == "ssrnet":
        return create_model("ssrnet", variant="paper", in_channels=in_channels, base_width=w)
    if name == "elmgan":
        return create_model("elmgan_generator", in_channels=in_channels, base_width=w)
    if name == "mc_unet":
        from cellnb.experiments.mc_unet import ScaledDensity

        model = create_model("mc_unet", in_channels=in_channels, num_classes=2, base_width=w, depth=3,
                             heads=("mask", "density") if count else ("mask",))
        # as in the MC-Unet chapter: the head learns the amplified density, the output sums to the count
        return ScaledDensity(model, DENSITY_SCALE) if count else model
    if name == "tiny_unet":
        return create_model("tiny_unet", in_channels=in_channels, num_classes=2, widths=list(cfg["tiny_widths"]))
    if name == "u_se_resnet":
        return create_model("u_se_resnet", in_channels=in_channels, width=cfg["use_width"], blocks=list(cfg["use_blocks"]))
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def slim_models(cfg: Mapping[str, Any], in_channels: int = 1) -> dict[str, tuple[nn.Module, int, int]]:
    """The trained (slim) configurations in :func:`cost_table`'s form (for the Pareto figure)."""
    return {n: (build(n, cfg, in_channels=in_channels), in_channels, 1) for n in MODELS}


def full_width_models() -> dict[str, tuple[nn.Module, int, int]]:
    """The papers' configurations for the cost table: ``name -> (model, in_channels, input divisor)``.

    MobileSR (lowres_bloodcell's ×4 super-resolution) takes the ¼-size low-resolution image.
    """
    return {
        "unet": (create_model("unet", in_channels=1, num_classes=1, base_width=64), 1, 1),
        "ssrnet": (create_model("ssrnet", variant="paper", base_width=64), 1, 1),
        "elmgan": (create_model("elmgan_generator", base_width=64), 1, 1),
        "mc_unet": (create_model("mc_unet", in_channels=3, num_classes=2, base_width=64, depth=3), 3, 1),
        "tiny_unet": (create_model("tiny_unet"), 3, 1),
        "u_se_resnet": (create_model("u_se_resnet"), 1, 1),
        "mobilesr": (create_model("mobilesr"), 3, 4),
    }


def init_count_output(name: str, model: nn.Module, mean_count: float, images: torch.Tensor | None = None) -> None:
    """Start count heads at the training-mean count (as :func:`cellnb.experiments.elmgan.init_count_heads`).

    U-Net / ELMGAN: the head's bias. SSRNet: its count is linear in the 32×32 head weight
    (U[0, 1) as released), so that weight is rescaled to give ``mean_count`` on average over
    ``images`` (a training batch, eval mode). MC-Unet's density head learns the amplified
    density instead (:class:`cellnb.experiments.mc_unet.ScaledDensity`), as in its chapter.
    """
    if mean_count <= 0:
        raise ValueError(f"mean count must be positive, got {mean_count}")
    if name == "ssrnet" and images is not None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            initial = float(model(images)[outputs.COUNT].mean())
            if initial > 0:
                model.count_head.weight.mul_(mean_count / initial)
        model.train(was_training)
    if name == "elmgan":
        from cellnb.experiments.elmgan import init_count_heads

        init_count_heads({name: {"generator": model}}, mean_count, 1.0)
    elif name == "unet" and getattr(model, "count_fc", None) is not None:
        with torch.no_grad():
            model.count_fc.bias.fill_(float(np.log(np.expm1(mean_count))))


def foreground(name: str, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Foreground probability (N, H, W): SSRNet's map clipped to [0, 1], softmax channel 1 for
    two-class logits, sigmoid of channel 0 otherwise."""
    if name == "ssrnet":
        return out[outputs.DENSITY][:, 0].clamp(0, 1)
    logits = out[outputs.MASK_LOGITS]
    if logits.shape[1] == 2:
        return torch.softmax(logits, dim=1)[:, 1]
    return torch.sigmoid(logits[:, 0])


def predicted_count(name: str, out: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """Count (N,): the count head, or for MC-Unet the density sum; None when the model has neither."""
    if name == "mc_unet":
        return out[outputs.DENSITY].sum(dim=(1, 2, 3)) if outputs.DENSITY in out else None
    return out.get(outputs.COUNT)


def make_loss(name: str, count: bool, mean_count: float = 1.0):
    """Plain supervised loss: foreground term + (``count``) count term, for every model alike.

    Foreground: BCE (one logit channel), cross-entropy (two), or L1 for SSRNet's map (its OM loss
    map term). Count: squared relative error ``((ĉ - c) / mean)²`` on the count head, or for
    MC-Unet the paper's density MSE (×100 amplified, Eq. of the density branch).
    """
    scale = float(mean_count)

    def loss_fn(out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        mask = batch["mask"].long()
        if name == "ssrnet":
            seg = F.l1_loss(out[outputs.DENSITY][:, 0], mask.float())
        elif out[outputs.MASK_LOGITS].shape[1] == 2:
            seg = F.cross_entropy(out[outputs.MASK_LOGITS], mask)
        else:
            seg = F.binary_cross_entropy_with_logits(out[outputs.MASK_LOGITS][:, 0], mask.float())
        parts = {"seg": float(seg.detach())}
        total = seg
        if count:
            if name == "mc_unet":
                density = out[outputs.DENSITY]
                cnt = F.mse_loss(DENSITY_SCALE * density, DENSITY_SCALE * batch["density"].reshape(density.shape).float())
            else:
                cnt = (((out[outputs.COUNT] - batch["count"].float()) / scale) ** 2).mean()
            parts["count"] = float(cnt.detach())
            total = total + cnt
        return total, parts

    return loss_fn


def train(name: str, items: Sequence[Mapping[str, np.ndarray]], cfg: Mapping[str, Any], *, seed: int, count: bool,
          device: str = "auto") -> tuple[nn.Module, pd.DataFrame]:
    """Train one model with :func:`cellnb.train.fit` (Adam, the profile's lr, epochs and budget)."""
    from torch.utils.data import DataLoader

    from cellnb.data import DictDataset
    from cellnb.train import fit
    from cellnb.utils import seed_everything

    seed_everything(seed)
    in_channels = int(items[0]["image"].shape[0])
    model = build(name, cfg, in_channels=in_channels, count=count)
    mean_count = float(np.mean([it["count"] for it in items])) if count else 1.0
    if count:
        first = torch.from_numpy(np.stack([it["image"] for it in items[: cfg["batch_size"]]]))
        init_count_output(name, model, mean_count, first)
    keys = ("image", "mask", "density", "count") if count else ("image", "mask")
    loader = DataLoader(DictDataset(list(items), keys=keys), batch_size=cfg["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    history = fit(model, loader, make_loss(name, count, mean_count), epochs=cfg["epochs"], lr=cfg["lr"],
                  device=device, time_budget_s=cfg["time_budget_s"], progress=False)
    return model, history  # fit re-estimated BatchNorm statistics for every model alike


@torch.no_grad()
def predict(name: str, model: nn.Module, items: Sequence[Mapping[str, np.ndarray]], device: str = "auto",
            batch_size: int = 8) -> dict[str, np.ndarray | None]:
    """Foreground probabilities (N, H, W) and counts (N,) (None without a count output)."""
    from cellnb.utils import select_device

    dev = select_device(device)
    model = model.to(dev).eval()
    fgs, counts = [], []
    for start in range(0, len(items), batch_size):
        x = torch.from_numpy(np.stack([it["image"] for it in items[start:start + batch_size]])).to(dev)
        out = model(x)
        fgs.append(foreground(name, out).float().cpu().numpy())
        c = predicted_count(name, out)
        counts.append(None if c is None else c.float().cpu().numpy())
    return {"foreground": np.concatenate(fgs),
            "count": None if counts[0] is None else np.concatenate(counts)}


def evaluate_count(pred: Mapping[str, np.ndarray | None], items: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Count MAE and RMSE against the items' true counts."""
    if pred["count"] is None:
        raise ValueError("evaluate_count: the model has no count output")
    true = np.array([float(it["count"]) for it in items])
    return {"mae": metrics.count_mae(pred["count"], true), "rmse": metrics.count_rmse(pred["count"], true)}


def evaluate_segmentation(pred: Mapping[str, np.ndarray | None], items: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Dice, IoU (pooled), instance F1 at IoU 0.5 and AJI (connected components of the foreground
    at 0.5 for every model), through :func:`cellnb.experiments.mc_unet.evaluate`."""
    from cellnb.experiments import mc_unet

    row = mc_unet.evaluate({"foreground": pred["foreground"], "boundary": None, "density": None}, items)
    return {k: row[k] for k in SEG_METRICS}


def run_task(task: str, models: Sequence[str], train_sets: Sequence[Sequence[Mapping[str, np.ndarray]]],
             test_items: Sequence[Mapping[str, np.ndarray]], cfg: Mapping[str, Any], seeds: Sequence[int],
             device: str = "auto", log=print) -> pd.DataFrame:
    """Train and evaluate every model of ``models`` on ``task`` for each seed (training set
    ``train_sets[i]`` with seed ``seeds[i]``). One row per (model, seed) with the metrics,
    ``epochs`` run and ``train_s``."""
    if len(train_sets) != len(seeds):
        raise ValueError(f"need one training set per seed, got {len(train_sets)} sets for {len(seeds)} seeds")
    count = task.startswith("count")
    rows = []
    for seed, train_items in zip(seeds, train_sets):
        for name in models:
            t0 = time.perf_counter()
            model, history = train(name, train_items, cfg, seed=seed, count=count, device=device)
            seconds = time.perf_counter() - t0
            pred = predict(name, model, test_items, device=device)
            scores = evaluate_count(pred, test_items) if count else evaluate_segmentation(pred, test_items)
            rows.append({"task": task, "model": name, "seed": seed, **scores, "epochs": len(history),
                         "train_s": round(seconds, 2)})
            if log:
                log(f"{task} {name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                    + f" ({len(history)} epochs, {seconds:.1f} s)")
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- tables
def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds: one row per (task, model), columns ``<metric>`` and
    ``<metric>_std`` (std 0 for a single seed), plus ``n_seeds``."""
    if rows.empty:
        return pd.DataFrame(columns=["task", "model", "n_seeds"])
    metric_cols = [c for c in rows.columns if c not in ("task", "model", "seed", "epochs", "train_s")]
    out = []
    for (task, model), group in rows.groupby(["task", "model"], sort=False):
        row: dict[str, Any] = {"task": task, "model": model, "n_seeds": len(group)}
        for col in metric_cols:
            values = group[col].dropna().to_numpy(float)
            if len(values) == 0:
                continue
            row[col] = float(values.mean())
            row[f"{col}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row["epochs"] = float(group["epochs"].mean()) if "epochs" in group else np.nan
        out.append(row)
    return pd.DataFrame(out)


def flatten_accuracy(table: pd.DataFrame) -> dict[str, float]:
    """``<model>_<task>_<metric>`` (and ``..._std``) for every numeric cell of :func:`aggregate`'s table."""
    flat: dict[str, float] = {}
    for _, row in table.iterrows():
        for col, value in row.items():
            if col in ("task", "model", "n_seeds", "epochs") or value is None or pd.isna(value):
                continue
            flat[f"{row['model']}_{row['task']}_{col}"] = float(value)
    return flat


def flatten_cost(cost: pd.DataFrame) -> dict[str, float]:
    """Cost rows (model, size, device, params, macs, memory_traffic, peak_bytes, median_ms,
    throughput) to ``<model>_params``, ``<model>_macs_<size>``, ``<model>_traffic_mb_<size>``,
    ``<model>_peak_mb_<size>_<dev>``, ``<model>_latency_ms_<size>_<dev>``, ``<model>_throughput_<size>_<dev>``."""
    flat: dict[str, float] = {}
    for _, r in cost.iterrows():
        m, s, d = r["model"], int(r["size"]), r["device_kind"]
        flat[f"{m}_params"] = int(r["params"])
        flat[f"{m}_macs_{s}"] = int(r["macs"])
        flat[f"{m}_traffic_mb_{s}"] = float(r["memory_traffic"]) / 1e6
        flat[f"{m}_peak_mb_{s}_{d}"] = float(r["peak_bytes"]) / 1e6
        if not pd.isna(r["median_ms"]):
            flat[f"{m}_latency_ms_{s}_{d}"] = float(r["median_ms"])
            flat[f"{m}_throughput_{s}_{d}"] = float(r["throughput"])
    return flat


def _peak_bytes(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    """Peak memory: measured on CUDA (:func:`cellnb.profile.peak_memory`); on CPU the same
    estimate as ``peak_memory`` (weights + input + Σ leaf outputs), counted on the meta device."""
    from cellnb import profile

    if device.type == "cuda":
        return profile.peak_memory(model, shape, device="cuda")
    table = profile.memory_traffic(model, shape, device="meta", detail=True)
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return int(weights + int(np.prod(shape)) * 4 + table.output_bytes.sum())


def cost_table(models: Mapping[str, tuple[nn.Module, int, int]], sizes: Sequence[int], devices: Sequence[str],
               warmup: int, repeats: int, bench_sizes: Sequence[int] | None = None) -> pd.DataFrame:
    """Params, MACs, memory traffic (:func:`cellnb.profile.summary`), peak memory and latency /
    throughput (:func:`cellnb.profile.benchmark`, all models interleaved) per size and device, batch 1.

    Latency is measured only at ``bench_sizes`` (default: every size); other sizes get NaN there.
    """
    from cellnb import profile
    from cellnb.utils import device_name, select_device

    rows = []
    for size in sizes:
        shapes = {n: (1, c, size // div, size // div) for n, (_, c, div) in models.items()}
        nets = {n: m for n, (m, _, _) in models.items()}
        summ = profile.summary(nets, shapes)
        for dev_name in devices:
            dev = select_device(dev_name)
            timed = bench_sizes is None or size in bench_sizes
            if timed:
                bench = profile.benchmark(nets, shapes, device=dev_name, warmup=warmup, repeats=repeats).set_index("model")
            for n in nets:
                rows.append({"model": n, "size": size, "device_kind": dev.type, "device": device_name(dev),
                             "params": int(summ.loc[n, "params"]), "macs": int(summ.loc[n, "macs"]),
                             "memory_traffic": int(summ.loc[n, "memory_traffic"]),
                             "peak_bytes": _peak_bytes(nets[n], shapes[n], dev),
                             "median_ms": float(bench.loc[n, "median_ms"]) if timed else np.nan,
                             "throughput": float(bench.loc[n, "throughput"]) if timed else np.nan})
            for m in nets.values():
                m.to("cpu")
    return pd.DataFrame(rows)


def cost_display(cost: pd.DataFrame) -> pd.DataFrame:
    """Readable cost table: M params, GMACs, traffic and peak in MB, latency ms, images/s."""
    out = pd.DataFrame({
        "model": cost["model"], "size": cost["size"], "device": cost["device"],
        "params (M)": cost["params"] / 1e6, "GMACs": cost["macs"] / 1e9,
        "traffic (MB)": cost["memory_traffic"] / 1e6, "peak (MB)": cost["peak_bytes"] / 1e6,
        "latency (ms)": cost["median_ms"], "images/s": cost["throughput"],
    })
    return out


# ---------------------------------------------------------------------------------------- claims
def gather_claims(chapters: Iterable[str], directory: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every claim of every chapter's best available result (``full``, else ``quick``, else ``smoke``).

    Returns ``(claims, status)``: claims with columns ``chapter, profile, statement, paper,
    measured, verdict, note``; status one row per chapter (``chapter, profile, claims``, profile
    ``missing`` when the chapter has no results yet).
    """
    from cellnb.report import verdict
    from cellnb.results import best_available

    rows, status = [], []
    for chapter in chapters:
        record = best_available(chapter, directory)
        if record is None:
            status.append({"chapter": chapter, "profile": "missing", "claims": 0})
            continue
        status.append({"chapter": chapter, "profile": record["profile"], "claims": len(record["claims"])})
        for c in record["claims"]:
            rows.append({"chapter": chapter, "profile": record["profile"], "statement": c["statement"],
                         "paper": c["paper"], "measured": c["measured"], "verdict": verdict(c["holds"]),
                         "note": c["note"]})
    columns = ["chapter", "profile", "statement", "paper", "measured", "verdict", "note"]
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(status, columns=["chapter", "profile", "claims"])


def claim_counts(claims: pd.DataFrame) -> dict[str, int]:
    """``claims_total, claims_hold, claims_fail, claims_untestable`` from :func:`gather_claims`."""
    v = claims["verdict"].tolist() if len(claims) else []
    return {"claims_total": len(v), "claims_hold": v.count("holds"), "claims_fail": v.count("does not hold"),
            "claims_untestable": v.count("not testable here")}


def reproduction_cost(chapters: Iterable[str], directory: str | Path | None = None) -> pd.DataFrame:
    """Wall time of every notebook per profile: ``seconds`` inside the notebook (result JSON) and
    the runner's wall time (``results/timings/<profile>.json``, kernel start included)."""
    from cellnb.config import PROFILES
    from cellnb.utils import results_dir

    root = Path(directory or results_dir())
    rows = []
    for profile in PROFILES:
        timings_path = root / "timings" / f"{profile}.json"
        timings = json.loads(timings_path.read_text()).get("notebooks", {}) if timings_path.is_file() else {}
        for chapter in chapters:
            path = root / profile / f"{chapter}.json"
            record = json.loads(path.read_text()) if path.is_file() else None
            runner = timings.get(chapter)
            if record is None and runner is None:
                continue
            rows.append({"notebook": chapter, "profile": profile,
                         "device": record["device"] if record else runner.get("device", ""),
                         "notebook_s": record["seconds"] if record else np.nan,
                         "runner_s": runner["seconds"] if runner else np.nan})
    return pd.DataFrame(rows, columns=["notebook", "profile", "device", "notebook_s", "runner_s"])


def better(a: tuple[float, float], b: tuple[float, float], lower_is_better: bool) -> bool | None:
    """Verdict for "A beats B" from (mean, std) over seeds: True if A is better by more than the
    larger seed std, False if A is not better on average, None if better but within the spread."""
    (ma, sa), (mb, sb) = a, b
    diff = (mb - ma) if lower_is_better else (ma - mb)
    if diff <= 0:
        return False
    return True if diff > max(sa, sb) else None


def comparison_claims(flat: Mapping[str, float]) -> list[dict[str, Any]]:
    """This chapter's own cross-paper claims from the flattened metrics; a claim whose metrics are
    missing (e.g. no real data) is left out. Each: ``id, statement, paper, measured, holds, note``."""
    claims = []

    def pair(model: str, task: str, metric: str) -> tuple[float, float] | None:
        key = f"{model}_{task}_{metric}"
        return (flat[key], flat.get(key + "_std", 0.0)) if key in flat else None

    specs = [
        ("ssrnet", "count_gen", "mae", True, "SSRNet counts better (lower MAE) than the U-Net baseline on the same generated data", "SSRNet"),
        ("elmgan", "count_gen", "mae", True, "ELMGAN's generator counts better than the U-Net baseline on the same generated data", "ELMGAN"),
        ("ssrnet", "count_vgg", "mae", True, "SSRNet counts better than the U-Net baseline on the real VGG cells", "SSRNet"),
        ("mc_unet", "nuclei", "aji", False, "MC-Unet separates touching nuclei better (AJI) than the U-Net baseline", "MC-Unet"),
        ("u_se_resnet", "nuclei", "aji", False, "U-SE-ResNet separates touching nuclei better (AJI) than the U-Net baseline", "U-SE-ResNet"),
        ("tiny_unet", "blood", "dice", False, "TinyU-Net segments blood smears better (Dice) than the U-Net baseline", "lowres_bloodcell / TinyU-Net"),
    ]
    for model, task, metric, lower, statement, paper in specs:
        a, b = pair(model, task, metric), pair("unet", task, metric)
        if a is None or b is None:
            continue
        claims.append({"id": f"{model}_vs_unet_{task}_{metric}", "statement": statement, "paper": f"{paper} (cross-paper)",
                       "measured": round(a[0], 4), "holds": better(a, b, lower),
                       "note": f"{metric}: {model} {a[0]:.3f} ± {a[1]:.3f} vs U-Net {b[0]:.3f} ± {b[1]:.3f} (mean ± std over seeds)"})
    if "tiny_unet_macs_256" in flat and "unet_macs_256" in flat:
        ratio = flat["tiny_unet_macs_256"] / flat["unet_macs_256"]
        claims.append({"id": "tiny_unet_macs_vs_unet", "statement": "TinyU-Net needs under 5% of the classic U-Net's MACs at 256²",
                       "paper": "TinyU-Net (cross-paper)", "measured": round(ratio, 4), "holds": ratio < 0.05,
                       "note": "full-width paper configurations, MAC ratio at 256²"})
    if "ssrnet_macs_256" in flat and "unet_macs_256" in flat:
        ratio = flat["ssrnet_macs_256"] / flat["unet_macs_256"]
        claims.append({"id": "ssrnet_macs_vs_unet", "statement": "SSRNet needs fewer MACs than the classic U-Net at 256²",
                       "paper": "SSRNet (cross-paper)", "measured": round(ratio, 4), "holds": ratio < 1.0,
                       "note": "full-width paper configurations, MAC ratio at 256²"})
    return claims


def pareto_frame(accuracy: pd.DataFrame, slim_cost: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    """One row per model: accuracy ``metric`` on ``task`` with the trained (slim) model's MACs and latency."""
    acc = accuracy[accuracy["task"] == task].set_index("model")[metric]
    cost = slim_cost.set_index("model")
    models = [m for m in acc.index if m in cost.index]
    return pd.DataFrame({"model": models, metric: [float(acc[m]) for m in models],
                         "MACs": [float(cost.loc[m, "macs"]) for m in models],
                         "latency_ms": [float(cost.loc[m, "median_ms"]) for m in models]})
