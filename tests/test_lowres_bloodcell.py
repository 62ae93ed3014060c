"""Tests of the low-resolution blood-cell chapter: MobileSR, TinyU-Net, losses, pipeline helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cellnb.config import PROFILES, settings_for
from cellnb.experiments import lowres_bloodcell as exp
from cellnb.losses.lowres_bloodcell import joint_loss, repo_ce_sigmoid_dice_loss, seg_loss_tensor, sr_l1_loss
from cellnb.models import create_model, list_models
from cellnb.models.mobilesr import WindowAttention
from cellnb.models.tiny_unet import CMRF


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- MobileSR
def test_mobilesr_parameter_count_matches_official():
    # official MobileSR (n_feats 40, ratios 4,2,2,2,4): 175,883 parameters (0.176 M in its README)
    assert "mobilesr" in list_models()
    assert n_params(create_model("mobilesr")) == 175_883


def test_mobilesr_is_a_residual_over_bilinear_upsampling():
    model = create_model("mobilesr", n_feats=16, n_heads=2, ratios=(2,), window=4).eval()
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        model.tail[1].weight.zero_()
        model.tail[1].bias.zero_()
        out = model(x)["sr_image"]
    assert out.shape == (1, 3, 32, 48)
    torch.testing.assert_close(out, F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False))


def test_window_attention_is_local_and_pads_odd_sizes():
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, n_heads=2, window=4).eval()
    x = torch.rand(1, 6, 10, 8)  # 6x10 is padded to 8x12 and cropped back
    y = attn(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[0, 0, 0] += 1.0  # a pixel of window (0, 0)
    y2 = attn(x2)
    changed = (y2 - y).abs().sum(-1) > 1e-6
    assert changed[:4, :4].any()
    assert not changed[4:, :].any() and not changed[:, 4:].any()  # other windows untouched


def test_mobilesr_rejects_bad_input():
    model = create_model("mobilesr")
    with pytest.raises(ValueError, match="3 input channel"):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="power of two"):
        create_model("mobilesr", scale=3)


# --------------------------------------------------------------------------- TinyU-Net
def test_tiny_unet_parameter_count_matches_paper():
    # TinyU-Net paper: 0.48 M; released model file: 481,170 parameters
    model = create_model("tiny_unet")
    assert n_params(model) == 481_170
    out = model.eval()(torch.rand(1, 3, 32, 32))["mask_logits"]
    assert out.shape == (1, 2, 32, 32)


def test_cmrf_parameter_count_by_hand():
    # CMRF(3 -> 64), N=8: pw1 3*8 + BN 2*8 = 40; 7 DW (4 ch): 7*(4*9 + 2*4) = 308;
    # pw2 32*64 + BN 2*64 = 2176; total 2524
    assert n_params(CMRF(3, 64)) == 2524


def test_cmrf_receptive_field_is_15_pixels():
    # 7 cascaded 3x3 depthwise convs -> an impulse reaches exactly +-7 pixels (1x1 convs elsewhere)
    torch.manual_seed(0)
    block = CMRF(16, 16, shortcut=False).eval()
    zero = torch.zeros(1, 16, 21, 21)
    impulse = zero.clone()
    impulse[0, :, 10, 10] = 1.0
    with torch.no_grad():
        diff = (block(impulse) - block(zero)).abs().sum(1)[0]
    rows, cols = np.nonzero(diff.numpy() > 1e-7)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 17, 3, 17)


def test_tiny_unet_rejects_sizes_not_multiple_of_16():
    with pytest.raises(ValueError, match="multiples of 16"):
        create_model("tiny_unet")(torch.rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match="multiples of 2\\*N"):
        create_model("tiny_unet", widths=(24, 48))


# --------------------------------------------------------------------------- losses
def test_repo_ce_sigmoid_dice_by_hand():
    # zero logits: CE = ln 2; sigmoid = 0.5 -> Dice = (2*0.5 + s) / (1 + 1 + s) ~ 0.5
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    assert repo_ce_sigmoid_dice_loss(logits, target).item() == pytest.approx(math.log(2) + 0.5, abs=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        repo_ce_sigmoid_dice_loss(logits, torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown segmentation loss"):
        seg_loss_tensor(logits, target, "bce")


def test_joint_loss_adds_weighted_l1():
    logits = torch.zeros(1, 2, 1, 2)
    batch = {"mask": torch.tensor([[[1, 0]]]), "hr": torch.zeros(1, 3, 1, 2)}
    out = {"mask_logits": logits, "sr_image": torch.full((1, 3, 1, 2), 0.25)}
    total, parts = joint_loss("repo", sr_weight=2.0)(out, batch)
    assert parts["l1"] == pytest.approx(0.25)
    assert total.item() == pytest.approx(math.log(2) + 0.5 + 0.5, abs=1e-5)
    with pytest.raises(ValueError, match="differs"):
        sr_l1_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8))


# --------------------------------------------------------------------------- pipeline helpers
def test_settings_profiles_share_keys():
    for profile in PROFILES:
        cfg = settings_for(exp.SETTINGS, profile)
        assert cfg.hr_size == cfg.lr_size * exp.SCALE
        assert cfg.seg_crop % 16 == 0 and cfg.seg_crop % exp.SCALE == 0
    assert settings_for(exp.SETTINGS, "full").seg_widths == [64, 128, 256, 512]  # the paper's TinyU-Net


def test_paired_patches_keep_lr_and_hr_aligned():
    hr = np.arange(2 * 32 * 32, dtype=np.float32).reshape(2, 1, 32, 32)
    lr = hr[..., ::4, ::4].copy()
    mask = (hr[:, 0] % 3).astype(np.int64)
    ds = exp.PairedPatches({"image": lr, "hr": hr, "mask": mask}, {"image": 4, "hr": 1, "mask": 1}, crop=16, length=20)
    for i in range(20):
        item = ds[i]
        assert item["image"].shape == (1, 4, 4) and item["hr"].shape == (1, 16, 16) and item["mask"].shape == (16, 16)
        # flips and 90° rotations map top-left-of-block samples to another block corner: compare as sets per block
        hr_blocks = item["hr"][0].reshape(4, 4, 4, 4).permute(0, 2, 1, 3).reshape(4, 4, 16)
        assert all(item["image"][0, r, c] in hr_blocks[r, c] for r in range(4) for c in range(4))
        assert torch.equal(item["mask"], (item["hr"][0] % 3).long())
    with pytest.raises(ValueError, match="multiple of 4"):
        exp.PairedPatches({"image": lr, "hr": hr}, {"image": 4, "hr": 1}, crop=10, length=1)


def test_nearest_upscale_and_label_resize():
    lr = np.array([[[[0.0, 1.0], [0.5, 0.25]]]], dtype=np.float32)
    up = exp.nearest_upscale(lr, 2)
    assert up[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [0.5, 0.5, 0.25, 0.25], [0.5, 0.5, 0.25, 0.25]]
    labels = np.array([[0, 7], [3, 0]], dtype=np.int32)
    assert exp.resize_labels(labels, 4).tolist() == [[0, 0, 7, 7], [0, 0, 7, 7], [3, 3, 0, 0], [3, 3, 0, 0]]


def test_image_cache_round_trip(tmp_path):
    images = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    paths = exp.write_image_cache(images, tmp_path / "sr_test")
    assert [p.name for p in paths] == ["000.png", "001.png"]
    back = exp.read_image_cache(tmp_path / "sr_test")
    assert back.shape == images.shape and np.abs(back - images).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(FileNotFoundError):
        exp.read_image_cache(tmp_path / "empty")


def test_evaluate_segmentation_by_hand():
    true_labels = np.zeros((1, 4, 6), np.int32)
    true_labels[0, :2, :2] = 1  # cell 1: 4 px
    true_labels[0, :2, 4:] = 2  # cell 2: 4 px
    true_mask = (true_labels > 0).astype(np.int64)
    pred = np.zeros((1, 4, 6), np.uint8)
    pred[0, :2, :2] = 1  # cell 1 exact
    pred[0, 0, 4:] = 1  # half of cell 2
    pred[0, 3, 0] = 1  # one false-positive pixel
    m = exp.evaluate_segmentation(pred, true_mask, true_labels)
    # TP 6, FP 1, FN 2: precision 6/7, recall 6/8, Dice 12/15, IoU 6/9
    assert m["precision"] == pytest.approx(6 / 7)
    assert m["recall"] == pytest.approx(0.75)
    assert m["dice"] == pytest.approx(0.8)
    assert m["iou"] == pytest.approx(2 / 3)
    # per-cell: cell 1 Dice 1, cell 2 Dice 2*2/(4+2) = 2/3
    assert m["per_cell_dice"] == pytest.approx((1 + 2 / 3) / 2)


def test_image_quality_psnr_by_hand():
    hr = np.zeros((1, 3, 8, 8), np.float32)
    pred = np.full_like(hr, 0.1)  # MSE 0.01 -> PSNR 20 dB
    q = exp.image_quality(np.concatenate([pred, hr]), np.concatenate([hr, hr]))
    assert q["psnr"][0] == pytest.approx(20.0)
    assert q["ssim"][1] == pytest.approx(1.0)


def test_recalibrate_batchnorm_recomputes_running_statistics():
    # a BN layer whose running stats are stale: after recalibration they equal the data's mean / unbiased var
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1, momentum=0.03))
    model[0].running_mean.fill_(5.0)
    values = np.array([0.0, 2.0, 4.0, 6.0], dtype=np.float32)  # one constant image per value
    images = values[:, None, None, None] * np.ones((4, 1, 2, 2), np.float32)
    items = [{"image": torch.from_numpy(images[i])} for i in range(4)]
    assert exp.recalibrate_batchnorm(model, items, batch=4, n_batches=1) == 1
    assert model[0].running_mean.item() == pytest.approx(3.0)
    # per-batch unbiased variance over 4 images x 4 pixels: mean of squares 14 - 9 = 5, x 16/15
    assert model[0].running_var.item() == pytest.approx(5.0 * 16 / 15)
    assert model[0].momentum == 0.03
