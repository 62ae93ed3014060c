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
# # All five methods side by side
#
# The chapters before this one each reproduce one paper on that paper's own terms. This chapter
# puts the models next to each other on **one benchmark**: the same data, the same seeds, the
# same epochs and optimiser, the same metrics and the same post-processing. It then
# measures their cost in one interleaved run, gathers every claim the other chapters checked, and
# tabulates what it costs to reproduce the book.

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
import torch

from cellnb import config, data, report, results, utils, viz
from cellnb.experiments import comparison as exp

cfg = config.settings_for(exp.SETTINGS, profile)
utils.set_cpu_threads(num_threads, device)
utils.seed_everything(seed)
run = results.Run("comparison", profile=profile, device=device, seed=seed, data_root=data_root, settings=cfg)
seeds = [seed + i for i in range(cfg.n_seeds)]
train_device = str(run.device)
accuracy_rows = []

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Data
#
# Three generated tasks, and two real counting sets when a data root is given:
#
# - **counting, generated**: BBBC005-like fields (`data.fluorescence_cells(preset="bbbc005")`, nuclei
#   stain), generated at twice the training size and downscaled ×0.5;
# - **counting, real**: the VGG cells with the standard protocol (`data.vgg_splits`: N = 50 training
#   images from the first 100, the last 100 for testing, one random split per seed) and MBM
#   (`data.mbm_split`: 15 train / 29 test, one permutation per seed); the blue channel (VGG) or the
#   inverted grey level (MBM), downscaled to the training size;
# - **segmentation, nuclei**: dense generated nuclei with touching instances (`data.nuclei`);
# - **segmentation, blood smears**: generated smears through `data.lowres_pair`, the high-resolution
#   image as input (RGB).

# %% tags=["remove-input"]
size = cfg.size
count_train = exp.generated_count_items(cfg.n_train, 10_000 * (seed + 1), size, cfg.sigma)
count_test = exp.generated_count_items(cfg.n_test, 10_000 * (seed + 1) + 5_000, size, cfg.sigma)
nuclei_train = exp.nuclei_items(cfg.n_train, 20_000 * (seed + 1), cfg)
nuclei_test = exp.nuclei_items(cfg.n_test, 20_000 * (seed + 1) + 5_000, cfg)
blood_train = exp.blood_items(cfg.n_train, 30_000 * (seed + 1), cfg)
blood_test = exp.blood_items(cfg.n_test, 30_000 * (seed + 1) + 5_000, cfg)
fig = viz.image_panels({
    f"BBBC005-like ({int(count_test[0]['count'])} cells)": count_test[0]["image"][0],
    "its density target": count_test[0]["density"],
    f"nuclei ({nuclei_test[0]['labels'].max()} instances)": nuclei_test[0]["image"][0],
    "nuclei labels": nuclei_test[0]["labels"],
    "blood smear (HR input)": blood_test[0]["image"].transpose(1, 2, 0),
    "smear mask": blood_test[0]["mask"],
}, ncols=3)
plt.show()
print(f"{cfg.n_train} training and {cfg.n_test} test images per generated task, {size}×{size} px; "
      f"seeds {seeds}")

# %% [markdown]
# ## Model
#
# Every model is built from the registry (`cellnb.models.create_model`) at the profile's width, the
# same width for the U-Net family, so the classic U-Net baseline is a slim U-Net here
# (`base_width` {glue:text}`comparison_slim_width`) and not the 31 M-parameter original; the
# cost table below uses the full-width paper configurations.
#
# | model | registry name | task outputs |
# |---|---|---|
# | U-Net baseline | `unet` | mask logits (+ count head on counting) |
# | SSRNet | `ssrnet` (paper variant) | foreground map + count |
# | ELMGAN generator (LFMMG) | `elmgan_generator` | mask logits + count |
# | MC-Unet | `mc_unet` (depth 3) | 2-class mask logits (+ density head on counting, count = density sum) |
# | TinyU-Net | `tiny_unet` | 2-class mask logits |
# | U-SE-ResNet | `u_se_resnet` (slim) | mask logits (the marker channel is not trained here) |

# %% tags=["remove-input"]
run.metric("slim_width", cfg.slim_width)
run.glue()
slim = exp.slim_models(cfg)
report.show_table(pd.DataFrame({"model": list(slim), "parameters": [sum(p.numel() for p in m.parameters())
                                                                     for m, _, _ in slim.values()]}),
                  caption="Parameters of the trained (slim) configurations, one input channel")

# %% [markdown]
# ## Loss and training
#
# Plain supervised losses for all (`exp.make_loss`): binary cross-entropy, cross-entropy for the
# two-class heads, or L1 for SSRNet's foreground map; on counting, plus the squared relative count
# error of the count head, or MC-Unet's density MSE (×100). ELMGAN's generator is trained **without
# its GAN** here (its chapter trains the GAN). Count heads start at the training-mean count as in
# the ELMGAN chapter. All models: Adam, learning rate {glue:text}`comparison_lr` and the same epochs
# per training run (`cellnb.train.fit`).

# %% tags=["remove-cell"]
run.metric("lr", cfg.lr)
run.metric("epochs", cfg.epochs)
run.glue()

# %% [markdown]
# ### Counting on generated BBBC005-like fields

# %% tags=["remove-input"]
rows = exp.run_task("count_gen", exp.COUNT_MODELS, [count_train] * len(seeds), count_test, cfg, seeds, device=train_device)
accuracy_rows.append(rows)
report.show_table(rows, caption="Per seed: count MAE / RMSE on the generated test fields")

# %% [markdown]
# ### Counting on the real VGG cells and MBM

# %% tags=["remove-input"]
vgg_dir = utils.real_dataset_dir(data_root, "vgg_cells")
mbm_dir = utils.real_dataset_dir(data_root, "mbm")
if vgg_dir is None:
    report.note("No data root with vgg_cells/ was given: the real VGG cells are skipped. Pass --data-root to include them.")
else:
    vgg = exp.real_count_items(data.load_dot_dataset(vgg_dir, kind="vgg"), size, cfg.sigma, "vgg")
    splits = data.vgg_splits(cfg.real_n_train, n_splits=len(seeds), seed=seed)
    rows = exp.run_task("count_vgg", exp.COUNT_MODELS, [[vgg[i] for i in s["train"]] for s in splits],
                        [vgg[i] for i in splits[0]["test"][: cfg.real_n_test]], cfg, seeds, device=train_device)
    accuracy_rows.append(rows)
    report.show_table(rows, caption=f"Per seed (= split): VGG cells, {cfg.real_n_train} training images")
if mbm_dir is None:
    report.note("No data root with mbm/ was given: MBM is skipped. Pass --data-root to include it.")
else:
    mbm = exp.real_count_items(data.load_dot_dataset(mbm_dir, kind="mbm"), size, cfg.sigma, "mbm")
    for s in seeds:
        split = data.mbm_split(seed=s, n_train=cfg.mbm_n_train)
        accuracy_rows.append(exp.run_task("count_mbm", exp.COUNT_MODELS, [[mbm[i] for i in split["train"]]],
                                          [mbm[i] for i in split["test"][: cfg.mbm_n_test]], cfg, [s], device=train_device))
    report.show_table(accuracy_rows[-1], caption=f"MBM, last seed ({cfg.mbm_n_train} training images)")

# %% [markdown]
# ### Segmentation: touching nuclei and blood smears

# %% tags=["remove-input"]
rows = exp.run_task("nuclei", exp.MODELS, [nuclei_train] * len(seeds), nuclei_test, cfg, seeds, device=train_device)
accuracy_rows.append(rows)
rows = exp.run_task("blood", exp.MODELS, [blood_train] * len(seeds), blood_test, cfg, seeds, device=train_device)
accuracy_rows.append(rows)
report.show_table(pd.concat(accuracy_rows[-2:]), caption="Per seed: segmentation of nuclei and blood smears")

# %% [markdown]
# ## Evaluation
#
# Counting: mean absolute and root-mean-square count error. Segmentation: pixel Dice and IoU pooled
# over the test set, instance F1 at IoU 0.5 (`metrics.match_instances`) and AJI, with the instances
# of **every** model taken as the connected components of its foreground at 0.5 (no chapter's own
# watershed), through the MC-Unet chapter's `evaluate`. Mean ± sample std over the seeds.

# %% tags=["remove-input"]
accuracy = exp.aggregate(pd.concat(accuracy_rows, ignore_index=True))
flat = exp.flatten_accuracy(accuracy)
run.update(flat)
for task in accuracy["task"].unique():
    table = accuracy[accuracy["task"] == task].dropna(axis=1, how="all")
    report.show_table(table, caption=f"{task}: mean over {len(seeds)} seed(s) (epochs = mean epochs run)")

# %% [markdown]
# ## Cost
#
# Parameters, MACs and memory traffic (`profile.summary`), peak memory (measured on CUDA; on CPU
# the estimate weights + input + all layer outputs) and latency / throughput at batch 1
# (`profile.benchmark`, all models interleaved, median over the repeats), for the **full-width
# paper configurations**. MobileSR (the low-resolution chapter's ×4 super-resolution) takes the
# ¼-size input whose output has the stated size.

# %% tags=["remove-input"]
devices = ["cpu"] + (["cuda"] if run.device.type == "cuda" else [])
cost_models = exp.full_width_models() if cfg.cost_full_width else exp.slim_models(cfg)
if not cfg.cost_full_width:
    report.note("The smoke profile profiles the slim models at a tiny size; quick and full use the full-width paper configurations.")
cost = exp.cost_table(cost_models, cfg.cost_sizes, devices, cfg.bench_warmup, cfg.bench_repeats, cfg.bench_sizes)
run.update(exp.flatten_cost(cost))
untimed = sorted(set(cfg.cost_sizes) - set(cfg.bench_sizes))
if untimed:
    report.note(f"Latency is not measured at {untimed} px in the {profile} profile (one full-width forward there takes "
                f"tens of seconds on 2 shared CPU cores); the full profile measures it.")
report.show_table(exp.cost_display(cost), caption=f"Cost per model (batch 1; latency median of {cfg.bench_repeats} "
                  f"interleaved repeat(s) after {cfg.bench_warmup} warm-up; devices: {', '.join(cost['device'].unique())})")

# %% [markdown]
# ### Accuracy against cost
#
# The Pareto figures plot the accuracy of the models **as trained here** (slim widths, training
# size) against their MACs and their CPU latency at that size.

# %% tags=["remove-input"]
slim_cost = exp.cost_table(exp.slim_models(cfg), [size], ["cpu"], 1, cfg.slim_bench_repeats)
for task, metric, maximize in (("nuclei", "aji", True), ("count_gen", "mae", False)):
    frame = exp.pareto_frame(accuracy, slim_cost, task, metric)
    for x in ("MACs", "latency_ms"):
        fig = viz.pareto(frame, x, metric, "model", maximize_y=maximize)
        fig.axes[0].set_title(f"{task}: {metric} against {x} (slim models, {size}²)")
        plt.show()

# %% [markdown]
# ## Results
#
# ### Every chapter's claims
#
# The claims of each chapter come from its best available result (`full` where present, else
# `quick`); the profile is on every row.

# %% tags=["remove-input"]
claims, status = exp.gather_claims(exp.CHAPTERS)
missing = status.loc[status["profile"] == "missing", "chapter"].tolist()
if missing:
    report.note(f"No results yet for: {', '.join(missing)}. Their claims are missing from the counts below.", kind="warning")
smoke_only = status.loc[status["profile"] == "smoke", "chapter"].tolist()
if smoke_only:
    report.note(f"Only smoke results (meaningless numbers) for: {', '.join(smoke_only)}.", kind="warning")
counts = exp.claim_counts(claims)
run.update(counts)
report.show_table(status, caption="Result used per chapter")
report.show_table(claims, caption=f"All chapter claims: {counts['claims_hold']} hold, {counts['claims_fail']} do not hold, "
                  f"{counts['claims_untestable']} not testable here (of {counts['claims_total']})")

# %% [markdown]
# ### Cross-paper claims of this chapter

# %% tags=["remove-input"]
for c in exp.comparison_claims(run.metrics):
    run.claim(**c)
report.show_claims(run)

# %% [markdown]
# ### Reproduction cost
#
# Wall time of every notebook per profile: inside the notebook (the result file's `seconds`) and as
# seen by the runner (`results/timings/<profile>.json`, kernel start included).

# %% tags=["remove-input"]
cost_rows = exp.reproduction_cost(exp.CHAPTERS + ("comparison",))
report.show_table(cost_rows, caption="Seconds per notebook and profile")

# %% tags=["remove-input"]
path = run.save()
run.glue()
print(f"saved {path.relative_to(utils.REPO_ROOT) if path.is_relative_to(utils.REPO_ROOT) else path}")

# %% [markdown]
# ## Deviations from the papers
#
# One benchmark for all means none of the papers' own protocols: plain supervised losses, slim
# widths, small images, one post-processing. The list is on {doc}`/book/deviations`.
#
# ## Summary
#
# - On the generated BBBC005-like fields SSRNet's count MAE is {glue:text}`comparison_ssrnet_count_gen_mae:.2f`
#   against {glue:text}`comparison_unet_count_gen_mae:.2f` for the same-width U-Net with a count head.
# - On touching nuclei the U-Net baseline reaches AJI {glue:text}`comparison_unet_nuclei_aji:.3f`, MC-Unet
#   {glue:text}`comparison_mc_unet_nuclei_aji:.3f`.
# - Of all chapters' claims, {glue:text}`comparison_claims_hold` hold, {glue:text}`comparison_claims_fail`
#   do not and {glue:text}`comparison_claims_untestable` are not testable here
#   (of {glue:text}`comparison_claims_total`).
