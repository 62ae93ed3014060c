"""Building blocks shared by several models.

SSRNet and ELMGAN's generator come from the same code base (``Roin626/SSRnet``), which cuts the
pix2pix U-Net encoder (Isola et al. 2017; ``eriklindernoren/PyTorch-GAN``) to six levels; the
pix2pix generator baseline uses the full stack. All three build it from :class:`UNetDown`.
"""

from __future__ import annotations

from torch import nn

PIX2PIX_ENCODER_LEVELS = 6  # the SSRnet repo's cut: H/2 ... H/64


class UNetDown(nn.Sequential):
    """pix2pix ``UNetDown``: 4×4 stride-2 conv (no bias) → [InstanceNorm] → LeakyReLU(0.2) → [Dropout]."""

    def __init__(self, cin: int, cout: int, normalize: bool = True, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False)]
        if normalize:
            layers.append(nn.InstanceNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2))
        if dropout:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


def pix2pix_widths(base_width: int, levels: int) -> list[int]:
    """Channel widths of the pix2pix encoder: ``base_width · min(2^i, 8)`` (64, 128, 256, 512, 512, …)."""
    if base_width < 1:
        raise ValueError(f"base_width must be >= 1, got {base_width}")
    return [base_width * min(2**i, 8) for i in range(levels)]


def pix2pix_encoder(in_channels: int, base_width: int, dropout: float = 0.0) -> nn.ModuleList:
    """The six-level encoder of SSRNet and ELMGAN (``SSRnet_bc05_2.py``): no norm on the first and
    last level, dropout on the last two."""
    w = pix2pix_widths(base_width, PIX2PIX_ENCODER_LEVELS)
    return nn.ModuleList([
        UNetDown(in_channels, w[0], normalize=False),
        UNetDown(w[0], w[1]),
        UNetDown(w[1], w[2]),
        UNetDown(w[2], w[3]),
        UNetDown(w[3], w[4], dropout=dropout),
        UNetDown(w[4], w[5], normalize=False, dropout=dropout),
    ])
