"""The VGG-like generator matches the real VGG cells statistics within 15% (skipped without the data)."""

import os
from pathlib import Path

import numpy as np
import pytest

from cellnb import data
from cellnb.utils import REPO_ROOT

VGG_DIR = Path(os.environ.get("CELLNB_DATA_ROOT") or REPO_ROOT.parent / "shared" / "data") / "vgg_cells"


def test_vgg_statistics_hand_made():
    img = np.zeros((20, 20, 3), np.uint8)
    img[..., 2] = 50
    img[2:5, 2:5, 2] = 200  # isolated cell of 9 px, one dot
    img[10:14, 10:18, 2] = 210  # a clump of 32 px with two dots (not isolated)
    dots = np.zeros((20, 20), np.uint8)
    dots[3, 3] = dots[11, 11] = dots[12, 16] = 1
    s = data.vgg_statistics([img], [dots])
    assert s == {"cells_mean": 3.0, "cell_area_px": 9.0, "fg_intensity": 210.0, "bg_intensity": 50.0}  # median of 9 x 200 and 32 x 210


@pytest.mark.skipif(not VGG_DIR.is_dir(), reason=f"real VGG cells not found at {VGG_DIR}")
def test_generator_matches_real_vgg_within_15_percent():
    real = data.load_dot_dataset(VGG_DIR, kind="vgg")[::10]  # 20 images spread over the set
    dots = []
    for it in real:
        d = np.zeros(it["rgb"].shape[:2], np.int64)
        d[it["points"][:, 0].astype(int), it["points"][:, 1].astype(int)] = 1
        dots.append(d)
    real_stats = data.vgg_statistics([it["rgb"] for it in real], dots)
    gen = [data.fluorescence_cells(seed) for seed in range(20)]
    gen_stats = data.vgg_statistics([g["rgb"] for g in gen], [g["dots"] for g in gen])
    for key, value in real_stats.items():
        assert abs(gen_stats[key] - value) <= 0.15 * value, (key, gen_stats[key], value)
