"""ELMGAN chapter pipeline: data, the four trained models over seeds, per-image evaluation with floors,
and the efficiency benchmarks.

The recipe of ELMGAN itself (LFMMG + CMTD, NH loss, targets, normalisation, crop training with its
GAN, tiled prediction) is the method :mod:`cellnb.methods.elmgan` (``get_method("elmgan")``). This
module keeps the chapter's story: the BBBC005-like data, the baselines, the seeds, the tables.

Models trained on the same frames, crops, seeds and step budget (all through the method's
:meth:`~cellnb.methods.elmgan.ELMGAN.train`, i.e. Adam β = (0.5, 0.999), one-cycle LR, random crops
with flips and 90° rotations, count heads started at the mean crop count):

- ``elmgan``: LFMMG + CMTD, NH loss with its LSGAN term (loss ``"nh"``, :func:`cellnb.train.fit_gan`);
- ``elmgan_no_gan``: the same generator, NH loss without the adversarial term (loss ``"no_gan"``);
- ``unet``: the classic U-Net with a count head (``create_model("unet", heads=("mask", "count"))``),
  the same supervised loss, no GAN;
- ``pix2pix``: the "traditional GAN": pix2pix U-Net generator (ConvTranspose up-blocks) + the plain
  conditional PatchGAN on (image, mask), the same NH loss and count head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cellnb.methods import get_method
from cellnb.methods.elmgan import ScaledCount
from cellnb.models import create_model
from cellnb.profile import benchmark, count_params

#: Released BBBC005 frames are 520×696.
BBBC005_SHAPE = (520, 696)

SETTINGS: dict[str, dict[str, Any]] = {
    # smoke: a pipeline check (< 1 min on 2 shared cores): ×8 frames, 1 seed, a few steps
    "smoke": dict(
        downscale=8, n_train=3, n_val=1, n_test=2, n_seeds=1, size="tiny", unet_width=4, pix2pix_depth=6,
        crop=64, batch_size=4, evals=8, steps=16, lr=2e-3, lr_d=2e-4,
        bench_size=64, bench_repeats=1, bench_width=8, block_repeats=1, half_budget_check=True,
    ),
    # quick: CPU minutes. Frames block-averaged ×4 (130×174), random 64² crops, slim widths,
    # step budget sized by measurement (docs in the chapter); efficiency at the released widths, 256².
    "quick": dict(
        downscale=4, n_train=12, n_val=3, n_test=12, n_seeds=3, size="slim", unet_width=4, pix2pix_depth=6,
        crop=64, batch_size=8, evals=10, steps=500, lr=2e-3, lr_d=2e-4,
        bench_size=256, bench_repeats=3, bench_width=64, block_repeats=5,
        # also the validation loss half the budget reaches (cellnb.methods.training.half_budget_branch:
        # 10 % more steps, the run itself unchanged)
        half_budget_check=True,
    ),
    # full: the released set-up (full-size frames, released widths, 30 epochs of 960 frames, lr 1e-4)
    "full": dict(
        downscale=1, n_train=760, n_val=200, n_test=240, n_seeds=5, size="paper", unet_width=64, pix2pix_depth=8,
        crop=256, batch_size=1, evals=30, steps=28800, lr=1e-4, lr_d=1e-4,
        bench_size=768, bench_repeats=20, bench_width=64, block_repeats=50, half_budget_check=True,
    ),
}

MODEL_NAMES = ("elmgan", "elmgan_no_gan", "unet", "pix2pix")
LABELS = {"elmgan": "ELMGAN (LFMMG + CMTD)", "elmgan_no_gan": "LFMMG, no GAN (ablation)",
          "unet": "U-Net + count head", "pix2pix": "pix2pix GAN + count head"}
FLOOR_LABELS = {"count": "constant training mean (floor)", "mask": "Otsu, σ = 1 (floor)"}


def method():
    """The ELMGAN method (:mod:`cellnb.methods.elmgan`)."""
    return get_method("elmgan")


# --------------------------------------------------------------------------- data
def downscale_frame(sample: Mapping[str, np.ndarray], factor: int) -> dict[str, Any]:
    """Block-average a frame ×``factor`` (image: mean; mask: mean >= 0.5; centres divided by ``factor``).

    Cells are not cut, so the count is unchanged; a 520×696 frame gives 130×174 at ×4.
    """
    from skimage.transform import downscale_local_mean

    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    image, mask = np.asarray(sample["image"], np.float32), np.asarray(sample["mask"])
    if image.shape != mask.shape or image.ndim != 2:
        raise ValueError(f"image and mask must be the same 2-D shape, got {image.shape} and {mask.shape}")
    if factor == 1:
        small, small_mask = image, (mask > 0).astype(np.uint8)
    else:
        small = downscale_local_mean(image, (factor, factor)).astype(np.float32)
        small_mask = (downscale_local_mean((mask > 0).astype(np.float32), (factor, factor)) >= 0.5).astype(np.uint8)
    points = np.asarray(sample["points"], np.float32).reshape(-1, 2) / factor
    points = np.clip(points, 0, np.array(small.shape, np.float32) - 1)
    return {"image": small, "mask": small_mask, "points": points, "count": int(len(points))}


def make_frames(n: int, seed: int, downscale: int) -> list[dict[str, Any]]:
    """``n`` BBBC005-like frames (``fluorescence_cells(preset="bbbc005", stain=1)``: cell bodies, counts
    from the 24 BBBC005 levels), block-averaged ×``downscale``."""
    from cellnb.data import fluorescence_cells

    return [downscale_frame(fluorescence_cells(seed + i, preset="bbbc005", stain=1), downscale) for i in range(n)]


def make_data(cfg: Mapping[str, Any], seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Training, validation (held out from the training data) and test frames, disjoint generator seeds."""
    base = 1000 * int(seed)
    return {"train": make_frames(cfg["n_train"], base + 1, cfg["downscale"]),
            "val": make_frames(cfg["n_val"], base + 200_001, cfg["downscale"]),
            "test": make_frames(cfg["n_test"], base + 500_001, cfg["downscale"])}


# --------------------------------------------------------------------------- models
def _build_elmgan(m, cfg):
    return m.build(cfg["size"]), m.build_discriminator(cfg["size"], with_count=True), "nh"


def _build_elmgan_no_gan(m, cfg):
    return m.build(cfg["size"]), None, "no_gan"


def _build_unet(m, cfg):
    unet = create_model("unet", in_channels=1, base_width=cfg["unet_width"], heads=("mask", "count"))
    return ScaledCount(unet, m.count_scale), None, "no_gan"


def _build_pix2pix(m, cfg):
    gen = create_model("pix2pix_generator", in_channels=1, base_width=m.sizes[cfg["size"]]["base_width"],
                       depth=cfg["pix2pix_depth"], count_scale=m.count_scale)
    return gen, m.build_discriminator(cfg["size"], with_count=False), "nh"


#: The compared models: ``name -> builder(method, cfg) -> (generator, discriminator or None, loss variant)``.
BUILDERS = {"elmgan": _build_elmgan, "elmgan_no_gan": _build_elmgan_no_gan, "unet": _build_unet,
            "pix2pix": _build_pix2pix}


def build(name: str, cfg: Mapping[str, Any]) -> tuple[nn.Module, nn.Module | None, str]:
    """``(generator, discriminator or None, loss variant)`` of compared model ``name``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    return BUILDERS[name](method(), cfg)


@dataclass
class Trained:
    """One trained model (one seed) with its history and training speed."""

    name: str
    seed: int
    generator: nn.Module
    history: pd.DataFrame
    seconds: float
    steps_per_s: float


def train_model(name: str, cfg: Mapping[str, Any], data: Mapping[str, list], seed: int, device: str = "cpu") -> Trained:
    """Train ``name`` with the method's recipe (its GAN where it has one) on ``data``'s frames
    (with ``cfg["half_budget_check"]``, also the validation loss half the budget reaches:
    ``history.attrs["half_budget"]``, :func:`cellnb.methods.training.half_budget_branch`)."""
    from cellnb.utils import seed_everything

    seed_everything(seed)
    gen, disc, variant = build(name, cfg)
    hist = method().train(gen, data["train"], data["val"], "count", steps=cfg["steps"], batch_size=cfg["batch_size"],
                          crop=cfg["crop"], lr=cfg["lr"], lr_d=cfg["lr_d"], seed=seed, device=device, loss=variant,
                          discriminator=disc, evals=cfg["evals"], size=cfg["size"],
                          half_budget=bool(cfg.get("half_budget_check", False)))
    return Trained(name, seed, gen, hist, float(hist.attrs["seconds"]), float(hist.attrs["steps_per_s"]))


# --------------------------------------------------------------------------- evaluation
def evaluate(model: nn.Module, frames: Sequence[Mapping[str, Any]], tile: int, device: str = "cpu",
             threshold: float = 0.5) -> pd.DataFrame:
    """Per-frame predicted and true count, absolute count error, Dice and IoU of the mask
    (foreground probability > ``threshold``, e.g. the one :meth:`~cellnb.methods.base.Method.tune_mask_threshold`
    chose on validation frames)."""
    from cellnb.metrics import dice, iou
    from cellnb.postprocess import binarize

    rows = []
    for i, f in enumerate(frames):
        p = method().predict(model, f["image"], tile=tile, device=device)
        pred, truth = binarize(p.foreground, threshold), np.asarray(f["mask"]) > 0
        rows.append({"image": i, "count": p.count, "true_count": float(f["count"]),
                     "abs_err": abs(p.count - float(f["count"])), "dice": dice(pred, truth), "iou": iou(pred, truth),
                     "threshold": float(threshold)})
    return pd.DataFrame(rows)


def floor_values(train: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per-frame floors: the constant training-mean count and Otsu (σ = 1) of the image."""
    from cellnb import floors
    from cellnb.metrics import dice, iou

    const = floors.constant_count([f["count"] for f in train], len(test))
    rows = []
    for i, (f, c) in enumerate(zip(test, const)):
        otsu, truth = floors.otsu_mask(f["image"], sigma=1.0) > 0, np.asarray(f["mask"]) > 0
        rows.append({"image": i, "count": float(c), "true_count": float(f["count"]),
                     "abs_err": abs(float(c) - float(f["count"])), "dice": dice(otsu, truth), "iou": iou(otsu, truth)})
    return pd.DataFrame(rows)


def run_all(cfg: Mapping[str, Any], device: str = "cpu", names: Sequence[str] = MODEL_NAMES,
            seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Train and evaluate every model on every seed (each seed: its own frames and initialisation).

    Each model's mask threshold is chosen on the seed's validation frames
    (:meth:`~cellnb.methods.base.Method.tune_mask_threshold`) and kept in ``per_image["threshold"]``.

    Returns ``{"trained": {(name, seed): Trained}, "per_image": DataFrame (model, seed, image, ...)
    including the floors as models "floor", "data": {seed: frames}}``.
    """
    seeds = list(range(cfg["n_seeds"])) if seeds is None else list(seeds)
    trained, frames, tables = {}, {}, []
    for seed in seeds:
        data = make_data(cfg, seed)
        frames[seed] = data
        fl = floor_values(data["train"], data["test"])
        tables.append(fl.assign(model="floor", seed=seed))
        for name in names:
            t = train_model(name, cfg, data, seed, device)
            trained[(name, seed)] = t
            threshold = method().tune_mask_threshold(t.generator, data["val"], device=device, tile=cfg["crop"])
            tables.append(evaluate(t.generator, data["test"], cfg["crop"], device, threshold)
                          .assign(model=name, seed=seed))
    return {"trained": trained, "per_image": pd.concat(tables, ignore_index=True), "data": frames, "seeds": seeds}


def paired(per_image: pd.DataFrame, model: str, metric: str, other: str = "floor") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values of model, values of other, seeds)`` paired by (seed, image)."""
    a = per_image[per_image.model == model].set_index(["seed", "image"])[metric]
    b = per_image[per_image.model == other].set_index(["seed", "image"])[metric]
    a, b = a.align(b, join="inner")
    return a.to_numpy(float), b.to_numpy(float), np.asarray(a.index.get_level_values("seed"))


def summary_table(per_image: pd.DataFrame, names: Sequence[str] = MODEL_NAMES) -> pd.DataFrame:
    """Mean with a 95 % two-level bootstrap interval (seeds, then frames) of count MAE and Dice,
    one row per model plus the floor rows."""
    from cellnb.verdicts import bootstrap_interval

    rows = []
    for name in list(names) + ["floor"]:
        sub = per_image[per_image.model == name]
        row = {"model": LABELS.get(name, name)}
        for metric, label in (("abs_err", "count MAE"), ("dice", "Dice")):
            mean, low, high = bootstrap_interval(sub[metric].to_numpy(float), sub["seed"].to_numpy())
            row[label] = f"{mean:.3g} [{low:.3g}, {high:.3g}]"
        rows.append(row)
    table = pd.DataFrame(rows)
    floor = table.iloc[-1]
    count_floor = pd.DataFrame([{"model": FLOOR_LABELS["count"], "count MAE": floor["count MAE"], "Dice": "—"},
                                {"model": FLOOR_LABELS["mask"], "count MAE": "—", "Dice": floor["Dice"]}])
    return pd.concat([table.iloc[:-1], count_floor], ignore_index=True)


def val_curves(trained: Mapping[tuple[str, int], Trained]) -> dict[str, list[np.ndarray]]:
    """Validation-loss curves per model (one per seed)."""
    curves: dict[str, list[np.ndarray]] = {}
    for (name, _), t in trained.items():
        curves.setdefault(name, []).append(t.history["val_loss"].to_numpy(float))
    return curves


def curves_figure(trained: Mapping[tuple[str, int], Trained]):
    """All validation curves of the chapter in one figure: one panel per model, one line per seed
    (NH loss without the adversarial term, on held-out training frames, against optimiser steps)."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for n, _ in trained))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        for (n, seed), t in trained.items():
            if n == name:
                ax.plot(t.history["step"], t.history["val_loss"], "o-", ms=3, label=f"seed {seed}")
        ax.set_title(LABELS.get(name, name), fontsize=9)
        ax.set_xlabel("optimiser step")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("validation loss")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- efficiency
def parameter_table(in_channels: int = 3) -> pd.DataFrame:
    """Parameters at the released widths (built on the ``meta`` device: no memory, no init cost):
    LFMMG (live, and with the released dead ``conv_p``), the SSRnet repository's U-Net
    (``released_unet``, the paper's U-Net most likely), cellnb's U-Net with a count head, pix2pix, CMTD."""
    with torch.device("meta"):
        lfmmg = create_model("elmgan_generator", in_channels=in_channels)
        rows = [
            ("LFMMG (ELMGAN generator)", count_params(lfmmg)),
            ("LFMMG + released dead conv_p", count_params(lfmmg) + dead_conv_p_params()),
            ("released U-Net (SSRnet repository)", count_params(create_model("released_unet", in_channels=in_channels))),
            ("cellnb U-Net + count head", count_params(create_model("unet", in_channels=in_channels, heads=("mask", "count")))),
            ("pix2pix U-Net generator", count_params(create_model("pix2pix_generator", in_channels=in_channels))),
            ("CMTD (discriminator)", count_params(create_model("elmgan_discriminator", in_channels=in_channels))),
        ]
    return pd.DataFrame({"model": [r[0] for r in rows], "params": [r[1] for r in rows]})


def dead_conv_p_params(base_width: int = 64) -> int:
    """Parameters of the released ``FBupsampling.conv_p`` (C_out·s² → outplanes 1×1 conv with bias,
    built in every up-block, never used in ``forward``): the five decoder blocks at ``base_width``."""
    total = 0
    for _, _, cout, _ in generator_upsampling_sizes(256, base_width)[:-1]:
        total += (cout * 4) * cout + cout
    return total


def benchmark_ms(models: Mapping[str, nn.Module], input_shape, device: str = "cpu", warmup: int = 2,
                 repeats: int = 5) -> dict[str, float]:
    """Median forward latency in ms per model, measured interleaved by :func:`cellnb.profile.benchmark`."""
    df = benchmark(dict(models), tuple(input_shape), device=device, warmup=warmup, repeats=repeats)
    return dict(zip(df["model"], df["median_ms"].astype(float)))


class _Upsampler(nn.Module):
    """Just the up-sampling of one decoder block (what the FBU claim is about)."""

    def __init__(self, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        from cellnb.models.elmgan import make_upsampler

        self.up = make_upsampler(cin, cout, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def generator_upsampling_sizes(image_size: int, base_width: int = 64) -> list[tuple[str, int, int, int]]:
    """``(block, C_in, C_out, input side)`` of every ×2 up-sampling in LFMMG at ``image_size``."""
    w = [base_width * min(2**i, 8) for i in range(6)]
    plan = [("up1", w[5], w[4]), ("up2", 2 * w[4], w[3]), ("up3", 2 * w[3], w[2]),
            ("up4", 2 * w[2], w[1]), ("up5", 2 * w[1], w[0]), ("head", max(w[0] // 2, 1), 1)]
    sides = [image_size // 2**k for k in (6, 5, 4, 3, 2, 1)]
    return [(name, cin, cout, side) for (name, cin, cout), side in zip(plan, sides)]


def benchmark_upsampling(image_size: int, base_width: int = 64, device: str = "cpu", repeats: int = 10) -> pd.DataFrame:
    """FBU vs (1×1 conv + nearest) vs (1×1 conv + bilinear) at each size LFMMG uses, batch 1."""
    rows = []
    for name, cin, cout, side in generator_upsampling_sizes(image_size, base_width):
        mods = {mode: _Upsampler(cin, cout, mode) for mode in ("fbu", "nearest", "bilinear")}
        ms = benchmark_ms(mods, (1, cin, side, side), device=device, warmup=2, repeats=repeats)
        rows.append({"block": name, "c_in": cin, "c_out": cout, "input": f"{side}x{side}",
                     **{f"{k}_ms": v for k, v in ms.items()}})
    df = pd.DataFrame(rows)
    total = {"block": "total", "c_in": np.nan, "c_out": np.nan, "input": "",
             **{c: df[c].sum() for c in ("fbu_ms", "nearest_ms", "bilinear_ms")}}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def benchmark_generators(image_size: int, base_width: int = 64, device: str = "cpu", repeats: int = 5,
                         pix2pix_depth: int = 8) -> pd.DataFrame:
    """Forward latency (batch 1) and images/s of LFMMG with FBU / bilinear / nearest up-blocks and of
    the pix2pix U-Net generator, all at ``base_width`` (64 = released size)."""
    models = {
        "LFMMG (FBU)": create_model("elmgan_generator", base_width=base_width),
        "LFMMG (bilinear)": create_model("elmgan_generator", base_width=base_width, upsampling="bilinear"),
        "LFMMG (nearest)": create_model("elmgan_generator", base_width=base_width, upsampling="nearest"),
        "pix2pix generator": create_model("pix2pix_generator", base_width=base_width, depth=pix2pix_depth),
    }
    ms = benchmark_ms(models, (1, 1, image_size, image_size), device=device, warmup=1, repeats=repeats)
    return pd.DataFrame({"model": list(ms), "ms": list(ms.values()),
                         "images_per_s": [1000.0 / v for v in ms.values()],
                         "params": [count_params(models[k]) for k in ms]})


def half_budget_fields(trained: Mapping[tuple[str, int], Trained], name: str) -> dict[str, Any]:
    """What the second half of the budget bought model ``name`` over its seeds, as
    :meth:`cellnb.results.Run.model` fields (:func:`cellnb.methods.training.half_budget_record_fields`)."""
    from cellnb.methods.training import half_budget_record_fields

    return half_budget_record_fields([t.history for (n, _), t in sorted(trained.items()) if n == name])


def steps_per_s(trained: Mapping[tuple[str, int], Trained]) -> dict[str, float]:
    """Mean training steps per second of each model over its seeds (validation excluded)."""
    out: dict[str, list[float]] = {}
    for (name, _), t in trained.items():
        out.setdefault(name, []).append(t.steps_per_s)
    return {k: float(np.mean(v)) for k, v in out.items()}


# --------------------------------------------------------------------------- reproduction summary
def reproduction_summary(run) -> str:
    """A short Markdown summary generated from the run's ledger (paper claims and checks separately)."""
    paper = [c for c in run.claims if c.kind == "paper"]
    checks = [c for c in run.claims if c.kind == "check"]
    held = [c for c in paper if c.holds is True]
    failed = [c for c in paper if c.holds is False]
    open_ = [c for c in paper if c.holds is None]
    learned = [n for n, v in run.models.items() if v["converged"] and v["beats_floor"]]
    not_learned = [n for n, v in run.models.items() if not (v["converged"] and v["beats_floor"])]

    def why(c) -> str:
        if c.basis == "other device":
            return "other device"
        if "not learned" in c.note:
            return "a model did not learn"
        if "seed" in c.note and "verdict needs" in c.note:
            return "too few seeds"
        if c.measured is None:
            return "not testable here"
        return "interval overlaps"

    lines = [
        f"**Reproduction summary** ({run.profile} profile, generated from this run's ledger). "
        "Scope: the abstract's claims, on generated BBBC005-like frames, CPU only, with a reconstructed "
        "NH loss and CMTD.",
        "",
        f"- Paper claims: **{len(held)} hold**, {len(failed)} do not, {len(open_)} inconclusive"
        + (" (" + "; ".join(f"{c.id}: {why(c)}" for c in open_) + ")" if open_ else "") + ".",
    ]
    if held:
        lines.append("- Reproduced: " + "; ".join(c.statement for c in held) + ".")
    if failed:
        lines.append("- Not reproduced: " + "; ".join(c.statement for c in failed) + ".")
    lines.append(f"- Checks: {sum(c.holds is True for c in checks)} of {len(checks)} hold.")
    lines.append(f"- Trained models that learned (converged and beat their floor): {len(learned)} of {len(run.models)}"
                 + (f"; not: {', '.join(not_learned)}" if not_learned else "") + ".")
    lines.append("- Easy: the generator and parameter counts (released code exists for the blocks). Hard: the NH "
                 "loss and CMTD (no formula public), and speed on the paper's hardware.")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), e.g. for naming the device of a speed check."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return "CPU " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU " + (platform.processor() or platform.machine())


def target_report(run, curves: Mapping[str, list[np.ndarray]], target_ratio: float = 0.3) -> str:
    """Markdown: for each model, whether it met the profile's targets (count MAE <= ``target_ratio`` ×
    the constant predictor's, Dice above the Otsu floor, converged), and the numbers behind each miss."""
    from cellnb.verdicts import convergence_report

    m = run.metrics
    lines = []
    for name in MODEL_NAMES:
        ratio = m[f"{name}_count_mae_vs_floor"]
        reps = [convergence_report(c) for c in curves[name]]
        improv = ", ".join(f"{100 * r['last_window_improvement']:.1f} %" for r in reps)
        misses = []
        if ratio > target_ratio:
            misses.append(f"count MAE {m[f'{name}_count_mae']:.2f} is {ratio:.2f} × the constant predictor's "
                          f"{m['floor_count_mae']:.1f} (target ≤ {target_ratio})")
        if not run.models[f"{name}_mask"]["beats_floor"]:
            misses.append(f"Dice {m[f'{name}_dice']:.3f} [{m[f'{name}_dice_low']:.3f}, {m[f'{name}_dice_high']:.3f}] "
                          f"does not beat Otsu's {m['floor_dice']:.3f}")
        if not all(r["converged"] for r in reps):
            misses.append(f"the validation loss still fell by {improv} over the last quarter of training (per seed; "
                          "converged means < 5 %)")
        status = "meets the targets" if not misses else "misses: " + "; ".join(misses)
        lines.append(f"- **{LABELS[name]}** ({m[f'{name}_steps_per_s']:.1f} steps/s): {status}.")
    return "\n".join(lines)
