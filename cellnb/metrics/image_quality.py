"""Image-quality metrics PSNR and SSIM, thin wrappers of ``skimage.metrics``.

SSRNet and ELMGAN report PSNR/SSIM between a predicted map and the ground-truth mask; the
MobileSR chapter uses them for the super-resolved image. ``data_range`` is always explicit
(default 1.0 for float images in [0, 1]): scikit-image would otherwise guess it from the
dtype, which is wrong for float maps.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "ssim"]


def _pair(pred, true, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    pred_arr = np.asarray(pred, dtype=np.float64)
    true_arr = np.asarray(true, dtype=np.float64)
    if pred_arr.shape != true_arr.shape:
        raise ValueError(f"images must have the same shape, got pred {pred_arr.shape} and true {true_arr.shape}")
    if pred_arr.size == 0:
        raise ValueError("images are empty arrays (size 0)")
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return pred_arr, true_arr


def psnr(pred, true, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB.

    Wraps ``skimage.metrics.peak_signal_noise_ratio(true, pred, data_range=...)``.

    Args:
        pred: Predicted / reconstructed image.
        true: Reference image, same shape.
        data_range: Maximum possible value range of the images (1.0 for [0, 1], 255 for uint8).

    Returns:
        PSNR in dB as a Python float; ``inf`` for identical images.

    Raises:
        ValueError: If shapes differ, the arrays are empty or ``data_range <= 0``.

    Example:
        An error of 0.1 everywhere is an MSE of 0.01: 10 log10(1 / 0.01) = 20 dB.

        >>> round(psnr(np.full((8, 8), 0.1), np.zeros((8, 8)), data_range=1.0), 6)
        20.0
    """
    pred_arr, true_arr = _pair(pred, true, data_range)
    if np.array_equal(pred_arr, true_arr):
        return float("inf")
    return float(peak_signal_noise_ratio(true_arr, pred_arr, data_range=data_range))


def ssim(
    pred,
    true,
    data_range: float = 1.0,
    channel_axis: int | None = None,
    win_size: int | None = None,
    gaussian_weights: bool = False,
) -> float:
    """Mean structural similarity (Wang et al. 2004) via ``skimage.metrics.structural_similarity``.

    scikit-image defaults apply: a 7x7 uniform window (``win_size=None``), K1 = 0.01,
    K2 = 0.03, sample covariance. For images of constant intensity a and b the score
    reduces to the luminance term (2ab + C1) / (a² + b² + C1) with C1 = (0.01·data_range)².

    Args:
        pred: Predicted image, ``(H, W)`` or with a channel axis.
        true: Reference image, same shape.
        data_range: Value range of the images.
        channel_axis: Axis of the colour channels for RGB images (e.g. -1 for ``(H, W, 3)``,
            0 for ``(3, H, W)``); ``None`` for grayscale.
        win_size: Odd window side; ``None`` for scikit-image's default 7.
        gaussian_weights: Use scikit-image's Gaussian window (sigma 1.5) instead of uniform.

    Returns:
        Mean SSIM in [-1, 1] as a Python float.

    Raises:
        ValueError: If shapes differ, ``data_range <= 0`` or the image is smaller than the window.

    Example:
        >>> a, b = np.full((8, 8), 0.5), np.full((8, 8), 0.25)
        >>> round(ssim(a, b, data_range=1.0), 6)  # (0.25 + 1e-4) / (0.3125 + 1e-4) = 0.2501 / 0.3126
        0.800064
    """
    pred_arr, true_arr = _pair(pred, true, data_range)
    spatial = [s for axis, s in enumerate(pred_arr.shape)
               if channel_axis is None or axis != (channel_axis % pred_arr.ndim)]
    window = 7 if win_size is None else int(win_size)
    if not gaussian_weights and min(spatial) < window:
        raise ValueError(
            f"SSIM window {window}x{window} is larger than the image's spatial shape {tuple(spatial)}; "
            "pass a smaller odd win_size"
        )
    return float(
        structural_similarity(
            true_arr,
            pred_arr,
            data_range=data_range,
            channel_axis=channel_axis,
            win_size=win_size,
            gaussian_weights=gaussian_weights,
        )
    )
