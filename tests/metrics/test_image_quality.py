"""PSNR / SSIM wrappers against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellnb.metrics import psnr, ssim


def test_psnr_hand_values():
    true = np.zeros((16, 16))
    assert psnr(true + 0.1, true, data_range=1.0) == pytest.approx(20.0)  # MSE 0.01
    assert psnr(true + 0.01, true) == pytest.approx(40.0)
    pred = np.zeros((16, 16))
    pred[:8] = 0.2  # MSE = 0.5 * 0.04 = 0.02
    assert psnr(pred, true) == pytest.approx(10 * math.log10(1 / 0.02))
    u8 = np.full((16, 16), 10, np.uint8)
    assert psnr(u8 + np.uint8(1), u8, data_range=255) == pytest.approx(10 * math.log10(255**2))  # MSE 1
    assert psnr(true, true) == math.inf


def test_ssim_hand_values_gray_and_rgb():
    a, b = np.full((16, 16), 0.5), np.full((16, 16), 0.25)
    c1 = (0.01 * 1.0) ** 2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1))
    rng = np.random.default_rng(0)
    img = rng.random((16, 16, 3))
    assert ssim(img, img, data_range=1.0, channel_axis=-1) == pytest.approx(1.0)
    rgb_a = np.stack([a, a, a], axis=0)
    rgb_b = np.stack([b, b, a], axis=0)  # channels: two like above, one identical -> mean
    expected = (2 * (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1) + 1.0) / 3
    assert ssim(rgb_b, rgb_a, channel_axis=0) == pytest.approx(expected)


def test_errors():
    with pytest.raises(ValueError, match=r"pred \(4, 4\) and true \(4, 5\)"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.zeros((4, 4)), np.ones((4, 4)), data_range=0)
    with pytest.raises(ValueError, match="window 7x7"):
        ssim(np.zeros((4, 4)), np.ones((4, 4)))
    assert ssim(np.zeros((4, 4)), np.zeros((4, 4)), win_size=3) == pytest.approx(1.0)
