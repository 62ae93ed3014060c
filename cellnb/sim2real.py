"""Sim-to-real: does an instance method trained on generated nuclei work on real ones?

:func:`evaluate` trains a :mod:`cellnb.methods` method for ``task="instances"`` under three
scenarios and tests it on the real Hoechst frames 5–9 of :func:`cellnb.data.load_ndev_nuclei`:

- ``"generated"``: trained on generated nuclei only (default ``cellnb.data.nuclei(regime="hoechst")``,
  the generator matched to this real set; any ``seed -> sample`` function can be passed);
- ``"real"``: trained on the real frames 0–4 only (random crops, flips, 90° rotations: the
  method's own augmentation);
- ``"generated+real"``: the ``generated`` model fine-tuned on the real frames 0–4.

Next to them: the classical floor :func:`cellnb.floors.otsu_watershed` on the same test frames, and
the ceiling of the method's own post-processing on the oracle maps of the test labels
(:meth:`cellnb.methods.base.Method.ceiling`). Scores per test frame and seed: AJI, AP@0.5 and foreground Dice
(:func:`cellnb.floors.instance_scores`).

Frames of one sequence are correlated (the same field, minutes apart), so the split is by time:
frames 0–4 train, 5–9 test. The validation data (for the convergence curve) is a held-out part of
the training data, never a test frame: the right-most :data:`VAL_COLUMNS` columns of frames 0–4
(rows 0–191, a size every method's network accepts), the rest of those frames being the training
images; for generated training, a fifth of the generated images.

The real labels leave out very bright mitotic / apoptotic nuclei and a few dim ones (see the data
chapter): a method that segments them is charged false positives, the floor and the ceiling alike.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["SCENARIOS", "SCENARIO_TAGS", "TRAIN_FRAMES", "TEST_FRAMES", "VAL_COLUMNS", "real_split", "generated_samples",
           "evaluate", "summary", "floor_verdict", "record", "plot_curves", "table"]

SCENARIOS = ("generated", "real", "generated+real")
TRAIN_FRAMES = (0, 1, 2, 3, 4)
TEST_FRAMES = (5, 6, 7, 8, 9)
VAL_COLUMNS = 128
VAL_ROWS = 192
METRICS = ("ap50", "aji", "dice")


def _sample(image: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    from cellnb.methods.training import instance_centres

    labels = _relabel(labels)
    return {"image": np.ascontiguousarray(image, dtype=np.float32), "labels": labels,
            "mask": (labels > 0).astype(np.uint8), "points": instance_centres(labels)}


def _relabel(labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(np.asarray(labels, dtype=np.int32))[0].astype(np.int32)


def real_split(real: Mapping[str, Any] | None = None) -> dict[str, list[dict[str, np.ndarray]]]:
    """The real frames as annotated samples: ``train`` (frames 0–4 without their right-most
    :data:`VAL_COLUMNS` columns), ``val`` (those columns, rows 0–191) and ``test`` (whole frames 5–9)."""
    from cellnb import data

    real = data.load_ndev_nuclei() if real is None else real
    frames, labels = real["frames"], real["labels"]
    w = frames.shape[-1]
    train = [_sample(frames[t][:, : w - VAL_COLUMNS], labels[t][:, : w - VAL_COLUMNS]) for t in TRAIN_FRAMES]
    val = [_sample(frames[t][:VAL_ROWS, w - VAL_COLUMNS:], labels[t][:VAL_ROWS, w - VAL_COLUMNS:]) for t in TRAIN_FRAMES]
    test = [_sample(frames[t], labels[t]) for t in TEST_FRAMES]
    return {"train": train, "val": val, "test": test}


def generated_samples(n: int, seed: int, generator: Callable[[int], Mapping[str, Any]] | None = None,
                      size: int = 256) -> list[dict[str, np.ndarray]]:
    """``n`` generated annotated samples; default ``cellnb.data.nuclei(s, size, regime="hoechst")``."""
    from cellnb import data

    gen = generator or (lambda s: data.nuclei(s, size=size, regime="hoechst"))
    out = []
    for i in range(n):
        s = gen(seed + i)
        out.append(_sample(s["image"], s["labels"]))
    return out


def _scores(true_list: Sequence[np.ndarray], pred_list: Sequence[np.ndarray]) -> list[dict[str, float]]:
    from cellnb import floors

    return [floors.instance_scores(t, p) for t, p in zip(true_list, pred_list)]


def evaluate(method_name: str, *, seeds: Sequence[int] = (0, 1, 2), size: str = "slim", steps: int = 300,
             finetune_steps: int | None = None, n_generated: int = 40, generator: Callable[[int], Mapping[str, Any]] | None = None,
             scenarios: Sequence[str] = SCENARIOS, train_kwargs: Mapping[str, Any] | None = None,
             finetune_lr: float | None = None, device: str = "cpu", real: Mapping[str, Any] | None = None,
             predict_kwargs: Mapping[str, Any] | None = None, tune_postprocess: bool = False,
             half_budget: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train ``method_name`` under each scenario for each seed and score it on real frames 5–9.

    With ``tune_postprocess``, each trained model's instance step takes the setting of
    ``method.postprocess_options`` with the best AJI on that route's own validation images
    (:meth:`cellnb.methods.base.Method.choose_postprocess`): the held-out generated images for
    ``generated``, the held-out strip of frames 0–4 for ``real`` and ``generated+real``; the
    choices are returned under ``postprocess`` ({(scenario, seed): settings}), and the ceiling is
    the best of those settings on the perfect maps (without tuning: the default instance step's).

    ``steps``: optimiser steps of each training from scratch (``generated``, ``real``);
    ``finetune_steps`` (default ``steps // 2``) of the real fine-tuning in ``generated+real``, with
    learning rate ``finetune_lr`` (default the method's ``lr`` / 3). ``train_kwargs`` go to
    ``method.train`` (``batch_size``, ``crop``, ``lr``, …). Generated training images use seeds
    ``1_000_000 + 1000 * seed + i`` (disjoint from every chapter's). ``half_budget``: every
    training of a method that can (``Method.measures_half_budget``) also measures the validation
    loss half its budget reaches (:func:`cellnb.methods.training.half_budget_branch`, in the
    history's ``attrs["half_budget"]``; the training itself is unchanged).

    Returns a dict: ``scores`` (DataFrame: scenario, seed, frame, ap50, aji, dice), ``floor``
    (DataFrame: frame, ap50, aji, dice of Otsu + watershed), ``ceiling`` (dict of means) and
    ``ceiling_frames`` (DataFrame), ``histories`` ({(scenario, seed): DataFrame with ``val_loss``}),
    ``steps_per_s`` ({scenario: mean}), ``seconds``, and the settings.
    """
    from cellnb import floors
    from cellnb.methods import get_method
    from cellnb.utils import seed_everything

    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios {sorted(unknown)}; choose from {list(SCENARIOS)}")
    if "generated+real" in scenarios and "generated" not in scenarios:
        raise ValueError("'generated+real' fine-tunes the 'generated' model: include 'generated'")
    method = get_method(method_name)
    method.check_task("instances")
    split = real_split(real)
    test_true = [s["labels"] for s in split["test"]]
    tk = dict(train_kwargs or {})
    if half_budget and method.measures_half_budget:
        tk["half_budget"] = True
    ft_steps = int(finetune_steps) if finetune_steps is not None else max(1, steps // 2)
    predict_kwargs = dict(predict_kwargs or {})
    t0 = time.perf_counter()

    floor_rows = _scores(test_true, [floors.otsu_watershed(s["image"]) for s in split["test"]])
    floor = pd.DataFrame([{"frame": f, **r} for f, r in zip(TEST_FRAMES, floor_rows)])
    # instance-step settings (predict's own tiling keywords are not the instance step's)
    step_kwargs = {k: v for k, v in predict_kwargs.items() if k not in ("tile", "overlap")}
    options = [{**step_kwargs, **o} for o in method.postprocess_options("instances")] if tune_postprocess else [step_kwargs]
    # the ceiling bounds whichever setting a route chooses: the best of them on the perfect maps
    ceil_rows = max((_scores(test_true, [method.ceiling(t, **o) for t in test_true]) for o in options),
                    key=lambda rows_: float(np.mean([r["aji"] for r in rows_])))
    ceiling_frames = pd.DataFrame([{"frame": f, **r} for f, r in zip(TEST_FRAMES, ceil_rows)])

    rows, histories, speeds = [], {}, {s: [] for s in scenarios}

    def train(model, train_s, val_s, n_steps, seed, **extra):
        hist = method.train(model, train_s, val_s, "instances", steps=n_steps, seed=seed, device=device,
                            progress=progress, **{**tk, **extra})
        return hist

    chosen: dict[tuple[str, int], dict[str, Any]] = {}

    def instance_step(model, val_s, scenario, seed) -> Callable[[Any], np.ndarray]:
        if not tune_postprocess:
            return lambda p: p.labels
        choice = method.tune_postprocess(model, val_s, device=device, options=options, **predict_kwargs)
        chosen[(scenario, int(seed))] = choice
        return lambda p: method.instances_with(p, choice)

    def score(model, scenario, seed, val_s):
        labels_of = instance_step(model, val_s, scenario, seed)
        preds = [labels_of(method.predict(model, s["image"], "instances", device=device, **predict_kwargs))
                 for s in split["test"]]
        for f, r in zip(TEST_FRAMES, _scores(test_true, preds)):
            rows.append({"scenario": scenario, "seed": int(seed), "frame": f, **r})

    for seed in seeds:
        if "generated" in scenarios:
            seed_everything(seed)
            gen = generated_samples(n_generated, 1_000_000 + 1000 * int(seed), generator)
            n_val = max(1, len(gen) // 5)
            model = method.build(size, in_channels=1, task="instances")
            hist = train(model, gen[n_val:], gen[:n_val], steps, seed)
            histories[("generated", seed)] = hist
            speeds["generated"].append(hist.attrs.get("steps_per_s", float("nan")))
            score(model, "generated", seed, gen[:n_val])
            if "generated+real" in scenarios:
                lr = finetune_lr if finetune_lr is not None else tk.get("lr", 1e-3) / 3
                hist = train(model, split["train"], split["val"], ft_steps, seed, lr=lr)
                histories[("generated+real", seed)] = hist
                speeds["generated+real"].append(hist.attrs.get("steps_per_s", float("nan")))
                score(model, "generated+real", seed, split["val"])
        if "real" in scenarios:
            seed_everything(seed)
            model = method.build(size, in_channels=1, task="instances")
            hist = train(model, split["train"], split["val"], steps, seed)
            histories[("real", seed)] = hist
            speeds["real"].append(hist.attrs.get("steps_per_s", float("nan")))
            score(model, "real", seed, split["val"])
    return {
        "method": method_name, "size": size, "steps": steps, "finetune_steps": ft_steps, "seeds": list(seeds),
        "n_generated": n_generated, "scores": pd.DataFrame(rows), "floor": floor,
        "ceiling": {k: float(ceiling_frames[k].mean()) for k in METRICS}, "ceiling_frames": ceiling_frames,
        "histories": histories, "steps_per_s": {k: float(np.mean(v)) for k, v in speeds.items() if v},
        "seconds": time.perf_counter() - t0, "postprocess": chosen,
    }


def _paired(result: Mapping[str, Any], scenario: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = result["scores"]
    s = s[s["scenario"] == scenario].sort_values(["seed", "frame"])
    floor = result["floor"].set_index("frame")[metric]
    return s[metric].to_numpy(float), floor.loc[s["frame"]].to_numpy(float), s["seed"].to_numpy()


def summary(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per scenario, then the floor and the ceiling: mean of each metric over frames and
    seeds with its 95 % interval (bootstrap over seeds, then frames), whether it beats the
    floor (:func:`cellnb.verdicts.beats_floor` on AP@0.5) and, where the trainings measured it,
    what the second half of their budget bought (:func:`cellnb.report.half_budget_cell`)."""
    from cellnb import verdicts
    from cellnb.methods.training import half_budget_record_fields
    from cellnb.report import half_budget_cell

    rows = []
    for scenario in [s for s in SCENARIOS if s in set(result["scores"]["scenario"])]:
        row: dict[str, Any] = {"training": scenario}
        for m in METRICS:
            vals, fl, groups = _paired(result, scenario, m)
            mean, lo, hi = verdicts.bootstrap_interval(vals, groups)
            row[m] = mean
            row[f"{m} 95% interval"] = f"[{lo:.3f}, {hi:.3f}]"
        vals, fl, groups = _paired(result, scenario, "ap50")
        row["beats floor (AP@0.5)"] = verdicts.beats_floor(vals, fl, better="higher", groups=groups)
        gains = half_budget_record_fields([h for (sc, _), h in sorted(result["histories"].items()) if sc == scenario])
        if gains:
            row["gain of the 2nd half"] = half_budget_cell(gains)
        rows.append(row)
    floor = {"training": "floor: Otsu + watershed", **{m: float(result["floor"][m].mean()) for m in METRICS}}
    ceiling = {"training": "ceiling: oracle maps", **result["ceiling"]}
    return pd.DataFrame(rows + [floor, ceiling])


def floor_verdict(result: Mapping[str, Any], scenario: str, metric: str = "ap50", *, margin: float = 0.0,
                  learned: Mapping[str, bool] | None = None):
    """:func:`cellnb.verdicts.compare` of "``scenario`` beats the classical floor on ``metric``",
    paired per test frame and seed (the floor is deterministic, so it repeats over seeds)."""
    from cellnb import verdicts

    vals, fl, groups = _paired(result, scenario, metric)
    return verdicts.compare(vals, fl, better="higher", groups=groups, margin=margin, learned=learned,
                            labels=(f"{result['method']} ({scenario})", "Otsu + watershed"))


#: scenario -> the word used in metric and model names
SCENARIO_TAGS = {"generated": "generated_only", "real": "real_only", "generated+real": "finetuned"}
SCENARIO_LABELS = {"generated": "generated only", "real": "real frames 0–4 only",
                   "generated+real": "generated, then fine-tuned on real"}


def curve(history: pd.DataFrame) -> list[float]:
    """The validation-loss curve of one training (what :func:`cellnb.verdicts.converged` reads)."""
    return [float(v) for v in history["val_loss"].to_numpy(float)]


def record(run, result: Mapping[str, Any], prefix: str = "real", label: str | None = None) -> dict[str, Any]:
    """Record an :func:`evaluate` result in ``run`` (:class:`cellnb.results.Run`) and return its verdicts.

    Metrics: ``{prefix}_{tag}_{m}`` with ``_low``/``_high`` (bootstrap over seeds, then frames) for
    each scenario (tags :data:`SCENARIO_TAGS`), ``floor_{prefix}_{m}``, ``ceiling_{prefix}_{m}`` and
    ``{prefix}_{tag}_steps_per_s``. One :meth:`Run.model` per scenario and seed (AJI per frame
    against the floor's). Checks (``kind="check"``): each scenario beats the floor on AJI — a claim
    about the floor itself, so it needs the models converged only — and "generated pre-training
    helps" (fine-tuned vs real-only), which needs both sides learned.
    """
    from cellnb import verdicts
    from cellnb.methods.training import half_budget_record_fields

    label = label or result["method"]
    scores, floor = result["scores"], result["floor"].set_index("frame")
    for m in METRICS:
        run.metric(f"floor_{prefix}_{m}", float(floor[m].mean()))
        run.metric(f"ceiling_{prefix}_{m}", float(result["ceiling"][m]))
    names: dict[str, list[str]] = {}
    for scenario in [s for s in SCENARIOS if s in set(scores["scenario"])]:
        tag = SCENARIO_TAGS[scenario]
        sub = scores[scores.scenario == scenario].sort_values(["seed", "frame"])
        for m in METRICS:
            mean, lo, hi = verdicts.bootstrap_interval(sub[m].to_numpy(float), sub.seed.to_numpy())
            run.update({f"{prefix}_{tag}_{m}": mean, f"{prefix}_{tag}_{m}_low": lo, f"{prefix}_{tag}_{m}_high": hi})
        if scenario in result["steps_per_s"]:
            run.metric(f"{prefix}_{tag}_steps_per_s", result["steps_per_s"][scenario])
        names[scenario] = []
        for seed, grp in sub.groupby("seed"):
            name = f"{prefix}_{tag}_seed{int(seed)}"
            hist = result["histories"][(scenario, int(seed))]
            aji, fl = grp.aji.to_numpy(float), floor.loc[grp.frame, "aji"].to_numpy(float)
            run.model(name, converged=verdicts.converged(curve(hist)),
                      beats_floor=verdicts.beats_floor(aji, fl, better="higher"), metric="aji",
                      value=float(aji.mean()), floor=float(fl.mean()), ceiling=float(result["ceiling"]["aji"]),
                      curve=curve(hist), steps=int(hist["step"].iloc[-1]) if "step" in hist else len(hist),
                      steps_per_s=float(hist.attrs.get("steps_per_s", float("nan"))), seeds=1,
                      **half_budget_record_fields([hist]))
            names[scenario].append(name)
    found: dict[str, Any] = {}
    for scenario, models in names.items():
        tag = SCENARIO_TAGS[scenario]
        v = floor_verdict(result, scenario, "aji", learned={n: run.models[n]["converged"] for n in models})
        cid = f"{prefix}_{tag}_beats_floor"
        run.verdict(cid, f"{label} trained on {SCENARIO_LABELS[scenario]} beats Otsu + watershed on the real "
                    "Hoechst frames 5–9 (AJI)", "sim-to-real check", v, kind="check",
                    note=f"ceiling of its post-processing on the true maps: AJI {result['ceiling']['aji']:.3f}")
        found[cid] = v
    if "generated+real" in names and "real" in names:
        a, _, groups = _paired(result, "generated+real", "aji")
        b, _, _ = _paired(result, "real", "aji")
        v = verdicts.compare(a, b, better="higher", groups=groups,
                             learned=run.learned(*names["generated+real"], *names["real"]),
                             labels=("pre-trained + fine-tuned", "real only"))
        cid = f"{prefix}_pretraining_helps"
        run.verdict(cid, f"Generated pre-training helps {label} on the real frames (fine-tuned vs real-only, AJI)",
                    "sim-to-real check", v, kind="check")
        found[cid] = v
    return found


def plot_curves(results: Mapping[str, Mapping[str, Any]]):
    """Validation-loss curves of every training of each result (``{label: evaluate(...)}``): one
    panel per method, one colour per scenario, one line per seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.2), squeeze=False)
    colours = dict(zip(SCENARIOS, ("tab:blue", "tab:orange", "tab:green")))
    for ax, (label, result) in zip(axes[0], results.items()):
        for (scenario, seed), hist in sorted(result["histories"].items(), key=lambda kv: (kv[0][0], kv[0][1])):
            ax.plot(hist["step"], hist["val_loss"], color=colours[scenario], alpha=0.8,
                    label=SCENARIO_LABELS[scenario] if seed == result["seeds"][0] else None)
        ax.set(title=label, xlabel="optimiser step", ylabel="validation loss", yscale="log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (method, training route) of several :func:`evaluate` results, then each method's
    ceiling and the (shared) floor: AP@0.5, AJI and Dice, "mean [95 % interval]"."""
    rows = []
    floor = None
    for label, result in results.items():
        s = summary(result)
        for _, r in s.iterrows():
            if r["training"].startswith("floor"):
                floor = r
                continue
            row = {"method": label, "training": r["training"]}
            for m in METRICS:
                row[m] = (f"{r[m]:.3f} {r[f'{m} 95% interval']}" if isinstance(r.get(f"{m} 95% interval"), str)
                          else f"{r[m]:.3f}")
            if isinstance(r.get("beats floor (AP@0.5)"), (bool, np.bool_)):
                row["beats floor (AP@0.5)"] = bool(r["beats floor (AP@0.5)"])
            rows.append(row)
    if floor is not None:
        rows.append({"method": "Otsu + watershed", "training": "floor (no training)",
                     **{m: f"{floor[m]:.3f}" for m in METRICS}})
    return pd.DataFrame(rows).fillna("")
