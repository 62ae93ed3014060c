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
# # Your own images: train, predict and export with one command each
#
# The chapters so far trained the papers' methods on data the book prepared. This one is for your
# cells. Three commands take a folder of images with annotations to a trained model, to counts,
# masks or instances on new images, and to a bioimage.io model package {cite:p}`ouyang2022bioimageio` that
# Fiji (deepImageJ), ilastik, QuPath and napari can open:
#
# ```bash
# python -m cellnb.train   --method unet --task count --images my/images --points my/points --out my_model
# python -m cellnb.predict --model my_model --images 'new/*.tif' --out my_predictions
# python -m cellnb.export  --model my_model --out my_model.zip
# ```
#
# Here the three commands run on a real counting set in a layout the book has not used so far:
# the bone-marrow tiles of MBM {cite:p}`cohen2017countception`, converted to one PNG and one point
# CSV per image, the way a biologist would export them from Fiji or napari.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None
num_threads = 1
method = "unet"

# %% tags=["remove-cell"]
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellnb import cli, config, report, results, utils
from cellnb.experiments import own_images as exp
from cellnb.methods.training import half_budget_fields, half_budget_summary

cfg, dev, run = config.start_chapter("own_images", exp.SETTINGS, profile=profile, device=device, seed=seed, data_root=data_root, num_threads=num_threads)
os.environ.setdefault("CELLNB_PROGRESS", "0")
work = utils.REPO_ROOT / "_build" / "own_images" / profile

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## The layout: one image, one point file
#
# `cellnb.train` pairs each image with the annotation of the same name in another folder:
#
# - **points**: one CSV per image with a header naming the columns, `y,x` (or `x,y`, as Fiji's point
#   tool writes `X,Y`), or a dot image where each non-zero pixel (or each pixel of `--dot-colour`)
#   marks one cell;
# - **instances**: label images (8/16/32-bit TIFF or PNG, 0 = background) or binary masks;
# - **time-lapses**: a Cell Tracking Challenge folder (`--ctc`).
#
# Images may have any size, be grey or RGB (`--channel` picks one) and 8-bit, 16-bit or float.

# %% tags=["remove-cell"]
mbm_dir = utils.real_dataset_dir(data_root, "mbm") if profile != "smoke" else None
if mbm_dir is not None:
    records = exp.mbm_records(mbm_dir)
    source = "MBM (real bone-marrow tiles, 600×600)"
else:
    records = exp.generated_records(cfg.n_generated, cfg.generated_size, seed)
    source = "generated fluorescence fields (no MBM in the data root)"
n_train = min(cfg.n_train, len(records) - 1)
train_idx = list(range(n_train))
test_idx = list(range(n_train, min(len(records), n_train + cfg.max_test)))
folders = exp.write_point_folders(records, work / "data", train_idx, test_idx)
first = records[0]
run.metric("n_train_images", len(train_idx))
run.metric("n_test_images", len(test_idx))

# %% tags=["remove-input"]
if mbm_dir is None and profile != "smoke":
    report.note("No MBM folder in the data root: this chapter runs on generated images written to disk in the same layout.",
                kind="warning")
print(f"data: {source}; {len(train_idx)} training and {len(test_idx)} test images")
print("train/points/" + Path(first["name"]).stem + ".csv:")
print("\n".join((folders["train_points"] / f"{Path(first['name']).stem}.csv").read_text().splitlines()[:4]) + "\n...")

# %% [markdown]
# ## Train
#
# The command trains the U-Net baseline's density method (`--method unet --task count`: a density
# map whose sum is the count) on random crops with flips and 90° rotations, keeps a fifth of the
# training images for validation, and writes the checkpoint, the training curve and a *model card*:
# the method, its settings, a summary of the data, and the validation error **next to its floor**,
# the constant that always answers the mean training count. It also answers "would more steps
# help?": a branch of the run, annealed at half the steps, measures the validation loss half the
# budget reaches (10 % more steps; the run itself is unchanged, `--no-half-budget-check` skips it),
# and the card records what the second half bought (`half_budget_gain`; under 5 %, more steps are
# unlikely to help).

# %% tags=["remove-cell"]
model_dir = work / "model"
argv = ["--method", method, "--task", "count", "--images", str(folders["train_images"]),
        "--points", str(folders["train_points"]), "--out", str(model_dir), "--profile", cfg.cli_profile,
        "--steps", str(cfg.steps), "--seed", str(seed), "--device", device, "--overwrite"]
status = cli.train_main(argv)
assert status == 0, f"cellnb.train failed with status {status}"
card = cli.load_model(model_dir)[2]
val = card["validation"]
run.metric("train_seconds", card["training"]["seconds"])
run.metric("val_count_mae", val["value"])
run.metric("floor_val_count_mae", val["floor"])

# %% tags=["remove-input"]
fig, ax = plt.subplots(1, 1, figsize=(5, 3.2))
history = pd.read_csv(model_dir / "history.csv")
ax.plot(history["step"], history["train_loss"], label="training loss")
ax.plot(history["step"], history["val_loss"], label="validation loss")
ax.set_xlabel("optimiser step")
ax.set_yscale("log")
ax.legend()
gain = card["training"].get("half_budget_gain")
ax.set_title(f"{method}: training curve (converged: {card['training']['converged']}"
             + (f"; 2nd half of the steps: {report.fmt_gain(gain)}" if gain is not None else "") + ")")
plt.show()

# %% [markdown]
# ## Predict
#
# `cellnb.predict` reads every image of a folder (or a glob pattern), tiles large images with
# overlap, and writes `counts.csv`, an overlay per image (and label or mask TIFFs for the instance and
# mask tasks). An image it cannot read is named and skipped, and the command then exits with status 1.
# SSRNet and ELMGAN count with a global count head whose pooling averages, so they always predict in
# tiles of the crop they were trained on (the model card records it), whatever `--tile` says; they learn
# their maps from masks, so they train from `--labels`, not from `--points` alone.

# %% tags=["remove-cell"]
pred_dir = work / "predictions"
status = cli.predict_main(["--model", str(model_dir), "--images", str(folders["test_images"]), "--out", str(pred_dir),
                           "--device", device, "--overwrite"])
assert status == 0, f"cellnb.predict failed with status {status}"
truth = exp.read_counts(folders["root"] / "test" / "truth.csv")
pred = exp.read_counts(pred_dir / "counts.csv")
train_counts = [len(records[i]["points"]) for i in train_idx]
ev = exp.evaluate(pred, truth, train_counts)
run.metric("count_mae", ev["count_mae"])
run.metric("count_mae_low", ev["count_mae_low"])
run.metric("count_mae_high", ev["count_mae_high"])
run.metric("floor_count_mae", ev["floor_count_mae"])
run.metric("ratio_to_floor", ev["ratio_to_floor"])
conv = card["training"]["converged"]
gain = card["training"].get("half_budget_gain")  # None where the card did not measure it
run.model(method, converged=conv, beats_floor=ev["beats_floor"], metric="count_mae", value=ev["count_mae"],
          floor=ev["floor_count_mae"], curve=history["val_loss"].tolist(), seeds=1,
          **half_budget_fields(half_budget_summary([np.nan if gain is None else gain])))

# %% tags=["remove-input"]
overlays = sorted(pred_dir.glob("*_overlay.png"))[:3]
fig, axes = plt.subplots(1, len(overlays) + 1, figsize=(4 * (len(overlays) + 1), 4))
for ax, path in zip(axes, overlays):
    ax.imshow(plt.imread(path))
    ax.axis("off")
axes[-1].scatter(ev["true"], ev["pred"], s=14)
lim = [0, max(ev["true"].max(), ev["pred"].max()) * 1.1]
axes[-1].plot(lim, lim, "k--", lw=1)
axes[-1].axhline(np.mean(train_counts), color="tab:red", lw=1, label="floor: mean training count")
axes[-1].set_xlabel("true count")
axes[-1].set_ylabel("predicted count")
axes[-1].legend(loc="upper left", fontsize=8)
plt.tight_layout()
plt.show()

# %% tags=["remove-input"]
table = pd.DataFrame([
    {"predictor": f"{method} (trained here)", "count MAE": f"{ev['count_mae']:.1f}",
     "95% interval": f"{ev['count_mae_low']:.1f} to {ev['count_mae_high']:.1f}"},
    {"predictor": "floor: mean training count", "count MAE": f"{ev['floor_count_mae']:.1f}",
     "95% interval": f"{ev['floor_low']:.1f} to {ev['floor_high']:.1f}"},
])
report.show_table(table, caption=f"Count error on the {len(test_idx)} test images ({source})")

# %% [markdown]
# On these test images the model's count error is {glue:text}`own_images_ratio_to_floor:.2f` times
# the floor's (the constant that always answers the mean training count). A model whose interval
# does not lie below its floor has not learned the task and should not be used to count.

# %% [markdown]
# ## Export to bioimage.io
#
# `cellnb.export` writes a bioimage.io model package: the network as TorchScript, a test input and
# its expected output, a cover image and a documentation page generated from the model card. It is
# checked with bioimage.io's own test (`bioimageio.core.test_model`: the package reproduces its test
# output from its test input), offline.

# %% tags=["remove-cell"]
package, test_status = cli.export_package(model_dir, work / "model.zip", overwrite=True)
run.metric("package_kib", package.stat().st_size / 1024)

# %% tags=["remove-input"]
print(f"{package.name}: {package.stat().st_size / 1024:.0f} KiB, bioimage.io test_model: {test_status}")

# %% [markdown]
# ## Summary
#
# - Three commands train, apply and export a model on images in the layouts people already have.
# - The model card and this page show the model's error next to its floor: that is the first thing to
#   look at before trusting a count.
# - For instances (`--task instances --labels DIR`) the same commands train the U-Net's three-class
#   method (background / interior / boundary), U-SE-ResNet (`--method u_se_resnet`) or MC-Unet, and
#   the floor becomes Otsu + watershed.

# %% tags=["remove-cell"]
run.save()
run.glue()
