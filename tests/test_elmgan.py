"""Tests for the ELMGAN chapter: FBU, LFMMG, CMTD/PatchGAN, pix2pix generator, NH loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cellnb.losses.elmgan import discriminator_loss, lsgan_loss, nh_loss
from cellnb.models import create_model
from cellnb.models.elmgan import FoldBeyondNearestUpsampling, InterpolationUpsampling, LFMMG


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_fbu_folds_a_hand_set_projection_into_2x2_blocks():
    fbu = FoldBeyondNearestUpsampling(1, 1, scale=2)
    with torch.no_grad():
        fbu.conv_w.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1))
    x = torch.tensor([[[[1.0, 10.0]]]])  # (1, 1, 1, 2)
    expected = torch.tensor([[[[1.0, 2.0, 10.0, 20.0], [3.0, 4.0, 30.0, 40.0]]]])
    assert torch.equal(fbu(x), expected)
    assert n_params(fbu) == 4  # 1x1 conv, no bias


def test_fbu_contains_nearest_upsampling_as_a_special_case():
    channels, scale = 3, 2
    fbu = FoldBeyondNearestUpsampling(channels, channels, scale)
    weight = torch.zeros(channels * scale * scale, channels, 1, 1)
    for c in range(channels):
        weight[c * scale * scale:(c + 1) * scale * scale, c] = 1.0  # copy channel c to its s² slots
    with torch.no_grad():
        fbu.conv_w.weight.copy_(weight)
    x = torch.randn(2, channels, 4, 5)
    assert torch.allclose(fbu(x), F.interpolate(x, scale_factor=2, mode="nearest"))


def test_fbu_and_interpolation_reject_wrong_channels():
    with pytest.raises(ValueError, match="FBU expects"):
        FoldBeyondNearestUpsampling(4, 2)(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="interpolation mode"):
        InterpolationUpsampling(4, 2, mode="bicubic")


@pytest.mark.parametrize("upsampling", ["fbu", "bilinear", "nearest"])
def test_lfmmg_outputs_full_resolution_mask_and_count(upsampling):
    model = create_model("elmgan_generator", in_channels=1, base_width=4, upsampling=upsampling)
    out = model(torch.rand(2, 1, 64, 128))
    assert out["mask_logits"].shape == (2, 1, 64, 128)
    assert out["count"].shape == (2,)


def test_lfmmg_rejects_bad_input():
    model = LFMMG(in_channels=1, base_width=4)
    with pytest.raises(ValueError, match="multiples of 64"):
        model(torch.rand(1, 1, 96, 64))
    with pytest.raises(ValueError, match="1 input channel"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown upsampling"):
        LFMMG(upsampling="bicubic")


def test_full_width_parameter_counts_match_the_released_code():
    # elmgan.md §3/§7: FMMG 15.76 M live parameters (3-channel input), pix2pix U-Net 54.4 M,
    # classic U-Net ~31 M here -> LFMMG has about half the U-Net's parameters.
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        lfmmg = n_params(create_model("elmgan_generator", in_channels=3))
        pix2pix = n_params(create_model("pix2pix_generator", in_channels=3))
    assert abs(lfmmg - 15.76e6) < 0.01e6
    assert abs(pix2pix - 54.43e6) < 0.02e6
    # one FBU block 512->512, s=2 is a 512 x 2048 1x1 conv
    assert n_params(FoldBeyondNearestUpsampling(512, 512, 2)) == 512 * 512 * 4


def test_cmtd_sees_the_count_and_patchgan_does_not():
    torch.manual_seed(0)
    cmtd = create_model("elmgan_discriminator", in_channels=1, base_width=4, count_scale=10.0)
    patch = create_model("patchgan_discriminator", in_channels=1, base_width=4)
    image, mask = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    a, b = cmtd(image, mask, torch.tensor([3.0])), cmtd(image, mask, torch.tensor([30.0]))
    assert a.shape == (1, 1, 2, 2)
    assert not torch.allclose(a, b)
    assert patch(image, mask).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="needs the count"):
        cmtd(image, mask)
    with pytest.raises(ValueError, match="mask must be"):
        patch(image, torch.rand(1, 1, 16, 16))


def test_pix2pix_generator_depth_and_input_checks():
    model = create_model("pix2pix_generator", in_channels=1, base_width=2, depth=5)
    out = model(torch.rand(1, 1, 32, 32))
    assert out["mask_logits"].shape == (1, 1, 32, 32) and out["count"].shape == (1,)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 1, 48, 32))


def test_nh_loss_on_hand_made_tensors():
    mask_prob = torch.tensor([[[[0.5, 1.0], [0.0, 0.25]]]])
    mask_true = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    d_fake = torch.tensor([[[[0.5, 1.0]]]])
    # L1 = (0.5 + 0 + 0 + 0.25)/4 = 0.1875; L2 = (0.25 + 0.0625)/4 = 0.078125
    # count: ((12 - 10) / 2)^2 = 1; adversarial: ((0.5-1)^2 + 0)/2 = 0.125
    total, parts = nh_loss(mask_prob, mask_true, torch.tensor([12.0]), torch.tensor([10.0]), d_fake,
                           count_scale=2.0)
    assert total.item() == pytest.approx(10 * 0.1875 + 1.0 + 0.125)  # = 3.0
    assert parts["g_l1"] == pytest.approx(0.1875) and parts["g_l2"] == pytest.approx(0.078125)
    assert parts["g_adv"] == pytest.approx(0.125) and parts["g_count"] == pytest.approx(1.0)
    total_l2, _ = nh_loss(mask_prob, mask_true, torch.tensor([12.0]), torch.tensor([10.0]), d_fake,
                          lambda_l2=4.0, count_scale=2.0)
    assert total_l2.item() == pytest.approx(3.0 + 4 * 0.078125)
    no_adv, parts = nh_loss(mask_prob, mask_true, torch.tensor([12.0]), torch.tensor([10.0]), None,
                            count_scale=2.0)
    assert no_adv.item() == pytest.approx(2.875) and parts["g_adv"] == 0.0


def test_nh_loss_is_differentiable_and_checks_shapes():
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    count = torch.tensor([5.0], requires_grad=True)
    total, _ = nh_loss(torch.sigmoid(logits), torch.ones(1, 1, 2, 2), count, torch.tensor([3.0]))
    total.backward()
    assert count.grad.item() == pytest.approx(2 * (5.0 - 3.0))  # d/dĉ (ĉ - c)^2
    assert logits.grad is not None and (logits.grad < 0).all()  # raise p towards the true 1s
    with pytest.raises(ValueError, match="nh_loss mask"):
        nh_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3), count, torch.tensor([3.0]))
    with pytest.raises(ValueError, match="count_scale"):
        nh_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), count, torch.tensor([3.0]), count_scale=0)


def test_discriminator_loss_on_hand_made_tensors():
    total, parts = discriminator_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))
    # real: ((0)^2 + (-1)^2)/2 = 0.5; fake: (0.25 + 0.25)/2 = 0.25; total = (0.5 + 0.25)/2
    assert total.item() == pytest.approx(0.375)
    assert parts["d_real"] == pytest.approx(0.5) and parts["d_fake"] == pytest.approx(0.25)
    assert lsgan_loss(torch.tensor([2.0]), real=False).item() == pytest.approx(4.0)


def test_pad_and_downscale_keeps_the_frame_in_the_top_left_corner():
    import numpy as np

    from cellnb.experiments.elmgan import pad_and_downscale

    image = np.ones((520, 696), np.float32)
    mask = np.zeros((520, 696), np.uint8)
    mask[:6, :6] = 1  # one 6x6 block = one full 6x6 cell of the 128² result
    small, small_mask = pad_and_downscale(image, mask, 128)
    assert small.shape == small_mask.shape == (128, 128)
    # 520/6 = 86.67 rows: rows 0..85 are all image, row 86 is 4/6 image, row 87.. is padding
    assert small[85, 0] == 1.0 and small[86, 0] == pytest.approx(4 / 6) and small[87, 0] == 0.0
    assert small_mask.sum() == 1 and small_mask[0, 0] == 1
    with pytest.raises(ValueError, match="must divide 768"):
        pad_and_downscale(image, mask, 100)


def test_count_heads_start_at_the_mean_count():
    from cellnb.config import settings_for
    from cellnb.experiments import elmgan as exp

    cfg = settings_for(exp.SETTINGS, "smoke")
    models = exp.build_models(cfg, mean_count=40.0)
    lfmmg = models["elmgan_no_adv"]["generator"]
    assert lfmmg.count_head.conv.bias.item() == pytest.approx(40.0 / cfg.count_scale)
    unet = models["unet"]["generator"]
    # softplus(bias) * scale = 40 with zero weights
    assert F.softplus(unet.model.count_fc.bias).item() * cfg.count_scale == pytest.approx(40.0, rel=1e-5)


def test_upsampling_sizes_follow_the_generator():
    from cellnb.experiments.elmgan import generator_upsampling_sizes

    sizes = generator_upsampling_sizes(256)
    assert sizes[0] == ("up1", 512, 512, 4)
    assert sizes[-2] == ("up5", 256, 64, 64)
    assert sizes[-1] == ("head", 32, 1, 128)
