"""SSRNet as a method (Deng et al., Adv. Intell. Syst. 2023; released code ``Roin626/SSRnet``).

Tasks ``count`` (the count head, a global regression) and ``mask`` (the "distribution" map).

* sizes: ``paper`` (base width 64, the released widths) and ``slim`` (base width 8, the CPU
  profiles); ``build(size, variant="paper"|"released", decoder=..., count_head=...)``;
* count heads: ``"paper"`` (faithful: 1×1 conv → InstanceNorm → LeakyReLU → ⟨·, 32×32 weight⟩)
  normalises away the scale of the map it reads, so its output cannot grow with the amount of
  foreground; ``"fixed"`` drops the InstanceNorm (the fixed mode, :data:`COUNT_HEADS`);
* losses (:data:`LOSSES`): ``"om"`` (faithful default, the released 10·L1(map) + 1·MSE(count)),
  ``"pixel"`` (map term only, the decoder ablation), ``"uncertainty"`` (Kendall et al. weighting);
* targets from a sample ``{"image", "points" | "labels", "mask"}``: the normalised image, the mask
  (``labels > 0`` when no mask is given) and the points (label centroids when no points are given);
  a crop's count is the number of points inside it (:func:`crop_batch`);
* normalisation: the released ``transforms.Normalize(0.387, 0.278)`` of a [0, 1] gray image;
* prediction on any image size (:meth:`SSRNetMethod.predict`): the map from the image padded to a
  multiple of 64; the count by the **tile protocol**: the count head was trained on ``tile``×``tile``
  crops (its adaptive pooling averages, so its output does not scale with the input size), so an
  image is cut into ``tile``×``tile`` tiles (padded with the image's median, i.e. background) and the
  tile counts are summed (:func:`tile_count`);
* training (:meth:`SSRNetMethod.train` → :func:`fit_crops`): random crops with flips and 90°
  rotations, count heads started at the training-mean crop count (:func:`init_count_at_mean`),
  Adam with the released betas (0.5, 0.999) and a per-step one-cycle schedule, validation loss on
  fixed crops of held-out images at regular step intervals.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cellnb.methods.base import Method, Prediction, pad_to_multiple, register_method, remember_training_crop, training_tile
from cellnb.methods.training import evaluation_steps, half_budget_plan, half_budget_record
from cellnb.models import create_model, outputs

NORM_MEAN, NORM_STD = 0.387, 0.278  # released transforms.Normalize (gray replicated to 3 channels)
LOSSES = ("om", "pixel", "uncertainty")
COUNT_HEADS = ("paper", "released", "fixed")
BETAS = (0.5, 0.999)  # released Adam betas
SIZE_MULTIPLE = 64  # five stride-2 stages and the x32 SSR decoder: inputs and crops are multiples of 64


# --------------------------------------------------------------------------- targets and crops
def sample_points(sample: Mapping[str, Any]) -> np.ndarray:
    """(K, 2) float32 (row, col) points of a sample: ``points`` or the centroids of ``labels``."""
    if sample.get("points") is not None:
        return np.asarray(sample["points"], dtype=np.float32).reshape(-1, 2)
    if sample.get("labels") is not None:
        from scipy import ndimage

        labels = np.asarray(sample["labels"])
        ids = np.unique(labels[labels > 0])
        return np.asarray(ndimage.center_of_mass(labels > 0, labels, ids), dtype=np.float32).reshape(-1, 2)
    raise KeyError(f"sample needs 'points' or 'labels' for a count target; has {sorted(sample)}")


def crop_count(points: np.ndarray, top: int, left: int, size: int) -> int:
    """Number of points (row, col) with ``top <= row < top + size`` and ``left <= col < left + size``.

    >>> crop_count(np.array([[0.0, 0.0], [3.9, 1.0], [4.0, 1.0]]), 0, 0, 4)
    2
    """
    if len(points) == 0:
        return 0
    r, c = points[:, 0], points[:, 1]
    return int(np.sum((r >= top) & (r < top + size) & (c >= left) & (c < left + size)))


def _augment(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flips and 90° rotation of every (H, W) array (a crop's count is unchanged)."""
    k, flip_v, flip_h = int(rng.integers(4)), bool(rng.integers(2)), bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k)
        a = a[::-1] if flip_v else a
        a = a[:, ::-1] if flip_h else a
        out.append(np.ascontiguousarray(a))
    return out


def crop_batch(samples: Sequence[Mapping[str, Any]], indices: Sequence[int], crop: int, rng: np.random.Generator,
               augment: bool = True) -> dict[str, torch.Tensor]:
    """A training batch of random ``crop``² crops: ``image`` (B, 1, crop, crop), ``mask`` and
    ``count`` = points inside the crop × the sample's ``count_scale`` (1 unless a sample says
    otherwise, e.g. the released count-target ablation). Samples smaller than ``crop`` are padded."""
    images, masks, counts = [], [], []
    for i in indices:
        s = samples[int(i)]
        img, mask = s["image"], s["mask"]
        h, w = img.shape
        top = int(rng.integers(0, max(h - crop, 0) + 1))
        left = int(rng.integers(0, max(w - crop, 0) + 1))
        ci = img[top:top + crop, left:left + crop]
        cm = mask[top:top + crop, left:left + crop]
        if ci.shape != (crop, crop):
            ph, pw = crop - ci.shape[0], crop - ci.shape[1]
            ci = np.pad(ci, ((0, ph), (0, pw)), constant_values=float(np.median(img)))
            cm = np.pad(cm, ((0, ph), (0, pw)))
        if augment:
            ci, cm = _augment([ci, cm], rng)
        images.append(ci)
        masks.append(cm)
        counts.append(crop_count(s["points"], top, left, crop) * float(s.get("count_scale", 1.0)))
    return {"image": torch.from_numpy(np.stack(images)[:, None].astype(np.float32)),
            "mask": torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)),
            "count": torch.tensor(counts, dtype=torch.float32)}


def pad_sample(sample: Mapping[str, Any], multiple: int) -> dict[str, Any]:
    """Pad a prepared sample's ``image`` (with its median, i.e. background) and ``mask`` (with 0) on
    the bottom/right to multiples of ``multiple``, as the tile protocol pads at prediction time; so
    training crops see the padding that test tiles see (the released loader also pads, with zeros)."""
    img = sample["image"]
    ph, pw = -img.shape[0] % multiple, -img.shape[1] % multiple
    if not (ph or pw):
        return dict(sample)
    return {**sample, "image": np.pad(img, ((0, ph), (0, pw)), constant_values=float(np.median(img))),
            "mask": np.pad(sample["mask"], ((0, ph), (0, pw)))}


def fixed_crops(samples: Sequence[Mapping[str, Any]], crop: int, per_sample: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Deterministic validation batches: ``per_sample`` random crops of each sample, no augmentation."""
    rng = np.random.default_rng(seed)
    idx = [i for i in range(len(samples)) for _ in range(per_sample)]
    return [crop_batch(samples, idx[j:j + 16], crop, rng, augment=False) for j in range(0, len(idx), 16)]


# --------------------------------------------------------------------------- count-head start
@torch.no_grad()
def init_count_at_mean(model: nn.Module, images: torch.Tensor, mean_count: float) -> float:
    """Start a model's count output at ``mean_count`` on average over ``images`` (eval mode), the
    same way for every count head: SSRNet's count is linear in its 32×32 head weight, which is
    rescaled; the U-Net's softplus head gets its bias at softplus⁻¹(mean) and a zero weight.
    Returns the mean count before the change."""
    if mean_count <= 0:
        raise ValueError(f"mean count must be positive, got {mean_count}")
    was_training = model.training
    model.eval()
    initial = float(model(images)[outputs.COUNT].mean())
    if hasattr(model, "count_head"):
        if initial == 0:
            raise ValueError("the count head outputs 0 on these images; cannot rescale it")
        model.count_head.weight.mul_(mean_count / initial)
    elif hasattr(model, "count_fc"):
        model.count_fc.weight.zero_()
        model.count_fc.bias.fill_(float(np.log(np.expm1(mean_count))))
    else:
        raise TypeError(f"{type(model).__name__} has no count head to start")
    model.train(was_training)
    return initial


# --------------------------------------------------------------------------- training loop
def fit_crops(model: nn.Module, loss_fn: Callable, train_samples: Sequence[Mapping[str, Any]],
              val_samples: Sequence[Mapping[str, Any]], *, steps: int, batch_size: int = 8, crop: int = 64,
              lr: float = 1e-3, betas: tuple[float, float] = BETAS, n_evals: int = 12, val_crops: int = 4,
              seed: int = 0, device: str | torch.device = "cpu", init_count: bool = True,
              precision: str = "float32", half_budget: bool = False) -> pd.DataFrame:
    """Train on random crops (flips, 90° rotations) for ``steps`` Adam steps with a one-cycle LR.

    Samples are dicts with a normalised ``image`` (H, W), ``mask`` and ``points`` (see
    :meth:`SSRNetMethod.targets`), padded to multiples of ``crop`` (:func:`pad_sample`). At ``n_evals`` evenly spaced steps ending at the last
    (:func:`cellnb.methods.training.evaluation_steps`) the loss on fixed crops of
    ``val_samples`` (held out from the training data) is evaluated. Returns one row per evaluation:
    ``step``, ``train_loss`` (mean since the last evaluation), its parts, ``val_loss``, ``val_count_mae``
    (per crop), ``lr``; ``history.attrs["steps_per_s"]`` is the measured training speed. ``crop`` (a
    multiple of :data:`SIZE_MULTIPLE`) is recorded on ``model`` (:func:`~cellnb.methods.base.remember_training_crop`):
    the tile protocol predicts in tiles of it.

    ``precision``: the forward pass's precision (:attr:`SSRNetMethod.train_precision` through
    :meth:`SSRNetMethod.train`), resolved by :func:`cellnb.utils.training_precision` (bfloat16 autocast
    only where the device computes it natively); the loss runs on float32 outputs and validation in
    float32. ``attrs["precision"]`` records what ran.

    ``half_budget``: also measure the validation loss half the budget, annealed, reaches
    (:func:`cellnb.methods.training.half_budget_branch`), as ``attrs["half_budget"]``; the main run
    is unchanged by it (as :func:`~cellnb.methods.training.fit_samples`).
    """
    if steps < n_evals:
        raise ValueError(f"steps ({steps}) must be >= n_evals ({n_evals})")
    if crop < SIZE_MULTIPLE or crop % SIZE_MULTIPLE:
        raise ValueError(f"crop {crop} is not a positive multiple of {SIZE_MULTIPLE}, the size multiple of SSRNet's training "
                         f"loop (the x32 SSR decoder and the count tiles need it); choose e.g. "
                         f"{max(SIZE_MULTIPLE, crop - crop % SIZE_MULTIPLE)}")
    # the tile protocol predicts in tiles of this crop (every caller of fit_crops, not only train)
    remember_training_crop(model, crop)
    from cellnb.utils import autocast, float32_outputs, training_precision

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    precision = training_precision(precision, dev)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(dev)
        params += [p for p in loss_fn.parameters() if all(p is not q for q in params)]
    train_samples = [pad_sample(s, crop) for s in train_samples]
    val_samples = [pad_sample(s, crop) for s in val_samples]
    val_batches = fixed_crops(val_samples, crop, val_crops, seed + 1)
    if init_count:
        probe = crop_batch(train_samples, rng.integers(0, len(train_samples), 32), crop, np.random.default_rng(seed + 2))
        mean = float(np.mean([float(b["count"].mean()) for b in [probe]]))
        init_count_at_mean(model, probe["image"].to(dev), max(mean, 1e-3))
    opt = torch.optim.Adam(params, lr=lr, betas=tuple(betas))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    at = evaluation_steps(steps, n_evals)
    rows, acc, parts_acc, n_acc, train_time = [], 0.0, {}, 0, 0.0
    def next_batch() -> dict[str, torch.Tensor]:
        batch = crop_batch(train_samples, rng.integers(0, len(train_samples), batch_size), crop, rng)
        return {k: v.to(dev) for k, v in batch.items()}

    def optimise(batch: Mapping[str, torch.Tensor], step: int) -> tuple[torch.Tensor, Mapping[str, Any]]:
        model.train()
        with autocast(precision, dev):
            out = model(batch["image"])
        total, parts = loss_fn(float32_outputs(out), batch)
        if not torch.isfinite(total):
            raise FloatingPointError(f"loss is {float(total)} at step {step}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return total, parts

    plan = half_budget_plan(steps) if half_budget else None
    half: dict[str, Any] | None = None
    for step in range(1, steps + 1):
        model.train()
        batch = next_batch()
        t0 = time.perf_counter()
        total, parts = optimise(batch, step)
        sched.step()
        train_time += time.perf_counter() - t0
        if plan is not None and step == plan[0]:
            half = half_budget_record(plan, lambda: optimise(next_batch(), step),
                                      lambda: evaluate_crops(model, loss_fn, val_batches, dev)["val_loss"],
                                      modules=[model, *([loss_fn] if isinstance(loss_fn, nn.Module) else [])],
                                      optimizers=[opt], rngs=[rng])
        acc += float(total.detach())
        n_acc += 1
        for k, v in parts.items():
            parts_acc[k] = parts_acc.get(k, 0.0) + float(v)
        if step in at:
            val = evaluate_crops(model, loss_fn, val_batches, dev)
            rows.append({"step": step, "train_loss": acc / n_acc, **{k: v / n_acc for k, v in parts_acc.items() if k != "total"},
                         **val, "lr": sched.get_last_lr()[0]})
            acc, parts_acc, n_acc = 0.0, {}, 0
    history = pd.DataFrame(rows)
    history.attrs["steps_per_s"] = steps / train_time if train_time else float("nan")
    history.attrs["precision"] = precision
    if half is not None:
        history.attrs["half_budget"] = half
    return history


@torch.no_grad()
def evaluate_crops(model: nn.Module, loss_fn: Callable, batches: Sequence[Mapping[str, torch.Tensor]],
                   device: torch.device) -> dict[str, float]:
    """Mean loss and per-crop count MAE over fixed validation batches (eval mode)."""
    model.eval()
    was = getattr(loss_fn, "training", None)
    if isinstance(loss_fn, nn.Module):
        loss_fn.eval()
    losses, errors, n = 0.0, 0.0, 0
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        out = model(b["image"])
        total, _ = loss_fn(out, b)
        losses += float(total) * len(b["count"])
        errors += float((out[outputs.COUNT].reshape(-1) - b["count"]).abs().sum())
        n += len(b["count"])
    if isinstance(loss_fn, nn.Module) and was:
        loss_fn.train()
    return {"val_loss": losses / n, "val_count_mae": errors / n}


# --------------------------------------------------------------------------- prediction
def foreground_map(out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Foreground map in mask units: SSRNet's ``density`` (regressed on the mask), else ``sigmoid(mask_logits)``."""
    if outputs.DENSITY in out:
        return out[outputs.DENSITY]
    return torch.sigmoid(out[outputs.MASK_LOGITS])


@torch.no_grad()
def tile_count(model: nn.Module, image: np.ndarray, tile: int, device: str | torch.device = "cpu") -> float:
    """Count of a normalised (H, W) image by the tile protocol: pad to multiples of ``tile`` with the
    image's median (background), run the count head on every ``tile``×``tile`` tile, sum."""
    h, w = image.shape
    ph, pw = -h % tile, -w % tile
    padded = np.pad(image, ((0, ph), (0, pw)), constant_values=float(np.median(image))) if ph or pw else image
    tiles = padded.reshape(padded.shape[0] // tile, tile, padded.shape[1] // tile, tile).transpose(0, 2, 1, 3)
    x = torch.from_numpy(np.ascontiguousarray(tiles.reshape(-1, 1, tile, tile)).astype(np.float32)).to(device)
    model.eval()
    return float(sum(float(model(x[i:i + 32])[outputs.COUNT].sum()) for i in range(0, len(x), 32)))


@torch.no_grad()
def predict_map(model: nn.Module, image: np.ndarray, multiple: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """Foreground map of a normalised (H, W) image: pad bottom/right to ``multiple`` with the
    median, run, crop back to (H, W)."""
    h, w = image.shape
    ph, pw = -h % multiple, -w % multiple
    padded = np.pad(image, ((0, ph), (0, pw)), constant_values=float(np.median(image))) if ph or pw else image
    model.eval()
    out = model(torch.from_numpy(np.ascontiguousarray(padded)[None, None].astype(np.float32)).to(device))
    return foreground_map(out)[0, 0, :h, :w].float().cpu().numpy()


# --------------------------------------------------------------------------- the method
@register_method
class SSRNetMethod(Method):
    name = "ssrnet"
    memory_format = "channels_last"  # measured faster to train on the CPU (the speed chapter)
    #: bfloat16 autocast where native: its own loop (fit_crops) trained 1.11-1.12x faster on a CPU with AMX
    #: (the speed chapter's loop timing), and the quick chapter took 909 s instead of 1093 s, its VGG MAE
    #: 8.15 against 8.48 in float32 (splits 0-2)
    train_precision = "bfloat16"
    paper = "Deng et al. 2023, SSRNet (Adv. Intell. Syst. 5(10):2300185); code Roin626/SSRnet"
    tasks = ("count", "mask")
    sizes = {"paper": {"base_width": 64}, "slim": {"base_width": 8}}
    losses = LOSSES
    multiple = SIZE_MULTIPLE
    count_tile = 64  # the training crop of the profiles; the tile protocol's tile
    predicts_in_training_tiles = True

    def build(self, size: str = "slim", in_channels: int = 1, task: str | None = None, **overrides: Any) -> nn.Module:
        """SSRNet at ``size``; overrides: ``variant`` (``paper`` default, ``released``), ``decoder``
        (``ssr``, ``bilinear``, ``transpose``), ``count_head`` (:data:`COUNT_HEADS`; default the
        variant's own), ``base_width``."""
        self.check_task(task)
        kwargs = {"variant": "paper", **self.check_size(size), **overrides}
        if kwargs.get("count_head") not in (None, *COUNT_HEADS):
            raise ValueError(f"unknown count head {kwargs['count_head']!r}; choose from {COUNT_HEADS}")
        return create_model("ssrnet", in_channels=in_channels, **kwargs)

    def loss(self, variant: str | None = None, task: str | None = None, model: nn.Module | None = None, **kwargs: Any) -> Callable:
        """``"om"`` (default, faithful), ``"pixel"``, ``"uncertainty"`` (needs ``model``: its
        log-variances train with it)."""
        from cellnb.losses.ssrnet import make_loss

        self.check_task(task)
        variant = variant or "om"
        if variant not in LOSSES:
            raise ValueError(f"unknown SSRNet loss {variant!r}; choose from {LOSSES}")
        return make_loss(variant, model, **kwargs)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """[0, 1] gray (uint8 is divided by 255; RGB averaged) → (1, H, W) ``(x − 0.387) / 0.278``."""
        image = np.asarray(image)
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        image = image.astype(np.float32) / scale
        if image.ndim == 3:
            image = image.mean(axis=-1 if image.shape[-1] in (1, 3, 4) else 0)
        return ((image - NORM_MEAN) / NORM_STD)[None].astype(np.float32)

    def targets(self, sample: Mapping[str, Any], task: str | None = None) -> dict[str, np.ndarray]:
        """``image`` (H, W) normalised, ``mask`` (H, W) uint8, ``points`` (K, 2), ``count``."""
        self.check_task(task)
        points = sample_points(sample)
        if sample.get("mask") is not None:
            mask = (np.asarray(sample["mask"]) > 0).astype(np.uint8)
        elif sample.get("labels") is not None:
            mask = (np.asarray(sample["labels"]) > 0).astype(np.uint8)
        else:
            raise KeyError(f"sample needs 'mask' or 'labels' for the map target; has {sorted(sample)}")
        return {"image": self.normalize(sample["image"])[0], "mask": mask, "points": points,
                "count": np.asarray(len(points))}

    def postprocess(self, outputs_: Mapping[str, torch.Tensor], task: str | None = None, **kwargs: Any) -> Prediction:
        """One image's outputs (no batch axis) → ``Prediction(count, foreground)``; the map is
        clipped to [0, 1] (it is regressed on the binary mask)."""
        fg = foreground_map({k: v[None] for k, v in outputs_.items()})[0, 0]
        count = outputs_.get(outputs.COUNT)
        return Prediction(count=None if count is None else float(count.reshape(-1).sum()),
                          foreground=fg.clamp(0, 1).float().cpu().numpy())

    @torch.no_grad()
    def predict(self, model: nn.Module | None, image: np.ndarray, task: str | None = None, *,
                device: str | torch.device = "cpu", tile: int | None = None, **_: Any) -> Prediction:
        """Any image size: the map from the median-padded image, the count by the tile protocol."""
        self.check_task(task)
        x = self.normalize(image)[0]
        fg = predict_map(model, x, self.multiple, device)
        return Prediction(count=tile_count(model, x, training_tile(model, tile, self.count_tile, self.name), device),
                          foreground=np.clip(fg, 0, 1).astype(np.float32))

    measures_half_budget = True  # fit_crops(half_budget=True)

    def train(self, model: nn.Module, train_samples: list[Mapping[str, Any]], val_samples: list[Mapping[str, Any]],
              task: str = "count", *, steps: int, batch_size: int = 8, crop: int | None = 64, lr: float = 1e-3,
              seed: int = 0, device: str | torch.device = "cpu", loss: str | None = None, progress: bool = False,
              **kwargs: Any) -> pd.DataFrame:
        """:func:`fit_crops` on the samples' targets (crop counts = points inside the crop)."""
        prepared = [s if s.get("_normalised") else {**self.targets(s, task), "_normalised": True} for s in train_samples]
        val = [s if s.get("_normalised") else {**self.targets(s, task), "_normalised": True} for s in val_samples]
        loss_fn = self.loss(loss, model=model)
        kwargs.setdefault("precision", self.train_precision)
        crop = int(crop or self.count_tile)
        return fit_crops(model, loss_fn, prepared, val, steps=steps, batch_size=batch_size, crop=crop,
                         lr=lr, seed=seed, device=device, **kwargs)
