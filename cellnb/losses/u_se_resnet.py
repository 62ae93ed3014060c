"""U-SE-ResNet loss: binary cross-entropy weighted by a sharpening distance-to-border map.

Released code (``CIVA-Lab/U-SE-ResNet-for-Cell-Tracking-Challenge`` @51bada3):

- ``data.py::get_weight_map``: borders B = Canny edges of the *instance label image*
  (sigma 1, ``low_threshold=.1, use_quantiles=True``), d = distance to the nearest border pixel,
  ``w = (d_max - d) / d_max`` over the whole image (1 on borders, 0 at the farthest pixel).
  :func:`canny_edge_weight` reproduces it.
- ``trainer.py``: the loss uses ``W = w ** p`` with ``p = (epoch / 50) ** 5`` (:func:`power_schedule`)
  and ``L = sum(W * BCE(y_hat, y)) / sum(W)`` over batch, both channels (mask, marker) and pixels
  (:func:`edge_weighted_bce`).

Spec: ``shared/papers/usere_resnet.md`` §3.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.feature import canny

from cellnb.models import outputs

PAPER_EPOCHS = 120
POWER_PIVOT_EPOCH = 50
POWER_EXPONENT = 5


def canny_edge_weight(labels: np.ndarray) -> np.ndarray:
    """Linear edge weight ``w = (d_max - d) / d_max`` ``(H, W)`` float32 (released ``get_weight_map``).

    ``d`` is the Euclidean distance to the nearest Canny edge of the instance label image
    (``skimage.feature.canny(labels, sigma=1, low_threshold=0.1, high_threshold=0.2,
    use_quantiles=True)``), so outer cell outlines *and* interfaces between touching cells are
    borders. An image without any edge (no cells) gets uniform weight 1.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label image (H, W), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must have an integer dtype (instance ids), got {labels.dtype}")
    borders = canny(labels.astype(np.float64), sigma=1.0, low_threshold=0.1, high_threshold=0.2,
                    use_quantiles=True)
    if not borders.any():
        return np.ones(labels.shape, np.float32)
    dist = ndimage.distance_transform_edt(~borders)
    dmax = dist.max()
    if dmax == 0:
        return np.ones(labels.shape, np.float32)
    return ((dmax - dist) / dmax).astype(np.float32)


def power_schedule(epoch: float, total_epochs: int = PAPER_EPOCHS) -> float:
    """Sharpening power ``p = (e / 50) ** 5`` (released ``trainer.py``), e the 0-based epoch.

    With ``total_epochs != 120`` the epoch is rescaled to the paper's 120-epoch run,
    ``e = epoch * 120 / total_epochs``, so a short CPU run walks through the same p range
    (0 at the start, 1 at 5/12 of training, ≈ 76 at the end); the rescaling is a deviation.
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be positive, got {total_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    scaled = float(epoch) * PAPER_EPOCHS / float(total_epochs)
    return (scaled / POWER_PIVOT_EPOCH) ** POWER_EXPONENT


def edge_weighted_bce(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, power: float, eps: float = 1e-12
) -> torch.Tensor:
    """``sum(W * BCE(sigmoid(logits), target)) / sum(W)`` with ``W = weight ** power``.

    ``logits`` and ``target`` are (N, C, H, W) (C = 2: mask, marker); ``weight`` is (N, 1, H, W)
    or (N, H, W) and is broadcast over the channels as in the released trainer. ``power = 0``
    gives plain mean BCE (``0 ** 0 = 1``).
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} != logits shape {tuple(logits.shape)}")
    if weight.ndim == 3:
        weight = weight.unsqueeze(1)
    if weight.ndim != 4 or weight.shape[0] != logits.shape[0] or weight.shape[1] != 1 or weight.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"weight must be (N, 1, H, W) matching logits {tuple(logits.shape)}, got {tuple(weight.shape)}")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    w = weight.clamp(min=0).pow(power).expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return (w * bce).sum() / w.sum().clamp(min=eps)


class USEResNetLoss:
    """Training loss with the ``(outputs, batch) -> (total, parts)`` contract and an epoch state.

    ``batch`` holds ``mask`` and ``marker`` (N, 1, H, W) in {0, 1} and ``weight`` (N, 1, H, W).
    Call :meth:`set_epoch` at the start of every epoch; ``edge_weight=False`` keeps p = 0
    (plain BCE, the ablation).
    """

    def __init__(self, total_epochs: int, edge_weight: bool = True,
                 schedule: Callable[[float, int], float] = power_schedule) -> None:
        self.total_epochs = int(total_epochs)
        self.edge_weight = bool(edge_weight)
        self.schedule = schedule
        self.power = 0.0

    def set_epoch(self, epoch: int) -> float:
        self.power = self.schedule(epoch, self.total_epochs) if self.edge_weight else 0.0
        return self.power

    def __call__(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        logits = torch.cat([out[outputs.MASK_LOGITS], out[outputs.MARKER_LOGITS]], dim=1)
        target = torch.cat([batch["mask"], batch["marker"]], dim=1).float()
        weight = batch["weight"].to(logits.device)
        total = edge_weighted_bce(logits, target.to(logits.device), weight, self.power)
        return total, {"weighted_bce": float(total.detach()), "power": float(self.power)}
