"""MobileSR: a mobile-friendly transformer for efficient ×4 super-resolution (NTIRE 2022 ESR).

Follows the official model file ``sunny2109/MobileSR-NTIRE2022@550781f:models/mobilesr.py`` as
summarised in ``shared/papers/lowres_bloodcell.md`` §3 (there is no standalone paper):

- head: Conv 3×3, 3 → ``n_feats``;
- body: one stage per entry of ``ratios``; a stage is a :class:`TransformerBlock`
  (depthwise 3×3 conditional positional encoding, LayerNorm → non-overlapping ``window``×``window``
  multi-head self-attention without bias in qkv and without shifts, LayerNorm → MLP with
  expansion ``ratio``) followed by an :class:`InvertedResidual` block (1×1 expand → LeakyReLU 0.2 →
  depthwise 3×3 → LeakyReLU 0.2 → 1×1 project, + identity);
- fuse: concat [head, body] → Conv 3×3 → ``n_feats``;
- upsampler: [Conv 1×1 → ×4 channels → PixelShuffle(2)] × log2(scale) (sub-pixel convolution);
- tail: LeakyReLU 0.2 → Conv 3×3 → 3 channels;
- global skip: output = tail + bilinear ×scale upsampling of the input (align_corners=False).

The default configuration (``n_feats=40, n_heads=8, ratios=(4, 2, 2, 2, 4), window=8``) has
175,883 parameters, the official count (0.176 M).

Deviations: none in the architecture. Weights are trained from scratch (no pretrained checkpoint
is downloaded). The output is not clamped; clamp before computing PSNR.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cellnb.models import outputs
from cellnb.models.registry import register_model
from cellnb.models.unet import check_input


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping square windows (no shift, no position bias).

    Input and output are channels-last ``(N, H, W, C)``; H and W are padded right/bottom to a
    multiple of ``window`` and cropped back, as in the official code.
    """

    def __init__(self, dim: int, n_heads: int, window: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"WindowAttention: dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.window = n_heads, window
        self.scale = (dim // n_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        win = self.window
        pad_h, pad_w = (-h) % win, (-w) % win
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        # (N, Hp, Wp, C) -> (N * nWin, win*win, C)
        windows = x.view(n, hp // win, win, wp // win, win, c).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, win * win, c)
        qkv = self.qkv(windows).reshape(windows.shape[0], win * win, 3, self.n_heads, c // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, tokens, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(windows.shape[0], win * win, c)
        out = self.proj(out)
        out = out.view(n, hp // win, wp // win, win, win, c).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(n, hp, wp, c)
        return out[:, :h, :w, :].contiguous()


class TransformerBlock(nn.Module):
    """x += DWConv3×3(x); x += WMSA(LN(x)); x += MLP(LN(x)) (official ``TransformerBlock``)."""

    def __init__(self, dim: int, n_heads: int, ratio: int, window: int) -> None:
        super().__init__()
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, n_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos(x)
        y = x.permute(0, 2, 3, 1)  # channels last for LayerNorm / Linear
        y = y + self.attn(self.norm1(y))
        y = y + self.mlp(self.norm2(y))
        return y.permute(0, 3, 1, 2).contiguous()


class InvertedResidual(nn.Sequential):
    """1×1 expand → LeakyReLU 0.2 → depthwise 3×3 → LeakyReLU 0.2 → 1×1 project (+ identity)."""

    def __init__(self, dim: int, ratio: int) -> None:
        hidden = dim * ratio
        super().__init__(
            nn.Conv2d(dim, hidden, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class MobileSR(nn.Module):
    """MobileSR ×``scale``; ``forward`` returns ``{"sr_image": (N, 3, sH, sW)}``.

    Args:
        in_channels: image channels (3 for RGB).
        n_feats: feature width (official 40).
        n_heads: attention heads (official 8; head dim 5).
        ratios: MLP / inverted-residual expansion ratio per stage (official (4, 2, 2, 2, 4)).
        scale: upscaling factor, a power of two (official 4).
        window: attention window side (official 8).
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_feats: int = 40,
        n_heads: int = 8,
        ratios: Sequence[int] = (4, 2, 2, 2, 4),
        scale: int = 4,
        window: int = 8,
    ) -> None:
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"MobileSR: scale must be a power of two >= 2, got {scale}")
        if not ratios:
            raise ValueError("MobileSR: ratios must name at least one stage")
        self.in_channels, self.scale = in_channels, scale
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        self.body = nn.Sequential(*[
            nn.Sequential(TransformerBlock(n_feats, n_heads, r, window), InvertedResidual(n_feats, r))
            for r in ratios
        ])
        self.fuse = nn.Conv2d(2 * n_feats, n_feats, 3, padding=1)
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            up += [nn.Conv2d(n_feats, 4 * n_feats, 1), nn.PixelShuffle(2)]
        self.upsampler = nn.Sequential(*up)
        self.tail = nn.Sequential(nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(n_feats, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, 1, "MobileSR")
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        head = self.head(x)
        feats = self.fuse(torch.cat([head, self.body(head)], dim=1))
        sr = self.tail(self.upsampler(feats)) + base
        return {outputs.SR_IMAGE: sr}


@register_model("mobilesr")
def mobilesr(**kwargs) -> MobileSR:
    """MobileSR ×4 (official config by default, 175,883 parameters)."""
    return MobileSR(**kwargs)
