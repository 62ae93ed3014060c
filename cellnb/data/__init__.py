"""Data for cellnb: synthetic generators, loaders for real data, splits, datasets, augmentation.

See CONTRIBUTING.md "Data contract" for the signatures.
"""

from __future__ import annotations

from .augment import PairedAugment
from .datasets import DictDataset
from .loaders import (
    load_ctc,
    load_dot_dataset,
    load_dsb2018,
    load_image_mask_pairs,
    load_label_tiffs,
    parse_bbbc005_name,
)
from .real_nuclei import load_ndev_nuclei, ndev_available
from .splits import mbm_split, vgg_splits
from .stats import nuclei_statistics, vgg_statistics
from .synthetic import (
    BBBC005_COUNTS,
    bbbc005_name,
    blood_smear,
    ctc_timelapse,
    fluorescence_batch,
    fluorescence_cells,
    lowres_pair,
    nuclei,
    save_bbbc005,
    write_ctc,
    write_ctc_result,
)

__all__ = [
    "BBBC005_COUNTS",
    "DictDataset",
    "PairedAugment",
    "bbbc005_name",
    "blood_smear",
    "ctc_timelapse",
    "fluorescence_batch",
    "fluorescence_cells",
    "load_ctc",
    "load_dot_dataset",
    "load_dsb2018",
    "load_image_mask_pairs",
    "load_label_tiffs",
    "load_ndev_nuclei",
    "lowres_pair",
    "mbm_split",
    "ndev_available",
    "nuclei",
    "nuclei_statistics",
    "parse_bbbc005_name",
    "save_bbbc005",
    "vgg_splits",
    "vgg_statistics",
    "write_ctc",
    "write_ctc_result",
]
