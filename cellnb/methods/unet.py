"""The U-Net baseline as a method: one network, three heads, one per task.

* ``count``: a density head (softplus, :class:`cellnb.models.unet.UNet` ``heads=("density",)``)
  trained on Gaussian density maps of the dots (σ = 2 px, :func:`cellnb.targets.density_from_points`);
  the count is the sum of the predicted density. Loss ``density_mse``: the MSE of the density
  amplified ×100 (small per-pixel values otherwise give vanishing gradients), as in MC-Unet's
  density branch; the head learns the amplified density (:class:`AmplifiedDensity`), its bias starts at
  −4 so that the background starts near zero. The default ``density_mse_count`` adds the squared
  relative error of the crop's count (without it the softplus background of a short run summed to tens
  of spurious cells over a whole image); ``density_mse`` alone is the ablation.
* ``mask``: one sigmoid channel, binary cross-entropy (``bce``).
* ``instances``: the standard three classes background / interior / boundary (the U-Net baseline of
  Schmidt et al. 2018, StarDist, after Caicedo et al. 2019), softmax cross-entropy with the boundary
  class weighted ×3 (``three_class_weighted_ce``, the default, as Caicedo et al. weight the thin
  boundary class; ``three_class_ce`` unweighted is the ablation).
  Instances are the connected components of the interior (probability > 0.5), grown into the
  foreground (interior + boundary > 0.5) by a watershed of the interior probability
  (:func:`instances_from_maps`; it also runs on the perfect maps of :func:`cellnb.floors.oracle_maps`
  for the ceiling).

Sizes: ``paper`` is the classic 64…1024 network (depth 4); ``slim`` (width 8, depth 3) and ``small``
(width 16, depth 3) are the CPU sizes.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnb.methods.base import Method, Prediction, register_method
from cellnb.models import outputs

__all__ = ["UNetBaseline", "instances_from_maps", "DENSITY_AMPLIFY"]

DENSITY_AMPLIFY = 100.0
DENSITY_SIGMA = 2.0
DENSITY_BIAS = -4.0


def instances_from_maps(maps: Mapping[str, np.ndarray], seed_threshold: float = 0.7, threshold: float = 0.5,
                        min_seed: int = 3, min_size: int = 8) -> np.ndarray:
    """Three-class post-processing: seeds = 8-connected components of ``interior > seed_threshold``
    (seeds smaller than ``min_seed`` px dropped), grown by a watershed of ``-interior`` inside the
    foreground ``mask > threshold`` (``mask`` = interior + boundary probability); objects under
    ``min_size`` px removed. ``maps`` has the keys of :func:`cellnb.floors.oracle_maps`: ``interior``
    and ``mask``. The seed threshold 0.7 (not 0.5) keeps touching nuclei apart where the thin boundary
    class is under-predicted (measured on generated nuclei of a development seed: AJI 0.63 at 0.5,
    0.76 at 0.7, 0.72 at 0.8 after 300 steps)."""
    from skimage.measure import label as cc_label
    from skimage.segmentation import watershed

    from cellnb.postprocess import remove_small_labels

    interior = np.asarray(maps["interior"], np.float32)
    fg = np.asarray(maps["mask"], np.float32) > threshold
    seeds = cc_label(interior > seed_threshold, connectivity=2).astype(np.int32)
    seeds = remove_small_labels(seeds, min_seed) if seeds.max() else seeds
    if not seeds.max():
        return np.zeros(interior.shape, np.int32)
    labels = watershed(-interior, seeds, mask=fg | (seeds > 0))
    return remove_small_labels(labels.astype(np.int32), min_size)


def _density_target(sample: Mapping[str, Any], shape: tuple[int, int], sigma: float) -> np.ndarray:
    from cellnb import targets
    from cellnb.methods.training import instance_centres

    if sample.get("points") is not None:
        pts = np.asarray(sample["points"], np.float32).reshape(-1, 2)
    elif sample.get("labels") is not None:
        pts = instance_centres(sample["labels"])
    else:
        raise KeyError("counting needs 'points' (dot annotations) or 'labels' in the sample")
    pts = np.clip(pts, 0, [shape[0] - 1, shape[1] - 1])
    return targets.density_from_points(pts, shape, sigma=sigma).astype(np.float32)


def _mask_target(sample: Mapping[str, Any]) -> np.ndarray:
    if sample.get("mask") is not None:
        return (np.asarray(sample["mask"]) > 0).astype(np.uint8)
    if sample.get("labels") is not None:
        return (np.asarray(sample["labels"]) > 0).astype(np.uint8)
    raise KeyError("a mask target needs 'mask' or 'labels' in the sample")


class AmplifiedDensity(nn.Module):
    """Wraps a density network whose head learns the density ×``amplify`` (values of order 1, so the
    softplus head starts near the target scale); ``forward`` returns the density itself (sums to
    the count). The state dict is the wrapped network's under ``net.``."""

    def __init__(self, net: nn.Module, amplify: float = DENSITY_AMPLIFY) -> None:
        super().__init__()
        self.net, self.amplify = net, float(amplify)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.net(x))
        out[outputs.DENSITY] = out[outputs.DENSITY] / self.amplify
        return out


@register_method
class UNetBaseline(Method):
    name = "unet"
    paper = "Ronneberger et al. 2015 (U-Net); three-class instances as in Schmidt et al. 2018 (StarDist)"
    tasks = ("count", "mask", "instances")
    sizes = {
        "paper": {"base_width": 64, "depth": 4},
        "small": {"base_width": 16, "depth": 3},
        "slim": {"base_width": 8, "depth": 3},
    }
    losses = ("density_mse_count", "density_mse", "bce", "three_class_weighted_ce", "three_class_ce")
    multiple = 16
    #: measured faster to train on the CPU (the speed chapter; U-Net 1.29× on the idle 2-core machine, 7 blocks of 16 steps)
    memory_format = "channels_last"
    #: measured faster to train in bfloat16 autocast on a CPU with AMX (the speed chapter; one thread,
    #: batches of 8: 1.5x at 64² width 8, 2.0x at 96² width 16; the comparison's VGG density U-Net
    #: trained at 15.6 instead of 8.8 steps/s, with MAE 17.2 against 16.3 in float32, seeds 0-2)
    train_precision = "bfloat16"
    #: default loss per task
    task_loss = {"count": "density_mse_count", "mask": "bce", "instances": "three_class_weighted_ce"}

    def build(self, size: str = "slim", in_channels: int = 1, task: str | None = None, **overrides: Any) -> nn.Module:
        from cellnb.models.unet import UNet

        self.check_task(task)
        cfg = {**self.check_size(size), **overrides}
        task = task or "mask"
        if task == "count":
            net = UNet(in_channels=in_channels, num_classes=1, heads=("density",), **cfg)
            with torch.no_grad():  # start the background near zero density: softplus(-4) = 0.018 (x 1/100)
                net.out["density"].bias.fill_(DENSITY_BIAS)
            return AmplifiedDensity(net)
        return UNet(in_channels=in_channels, num_classes=3 if task == "instances" else 1, heads=("mask",), **cfg)

    def loss(self, variant: str | None = None, task: str | None = None, amplify: float = DENSITY_AMPLIFY,
             boundary_weight: float = 3.0, **kwargs: Any) -> Callable:
        self.check_task(task)
        variant = variant or self.task_loss[task or "mask"]
        if variant not in self.losses:
            raise ValueError(f"method 'unet' has no loss {variant!r}; choose from {list(self.losses)}")
        if variant.startswith("density"):
            with_count = variant == "density_mse_count"

            def density_loss(out, batch):
                pred = out[outputs.DENSITY][:, 0]
                mse = F.mse_loss(amplify * pred, amplify * batch["density"].float())
                parts = {"density_mse": float(mse.detach())}
                total = mse
                if with_count and "count" in batch:
                    true = batch["count"].float()
                    cnt = (((pred.sum(dim=(1, 2)) - true) / true.mean().clamp_min(1.0)) ** 2).mean()
                    parts["count"] = float(cnt.detach())
                    total = total + cnt
                return total, parts

            return density_loss
        if variant == "bce":
            def bce(out, batch):
                loss = F.binary_cross_entropy_with_logits(out[outputs.MASK_LOGITS][:, 0], batch["mask"].float())
                return loss, {"bce": float(loss.detach())}

            return bce

        weight = torch.tensor([1.0, 1.0, boundary_weight if variant == "three_class_weighted_ce" else 1.0])

        def three_class_ce(out, batch):
            logits = out[outputs.MASK_LOGITS]
            loss = F.cross_entropy(logits, batch["three_class"].long(), weight=weight.to(logits.device))
            return loss, {"ce": float(loss.detach())}

        return three_class_ce

    def targets(self, sample: Mapping[str, Any], task: str | None = None) -> dict[str, np.ndarray]:
        from cellnb import targets

        self.check_task(task)
        shape = np.asarray(sample["image"]).shape
        shape = shape[:2] if len(shape) == 2 or shape[-1] in (3, 4) else shape[-2:]
        if task == "count":
            return {"density": _density_target(sample, tuple(shape), DENSITY_SIGMA)}
        if task == "instances":
            if sample.get("labels") is None:
                raise KeyError("the three-class instance target needs 'labels' in the sample")
            return {"three_class": targets.three_class(np.asarray(sample["labels"]).astype(np.int32)).astype(np.int64)}
        return {"mask": _mask_target(sample)}

    def postprocess(self, outputs_: Mapping[str, torch.Tensor], task: str | None = None, **kwargs: Any) -> Prediction:
        """Outputs of one image (no batch axis) -> :class:`Prediction`."""
        pred = Prediction()
        if outputs.DENSITY in outputs_:
            density = outputs_[outputs.DENSITY][0].float().cpu().numpy()
            pred.count = float(density.sum())
            pred.maps["density"] = density
        if outputs.MASK_LOGITS in outputs_:
            logits = outputs_[outputs.MASK_LOGITS].float()
            if logits.shape[0] == 3:
                prob = torch.softmax(logits, dim=0).cpu().numpy()
                maps = {"interior": prob[1], "boundary": prob[2], "mask": prob[1] + prob[2]}
                pred.maps.update(maps)
                pred.foreground = maps["mask"].astype(np.float32)
                pred.labels = instances_from_maps(maps, **kwargs)
                pred.count = float(pred.labels.max())
            else:
                pred.foreground = torch.sigmoid(logits[0]).cpu().numpy().astype(np.float32)
                pred.maps["mask"] = pred.foreground
        return pred

    #: foreground (``mask`` = interior + boundary probability) and seed thresholds to choose from
    foreground_thresholds: ClassVar[tuple[float, ...]] = (0.5, 0.7, 0.8)
    seed_thresholds: ClassVar[tuple[float, ...]] = (0.7, 0.5, 0.6, 0.8, 0.9)

    def postprocess_options(self, task: str | None = None) -> list[dict[str, Any]]:
        """Foreground × seed thresholds of :func:`instances_from_maps` to choose from on validation
        images; the defaults (0.5, 0.7) first. The foreground threshold is open because a
        three-class softmax trained for a few hundred steps is not calibrated: its background
        probability stays under 0.5 over most of an unfamiliar image (measured on the real Hoechst
        frames 5–9, U-Net trained 150 steps on frames 0–4: ``mask > 0.5`` on 81 % of the pixels
        against 8 % true foreground, AJI 0.07; at 0.7, 0.71)."""
        return [{"threshold": f, "seed_threshold": t} for f in self.foreground_thresholds for t in self.seed_thresholds]

    def instances_from_maps(self, maps: Mapping[str, np.ndarray], **kwargs: Any) -> np.ndarray:
        """The instance post-processing on probability maps (the ceiling runs it on the perfect maps)."""
        return instances_from_maps(maps, **kwargs)
