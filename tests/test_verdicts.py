"""The verdict rule: hand-made cases for compare, beats_floor, converged and threshold_verdict."""

import numpy as np
import pytest

from cellnb import verdicts
from cellnb.verdicts import beats_floor, bootstrap_interval, compare, converged, threshold_verdict


def paired(delta, noise=0.1, n=10, seeds=3, rng=0):
    r = np.random.default_rng(rng)
    b = r.uniform(5, 10, n * seeds)
    a = b + delta + r.normal(0, noise, n * seeds)
    return a, b, np.repeat(np.arange(seeds), n)


def test_clear_win_holds():
    a, b, g = paired(-2.0)
    v = compare(a, b, better="lower", groups=g)
    assert v.holds is True
    assert v.high < 0 and v.n == 30 and v.n_groups == 3
    assert "95% CI" in v.note and "n = 30" in v.note


def test_clear_loss_fails():
    a, b, g = paired(+2.0)
    v = compare(a, b, better="lower", groups=g)
    assert v.holds is False and v.low > 0


def test_higher_is_better_flips_the_side():
    a, b, g = paired(+2.0)
    assert compare(a, b, better="higher", groups=g).holds is True


def test_overlap_is_inconclusive():
    a, b, g = paired(0.0, noise=1.0)
    v = compare(a, b, groups=g)
    assert v.holds is None and v.low < 0 < v.high
    assert "overlaps" in v.reason


def test_not_learned_model_makes_it_inconclusive():
    a, b, g = paired(-2.0)
    v = compare(a, b, groups=g, learned={"ssrnet": True, "unet": False})
    assert v.holds is None and "unet" in v.reason


def test_fewer_than_three_seeds_is_inconclusive():
    a, b, g = paired(-2.0, seeds=2)
    v = compare(a, b, groups=g)
    assert v.holds is None and "2 seed" in v.reason


def test_claimed_margin():
    # improvement of 2 +- small: holds for margin 1, fails for margin 3
    a, b, g = paired(-2.0, noise=0.05)
    assert compare(a, b, groups=g, margin=1.0).holds is True
    assert compare(a, b, groups=g, margin=3.0).holds is False
    # relative: 2 / mean(b) ~ 0.27 -> fails a claimed 50 % improvement
    assert compare(a, b, groups=g, margin=0.5, relative=True).holds is False


def test_compare_rejects_unpaired_input():
    with pytest.raises(ValueError, match="paired"):
        compare([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="lower"):
        compare([1.0], [1.0], better="smaller")


def test_bootstrap_interval_of_a_constant_is_a_point_and_groups_widen_it():
    assert bootstrap_interval([2.0] * 5) == (2.0, 2.0, 2.0)
    values = np.r_[np.zeros(20), np.ones(20) * 10, np.ones(20) * 5]
    groups = np.repeat([0, 1, 2], 20)
    _, lo1, hi1 = bootstrap_interval(values)
    _, lo2, hi2 = bootstrap_interval(values, groups)
    assert hi2 - lo2 > hi1 - lo1  # seed-to-seed variation is carried


def test_beats_floor():
    assert beats_floor([1.0, 1.1, 0.9, 1.2], [5.0, 5.0, 5.0, 5.0]) is True
    assert beats_floor([5.0, 5.1, 4.9, 5.0], [5.0, 5.0, 5.0, 5.0]) is False
    assert beats_floor([0.9, 0.95, 0.92], [0.5, 0.6, 0.55], better="higher") is True


def test_converged_rule():
    plateau = [1.0, 0.6, 0.4, 0.3, 0.25, 0.22, 0.21, 0.205, 0.204, 0.203, 0.203, 0.202]
    falling = list(np.linspace(1.0, 0.1, 12))
    assert converged(plateau) is True
    assert converged(falling) is False
    assert converged(plateau[:5]) is False  # too short to tell
    assert converged([float("nan")] * 3 + plateau) is True  # non-finite points are ignored
    report = verdicts.convergence_report(falling)
    assert report["converged"] is False and report["last_window_improvement"] > 0.05


def test_threshold_verdict():
    assert threshold_verdict(0.059, 0.0625) is True
    assert threshold_verdict(0.08, 0.0625) is False
    assert threshold_verdict(0.06, 0.0625, low=0.05, high=0.07) is None
    assert threshold_verdict(12.0, 10.0, better="higher") is True
    assert threshold_verdict(3.0, 10.0, better="higher", basis="other device") is None
