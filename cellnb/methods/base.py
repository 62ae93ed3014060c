"""The method layer's contract: one :class:`Method` per paper, one :class:`Prediction` per image.

A method is everything that defines a paper's recipe, in one place (the spirit of stardist's
``StarDist2D.predict_instances`` and MONAI bundles):

* ``tasks``: what it answers, a subset of :data:`TASKS` (``count``, ``mask``, ``instances``, ``sr``);
* ``sizes``: named model sizes, ``"paper"`` (the published network) and the slim ones the profiles use;
* :meth:`Method.build`: the network at a size, in the method's ``memory_format`` (``"channels_last"``
  where that trains measurably faster on a CPU, see the speed chapter; else PyTorch's default),
  trained in its ``train_precision`` (bfloat16 autocast where that is measurably faster and the device
  computes bfloat16 natively; else float32);
* ``losses`` and :meth:`Method.loss`: the paper-faithful training loss first, then named fixed and
  ablation variants; the returned function follows :func:`cellnb.train.fit`'s contract
  ``loss_fn(outputs, batch) -> (total, parts)``;
* :meth:`Method.targets`: the training targets it needs from an annotated sample
  ``{"image", "labels" | "points" | "mask"}``;
* :meth:`Method.normalize`: its input normalisation;
* :meth:`Method.postprocess`: network outputs of one image -> :class:`Prediction`;
* :meth:`Method.predict`: image of any size -> :class:`Prediction` (padding to the network's size
  multiple, or tiling with overlap for large images, is the method's job, not the caller's).

Register a method with :func:`register_method`; :func:`get_method` and :func:`list_methods` find them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnb.utils import PRECISIONS

__all__ = ["TASKS", "Prediction", "Method", "register_method", "get_method", "list_methods",
           "pad_to_multiple", "predict_tiled", "remember_training_crop", "training_tile"]

TASKS: tuple[str, ...] = ("count", "mask", "instances", "sr")

_REGISTRY: dict[str, "Method"] = {}


@dataclass
class Prediction:
    """What a method says about one image; fields it does not predict stay None.

    ``count`` (float), ``foreground`` ((H, W) float32 probability), ``labels`` ((H, W) int32
    instances, 0 = background), ``sr_image`` ((C, sH, sW) float32 in [0, 1]), ``maps`` (any other
    per-pixel output by name: density, marker, boundary probabilities).
    """

    count: float | None = None
    foreground: np.ndarray | None = None
    labels: np.ndarray | None = None
    sr_image: np.ndarray | None = None
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) on the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        pad_mode = mode if (ph < h and pw < w) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=pad_mode)
    return x, (h, w)


def _crop_outputs(out: Mapping[str, torch.Tensor], hw: tuple[int, int], scale: int = 1) -> dict[str, torch.Tensor]:
    h, w = hw
    cropped = {}
    for key, value in out.items():
        if value.ndim == 4:
            s = scale if key == "sr_image" else 1
            cropped[key] = value[..., : h * s, : w * s]
        else:
            cropped[key] = value
    return cropped


def predict_tiled(model: nn.Module, x: torch.Tensor, multiple: int, tile: int = 512, overlap: int = 64,
                  scale: int = 1) -> dict[str, torch.Tensor]:
    """Run ``model`` on (1, C, H, W) in overlapping tiles and blend per-pixel outputs (linear ramps).

    Per-pixel outputs (4-D) are blended; ``sr_image`` is ``scale`` times larger than the input and is
    cropped and blended at its own resolution. A global ``count`` is replaced by the sum of the
    blended density when the model has one (counts of tiles would double-count the overlaps), else by
    the area-weighted sum of tile counts.
    """
    _, _, h, w = x.shape
    if h <= tile and w <= tile:
        xp, hw = pad_to_multiple(x, multiple)
        result = _crop_outputs(model(xp), hw, scale)
        if "density" in result and "count" in result and xp.shape[-2:] != x.shape[-2:]:
            # a global count of the padded image counts the reflected border too: use the cropped map
            result["count"] = result["density"].sum(dim=(1, 2, 3))
        return result
    step = tile - overlap
    acc: dict[str, torch.Tensor] = {}
    weights: dict[int, torch.Tensor] = {}
    count_sum = 0.0
    ramp = torch.ones(tile)
    if overlap:
        ramp[:overlap] = torch.linspace(0.05, 1, overlap)
        ramp[-overlap:] = torch.linspace(1, 0.05, overlap)
    tops = list(range(0, max(h - tile, 0) + 1, step)) + ([h - tile] if h > tile and (h - tile) % step else [])
    lefts = list(range(0, max(w - tile, 0) + 1, step)) + ([w - tile] if w > tile and (w - tile) % step else [])
    for top in tops:
        for left in lefts:
            top_, left_ = max(top, 0), max(left, 0)
            patch = x[..., top_:top_ + tile, left_:left_ + tile]
            pp, hw = pad_to_multiple(patch, multiple)
            out = _crop_outputs(model(pp), hw, scale)
            ph, pw = hw
            base = (ramp[:ph, None] * ramp[None, :pw]).to(x.device)
            for key, value in out.items():
                if value.ndim == 4:
                    s = scale if key == "sr_image" else 1
                    wt = base.repeat_interleave(s, 0).repeat_interleave(s, 1)[None, None] if s > 1 else base[None, None]
                    if key not in acc:
                        acc[key] = torch.zeros(1, value.shape[1], h * s, w * s, device=x.device)
                    if s not in weights:
                        weights[s] = torch.zeros(1, 1, h * s, w * s, device=x.device)
                    acc[key][..., top_ * s:(top_ + ph) * s, left_ * s:(left_ + pw) * s] += value * wt
                elif key == "count":
                    count_sum += float(value.sum()) * (ph * pw) / float(tile * tile)
            for s in weights:
                wt = base.repeat_interleave(s, 0).repeat_interleave(s, 1)[None, None] if s > 1 else base[None, None]
                weights[s][..., top_ * s:(top_ + ph) * s, left_ * s:(left_ + pw) * s] += wt
    result = {key: value / weights[scale if key == "sr_image" else 1].clamp_min(1e-8) for key, value in acc.items()}
    if "density" in result:
        result["count"] = result["density"].sum(dim=(1, 2, 3))
    elif count_sum:
        result["count"] = torch.tensor([count_sum])
    return result


#: the attribute :func:`remember_training_crop` sets on a trained network (not in its state dict)
TRAINING_CROP_ATTR = "cellnb_training_crop"


def remember_training_crop(model: nn.Module, crop: int) -> nn.Module:
    """Record on ``model`` the crop it was trained on, for a method that predicts in tiles of that
    crop (:attr:`Method.predicts_in_training_tiles`). Returns ``model``."""
    setattr(model, TRAINING_CROP_ATTR, int(crop))
    return model


def training_tile(model: nn.Module, tile: int | None, default: int, method: str = "") -> int:
    """The tile a tile-protocol method predicts ``model`` in: the crop it was trained on
    (:func:`remember_training_crop`), else ``tile``, else ``default``.

    A global count head whose pooling averages outputs the count of a training crop whatever its
    input size, so a tile of another size would scale every count by the area ratio; a ``tile``
    that differs from the recorded crop is an error.

    >>> m = remember_training_crop(nn.Identity(), 128)
    >>> training_tile(m, None, 64), training_tile(nn.Identity(), None, 64), training_tile(m, 128, 64)
    (128, 64, 128)
    """
    trained = getattr(model, TRAINING_CROP_ATTR, None)
    if tile is None:
        return int(trained or default)
    if trained is not None and int(tile) != int(trained):
        raise ValueError(f"{method or 'this method'} counts by the tile protocol: the model was trained on "
                         f"{trained}x{trained} crops, so it predicts {trained}x{trained} tiles, got tile={tile}")
    return int(tile)


def channels_first(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) or (C, H, W) image -> float32 (C, H, W) (the layout every method normalises)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4) and image.shape[0] not in (1, 3, 4):
        return np.moveaxis(image, -1, 0)
    return image


class Method:
    """Base class of a paper's recipe; subclasses set the class attributes and override the hooks."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()
    sizes: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    losses: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[bool] = True
    multiple: ClassVar[int] = 1
    sr_scale: ClassVar[int] = 1
    #: memory format of the built network's weights: ``"contiguous"`` (NCHW, PyTorch's default) or
    #: ``"channels_last"`` (NHWC weights: convolutions then run and return channels-last even on
    #: NCHW inputs). Chosen per method from the measured training speed (the speed chapter).
    memory_format: ClassVar[str] = "contiguous"
    #: precision of the forward pass while training with :func:`cellnb.methods.training.fit_samples`:
    #: ``"float32"``, or ``"bfloat16"`` (autocast: bfloat16 convolutions; float32 weights, optimiser,
    #: loss and prediction) where the device computes bfloat16 natively (:func:`cellnb.utils.native_bfloat16`),
    #: float32 elsewhere. Chosen per method from the measured training speed (the speed chapter).
    train_precision: ClassVar[str] = "float32"
    #: whether :meth:`predict` cuts an image into tiles of the crop the model was trained on (a global
    #: count head whose pooling averages, SSRNet's and ELMGAN's: its count does not scale with the
    #: input size). Such a method's ``train`` records the crop (:func:`remember_training_crop`) and its
    #: ``predict`` uses it (:func:`training_tile`); a caller's tile for large images (the CLI's
    #: ``--tile``) does not apply to it.
    predicts_in_training_tiles: ClassVar[bool] = False
    #: whether :meth:`train` takes ``half_budget=True`` and then records ``history.attrs["half_budget"]``
    #: (a training in stages: each stage's history, :func:`cellnb.methods.training.stage_histories`),
    #: the validation loss half the budget reaches (:func:`cellnb.methods.training.half_budget_branch`).
    #: The generic loop does; a subclass that overrides ``train`` is False unless it sets it itself.
    measures_half_budget: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's :meth:`build` returns its network in the method's ``memory_format``; a
        subclass with its own :meth:`train` measures the half budget only where it says so."""
        super().__init_subclass__(**kwargs)
        if "train" in cls.__dict__ and "measures_half_budget" not in cls.__dict__:
            cls.measures_half_budget = False
        if cls.memory_format not in ("contiguous", "channels_last"):
            raise ValueError(f"{cls.__name__}.memory_format must be 'contiguous' or 'channels_last', "
                             f"got {cls.memory_format!r}")
        if cls.train_precision not in PRECISIONS:
            raise ValueError(f"{cls.__name__}.train_precision must be one of {list(PRECISIONS)}, "
                             f"got {cls.train_precision!r}")
        raw = cls.__dict__.get("build")
        if raw is not None and not getattr(raw, "_sets_memory_format", False):
            @functools.wraps(raw)
            def build(self, *args: Any, **kw: Any) -> nn.Module:
                return self.in_memory_format(raw(self, *args, **kw))

            build._sets_memory_format = True  # type: ignore[attr-defined]
            cls.build = build  # type: ignore[method-assign]

    def in_memory_format(self, model: nn.Module) -> nn.Module:
        """``model`` with its weights in this method's :attr:`memory_format` (in place)."""
        if self.memory_format == "channels_last":
            return model.to(memory_format=torch.channels_last)
        return model

    @property
    def primary_task(self) -> str:
        """The first of :attr:`tasks` that is not super-resolution (``"sr"`` for a pure SR method):
        the task a method is built for when one network has to stand for it (speed, memory format)."""
        return next((t for t in self.tasks if t != "sr"), "sr")

    # ----------------------------------------------------------------- hooks
    def build(self, size: str = "slim", in_channels: int = 1, task: str | None = None, **overrides: Any) -> nn.Module:
        raise NotImplementedError(f"method {self.name!r} has no network")

    def loss(self, variant: str | None = None, task: str | None = None, **kwargs: Any) -> Callable:
        raise NotImplementedError(f"method {self.name!r} has no training loss")

    def targets(self, sample: Mapping[str, np.ndarray], task: str | None = None) -> dict[str, np.ndarray]:
        """Training targets from an annotated sample (default: none beyond the image)."""
        return {}

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, C) image -> float32 (C, H, W) network input. Default: min-max to [0, 1]."""
        image = channels_first(image)
        lo, hi = float(image.min()), float(image.max())
        return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)

    def postprocess(self, outputs: Mapping[str, torch.Tensor], task: str | None = None, **kwargs: Any) -> Prediction:
        raise NotImplementedError(f"method {self.name!r} has no post-processing")

    def instances_from_maps(self, maps: Mapping[str, np.ndarray], threshold: float = 0.5, **kwargs: Any) -> np.ndarray:
        """Instance labels from probability maps: ``mask`` (foreground) and whatever else the method
        predicts (``interior``, ``boundary``, ``marker``, ``density``; the keys of
        :meth:`oracle_maps`). The instance step of :meth:`postprocess`, and what :meth:`ceiling` runs
        on perfect maps. Default: the distance-transform watershed of ``mask > threshold``
        (:func:`cellnb.floors.distance_watershed`; ``kwargs`` go to it)."""
        from cellnb import floors
        from cellnb.postprocess import binarize

        return floors.distance_watershed(binarize(np.asarray(maps["mask"]), threshold), **kwargs)

    def oracle_maps(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """The perfect maps of true instance ``labels``, in the layout :meth:`instances_from_maps`
        reads. Default :func:`cellnb.floors.oracle_maps`."""
        from cellnb import floors

        return floors.oracle_maps(labels)

    def ceiling(self, labels: np.ndarray, **post: Any) -> np.ndarray:
        """The ceiling of this method's post-processing: :meth:`instances_from_maps` of
        :meth:`oracle_maps` of the true ``labels`` (scored against ``labels``, it bounds what any
        model of this method can reach through that post-processing). ``post``: the settings of the
        instance step, as for :meth:`instances_from_maps` (e.g. those :meth:`choose_postprocess` chose)."""
        return self.instances_from_maps(self.oracle_maps(labels), **post)

    def postprocess_options(self, task: str | None = None) -> list[dict[str, Any]]:
        """The settings of the instance step (keyword arguments of :meth:`instances_from_maps`) that
        :meth:`choose_postprocess` picks from on validation images; a tie keeps the earlier one, so
        the first is the fallback. Default: the foreground threshold of the default instance step,
        from :data:`cellnb.postprocess.MASK_THRESHOLDS` (0.5 first): a sigmoid head trained briefly is
        not calibrated. A method whose :meth:`instances_from_maps` differs overrides both."""
        from cellnb.postprocess import MASK_THRESHOLDS

        return [{"threshold": t} for t in MASK_THRESHOLDS]

    def prediction_maps(self, prediction: Prediction) -> dict[str, np.ndarray]:
        """The maps :meth:`instances_from_maps` reads, from a :class:`Prediction`: its ``maps``,
        with its ``foreground`` as ``mask`` where the maps have none."""
        maps = dict(prediction.maps or {})
        if prediction.foreground is not None:
            maps.setdefault("mask", np.asarray(prediction.foreground, np.float32))
        return maps

    def choose_postprocess(self, maps: list[Mapping[str, np.ndarray]], labels: list[np.ndarray],
                           options: list[dict[str, Any]] | None = None, metric: str = "aji",
                           task: str | None = None) -> dict[str, Any]:
        """The option of ``options`` (default :meth:`postprocess_options`) whose instances
        (:meth:`instances_from_maps` of each image's ``maps``) have the best mean ``metric``
        (a key of :func:`cellnb.floors.instance_scores`) against the true ``labels``. Pass
        validation images, never test ones. A tie keeps the earlier option: the first one wins
        unless another is strictly better."""
        from cellnb import floors
        from cellnb.postprocess import first_best

        options = list(self.postprocess_options(task) if options is None else options)
        if not options:
            raise ValueError("choose_postprocess needs at least one option")
        if len(maps) != len(labels) or not len(maps):
            raise ValueError(f"choose_postprocess needs one label image per map set, got {len(maps)} maps "
                             f"and {len(labels)} label images")
        if len(options) == 1:
            return dict(options[0])
        return dict(first_best(options, lambda option: np.mean(
            [floors.instance_scores(true, self.instances_from_maps(m, **option))[metric]
             for m, true in zip(maps, labels)])))

    def tune_postprocess(self, model: nn.Module, samples: list[Mapping[str, Any]], *, device: str | torch.device = "cpu",
                         options: list[dict[str, Any]] | None = None, task: str = "instances",
                         predictions: list[Prediction] | None = None, **predict_kwargs: Any) -> dict[str, Any]:
        """:meth:`choose_postprocess` on ``model``'s predictions of annotated ``samples`` (``image``,
        ``labels``: validation images, never test ones); ``predict_kwargs`` go to :meth:`predict`.
        ``task`` is what the model predicts: ``"instances"``, or ``"mask"`` for a foreground-only
        method whose instances are :meth:`instances_from_maps` of its foreground. ``predictions``:
        the caller's predictions of ``samples`` for ``task``, if it has them (None: predicted here)."""
        preds = self.predict_samples(model, samples, task, device=device, predictions=predictions, **predict_kwargs)
        return self.choose_postprocess([self.prediction_maps(p) for p in preds], [s["labels"] for s in samples],
                                       options=options, task=task)

    def tune_mask_threshold(self, model: nn.Module, samples: list[Mapping[str, Any]], *,
                            device: str | torch.device = "cpu", predictions: list[Prediction] | None = None,
                            **predict_kwargs: Any) -> float:
        """The foreground threshold of ``model`` for its ``mask`` task, chosen on annotated ``samples``
        (``image``, ``mask``: validation images, never test ones) by
        :func:`cellnb.postprocess.choose_threshold` (best mean Dice; 0.5 unless another is strictly
        better); ``predict_kwargs`` go to :meth:`predict`, ``predictions`` as in :meth:`tune_postprocess`.
        The mask-task twin of :meth:`tune_postprocess`."""
        from cellnb.postprocess import choose_threshold

        preds = self.predict_samples(model, samples, "mask", device=device, predictions=predictions, **predict_kwargs)
        return choose_threshold([p.foreground for p in preds], [np.asarray(s["mask"]) for s in samples])

    def predict_samples(self, model: nn.Module, samples: list[Mapping[str, Any]], task: str | None = None, *,
                        device: str | torch.device = "cpu", predictions: list[Prediction] | None = None,
                        **predict_kwargs: Any) -> list[Prediction]:
        """:meth:`predict` of every sample's ``image``, or ``predictions`` when the caller has them
        already (checked: one per sample), so that a choice and a score on the same validation images
        share one prediction of each."""
        if predictions is None:
            return [self.predict(model, s["image"], task, device=device, **predict_kwargs) for s in samples]
        if len(predictions) != len(samples):
            raise ValueError(f"need one prediction per sample, got {len(predictions)} for {len(samples)} samples")
        return list(predictions)

    def instances_with(self, prediction: Prediction, settings: Mapping[str, Any] | None = None) -> np.ndarray:
        """The instances of ``prediction`` with the instance-step ``settings`` (e.g. those of
        :meth:`tune_postprocess`): :meth:`instances_from_maps` of its maps, or its own ``labels``
        (the method's defaults) when there are no settings."""
        if not settings:
            return prediction.labels
        return self.instances_from_maps(self.prediction_maps(prediction), **dict(settings))

    def train(self, model: nn.Module, train_samples: list[Mapping[str, np.ndarray]],
              val_samples: list[Mapping[str, np.ndarray]], task: str, *, steps: int, batch_size: int = 8,
              crop: int | None = 96, lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
              loss: str | None = None, progress: bool = False, **kwargs: Any):
        """Train ``model`` on annotated samples for ``task`` and return the history (a DataFrame with
        ``train_loss`` and ``val_loss`` per evaluation). The default is
        :func:`cellnb.methods.training.fit_samples` (random crops with flips and 90° rotations, targets
        from :meth:`targets`, loss from :meth:`loss`, one-cycle Adam); methods that train differently
        (a GAN, a two-stage pipeline) override it."""
        from cellnb.methods.training import fit_samples

        return fit_samples(self, model, train_samples, val_samples, task, steps=steps, batch_size=batch_size,
                           crop=crop, lr=lr, seed=seed, device=device, loss=loss, progress=progress, **kwargs)

    # ----------------------------------------------------------------- shared
    def check_task(self, task: str | None) -> str | None:
        if task is not None and task not in self.tasks:
            raise ValueError(f"method {self.name!r} does not do task {task!r}; it does {list(self.tasks)}")
        return task

    def check_size(self, size: str) -> Mapping[str, Any]:
        if size not in self.sizes:
            raise ValueError(f"method {self.name!r} has no size {size!r}; choose from {sorted(self.sizes)}")
        return self.sizes[size]

    @torch.no_grad()
    def predict(self, model: nn.Module | None, image: np.ndarray, task: str | None = None, *, device: str | torch.device = "cpu",
                tile: int = 512, overlap: int = 64, **post: Any) -> Prediction:
        """Predict one image of any size: normalise, pad (or tile), run, crop, post-process."""
        self.check_task(task)
        x = torch.from_numpy(self.normalize(image))[None].to(device)
        model.eval()
        out = predict_tiled(model, x, self.multiple, tile=tile, overlap=overlap, scale=self.sr_scale)
        return self.postprocess({k: v[0] for k, v in out.items()}, task=task, **post)

    def __repr__(self) -> str:
        return f"<method {self.name}: tasks {list(self.tasks)}, sizes {list(self.sizes)}>"


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: instantiate and register a :class:`Method` subclass under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} is registered twice")
    unknown = set(cls.tasks) - set(TASKS)
    if unknown or not cls.tasks:
        raise ValueError(f"method {cls.name!r}: tasks {sorted(unknown) or '[]'} not in {TASKS}")
    _REGISTRY[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    """The registered method ``name``; a clear error lists the choices."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(_REGISTRY)}") from None


def list_methods(task: str | None = None) -> list[str]:
    """Names of the registered methods, those doing ``task`` when given (unknown task -> error)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}")
    return sorted(n for n, m in _REGISTRY.items() if task is None or task in m.tasks)
