"""ELMGAN losses: the NH (Norm-Combined Hybrid) generator loss and the LSGAN discriminator loss.

**Reconstructed, not copied.** The paper's NH-loss formula is not reachable (abstract only) and
``Roin626/ELMGAN`` holds no code. The reconstruction follows ``/work/shared/papers/elmgan.md`` §5:
the authors' training scaffolding is the ``eriklindernoren/PyTorch-GAN`` pix2pix template
(``criterion_GAN = MSELoss`` i.e. LSGAN, ``criterion_pixelwise = L1Loss``), and their SSRNet run
name ``Hloss_10pixel_1count1`` ties "H(ybrid) loss" to the weights 10 (pixel) and 1 (count).

Generator (NH loss, adversarial part included)::

    L_G = λ_adv · mean (D(x, ŷ, ĉ) − 1)²                      (LSGAN, pix2pix template)
        + λ_l1 · mean |ŷ − y| + λ_l2 · mean (ŷ − y)²            (pixel norms)
        + λ_count · mean ((ĉ − c) / s)²                          (count, L2)

"Norm-combined" is read as the L1 norm on the segmentation combined with the L2 norm on the
count (the released weighting 10·L1 + 1·MSE); an optional L2 pixel term (``lambda_l2``, default 0)
lets the L1/L2 pixel mix be varied. ``s`` (``count_scale``) divides the counts so that the count
term has the pixel term's order of magnitude: the released target was a 1–24 "count level".

Discriminator (pix2pix template): ``L_D = ½ [mean (D(x, y, c) − 1)² + mean D(x, ŷ, ĉ)²]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def lsgan_loss(logits: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss ``mean (D − t)²`` with t = 1 (real) or 0 (fake) (Mao et al. 2017)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return torch.mean((logits - target) ** 2)


def nh_loss(
    mask_prob: Tensor,
    mask_true: Tensor,
    count_pred: Tensor,
    count_true: Tensor,
    d_fake: Tensor | None = None,
    *,
    lambda_adv: float = 1.0,
    lambda_l1: float = 10.0,
    lambda_l2: float = 0.0,
    lambda_count: float = 1.0,
    count_scale: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """NH generator loss (reconstruction, module docstring); returns ``(total, parts)``.

    ``mask_prob`` and ``mask_true`` are (N, 1, H, W) in [0, 1]; counts are (N,).
    ``d_fake`` are the discriminator's patch logits on the generated pair; ``None`` or
    ``lambda_adv = 0`` drops the adversarial term (the "no-GAN" ablation).
    """
    _check_same_shape(mask_prob, mask_true.to(mask_prob.dtype), "nh_loss mask")
    count_pred, count_true = count_pred.reshape(-1), count_true.reshape(-1).to(count_pred.dtype)
    _check_same_shape(count_pred, count_true, "nh_loss count")
    if count_scale <= 0:
        raise ValueError(f"count_scale must be positive, got {count_scale}")
    diff = mask_prob - mask_true.to(mask_prob.dtype)
    l1 = diff.abs().mean()
    l2 = (diff**2).mean()
    count = (((count_pred - count_true) / count_scale) ** 2).mean()
    total = lambda_l1 * l1 + lambda_l2 * l2 + lambda_count * count
    adv = torch.zeros((), dtype=total.dtype, device=total.device)
    if d_fake is not None and lambda_adv:
        adv = lsgan_loss(d_fake, real=True)
        total = total + lambda_adv * adv
    parts = {"g_adv": float(adv.detach()), "g_l1": float(l1.detach()), "g_l2": float(l2.detach()),
             "g_count": float(count.detach()), "g_total": float(total.detach())}
    return total, parts


def discriminator_loss(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, dict[str, float]]:
    """pix2pix/LSGAN discriminator loss ``½ [mean (D_real − 1)² + mean D_fake²]``; ``(total, parts)``."""
    real = lsgan_loss(d_real, real=True)
    fake = lsgan_loss(d_fake, real=False)
    total = 0.5 * (real + fake)
    return total, {"d_real": float(real.detach()), "d_fake": float(fake.detach()), "d_total": float(total.detach())}
