"""Low-resolution blood-cell segmentation: MobileSR ×4 → TinyU-Net (chapter ``lowres_bloodcell``).

Reproduces the pipeline of ``HanYingLee/Low-Resolution-Blood-Cell-Segmentation`` ("v1", the
64 → 256 version whose README gives PSNR ≈ 25 dB and Dice 0.9228 / IoU 0.8572) on generated blood
smears (``cellnb.data.blood_smear`` + ``cellnb.data.lowres_pair``), see
``shared/papers/lowres_bloodcell.md``:

1. :func:`train_sr` trains MobileSR with L1 on aligned random LR/HR patches;
   :func:`evaluate_sr` scores SR, bicubic and nearest upscaling with PSNR / SSIM (data_range 1);
2. :func:`write_image_cache` writes the SR-enhanced train/val/test images as PNG (as the repo does)
   and :func:`read_image_cache` reads them back for stage 2;
3. :func:`train_seg` trains TinyU-Net with CE + Dice; :func:`evaluate_segmentation` gives pixel
   precision / recall / Dice / IoU and per-cell Dice (``cellnb.metrics``), averaged per image;
4. :func:`run_pipeline` runs the ablation (TinyU-Net on bicubic, SR and true-HR inputs, over
   ``n_seeds`` seeds) and the end-to-end variant (:class:`SRSegPipeline`, SR and segmentation
   trained jointly with :func:`cellnb.losses.lowres_bloodcell.joint_loss`).

Deviations (also in ``book/deviations/lowres_bloodcell.md``): the corrected variant of spec §6.8
(consistent [0, 1] ranges, aligned augmentation, clamped SR, softmax/argmax prediction, explicit
data_range); generated data instead of BBBC041-Seg; patch training with a step budget and a
higher learning rate than the repo's 1e-4 so that the ``quick`` profile fits in minutes on CPU.
"""

from __future__ import annotations

from itertools import islice

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cellnb.losses.lowres_bloodcell import joint_loss, make_seg_loss, make_sr_loss
from cellnb.models import create_model, outputs

NAME = "lowres_bloodcell"
SCALE = 4
INPUT_KINDS = ("bicubic", "sr", "hr")

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        n_train=2, n_val=1, n_test=1, smear_size=256, hr_size=256, lr_size=64,
        sr_steps=3, sr_batch=2, sr_patch=16, sr_lr=1e-3,
        seg_steps=3, seg_batch=2, seg_crop=64, seg_lr=3e-3, seg_widths=[16, 32, 64, 128], seg_loss="ce_dice",
        n_seeds=1, e2e_steps=2, e2e_sr_weight=1.0, eval_batch=2,
    ),
    "quick": dict(
        n_train=16, n_val=4, n_test=8, smear_size=512, hr_size=256, lr_size=64,
        sr_steps=200, sr_batch=8, sr_patch=16, sr_lr=1e-3,
        seg_steps=80, seg_batch=8, seg_crop=96, seg_lr=3e-3, seg_widths=[16, 32, 64, 128], seg_loss="ce_dice",
        n_seeds=2, e2e_steps=40, e2e_sr_weight=1.0, eval_batch=4,
    ),
    "full": dict(
        n_train=80, n_val=10, n_test=10, smear_size=1200, hr_size=256, lr_size=64,
        sr_steps=6000, sr_batch=8, sr_patch=64, sr_lr=2e-4,
        seg_steps=6000, seg_batch=8, seg_crop=256, seg_lr=1e-3, seg_widths=[64, 128, 256, 512], seg_loss="ce_dice",
        n_seeds=3, e2e_steps=3000, e2e_sr_weight=1.0, eval_batch=10,
    ),
}


# --------------------------------------------------------------------------- data
def split_seeds(seed: int, n: int, split: str) -> list[int]:
    """Generator seeds of one split; train/val/test never share a seed (offsets 0 / 10⁵ / 2·10⁵)."""
    offsets = {"train": 0, "val": 100_000, "test": 200_000}
    if split not in offsets:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(offsets)}")
    if n < 1:
        raise ValueError(f"split {split!r} needs at least one image, got n={n}")
    return [seed * 1_000_000 + offsets[split] + i for i in range(n)]


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Instance labels resized to ``size``² with ``nearest-exact`` (the same rule ``lowres_pair``
    applies to the mask, so ``labels > 0`` equals the resized mask)."""
    if labels.ndim != 2:
        raise ValueError(f"resize_labels: expected (H, W) labels, got shape {labels.shape}")
    t = torch.from_numpy(labels.astype(np.int64))[None, None].double()
    return F.interpolate(t, size=(size, size), mode="nearest-exact")[0, 0].numpy().astype(np.int32)


def make_split(seeds: Sequence[int], smear_size: int = 1200, hr_size: int = 256, lr_size: int = 64) -> dict[str, np.ndarray]:
    """Generate smears and their LR/HR pairs; returns stacked arrays.

    Keys: ``lr`` (N, 3, lr, lr), ``hr`` and ``bicubic`` (N, 3, hr, hr) float32 in [0, 1],
    ``mask`` (N, hr, hr) int64 {0, 1}, ``labels`` (N, hr, hr) int32 instance ids (nearest-resized
    generator labels, for per-cell Dice).
    """
    from cellnb import data

    items: dict[str, list[np.ndarray]] = {k: [] for k in ("lr", "hr", "bicubic", "mask", "labels")}
    for s in seeds:
        smear = data.blood_smear(int(s), size=smear_size)
        pair = data.lowres_pair(smear["image"], smear["mask"], hr_size=hr_size, lr_size=lr_size)
        for key in ("lr", "hr", "bicubic", "mask"):
            items[key].append(np.asarray(pair[key]))
        items["labels"].append(resize_labels(np.asarray(smear["labels"]), hr_size))
    out = {k: np.stack(v) for k, v in items.items()}
    out["mask"] = out["mask"].astype(np.int64)
    return out


def make_dataset(cfg: Mapping[str, Any], seed: int) -> dict[str, dict[str, np.ndarray]]:
    """``{"train", "val", "test"}`` splits of :func:`make_split` with the profile's sizes."""
    return {
        split: make_split(split_seeds(seed, int(cfg[f"n_{split}"]), split), cfg["smear_size"], cfg["hr_size"], cfg["lr_size"])
        for split in ("train", "val", "test")
    }


class PairedPatches(Dataset):
    """Random aligned crops (+ flips / 90° rotations, the same for every key) of stacked arrays.

    ``arrays`` maps a batch key to an array ``(N, ..., H_k, W_k)`` whose spatial size is
    ``hr_size / factor_k``; ``crop`` is given in HR pixels, so an LR array (factor 4) is cut at
    ``crop / 4``. ``length`` = samples per epoch (patches are drawn at random, seeded per index).
    The repo's misaligned rotation copies (spec §3) are not reproduced: every key gets the same
    transform.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], factors: Mapping[str, int], crop: int, length: int,
                 seed: int = 0, augment: bool = True) -> None:
        if set(arrays) != set(factors):
            raise ValueError(f"PairedPatches: keys {sorted(arrays)} and factors {sorted(factors)} differ")
        sizes = {k: a.shape[-1] * factors[k] for k, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"PairedPatches: arrays imply different HR sizes {sizes}")
        self.hr_size = next(iter(sizes.values()))
        max_factor = max(factors.values())
        if crop % max_factor or not 0 < crop <= self.hr_size:
            raise ValueError(f"PairedPatches: crop {crop} must be a multiple of {max_factor} in (0, {self.hr_size}]")
        self.arrays, self.factors, self.crop = dict(arrays), dict(factors), crop
        self.n = len(next(iter(arrays.values())))
        self.length, self.seed, self.augment = int(length), int(seed), augment
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        i = int(rng.integers(self.n))
        step = max(self.factors.values())
        top = int(rng.integers(0, (self.hr_size - self.crop) // step + 1)) * step
        left = int(rng.integers(0, (self.hr_size - self.crop) // step + 1)) * step
        flip_h, flip_v, rot = (bool(rng.integers(2)), bool(rng.integers(2)), int(rng.integers(4))) if self.augment else (False, False, 0)
        out = {}
        for key, arr in self.arrays.items():
            f = self.factors[key]
            patch = arr[i, ..., top // f:(top + self.crop) // f, left // f:(left + self.crop) // f]
            if flip_h:
                patch = patch[..., :, ::-1]
            if flip_v:
                patch = patch[..., ::-1, :]
            patch = np.rot90(patch, rot, axes=(-2, -1))
            out[key] = torch.from_numpy(np.ascontiguousarray(patch))
        return out


# --------------------------------------------------------------------------- training
def _fit(model: nn.Module, dataset: "PairedPatches", loss_fn, *, steps: int, batch: int, lr: float, device,
         seed: int, progress: bool, scheduler: str | None = None, max_epochs: int = 20) -> "Any":
    """Train for ``steps`` optimiser steps with :func:`cellnb.train.fit`, split into up to
    ``max_epochs`` logging epochs (fresh random patches every epoch)."""
    from cellnb import train

    epochs = max(1, min(int(max_epochs), int(steps)))
    dataset.length = max(1, int(steps) // epochs) * int(batch)
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))

    def next_epoch(epoch: int, _model: nn.Module) -> None:
        dataset.epoch = epoch

    # update_bn=False: the stages re-estimate BatchNorm over fixed patch batches themselves (recalibrate_batchnorm)
    return train.fit(model, loader, loss_fn, epochs=epochs, lr=lr, device=device, amp=False, progress=progress,
                     scheduler=scheduler, epoch_callback=next_epoch, update_bn=False)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset, batch: int, n_batches: int = 16, device=None) -> int:
    """Re-estimate BatchNorm running statistics with the final weights over ``n_batches`` training
    batches (:func:`cellnb.train.recalibrate_batchnorm`); returns the number of BN layers.

    With a few hundred steps and TinyU-Net's BN momentum of 0.03 the running statistics still mix
    in early-training weights, and eval-mode predictions can collapse; the paper's 300-epoch schedule
    does not have this problem.
    """
    norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    dev = next(model.parameters()).device if device is None else device
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0, drop_last=True)
    from cellnb import train

    train.recalibrate_batchnorm(model, (item["image"].float() for item in islice(loader, n_batches)), dev)
    return norms


def train_sr(train_split: Mapping[str, np.ndarray], cfg: Mapping[str, Any], device="cpu", seed: int = 0,
             progress: bool = False) -> tuple[nn.Module, Any]:
    """Stage 1: MobileSR (official config) with L1 on random LR/HR patches (Adam, constant lr)."""
    torch.manual_seed(seed)
    model = create_model("mobilesr")
    patches = PairedPatches({"image": train_split["lr"], "hr": train_split["hr"]}, {"image": SCALE, "hr": 1},
                            crop=int(cfg["sr_patch"]) * SCALE, length=int(cfg["sr_steps"]) * int(cfg["sr_batch"]), seed=seed)
    history = _fit(model, patches, make_sr_loss(), steps=int(cfg["sr_steps"]), batch=int(cfg["sr_batch"]),
                   lr=float(cfg["sr_lr"]), device=device, seed=seed, progress=progress)
    return model, history


@torch.no_grad()
def predict_batches(model: nn.Module, images: np.ndarray, key: str, batch: int = 8, device="cpu") -> np.ndarray:
    """Run ``model`` in eval mode over ``images`` (N, C, H, W) and stack ``outputs[key]`` as numpy."""
    model.eval()
    from cellnb.utils import select_device

    dev = next(model.parameters()).device if device is None else select_device(str(device))
    model.to(dev)
    parts = [model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float().to(dev))[key].cpu()
             for i in range(0, len(images), batch)]
    return torch.cat(parts).numpy()


def super_resolve(model: nn.Module, lr_images: np.ndarray, batch: int = 8, device="cpu") -> np.ndarray:
    """SR images (N, 3, 4h, 4w) clamped to [0, 1] (the repo converted without clamping, spec §3)."""
    return np.clip(predict_batches(model, lr_images, outputs.SR_IMAGE, batch, device), 0.0, 1.0).astype(np.float32)


def nearest_upscale(lr_images: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Nearest-neighbour ×scale upscaling baseline (pixel replication)."""
    return lr_images.repeat(scale, axis=-2).repeat(scale, axis=-1)


def write_image_cache(images: np.ndarray, folder: str | Path) -> list[Path]:
    """Write (N, 3, H, W) images in [0, 1] as 8-bit PNGs ``000.png, 001.png, …`` (as the repo saves SR output)."""
    from skimage.io import imsave

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"write_image_cache: expected (N, 3, H, W) images, got {images.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:03d}.png"
        imsave(path, np.round(np.clip(img, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8), check_contrast=False)
        paths.append(path)
    return paths


def read_image_cache(folder: str | Path) -> np.ndarray:
    """Read the PNGs written by :func:`write_image_cache` back to (N, 3, H, W) float32 in [0, 1]."""
    from skimage.io import imread

    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no cached PNG images in {str(folder)!r}")
    return np.stack([imread(p).transpose(2, 0, 1) for p in paths]).astype(np.float32) / 255.0


def build_tiny_unet(cfg: Mapping[str, Any]) -> nn.Module:
    """TinyU-Net with the profile's widths (paper widths (64, 128, 256, 512) in ``full``)."""
    return create_model("tiny_unet", in_channels=3, num_classes=2, widths=tuple(cfg["seg_widths"]))


def train_seg(inputs: np.ndarray, masks: np.ndarray, cfg: Mapping[str, Any], device="cpu", seed: int = 0,
              progress: bool = False) -> tuple[nn.Module, Any]:
    """Stage 2: TinyU-Net on (N, 3, 256, 256) inputs and (N, 256, 256) masks with CE + Dice."""
    torch.manual_seed(seed)
    model = build_tiny_unet(cfg)
    patches = PairedPatches({"image": inputs, "mask": masks}, {"image": 1, "mask": 1}, crop=int(cfg["seg_crop"]),
                            length=int(cfg["seg_steps"]) * int(cfg["seg_batch"]), seed=seed + 17)
    history = _fit(model, patches, make_seg_loss(cfg["seg_loss"]), steps=int(cfg["seg_steps"]),
                   batch=int(cfg["seg_batch"]), lr=float(cfg["seg_lr"]), device=device, seed=seed,
                   progress=progress, scheduler="cosine")
    recalibrate_batchnorm(model, patches, int(cfg["seg_batch"]))
    return model, history


def predict_masks(model: nn.Module, inputs: np.ndarray, batch: int = 8, device="cpu") -> np.ndarray:
    """Binary masks (N, H, W) uint8 by argmax over the two classes (the repo used logit₁ > 0, spec §4)."""
    logits = predict_batches(model, inputs, outputs.MASK_LOGITS, batch, device)
    return logits.argmax(axis=1).astype(np.uint8)


class SRSegPipeline(nn.Module):
    """MobileSR → clamp → TinyU-Net as one module; ``forward(lr)`` returns ``sr_image`` and ``mask_logits``.

    Used for the end-to-end variant: the segmentation loss back-propagates into the SR network.
    The clamp passes gradients only inside [0, 1] (``torch.clamp``).
    """

    def __init__(self, sr: nn.Module, seg: nn.Module) -> None:
        super().__init__()
        self.sr, self.seg = sr, seg

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        sr = self.sr(x)[outputs.SR_IMAGE]
        logits = self.seg(sr.clamp(0.0, 1.0))[outputs.MASK_LOGITS]
        return {outputs.SR_IMAGE: sr, outputs.MASK_LOGITS: logits}


def train_end_to_end(sr_model: nn.Module, train_split: Mapping[str, np.ndarray], cfg: Mapping[str, Any],
                     device="cpu", seed: int = 0, progress: bool = False) -> tuple[SRSegPipeline, Any]:
    """Joint variant: a copy of the trained MobileSR + a fresh TinyU-Net, trained together for
    ``e2e_steps`` on LR crops with ``seg_loss + e2e_sr_weight · L1(SR, HR)``."""
    import copy

    torch.manual_seed(seed)
    pipeline = SRSegPipeline(copy.deepcopy(sr_model), build_tiny_unet(cfg))
    patches = PairedPatches(
        {"image": train_split["lr"], "hr": train_split["hr"], "mask": train_split["mask"]},
        {"image": SCALE, "hr": 1, "mask": 1}, crop=int(cfg["seg_crop"]),
        length=int(cfg["e2e_steps"]) * int(cfg["seg_batch"]), seed=seed + 29)
    history = _fit(pipeline, patches, joint_loss(cfg["seg_loss"], float(cfg["e2e_sr_weight"])),
                   steps=int(cfg["e2e_steps"]), batch=int(cfg["seg_batch"]), lr=float(cfg["seg_lr"]), device=device,
                   seed=seed, progress=progress, scheduler="cosine")
    recalibrate_batchnorm(pipeline, patches, int(cfg["seg_batch"]))
    return pipeline, history


# --------------------------------------------------------------------------- evaluation
def image_quality(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image PSNR and SSIM (data_range 1, RGB channel axis) of (N, 3, H, W) arrays."""
    from cellnb import metrics

    if pred.shape != true.shape:
        raise ValueError(f"image_quality: shapes differ {pred.shape} vs {true.shape}")
    psnr = [metrics.psnr(np.clip(p, 0, 1).transpose(1, 2, 0), t.transpose(1, 2, 0), data_range=1.0) for p, t in zip(pred, true)]
    ssim = [metrics.ssim(np.clip(p, 0, 1).transpose(1, 2, 0), t.transpose(1, 2, 0), data_range=1.0, channel_axis=-1)
            for p, t in zip(pred, true)]
    return {"psnr": np.asarray(psnr, dtype=float), "ssim": np.asarray(ssim, dtype=float)}


def evaluate_sr(candidates: Mapping[str, np.ndarray], hr: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """:func:`image_quality` of every named upscaling (e.g. nearest / bicubic / SR) against HR."""
    return {name: image_quality(images, hr) for name, images in candidates.items()}


def evaluate_segmentation(pred_masks: np.ndarray, true_masks: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """Mean over images of pixel precision, recall, Dice, IoU and per-cell Dice.

    Predicted instances are the 8-connected components of the predicted mask (touching cells merge,
    as in the repo's per-cell evaluation); ``per_cell_dice`` is :func:`cellnb.metrics.per_cell_dice`
    against the generator's instance labels.
    """
    from skimage.measure import label

    from cellnb import metrics

    if pred_masks.shape != true_masks.shape or true_masks.shape != true_labels.shape:
        raise ValueError(f"evaluate_segmentation: shapes differ {pred_masks.shape}, {true_masks.shape}, {true_labels.shape}")
    rows = []
    for pred, true, lab in zip(pred_masks, true_masks, true_labels):
        p, t = pred.astype(bool), true.astype(bool)
        rows.append({
            "precision": metrics.precision(p, t), "recall": metrics.recall(p, t),
            "dice": metrics.dice(p, t), "iou": metrics.iou(p, t),
            "per_cell_dice": metrics.per_cell_dice(lab, label(p, connectivity=2).astype(np.int32)),
        })
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# --------------------------------------------------------------------------- the whole chapter
def run_pipeline(cfg: Mapping[str, Any], device="cpu", seed: int = 0, cache_dir: str | Path | None = None,
                 progress: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Everything the notebook shows: data, trained models, SR quality, ablation and end-to-end results.

    Returns a dict with ``data`` (splits), ``sr_model``, ``sr_history``, ``sr_test`` (SR test images),
    ``quality`` (per-image PSNR/SSIM per method), ``seg`` (per input kind: list over seeds of
    metric dicts), ``seg_models`` / ``pred_masks`` (seed 0, per input kind), ``e2e`` (metrics,
    history, SR quality), ``timings`` (seconds per stage), ``cache_dir``.
    """
    import tempfile

    from cellnb.utils import select_device

    device = select_device(str(device))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    splits = make_dataset(cfg, seed)
    timings["data"] = time.perf_counter() - t0
    log(f"data: {timings['data']:.1f}s")

    t0 = time.perf_counter()
    sr_model, sr_history = train_sr(splits["train"], cfg, device, seed, progress)
    timings["sr_train"] = time.perf_counter() - t0
    log(f"SR training: {timings['sr_train']:.1f}s")

    # stage 1 → cache: SR-enhanced train/val/test images written as PNG, read back for stage 2
    cache = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix=f"{NAME}_"))
    t0 = time.perf_counter()
    sr_images = {}
    for split, arrays in splits.items():
        write_image_cache(super_resolve(sr_model, arrays["lr"], int(cfg["eval_batch"]), device), cache / f"sr_{split}")
        sr_images[split] = read_image_cache(cache / f"sr_{split}")
    timings["sr_cache"] = time.perf_counter() - t0

    test = splits["test"]
    quality = evaluate_sr({"nearest": nearest_upscale(test["lr"]), "bicubic": test["bicubic"], "sr": sr_images["test"]},
                          test["hr"])
    log("PSNR test: " + ", ".join(f"{k} {v['psnr'].mean():.2f}" for k, v in quality.items()))

    inputs = {"bicubic": {s: splits[s]["bicubic"] for s in splits}, "sr": sr_images,
              "hr": {s: splits[s]["hr"] for s in splits}}
    seg: dict[str, list[dict[str, float]]] = {k: [] for k in INPUT_KINDS}
    seg_val: dict[str, list[float]] = {k: [] for k in INPUT_KINDS}
    seg_models: dict[str, nn.Module] = {}
    pred_masks: dict[str, np.ndarray] = {}
    seg_histories: dict[str, Any] = {}
    t0 = time.perf_counter()
    for s in range(int(cfg["n_seeds"])):
        for kind in INPUT_KINDS:
            model, history = train_seg(inputs[kind]["train"], splits["train"]["mask"], cfg, device, seed * 1000 + s, progress)
            pred = predict_masks(model, inputs[kind]["test"], int(cfg["eval_batch"]), device)
            seg[kind].append(evaluate_segmentation(pred, test["mask"], test["labels"]))
            val_pred = predict_masks(model, inputs[kind]["val"], int(cfg["eval_batch"]), device)
            seg_val[kind].append(evaluate_segmentation(val_pred, splits["val"]["mask"], splits["val"]["labels"])["dice"])
            if s == 0:
                seg_models[kind], pred_masks[kind], seg_histories[kind] = model, pred, history
            log(f"seg seed {s} input {kind}: dice {seg[kind][-1]['dice']:.4f}")
    timings["seg_train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    e2e_model, e2e_history = train_end_to_end(sr_model, splits["train"], cfg, device, seed, progress)
    e2e_pred = predict_masks(e2e_model, test["lr"], int(cfg["eval_batch"]), device)
    e2e_sr = super_resolve(e2e_model.sr, test["lr"], int(cfg["eval_batch"]), device)
    e2e = {"metrics": evaluate_segmentation(e2e_pred, test["mask"], test["labels"]),
           "quality": image_quality(e2e_sr, test["hr"]), "history": e2e_history, "pred": e2e_pred}
    timings["e2e_train"] = time.perf_counter() - t0
    log(f"end-to-end: dice {e2e['metrics']['dice']:.4f} ({timings['e2e_train']:.1f}s)")

    return {"data": splits, "sr_model": sr_model, "sr_history": sr_history, "sr_test": sr_images["test"],
            "quality": quality, "seg": seg, "seg_val_dice": seg_val, "seg_models": seg_models,
            "pred_masks": pred_masks, "seg_histories": seg_histories, "e2e": e2e, "timings": timings,
            "cache_dir": cache}


def ablation_table(seg: Mapping[str, Sequence[Mapping[str, float]]], e2e: Mapping[str, float] | None = None):
    """DataFrame: rows = TinyU-Net input (bicubic / SR / HR [/ end-to-end]), columns = metric mean and std over seeds."""
    import pandas as pd

    labels = {"bicubic": "bicubic ×4 input", "sr": "MobileSR ×4 input (two-stage)", "hr": "true HR input (upper bound)"}
    rows = []
    for kind, runs in seg.items():
        row: dict[str, Any] = {"input": labels.get(kind, kind), "seeds": len(runs)}
        for metric in runs[0]:
            values = np.array([r[metric] for r in runs])
            row[metric] = values.mean()
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
        rows.append(row)
    if e2e is not None:
        rows.append({"input": "MobileSR + TinyU-Net end-to-end", "seeds": 1, **dict(e2e)})
    return pd.DataFrame(rows).set_index("input")
