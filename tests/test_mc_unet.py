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


def test_method_is_registered_with_its_tasks_sizes_and_losses():
    from cellnb.methods import get_method, list_methods

    m = get_method("mc_unet")
    assert "mc_unet" in list_methods("instances") and "mc_unet" in list_methods("count")
    assert m.losses[0] == "paper" and {"code", "baseline", "no_density", "no_boundary"} <= set(m.losses)
    assert m.heads_for("paper") == ("mask", "density", "boundary")
    assert m.heads_for("code") == ("mask",)  # the released code has no extra heads
    with pytest.raises(ValueError, match="no loss"):
        m.loss("bogus")
    with pytest.raises(ValueError, match="no size"):
        m.build("huge")


def test_targets_from_labels_hand_values():
    from cellnb.methods import get_method

    labels = two_touching_squares()
    t = get_method("mc_unet").targets({"image": np.zeros(labels.shape, np.float32), "labels": labels})
    assert t["mask"].sum() == 2 * 8 * 6
    assert t["density"].sum() == pytest.approx(2.0, rel=1e-4)  # one unit per nucleus
    # inner boundaries: the interface columns 7 and 8 are boundary on every row of the squares
    assert t["boundary"][2:10, 7].all() and t["boundary"][2:10, 8].all()
    assert t["boundary"][5, 4] == 0  # interior


def test_post_processing_splits_touching_cells_with_each_map():
    from cellnb.methods.mc_unet import instances, oracle_inputs

    labels = two_touching_squares()
    maps = oracle_inputs(labels, sigma=1.0)
    by_boundary = instances(maps["mask"], boundary=maps["boundary"], min_seed_area=2)
    by_density = instances(maps["mask"], density=maps["density"], min_distance=2)
    assert len(np.unique(by_boundary)) - 1 == 2 and len(np.unique(by_density)) - 1 == 2
    assert (by_boundary > 0).sum() == (labels > 0).sum()  # the watershed gives the boundary pixels back
    # connected components (the comparison's legacy helper) merge the two cells
    assert exp.instances(maps["mask"]).max() == 1


def test_scaled_density_divides_the_density_only():
    from cellnb.methods.mc_unet import ScaledDensity

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return {outputs.DENSITY: torch.full((1, 1, 2, 2), 50.0), outputs.MASK_LOGITS: torch.ones(1, 2, 2, 2)}

    out = ScaledDensity(Fixed(), 100.0)(torch.zeros(1, 1, 2, 2))
    assert out[outputs.DENSITY].sum().item() == pytest.approx(2.0)
    assert out[outputs.MASK_LOGITS].sum().item() == pytest.approx(8.0)
    with pytest.raises(ValueError, match="positive"):
        ScaledDensity(Fixed(), 0.0)


def test_predict_on_an_odd_size_and_count_is_the_density_sum(tmp_path):
    from cellnb.methods import get_method

    m = get_method("mc_unet")
    torch.manual_seed(0)
    model = m.build("tiny", loss="paper")
    pred = m.predict(model, np.random.default_rng(0).random((21, 27)).astype(np.float32))
    assert pred.labels.shape == (21, 27) and pred.foreground.shape == (21, 27)
    assert set(pred.maps) == {"density", "boundary"}
    assert pred.count == pytest.approx(float(pred.maps["density"].sum()), rel=1e-5)
    # checkpoint round trip
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    again = m.build("tiny", loss="paper")
    again.load_state_dict(torch.load(path))
    x = torch.rand(1, 1, 16, 16)
    model.eval(), again.eval()
    assert torch.allclose(model(x)[outputs.DENSITY], again(x)[outputs.DENSITY])


def test_train_records_train_and_validation_loss():
    from cellnb.methods import get_method
    from cellnb.methods.mc_unet import make_split

    m = get_method("mc_unet")
    items = make_split(0, 3, 32, "dense", 2.0, 0.5)
    model = m.build("tiny", loss="paper")
    history = m.train(model, items[:2], items[2:], steps=2, batch_size=2, crop=16, evals=2, loss="paper")
    assert list(history.epoch) == [1, 2] and history.val_loss.notna().all() and history.train_loss.notna().all()


def test_paired_values_align_on_seed_and_image():
    rows = pd.DataFrame({"config": ["a", "a", "b", "b"], "seed": [0, 1, 1, 0], "regime": ["dense"] * 4,
                         "image": [0, 0, 0, 0], "aji": [0.1, 0.2, 0.25, 0.15]})
    a, b, groups = exp.paired(rows, "a", "b", "aji")
    assert a.tolist() == [0.1, 0.2] and b.tolist() == [0.15, 0.25] and groups == [0, 1]


def test_ceiling_of_the_boundary_post_processing_is_near_perfect():
    labels = two_touching_squares()
    item = {"labels": labels}
    c = exp.ceiling("mc_unet_no_density", [item], sigma=1.0, post={"use": "boundary", "boundary_threshold": 0.5,
                                                                    "min_seed_area": 2})
    assert c["aji"] == pytest.approx(1.0) and c["ap50"] == pytest.approx(1.0)
    assert exp.postprocess_options(("mask",)) == [{"use": "foreground"}]


def test_ablation_records_what_the_second_half_of_the_budget_bought():
    """The chapter's wiring: with ``half_budget_check`` each configuration's info holds the seeds'
    half-budget fields, and the reported speed leaves the branch's time out."""
    cfg = dict(exp.SETTINGS["smoke"], steps=24, faithful_steps=24, configs=["mc_unet"])
    assert cfg["half_budget_check"]
    data = exp.make_data(cfg, 0)
    _, _, info, _ = exp.run_ablation(cfg, data, seed=0)
    fields = info["mc_unet"]["half_budget"]
    assert fields["seeds_half_budget"] == 1 and math.isfinite(fields["half_budget_gain"])
    _, _, off, _ = exp.run_ablation(dict(cfg, half_budget_check=False), data, seed=0)
    assert off["mc_unet"]["half_budget"] == {}
