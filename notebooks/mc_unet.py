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
# branch** to a **multi-scale convolutional U-Net (MC-Unet)**, and claim that the density loss
# helps with densely packed cells, the boundary loss with unclear boundaries and touching cells,
# and that both branches help other segmentation models too. Only the abstract is public; the
# released code (`HuHaigen/Joint-Feature-Learning-for-Cell-Segmentation` @99a7fed) differs from it:
# it has **no separate branches** — both auxiliary losses act on the single segmentation output —,
# its focal boundary loss is misaligned with its target, and the density loss is switched off in
# the only config. This chapter implements both readings and runs the paper's ablation
# (baseline, +density, +boundary, +both) for MC-Unet and for a plain U-Net, over several seeds.
#
# **Which mode the results use:** the ablation table and every claim use the **paper-faithful mode**
# (separate density and boundary heads, a reconstruction); the **code-faithful mode** (the
# released losses on the segmentation logits) is trained alongside for MC-Unet and reported in
# its own rows.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None
num_threads = 1  # torch CPU threads (cellnb.utils.set_cpu_threads; 0: the torch default)

# %% tags=["remove-cell"]
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from cellnb import config, report, results, utils
from cellnb.experiments import mc_unet as exp
from cellnb.models import create_model
from cellnb.profile import count_params

utils.set_cpu_threads(num_threads, device)
progress = os.environ.get("CELLNB_PROGRESS", "1") != "0"
cfg = config.settings_for(exp.SETTINGS, profile)
utils.seed_everything(seed)
run = results.Run("mc_unet", profile=profile, device=device, seed=seed, data_root=data_root, settings=cfg)

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Data
#
# The paper's data set ("T24ALL" in the code, probably T24 bladder-cancer cells) is not public, so
# the chapter uses `cellnb.data.nuclei`: fluorescent nuclei, clustered, many of them touching.
# Training images are half `dense`, half `sparse`; there is one test set per regime. Targets:
# the foreground mask, the inner boundaries of the instance labels (`cellnb.targets.boundaries`,
# which mark the interface between touching nuclei) and a count-preserving Gaussian density map
# of the nucleus centroids (`cellnb.targets.density_from_points`, it sums to the number of
# nuclei). The code's own recipes for these maps are not published.

# %% tags=["remove-input"]
data = exp.make_data(cfg, seed)
sample = data["test_dense"][0]
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (title, img, cmap) in zip(axes, [
    ("image (dense)", sample["image"][0], "gray"),
    (f"instances ({sample['labels'].max()} nuclei)", sample["labels"], "nipy_spectral"),
    ("boundary target", sample["boundary"], "gray"),
    (f"density target (sum {sample['density'].sum():.1f})", sample["density"], "magma"),
]):
    ax.imshow(img, cmap=cmap, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()
print(f"{len(data['train'])} training images, {cfg.n_test} dense + {cfg.n_test} sparse test images, "
      f"{cfg.size}x{cfg.size} px")

# %% [markdown]
# ## Model
#
# The MC block runs three double convolutions with kernels 1, 3 and 5 in parallel (each
# conv → GroupNorm(1 group) → ReLU → conv → GroupNorm), sums them and applies a ReLU; MC-Unet
# stacks four of them on the encoder and three on the decoder with transposed-conv upsampling
# (`cellnb.models.mc_unet`, following the released `MNet2D`). At the released width (64, 3-channel
# input) it has the released 24.27 M parameters. In the paper-faithful mode the density head
# (1×1 conv, softplus) and the boundary head (1×1 conv, logits) sit on the last decoder
# features. The CPU profiles use a slim width.

# %% tags=["remove-input"]
sizes = {
    "MC-Unet, released width (64, RGB)": count_params(create_model("mc_unet", in_channels=3, base_width=64, depth=3)),
    f"MC-Unet, this run (width {cfg.base_width}, +both heads)":
        count_params(exp.build_model("mc_unet", "both", "paper", cfg)),
    f"U-Net, this run (width {cfg.unet_base_width}, +both heads)":
        count_params(exp.build_model("unet", "both", "paper", cfg)),
}
for name, n in sizes.items():
    print(f"{name}: {n:,} parameters")

# %% [markdown]
# ## Loss
#
# Every configuration minimises the 2-class cross-entropy of the mask. The auxiliary terms:
#
# - **paper mode** (reconstruction): boundary loss = binary focal loss (α = 0.9, γ = 2, the
#   code's values) on the boundary head, weight 0.15 (the code's `use_corner`); density loss =
#   MSE between the density head and the count-preserving map, both amplified by
#   `density_scale`, weight `density_weight` (the paper's weight is unknown).
# - **code mode** (`cellnb.losses.mc_unet.released_focal_loss`, ported op for op): the focal loss
#   on the raw 2-channel *segmentation logits*. Reading the code line by line, the flattened
#   logits (2·H·W rows) are paired with the flattened `[1−t, t]` target, so the channel-0 logits
#   are compared with the top half of the boundary map and the channel-1 logits with the bottom
#   half, two neighbouring logits per target pixel (one asked for 1−t, one for t). The density
#   term (`released_density_loss`) is an MSE of the same logits against `[1−d, d]`.

# %% [markdown]
# ## Training
#
# Adam, learning rate 1e-3 (the code's), a fixed number of epochs (no early stopping at these
# sizes), batch size `batch_size` (1 in the code). Each configuration is trained from scratch
# once per seed; the data stay the same across seeds, so the spread measures training variability.

# %% tags=["remove-input"]
print("configurations (arch, mode, variant):", exp.configurations(cfg))
print(f"seeds: {list(range(seed, seed + cfg.n_seeds))}, epochs: {cfg.epochs}")

# %% tags=["remove-cell"]
rows, first_predictions = exp.run_ablation(cfg, data, seed=seed, device=device, progress=progress)

# %% tags=["remove-input"]
print(f"training time per configuration and seed: median {rows.train_seconds.median():.1f} s, "
      f"total {rows.drop_duplicates(['arch', 'mode', 'variant', 'seed']).train_seconds.sum():.0f} s")

# %% [markdown]
# ## Evaluation
#
# As the released `validate`: foreground = softmax channel 1 > 0.5, pixel Dice, IoU, precision
# and sensitivity **pooled** over the test images. Instances come from a simple post-processing:
# connected components of the foreground for the baseline; with a boundary head, the components
# of foreground minus predicted boundary (≥ `min_seed_area` px) grown back by watershed; with a
# density head only, watershed from the local maxima of the predicted density. Instance F1 at
# IoU 0.5 (pooled matches) and AJI (mean per image) score them; `instance_f1_cc` scores plain
# connected components for every model, so that the effect of the features can be told from that
# of the post-processing. `merged_fraction` is the share of true nuclei whose best-overlapping
# prediction is also another nucleus's best (merges). The count error is the MAE of the sum of the
# predicted density.

# %% tags=["remove-input"]
report.show_table(exp.summary_table(rows, "dense"), caption=f"Dense test set: mean ± std over {cfg.n_seeds} seed(s)")
report.show_table(exp.summary_table(rows, "sparse"), caption=f"Sparse test set: mean ± std over {cfg.n_seeds} seed(s)")

# %% tags=["remove-cell"]
main = rows[(rows.arch == "mc_unet") & (rows["mode"] == "paper") & (rows.variant == "both") & (rows.regime == "dense")]
for key in ("dice", "iou", "precision", "sensitivity", "instance_f1", "aji", "count_mae"):
    run.metric(key, main[key].mean())
    run.metric(f"{key}_std", main[key].std(ddof=1) if len(main) > 1 else 0.0)
deltas = {}
for arch in exp.ARCHS:
    prefix = "" if arch == "mc_unet" else f"{arch}_"
    for regime in ("dense", "sparse"):
        suffix = "" if regime == "dense" else "_sparse"
        for variant in ("density", "boundary", "both"):
            for metric in ("dice", "instance_f1", "merged_fraction"):
                d = exp.delta(rows, arch, variant, metric, regime)
                deltas[(arch, variant, metric, regime)] = d
                run.metric(f"{prefix}delta_{metric}_{variant}{suffix}", d["delta"])
                run.metric(f"{prefix}spread_{metric}_{variant}{suffix}", d["spread"])
for variant in cfg.code_variants:
    d = exp.delta(rows, "mc_unet", variant, "dice", "dense", mode="code")
    run.metric(f"code_delta_dice_{variant}", d["delta"])
    run.metric(f"code_spread_dice_{variant}", d["spread"])
means = rows.groupby(["arch", "mode", "variant", "regime"])[["dice", "instance_f1", "aji"]].mean()
for (arch, mode, variant, regime), values in means.iterrows():
    for metric, value in values.items():
        run.metric(f"{arch}_{mode}_{variant}_{regime}_{metric}", value)

# %% [markdown]
# ## Results
#
# Improvement of each variant over the same architecture's baseline (mean over seeds) with the
# seed spread √(std²_variant + std²_baseline). A difference smaller than the spread is not
# distinguishable from training noise at this profile.

# %% tags=["remove-input"]
import pandas as pd

sign = {"merged_fraction": -1.0}  # fewer merges is the improvement
delta_rows = [dict(arch=a, variant=v, metric=m, regime=r, delta=d["delta"], spread=d["spread"],
                   improvement_beyond_spread=sign.get(m, 1.0) * d["delta"] > d["spread"] if cfg.n_seeds > 1 else None)
              for (a, v, m, r), d in deltas.items() if m != "merged_fraction" or v != "density"]
report.show_table(pd.DataFrame(delta_rows), caption="Ablation deltas vs the baseline (paper mode); "
                  "for merged_fraction lower is better")

# %% tags=["remove-cell"]
n = cfg.n_seeds
d_den = deltas[("mc_unet", "density", "dice", "dense")]
d_den_sparse = deltas[("mc_unet", "density", "dice", "sparse")]
d_den_f1 = deltas[("mc_unet", "density", "instance_f1", "dense")]
run.claim("density_dense", "The density branch helps in dense regions", paper="MC-Unet abstract",
          measured=d_den["delta"], holds=exp.holds(d_den, n),
          note=f"MC-Unet Dice on dense test images, +density minus baseline; seed spread {d_den['spread']:.4f}; "
               f"on sparse images the delta is {d_den_sparse['delta']:.4f} (spread {d_den_sparse['spread']:.4f}); "
               f"instance F1@0.5 on dense images (watershed seeded from the density) changes by "
               f"{d_den_f1['delta']:.4f} (spread {d_den_f1['spread']:.4f})")
d_bnd = deltas[("mc_unet", "boundary", "instance_f1", "dense")]
d_merge = deltas[("mc_unet", "boundary", "merged_fraction", "dense")]
d_merge_both = deltas[("mc_unet", "both", "merged_fraction", "dense")]
run.claim("boundary_touching", "The boundary branch helps separate touching cells", paper="MC-Unet abstract",
          measured=d_bnd["delta"], holds=exp.holds(d_bnd, n),
          note=f"MC-Unet instance F1@0.5 on dense test images, +boundary minus baseline (watershed from the "
               f"boundary map); seed spread {d_bnd['spread']:.4f}; merged fraction changes by "
               f"{d_merge['delta']:.4f} (spread {d_merge['spread']:.4f}); with both branches by "
               f"{d_merge_both['delta']:.4f} (spread {d_merge_both['spread']:.4f})")
d_unet = deltas[("unet", "both", "dice", "dense")]
d_unet_f1 = deltas[("unet", "both", "instance_f1", "dense")]
run.claim("other_models", "The branches help other segmentation models too", paper="MC-Unet abstract",
          measured=d_unet["delta"], holds=exp.holds(d_unet, n),
          note=f"plain U-Net Dice on dense test images, +both minus baseline; seed spread {d_unet['spread']:.4f}; "
               f"instance F1 delta {d_unet_f1['delta']:.4f} (spread {d_unet_f1['spread']:.4f})")

# %% tags=["remove-input"]
report.show_claims(run)

# %% [markdown]
# ### Density and boundary predictions
#
# MC-Unet with both heads (first seed) on a dense test image: the predicted density next to the
# truth (titles give the sums, i.e. the counts), the predicted boundary probability next to the
# boundary target.

# %% tags=["remove-input"]
fig = exp.plot_maps(data["test_dense"], first_predictions[("mc_unet", "paper", "both", "dense")], index=0)
plt.show()

# %% [markdown]
# ### Where touching nuclei split or merge
#
# Instances of the first seed on the same dense image; predicted instances that cover more than
# half of two or more true nuclei (merges) are outlined in red.

# %% tags=["remove-input"]
panels = {f"MC-Unet {v}": first_predictions[("mc_unet", "paper", v, "dense")] for v in exp.VARIANTS}
panels["U-Net both"] = first_predictions[("unet", "paper", "both", "dense")]
fig = exp.plot_touching(data["test_dense"], panels, index=0, min_seed_area=cfg.min_seed_area)
plt.show()

# %% [markdown]
# ## Deviations from the paper
#
# - **Full text unavailable:** branch design, loss formulas, weights and data of the paper are
#   unknown. The paper-faithful mode (two 1×1 heads on the last decoder features, focal and MSE
#   losses) is a reconstruction; the code-faithful mode ports the released losses, which act on
#   the segmentation logits. The results and claims use the paper-faithful mode.
# - **Released focal loss:** ported op for op, misalignment included (it compares the two logit
#   channels with the top and bottom halves of the boundary map). Our reading differs from the
#   project spec, which described only the channel-0 logits as used.
# - **Density loss on:** the shipped config sets the density weight to 0; here it is
#   `density_weight` with a count-preserving map amplified by `density_scale`; the density head
#   learns the amplified map and its output is divided by `density_scale`, so it still sums to the
#   count. The two reconstructed heads keep PyTorch's default initialisation (the code's init is
#   used for everything else).
# - **Data:** generated nuclei (`cellnb.data.nuclei`) instead of the unpublished T24 set; 1-channel
#   input; smaller images, slimmer widths, fewer epochs, batch size > 1 and no early stopping on CPU.
# - **Logits, not softmax:** the model always returns logits (the code applies softmax in eval mode).
# - **Evaluation on a held-out test set** (the code selects and reports on the same val folder),
#   with instance metrics the code does not compute.
#
# The same list, with sources, is in {doc}`/book/deviations`.

# %% [markdown]
# ## Summary
#
# MC-Unet with both heads reached a pooled Dice of {glue:text}`mc_unet_dice:.3f` and instance F1
# of {glue:text}`mc_unet_instance_f1:.3f` on dense test images, with a count MAE of
# {glue:text}`mc_unet_count_mae:.2f` nuclei from its density head. Against the MC-Unet baseline
# the Dice changed by {glue:text}`mc_unet_delta_dice_density:.4f` (+density),
# {glue:text}`mc_unet_delta_dice_boundary:.4f` (+boundary) and {glue:text}`mc_unet_delta_dice_both:.4f`
# (+both); the plain U-Net's Dice changed by {glue:text}`mc_unet_unet_delta_dice_both:.4f` with both
# branches. At the instance level, MC-Unet's instance F1 on dense images changed by
# {glue:text}`mc_unet_delta_instance_f1_density:.3f` with the density branch (spread
# {glue:text}`mc_unet_spread_instance_f1_density:.3f`) and by {glue:text}`mc_unet_delta_instance_f1_boundary:.3f`
# with the boundary branch (spread {glue:text}`mc_unet_spread_instance_f1_boundary:.3f`); these
# changes mix the learned maps with the post-processing they seed. Whether each change exceeds the seed-to-seed spread — the only case where the claims
# table says "holds" — is given in the claims table; smaller differences are read as noise at this
# profile, not as evidence for or against the paper.

# %% tags=["remove-cell"]
run.save()
run.glue()
