"""Hand-checked cases of the foreground-threshold choice (cellnb.postprocess.choose_threshold) and of
its use by foreground-only methods in the comparison."""

import numpy as np
import pytest

from cellnb import postprocess
from cellnb.postprocess import MASK_THRESHOLDS, choose_threshold


def _two_squares() -> np.ndarray:
    labels = np.zeros((24, 40), np.int32)
    labels[4:14, 4:14], labels[6:18, 22:34] = 1, 2
    return labels


def test_an_uncalibrated_map_gets_the_threshold_that_finds_its_objects():
    truth = _two_squares() > 0
    prob = np.where(truth, 0.44, 0.05).astype(np.float32)  # right everywhere, peaks below 0.5
    assert choose_threshold([prob], [truth]) == 0.3  # 0.3 and 0.4 are both perfect: the earlier wins


def test_a_tie_keeps_the_first_threshold_and_the_best_one_wins_otherwise():
    truth = _two_squares() > 0
    crisp = truth.astype(np.float32) * 0.95
    assert choose_threshold([crisp], [truth]) == MASK_THRESHOLDS[0] == 0.5
    from scipy import ndimage

    halo = crisp.copy()
    halo[ndimage.binary_dilation(truth) & ~truth] = 0.65  # a one-pixel halo: only 0.7 drops it
    assert choose_threshold([halo], [truth]) == 0.7


def test_bad_input_names_the_problem():
    truth = _two_squares() > 0
    with pytest.raises(ValueError, match="one true mask per probability map"):
        choose_threshold([truth.astype(float)] * 2, [truth])
    with pytest.raises(ValueError, match="differ in shape"):
        choose_threshold([np.zeros((3, 3))], [truth])
    with pytest.raises(ValueError, match="at least one threshold"):
        choose_threshold([truth.astype(float)], [truth], thresholds=())


def test_foreground_only_methods_choose_their_threshold_and_their_instances_follow_it():
    from cellnb.experiments import comparison
    from cellnb.methods import get_method
    from cellnb.methods.base import Prediction

    method = get_method("elmgan")  # predicts a foreground, no instances
    assert "instances" not in method.tasks
    options = comparison.foreground_options(method, min_distance=3)
    assert options[0] == {"threshold": 0.5, "min_distance": 3}
    assert [o["threshold"] for o in options] == list(MASK_THRESHOLDS)
    labels = _two_squares()
    prob = np.where(labels > 0, 0.44, 0.05).astype(np.float32)
    maps = [method.prediction_maps(Prediction(foreground=prob))]
    chosen = method.choose_postprocess(maps, [labels], options=options)
    assert chosen["threshold"] == 0.3
    found = comparison.instance_labels(method, Prediction(foreground=prob), chosen, 3)
    assert found.max() == 2
    assert comparison.instance_labels(method, Prediction(foreground=prob), None, 3).max() == 0  # 0.5: nothing


def test_the_chapters_choose_on_the_frames_they_are_given(monkeypatch):
    """``Method.tune_mask_threshold`` (ELMGAN's ``run_all``, ``cellnb.train --task mask``) and SSRNet's
    ``map_threshold`` read the model's map of exactly the frames passed (the validation ones) and
    return their choice."""
    from cellnb.experiments import ssrnet
    from cellnb.methods.base import Method, Prediction

    truth = _two_squares() > 0
    frames = [{"image": np.where(truth, 0.44, 0.05).astype(np.float32), "mask": truth.astype(np.uint8)}]
    seen = []

    class _Stub(Method):  # the model's map is the frame's image: hand-checkable
        name, tasks = "_stub", ("mask",)

        def predict(self, model, image, task=None, **kw):
            assert task == "mask" and kw.get("tile") == 8
            seen.append(image)
            return Prediction(foreground=np.asarray(image, np.float32))

    stub = _Stub()
    assert stub.tune_mask_threshold(None, frames, tile=8) == 0.3
    monkeypatch.setattr(ssrnet, "predict_map", lambda model, image, multiple=64, device="cpu": seen.append(image) or image)
    assert ssrnet.map_threshold(None, frames) == 0.3
    assert len(seen) == 2 and all(s is frames[0]["image"] for s in seen)
    crisp = [{"image": truth.astype(np.float32) * 0.9, "mask": truth.astype(np.uint8)}]
    assert stub.tune_mask_threshold(None, crisp, tile=8) == 0.5  # calibrated: the papers' 0.5 stays


def test_first_best_keeps_the_earlier_candidate_unless_another_is_strictly_better():
    from cellnb.postprocess import first_best

    scores = {"a": 0.5, "b": 0.5 + 1e-12, "c": 0.7, "d": 0.7}
    assert first_best("abcd", scores.get) == "c"  # b is float noise above a; d only ties c
    assert first_best("ab", scores.get) == "a"
    assert first_best("ab", scores.get, tolerance=0.0) == "b"  # with no tolerance, 1e-12 above a is better
    with pytest.raises(ValueError, match="at least one candidate"):
        first_best([], scores.get)


def test_count_scale_hand_values_and_bad_input():
    assert postprocess.count_scale([50.0, 50.0], [60, 60]) == pytest.approx(1.2)
    assert postprocess.count_scale([4.0], [0]) == 1.0  # nothing to calibrate to
    with pytest.raises(ValueError, match="one true count per predicted"):
        postprocess.count_scale([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="finite, non-negative"):
        postprocess.count_scale([-1.0], [1])


def test_choose_count_scale_keeps_a_scale_only_where_leave_one_out_pays():
    # a steady 20 % overcount: every held-out image is corrected exactly
    assert postprocess.choose_count_scale([12.0, 24.0, 36.0, 48.0, 60.0], [10, 20, 30, 40, 50]) == pytest.approx(10 / 12)
    # images that disagree: the scale would move the rest by their noise
    assert postprocess.choose_count_scale([80.0, 130.0, 100.0, 100.0, 100.0], [100] * 5) == 1.0
    # the same steady overcount on fewer than MIN_CALIBRATION_IMAGES images (MBM's three per seed): raw counts
    assert postprocess.MIN_CALIBRATION_IMAGES == 5
    assert postprocess.choose_count_scale([12.0, 24.0, 36.0, 48.0], [10, 20, 30, 40]) == 1.0
    assert postprocess.choose_count_scale([12.0, 24.0, 36.0], [10, 20, 30], min_images=3) == pytest.approx(10 / 12)
    assert postprocess.choose_count_scale([5.0], [6], min_images=2) == 1.0  # one image: nothing to hold out
    with pytest.raises(ValueError, match="min_images >= 2"):
        postprocess.choose_count_scale([12.0, 24.0], [10, 20], min_images=1)
    with pytest.raises(ValueError, match="one true count per predicted"):
        postprocess.choose_count_scale([1.0, 2.0], [1])
