"""The "Your own images" chapter: a counting model trained, applied and exported with the three
command lines of :mod:`cellnb.cli`, on a real set in a layout the book has not used so far.

MBM (bone-marrow H&E tiles with 1-bit dot images; 15 train / 29 test, Cohen et al. 2017) is read from
the data root and written to a work folder as the layout a biologist would have: one PNG per image and
one ``y,x`` point CSV per image. Without the data root (and at ``smoke``) generated fluorescence fields
are written the same way.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cellnb import data, userdata

SETTINGS: dict[str, dict[str, Any]] = {
    # cli profile, optimiser steps, images (generated fallback), and the MBM split
    "smoke": {"cli_profile": "smoke", "steps": 12, "n_generated": 12, "generated_size": 96, "n_train": 8, "max_test": 4},
    "quick": {"cli_profile": "quick", "steps": 1500, "n_generated": 40, "generated_size": 160, "n_train": 15, "max_test": 29},
    "full": {"cli_profile": "full", "steps": 20000, "n_generated": 120, "generated_size": 256, "n_train": 15, "max_test": 29},
}


def write_point_folders(records: Sequence[Mapping[str, Any]], root: Path, train: Sequence[int], test: Sequence[int]) -> dict[str, Path]:
    """Write ``train/images``, ``train/points`` and ``test/images`` (+ the test truth in ``test/truth.csv``)."""
    from skimage import io

    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    paths = {k: root / k for k in ("train/images", "train/points", "test/images")}
    for p in paths.values():
        p.mkdir(parents=True)
    for i in train:
        r = records[i]
        io.imsave(paths["train/images"] / f"{Path(r['name']).stem}.png", r["rgb"], check_contrast=False)
        userdata.write_points_csv(paths["train/points"] / f"{Path(r['name']).stem}.csv", r["points"])
    with open(root / "test" / "truth.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "count"])
        for i in test:
            r = records[i]
            name = f"{Path(r['name']).stem}.png"
            io.imsave(paths["test/images"] / name, r["rgb"], check_contrast=False)
            writer.writerow([name, len(r["points"])])
    return {"root": root, **{k.replace("/", "_"): v for k, v in paths.items()}}


def generated_records(n: int, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Generated VGG-like fields in the layout of :func:`cellnb.data.load_dot_dataset` records."""
    out = []
    for i in range(n):
        s = data.fluorescence_cells(seed + i, size=(size, size))
        out.append({"name": f"field_{i:03d}.png", "rgb": s["rgb"], "points": s["points"], "count": int(s["count"])})
    return out


def mbm_records(folder: Path) -> list[dict[str, Any]]:
    return data.load_dot_dataset(folder, kind="mbm")


def read_counts(path: Path) -> dict[str, float]:
    with open(path) as handle:
        return {row["image"]: float(row["count"]) for row in csv.DictReader(handle)}


def evaluate(pred: Mapping[str, float], truth: Mapping[str, float], train_counts: Sequence[float]) -> dict[str, Any]:
    """Per-image absolute errors of the model and of the constant training-mean floor, with intervals."""
    from cellnb.verdicts import beats_floor, bootstrap_interval

    names = sorted(truth)
    true = np.array([truth[n] for n in names])
    model_err = np.abs(np.array([pred[n] for n in names]) - true)
    floor_err = np.abs(np.mean(train_counts) - true)
    m, m_lo, m_hi = bootstrap_interval(model_err)
    f, f_lo, f_hi = bootstrap_interval(floor_err)
    return {"names": names, "true": true, "pred": np.array([pred[n] for n in names]),
            "count_mae": m, "count_mae_low": m_lo, "count_mae_high": m_hi,
            "floor_count_mae": f, "floor_low": f_lo, "floor_high": f_hi,
            "beats_floor": beats_floor(model_err, floor_err, better="lower"),
            "ratio_to_floor": m / f if f else float("nan")}
