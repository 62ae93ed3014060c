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
# # SSRNet: counting by regression with one-step ×32 super-resolution upsampling
#
# ## Introduction
#
# SSRNet {cite:p}`deng2023ssrnet` splits cell counting into two tasks: regressing the **number** of
# cells (no dot annotations needed) and predicting their **distribution**, a foreground map. Its
# decoder is a single *spatial-based super-resolution upsampling* block (SSR-upsampling) that
# enlarges the deepest feature map 32 times in one step, and its *OM loss* balances the two tasks.
# The abstract claims that, next to a classic U-Net {cite:p}`ronneberger2015unet`, SSRNet needs about
# 1/20 of the multiply-adds and 1/10 of the memory reads and writes, and that SSR-upsampling
# enlarges ×32 "without blurring".
#
# Only the abstract of the paper could be read. Everything architectural below comes from the
# released code (`Roin626/SSRnet`), which holds **two** SSRNets: the one-step ×32 model of the
# abstract (defined only in a profiling script; here `variant="paper"`) and a five-step ×2 model (the
# one the training script trains; `variant="released"`). This chapter builds both, trains the paper
# variant and a U-Net with a count head on generated BBBC005-like images, runs the real VGG-cells
# benchmark when the data is present, ablates the decoder and the multitask weighting, and measures
# the efficiency claims.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None
vgg_splits = None  # number of VGG random splits (None: the value of the profile)
num_threads = 1  # torch CPU threads (cellnb.utils.set_cpu_threads; 0: the torch default)

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from cellnb import config, report, results, utils, viz
from cellnb.experiments import ssrnet as exp

utils.set_cpu_threads(num_threads, device)
cfg = config.settings_for(exp.SETTINGS, profile, vgg_splits=vgg_splits)
utils.seed_everything(seed)
run = results.Run("ssrnet", profile=profile, device=device, seed=seed, data_root=data_root, settings=cfg)
dev = str(run.device)

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Data
#
# The released code trains on BBBC005 {cite:p}`lehmussola2007simcep`: 520×696 synthetic SIMCEP
# fields with 1–100 cells, both stains, in focus, with a foreground mask and the count in the file
# name. BBBC005 cannot be downloaded here, so `cellnb.data.fluorescence_cells(preset="bbbc005")`
# generates look-alikes (count, mask, stain w1 = cell bodies or w2 = nuclei, alternating as in the
# released image folder). Each field is normalised with the released mean 0.387 / std 0.278 and
# zero-padded bottom/right to a multiple of the network's stride, as the released `collate_fn_bc05`
# does (it pads to 768×768).

# %% tags=["remove-input"]
shape = tuple(cfg.field)
scaled = (round(shape[0] * cfg.scale), round(shape[1] * cfg.scale))
display(Markdown(
    f"**This profile (`{profile}`)**: {cfg.n_train} training and {cfg.n_test} test fields of "
    f"{shape[0]}×{shape[1]} px, "
    + (f"**downscaled by {cfg.scale} to {scaled[0]}×{scaled[1]}** (the count stays that of the whole field) "
       if cfg.scale < 1 else "at full resolution ")
    + f"and padded to multiples of {cfg.pad_multiple}, so that the chapter fits its CPU time budget. "
    + ("The `full` profile uses the released 520×696 fields padded to 768×768." if profile != "full" else "")
))

# %% tags=["remove-cell"]
gen = exp.run_generated(cfg, seed, dev)  # the runs of exp.planned_runs(cfg)
run.metric("data_seconds", gen["data_seconds"])

# %% tags=["remove-input"]
example = gen["test"][0]
h, w = example["valid"]
fig = viz.image_panels({f"test field ({example['count']} cells, stain w{example['stain']})": example["raw"],
                        "foreground mask": example["mask"][:h, :w],
                        f"test field ({gen['test'][1]['count']} cells, stain w{gen['test'][1]['stain']})": gen["test"][1]["raw"],
                        "foreground mask ": gen["test"][1]["mask"][:h, :w]}, ncols=4)
plt.show()

# %% [markdown]
# ## Model
#
# **Encoder.** The pix2pix U-Net encoder cut to six levels: 4×4 stride-2 convolutions with
# InstanceNorm and LeakyReLU(0.2), widths 64…512, down to H/64.
#
# **SSR-upsampling** (`cellnb.models.ssrnet.SSRUpsampling`) takes the H/64 map and
# 1. reduces it with a 1×1 conv to C = 256 channels;
# 2. runs a recurrent pass over the rows, top→down then bottom→up, rᵢ = xᵢ + ReLU(conv(rᵢ₋₁))
#    (SCNN/SFCN's "convDU"), and 3. the same over the columns ("convLR");
# 4. unfolds rows: a 1×1 conv C→32·C, channel block i becoming output row 32·y+i;
# 5. unfolds columns the same way.
#
# Steps 4–5 are linear, so the block is a **sub-pixel (pixel-shuffle) upsampler whose 32²·C×C
# weight is factorised** into a row factor and a column factor: out(32y+i, 32x+j) = B_j A_i a(y, x).
# `SSRUpsampling.pixel_shuffle_weight()` returns the equivalent `nn.PixelShuffle` weight and the unit
# tests check the identity numerically. The released kernels of the recurrent passes, (3, 1) on a row
# of height 1 and (1, 3) on a column of width 1, only ever use their centre tap: the "spatial" passes
# are recurrent 1×1 convolutions without lateral context (`lateral_context=True` is the fixed mode).
#
# **Heads.** After the ×32 step (to H/2), one skip from the first encoder level is fused
# (`UNetcat`, 128 channels). The distribution head upsamples ×2 (nearest) and applies a 4×4 conv
# (activation LeakyReLU in the paper variant, ReLU in the released one). The count head pools to
# 32×32, applies a 1×1 conv and takes the inner product with a learnable 32×32 weight: a global
# weighted sum, not a density map.
#
# The figure follows one test field through the trained paper variant's SSR block: the mean
# absolute activation over channels after each step. The row unfolding turns each of the few deep
# rows into 32 rows; the column unfolding does the same for the columns, so the ×32 output is
# assembled from 32×32 tiles, one per deep-map position.

# %% tags=["remove-input"]
maps = exp.ssr_feature_maps(gen["models"]["paper"], example)
fig = viz.image_panels({f"{name} {tuple(m.shape)}": m for name, m in maps.items()}, ncols=3, cmap="viridis")
plt.show()

# %% [markdown]
# ## Loss
#
# The paper's OM-loss formula is not public. The released script trains with
# **L = 10·L1(map, mask) + 1·MSE(count, true count)** (run name `…_Hloss_10pixel_1count1`, no
# adversarial term); `cellnb.losses.ssrnet.om_loss` is this "OM loss as released" and the default.
# The alternative, `UncertaintyWeighting`, learns the two weights (Kendall, Gal & Cipolla, CVPR 2018):
# L = ½·e^(−s₁)·L1 + ½·s₁ + ½·e^(−s₂)·MSE + ½·s₂ with learnable log-variances s, started at their optimum
# for the first batch (s = log L; Adam would need thousands of steps to get there from 0). The U-Net
# baseline is trained with the same OM loss on sigmoid(mask logits).

# %% [markdown]
# ## Training
#
# Every model below is trained on the same generated fields, for the same number of epochs (no
# wall-clock budget at any profile, so a re-run repeats the numbers; the table lists the epochs
# run), with Adam and betas (0.5, 0.999) as released; the learning rate and batch size are
# the profile's (released: 1e-4, batch 1, 30 epochs). Six runs share the data:
#
# - SSRNet (paper variant) and the U-Net with a count head, both with the OM loss as released: the
#   comparison;
# - SSRNet (paper variant) with uncertainty weighting: the loss ablation;
# - the decoder ablation: SSRNet with its one-step SSR ×32 decoder, with a one-step bilinear ×32
#   decoder and with a 5×2 transposed-conv decoder, all three trained on the map term alone (10·L1).
#   Upsampling quality is a property of the map, and under both multitask weightings the map stays
#   untrained at CPU budgets (see Results), so comparing decoders under them would compare empty maps.

# %% tags=["remove-input"]
display(Markdown(f"Settings of this run: epochs {cfg.epochs}, batch {cfg.batch_size}, lr {cfg.lr}, "
                 f"SSRNet base width {cfg.base_width} (released 64), U-Net base width {cfg.unet_width}."))
fig, ax = plt.subplots(figsize=(6, 3.5))
for kind, hist in gen["histories"].items():
    ax.plot(hist["epoch"], hist["train_loss"], marker="o", label=kind)
ax.set_xlabel("epoch"); ax.set_ylabel("training loss"); ax.set_yscale("log"); ax.legend()
plt.show()

# %% [markdown]
# ## Evaluation
#
# On the held-out generated fields: count MAE and RMSE in cells, and Dice / IoU of the map thresholded
# at 0.5, pooled over all test pixels **inside the unpadded field** (the released code scores PSNR/SSIM
# on uint8-cast maps with a 696×696 crop that includes padding; see Deviations). The *edge contrast* is
# the mean predicted map on the 1-px inner band of the true mask minus that on the 1-px outer band: 1
# for an edge as sharp as the mask, lower when it is blurred.

# %% tags=["remove-input"]
table = gen["table"].copy()
names = {"paper": "SSRNet (paper, 1×32 SSR)", "unet": "U-Net + count head", "bilinear": "SSRNet, 1×32 bilinear decoder",
         "transpose": "SSRNet, 5×2 transposed-conv decoder", "uncertainty": "SSRNet (paper, 1×32 SSR)",
         "decoder_ssr": "SSRNet (paper, 1×32 SSR)", "released": "SSRNet (released, 5×2 SSR)"}
table.index = [names[k] for k in table.index]
report.show_table(table.reset_index(names="model"), caption="Generated BBBC005-like test set")

# %% tags=["remove-input"]
paper_pred = exp.predict(gen["models"]["paper"], gen["test"], dev)
unet_pred = exp.predict(gen["models"]["unet"], gen["test"], dev)
true_counts = np.array([it["count"] for it in gen["test"]])
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, (name, pred) in zip(axes, (("SSRNet (paper)", paper_pred), ("U-Net + count head", unet_pred))):
    ax.scatter(true_counts, pred["count"], s=15)
    lim = [0, max(true_counts.max(), np.max(pred["count"])) * 1.05]
    ax.plot(lim, lim, "k--", lw=1); ax.set_title(name); ax.set_xlabel("true count"); ax.set_ylabel("predicted")
plt.tight_layout(); plt.show()
fig = viz.image_panels({"field": example["raw"], "true mask": example["mask"][:h, :w],
                        "SSRNet map": paper_pred["maps"][0], "U-Net map": unet_pred["maps"][0]}, ncols=4)
plt.show()

# %% [markdown]
# ### Real data: VGG cells
#
# The standard protocol {cite:p}`lempitsky2010counting`: N = 50 training images drawn from the first
# 100, test on the last 100, several random draws. VGG cells have dots, not masks, so the distribution
# target is the Otsu foreground of the blue channel (no annotation needed, in the spirit of the paper's
# non-point-based counting); the count target is the number of dots.

# %% tags=["remove-cell"]
vgg_dir = utils.real_dataset_dir(data_root, "vgg_cells")
vgg = exp.run_vgg(vgg_dir, cfg, seed, dev) if vgg_dir is not None else None

# %% tags=["remove-input"]
if vgg is None:
    display(Markdown("```{warning}\n**VGG-cells benchmark skipped**: no `vgg_cells/` folder under the data root "
                     f"(`data_root={data_root!r}`, `$CELLNB_DATA_ROOT`). Pass `--data-root` to run it.\n```"))
else:
    report.show_table(vgg, caption="VGG cells, per split (paper-variant SSRNet)")
    report.show_table(exp.vgg_comparison(vgg), caption="VGG cells count MAE, N = 50: this run vs published numbers")
    display(Markdown(f"Images downscaled by {cfg.vgg_scale}; {cfg.vgg_n_test} test images; {cfg.vgg_epochs} "
                     f"epochs per split at this profile. "
                     "The published numbers are density-map methods trained to convergence at full resolution."))

# %% [markdown]
# ### Efficiency
#
# Parameters, multiply-adds and memory traffic (`cellnb.profile.summary`: bytes read and written by
# every layer, weights included) and CPU latency (`cellnb.profile.benchmark`, interleaved runs, batch 1)
# of the full-width networks as released (3-channel input and map) and of the classic 64…1024 U-Net,
# measured in this run (with the number of torch CPU threads named in the result's provenance,
# `num_threads` of this notebook).

# %% tags=["remove-cell"]
eff = exp.efficiency(cfg.profile_size, cfg.bench_warmup, cfg.bench_repeats, cfg.profile_width)

# %% tags=["remove-input"]
report.show_table(eff[["input_shape", "params_M", "GMACs", "traffic_MB", "median_ms", "macs_ratio", "traffic_ratio",
                       "latency_ratio"]].reset_index(), caption="Cost per model (ratios relative to the classic U-Net)")

# %% [markdown]
# ## Results

# %% tags=["remove-cell"]
exp.record(run, gen, eff, vgg)
path = run.save()
run.glue()

# %% tags=["remove-input"]
report.show_claims(run)

# %% [markdown]
# - On the generated test fields the paper-variant SSRNet reaches a count MAE of
#   {glue:text}`ssrnet_count_mae:.2f` cells (U-Net with a count head: {glue:text}`ssrnet_unet_count_mae:.2f`)
#   and a map Dice of {glue:text}`ssrnet_dice:.3f` (U-Net: {glue:text}`ssrnet_unet_dice:.3f`).
# - Decoder ablation (map loss only), same encoder and budget: Dice {glue:text}`ssrnet_ablation_ssr_dice:.3f` (SSR ×32),
#   {glue:text}`ssrnet_ablation_bilinear_dice:.3f` (bilinear ×32), {glue:text}`ssrnet_ablation_transpose_dice:.3f`
#   (transposed conv 5×2); edge contrast {glue:text}`ssrnet_ablation_ssr_edge_contrast:.3f`,
#   {glue:text}`ssrnet_ablation_bilinear_edge_contrast:.3f`, {glue:text}`ssrnet_ablation_transpose_edge_contrast:.3f`.
# - Multitask weighting: with the OM loss as released, count MAE {glue:text}`ssrnet_count_mae:.2f` and
#   Dice {glue:text}`ssrnet_dice:.3f`; with uncertainty weighting, count MAE
#   {glue:text}`ssrnet_loss_uncertainty_count_mae:.2f` and Dice {glue:text}`ssrnet_loss_uncertainty_dice:.3f`.
#   The released weighting puts 10·L1 (at most 10) next to a count MSE of hundreds of cells², so the count
#   dominates the shared encoder's gradient; uncertainty weighting divides each term by its own size.
# - Cost relative to the classic U-Net: MACs ×{glue:text}`ssrnet_macs_ratio_vs_unet:.3f`, memory traffic
#   ×{glue:text}`ssrnet_memory_traffic_ratio_vs_unet:.3f`, CPU latency ×{glue:text}`ssrnet_latency_ratio_vs_unet:.3f`
#   (paper variant); the released five-step variant: MACs ×{glue:text}`ssrnet_released_macs_ratio_vs_unet:.3f`,
#   traffic ×{glue:text}`ssrnet_released_memory_traffic_ratio_vs_unet:.3f`.

# %% tags=["remove-input"]
main, unet = gen["table"].loc["paper"], gen["table"].loc["unet"]
if main["count_mae"] < unet["count_mae"]:
    verdict = (f"SSRNet's count MAE ({main['count_mae']:.2f}) beats the U-Net baseline's ({unet['count_mae']:.2f}) "
               "on this run's generated test fields.")
else:
    h_paper, h_unet = gen["histories"]["paper"], gen["histories"]["unet"]
    verdict = (
        f"SSRNet's count MAE ({main['count_mae']:.2f}) does **not** beat the U-Net baseline's ({unet['count_mae']:.2f}) "
        f"in this run. After {len(h_paper)} epochs its count MSE on the training set was still "
        f"{h_paper['count_mse'].iloc[-1]:.1f} cells² (U-Net: {h_unet['count_mse'].iloc[-1]:.1f} after {len(h_unet)} epochs). "
        "The released count head is a weighted sum of a 32×32 map with weights initialised U[0, 1) "
        "(an initial count of a few hundred), and Adam moves each of the 1024 weights by about one learning rate "
        "per step, so the count needs many more steps than this profile gives it; the released schedule "
        "(batch 1, 30 epochs over ~1000 fields, about 29,000 steps) is the `full` profile."
    )
display(Markdown(verdict))

# %% [markdown]
# ## Deviations from the paper
#
# ```{include} ../deviations/ssrnet.md
# ```
#
# The list is also in {doc}`/book/deviations`.

# %% [markdown]
# ## Summary
#
# SSR-upsampling is a factorised sub-pixel convolution preceded by recurrent 1×1 row and column passes,
# and the paper's one-step ×32 model is far cheaper than a classic U-Net; the table of claims above
# says, with this run's measurements, which of the abstract's efficiency and quality statements hold.
# The chapter's numbers come from the profile named in the banner; the `full` profile reruns it at the
# released scale on a GPU.
