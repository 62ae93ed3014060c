"""U-SE-ResNet as a method: mask + marker U-Net, edge-weighted BCE, markers → watershed.

The Cell Tracking Challenge 2021 entry of team MU-Ra-US (Rahmon, Toubal, Palaniappan; README and
code of ``CIVA-Lab/U-SE-ResNet-for-Cell-Tracking-Challenge`` @51bada3, spec ``usere_resnet.md``):

* **network** (:mod:`cellnb.models.u_se_resnet`): ``smp.Unet('se_resnet50', classes=2)`` rebuilt from
  torchvision parts; size ``paper`` is the full SE-ResNet-50 U-Net (35.05 M parameters), ``slim`` and
  ``tiny`` the CPU sizes the profiles train;
* **targets** from ``{"image", "labels"}``: ``mask`` = labels > 0, ``marker`` = every instance eroded
  on its own by an E-p × E-p square (:func:`cellnb.targets.markers`), ``weight`` = the released
  Canny-edge weight map (:func:`cellnb.losses.u_se_resnet.canny_edge_weight`);
* **loss** ``edge_weighted_bce`` (default, faithful): BCE on both maps weighted by ``w ** p`` with
  ``p = (e / 50) ** 5`` over the paper's 120 epochs, rescaled to the run length; ``bce`` is the
  ablation with p = 0 (plain BCE);
* **normalisation**: clip the 1 % intensity tails, min-max to [0, 1] (released ``data.py::normalize``);
* **post-processing** (:func:`cellnb.postprocess.markers_watershed`): components of ``marker > 0.5``
  seed a watershed of the mask's distance transform, objects smaller than T-a are dropped; with
  ``use_markers=False`` the instances are connected components of the mask (the ablation).
  The count is the number of instances.

Training (:meth:`USEResNet.train`) is this module's own loop rather than
:func:`cellnb.methods.training.fit_samples`, because the loss power depends on the training progress:
random crops with flips and 90° rotations and the released |N(0, σ)| noise, Adam with a one-cycle
learning rate (the paper halves 1e-4 every 30 of 120 epochs; a deviation for short CPU runs), and a
validation loss on held-out training images at ``n_evals`` evenly spaced points. The validation loss
is the *plain* BCE (p = 0) on whole held-out images, so that the curve is comparable along the run
while the training loss's weighting sharpens.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnb import postprocess
from cellnb.losses.u_se_resnet import USEResNetLoss, canny_edge_weight, edge_weighted_bce
from cellnb.methods.base import Method, Prediction, pad_to_multiple, register_method
from cellnb.methods.training import evaluation_steps
from cellnb.models import create_model, outputs

__all__ = ["USEResNet", "normalize_percentile", "make_targets", "augment_crop"]


def normalize_percentile(image: np.ndarray, clip: float = 1.0) -> np.ndarray:
    """(H, W) image → float32 clipped to its [clip, 100 − clip] percentiles, min-max to [0, 1].

    Released ``data.py::normalize`` (1 % tails from a bin-width-1 histogram, then min-max);
    equivalent to percentile clipping to within one grey level (spec §3).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    if not 0 <= clip < 50:
        raise ValueError(f"clip must be a percentage in [0, 50), got {clip}")
    arr = image.astype(np.float32)
    lo, hi = np.percentile(arr, [clip, 100.0 - clip])
    arr = np.clip(arr, lo, hi)
    span = arr.max() - arr.min()
    return ((arr - arr.min()) / span).astype(np.float32) if span > 0 else np.zeros_like(arr)


def make_targets(labels: np.ndarray, erosion: int = 2) -> dict[str, np.ndarray]:
    """``mask``, ``marker`` (eroded instances) and ``weight`` (Canny edge weight), (1, H, W) float32."""
    from cellnb import targets

    labels = np.asarray(labels).astype(np.int32)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D instance image, got shape {labels.shape}")
    return {
        "mask": (labels > 0).astype(np.float32)[None],
        "marker": (targets.markers(labels, erosion=erosion) > 0).astype(np.float32)[None],
        "weight": canny_edge_weight(labels)[None],
    }


def augment_crop(stack: np.ndarray, rng: np.random.Generator, crop: int | None, noise_max: float = 0.2,
                 noise_p: float = 0.5) -> np.ndarray:
    """One random training view of a (C, H, W) stack (channel 0 = image, then the targets).

    Random ``crop`` × ``crop`` window, a random element of the dihedral group (h-flip, then 0–3
    quarter turns), and, with probability ``noise_p``, the released additive |N(0, σ)| noise on the
    image with σ ~ U[0, noise_max).
    """
    c, h, w = stack.shape
    if crop is not None:
        if crop > min(h, w):
            raise ValueError(f"crop {crop} is larger than the image {h}x{w}")
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        stack = stack[:, top:top + crop, left:left + crop]
    if rng.random() < 0.5:
        stack = stack[:, :, ::-1]
    stack = np.rot90(stack, int(rng.integers(0, 4)), axes=(1, 2))
    stack = np.ascontiguousarray(stack, dtype=np.float32)
    if noise_max > 0 and rng.random() < noise_p:
        sigma = float(rng.random() * noise_max)
        stack[0] += np.abs(rng.normal(0.0, sigma, stack[0].shape)).astype(np.float32)
    return stack


def _prepared(method: "USEResNet", samples: Sequence[Mapping[str, np.ndarray]], erosion: int) -> list[np.ndarray]:
    """(4, H, W) stacks image / mask / marker / weight of annotated samples."""
    out = []
    for s in samples:
        t = method.targets(s, erosion=erosion)
        out.append(np.concatenate([method.normalize(s["image"]), t["mask"], t["marker"], t["weight"]]).astype(np.float32))
    return out


@register_method
class USEResNet(Method):
    name = "u_se_resnet"
    paper = "U-SE-ResNet (Cell Tracking Challenge 2021, MU-Ra-US; CIVA-Lab README and code)"
    tasks = ("mask", "instances", "count")
    sizes = {
        "paper": {"width": 1.0, "blocks": (3, 4, 6, 3)},  # smp Unet(se_resnet50): 35,045,970 parameters
        "slim": {"width": 0.125, "blocks": (1, 1, 1, 1)},
        "tiny": {"width": 0.0625, "blocks": (1, 1, 1, 1)},
    }
    losses = ("edge_weighted_bce", "bce")
    multiple = 32
    erosion = 2
    #: measured faster to train on the CPU (the speed chapter; U-SE-ResNet 1.51× on the idle 2-core machine, 7 blocks of 16 steps)
    memory_format = "channels_last"
    #: bfloat16 autocast where native: its own loop trained 1.09-1.19x faster on a CPU with AMX (the speed
    #: chapter's loop timing); the quick chapter took 299 s instead of 355 s
    train_precision = "bfloat16"
    min_size = 20

    # ------------------------------------------------------------------ network and loss
    def build(self, size: str = "slim", in_channels: int = 1, task: str | None = None, **overrides: Any) -> nn.Module:
        self.check_task(task)
        kwargs = {**self.check_size(size), **overrides}
        kwargs["blocks"] = tuple(kwargs["blocks"])
        return create_model("u_se_resnet", in_channels=in_channels, **kwargs)

    def loss(self, variant: str | None = None, task: str | None = None, total_steps: int = 120, **kwargs: Any):
        """``edge_weighted_bce`` (default): the released w^p-weighted BCE with its power schedule over
        ``total_steps`` (call ``set_epoch(step)``); ``bce``: p = 0, the no-edge-weight ablation."""
        self.check_task(task)
        variant = variant or self.losses[0]
        if variant not in self.losses:
            raise ValueError(f"method {self.name!r} has no loss {variant!r}; choose from {list(self.losses)}")
        return USEResNetLoss(total_steps, edge_weight=(variant == "edge_weighted_bce"))

    def targets(self, sample: Mapping[str, np.ndarray], task: str | None = None, erosion: int | None = None) -> dict[str, np.ndarray]:
        if "labels" not in sample:
            raise KeyError(f"U-SE-ResNet's targets need instance 'labels'; the sample has {sorted(sample)}")
        return make_targets(sample["labels"], self.erosion if erosion is None else erosion)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 3:  # (H, W, C) or (C, H, W): one grey channel
            image = image.mean(axis=0 if image.shape[0] <= 4 and image.shape[-1] > 4 else -1)
        return normalize_percentile(image)[None]

    # ------------------------------------------------------------------ inference
    def postprocess(self, outputs_: Mapping[str, torch.Tensor], task: str | None = None, *, min_size: int | None = None,
                    use_markers: bool = True, threshold: float = 0.5, marker_threshold: float | None = None,
                    **_: Any) -> Prediction:
        """Outputs of one image (maps (1, H, W)) → mask probability, marker probability, instances, count."""
        self.check_task(task)
        mask = torch.sigmoid(outputs_[outputs.MASK_LOGITS]).float().cpu().numpy().reshape(outputs_[outputs.MASK_LOGITS].shape[-2:])
        marker = torch.sigmoid(outputs_[outputs.MARKER_LOGITS]).float().cpu().numpy().reshape(mask.shape)
        return self.instances_from_mask_marker(mask, marker, min_size=min_size, use_markers=use_markers, threshold=threshold,
                                               marker_threshold=marker_threshold)

    def instances_from_maps(self, maps: Mapping[str, np.ndarray], **kwargs: Any) -> np.ndarray:
        """Instance labels from the ``mask`` and ``marker`` probability maps
        (:meth:`instances_from_mask_marker`; ``kwargs``: ``min_size``, ``use_markers``, ``threshold``,
        ``marker_threshold``)."""
        return self.instances_from_mask_marker(maps["mask"], maps["marker"], **kwargs).labels

    def postprocess_options(self, task: str | None = None) -> list[dict[str, Any]]:
        """Marker thresholds to choose from on validation images; the paper's 0.5 first. On small
        touching nuclei, markers binarised at 0.5 touch and merge their nuclei (comparison chapter:
        AJI 0.44 at 0.5, 0.73 at 0.7 on one development seed)."""
        return [{"marker_threshold": t} for t in (0.5, 0.6, 0.7, 0.8, 0.9)]

    def oracle_maps(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`cellnb.floors.oracle_maps` with this method's marker erosion."""
        from cellnb import floors

        return floors.oracle_maps(labels, erosion=self.erosion)

    def instances_from_mask_marker(self, mask: np.ndarray, marker: np.ndarray, *, min_size: int | None = None,
                                   use_markers: bool = True, threshold: float = 0.5,
                                   marker_threshold: float | None = None) -> Prediction:
        """The post-processing on probability maps: markers → watershed on the mask (or connected
        components of the mask with ``use_markers=False``), objects under ``min_size`` px removed
        (:func:`cellnb.postprocess.markers_watershed`; ``marker_threshold`` defaults to ``threshold``)."""
        min_size = self.min_size if min_size is None else int(min_size)
        if use_markers:
            labels = postprocess.markers_watershed(mask, marker, min_size=min_size, threshold=threshold,
                                                   marker_threshold=marker_threshold)
        else:
            labels = postprocess.connected_components(mask, min_size=min_size, threshold=threshold)
        return Prediction(count=float(labels.max()), foreground=np.asarray(mask, np.float32), labels=labels,
                          maps={"marker": np.asarray(marker, np.float32)})

    # ------------------------------------------------------------------ training
    measures_half_budget = True  # train(half_budget=True)

    def train(self, model: nn.Module, train_samples: list[Mapping[str, np.ndarray]],
              val_samples: list[Mapping[str, np.ndarray]], task: str = "instances", *, steps: int, batch_size: int = 8,
              crop: int | None = 64, lr: float = 3e-3, seed: int = 0, device: str | torch.device = "cpu",
              loss: str | None = None, progress: bool = False, erosion: int | None = None, n_evals: int = 10,
              noise_max: float = 0.2, weight_decay: float = 0.0, precision: str | None = None,
              half_budget: bool = False, **_: Any):
        """Train on annotated samples; returns a DataFrame (one row per evaluation) with ``step``,
        ``train_loss`` (the weighted training loss over the interval), ``val_loss`` (plain BCE on the
        whole held-out images), ``power``, ``lr``; ``attrs["steps_per_s"]`` (optimiser steps per second,
        data preparation included), ``attrs["seconds"]`` and ``attrs["precision"]``: the forward pass runs in
        ``precision`` (None: :attr:`train_precision`) where the device computes it natively (:func:`cellnb.utils.training_precision`),
        the loss on float32 outputs, validation in float32.

        ``half_budget``: also the validation loss half the budget reaches, annealed, as
        ``attrs["half_budget"]`` (:func:`cellnb.methods.training.half_budget_branch`; the loss's power
        stays at its value of the branch point); the main run is unchanged by it."""
        import pandas as pd

        from cellnb.methods.training import half_budget_plan, half_budget_record

        from cellnb.train import recalibrate_batchnorm
        from cellnb.utils import autocast, float32_outputs, seed_everything, training_precision

        if steps < 1 or n_evals < 1:
            raise ValueError(f"steps and n_evals must be >= 1, got {steps}, {n_evals}")
        if not train_samples or not val_samples:
            raise ValueError("train needs at least one training and one validation sample")
        device = torch.device(device) if not isinstance(device, torch.device) else device
        precision = training_precision(self.train_precision if precision is None else precision, device)
        erosion = self.erosion if erosion is None else int(erosion)
        if crop is not None and crop % self.multiple:
            crop = max(self.multiple, int(crop) // self.multiple * self.multiple)  # the network needs ×32 inputs
        seed_everything(seed)
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        train_stacks = _prepared(self, train_samples, erosion)
        val_stacks = _prepared(self, val_samples, erosion)
        model.to(device).train()
        loss_fn = self.loss(loss, total_steps=steps)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
        eval_at = evaluation_steps(steps, n_evals)
        rows, running, seen = [], 0.0, 0
        t_train = 0.0

        def next_batch() -> torch.Tensor:
            batch = np.stack([augment_crop(train_stacks[int(i)], rng, crop, noise_max)
                              for i in rng.integers(0, len(train_stacks), batch_size)])
            return torch.from_numpy(batch).to(device)

        def optimise(x: torch.Tensor, step: int) -> torch.Tensor:
            with autocast(precision, device):
                out = model(x[:, :1])
            total, _ = loss_fn(float32_outputs(out), {"mask": x[:, 1:2], "marker": x[:, 2:3], "weight": x[:, 3:4]})
            if not torch.isfinite(total):
                raise FloatingPointError(f"U-SE-ResNet: non-finite loss at step {step}")
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            return total

        plan = half_budget_plan(steps) if half_budget else None
        half = None
        for step in range(1, steps + 1):
            ts = time.perf_counter()
            x = next_batch()
            power = loss_fn.set_epoch(step - 1)
            total = optimise(x, step)
            lr_now = float(opt.param_groups[0]["lr"])
            sched.step()
            running += float(total.detach())
            seen += 1
            t_train += time.perf_counter() - ts
            if plan is not None and step == plan[0]:
                half = half_budget_record(plan, lambda: optimise(next_batch(), step),
                                          lambda: self.validation_loss(model, val_stacks, device),
                                          modules=[model], optimizers=[opt], rngs=[rng])
            if step in eval_at:
                rows.append({"step": step, "train_loss": running / seen, "val_loss": self.validation_loss(model, val_stacks, device),
                             "power": power, "lr": lr_now})
                running, seen = 0.0, 0
                if progress:
                    print(f"step {step}: train {rows[-1]['train_loss']:.4f} val {rows[-1]['val_loss']:.4f} p={power:.3g}")
        # BatchNorm statistics with the final weights, over one augmented pass of the training images
        views = [augment_crop(s, rng, crop, noise_max) for s in train_stacks]
        recalibrate_batchnorm(model, (torch.from_numpy(np.stack(views[i:i + batch_size]))[:, :1]
                                      for i in range(0, len(views), batch_size)), device)
        model.eval()
        history = pd.DataFrame(rows)
        history.attrs["steps_per_s"] = steps / max(t_train, 1e-9)
        # the run's own time: the half-budget branch's is in attrs["half_budget"]["seconds"]
        history.attrs["seconds"] = time.perf_counter() - t0 - (half["seconds"] if half is not None else 0.0)
        history.attrs["precision"] = precision
        if half is not None:
            history.attrs["half_budget"] = half
        return history

    @torch.no_grad()
    def validation_loss(self, model: nn.Module, val_stacks: Sequence[np.ndarray], device: torch.device) -> float:
        """Plain BCE (p = 0) of mask and marker on whole held-out images (padded to ×32), eval mode."""
        was = model.training
        model.eval()
        total = 0.0
        for stack in val_stacks:
            x, (h, w) = pad_to_multiple(torch.from_numpy(stack)[None].to(device), self.multiple)
            out = model(x[:, :1])
            logits = torch.cat([out[outputs.MASK_LOGITS], out[outputs.MARKER_LOGITS]], 1)[..., :h, :w]
            target = x[:, 1:3, :h, :w]
            total += float(edge_weighted_bce(logits, target, x[:, 3:4, :h, :w], 0.0))
        model.train(was)
        return total / len(val_stacks)
