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


def test_downscale_resizes_image_mask_and_points():
    import numpy as np

    from cellnb.experiments.ssrnet import downscale

    image = np.full((100, 140), 0.5, np.float32)
    mask = np.zeros((100, 140), np.uint8)
    mask[:50] = 1
    out = downscale(image, mask, np.array([[10.0, 20.0]]), 0.5)
    assert out["image"].shape == (50, 70) and out["mask"].shape == (50, 70)
    assert out["mask"][:24].all() and not out["mask"][26:].any()
    assert out["points"].tolist() == [[5.0, 10.0]]
    with pytest.raises(ValueError, match="scale must be in"):
        downscale(image, mask, np.zeros((0, 2)), 1.5)


def test_crop_counts_are_the_points_inside_the_crop():
    import numpy as np

    from cellnb.methods.ssrnet import crop_batch, crop_count

    pts = np.array([[0.0, 0.0], [63.9, 63.9], [64.0, 10.0], [10.0, 64.0], [100.0, 100.0]], np.float32)
    assert crop_count(pts, 0, 0, 64) == 2  # the top-left 64x64 crop holds the first two
    assert crop_count(pts, 64, 64, 64) == 1 and crop_count(np.zeros((0, 2)), 0, 0, 8) == 0
    # a 64x64 image with 3 points: every crop of the whole image counts 3 whatever the flips/rotation
    sample = {"image": np.zeros((64, 64), np.float32), "mask": np.zeros((64, 64), np.uint8),
              "points": np.array([[1, 1], [5, 60], [40, 20]], np.float32)}
    batch = crop_batch([sample], [0, 0, 0], 64, np.random.default_rng(0))
    assert batch["count"].tolist() == [3.0, 3.0, 3.0] and batch["image"].shape == (3, 1, 64, 64)
    # count_scale (the released count-target ablation) scales the crop's count
    batch = crop_batch([{**sample, "count_scale": 0.5}], [0], 64, np.random.default_rng(0))
    assert batch["count"].tolist() == [1.5]


def test_augmentation_moves_mask_with_image():
    import numpy as np

    from cellnb.methods.ssrnet import crop_batch

    img = np.zeros((64, 64), np.float32)
    img[:10, :20] = 1.0
    sample = {"image": img, "mask": (img > 0).astype(np.uint8), "points": np.zeros((0, 2), np.float32)}
    batch = crop_batch([sample] * 8, list(range(8)), 64, np.random.default_rng(1))
    assert torch.equal(batch["image"] > 0, batch["mask"] > 0)
    assert {int(b.sum()) for b in batch["mask"]} == {200}


def test_paper_count_head_normalises_away_the_scale_and_fixed_head_does_not():
    from cellnb.experiments.ssrnet import count_head_scale

    table = count_head_scale((0.05, 0.3, 0.5, 0.7)).set_index("foreground fraction")
    # hand-checked: InstanceNorm of a 0/1 map with fraction f is (x - f) / sqrt(f(1 - f)); LeakyReLU(0.2)
    # and a uniform weight sum to 1024 * 0.8 * sqrt(f(1 - f)): 409.6 at f = 0.5, the same for 0.3 and 0.7
    assert table.loc[0.5, "paper"] == pytest.approx(409.6, rel=1e-3)
    f = 51 / 1024  # round(0.05 * 1024) positions are on
    assert table.loc[0.05, "paper"] == pytest.approx(1024 * 0.8 * (f * (1 - f)) ** 0.5, rel=1e-3)
    assert table.loc[0.3, "paper"] == pytest.approx(table.loc[0.7, "paper"], rel=1e-3)
    # without InstanceNorm the head sums the map: 1024 * f (rounded to whole positions)
    assert table.loc[0.05, "fixed"] == 51.0 and table.loc[0.7, "fixed"] == 717.0
    assert table["released"].tolist() == table["fixed"].tolist()


def test_count_heads_start_at_the_training_mean():
    from cellnb.methods.ssrnet import init_count_at_mean
    from cellnb.models import create_model

    torch.manual_seed(0)
    x = torch.randn(4, 1, 64, 64)
    for model in (create_model("ssrnet", base_width=4, count_head="fixed"),
                  create_model("unet", in_channels=1, heads=("mask", "count"), base_width=4, depth=3)):
        init_count_at_mean(model, x, 12.5)
        model.eval()
        with torch.no_grad():
            assert float(model(x)["count"].mean()) == pytest.approx(12.5, rel=1e-4)
    with pytest.raises(ValueError, match="positive"):
        init_count_at_mean(model, x, 0.0)


def test_tile_count_sums_the_tiles_and_pads_with_background():
    import numpy as np

    from cellnb.methods.ssrnet import tile_count

    class OnePerBrightTile(nn.Module):  # count = 1 for a tile containing a bright pixel
        def forward(self, x):
            return {"count": (x.amax(dim=(1, 2, 3)) > 0.5).float()}

    image = np.zeros((100, 130), np.float32)  # padded to 128 x 192 -> 2 x 3 tiles of 64
    image[5, 5] = image[70, 70] = image[99, 129] = 1.0
    assert tile_count(OnePerBrightTile(), image, 64) == 3.0


def test_ssrnet_method_registry_build_train_predict_on_odd_sizes():
    import numpy as np

    from cellnb.methods import get_method, list_methods

    method = get_method("ssrnet")
    assert "ssrnet" in list_methods("count") and "ssrnet" in list_methods("mask")
    assert method.losses[0] == "om"
    model = method.build("slim", base_width=4, count_head="fixed")
    assert model.count_head.style == "fixed"
    with pytest.raises(ValueError, match="no size"):
        method.build("huge")
    rng = np.random.default_rng(0)
    sample = {"image": rng.random((70, 90)).astype(np.float32), "points": np.array([[10.0, 10.0], [50.0, 80.0]]),
              "mask": (rng.random((70, 90)) > 0.7).astype(np.uint8)}
    t = method.targets(sample)
    assert t["image"][0, 0] == pytest.approx((sample["image"][0, 0] - 0.387) / 0.278, rel=1e-5)
    assert int(t["count"]) == 2
    history = method.train(model, [sample], [sample], "count", steps=8, batch_size=2, crop=64, n_evals=8)
    assert len(history) == 8 and history["val_loss"].notna().all() and history.attrs["steps_per_s"] > 0
    pred = method.predict(model, sample["image"], "count")
    assert pred.foreground.shape == (70, 90) and np.isfinite(pred.count)
    # checkpoint round trip
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = method.build("slim", base_width=4, count_head="fixed")
    clone.load_state_dict(torch.load(buffer))
    again = method.predict(clone, sample["image"], "count")
    assert again.count == pytest.approx(pred.count, rel=1e-5)
    # targets from labels alone: mask = labels > 0, points = centroids
    labels = np.zeros((8, 8), np.int32)
    labels[1:3, 1:3], labels[5:7, 5:7] = 1, 2
    t = method.targets({"image": np.zeros((8, 8), np.float32), "labels": labels})
    assert t["points"].tolist() == [[1.5, 1.5], [5.5, 5.5]] and int(t["mask"].sum()) == 8


def test_released_unet_matches_the_released_size():
    from cellnb import profile
    from cellnb.models import create_model

    model = create_model("released_unet")
    assert profile.count_params(model) == 34_527_171
    assert round(profile.count_macs(model, (1, 3, 256, 256), device="meta") / 1e9, 1) == 65.4
    small = create_model("released_unet", in_channels=1, out_channels=1, base_width=4)
    assert small(torch.zeros(1, 1, 32, 48))["mask_logits"].shape == (1, 1, 32, 48)
    with pytest.raises(ValueError):
        small(torch.zeros(1, 1, 30, 48))


def test_bbbc005_samples_carry_the_released_plate_column_target():
    from cellnb.data.synthetic import BBBC005_COUNTS
    from cellnb.experiments.ssrnet import bbbc005_samples

    samples = bbbc005_samples(2, seed=0, scale=0.125, first_column=4)
    assert [s["released_target"] for s in samples] == [5, 6]
    assert samples[0]["name"].startswith("SIMCEP_images_A05_C") and samples[0]["stain"] == 1
    assert samples[0]["count"] <= BBBC005_COUNTS[4] and len(samples[0]["points"]) == samples[0]["count"]


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
