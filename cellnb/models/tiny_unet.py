"""TinyU-Net: Lighter yet better U-Net with cascaded multi-receptive fields (Chen et al., MICCAI 2024).

Follows the paper (§2.1 CMRF module, §2.2 TinyU-Net, Fig. 2) and the released model file
``ChenJunren-Lab/TinyU-Net@7314772`` as summarised in ``shared/papers/lowres_bloodcell.md`` §4.

**CMRF block** (C_in → C_out, N = 8 cascades, e = 0.5):

1. PWConv-BN-GELU, C_in → C_out / N;
2. split the channels by parity: X_a = channels 0, 2, 4, …; X_b = channels 1, 3, 5, …;
3. cascade of N − 1 depthwise 3×3 conv + BN (no activation): d₁ = DW₁(X_b), d_k = DW_k(d_{k−1})
   (receptive fields 3, 5, …, 2N − 1);
4. concat [X_a + X_b, d₁, …, d_{N−1}] (C_out / 2 channels) → PWConv-BN-GELU → C_out;
5. residual add only when C_in == C_out (never inside TinyU-Net).

BatchNorm uses eps 1e-3 and momentum 0.03 (the released ``Conv`` helper).

**TinyU-Net**: four CMRF encoder stages (3 → 64 → 128 → 256 → 512, max-pool between and after
them, no bottleneck block), four decoder stages (bicubic ×2 upsampling, concat the skip, CMRF),
1×1 head to ``num_classes`` (2) logits. Default size 481,170 parameters (paper: 0.48 M).

Deviations: ``widths`` and ``bn_momentum`` can be changed for CPU runs (the ``slim`` size of
``cellnb.methods.lowres_bloodcell``); the default is the paper's network. The decoder applies each
CMRF's first point-wise conv before the bicubic upsampling (:meth:`TinyUNet.decode`; the same output,
less work); :meth:`TinyUNet.forward_reference` keeps the released order for the tests.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cellnb.models import outputs
from cellnb.models.registry import register_model
from cellnb.models.unet import check_input

BN_EPS, BN_MOMENTUM = 1e-3, 0.03


class ConvBN(nn.Sequential):
    """Conv (no bias) → BatchNorm(eps 1e-3, momentum 0.03) → optional GELU (the released ``Conv``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, groups: int = 1, act: bool = True,
                 bn_momentum: float = BN_MOMENTUM) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=BN_EPS, momentum=bn_momentum),
        ]
        if act:
            layers.append(nn.GELU())
        super().__init__(*layers)


class CMRF(nn.Module):
    """Cascade Multi-Receptive Fields block (paper §2.1, Eq. 1–3; released ``CMRF``)."""

    def __init__(self, in_channels: int, out_channels: int, n: int = 8, expansion: float = 0.5,
                 shortcut: bool = True, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        if out_channels % (2 * n):
            raise ValueError(f"CMRF: out_channels {out_channels} must be divisible by 2*N = {2 * n}")
        hidden = int(out_channels * expansion / n)  # channels of each parity half
        self.add = shortcut and in_channels == out_channels
        m = bn_momentum
        self.pwconv1 = ConvBN(in_channels, out_channels // n, 1, bn_momentum=m)
        self.cascade = nn.ModuleList(ConvBN(hidden, hidden, 3, groups=hidden, act=False, bn_momentum=m)
                                     for _ in range(n - 1))
        self.pwconv2 = ConvBN(out_channels // 2, out_channels, 1, bn_momentum=m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_pwconv1(self.pwconv1(x), x)

    def after_pwconv1(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 2–5 on the output ``y`` of the first point-wise conv (``x``: the block input, for the
        residual)."""
        x_a, x_b = y[:, 0::2], y[:, 1::2]
        branches = [x_a + x_b]
        d = x_b
        for dw in self.cascade:
            d = dw(d)
            branches.append(d)
        y = self.pwconv2(torch.cat(branches, dim=1))
        return x + y if self.add and x is not None else y


class TinyUNet(nn.Module):
    """TinyU-Net; ``forward`` returns ``{"mask_logits": (N, num_classes, H, W)}``; H, W multiples of 16.

    ``bn_momentum`` is the released 0.03 by default; the slim CPU sizes use PyTorch's 0.1 so that the
    eval-mode statistics follow the weights during a few hundred steps (see the chapter's deviations).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, widths: Sequence[int] = (64, 128, 256, 512),
                 n: int = 8, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or any(w % (2 * n) for w in widths):
            raise ValueError(f"TinyUNet: widths {widths} must be non-empty multiples of 2*N = {2 * n}")
        self.in_channels, self.multiple = in_channels, 2 ** len(widths)
        chans = (in_channels,) + widths
        self.encoders = nn.ModuleList(CMRF(chans[i], chans[i + 1], n, bn_momentum=bn_momentum)
                                      for i in range(len(widths)))
        self.decoders = nn.ModuleList()
        below = widths[-1]  # channels arriving from the level below (max-pooled last encoder)
        for w in reversed(widths):
            self.decoders.append(CMRF(below + w, w, n, bn_momentum=bn_momentum))
            below = w
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, self.multiple, "TinyUNet")
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        for dec in self.decoders:
            x = self.decode(dec, x, skips.pop())
        return {outputs.MASK_LOGITS: self.head(x)}

    @staticmethod
    def decode(dec: CMRF, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``dec(cat[bicubic×2(below), skip])``, computed with the upsampling after the first 1×1 conv.

        The released decoder upsamples ``below`` (C channels) and concatenates the skip before the
        CMRF's bias-free point-wise conv. Bicubic interpolation is linear and acts on each channel
        alone, so it commutes with a 1×1 conv: ``W·cat[up(b), s] = up(W_b·b) + W_s·s``. Upsampling the
        C/8 output channels of ``W_b·b`` instead of the C input channels gives the same numbers (up to
        float rounding; checked in the tests) with 8–16× less interpolation work, which was 40 % of a
        CPU training step. Parameters and ``state_dict`` keys are those of the released model.
        """
        conv = dec.pwconv1[0]
        c = below.shape[1]
        y = F.interpolate(F.conv2d(below, conv.weight[:, :c]), scale_factor=2, mode="bicubic", align_corners=False)
        y = y + F.conv2d(skip, conv.weight[:, c:])
        for layer in list(dec.pwconv1)[1:]:
            y = layer(y)
        return dec.after_pwconv1(y)

    def forward_reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The released decoder order (upsample, concat, CMRF); for tests of :meth:`decode`."""
        check_input(x, self.in_channels, self.multiple, "TinyUNet")
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        for dec in self.decoders:
            x = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return {outputs.MASK_LOGITS: self.head(x)}


@register_model("tiny_unet")
def tiny_unet(**kwargs) -> TinyUNet:
    """TinyU-Net (paper configuration by default: 481,170 parameters)."""
    return TinyUNet(**kwargs)
