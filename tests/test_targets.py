"""cellnb.targets on hand-made label images (values checked by hand)."""

import numpy as np
import pytest
from scipy import ndimage

from cellnb import targets


def two_touching():
    L = np.zeros((7, 9), np.int32)
    L[1:6, 1:4] = 1  # 5x3
    L[1:6, 4:8] = 2  # 5x4, touching 1 along column 3|4
    return L


def test_density_sums_to_count_even_at_borders():
    pts = np.array([[0, 0], [5, 5], [9, 11], [0, 11]], np.float32)
    d = targets.density_from_points(pts, (10, 12), sigma=2.0)
    assert d.dtype == np.float32 and d.shape == (10, 12)
    assert d.sum() == pytest.approx(4.0, abs=1e-5)
    # an interior point far from borders matches the plain Gaussian filter
    dots = np.zeros((40, 40))
    dots[20, 20] = 1
    d2 = targets.density_from_points([[20, 20]], (40, 40), sigma=2.0)
    np.testing.assert_allclose(d2, ndimage.gaussian_filter(dots, 2.0, mode="constant"), atol=1e-6)
    # corner kernel keeps its mass: the plain filter keeps only (half kernel + centre / 2)^2 of it
    d3 = targets.density_from_points([[0, 0]], (40, 40), sigma=2.0)
    assert d3.sum() == pytest.approx(1.0, abs=1e-6)
    x = np.arange(-8, 9)
    k = np.exp(-0.5 * (x / 2.0) ** 2)
    k /= k.sum()
    kept = k[8:].sum() ** 2  # about 0.36
    assert d3[0, 0] == pytest.approx(k[8] ** 2 / kept, rel=1e-5)


def test_density_sigma_zero_and_bad_input():
    d = targets.density_from_points([[1.4, 2.6], [1.2, 2.9]], (4, 5), sigma=0)
    assert d[1, 3] == 2 and d.sum() == 2
    assert targets.density_from_points(np.zeros((0, 2)), (4, 4)).sum() == 0
    with pytest.raises(ValueError, match="shape"):
        targets.density_from_points([1, 2, 3], (4, 4))
    with pytest.raises(ValueError, match="outside"):
        targets.density_from_points([[10, 0]], (4, 4))


def test_boundaries_inner_marks_interface():
    b = targets.boundaries(two_touching())
    assert b.dtype == np.uint8
    # object 1 (3 wide) keeps only its middle column 2 as interior on rows 2..4
    np.testing.assert_array_equal(b[3], [0, 1, 0, 1, 1, 0, 0, 1, 0])
    assert b[0].sum() == 0 and b[1, 1:8].all()
    with pytest.raises(ValueError, match="unknown boundary mode"):
        targets.boundaries(two_touching(), mode="subpixel")
    with pytest.raises(ValueError, match="integer"):
        targets.boundaries(two_touching().astype(float))


def test_markers_erode_each_instance_separately():
    m = targets.markers(two_touching(), erosion=3)
    assert m.dtype == np.int32
    expected = np.zeros((7, 9), np.int32)
    expected[2:5, 2] = 1
    expected[2:5, 5:7] = 2
    np.testing.assert_array_equal(m, expected)
    # erosion 0 keeps the labels; a cell smaller than the element vanishes
    np.testing.assert_array_equal(targets.markers(two_touching(), 0), two_touching())
    assert (targets.markers(two_touching(), 6) == 0).all()


def test_unet_weight_map_hand_values():
    L = two_touching()
    w = targets.unet_weight_map(L, w0=10, sigma=5)
    n_fg, n_bg = 35, 28
    # inside a cell: class weight only (the more frequent class = foreground = 1)
    assert w[3, 2] == pytest.approx(1.0)
    # corner (0, 0): d1 = sqrt(2) to cell 1, d2 = sqrt(17) to cell 2
    expected = n_fg / n_bg + 10 * np.exp(-((np.sqrt(2) + np.sqrt(17)) ** 2) / 50)
    assert w[0, 0] == pytest.approx(expected, rel=1e-5)
    # a single instance has no border term
    single = (L == 1).astype(np.int32)
    assert targets.unet_weight_map(single, class_balance=False).max() == pytest.approx(1.0)


def test_distance_weight_per_instance():
    L = np.zeros((9, 9), np.int32)
    L[2:7, 2:7] = 1  # 5x5 square: distances to outside 0 on the edge, 1, 2 at the centre
    w = targets.distance_weight(L, power=1.0)
    assert w[2, 2] == pytest.approx(1.0) and w[4, 4] == pytest.approx(0.0)
    assert w[3, 4] == pytest.approx(0.5)  # d = 1, d_max = 2
    assert w[0, 0] == 1.0  # background
    w2 = targets.distance_weight(L, power=2.0)
    assert w2[3, 4] == pytest.approx(0.25)
    assert (targets.distance_weight(L, power=0) == 1).all()
    # touching cells: the interface is an edge (weight 1) for both
    wt = targets.distance_weight(two_touching(), 1.0)
    assert wt[3, 3] == pytest.approx(1.0) and wt[3, 4] == pytest.approx(1.0)
    assert wt[3, 2] == pytest.approx(0.0)


def test_three_class():
    t = targets.three_class(two_touching())
    assert set(np.unique(t)) == {0, 1, 2}
    assert t[3, 2] == 1 and t[3, 3] == 2 and t[0, 0] == 0
