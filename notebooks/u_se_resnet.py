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
#
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
# entry are not reachable offline, so no published number is compared here.

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
import torch
from skimage.segmentation import find_boundaries

from cellnb import config, report, results, utils
from cellnb.experiments import u_se_resnet as exp
from cellnb.losses.u_se_resnet import power_schedule

cfg = config.settings_for(exp.SETTINGS, profile)
utils.set_cpu_threads(num_threads, device)
utils.seed_everything(seed)
run = results.Run("u_se_resnet", profile=profile, device=device, seed=seed, data_root=data_root, settings=cfg)
work_dir = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="cellnb_u_se_resnet_"))

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Data
#
# The CTC data sets cannot be downloaded when the book runs. `cellnb.data.ctc_timelapse` generates
# 2-D fluorescence time-lapses of moving, dividing, touching nuclei with tracked ground truth, and
# `cellnb.data.write_ctc` writes the held-out sequence in the CTC layout (`01/`, `01_GT/TRA`,
# `01_GT/SEG`) to a temporary folder, so that py-ctcmetrics scores it exactly as it scores a CTC
# submission. Training uses separate sequences (different seeds), so no frame of the test sequence
# is seen in training (the released code split frames at random, mixing frames of one video into
# train and validation). Frames are 16-bit; pre-processing clips the 1 % intensity tails and
# rescales to [0, 1]. The marker target erodes every cell on its own with an E-p × E-p square.

# %% tags=["remove-cell"]
result, data_ = exp.run_experiment(cfg, seed, utils.select_device(device), work_dir, progress=False)
test = data_["test"]
scores = result.scores

# %% tags=["remove-input"]
example = exp.make_sample(test["frames"][0], test["labels"][0], cfg["erosion"])
fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
for ax, (title, img) in zip(axes, [("raw frame (uint16)", test["frames"][0]),
                                   ("normalised (1 % clip)", example["image"][0]),
                                   ("mask target", example["mask"][0]),
                                   (f"marker target (E-p = {cfg['erosion']})", example["marker"][0]),
                                   ("edge weight w", example["weight"][0])]):
    ax.imshow(img, cmap="magma" if title.startswith("edge") else "gray")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Model
#
# `cellnb.models.create_model("u_se_resnet")` rebuilds `smp.Unet('se_resnet50', in_channels=1,
# classes=2)` from torchvision parts: torchvision `Bottleneck` blocks [3, 4, 6, 3] with a
# `torchvision.ops.SqueezeExcitation` module on the residual branch before the addition and the
# stride in the first 1×1 convolution (Caffe style, as in the SENet weights smp uses), a 7×7 stem,
# and smp's decoder (nearest ×2, concatenated skip, two 3×3 conv-BN-ReLU, channels 256…16) with a
# 3×3 head giving the mask and marker logits. At full width it has the spec's parameter count; the
# CPU profiles use a slimmer network (`width`, `blocks` in the settings), trained from scratch.

# %% tags=["remove-input"]
run.metric("params", result.params["params"])
run.metric("params_trained", result.params["params_trained"])
report.show_table(pd.DataFrame([
    {"network": "U-SE-ResNet, full width (spec: 35.05 M)", "parameters": result.params["params"]},
    {"network": f"trained here: width {cfg['width']}, blocks {list(cfg['blocks'])}", "parameters": result.params["params_trained"]},
]), caption="Parameter counts")

# %% [markdown]
# ## Loss
#
# The released weight map is **not** the U-Net w₀/σ map. Borders are the Canny edges of the instance
# label image (outer outlines and interfaces between touching cells), d is the distance to the nearest
# border, and w = (d_max − d)/d_max over the whole image. The loss weights both outputs' BCE by
# W = w^p and normalises by ΣW, with p = (epoch/50)^5: uniform at the start, p = 1 at epoch 50, and
# p ≈ 76 at epoch 119, when only pixels within a few pixels of a border still count. A short run
# rescales the epoch to the 120-epoch schedule so it walks the same range of p.

# %% tags=["remove-input"]
w = example["weight"][0]
epochs_120 = np.arange(120)
fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
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
# Adam with the learning rate halved every quarter of the run (the paper: 1e-4, halved every 30 of
# 120 epochs, batch 4), with the released augmentation: flips, a random integer rotation in 0–90°
# (nearest; the weight map filled with 0.2 outside the image), a random crop and, half of the time,
# additive |N(0, σ)| noise with σ ~ U[0, 0.2). One run trains every variant of the ablation grid:
# the baseline and the model without edge weight for each seed, and the baseline with other marker
# erosion sizes for the first seed.

# %% tags=["remove-input"]
hist = result.history
fig, ax = plt.subplots(figsize=(7, 3.2))
for (name, s), grp in hist.groupby(["variant", "seed"]):
    ax.plot(grp["epoch"], grp["loss"], label=f"{name} (seed {s})")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (weighted BCE)")
ax.set_yscale("log")
ax.legend(fontsize=7)
plt.tight_layout()
plt.show()
train_seconds = float(hist["seconds"].sum())
run.metric("train_seconds", train_seconds)

# %% [markdown]
# ## Evaluation
#
# The held-out sequence is segmented frame by frame and written in CTC result format
# (`01_RES/maskTTT.tif` with a `res_track.txt` in which every object is its own one-frame track, which
# is valid for the segmentation benchmark). py-ctcmetrics computes **SEG** (mean Jaccard of matched
# reference objects, match if |R∩S| > 0.5|R|), **DET** (1 − normalised AOGM-D) and
# **OP_CSB** = ½(SEG + DET). We add pooled pixel Dice/IoU, instance F1 and AP at IoU 0.5 (one-to-one
# matching), and a boundary F1 (outline pixels matched within 1.5 px) to measure outlines.

# %% tags=["remove-input"]
metric_cols = ["ctc_seg", "ctc_det", "op_csb", "dice", "iou", "instance_f1", "ap50", "boundary_f1"]
summary = (scores.groupby(["variant", "postprocess", "erosion", "edge_weight"])[metric_cols]
           .agg(["mean", "std"]).reset_index())
summary.columns = [" ".join(str(c) for c in col if c != "").strip() for col in summary.columns]
report.show_table(summary, caption="Held-out sequence: mean and SD over seeds (SD empty for one seed)")

base = {m: exp.mean_sd(scores, "baseline", m)[0] for m in metric_cols}
run.update({m: base[m] for m in metric_cols})
n_seeds = int(cfg["n_seeds"])
seed_sd = {m: exp.mean_sd(scores, "baseline", m)[1] for m in metric_cols}
for m in ("ctc_seg", "ctc_det", "op_csb", "instance_f1", "boundary_f1"):
    run.metric(f"{m}_seed_sd", seed_sd[m])

# %% [markdown]
# ### Mask, marker and final instances over the frames

# %% tags=["remove-input"]
pred = result.predictions
n_show = min(4, len(test["frames"]))
frames_idx = np.linspace(0, len(test["frames"]) - 1, n_show).astype(int)
fig, axes = plt.subplots(n_show, 5, figsize=(15, 3 * n_show), squeeze=False)
rng_c = np.random.default_rng(0)
cmap_colors = np.vstack([[0, 0, 0], rng_c.uniform(0.2, 1.0, (4096, 3))])
for row, t in zip(axes, frames_idx):
    panels = [("frame", exp.normalize_percentile(test["frames"][t]), "gray"),
              ("mask probability", pred["mask_prob"][t], "viridis"),
              ("marker probability", pred["marker_prob"][t], "viridis"),
              ("instances (markers → watershed)", cmap_colors[pred["markers"][t] % 4096], None),
              ("ground truth", cmap_colors[test["labels"][t] % 4096], None)]
    for ax, (title, img, cmap) in zip(row, panels):
        ax.imshow(img, cmap=cmap)
        ax.set_title(f"t={t}: {title}", fontsize=8)
        ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The worst-segmented cells
#
# Reference cells of the held-out sequence with the lowest IoU against their best-overlapping predicted
# object (baseline, first seed): the reference outline in green, predicted outlines in red.

# %% tags=["remove-input"]
worst = exp.worst_cells(test["labels"], pred["markers"], k=8)
fig, axes = plt.subplots(1, len(worst), figsize=(2.2 * max(len(worst), 1), 2.6), squeeze=False)
for ax, cell in zip(axes[0], worst):
    t, sl = cell["frame"], cell["bbox"]
    pad = 6
    r0, r1 = max(sl[0].start - pad, 0), sl[0].stop + pad
    c0, c1 = max(sl[1].start - pad, 0), sl[1].stop + pad
    img = exp.normalize_percentile(test["frames"][t])[r0:r1, c0:c1]
    rgb = np.dstack([img] * 3)
    rgb[find_boundaries(pred["markers"][t][r0:r1, c0:c1], mode="inner")] = [1, 0.2, 0.2]
    rgb[find_boundaries(test["labels"][t][r0:r1, c0:c1] == cell["id"], mode="inner")] = [0.2, 1, 0.2]
    ax.imshow(rgb)
    ax.set_title(f"t={t} IoU {cell['iou']:.2f}", fontsize=8)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Results
#
# Ablations, each a paired difference per seed (baseline − ablation, so a positive number means the
# paper's component helps). The claims get a verdict only when the mean difference exceeds the spread
# between seeds (the SD of the paired differences, and at least two seeds); otherwise they are
# inconclusive at this scale.

# %% tags=["remove-input"]
rows = []
for metric in ("ctc_seg", "ctc_det", "op_csb", "instance_f1", "boundary_f1"):
    d, sd, diffs = exp.paired_delta(scores, metric, ("baseline", "markers"), ("baseline", "no_markers"))
    run.metric(f"delta_markers_{metric}", d)
    rows.append({"ablation": "without markers (connected components)", "metric": metric, "delta": d, "seed SD": sd})
    if cfg["ablate_edge_weight"]:
        d, sd, diffs = exp.paired_delta(scores, metric, ("baseline", "markers"), ("no_edge_weight", "markers"))
        run.metric(f"delta_edge_weight_{metric}", d)
        rows.append({"ablation": "without edge weight (p = 0)", "metric": metric, "delta": d, "seed SD": sd})
first = scores[(scores.variant == "baseline") & (scores.postprocess == "markers") & (scores.seed == seed)].iloc[0]
for e in cfg["ablation_erosions"]:
    other = scores[(scores.variant == f"erosion_{e}")].iloc[0]
    for metric in ("ctc_seg", "ctc_det", "op_csb", "instance_f1"):
        d = float(first[metric] - other[metric])
        run.metric(f"delta_erosion_{e}_{metric}", d)
        rows.append({"ablation": f"marker erosion {e} instead of {cfg['erosion']} (seed {seed})", "metric": metric,
                     "delta": d, "seed SD": np.nan})
ablations = pd.DataFrame(rows)
report.show_table(ablations, caption="Baseline minus ablation (positive = the component helps)")

# %% tags=["remove-cell"]
d_m, sd_m, diffs_m = exp.paired_delta(scores, "instance_f1", ("baseline", "markers"), ("baseline", "no_markers"))
d_det, sd_det, _ = exp.paired_delta(scores, "ctc_det", ("baseline", "markers"), ("baseline", "no_markers"))
run.claim(
    "markers_separate_touching_cells",
    "Connected components of the predicted markers, grown by a watershed on the mask's distance transform, "
    "separate touching cells (better instances than connected components of the mask)",
    paper="U-SE-ResNet README (post-processing)",
    measured=d_m,
    holds=exp.verdict(d_m, sd_m, len(diffs_m)),
    note=f"instance F1 markers − no markers = {d_m:+.3f} (DET {d_det:+.3f}); seed SD of the difference "
         f"{sd_m:.3f} over {len(diffs_m)} seed(s); verdict only if |Δ| > SD",
)
if cfg["ablate_edge_weight"]:
    d_e, sd_e, diffs_e = exp.paired_delta(scores, "boundary_f1", ("baseline", "markers"), ("no_edge_weight", "markers"))
    d_seg, sd_seg, _ = exp.paired_delta(scores, "ctc_seg", ("baseline", "markers"), ("no_edge_weight", "markers"))
    run.claim(
        "edge_weighting_sharpens_outlines",
        "Weighting the BCE towards cell edges (w^p, p = (epoch/50)^5) makes the network learn better cell outlines",
        paper="U-SE-ResNet README (segmentation) and trainer.py",
        measured=d_e,
        holds=exp.verdict(d_e, sd_e, len(diffs_e)),
        note=f"boundary F1 with − without edge weight = {d_e:+.3f} (SEG {d_seg:+.3f}); seed SD of the difference "
             f"{sd_e:.3f} over {len(diffs_e)} seed(s); verdict only if |Δ| > SD",
    )
run.claim(
    "param_count",
    "U-SE-ResNet = smp Unet(se_resnet50), 35.05 M parameters (spec, measured with smp 0.6)",
    paper="spec usere_resnet.md §2 [M]",
    measured=result.params["params"],
    holds=abs(result.params["params"] - 35.05e6) < 0.01e6,
    note="full-width model built from torchvision Bottleneck + SqueezeExcitation",
)

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
# On the held-out generated sequence the baseline reaches CTC SEG {glue:text}`u_se_resnet_ctc_seg:.3f`,
# DET {glue:text}`u_se_resnet_ctc_det:.3f` and OP_CSB {glue:text}`u_se_resnet_op_csb:.3f`, pixel Dice
# {glue:text}`u_se_resnet_dice:.3f` and instance F1 {glue:text}`u_se_resnet_instance_f1:.3f`. Replacing the
# markers by plain connected components changes instance F1 by
# {glue:text}`u_se_resnet_delta_markers_instance_f1:+.3f` (baseline − ablation), and dropping the edge weight
# changes the boundary F1 by {glue:text}`u_se_resnet_delta_edge_weight_boundary_f1:+.3f`; the claims table
# says which of these exceed the spread between seeds. The CTC result folder
# (`01_RES`) was scored by py-ctcmetrics, the tool the challenge accepts.

# %% tags=["remove-cell"]
run.metric("seconds_experiment", result.seconds)
path = run.save()
run.glue()
print(path)
