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


def test_upsampling_sizes_follow_the_generator():
    from cellnb.experiments.elmgan import generator_upsampling_sizes

    sizes = generator_upsampling_sizes(256)
    assert sizes[0] == ("up1", 512, 512, 4)
    assert sizes[-2] == ("up5", 256, 64, 64)
    assert sizes[-1] == ("head", 32, 1, 128)


# --------------------------------------------------------------------------- the method layer
import numpy as np  # noqa: E402

from cellnb.methods import get_method  # noqa: E402
from cellnb.methods.elmgan import MEAN, STD, RandomCrops, ScaledCount, init_count_head, tiles  # noqa: E402


def test_method_declares_tasks_sizes_and_losses():
    m = get_method("elmgan")
    assert m.tasks == ("count", "mask") and m.losses[0] == "nh" and "no_gan" in m.losses
    assert m.uses_gan("nh") and not m.uses_gan("no_gan") and m.uses_gan(None)
    with pytest.raises(ValueError, match="choose from"):
        m.loss("focal")
    with torch.device("meta"):
        assert n_params(m.build("paper", in_channels=3)) == 15_764_641  # live FMMG parameters


def test_count_heads_start_at_the_mean_count():
    m = get_method("elmgan")
    lfmmg = m.build("tiny", mean_count=12.0)
    assert lfmmg.count_head.conv.bias.item() == pytest.approx(12.0 / m.count_scale)
    unet = ScaledCount(create_model("unet", in_channels=1, base_width=4, heads=("mask", "count")), 2.0)
    init_count_head(unet, 12.0)
    # softplus(bias) * 2 = 12 with the pooled features weighted by ~0 -> bias = softplus^-1(6)
    assert F.softplus(unet.model.count_fc.bias).item() == pytest.approx(6.0, rel=1e-5)
    with pytest.raises(ValueError, match="positive"):
        init_count_head(lfmmg, 0.0)


def test_normalize_uses_the_released_constants():
    m = get_method("elmgan")
    x = m.normalize(np.array([[MEAN, 1.0]], np.float32))
    assert x.shape == (1, 1, 2)
    assert x[0, 0, 0] == pytest.approx(0.0) and x[0, 0, 1] == pytest.approx((1 - 0.387) / 0.278)
    assert m.normalize(np.array([[255]], np.uint8))[0, 0, 0] == pytest.approx((1 - MEAN) / STD)
    assert m.pad_value() == pytest.approx(-0.387 / 0.278)


def test_targets_put_one_dot_per_centre():
    m = get_method("elmgan")
    image = np.zeros((8, 8), np.float32)
    t = m.targets({"image": image, "mask": np.eye(8), "points": np.array([[1.2, 2.6], [6.0, 6.0], [6.4, 5.6]])})
    assert t["dots"].sum() == 3 and t["dots"][1, 3] == 1 and t["dots"][6, 6] == 2  # rounded to the nearest pixel
    assert t["mask"].sum() == 8
    labels = np.zeros((8, 8), np.int32)
    labels[0:3, 0:3], labels[5:8, 4:7] = 1, 2
    t = m.targets({"image": image, "labels": labels})  # centres = centroids (1, 1) and (6, 5)
    assert t["dots"][1, 1] == 1 and t["dots"][6, 5] == 1 and t["dots"].sum() == 2


def _frame(h=128, w=128):
    dots = np.zeros((h, w), np.float32)
    dots[10, 10] = dots[10, 100] = dots[100, 100] = dots[70, 20] = 1  # one per 64-tile except (1, 0) gets 1 too
    dots[5, 6] = 1  # a second one in tile (0, 0)
    return {"image": np.zeros((1, h, w), np.float32), "mask": np.zeros((h, w), np.float32), "dots": dots}


def test_tiles_count_the_centres_inside_each_tile():
    items = tiles([_frame()], 64)
    assert [float(i["count"]) for i in items] == [2.0, 1.0, 1.0, 1.0]  # (0,0), (0,1), (1,0), (1,1)


def test_random_crops_count_the_centres_inside_the_crop():
    f = _frame()
    crops = RandomCrops([f], 64, 50, seed=0)
    for k in range(50):
        item = crops[k]
        assert item["image"].shape == (1, 64, 64) and item["mask"].shape == (1, 64, 64)
        assert 0 <= float(item["count"]) <= 3
    whole = RandomCrops([f], 128, 4, seed=1)  # a crop the size of the frame holds every centre
    assert all(float(whole[k]["count"]) == 5.0 for k in range(4))


class _OnePerTile(torch.nn.Module):
    """Counts 1 per tile; the mask logit is the input."""

    LEVELS = 6

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return {"mask_logits": x + 0 * self.w, "count": torch.ones(x.shape[0])}


def test_predict_pads_tiles_and_sums_tile_counts():
    m = get_method("elmgan")
    image = np.full((67, 101), 0.9, np.float32)
    p = m.predict(_OnePerTile(), image, tile=64)
    assert p.count == 4.0  # padded to 128 x 128: 2 x 2 tiles
    assert p.foreground.shape == (67, 101)
    assert p.foreground[0, 0] == pytest.approx(float(torch.sigmoid(torch.tensor((0.9 - MEAN) / STD))))
    with pytest.raises(ValueError, match="multiple"):
        m.predict(_OnePerTile(), image, tile=48)


def test_fit_gan_onecycle_schedules_both_networks_per_step():
    from cellnb.train import fit_gan

    class PairD(torch.nn.Module):  # conditional D: judges (image, target) pairs
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 1, 1)

        def forward(self, image, target):
            return self.conv(torch.cat([image, target], 1))

    torch.manual_seed(0)
    gen, disc = torch.nn.Conv2d(1, 1, 1), PairD()
    batches = [{"image": torch.rand(2, 1, 4, 4), "target": torch.rand(2, 1, 4, 4)} for _ in range(5)]

    def d_loss(real, fake):
        return (1 - real).pow(2).mean() + fake.pow(2).mean()

    def g_loss(out, batch, d_fake):
        return (out - batch["target"]).abs().mean() + (1 - d_fake).pow(2).mean(), {}

    hist = fit_gan(gen, disc, batches, g_loss, d_loss, epochs=4, lr_g=1e-2, lr_d=2e-3, d_steps=2, device="cpu",
                   amp=False, progress=False, scheduler="onecycle", update_bn=False)

    def reference(max_lr, total, per_epoch):
        opt = torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=max_lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, pct_start=0.15)
        out = []
        for step in range(1, total + 1):
            opt.step()
            if sched.last_epoch < total - 1:
                sched.step()
            if step % per_epoch == 0:
                out.append(opt.param_groups[0]["lr"])
        return out

    assert hist["lr_g"].tolist() == pytest.approx(reference(1e-2, 20, 5))
    assert hist["lr_d"].tolist() == pytest.approx(reference(2e-3, 40, 10))
    with pytest.raises(ValueError, match="scheduler"):
        fit_gan(gen, disc, batches, g_loss, d_loss, epochs=1, lr_g=1e-2, lr_d=1e-2, device="cpu", scheduler="cosine")


def test_train_with_the_gan_and_without():
    m = get_method("elmgan")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        img = (0.05 + 0.02 * rng.standard_normal((64, 64))).astype(np.float32)
        pts = rng.uniform(5, 59, (4, 2)).astype(np.float32)
        mask = np.zeros((64, 64), np.uint8)
        for r, c in pts.astype(int):
            img[r - 3:r + 3, c - 3:c + 3] = 0.8
            mask[r - 3:r + 3, c - 3:c + 3] = 1
        samples.append({"image": img, "mask": mask, "points": pts})
    for loss in ("nh", "no_gan"):
        torch.manual_seed(0)
        model = m.build("tiny")
        hist = m.train(model, samples[:2], samples[2:], steps=8, batch_size=2, crop=64, evals=4, loss=loss)
        assert list(hist["step"]) == [2, 4, 6, 8] and hist.attrs["steps"] == 8
        assert np.isfinite(hist["val_loss"]).all() and hist.attrs["steps_per_s"] > 0
        pred = m.predict(model, samples[2]["image"])
        assert np.isfinite(pred.count) and pred.foreground.shape == (64, 64)


# --------------------------------------------------------------------------- the chapter
def test_downscale_frame_block_averages_and_moves_the_centres():
    from cellnb.experiments.elmgan import downscale_frame

    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 1
    mask[2, 2] = 1  # 1 of 4 pixels: below the 0.5 threshold
    out = downscale_frame({"image": image, "mask": mask, "points": np.array([[3.0, 1.0]])}, 2)
    np.testing.assert_allclose(out["image"], [[2.5, 4.5], [10.5, 12.5]])
    assert out["mask"].tolist() == [[1, 0], [0, 0]]
    np.testing.assert_allclose(out["points"], [[1.0, 0.5]])
    assert out["count"] == 1


def test_released_dead_conv_p_and_parameter_table():
    from cellnb.experiments.elmgan import dead_conv_p_params, parameter_table

    # conv_p: C_out*4 -> C_out 1x1 with bias, in up-blocks with C_out 512, 512, 256, 128, 64
    assert dead_conv_p_params() == sum(4 * c * c + c for c in (512, 512, 256, 128, 64)) == 2_442_688
    table = dict(zip(*parameter_table(3).to_dict("list").values()))
    assert table["LFMMG + released dead conv_p"] == 18_207_329  # the released FMMG's 18.21 M
    assert table["released U-Net (SSRnet repository)"] == 34_527_171


def test_reproduction_summary_counts_paper_claims_and_checks():
    from cellnb.experiments.elmgan import reproduction_summary
    from cellnb.results import Run

    run = Run("elmgan", "smoke", device="cpu")
    run.claim("a", "A holds", "p", 1.0, True, kind="paper")
    run.claim("b", "B is fast", "p", 2.0, None, kind="paper", basis="other device")
    run.claim("c", "C check", "p", 1.0, False, kind="check")
    run.model("m", converged=True, beats_floor=False)
    text = reproduction_summary(run)
    assert "**1 hold**, 0 do not, 1 inconclusive (b: other device)" in text
    assert "Checks: 0 of 1 hold" in text and "learned (converged and beat their floor): 0 of 1; not: m" in text


def test_chapter_training_records_the_half_budget_for_gan_and_no_gan():
    from cellnb.experiments import elmgan as exp
    from cellnb.report import half_budget_cell

    cfg = dict(exp.SETTINGS["smoke"], steps=24)
    data = exp.make_data(cfg, 0)
    trained = {(n, 0): exp.train_model(n, cfg, data, 0) for n in ("elmgan", "elmgan_no_gan")}
    for name in ("elmgan", "elmgan_no_gan"):
        fields = exp.half_budget_fields(trained, name)
        assert fields["seeds_half_budget"] == 1 and np.isfinite(fields["half_budget_gain"])
        assert half_budget_cell(fields).endswith("(1/1 seeds < 5 %)") or "(0/1" in half_budget_cell(fields)
