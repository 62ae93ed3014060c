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
# # The data: generated cells, smears, nuclei and time-lapses
#
# No data set can be downloaded when this book runs, so every chapter trains on images that
# `cellnb.data` generates procedurally, deterministic per seed. This chapter shows each generator
# next to the targets the chapters derive from it, times the generators, and checks the
# VGG-cells look-alike against the real VGG cells {cite:p}`lempitsky2010counting` statistic by
# statistic, when a data root with the real images is given.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np

from cellnb import config, data, report, results, targets, utils, viz
from cellnb.experiments import data as exp

cfg = config.settings_for(exp.SETTINGS, profile)
utils.seed_everything(seed)
run = results.Run("data", profile=profile, device=device, seed=seed, data_root=data_root, settings=cfg)

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Fluorescence cells: the VGG-cells / SIMCEP family
#
# `data.fluorescence_cells(seed, preset="vgg")` draws clustered, overlapping, blurred cells in the
# blue channel of a 256×256 RGB image, with vignetting and noise, as the SIMCEP simulator
# {cite:p}`lehmussola2007simcep` that generated the VGG cells does. It returns the image with its
# dot map, instance labels and foreground mask; `cellnb.targets` turns them into the density map
# (a Gaussian per dot, count-preserving) and the boundary map the chapters use.

# %% tags=["remove-input"]
sample = exp.vgg_sample_with_targets(seed)
fig = viz.image_panels(
    {
        f"image ({sample['count']} cells)": sample["rgb"],
        "dots": sample["dots"],
        f"density (sum {sample['density'].sum():.1f})": sample["density"],
        "foreground mask": sample["mask"],
        "instance labels": sample["labels"],
        "boundaries": sample["boundary"],
    },
    ncols=3,
)
plt.show()

# %% [markdown]
# The BBBC005 look-alike (`preset="bbbc005"`, 520×696) adds the focus-blur levels of the
# Broad collection: the same cells, blurred with a Gaussian of σ = 0.25·F for blur level F.
# Saved files carry BBBC005-style names, so count parsing can be tested as in the released code.

# %% tags=["remove-input"]
blurs = [1, 12, 24, 48]
panels = {}
for focus in blurs:
    img = data.fluorescence_cells(seed, preset="bbbc005", n_cells=60, focus_blur=focus)
    panels[f"focus blur F{focus}"] = img["image"]
fig = viz.image_panels(panels, ncols=4)
plt.show()
print("BBBC005-style file name of the last panel:", data.bbbc005_name("A01", img["count"], blurs[-1], 1))

# %% [markdown]
# ## Blood smears and the low-resolution pair
#
# `data.blood_smear` paints a Giemsa-like smear at 1200×1200: many touching red cells with a pale
# centre, a few white cells, and instance and class masks. `data.lowres_pair` makes the
# low-resolution pipeline's inputs: the 256×256 high-resolution target (area-averaged), the 64×64
# low-resolution input, and the bicubic ×4 upscaling that super-resolution must beat.

# %% tags=["remove-input"]
smear = data.blood_smear(seed, size=1200)
pair = data.lowres_pair(smear["image"], smear["mask"])
fig = viz.image_panels(
    {
        "smear 1200²": smear["image"],
        "classes (0 bg / 1 RBC / 2 WBC)": smear["semantic"],
        "LR input 64²": pair["lr"].transpose(1, 2, 0),
        "bicubic ×4": pair["bicubic"].transpose(1, 2, 0),
        "HR target 256²": pair["hr"].transpose(1, 2, 0),
        "mask 256²": pair["mask"],
    },
    ncols=3,
)
plt.show()

# %% [markdown]
# ## Nuclei with touching instances
#
# `data.nuclei` places elliptical nuclei in clusters so that many touch, in a dense and a sparse
# regime. From the label image come the boundary map (MC-Unet), the markers by per-instance
# erosion (U-SE-ResNet), the U-Net border weight map {cite:p}`ronneberger2015unet` and
# U-SE-ResNet's distance-to-border weight.

# %% tags=["remove-input"]
dense = data.nuclei(seed, regime="dense")
sparse = data.nuclei(seed, regime="sparse")
fig = viz.image_panels(
    {
        f"dense ({dense['labels'].max()} nuclei)": dense["image"],
        f"sparse ({sparse['labels'].max()} nuclei)": sparse["image"],
        "dense: boundaries": targets.boundaries(dense["labels"]),
        "dense: markers (erosion 2)": targets.markers(dense["labels"], erosion=2),
        "dense: U-Net weight map": targets.unet_weight_map(dense["labels"]),
        "dense: distance weight": targets.distance_weight(dense["labels"]),
    },
    ncols=3,
)
plt.show()

# %% [markdown]
# ## A Cell Tracking Challenge time-lapse
#
# `data.ctc_timelapse` moves nuclei with a random walk, lets some divide and some leave the field,
# and `data.write_ctc` writes it in the challenge's layout (`01/t000.tif`, `01_GT/SEG/man_segNNN.tif`,
# `01_GT/TRA/man_trackNNN.tif` and the lineage file `man_track.txt`, one `L B E P` line per track).

# %% tags=["remove-input"]
movie = data.ctc_timelapse(seed, n_frames=20)
frames = [0, 6, 12, 19]
fig = viz.image_panels({f"t = {t}": movie["frames"][t] for t in frames}, ncols=4)
plt.show()
fig = viz.image_panels({f"labels t = {t}": movie["labels"][t] for t in frames}, ncols=4)
plt.show()
tracks = exp.ctc_track_table(movie["tracks"])
run.metric("ctc_tracks", len(tracks))
run.metric("ctc_divisions", int((tracks["P"] > 0).sum()))
report.show_table(tracks.head(12), caption=f"First lines of man_track.txt ({len(tracks)} tracks, "
                  f"{int((tracks['P'] > 0).sum())} daughter tracks)")

# %% [markdown]
# ## How fast are the generators?
#
# Every chapter generates its data on the fly, so generation must stay cheap: the target is under
# 30 s for 100 VGG-like images with all their targets on one core.

# %% tags=["remove-input"]
gen_seconds = run.metric("gen_seconds_per_100", exp.seconds_per_100(cfg.n_timing, seed))
print(f"{gen_seconds:.1f} s per 100 VGG-like 256² images with dots, mask, labels, density and boundaries "
      f"(measured on {cfg.n_timing} images)")
run.claim("gen_under_30s", "100 VGG-like 256² images with all targets take under 30 s on one core",
          paper="issue 3 (cellnb requirement)", measured=round(gen_seconds, 2), holds=gen_seconds < 30,
          note=f"measured over {cfg.n_timing} images; {utils.versions()['cpu_threads']} torch threads available")

# %% [markdown]
# ## Generated versus real VGG cells
#
# The VGG cells were made by SIMCEP; our generator imitates them. We compare four statistics:
# cells per image, the area of an isolated cell above the Otsu threshold, and the median
# foreground and background intensity of the blue channel (0–255), each within 15% of the real
# value as the target.

# %% tags=["remove-input"]
generated = exp.generated_vgg_statistics(cfg.n_stats, seed)
run.update({f"vgg_gen_{k}": v for k, v in generated.items()})
vgg_dir = utils.real_dataset_dir(data_root, "vgg_cells")
real = None
if vgg_dir is None:
    report.note("No data root with vgg_cells/ was given, so the real VGG cells are skipped; the table "
                "shows the generated statistics only. Pass --data-root to compare.")
else:
    real = exp.real_vgg_statistics(vgg_dir, cfg.n_real)
    run.update({f"vgg_real_{k}": v for k, v in real.items()})
    diffs = exp.relative_differences(generated, real)
    for key, diff in diffs.items():
        run.claim(f"vgg_match_{key}", f"generated VGG-like {key} within 15% of the real VGG cells",
                  paper="issue 3 (cellnb requirement)", measured=round(diff, 4), holds=diff <= exp.TOLERANCE,
                  note=f"relative difference; generated {generated[key]:.1f} vs real {real[key]:.1f}")
report.show_table(exp.statistics_table(generated, real),
                  caption=f"VGG-cells statistics: {cfg.n_stats} generated images"
                  + (f" vs {cfg.n_real} real images" if real else ""))

# %% tags=["remove-input"]
if real is not None:
    items = data.load_dot_dataset(vgg_dir, kind="vgg")[:4]
    gens = [data.fluorescence_cells(seed + 10_000 + i, preset="vgg") for i in range(4)]
    fig = viz.image_panels({**{f"real {it['name']} ({it['count']})": it["rgb"] for it in items},
                            **{f"generated ({g['count']})": g["rgb"] for g in gens}}, ncols=4)
    plt.show()

# %% [markdown]
# ## Results

# %% tags=["remove-input"]
report.show_claims(run)
path = run.save()
run.glue()
print(f"saved {path.relative_to(utils.REPO_ROOT) if path.is_relative_to(utils.REPO_ROOT) else path}")

# %% [markdown]
# ## Summary
#
# - Every chapter's data comes from deterministic generators in `cellnb.data`; real counting data is
#   read from a data root when one is given, never copied into the repository.
# - The generated VGG-like cells took {glue:text}`data_gen_seconds_per_100:.1f` s per 100 images with all
#   targets, and average {glue:text}`data_vgg_gen_cells_mean:.0f` cells per image.
# - Where they differ from the real data and from the papers' data sets is listed on
#   {doc}`/book/deviations`.
