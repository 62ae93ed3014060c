"""Train/test splits of the real counting benchmarks (DATASETS.md §2.1, §2.2)."""

from __future__ import annotations

import numpy as np


def vgg_splits(n_train: int, n_splits: int = 5, seed: int = 0, n_images: int = 200) -> list[dict[str, np.ndarray]]:
    """VGG cells protocol (Lempitsky & Zisserman 2010): the first 100 images are the training pool,
    the last 100 the test set; ``n_train`` images are drawn from the pool without replacement,
    once per split (``n_splits`` random draws, all from ``numpy.random.default_rng(seed)``).

    Returns a list of ``{"train": idx, "test": idx}`` with 0-based indices into the sorted file
    list (image ``001cell.png`` is index 0).
    """
    pool = n_images // 2
    if not 1 <= n_train <= pool:
        raise ValueError(f"n_train must be in [1, {pool}] (drawn from the first {pool} images), got {n_train}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    test = np.arange(pool, n_images)
    return [{"train": np.sort(rng.choice(pool, size=n_train, replace=False)), "test": test.copy()} for _ in range(n_splits)]


def mbm_split(seed: int = 0, n_train: int = 15, n_images: int = 44) -> dict[str, np.ndarray]:
    """MBM protocol (Cohen et al. 2017; SAU-Net ``train_num['mbm'] = 15``): a random permutation
    of the 44 images, the first 15 train, the other 29 test. 0-based indices, sorted."""
    if not 1 <= n_train < n_images:
        raise ValueError(f"n_train must be in [1, {n_images - 1}], got {n_train}")
    perm = np.random.default_rng(seed).permutation(n_images)
    return {"train": np.sort(perm[:n_train]), "test": np.sort(perm[n_train:])}
