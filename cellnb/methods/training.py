"""Generic training of a :class:`~cellnb.methods.base.Method` on annotated samples.

:func:`fit_samples` is the default :meth:`Method.train`: it turns annotated samples (dicts with an
``image`` and ``points`` / ``labels`` / ``mask``) into random training crops, trains with the
method's own loss and targets, and records a validation curve on held-out training samples.

Batches (what a method's loss receives)
---------------------------------------
``batch["image"]`` is the normalised crop ``(N, C, h, w)`` (:meth:`Method.normalize` of the whole
image, then cropped). Every array returned by :meth:`Method.targets` whose last two axes have the
image's height and width is cropped, flipped and rotated **jointly** with the image; integer arrays
arrive as ``int64`` tensors, floating ones as ``float32``; other targets (scalars, vectors) are
stacked unchanged (targets named ``image`` or ``points`` are ignored: the input is
:meth:`Method.normalize`'s, counts come from the dots). When the sample has ``points`` (dot annotations) or ``labels`` (instances, whose
centres are used) the batch also has ``count`` ``(N,)`` float32: the number of dots / instance
centres **inside the crop** (a ``count`` returned by ``targets`` is replaced by it, since a full
image's count is wrong for a crop).

Augmentation: a random crop of ``crop``×``crop`` (images smaller than that are padded: reflection
for the image, zeros for targets), random horizontal / vertical flips and a random multiple of 90°
rotation. ``crop=None`` trains on whole images (padded to a common size and to the method's
``multiple``).

Optimisation: Adam, a one-cycle learning-rate schedule over ``steps`` optimiser steps (peak ``lr``,
15 % warm-up; Smith & Topin 2019), and after training BatchNorm statistics re-estimated over random
training crops (:func:`cellnb.train.recalibrate_batchnorm`). Validation: the same loss on fixed,
un-augmented crops of ``val_samples`` (a held-out part of the training data, never the test set),
every ``eval_every`` steps, or by default at 10 evenly spaced steps ending at the last
(:func:`evaluation_steps`; >= 8 evaluations for :func:`cellnb.verdicts.converged` whenever
``steps >= 10``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["prepare_sample", "augment", "collate", "fit_samples", "half_budget_branch", "half_budget_fields", "half_budget_gain", "half_budget_plan", "half_budget_record",
           "half_budget_record_fields", "half_budget_seconds", "half_budget_summary", "instance_centres", "stage_histories", "training_converged", "evaluation_steps", "toy_sample"]


def evaluation_steps(steps: int, n_evals: int) -> set[int]:
    """The ``n_evals`` optimiser steps (1-based) at which a training of ``steps`` steps evaluates:
    evenly spaced, the last one at ``steps``. (Evaluating every ``steps // n_evals`` steps *and* at
    the end added a near-copy of the last point whenever ``n_evals`` does not divide ``steps``,
    e.g. at 992 and 1000 of 1000 steps, which weighted the final value twice in the convergence
    rule's last window.)

    >>> sorted(evaluation_steps(10, 4))
    [3, 5, 8, 10]
    >>> len(evaluation_steps(1000, 16)), max(evaluation_steps(1000, 16))
    (16, 1000)
    """
    steps, n_evals = int(steps), int(n_evals)
    if steps < 1 or n_evals < 1:
        raise ValueError(f"steps and n_evals must be >= 1, got {steps} and {n_evals}")
    n_evals = min(n_evals, steps)
    return {int(np.floor(i * steps / n_evals + 0.5)) for i in range(1, n_evals + 1)}

DOTS = "_dots"


def instance_centres(labels: np.ndarray) -> np.ndarray:
    """Centroids ``(K, 2)`` (row, col) of the instances of a label image, rounded to pixels."""
    from scipy import ndimage

    labels = np.asarray(labels)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        return np.zeros((0, 2), np.float32)
    centres = ndimage.center_of_mass(np.ones_like(labels, dtype=np.float32), labels, ids)
    return np.asarray(centres, np.float32).reshape(-1, 2)


def toy_sample(method, seed: int = 0, shape: tuple[int, int] | None = None, n_cells: int = 6) -> dict[str, np.ndarray]:
    """One small annotated sample every registered method can train on: ``n_cells`` disks (radius 3-6 px)
    as ``labels``, a noisy grey ``image``, its ``mask`` and ``points`` (the disks' centres); for a method
    that takes colour or super-resolves, ``image`` and ``hr`` are an RGB version and ``lr`` its 4×
    box average. ``shape`` defaults to 128² for super-resolving methods and 64² otherwise. For
    registry-wide tests and the speed chapter's training-loop timings, not for results."""
    if shape is None:
        shape = (128, 128) if method.sr_scale > 1 else (64, 64)
    size = max(shape)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for k in range(1, int(n_cells) + 1):
        cy, cx = rng.uniform(8, size - 8, 2)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(3, 6) ** 2] = k
    labels = labels[: shape[0], : shape[1]]
    rng = np.random.default_rng(seed)
    gray = (0.1 + 0.8 * (labels > 0) + 0.05 * rng.standard_normal(shape)).clip(0, 1).astype(np.float32)
    sample = {"image": gray, "labels": labels, "mask": (labels > 0).astype(np.uint8), "points": instance_centres(labels)}
    if "sr" in method.tasks or method.sr_scale > 1:
        rgb = np.stack([gray, 0.5 * gray, 1 - gray]).astype(np.float32)
        lr = torch.nn.functional.interpolate(torch.from_numpy(rgb)[None], scale_factor=0.25, mode="area")[0].numpy()
        sample.update(hr=rgb, lr=lr, image=rgb)
    return sample


def _dots(sample: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray | None:
    """Dot map of the sample's points (or instance centres), None when it has neither."""
    from cellnb import targets

    if sample.get("points") is not None:
        pts = np.asarray(sample["points"], np.float32).reshape(-1, 2)
    elif sample.get("labels") is not None and np.asarray(sample["labels"]).any():
        pts = instance_centres(sample["labels"])
    elif sample.get("labels") is not None:
        pts = np.zeros((0, 2), np.float32)
    else:
        return None
    h, w = shape
    pts = np.clip(pts, 0, [h - 1, w - 1])
    return targets.dots_from_points(pts, shape).astype(np.float32)


def prepare_sample(method, sample: Mapping[str, Any], task: str | None) -> dict[str, np.ndarray]:
    """Normalised image ``(C, H, W)``, the method's targets and (when possible) the dot map."""
    if "image" not in sample:
        raise KeyError(f"a training sample needs an 'image'; it has {sorted(sample)}")
    image = method.normalize(sample["image"]).astype(np.float32)
    if image.ndim != 3:
        raise ValueError(f"{method.name}.normalize must return (C, H, W), got shape {image.shape}")
    shape = image.shape[-2:]
    out: dict[str, np.ndarray] = {"image": image}
    for key, value in method.targets(sample, task).items():
        if key in ("image", "points"):  # the input is normalize()'s; counts come from the dot map
            continue
        value = np.asarray(value)
        if value.dtype == bool:
            value = value.astype(np.uint8)
        out[key] = value
    dots = _dots(sample, shape)
    if dots is not None:
        out[DOTS] = dots
        out.pop("count", None)
    return out


def _spatial(value: np.ndarray, shape: tuple[int, int]) -> bool:
    return value.ndim >= 2 and tuple(value.shape[-2:]) == tuple(shape)


def _pad_to(value: np.ndarray, h: int, w: int, image: bool) -> np.ndarray:
    ph, pw = max(h - value.shape[-2], 0), max(w - value.shape[-1], 0)
    if not (ph or pw):
        return value
    widths = [(0, 0)] * (value.ndim - 2) + [(0, ph), (0, pw)]
    if image and ph < value.shape[-2] and pw < value.shape[-1]:
        return np.pad(value, widths, mode="reflect")
    return np.pad(value, widths, mode="edge" if image else "constant")


def augment(prepared: Mapping[str, np.ndarray], crop: int | None, rng: np.random.Generator | None,
            multiple: int = 1) -> dict[str, np.ndarray]:
    """One crop of a prepared sample. With ``rng`` a random crop, flips and 90° rotation; without,
    the top-left crop (deterministic). Spatial arrays move together; others are copied."""
    image = prepared["image"]
    shape = image.shape[-2:]
    if crop is None:
        h = int(np.ceil(shape[0] / multiple) * multiple)
        w = int(np.ceil(shape[1] / multiple) * multiple)
    else:
        h = w = int(crop)
    out: dict[str, np.ndarray] = {}
    top = left = 0
    ph, pw = max(shape[0], h), max(shape[1], w)
    if rng is not None and crop is not None:
        top = int(rng.integers(0, ph - h + 1))
        left = int(rng.integers(0, pw - w + 1))
    flips = (bool(rng.integers(2)), bool(rng.integers(2)), int(rng.integers(4))) if rng is not None else (False, False, 0)
    for key, value in prepared.items():
        if not _spatial(value, shape):
            out[key] = value
            continue
        v = _pad_to(value, ph, pw, image=key == "image")[..., top:top + h, left:left + w]
        if flips[0]:
            v = v[..., :, ::-1]
        if flips[1]:
            v = v[..., ::-1, :]
        if flips[2] and h == w:
            v = np.rot90(v, flips[2], axes=(-2, -1))
        out[key] = np.ascontiguousarray(v)
    if DOTS in out:
        out["count"] = np.float32(out.pop(DOTS).sum())
    return out


def collate(items: Sequence[Mapping[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack crops into a batch: integers -> int64, floats -> float32 tensors."""
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        stacked = np.stack([np.asarray(it[key]) for it in items])
        if np.issubdtype(stacked.dtype, np.integer) or stacked.dtype == bool:
            batch[key] = torch.from_numpy(stacked.astype(np.int64))
        else:
            batch[key] = torch.from_numpy(stacked.astype(np.float32))
    return batch


def _to(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _parts(parts: Mapping[str, Any] | None) -> dict[str, float]:
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in (parts or {}).items()}



#: The half-budget check (:func:`half_budget_branch`): the branch leaves the main run at
#: ``HALF_BUDGET - HALF_BUDGET_ANNEAL`` of the budget and anneals for ``HALF_BUDGET_ANNEAL`` of it,
#: so that it ends, annealed, at half the budget.
HALF_BUDGET = 0.5
HALF_BUDGET_ANNEAL = 0.1


def half_budget_plan(steps: int) -> tuple[int, int] | None:
    """``(branch_from, anneal_steps)`` of the half-budget check of a ``steps``-step training: the
    branch leaves after main step ``branch_from`` and anneals for ``anneal_steps``, ending at
    ``steps // 2``; None when ``steps`` is too short for a branch (under 20 steps).

    >>> half_budget_plan(1000)
    (400, 100)
    >>> half_budget_plan(19) is None
    True
    """
    steps = int(steps)
    if steps < 20:
        return None
    anneal = max(1, int(round(HALF_BUDGET_ANNEAL * steps)))
    return int(steps * HALF_BUDGET) - anneal, anneal


def half_budget_branch(step: Callable[[], Any], validate: Callable[[], float], *, modules: Sequence[nn.Module],
                       optimizers: Sequence[torch.optim.Optimizer], rngs: Sequence[np.random.Generator] = (),
                       anneal_steps: int) -> float:
    """The validation loss a run would have reached with half its budget, measured without a second run.

    From the current state of a training, ``anneal_steps`` more optimiser steps (``step()``, the
    loop's own step on its own batches) with every optimiser's learning rate annealed linearly from
    its current value towards 0 (step ``i`` of ``n`` at ``(n - i + 1) / n`` of it), then
    ``validate()``. The weights and buffers of ``modules``, the optimisers' states and
    hyper-parameters, the numpy generators ``rngs`` and torch's CPU (and CUDA) random state are then
    put back as they were, so the main run continues exactly as it would have without the branch
    (tested bit for bit). A schedule the loop steps itself (OneCycleLR) is not stepped here.

    This is the anneal branch of a warmup-stable-decay schedule (Hägele et al. 2024, "Scaling laws
    and compute-optimal training beyond fixed training durations"), used on a one-cycle run: the
    branch answers "what would half the budget, annealed, have given?" for
    :func:`cellnb.verdicts.converged_over_budget`.
    """
    import copy

    if anneal_steps < 1:
        raise ValueError(f"anneal_steps must be >= 1, got {anneal_steps}")
    saved_modules = [copy.deepcopy(m.state_dict()) for m in modules]
    saved_modes = [[sub.training for sub in m.modules()] for m in modules]
    saved_optimizers = [copy.deepcopy(o.state_dict()) for o in optimizers]
    saved_rngs = [copy.deepcopy(r.bit_generator.state) for r in rngs]
    saved_torch = torch.random.get_rng_state()
    saved_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    start = [[float(g["lr"]) for g in o.param_groups] for o in optimizers]
    try:
        for i in range(1, int(anneal_steps) + 1):
            scale = (anneal_steps - i + 1) / anneal_steps
            for o, lrs in zip(optimizers, start):
                for g, lr0 in zip(o.param_groups, lrs):
                    g["lr"] = lr0 * scale
            step()
        return float(validate())
    finally:
        for m, state, modes in zip(modules, saved_modules, saved_modes):
            m.load_state_dict(state)
            for sub, mode in zip(m.modules(), modes):
                sub.training = mode
        for o, state in zip(optimizers, saved_optimizers):
            o.load_state_dict(state)
        for r, state in zip(rngs, saved_rngs):
            r.bit_generator.state = state
        torch.random.set_rng_state(saved_torch)
        if saved_cuda is not None:
            torch.cuda.set_rng_state_all(saved_cuda)


def half_budget_record(plan: tuple[int, int], step: Callable[[], Any], validate: Callable[[], float], *,
                       modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer],
                       rngs: Sequence[np.random.Generator] = ()) -> dict[str, Any]:
    """:func:`half_budget_branch` for a loop at step ``plan[0]`` of :func:`half_budget_plan`, as the
    ``history.attrs["half_budget"]`` record: ``{"steps", "branch_from", "val_loss", "seconds"}``."""
    t0 = time.perf_counter()
    value = half_budget_branch(step, validate, modules=modules, optimizers=optimizers, rngs=rngs, anneal_steps=plan[1])
    return {"steps": plan[0] + plan[1], "branch_from": plan[0], "val_loss": value, "seconds": time.perf_counter() - t0}

def stage_histories(history: pd.DataFrame) -> list[pd.DataFrame]:
    """The histories of a training's stages: for a training in stages (a ``stage`` column, each
    stage's own history in ``attrs["<stage>_history"]``, as the MobileSR → TinyU-Net pipeline's
    :meth:`~cellnb.methods.lowres_bloodcell.MobileSRTinyUNet.train` records) those, in order; else
    ``[history]``.

    >>> a, b = pd.DataFrame({"val_loss": [1.0]}), pd.DataFrame({"val_loss": [2.0]})
    >>> h = pd.concat([a.assign(stage="sr"), b.assign(stage="seg")], ignore_index=True)
    >>> h.attrs.update(sr_history=a, seg_history=b)
    >>> [float(x["val_loss"].iloc[0]) for x in stage_histories(h)]
    [1.0, 2.0]
    """
    if "stage" not in history or not len(history):
        return [history]
    stages = list(dict.fromkeys(history["stage"].tolist()))
    if not all(isinstance(history.attrs.get(f"{s}_history"), pd.DataFrame) for s in stages):
        return [history]
    return [history.attrs[f"{s}_history"] for s in stages]


def training_converged(history: pd.DataFrame | None) -> bool:
    """:func:`cellnb.verdicts.converged` of a training's validation curve; a training in stages (a
    ``stage`` column, e.g. the MobileSR → TinyU-Net pipeline) has converged when every stage's own
    curve has: the stages' losses are on different scales, and the curve of the whole would compare
    the second stage's start with its end. The comparison's verdicts and ``cellnb.train``'s model
    card both read it."""
    from cellnb import verdicts

    if history is None or "val_loss" not in history:
        return False
    if "stage" not in history:
        return verdicts.converged(history["val_loss"].tolist())
    return all(verdicts.converged(g["val_loss"].tolist()) for _, g in history.groupby("stage", sort=False))


def half_budget_gain(history: pd.DataFrame | None) -> float:
    """What the second half of a training's budget bought: ``(half - final) / |half|`` of the
    validation loss, ``half`` from ``history.attrs["half_budget"]``
    (:func:`cellnb.methods.training.half_budget_branch`) and ``final`` the last evaluation; NaN when
    the training did not measure it. :func:`cellnb.verdicts.converged_over_budget` is ``gain < 5 %``.

    A training in stages (:func:`stage_histories`) gains what its stage that gained most did (NaN
    unless every stage measured it): like the last-quarter rule (:func:`training_converged`), it has
    converged over its budget when every stage has.

    >>> h = pd.DataFrame({"val_loss": [2.0, 1.0, 0.9]}); h.attrs["half_budget"] = {"val_loss": 1.0}
    >>> round(half_budget_gain(h), 3)
    0.1
    """
    if history is None or "val_loss" not in history or not len(history):
        return float("nan")
    stages = stage_histories(history)
    if len(stages) > 1:
        gains = [half_budget_gain(h) for h in stages]
        return float(max(gains)) if all(np.isfinite(g) for g in gains) else float("nan")
    if "half_budget" not in history.attrs:
        return float("nan")
    half, final = float(history.attrs["half_budget"]["val_loss"]), float(history["val_loss"].iloc[-1])
    return (half - final) / abs(half) if half else float("nan")



def half_budget_summary(gains: Sequence[float]) -> dict[str, Any]:
    """The seeds' :func:`half_budget_gain` in one record (for :meth:`cellnb.results.Run.model`):
    ``half_budget_gain`` (mean over the seeds that measured it, NaN if none),
    ``seeds_converged_over_budget`` (gain under :data:`cellnb.verdicts.CONVERGENCE_TOL`) and
    ``seeds_half_budget`` (how many measured it).

    >>> half_budget_summary([0.02, 0.10, float("nan")])["seeds_converged_over_budget"]
    1
    """
    from cellnb.verdicts import CONVERGENCE_TOL

    measured = [float(g) for g in gains if g is not None and np.isfinite(g)]
    return {"half_budget_gain": float(np.mean(measured)) if measured else float("nan"),
            "seeds_converged_over_budget": int(sum(g < CONVERGENCE_TOL for g in measured)),
            "seeds_half_budget": len(measured)}

def half_budget_fields(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a :func:`half_budget_summary` that :meth:`cellnb.results.Run.model` records
    (``half_budget_gain``, ``seeds_converged_over_budget``, ``seeds_half_budget``); none when no
    seed measured it.

    >>> half_budget_fields(half_budget_summary([float("nan")]))
    {}
    >>> half_budget_fields(half_budget_summary([0.02, 0.10]))["seeds_half_budget"]
    2
    """
    if not summary.get("seeds_half_budget"):
        return {}
    return {k: summary[k] for k in ("half_budget_gain", "seeds_converged_over_budget", "seeds_half_budget")}


def half_budget_record_fields(histories: Sequence[pd.DataFrame | None]) -> dict[str, Any]:
    """:func:`half_budget_fields` of the seeds' histories in one call (what a chapter passes to
    :meth:`cellnb.results.Run.model` for a model trained once per seed).

    >>> h = pd.DataFrame({"val_loss": [2.0, 1.0, 0.99]}); h.attrs["half_budget"] = {"val_loss": 1.0}
    >>> half_budget_record_fields([h, None])["seeds_converged_over_budget"]
    1
    """
    return half_budget_fields(half_budget_summary([half_budget_gain(h) for h in histories]))


def half_budget_seconds(history: pd.DataFrame | None) -> float:
    """Wall seconds the half-budget branch of ``history`` took (0 when it ran none): what a caller
    timing the whole training subtracts to get the run's own speed.

    >>> h = pd.DataFrame({"val_loss": [1.0]}); h.attrs["half_budget"] = {"val_loss": 1.0, "seconds": 2.5}
    >>> half_budget_seconds(h), half_budget_seconds(None)
    (2.5, 0.0)
    """
    if history is None:
        return 0.0
    stages = stage_histories(history)
    if len(stages) > 1:
        return float(sum(half_budget_seconds(h) for h in stages))
    return float((history.attrs.get("half_budget") or {}).get("seconds", 0.0))

def fit_samples(method, model: nn.Module, train_samples: Sequence[Mapping[str, Any]],
                val_samples: Sequence[Mapping[str, Any]], task: str | None, *, steps: int, batch_size: int = 8,
                crop: int | None = 96, lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                loss: str | None = None, progress: bool = False, eval_every: int | None = None,
                val_crops: int = 2, weight_decay: float = 0.0, grad_clip: float | None = None,
                update_bn: bool = True, loss_kwargs: Mapping[str, Any] | None = None,
                keep_best: bool = False, precision: str | None = None, half_budget: bool = False) -> pd.DataFrame:
    """Train ``model`` (built by ``method``) for ``steps`` optimiser steps; returns the history.

    One row per evaluation: ``step``, ``train_loss`` (mean over the steps since the previous
    evaluation), each loss part, ``val_loss`` and ``val_<part>`` on fixed crops of ``val_samples``
    (``val_crops`` per sample), ``lr`` and ``seconds`` (since the start). ``history.attrs`` holds
    ``steps_per_s`` (training steps per second, validation excluded), ``train_s``,
    ``bn_recalibrated`` and ``stop_reason``. A NaN or infinite loss raises ``FloatingPointError``.

    ``keep_best``: at the end, restore the weights of the evaluation with the lowest ``val_loss``
    (``attrs["best_step"]``, ``attrs["best_val_loss"]``) before BatchNorm is recalibrated; the
    history still lists every evaluation. The chapters train a fixed budget (``keep_best=False``,
    the last weights); ``python -m cellnb.train`` keeps the best.

    ``precision``: the training forward pass's precision (None: the method's
    :attr:`~cellnb.methods.base.Method.train_precision`), resolved by
    :func:`cellnb.utils.training_precision` (bfloat16 autocast only where the device computes it
    natively) and recorded as ``attrs["precision"]``. The loss, the validation loss, BatchNorm
    recalibration and prediction run in float32.

    ``half_budget``: also measure the validation loss that half the budget, annealed, reaches
    (:func:`half_budget_branch` from step ``half_budget_plan(steps)[0]``), recorded as
    ``attrs["half_budget"]`` = ``{"steps", "branch_from", "val_loss", "seconds"}`` for
    :func:`cellnb.verdicts.converged_over_budget`. The main run is unchanged by it; its cost is the
    branch's steps (10 % of the budget), not counted in ``steps_per_s``.
    """
    from cellnb.train import _EarlyStopping, recalibrate_batchnorm
    from cellnb.utils import autocast, float32_outputs, select_device, training_precision

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not train_samples:
        raise ValueError("fit_samples needs training samples")
    if not val_samples:
        raise ValueError("fit_samples needs validation samples (a held-out part of the training data)")
    if crop is not None and method.multiple > 1 and crop % method.multiple:
        raise ValueError(f"crop {crop} is not a multiple of {method.name}'s size multiple {method.multiple}")
    device = select_device(device) if not isinstance(device, torch.device) else device
    precision = training_precision(method.train_precision if precision is None else precision, device)
    method.check_task(task)
    loss_fn = method.loss(loss, task, **dict(loss_kwargs or {}))
    train = [prepare_sample(method, s, task) for s in train_samples]
    val = [prepare_sample(method, s, task) for s in val_samples]
    if crop is None:  # whole images: pad every sample to one common size
        hmax = max(p["image"].shape[-2] for p in train + val)
        wmax = max(p["image"].shape[-1] for p in train + val)
        crop_hw = (int(np.ceil(hmax / method.multiple) * method.multiple), int(np.ceil(wmax / method.multiple) * method.multiple))

        def pad_all(p):
            return {k: (_pad_to(v, *crop_hw, image=k == "image") if _spatial(v, p["image"].shape[-2:]) else v)
                    for k, v in p.items()}

        train, val = [pad_all(p) for p in train], [pad_all(p) for p in val]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    val_rng = np.random.default_rng(seed + 7919)
    val_items = [augment(p, crop, val_rng if crop is not None else None, method.multiple) for p in val
                 for _ in range(val_crops if crop is not None else 1)]
    # validation crops: random position and orientation, drawn once (the same set at every evaluation)
    val_batches = [collate(val_items[i:i + batch_size]) for i in range(0, len(val_items), batch_size)]

    def train_batch() -> dict[str, torch.Tensor]:
        idx = rng.integers(0, len(train), batch_size)
        return collate([augment(train[i], crop, rng, method.multiple) for i in idx])

    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
             if steps >= 4 else None)
    at = (set(range(int(eval_every), steps + 1, int(eval_every))) | {steps} if eval_every
          else evaluation_steps(steps, 10))

    def validate() -> dict[str, float]:
        model.eval()
        sums: dict[str, float] = {}
        seen = 0
        with torch.no_grad():
            for b in val_batches:
                b = _to(b, device)
                total, parts = loss_fn(model(b["image"]), b)
                n = int(b["image"].shape[0])
                seen += n
                sums["val_loss"] = sums.get("val_loss", 0.0) + float(total) * n
                for k, v in _parts(parts).items():
                    sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + v * n
        model.train()
        return {k: v / max(seen, 1) for k, v in sums.items()}

    rows: list[dict[str, Any]] = []
    # keep_best: track the lowest val_loss and its weights; patience is never consulted (no early stop)
    best = _EarlyStopping(monitor="val_loss", patience=0, index="step") if keep_best else None
    t0 = time.perf_counter()
    train_time = 0.0
    sums: dict[str, float] = {}
    n_since = 0
    model.train()
    def optimise(batch: Mapping[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        opt.zero_grad(set_to_none=True)
        with autocast(precision, device):
            out = model(batch["image"])
        total, parts = loss_fn(float32_outputs(out), batch)
        parts = _parts(parts)
        if not torch.isfinite(total.detach()).all():
            shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items()) or "none"
            raise FloatingPointError(f"{method.name}: non-finite loss {float(total.detach()):.4g} at step {step}; parts: {shown}")
        total.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        return total, parts

    plan = half_budget_plan(steps) if half_budget else None
    half: dict[str, Any] | None = None
    for step in range(1, steps + 1):
        batch = _to(train_batch(), device)
        t_step = time.perf_counter()
        current_lr = float(opt.param_groups[0]["lr"])
        total, parts = optimise(batch, step)
        if sched is not None:
            sched.step()
        train_time += time.perf_counter() - t_step
        if plan is not None and step == plan[0]:
            half = half_budget_record(plan, lambda: optimise(_to(train_batch(), device), step), lambda: validate()["val_loss"],
                                      modules=[model, *([loss_fn] if isinstance(loss_fn, nn.Module) else [])],
                                      optimizers=[opt], rngs=[rng])
        sums["train_loss"] = sums.get("train_loss", 0.0) + float(total.detach())
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        n_since += 1
        if step in at:
            row: dict[str, Any] = {"step": step, **{k: v / n_since for k, v in sums.items()}, **validate(),
                                   "lr": current_lr, "seconds": time.perf_counter() - t0}
            rows.append(row)
            sums, n_since = {}, 0
            if best is not None:
                best.step(row, model)
            if progress:
                print(f"{method.name} step {step}/{steps}: train {row['train_loss']:.4g}, val {row['val_loss']:.4g}", flush=True)
    history = pd.DataFrame(rows)
    if best is not None and best.restore(model):
        history.attrs.update({"best_step": best.best_epoch, "best_val_loss": best.best})
    bn = False
    if update_bn:
        n_bn = max(4, min(16, (len(train) * 2) // batch_size + 1))
        bn = recalibrate_batchnorm(model, [train_batch()["image"] for _ in range(n_bn)], device)
    model.eval()
    history.attrs.update({"steps_per_s": steps / max(train_time, 1e-9), "train_s": time.perf_counter() - t0,
                          "bn_recalibrated": bool(bn), "stop_reason": "completed", "precision": precision})
    if half is not None:
        history.attrs["half_budget"] = half
    return history
