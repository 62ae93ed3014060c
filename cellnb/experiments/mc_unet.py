"""MC-Unet chapter pipeline (Jin et al., BIBM 2022): the density / boundary ablation on touching nuclei.

The recipe (model sizes, losses, targets, post-processing, training loop) lives in the method,
:mod:`cellnb.methods.mc_unet`; this module keeps the chapter's story: the generated data, the
configurations of the ablation, the per-image scores with their floors and ceilings, the verdicts.

Configurations (``CONFIGS``): MC-Unet with both branches (the paper's reading), without the density
branch, without the boundary branch, without either (CE only), and the released code's loss at the
released batch size 1 (the faithful run; no extra heads, focal loss on the segmentation logits).
Each is trained from scratch once per seed; every model is scored per test image with its own
post-processing (:func:`cellnb.methods.mc_unet.instances`), next to the Otsu / Otsu + watershed floors
and to the ceiling of its post-processing on the true maps.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from cellnb.methods.mc_unet import (  # noqa: F401  (re-exported: the comparison imports them from here today)
    ScaledDensity,
    centroids,
    make_split,
    oracle_inputs,
)
from cellnb.methods.training import half_budget_record_fields, half_budget_seconds

SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(size=32, n_train=4, n_val=2, n_test=2, steps=16, evals=8, batch_size=4, crop=32, lr=3e-3,
                  model_size="tiny", n_seeds=1, sigma=2.0, radius_scale=0.5, boundary_weight=0.15,
                  density_weight=0.5, faithful_steps=16, half_budget_check=True,
                  real_steps=4, real_finetune_steps=2, real_n_generated=3, real_batch=2, real_crop=32,
                  configs=["mc_unet", "mc_unet_no_density", "mc_unet_no_boundary", "mc_unet_baseline",
                           "mc_unet_code_b1"]),
    "quick": dict(size=64, n_train=16, n_val=4, n_test=8, steps=250, evals=10, batch_size=8, crop=48, lr=3e-3,
                  model_size="slim", n_seeds=3, sigma=2.0, radius_scale=0.5, boundary_weight=0.15,
                  density_weight=0.5, faithful_steps=300,
                  # also the validation loss half the budget reaches (cellnb.methods.training.half_budget_branch:
                  # 10 % more steps, the run itself unchanged)
                  half_budget_check=True,
                  # sim-to-real at 110 + 55 steps (was 150 + 75; seeds 0-2, this CPU): mean real-frame AJI 0.724 /
                  # 0.711 / 0.751 (generated only / real only / fine-tuned) against 0.732 / 0.734 / 0.756, all 9
                  # models converged at both budgets, 4 above the floor (5 at 150 + 75). The ablation stays at 250 steps:
                  # at 180 two of its five models no longer converged and every AJI fell by 0.02-0.03
                  real_steps=110, real_finetune_steps=55, real_n_generated=20, real_batch=8, real_crop=48,
                  configs=["mc_unet", "mc_unet_no_density", "mc_unet_no_boundary", "mc_unet_baseline",
                           "mc_unet_code_b1"]),
    "full": dict(size=256, n_train=200, n_val=20, n_test=50, steps=20000, evals=40, batch_size=8, crop=128,
                 lr=1e-3, model_size="paper", n_seeds=5, sigma=3.0, radius_scale=1.0, boundary_weight=0.15,
                 density_weight=0.5, faithful_steps=100000, half_budget_check=True,
                 real_steps=5000, real_finetune_steps=2000, real_n_generated=80, real_batch=8, real_crop=128,
                 configs=["mc_unet", "mc_unet_no_density", "mc_unet_no_boundary", "mc_unet_baseline",
                          "mc_unet_code", "mc_unet_code_b1"]),
}

#: configuration -> (loss of :class:`cellnb.methods.mc_unet.MCUNetMethod`, batch size or None = the profile's)
CONFIGS: dict[str, tuple[str, int | None]] = {
    "mc_unet": ("paper", None),
    "mc_unet_no_density": ("no_density", None),
    "mc_unet_no_boundary": ("no_boundary", None),
    "mc_unet_baseline": ("baseline", None),
    "mc_unet_code": ("code", None),
    "mc_unet_code_b1": ("code", 1),
}
LABELS = {
    "mc_unet": "MC-Unet (density + boundary)",
    "mc_unet_no_density": "MC-Unet, boundary branch only",
    "mc_unet_no_boundary": "MC-Unet, density branch only",
    "mc_unet_baseline": "MC-Unet, no branch (CE only)",
    "mc_unet_code": "MC-Unet, released loss",
    "mc_unet_code_b1": "MC-Unet, released loss, batch 1",
}
METRICS = ("aji", "ap50", "dice", "count_err")


def method():
    from cellnb.methods import get_method

    return get_method("mc_unet")


# ----------------------------------------------------------------------------------------- data
def sim_to_real(cfg: Mapping[str, Any], seed: int = 0, device: str = "cpu") -> dict[str, Any] | None:
    """MC-Unet (paper reading, both branches) under the three sim-to-real routes of
    :func:`cellnb.sim2real.evaluate` on the real Hoechst frames, ``n_seeds`` seeds from ``seed``;
    None when ``ndev-sampledata`` is not installed. As on generated nuclei, each model's way of
    seeding its instances is chosen on its route's validation images."""
    from cellnb import data, sim2real

    if not data.ndev_available():
        return None
    return sim2real.evaluate("mc_unet", seeds=tuple(seed + s for s in range(int(cfg["n_seeds"]))), size=cfg["model_size"],
                             steps=int(cfg["real_steps"]), finetune_steps=int(cfg["real_finetune_steps"]),
                             n_generated=int(cfg["real_n_generated"]), device=device,
                             train_kwargs={"batch_size": int(cfg["real_batch"]), "crop": int(cfg["real_crop"]),
                                           "lr": float(cfg["lr"]), "evals": int(cfg["evals"])},
                             tune_postprocess=True, half_budget=bool(cfg.get("half_budget_check", False)))


def make_data(cfg: Mapping[str, Any], seed: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Training images (half dense, half sparse), of which the last ``n_val`` (half of each regime)
    are held out for validation, and one test set per regime; disjoint generator seeds."""
    base = 10_000 * (seed + 1)
    args = (cfg["size"], cfg["sigma"], cfg["radius_scale"])
    n_dense = (cfg["n_train"] + cfg["n_val"]) // 2
    n_sparse = cfg["n_train"] + cfg["n_val"] - n_dense
    dense = make_split(base, n_dense, args[0], "dense", *args[1:])
    sparse = make_split(base + 1000, n_sparse, args[0], "sparse", *args[1:])
    v_dense = cfg["n_val"] // 2
    v_sparse = cfg["n_val"] - v_dense
    return {
        "train": dense[: n_dense - v_dense] + sparse[: n_sparse - v_sparse],
        "val": dense[n_dense - v_dense:] + sparse[n_sparse - v_sparse:],
        "test_dense": make_split(base + 2000, cfg["n_test"], args[0], "dense", *args[1:]),
        "test_sparse": make_split(base + 3000, cfg["n_test"], args[0], "sparse", *args[1:]),
    }


def true_count(item: Mapping[str, np.ndarray]) -> int:
    return int(len(np.unique(item["labels"])) - 1)


# ------------------------------------------------------------------------------------- training
def heads_of(config: str) -> tuple[str, ...]:
    return method().heads_for(CONFIGS[config][0])


def train_config(config: str, data: Mapping[str, Sequence[Mapping[str, np.ndarray]]], cfg: Mapping[str, Any],
                 seed: int, device: str = "cpu", progress: bool = False):
    """Build (seeded) and train one configuration; returns ``(model, history, seconds, steps)``
    (``seconds`` of the training itself: the half-budget branch that ``cfg["half_budget_check"]``
    adds, :func:`cellnb.methods.training.half_budget_branch`, is left out)."""
    from cellnb.utils import seed_everything

    if config not in CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; choose from {list(CONFIGS)}")
    loss, batch = CONFIGS[config]
    m = method()
    seed_everything(seed)
    model = m.build(cfg["model_size"], loss=loss)
    steps = cfg["faithful_steps"] if batch == 1 else cfg["steps"]
    t0 = time.perf_counter()
    history = m.train(model, list(data["train"]), list(data["val"]), steps=steps, batch_size=batch or cfg["batch_size"],
                      crop=cfg["crop"], lr=cfg["lr"], seed=seed, device=device, loss=loss, progress=progress,
                      evals=cfg["evals"], loss_kwargs=dict(boundary_weight=cfg["boundary_weight"],
                                                           density_weight=cfg["density_weight"]),
                      half_budget=bool(cfg.get("half_budget_check", False)))
    seconds = time.perf_counter() - t0 - half_budget_seconds(history)
    n_steps = int(round(steps / cfg["evals"])) * cfg["evals"]
    return model, history, seconds, n_steps


# ----------------------------------------------------------------------------------- evaluation
def predictions(model, items: Sequence[Mapping[str, np.ndarray]], device: str = "cpu") -> list:
    """:class:`~cellnb.methods.base.Prediction` of each image (full size, the method pads)."""
    m = method()
    return [m.predict(model, item["image"][0], device=device) for item in items]


def score(pred, item: Mapping[str, np.ndarray], **post: Any) -> dict[str, float]:
    """AJI, AP@0.5 and Dice of the instances, absolute count error, for one image."""
    from cellnb import floors

    labels = method().instances_from_maps({"foreground": pred.foreground, **pred.maps}, **post)
    row = floors.instance_scores(item["labels"], labels)
    row["dice"] = floors.instance_scores(item["labels"], (pred.foreground > 0.5).astype(np.int32))["dice"]
    count = float(pred.maps["density"].sum()) if "density" in pred.maps else float(len(np.unique(labels)) - 1)
    row["count_err"] = abs(count - true_count(item))
    return {k: float(v) for k, v in row.items()}


def postprocess_options(heads: Sequence[str]) -> list[dict[str, Any]]:
    """The ways a model with ``heads`` can seed its instances (:meth:`MCUNetMethod.postprocess_options`)."""
    return method().postprocess_options(heads=heads)


def choose_postprocess(preds: Sequence, items: Sequence[Mapping[str, np.ndarray]], heads: Sequence[str]) -> dict[str, Any]:
    """The post-processing (and boundary threshold) with the best mean AJI on the validation images
    (:meth:`cellnb.methods.base.Method.choose_postprocess`)."""
    m = method()
    return m.choose_postprocess([m.prediction_maps(p) for p in preds], [it["labels"] for it in items],
                                options=postprocess_options(heads))


def describe(post: Mapping[str, Any]) -> str:
    use = post.get("use", "auto")
    return {"foreground": "distance watershed of the foreground", "density": "density peaks, watershed of the density",
            "auto": "density peaks, watershed of the boundary map",
            "boundary": f"regions of boundary < {post.get('boundary_threshold', 0.5)}, watershed of the boundary map"}[use]


def floor_rows(items: Sequence[Mapping[str, np.ndarray]], train_items: Sequence[Mapping[str, np.ndarray]]) -> list[dict]:
    """Per-image floors: Otsu + watershed (AJI, AP@0.5), Otsu mask (Dice), training-mean count."""
    from cellnb import floors

    mean_count = floors.constant_count([true_count(it) for it in train_items], len(items))
    rows = []
    for item, c in zip(items, mean_count):
        image = item["image"][0]
        inst = floors.instance_scores(item["labels"], floors.otsu_watershed(image))
        rows.append({"aji": inst["aji"], "ap50": inst["ap50"],
                     "dice": floors.instance_scores(item["labels"], floors.otsu_mask(image, sigma=1).astype(np.int32))["dice"],
                     "count_err": abs(float(c) - true_count(item))})
    return rows


def ceiling(config: str, items: Sequence[Mapping[str, np.ndarray]], sigma: float, post: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The configuration's post-processing on the true maps it would see (mask + its heads' maps)."""
    from cellnb import floors

    keep = ("mask",) + tuple(h for h in heads_of(config) if h != "mask")

    def segment(labels: np.ndarray) -> np.ndarray:
        maps = {k: v for k, v in oracle_inputs(labels, sigma).items() if k in keep}
        return method().instances_from_maps(maps, **dict(post or {}))

    return floors.mean_instance_scores(segment, [item["labels"] for item in items])


def run_ablation(cfg: Mapping[str, Any], data: Mapping[str, Sequence[Mapping[str, np.ndarray]]], seed: int = 0,
                 device: str = "cpu", progress: bool = False):
    """Train every configuration over ``n_seeds`` seeds and score every test image.

    Returns ``(rows, curves, info, first)``: per-image rows (config, seed, regime, image, metrics),
    validation curves ``{config: [curve per seed]}``, per-config info (steps/s, thresholds, the
    record fields of what the second half of the budget bought,
    :func:`cellnb.methods.training.half_budget_record_fields`) and the first seed's predictions on
    the dense test set (for figures).
    """
    rows, curves, info, first = [], {}, {}, {}
    for config in cfg["configs"]:
        curves[config], speeds, choices, total, histories = [], [], [], 0.0, []
        for s in range(cfg["n_seeds"]):
            model, history, seconds, steps = train_config(config, data, cfg, seed + s, device, progress)
            curves[config].append([float(v) for v in history["val_loss"]])
            histories.append(history)
            speeds.append(steps / seconds)
            total += seconds
            post = choose_postprocess(predictions(model, data["val"], device), data["val"], heads_of(config))
            choices.append(post)
            for regime in ("dense", "sparse"):
                items = data[f"test_{regime}"]
                preds = predictions(model, items, device)
                if s == 0 and regime == "dense":
                    first[config] = preds
                for i, (p, it) in enumerate(zip(preds, items)):
                    rows.append(dict(config=config, seed=seed + s, regime=regime, image=i, **score(p, it, **post)))
        # the ceiling is that of the post-processing most seeds chose on their validation images
        keys = [tuple(sorted(c.items())) for c in choices]
        info[config] = {"steps_per_s": float(np.mean(speeds)), "seconds": total, "choices": choices,
                        "post": dict(max(set(keys), key=keys.count)),
                        "half_budget": half_budget_record_fields(histories)}
    return pd.DataFrame(rows), curves, info, first


def with_floor(rows: pd.DataFrame, floors_by_regime: Mapping[str, list[dict]]) -> pd.DataFrame:
    """Rows of the floor per (seed, regime, image), with config ``"floor"``, so it pairs with the models."""
    out = []
    for (s, regime), _ in rows.groupby(["seed", "regime"]):
        for i, r in enumerate(floors_by_regime[regime]):
            out.append(dict(config="floor", seed=s, regime=regime, image=i, **r))
    return pd.DataFrame(out)


def paired(rows: pd.DataFrame, a: str, b: str, metric: str, regime: str = "dense"):
    """Per-image values of configurations ``a`` and ``b`` aligned on (seed, image), and the seeds."""
    sub = rows[rows.regime == regime]
    left = sub[sub.config == a].set_index(["seed", "image"])[metric]
    right = sub[sub.config == b].set_index(["seed", "image"])[metric]
    joined = pd.concat([left.rename("a"), right.rename("b")], axis=1, join="inner").sort_index()
    return joined["a"].to_numpy(), joined["b"].to_numpy(), [s for s, _ in joined.index]


def summary_table(rows: pd.DataFrame, regime: str, ceilings: Mapping[str, Mapping[str, float]] | None = None,
                  metrics: Sequence[str] = ("aji", "ap50", "dice", "count_err")) -> pd.DataFrame:
    """Mean [95 % interval] per configuration (images pooled over seeds, two-level bootstrap), the floor
    as a row, and the ceiling of each configuration's post-processing."""
    from cellnb.verdicts import bootstrap_interval

    sub = rows[rows.regime == regime]
    table = []
    for config, grp in sub.groupby("config", sort=False):
        row = {"model": LABELS.get(config, "floor (Otsu; Otsu + watershed; mean count)" if config == "floor" else config)}
        for m in metrics:
            mean, low, high = bootstrap_interval(grp[m].to_numpy(), grp.seed.to_numpy())
            row[m] = f"{mean:.3f} [{low:.3f}, {high:.3f}]" if m != "count_err" else f"{mean:.2f} [{low:.2f}, {high:.2f}]"
        if ceilings is not None:
            c = ceilings.get(config)
            row["ceiling AJI / AP@0.5"] = "—" if c is None else f"{c['aji']:.3f} / {c['ap50']:.3f}"
        table.append(row)
    return pd.DataFrame(table)


# ----------------------------------------------------------------- legacy helper of the comparison
def instances(foreground, boundary=None, density=None, min_seed_area: int = 4, threshold: float = 0.5):
    """Connected components (no map) or the method's seeded watershed (kept for the comparison chapter)."""
    from scipy import ndimage

    from cellnb.methods.mc_unet import instances as method_instances

    if boundary is None and density is None:
        return ndimage.label(np.asarray(foreground) > threshold)[0].astype(np.int32)
    return method_instances(foreground, boundary, density, threshold=threshold, min_seed_area=min_seed_area)


def evaluate(pred: Mapping[str, np.ndarray | None], items: Sequence[Mapping[str, np.ndarray]], min_seed_area: int = 4) -> dict[str, float]:
    """Pooled pixel metrics, instance F1@0.5 and AJI of stacked maps (kept for the comparison chapter,
    which scores connected components of the foreground)."""
    from cellnb import metrics

    true_fg = np.stack([item["mask"] for item in items]).astype(bool)
    pred_fg = np.asarray(pred["foreground"]) > 0.5
    row = {"dice": metrics.dice(pred_fg, true_fg), "iou": metrics.iou(pred_fg, true_fg),
           "precision": metrics.precision(pred_fg, true_fg), "sensitivity": metrics.recall(pred_fg, true_fg)}
    tp = fp = fn = 0
    ajis = []
    for k, item in enumerate(items):
        inst = instances(pred["foreground"][k], None if pred.get("boundary") is None else pred["boundary"][k],
                         None if pred.get("density") is None else pred["density"][k], min_seed_area)
        m = metrics.match_instances(item["labels"], inst, threshold=0.5)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        ajis.append(metrics.aji(item["labels"], inst))
    row["instance_f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
    row["instance_f1_cc"] = row["instance_f1"]
    row["aji"] = float(np.mean(ajis))
    row["merged_fraction"] = float("nan")
    row["count_mae"] = float("nan")
    return {k: float(v) for k, v in row.items()}


# ---------------------------------------------------------------------------------------- figures
def plot_curves(curves: Mapping[str, Sequence[Sequence[float]]]):
    """All validation-loss curves (one panel per configuration, one line per seed) in one figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(2.8 * len(curves), 2.6), squeeze=False)
    for ax, (config, runs) in zip(axes[0], curves.items()):
        for k, curve in enumerate(runs):
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=f"seed {k}")
        ax.set_title(LABELS.get(config, config), fontsize=8)
        ax.set_xlabel("evaluation")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("validation loss")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_instances(items: Sequence[Mapping[str, np.ndarray]], first: Mapping[str, Sequence], info: Mapping[str, Mapping],
                   index: int = 0):
    """Truth, the floor and each configuration's instances on one dense test image."""
    import matplotlib.pyplot as plt
    from skimage.color import label2rgb

    from cellnb import floors

    item = items[index]
    panels = [("truth", item["labels"]), ("Otsu + watershed", floors.otsu_watershed(item["image"][0]))]
    for config, preds in first.items():
        post = info[config]["choices"][0]
        p = preds[index]
        panels.append((LABELS.get(config, config), method().instances_from_maps({"foreground": p.foreground, **p.maps}, **post)))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.7))
    for ax, (title, lab) in zip(axes, panels):
        ax.imshow(label2rgb(lab, bg_label=0))
        ax.set_title(f"{title}\n{len(np.unique(lab)) - 1} instances", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_maps(item: Mapping[str, np.ndarray], pred):
    """Image, true / predicted density and true / predicted boundary probability of one image."""
    import matplotlib.pyplot as plt

    panels = [("image", item["image"][0], "gray"), (f"true density (sum {item['density'].sum():.1f})", item["density"], "magma")]
    if "density" in pred.maps:
        panels.append((f"predicted density (sum {pred.maps['density'].sum():.1f})", pred.maps["density"], "magma"))
    panels.append(("true boundary", item["boundary"], "gray"))
    if "boundary" in pred.maps:
        panels.append(("predicted boundary prob.", pred.maps["boundary"], "gray"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for ax, (title, img, cmap) in zip(axes, panels):
        ax.imshow(img, cmap=cmap)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig
