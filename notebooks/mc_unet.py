# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # MC-Unet: joint density and boundary learning for cell segmentation
#
# Jin, Hu, Zhou, Guan, Li and Chen (IEEE BIBM 2022) add a **density branch** and a **boundary
# branch** to a **multi-scale convolutional U-Net (MC-Unet)** and claim that the density loss helps
# with densely packed cells, the boundary loss with unclear boundaries and touching cells. Only the
# abstract is public; the released code (`HuHaigen/Joint-Feature-Learning-for-Cell-Segmentation`
# @99a7fed) has **no separate branches**: its auxiliary losses act on the single segmentation output.
# This chapter runs both readings as one method (`cellnb.methods.get_method("mc_unet")`), the paper's
# ablation (with and without each branch) and the released loss at the released batch size 1.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None
num_threads = 1  # torch CPU threads (cellnb.utils.set_cpu_threads; 0: the torch default)

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from cellnb import config, floors, report, results, sim2real, utils, verdicts
from cellnb.experiments import mc_unet as exp
from cellnb.models import create_model
from cellnb.profile import count_params

cfg, dev, run = config.start_chapter("mc_unet", exp.SETTINGS, profile=profile, device=device, seed=seed, data_root=data_root, num_threads=num_threads)
method = exp.method()

# %% tags=["remove-cell"]
data = exp.make_data(cfg, seed)
rows, curves, info, first = exp.run_ablation(cfg, data, seed=seed, device=dev, progress=False)
floor_by_regime = {r: exp.floor_rows(data[f"test_{r}"], data["train"]) for r in ("dense", "sparse")}
all_rows = pd.concat([rows, exp.with_floor(rows, floor_by_regime)], ignore_index=True)
seeds = sorted(rows.seed.unique())
ceilings = {r: {c: exp.ceiling(c, data[f"test_{r}"], cfg.sigma, info[c]["post"]) for c in cfg.configs}
            for r in ("dense", "sparse")}

# --- metrics, floors, ceilings, learned flags
for regime in ("dense", "sparse"):
    sfx = "" if regime == "dense" else "_sparse"
    fl = pd.DataFrame(floor_by_regime[regime])
    for m in exp.METRICS:
        run.metric(f"floor_{m}{sfx}", fl[m].mean())
    for c in cfg.configs:
        sub = rows[(rows.config == c) & (rows.regime == regime)]
        for m in exp.METRICS:
            mean, low, high = verdicts.bootstrap_interval(sub[m].to_numpy(), sub.seed.to_numpy())
            run.metric(f"{c}_{m}{sfx}", mean)
            run.metric(f"{c}_{m}{sfx}_low", low)
            run.metric(f"{c}_{m}{sfx}_high", high)
        for m in ("aji", "ap50"):
            run.metric(f"{c}_ceiling_{m}{sfx}", ceilings[regime][c][m])
for m in ("aji", "ap50"):
    run.metric(f"ceiling_{m}", ceilings["dense"]["mc_unet"][m])
for c in cfg.configs:
    run.metric(f"{c}_steps_per_s", info[c]["steps_per_s"])
    run.metric(f"{c}_train_seconds", info[c]["seconds"])
    a, b, g = exp.paired(all_rows, c, "floor", "aji")
    a50, b50, g50 = exp.paired(all_rows, c, "floor", "ap50")
    conv = all(verdicts.converged(curve) for curve in curves[c])
    beats = verdicts.beats_floor(a, b, better="higher", groups=g) and verdicts.beats_floor(a50, b50, better="higher", groups=g50)
    run.model(c, converged=conv, beats_floor=beats, metric="aji (dense)", value=float(np.mean(a)), floor=float(np.mean(b)),
              ceiling=ceilings["dense"][c]["aji"], curve=np.mean(np.array(curves[c]), axis=0),
              ap50=float(np.mean(a50)), floor_ap50=float(np.mean(b50)), steps_per_s=info[c]["steps_per_s"],
              converged_per_seed=[verdicts.converged(curve) for curve in curves[c]], seeds=len(curves[c]),
              **info[c]["half_budget"])
# does the boundary head tell boundaries from interiors? (first seed, dense test images)
for c in cfg.configs:
    if c in first and "boundary" in first[c][0].maps:
        on_b, inside = [], []
        for p, it in zip(first[c], data["test_dense"]):
            b, fg = it["boundary"] > 0, it["labels"] > 0
            on_b.append(p.maps["boundary"][b].mean())
            inside.append(p.maps["boundary"][fg & ~b].mean())
        run.metric(f"{c}_boundary_prob_on_boundary", float(np.mean(on_b)))
        run.metric(f"{c}_boundary_prob_interior", float(np.mean(inside)))
n_learned = sum(run.learned(c)[c] for c in cfg.configs)
run.metric("n_learned", n_learned)
run.metric("n_configs", len(cfg.configs))

# %% tags=["remove-cell"]
# --- verdicts of the paper's claims (paired per-image AJI on the dense test images, pooled over seeds)
def branch_verdict(cid, statement, a, b, metric="aji", regime="dense", kind="paper", note=""):
    x, y, g = exp.paired(all_rows, a, b, metric, regime)
    v = verdicts.compare(x, y, better="higher", groups=g, learned=run.learned(a, b), labels=(exp.LABELS[a], exp.LABELS[b]))
    cap = [c for c in (a, b) if floors.capped(ceilings[regime][c][metric], [np.mean(x), np.mean(y)])]
    if cap and v.holds is not None:
        v = verdicts.Verdict(None, v.estimate, v.low, v.high, v.n, v.n_groups, "capped", v.note + "; inconclusive: "
                             "the metric is capped by the post-processing of " + ", ".join(exp.LABELS[c] for c in cap))
    extra = f"ceilings {metric}: {ceilings[regime][a][metric]:.3f} / {ceilings[regime][b][metric]:.3f}"
    run.verdict(cid, statement, "MC-Unet abstract", v, kind=kind, note=(note + "; " if note else "") + extra)
    return v


branch_verdict("density_dense", "The density branch helps in dense regions", "mc_unet_no_boundary", "mc_unet_baseline",
               note="AJI on dense test images, each model with its own post-processing")
branch_verdict("boundary_touching", "The boundary branch helps separate touching cells", "mc_unet_no_density",
               "mc_unet_baseline", note="AJI on dense test images, each model with its own post-processing")
branch_verdict("joint_learning", "Joint density and boundary learning improves MC-Unet's segmentation", "mc_unet",
               "mc_unet_baseline", note="AJI on dense test images")
branch_verdict("density_dice", "The density branch helps in dense regions (pixel Dice)", "mc_unet_no_boundary",
               "mc_unet_baseline", metric="dice", note="foreground Dice, no post-processing involved")
run.claim("other_models", "The branches help other segmentation models too", paper="MC-Unet abstract",
          measured=None, holds=None, note="not run in this profile: the chapter's CPU budget covers MC-Unet's own ablation only")
if "mc_unet_code_b1" in cfg.configs:
    branch_verdict("code_vs_paper", "The released loss (no branches, batch 1) segments as well as the paper's two branches",
                   "mc_unet_code_b1", "mc_unet", kind="check", note="released training loss against the paper reading")
n_params = count_params(create_model("mc_unet", in_channels=3, num_classes=2, base_width=64, depth=3))
run.claim("params", "The released MNet2D (RGB, width 64, depth 3) has 24.27 M parameters", paper="released code",
          measured=n_params, holds=verdicts.threshold_verdict(abs(n_params - 24_267_586), 0), kind="check",
          note="parameter count of cellnb.models.mc_unet at the released configuration")

# %% tags=["remove-input"]
learned = [c for c in cfg.configs if run.learned(c)[c]]
paper_claims = [c for c in run.claims if c.kind == "paper"]
reproduced = [c.statement for c in paper_claims if c.holds is True]
failed = [c.statement for c in paper_claims if c.holds is False]
open_ = [c.statement for c in paper_claims if c.holds is None]
display(Markdown(
    f"**Reproduction summary ({profile}).** Scope: generated touching nuclei, MC-Unet at width "
    f"{method.sizes[cfg.model_size]['base_width']}, {len(cfg.configs)} configurations × {cfg.n_seeds} seed(s). "
    f"Models that learned (converged and above the Otsu + watershed floor on AJI and AP@0.5): {len(learned)} of "
    f"{len(cfg.configs)}. Paper claims reproduced: {len(reproduced)} ({'; '.join(reproduced) or 'none'}); "
    f"not reproduced: {len(failed)} ({'; '.join(failed) or 'none'}); inconclusive or not tested: {len(open_)}. "
    "Easy: the released architecture (parameter count matches). Hard: the paper's branch design and losses "
    "are not public, so the branches are a reconstruction."))

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Data
#
# The paper's data ("T24ALL" in the code) are not public, so the chapter uses generated fluorescent
# nuclei (`cellnb.data.nuclei`), clustered, many of them touching. Training images are half `dense`,
# half `sparse`; a few of them (half of each regime) are held out as the validation split; there is
# one test set per regime. Targets, built by the method from the instance labels: the foreground mask,
# the inner boundaries of the instances (which mark the interface between touching nuclei) and a
# Gaussian density at each nucleus centroid that sums to the number of nuclei.

# %% tags=["remove-input"]
sample = data["test_dense"][0]
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for ax, (title, img, cmap) in zip(axes, [
    ("image (dense)", sample["image"][0], "gray"),
    (f"instances ({exp.true_count(sample)} nuclei)", sample["labels"], "nipy_spectral"),
    ("boundary target", sample["boundary"], "gray"),
    (f"density target (sum {sample['density'].sum():.1f})", sample["density"], "magma"),
]):
    ax.imshow(img, cmap=cmap, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()
display(Markdown(f"{len(data['train'])} training and {len(data['val'])} validation images, {cfg.n_test} dense + "
                 f"{cfg.n_test} sparse test images, {cfg.size}×{cfg.size} px."))

# %% [markdown]
# ## Model
#
# The MC block runs three double convolutions with kernels 1, 3 and 5 in parallel (each conv →
# GroupNorm(1 group) → ReLU → conv → GroupNorm), sums them and applies a ReLU; MC-Unet stacks four
# of them on the encoder and three on the decoder with transposed-conv upsampling (the released
# `MNet2D`). In the paper reading a density head (1×1 conv, softplus) and a boundary head (1×1 conv,
# logits) sit on the last decoder features; the released code has neither.

# %% tags=["remove-input"]
report.show_table(pd.DataFrame([
    {"network": "MC-Unet, released width (64, RGB)", "parameters": n_params},
    {"network": f"MC-Unet, this run ({cfg.model_size}, both heads)", "parameters": count_params(method.build(cfg.model_size, loss="paper"))},
]), caption="Model sizes")

# %% [markdown]
# ## Loss
#
# Every configuration minimises the 2-class cross-entropy of the mask. The auxiliary terms:
#
# - **paper reading** (a reconstruction): boundary loss = binary focal loss (α = 0.9, γ = 2, the code's
#   values) on the boundary head, weight 0.15 (the code's `use_corner`); density loss = MSE between
#   the density head and the count-preserving map, both amplified by 100, weight 0.5 (unknown in the
#   paper). The ablations drop one branch, or both.
# - **released loss** (`cellnb.losses.mc_unet.released_focal_loss`, ported op for op): the focal loss
#   on the raw 2-channel *segmentation logits*, misaligned with its target as in the code; density weight 0.

# %% [markdown]
# ## Training
#
# Random crops with flips and 90° rotations, Adam with a one-cycle learning-rate schedule, a fixed
# number of optimiser steps in evaluation epochs (the validation loss on the held-out training images
# after each); the released-loss run uses the code's batch size 1 with more steps. Every configuration
# is trained from scratch once per seed, and counts as converged only when the validation curve of
# every seed passes the book's rule (`cellnb.verdicts.converged`); the figure shows all the curves.

# %% tags=["remove-input"]
report.show_table(pd.DataFrame([{
    "configuration": exp.LABELS[c], "loss": exp.CONFIGS[c][0], "batch": exp.CONFIGS[c][1] or cfg.batch_size,
    "steps": cfg.faithful_steps if exp.CONFIGS[c][1] == 1 else cfg.steps,
    "steps/s (CPU)": round(info[c]["steps_per_s"], 1), "post-processing": exp.describe(info[c]["post"]),
    "converged": run.models[c]["converged"],
    "beats floor": run.models[c]["beats_floor"],
    "gain of the 2nd half": report.half_budget_cell(run.models[c])} for c in cfg.configs]),
    caption=f"Training runs ({report.HALF_BUDGET_CAPTION})")
fig = exp.plot_curves(curves)
plt.show()

# %% [markdown]
# ## Evaluation
#
# Each model is scored per test image with its own post-processing, chosen per trained model on the
# validation images among the ways its maps allow (best mean AJI): seeds at the density peaks (flooded
# over the negated density, or over the boundary probability when both heads exist); seeds where the
# boundary probability is below a threshold (0.5–0.9); or a distance-transform watershed of the
# foreground, the only way for a model without a branch. The training table names the choice. AJI and AP@0.5 (TP / (TP + FP + FN)) score the
# instances, Dice the foreground, the count error the sum of the density (else the number of instances).
# The floor is Otsu + watershed (AJI, AP@0.5), Otsu (Dice), the training-mean count; the ceiling runs
# each post-processing on the true maps it would see.

# %% tags=["remove-input"]
report.show_table(exp.summary_table(all_rows, "dense", ceilings["dense"]),
                  caption="Dense test images: mean [95 % interval] over images and seeds")
report.show_table(exp.summary_table(all_rows, "sparse", ceilings["sparse"]),
                  caption="Sparse test images: mean [95 % interval] over images and seeds")

# %% tags=["remove-input"]
fig = exp.plot_instances(data["test_dense"], first, info, index=0)
plt.show()
if "mc_unet" in first:
    fig = exp.plot_maps(data["test_dense"][0], first["mc_unet"][0])
    plt.show()

# %% [markdown]
# ### Sim-to-real: real Hoechst nuclei
#
# Everything above is measured on generated nuclei. On the real Hoechst frames of the `ndev-sampledata`
# scratch assay (the data chapter), MC-Unet with both branches is trained three ways, each with three
# seeds: (a) on generated nuclei only, from the generator matched to this set
# (`cellnb.data.nuclei(regime="hoechst")`); (b) on the real frames 0–4 only, with the same augmentation;
# (c) the model of (a) fine-tuned on frames 0–4. All are tested on frames 5–9. The frames are one
# field minutes apart, so they are correlated: the split is by time, and validation uses a strip of
# frames 0–4, never a test frame (`cellnb.sim2real`). As on generated nuclei, each model chooses how
# to seed its instances on its route's validation images. The floor is Otsu + distance watershed on the
# same frames; the ceiling is the best of those ways of seeding on the true maps.

# %% tags=["remove-cell"]
real = exp.sim_to_real(cfg, seed=seed, device=dev)
if real is not None:
    real_found = sim2real.record(run, real, prefix="real", label="MC-Unet")

# %% tags=["remove-input"]
if real is not None:
    report.show_table(sim2real.summary(real), floatfmt="{:.3f}",
                      caption="Real frames 5–9: mean over frames and seeds, 95 % interval over seeds then frames")
    fig = sim2real.plot_curves({"MC-Unet": real})
    plt.show()
    display(Markdown(
        f"Each route trains {real['steps']} steps from scratch (fine-tuning: {real['finetune_steps']}). "
        f"Models that converged by the book's rule: "
        f"{sum(run.models[n]['converged'] for n in run.models if n.startswith('real_'))} of "
        f"{sum(1 for n in run.models if n.startswith('real_'))}; that beat the floor on AJI: "
        f"{sum(run.models[n]['beats_floor'] for n in run.models if n.startswith('real_'))}."))
else:
    report.note("The real nuclei are not installed (`pip install --no-deps ndev-sampledata==0.0.3`); "
                "the sim-to-real section is skipped.", kind="warning")

# %% [markdown]
# ## Results
#
# Every comparison pairs the two models on the same test images and seeds; the interval is a 95 %
# bootstrap over seeds and images. A verdict needs both models to have learned (converged and above
# the floor), at least three seeds, and a metric that the post-processing does not cap.

# %% tags=["remove-input"]
report.show_claims(run)

# %% [markdown]
# ## Deviations from the paper
#
# - **Full text unavailable:** branch design, loss formulas, weights and data of the paper are
#   unknown; the two heads and their losses are a reconstruction, the released loss is ported as is.
# - **Data:** generated nuclei instead of the unpublished T24 set; 1-channel input; small images,
#   a slim width and a few hundred optimiser steps on a CPU.
# - **Post-processing:** the paper's is unknown; the seeded watersheds above are this chapter's.
#
# The full list, with sources, is in {doc}`/book/deviations`.

# %% [markdown]
# ## Summary
#
# MC-Unet with both branches reached AJI {glue:text}`mc_unet_mc_unet_aji:.3f` and AP@0.5
# {glue:text}`mc_unet_mc_unet_ap50:.3f` on the dense test images, against {glue:text}`mc_unet_floor_aji:.3f`
# and {glue:text}`mc_unet_floor_ap50:.3f` for Otsu + watershed; its post-processing reaches
# {glue:text}`mc_unet_ceiling_aji:.3f` on the true maps. Without either branch MC-Unet reached AJI
# {glue:text}`mc_unet_mc_unet_baseline_aji:.3f`. The boundary head's mean probability is
# {glue:text}`mc_unet_mc_unet_boundary_prob_on_boundary:.2f` on true boundary pixels and
# {glue:text}`mc_unet_mc_unet_boundary_prob_interior:.2f` inside the nuclei: where these are close, the head
# has not learned to mark the interfaces at this budget, and the boundary-seeded post-processing cannot
# separate touching nuclei. The claims table gives each verdict with its interval.

# %% tags=["remove-input"]
if real is not None:
    g = lambda k: run.metrics[k]  # noqa: E731
    display(Markdown(
        f"On the real Hoechst frames 5–9, MC-Unet reached AJI {g('real_generated_only_aji'):.2f} trained on generated "
        f"nuclei only, {g('real_real_only_aji'):.2f} trained on real frames 0–4 only and "
        f"{g('real_finetuned_aji'):.2f} pre-trained and fine-tuned, against {g('floor_real_aji'):.2f} for Otsu + "
        f"watershed and {g('ceiling_real_aji'):.2f} for its post-processing on the true maps."))

# %% tags=["remove-cell"]
run.save()
run.glue()
