"""SSRNet (Deng, Zhou, Wang, Zhang, Adv. Intell. Syst. 5(10):2300185, 2023) and SSR-upsampling.

Everything architectural follows the released code ``Roin626/SSRnet`` (the paper body is not
reachable; see ``/work/shared/papers/ssrnet.md``):

- encoder: the pix2pix ``UNetDown`` stack cut to 6 levels (``SSRnet_bc05_2.py``), H/2 … H/64;
- decoder: SSR-upsampling (``model/layers.py::SSRupsampling2``), one skip (``UNetcat``) from d1;
- heads: the "distribution" map (nearest ×2 → ZeroPad → 4×4 conv → ReLU/LeakyReLU) and the
  count head ``levelclass`` (adaptive pool 32×32 → 1×1 conv → activation → inner product with a
  learnable 32×32 weight).

Two variants (``variant=``):

``"paper"``
    one SSR-upsampling step of scale 32, as the abstract describes ("enlarge the deep feature map
    by 32 times" in one step). Code: ``model/model_test.py::SSRNet`` (profiling script only).
    Final activation LeakyReLU(0.2); count head 1×1 conv → InstanceNorm → LeakyReLU(0.2).
``"released"``
    five SSR-upsampling steps of scale 2 (``SSRnet_bc05_2.py::GeneratorUNet``, the only class with a
    training script). Final activation ReLU; count head 1×1 conv → ReLU.

``decoder=`` swaps the SSR-upsampling decoder for the ablation: ``"bilinear"`` (1×1 conv then
bilinear interpolation by the same scale steps) or ``"transpose"`` (the classic stack of five
4×4 stride-2 transposed convolutions, pix2pix ``UNetUp`` style; a one-step ×32 transposed conv with
kernel = stride = 32 *is* an unfactorised pixel shuffle, and an overlapping one would have ~10⁸
weights at full width).

Outputs (``cellnb.models.outputs``): ``density`` (N, map_channels, H, W) the predicted cell
"distribution" (foreground) map, regressed against the binary mask; ``count`` (N,).

Deviations (see ``book/deviations/ssrnet.md``):
- ``base_width`` scales every width (64 = released; 16 is the CPU option);
- ``in_channels`` defaults to 1 (the released code replicates the gray image to 3 channels, which a
  linear first conv reduces to one channel with summed weights); ``in_channels=3`` is allowed;
- ``map_channels`` defaults to 1 (released: 3 identical copies of the mask);
- ``lateral_context=True`` is a *fixed* mode in which the recurrent row pass convolves along the row
  (kernel (1,3)) and the column pass along the column (kernel (3,1)); the released kernel shapes
  (3,1)/(1,3) on 1-pixel-thick slices only ever use their centre tap;
- for ``variant="paper"`` the LeakyReLU map can dip slightly below zero, as in the released code;
- ``count_head="fixed"`` is a fixed mode of the paper variant's count head without the
  InstanceNorm that removes the map's scale (:class:`CountHead`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from cellnb.models import outputs
from cellnb.models.blocks import PIX2PIX_ENCODER_LEVELS, pix2pix_encoder, pix2pix_widths
from cellnb.models.registry import register_model
from cellnb.models.unet import check_input

VARIANTS = ("paper", "released")
DECODERS = ("ssr", "bilinear", "transpose")


def rows_to_space(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Depth-to-space along H only: output row ``s·y+i`` takes channel block ``i`` of row ``y``.

    ``(N, s·C, h, w) -> (N, C, s·h, w)``; channel block ``i`` = channels ``i·C … (i+1)·C-1``
    ("position-major", as in ``SSRupsampling2``).
    """
    n, sc, h, w = x.shape
    if sc % scale:
        raise ValueError(f"rows_to_space: {sc} channels are not divisible by scale {scale}")
    c = sc // scale
    return x.view(n, scale, c, h, w).permute(0, 2, 3, 1, 4).reshape(n, c, h * scale, w)


def cols_to_space(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Depth-to-space along W only: output column ``s·x+j`` takes channel block ``j`` of column ``x``."""
    n, sc, h, w = x.shape
    if sc % scale:
        raise ValueError(f"cols_to_space: {sc} channels are not divisible by scale {scale}")
    c = sc // scale
    return x.view(n, scale, c, h, w).permute(0, 2, 3, 4, 1).reshape(n, c, h, w * scale)


class RecurrentPass(nn.Module):
    """SCNN/SFCN-style recurrent message passing over rows (``axis=2``) or columns (``axis=3``).

    Forward sweep r₀ = x₀, rᵢ = xᵢ + ReLU(conv(rᵢ₋₁)); backward sweep rᵢ ← rᵢ + ReLU(conv(rᵢ₊₁));
    one conv (with bias) shared by both sweeps (``convDU`` / ``convLR`` in ``model/layers.py``).
    The conv runs on one slice of thickness 1, as in the released code.
    """

    def __init__(self, channels: int, axis: int, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        if axis not in (2, 3):
            raise ValueError(f"axis must be 2 (rows) or 3 (columns), got {axis}")
        self.axis = axis
        padding = ((kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=True)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices = list(torch.split(x, 1, dim=self.axis))
        for i in range(1, len(slices)):
            slices[i] = slices[i] + self.act(self.conv(slices[i - 1]))
        for i in range(len(slices) - 2, -1, -1):
            slices[i] = slices[i] + self.act(self.conv(slices[i + 1]))
        return torch.cat(slices, dim=self.axis)


class SSRUpsampling(nn.Module):
    """Spatial-based super-resolution upsampling (``model/layers.py::SSRupsampling2``).

    ``(N, Cin, h, w) -> (N, C, s·h, s·w)`` in five steps (spec §3.2):

    1. ``reduce``: 1×1 conv Cin→C (no bias);
    2. ``pass_rows`` (convDU): recurrent pass over rows, kernel (3,1);
    3. ``pass_cols`` (convLR): recurrent pass over columns, kernel (1,3);
    4. ``unfold_rows``: 1×1 conv C→s·C (no bias, weight A), depth-to-space along H;
    5. ``unfold_cols``: 1×1 conv C→s·C (no bias, weight B), depth-to-space along W.

    Steps 4–5 are linear: ``out[c, s·y+i, s·x+j] = B_j[c,:] · A_i · a[:, y, x]`` with
    ``A_i = A[i·C:(i+1)·C]`` and ``B_j = B[j·C:(j+1)·C]``. So SSR-upsampling is a sub-pixel
    (pixel-shuffle) upsampler whose s²·C×C weight is factorised into row and column factors;
    :meth:`pixel_shuffle_weight` gives the equivalent ``nn.PixelShuffle`` weight.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int, lateral_context: bool = False) -> None:
        super().__init__()
        if scale < 2 or not isinstance(scale, int):
            raise ValueError(f"SSRUpsampling: scale must be an integer >= 2, got {scale!r}")
        self.scale, self.channels = scale, out_channels
        self.reduce = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        # released: (3,1) on rows of height 1 and (1,3) on columns of width 1 -> centre tap only.
        row_kernel, col_kernel = ((1, 3), (3, 1)) if lateral_context else ((3, 1), (1, 3))
        self.pass_rows = RecurrentPass(out_channels, axis=2, kernel_size=row_kernel)
        self.pass_cols = RecurrentPass(out_channels, axis=3, kernel_size=col_kernel)
        self.unfold_rows = nn.Conv2d(out_channels, scale * out_channels, 1, bias=False)
        self.unfold_cols = nn.Conv2d(out_channels, scale * out_channels, 1, bias=False)

    def enhance(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1–3: channel reduction and the two recurrent spatial passes (the "enhancement")."""
        return self.pass_cols(self.pass_rows(self.reduce(x)))

    def unfold(self, a: torch.Tensor) -> torch.Tensor:
        """Steps 4–5: the factorised sub-pixel upsampling of the enhanced map ``a``."""
        rows = rows_to_space(self.unfold_rows(a), self.scale)
        return cols_to_space(self.unfold_cols(rows), self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unfold(self.enhance(x))

    def intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps after each step (for the chapter's walk-through figure)."""
        reduced = self.reduce(x)
        rows = self.pass_rows(reduced)
        cols = self.pass_cols(rows)
        unfolded_rows = rows_to_space(self.unfold_rows(cols), self.scale)
        out = cols_to_space(self.unfold_cols(unfolded_rows), self.scale)
        return {"input": x, "reduced": reduced, "row_pass": rows, "column_pass": cols,
                "rows_unfolded": unfolded_rows, "output": out}

    def pixel_shuffle_weight(self) -> torch.Tensor:
        """The (s²·C, C, 1, 1) weight W with ``unfold(a) == PixelShuffle(s)(conv1x1(a, W))``.

        PixelShuffle reads channel ``c·s² + i·s + j`` for output ``(c, s·y+i, s·x+j)``; that channel
        must hold ``B_j[c,:] @ A_i`` (the documented permutation of the factorised weight).
        """
        s, c = self.scale, self.channels
        a = self.unfold_rows.weight.detach()[:, :, 0, 0].view(s, c, c)  # A_i: (C, C)
        b = self.unfold_cols.weight.detach()[:, :, 0, 0].view(s, c, c)  # B_j: (C, C)
        w = torch.einsum("jck,ikl->cijl", b, a)  # (C, s_i, s_j, C)
        return w.reshape(c * s * s, c, 1, 1)


class UNetCat(nn.Module):
    """``UNetcat``: main 1×1 conv → IN → LeakyReLU, skip 1×1 conv → LeakyReLU, concatenated."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))
        self.skip = nn.Sequential(nn.Conv2d(cskip, cout, 1, bias=False), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.main(x), self.skip(skip)], dim=1)


class CountHead(nn.Module):
    """``levelclass``: AdaptiveAvgPool 32×32 → 1×1 conv → act → ⟨·, learnable 32×32 weight⟩ → count.

    ``style="released"``: act = ReLU. ``style="paper"`` (``model_test.SSRNet``): InstanceNorm (no affine)
    + LeakyReLU(0.2). ``style="fixed"``: LeakyReLU(0.2) without the InstanceNorm (the fixed mode).
    The 32×32 weight starts U[0, 1) (``torch.rand``) as in the code.

    The paper style normalises the pooled map to zero mean and unit variance per image before the
    weighted sum, so its output cannot follow the map's scale: with a uniform weight and a map that
    is 1 on a fraction f of the pixels and 0 elsewhere, it gives 0.8·1024·sqrt(f(1−f)) (the same
    for f and 1 − f, at most 409.6), while the fixed and released styles give 1024·f.
    """

    def __init__(self, channels: int, style: str, pool: int = 32) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.conv = nn.Conv2d(channels, 1, 1, bias=True)
        if style == "released":
            self.act: nn.Module = nn.ReLU()
        elif style == "paper":
            self.act = nn.Sequential(nn.InstanceNorm2d(1), nn.LeakyReLU(0.2))
        elif style == "fixed":
            self.act = nn.LeakyReLU(0.2)
        else:
            raise ValueError(f"count head style must be 'paper', 'released' or 'fixed', got {style!r}")
        self.style = style
        self.weight = nn.Parameter(torch.rand(pool, pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.act(self.conv(self.pool(x)))  # (N, 1, 32, 32)
        return (m[:, 0] * self.weight).sum(dim=(1, 2))


class SSRNet(nn.Module):
    """SSRNet; ``forward`` returns ``{"density": (N, map_channels, H, W), "count": (N,)}``.

    Inputs must be multiples of 64 in H and W (six stride-2 levels).
    """

    multiple = 64

    def __init__(
        self,
        variant: str = "paper",
        decoder: str = "ssr",
        in_channels: int = 1,
        map_channels: int = 1,
        base_width: int = 64,
        lateral_context: bool = False,
        count_head: str | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown SSRNet variant {variant!r}; choose from {VARIANTS}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown SSRNet decoder {decoder!r}; choose from {DECODERS}")
        if base_width < 1:
            raise ValueError(f"base_width must be positive, got {base_width}")
        self.variant, self.decoder_kind, self.in_channels = variant, decoder, in_channels
        w = base_width
        widths = pix2pix_widths(w, PIX2PIX_ENCODER_LEVELS)  # 64,128,256,512,512,512 at w=64
        self.down = pix2pix_encoder(in_channels, w, dropout)
        mid = 4 * w  # 256 at w=64
        steps: Sequence[int] = (32,) if variant == "paper" else (2, 2, 2, 2, 2)
        self.up = self._decoder(decoder, widths[5], mid, steps, lateral_context)
        self.cat = UNetCat(mid, widths[0], w)  # -> 2w channels at H/2 (128 at w=64)
        final_act: nn.Module = nn.LeakyReLU(0.2) if variant == "paper" else nn.ReLU()
        self.final = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.ZeroPad2d((1, 0, 1, 0)),
            nn.Conv2d(2 * w, map_channels, 4, padding=1),
            final_act,
        )
        self.count_head = CountHead(2 * w, count_head or variant)

    @staticmethod
    def _decoder(kind: str, cin: int, mid: int, steps: Sequence[int], lateral: bool) -> nn.Sequential:
        layers: list[nn.Module] = []
        if kind == "transpose":
            for i in range(5):
                layers += [nn.ConvTranspose2d(cin if i == 0 else mid, mid, 4, stride=2, padding=1, bias=False),
                           nn.ReLU()]
            return nn.Sequential(*layers)
        for i, s in enumerate(steps):
            c = cin if i == 0 else mid
            if kind == "ssr":
                layers += [SSRUpsampling(c, mid, s, lateral_context=lateral), nn.ReLU()]
            else:  # bilinear
                layers += [nn.Conv2d(c, mid, 1, bias=False),
                           nn.Upsample(scale_factor=s, mode="bilinear", align_corners=False), nn.ReLU()]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (N, 8w, H/64, W/64) and the d1 skip (N, w, H/2, W/2)."""
        check_input(x, self.in_channels, self.multiple, "SSRNet")
        skip = None
        for i, block in enumerate(self.down):
            x = block(x)
            if i == 0:
                skip = x
        assert skip is not None
        return x, skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        deep, skip = self.features(x)
        fused = self.cat(self.up(deep), skip)
        return {outputs.DENSITY: self.final(fused), outputs.COUNT: self.count_head(fused)}


@register_model("ssrnet")
def ssrnet(**kwargs) -> SSRNet:
    """SSRNet: ``variant="paper"`` (one ×32 SSR step) or ``"released"`` (five ×2 steps);
    ``decoder="ssr"|"bilinear"|"transpose"`` for the decoder ablation."""
    return SSRNet(**kwargs)
