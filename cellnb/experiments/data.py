"""The data chapter: generator timings and generated-vs-real VGG-cells statistics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

SETTINGS = {
    "smoke": {"n_timing": 10, "n_stats": 8, "n_real": 8},
    "quick": {"n_timing": 100, "n_stats": 60, "n_real": 200},
    "full": {"n_timing": 100, "n_stats": 200, "n_real": 200},
}
HEADLINE = ("gen_seconds_per_100", "vgg_gen_cells_mean", "vgg_real_cells_mean")
STATISTICS = ("cells_mean", "cell_area_px", "fg_intensity", "bg_intensity")
TOLERANCE = 0.15  # issue 3: each generated statistic within 15% of the real one


def vgg_sample_with_targets(seed: int, sigma: float = 2.0) -> dict:
    """One VGG-like image with every target a chapter derives from it."""
    from cellnb import data, targets

    sample = data.fluorescence_cells(seed, preset="vgg")
    sample["density"] = targets.density_from_points(sample["points"], sample["image"].shape, sigma=sigma)
    sample["boundary"] = targets.boundaries(sample["labels"])
    return sample


def seconds_per_100(n: int, seed: int = 0) -> float:
    """Wall time to generate ``n`` VGG-like 256² images with all targets, scaled to 100 images."""
    start = time.perf_counter()
    for i in range(n):
        vgg_sample_with_targets(seed + i)
    return (time.perf_counter() - start) * 100.0 / n


def generated_vgg_statistics(n: int, seed: int = 0) -> dict[str, float]:
    from cellnb import data

    samples = [data.fluorescence_cells(seed + 10_000 + i, preset="vgg") for i in range(n)]
    return data.vgg_statistics([s["rgb"] for s in samples], [s["dots"] for s in samples])


def real_vgg_statistics(folder: Path, n: int) -> dict[str, float]:
    from cellnb import data, targets

    items = data.load_dot_dataset(folder, kind="vgg")[:n]
    dots = [targets.dots_from_points(it["points"], it["rgb"].shape[:2]) for it in items]
    return data.vgg_statistics([it["rgb"] for it in items], dots)


def statistics_table(generated: dict[str, float], real: dict[str, float] | None) -> pd.DataFrame:
    rows = []
    for key in STATISTICS:
        row = {"statistic": key, "generated": generated[key]}
        if real is not None:
            row["real VGG cells"] = real[key]
            row["relative difference"] = (generated[key] - real[key]) / real[key]
            row[f"within {TOLERANCE:.0%}"] = bool(abs(row["relative difference"]) <= TOLERANCE)
        rows.append(row)
    return pd.DataFrame(rows)


def relative_differences(generated: dict[str, float], real: dict[str, float]) -> dict[str, float]:
    return {k: float(abs(generated[k] - real[k]) / real[k]) for k in STATISTICS}


def ctc_track_table(tracks) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(tracks, dtype=int).reshape(-1, 4), columns=["L", "B", "E", "P"])
