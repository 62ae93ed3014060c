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
# # U-SE-ResNet: mask + marker segmentation for the Cell Tracking Challenge

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None
cache_dir = None
num_threads = 1  # torch CPU threads (cellnb.utils.set_cpu_threads; 0: the torch default)

# %% tags=["remove-cell"]
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from cellnb import config, report, results, utils
from cellnb.experiments import u_se_resnet as exp
from cellnb.losses.u_se_resnet import power_schedule
from cellnb.methods import get_method

cfg, dev, run = config.start_chapter("u_se_resnet", exp.SETTINGS, profile=profile, device=device, seed=seed, data_root=data_root, num_threads=num_threads)
# the CTC folders (ground truth and results) go to cache_dir, or to a scratch folder removed after scoring
scratch = None if cache_dir else tempfile.TemporaryDirectory(prefix="cellnb_u_se_resnet_")
work_dir = Path(cache_dir) if cache_dir else Path(scratch.name)
method = get_method("u_se_resnet")

result, data_ = exp.run_experiment(cfg, seed, run.device, work_dir, progress=False)
if scratch is not None:
    scratch.cleanup()
found = exp.record(run, result, cfg)
run.metric("seconds_experiment", result.seconds)
path = run.save()
run.glue()
df, seq, hist = result.per_image, result.sequence, result.history
m = run.metrics

# %% tags=["remove-input"]
report.banner(run)
display(Markdown(exp.reproduction_summary(run)))

# %% [markdown]
# ## Introduction
#
# U-SE-ResNet is the Cell Tracking Challenge 2021 entry of team MU-Ra-US (Rahmon, Toubal,
# Palaniappan, University of Missouri). There is no paper: the method is described in the README of
# `CIVA-Lab/U-SE-ResNet-for-Cell-Tracking-Challenge`, and the code is a
# `segmentation_models_pytorch` U-Net with an SE-ResNet-50 encoder. The network predicts two maps, a
# **cell mask** and a **marker** (the cells eroded by a dataset-specific size E-p); connected
# components of the markers seed a watershed on the distance transform of the mask, and objects
# smaller than T-a are removed. Training uses a binary cross-entropy weighted towards cell edges,
# with a weight that sharpens as training goes on.
#
# The README makes two claims that this chapter tests: the markers separate touching cells, and the
# edge weighting makes the network "learn better cell outlines". The CTC leaderboard scores of the
# entry are not reachable offline, so no published number is compared here. The whole recipe
# (sizes, targets, loss, normalisation, post-processing, training) is
# `cellnb.methods.get_method("u_se_resnet")`.

# %% [markdown]
# ## Data
#
# The CTC data sets cannot be downloaded when the book runs. Three test sets are used:
#
# - **a generated CTC sequence**: `cellnb.data.ctc_timelapse` makes 2-D fluorescence time-lapses of
#   moving, dividing, touching nuclei with tracked ground truth; the held-out sequence is written in the
#   CTC layout (`01/`, `01_GT/TRA`, `01_GT/SEG`), so py-ctcmetrics scores it as it scores a submission.
#   Training uses other sequences; their last frames are the validation split (a split by time);
# - **generated touching nuclei** (`cellnb.data.nuclei`, dense regime), train / validation / test
#   images from disjoint seeds;
# - **real Hoechst nuclei** (`cellnb.data.load_ndev_nuclei`, the `ndev-sampledata` scratch assay, when
#   installed): 10 frames of one sequence with nuclei instance labels, split by time.
#
# Images are normalised by clipping the 1 % intensity tails and rescaling to [0, 1]. The marker target
# erodes every cell on its own with an E-p × E-p square.

# %% tags=["remove-input"]
example = data_["ctc"]["test"][0]
tg = method.targets(example, erosion=cfg["erosion"])
nuc = data_["nuclei"]["test"][0]
tn = method.targets(nuc, erosion=cfg["erosion"])
fig, axes = plt.subplots(2, 4, figsize=(13, 6.6))
panels = [("CTC frame (normalised)", method.normalize(example["image"])[0], "gray"),
          ("mask target", tg["mask"][0], "gray"), (f"marker target (E-p = {cfg['erosion']})", tg["marker"][0], "gray"),
          ("edge weight w", tg["weight"][0], "magma"),
          ("touching nuclei", method.normalize(nuc["image"])[0], "gray"), ("mask target", tn["mask"][0], "gray"),
          (f"marker target (E-p = {cfg['erosion']})", tn["marker"][0], "gray"), ("edge weight w", tn["weight"][0], "magma")]
for ax, (title, img, cmap) in zip(axes.ravel(), panels):
    ax.imshow(img, cmap=cmap)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Model
#
# `get_method("u_se_resnet").build(size)` rebuilds `smp.Unet('se_resnet50', in_channels=1, classes=2)`
# from torchvision parts: `Bottleneck` blocks [3, 4, 6, 3] with a `torchvision.ops.SqueezeExcitation`
# module on the residual branch before the addition and the stride in the first 1×1 convolution
# (Caffe style, as in the SENet weights smp uses), a 7×7 stem, and smp's decoder (nearest ×2,
# concatenated skip, two 3×3 conv-BN-ReLU, channels 256…16) with a 3×3 head giving the mask and marker
# logits. Size `paper` has the spec's parameter count; the CPU profiles train a slimmer network from
# scratch. Prediction pads any image to a multiple of 32.

# %% tags=["remove-input"]
report.show_table(pd.DataFrame([
    {"network": "U-SE-ResNet, size paper (spec: 35.05 M)", "parameters": result.params["params"]},
    {"network": f"trained here: size {cfg['size']}", "parameters": result.params["params_trained"]},
]), caption="Parameter counts")

# %% [markdown]
# ## Loss
#
# The released weight map is **not** the U-Net w₀/σ map. Borders are the Canny edges of the instance
# label image (outer outlines and interfaces between touching cells), d is the distance to the nearest
# border, and w = (d_max − d)/d_max over the whole image. The loss weights both outputs' BCE by
# W = w^p and normalises by ΣW, with p = (epoch/50)^5: uniform at the start, p = 1 at epoch 50 of 120
# and p ≈ 76 at the end, when only pixels within a few pixels of a border still count. Here the
# optimiser step is rescaled to the 120-epoch schedule, so a short run walks the same range of p.
# The ablation `bce` keeps p = 0 (plain BCE).

# %% tags=["remove-input"]
w = tg["weight"][0]
epochs_120 = np.arange(120)
fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
axes[0].plot(epochs_120, [power_schedule(e) for e in epochs_120])
axes[0].set_yscale("symlog", linthresh=0.1)
axes[0].set_xlabel("epoch (of 120)")
axes[0].set_title("p = (epoch/50)^5", fontsize=9)
for ax, p in zip(axes[1:], [0.0, 1.0, 32.0]):
    ax.imshow(w**p, cmap="magma", vmin=0, vmax=1)
    ax.set_title(f"W = w^{p:g}", fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Training
#
# Random crops with flips and 90° rotations, and, half of the time, the released additive |N(0, σ)|
# noise with σ ~ U[0, 0.2); Adam with a one-cycle learning rate (the paper halves 1e-4 every 30 of
# 120 epochs, batch 4). Every model logs the training loss and a validation loss on held-out training
# images at evenly spaced steps; the validation loss is the plain BCE (p = 0) on whole images, so the
# curve stays comparable while the training weight sharpens. Once the weighting concentrates on the
# borders (p ≫ 1) the plain validation BCE rises again: the model trades interior accuracy for
# outlines. A model has converged when the last quarter of its curve improves on the quarter before by
# less than 5 % (`cellnb.verdicts.converged`), and it learned when it also beats the Otsu + watershed
# floor on the test images. The grid: the baseline (edge-weighted BCE) for every seed on both generated
# sets, plain BCE for every seed on the CTC sequence, other erosions for the first seed, and, for the
# real frames, three training routes (below).

# %% tags=["remove-input"]
tasks = [t for t in ("ctc", "nuclei", "real") if (hist.task == t).any()]
fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.4), squeeze=False)
colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
for ax, task in zip(axes[0], tasks):
    sub = hist[hist.task == task]
    for k, variant in enumerate(dict.fromkeys(sub.variant)):
        for j, (s, grp) in enumerate(sub[sub.variant == variant].groupby("seed")):
            ax.plot(grp.step, grp.val_loss, color=colours[k % len(colours)], alpha=0.8,
                    label=variant if j == 0 else None)
    ax.set_title(exp.TASK_LABELS[task], fontsize=9)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("validation BCE (p = 0)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()
status = pd.DataFrame([{"model": n, "converged": e["converged"], "beats floor (AJI)": e["beats_floor"],
                        "AJI": e["value"], "floor": e["floor"], "ceiling": e.get("ceiling", np.nan),
                        "steps": e["steps"], "steps/s": e["steps_per_s"],
                        "gain of the 2nd half": report.half_budget_cell(e)} for n, e in run.models.items()])
report.show_table(status, caption="Every trained model: converged, beats its floor; steps per second on this CPU (one "
                  f"thread); {report.HALF_BUDGET_CAPTION}", floatfmt="{:.3f}")

# %% [markdown]
# ## Evaluation
#
# Every test image is segmented with markers → watershed (and, for the baselines, with connected
# components of the mask: the "no markers" ablation). Per image: AP at IoU 0.5 (TP / (TP + FP + FN)),
# AJI, foreground Dice, the frame's CTC SEG and a boundary F1 (outline pixels matched within 1.5 px).
# The held-out CTC sequence is written in CTC result format (every object its own one-frame track,
# valid for the segmentation benchmark) and py-ctcmetrics computes **SEG** and **DET**. Beside every
# model: the **floor** (Otsu + distance watershed on the same image) and the **ceilings** (the same
# post-processing on the perfect mask and markers from the ground truth, and connected components
# of the perfect mask). Tables give the mean and a 95 % bootstrap interval over seeds and images.

# %% tags=["remove-input"]
names = {"baseline": "U-SE-ResNet (edge-weighted BCE)", "no_edge_weight": "plain BCE", "floor": "floor: Otsu + watershed",
         f"ceiling_e{cfg['erosion']}": f"ceiling: oracle maps (E-p {cfg['erosion']})"}
seq_tab = []
for (variant, post), grp in seq.groupby(["variant", "post"], sort=False):
    row = {"variant": names.get(variant, variant), "post-processing": post, "seeds": int((grp.seed >= 0).sum())}
    for key in ("ctc_seg", "ctc_det"):
        mean, low, high = exp._mean_ci(grp[key])
        row[key.replace("ctc_", "").upper()] = f"{mean:.3f} [{low:.3f}, {high:.3f}]" if len(grp) > 1 else f"{mean:.3f}"
    seq_tab.append(row)
report.show_table(pd.DataFrame(seq_tab), caption="Generated CTC sequence, py-ctcmetrics SEG and DET (mean [95 % interval over seeds])")
for task in ("ctc", "nuclei"):
    tab = exp.summary_table(df, task)
    tab["variant"] = tab["variant"].map(lambda v: names.get(v, v))
    report.show_table(tab, caption=f"{exp.TASK_LABELS[task]}: per-image scores, mean [95 % interval]")
display(Markdown(exp.gap_note(run)))

# %% tags=["remove-input"]
rows_fig = []
for task in ("ctc", "nuclei"):
    ex = result.examples[task]
    it, p = ex["items"][0], ex["preds"][0]
    rows_fig.append((task, it, p, ex["cc"][0]))
rng_c = np.random.default_rng(0)
cmap_colors = np.vstack([[0, 0, 0], rng_c.uniform(0.2, 1.0, (4096, 3))])
fig, axes = plt.subplots(len(rows_fig), 6, figsize=(16, 2.9 * len(rows_fig)), squeeze=False)
for row, (task, it, p, cc) in zip(axes, rows_fig):
    panels = [("image", method.normalize(it["image"])[0], "gray"), ("mask probability", p.foreground, "viridis"),
              ("marker probability", p.maps["marker"], "viridis"),
              ("markers → watershed", cmap_colors[p.labels % 4096], None),
              ("connected components", cmap_colors[cc % 4096], None),
              ("ground truth", cmap_colors[it["labels"] % 4096], None)]
    for ax, (title, img, cmap) in zip(row, panels):
        ax.imshow(img, cmap=cmap)
        ax.set_title(f"{exp.TASK_LABELS[task].split(' ')[-1]}: {title}", fontsize=8)
        ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Sim-to-real: real Hoechst nuclei
#
# Three routes to the real frames, each with three seeds: (a) trained only on generated nuclei from the
# Hoechst-matched generator (`cellnb.data.nuclei(regime="hoechst")`); (b) trained on the real frames
# 0–3 (frame 4 for validation) with the same augmentation; (c) the model of (a) fine-tuned on the real
# frames 0–3. All are tested on frames 5–9; the dense-nuclei models of the section above are also
# applied as they are. The frames are one sequence of the same cells, so they are correlated and the
# split is by time: frames 5–9 are not independent of 0–4, and the intervals below count images of one
# sequence. Frames are 210 × 576; prediction pads them to a multiple of 32.

# %% tags=["remove-input"]
if result.real_available:
    tab = exp.summary_table(df, "real", metrics=("ap50", "aji", "dice"))
    tab["variant"] = tab["variant"].map(lambda v: names.get(v, v))
    report.show_table(tab, caption="Real frames 5–9: per-frame scores, mean [95 % interval over seeds and frames]")
    for e in exp.no_instance_models(result.models):
        report.note(f"{names.get(e['variant'], e['variant'])}, seed {e['seed']}, found no nuclei on any test frame: "
                    + (f"its marker map peaks at {e['marker_max']:.2f}, under the paper's marker threshold 0.5, so the "
                       f"watershed has no seeds, although its mask covers {100 * e['mask_fraction']:.0f} % of the frames. "
                       "Its AJI of 0 is a failure of its marker head under the faithful post-processing, not of its mask; "
                       "it enters the table and the verdicts as it is." if e["markers_below_threshold"]
                       else f"its marker map peaks at {e['marker_max']:.2f}; its mask covers {100 * e['mask_fraction']:.0f} % of the frames."),
                    kind="warning")
    ex = result.examples["real"]
    it, p = ex["items"][0], ex["preds"][0]
    fig, axes = plt.subplots(3, 1, figsize=(12, 9))
    for ax, (title, img) in zip(axes, [("real frame 5 (normalised)", method.normalize(it["image"])[0]),
                                      ("fine-tuned U-SE-ResNet: markers → watershed", cmap_colors[p.labels % 4096]),
                                      ("ground truth", cmap_colors[it["labels"] % 4096])]):
        ax.imshow(img, cmap="gray")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    plt.tight_layout()
    plt.show()
else:
    report.note("The real nuclei are not installed (`pip install --no-deps ndev-sampledata==0.0.3`); "
                "the sim-to-real section is skipped.", kind="warning")

# %% [markdown]
# ## Results
#
# Each comparative claim is decided by `cellnb.verdicts.compare` on paired per-image values pooled over
# the seeds: it holds when the 95 % bootstrap interval of the difference lies on the claimed side, fails
# when it lies on the other side, and is inconclusive otherwise, or when a model did not learn, or when
# the metric is capped by the post-processing's ceiling. The parameter count is a self-check.

# %% tags=["remove-input"]
report.show_claims(run)

# %% [markdown]
# ## Deviations from the paper
#
# ```{include} ../deviations/u_se_resnet.md
# ```

# %% [markdown]
# ## Summary
#
# On the held-out generated CTC sequence the baseline reaches SEG {glue:text}`u_se_resnet_ctc_seg:.3f`
# (95 % interval {glue:text}`u_se_resnet_ctc_seg_low:.3f`–{glue:text}`u_se_resnet_ctc_seg_high:.3f`) and
# DET {glue:text}`u_se_resnet_ctc_det:.3f` through py-ctcmetrics, against {glue:text}`u_se_resnet_floor_ctc_seg:.3f`
# / {glue:text}`u_se_resnet_floor_ctc_det:.3f` for Otsu + watershed and {glue:text}`u_se_resnet_ceiling_ctc_seg:.3f`
# / {glue:text}`u_se_resnet_ceiling_ctc_det:.3f` for the post-processing on perfect maps. On generated
# touching nuclei, mask + marker + watershed reaches AP@0.5 {glue:text}`u_se_resnet_ap50:.3f` (floor
# {glue:text}`u_se_resnet_floor_ap50:.3f`, ceiling {glue:text}`u_se_resnet_ceiling_ap50:.3f`) and AJI
# {glue:text}`u_se_resnet_aji:.3f` (floor {glue:text}`u_se_resnet_floor_aji:.3f`, ceiling
# {glue:text}`u_se_resnet_ceiling_aji:.3f`); connected components of the perfect mask reach only AJI
# {glue:text}`u_se_resnet_ceiling_cc_nuclei_aji:.3f`, which is why a foreground-only pipeline cannot separate
# these nuclei. Trained with plain BCE instead of the edge-weighted loss, the CTC instances reach AJI
# {glue:text}`u_se_resnet_ctc_no_edge_weight_aji:.3f` instead of {glue:text}`u_se_resnet_ctc_baseline_aji:.3f`,
# and the outline measure (boundary F1) {glue:text}`u_se_resnet_ctc_no_edge_weight_boundary_f1:.3f` instead of
# {glue:text}`u_se_resnet_ctc_baseline_boundary_f1:.3f`. The weight map's borders include the interfaces
# between touching cells, so the weighting can act on the separation of instances (which the markers need)
# as well as on the outer outlines; the claims table keeps the two measures apart and gives each verdict
# with its interval.
