"""Hand-checked values for the generic losses."""

import math

import pytest
import torch

from cellnb.losses import functional as L


def test_soft_dice_binary_hand_value():
    # logits 0 -> p = 0.5 everywhere; target has 2 ones of 4: inter = 1, Σp = 2, Σt = 2
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert L.soft_dice_loss(logits, target, eps=0.0).item() == pytest.approx(1 - 2 * 1 / 4)
    # eps = 1: 1 - (2 + 1) / (4 + 1)
    assert L.soft_dice_loss(logits, target, eps=1.0).item() == pytest.approx(1 - 3 / 5)
    # (N, H, W) target fits (N, 1, H, W) logits
    assert L.soft_dice_loss(logits, target[:, 0], eps=0.0).item() == pytest.approx(0.5)


def test_soft_dice_perfect_and_empty():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    logits = (target * 2 - 1) * 50
    assert L.soft_dice_loss(logits, target, eps=0.0).item() == pytest.approx(0.0, abs=1e-6)
    empty = torch.zeros(1, 1, 2, 2)
    assert L.soft_dice_loss(torch.full((1, 1, 2, 2), -50.0), empty, eps=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_multiclass_hand_value():
    # 2 classes, uniform softmax p = 0.5; target classes [0, 1]: per class inter = 0.5, Σp = 1, Σt = 1
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    assert L.soft_dice_loss(logits, target, eps=0.0).item() == pytest.approx(0.5)


def test_bce_dice_and_ce_dice_are_sums():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # BCE at p = 0.5 is log 2
    assert L.bce_dice_loss(logits, target, eps=0.0).item() == pytest.approx(math.log(2) + 0.5)
    assert L.bce_dice_loss(logits, target, bce_weight=2, dice_weight=0).item() == pytest.approx(2 * math.log(2))
    mc = torch.zeros(1, 2, 1, 2)
    assert L.ce_dice_loss(mc, torch.tensor([[[0, 1]]]), eps=0.0).item() == pytest.approx(math.log(2) + 0.5)


def test_focal_loss_hand_value():
    # p = sigmoid(0) = 0.5, target 1: FL = α (1-0.5)^2 (-log 0.5) = 0.25 * 0.25 * log 2
    logits = torch.zeros(1, 1)
    assert L.focal_loss(logits, torch.ones(1, 1)).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    # target 0 uses 1 - α
    assert L.focal_loss(logits, torch.zeros(1, 1)).item() == pytest.approx(0.75 * 0.25 * math.log(2))
    # gamma = 0, alpha = None -> plain BCE
    x = torch.tensor([[2.0, -1.0]])
    t = torch.tensor([[1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, t)
    assert L.focal_loss(x, t, alpha=None, gamma=0).item() == pytest.approx(bce.item())
    # multiclass: uniform over 4 classes, p_t = 0.25: (0.75)^2 * log 4
    mc = torch.zeros(1, 4, 1, 1)
    assert L.focal_loss(mc, torch.tensor([[[2]]]), alpha=None).item() == pytest.approx(0.75**2 * math.log(4))


def test_weighted_bce_hand_value():
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    weight = torch.tensor([[[3.0, 1.0]]])  # (N, H, W) weight fits
    assert L.weighted_bce(logits, target, weight).item() == pytest.approx(2 * math.log(2))
    assert L.weighted_bce(logits, target, weight, normalize=True).item() == pytest.approx(math.log(2))


def test_count_and_density():
    assert L.count_l1(torch.tensor([3.0, 5.0]), torch.tensor([1.0, 6.0])).item() == pytest.approx(1.5)
    pred = torch.zeros(1, 1, 2, 2)
    true = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    assert L.density_mse(pred, true).item() == pytest.approx(0.5)
    assert L.density_mse(pred, true, scale=10).item() == pytest.approx(50.0)


def test_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\).*\(1, 1, 2, 2\)"):
        L.soft_dice_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="count_l1"):
        L.count_l1(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="classes"):
        L.ce_dice_loss(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2), 5))
    with pytest.raises(ValueError, match="weight shape"):
        L.weighted_bce(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 3, 3))


def test_multitask_total_and_parts():
    loss_fn = L.multitask({
        "seg": ("mask_logits", "mask", L.soft_dice_loss, 1.0),
        "count": ("count", "count", L.count_l1, 0.5),
    })
    outputs = {"mask_logits": torch.zeros(1, 1, 2, 2, requires_grad=True), "count": torch.tensor([4.0])}
    batch = {"mask": torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]), "count": torch.tensor([2.0])}
    total, parts = L.multitask({"seg": ("mask_logits", "mask", lambda a, b: L.soft_dice_loss(a, b, 0.0), 1.0),
                                "count": ("count", "count", L.count_l1, 0.5)})(outputs, batch)
    assert parts == pytest.approx({"seg": 0.5, "count": 2.0})
    assert total.item() == pytest.approx(0.5 + 0.5 * 2.0)
    total.backward()
    assert outputs["mask_logits"].grad is not None
    with pytest.raises(KeyError, match="density"):
        L.multitask({"d": ("density", "density", L.density_mse, 1.0)})(outputs, batch)
    assert callable(loss_fn)
