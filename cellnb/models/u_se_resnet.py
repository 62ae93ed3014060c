"""U-SE-ResNet (Cell Tracking Challenge 2021, team MU-Ra-US; Rahmon, Toubal, Palaniappan).

The released code (``CIVA-Lab/U-SE-ResNet-for-Cell-Tracking-Challenge`` @51bada3,
``SW/train_codes``) builds ``smp.Unet('se_resnet50', in_channels=1, classes=2,
activation='sigmoid')``. This module rebuilds that network from torchvision parts, trained
from scratch (spec ``shared/papers/usere_resnet.md`` §2):

- **Encoder: SE-ResNet-50.** layer0 = conv 7×7 s2 (1→64, no bias) → BN → ReLU (skip f1, H/2);
  max-pool 3×3 s2 (``ceil_mode``); layer1–4 = [3, 4, 6, 3] torchvision ``Bottleneck`` blocks
  (widths 64/128/256/512, expansion 4 → f2…f5 = 256 @ H/4 … 2048 @ H/32). Each block gets a
  squeeze-and-excitation module (``torchvision.ops.SqueezeExcitation``, reduction 16) on its
  residual branch *before* the residual addition (Hu et al., SENet, Fig. 3). The stride sits
  in the first 1×1 convolution as in the Caffe-style ``SEResNetBottleneck``
  (``stride_in_1x1=True``, the default).
- **Decoder:** smp ``UnetDecoder`` with channels (256, 128, 64, 32, 16): nearest ×2 upsampling →
  concatenate the skip → [conv 3×3 (no bias) → BN → ReLU] × 2; block 5 has no skip.
- **Head:** conv 3×3, 16 → 2 (bias). Channel 0 = cell mask, channel 1 = marker. The released
  model applies a sigmoid in the network; here ``forward`` returns the *logits*
  (``mask_logits``, ``marker_logits``) and the sigmoid lives in the loss / post-processing,
  which is numerically the same model.

The full model (``width=1.0``) has 35.05 M parameters, as measured for smp 0.6 in the spec.
``width`` scales every channel count (encoder and decoder) for CPU profiles, but decoder blocks
keep at least ``min_decoder_channels`` (16, the full model's last block): with 2–4 channels
before the head the slim model's ReLUs died and the mask logit saturated below 0. ``blocks``
changes the number of bottlenecks per stage.

Deviations: no ImageNet weights (no downloads; smp builds the 1-channel stem by summing the
pretrained RGB kernels, here it is random); logits instead of an in-network sigmoid.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import SqueezeExcitation

from cellnb.models import outputs
from cellnb.models.registry import register_model
from cellnb.models.unet import check_input

SE_REDUCTION = 16
DECODER_CHANNELS = (256, 128, 64, 32, 16)
RESNET50_BLOCKS = (3, 4, 6, 3)


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def se_bottleneck(inplanes: int, planes: int, stride: int, stride_in_1x1: bool) -> Bottleneck:
    """A torchvision ``Bottleneck`` with SE on the residual branch (before the addition).

    ``bn3`` becomes ``Sequential(bn3, SqueezeExcitation)``: torchvision's ``forward`` then computes
    ``relu(SE(bn3(conv3(...))) + identity)``, the SE-ResNet block of Hu et al. (Fig. 3) and of
    ``pretrainedmodels.models.senet.SEResNetBottleneck``.
    """
    out_channels = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )
    block = Bottleneck(inplanes, planes, stride=stride, downsample=downsample)
    if stride_in_1x1 and stride != 1:  # Caffe-style: stride in the first 1x1 conv, 3x3 at stride 1
        block.conv1.stride = (stride, stride)
        block.conv2.stride = (1, 1)
    block.bn3 = nn.Sequential(block.bn3, SqueezeExcitation(out_channels, max(1, out_channels // SE_REDUCTION)))
    return block


class SEResNetEncoder(nn.Module):
    """SE-ResNet encoder returning the skips f1 (H/2) … f5 (H/32)."""

    def __init__(
        self,
        in_channels: int = 1,
        width: float = 1.0,
        blocks: Sequence[int] = RESNET50_BLOCKS,
        stride_in_1x1: bool = True,
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
            raise ValueError(f"blocks must be 4 positive integers (one per stage), got {tuple(blocks)}")
        stem = _scaled(64, width)
        self.layer0 = nn.Sequential(
            nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.stages = nn.ModuleList()
        inplanes = stem
        self.out_channels = [stem]
        for stage, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), blocks)):
            planes = _scaled(planes, width)
            layers = []
            for i in range(int(n_blocks)):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(se_bottleneck(inplanes, planes, stride, stride_in_1x1))
                inplanes = planes * Bottleneck.expansion
            self.stages.append(nn.Sequential(*layers))
            self.out_channels.append(inplanes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer0(x)
        features = [f1]
        x = self.pool(f1)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class DecoderBlock(nn.Module):
    """smp ``DecoderBlock``: nearest ×2 → concat skip → (conv 3×3 → BN → ReLU) × 2."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(cin + cskip, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class USEResNet(nn.Module):
    """U-Net with an SE-ResNet-50 encoder and two outputs (mask, marker); spec §2.

    ``forward(x)`` with ``x`` of shape (N, in_channels, H, W), H and W multiples of 32, returns
    ``{"mask_logits": (N, 1, H, W), "marker_logits": (N, 1, H, W)}``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: float = 1.0,
        blocks: Sequence[int] = RESNET50_BLOCKS,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
        stride_in_1x1: bool = True,
        min_decoder_channels: int = 16,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if len(decoder_channels) != 5:
            raise ValueError(f"decoder_channels must have 5 entries, got {tuple(decoder_channels)}")
        self.in_channels = in_channels
        self.encoder = SEResNetEncoder(in_channels, width, blocks, stride_in_1x1)
        dec = [max(min(c, min_decoder_channels), _scaled(c, width)) for c in decoder_channels]
        enc = self.encoder.out_channels  # f1..f5
        skips = [enc[3], enc[2], enc[1], enc[0], 0]  # f4, f3, f2, f1, none
        cins = [enc[4]] + dec[:-1]
        self.decoder = nn.ModuleList(DecoderBlock(ci, cs, co) for ci, cs, co in zip(cins, skips, dec))
        self.head = nn.Conv2d(dec[-1], 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, 32, "USEResNet")
        f1, f2, f3, f4, f5 = self.encoder(x)
        y = f5
        for block, skip in zip(self.decoder, (f4, f3, f2, f1, None)):
            y = block(y, skip)
        logits = self.head(y)
        return {outputs.MASK_LOGITS: logits[:, :1], outputs.MARKER_LOGITS: logits[:, 1:]}


@register_model("u_se_resnet")
def u_se_resnet(**kwargs) -> USEResNet:
    """U-SE-ResNet; ``width=1.0`` is the 35.05 M-parameter CTC model, e.g. ``width=0.125`` the slim one."""
    return USEResNet(**kwargs)
