"""MC-Unet as a method (Jin et al., IEEE BIBM 2022): density + boundary supervision of a multi-scale U-Net.

One place for the recipe (:class:`MCUNetMethod`, registered as ``"mc_unet"``):

* **network** (:mod:`cellnb.models.mc_unet`): the released ``MNet2D`` (MC blocks of 1/3/5 kernels); in
  the paper's reading two 1×1 heads on the last decoder features, ``density`` (softplus) and
  ``boundary_logits``. ``size="paper"`` is the released width 64 / depth 3; ``"slim"`` the CPU width.
* **losses** (:mod:`cellnb.losses.mc_unet`): ``"paper"`` (default: CE + 0.15 · focal on the boundary
  head + ``density_weight`` · MSE on the density head), its ablations ``"no_density"``,
  ``"no_boundary"``, ``"baseline"`` (CE only), and ``"code"``, the released loss (CE + 0.15 · the
  released focal loss on the segmentation logits, density weight 0, no extra heads).
* **targets** from ``{"image", "labels"}``: ``mask`` (0/1), ``boundary`` (inner boundaries of the
  instances), ``density`` (a Gaussian at each instance centroid, summing to the count).
* **post-processing** -> :class:`~cellnb.methods.base.Prediction` with ``count`` (sum of the density,
  else the number of instances), ``foreground``, ``labels`` and ``maps`` ``{"density", "boundary"}``.
  Instances: with a boundary map, seeds = components of ``foreground ∧ boundary < 0.5``, grown back over
  the foreground by a watershed of the boundary map; with a density map only, seeds = density peaks,
  watershed of the negated density; with neither, a distance-transform watershed of the foreground.

Also here because the method defines them: :class:`ScaledDensity` (the density head learns the map
amplified by ``density_scale``; the output is divided back, so it still sums to the count) and
:func:`make_split` (generated touching nuclei with these targets).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from cellnb.methods.base import Method, Prediction, channels_first, register_method

__all__ = ["MCUNetMethod", "ScaledDensity", "VARIANTS", "LOSS_HEADS", "instances", "centroids",
           "sample_targets", "make_split", "NUCLEI_PER_256", "oracle_inputs"]

#: ablation name -> auxiliary branches trained (the paper-mode heads)
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "density": ("density",),
    "boundary": ("boundary",),
    "both": ("density", "boundary"),
}
#: loss name -> (mode, branches with a nonzero weight); the first is the default
LOSS_HEADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "paper": ("paper", ("density", "boundary")),
    "no_density": ("paper", ("boundary",)),
    "no_boundary": ("paper", ("density",)),
    "baseline": ("paper", ()),
    "code": ("code", ("boundary",)),
    "code_density": ("code", ("density", "boundary")),
}
NUCLEI_PER_256 = {"dense": 95, "sparse": 25}  # mid-points of cellnb.data.nuclei's default ranges


class ScaledDensity(nn.Module):
    """Wraps a model so that its ``density`` output is divided by ``scale``.

    The wrapped head then learns the density amplified by ``scale`` (per-pixel values ~1 instead
    of ~0.01, which a few Adam steps at lr 1e-3 cannot reach from softplus(0) = 0.69), while the
    output stays the count-preserving density (its sum is the count), as the model contract asks.
    """

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"density scale must be positive, got {scale}")
        self.model, self.scale = model, float(scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from cellnb.models import outputs

        out = dict(self.model(x))
        if outputs.DENSITY in out:
            out[outputs.DENSITY] = out[outputs.DENSITY] / self.scale
        return out


# ------------------------------------------------------------------------------------- targets
def centroids(labels: np.ndarray) -> np.ndarray:
    """Instance centroids ``(K, 2)`` float32 ``(row, col)``: the dots of the density target."""
    labels = np.asarray(labels)
    ids = np.arange(1, int(labels.max()) + 1) if labels.size and labels.max() > 0 else np.zeros(0, int)
    ids = ids[np.bincount(labels.ravel(), minlength=len(ids) + 1)[1:] > 0] if len(ids) else ids
    if not len(ids):
        return np.zeros((0, 2), np.float32)
    return np.array(ndimage.center_of_mass(labels > 0, labels, ids), np.float32).reshape(-1, 2)


def sample_targets(labels: np.ndarray, sigma: float = 2.0, points: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``mask`` int64 0/1, ``boundary`` float32 (inner boundaries), ``density`` float32 (sums to the count)."""
    from cellnb import targets

    labels = np.asarray(labels).astype(np.int32)
    points = centroids(labels) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
    return {
        "mask": (labels > 0).astype(np.int64),
        "boundary": targets.boundaries(labels, mode="inner").astype(np.float32),
        "density": targets.density_from_points(points, labels.shape, sigma=sigma).astype(np.float32),
    }


def make_split(seed: int, n: int, size: int, regime: str, sigma: float, radius_scale: float = 1.0) -> list[dict[str, np.ndarray]]:
    """``n`` images of ``cellnb.data.nuclei(seed + i, size, regime=regime)`` with their targets.

    Items: ``image`` (1, H, W) float32, ``mask``, ``boundary``, ``density``, ``labels``.
    ``radius_scale`` shrinks the nuclei (default radii 7–14 px) for small CPU images; the number
    of nuclei grows by ``1 / radius_scale²`` so that the covered fraction, hence the crowding of
    the regime, stays that of a 256² image.
    """
    from cellnb import data

    if regime not in NUCLEI_PER_256:
        raise ValueError(f"unknown regime {regime!r}; choose from {sorted(NUCLEI_PER_256)}")
    n_nuclei = max(1, round(NUCLEI_PER_256[regime] * (size / 256) ** 2 / radius_scale**2))
    radius_range = (7.0 * radius_scale, 14.0 * radius_scale)
    items = []
    for i in range(n):
        sample = data.nuclei(seed + i, size=size, n_nuclei=n_nuclei, regime=regime, radius_range=radius_range)
        labels = np.asarray(sample["labels"]).astype(np.int32)
        items.append({"image": np.asarray(sample["image"], np.float32)[None],
                      **sample_targets(labels, sigma, sample.get("points")), "labels": labels})
    return items


# ----------------------------------------------------------------------------- post-processing
def instances(foreground: np.ndarray, boundary: np.ndarray | None = None, density: np.ndarray | None = None, *,
              threshold: float = 0.5, boundary_threshold: float = 0.5, min_seed_area: int = 4, min_distance: int = 2,
              min_size: int = 4) -> np.ndarray:
    """Instance labels of one image from MC-Unet's maps (the method's own post-processing).

    Seeds and the flooded surface, inside ``foreground > threshold``:

    - density map (with or without a boundary map): seeds = local maxima of the density
      (``min_distance`` px apart, at least 20 % of the highest); the watershed floods the boundary
      probability when there is one (boundaries stop the flooding between touching nuclei), else
      the negated density;
    - boundary map only: seeds = connected components of ``boundary < boundary_threshold`` (at
      least ``min_seed_area`` px), grown back over the foreground by a watershed of the boundary map;
    - neither: distance-transform watershed of the foreground (:func:`cellnb.floors.distance_watershed`).
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    from cellnb import floors

    foreground = np.asarray(foreground)
    if foreground.ndim != 2:
        raise ValueError(f"foreground must be a 2-D map, got shape {foreground.shape}")
    fg = foreground > threshold
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    if density is not None:
        density = np.asarray(density, np.float32)
        peaks = peak_local_max(density, min_distance=max(1, min_distance), threshold_rel=0.2,
                               labels=fg.astype(np.int32), exclude_border=False)
        seeds = np.zeros(fg.shape, np.int32)
        seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        surface = -density if boundary is None else np.asarray(boundary, np.float32)
        return watershed(surface, seeds, mask=fg).astype(np.int32)
    if boundary is not None:
        boundary = np.asarray(boundary, np.float32)
        seeds, _ = ndimage.label(fg & (boundary < boundary_threshold))
        sizes = np.bincount(seeds.ravel())
        seeds[sizes[seeds] < min_seed_area] = 0
        return watershed(boundary, seeds, mask=fg).astype(np.int32)
    return floors.distance_watershed(fg, min_distance=max(1, min_distance), min_size=min_size)


def oracle_inputs(labels: np.ndarray, sigma: float = 2.0) -> dict[str, np.ndarray]:
    """The perfect maps MC-Unet's post-processing could see: :func:`cellnb.floors.oracle_maps`
    (``mask``, ``boundary``, ...) plus the true ``density`` of the centroids."""
    from cellnb import floors

    maps = floors.oracle_maps(labels)
    maps["density"] = sample_targets(labels, sigma)["density"]
    return maps


# ---------------------------------------------------------------------------------------- method
@register_method
class MCUNetMethod(Method):
    """MC-Unet with its density and boundary branches (paper reading) or the released loss (code)."""

    name = "mc_unet"
    measures_half_budget = True  # cellnb.train.fit(half_budget=True) through train(**kwargs)
    memory_format = "channels_last"  # measured faster to train on the CPU (the speed chapter)
    # float32: in its own loop bfloat16 autocast measured 0.99x and 1.10x on a CPU with AMX (GroupNorm
    # runs float32 under autocast, so every block casts back and forth), and its quick chapter was no faster
    paper = "Jin et al., Joint Feature Learning for Cell Segmentation Based on Multi-scale Convolutional U-Net (BIBM 2022)"
    tasks = ("count", "mask", "instances")
    sizes = {
        "paper": dict(base_width=64, depth=3, kernels=(1, 3, 5)),  # released MNet2D config
        "slim": dict(base_width=8, depth=3, kernels=(1, 3, 5)),
        "tiny": dict(base_width=4, depth=2, kernels=(1, 3, 5)),
    }
    losses = tuple(LOSS_HEADS)
    multiple = 8  # 2 ** depth of the deepest size
    density_scale = 100.0
    sigma = 2.0

    def heads_for(self, loss: str | None = None) -> tuple[str, ...]:
        """Network heads a loss needs: paper-mode branches get their own head; code mode has none."""
        mode, branches = LOSS_HEADS[self._loss_name(loss)]
        return ("mask",) + (branches if mode == "paper" else ())

    def _loss_name(self, loss: str | None) -> str:
        loss = self.losses[0] if loss is None else loss
        if loss not in LOSS_HEADS:
            raise ValueError(f"method 'mc_unet' has no loss {loss!r}; choose from {list(LOSS_HEADS)}")
        return loss

    def build(self, size: str = "slim", in_channels: int = 1, task: str | None = None, *, loss: str | None = None,
              heads: Sequence[str] | None = None, density_scale: float | None = None, **overrides: Any) -> nn.Module:
        """MC-Unet at ``size`` with the heads of ``loss`` (default ``"paper"``: mask + density + boundary).

        A density head is wrapped in :class:`ScaledDensity` (``density_scale``, default 100).
        """
        from cellnb.models import create_model

        self.check_task(task)
        cfg = dict(self.check_size(size))
        cfg.update(overrides)
        heads = tuple(heads) if heads is not None else self.heads_for(loss)
        model = create_model("mc_unet", in_channels=in_channels, num_classes=2, heads=heads, **cfg)
        if "density" in heads:
            return ScaledDensity(model, self.density_scale if density_scale is None else density_scale)
        return model

    def loss(self, variant: str | None = None, task: str | None = None, *, boundary_weight: float = 0.15,
             density_weight: float = 0.5, density_scale: float | None = None, **kwargs: Any) -> Callable:
        """The training loss ``variant`` (see :data:`LOSS_HEADS`); weights of absent branches are 0."""
        from cellnb.losses.mc_unet import mc_unet_loss

        self.check_task(task)
        mode, branches = LOSS_HEADS[self._loss_name(variant)]
        return mc_unet_loss(mode=mode, boundary_weight=boundary_weight if "boundary" in branches else 0.0,
                            density_weight=density_weight if "density" in branches else 0.0,
                            density_scale=self.density_scale if density_scale is None else density_scale, **kwargs)

    def targets(self, sample: Mapping[str, np.ndarray], task: str | None = None) -> dict[str, np.ndarray]:
        if "labels" not in sample:
            raise KeyError(f"mc_unet needs instance 'labels' to build its targets; sample has {sorted(sample)}")
        return sample_targets(sample["labels"], self.sigma, sample.get("points"))

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Percentile normalisation (1st / 99.8th percentile to 0 / 1, clipped to [-0.5, 1.5]) per image."""
        image = channels_first(image)
        lo, hi = np.percentile(image, (1.0, 99.8))
        if hi <= lo:
            return np.zeros_like(image)
        return np.clip((image - lo) / (hi - lo), -0.5, 1.5).astype(np.float32)

    def postprocess(self, outputs: Mapping[str, torch.Tensor], task: str | None = None, *, use: str = "auto",
                    **kwargs: Any) -> Prediction:
        """Outputs of one image (``(C, H, W)`` tensors) -> :class:`Prediction`.

        ``use`` picks the maps that seed the instances: ``"auto"`` (boundary if predicted, else
        density, else the foreground's distance transform), ``"boundary"``, ``"density"`` or
        ``"foreground"``. ``kwargs`` go to :func:`instances`.
        """
        from cellnb.models import outputs as keys

        self.check_task(task)
        logits = outputs[keys.MASK_LOGITS]
        logits = logits[0] if logits.ndim == 4 else logits
        fg = torch.softmax(logits.float(), dim=0)[1].cpu().numpy()
        maps: dict[str, np.ndarray] = {}
        if keys.DENSITY in outputs:
            d = outputs[keys.DENSITY]
            maps["density"] = d.reshape(d.shape[-2:]).float().cpu().numpy()
        if keys.BOUNDARY_LOGITS in outputs:
            b = outputs[keys.BOUNDARY_LOGITS]
            maps["boundary"] = torch.sigmoid(b.reshape(b.shape[-2:]).float()).cpu().numpy()
        if use not in ("auto", "boundary", "density", "foreground"):
            raise ValueError(f"use must be auto, boundary, density or foreground, got {use!r}")
        boundary = maps.get("boundary") if use in ("auto", "boundary") else None
        density = maps.get("density") if use in ("auto", "density") else None
        if use in ("boundary", "density") and maps.get(use) is None:
            raise ValueError(f"this model predicts no {use} map")
        if use == "density":
            boundary = None
        labels = instances(fg, boundary, density, **kwargs)
        count = float(maps["density"].sum()) if "density" in maps else float(len(np.unique(labels)) - 1)
        return Prediction(count=count, foreground=fg.astype(np.float32), labels=labels, maps=maps)

    def instances_from_maps(self, maps: Mapping[str, np.ndarray], use: str = "auto", **kwargs: Any) -> np.ndarray:
        """The instance step on probability maps (``mask``/``foreground``, ``boundary``, ``density``):
        ``use`` = ``"auto"`` (every map given), ``"boundary"`` or ``"density"`` seeding; ``kwargs`` go
        to :func:`instances`. With :meth:`oracle_maps` it gives the ceiling of each way of seeding."""
        fg = maps["foreground"] if "foreground" in maps else maps["mask"]
        boundary = maps.get("boundary") if use in ("auto", "boundary") else None
        density = maps.get("density") if use in ("auto", "density") else None
        if use == "density":
            boundary = None
        return instances(fg, boundary, density, **kwargs)

    #: boundary thresholds the boundary-seeded instance step is tried at
    boundary_thresholds: ClassVar[tuple[float, ...]] = (0.5, 0.6, 0.7, 0.8, 0.9)

    def postprocess_options(self, task: str | None = None,
                            heads: Sequence[str] = ("mask", "boundary", "density")) -> list[dict[str, Any]]:
        """The ways a model with ``heads`` can seed its instances (:meth:`instances_from_maps`):
        the foreground's distance transform, density peaks, boundary regions at each of
        :attr:`boundary_thresholds`, and density peaks flooded over the boundary map. The paper does
        not say which; the chapter and the comparison choose on validation images."""
        options: list[dict[str, Any]] = [{"use": "foreground"}]
        if "density" in heads:
            options.append({"use": "density"})
        if "boundary" in heads:
            options += [{"use": "boundary", "boundary_threshold": t} for t in self.boundary_thresholds]
        if "density" in heads and "boundary" in heads:
            options.append({"use": "auto"})
        return options

    def oracle_maps(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`oracle_inputs`: the true mask, boundary and density of ``labels``."""
        return oracle_inputs(labels)

    def train(self, model: nn.Module, train_samples: list[Mapping[str, np.ndarray]],
              val_samples: list[Mapping[str, np.ndarray]], task: str | None = None, *, steps: int, batch_size: int = 8,
              crop: int | None = 48, lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
              loss: str | None = None, progress: bool = False, evals: int = 10, loss_kwargs: Mapping[str, Any] | None = None,
              **kwargs: Any):
        """Random crops + flips + 90° rotations, Adam with a per-step one-cycle schedule, ``steps``
        optimiser steps in ``evals`` epochs (one validation-loss evaluation each, on ``val_samples``:
        images held out of the training set, full size). Samples need ``image`` and ``labels``
        (targets are built by :meth:`targets` when absent). Returns :func:`cellnb.train.fit`'s history
        with a ``step`` column and ``attrs["steps_per_s"]`` (validation included)."""
        from cellnb.data import DictDataset, PairedAugment
        from cellnb.train import fit
        from cellnb.utils import seed_everything

        seed_everything(seed)
        keys = ("image", "mask", "boundary", "density")
        train_items = [self._training_item(s) for s in train_samples]
        val_items = [self._training_item(s) for s in val_samples]
        evals = max(1, int(evals))
        per_epoch = max(1, int(round(steps / evals)))
        n = per_epoch * batch_size
        repeated = [train_items[i % len(train_items)] for i in range(n)]
        aug = PairedAugment(crop=crop, flip=True, rotate90=True)
        generator = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(DictDataset(repeated, transform=aug, keys=keys), batch_size=batch_size,
                                             shuffle=True, generator=generator, drop_last=True)
        val_loader = torch.utils.data.DataLoader(DictDataset(val_items, keys=keys), batch_size=max(1, len(val_items)))
        loss_fn = self.loss(loss, **dict(loss_kwargs or {}))
        kwargs.setdefault("precision", self.train_precision)
        history = fit(model, loader, loss_fn, epochs=evals, lr=lr, val_loader=val_loader, scheduler="onecycle",
                      device=device, amp=False, progress=progress, **kwargs)
        history["step"] = history["epoch"] * per_epoch
        # per-epoch seconds include the (small) validation pass
        history.attrs["steps_per_s"] = per_epoch * len(history) / max(float(history["seconds"].sum()), 1e-9)
        return history

    def _training_item(self, sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        item = {"image": self.normalize(np.asarray(sample["image"]).squeeze())}
        have = all(k in sample for k in ("mask", "boundary", "density"))
        item.update({k: sample[k] for k in ("mask", "boundary", "density")} if have else self.targets(sample))
        return item
