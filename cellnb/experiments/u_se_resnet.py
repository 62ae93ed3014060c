"""U-SE-ResNet chapter pipeline (CTC 2021, MU-Ra-US): data, training, CTC evaluation, ablations.

Spec ``shared/papers/usere_resnet.md``; seed text = the repo README. The chapter trains the
network on generated CTC-layout time-lapses (``cellnb.data.ctc_timelapse``), segments a
held-out sequence with mask + marker → watershed (:mod:`cellnb.postprocess`), writes it in CTC
result format and scores it with py-ctcmetrics (SEG, DET, OP_CSB), plus pixel Dice/IoU and
instance F1/AP50. Ablations: no markers (connected components of the mask), no edge weight
(p = 0), marker erosion size.

Deviations (also in ``book/deviations/u_se_resnet.md``): trained from scratch; short CPU runs with
the power schedule rescaled to the run length, lr 1e-3 for the short profiles; slim widths; synthetic
data instead of CTC sets; own training loop (the loss needs the epoch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from cellnb import postprocess
from cellnb.losses.u_se_resnet import USEResNetLoss, canny_edge_weight
from cellnb.models import create_model, outputs

NAME = "u_se_resnet"
DATASET = "SYN-U-SE"

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(size=64, n_train_sequences=1, n_frames=4, n_test_frames=3, n_cells=6, p_div=0.03,
                  width=0.0625, blocks=[1, 1, 1, 1], epochs=2, batch_size=4, crop=64, lr=1e-3,
                  erosion=2, ablation_erosions=[], n_seeds=1, min_size=8, max_angle=90,
                  noise_max=0.2, ablate_edge_weight=True),
    "quick": dict(size=128, n_train_sequences=2, n_frames=12, n_test_frames=10, n_cells=10, p_div=0.03,
                  width=0.125, blocks=[1, 1, 1, 1], epochs=30, batch_size=4, crop=96, lr=3e-3,
                  erosion=2, ablation_erosions=[1, 5], n_seeds=2, min_size=15, max_angle=90,
                  noise_max=0.2, ablate_edge_weight=True),
    "full": dict(size=256, n_train_sequences=4, n_frames=30, n_test_frames=20, n_cells=12, p_div=0.03,
                 width=1.0, blocks=[3, 4, 6, 3], epochs=120, batch_size=4, crop=224, lr=1e-4,
                 erosion=2, ablation_erosions=[1, 5], n_seeds=3, min_size=20, max_angle=90,
                 noise_max=0.2, ablate_edge_weight=True),
}


# --------------------------------------------------------------------------------------------
# pre-processing and samples


def normalize_percentile(image: np.ndarray, clip: float = 1.0) -> np.ndarray:
    """16-bit → float32, clip to the [clip, 100 − clip] percentiles, min-max to [0, 1].

    Released ``data.py::normalize`` (1 % tails from a bin-width-1 histogram, then min-max);
    equivalent to percentile clipping to within one grey level (spec §3).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    if not 0 <= clip < 50:
        raise ValueError(f"clip must be a percentage in [0, 50), got {clip}")
    arr = image.astype(np.float32)
    lo, hi = np.percentile(arr, [clip, 100.0 - clip])
    arr = np.clip(arr, lo, hi)
    span = arr.max() - arr.min()
    return ((arr - arr.min()) / span).astype(np.float32) if span > 0 else np.zeros_like(arr)


def make_sample(frame: np.ndarray, labels: np.ndarray, erosion: int) -> dict[str, np.ndarray]:
    """Image (1,H,W), mask and marker (1,H,W) float32 in {0,1}, edge weight (1,H,W), labels (H,W)."""
    from cellnb import targets

    labels = np.asarray(labels).astype(np.int32)
    return {
        "image": normalize_percentile(frame)[None],
        "mask": (labels > 0).astype(np.float32)[None],
        "marker": (targets.markers(labels, erosion=erosion) > 0).astype(np.float32)[None],
        "weight": canny_edge_weight(labels)[None],
        "labels": labels,
    }


def augment(sample: Mapping[str, np.ndarray], rng: np.random.Generator, crop: int,
            max_angle: int = 90, noise_max: float = 0.2) -> dict[str, torch.Tensor]:
    """Released training augmentation (``data.py``), with ``torchvision.transforms.v2.functional``.

    h/v flips (p 0.5 each); rotation by a random integer angle in [0, max_angle] (nearest; the
    weight map is filled with 0.2 outside the image, the rest with 0); random ``crop``×``crop``;
    with p 0.5, additive |N(0, σ)| noise, σ ~ U[0, noise_max).
    """
    stack = torch.from_numpy(np.concatenate([sample["image"], sample["mask"], sample["marker"], sample["weight"]]))
    h, w = stack.shape[-2:]
    if crop > min(h, w):
        raise ValueError(f"crop {crop} is larger than the image {h}x{w}")
    if rng.random() > 0.5:
        stack = TF.horizontal_flip(stack)
    if rng.random() > 0.5:
        stack = TF.vertical_flip(stack)
    angle = int(rng.integers(0, max_angle + 1))
    if angle:
        stack = TF.rotate(stack, angle, interpolation=InterpolationMode.NEAREST, fill=[0.0, 0.0, 0.0, 0.2])
    top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    stack = TF.crop(stack, top, left, crop, crop)
    image = stack[:1]
    if rng.random() > 0.5:
        sigma = float(rng.random() * noise_max)
        image = image + torch.from_numpy(np.abs(rng.normal(0.0, sigma, image.shape)).astype(np.float32))
    return {"image": image.contiguous(), "mask": stack[1:2].contiguous(), "marker": stack[2:3].contiguous(),
            "weight": stack[3:4].contiguous()}


# --------------------------------------------------------------------------------------------
# data


def _timelapse(seed: int, n_frames: int, size: int, n_cells: int, p_div: float) -> dict[str, Any]:
    from cellnb import data

    return data.ctc_timelapse(seed, n_frames=n_frames, size=size, n_cells=n_cells, p_div=p_div)


def build_data(cfg: Mapping[str, Any], seed: int, cache_dir: str | Path) -> dict[str, Any]:
    """Training sequences (seeds ``seed*100 + k``) and one held-out test sequence written in CTC layout.

    Returns ``train_raw`` (list of (frame, labels)), ``test`` (frames, labels, tracks),
    ``gt_dir`` (``<cache>/<DATASET>/01_GT``), ``root``.
    """
    from cellnb import data

    train_raw = []
    for k in range(cfg["n_train_sequences"]):
        seq = _timelapse(seed * 100 + k + 1, cfg["n_frames"], cfg["size"], cfg["n_cells"], cfg["p_div"])
        train_raw.extend(zip(seq["frames"], seq["labels"]))
    test = _timelapse(seed * 100 + 99, cfg["n_test_frames"], cfg["size"], cfg["n_cells"], cfg["p_div"])
    root = Path(cache_dir)
    seq_dir = data.write_ctc(root, DATASET, test["frames"], test["labels"], test["tracks"], sequence="01",
                             seg_frames=list(range(len(test["frames"]))))
    gt_dir = root / DATASET / "01_GT"
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"write_ctc did not create {gt_dir} (returned {seq_dir})")
    return {"train_raw": train_raw, "test": test, "gt_dir": gt_dir, "root": root}


# --------------------------------------------------------------------------------------------
# training


@dataclass
class Variant:
    """One trained configuration of the ablation grid."""

    name: str
    edge_weight: bool = True
    erosion: int = 2
    seed: int = 0


def train_variant(variant: Variant, cfg: Mapping[str, Any], train_raw: list, device: torch.device,
                  progress: bool = False) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train one U-SE-ResNet; Adam, lr halved every quarter of the run (paper: every 30 of 120 epochs).

    Own loop rather than ``cellnb.train.fit``: the released loss needs the epoch (p = (e/50)^5).
    """
    from cellnb.utils import seed_everything

    seed_everything(variant.seed)
    rng = np.random.default_rng(variant.seed)
    samples = [make_sample(f, l, variant.erosion) for f, l in train_raw]
    model = create_model(NAME, width=cfg["width"], blocks=tuple(cfg["blocks"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    step = max(1, cfg["epochs"] // 4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step, gamma=0.5)
    loss_fn = USEResNetLoss(cfg["epochs"], edge_weight=variant.edge_weight)
    history = []
    bs = cfg["batch_size"]
    for epoch in range(cfg["epochs"]):
        power = loss_fn.set_epoch(epoch)
        model.train()
        order = rng.permutation(len(samples))
        total, n = 0.0, 0
        t0 = time.perf_counter()
        for start in range(0, len(order), bs):
            items = [augment(samples[i], rng, cfg["crop"], cfg["max_angle"], cfg["noise_max"])
                     for i in order[start:start + bs]]
            batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
            out = model(batch["image"])
            loss, _ = loss_fn(out, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{variant.name}: non-finite loss at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(items)
            n += len(items)
        sched.step()
        history.append({"variant": variant.name, "seed": variant.seed, "epoch": epoch, "power": power,
                        "loss": total / max(n, 1), "seconds": time.perf_counter() - t0})
        if progress:
            print(f"{variant.name} s{variant.seed} epoch {epoch} p={power:.3g} loss={total / max(n, 1):.4f} "
                  f"({history[-1]['seconds']:.1f} s)")
    # BatchNorm statistics re-estimated with the final weights over one augmented pass, as cellnb.train.fit does
    from cellnb.train import recalibrate_batchnorm

    passes = [augment(s, rng, cfg["crop"], cfg["max_angle"], cfg["noise_max"]) for s in samples]
    recalibrate_batchnorm(model, (torch.stack([it["image"] for it in passes[i:i + bs]])
                                  for i in range(0, len(passes), bs)), device)
    return model, history


@torch.no_grad()
def predict(model: torch.nn.Module, frames: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Mask and marker probabilities (T, H, W) for raw uint16 frames (normalised, padded to ×32)."""
    model.eval()
    masks, marks = [], []
    for frame in frames:
        img = normalize_percentile(frame)
        h, w = img.shape
        ph, pw = (-h) % 32, (-w) % 32
        x = torch.from_numpy(np.pad(img, ((0, ph), (0, pw)), mode="reflect"))[None, None].to(device)
        out = model(x)
        masks.append(torch.sigmoid(out[outputs.MASK_LOGITS])[0, 0, :h, :w].cpu().numpy())
        marks.append(torch.sigmoid(out[outputs.MARKER_LOGITS])[0, 0, :h, :w].cpu().numpy())
    return np.stack(masks), np.stack(marks)


def segment(mask_prob: np.ndarray, marker_prob: np.ndarray, min_size: int, use_markers: bool = True) -> np.ndarray:
    """Instances (T, H, W) int32 per frame: markers → watershed, or plain connected components."""
    if use_markers:
        return np.stack([postprocess.markers_watershed(m, k, min_size=min_size) for m, k in zip(mask_prob, marker_prob)])
    return np.stack([postprocess.connected_components(m, min_size=min_size) for m in mask_prob])


# --------------------------------------------------------------------------------------------
# CTC result writing and evaluation


def write_result(res_dir: str | Path, instances: np.ndarray) -> Path:
    """Write ``maskTTT.tif`` (uint16) and ``res_track.txt`` for a segmentation-only result.

    Every object of every frame is its own one-frame track (``L t t 0``), which is valid CTC
    and enough for SEG and DET (DET ignores links). Written by ``write_ctc_result``
    (``cellnb.metrics`` if it has one, else ``cellnb.data``).
    """
    res_dir = Path(res_dir)
    relabelled, tracks, next_id = [], [], 1
    for t, lab in enumerate(instances):
        out = np.zeros(lab.shape, np.uint16)
        for obj in np.unique(lab[lab > 0]):
            out[lab == obj] = next_id
            tracks.append((next_id, t, t, 0))
            next_id += 1
        relabelled.append(out)
    try:
        from cellnb.metrics import write_ctc_result  # type: ignore[attr-defined]
    except ImportError:
        from cellnb.data import write_ctc_result
    return Path(write_ctc_result(res_dir, np.stack(relabelled), tracks))


def ctc_scores(gt_dir: str | Path, res_dir: str | Path) -> dict[str, float]:
    """SEG, DET, OP_CSB by py-ctcmetrics (through ``cellnb.metrics.ctc_evaluate`` when present)."""
    try:
        from cellnb.metrics import ctc_evaluate  # type: ignore[attr-defined]
        scores = ctc_evaluate(str(gt_dir), str(res_dir))
    except ImportError:
        from ctc_metrics.scripts.evaluate import evaluate_sequence

        scores = evaluate_sequence(str(res_dir), str(gt_dir), metrics=["SEG", "DET"])
    seg, det = float(scores["SEG"]), float(scores["DET"])
    return {"ctc_seg": seg, "ctc_det": det, "op_csb": float(scores.get("OP_CSB") or 0.5 * (seg + det))}


def _match_iou(true_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """IoU matrix (n_true, n_pred) for labels relabelled 1..n."""
    t = true_labels.ravel().astype(np.int64)
    p = pred_labels.ravel().astype(np.int64)
    nt, npred = int(t.max(initial=0)), int(p.max(initial=0))
    inter = np.zeros((nt + 1, npred + 1), np.int64)
    np.add.at(inter, (t, p), 1)
    area_t = inter.sum(1, keepdims=True)
    area_p = inter.sum(0, keepdims=True)
    union = area_t + area_p - inter
    iou = np.divide(inter, union, out=np.zeros(inter.shape, float), where=union > 0)
    return iou[1:, 1:]


def instance_scores(true_frames: np.ndarray, pred_frames: np.ndarray) -> dict[str, float]:
    """Pooled over frames: pixel Dice/IoU, instance F1 and AP at IoU 0.5 (one-to-one matching).

    Uses ``cellnb.metrics`` (``dice``, ``iou``, ``match_instances``, ``average_precision``) when
    present; otherwise the IoU > 0.5 matching (unique by construction) is computed here.
    """
    from skimage.segmentation import relabel_sequential

    tp = fp = fn = 0
    inter = total = union = 0
    for true, pred in zip(true_frames, pred_frames):
        true = relabel_sequential(true.astype(np.int64))[0]
        pred = relabel_sequential(pred.astype(np.int64))[0]
        iou = _match_iou(true, pred)
        matched = int((iou > 0.5).sum())  # IoU > 0.5 is one-to-one
        tp += matched
        fn += int(true.max()) - matched
        fp += int(pred.max()) - matched
        a, b = true > 0, pred > 0
        inter += int((a & b).sum())
        total += int(a.sum() + b.sum())
        union += int((a | b).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    ap50 = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    dice = 2 * inter / total if total else 1.0
    return {"dice": dice, "iou": inter / union if union else 1.0, "instance_f1": f1, "ap50": ap50,
            "tp": tp, "fp": fp, "fn": fn}


def boundary_f1(true_frames: np.ndarray, pred_frames: np.ndarray, tolerance: float = 1.5) -> float:
    """Outline accuracy: F1 of instance-boundary pixels matched within ``tolerance`` px (pooled).

    Boundaries from ``skimage.segmentation.find_boundaries(mode="inner")``, so interfaces between
    touching cells count; a boundary pixel is correct if the other map has one within ``tolerance``.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    hit_p = n_p = hit_t = n_t = 0
    for true, pred in zip(true_frames, pred_frames):
        bt = find_boundaries(true, mode="inner")
        bp = find_boundaries(pred, mode="inner")
        dt = ndimage.distance_transform_edt(~bt) if bt.any() else np.full(bt.shape, np.inf)
        dp = ndimage.distance_transform_edt(~bp) if bp.any() else np.full(bp.shape, np.inf)
        hit_p += int((dt[bp] <= tolerance).sum())
        n_p += int(bp.sum())
        hit_t += int((dp[bt] <= tolerance).sum())
        n_t += int(bt.sum())
    prec = hit_p / n_p if n_p else 1.0
    rec = hit_t / n_t if n_t else 1.0
    return 2 * prec * rec / (prec + rec) if prec + rec else 0.0


def evaluate(instances: np.ndarray, test: Mapping[str, Any], gt_dir: Path, res_dir: Path) -> dict[str, float]:
    """All measures for one segmented test sequence (CTC result written to ``res_dir``)."""
    write_result(res_dir, instances)
    scores = ctc_scores(gt_dir, res_dir)
    scores.update(instance_scores(test["labels"], instances))
    scores["boundary_f1"] = boundary_f1(test["labels"], instances)
    return scores


# --------------------------------------------------------------------------------------------
# the whole experiment


def variants_for(cfg: Mapping[str, Any], seed: int) -> list[Variant]:
    """Baseline and no-edge-weight for every seed; each ablation erosion for the first seed."""
    seeds = [seed + i for i in range(cfg["n_seeds"])]
    out = [Variant("baseline", True, cfg["erosion"], s) for s in seeds]
    if cfg["ablate_edge_weight"]:
        out += [Variant("no_edge_weight", False, cfg["erosion"], s) for s in seeds]
    out += [Variant(f"erosion_{e}", True, e, seeds[0]) for e in cfg["ablation_erosions"]]
    return out


@dataclass
class ExperimentResult:
    scores: "Any"  # pandas DataFrame: one row per (variant, seed, postprocessing)
    history: "Any"  # pandas DataFrame of training epochs
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # baseline seed-0 maps and instances
    params: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run_experiment(cfg: Mapping[str, Any], seed: int, device: torch.device, cache_dir: str | Path,
                   progress: bool = False) -> tuple[ExperimentResult, dict[str, Any]]:
    """Train every variant, segment the held-out sequence, score; returns results and the data."""
    import pandas as pd

    t0 = time.perf_counter()
    data_ = build_data(cfg, seed, cache_dir)
    test, gt_dir = data_["test"], data_["gt_dir"]
    rows, history = [], []
    result = ExperimentResult(None, None)
    for variant in variants_for(cfg, seed):
        model, hist = train_variant(variant, cfg, data_["train_raw"], device, progress)
        history += hist
        mask_prob, marker_prob = predict(model, test["frames"], device)
        posts = [("markers", True)] + ([("no_markers", False)] if variant.name == "baseline" else [])
        for post, use_markers in posts:
            inst = segment(mask_prob, marker_prob, cfg["min_size"], use_markers)
            res_dir = Path(cache_dir) / DATASET / f"01_RES_{variant.name}_s{variant.seed}_{post}"
            scores = evaluate(inst, test, gt_dir, res_dir)
            rows.append({"variant": variant.name, "seed": variant.seed, "erosion": variant.erosion,
                         "edge_weight": variant.edge_weight, "postprocess": post, **scores})
            if variant.name == "baseline" and variant.seed == seed:
                result.predictions[post] = inst
        if variant.name == "baseline" and variant.seed == seed:
            result.predictions.update(mask_prob=mask_prob, marker_prob=marker_prob)
            # the canonical CTC result folder of the chapter
            write_result(Path(cache_dir) / DATASET / "01_RES", result.predictions["markers"])
            result.params["params_trained"] = sum(p.numel() for p in model.parameters())
    result.scores = pd.DataFrame(rows)
    result.history = pd.DataFrame(history)
    result.params["params"] = sum(p.numel() for p in create_model(NAME).parameters())
    result.seconds = time.perf_counter() - t0
    return result, data_


def mean_sd(df, variant: str, metric: str, post: str = "markers") -> tuple[float, float, int]:
    """Mean, sample SD (0 for one seed) and count of a metric over seeds."""
    vals = df[(df.variant == variant) & (df.postprocess == post)][metric].to_numpy(float)
    sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return float(vals.mean()), sd, len(vals)


def paired_delta(df, metric: str, a: tuple[str, str], b: tuple[str, str]) -> tuple[float, float, list[float]]:
    """Per-seed differences a − b of ``metric`` ((variant, postprocess) pairs); mean and spread (max |d − mean|... SD)."""
    da = df[(df.variant == a[0]) & (df.postprocess == a[1])].set_index("seed")[metric]
    db = df[(df.variant == b[0]) & (df.postprocess == b[1])].set_index("seed")[metric]
    common = sorted(set(da.index) & set(db.index))
    diffs = [float(da[s] - db[s]) for s in common]
    if not diffs:
        return math.nan, math.nan, []
    sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
    return float(np.mean(diffs)), sd, diffs


def verdict(delta: float, seed_spread: float, n_seeds: int) -> bool | None:
    """True/False only when |delta| exceeds the seed spread (and there are ≥ 2 seeds); else None."""
    if n_seeds < 2 or not math.isfinite(delta) or abs(delta) <= seed_spread:
        return None
    return delta > 0


def worst_cells(true_frames: np.ndarray, pred_frames: np.ndarray, k: int = 8) -> list[dict[str, Any]]:
    """The ``k`` reference cells with the lowest best-IoU against the prediction (frame, id, IoU, bbox)."""
    from scipy import ndimage

    cells = []
    for t, (true, pred) in enumerate(zip(true_frames, pred_frames)):
        for lab, sl in enumerate(ndimage.find_objects(true.astype(np.int64)), start=1):
            if sl is None:
                continue
            obj = true == lab
            ids, counts = np.unique(pred[obj], return_counts=True)
            best = 0.0
            for i in ids[ids > 0]:
                p = pred == i
                best = max(best, float((obj & p).sum() / (obj | p).sum()))
            cells.append({"frame": t, "id": lab, "iou": best, "bbox": sl, "area": int(obj.sum())})
    return sorted(cells, key=lambda c: c["iou"])[:k]
