"""MC-Unet: multi-scale convolutional U-Net with optional density and boundary heads.

Jin, Hu, Zhou, Guan, Li, Chen, "Joint Feature Learning for Cell Segmentation Based on
Multi-scale Convolutional U-Net", IEEE BIBM 2022, pp. 1580–1585. Only the abstract is
public; the architecture follows the released code
(``HuHaigen/Joint-Feature-Learning-for-Cell-Segmentation`` @99a7fed, ``model/MNet2D.py``,
``model: MCUNET``, ``M_channel 3``, ``M_R 0``, ``model_deep 3``, ``interpolate false``):

- **MC block** = three parallel double convolutions with kernel sizes 1, 3 and 5
  (``padding = k // 2``), each ``Conv(k) → GroupNorm(1) → ReLU → Conv(k) → GroupNorm(1)``,
  **summed**, then one ReLU. On the encoder path (``C_in < C_out``) the first conv goes to
  ``C_out / 2``; on the decoder path straight to ``C_out``.
- ``depth`` max-pooling steps (3 in the code: 4 encoder levels, 3 decoder levels); decoder
  upsampling by ``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` keeping the channels,
  then ``concat[skip, up]`` and an MC block down to the skip's width.
- Head: 1×1 conv to ``num_classes`` (2 in the code). The code applies softmax in eval mode;
  here ``forward`` always returns logits (``mask_logits``), as the book's model contract asks.
- Conv weights ~ N(0, sqrt(2 / (k² · C_out))), biases 0 (``MNet2D`` init).

Deviations: the **density and boundary heads** are a reconstruction of the abstract's
"density branch" and "boundary branch": the released code has no such heads (its auxiliary
losses act on the segmentation logits, see :mod:`cellnb.losses.mc_unet`). Each head is a
1×1 conv on the last decoder features (64 channels in the code): ``density`` (softplus, so
non-negative, count = its sum) and ``boundary_logits``. ``base_width`` (64 in the code) and
``in_channels`` (3 in the code) are arguments so that the model fits a CPU budget.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from cellnb.models import outputs
from cellnb.models.registry import register_model
from cellnb.models.unet import check_input

HEADS = ("mask", "density", "boundary")


class KernelDoubleConv(nn.Sequential):
    """One MC branch: ``Conv(k) → GN(1) → ReLU → Conv(k) → GN(1)`` (``DoubleConv``, order "cgr").

    The second conv has no ReLU: the MC block applies it after summing the branches.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, encoder: bool) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        mid = cout // 2 if encoder and cin < cout else cout
        pad = kernel_size // 2
        super().__init__(
            nn.Conv2d(cin, mid, kernel_size, padding=pad, bias=True),
            nn.GroupNorm(1, mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, kernel_size, padding=pad, bias=True),
            nn.GroupNorm(1, cout),
        )


class MultiScaleConvBlock(nn.Module):
    """MC block: parallel double convs with kernels ``kernels`` (1, 3, 5), summed, then ReLU.

    ``MNet2D`` with ``M_channel=3`` (``M_channel=2`` drops the 5×5 branch: ``kernels=(1, 3)``).
    """

    def __init__(self, cin: int, cout: int, kernels: Sequence[int] = (1, 3, 5), encoder: bool = True) -> None:
        super().__init__()
        if not kernels:
            raise ValueError("kernels must name at least one kernel size, e.g. (1, 3, 5)")
        self.kernels = tuple(int(k) for k in kernels)
        self.branches = nn.ModuleList(KernelDoubleConv(cin, cout, k, encoder) for k in self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.branches[0](x)
        for branch in self.branches[1:]:
            total = total + branch(x)
        return F.relu(total)


class MCUNet(nn.Module):
    """Multi-scale convolutional U-Net (``MNet2D``); ``forward`` returns a dict of outputs."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_width: int = 64,
        depth: int = 3,
        kernels: Sequence[int] = (1, 3, 5),
        heads: Sequence[str] = ("mask",),
    ) -> None:
        super().__init__()
        unknown = sorted(set(heads) - set(HEADS))
        if unknown or not heads:
            raise ValueError(f"unknown or empty heads {unknown or list(heads)}; choose from {HEADS}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.in_channels, self.depth, self.heads = in_channels, depth, tuple(heads)
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList([MultiScaleConvBlock(in_channels, widths[0], kernels, encoder=True)])
        self.encoders.extend(MultiScaleConvBlock(widths[i], widths[i + 1], kernels, encoder=True) for i in range(depth))
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            up_channels = widths[i + 1]
            self.ups.append(nn.ConvTranspose2d(up_channels, up_channels, 3, stride=2, padding=1, output_padding=1))
            self.decoders.append(MultiScaleConvBlock(widths[i] + up_channels, widths[i], kernels, encoder=False))
        self.out = nn.ModuleDict()
        if "mask" in heads:
            self.out["mask"] = nn.Conv2d(widths[0], num_classes, 1)
        self._init_weights()
        # the reconstructed heads are not in the released code: they keep PyTorch's default init
        # (MNet2D's N(0, sqrt(2/C_out)) would give a 1-channel 1x1 head std 1.4 and start the
        # density far from its target, which kills the softplus in a few steps)
        for name in ("density", "boundary"):
            if name in heads:
                self.out[name] = nn.Conv2d(widths[0], 1, 1)

    def _init_weights(self) -> None:
        """``MNet2D`` init: N(0, sqrt(2 / (k_h · k_w · C_out))) for (transposed) convs, zero bias."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                k_h, k_w = module.kernel_size
                n = k_h * k_w * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / n))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_input(x, self.in_channels, 2**self.depth, "MCUNet")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups, self.decoders):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        result: dict[str, torch.Tensor] = {}
        if "mask" in self.out:
            result[outputs.MASK_LOGITS] = self.out["mask"](x)
        if "density" in self.out:
            result[outputs.DENSITY] = F.softplus(self.out["density"](x))
        if "boundary" in self.out:
            result[outputs.BOUNDARY_LOGITS] = self.out["boundary"](x)
        return result


@register_model("mc_unet")
def mc_unet(**kwargs) -> MCUNet:
    """MC-Unet (Jin et al., BIBM 2022; ``MNet2D``); ``base_width=64, depth=3, in_channels=3`` is the code's."""
    return MCUNet(**kwargs)
