"""SSRNet multitask losses: the OM loss as released, and learned uncertainty weighting.

The paper's "Optimized Multitask loss" (OM loss) formula is not reachable (abstract only). The
released training script ``SSRnet_bc05_2.py`` trains with

    L = λ_pixel · L1(map, mask) + λ_count · MSE(count, true count),  λ_pixel = 10, λ_count = 1

(CLI defaults ``--lambda_pixel 10 --lambda_count 1``; run name ``…_Hloss_10pixel_1count1``), with
no adversarial term. :func:`om_loss` is that loss ("OM loss as released").

The documented alternative is homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR
2018, eq. 7): ``L = Σ_t ½·exp(-s_t)·L_t + ½·s_t`` with learnable ``s_t = log σ_t²``
(:class:`UncertaintyWeighting`). Its two log-variances must be optimised with the model, so the
experiment attaches the module to the model (``model.loss_weights``) before :func:`cellnb.train.fit`.

Both losses accept any model whose outputs have ``count`` and either ``density`` (SSRNet's
distribution map, regressed directly) or ``mask_logits`` (e.g. the U-Net baseline; compared
through ``sigmoid``), so the baseline is trained with the same objective.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from cellnb.models import outputs

Tensor = torch.Tensor


def predicted_map(out: Mapping[str, Tensor]) -> Tensor:
    """The model's foreground map in mask units: ``density`` as is, else ``sigmoid(mask_logits)``."""
    if outputs.DENSITY in out:
        return out[outputs.DENSITY]
    if outputs.MASK_LOGITS in out:
        return torch.sigmoid(out[outputs.MASK_LOGITS])
    raise KeyError(f"model outputs {sorted(out)} have neither {outputs.DENSITY!r} nor {outputs.MASK_LOGITS!r}")


def _task_terms(out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """L1 between the map and the mask (every pixel, every map channel) and MSE of the counts."""
    if outputs.COUNT not in out:
        raise KeyError(f"model outputs {sorted(out)} lack {outputs.COUNT!r}")
    for key in ("mask", "count"):
        if key not in batch:
            raise KeyError(f"batch lacks {key!r}; has {sorted(batch)}")
    pred = predicted_map(out)
    mask = batch["mask"].to(pred.dtype)
    if mask.ndim == pred.ndim - 1:
        mask = mask.unsqueeze(1)
    if mask.shape[0] != pred.shape[0] or mask.shape[-2:] != pred.shape[-2:] or mask.shape[1] not in (1, pred.shape[1]):
        raise ValueError(f"SSRNet loss: map {tuple(pred.shape)} and mask {tuple(mask.shape)} do not match")
    pixel = F.l1_loss(pred, mask.expand_as(pred))
    count_pred = out[outputs.COUNT].reshape(-1)
    count_true = batch["count"].to(count_pred.dtype).reshape(-1)
    if count_pred.shape != count_true.shape:
        raise ValueError(f"SSRNet loss: {count_pred.numel()} predicted counts for {count_true.numel()} targets")
    return pixel, F.mse_loss(count_pred, count_true)


def om_loss(
    out: Mapping[str, Tensor],
    batch: Mapping[str, Tensor],
    lambda_pixel: float = 10.0,
    lambda_count: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """OM loss as released: ``λ_pixel·L1(map, mask) + λ_count·MSE(count)`` (``SSRnet_bc05_2.py``).

    Returns ``(total, {"pixel_l1", "count_mse", "total"})`` for :func:`cellnb.train.fit`.

    >>> import torch
    >>> out = {"density": torch.zeros(1, 1, 2, 2), "count": torch.tensor([3.0])}
    >>> batch = {"mask": torch.ones(1, 1, 2, 2), "count": torch.tensor([1.0])}
    >>> float(om_loss(out, batch)[0])  # 10 * 1 + 1 * (3 - 1)^2
    14.0
    """
    pixel, count = _task_terms(out, batch)
    total = lambda_pixel * pixel + lambda_count * count
    return total, {"pixel_l1": float(pixel.detach()), "count_mse": float(count.detach()), "total": float(total.detach())}


class UncertaintyWeighting(nn.Module):
    """Kendall et al. 2018 (eq. 7) weighting of the pixel-L1 and count-MSE terms.

    ``L = ½·exp(-s_pixel)·L1 + ½·s_pixel + ½·exp(-s_count)·MSE + ½·s_count``, ``s`` = log σ²
    learned with the model. At the optimum ``exp(s_t) = L_t``, so each task is weighted by the
    inverse of its own current loss, whatever its units. ``init_log_var="first_batch"`` (default)
    starts at that optimum for the first training batch; a number starts every ``s`` there
    (Kendall et al. use 0).
    """

    def __init__(self, init_log_var: float | str = "first_batch") -> None:
        super().__init__()
        if not (init_log_var == "first_batch" or isinstance(init_log_var, (int, float))):
            raise ValueError(f"init_log_var must be a number or 'first_batch', got {init_log_var!r}")
        self.init_from_first_batch = init_log_var == "first_batch"
        start = 0.0 if self.init_from_first_batch else float(init_log_var)
        self.log_vars = nn.Parameter(torch.full((2,), start))

    def forward(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        pixel, count = _task_terms(out, batch)
        if self.init_from_first_batch and self.training:
            # start at the stationary point s_t = log L_t of the first batch: Adam moves s by about
            # one learning rate per step, too slowly to find it from 0 in a short run (Deviations)
            with torch.no_grad():
                self.log_vars.copy_(torch.log(torch.stack([pixel.detach(), count.detach()]).clamp_min(1e-8)))
            self.init_from_first_batch = False
        s_pixel, s_count = self.log_vars[0], self.log_vars[1]
        total = 0.5 * (torch.exp(-s_pixel) * pixel + s_pixel) + 0.5 * (torch.exp(-s_count) * count + s_count)
        return total, {
            "pixel_l1": float(pixel.detach()), "count_mse": float(count.detach()), "total": float(total.detach()),
            "weight_pixel": float(0.5 * torch.exp(-s_pixel).detach()),
            "weight_count": float(0.5 * torch.exp(-s_count).detach()),
        }


LOSSES = ("om", "uncertainty", "pixel")


def make_loss(kind: str, model: nn.Module | None = None, **kwargs):
    """``"om"`` -> :func:`om_loss` (kwargs: λ's); ``"pixel"`` -> the map term alone (``λ_count = 0``,
    for the decoder ablation); ``"uncertainty"`` -> an :class:`UncertaintyWeighting` attached to
    ``model`` as ``model.loss_weights`` so that its parameters are trained with the model."""
    if kind == "om":
        return lambda out, batch: om_loss(out, batch, **kwargs)
    if kind == "pixel":
        return lambda out, batch: om_loss(out, batch, lambda_count=0.0, **kwargs)
    if kind == "uncertainty":
        if model is None:
            raise ValueError("uncertainty weighting needs the model: its log-variances train with it")
        model.loss_weights = UncertaintyWeighting(**kwargs)
        return model.loss_weights
    raise ValueError(f"unknown SSRNet loss {kind!r}; choose from {LOSSES}")
