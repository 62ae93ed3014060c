"""MC-Unet losses (Jin et al., BIBM 2022): density loss, boundary (focal) loss, two modes.

The paper's formulas are not public (abstract only: "the density and boundary loss is
constructed to guide the joint learning"). The released code
(``HuHaigen/Joint-Feature-Learning-for-Cell-Segmentation`` @99a7fed,
``trainner/UNetTrain.py``) trains with

    L = CE(logits, mask) + use_corner · FocalLoss(logits, corner) + use_density · MSE(logits, [1-d, d])

on the **single** 2-channel segmentation output, with ``use_corner = 0.15`` and
``use_density = 0`` (density off) in the only shipped config. Two modes are offered:

- ``mode="code"``: exactly that, on ``mask_logits`` (:func:`released_focal_loss`,
  :func:`released_density_loss`); the focal loss is ported op for op, misalignment included.
- ``mode="paper"``: the abstract's reading, a reconstruction: the boundary loss is a binary
  focal loss (α 0.9, γ 2, as in the code) on a separate ``boundary_logits`` head
  (:func:`focal_loss`), the density loss an MSE between a separate non-negative ``density``
  head and a count-preserving Gaussian density map (:func:`density_loss`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from cellnb.models import outputs

MODES = ("paper", "code")


def _check_same_shape(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.9, gamma: float = 2.0, eps: float = 1e-4
) -> torch.Tensor:
    """Binary focal loss on boundary logits (paper mode), mean over pixels.

    ``p = sigmoid(logits)``; ``p_t = p`` where ``target == 1`` else ``1 - p``, clamped to
    ``[eps, 1]`` as the released ``FocalLoss``; ``α_t = alpha`` on boundary pixels, ``1 - alpha``
    elsewhere; loss ``-α_t (1 - p_t)^γ log p_t`` (Lin et al. 2017, with the code's α 0.9, γ 2).
    ``logits`` and ``target`` have the same shape; ``target`` holds 0/1.
    """
    _check_same_shape(logits, target, "focal_loss")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    target = target.to(logits.dtype)
    prob = torch.sigmoid(logits)
    p_t = torch.where(target > 0.5, prob, 1.0 - prob).clamp(min=eps, max=1.0)
    alpha_t = torch.where(target > 0.5, torch.full_like(prob, alpha), torch.full_like(prob, 1.0 - alpha))
    return (-alpha_t * (1.0 - p_t) ** gamma * torch.log(p_t)).mean()


def released_focal_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.9, gamma: float = 2.0) -> torch.Tensor:
    """The released ``FocalLoss.forward`` (``trainner/UNetTrain.py``), op for op, on CPU or GPU.

    ``pred`` is the 2-channel segmentation output ``(N, 2, H, W)`` (raw logits in training),
    ``target`` the 0/1 boundary map ``(N, H, W)``. The code flattens ``pred`` to ``2NHW`` rows
    ``x_j`` and builds ``[1 - x_j, x_j]`` per row, but flattens ``cat(1 - t, t)`` of the
    ``NHW`` targets row-major, so row ``j`` gets class ``1 - t_{j//2}`` (``j`` even) or
    ``t_{j//2}`` (``j`` odd). Net effect: the channel-0 logits are compared with the top half
    of the boundary map and the channel-1 logits with the bottom half, each target pixel
    stretched over two neighbouring logits, one asked for ``1 - t`` and one for ``t``; no
    softmax is applied, the clamp ``[1e-4, 1]`` does the limiting. Mean over all ``2NHW`` rows.
    """
    if pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"released_focal_loss: expected (N, 2, H, W) logits, got {tuple(pred.shape)}")
    n, _, h, w = pred.shape
    if target.numel() != n * h * w:
        raise ValueError(f"released_focal_loss: expected {n * h * w} target pixels (N, H, W), got {tuple(target.shape)}")
    pred = pred.reshape(-1, 1)
    target = target.to(pred.dtype).reshape(-1, 1)
    pred = torch.cat((1 - pred, pred), dim=1)
    target = torch.cat((1 - target, target), dim=1)
    class_mask = torch.zeros(pred.shape[0], pred.shape[1], dtype=pred.dtype, device=pred.device)
    class_mask.scatter_(1, target.reshape(-1, 1).long(), 1.0)
    probs = (pred * class_mask).sum(dim=1).view(-1, 1).clamp(min=0.0001, max=1.0)
    alpha_table = torch.ones_like(class_mask)
    alpha_table[:, 0] = 1 - alpha
    alpha_table[:, 1] = alpha
    alpha_t = (alpha_table * class_mask).sum(dim=1).view(-1, 1)
    return (-alpha_t * torch.pow(1 - probs, gamma) * probs.log()).mean()


def density_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Density loss (paper mode): ``mean((scale·pred − scale·target)²)``.

    ``target`` is a count-preserving density map (sums to the number of cells,
    :func:`cellnb.targets.density_from_points`), so ``pred.sum()`` estimates the count.
    ``scale`` amplifies the tiny per-pixel values (a common counting trick; the paper's choice
    is unknown), which equals weighting the plain MSE by ``scale²``.
    """
    _check_same_shape(pred, target, "density_loss")
    return F.mse_loss(pred * scale, target.to(pred.dtype) * scale)


def released_density_loss(logits: torch.Tensor, density01: torch.Tensor) -> torch.Tensor:
    """Released density term: ``MSE(logits, [1 − d, d])`` on the 2-channel segmentation output.

    ``density01`` ``(N, H, W)`` is the grey-level density image in ``[0, 1]``
    (``data/cell_dataset.py`` stacks it as two channels).
    """
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"released_density_loss: expected (N, 2, H, W) logits, got {tuple(logits.shape)}")
    d = density01.reshape(logits.shape[0], 1, *logits.shape[-2:]).to(logits.dtype)
    return F.mse_loss(logits, torch.cat((1 - d, d), dim=1))


def normalise_density(density: torch.Tensor) -> torch.Tensor:
    """Per-image max-normalised density ``(N, H, W)`` in ``[0, 1]``: the 8-bit BMP the code reads [I]."""
    flat = density.reshape(density.shape[0], -1)
    peak = flat.max(dim=1, keepdim=True).values.clamp(min=1e-12)
    return (flat / peak).reshape(density.shape[0], *density.shape[-2:])


def mc_unet_loss(
    mode: str = "paper",
    boundary_weight: float = 0.15,
    density_weight: float = 0.0,
    density_scale: float = 100.0,
    alpha: float = 0.9,
    gamma: float = 2.0,
) -> Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]:
    """Training loss for :func:`cellnb.train.fit`: ``loss_fn(outputs, batch) -> (total, parts)``.

    ``batch`` holds ``mask`` ``(N, H, W)`` integer classes, ``boundary`` ``(N, H, W)`` 0/1 and
    ``density`` ``(N, H, W)`` count-preserving maps. A weight of 0 switches a term off;
    ``boundary_weight=0.15, density_weight=0`` is the shipped config. In paper mode a nonzero
    weight needs the matching model head (``boundary_logits`` / ``density``).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")

    def loss_fn(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = out[outputs.MASK_LOGITS]
        mask = batch["mask"].long().reshape(logits.shape[0], *logits.shape[-2:])
        total = F.cross_entropy(logits, mask)
        parts = {"ce": float(total.detach())}
        if boundary_weight:
            boundary = batch["boundary"].reshape(logits.shape[0], *logits.shape[-2:])
            if mode == "code":
                term = released_focal_loss(logits, boundary, alpha, gamma)
            else:
                if outputs.BOUNDARY_LOGITS not in out:
                    raise KeyError("paper mode with boundary_weight > 0 needs a model with the 'boundary' head")
                pred = out[outputs.BOUNDARY_LOGITS][:, 0]
                term = focal_loss(pred, boundary, alpha, gamma)
            total = total + boundary_weight * term
            parts["boundary"] = float(term.detach())
        if density_weight:
            density = batch["density"].reshape(logits.shape[0], *logits.shape[-2:])
            if mode == "code":
                term = released_density_loss(logits, normalise_density(density))
            else:
                if outputs.DENSITY not in out:
                    raise KeyError("paper mode with density_weight > 0 needs a model with the 'density' head")
                term = density_loss(out[outputs.DENSITY][:, 0], density.to(logits.dtype), density_scale)
            total = total + density_weight * term
            parts["density"] = float(term.detach())
        return total, parts

    return loss_fn
