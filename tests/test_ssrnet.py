"""SSRNet: SSR-upsampling algebra, model shapes and errors, OM loss values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cellnb.losses.ssrnet import UncertaintyWeighting, make_loss, om_loss
from cellnb.models import create_model
from cellnb.models.ssrnet import RecurrentPass, SSRUpsampling, cols_to_space, rows_to_space


def test_rows_and_cols_to_space_follow_position_major_blocks():
    # 2 channel blocks of C=1: block i fills output row 2*y + i
    x = torch.arange(8.0).view(1, 2, 2, 2)  # block 0 = [[0,1],[2,3]], block 1 = [[4,5],[6,7]]
    rows = rows_to_space(x, 2)
    assert rows[0, 0].tolist() == [[0, 1], [4, 5], [2, 3], [6, 7]]
    cols = cols_to_space(x, 2)
    assert cols[0, 0].tolist() == [[0, 4, 1, 5], [2, 6, 3, 7]]
    with pytest.raises(ValueError, match="not divisible by scale 3"):
        rows_to_space(x, 3)


@pytest.mark.parametrize("scale", [2, 4])
def test_ssr_unfold_equals_pixel_shuffle_under_documented_permutation(scale):
    torch.manual_seed(0)
    block = SSRUpsampling(5, 3, scale)
    a = torch.randn(2, 3, 4, 5)
    weight = block.pixel_shuffle_weight()
    assert weight.shape == (3 * scale * scale, 3, 1, 1)
    reference = nn.PixelShuffle(scale)(nn.functional.conv2d(a, weight))
    torch.testing.assert_close(block.unfold(a), reference, rtol=1e-5, atol=1e-5)
    # and the full block = pixel shuffle of its enhanced map
    x = torch.randn(1, 5, 2, 3)
    expected = nn.PixelShuffle(scale)(nn.functional.conv2d(block.enhance(x), weight))
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert block(x).shape == (1, 3, 2 * scale, 3 * scale)


def test_recurrent_pass_hand_computed_and_centre_tap_only():
    rp = RecurrentPass(1, axis=2, kernel_size=(3, 1))
    with torch.no_grad():
        rp.conv.weight.copy_(torch.tensor([[[[5.0], [2.0], [7.0]]]]))  # only the centre (2) acts
        rp.conv.bias.zero_()
    x = torch.tensor([1.0, 1.0, 1.0]).view(1, 1, 3, 1)
    # down: r0=1, r1=1+2*1=3, r2=1+2*3=7; up: r1=3+2*7=17, r0=1+2*17=35
    assert rp(x).flatten().tolist() == [35.0, 17.0, 7.0]


@pytest.mark.parametrize("variant", ["paper", "released"])
@pytest.mark.parametrize("decoder", ["ssr", "bilinear", "transpose"])
@pytest.mark.parametrize("size", [(64, 64), (64, 128)])
def test_ssrnet_output_shapes(variant, decoder, size):
    model = create_model("ssrnet", variant=variant, decoder=decoder, base_width=2).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *size))
    assert out["density"].shape == (2, 1, *size)
    assert out["count"].shape == (2,)


def test_ssrnet_three_channel_map_and_full_width_parameter_count():
    model = create_model("ssrnet", variant="paper", in_channels=3, map_channels=3, base_width=2)
    assert model(torch.rand(1, 3, 64, 64))["density"].shape == (1, 3, 64, 64)
    # released widths: one x32 block = 1x1 reduce 131,072 + 2 x 196,864 (DU/LR) + 2 x 2,097,152
    block = SSRUpsampling(512, 256, 32)
    assert sum(p.numel() for p in block.parameters()) == 131_072 + 2 * 196_864 + 2 * 2_097_152


def test_ssrnet_rejects_bad_inputs_clearly():
    model = create_model("ssrnet", base_width=2)
    with pytest.raises(ValueError, match="multiples of 64"):
        model(torch.rand(1, 1, 96, 64))
    with pytest.raises(ValueError, match="1 input channel"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown SSRNet variant"):
        create_model("ssrnet", variant="onestep")
    with pytest.raises(ValueError, match="unknown SSRNet decoder"):
        create_model("ssrnet", decoder="nearest")


def test_om_loss_is_ten_l1_plus_count_mse():
    out = {"density": torch.full((2, 1, 2, 2), 0.5), "count": torch.tensor([3.0, 5.0])}
    batch = {"mask": torch.ones(2, 2, 2), "count": torch.tensor([1.0, 5.0])}
    total, parts = om_loss(out, batch)
    assert parts["pixel_l1"] == pytest.approx(0.5)
    assert parts["count_mse"] == pytest.approx(2.0)  # (4 + 0) / 2
    assert float(total) == pytest.approx(10 * 0.5 + 2.0)
    # the U-Net baseline is compared through sigmoid(mask_logits): sigmoid(0) = 0.5
    out_unet = {"mask_logits": torch.zeros(2, 1, 2, 2), "count": torch.tensor([3.0, 5.0])}
    assert float(om_loss(out_unet, batch)[0]) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="do not match"):
        om_loss(out, {"mask": torch.ones(2, 3, 3), "count": torch.tensor([1.0, 5.0])})


def test_uncertainty_weighting_values_and_attachment():
    weighting = UncertaintyWeighting(init_log_var=0.0)
    out = {"density": torch.zeros(1, 1, 2, 2), "count": torch.tensor([3.0])}
    batch = {"mask": torch.ones(1, 1, 2, 2), "count": torch.tensor([1.0])}
    total, parts = weighting(out, batch)
    assert float(total.detach()) == pytest.approx(0.5 * 1.0 + 0.5 * 4.0)  # s = 0: half of each loss
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.0, 2.0]))
    assert float(weighting(out, batch)[0].detach()) == pytest.approx(0.5 + 0.5 * (4 * torch.exp(torch.tensor(-2.0)).item() + 2))
    first = UncertaintyWeighting()  # starts at s = log L of the first batch: weights 1/(2 L)
    total, parts = first(out, batch)
    assert first.log_vars.detach().tolist() == pytest.approx([0.0, float(torch.log(torch.tensor(4.0)))])
    assert float(total.detach()) == pytest.approx(0.5 + 0.5 * (1 + float(torch.log(torch.tensor(4.0)))))
    model = nn.Linear(1, 1)
    loss = make_loss("uncertainty", model)
    assert loss is model.loss_weights and any(p is loss.log_vars for p in model.parameters())
    with pytest.raises(ValueError, match="unknown SSRNet loss"):
        make_loss("gan")


def test_prepare_item_downscales_normalises_and_pads():
    import numpy as np

    from cellnb.experiments.ssrnet import NORM_MEAN, NORM_STD, prepare_item

    image = np.full((100, 140), 0.5, np.float32)
    mask = np.zeros((100, 140), np.uint8)
    mask[:50] = 1
    item = prepare_item(image, mask, count=7, scale=0.5, pad_multiple=64)
    assert item["valid"] == (50, 70) and item["image"].shape == (64, 128) and item["mask"].shape == (64, 128)
    assert item["image"][0, 0] == pytest.approx((0.5 - NORM_MEAN) / NORM_STD)
    assert item["image"][60, 100] == 0.0 and item["mask"][:25, :70].all() and not item["mask"][26:].any()
    assert item["count"] == 7
    with pytest.raises(ValueError, match="scale must be in"):
        prepare_item(image, mask, 7, scale=1.5, pad_multiple=64)


def test_edge_contrast_is_one_for_a_sharp_map_and_lower_when_blurred():
    import numpy as np
    from scipy import ndimage

    from cellnb.experiments.ssrnet import edge_contrast

    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1
    assert edge_contrast(mask.astype(float), mask) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(mask.astype(float), 2.0)
    assert 0.0 < edge_contrast(blurred, mask) < 0.5
    assert np.isnan(edge_contrast(np.zeros((4, 4)), np.zeros((4, 4), np.uint8)))
