"""Pure functions of the comparison chapter (cellnb.experiments.comparison): hand-checked values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellnb import floors, verdicts
from cellnb.experiments import comparison as exp
from cellnb.methods import get_method


# ------------------------------------------------------------------------------ budgets
def test_budget_overrides_by_task_then_method():
    cfg = {"size": "slim", "steps": 300, "batch_size": 8, "crop": 64, "other": 1,
           "budgets": {"nuclei": {"steps": 200}, "unet@count": {"size": "small", "steps": 500},
                       "unet@count_mbm": {"crop": 96}}}
    assert exp.budget(cfg, "nuclei", "mc_unet")["steps"] == 200
    assert exp.budget(cfg, "blood", "tiny_unet")["steps"] == 300
    vgg = exp.budget(cfg, "count_vgg", "unet")
    assert (vgg["size"], vgg["steps"], vgg["crop"], vgg["other"]) == ("small", 500, 64, 1)
    assert exp.budget(cfg, "count_mbm", "unet")["crop"] == 96  # the task-specific entry wins
    assert exp.budget(cfg, "count_vgg", "ssrnet")["size"] == "slim"
    with pytest.raises(ValueError, match="unknown keys"):
        exp.budget({**cfg, "budgets": {"nuclei": {"lr": 1.0}}}, "nuclei", "unet")


def test_profiles_drop_generated_counting_when_real_data_exists_and_keep_three_seeds():
    assert exp.SETTINGS["quick"]["generated_count"] == "fallback"
    assert exp.SETTINGS["quick"]["n_seeds"] >= 3 and exp.SETTINGS["full"]["n_seeds"] >= 3
    for profile, table in exp.SETTINGS.items():
        for key, extra in table["budgets"].items():
            assert set(extra) <= set(exp.BUDGET_KEYS), (profile, key)


def test_budget_table_lists_each_task_and_method_once():
    status = pd.DataFrame([{"task": "nuclei", "method": "unet", "seed": s, "val_curve": [], "converged": s < 2,
                            "train_s": 10.0 + s, "steps_per_s": 2.0, "size": "slim", "steps": 200, "batch_size": 8,
                            "crop": 64} for s in range(3)])
    table = exp.budget_table(status)
    assert len(table) == 1 and table.loc[0, "steps"] == 200 and table.loc[0, "converged (seeds)"] == "2/3"
    assert table.loc[0, "train (s)"] == "11"
    assert table.loc[0, "gain of the 2nd half (seeds)"] == "–"  # not measured
    status["half_budget_gain"] = [0.123, -0.004, float("nan")]
    assert exp.budget_table(status).loc[0, "gain of the 2nd half (seeds)"] == "+12 %, -0.4 %"  # one decimal under 10 %


def test_learned_status_reports_the_half_budget_gain_of_the_seeds_that_measured_it():
    status = pd.DataFrame([{"task": "nuclei", "method": "a", "seed": s, "val_curve": [1.0] * 10, "converged": True,
                            "half_budget_gain": g, "train_s": 1.0, "steps_per_s": 2.0}
                           for s, g in zip((0, 1, 2), (0.02, 0.10, float("nan")))])
    st = exp.learned_status(_rows(), status, "nuclei", "a")
    assert st["half_budget_gain"] == pytest.approx(0.06) and st["seeds_half_budget"] == 2
    assert st["seeds_converged_over_budget"] == 1  # 2 % < 5 % <= 10 %
    assert np.isnan(exp.learned_status(_rows(), status.drop(columns="half_budget_gain"), "nuclei", "a")["half_budget_gain"])


# ------------------------------------------------------------------------------ data
def test_count_sample_moves_points_with_the_resize():
    image = np.zeros((8, 8), np.float32)
    mask = np.zeros((8, 8), np.uint8)
    mask[:4, :4] = 1
    points = np.array([[1.5, 1.5], [5.5, 5.5]], np.float32)  # centres of 2x2 blocks -> pixels 0.5 and 2.5
    s = exp.count_sample(image, points, (4, 4), mask)
    assert s["image"].shape == (4, 4) and s["count"] == 2.0
    np.testing.assert_allclose(s["points"], [[0.5, 0.5], [2.5, 2.5]])
    assert s["mask"][:2, :2].all() and s["mask"].sum() == 4
    with pytest.raises(ValueError, match="need a"):
        exp.count_sample(np.zeros((2, 4, 4)), points, (4, 4))


def test_split_val_holds_out_the_last_fifth():
    train, val = exp.split_val(list(range(10)), 0.2)
    assert train == list(range(8)) and val == [8, 9]
    assert exp.split_val([1, 2], 0.2) == ([1], [2])
    with pytest.raises(ValueError, match="at least two"):
        exp.split_val([1], 0.2)


def test_as_input_swaps_in_the_low_resolution_image():
    s = {"image": np.ones((3, 8, 8)), "lr": np.zeros((3, 2, 2)), "mask": np.ones((8, 8))}
    assert exp.as_input(s, "lr")["image"].shape == (3, 2, 2) and exp.as_input(s, "hr")["image"].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="input kind"):
        exp.as_input(s, "mr")


def test_nuclei_samples_have_points_at_instance_centres():
    s = exp.nuclei_samples(1, 0, 64, 0.5)[0]
    assert len(s["points"]) == s["labels"].max() and s["mask"].sum() == (s["labels"] > 0).sum()


# ------------------------------------------------------------------------------ ceilings
def _two_touching_disks():
    yy, xx = np.mgrid[:40, :60]
    labels = np.zeros((40, 60), np.int32)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 81] = 1
    labels[((yy - 20) ** 2 + (xx - 37) ** 2 <= 81) & (labels == 0)] = 2
    return labels


def test_ceiling_postprocess_uses_each_methods_own_instance_step():
    labels = _two_touching_disks()
    post, how = exp.ceiling_postprocess(get_method("unet"))
    assert how == "unet's own" and floors.mean_instance_scores(post, [labels])["aji"] > 0.95
    post, how = exp.ceiling_postprocess(get_method("u_se_resnet"), options={"marker_threshold": 0.7})
    assert how == "u_se_resnet's own (marker_threshold 0.7, chosen on validation images)"
    assert np.array_equal(post(labels), get_method("u_se_resnet").ceiling(labels, marker_threshold=0.7))
    # a method without an instance output: distance watershed of its (true) foreground
    class ForegroundOnly:
        name, tasks = "fg", ("mask",)

    post, how = exp.ceiling_postprocess(ForegroundOnly(), min_distance=3)
    assert how == "foreground + distance watershed"
    assert floors.mean_instance_scores(post, [labels]) == floors.instance_ceiling(
        lambda m: floors.distance_watershed(m["mask"], 3), [labels])
    with pytest.raises(ValueError, match="at least one"):
        floors.mean_instance_scores(post, [])


# ------------------------------------------------------------------------------ summaries
def _rows():
    rows = []
    for seed in (0, 1, 2):
        for i in range(4):
            rows.append({"task": "nuclei", "method": "a", "seed": seed, "image": i, "aji": 0.8})
            rows.append({"task": "nuclei", "method": "b", "seed": seed, "image": i, "aji": 0.5})
            rows.append({"task": "nuclei", "method": exp.FLOOR, "seed": seed, "image": i, "aji": 0.3})
    return pd.DataFrame(rows)


def test_summarize_and_paired_hand_values():
    summary = exp.summarize(_rows(), "aji")
    a = summary[summary.method == "a"].iloc[0]
    assert (a["mean"], a["low"], a["high"], a["n"], a["n_seeds"]) == (pytest.approx(0.8), pytest.approx(0.8),
                                                                      pytest.approx(0.8), 12, 3)
    va, vb, groups = exp.paired(_rows(), "nuclei", "a", "b", "aji")
    assert len(va) == 12 and (va - vb == pytest.approx(0.3)) and sorted(set(groups)) == [0, 1, 2]


def test_learned_status_needs_every_seed_converged_and_the_floor_beaten():
    flat = [1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.11, 0.105, 0.104, 0.104, 0.103, 0.103]
    status = pd.DataFrame([{"task": "nuclei", "method": "a", "seed": s, "val_curve": flat, "train_s": 1.0,
                            "steps_per_s": 2.0} for s in (0, 1, 2)])
    st = exp.learned_status(_rows(), status, "nuclei", "a")
    assert st["converged"] and st["beats_floor"] and st["seeds_converged"] == 3 and st["floor"] == pytest.approx(0.3)
    status.at[1, "val_curve"] = list(np.linspace(1, 0.1, 10))  # still falling
    assert not exp.learned_status(_rows(), status, "nuclei", "a")["converged"]


def test_fmt_interval_rounds_to_the_interval():
    assert exp.fmt_interval(0.81234, 0.75, 0.87) == "0.81 [0.75, 0.87]"
    assert exp.fmt_interval(12.345, 10.0, 15.0) == "12.3 [10.0, 15.0]"
    assert exp.fmt_interval(float("nan"), 0, 0) == "–"


def test_capped_verdict_is_inconclusive_near_the_ceiling():
    from cellnb.verdicts import compare

    v = compare([0.8] * 9, [0.5] * 9, better="higher", groups=[0, 1, 2] * 3)
    assert v.holds is True
    assert exp.capped_verdict(v, 0.95, [0.8, 0.5]).holds is True
    capped = exp.capped_verdict(v, 0.82, [0.8, 0.5])
    assert capped.holds is None and "capped" in capped.note


def test_recommendations_from_the_numbers():
    summary = exp.summarize(_rows(), "aji")
    learned = {"a@nuclei": {"beats_floor": True}, "b@nuclei": {"beats_floor": True}}
    cost = pd.DataFrame([{"method": "a", "latency_ms": 50.0}, {"method": "b", "latency_ms": 5.0}])
    recs = exp.recommendations(summary, learned, cost, {"nuclei": {}})
    assert recs.iloc[0]["most accurate"].startswith("a: aji 0.8")
    assert "no cheaper method" in recs.iloc[0]["also good, cheapest"]  # b's interval does not reach a's
    learned["a@nuclei"]["beats_floor"] = False
    recs = exp.recommendations(summary, learned, cost, {"nuclei": {}})
    assert recs.iloc[0]["most accurate"].startswith("b:") and recs.iloc[0]["did not learn"] == "a"


# ------------------------------------------------------------------------------ end to end
def test_run_task_scores_floor_and_untrained_method_and_reports_skips():
    cfg = dict(exp.SETTINGS["smoke"])
    train = exp.generated_count_samples(3, 0, 64)
    test = exp.generated_count_samples(2, 100, 64)
    out = exp.run_task("count_gen", ["classical", "no_such_method"], [exp.split_val(train, 0.2)], [test], cfg, [0])
    rows = pd.DataFrame(out["rows"])
    assert set(rows.method) == {exp.FLOOR, "classical"} and len(rows) == 4
    assert "not registered" in out["skipped"]["no_such_method"]
    floor = rows[rows.method == exp.FLOOR]
    mean_train = np.mean([len(s["points"]) for s in train])
    assert floor["count"].tolist() == pytest.approx([mean_train] * 2)


def test_run_task_calibrates_counts_on_the_validation_images():
    """Each count method's test counts are its raw counts times choose_count_scale of its validation images;
    the floor is not calibrated; "none" keeps the raw counts."""
    from cellnb import postprocess
    from cellnb.methods import get_method

    cfg = dict(exp.SETTINGS["smoke"])
    assert cfg["count_calibration"] == "validation"
    train, val = exp.split_val(exp.generated_count_samples(10, 1, 128), 0.5)  # 5 validation images (MIN_CALIBRATION_IMAGES); classical: 55 for 60 cells
    test = exp.generated_count_samples(2, 100, 128)
    rows = pd.DataFrame(exp.run_task("count_gen", ["classical"], [(train, val)], [test], cfg, [0])["rows"])
    method = get_method("classical")
    scale = postprocess.choose_count_scale([method.predict(None, s["image"], "count").count for s in val],
                                           [len(s["points"]) for s in val])
    assert scale != pytest.approx(1.0)  # the classical pipeline's counts are off on these images
    ours = rows[rows.method == "classical"]
    assert ours["count"].tolist() == pytest.approx((scale * ours.raw_count).tolist())
    assert ours.raw_mae.tolist() == pytest.approx((ours.raw_count - ours.true_count).abs().tolist())
    floor = rows[rows.method == exp.FLOOR]
    assert floor["count"].tolist() == floor.raw_count.tolist()
    raw = pd.DataFrame(exp.run_task("count_gen", ["classical"], [(train, val)], [test], {**cfg, "count_calibration": "none"},
                                    [0])["rows"])
    assert raw[raw.method == "classical"]["count"].tolist() == pytest.approx(ours.raw_count.tolist())


def test_count_calibration_table_hand_values():
    rows = pd.DataFrame(exp.count_rows("count_vgg", "unet", 0, [10.0, 20.0], [11, 19], raw=[8.0, 16.0])
                        + exp.count_rows("count_vgg", exp.FLOOR, 0, [15.0, 15.0], [11, 19]))
    table = exp.count_calibration_table(rows, "count_vgg")
    assert table.to_dict("records") == [{"method": "unet", "MAE, raw counts": "3.000 [3.000, 3.000]",
                                         "MAE, calibrated": "1.000 [1.000, 1.000]", "scale per seed": "1.250"}]
    # an untrained method is calibrated too, and its scale is shown (seed 1 kept the raw counts)
    rows = pd.concat([rows, pd.DataFrame(exp.count_rows("count_vgg", "classical", 0, [6.0, 12.0], [5, 10], raw=[4.0, 8.0])
                                         + exp.count_rows("count_vgg", "classical", 1, [4.0, 8.0], [5, 10]))])
    assert exp.count_calibration_table(rows, "count_vgg").set_index("method")["scale per seed"].to_dict() == \
        {"unet": "1.250", "classical": "1.500, 1.000"}
    with pytest.raises(ValueError, match="one count per image"):
        exp.count_rows("count_vgg", "unet", 0, [1.0], [1, 2])


def test_chosen_postprocess_table_lists_each_seeds_choice():
    status = pd.DataFrame([{"method": "u_se_resnet", "seed": 0, "postprocess": {"marker_threshold": 0.7}},
                           {"method": "u_se_resnet", "seed": 1, "postprocess": {"marker_threshold": 0.5}},
                           {"method": "ssrnet", "seed": 0, "postprocess": None}])
    table = exp.chosen_postprocess_table(status)
    assert table.to_dict("records") == [{"method": "u_se_resnet",
                                         "chosen per seed": "marker_threshold = 0.7; marker_threshold = 0.5"}]
    assert exp.chosen_postprocess_table(pd.DataFrame({"method": ["unet"]})).empty


def test_a_training_in_stages_converges_when_every_stage_does():
    flat = [1.0, 0.6, 0.4, 0.3, 0.25, 0.22, 0.21, 0.2, 0.2, 0.2]
    falling = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    staged = pd.DataFrame({"stage": ["sr"] * 10 + ["seg"] * 10, "val_loss": [v * 0.03 for v in flat] + flat})
    assert exp.training_converged(staged)  # the whole curve would jump at the second stage's start
    assert not verdicts.converged(staged["val_loss"].tolist())
    assert not exp.training_converged(pd.DataFrame({"stage": ["sr"] * 10 + ["seg"] * 10, "val_loss": flat + falling}))
    assert exp.training_converged(pd.DataFrame({"val_loss": flat}))
    assert not exp.training_converged(None)


def test_a_low_resolution_blood_method_is_held_to_otsu_on_its_own_bicubic_input():
    cfg = {**exp.SETTINGS["smoke"], "steps": 2}
    train = exp.blood_samples(3, 0, 128, 64)
    test = exp.blood_samples(2, 100, 128, 64)
    out = exp.run_task("blood", [["mobilesr_tinyunet", "lr"], ["tiny_unet", "hr"]], [exp.split_val(train, 0.2)], [test], cfg, [0])
    rows, status = pd.DataFrame(out["rows"]), pd.DataFrame(out["status"])
    assert set(rows.method) == {exp.FLOOR, exp.FLOOR_BICUBIC, "mobilesr_tinyunet", "tiny_unet"}
    assert dict(zip(status.method, status.floor)) == {"mobilesr_tinyunet": exp.FLOOR_BICUBIC, "tiny_unet": exp.FLOOR}
    from cellnb import floors
    bicubic = [floors.otsu_mask(s["bicubic"], sigma=1.0, bright_foreground=False) for s in test]
    expected = [exp.mask_rows("blood", "x", 0, [m], [s["mask"]])[0]["dice"] for m, s in zip(bicubic, test)]
    assert rows[rows.method == exp.FLOOR_BICUBIC]["dice"].tolist() == pytest.approx(expected)
    st = exp.learned_status(rows, status, "blood", "mobilesr_tinyunet")
    assert st["floor_label"] == exp.FLOOR_BICUBIC and st["floor"] == pytest.approx(np.mean(expected))
    assert exp.learned_status(rows, status, "blood", "tiny_unet")["floor_label"] == exp.FLOOR
