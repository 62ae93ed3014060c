"""Paired augmentation: one random geometry applied to the image and every target map.

Built on ``torchvision.transforms.v2`` with ``tv_tensors.Image`` for the image and
``tv_tensors.Mask`` for every target map (mask, labels, density, dots, weights, markers...):
v2 draws one set of random parameters per call and applies it to all of them; masks are never
interpolated. Only crops, flips and 90° rotations are used, all exact pixel permutations, so
density maps are moved, not resampled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import tvfix  # noqa: F401  (makes PyPI torchvision import on CPU-only torch)

try:  # torchvision needs the tvfix patch applied once; fail with a clear message otherwise
    from torchvision import tv_tensors
    from torchvision.transforms import v2
except Exception as err:  # pragma: no cover - environment problem
    raise ImportError(f"torchvision.transforms.v2 is unavailable ({err}); run `python -m cellnb.tvfix`") from err


class PairedAugment:
    """Random crop, flips, rot90 and image-only Gaussian noise for a dict of tensors.

    ``sample`` is a dict as returned by :class:`cellnb.data.DictDataset`: ``image`` (C, H, W)
    plus target maps whose last two dims are (H, W) (e.g. ``mask`` (H, W), ``density``
    (1, H, W)). Everything else (scalars, names) passes through.

    - ``crop``: int or (h, w) random crop (``v2.RandomCrop``), or None;
    - ``flip``: horizontal and vertical flips, each with p = 0.5;
    - ``rotate90``: rotation by k·90°, k uniform in {0, 1, 2, 3} (``torch.rot90``; for non-square
      inputs H and W swap);
    - ``noise_std``: std of additive Gaussian noise on the image only (``v2.GaussianNoise``,
      clipped to [0, 1] when ``clip_noise``).

    Counts: after a crop, ``count`` is recomputed from ``dots`` when present (an integer), else
    from ``density`` (its sum). ``points`` cannot follow the geometry here and are dropped when
    any geometric transform is on; rebuild them from ``dots`` if needed.
    Randomness comes from torch's global generator (seed with ``torch.manual_seed``).
    """

    def __init__(
        self,
        crop: int | Sequence[int] | None = None,
        flip: bool = True,
        rotate90: bool = True,
        noise_std: float = 0.0,
        image_keys: Sequence[str] = ("image",),
        clip_noise: bool = True,
    ):
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if crop is not None:
            crop = (crop, crop) if isinstance(crop, int) else tuple(int(c) for c in crop)
            if len(crop) != 2 or min(crop) < 1:
                raise ValueError(f"crop must be a positive int or (h, w), got {crop}")
        self.crop = crop
        self.flip = flip
        self.rotate90 = rotate90
        self.noise_std = float(noise_std)
        self.image_keys = tuple(image_keys)
        geometric = []
        if crop is not None:
            geometric.append(v2.RandomCrop(crop))
        if flip:
            geometric += [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)]
        self.geometric = v2.Compose(geometric) if geometric else None
        self.noise = v2.GaussianNoise(mean=0.0, sigma=self.noise_std, clip=clip_noise) if noise_std > 0 else None

    def __repr__(self) -> str:
        return f"PairedAugment(crop={self.crop}, flip={self.flip}, rotate90={self.rotate90}, noise_std={self.noise_std})"

    def __call__(self, sample: dict) -> dict:
        if "image" not in sample:
            raise KeyError(f"sample needs an 'image' key, got {sorted(sample)}")
        image = sample["image"]
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError(f"sample['image'] must be a (C, H, W) tensor, got {getattr(image, 'shape', type(image))}")
        hw = tuple(image.shape[-2:])
        if self.crop is not None and (self.crop[0] > hw[0] or self.crop[1] > hw[1]):
            raise ValueError(f"crop {self.crop} is larger than the image {hw}")
        spatial, other = {}, {}
        for key, value in sample.items():
            if key in self.image_keys and isinstance(value, torch.Tensor):
                spatial[key] = tv_tensors.Image(value)
            elif isinstance(value, torch.Tensor) and value.ndim >= 2 and tuple(value.shape[-2:]) == hw:
                spatial[key] = tv_tensors.Mask(value)
            else:
                other[key] = value
        if self.geometric is not None:
            spatial = self.geometric(spatial)
        if self.rotate90:
            k = int(torch.randint(0, 4, ()).item())
            if k:
                spatial = {key: type(v)(torch.rot90(v.as_subclass(torch.Tensor), k, dims=(-2, -1))) for key, v in spatial.items()}
        if self.noise is not None:
            spatial = self.noise(spatial)
        out = {key: v.as_subclass(torch.Tensor) for key, v in spatial.items()}
        if self.crop is not None:
            if "dots" in out:
                other["count"] = out["dots"].sum().to(torch.float32)
            elif "density" in out:
                other["count"] = out["density"].sum().to(torch.float32)
        if self.geometric is not None or self.rotate90:
            other.pop("points", None)
        out.update(other)
        return out
