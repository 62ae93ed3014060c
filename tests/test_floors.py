"""Floors and ceilings on hand-made images."""

import numpy as np
import pytest

from cellnb import floors


def two_touching_disks(size=40, r=8, gap=0):
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    c1, c2 = (20, 20 - r + gap // 2), (20, 20 + r - gap // 2)
    labels[(yy - c1[0]) ** 2 + (xx - c1[1]) ** 2 <= r * r] = 1
    labels[((yy - c2[0]) ** 2 + (xx - c2[1]) ** 2 <= r * r) & (labels == 0)] = 2
    return labels


def test_constant_count():
    assert floors.constant_count([10, 20, 30], 3).tolist() == [20.0, 20.0, 20.0]
    with pytest.raises(ValueError):
        floors.constant_count([], 2)


def test_otsu_mask_polarity():
    image = np.zeros((20, 20), np.float32)
    image[5:15, 5:15] = 1.0
    bright = floors.otsu_mask(image, sigma=0)
    assert bright[10, 10] == 1 and bright[0, 0] == 0
    dark = floors.otsu_mask(1 - image, sigma=0, bright_foreground=False)
    assert (dark == bright).all()
    assert floors.otsu_mask(np.ones((5, 5))).sum() == 0  # flat image: empty mask, no crash


def test_distance_watershed_splits_two_touching_disks():
    labels = two_touching_disks()
    pred = floors.distance_watershed(labels > 0, min_distance=3)
    assert pred.max() == 2
    # connected components cannot: the ceiling of the mask-only pipeline on touching cells is low
    from skimage.measure import label
    cc = label(labels > 0)
    assert cc.max() == 1
    # the merged object overlaps disk 1 at IoU 197/393 > 0.5: TP 1, FN 1 -> AP 1/2; AJI 393/786
    assert floors.instance_scores(labels, cc)["ap50"] == 0.5
    assert floors.instance_scores(labels, cc)["aji"] == pytest.approx(0.5)
    assert floors.instance_scores(labels, pred)["ap50"] == 1.0


def test_distance_watershed_drops_specks_smaller_than_min_size_and_keeps_the_cells():
    labels = two_touching_disks()
    mask = labels > 0
    specks = np.zeros_like(mask)
    specks[1, 1] = specks[1, 5:7] = specks[5:8, 1] = True  # 1, 2 and 3 px, apart from the disks
    assert not (specks & mask).any()
    noisy = floors.distance_watershed(mask | specks, min_distance=3, min_size=4)
    assert noisy.max() == 2 and not noisy[specks].any()  # the disks, and no speck of 1-3 px
    assert (noisy > 0).sum() == (floors.distance_watershed(mask, min_distance=3, min_size=4) > 0).sum()
    kept = floors.distance_watershed(mask | specks, min_distance=3, min_size=1)
    assert kept.max() == 5 and kept[specks].all()  # min_size 1 keeps every speck as an object


def test_oracle_maps_and_ceiling():
    labels = two_touching_disks()
    maps = floors.oracle_maps(labels, erosion=2)
    assert set(maps) == {"mask", "marker", "boundary", "interior"}
    assert maps["mask"].sum() == (labels > 0).sum()
    assert maps["marker"].sum() < maps["mask"].sum()
    from skimage.measure import label as cc_label
    cc_ceiling = floors.instance_ceiling(lambda m: cc_label(m["mask"] > 0.5).astype(np.int32), [labels])
    marker_ceiling = floors.instance_ceiling(
        lambda m: __import__("cellnb.postprocess", fromlist=["x"]).markers_watershed(m["mask"], m["marker"], min_size=5),
        [labels])
    assert cc_ceiling["ap50"] == 0.5
    assert marker_ceiling["ap50"] == 1.0 and marker_ceiling["aji"] > 0.95


def test_bicubic_shapes_and_range():
    lr = np.random.default_rng(0).uniform(0, 1, (3, 8, 8)).astype(np.float32)
    hr = floors.bicubic(lr, 4)
    assert hr.shape == (3, 32, 32) and hr.min() >= 0 and hr.max() <= 1
    assert floors.bicubic(lr[0], 2).shape == (16, 16)
    assert floors.bicubic(lr[None], 2).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError):
        floors.bicubic(np.zeros(5), 2)


def test_capped():
    assert floors.capped(0.14, [0.05, 0.079]) is True  # ceiling itself useless
    assert floors.capped(0.95, [0.7, 0.8]) is False
    assert floors.capped(0.95, [0.7, 0.93]) is True
