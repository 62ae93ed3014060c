"""Generic loss functions: pure tensor functions shared by every chapter.

Conventions
-----------
- *Binary* segmentation: ``logits`` is ``(N, 1, H, W)`` (or any shape) and ``target`` has the
  same shape (or ``(N, H, W)`` for ``(N, 1, H, W)`` logits) with values in ``[0, 1]``.
- *Multiclass* segmentation: ``logits`` is ``(N, C, H, W)`` with ``C >= 2`` and ``target`` is
  ``(N, H, W)`` integer class indices.
- Every function returns a scalar tensor (mean reduction unless stated) and raises
  ``ValueError`` naming both shapes when they do not fit together.

A training loss for :func:`cellnb.train.fit` has the signature
``loss_fn(outputs, batch) -> (total, parts)``; :func:`multitask` builds one from these terms.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


# --------------------------------------------------------------------------- shape helpers
def _binary_pair(logits: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Return ``(logits, target)`` with identical shapes; a ``(N, H, W)`` target fits ``(N, 1, H, W)``."""
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{name}: logits and target must be tensors")
    if target.shape != logits.shape and logits.ndim == target.ndim + 1 and logits.shape[1] == 1:
        target = target.unsqueeze(1)
    if target.shape != logits.shape:
        raise ValueError(
            f"{name}: logits shape {tuple(logits.shape)} and target shape {tuple(target.shape)} do not match"
        )
    if not torch.is_floating_point(logits):
        raise TypeError(f"{name}: logits must be floating point, got {logits.dtype}")
    return logits, target.to(logits.dtype)


def _multiclass_pair(logits: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Check ``(N, C, ...)`` logits against ``(N, ...)`` integer class targets."""
    if logits.ndim < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"{name}: multiclass logits {tuple(logits.shape)} need integer targets of shape "
            f"{tuple(logits.shape[:1] + logits.shape[2:])}, got {tuple(target.shape)}"
        )
    if torch.is_floating_point(target) or target.dtype == torch.bool:
        raise TypeError(f"{name}: multiclass target must hold integer class indices, got {target.dtype}")
    num_classes = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(
            f"{name}: target classes must lie in [0, {num_classes - 1}], got [{int(target.min())}, {int(target.max())}]"
        )
    return logits, target.long()


def _is_multiclass(logits: Tensor, target: Tensor) -> bool:
    return logits.ndim >= 2 and logits.shape[1] >= 2 and target.ndim == logits.ndim - 1


# --------------------------------------------------------------------------- segmentation
def soft_dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """Soft Dice loss ``1 - (2 Σ p t + eps) / (Σ p + Σ t + eps)`` (Milletari et al., V-Net 2016, eq. 1
    without squares, as in most released code).

    Binary: ``p = sigmoid(logits)``, sums over the whole batch. Multiclass (``(N, C, H, W)`` logits,
    ``(N, H, W)`` integer target): ``p = softmax(logits)``, one Dice per class over the batch and
    spatial axes, averaged over classes. ``eps`` smooths empty masks (both empty -> loss 0).
    """
    if _is_multiclass(logits, target):
        logits, target = _multiclass_pair(logits, target, "soft_dice_loss")
        probs = logits.softmax(dim=1)
        onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
        dims = (0,) + tuple(range(2, logits.ndim))
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()
    logits, target = _binary_pair(logits, target, "soft_dice_loss")
    probs = logits.sigmoid()
    inter = (probs * target).sum()
    return 1.0 - (2.0 * inter + eps) / (probs.sum() + target.sum() + eps)


def bce_dice_loss(
    logits: Tensor, target: Tensor, bce_weight: float = 1.0, dice_weight: float = 1.0, eps: float = 1.0
) -> Tensor:
    """``bce_weight · BCE-with-logits + dice_weight · soft Dice`` (binary)."""
    logits, target = _binary_pair(logits, target, "bce_dice_loss")
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce_weight * bce + dice_weight * soft_dice_loss(logits, target, eps)


def ce_dice_loss(
    logits: Tensor,
    target: Tensor,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    class_weights: Tensor | None = None,
    eps: float = 1.0,
) -> Tensor:
    """``ce_weight · cross-entropy + dice_weight · multiclass soft Dice`` (``(N, C, H, W)`` logits,
    ``(N, H, W)`` integer target); ``class_weights`` (C,) weight the cross-entropy."""
    logits, target = _multiclass_pair(logits, target, "ce_dice_loss")
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if class_weights.shape != (logits.shape[1],):
            raise ValueError(
                f"ce_dice_loss: class_weights shape {tuple(class_weights.shape)} must be ({logits.shape[1]},)"
            )
    ce = F.cross_entropy(logits, target, weight=class_weights)
    return ce_weight * ce + dice_weight * soft_dice_loss(logits, target, eps)


def focal_loss(
    logits: Tensor, target: Tensor, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "mean"
) -> Tensor:
    """Focal loss ``FL(p_t) = -α_t (1 - p_t)^γ log(p_t)`` (Lin et al., ICCV 2017, eq. 5).

    Binary (targets in {0, 1}, same shape as logits): ``p = sigmoid(logits)``,
    ``α_t = α`` for positives and ``1 - α`` for negatives (as ``torchvision.ops.sigmoid_focal_loss``);
    ``alpha=None`` disables the weighting. Multiclass (``(N, C, ...)`` logits and ``(N, ...)``
    integer target): softmax ``p_t`` of the true class, ``alpha`` a scalar or ``(C,)`` per-class
    weights. ``gamma=0, alpha=None`` is plain (binary) cross-entropy.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"focal_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if gamma < 0:
        raise ValueError(f"focal_loss: gamma must be >= 0, got {gamma}")
    if _is_multiclass(logits, target):
        logits, target = _multiclass_pair(logits, target, "focal_loss")
        log_p = logits.log_softmax(dim=1)
        log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
        if alpha is not None:
            alpha_t = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
            if alpha_t.ndim == 1:
                if alpha_t.shape[0] != logits.shape[1]:
                    raise ValueError(f"focal_loss: alpha has {alpha_t.shape[0]} entries for {logits.shape[1]} classes")
                alpha_t = alpha_t[target]
            loss = alpha_t * loss
    else:
        logits, target = _binary_pair(logits, target, "focal_loss")
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = logits.sigmoid()
        p_t = p * target + (1.0 - p) * (1.0 - target)
        loss = ce * (1.0 - p_t) ** gamma
        if alpha is not None:
            loss = (alpha * target + (1.0 - alpha) * (1.0 - target)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def weighted_bce(logits: Tensor, target: Tensor, weight: Tensor, normalize: bool = False) -> Tensor:
    """Pixel-weighted binary cross-entropy, the energy of U-Net (Ronneberger et al. 2015, eq. 1)
    with the weight map ``w(x)`` of eq. 2 (:func:`cellnb.targets.unet_weight_map`).

    Returns ``mean(w · BCE)`` over all pixels, or ``Σ w · BCE / Σ w`` with ``normalize=True``.
    ``weight`` must have the target's shape (``(N, H, W)`` is accepted for ``(N, 1, H, W)`` logits).
    """
    logits, target = _binary_pair(logits, target, "weighted_bce")
    if weight.shape != logits.shape and logits.ndim == weight.ndim + 1 and logits.shape[1] == 1:
        weight = weight.unsqueeze(1)
    if weight.shape != logits.shape:
        raise ValueError(
            f"weighted_bce: weight shape {tuple(weight.shape)} does not match logits shape {tuple(logits.shape)}"
        )
    weight = weight.to(logits.dtype)
    loss = weight * F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if normalize:
        return loss.sum() / weight.sum().clamp_min(torch.finfo(logits.dtype).tiny)
    return loss.mean()


# --------------------------------------------------------------------------- counting
def count_l1(pred_count: Tensor, true_count: Tensor) -> Tensor:
    """Mean absolute count error ``mean |ĉ - c|`` over the batch (counts ``(N,)``)."""
    pred_count = pred_count.reshape(-1) if pred_count.ndim == 2 and pred_count.shape[1] == 1 else pred_count
    true_count = torch.as_tensor(true_count, device=pred_count.device)
    if pred_count.shape != true_count.shape:
        raise ValueError(
            f"count_l1: predicted counts {tuple(pred_count.shape)} and true counts {tuple(true_count.shape)} do not match"
        )
    return (pred_count - true_count.to(pred_count.dtype)).abs().mean()


def density_mse(pred_density: Tensor, true_density: Tensor, scale: float = 1.0) -> Tensor:
    """Pixel-wise mean squared error between density maps, ``scale² · mean (D̂ - D)²``.

    Lempitsky & Zisserman (2010) and the counting papers regress density maps with a per-pixel
    L2 loss; ``scale`` multiplies both maps first (density maps have tiny values, many released
    codes scale targets by 100 or 1000). ``(N, H, W)`` targets fit ``(N, 1, H, W)`` predictions.
    """
    pred_density, true_density = _binary_pair(pred_density, true_density, "density_mse")
    return ((pred_density - true_density) * scale).pow(2).mean()


# --------------------------------------------------------------------------- multitask
Term = tuple[str, str, Callable[[Tensor, Tensor], Tensor], float]


def multitask(terms: Mapping[str, Term]) -> Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], tuple[Tensor, dict[str, float]]]:
    """Build ``loss_fn(outputs, batch) -> (total, parts)`` from named terms.

    ``terms = {"seg": ("mask_logits", "mask", bce_dice_loss, 1.0), "count": ("count", "count", count_l1, 0.1)}``
    gives ``total = Σ weight · fn(outputs[output_key], batch[target_key])`` and
    ``parts = {name: float(fn(...))}`` (unweighted values, for the history). Missing keys raise a
    ``KeyError`` that names the key and what is available.
    """
    if not terms:
        raise ValueError("multitask: need at least one term")
    for name, term in terms.items():
        if len(term) != 4 or not callable(term[2]):
            raise ValueError(f"multitask: term {name!r} must be (output_key, target_key, fn, weight), got {term!r}")

    def loss_fn(outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name, (output_key, target_key, fn, weight) in terms.items():
            if output_key not in outputs:
                raise KeyError(f"multitask term {name!r}: model output {output_key!r} missing; outputs: {sorted(outputs)}")
            if target_key not in batch:
                raise KeyError(f"multitask term {name!r}: batch key {target_key!r} missing; batch: {sorted(batch)}")
            value = fn(outputs[output_key], batch[target_key])
            parts[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        return total, parts

    return loss_fn
