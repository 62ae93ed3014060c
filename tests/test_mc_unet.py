"""MC-Unet model, losses and chapter helpers (hand-checked values, tiny tensors)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cellnb.experiments import mc_unet as exp
from cellnb.losses.mc_unet import (
    density_loss,
    focal_loss,
    mc_unet_loss,
    released_density_loss,
    released_focal_loss,
)
from cellnb.models import create_model, outputs
from cellnb.models.mc_unet import MultiScaleConvBlock


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_code_configuration_has_the_released_parameter_counts():
    # spec [M]: MNet2D (3 in, 2 out, 64 ch, depth 3) has 24.27 M params, 9.15 M with M_channel=2
    assert n_params(create_model("mc_unet", in_channels=3, num_classes=2, base_width=64, depth=3)) == 24_267_586
    assert n_params(create_model("mc_unet", in_channels=3, num_classes=2, base_width=64, depth=3, kernels=(1, 3))) == 9_154_178


def test_heads_shapes_and_nonnegative_density():
    model = create_model("mc_unet", in_channels=1, base_width=4, depth=2, heads=("mask", "density", "boundary"))
    out = model(torch.randn(2, 1, 16, 16))
    assert out[outputs.MASK_LOGITS].shape == (2, 2, 16, 16)
    assert out[outputs.DENSITY].shape == (2, 1, 16, 16) and (out[outputs.DENSITY] >= 0).all()
    assert out[outputs.BOUNDARY_LOGITS].shape == (2, 1, 16, 16)


def test_bad_input_and_heads_raise_clear_errors():
    model = create_model("mc_unet", in_channels=1, base_width=4, depth=2)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.randn(1, 1, 18, 16))
    with pytest.raises(ValueError, match="input channel"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="heads"):
        create_model("mc_unet", heads=("mask", "count"))


def test_mc_block_is_relu_of_the_sum_of_its_branches():
    torch.manual_seed(0)
    block = MultiScaleConvBlock(2, 4, kernels=(1, 3, 5))
    x = torch.randn(1, 2, 8, 8)
    expected = torch.relu(sum(branch(x) for branch in block.branches))
    assert torch.allclose(block(x), expected)
    # encoder path: first conv goes to C_out / 2; kernel sizes 1, 3, 5
    assert [b[0].out_channels for b in block.branches] == [2, 2, 2]
    assert [b[0].kernel_size for b in block.branches] == [(1, 1), (3, 3), (5, 5)]


def test_focal_loss_hand_value():
    # logits 0 -> p = 0.5; boundary pixel: 0.9 * 0.5^2 * ln 2; background: 0.1 * 0.5^2 * ln 2
    loss = focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx((0.9 + 0.1) * 0.25 * math.log(2) / 2, rel=1e-6)


def test_released_focal_loss_reproduces_the_misalignment():
    # N=1, H=1, W=2: flattened logits [a, b | c, d] (channel 0 | channel 1), target t = [1, 0].
    # Row j gets class 1 - t[j//2] (j even) or t[j//2] (j odd): classes [0, 1, 1, 0], so
    # p = [1-a, b, c, 1-d] = [0.8, 0.7, 0.4, 0.1] and alpha = [0.1, 0.9, 0.9, 0.1].
    pred = torch.tensor([0.2, 0.7, 0.4, 0.9]).reshape(1, 2, 1, 2)
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 2)
    p = [0.8, 0.7, 0.4, 0.1]
    alpha = [0.1, 0.9, 0.9, 0.1]
    expected = sum(-a * (1 - q) ** 2 * math.log(q) for a, q in zip(alpha, p)) / 4
    assert released_focal_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="target pixels"):
        released_focal_loss(pred, torch.zeros(1, 1, 3))


def test_density_losses_hand_values():
    assert density_loss(torch.zeros(1, 2, 2), torch.ones(1, 2, 2), scale=10.0).item() == pytest.approx(100.0)
    # logits 0 against [1 - 0.5, 0.5] everywhere -> 0.25
    assert released_density_loss(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2), 0.5)).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shape"):
        density_loss(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3))


def test_loss_modes_and_missing_heads():
    logits = torch.zeros(1, 2, 2, 2)
    batch = {"mask": torch.zeros(1, 2, 2, dtype=torch.long), "boundary": torch.zeros(1, 2, 2),
             "density": torch.zeros(1, 2, 2)}
    total, parts = mc_unet_loss("code", boundary_weight=0.0)({outputs.MASK_LOGITS: logits}, batch)
    assert total.item() == pytest.approx(math.log(2))  # CE of uniform 2-class logits
    assert set(parts) == {"ce"}
    with pytest.raises(KeyError, match="boundary"):
        mc_unet_loss("paper", boundary_weight=0.15)({outputs.MASK_LOGITS: logits}, batch)
    with pytest.raises(ValueError, match="mode"):
        mc_unet_loss("other")


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((12, 16), np.int32)
    labels[2:10, 2:8] = 1
    labels[2:10, 8:14] = 2
    return labels


def test_instances_split_touching_cells_only_with_the_boundary_map():
    from cellnb.targets import boundaries

    labels = two_touching_squares()
    fg = (labels > 0).astype(float)
    merged = exp.instances(fg)
    split = exp.instances(fg, boundary=boundaries(labels).astype(float), min_seed_area=2)
    assert merged.max() == 1 and exp.merged_fraction(labels, merged) == 1.0
    assert len(np.unique(split)) - 1 == 2 and exp.merged_fraction(labels, split) == 0.0
    assert (split > 0).sum() == (labels > 0).sum()  # watershed gives the boundary pixels back


def test_delta_and_verdict_use_the_seed_spread():
    rows = pd.DataFrame({
        "arch": ["unet"] * 4, "mode": ["paper"] * 4, "regime": ["dense"] * 4,
        "variant": ["baseline", "baseline", "both", "both"], "dice": [0.80, 0.82, 0.90, 0.92],
    })
    d = exp.delta(rows, "unet", "both")
    assert d["delta"] == pytest.approx(0.10)
    assert d["spread"] == pytest.approx(math.hypot(0.02 / math.sqrt(2), 0.02 / math.sqrt(2)))
    assert exp.holds(d, n_seeds=2) is True
    assert exp.holds({"delta": 0.01, "spread": 0.02}, n_seeds=3) is False
    assert exp.holds(d, n_seeds=1) is None
