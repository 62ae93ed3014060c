"""ELMGAN (Deng, Wang & Zhang, Knowledge-Based Systems 252:109434, 2022): LFMMG generator, CMTD.

The ELMGAN repository (``Roin626/ELMGAN`` @cbb0402) holds only a README, so every block here is
reconstructed from the same authors' later code, ``Roin626/SSRnet`` (``models.py``,
``model/model_test.py::GeneratorUNet`` labelled "FMMG"), which is built on the pix2pix template of
``eriklindernoren/PyTorch-GAN``. See ``/work/shared/papers/elmgan.md`` §2–§4.

- :class:`FoldBeyondNearestUpsampling` (FBU, SSRnet ``models.py::FBupsampling``): a bias-free
  1×1 convolution C_in → C_out·s² followed by a depth-to-space fold. The released fold is two
  reshapes; it equals ``nn.PixelShuffle(s)`` up to a fixed permutation of the learned 1×1 weights,
  so PixelShuffle is used (same function class, same parameters, same cost).
- :class:`LFMMG`: 6 pix2pix ``UNetDown`` blocks (Conv 4×4 s2, IN except d1/d6, LeakyReLU 0.2,
  dropout on d5/d6) and 5 ``UNetDUp`` blocks (FBU ×2 → IN → LeakyReLU 0.2 → [dropout] → concat the
  encoder skip: the "multi-scale feature fusion"), a segmentation head and a count head on the
  bottleneck (AdaptiveAvgPool 8×8 → Conv 8×8 → scalar).
- :class:`PatchDiscriminator`: the pix2pix conditional PatchGAN (``models.py::Discriminator``);
  with ``with_count=True`` it is the book's **CMTD** (see below).
- :class:`Pix2PixGenerator`: the 8-level pix2pix U-Net generator (``models.py::GeneratorUNet``,
  ConvTranspose up-blocks), the "traditional GAN" baseline, with the same count head.

Deviations:
    (1) The released FMMG output is at H/2 (its last ``nn.Upsample`` is commented out and a
    commented ``FBUpsampling(32→out, s=2)`` sits after the 4×4 conv); we put that FBU ×2 back, so
    the mask is full resolution. (2) The head returns ``mask_logits``; ``sigmoid(logits)`` equals
    the released ``Tanh`` output rescaled to [0, 1] (tanh(z) = 2·sigmoid(2z) − 1). (3) The dead
    ``conv_p`` ("P matrix", built but never used in ``forward``) is not built: it would add
    parameters that do nothing. (4) ``count_scale`` multiplies the linear count head so that a
    head initialised near 0 starts in "count / scale" units (the released target was a 1–24 plate
    column; our counts go to 100). (5) CMTD is undocumented; we chose a conditional PatchGAN that
    sees image, predicted (or true) mask **and** the count as a constant plane (``with_count``),
    so the adversarial signal judges segmentation and count together. (6) ``base_width`` scales
    all widths (64 = the released sizes) so CPU profiles can train a slim copy.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from cellnb.models import outputs
from cellnb.models.blocks import PIX2PIX_ENCODER_LEVELS, UNetDown, pix2pix_encoder, pix2pix_widths
from cellnb.models.registry import register_model
from cellnb.models.unet import check_input

UPSAMPLING_MODES = ("fbu", "nearest", "bilinear")


class FoldBeyondNearestUpsampling(nn.Module):
    """FBU: bias-free 1×1 conv C_in → C_out·s², then fold channels into an s×s block per pixel.

    Follows ``Roin626/SSRnet`` ``models.py::FBupsampling`` (= DUpsampling of Tian et al.,
    CVPR 2019). Nearest-neighbour upsampling is the special case where the 1×1 conv copies each
    channel to all s² sub-positions ("beyond nearest"). ``(N, C_in, H, W) -> (N, C_out, sH, sW)``.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2) -> None:
        super().__init__()
        if scale < 1 or int(scale) != scale:
            raise ValueError(f"FBU scale must be a positive integer, got {scale!r}")
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, int(scale)
        self.conv_w = nn.Conv2d(in_channels, out_channels * scale * scale, 1, bias=False)
        self.fold = nn.PixelShuffle(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"FBU expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return self.fold(self.conv_w(x))


class InterpolationUpsampling(nn.Module):
    """Ablation of FBU (SSRnet ``UNetbilineUp``): 1×1 conv C_in → C_out, then nearest/bilinear ×s."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, mode: str = "bilinear") -> None:
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.in_channels, self.scale, self.mode = in_channels, int(scale), mode
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"InterpolationUpsampling expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = self.conv(x)
        if self.mode == "bilinear":
            return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


def make_upsampler(in_channels: int, out_channels: int, mode: str, scale: int = 2) -> nn.Module:
    """``fbu`` -> :class:`FoldBeyondNearestUpsampling`; ``nearest``/``bilinear`` -> 1×1 conv + interpolation."""
    if mode == "fbu":
        return FoldBeyondNearestUpsampling(in_channels, out_channels, scale)
    if mode in ("nearest", "bilinear"):
        return InterpolationUpsampling(in_channels, out_channels, scale, mode)
    raise ValueError(f"unknown upsampling {mode!r}; choose from {UPSAMPLING_MODES}")


class UpFuse(nn.Module):
    """SSRnet ``UNetDUp`` / pix2pix ``UNetUp``: up ×2 → IN → LeakyReLU/ReLU → [Dropout] → concat skip."""

    def __init__(self, up: nn.Module, cout: int, dropout: float = 0.0, activation: str = "leaky") -> None:
        super().__init__()
        act: nn.Module = nn.LeakyReLU(0.2, inplace=True) if activation == "leaky" else nn.ReLU(inplace=True)
        layers: list[nn.Module] = [up, nn.InstanceNorm2d(cout), act]
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.block(x), skip], dim=1)


class BottleneckCountHead(nn.Module):
    """FMMG count head: AdaptiveAvgPool → 8×8, Conv 8×8 (C → 1, bias) → scalar, no activation.

    A linear regressor on pooled bottleneck features (``model_test.py::GeneratorUNet``).
    ``scale`` multiplies the output (deviation 4 in the module docstring).
    """

    def __init__(self, channels: int, scale: float = 1.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.conv = nn.Conv2d(channels, 1, 8)
        self.scale = float(scale)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(bottleneck)).flatten(1).squeeze(1) * self.scale


class LFMMG(nn.Module):
    """Lightweight fast multi-scale-feature-fusion multi-task generator (ELMGAN's generator).

    Layer list: ``elmgan.md`` §3 (encoder 64-128-256-512-512-512, decoder FBU blocks
    512→512, 1024→512, 1024→256, 512→128, 256→64 with skips d5…d1). Outputs ``mask_logits``
    (N, 1, H, W) and ``count`` (N,). Inputs must be multiples of 64.

    ``upsampling="nearest"|"bilinear"`` builds the released ``FMMG_bilinear``-style ablation
    (1×1 conv → interpolation) in every up-block, including the final ×2.
    """

    LEVELS = PIX2PIX_ENCODER_LEVELS

    def __init__(
        self,
        in_channels: int = 1,
        base_width: int = 64,
        upsampling: str = "fbu",
        dropout: float = 0.5,
        count_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"unknown upsampling {upsampling!r}; choose from {UPSAMPLING_MODES}")
        self.in_channels, self.upsampling = in_channels, upsampling
        w = pix2pix_widths(base_width, self.LEVELS)  # 64,128,256,512,512,512
        self.down = pix2pix_encoder(in_channels, base_width, dropout)
        # (in, out, dropout); input of block k = output of k-1 concatenated with its skip
        plan = [(w[5], w[4], dropout), (2 * w[4], w[3], dropout), (2 * w[3], w[2], 0.0),
                (2 * w[2], w[1], 0.0), (2 * w[1], w[0], 0.0)]
        self.up = nn.ModuleList(
            UpFuse(make_upsampler(cin, cout, upsampling), cout, drop) for cin, cout, drop in plan
        )
        head_width = max(w[0] // 2, 1)  # 32 at base_width 64
        self.seg_head = nn.Sequential(
            nn.ZeroPad2d((1, 0, 1, 0)),
            nn.Conv2d(2 * w[0], head_width, 4, padding=1),
            make_upsampler(head_width, 1, upsampling),  # restored final ×2 (deviation 1)
        )
        self.count_head = BottleneckCountHead(w[5], count_scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, 2**self.LEVELS, "LFMMG")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        bottleneck = skips.pop()
        y = bottleneck
        for block in self.up:
            y = block(y, skips.pop())
        return {outputs.MASK_LOGITS: self.seg_head(y), outputs.COUNT: self.count_head(bottleneck)}


class Pix2PixGenerator(nn.Module):
    """pix2pix U-Net generator (Isola et al. 2017; PyTorch-GAN ``GeneratorUNet``) + the same count head.

    ``depth`` down-blocks (8 in pix2pix: 64-128-256-512-512-512-512-512), ConvTranspose 4×4 s2
    up-blocks with ReLU and skips, final nearest ×2 → ZeroPad → Conv 4×4 → ``mask_logits``.
    Inputs must be multiples of ``2**depth`` (256 at depth 8).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_width: int = 64,
        depth: int = 8,
        dropout: float = 0.5,
        count_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        self.in_channels, self.depth = in_channels, depth
        w = pix2pix_widths(base_width, depth)
        self.down = nn.ModuleList()
        for i in range(depth):
            cin = in_channels if i == 0 else w[i - 1]
            self.down.append(UNetDown(cin, w[i], normalize=0 < i < depth - 1,
                                      dropout=dropout if i >= depth - 5 else 0.0))
        self.up = nn.ModuleList()
        cin = w[-1]
        for i in reversed(range(depth - 1)):
            up = nn.ConvTranspose2d(cin, w[i], 4, 2, 1, bias=False)
            drop = dropout if i >= depth - 4 else 0.0
            self.up.append(UpFuse(up, w[i], drop, activation="relu"))
            cin = 2 * w[i]
        self.final = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.ZeroPad2d((1, 0, 1, 0)),
            nn.Conv2d(cin, 1, 4, padding=1),
        )
        self.count_head = BottleneckCountHead(w[-1], count_scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, 2**self.depth, "Pix2PixGenerator")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        bottleneck = skips.pop()
        y = bottleneck
        for block in self.up:
            y = block(y, skips.pop())
        return {outputs.MASK_LOGITS: self.final(y), outputs.COUNT: self.count_head(bottleneck)}


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN (SSRnet / PyTorch-GAN ``models.py::Discriminator``), optionally CMTD.

    Input: image (N, C, H, W), mask probability (N, 1, H, W) and, when ``with_count``, the count
    (N,) broadcast to a constant plane divided by ``count_scale``. Layers: Conv 4×4 s2 → LReLU,
    3 × [Conv 4×4 s2 → IN → LReLU 0.2] (64→128→256→512), ZeroPad (1, 0, 1, 0), Conv 4×4 p1 → 1.
    Output: patch logits (N, 1, H/16, W/16) for an LSGAN loss.

    CMTD (``with_count=True``) is the book's reconstruction (see the module docstring): the
    coordinated multitask discriminator judges the (mask, count) pair given the image.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_width: int = 64,
        with_count: bool = False,
        count_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if count_scale <= 0:
            raise ValueError(f"count_scale must be positive, got {count_scale}")
        self.in_channels, self.with_count, self.count_scale = in_channels, with_count, float(count_scale)
        cin = in_channels + 1 + int(with_count)
        w = [base_width, 2 * base_width, 4 * base_width, 8 * base_width]

        def block(a: int, b: int, normalize: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(a, b, 4, 2, 1)]
            if normalize:
                layers.append(nn.InstanceNorm2d(b))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(cin, w[0], normalize=False), *block(w[0], w[1]), *block(w[1], w[2]), *block(w[2], w[3]),
            nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(w[3], 1, 4, padding=1, bias=False),
        )

    def forward(self, image: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | None = None) -> torch.Tensor:
        check_input(image, self.in_channels, 16, "PatchDiscriminator")
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != image.shape[-2:] or mask.shape[0] != image.shape[0]:
            raise ValueError(
                f"PatchDiscriminator: mask must be (N, 1, H, W) matching image {tuple(image.shape)}, got {tuple(mask.shape)}"
            )
        planes = [image, mask.to(image.dtype)]
        if self.with_count:
            if count is None:
                raise ValueError("CMTD (with_count=True) needs the count (N,) as third argument")
            count = count.reshape(-1).to(image.dtype)
            if count.shape[0] != image.shape[0]:
                raise ValueError(f"count has {count.shape[0]} entries for a batch of {image.shape[0]}")
            planes.append((count / self.count_scale).view(-1, 1, 1, 1).expand_as(mask))
        return self.model(torch.cat(planes, dim=1))


@register_model("elmgan_generator")
def elmgan_generator(**kwargs) -> LFMMG:
    """ELMGAN's LFMMG generator (FBU up-blocks); ``upsampling="bilinear"|"nearest"`` for ablations."""
    return LFMMG(**kwargs)


@register_model("elmgan_discriminator")
def elmgan_discriminator(**kwargs) -> PatchDiscriminator:
    """CMTD as reconstructed here: conditional PatchGAN that also sees the count plane."""
    kwargs.setdefault("with_count", True)
    return PatchDiscriminator(**kwargs)


@register_model("pix2pix_generator")
def pix2pix_generator(**kwargs) -> Pix2PixGenerator:
    """8-level pix2pix U-Net generator with a bottleneck count head (traditional GAN baseline)."""
    return Pix2PixGenerator(**kwargs)


@register_model("patchgan_discriminator")
def patchgan_discriminator(**kwargs) -> PatchDiscriminator:
    """pix2pix conditional PatchGAN on (image, mask) only."""
    kwargs.setdefault("with_count", False)
    return PatchDiscriminator(**kwargs)
