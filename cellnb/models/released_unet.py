"""The U-Net of the SSRNet repository (``Roin626/SSRnet``, ``model/unetmodel.py::U_Net``): the
efficiency baseline SSRNet's abstract compares against.

It is the classic five-level U-Net (widths 64·2^k, two 3×3 conv + BatchNorm + ReLU per level,
2×2 max pooling) whose decoder upsamples with ``nn.Upsample(scale_factor=2)`` (nearest) followed by
a 3×3 conv + BatchNorm + ReLU (``up_conv``) instead of a transposed convolution; a final 1×1 conv
gives ``out_channels`` maps (3 in the released code, RGB in and out). At 3×256×256 it has
34.5 M parameters and 65.4 GMACs (tests/test_ssrnet.py checks both).

Output: ``{"mask_logits": (N, out_channels, H, W)}``. ``base_width`` scales every width (64 =
released). Inputs must be multiples of 16 (four pooling steps).
"""

from __future__ import annotations

import torch
from torch import nn

from cellnb.models import outputs
from cellnb.models.registry import register_model
from cellnb.models.unet import check_input


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """``conv_block``: (3×3 conv with bias → BatchNorm → ReLU) × 2."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


def _up_conv(cin: int, cout: int) -> nn.Sequential:
    """``up_conv``: nearest ×2 upsampling → 3×3 conv with bias → BatchNorm → ReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1, bias=True),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ReleasedUNet(nn.Module):
    """``U_Net(in_ch, out_ch)`` of the SSRNet repository (see the module docstring)."""

    multiple = 16

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base_width: int = 64) -> None:
        super().__init__()
        if base_width < 1:
            raise ValueError(f"base_width must be positive, got {base_width}")
        self.in_channels = in_channels
        f = [base_width * 2 ** k for k in range(5)]
        self.pool = nn.MaxPool2d(2, 2)
        self.enc = nn.ModuleList([_double_conv(in_channels, f[0])] + [_double_conv(f[k - 1], f[k]) for k in range(1, 5)])
        self.up = nn.ModuleList([_up_conv(f[k], f[k - 1]) for k in range(4, 0, -1)])
        self.dec = nn.ModuleList([_double_conv(f[k], f[k - 1]) for k in range(4, 0, -1)])
        self.head = nn.Conv2d(f[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, self.multiple, "ReleasedUNet")
        skips = []
        for k, block in enumerate(self.enc):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return {outputs.MASK_LOGITS: self.head(x)}


@register_model("released_unet")
def released_unet(**kwargs) -> ReleasedUNet:
    """The SSRNet repository's ``U_Net`` (Upsample + 3×3 conv decoder), the efficiency baseline."""
    return ReleasedUNet(**kwargs)
