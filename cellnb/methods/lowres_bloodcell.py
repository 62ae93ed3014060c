"""The low-resolution blood-cell recipe as methods: MobileSR ×4, TinyU-Net, and the two as a pipeline.

Source: ``HanYingLee/Low-Resolution-Blood-Cell-Segmentation`` (v1, 64 → 256), MobileSR from
``sunny2109/MobileSR-NTIRE2022``, TinyU-Net from Chen et al. (MICCAI 2024), see
``shared/papers/lowres_bloodcell.md``.

* ``"mobilesr"`` (task ``sr``, ``sr_scale = 4``): L1 on aligned LR/HR patches; prediction =
  ``Prediction(sr_image)`` clamped to [0, 1]; any LR size (window attention pads; large images are
  tiled with overlap in HR space).
* ``"tiny_unet"`` (task ``mask``): two-class logits; loss ``ce_dice`` (softmax CE + softmax Dice, the
  TinyU-Net paper's "CE + Dice", argmax prediction; the default) or ``repo`` (the blood-cell
  repository's CE + Dice on ``sigmoid(logit₁)``, predicted ``logit₁ > 0``; the faithful mode);
  prediction = ``Prediction(foreground)``; any size (padded to a multiple of 16).
* ``"mobilesr_tinyunet"`` (tasks ``sr`` + ``mask``): the project's pipeline on the low-resolution
  image, MobileSR → clamp → TinyU-Net. :meth:`MobileSRTinyUNet.train` trains it as the project does, in
  two stages: MobileSR on LR/HR patches, then TinyU-Net on the super-resolved training images.

Sizes: ``paper`` is the released network (MobileSR 175,883 parameters; TinyU-Net widths 64…512,
481,170 parameters, BatchNorm momentum 0.03); ``slim`` is what the CPU profiles train (MobileSR at its
released size; TinyU-Net with three levels of widths 16, 32, 64 and BatchNorm momentum 0.1).

The data helpers of the chapter (:func:`make_split`, :func:`split_seeds`, :func:`resize_labels`) and
the aligned patch sampler (:class:`PairedPatches`) live here so that any experiment can build the same
data without importing the chapter.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cellnb.losses.lowres_bloodcell import SEG_LOSSES, joint_loss, make_seg_loss, make_sr_loss
from cellnb.methods.base import Method, Prediction, pad_to_multiple, register_method
from cellnb.models import create_model, outputs

SCALE = 4

__all__ = ["SCALE", "split_seeds", "resize_labels", "make_split", "PairedPatches", "fit_patches",
           "SRSegPipeline", "to_chw01", "area_downscale", "super_resolve_image",
           "MobileSRMethod", "TinyUNetMethod", "MobileSRTinyUNet"]


# --------------------------------------------------------------------------- data
def split_seeds(seed: int, n: int, split: str) -> list[int]:
    """Generator seeds of one split; train and test never share a seed (offsets 0 / 10⁵ / 2·10⁵)."""
    offsets = {"train": 0, "val": 100_000, "test": 200_000}
    if split not in offsets:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(offsets)}")
    if n < 1:
        raise ValueError(f"split {split!r} needs at least one image, got n={n}")
    return [seed * 1_000_000 + offsets[split] + i for i in range(n)]


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Instance labels resized to ``size``² with ``nearest-exact`` (the rule ``lowres_pair`` applies to
    the mask, so ``labels > 0`` equals the resized mask)."""
    if labels.ndim != 2:
        raise ValueError(f"resize_labels: expected (H, W) labels, got shape {labels.shape}")
    t = torch.from_numpy(labels.astype(np.int64))[None, None].double()
    return F.interpolate(t, size=(size, size), mode="nearest-exact")[0, 0].numpy().astype(np.int32)


def make_split(seeds: Sequence[int], smear_size: int = 1200, hr_size: int = 256, lr_size: int = 64) -> dict[str, np.ndarray]:
    """Generated smears and their LR/HR pairs, stacked.

    Keys: ``lr`` (N, 3, lr, lr), ``hr`` and ``bicubic`` (N, 3, hr, hr) float32 in [0, 1], ``mask``
    (N, hr, hr) int64 {0, 1}, ``labels`` (N, hr, hr) int32 instance ids (nearest-resized generator
    labels, for per-cell Dice).
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


def to_chw01(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) / (3, H, W) uint8 or float image -> float32 (3, H, W) in [0, 1] (no min-max
    stretching: the SR target and the repo's ``ToTensor`` keep absolute intensities)."""
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    x = image.astype(np.float32) / scale
    if x.ndim == 2:
        x = np.repeat(x[None], 3, axis=0)
    elif x.ndim == 3 and x.shape[0] not in (1, 3) and x.shape[-1] in (1, 3):
        x = np.moveaxis(x, -1, 0)
    if x.ndim != 3:
        raise ValueError(f"expected an (H, W, C) or (C, H, W) image, got shape {image.shape}")
    if x.shape[0] == 1:
        x = np.repeat(x, 3, axis=0)
    return np.clip(x, 0.0, 1.0)


def area_downscale(image: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """(C, H, W) -> (C, H/scale, W/scale) by box averaging (how ``lowres_pair`` makes LR from HR)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"area_downscale: size {h}x{w} is not a multiple of {scale}")
    return F.interpolate(x, size=(h // scale, w // scale), mode="area")[0].numpy()


class PairedPatches(Dataset):
    """Random aligned crops (+ flips / 90° rotations, the same for every key) of stacked arrays.

    ``arrays`` maps a batch key to an array ``(N, ..., H_k, W_k)`` whose spatial size is
    ``hr_size / factor_k``; ``crop`` is in HR pixels, so an LR array (factor 4) is cut at ``crop / 4``.
    ``length`` = samples per epoch (drawn at random, seeded by ``(seed, epoch, index)``). The repo's
    misaligned rotation copies (spec §3) are not reproduced: every key gets the same transform.
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
        i = int(rng.integers(self.n)) if self.augment else index % self.n
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


def fit_patches(model: nn.Module, arrays: Mapping[str, np.ndarray], factors: Mapping[str, int], loss_fn: Callable, *,
                steps: int, batch: int, crop: int, lr: float, val_arrays: Mapping[str, np.ndarray] | None = None,
                val_crop: int | None = None, evals: int = 16, seed: int = 0, device: Any = "cpu",
                progress: bool = False, precision: str = "float32", half_budget: bool = False) -> Any:
    """Train on random aligned crops for ``steps`` optimiser steps (Adam, one-cycle learning rate to
    ``lr``), evaluating the loss on fixed validation crops ``evals`` times (``cellnb.train.fit``'s
    epochs of ``steps // evals`` steps; fresh crops every epoch). BatchNorm statistics are re-estimated
    over the training batches at the end. The history gets ``attrs["steps_per_s"]`` (optimiser steps per
    second of the epochs' wall time, their periodic validation included) and ``attrs["steps"]``.
    ``precision``: the forward pass's precision (``cellnb.train.fit``'s; the caller passes its method's
    :attr:`~cellnb.methods.base.Method.train_precision`), recorded as ``attrs["precision"]``.
    ``half_budget``: ``cellnb.train.fit``'s half-budget branch on the validation crops (needs
    ``val_arrays``; its draws replay the current epoch's crops, which are seeded by ``(seed, epoch, index)``),
    ``attrs["half_budget"]``; its time is not in ``steps_per_s``."""
    from cellnb import train
    from cellnb.methods.training import half_budget_seconds

    evals = max(1, min(int(evals), int(steps)))
    per_epoch = max(1, int(steps) // evals)
    step = max(factors.values())

    def fit_crop(c: int, arrs: Mapping[str, np.ndarray]) -> int:  # at most the image, a multiple of the LR factor
        hr = min(a.shape[-1] * factors[k] for k, a in arrs.items())
        hr = min(hr, min(a.shape[-2] * factors[k] for k, a in arrs.items()))
        return max(step, min(int(c), hr) // step * step)

    patches = PairedPatches(arrays, factors, crop=fit_crop(crop, arrays), length=per_epoch * int(batch), seed=seed)
    loader = DataLoader(patches, batch_size=int(batch), shuffle=False, num_workers=0, drop_last=True)
    val_loader = None
    if val_arrays is not None:
        vc = fit_crop(int(val_crop or crop), val_arrays)
        n_val = len(next(iter(val_arrays.values())))
        val = PairedPatches(val_arrays, factors, crop=vc, length=max(n_val * 2, 2), seed=seed + 7, augment=False)
        # fixed crops: image i % n, top-left drawn once per index (augment=False keeps the crop positions)
        val_loader = DataLoader(val, batch_size=int(batch), shuffle=False, num_workers=0)

    def next_epoch(epoch: int, _model: nn.Module) -> None:
        patches.epoch = epoch

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    history = train.fit(model, loader, loss_fn, epochs=evals, lr=lr, val_loader=val_loader, device=device, amp=False,
                        precision=precision, progress=progress, scheduler="onecycle", epoch_callback=next_epoch,
                        update_bn=True, half_budget=half_budget)
    wall = time.perf_counter() - t0
    train_s = float(history["seconds"].sum()) if "seconds" in history else wall
    history.attrs["steps"] = per_epoch * evals
    history.attrs["steps_per_s"] = per_epoch * evals / max(train_s, 1e-9)
    history.attrs["wall_s"] = wall - half_budget_seconds(history)  # without the half-budget branch
    return history


# --------------------------------------------------------------------------- networks
class SRSegPipeline(nn.Module):
    """MobileSR → clamp to [0, 1] → TinyU-Net as one module; ``forward(lr)`` returns ``sr_image`` and
    ``mask_logits`` (the clamp passes gradients inside [0, 1], for the end-to-end variant)."""

    def __init__(self, sr: nn.Module, seg: nn.Module) -> None:
        super().__init__()
        self.sr, self.seg = sr, seg

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        sr = self.sr(x)[outputs.SR_IMAGE]
        logits = self.seg(sr.clamp(0.0, 1.0))[outputs.MASK_LOGITS]
        return {outputs.SR_IMAGE: sr, outputs.MASK_LOGITS: logits}


@torch.no_grad()
def super_resolve_image(model: nn.Module, lr: torch.Tensor, tile: int = 128, overlap: int = 16) -> torch.Tensor:
    """MobileSR on a (1, C, h, w) LR tensor -> (1, C, 4h, 4w), clamped to [0, 1].

    Images up to ``tile`` px run whole (window attention pads odd sizes); larger ones in overlapping
    LR tiles blended with linear ramps in HR space.
    """
    s = SCALE
    _, c, h, w = lr.shape
    if h <= tile and w <= tile:
        return model(lr)[outputs.SR_IMAGE].clamp(0.0, 1.0)
    step = tile - overlap
    acc = torch.zeros(1, c, h * s, w * s, device=lr.device)
    weight = torch.zeros(1, 1, h * s, w * s, device=lr.device)
    ramp = torch.ones(tile * s)
    if overlap:
        ramp[:overlap * s] = torch.linspace(0.05, 1, overlap * s)
        ramp[-overlap * s:] = torch.linspace(1, 0.05, overlap * s)
    tops = sorted(set(list(range(0, max(h - tile, 0) + 1, step)) + [max(h - tile, 0)]))
    lefts = sorted(set(list(range(0, max(w - tile, 0) + 1, step)) + [max(w - tile, 0)]))
    for top in tops:
        for left in lefts:
            patch = lr[..., top:top + tile, left:left + tile]
            ph, pw = patch.shape[-2:]
            out = model(patch)[outputs.SR_IMAGE]
            wt = (ramp[:ph * s, None] * ramp[None, :pw * s]).to(lr.device)[None, None]
            acc[..., top * s:(top + ph) * s, left * s:(left + pw) * s] += out * wt
            weight[..., top * s:(top + ph) * s, left * s:(left + pw) * s] += wt
    return (acc / weight.clamp_min(1e-8)).clamp(0.0, 1.0)


def _paired(loss_fn: Callable, out_key: str, target_key: str) -> Callable:
    """Wrap a stage loss so that a batch whose target does not match the output size (e.g. an HR image
    fed where MobileSR expects its LR input) raises a KeyError naming what the loss needs."""

    def wrapped(out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]):
        if target_key not in batch or out[out_key].shape[-2:] != batch[target_key].shape[-2:]:
            have = None if target_key not in batch else tuple(batch[target_key].shape)
            raise KeyError(f"this loss needs LR inputs ('image') with targets {target_key!r} at {SCALE}x their size "
                           f"(output {tuple(out[out_key].shape)}, target {have}); the method's train builds them")
        return loss_fn(out, batch)

    return wrapped


def _foreground(logits: torch.Tensor, rule: str) -> np.ndarray:
    """(2, H, W) logits -> foreground probability: softmax class 1 (``argmax`` rule) or
    ``sigmoid(logit₁)`` (the repo's ``logit₁ > 0`` rule); ``> 0.5`` is the predicted mask either way."""
    if rule == "argmax":
        return torch.softmax(logits.float(), dim=0)[1].cpu().numpy().astype(np.float32)
    if rule == "sigmoid":
        return torch.sigmoid(logits[1].float()).cpu().numpy().astype(np.float32)
    raise ValueError(f"unknown prediction rule {rule!r}; choose 'argmax' or 'sigmoid'")


RULES = {"ce_dice": "argmax", "repo": "sigmoid"}


# --------------------------------------------------------------------------- methods
@register_method
class MobileSRMethod(Method):
    """MobileSR ×4 (official configuration) trained with L1 on aligned LR/HR patches."""

    name = "mobilesr"
    measures_half_budget = True  # fit_patches(half_budget=True) on the validation crops
    memory_format = "channels_last"  # measured faster to train on the CPU (the speed chapter)
    # float32: in the chapter's own loop (crops of 32-48 px) bfloat16 autocast trained 4-20 % slower on
    # this CPU (quick, 2 jobs x 1 thread) although the speed chapter's benchmark measures it faster
    paper = "MobileSR (sunny2109/MobileSR-NTIRE2022) in HanYingLee/Low-Resolution-Blood-Cell-Segmentation v1"
    tasks = ("sr",)
    sizes = {"paper": dict(n_feats=40, n_heads=8, ratios=(4, 2, 2, 2, 4), window=8),
             "slim": dict(n_feats=40, n_heads=8, ratios=(4, 2, 2, 2, 4), window=8)}
    losses = ("l1",)
    multiple = 1
    sr_scale = SCALE

    def build(self, size: str = "slim", in_channels: int = 3, task: str | None = None, **overrides: Any) -> nn.Module:
        self.check_task(task)
        return create_model("mobilesr", in_channels=in_channels, scale=SCALE, **{**self.check_size(size), **overrides})

    def loss(self, variant: str | None = None, task: str | None = None, **kwargs: Any) -> Callable:
        if variant not in (None, "l1"):
            raise ValueError(f"method 'mobilesr' has no loss {variant!r}; choose from {list(self.losses)}")
        return _paired(make_sr_loss(), outputs.SR_IMAGE, "hr")

    def targets(self, sample: Mapping[str, np.ndarray], task: str | None = None) -> dict[str, np.ndarray]:
        """``hr`` = the sample's image in [0, 1] (3, H, W); ``lr`` = its 4× box average (or the sample's
        own ``lr``)."""
        hr = to_chw01(sample["image"])
        lr = to_chw01(sample["lr"]) if "lr" in sample else area_downscale(hr)
        return {"hr": hr, "lr": lr}

    def normalize(self, image: np.ndarray) -> np.ndarray:
        return to_chw01(image)

    def postprocess(self, outputs_: Mapping[str, torch.Tensor], task: str | None = None, **kwargs: Any) -> Prediction:
        sr = outputs_[outputs.SR_IMAGE]
        return Prediction(sr_image=sr.clamp(0, 1).float().cpu().numpy().astype(np.float32))

    @torch.no_grad()
    def predict(self, model: nn.Module | None, image: np.ndarray, task: str | None = None, *, device: Any = "cpu",
                tile: int = 128, overlap: int = 16, **post: Any) -> Prediction:
        """Super-resolve one LR image of any size (tiled above ``tile`` LR pixels)."""
        self.check_task(task)
        model.eval()
        x = torch.from_numpy(self.normalize(image))[None].to(device)
        return self.postprocess({outputs.SR_IMAGE: super_resolve_image(model, x, tile, overlap)[0]}, task)

    def train(self, model: nn.Module, train_samples: list[Mapping[str, np.ndarray]],
              val_samples: list[Mapping[str, np.ndarray]], task: str = "sr", *, steps: int, batch_size: int = 16,
              crop: int | None = 32, lr: float = 4e-3, seed: int = 0, device: Any = "cpu", loss: str | None = None,
              progress: bool = False, evals: int = 16, **kwargs: Any):
        """L1 on random aligned patches of ``crop`` HR px (``crop / 4`` LR px), flips and 90° rotations."""
        tr = [self.targets(s) for s in train_samples]
        va = [self.targets(s) for s in val_samples] if val_samples else None
        stack = lambda items, k: np.stack([it[k] for it in items]).astype(np.float32)  # noqa: E731
        return fit_patches(model, {"image": stack(tr, "lr"), "hr": stack(tr, "hr")}, {"image": SCALE, "hr": 1},
                           self.loss(loss), steps=steps, batch=batch_size, crop=int(crop or 32), lr=lr,
                           val_arrays=None if va is None else {"image": stack(va, "lr"), "hr": stack(va, "hr")},
                           val_crop=kwargs.get("val_crop", 128), evals=evals, seed=seed, device=device, progress=progress,
                           precision=kwargs.get("precision", self.train_precision),
                           half_budget=bool(kwargs.get("half_budget", False)))


@register_method
class TinyUNetMethod(Method):
    """TinyU-Net (two classes) with CE + Dice on random crops."""

    name = "tiny_unet"
    measures_half_budget = True  # fit_patches(half_budget=True) on the validation crops
    memory_format = "channels_last"  # measured faster to train on the CPU (the speed chapter)
    # float32: in the chapter's own loop (crops of 32-48 px) bfloat16 autocast trained 4-20 % slower on
    # this CPU (quick, 2 jobs x 1 thread) although the speed chapter's benchmark measures it faster
    paper = "TinyU-Net (Chen et al., MICCAI 2024) in HanYingLee/Low-Resolution-Blood-Cell-Segmentation v1"
    tasks = ("mask",)
    sizes = {"paper": dict(widths=(64, 128, 256, 512), bn_momentum=0.03),
             "slim": dict(widths=(16, 32, 64), bn_momentum=0.1)}
    #: ``ce_dice``: softmax CE + softmax Dice, argmax prediction (the TinyU-Net paper's loss; default);
    #: ``repo``: the blood-cell repository's CE + sigmoid(logit₁) Dice, prediction logit₁ > 0 (faithful).
    losses = SEG_LOSSES
    multiple = 16

    def build(self, size: str = "slim", in_channels: int = 3, task: str | None = None, **overrides: Any) -> nn.Module:
        self.check_task(task)
        cfg = {**self.check_size(size), **overrides}
        return create_model("tiny_unet", in_channels=in_channels, num_classes=2, **cfg)

    def loss(self, variant: str | None = None, task: str | None = None, **kwargs: Any) -> Callable:
        return make_seg_loss(variant or "ce_dice")

    def targets(self, sample: Mapping[str, np.ndarray], task: str | None = None) -> dict[str, np.ndarray]:
        if "mask" in sample:
            return {"mask": (np.asarray(sample["mask"]) > 0).astype(np.int64)}
        if "labels" in sample:
            return {"mask": (np.asarray(sample["labels"]) > 0).astype(np.int64)}
        raise KeyError("tiny_unet needs a sample with 'mask' or 'labels'")

    def normalize(self, image: np.ndarray) -> np.ndarray:
        return to_chw01(image)

    def postprocess(self, outputs_: Mapping[str, torch.Tensor], task: str | None = None, *, loss: str | None = None,
                    **kwargs: Any) -> Prediction:
        """``foreground`` = P(cell); the rule follows the loss the model was trained with (``loss``)."""
        return Prediction(foreground=_foreground(outputs_[outputs.MASK_LOGITS], RULES[loss or "ce_dice"]))

    def train(self, model: nn.Module, train_samples: list[Mapping[str, np.ndarray]],
              val_samples: list[Mapping[str, np.ndarray]], task: str = "mask", *, steps: int, batch_size: int = 8,
              crop: int | None = 48, lr: float = 1e-2, seed: int = 0, device: Any = "cpu", loss: str | None = None,
              progress: bool = False, evals: int = 16, **kwargs: Any):
        """CE + Dice (``loss``) on random crops with flips and 90° rotations, one-cycle Adam."""
        def arrays(samples):
            return {"image": np.stack([self.normalize(s["image"]) for s in samples]).astype(np.float32),
                    "mask": np.stack([self.targets(s)["mask"] for s in samples])}

        va = arrays(val_samples) if val_samples else None
        return fit_patches(model, arrays(train_samples), {"image": 1, "mask": 1}, self.loss(loss), steps=steps,
                           batch=batch_size, crop=int(crop or 48), lr=lr, val_arrays=va,
                           val_crop=kwargs.get("val_crop", 128), evals=evals, seed=seed, device=device, progress=progress,
                           precision=kwargs.get("precision", self.train_precision),
                           half_budget=bool(kwargs.get("half_budget", False)))


@register_method
class MobileSRTinyUNet(Method):
    """The project's pipeline on the low-resolution image: MobileSR ×4 → clamp → TinyU-Net.

    ``build`` returns an :class:`SRSegPipeline`; ``train`` trains it in two stages as the project does
    (MobileSR with L1, then TinyU-Net on the super-resolved training images, clamped and written through
    8-bit as the project's PNG cache); ``predict`` takes the LR image and returns the SR image and the
    foreground at 4× its size.
    """

    name = "mobilesr_tinyunet"
    memory_format = "channels_last"  # measured faster to train on the CPU (the speed chapter)
    # float32: in the chapter's own loop (crops of 32-48 px) bfloat16 autocast trained 4-20 % slower on
    # this CPU (quick, 2 jobs x 1 thread) although the speed chapter's benchmark measures it faster
    paper = "HanYingLee/Low-Resolution-Blood-Cell-Segmentation v1 (MobileSR ×4 → TinyU-Net)"
    tasks = ("sr", "mask")
    sizes = {"paper": {"sr": "paper", "seg": "paper"}, "slim": {"sr": "slim", "seg": "slim"}}
    losses = SEG_LOSSES
    multiple = 4  # LR px: the SR output (×4) must be a multiple of TinyU-Net's 16
    sr_scale = SCALE
    #: train(half_budget=True): each stage's fit_patches measures its own half budget; the pipeline's gain
    #: is its stage's that gained most (cellnb.methods.training.half_budget_gain on a staged history)
    measures_half_budget = True

    def build(self, size: str = "slim", in_channels: int = 3, task: str | None = None, **overrides: Any) -> nn.Module:
        self.check_task(task)
        parts = self.check_size(size)
        sr = MobileSRMethod().build(parts["sr"], in_channels)
        seg = TinyUNetMethod().build(parts["seg"], in_channels, **overrides)
        return SRSegPipeline(sr, seg)

    def loss(self, variant: str | None = None, task: str | None = None, *, sr_weight: float = 1.0, **kwargs: Any) -> Callable:
        """Losses on the pipeline's outputs (LR input, targets at 4× its size) by ``task``: ``sr`` -> L1,
        ``mask`` -> the segmentation loss ``variant``; no task -> the end-to-end ``seg + sr_weight · L1``.
        The two-stage :meth:`train` uses each stage's own method loss instead."""
        if task == "sr":
            return _paired(make_sr_loss(), outputs.SR_IMAGE, "hr")
        if task == "mask":  # on the pipeline's outputs: masks at the SR (4x) size
            return _paired(make_seg_loss(variant or "ce_dice"), outputs.MASK_LOGITS, "mask")
        return _paired(joint_loss(variant or "ce_dice", sr_weight), outputs.SR_IMAGE, "hr")

    def targets(self, sample: Mapping[str, np.ndarray], task: str | None = None) -> dict[str, np.ndarray]:
        out = MobileSRMethod().targets(sample)
        if "mask" in sample or "labels" in sample:
            out.update(TinyUNetMethod().targets(sample))
        return out

    def normalize(self, image: np.ndarray) -> np.ndarray:
        return to_chw01(image)

    def postprocess(self, outputs_: Mapping[str, torch.Tensor], task: str | None = None, *, loss: str | None = None,
                    **kwargs: Any) -> Prediction:
        return Prediction(sr_image=outputs_[outputs.SR_IMAGE].clamp(0, 1).float().cpu().numpy().astype(np.float32),
                          foreground=_foreground(outputs_[outputs.MASK_LOGITS], RULES[loss or "ce_dice"]))

    @torch.no_grad()
    def predict(self, model: nn.Module | None, image: np.ndarray, task: str | None = None, *, device: Any = "cpu",
                tile: int = 128, overlap: int = 16, loss: str | None = None, **post: Any) -> Prediction:
        """LR image (any size) -> ``Prediction(sr_image, foreground)`` at 4× the LR size."""
        self.check_task(task)
        model.eval()
        x = torch.from_numpy(self.normalize(image))[None].to(device)
        sr = super_resolve_image(model.sr, x, tile, overlap)
        seg = TinyUNetMethod()
        srp, hw = pad_to_multiple(sr, seg.multiple)
        logits = model.seg(srp)[outputs.MASK_LOGITS][..., :hw[0], :hw[1]]
        return self.postprocess({outputs.SR_IMAGE: sr[0], outputs.MASK_LOGITS: logits[0]}, task, loss=loss)

    def train(self, model: nn.Module, train_samples: list[Mapping[str, np.ndarray]],
              val_samples: list[Mapping[str, np.ndarray]], task: str = "mask", *, steps: int, batch_size: int = 8,
              crop: int | None = 48, lr: float = 1e-2, seed: int = 0, device: Any = "cpu", loss: str | None = None,
              progress: bool = False, sr_steps: int | None = None, sr_batch: int = 16, sr_crop: int = 32,
              sr_lr: float = 4e-3, evals: int = 16, half_budget: bool = False, **kwargs: Any):
        """Two stages: MobileSR (``sr_steps``, default ``steps``) on LR/HR patches, then TinyU-Net
        (``steps``) on the 8-bit super-resolved training images. Returns the concatenated history with a
        ``stage`` column (``sr`` / ``seg``); ``attrs`` holds each stage's history and steps/s.

        ``half_budget``: each stage measures the validation loss half its own budget reaches (its
        ``attrs["half_budget"]``); TinyU-Net's branch trains on the images of the fully trained
        MobileSR, so it answers what the second half of the segmentation stage bought."""
        import pandas as pd

        # ``precision`` (else each stage's own train_precision) and ``half_budget`` go to both stages
        stage_kwargs = {"precision": kwargs["precision"]} if "precision" in kwargs else {}
        stage_kwargs["half_budget"] = bool(half_budget)
        sr_hist = MobileSRMethod().train(model.sr, train_samples, val_samples, steps=int(sr_steps or steps),
                                         batch_size=sr_batch, crop=sr_crop, lr=sr_lr, seed=seed, device=device,
                                         progress=progress, evals=evals, **stage_kwargs)

        def enhanced(samples):
            lr_imgs = np.stack([MobileSRMethod().targets(s)["lr"] for s in samples])
            sr = super_resolve_batch(model.sr, lr_imgs, device=device)
            return [{"image": to_8bit(img), "mask": TinyUNetMethod().targets(s)["mask"]} for img, s in zip(sr, samples)]

        seg_hist = TinyUNetMethod().train(model.seg, enhanced(train_samples), enhanced(val_samples) if val_samples else [],
                                          steps=steps, batch_size=batch_size, crop=crop, lr=lr, seed=seed + 1,
                                          device=device, loss=loss, progress=progress, evals=evals, **stage_kwargs)
        history = pd.concat([sr_hist.assign(stage="sr"), seg_hist.assign(stage="seg")], ignore_index=True)
        stages = {sr_hist.attrs.get("precision"), seg_hist.attrs.get("precision")}
        history.attrs.update({"sr_history": sr_hist, "seg_history": seg_hist,
                              "precision": stages.pop() if len(stages) == 1 else "mixed",
                              "sr_steps_per_s": sr_hist.attrs.get("steps_per_s"),
                              "seg_steps_per_s": seg_hist.attrs.get("steps_per_s")})
        return history


# --------------------------------------------------------------------------- batch helpers
@torch.no_grad()
def predict_batches(model: nn.Module, images: np.ndarray, key: str, batch: int = 8, device: Any = "cpu") -> np.ndarray:
    """Run ``model`` in eval mode over (N, C, H, W) ``images`` and stack ``outputs[key]`` as numpy."""
    model.eval()
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    model.to(dev)
    parts = [model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float().to(dev))[key].cpu()
             for i in range(0, len(images), batch)]
    return torch.cat(parts).numpy()


def super_resolve_batch(model: nn.Module, lr_images: np.ndarray, batch: int = 8, device: Any = "cpu") -> np.ndarray:
    """SR images (N, 3, 4h, 4w) clamped to [0, 1] (the repo converted without clamping, spec §3)."""
    return np.clip(predict_batches(model, lr_images, outputs.SR_IMAGE, batch, device), 0.0, 1.0).astype(np.float32)


def to_8bit(images: np.ndarray) -> np.ndarray:
    """Round-trip through 8 bits, as the project's PNG cache of SR images does (float32 in [0, 1])."""
    return (np.round(np.clip(images, 0, 1) * 255) / 255).astype(np.float32)


def predict_masks(model: nn.Module, inputs: np.ndarray, loss: str = "ce_dice", batch: int = 8, device: Any = "cpu") -> np.ndarray:
    """Binary masks (N, H, W) uint8 with the prediction rule of ``loss`` (argmax, or the repo's logit₁ > 0)."""
    logits = predict_batches(model, inputs, outputs.MASK_LOGITS, batch, device)
    if RULES[loss] == "argmax":
        return logits.argmax(axis=1).astype(np.uint8)
    return (logits[:, 1] > 0).astype(np.uint8)


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
