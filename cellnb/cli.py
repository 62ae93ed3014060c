"""Command lines for your own images: train, predict, export (``python -m cellnb.train|predict|export``).

* ``python -m cellnb.train --method unet --task count --images DIR --points DIR --out MODEL`` trains a
  method of :mod:`cellnb.methods` on your annotated images (layouts: :mod:`cellnb.userdata`), with a
  progress bar, a validation split, early stopping on it (the best validation checkpoint is kept), the
  training curve as a PNG, and a model card (JSON) with the validation metrics next to their floor.
* ``python -m cellnb.predict --model MODEL --images DIR|GLOB --out DIR`` writes ``counts.csv``, label or
  mask TIFFs and overlay PNGs; large images are tiled with overlap by the method.
* ``python -m cellnb.export --model MODEL --out model.zip`` writes a bioimage.io model package.

Every output folder is written under a temporary name and renamed when complete: an interrupted run
leaves nothing half-written. An existing output is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

CARD = "model_card.json"
CHECKPOINT = "model.pt"
CARD_FORMAT = "cellnb-model-card/1"

#: Training budget per profile (steps of ``batch_size`` random crops of ``crop`` px).
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {"size": "slim", "steps": 12, "crop": 48, "batch_size": 2, "lr": 3e-3},
    "quick": {"size": "slim", "steps": 1500, "crop": 96, "batch_size": 8, "lr": 3e-3},
    "full": {"size": "paper", "steps": 20000, "crop": 256, "batch_size": 8, "lr": 1e-3},
}


class CliError(Exception):
    """A problem the user can fix; printed without a traceback, exit status 2."""


# --------------------------------------------------------------------------- helpers


@contextmanager
def atomic_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out`` in one rename."""
    out = _free_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, body: Callable[[argparse.Namespace], int]) -> int:
    """Parse ``argv`` and run ``body``; a :class:`CliError`, ``ValueError`` or missing file is printed
    as ``error: ...`` and gives exit status 2 (argparse's own errors exit 2 too)."""
    args = parser.parse_args(argv)
    try:
        return body(args)
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _free_out(out: str | Path, overwrite: bool) -> Path:
    """``out`` as a Path, refused when it exists and ``overwrite`` is not set (nothing is written
    before this check)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise CliError(f"{out} exists; pass --overwrite to replace it")
    return out


def _get_method(name: str, task: str):
    from cellnb.methods import get_method

    try:
        method = get_method(name)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if task not in method.tasks:
        raise CliError(f"method {name!r} does not do task {task!r}; it does {list(method.tasks)}")
    if not method.trainable:
        raise CliError(f"method {name!r} has nothing to train; use it directly with python -m cellnb.predict")
    return method


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if not 0 < fraction < 1:
        raise CliError(f"--val-fraction must be between 0 and 1, got {fraction}")
    if n < 2:
        raise CliError(f"training needs at least 2 annotated images (1 for validation), found {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(fraction * n))), n - 1)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def _in_channels(samples: Sequence[Mapping[str, Any]]) -> int:
    return 1 if samples[0]["image"].ndim == 2 else int(samples[0]["image"].shape[-1])


def validation_metrics(method, model, task: str, train: Sequence[Mapping[str, Any]], val: Sequence[Mapping[str, Any]],
                       device: str = "cpu", post: Mapping[str, Any] | None = None,
                       predictions: Sequence[Any] | None = None) -> dict[str, Any]:
    """The model's validation metric per image next to its floor (constant mean count; Otsu + watershed;
    Otsu), with ``beats_floor`` from :func:`cellnb.verdicts.beats_floor`. ``post``: the instance-step
    settings to score instances with (see :meth:`cellnb.methods.base.Method.tune_postprocess`).
    ``predictions``: the model's :class:`~cellnb.methods.base.Prediction` of each ``val`` image when
    the caller has them already (None: predicted here)."""
    from cellnb import floors
    from cellnb.metrics import dice
    from cellnb.verdicts import beats_floor

    preds = method.predict_samples(model, list(val), task, device=device, predictions=predictions)
    if task == "count":
        true = np.array([s["count"] for s in val], float)
        model_err = np.abs(np.array([p.count for p in preds], float) - true)
        floor_err = np.abs(floors.constant_count([s["count"] for s in train], len(val)) - true)
        return {"metric": "count_mae", "value": float(model_err.mean()), "floor": float(floor_err.mean()),
                "floor_name": "constant training-mean count",
                "beats_floor": beats_floor(model_err, floor_err, better="lower"), "n_images": len(val)}
    if task == "instances":
        model_ap = np.array([floors.instance_scores(s["labels"], method.instances_with(p, post))["ap50"]
                             for s, p in zip(val, preds)])
        floor_ap = np.array([floors.instance_scores(s["labels"], floors.otsu_watershed(s["image"]))["ap50"] for s in val])
        return {"metric": "ap50", "value": float(model_ap.mean()), "floor": float(floor_ap.mean()),
                "floor_name": "Otsu + distance watershed",
                "beats_floor": beats_floor(model_ap, floor_ap, better="higher"), "n_images": len(val)}
    threshold = float((post or {}).get("threshold", 0.5))  # a mask model's chosen foreground threshold
    model_d = np.array([dice(p.foreground > threshold, s["mask"] > 0) for s, p in zip(val, preds)])
    floor_d = np.array([dice(floors.otsu_mask(s["image"]) > 0, s["mask"] > 0) for s in val])
    return {"metric": "dice", "value": float(model_d.mean()), "floor": float(floor_d.mean()), "floor_name": "Otsu",
            "beats_floor": beats_floor(model_d, floor_d, better="higher"), "n_images": len(val)}


def _early_stopping_kwargs(method) -> dict[str, Any]:
    """``keep_best=True`` (restore the best validation evaluation) for methods trained by the base
    :meth:`~cellnb.methods.base.Method.train` (:func:`cellnb.methods.training.fit_samples`); methods
    with a training of their own (a GAN, a two-stage pipeline) keep their last weights."""
    from cellnb.methods.base import Method

    return {"keep_best": True} if type(method).train is Method.train else {}


def _data_summary(samples: Sequence[Mapping[str, Any]], images: str) -> dict[str, Any]:
    shapes = np.array([s["image"].shape[:2] for s in samples])
    counts = np.array([s["count"] for s in samples], float)
    return {"images": str(images), "n_images": len(samples),
            "height": [int(shapes[:, 0].min()), int(shapes[:, 0].max())],
            "width": [int(shapes[:, 1].min()), int(shapes[:, 1].max())],
            "count_mean": float(counts.mean()), "count_min": int(counts.min()), "count_max": int(counts.max())}


def _plot_history(history, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = history["step"] if "step" in history else np.arange(1, len(history) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(x, history["train_loss"], label="training loss")
    if "val_loss" in history:
        ax.plot(x, history["val_loss"], label="validation loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_model(model_dir: str | Path, device: str = "cpu"):
    """(method, model, card) from a folder written by ``python -m cellnb.train``."""
    import torch

    model_dir = Path(model_dir)
    card_path = model_dir / CARD
    if not card_path.is_file():
        raise CliError(f"{model_dir}: no {CARD} (expected a folder written by python -m cellnb.train)")
    card = json.loads(card_path.read_text())
    if card.get("format") != CARD_FORMAT:
        raise CliError(f"{card_path}: format {card.get('format')!r}, expected {CARD_FORMAT!r}")
    method = _get_method(card["method"], card["task"])
    model = method.build(card["size"], in_channels=card["in_channels"], task=card["task"], **card.get("build", {}))
    state = torch.load(model_dir / CHECKPOINT, map_location=device, weights_only=True)
    model.load_state_dict(state)
    if method.predicts_in_training_tiles:  # its tile protocol predicts in tiles of the training crop
        from cellnb.methods.base import remember_training_crop

        crop = int((card.get("settings") or {}).get("crop") or 0)
        if crop <= 0:  # a card without a usable crop (cards of old smoke runs recorded 0)
            raise CliError(f"{card_path}: settings.crop is {crop or 'missing'}; {card['method']} predicts in tiles of the crop "
                           f"it was trained on, so its card needs that crop (a positive multiple of {method.multiple}); "
                           "retrain with python -m cellnb.train")
        remember_training_crop(model, crop)
    return method, model.to(device).eval(), card


# --------------------------------------------------------------------------- train


def train_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellnb.train",
                                     description="Train a cellnb method on your own annotated images.")
    parser.add_argument("--method", required=True, help="a method of cellnb.methods (python -c 'from cellnb.methods "
                        "import list_methods; print(list_methods())')")
    parser.add_argument("--task", required=True, choices=["count", "mask", "instances"])
    parser.add_argument("--images", required=True, help="folder of images")
    ann = parser.add_mutually_exclusive_group(required=True)
    ann.add_argument("--points", help="folder of point CSVs (header y,x or x,y) or dot images")
    ann.add_argument("--labels", help="folder of instance label images or binary masks")
    ann.add_argument("--ctc", help="a Cell Tracking Challenge folder (uses --sequence); images come from it")
    parser.add_argument("--sequence", default="01")
    parser.add_argument("--out", required=True, help="output folder for the model")
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILE_SETTINGS))
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channel", type=int, default=None, help="0-based channel of RGB/multichannel images")
    parser.add_argument("--dot-colour", default=None, help="R,G,B of the dots in dot images (default: any non-zero)")
    parser.add_argument("--steps", type=int, default=None, help="override the profile's optimiser steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--half-budget-check", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the validation loss half the steps reach (10 %% more steps, the main run "
                        "unchanged) and report what the second half of the budget bought (default: on)")
    parser.add_argument("--overwrite", action="store_true")
    return _run(parser, argv, _train)


def _train(args: argparse.Namespace) -> int:
    import torch

    from cellnb import userdata
    from cellnb.utils import git_commit, seed_everything, select_device, versions
    from cellnb.methods.training import half_budget_gain, half_budget_seconds, training_converged
    from cellnb.report import fmt_gain
    from cellnb.verdicts import CONVERGENCE_TOL

    out = _free_out(args.out, args.overwrite)
    method = _get_method(args.method, args.task)
    colour = None
    if args.dot_colour:
        try:
            colour = tuple(int(v) for v in args.dot_colour.split(","))
            assert len(colour) == 3
        except (ValueError, AssertionError):
            raise CliError(f"--dot-colour must be R,G,B (e.g. 255,0,0), got {args.dot_colour!r}") from None
    if args.task == "count" and args.labels is None and args.ctc is None and args.points is None:
        raise CliError("counting needs --points (or --labels, whose instances are counted)")
    if args.task in ("instances", "mask") and args.points is not None:
        raise CliError(f"task {args.task!r} needs --labels (instance labels or masks) or --ctc, not --points")
    try:
        if args.ctc:
            samples = userdata.load_ctc_folder(args.ctc, args.sequence, args.channel)
        else:
            samples = userdata.load_samples(args.images, points=args.points, labels=args.labels,
                                            channel=args.channel, dot_colour=colour)
    except userdata.UserDataError as exc:
        raise CliError(str(exc)) from None
    try:  # the method's own targets say whether these annotations are enough (SSRNet's map needs masks)
        method.targets(samples[0], args.task)
    except KeyError as exc:
        raise CliError(f"method {args.method!r} cannot learn task {args.task!r} from these annotations: "
                       f"{exc.args[0] if exc.args else exc}") from None
    cfg = dict(PROFILE_SETTINGS[args.profile])
    if args.steps is not None:
        cfg["steps"] = int(args.steps)
    train_idx, val_idx = _split(len(samples), args.val_fraction, args.seed)
    train = [samples[i] for i in train_idx]
    val = [samples[i] for i in val_idx]
    smallest = min(min(s["image"].shape[:2]) for s in samples)
    crop = cfg["crop"]
    while crop > smallest and crop > 2 * method.multiple:
        crop //= 2
    crop = max(crop - crop % max(method.multiple, 1), method.multiple)  # the network's size multiple, at least one
    device = select_device(args.device)
    seed_everything(args.seed)
    in_channels = 1  # images are read as grey, or one channel (--channel)
    model = method.build(cfg["size"], in_channels=in_channels, task=args.task)
    print(f"training {method.name} ({cfg['size']}) for {args.task} on {len(train)} image(s), validating on "
          f"{len(val)}: {cfg['steps']} steps of {cfg['batch_size']} x {crop}^2 crops on {device}", flush=True)
    extra = {"half_budget": True} if args.half_budget_check and method.measures_half_budget else {}
    t0 = time.perf_counter()
    history = method.train(model, train, val, args.task, steps=cfg["steps"], batch_size=cfg["batch_size"],
                           crop=crop, lr=cfg["lr"], seed=args.seed, device=device, progress=True,
                           **_early_stopping_kwargs(method), **extra)
    seconds = time.perf_counter() - t0 - half_budget_seconds(history)  # the run's own time, without the branch
    gain = half_budget_gain(history)
    model.eval()
    # the instance step's open settings (e.g. U-SE-ResNet's marker threshold) are chosen on the validation
    # images; the validation score below is then measured on the images it was chosen on (slightly optimistic)
    # a mask model's foreground threshold likewise (cellnb.postprocess.choose_threshold: 0.5 unless better)
    # (the validation images are predicted once, for the choice and for the score)
    preds = method.predict_samples(model, val, args.task, device=device)
    post: dict[str, Any] = {}
    if args.task == "instances":
        post = method.tune_postprocess(model, val, device=device, predictions=preds)
    elif args.task == "mask":
        post = {"threshold": method.tune_mask_threshold(model, val, device=device, predictions=preds)}
    metrics = validation_metrics(method, model, args.task, train, val, device=device, post=post, predictions=preds)
    converged = training_converged(history)  # stage by stage for the MobileSR -> TinyU-Net pipeline
    card = {
        "format": CARD_FORMAT, "method": method.name, "paper": method.paper, "task": args.task, "size": cfg["size"],
        "in_channels": in_channels, "channel": args.channel, "multiple": method.multiple,
        "settings": {"profile": args.profile, **cfg, "crop": crop, "seed": args.seed, "val_fraction": args.val_fraction,
                     "device": str(device)},
        "data": {**_data_summary(samples, args.ctc or args.images), "n_train": len(train), "n_val": len(val),
                 "val_images": [s["name"] for s in val],
                 "annotations": str(args.points or args.labels or args.ctc)},
        "validation": metrics,
        "postprocess": post,
        "training": {"seconds": round(seconds, 1), "converged": converged,
                     "precision": history.attrs.get("precision", "float32"),
                     "best_step": history.attrs.get("best_step"), "stop_reason": history.attrs.get("stop_reason"),
                     "final_val_loss": float(history["val_loss"].iloc[-1]) if "val_loss" in history else None,
                     # cellnb.methods.training.half_budget_gain: the half-budget loss against the last
                     # evaluation (not the kept best one); None where it was not measured
                     "half_budget_gain": float(gain) if np.isfinite(gain) else None,
                     "converged_over_budget": bool(gain < CONVERGENCE_TOL) if np.isfinite(gain) else None},
        "versions": versions(), "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_dir(out, args.overwrite) as tmp:
        torch.save(model.state_dict(), tmp / CHECKPOINT)
        history.to_csv(tmp / "history.csv", index=False)
        _plot_history(history, tmp / "training_curve.png", f"{method.name} ({args.task})")
        (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n")
    m = metrics
    print(f"validation {m['metric']} {m['value']:.3g} (floor, {m['floor_name']}: {m['floor']:.3g}; "
          f"{'beats' if m['beats_floor'] else 'does NOT beat'} its floor); converged: {converged}")
    if np.isfinite(gain):
        # fmt_gain: the same cut digits as the book's tables, so 4.96 % does not print as 5.0 % "under 5 %"
        print(f"the second half of the steps lowered the validation loss by {fmt_gain(gain)} "
              + (f"(under {100 * CONVERGENCE_TOL:.0f} %: more steps are unlikely to help)" if gain < CONVERGENCE_TOL
                 else f"({100 * CONVERGENCE_TOL:.0f} % or more: more --steps may still help)"))
    print(f"wrote {out}/ ({CHECKPOINT}, {CARD}, training_curve.png, history.csv)")
    return 0


# --------------------------------------------------------------------------- predict


def _overlay(image: np.ndarray, labels: np.ndarray | None, points: np.ndarray | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    h, w = image.shape
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1)))
    ax.imshow(image, cmap="gray")
    if labels is not None and labels.max():
        edges = np.ma.masked_where(~find_boundaries(labels, mode="inner"), np.ones_like(labels))
        ax.imshow(edges, cmap="autumn", alpha=0.9, interpolation="nearest")
    if points is not None and len(points):
        ax.plot(points[:, 1], points[:, 0], "r+", ms=4)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _density_peaks(density: np.ndarray, count: float) -> np.ndarray:
    from skimage.feature import peak_local_max

    k = int(round(count))
    if k <= 0:
        return np.zeros((0, 2), np.float32)
    return peak_local_max(density, min_distance=2, num_peaks=k, exclude_border=False).astype(np.float32)


def predict_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellnb.predict",
                                     description="Predict counts, masks or instances on a folder of images.")
    parser.add_argument("--model", required=True, help="a folder written by python -m cellnb.train")
    parser.add_argument("--images", required=True, help="folder of images or a glob pattern ('data/*.tif')")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=512, help="tile size for large images (overlapping tiles); a method that counts by "
                        "the tile protocol (SSRNet, ELMGAN) predicts in tiles of its training crop instead")
    parser.add_argument("--overwrite", action="store_true")
    return _run(parser, argv, _predict)


def _predict(args: argparse.Namespace) -> int:
    import tifffile

    from cellnb import userdata
    from cellnb.utils import select_device

    out = _free_out(args.out, args.overwrite)
    device = select_device(args.device)
    method, model, card = load_model(args.model, device)
    try:
        files = userdata.list_images(args.images)
    except userdata.UserDataError as exc:
        raise CliError(str(exc)) from None
    task = card["task"]
    failed: list[str] = []
    rows = []
    from tqdm.auto import tqdm

    with atomic_dir(out, args.overwrite) as tmp:
        for path in tqdm(files, desc="predict", unit="image", disable=os.environ.get("CELLNB_PROGRESS") == "0"):
            try:
                image = userdata.read_image(path, card.get("channel"))
            except userdata.UserDataError as exc:
                failed.append(f"{path.name}: {exc}")
                continue
            # --tile cuts large images for the methods that tile freely; a tile-protocol method
            # predicts in tiles of its training crop (Method.predicts_in_training_tiles)
            tile = None if method.predicts_in_training_tiles else args.tile
            pred = method.predict(model, image, task, device=device, tile=tile)
            stem = path.stem
            labels = method.instances_with(pred, card.get("postprocess")) if task == "instances" else pred.labels
            points = None
            if task == "count":
                count = float(pred.count)
                density = pred.maps.get("density")
                points = _density_peaks(density, count) if density is not None else None
            elif task == "instances":
                count = float(len(np.unique(labels[labels > 0])))
                tifffile.imwrite(tmp / f"{stem}_labels.tif", labels.astype(np.uint16 if labels.max() < 65536 else np.int32))
            else:
                mask = (pred.foreground > float((card.get("postprocess") or {}).get("threshold", 0.5))).astype(np.uint8)
                from skimage.measure import label as cc_label

                labels = cc_label(mask, connectivity=2)
                count = float(labels.max())
                tifffile.imwrite(tmp / f"{stem}_mask.tif", mask * 255)
            rows.append((path.name, count, image.shape[0], image.shape[1]))
            _overlay(image, labels if task != "count" else None, points, tmp / f"{stem}_overlay.png",
                     f"{path.name}: {count:.1f} cells")
        with open(tmp / "counts.csv", "w") as handle:
            handle.write("image,count,height,width\n")
            for name, count, h, w in rows:
                handle.write(f"{name},{count:.2f},{h},{w}\n")
        if failed:
            (tmp / "failed.txt").write_text("\n".join(failed) + "\n")
    print(f"wrote {out}/counts.csv ({len(rows)} image(s)) and the {'label' if task == 'instances' else 'mask' if task == 'mask' else 'overlay'} files")
    if failed:
        print(f"{len(failed)} image(s) could not be used and were skipped:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- export


class _PrimaryMap:
    """Which network output a bioimage.io package exposes, per task."""

    @staticmethod
    def wrap(model, task: str):
        import torch
        from torch import nn

        from cellnb.models import outputs

        class Wrapped(nn.Module):
            def __init__(self, net: nn.Module) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out = self.net(x)
                if task == "count" and outputs.DENSITY in out:
                    return out[outputs.DENSITY]
                logits = out[outputs.MASK_LOGITS]
                if logits.shape[1] > 1:
                    return torch.softmax(logits, dim=1)
                return torch.sigmoid(logits)

        return Wrapped(model).eval()


def export_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cellnb.export",
                                     description="Export a trained model as a bioimage.io model package (zip).")
    parser.add_argument("--model", required=True, help="a folder written by python -m cellnb.train")
    parser.add_argument("--out", required=True, help="the package to write, e.g. my_model.zip")
    parser.add_argument("--test-image", default=None, help="an image for the package's test input (default: generated)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test_model")
    return _run(parser, argv, _export)


def _count_rule(method, card: Mapping[str, Any], task: str) -> str:
    """The exported README's sentence on how the package's output gives a count."""
    if task != "count":
        return "."
    if method.predicts_in_training_tiles:
        return (f" (a per-pixel map, not a density: {card['method']} counts with its global count head, in tiles of its "
                f"{card['settings']['crop']}² training crop, which this package does not export; count with "
                "`python -m cellnb.predict` on the checkpoint).")
    return " (the count is the sum of the density)."


def export_package(model_dir: str | Path, out: str | Path, test_image: np.ndarray | None = None,
                   run_test: bool = True, overwrite: bool = False) -> tuple[Path, str]:
    """Write a bioimage.io package (rdf.yaml, TorchScript weights, test input/output, cover, docs) and
    return (path, test status). The network's input is the image scaled to [0, 1] by its range (the
    package declares a ``scale_range`` preprocessing with percentiles 0 and 100, as cellnb normalises)."""
    import torch

    try:
        import bioimageio.spec.model.v0_5 as spec
        from bioimageio.spec import save_bioimageio_package
    except ImportError:
        raise CliError("export needs bioimageio.spec and bioimageio.core (pip install -r requirements.txt)") from None

    out = _free_out(out, overwrite)
    if out.suffix != ".zip":
        raise CliError(f"--out must name a .zip file, got {out}")
    method, model, card = load_model(model_dir, "cpu")
    task = card["task"]
    multiple = max(int(card.get("multiple", 1)), 1)
    side = max(64, multiple * max(1, 64 // multiple))
    if test_image is None:
        from cellnb import data

        test_image = data.nuclei(0, size=side)["image"]
    test_image = np.asarray(test_image, np.float32)[:side, :side]
    if test_image.shape != (side, side):
        raise CliError(f"the test image must be at least {side}x{side}, got {test_image.shape}")
    raw = test_image[None, None].astype(np.float32)
    normalised = torch.from_numpy(method.normalize(test_image)[None].astype(np.float32))
    wrapped = _PrimaryMap.wrap(model, task)
    with torch.no_grad():
        expected = wrapped(normalised).numpy()
    out_channels = expected.shape[1]
    names = {"count": ["density"], "mask": ["foreground"], "instances": ["background", "interior", "boundary"]}
    channel_names = names.get(task, []) if len(names.get(task, [])) == out_channels else [f"c{i}" for i in range(out_channels)]
    with tempfile.TemporaryDirectory() as tmpdir:
        d = Path(tmpdir)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks become constants: fine
            traced = torch.jit.trace(wrapped, normalised, check_trace=False)
        traced.save(str(d / "weights.pt"))
        np.save(d / "test_input.npy", raw)
        np.save(d / "test_output.npy", expected.astype(np.float32))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        axes[0].imshow(test_image, cmap="gray")
        axes[0].set_title("input")
        axes[1].imshow(expected[0, -1 if task != "count" else 0], cmap="magma")
        axes[1].set_title(channel_names[-1] if task != "count" else "density")
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(d / "cover.png", dpi=80)
        plt.close(fig)
        v = card["validation"]
        (d / "README.md").write_text(
            f"# {card['method']} for {task}, trained with cellnb\n\n"
            f"Method: {card['paper']}. Size `{card['size']}`, trained at the `{card['settings']['profile']}` profile "
            f"for {card['settings']['steps']} steps on {card['data']['n_train']} image(s).\n\n"
            f"Validation ({v['n_images']} held-out image(s)): {v['metric']} = {v['value']:.3g}; its floor "
            f"({v['floor_name']}) = {v['floor']:.3g}.\n\n"
            f"Input: one grey channel, scaled to [0, 1] by its range (preprocessing `scale_range`, percentiles 0/100). "
            f"Height and width: multiples of {multiple}.\n\n"
            f"Output: {', '.join(channel_names)}" + _count_rule(method, card, task) + "\n")
        space = lambda axis: spec.SpaceInputAxis(id=spec.AxisId(axis), size=spec.ParameterizedSize(min=multiple, step=multiple))  # noqa: E731
        inp = spec.InputTensorDescr(
            id=spec.TensorId("image"),
            axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("grey")]), space("y"), space("x")],
            test_tensor=spec.FileDescr(source=d / "test_input.npy"),
            preprocessing=[spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
                axes=[spec.AxisId("channel"), spec.AxisId("y"), spec.AxisId("x")], min_percentile=0.0, max_percentile=100.0))],
        )
        ref = lambda axis: spec.SpaceOutputAxis(id=spec.AxisId(axis), size=spec.SizeReference(  # noqa: E731
            tensor_id=spec.TensorId("image"), axis_id=spec.AxisId(axis)))
        outp = spec.OutputTensorDescr(
            id=spec.TensorId(channel_names[0] if task == "count" else "probabilities"),
            axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in channel_names]),
                  ref("y"), ref("x")],
            test_tensor=spec.FileDescr(source=d / "test_output.npy"),
        )
        descr = spec.ModelDescr(
            name=f"cellnb {card['method']} {task}",
            description=f"{card['method']} ({card['paper']}) trained with cellnb for {task}.",
            authors=[spec.Author(name="cellnb user")],
            cite=[spec.CiteEntry(text=card["paper"] or card["method"], url="https://github.com/")],
            license=spec.LicenseId("MIT"),
            documentation=spec.FileDescr(source=d / "README.md"),
            covers=[spec.FileDescr(source=d / "cover.png")],
            tags=["cellnb", card["method"], task],
            inputs=[inp],
            outputs=[outp],
            weights=spec.WeightsDescr(torchscript=spec.TorchscriptWeightsDescr(
                source=d / "weights.pt", pytorch_version=spec.Version(torch.__version__.split("+")[0]))),
        )
        status = "not run"
        if run_test:
            from bioimageio.core import test_model

            summary = test_model(descr)
            status = summary.status
            if status != "passed":
                details = "; ".join(str(getattr(d_, "errors", "")) for d_ in getattr(summary, "details", [])
                                    if getattr(d_, "status", "") != "passed")
                raise CliError(f"bioimage.io test_model {status}: {details[:2000]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_zip = out.with_name(f".{out.name}.tmp-{os.getpid()}.zip")
        try:
            save_bioimageio_package(descr, output_path=tmp_zip)
            os.replace(tmp_zip, out)
        finally:
            tmp_zip.unlink(missing_ok=True)
    return out, status


def _export(args: argparse.Namespace) -> int:
    test_image = None
    if args.test_image:
        from cellnb import userdata

        test_image = userdata.read_image(args.test_image)
    path, status = export_package(args.model, args.out, test_image, run_test=not args.no_test, overwrite=args.overwrite)
    print(f"wrote {path} (bioimage.io model package; test_model: {status})")
    return 0
