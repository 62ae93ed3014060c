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
# # Low-resolution blood-cell segmentation: MobileSR → TinyU-Net
#
# A student project (`HanYingLee/Low-Resolution-Blood-Cell-Segmentation`, Uppsala University,
# Dec 2024 – Jan 2025; there is no paper, the README is the source) segments blood cells in
# **low-resolution** smear images in two stages: a light transformer, **MobileSR** (the NTIRE 2022
# efficient-SR entry `sunny2109/MobileSR-NTIRE2022`), super-resolves a 64×64 image ×4 to 256×256,
# and **TinyU-Net** (Chen et al., MICCAI 2024) segments the super-resolved image. The README of the
# 64 → 256 version ("v1", the one whose numbers we check) reports a test PSNR of about 25 dB and a
# pixel Dice of 0.9228 / IoU 0.8572.
#
# This chapter rebuilds both networks (parameter counts checked against the released code), trains
# the two-stage pipeline on generated blood smears over several seeds, and asks the question the
# project leaves open: **does super-resolution help segmentation**, compared with segmenting a bicubic
# upscaling, and how far is it from segmenting the true high-resolution image? Every number stands
# next to its floor: bicubic upscaling for PSNR, Otsu's threshold for Dice.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None
num_threads = 1  # torch CPU threads (cellnb.utils.set_cpu_threads; 0: the torch default)

# %% tags=["remove-cell"]
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from cellnb import config, report, results, utils
from cellnb.experiments import lowres_bloodcell as exp
from cellnb.methods import get_method
from cellnb.profile import count_params

cfg, dev, run = config.start_chapter("lowres_bloodcell", exp.SETTINGS, profile=profile, device=device, seed=seed, data_root=data_root, num_threads=num_threads)
sr_method, seg_method = get_method("mobilesr"), get_method("tiny_unet")
params = {"mobilesr": count_params(sr_method.build("paper")),
          "tiny_unet_paper": count_params(seg_method.build("paper")),
          "tiny_unet_run": count_params(seg_method.build(cfg.seg_size))}
out = exp.run_pipeline(cfg, device=device, seed=seed, cache_dir=Path(tempfile.mkdtemp(prefix="lowres_bloodcell_")),
                       progress=False, log=lambda _msg: None)
found = exp.record(run, out, cfg, params)
splits, test = out["data"], out["data"]["test"]

# %% tags=["remove-input"]
report.banner(run)
display(Markdown("**Reproduction summary** (generated from this run's claims)\n\n" + exp.summary_markdown(run, cfg, out)))

# %% [markdown]
# ## Introduction
#
# The project's premise is that a learned ×4 super-resolution recovers detail a segmentation network
# can use. Two claims follow from it and are tested here with paired per-image differences over
# seeds: MobileSR's PSNR beats bicubic upscaling, and TinyU-Net segments better on SR images than on
# bicubic ones. The README's absolute numbers were measured on BBBC041-Seg, which is not available
# offline; they are listed for reference, not judged against our generated data.

# %% [markdown]
# ## Data
#
# The project uses 100 images of the BBBC041-Seg subset (80 train / 10 val / 10 test), centre-cropped
# to 1200×1200. This chapter generates Giemsa-like thin blood smears instead (`cellnb.data.blood_smear`:
# red cells with pale centres, a few white cells and platelets; the mask marks every blood cell) and
# derives the pairs with `cellnb.data.lowres_pair`: HR = the smear area-averaged to 256×256, LR = HR
# area-averaged to 64×64, bicubic = LR upscaled ×4 (the SR floor), mask resized with nearest neighbour.
# The validation images are held out of the training pool; the test images come from other generator
# seeds. Cells absorb light, so they are the **dark** class for the Otsu floor.

# %% tags=["remove-input"]
print(f"{len(splits['train']['hr'])} train / {len(splits['val']['hr'])} validation (held out of the training pool) / "
      f"{len(test['hr'])} test smears generated at {cfg.smear_size}² px; LR {cfg.lr_size}², HR {cfg.hr_size}²; "
      f"foreground fraction (test) {test['mask'].mean():.2f}, "
      f"{np.mean([len(np.unique(l)) - 1 for l in test['labels']]):.0f} cells per test image on average")

# %% [markdown]
# ## Model
#
# Both networks come from `cellnb.methods` (`mobilesr`, `tiny_unet`, and the pipeline
# `mobilesr_tinyunet`), which also hold their losses, normalisation and prediction on images of any size.
#
# **MobileSR** (following the official model file): a 3×3 head conv to 40 channels, five stages of
# [transformer block with depthwise-conv positional encoding and 8×8 window self-attention (8 heads,
# no shifts), then an inverted-residual depthwise block] with expansion ratios 4, 2, 2, 2, 4, a fuse
# conv, a pixel-shuffle ×4 upsampler and a global skip that adds the **bilinear** upscaling of the
# input, so the network learns a residual. The CPU profiles train it at its released size.
#
# **TinyU-Net** (following the paper and the released model file): encoder and decoder stages of
# **CMRF** blocks (point-wise conv to C/8 channels, split by channel parity, a cascade of seven 3×3
# depthwise convs on one half, point-wise conv back to C), max-pool down, bicubic ×2 up, 1×1 head to
# two classes. The CPU profiles train a slim TinyU-Net (three levels, widths 16, 32, 64); `full` trains
# the paper's network.

# %% tags=["remove-input"]
sizes = pd.DataFrame([
    {"model": "MobileSR ×4 (official config)", "parameters": params["mobilesr"], "release": "0.176 M (official README)"},
    {"model": "TinyU-Net (paper widths 64…512)", "parameters": params["tiny_unet_paper"], "release": "0.48 M (paper)"},
    {"model": f"TinyU-Net trained here ({cfg.seg_size})", "parameters": params["tiny_unet_run"], "release": "—"},
])
report.show_table(sizes, caption="Parameter counts", floatfmt="{:,.0f}")
run.metric("mobilesr_params", params["mobilesr"])
run.metric("tinyunet_params", params["tiny_unet_paper"])
run.metric("tinyunet_params_this_run", params["tiny_unet_run"])

# %% [markdown]
# ## Loss
#
# Stage 1 minimises the mean **L1** error between the SR output and the HR target. Stage 2 has two
# modes, both trained on the same SR images, seeds and steps:
#
# - **corrected** (the default): softmax cross-entropy + soft Dice over the two softmax classes, the
#   TinyU-Net paper's "CE + Dice", predicted by argmax;
# - **faithful**: the project's code, a softmax cross-entropy plus a Dice on `sigmoid(logit₁)` (the
#   two terms see different probabilities), predicted by `logit₁ > 0`
#   (`cellnb.losses.lowres_bloodcell.repo_ce_sigmoid_dice_loss`).

# %% [markdown]
# ## Training
#
# Both stages use Adam with a one-cycle learning-rate schedule on random aligned crops with flips and
# 90° rotations (the same transform for LR, HR and mask): MobileSR on LR patches of
# `sr_crop / 4` px, TinyU-Net on `seg_crop`² crops. Each stage logs its training loss and its loss
# on fixed crops of the held-out validation images `evals` times; a curve has converged when its last
# quarter improves on the quarter before by less than 5 % (`cellnb.verdicts.converged`). A configuration
# counts as converged when its validation curve averaged over the seeds does; the table below also gives
# the rule's answer for each seed's own curve. The SR
# train / val / test images are written as 8-bit PNGs and read back for stage 2, as the project does.
# After training, BatchNorm statistics are re-estimated with the final weights.

# %% tags=["remove-input"]
fig = exp.curves_figure(out)
plt.show()
speed = pd.DataFrame([{"model": name, "steps": m.get("steps", cfg.e2e_steps), "steps per second": m.get("steps_per_s", np.nan),
                       "converged seeds": f"{m.get('converged_seeds', int(m['converged']))} / {m['seeds']}",
                       "beats its floor": m["beats_floor"],
                       "gain of the 2nd half": report.half_budget_cell(m)} for name, m in run.models.items()])
report.show_table(speed, caption=f"Training budget and measured speed ({utils.device_name(run.device)}, "
                  f"{num_threads} thread(s); validation included); {report.HALF_BUDGET_CAPTION}", floatfmt="{:.3g}")

# %% [markdown]
# ## Evaluation
#
# **Super-resolution**: PSNR and SSIM with an explicit data range of 1 on the clamped SR images against
# the HR images, per test image, beside bicubic (the floor) and nearest-neighbour upscaling.
# **Segmentation**: pixel precision, recall, Dice and IoU per test image, averaged; per-cell Dice matches
# every generated cell with the connected component of the prediction that overlaps it best (touching
# cells that merge in the prediction count against it). The floor is Otsu's threshold of the σ = 1
# smoothed image the model sees (bicubic for the low-resolution pipelines, HR for the HR model).
# Intervals are 95 % bootstrap intervals over seeds and images (`cellnb.verdicts`).

# %% tags=["remove-input"]
report.show_table(exp.sr_table(out), caption=f"Super-resolution on {cfg.n_test} test images × {cfg.n_seeds} seeds",
                  floatfmt="{:.3f}")
sr = out["sr_rows"]
fig, ax = plt.subplots(figsize=(6, 3.2))
diff = sr["psnr"] - sr["bicubic_psnr"]
for s, g in sr.groupby("seed"):
    ax.scatter(g["image"] + 0.12 * (s - 1), g["psnr"] - g["bicubic_psnr"], label=f"seed {s}", s=18)
ax.axhline(0, color="k", lw=0.8)
ax.set(xlabel="test image", ylabel="PSNR(MobileSR) − PSNR(bicubic) (dB)", title="Gain over the floor, per image")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% tags=["remove-input"]
i = 0
views = {"LR 64² (nearest ×4)": exp.nearest_upscale(test["lr"][i:i + 1])[0], "bicubic ×4": test["bicubic"][i],
         "MobileSR ×4": out["examples"]["sr_test"][i], "HR 256²": test["hr"][i]}
y0, x0, s_ = 96, 96, 64
fig, axes = plt.subplots(2, 4, figsize=(12, 6.2))
for col, (title, img) in enumerate(views.items()):
    rgb = np.clip(img.transpose(1, 2, 0), 0, 1)
    psnr_txt = "" if title.startswith("HR") else f"\n{exp.image_quality(img[None], test['hr'][i:i + 1])['psnr'][0]:.2f} dB"
    axes[0, col].imshow(rgb, interpolation="nearest")
    axes[0, col].add_patch(plt.Rectangle((x0, y0), s_, s_, fill=False, color="yellow", lw=1.5))
    axes[0, col].set_title(title + psnr_txt, fontsize=9)
    axes[1, col].imshow(rgb[y0:y0 + s_, x0:x0 + s_], interpolation="nearest")
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# Masks for the same test image (seed 0 models): ground truth, the Otsu floor and TinyU-Net on each input.

# %% tags=["remove-input"]
panels = [("ground truth", test["mask"][i]), ("Otsu on bicubic (floor)", out["floor_masks"]["bicubic"][i])]
panels += [(exp.SEG_MODELS[n][2], m[i]) for n, m in out["examples"]["pred"].items()]
fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 3.3))
for ax, (title, m) in zip(axes, panels):
    d = exp.evaluate_segmentation(m[None].astype(np.uint8), test["mask"][i:i + 1], test["labels"][i:i + 1])["dice"]
    ax.imshow(m, cmap="gray", interpolation="nearest")
    ax.set_title(f"{title}\nDice {d:.3f}", fontsize=7)
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Results
#
# ### Segmentation against its floor, and does SR help?

# %% tags=["remove-input"]
report.show_table(exp.seg_table(out), caption=f"TinyU-Net test metrics ({cfg.n_test} test images; mean and 95 % interval "
                  "over seeds and images)", floatfmt="{:.3f}")
v = found["sr_helps_segmentation"]
print(f"SR input − bicubic input: Dice {v.estimate:+.4f} (95 % interval {v.low:+.4f} to {v.high:+.4f}, "
      f"{v.n} paired test images over {v.n_groups} seeds) -> {report.verdict(v.holds) if v.holds is not None else 'inconclusive'}")
v = found["corrected_vs_repo_loss"]
print(f"corrected − faithful (repository) loss: Dice {v.estimate:+.4f} (95 % interval {v.low:+.4f} to {v.high:+.4f})")

# %% tags=["remove-input"]
report.show_claims(run)

# %% [markdown]
# ## Deviations from the paper
#
# ```{include} ../deviations/lowres_bloodcell.md
# ```

# %% [markdown]
# ## Summary
#
# MobileSR reached a test PSNR of {glue:text}`lowres_bloodcell_sr_psnr:.2f` dB against
# {glue:text}`lowres_bloodcell_floor_psnr:.2f` dB for its floor, bicubic upscaling (gain
# {glue:text}`lowres_bloodcell_sr_minus_bicubic_psnr:.2f` dB, 95 % interval
# {glue:text}`lowres_bloodcell_sr_minus_bicubic_psnr_low:.2f` to
# {glue:text}`lowres_bloodcell_sr_minus_bicubic_psnr_high:.2f`). TinyU-Net on the SR images reached a pixel
# Dice of {glue:text}`lowres_bloodcell_tiny_unet_sr_dice:.3f` against {glue:text}`lowres_bloodcell_floor_dice:.3f`
# for Otsu on the bicubic image, and {glue:text}`lowres_bloodcell_tiny_unet_bicubic_dice:.3f` when it is
# trained on bicubic inputs: the gain from SR is {glue:text}`lowres_bloodcell_dice_gain_sr_vs_bicubic:.4f` Dice
# (95 % interval {glue:text}`lowres_bloodcell_dice_gain_sr_vs_bicubic_low:.4f` to
# {glue:text}`lowres_bloodcell_dice_gain_sr_vs_bicubic_high:.4f`). The project's own loss (faithful mode)
# gives {glue:text}`lowres_bloodcell_tiny_unet_sr_repo_dice:.3f`: the corrected loss differs from it by
# {glue:text}`lowres_bloodcell_dice_gain_fixed_vs_repo:.4f` Dice (95 % interval
# {glue:text}`lowres_bloodcell_dice_gain_fixed_vs_repo_low:.4f` to
# {glue:text}`lowres_bloodcell_dice_gain_fixed_vs_repo_high:.4f`). On these clean generated smears a global
# threshold is already a strong segmenter, so the margins a learned model can add are small.

# %% tags=["remove-cell"]
run.save()
run.glue()
