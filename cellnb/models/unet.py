"""Classic U-Net (Ronneberger et al., MICCAI 2015) with optional extra heads.

The baseline of every chapter. ``base_width=64, depth=4`` is the classic 64…1024 network
(≈31 M parameters with one output); ``base_width=16`` is the slim CPU option.
Padding keeps sizes ("same" convolutions), so inputs must be divisible by ``2**depth``.

Heads (``heads=``): ``mask`` -> ``mask_logits`` (N, C, H, W); ``density`` -> non-negative
``density`` (N, 1, H, W) via softplus; ``boundary`` -> ``boundary_logits``; ``marker`` ->
``marker_logits``; ``count`` -> ``count`` (N,) from the globally pooled bottleneck
(a linear layer + softplus, the "U-Net with a count head" baseline of SSRNet/ELMGAN).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from cellnb.models import outputs
from cellnb.models.registry import register_model

HEADS = ("mask", "density", "boundary", "marker", "count")


def check_input(x: torch.Tensor, in_channels: int, multiple: int, model: str) -> None:
    """Raise a clear ValueError for a wrong rank, channel count, dtype or size."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{model}: expected input of shape (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{model}: expected {in_channels} input channel(s), got {x.shape[1]}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{model}: expected a floating-point input, got {x.dtype}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{model}: input height and width must be multiples of {multiple}, got {h}x{w}")


class DoubleConv(nn.Sequential):
    """(conv 3×3 → BatchNorm → ReLU) × 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net encoder/decoder; ``forward`` returns a dict keyed by :mod:`cellnb.models.outputs`."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        base_width: int = 64,
        depth: int = 4,
        heads: Sequence[str] = ("mask",),
        upsampling: str = "transpose",
    ) -> None:
        super().__init__()
        unknown = sorted(set(heads) - set(HEADS))
        if unknown or not heads:
            raise ValueError(f"unknown or empty heads {unknown or list(heads)}; choose from {HEADS}")
        if upsampling not in ("transpose", "bilinear"):
            raise ValueError(f"upsampling must be 'transpose' or 'bilinear', got {upsampling!r}")
        self.in_channels, self.depth, self.heads = in_channels, depth, tuple(heads)
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList([DoubleConv(in_channels, widths[0])])
        self.encoders.extend(DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            if upsampling == "transpose":
                self.ups.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2))
            else:
                self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                              nn.Conv2d(widths[i + 1], widths[i], 1)))
            self.decoders.append(DoubleConv(2 * widths[i], widths[i]))
        self.out = nn.ModuleDict()
        if "mask" in heads:
            self.out["mask"] = nn.Conv2d(widths[0], num_classes, 1)
        for name in ("density", "boundary", "marker"):
            if name in heads:
                self.out[name] = nn.Conv2d(widths[0], 1, 1)
        if "count" in heads:
            self.count_fc = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, 2**self.depth, "UNet")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        bottleneck = skips.pop()
        x = bottleneck
        for up, dec in zip(self.ups, self.decoders):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        result: dict[str, torch.Tensor] = {}
        if "mask" in self.out:
            result[outputs.MASK_LOGITS] = self.out["mask"](x)
        if "density" in self.out:
            result[outputs.DENSITY] = F.softplus(self.out["density"](x))
        if "boundary" in self.out:
            result[outputs.BOUNDARY_LOGITS] = self.out["boundary"](x)
        if "marker" in self.out:
            result[outputs.MARKER_LOGITS] = self.out["marker"](x)
        if "count" in self.heads:
            pooled = bottleneck.mean(dim=(2, 3))
            result[outputs.COUNT] = F.softplus(self.count_fc(pooled)).squeeze(1)
        return result


@register_model("unet")
def unet(**kwargs) -> UNet:
    """Classic U-Net; ``base_width=64`` (default) is the 64…1024 network, 16 the slim one."""
    return UNet(**kwargs)
