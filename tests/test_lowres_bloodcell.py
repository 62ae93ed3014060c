"""Tests of the low-resolution blood-cell chapter: MobileSR, TinyU-Net, losses, pipeline helpers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
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
    assert settings_for(exp.SETTINGS, "full").seg_size == "paper"  # the paper's TinyU-Net
    for profile in ("smoke", "quick"):
        assert settings_for(exp.SETTINGS, profile).n_seeds >= 3  # a verdict needs >= 3 seeds


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


# --------------------------------------------------------------------------- TinyU-Net fast decoder
def test_tiny_unet_decoder_order_does_not_change_the_output():
    # upsampling after the decoder's first 1x1 conv (TinyUNet.decode) == the released order
    torch.manual_seed(0)
    for widths in ((64, 128, 256, 512), (16, 32, 64)):
        model = create_model("tiny_unet", widths=widths).eval()
        x = torch.rand(2, 3, 48, 32)
        with torch.no_grad():
            fast, ref = model(x)["mask_logits"], model.forward_reference(x)["mask_logits"]
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)


def test_tiny_unet_bn_momentum_option_keeps_the_released_default():
    bns = [m for m in create_model("tiny_unet").modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.03 and m.eps == 1e-3 for m in bns)
    slim = [m for m in create_model("tiny_unet", widths=(16, 32), bn_momentum=0.1).modules()
            if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.momentum == 0.1 for m in slim)


# --------------------------------------------------------------------------- methods
def cmrf_params(cin: int, cout: int) -> int:
    # pw1 (no bias) + BN, 7 depthwise 3x3 (no bias) + BN on cout/16 channels, pw2 + BN
    q, h = cout // 8, cout // 16
    return cin * q + 2 * q + 7 * (9 * h + 2 * h) + (cout // 2) * cout + 2 * cout


def test_methods_are_registered_with_their_tasks_and_sizes():
    from cellnb.methods import get_method, list_methods

    sr, seg, pipe = get_method("mobilesr"), get_method("tiny_unet"), get_method("mobilesr_tinyunet")
    assert sr.tasks == ("sr",) and sr.sr_scale == 4
    assert seg.tasks == ("mask",)
    assert set(pipe.tasks) == {"sr", "mask"} and pipe.sr_scale == 4
    assert {"mobilesr", "mobilesr_tinyunet"} <= set(list_methods("sr"))
    assert {"tiny_unet", "mobilesr_tinyunet"} <= set(list_methods("mask"))
    assert n_params(sr.build("paper")) == 175_883
    assert n_params(seg.build("paper")) == 481_170
    # slim: three CMRF levels 16, 32, 64 (+ decoders on concatenated skips) + 1x1 head to 2 classes
    slim = (cmrf_params(3, 16) + cmrf_params(16, 32) + cmrf_params(32, 64)
            + cmrf_params(128, 64) + cmrf_params(96, 32) + cmrf_params(48, 16) + 16 * 2 + 2)
    assert n_params(seg.build("slim")) == slim == 8822
    assert n_params(pipe.build("paper")) == 175_883 + 481_170
    with pytest.raises(ValueError, match="no size"):
        seg.build("huge")
    with pytest.raises(ValueError, match="does not do task"):
        seg.build("slim", task="sr")


def test_prediction_rules_by_hand():
    from cellnb.methods import get_method

    seg = get_method("tiny_unet")
    logits = torch.zeros(2, 1, 1)
    logits[0], logits[1] = 2.0, 1.0  # softmax P(cell) = 1 / (1 + e) = 0.269; sigmoid(1) = 0.731
    soft = seg.postprocess({"mask_logits": logits}).foreground
    repo = seg.postprocess({"mask_logits": logits}, loss="repo").foreground
    assert soft[0, 0] == pytest.approx(1 / (1 + math.e), abs=1e-6)
    assert repo[0, 0] == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-6)  # the repo calls this a cell


def test_methods_predict_on_odd_sizes():
    from cellnb.methods import get_method

    torch.manual_seed(0)
    seg = get_method("tiny_unet")
    pred = seg.predict(seg.build("slim"), np.random.default_rng(0).integers(0, 255, (37, 45, 3), dtype=np.uint8))
    assert pred.foreground.shape == (37, 45) and 0 <= pred.foreground.min() and pred.foreground.max() <= 1
    sr = get_method("mobilesr")
    model = sr.build("slim")
    out = sr.predict(model, np.random.default_rng(1).random((13, 10, 3)).astype(np.float32))
    assert out.sr_image.shape == (3, 52, 40)
    # tiled prediction (image larger than a tile): with the residual branch zeroed the output is the
    # bilinear upscaling, so a constant image must come back constant, tile seams included
    with torch.no_grad():
        model.tail[1].weight.zero_()
        model.tail[1].bias.zero_()
    flat = sr.predict(model, np.full((40, 24, 3), 0.3, np.float32), tile=16, overlap=4)
    assert flat.sr_image.shape == (3, 160, 96)
    np.testing.assert_allclose(flat.sr_image, 0.3, atol=1e-6)
    pipe = get_method("mobilesr_tinyunet")
    both = pipe.predict(pipe.build("slim"), np.random.default_rng(2).random((17, 23, 3)).astype(np.float32))
    assert both.sr_image.shape == (3, 68, 92) and both.foreground.shape == (68, 92)


def tiny_samples(n: int = 3, size: int = 64):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        img = rng.random((3, size, size)).astype(np.float32)
        out.append({"image": img, "mask": (img[0] > 0.5).astype(np.int64)})
    return out


def test_methods_train_a_few_steps_and_round_trip_a_checkpoint(tmp_path):
    from cellnb.methods import get_method

    torch.manual_seed(0)
    samples = tiny_samples()
    for name, kwargs in (("tiny_unet", dict(crop=32, batch_size=2)), ("mobilesr", dict(crop=32, batch_size=2)),
                         ("mobilesr_tinyunet", dict(crop=32, batch_size=2, sr_steps=2, sr_batch=2, sr_crop=32))):
        method = get_method(name)
        model = method.build("slim")
        hist = method.train(model, samples[:2], samples[2:], steps=2, evals=2, **kwargs)
        assert {"train_loss", "val_loss"} <= set(hist.columns) and np.isfinite(hist["val_loss"]).all()
        path = tmp_path / f"{name}.pt"
        torch.save(model.state_dict(), path)
        again = method.build("slim")
        again.load_state_dict(torch.load(path))
        image = np.random.default_rng(3).random((16, 16, 3)).astype(np.float32)
        a, b = method.predict(model, image), method.predict(again, image)
        for field in ("foreground", "sr_image"):
            if getattr(a, field) is not None:
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_mobilesr_targets_are_box_averages():
    from cellnb.methods import get_method

    hr = np.zeros((3, 8, 8), np.float32)
    hr[:, :4, :4] = 1.0  # one bright LR pixel's 4x4 block
    t = get_method("mobilesr").targets({"image": hr})
    assert t["lr"].shape == (3, 2, 2) and t["lr"][0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    uint8 = get_method("tiny_unet").normalize(np.full((4, 4, 3), 255, np.uint8))
    assert uint8.shape == (3, 4, 4) and uint8.max() == 1.0  # [0, 1] without min-max stretching


def test_validation_images_are_held_out_of_the_training_pool():
    cfg = settings_for(exp.SETTINGS, "smoke")
    d = exp.make_dataset(cfg, seed=0)
    assert len(d["train"]["hr"]) == cfg.n_train - cfg.n_val and len(d["val"]["hr"]) == cfg.n_val
    pool = exp.make_split(exp.split_seeds(0, cfg.n_train, "train"), cfg.smear_size, cfg.hr_size, cfg.lr_size)
    np.testing.assert_array_equal(d["val"]["hr"], pool["hr"][-cfg.n_val:])
    assert not any(np.array_equal(v, t) for v in d["val"]["hr"] for t in d["train"]["hr"])


def test_otsu_floor_takes_cells_as_the_dark_class():
    img = np.ones((1, 3, 16, 16), np.float32)
    img[0, :, 4:12, 4:12] = 0.2  # a dark cell on a bright background
    m = exp.otsu_masks(img)[0]
    assert m[8, 8] == 1 and m[0, 0] == 0


# --------------------------------------------------------------------------- the verdicts the chapter records
def fake_out(sr_gain: float, seg_gain: float, n_seeds: int = 3, n_img: int = 6):
    rng = np.random.default_rng(0)
    flat = pd.DataFrame({"epoch": range(1, 13), "train_loss": np.r_[np.linspace(1, 0.2, 6), [0.2] * 6],
                         "val_loss": np.r_[np.linspace(1, 0.2, 6), [0.2] * 6]})
    sr_rows, seg_rows = [], []
    for s in range(n_seeds):
        for i in range(n_img):
            bic = 28 + rng.normal(0, 0.5)
            sr_rows.append({"seed": s, "image": i, "psnr": bic + sr_gain + rng.normal(0, 0.05), "ssim": 0.8,
                            "bicubic_psnr": bic, "bicubic_ssim": 0.78, "nearest_psnr": bic - 2, "nearest_ssim": 0.7})
            base = 0.95 + rng.normal(0, 0.005)
            for name, d in (("tiny_unet_bicubic", base), ("tiny_unet_sr", base + seg_gain),
                            ("tiny_unet_sr_repo", base + seg_gain - 0.01)):
                seg_rows.append({"model": name, "seed": s, "image": i, "dice": d + rng.normal(0, 0.001), "iou": d - 0.05,
                                 "precision": d, "recall": d, "per_cell_dice": 0.3, "floor_dice": 0.90})
    names = ("mobilesr", "tiny_unet_bicubic", "tiny_unet_sr", "tiny_unet_sr_repo")
    floor = pd.DataFrame({"dice": [0.9] * n_img, "iou": [0.8] * n_img, "per_cell_dice": [0.2] * n_img})
    return {"sr_rows": pd.DataFrame(sr_rows), "seg_rows": pd.DataFrame(seg_rows),
            "histories": {n: [flat] * n_seeds for n in names}, "steps_per_s": {n: 5.0 for n in names},
            "floor_rows": {"bicubic": floor, "hr": floor}, "e2e": None}


@pytest.mark.parametrize("sr_gain, seg_gain, sr_holds, seg_holds", [(1.0, 0.02, True, True), (-1.0, -0.02, None, None)])
def test_record_decides_claims_by_the_verdict_rule(sr_gain, seg_gain, sr_holds, seg_holds):
    from cellnb.results import Run

    cfg = settings_for(exp.SETTINGS, "smoke")
    run = Run("lowres_bloodcell", "smoke", device="cpu")
    exp.record(run, fake_out(sr_gain, seg_gain), cfg, {"mobilesr": 175_883, "tiny_unet_paper": 481_170, "tiny_unet_run": 8822})
    claims = {c.id: c for c in run.claims}
    assert claims["sr_beats_bicubic"].holds is sr_holds
    # a MobileSR that loses to bicubic has not learned: its verdicts are then inconclusive, not false
    assert claims["sr_helps_segmentation"].holds is seg_holds
    assert claims["sr_helps_segmentation"].seeds == 3 and claims["sr_helps_segmentation"].n == 18
    assert run.models["mobilesr"]["beats_floor"] is (sr_gain > 0) and run.models["mobilesr"]["converged"]
    assert run.models["tiny_unet_sr"]["floor"] == pytest.approx(0.90)
    for cid in ("dice_0_92", "iou_0_86", "sr_psnr_25"):
        assert claims[cid].basis == "other data" and claims[cid].holds is None
    assert claims["tinyunet_params"].kind == "check" and claims["tinyunet_params"].holds
    assert claims["mobilesr_params"].kind == "check" and claims["mobilesr_params"].holds
    assert run.metrics["floor_psnr"] < run.metrics["sr_psnr"] if sr_gain > 0 else True
    assert "floor_dice" in run.metrics and "tiny_unet_sr_steps_per_s" in run.metrics
