"""ELMGAN as a method: LFMMG generator + CMTD discriminator, NH loss, count + foreground mask.

Deng, Wang & Zhang, *Knowledge-Based Systems* 252:109434 (2022). The network is
:class:`cellnb.models.elmgan.LFMMG` (rebuilt from the authors' ``Roin626/SSRnet`` "FMMG"), the
discriminator the book's CMTD reconstruction (:class:`cellnb.models.elmgan.PatchDiscriminator` with the
count as an input plane), the loss the reconstructed NH loss (:mod:`cellnb.losses.elmgan`).

Recipe, in one place:

* **sizes**: ``paper`` (base width 64, the released widths), ``slim`` (8, the ``quick`` profile),
  ``tiny`` (4, ``smoke``); the discriminator gets the same width.
* **losses**: ``"nh"`` (default, faithful: NH loss with its LSGAN term, trained adversarially against
  CMTD with :func:`cellnb.train.fit_gan`), ``"no_gan"`` (ablation: the NH loss without the adversarial
  term, trained with :func:`cellnb.train.fit`), ``"nh_l2"`` (ablation: NH loss with an extra L2 pixel
  term, adversarial). :meth:`ELMGAN.loss` always returns the supervised part (the ``fit`` contract);
  :meth:`ELMGAN.generator_loss` adds the adversarial term.
* **targets**: the foreground ``mask`` and the ``dots`` (one per cell centre), so that the count of a
  random crop is the number of centres inside it.
* **normalisation**: images in [0, 1] are standardised with the released BBBC005 constants
  (mean 0.387, std 0.278, ``SSRnet_bc05_2.py``); zero padding of the raw frame (the released collate
  pads with zeros) is the constant ``-0.387 / 0.278`` here.
* **prediction protocol** (any image size): the image is zero-padded (bottom/right) to a multiple of
  the training crop (``tile``, default 64) and cut into non-overlapping tiles; the mask is the stitched
  tile masks, the count the **sum of the tile counts** (each cell is counted in the tile holding its
  centre, which is how the crops were labelled in training).
* **training** (:meth:`ELMGAN.train`): random crops with flips and 90° rotations from the zero-padded
  frames, count heads started at the mean crop count (:func:`init_count_head`), Adam β = (0.5, 0.999)
  (pix2pix template) with a per-step one-cycle learning rate for the generator and the discriminator,
  one D step then one G step per batch; validation loss (the NH loss without its adversarial term, on
  fixed tiles of held-out training frames) at every evaluation.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cellnb.losses.elmgan import discriminator_loss as _discriminator_loss
from cellnb.losses.elmgan import nh_loss
from cellnb.methods.base import Method, Prediction, register_method, remember_training_crop, training_tile
from cellnb.methods.training import half_budget_seconds
from cellnb.models import create_model, outputs

#: The released normalisation (``SSRnet_bc05_2.py``: ``transforms.Normalize(0.387, 0.278)``).
MEAN, STD = 0.387, 0.278
#: Count heads output ``COUNT_SCALE ×`` a linear regression (crop counts are 0–40 cells).
COUNT_SCALE = 1.0
#: Default NH weights (run name ``Hloss_10pixel_1count1``).
NH_WEIGHTS = dict(lambda_adv=1.0, lambda_l1=10.0, lambda_l2=0.0, lambda_count=1.0)
GAN_LOSSES = ("nh", "nh_l2")


# --------------------------------------------------------------------------- helpers used by chapters
class ScaledCount(nn.Module):
    """Wrap a model so that its ``count`` output is multiplied by ``scale`` (a baseline's count head
    then works in "count / scale" units like LFMMG's :class:`cellnb.models.elmgan.BottleneckCountHead`)."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, float(scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.model(x))
        out[outputs.COUNT] = out[outputs.COUNT] * self.scale
        return out


def init_count_head(model: nn.Module, mean_count: float) -> None:
    """Start a count head at ``mean_count`` (bias only; the same treatment for every model).

    LFMMG / pix2pix heads (:class:`cellnb.models.elmgan.BottleneckCountHead`) are linear times their
    ``scale``: bias = mean / scale. A U-Net head (``count_fc``, softplus of a linear map), optionally in
    :class:`ScaledCount`: bias = softplus⁻¹(mean / scale). Without it a head initialised near 0 spends
    hundreds of steps reaching the typical count.
    """
    if not mean_count > 0:
        raise ValueError(f"mean count must be positive, got {mean_count}")
    scale, inner = 1.0, model
    if isinstance(model, ScaledCount):
        scale, inner = model.scale, model.model
    with torch.no_grad():
        head = getattr(inner, "count_head", None)
        if head is not None and hasattr(head, "conv"):
            head.conv.bias.fill_(float(mean_count) / (scale * head.scale))
        elif getattr(inner, "count_fc", None) is not None:
            inner.count_fc.bias.fill_(float(np.log(np.expm1(float(mean_count) / scale))))
        else:
            raise ValueError(f"{type(inner).__name__} has no count head (count_head.conv or count_fc)")


def _model_multiple(model: nn.Module) -> int:
    inner = model.model if isinstance(model, ScaledCount) else model
    if hasattr(inner, "LEVELS"):
        return 2 ** inner.LEVELS
    if hasattr(inner, "depth"):
        return 2 ** int(inner.depth)
    return int(getattr(inner, "multiple", 1))


# --------------------------------------------------------------------------- crops
def _crop_count(dots: np.ndarray) -> float:
    return float(dots.sum())


class RandomCrops(Dataset):
    """``n_items`` random crops (with flips and rot90) of prepared frames, drawn from a seeded generator.

    Frames are dicts of ``image`` (1, H, W) normalised and zero-padded, ``mask`` (H, W), ``dots`` (H, W);
    an item is ``{"image": (1, c, c), "mask": (1, c, c), "count": ()}`` with the count of the dots in
    the crop. Draws depend only on the seed and the order of requests (use ``num_workers=0``).
    """

    def __init__(self, frames: Sequence[Mapping[str, np.ndarray]], crop: int, n_items: int, seed: int,
                 flip: bool = True, rotate90: bool = True) -> None:
        if not frames:
            raise ValueError("RandomCrops needs at least one frame")
        for f in frames:
            if min(f["image"].shape[-2:]) < crop:
                raise ValueError(f"crop {crop} is larger than a frame {f['image'].shape[-2:]}")
        self.frames, self.crop, self.n_items = list(frames), int(crop), int(n_items)
        self.flip, self.rotate90 = flip, rotate90
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng, c = self.rng, self.crop
        f = self.frames[int(rng.integers(len(self.frames)))]
        h, w = f["image"].shape[-2:]
        top, left = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
        img = f["image"][:, top:top + c, left:left + c]
        mask = f["mask"][None, top:top + c, left:left + c]
        count = _crop_count(f["dots"][top:top + c, left:left + c])
        if self.flip and rng.random() < 0.5:
            img, mask = img[..., ::-1], mask[..., ::-1]
        if self.flip and rng.random() < 0.5:
            img, mask = img[..., ::-1, :], mask[..., ::-1, :]
        if self.rotate90:
            k = int(rng.integers(4))
            img, mask = np.rot90(img, k, axes=(1, 2)), np.rot90(mask, k, axes=(1, 2))
        return {"image": torch.from_numpy(np.ascontiguousarray(img, np.float32)),
                "mask": torch.from_numpy(np.ascontiguousarray(mask, np.float32)),
                "count": torch.tensor(count, dtype=torch.float32)}


def tiles(frames: Sequence[Mapping[str, np.ndarray]], tile: int) -> list[dict[str, torch.Tensor]]:
    """Every non-overlapping ``tile``² tile of the (padded) frames, as crop items (validation)."""
    items = []
    for f in frames:
        h, w = f["image"].shape[-2:]
        for top in range(0, h - tile + 1, tile):
            for left in range(0, w - tile + 1, tile):
                items.append({
                    "image": torch.from_numpy(np.ascontiguousarray(f["image"][:, top:top + tile, left:left + tile])),
                    "mask": torch.from_numpy(np.ascontiguousarray(f["mask"][None, top:top + tile, left:left + tile], np.float32)),
                    "count": torch.tensor(_crop_count(f["dots"][top:top + tile, left:left + tile]), dtype=torch.float32),
                })
    return items


class _Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# --------------------------------------------------------------------------- the method
@register_method
class ELMGAN(Method):
    name = "elmgan"
    measures_half_budget = True  # train(half_budget=True): cellnb.train.fit or fit_gan, on the validation tiles
    paper = "ELMGAN (Deng, Wang & Zhang, Knowledge-Based Systems 252:109434, 2022)"
    tasks = ("count", "mask")
    sizes = {"paper": {"base_width": 64, "disc_width": 64},
             "slim": {"base_width": 8, "disc_width": 8},
             "tiny": {"base_width": 4, "disc_width": 4}}
    losses = ("nh", "no_gan", "nh_l2")
    multiple = 64
    tile = 64
    predicts_in_training_tiles = True
    count_scale = COUNT_SCALE

    # ----------------------------------------------------------------- networks
    def build(self, size: str = "slim", in_channels: int = 1, task: str | None = None, *,
              upsampling: str = "fbu", count_scale: float | None = None, mean_count: float | None = None,
              **overrides: Any) -> nn.Module:
        """LFMMG at ``size``; ``mean_count`` starts its count head there (:func:`init_count_head`)."""
        self.check_task(task)
        cfg = dict(self.check_size(size))
        cfg.pop("disc_width")
        cfg.update(overrides)
        model = create_model("elmgan_generator", in_channels=in_channels, upsampling=upsampling,
                             count_scale=self.count_scale if count_scale is None else count_scale, **cfg)
        if mean_count is not None:
            init_count_head(model, mean_count)
        return model

    def build_discriminator(self, size: str = "slim", in_channels: int = 1, *, with_count: bool = True,
                            count_scale: float | None = None, **overrides: Any) -> nn.Module:
        """CMTD (``with_count=True``: conditional PatchGAN that also sees the count plane) or the plain
        pix2pix PatchGAN (``with_count=False``, the traditional-GAN baseline's discriminator)."""
        width = self.check_size(size)["disc_width"]
        kw = dict(in_channels=in_channels, base_width=width, count_scale=self.count_scale if count_scale is None else count_scale)
        kw.update(overrides)
        return create_model("elmgan_discriminator" if with_count else "patchgan_discriminator", **kw)

    # ----------------------------------------------------------------- losses
    def _weights(self, variant: str | None, **weights: Any) -> dict[str, float]:
        variant = variant or self.losses[0]
        if variant not in self.losses:
            raise ValueError(f"method {self.name!r} has no loss {variant!r}; choose from {list(self.losses)}")
        w = dict(NH_WEIGHTS, count_scale=self.count_scale)
        if variant == "no_gan":
            w["lambda_adv"] = 0.0
        if variant == "nh_l2":
            w["lambda_l2"] = 10.0
        w.update(weights)
        return w

    def uses_gan(self, variant: str | None) -> bool:
        """Whether loss ``variant`` is trained adversarially."""
        self._weights(variant)
        return (variant or self.losses[0]) in GAN_LOSSES

    def generator_loss(self, variant: str | None = None, **weights: Any) -> Callable:
        """``g_loss(outputs, batch, d_fake)`` for :func:`cellnb.train.fit_gan` (the NH loss)."""
        w = self._weights(variant, **weights)

        def g_loss(out, batch, d_fake=None):
            return nh_loss(torch.sigmoid(out[outputs.MASK_LOGITS]), batch["mask"], out[outputs.COUNT],
                           batch["count"], d_fake, **w)

        return g_loss

    def loss(self, variant: str | None = None, task: str | None = None, **weights: Any) -> Callable:
        """``loss_fn(outputs, batch)`` (fit's contract): the NH loss of ``variant`` without its
        adversarial term (the whole loss for ``no_gan``; the validation loss of every variant)."""
        self.check_task(task)
        g_loss = self.generator_loss(variant, **weights)
        return lambda out, batch: g_loss(out, batch, None)

    @staticmethod
    def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor):
        """LSGAN discriminator loss (:func:`cellnb.losses.elmgan.discriminator_loss`)."""
        return _discriminator_loss(d_real, d_fake)

    @staticmethod
    def discriminator_inputs(with_count: bool):
        """``(real_inputs, fake_inputs)`` for fit_gan: the discriminator sees (image, mask[, count])."""
        if with_count:
            return (lambda b: (b["image"], b["mask"], b["count"]),
                    lambda b, o: (b["image"], torch.sigmoid(o[outputs.MASK_LOGITS]), o[outputs.COUNT]))
        return (lambda b: (b["image"], b["mask"]), lambda b, o: (b["image"], torch.sigmoid(o[outputs.MASK_LOGITS])))

    # ----------------------------------------------------------------- data
    def targets(self, sample: Mapping[str, np.ndarray], task: str | None = None) -> dict[str, np.ndarray]:
        """``mask`` (H, W) float32 0/1 and ``dots`` (H, W) float32 (one per cell centre) from a sample
        with ``mask`` or ``labels``, and ``dots`` or ``points``."""
        self.check_task(task)
        image = np.asarray(sample["image"])
        shape = image.shape[:2] if image.ndim == 2 or image.shape[-1] in (1, 3) and image.ndim == 3 else image.shape[-2:]
        if "mask" in sample:
            mask = (np.asarray(sample["mask"]) > 0).astype(np.float32)
        elif "labels" in sample:
            mask = (np.asarray(sample["labels"]) > 0).astype(np.float32)
        else:
            raise KeyError(f"ELMGAN needs 'mask' or 'labels' in a sample, got {sorted(sample)}")
        if "dots" in sample:
            dots = np.asarray(sample["dots"], np.float32)
        elif "points" in sample or "labels" in sample:
            dots = np.zeros(shape, np.float32)
            if "points" in sample:
                pts = np.asarray(sample["points"], np.float32).reshape(-1, 2)
            else:  # instance centres (centroids of the labels)
                from scipy import ndimage

                lab = np.asarray(sample["labels"])
                ids = [i for i in np.unique(lab) if i]
                pts = np.asarray(ndimage.center_of_mass(lab > 0, lab, ids), np.float32).reshape(-1, 2)
            if len(pts):
                rc = np.clip(np.floor(pts + 0.5).astype(int), 0, [shape[0] - 1, shape[1] - 1])
                np.add.at(dots, (rc[:, 0], rc[:, 1]), 1)
        else:
            raise KeyError(f"ELMGAN counts from 'dots', 'points' or 'labels', got {sorted(sample)}")
        return {"mask": mask, "dots": dots}

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """(H, W) [0, 1] (or an integer image, divided by its dtype's maximum) -> (1, H, W) float32
        standardised with the released constants; colour images are averaged to one channel."""
        image = np.asarray(image)
        if np.issubdtype(image.dtype, np.integer):
            image = image.astype(np.float32) / float(np.iinfo(image.dtype).max)
        image = image.astype(np.float32)
        if image.ndim == 3:
            image = image.mean(axis=-1 if image.shape[-1] in (3, 4) else 0)
        if image.ndim != 2:
            raise ValueError(f"ELMGAN expects an (H, W) or (H, W, C) image, got shape {image.shape}")
        return ((image - MEAN) / STD)[None].astype(np.float32)

    @staticmethod
    def pad_value() -> float:
        """The normalised value of a raw zero (zero padding of the raw frame)."""
        return -MEAN / STD

    def prepare(self, sample: Mapping[str, np.ndarray], tile: int | None = None) -> dict[str, np.ndarray]:
        """Normalised image and targets, zero-padded (bottom/right) to a multiple of ``tile``."""
        tile = tile or self.tile
        image = self.normalize(sample["image"])
        t = self.targets(sample)
        h, w = image.shape[-2:]
        ph, pw = (-h) % tile, (-w) % tile
        return {"image": np.pad(image, ((0, 0), (0, ph), (0, pw)), constant_values=self.pad_value()),
                "mask": np.pad(t["mask"], ((0, ph), (0, pw))), "dots": np.pad(t["dots"], ((0, ph), (0, pw)))}

    # ----------------------------------------------------------------- prediction
    def postprocess(self, outputs_: Mapping[str, torch.Tensor], task: str | None = None, **kwargs: Any) -> Prediction:
        """Outputs of one image (``mask_logits`` (1, H, W), ``count`` ()) -> count and foreground probability."""
        self.check_task(task)
        prob = torch.sigmoid(outputs_[outputs.MASK_LOGITS].float())
        prob = prob[0] if prob.ndim == 3 else prob
        return Prediction(count=float(outputs_[outputs.COUNT].reshape(-1).sum()),
                          foreground=prob.cpu().numpy().astype(np.float32))

    @torch.no_grad()
    def predict(self, model: nn.Module, image: np.ndarray, task: str | None = None, *, device: str | torch.device = "cpu",
                tile: int | None = None, batch_size: int = 16, **post: Any) -> Prediction:
        """Any image size: zero-pad to a multiple of ``tile`` (the training crop), run every tile,
        stitch the masks and sum the tile counts (module docstring)."""
        self.check_task(task)
        tile = training_tile(model, tile, self.tile, self.name)
        if tile % _model_multiple(model):
            raise ValueError(f"tile {tile} is not a multiple of the model's size multiple {_model_multiple(model)}")
        x = self.normalize(image)
        h, w = x.shape[-2:]
        ph, pw = (-h) % tile, (-w) % tile
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), constant_values=self.pad_value())
        H, W = x.shape[-2:]
        t = torch.from_numpy(x).unfold(1, tile, tile).unfold(2, tile, tile)  # (1, nh, nw, tile, tile)
        nh, nw = t.shape[1], t.shape[2]
        batch = t.permute(1, 2, 0, 3, 4).reshape(nh * nw, 1, tile, tile)
        was = model.training
        model.eval()
        model.to(device)
        logits, counts = [], []
        for chunk in batch.split(batch_size):
            out = model(chunk.to(device))
            logits.append(out[outputs.MASK_LOGITS].float().cpu())
            counts.append(out[outputs.COUNT].float().cpu().reshape(-1))
        model.train(was)
        lg = torch.cat(logits).reshape(nh, nw, 1, tile, tile).permute(2, 0, 3, 1, 4).reshape(1, H, W)[:, :h, :w]
        return self.postprocess({outputs.MASK_LOGITS: lg, outputs.COUNT: torch.cat(counts).sum()}, task=task, **post)

    # ----------------------------------------------------------------- training
    def train(self, model: nn.Module, train_samples: list[Mapping[str, np.ndarray]],
              val_samples: list[Mapping[str, np.ndarray]], task: str = "count", *, steps: int, batch_size: int = 8,
              crop: int | None = 64, lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
              loss: str | None = None, progress: bool = False, discriminator: nn.Module | None = None,
              lr_d: float | None = None, evals: int = 10, size: str = "slim", init_count: bool = True,
              half_budget: bool = False, **kwargs: Any) -> pd.DataFrame:
        """Train ``model`` (LFMMG, or any model with ``mask_logits`` and ``count`` outputs) on annotated
        samples; ELMGAN's own recipe (module docstring). GAN variants (``"nh"``, ``"nh_l2"``) train
        against ``discriminator`` (default: a fresh CMTD of ``size``) with :func:`cellnb.train.fit_gan`;
        ``"no_gan"`` with :func:`cellnb.train.fit`. ``steps`` optimiser steps in ``evals`` epochs.

        Returns the history: ``epoch``, ``step``, ``train_loss``, ``val_loss`` (NH loss without the
        adversarial term on fixed tiles of ``val_samples``), the loss parts, ``seconds``; attributes
        ``steps_per_s``, ``seconds`` (training time, validation excluded) and ``precision``: ``"no_gan"``
        trains in ``precision`` (default :attr:`train_precision`) through :func:`cellnb.train.fit`; the GAN
        loop :func:`cellnb.train.fit_gan` has no bfloat16 path and trains in float32 on the CPU.
        ``half_budget``: also the ``val_loss`` half the budget reaches, annealed (the loops'
        half-budget branch, :func:`cellnb.methods.training.half_budget_branch`), as
        ``attrs["half_budget"]``; its time is not in ``steps_per_s``.
        """
        from cellnb import train as T
        from cellnb.utils import seed_everything

        self.check_task(task)
        variant = loss or self.losses[0]
        precision = kwargs.pop("precision", self.train_precision)
        crop = int(crop or self.tile)
        if crop % _model_multiple(model):
            raise ValueError(f"crop {crop} is not a multiple of the model's size multiple {_model_multiple(model)}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        remember_training_crop(model, crop)  # after the checks: a refused training records nothing
        evals = max(min(int(evals), int(steps)), 1)
        per_epoch = int(steps) // evals  # evals epochs of per_epoch steps: at most ``steps`` in all
        seed_everything(seed)
        train_frames = [self.prepare(s, crop) for s in train_samples]
        val_frames = [self.prepare(s, crop) for s in val_samples]
        data = RandomCrops(train_frames, crop, per_epoch * batch_size, seed)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, drop_last=True)
        val_loader = DataLoader(_Items(tiles(val_frames, crop)), batch_size=32, shuffle=False)
        if init_count:
            tile_counts = [float(i["count"]) for i in tiles(train_frames, crop)]
            init_count_head(model, max(float(np.mean(tile_counts)), 1e-3))
        device = torch.device(device) if not isinstance(device, torch.device) else device
        val_fn = self.loss(variant)
        val_rows: list[dict[str, float]] = []
        t_val = [0.0]

        def validate(gen: nn.Module) -> None:
            t0 = time.perf_counter()
            val_rows.append(T.evaluate_loss(gen, val_loader, val_fn, device))
            t_val[0] += time.perf_counter() - t0

        branch = dict(half_budget=(lambda gen: T.evaluate_loss(gen, val_loader, val_fn, device)["loss"]) if half_budget else None,
                      half_budget_rngs=[data.rng])

        t0 = time.perf_counter()
        if self.uses_gan(variant):
            if discriminator is None:
                discriminator = self.build_discriminator(size, in_channels=train_frames[0]["image"].shape[0])
            seed_everything(seed)
            with_count = bool(getattr(discriminator, "with_count", False))
            real_in, fake_in = self.discriminator_inputs(with_count)
            lr_d = lr if lr_d is None else lr_d
            hist = T.fit_gan(model, discriminator, loader, self.generator_loss(variant), self.discriminator_loss,
                             epochs=evals, lr_g=lr, lr_d=lr_d, betas=(0.5, 0.999), real_inputs=real_in,
                             fake_inputs=fake_in, device=device, progress=progress, scheduler="onecycle",
                             epoch_callback=lambda e, g, d: validate(g), **branch, **kwargs)
            hist["train_loss"] = hist["g_loss"]
            hist["val_loss"] = [r["loss"] for r in val_rows]
            for key in ("g_l1", "g_count"):
                hist[f"val_{key}"] = [r[key] for r in val_rows]
        else:
            hist = T.fit(model, loader, self.loss(variant), epochs=evals, lr=lr, betas=(0.5, 0.999),
                         scheduler="onecycle", device=device, progress=progress, precision=precision,
                         epoch_callback=lambda e, g: validate(g), **branch, **kwargs)
            hist["val_loss"] = [r["loss"] for r in val_rows]
            for key in ("g_l1", "g_count"):
                hist[f"val_{key}"] = [r[key] for r in val_rows]
        seconds = time.perf_counter() - t0 - t_val[0] - half_budget_seconds(hist)
        hist["step"] = hist["epoch"] * per_epoch
        hist.attrs["steps"] = per_epoch * evals
        hist.attrs["seconds"] = seconds
        hist.attrs["steps_per_s"] = per_epoch * evals / max(seconds, 1e-9)
        hist.attrs["loss"] = variant
        return hist
