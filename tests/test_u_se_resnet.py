"""Tests for the U-SE-ResNet chapter: model, edge-weighted BCE, post-processing, pipeline helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cellnb import postprocess
from cellnb.losses.u_se_resnet import (
    USEResNetLoss,
    canny_edge_weight,
    edge_weighted_bce,
    power_schedule,
)
from cellnb.models import create_model, list_models, outputs


# ------------------------------------------------------------------------------------ model


def test_registered_and_full_parameter_count_matches_spec():
    assert "u_se_resnet" in list_models()
    model = create_model("u_se_resnet")  # full width, SE-ResNet-50
    n = sum(p.numel() for p in model.parameters())
    # spec §2 [M]: smp Unet('se_resnet50', in_channels=1, classes=2) = 35.05 M
    # (encoder 26.03 M, decoder 9.01 M, head 290)
    assert n == 35_045_970
    assert sum(p.numel() for p in model.encoder.parameters()) == 26_032_752
    assert sum(p.numel() for p in model.decoder.parameters()) == 9_012_928
    assert sum(p.numel() for p in model.head.parameters()) == 16 * 2 * 9 + 2


def test_slim_forward_shapes_and_skip_resolutions():
    model = create_model("u_se_resnet", width=0.0625, blocks=(1, 1, 1, 1)).eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        feats = model.encoder(x)
        out = model(x)
    assert [f.shape[-2:] for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    # expansion 4 of the scaled widths 4/8/16/32; stem 64 * 0.0625 = 4
    assert [f.shape[1] for f in feats] == [4, 16, 32, 64, 128]
    assert set(out) == {outputs.MASK_LOGITS, outputs.MARKER_LOGITS}
    assert out[outputs.MASK_LOGITS].shape == (2, 1, 64, 96)
    assert out[outputs.MARKER_LOGITS].shape == (2, 1, 64, 96)


def test_se_sits_before_the_residual_add_and_stride_in_first_1x1():
    model = create_model("u_se_resnet", width=0.0625, blocks=(1, 1, 1, 1))
    block = model.encoder.stages[1][0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    assert type(block.bn3[1]).__name__ == "SqueezeExcitation"
    se = block.bn3[1]
    assert se.fc1.out_channels == 32 // 16 and se.fc1.in_channels == 32


def test_bad_input_raises_clear_errors():
    model = create_model("u_se_resnet", width=0.0625, blocks=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 1, 40, 64))
    with pytest.raises(ValueError, match="input channel"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="blocks"):
        create_model("u_se_resnet", blocks=(1, 1, 1))


# ------------------------------------------------------------------------------------ loss


def test_power_schedule_matches_released_table():
    # spec §3 table: p = (epoch/50)^5 over 120 epochs
    assert power_schedule(0) == 0.0
    assert power_schedule(50) == pytest.approx(1.0)
    assert power_schedule(25) == pytest.approx(0.03125)
    assert power_schedule(100) == pytest.approx(32.0)
    assert power_schedule(119) == pytest.approx(2.38**5)  # ≈ 76.4
    # a 12-epoch run walks the same range: epoch 5 of 12 = epoch 50 of 120
    assert power_schedule(5, total_epochs=12) == pytest.approx(1.0)


def test_edge_weighted_bce_hand_checked():
    # one image, 2 channels (mask, marker), 1x2 pixels; logits 0 -> BCE = ln 2 everywhere
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])
    weight = torch.tensor([[[[1.0, 0.5]]]])
    assert float(edge_weighted_bce(logits, target, weight, power=2.0)) == pytest.approx(math.log(2))
    # different per-pixel BCE: pixel A logit 2 (target 1): ln(1+e^-2); pixel B logit 0: ln 2
    logits = torch.tensor([[[[2.0, 0.0]], [[2.0, 0.0]]]])
    target = torch.ones(1, 2, 1, 2)
    a, b = math.log1p(math.exp(-2.0)), math.log(2.0)
    for power, (wa, wb) in [(0.0, (1, 1)), (1.0, (1, 0.5)), (2.0, (1, 0.25))]:
        expected = (wa * a + wb * b) / (wa + wb)
        assert float(edge_weighted_bce(logits, target, weight, power)) == pytest.approx(expected, rel=1e-6)


def test_edge_weighted_bce_rejects_bad_shapes():
    with pytest.raises(ValueError, match="weight"):
        edge_weighted_bce(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4), 1.0)
    with pytest.raises(ValueError, match="target"):
        edge_weighted_bce(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), 1.0)


def test_loss_object_uses_epoch_power_and_ablation():
    loss = USEResNetLoss(total_epochs=12)
    assert loss.set_epoch(5) == pytest.approx(1.0)
    ablated = USEResNetLoss(total_epochs=12, edge_weight=False)
    assert ablated.set_epoch(11) == 0.0
    out = {outputs.MASK_LOGITS: torch.zeros(1, 1, 2, 2), outputs.MARKER_LOGITS: torch.zeros(1, 1, 2, 2)}
    batch = {"mask": torch.ones(1, 1, 2, 2), "marker": torch.zeros(1, 1, 2, 2), "weight": torch.rand(1, 1, 2, 2)}
    total, parts = loss(out, batch)
    assert float(total) == pytest.approx(math.log(2)) and parts["power"] == pytest.approx(1.0)


def test_canny_edge_weight_is_one_on_borders_and_zero_far_away():
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # touching: the interface is a border too
    w = canny_edge_weight(labels)
    assert w.dtype == np.float32 and w.max() == pytest.approx(1.0)
    assert w.min() == pytest.approx(0.0)
    assert w[39, 39] < 0.2  # far corner: low weight (released map is over the whole image)
    assert w[10, 14:16].max() == pytest.approx(1.0)  # interface between the touching cells
    assert np.all(canny_edge_weight(np.zeros((8, 8), np.int32)) == 1.0)


# ------------------------------------------------------------------------------------ post-processing


def _two_touching_discs():
    yy, xx = np.mgrid[:40, :60]
    a = (yy - 20) ** 2 + (xx - 20) ** 2 <= 10**2
    b = (yy - 20) ** 2 + (xx - 38) ** 2 <= 10**2
    mask = (a | b).astype(float)
    markers = (((yy - 20) ** 2 + (xx - 20) ** 2 <= 4**2) | ((yy - 20) ** 2 + (xx - 38) ** 2 <= 4**2)).astype(float)
    return mask, markers


def test_markers_watershed_separates_touching_cells_and_cc_does_not():
    mask, markers = _two_touching_discs()
    inst = postprocess.markers_watershed(mask, markers, min_size=5)
    assert inst.dtype == np.int32 and inst.max() == 2
    assert inst[20, 20] != inst[20, 38] and inst[20, 20] > 0
    # the split lies on the neck between the discs (x = 29)
    assert inst[20, 27] == inst[20, 20] and inst[20, 31] == inst[20, 38]
    assert postprocess.connected_components(mask, min_size=5).max() == 1


def test_a_higher_marker_threshold_keeps_bridged_markers_apart():
    mask, markers = _two_touching_discs()
    markers[19:22, 20:39] = np.maximum(markers[19:22, 20:39], 0.6)  # a faint marker bridge over the neck
    assert postprocess.markers_watershed(mask, markers, min_size=5).max() == 1  # the paper's 0.5: merged
    assert postprocess.markers_watershed(mask, markers, min_size=5, marker_threshold=0.7).max() == 2
    assert postprocess.markers_watershed(mask, markers, min_size=5, threshold=0.7).max() == 2  # one for both
    with pytest.raises(ValueError, match="marker_threshold"):
        postprocess.markers_watershed(mask, markers, marker_threshold=1.0)


def test_small_objects_and_seedless_components_are_dropped():
    mask, markers = _two_touching_discs()
    mask[2:4, 55:57] = 1.0  # 4-pixel speck with its own marker -> removed by T-a
    markers[2:4, 55:57] = 1.0
    mask[30:38, 52:60] = 1.0  # 64-px component without a marker -> unlabelled
    inst = postprocess.markers_watershed(mask, markers, min_size=10)
    assert inst.max() == 2 and inst[3, 56] == 0 and inst[34, 56] == 0
    lab = np.array([[1, 1, 0, 2], [1, 1, 0, 3]], np.int32)
    np.testing.assert_array_equal(postprocess.remove_small_labels(lab, 2), [[1, 1, 0, 0], [1, 1, 0, 0]])


def test_postprocess_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="shape"):
        postprocess.markers_watershed(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2-D"):
        postprocess.markers_watershed(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))


# ------------------------------------------------------------------------------------ pipeline helpers


def test_percentile_normalisation_clips_one_percent_tails():
    from cellnb.methods.u_se_resnet import normalize_percentile

    img = np.arange(10000, dtype=np.uint16).reshape(100, 100)
    img[0, 0] = 65535  # hot pixel
    out = normalize_percentile(img)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    # values below the 1st percentile (≈ 100) are clipped to 0, the hot pixel to 1
    assert out[0, 50] == 0.0 and out[0, 0] == 1.0
    assert out[50, 0] == pytest.approx((5000 - np.percentile(img, 1)) / (np.percentile(img, 99) - np.percentile(img, 1)), rel=1e-4)


def test_image_scores_hand_checked():
    from cellnb.experiments.u_se_resnet import image_scores

    true = np.zeros((10, 10), np.int32)
    true[:5, :5], true[5:, 5:] = 1, 2
    pred = np.zeros_like(true)
    pred[:5, :5] = 7  # perfect match of cell 1, cell 2 missed, one false positive of 4 px
    pred[6:8, 0:2] = 3
    s = image_scores(true, pred)
    assert s["ap50"] == pytest.approx(1 / 3)  # TP 1 / (TP 1 + FP 1 + FN 1)
    assert s["dice"] == pytest.approx(2 * 25 / (50 + 29))
    assert s["seg"] == pytest.approx(0.5)  # cell 1 Jaccard 1, cell 2 unmatched 0
    assert s["aji"] == pytest.approx(25 / (25 + 25 + 4))  # unmatched truth and prediction join the union
    assert 0.0 < s["boundary_f1"] < 1.0


def test_boundary_f1_perfect_empty_and_shifted():
    from cellnb.experiments.u_se_resnet import boundary_f1

    lab = np.zeros((20, 20), np.int32)
    lab[5:15, 5:15] = 1
    assert boundary_f1(lab, lab) == 1.0
    assert boundary_f1(np.zeros_like(lab), np.zeros_like(lab)) == 1.0
    assert boundary_f1(lab, np.zeros_like(lab)) == 0.0
    shifted = np.roll(lab, 1, axis=1)  # 1 px shift: within the 1.5 px tolerance
    assert boundary_f1(lab, shifted) == 1.0
    assert boundary_f1(lab, np.roll(lab, 4, axis=1)) < 0.6


def test_paired_broadcasts_reference_rows_over_seeds():
    import pandas as pd

    from cellnb.experiments.u_se_resnet import paired

    rows = [{"task": "t", "variant": "m", "post": "markers", "seed": s, "image": i, "ap50": 10 * s + i}
            for s in (0, 1, 2) for i in (0, 1)]
    rows += [{"task": "t", "variant": "floor", "post": "otsu_watershed", "seed": -1, "image": i, "ap50": 0.5}
             for i in (0, 1)]
    a, b, g = paired(pd.DataFrame(rows), "t", "ap50", ("m", "markers"), ("floor", "otsu_watershed"))
    assert a.tolist() == [0, 1, 10, 11, 20, 21] and b.tolist() == [0.5] * 6 and g.tolist() == [0, 0, 1, 1, 2, 2]


# ------------------------------------------------------------------------------------ method layer


def test_method_registered_with_tasks_sizes_losses():
    from cellnb.methods import get_method, list_methods

    m = get_method("u_se_resnet")
    assert "u_se_resnet" in list_methods("instances") and set(m.tasks) == {"mask", "instances", "count"}
    assert sum(p.numel() for p in m.build("paper").parameters()) == 35_045_970
    assert m.losses[0] == "edge_weighted_bce"
    assert m.loss("bce", total_steps=10).set_epoch(9) == 0.0
    assert m.loss(total_steps=12).set_epoch(5) == pytest.approx(1.0)  # step 5 of 12 = epoch 50 of 120
    with pytest.raises(ValueError, match="choose from"):
        m.loss("dice")
    with pytest.raises(ValueError, match="size"):
        m.build("huge")
    with pytest.raises(ValueError, match="does not do task"):
        m.build("tiny", task="sr")


def test_method_targets_from_labels():
    from cellnb.methods import get_method

    labels = np.zeros((12, 12), np.int32)
    labels[2:8, 2:8] = 1
    t = get_method("u_se_resnet").targets({"image": np.zeros((12, 12)), "labels": labels}, erosion=3)
    assert set(t) == {"mask", "marker", "weight"} and t["mask"].shape == (1, 12, 12)
    assert t["mask"].sum() == 36
    assert t["marker"].sum() == 16  # 6x6 square eroded by a 3x3 square -> 4x4
    with pytest.raises(KeyError, match="labels"):
        get_method("u_se_resnet").targets({"image": np.zeros((4, 4))})


def test_method_trains_predicts_odd_sizes_and_round_trips():
    from cellnb import data
    from cellnb.methods import get_method

    m = get_method("u_se_resnet")
    samples = [{"image": s["image"], "labels": s["labels"]} for s in (data.nuclei(i, size=64) for i in range(3))]
    model = m.build("tiny")
    hist = m.train(model, samples[:2], samples[2:], steps=4, batch_size=2, crop=40, n_evals=2, seed=0)  # crop -> 32
    assert list(hist.step) == [2, 4] and np.isfinite(hist.val_loss).all() and hist.attrs["steps_per_s"] > 0
    image = np.random.default_rng(0).random((45, 70)).astype(np.float32)
    pred = m.predict(model, image)
    assert pred.foreground.shape == (45, 70) and pred.labels.shape == (45, 70)
    assert pred.maps["marker"].shape == (45, 70) and pred.count == float(pred.labels.max())
    clone = m.build("tiny")
    clone.load_state_dict(model.state_dict())
    again = m.predict(clone.eval(), image)
    np.testing.assert_allclose(again.foreground, pred.foreground, atol=1e-6)


def test_oracle_ceiling_of_markers_is_high_and_cc_low_on_touching_nuclei():
    from cellnb import data, floors
    from cellnb.methods import get_method

    m = get_method("u_se_resnet")
    labels = [data.nuclei(i, size=128)["labels"] for i in range(2)]
    marker = floors.instance_ceiling(lambda o: m.instances_from_mask_marker(o["mask"], o["marker"], min_size=15).labels, labels, erosion=4)
    cc = floors.instance_ceiling(lambda o: m.instances_from_mask_marker(o["mask"], o["marker"], min_size=15, use_markers=False).labels,
                                 labels, erosion=4)
    assert marker["aji"] >= 0.9 and marker["ap50"] >= 0.9
    assert cc["aji"] < 0.6  # connected components of the perfect mask merge touching nuclei


def test_settings_share_keys_and_smoke_is_small():
    from cellnb import config
    from cellnb.experiments import u_se_resnet as exp

    for profile in ("smoke", "quick", "full"):
        cfg = config.settings_for(exp.SETTINGS, profile)
        assert cfg["crop"] % 32 == 0 and cfg["n_evals"] >= 8
    assert config.settings_for(exp.SETTINGS, "quick")["n_seeds"] >= 3


def test_no_instance_models_names_the_models_without_instances_and_why():
    from cellnb.experiments import u_se_resnet as exp

    models = {"real_real_only_s2": {"variant": "real_only", "seed": 2, "n_instances": 0, "marker_max": 0.48,
                                    "mask_fraction": 0.07},
              "real_finetuned_s2": {"variant": "finetuned", "seed": 2, "n_instances": 390, "marker_max": 0.98,
                                    "mask_fraction": 0.08},
              "real_generated_only_s1": {"variant": "generated_only", "seed": 1, "n_instances": 0, "marker_max": 0.7,
                                         "mask_fraction": 0.0},
              "ctc_baseline_s0": {"variant": "baseline", "seed": 0}}  # no count recorded: not listed
    found = exp.no_instance_models(models)
    assert [e["model"] for e in found] == ["real_real_only_s2", "real_generated_only_s1"]
    assert [e["markers_below_threshold"] for e in found] == [True, False]
