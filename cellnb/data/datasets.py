"""A torch Dataset over a list of dicts of numpy arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

#: keys whose 2-D float maps get a channel axis (matching model outputs (N, 1, H, W))
_IMAGE_KEYS = ("image", "lr", "hr", "bicubic")


def to_tensor_dict(item: dict, keys: Sequence[str] | None = None) -> dict:
    """Convert one sample to tensors.

    - ``image`` (and ``lr``, ``hr``, ``bicubic``): (H, W) -> (1, H, W); (H, W, C) with C in
      {1, 3, 4} -> (C, H, W) (uint8 arrays are taken as HWC; float arrays as HWC unless their
      first axis is 1 or 3, i.e. already CHW); uint8 is scaled to [0, 1]; float32.
    - other float arrays: float32; a 2-D float map (density, weight) gets a channel axis (1, H, W).
    - integer / bool arrays (mask, labels, dots, semantic): int64, shape kept.
    - ``count``: float32 scalar (a regression target).
    - numbers become 0-d tensors; strings and other objects pass through unchanged.
    """
    out = {}
    for key, value in item.items():
        if keys is not None and key not in keys:
            continue
        if isinstance(value, torch.Tensor):
            out[key] = value
            continue
        if isinstance(value, (str, bytes)) or value is None:
            out[key] = value
            continue
        arr = np.asarray(value)
        if arr.dtype == object:
            out[key] = value
            continue
        if key == "count":
            out[key] = torch.tensor(float(arr), dtype=torch.float32)
        elif key in _IMAGE_KEYS:
            scale = 255.0 if arr.dtype == np.uint8 else 1.0
            a = arr.astype(np.float32) / scale
            if a.ndim == 2:
                a = a[None]
            elif a.ndim == 3 and a.shape[2] in (1, 3, 4) and (arr.dtype == np.uint8 or a.shape[0] not in (1, 3)):
                a = a.transpose(2, 0, 1)  # HWC (uint8 images are always HWC) -> CHW
            elif a.ndim != 3:
                raise ValueError(f"{key!r} must be (H, W), (H, W, C) or (C, H, W); got {arr.shape}")
            out[key] = torch.from_numpy(np.ascontiguousarray(a))
        elif np.issubdtype(arr.dtype, np.floating):
            a = arr.astype(np.float32)
            out[key] = torch.from_numpy(np.ascontiguousarray(a[None] if a.ndim == 2 else a))
        elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
            out[key] = torch.from_numpy(np.ascontiguousarray(arr.astype(np.int64)))
        else:
            out[key] = value
    return out


class DictDataset(Dataset):
    """Dataset over ``items`` (a list of dicts of numpy arrays); returns dicts of tensors.

    Conversion rules: :func:`to_tensor_dict`. ``keys`` keeps only those keys (drop ragged ones
    such as ``points`` before batching with the default collate); ``transform`` is called on the
    tensor dict (e.g. :class:`cellnb.data.PairedAugment`).
    """

    def __init__(self, items: Sequence[dict], transform: Callable[[dict], dict] | None = None, keys: Sequence[str] | None = None):
        if len(items) == 0:
            raise ValueError("DictDataset needs at least one item")
        if not all(isinstance(it, dict) for it in items):
            raise TypeError("items must be a list of dicts of arrays")
        if keys is not None:
            missing = [k for k in keys if k not in items[0]]
            if missing:
                raise KeyError(f"keys {missing} not in the items (have {sorted(items[0])})")
        self.items = list(items)
        self.transform = transform
        self.keys = tuple(keys) if keys is not None else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        sample = to_tensor_dict(self.items[index], self.keys)
        return self.transform(sample) if self.transform is not None else sample
