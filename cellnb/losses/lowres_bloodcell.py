"""Losses of the low-resolution blood-cell pipeline (MobileSR → TinyU-Net).

- :func:`sr_l1_loss`: stage 1, mean absolute error between the SR output and the HR target
  (``HanYingLee/Low-Resolution-Blood-Cell-Segmentation@e128e05``, ``nn.L1Loss()``).
- :func:`repo_ce_sigmoid_dice_loss`: stage 2 *as in the blood-cell repo*: softmax cross-entropy on
  the two logits **plus** a soft Dice on ``sigmoid(logit of class 1)`` (smooth 1e-5, pooled over the
  batch). The mix of softmax CE and sigmoid Dice is inconsistent (spec §4); kept for the faithful mode.
- The corrected stage-2 loss is :func:`cellnb.losses.functional.ce_dice_loss` (CE + softmax Dice),
  the TinyU-Net paper's "CE + Dice".
- :func:`joint_loss`: the end-to-end variant, ``seg_loss + sr_weight · L1(SR, HR)``.

Each ``*_loss`` is a pure tensor function; :func:`make_seg_loss` / :func:`make_sr_loss` /
:func:`joint_loss` wrap them in the ``loss_fn(outputs, batch) -> (total, parts)`` form that
:func:`cellnb.train.fit` expects (batch keys ``hr`` and ``mask``).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from cellnb.losses.functional import ce_dice_loss
from cellnb.models import outputs

Tensor = torch.Tensor
LossFn = Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], tuple[Tensor, dict[str, float]]]
SEG_LOSSES = ("ce_dice", "repo")


def sr_l1_loss(sr: Tensor, hr: Tensor) -> Tensor:
    """Mean L1 between SR output and HR target; shapes must match exactly."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr_l1_loss: SR shape {tuple(sr.shape)} differs from HR shape {tuple(hr.shape)}")
    return F.l1_loss(sr, hr)


def repo_ce_sigmoid_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1e-5) -> Tensor:
    """CE(logits, target) + (1 − soft Dice of sigmoid(logits[:, 1]) vs target), as the blood-cell repo.

    ``logits`` (N, 2, H, W), ``target`` (N, H, W) integer {0, 1}. Dice is pooled over the whole batch:
    ``1 − (2 Σ p t + smooth) / (Σ p + Σ t + smooth)``.
    """
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"repo_ce_sigmoid_dice_loss: expected (N, 2, H, W) logits, got {tuple(logits.shape)}")
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"repo_ce_sigmoid_dice_loss: target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)}"
        )
    target = target.long()
    ce = F.cross_entropy(logits, target)
    prob = torch.sigmoid(logits[:, 1])
    t = target.to(prob.dtype)
    dice = (2 * (prob * t).sum() + smooth) / (prob.sum() + t.sum() + smooth)
    return ce + (1 - dice)


def seg_loss_tensor(logits: Tensor, target: Tensor, kind: str = "ce_dice") -> Tensor:
    """Stage-2 loss by name: ``ce_dice`` (corrected, softmax Dice) or ``repo`` (CE + sigmoid Dice)."""
    if kind == "ce_dice":
        return ce_dice_loss(logits, target)
    if kind == "repo":
        return repo_ce_sigmoid_dice_loss(logits, target)
    raise ValueError(f"unknown segmentation loss {kind!r}; choose from {SEG_LOSSES}")


def make_sr_loss() -> LossFn:
    """``loss_fn(outputs, batch)`` for stage 1: L1(outputs['sr_image'], batch['hr'])."""

    def loss_fn(out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        loss = sr_l1_loss(out[outputs.SR_IMAGE], batch["hr"])
        return loss, {"l1": float(loss.detach())}

    return loss_fn


def make_seg_loss(kind: str = "ce_dice") -> LossFn:
    """``loss_fn(outputs, batch)`` for stage 2 on ``outputs['mask_logits']`` and ``batch['mask']``."""
    if kind not in SEG_LOSSES:
        raise ValueError(f"unknown segmentation loss {kind!r}; choose from {SEG_LOSSES}")

    def loss_fn(out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        loss = seg_loss_tensor(out[outputs.MASK_LOGITS], batch["mask"], kind)
        return loss, {"seg": float(loss.detach())}

    return loss_fn


def joint_loss(kind: str = "ce_dice", sr_weight: float = 1.0) -> LossFn:
    """End-to-end loss: ``seg_loss(mask_logits, mask) + sr_weight · L1(sr_image, hr)``.

    ``sr_weight`` keeps the intermediate image an image (without it SR can drift to any feature map).
    """
    if sr_weight < 0:
        raise ValueError(f"joint_loss: sr_weight must be >= 0, got {sr_weight}")

    def loss_fn(out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        seg = seg_loss_tensor(out[outputs.MASK_LOGITS], batch["mask"], kind)
        l1 = sr_l1_loss(out[outputs.SR_IMAGE], batch["hr"])
        total = seg + sr_weight * l1
        return total, {"seg": float(seg.detach()), "l1": float(l1.detach())}

    return loss_fn
