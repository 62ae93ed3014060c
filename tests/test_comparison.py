"""Pure functions of the comparison chapter (cellnb.experiments.comparison): hand-checked values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from cellnb.experiments import comparison as exp
from cellnb.results import Run


def _save(tmp_path, name, profile, verdicts):
    run = Run(name, profile=profile, device="cpu")
    for i, holds in enumerate(verdicts):
        run.claim(f"c{i}", f"{name} claim {i}", paper="paper", measured=float(i), holds=holds)
    run.metric("x", 1.0)
    return run.save(tmp_path)


def test_gather_claims_prefers_full_and_counts_verdicts(tmp_path):
    _save(tmp_path, "ssrnet", "quick", [True, False])
    _save(tmp_path, "ssrnet", "full", [True, True, None])  # full wins over quick
    _save(tmp_path, "elmgan", "quick", [False])
    claims, status = exp.gather_claims(["ssrnet", "elmgan", "mc_unet"], tmp_path)
    assert status.to_dict("records") == [
        {"chapter": "ssrnet", "profile": "full", "claims": 3},
        {"chapter": "elmgan", "profile": "quick", "claims": 1},
        {"chapter": "mc_unet", "profile": "missing", "claims": 0},
    ]
    assert claims["verdict"].tolist() == ["holds", "holds", "not testable here", "does not hold"]
    assert exp.claim_counts(claims) == {"claims_total": 4, "claims_hold": 2, "claims_fail": 1, "claims_untestable": 1}


def test_claim_counts_of_no_claims_are_zero(tmp_path):
    claims, status = exp.gather_claims(["ssrnet"], tmp_path)
    assert exp.claim_counts(claims) == {"claims_total": 0, "claims_hold": 0, "claims_fail": 0, "claims_untestable": 0}
    assert status["profile"].tolist() == ["missing"]


def test_aggregate_and_flatten_accuracy_hand_values():
    rows = pd.DataFrame([
        {"task": "count_gen", "model": "unet", "seed": 0, "mae": 2.0, "rmse": 3.0, "epochs": 4, "train_s": 1.0},
        {"task": "count_gen", "model": "unet", "seed": 1, "mae": 4.0, "rmse": 5.0, "epochs": 6, "train_s": 1.0},
        {"task": "count_gen", "model": "ssrnet", "seed": 0, "mae": 1.0, "rmse": 1.5, "epochs": 5, "train_s": 1.0},
    ])
    table = exp.aggregate(rows)
    unet = table[table["model"] == "unet"].iloc[0]
    assert unet["mae"] == 3.0 and unet["mae_std"] == pytest.approx(math.sqrt(2.0))  # sample std of {2, 4}
    assert unet["epochs"] == 5.0 and unet["n_seeds"] == 2
    flat = exp.flatten_accuracy(table)
    assert flat["unet_count_gen_mae"] == 3.0
    assert flat["unet_count_gen_rmse_std"] == pytest.approx(math.sqrt(2.0))
    assert flat["ssrnet_count_gen_mae_std"] == 0.0  # one seed
    assert "unet_count_gen_epochs" not in flat and "unet_count_gen_n_seeds" not in flat


def test_flatten_cost_keys_and_units():
    cost = pd.DataFrame([
        {"model": "unet", "size": 256, "device_kind": "cpu", "device": "cpu", "params": 100, "macs": 5_000,
         "memory_traffic": 2_000_000, "peak_bytes": 3_000_000, "median_ms": 12.5, "throughput": 80.0},
        {"model": "unet", "size": 512, "device_kind": "cpu", "device": "cpu", "params": 100, "macs": 20_000,
         "memory_traffic": 8_000_000, "peak_bytes": 9_000_000, "median_ms": np.nan, "throughput": np.nan},
    ])
    flat = exp.flatten_cost(cost)
    assert flat == {
        "unet_params": 100, "unet_macs_256": 5_000, "unet_traffic_mb_256": 2.0, "unet_peak_mb_256_cpu": 3.0,
        "unet_latency_ms_256_cpu": 12.5, "unet_throughput_256_cpu": 80.0,
        "unet_macs_512": 20_000, "unet_traffic_mb_512": 8.0, "unet_peak_mb_512_cpu": 9.0,
    }


def test_better_verdicts():
    assert exp.better((1.0, 0.1), (2.0, 0.2), lower_is_better=True) is True   # better by 1 > 0.2
    assert exp.better((1.9, 0.1), (2.0, 0.2), lower_is_better=True) is None   # better by 0.1 < spread
    assert exp.better((2.5, 0.0), (2.0, 0.0), lower_is_better=True) is False
    assert exp.better((0.8, 0.0), (0.7, 0.05), lower_is_better=False) is True


def test_comparison_claims_from_flat_metrics():
    flat = {"ssrnet_count_gen_mae": 1.0, "ssrnet_count_gen_mae_std": 0.1, "unet_count_gen_mae": 3.0,
            "unet_count_gen_mae_std": 0.5, "tiny_unet_macs_256": 4, "unet_macs_256": 100}
    claims = {c["id"]: c for c in exp.comparison_claims(flat)}
    assert set(claims) == {"ssrnet_vs_unet_count_gen_mae", "tiny_unet_macs_vs_unet"}  # others lack metrics
    assert claims["ssrnet_vs_unet_count_gen_mae"]["holds"] is True
    assert claims["ssrnet_vs_unet_count_gen_mae"]["measured"] == 1.0
    assert claims["tiny_unet_macs_vs_unet"]["measured"] == 0.04 and claims["tiny_unet_macs_vs_unet"]["holds"] is True
    assert all(set(c) == {"id", "statement", "paper", "measured", "holds", "note"} for c in claims.values())


def test_reproduction_cost_reads_results_and_timings(tmp_path):
    _save(tmp_path, "ssrnet", "quick", [True])
    (tmp_path / "timings").mkdir()
    (tmp_path / "timings" / "quick.json").write_text(json.dumps(
        {"notebooks": {"ssrnet": {"seconds": 99.5, "device": "cpu"}, "elmgan": {"seconds": 10.0, "device": "cpu"}}}))
    table = exp.reproduction_cost(["ssrnet", "elmgan", "mc_unet"], tmp_path)
    assert table["notebook"].tolist() == ["ssrnet", "elmgan"]
    assert table.loc[0, "runner_s"] == 99.5 and table.loc[0, "notebook_s"] >= 0
    assert math.isnan(table.loc[1, "notebook_s"]) and table.loc[1, "runner_s"] == 10.0


def test_count_item_density_sums_to_count_and_maps_pixel_centres():
    image = np.zeros((8, 8), np.float32)
    mask = np.zeros((8, 8), np.uint8)
    mask[:4, :4] = 1
    points = np.array([[1.5, 1.5], [5.5, 5.5]], np.float32)  # centres of 2x2 blocks -> pixels 0.5 and 2.5
    item = exp.count_item(image, points, mask, size=4, sigma=0.5)
    assert item["image"].shape == (1, 4, 4) and item["count"] == 2.0
    assert item["density"].sum() == pytest.approx(2.0, abs=1e-4)
    assert item["mask"][:2, :2].all() and item["mask"].sum() == 4
    with pytest.raises(ValueError, match="image and a mask"):
        exp.count_item(image, points, mask[:4], size=4, sigma=0.5)


def test_plain_loss_hand_values():
    out = {"mask_logits": torch.zeros(1, 1, 2, 2), "count": torch.tensor([12.0])}
    batch = {"mask": torch.ones(1, 2, 2), "count": torch.tensor([10.0])}
    total, parts = exp.make_loss("unet", count=True, mean_count=4.0)(out, batch)
    assert parts["seg"] == pytest.approx(math.log(2.0))  # BCE of logit 0
    assert parts["count"] == pytest.approx(0.25)  # ((12 - 10) / 4)^2
    assert float(total) == pytest.approx(math.log(2.0) + 0.25)


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        exp.build("resnet", exp.SETTINGS["smoke"])


def test_density_loss_accepts_channel_or_plain_targets():
    out = {"mask_logits": torch.zeros(1, 2, 2, 2), "density": torch.full((1, 1, 2, 2), 0.01)}
    loss = exp.make_loss("mc_unet", count=True)
    for target in (torch.zeros(1, 2, 2), torch.zeros(1, 1, 2, 2)):
        _, parts = loss(out, {"mask": torch.zeros(1, 2, 2), "density": target})
        assert parts["count"] == pytest.approx(1.0)  # (100 * 0.01)^2
        assert parts["seg"] == pytest.approx(math.log(2.0))  # CE of equal logits


def test_ssrnet_count_head_starts_at_the_mean_count():
    cfg = exp.SETTINGS["smoke"]
    model = exp.build("ssrnet", cfg)
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    exp.init_count_output("ssrnet", model, 17.0, images)
    model.eval()
    with torch.no_grad():
        assert float(model(images)["count"].mean()) == pytest.approx(17.0, rel=1e-4)
