"""Registry-wide tests of the method layer (in the spirit of timm's): every registered method builds
at its slim size, trains a step with its own recipe, predicts on odd image sizes (padding or tiling
is the method's job), and round-trips a checkpoint. New methods are included as they are registered."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cellnb.methods import TASKS, Method, Prediction, get_method, list_methods
from cellnb.methods.training import (augment, collate, fit_samples, half_budget_gain, instance_centres,
                                    prepare_sample, stage_histories, toy_sample)

METHODS = list_methods()
TRAINABLE = [n for n in METHODS if get_method(n).trainable]
CASES = [(n, t) for n in METHODS for t in get_method(n).tasks]
TRAIN_CASES = [(n, t) for n, t in CASES if get_method(n).trainable]
#: methods trained by the generic loop (:func:`cellnb.methods.training.fit_samples`, the default ``Method.train``)
GENERIC_CASES = [(n, t) for n, t in TRAIN_CASES if type(get_method(n)).train is Method.train]


def _disks(size: int = 64, seed: int = 0, n: int = 6) -> np.ndarray:
    return toy_sample(get_method("unet"), seed, (size, size), n)["labels"]


def sample(method: Method, seed: int = 0, shape: tuple[int, int] | None = None) -> dict:
    """:func:`cellnb.methods.training.toy_sample`: one annotated sample every method can read."""
    return toy_sample(method, seed, shape)


def _model(name: str, task: str | None, seed: int = 0):
    torch.manual_seed(seed)
    method = get_method(name)
    s = sample(method)
    in_channels = int(method.normalize(s["image"]).shape[0])
    return method, method.build("slim", in_channels=in_channels, task=task), s


# --------------------------------------------------------------------------------- registry
def test_registry_lists_the_baselines():
    assert {"unet", "classical"} <= set(METHODS)
    for task in TASKS:
        assert set(list_methods(task)) <= set(METHODS)


def test_unknown_method_and_task_errors_list_the_choices():
    with pytest.raises(ValueError, match="choose from") as info:
        get_method("no_such_method")
    assert "unet" in str(info.value)
    with pytest.raises(ValueError, match="choose from") as info:
        list_methods("segmentation")
    assert "instances" in str(info.value)
    with pytest.raises(ValueError, match="does not do task"):
        get_method("classical").check_task("sr")
    with pytest.raises(ValueError, match="choose from"):
        get_method("unet").check_size("huge")


@pytest.mark.parametrize("name", METHODS)
def test_method_declares_itself(name):
    m = get_method(name)
    assert m.name == name and m.paper and m.tasks and set(m.tasks) <= set(TASKS)
    assert "slim" in m.sizes or not m.trainable
    if m.trainable:
        assert m.losses, f"{name}: a trainable method names its losses (the faithful default first)"


# --------------------------------------------------------------------------------- build/train
@pytest.mark.parametrize("name,task", TRAIN_CASES)
def test_builds_at_slim_size(name, task):
    method, model, _ = _model(name, task)
    assert isinstance(model, torch.nn.Module)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name,task", TRAIN_CASES)
def test_trains_with_its_own_recipe(name, task):
    """``method.train`` (the method's own loop) runs a short budget and returns a validation curve."""
    method, model, _ = _model(name, task)
    train = [sample(method, i, (128, 128)) for i in range(3)]
    val = [sample(method, 9, (128, 128))]
    history = method.train(model, train, val, task, steps=12, batch_size=2, crop=64, seed=0, device="cpu")
    assert "val_loss" in history and len(history) >= 1
    assert np.isfinite(np.asarray(history["val_loss"], float)).all()
    # the loop honours the declared precision (float32 where this CPU would only emulate bfloat16)
    from cellnb.utils import training_precision

    assert history.attrs["precision"] == training_precision(method.train_precision, "cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters())


HALF_BUDGET_CASES = [(n, t) for n, t in TRAIN_CASES if get_method(n).measures_half_budget]


def test_a_method_with_its_own_loop_measures_the_half_budget_only_where_it_says_so():
    from cellnb.methods.base import Method as Base

    class OwnLoop(Base):
        def train(self, *args, **kwargs):
            raise NotImplementedError

    class Generic(Base):
        pass

    assert not OwnLoop.measures_half_budget and Generic.measures_half_budget
    assert {n for n, _ in HALF_BUDGET_CASES} >= {"unet", "ssrnet", "u_se_resnet", "mc_unet", "elmgan", "mobilesr", "tiny_unet",
                                                  "mobilesr_tinyunet"}


@pytest.mark.parametrize("name,task", HALF_BUDGET_CASES)
def test_half_budget_is_recorded_by_every_method_that_declares_it(name, task):
    """``measures_half_budget`` is a promise: ``train(half_budget=True)`` records the branch."""
    method, model, _ = _model(name, task)
    train = [sample(method, i, (128, 128)) for i in range(2)]
    history = method.train(model, train, [sample(method, 9, (128, 128))], task, steps=40, batch_size=2, crop=64,
                           seed=0, device="cpu", half_budget=True)
    for stage in stage_histories(history):  # a training in stages (mobilesr_tinyunet): each stage measures its own
        half = stage.attrs["half_budget"]
        ran = int(stage.attrs.get("steps", 40))  # loops in epochs run a whole number of epochs (mobilesr: 16 x 2)
        assert half["steps"] == ran // 2 and half["branch_from"] == ran // 2 - round(ran / 10) and np.isfinite(half["val_loss"])
    assert np.isfinite(half_budget_gain(history))
    # and the branch leaves the main run as it was: the same curve and weights as a run without it
    torch.manual_seed(0)
    plain_model = method.build("slim", in_channels=int(method.normalize(train[0]["image"]).shape[0]), task=task)
    torch.manual_seed(0)
    branched_model = method.build("slim", in_channels=int(method.normalize(train[0]["image"]).shape[0]), task=task)
    runs = [method.train(m, train, [sample(method, 9, (128, 128))], task, steps=40, batch_size=2, crop=64, seed=0,
                         device="cpu", half_budget=h) for m, h in ((plain_model, False), (branched_model, True))]
    assert runs[0]["val_loss"].tolist() == runs[1]["val_loss"].tolist()
    assert all(torch.equal(a, b) for a, b in zip(plain_model.state_dict().values(), branched_model.state_dict().values()))


@pytest.mark.parametrize("name,task", GENERIC_CASES)
def test_one_step_through_its_loss_changes_the_weights(name, task):
    """One optimiser step on a batch built from the method's own targets and loss (methods with their
    own training loop are covered by ``test_trains_with_its_own_recipe``)."""
    method, model, s = _model(name, task)
    loss_fn = method.loss(None, task)
    crop = max(64, method.multiple)
    batch = collate([augment(prepare_sample(method, sample(method, i, (crop, crop)), task), crop, np.random.default_rng(i),
                             method.multiple) for i in range(2)])
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    total, parts = loss_fn(model(batch["image"]), batch)
    assert torch.isfinite(total)
    total.backward()
    opt.step()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


# --------------------------------------------------------------------------------- predict
@pytest.mark.parametrize("name,task", CASES)
@pytest.mark.parametrize("shape", [(67, 101), (40, 33)])
def test_predicts_any_image_size(name, task, shape):
    method = get_method(name)
    model = _model(name, task)[1] if method.trainable else None
    s = sample(method, 3, shape)
    # a super-resolving method predicts from the low-resolution image, at sr_scale times its size
    image = np.stack([s["image"]] * 3) if method.sr_scale > 1 and s["image"].ndim == 2 else s["image"]
    pred = method.predict(model, image, task, device="cpu")
    assert isinstance(pred, Prediction)
    h, w = shape[0] * method.sr_scale, shape[1] * method.sr_scale
    if task == "count":
        assert pred.count is not None and np.isfinite(pred.count)
    if task == "mask":
        assert pred.foreground is not None and pred.foreground.shape == (h, w)
    if task == "instances":
        assert pred.labels is not None and pred.labels.shape == (h, w) and np.issubdtype(pred.labels.dtype, np.integer)
    if task == "sr":
        assert pred.sr_image is not None and pred.sr_image.shape[-2:] == (h, w)


@pytest.mark.parametrize("name,task", TRAIN_CASES)
def test_checkpoint_round_trip(name, task):
    method, model, s = _model(name, task, seed=0)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = _model(name, task, seed=1)[1]
    fresh.load_state_dict(state)
    fresh.eval()
    image = sample(method, 5, (67, 101))["image"] if method.sr_scale == 1 else sample(method, 5, (67, 101))["lr"]
    a, b = method.predict(model, image, task), method.predict(fresh, image, task)
    for field in ("count", "foreground", "labels", "sr_image"):
        va, vb = getattr(a, field), getattr(b, field)
        assert (va is None) == (vb is None)
        if va is not None:
            np.testing.assert_allclose(np.asarray(va, float), np.asarray(vb, float), rtol=1e-5, atol=1e-6)


TILE_PROTOCOL = [n for n in TRAINABLE if get_method(n).predicts_in_training_tiles]


def test_the_tile_protocol_methods_are_the_global_count_heads():
    assert TILE_PROTOCOL == sorted(["elmgan", "ssrnet"])


@pytest.mark.parametrize("name", TILE_PROTOCOL)
def test_a_global_count_head_predicts_in_tiles_of_its_training_crop(name):
    """Trained on 128² crops, it counts a 256² image in 128² tiles (its pooling averages, so 64² tiles
    would count four times the cells); a tile of another size is refused, naming the crop."""
    from cellnb.methods.base import TRAINING_CROP_ATTR

    method, model, _ = _model(name, "count")
    crop = 2 * method.multiple
    assert crop != getattr(method, "count_tile", getattr(method, "tile", None))  # not the default tile
    train = [sample(method, i, (crop + 32, crop + 32)) for i in range(2)]
    method.train(model, train, [sample(method, 9, (crop, crop))], "count", steps=12, batch_size=2, crop=crop, seed=0)
    assert getattr(model, TRAINING_CROP_ATTR) == crop
    image = sample(method, 5, (2 * crop, 2 * crop))["image"]
    model.eval()
    assert method.predict(model, image, "count").count == pytest.approx(method.predict(model, image, "count", tile=crop).count)
    with pytest.raises(ValueError, match=f"trained on {crop}x{crop} crops"):
        method.predict(model, image, "count", tile=crop // 2)


@pytest.mark.parametrize("name", TILE_PROTOCOL)
def test_a_refused_training_records_no_crop(name):
    """A crop that is not a multiple of the network's is refused before anything is recorded."""
    from cellnb.methods.base import TRAINING_CROP_ATTR

    method, model, _ = _model(name, "count")
    bad = method.multiple + method.multiple // 2
    train = [sample(method, i, (2 * method.multiple, 2 * method.multiple)) for i in range(2)]
    with pytest.raises(ValueError, match=f"crop {bad} is not a"):
        method.train(model, train, train[:1], "count", steps=12, batch_size=2, crop=bad, seed=0)
    assert getattr(model, TRAINING_CROP_ATTR, None) is None


def test_ssrnet_fit_crops_records_the_crop_for_every_caller():
    """The SSRNet chapter trains through fit_crops directly: its models get the crop as well."""
    from cellnb.methods.base import TRAINING_CROP_ATTR
    from cellnb.methods.ssrnet import fit_crops

    method, model, _ = _model("ssrnet", "count")
    prepared = [{**method.targets(sample(method, i, (128, 128)), "count"), "_normalised": True} for i in range(2)]
    fit_crops(model, method.loss(None, model=model), prepared, prepared[:1], steps=8, batch_size=2, crop=128,
              n_evals=8, val_crops=1, seed=0)
    assert getattr(model, TRAINING_CROP_ATTR) == 128


# --------------------------------------------------------------------------------- fit_samples
def test_fit_samples_crop_counts_are_the_dots_inside_the_crop():
    method = get_method("unet")
    s = sample(method, 0)
    prepared = prepare_sample(method, s, "count")
    rng = np.random.default_rng(0)
    for _ in range(20):
        item = augment(prepared, 32, rng, method.multiple)
        assert item["image"].shape == (1, 32, 32)
        # the density target moves with the crop: its sum is close to the count of centres inside
        assert abs(float(item["density"].sum()) - float(item["count"])) < 1.0 + 1e-3
    full = augment(prepared, None, None, method.multiple)
    assert full["count"] == len(s["points"])


def test_fit_samples_history_and_convergence_points():
    method = get_method("unet")
    train = [sample(method, i) for i in range(3)]
    model = method.build("slim", task="mask")
    history = fit_samples(method, model, train, [sample(method, 7)], "mask", steps=20, batch_size=2, crop=32,
                          lr=1e-3, seed=0, device="cpu", loss=None, progress=False)
    assert list(history["step"]) == list(range(2, 21, 2))
    assert {"train_loss", "val_loss", "lr"} <= set(history.columns)
    assert history.attrs["steps_per_s"] > 0 and history.attrs["bn_recalibrated"]
    with pytest.raises(ValueError, match="validation"):
        fit_samples(method, model, train, [], "mask", steps=2, batch_size=2, crop=32, lr=1e-3, seed=0, device="cpu",
                    loss=None, progress=False)


@pytest.mark.parametrize("name", TRAINABLE)
def test_build_returns_the_declared_memory_format(name):
    method = get_method(name)
    task = method.primary_task
    model = method.build("slim", in_channels=3 if method.sr_scale > 1 else 1, task=task)
    weights = [p for p in model.parameters() if p.ndim == 4 and p.shape[-1] * p.shape[-2] > 1 and p.shape[1] > 1]
    if not weights:  # depthwise / pointwise convolutions only: both layouts are the same memory
        pytest.skip(f"{name}: no weight whose layout differs between the two formats")
    fmt = torch.channels_last if method.memory_format == "channels_last" else torch.contiguous_format
    assert all(p.is_contiguous(memory_format=fmt) for p in weights)


def test_memory_format_must_be_known():
    with pytest.raises(ValueError, match="memory_format"):
        type("Odd", (Method,), {"memory_format": "nhwc"})


INSTANCE_METHODS = [n for n in METHODS if "instances" in get_method(n).tasks]


@pytest.mark.parametrize("name", INSTANCE_METHODS)
def test_ceiling_is_the_instance_step_on_the_methods_own_perfect_maps(name):
    from cellnb import floors

    method = get_method(name)
    labels = _disks(64, seed=2)
    maps = method.oracle_maps(labels)
    assert "mask" in maps and np.array_equal(maps["mask"] > 0.5, labels > 0)
    assert np.array_equal(method.ceiling(labels), method.instances_from_maps(maps))
    assert floors.instance_scores(labels, method.ceiling(labels))["ap50"] > 0.8


def test_fit_samples_keep_best_restores_the_lowest_validation_loss():
    method = get_method("unet")
    train = [sample(method, i) for i in range(3)]
    kw = dict(steps=12, batch_size=2, crop=32, lr=3e-2, seed=1, device="cpu", loss=None, progress=False,
              eval_every=1, update_bn=False)
    finals = {}
    for keep in (False, True):
        torch.manual_seed(0)
        model = method.build("slim", task="mask")
        history = fit_samples(method, model, train, [sample(method, 7)], "mask", keep_best=keep, **kw)
        finals[keep] = [p.detach().clone() for p in model.parameters()]
    best = history.loc[history["val_loss"].idxmin()]
    assert history.attrs["best_step"] == int(best["step"]) and history.attrs["best_val_loss"] == best["val_loss"]
    same = all(torch.equal(a, b) for a, b in zip(finals[False], finals[True]))
    assert same == (int(best["step"]) == kw["steps"])


def test_fit_samples_is_deterministic():
    method = get_method("unet")
    train = [sample(method, i) for i in range(3)]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = method.build("slim", task="instances")
        runs.append(fit_samples(method, model, train, [sample(method, 7)], "instances", steps=4, batch_size=2, crop=32,
                                lr=1e-3, seed=3, device="cpu", loss=None, progress=False)["val_loss"].tolist())
    assert runs[0] == runs[1]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_fit_samples_records_its_precision_and_bfloat16_changes_the_numbers(precision):
    """The U-Net declares bfloat16; ``precision`` overrides it. Where the CPU has no native bfloat16
    the run falls back to float32, and gives float32's numbers."""
    from cellnb.utils import training_precision

    method = get_method("unet")
    assert method.train_precision == "bfloat16"
    train = [sample(method, i) for i in range(3)]
    curves = {}
    for p in ("float32", precision):
        torch.manual_seed(0)
        model = method.build("slim", task="count")
        h = fit_samples(method, model, train, [sample(method, 7)], "count", steps=4, batch_size=2, crop=32, lr=1e-3,
                        seed=3, device="cpu", loss=None, progress=False, precision=p)
        assert h.attrs["precision"] == training_precision(p, "cpu")
        assert all(np.isfinite(h["val_loss"])) and all(p_.dtype == torch.float32 for p_ in model.parameters())
        curves[p] = h["val_loss"].tolist()
    assert (curves["float32"] == curves[precision]) == (training_precision(precision, "cpu") == "float32")


def test_train_precision_must_be_known():
    with pytest.raises(ValueError, match="train_precision"):
        type("Odd", (Method,), {"train_precision": "float16"})


@pytest.mark.parametrize("name", METHODS)
def test_every_method_declares_a_known_training_precision(name):
    from cellnb.utils import PRECISIONS

    assert get_method(name).train_precision in PRECISIONS


def test_unet_three_class_ceiling_separates_touching_disks():
    from cellnb import floors
    from cellnb.methods.unet import instances_from_maps

    yy, xx = np.mgrid[:40, :60]
    labels = np.zeros((40, 60), np.int32)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 81] = 1
    labels[((yy - 20) ** 2 + (xx - 37) ** 2 <= 81) & (labels == 0)] = 2  # touching
    assert floors.instance_ceiling(instances_from_maps, [labels])["aji"] > 0.95


@pytest.mark.parametrize("name", INSTANCE_METHODS)
def test_every_postprocess_option_runs_on_the_perfect_maps_and_the_choice_is_one_of_them(name):
    from cellnb import floors

    method = get_method(name)
    labels = _disks(64, seed=3)
    options = method.postprocess_options("instances")
    assert options and all(isinstance(o, dict) for o in options)
    for option in options:  # every listed setting is a valid keyword of the instance step
        assert floors.instance_scores(labels, method.ceiling(labels, **option))["ap50"] > 0.5
    maps = method.prediction_maps(Prediction(foreground=method.oracle_maps(labels)["mask"],
                                             maps=method.oracle_maps(labels)))
    assert method.choose_postprocess([maps], [labels], task="instances") in options


class _Thresholded(Method):
    """A method whose instance step is one threshold of a map: hand-checkable choices."""

    name = "_thresholded"
    tasks = ("instances",)

    def postprocess_options(self, task=None):
        return [{"t": 0.5}, {"t": 0.8}, {"t": 0.2}]

    def instances_from_maps(self, maps, t=0.5):
        from skimage.measure import label
        return label(np.asarray(maps["score"]) > t).astype(np.int32)


def test_choose_postprocess_takes_the_best_mean_score_and_keeps_the_earlier_option_on_a_tie():
    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 3:12], labels[5:15, 15:25] = 1, 2
    score = (labels > 0).astype(np.float32) * 0.9
    score[5:15, 12:15] = 0.6  # a bridge between the two objects: merged at t 0.5 and 0.2, apart at 0.8
    method = _Thresholded()
    assert method.choose_postprocess([{"score": score}], [labels]) == {"t": 0.8}
    flat = (labels > 0).astype(np.float32) * 0.9  # every threshold gives the same instances
    assert method.choose_postprocess([{"score": flat}], [labels]) == {"t": 0.5}
    assert method.choose_postprocess([{"score": flat}], [labels], options=[{"t": 0.95}, {"t": 0.5}]) == {"t": 0.5}
    with pytest.raises(ValueError, match="one label image per map set"):
        method.choose_postprocess([{"score": flat}], [])


def test_prediction_maps_adds_the_foreground_as_mask_without_overwriting():
    method = get_method("unet")
    fg = np.ones((4, 4), np.float32)
    assert set(method.prediction_maps(Prediction(foreground=fg, maps={"marker": fg}))) == {"mask", "marker"}
    own = np.zeros((4, 4), np.float32)
    assert method.prediction_maps(Prediction(foreground=fg, maps={"mask": own}))["mask"] is own


def test_primary_task_skips_super_resolution():
    assert get_method("unet").primary_task == "count"
    assert get_method("mobilesr").primary_task == "sr"
    assert get_method("mobilesr_tinyunet").primary_task == "mask"


def test_instances_with_uses_the_given_settings_or_the_methods_defaults():
    method = get_method("unet")
    yy, xx = np.mgrid[:30, :50]
    interior = (((yy - 15) ** 2 + (xx - 14) ** 2 <= 36) | ((yy - 15) ** 2 + (xx - 34) ** 2 <= 36)).astype(np.float32)
    interior[14:17, 14:35] = np.maximum(interior[14:17, 14:35], 0.75)  # a faint bridge: one seed at 0.7, two at 0.8
    maps = {"interior": interior, "mask": np.clip(interior * 1.2, 0, 1), "boundary": np.zeros_like(interior)}
    pred = Prediction(foreground=maps["mask"], labels=method.instances_from_maps(maps), maps=maps)
    assert method.instances_with(pred, {}) is pred.labels
    assert method.instances_with(pred, None) is pred.labels
    assert len(np.unique(method.instances_with(pred, {"seed_threshold": 0.8}))) - 1 == 2
    assert len(np.unique(pred.labels)) - 1 == 1


def test_tune_postprocess_chooses_on_the_models_predictions_of_the_given_samples():
    method = get_method("u_se_resnet")
    _, model, _ = _model("u_se_resnet", "instances")
    samples = [{"image": _disks(64, seed=s).astype(np.float32), "labels": _disks(64, seed=s)} for s in (4, 5)]
    choice = method.tune_postprocess(model, samples)
    assert choice in method.postprocess_options("instances")
    preds = [method.predict(model, s["image"], "instances") for s in samples]
    assert choice == method.choose_postprocess([method.prediction_maps(p) for p in preds], [s["labels"] for s in samples])
    # the caller's predictions are used as they are (no model needed), and must be one per sample
    assert method.tune_postprocess(None, samples, predictions=preds) == choice
    with pytest.raises(ValueError, match="one prediction per sample, got 1 for 2"):
        method.tune_postprocess(None, samples, predictions=preds[:1])


def test_tune_mask_threshold_uses_the_given_predictions():
    method = get_method("unet")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    prob = np.where(mask > 0, 0.9, 0.65).astype(np.float32)  # background at 0.65: 0.5-0.6 flood it, 0.7 does not
    preds = [Prediction(foreground=prob)]
    assert method.tune_mask_threshold(None, [{"image": prob, "mask": mask}], predictions=preds) == 0.7


def test_unet_chooses_a_higher_foreground_threshold_when_its_background_is_uncalibrated():
    method = get_method("unet")
    labels = np.zeros((40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    labels[(yy - 20) ** 2 + (xx - 15) ** 2 <= 49] = 1
    labels[(yy - 20) ** 2 + (xx - 42) ** 2 <= 49] = 2
    interior = (labels > 0).astype(np.float32) * 0.95
    mask = np.where(labels > 0, 1.0, 0.6).astype(np.float32)  # background probability 0.4 everywhere
    maps = {"interior": interior, "mask": mask, "boundary": np.zeros_like(interior)}
    assert method.instances_from_maps(maps).astype(bool).mean() > 0.9  # the default floods the image
    choice = method.choose_postprocess([maps], [labels], task="instances")
    assert choice == {"threshold": 0.7, "seed_threshold": 0.7}
    assert (method.instances_from_maps(maps, **choice) > 0).sum() == (labels > 0).sum()


# --------------------------------------------------------------------------------- half-budget check
def test_half_budget_branch_leaves_the_main_run_unchanged_bit_for_bit():
    """fit_samples with the half-budget branch: the same history and the same final weights as without."""
    method = get_method("unet")
    train = [sample(method, i) for i in range(3)]
    kw = dict(steps=20, batch_size=2, crop=32, lr=1e-2, seed=3, device="cpu", loss=None, progress=False)
    runs = {}
    for half in (False, True):
        torch.manual_seed(0)
        model = method.build("slim", task="count")
        history = fit_samples(method, model, train, [sample(method, 7)], "count", half_budget=half, **kw)
        runs[half] = (history, [t.detach().clone() for t in model.state_dict().values()])
    (plain, w_plain), (branched, w_branched) = runs[False], runs[True]
    assert "half_budget" not in plain.attrs
    assert plain[["step", "train_loss", "val_loss", "lr"]].equals(branched[["step", "train_loss", "val_loss", "lr"]])
    assert all(torch.equal(a, b) for a, b in zip(w_plain, w_branched))
    half = branched.attrs["half_budget"]
    assert (half["branch_from"], half["steps"]) == (8, 10) and np.isfinite(half["val_loss"])


def test_ssrnet_fit_crops_half_budget_branch_leaves_the_main_run_unchanged():
    from cellnb.methods.ssrnet import fit_crops

    method = get_method("ssrnet")
    prepared = [{**method.targets(sample(method, i, (64, 64)), "count"), "_normalised": True} for i in range(2)]
    runs = {}
    for half in (False, True):
        torch.manual_seed(0)
        model = method.build("slim", in_channels=1, task="count")
        history = fit_crops(model, method.loss(None, model=model), prepared, prepared[:1], steps=20, batch_size=2,
                            crop=64, n_evals=10, val_crops=1, seed=0, half_budget=half)
        runs[half] = (history, [t.detach().clone() for t in model.state_dict().values()])
    assert runs[False][0][["val_loss", "train_loss"]].equals(runs[True][0][["val_loss", "train_loss"]])
    assert all(torch.equal(a, b) for a, b in zip(runs[False][1], runs[True][1]))
    assert runs[True][0].attrs["half_budget"]["steps"] == 10


def test_half_budget_branch_anneals_and_restores_by_hand():
    """A one-weight model: the branch's steps see the annealed learning rates; everything is put back."""
    from cellnb.methods.training import half_budget_branch

    w = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        w.weight.fill_(1.0)
    opt = torch.optim.SGD(w.parameters(), lr=0.4)
    rng = np.random.default_rng(0)
    seen_lr, before_rng = [], rng.bit_generator.state

    def step():
        seen_lr.append(opt.param_groups[0]["lr"])
        rng.random()
        opt.zero_grad()
        w(torch.ones(1, 1)).sum().backward()  # gradient 1: each step subtracts the learning rate
        opt.step()

    value = half_budget_branch(step, lambda: float(w.weight.detach()), modules=[w], optimizers=[opt], rngs=[rng], anneal_steps=4)
    assert seen_lr == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert value == pytest.approx(0.0, abs=1e-6)  # 1 - (0.4 + 0.3 + 0.2 + 0.1)
    assert float(w.weight.detach()) == 1.0 and opt.param_groups[0]["lr"] == 0.4 and rng.bit_generator.state == before_rng
    with pytest.raises(ValueError, match="anneal_steps"):
        half_budget_branch(step, lambda: 0.0, modules=[w], optimizers=[opt], anneal_steps=0)
