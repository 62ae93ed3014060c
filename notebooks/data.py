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
# statistic, when a data root with the real images is given. It then puts the generated nuclei
# beside a real, labelled Hoechst nuclei time-lapse, measures the gap statistic by statistic, and
# shows the generators matched to it.

# %% tags=["parameters"]
profile = "quick"
device = "auto"
seed = 0
data_root = None

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellnb import config, data, report, results, targets, utils, viz
from cellnb.data import stats
from cellnb.experiments import data as exp

cfg, dev, run = config.start_chapter("data", exp.SETTINGS, profile=profile, device=device, seed=seed, data_root=data_root)

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
          paper="cellnb data generators", measured=round(gen_seconds, 2), holds=gen_seconds < 30,
          note=f"measured over {cfg.n_timing} images; {utils.versions()['cpu_threads']} torch threads available",
          kind="check")

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
                  paper="cellnb data generators", measured=round(diff, 4), holds=diff <= exp.TOLERANCE,
                  note=f"relative difference; generated {generated[key]:.1f} vs real {real[key]:.1f}",
                  kind="check", basis="other data")
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
# ## Real nuclei: a labelled Hoechst time-lapse
#
# Every instance-segmentation chapter trains and tests on generated nuclei, so a method that wins
# there may only have learned the generator. Real labelled nuclei come with the `ndev-sampledata`
# package (BSD-3-Clause): a scratch-assay time-lapse of 10 frames of 210×576 px, stained with
# Hoechst 33342, with a nuclei instance label image for every frame (the IDs are not linked across
# frames, so this is segmentation, not tracking, ground truth). `cellnb.data.load_ndev_nuclei()`
# reads it with `tifffile`, maps the raw counts with the contrast limits the dataset's author ships
# (400–3500) to [0, 1], relabels each frame 1..K and takes the pixel size from the OME metadata.
# The frames show one field over time: the scratch (an empty band at first) closes as cells move in
# and divide, so frames are correlated and a train/test split must be by time (frames 0–4 / 5–9).
#
# The labels are not complete: very bright, small objects (mitotic and apoptotic nuclei) and a few
# dim nuclei carry no label. The count of bright objects that touch no label is given per frame
# below; a detector that finds them is charged a false positive on this set.

# %% tags=["remove-input"]
real_nuclei = data.load_ndev_nuclei() if data.ndev_available() else None
if real_nuclei is None:
    report.note("The real nuclei need the `ndev-sampledata` package (`pip install --no-deps "
                "ndev-sampledata==0.0.3`), which is not installed here, so this section shows the "
                "generated nuclei only.")
else:
    counts = real_nuclei["counts"]
    unlabelled = [stats.unlabelled_objects(f, l) for f, l in zip(real_nuclei["frames"], real_nuclei["labels"])]
    run.update({"real_nuclei_min": min(counts), "real_nuclei_max": max(counts),
                "real_unlabelled_mean": float(np.mean(unlabelled)), "real_pixel_size_um": real_nuclei["pixel_size"]})
    fig, axes = plt.subplots(3, 1, figsize=(12, 13.5))
    for ax, t in zip(axes, (0, 4, 9)):
        ax.imshow(exp.outlined(real_nuclei["frames"][t], real_nuclei["labels"][t]), interpolation="nearest")
        ax.set_title(f"t = {t}: {counts[t]} labelled nuclei (outlined)")
        ax.axis("off")
    fig.tight_layout()
    plt.show()
    report.show_table(pd.DataFrame({"frame": range(len(counts)), "labelled nuclei": counts,
                                    "bright unlabelled objects": unlabelled}).set_index("frame").T.reset_index(names=""),
                      caption=f"Real frames ({real_nuclei['pixel_size']} µm per pixel): labelled nuclei and bright "
                              "objects (Otsu foreground, ≥ 30 px) that touch no label")

# %% [markdown]
# ### The gap: generated versus real nuclei, statistic by statistic
#
# The same statistics (`cellnb.data.nuclei_statistics`) are measured on the real frames and on
# each generator, after min-max normalising every image, which is what a network sees: nuclei per
# frame and per 10⁴ px (crowding; the frame sizes differ, so only the density is matched), labelled
# area fraction, nucleus area, median foreground and background intensity, contrast
# (fg − bg)/(fg + bg), the noise σ of the background (Immerkær's estimator), the signal-to-noise
# ratio (fg − bg)/σ, chromatin texture (within-nucleus coefficient of variation), the spread of
# brightness between nuclei, eccentricity and solidity, the fraction of nuclei that touch another,
# and the distance to the nearest neighbour. The generators are the ones the chapters used —
# `nuclei(regime="dense" | "sparse")` and `ctc_timelapse()` — and the ones matched to the real set,
# `nuclei(regime="hoechst")` and `ctc_timelapse(preset="hoechst")`.

# %% tags=["remove-input"]
samples = {name: exp.generated_nuclei_samples(name, cfg, seed) for name in exp.GENERATORS}
gen_nuclei = exp.statistics_of(samples)
real_stats = exp.real_nuclei_statistics(real_nuclei) if real_nuclei is not None else None
for name, g in gen_nuclei.items():
    run.update({f"{name.replace(' ', '_').lower()}_{k}": v for k, v in g.items()})
if real_stats is not None:
    run.update({f"real_{k}": v for k, v in real_stats.items()})
report.show_table(exp.nuclei_statistics_table(real_stats, gen_nuclei),
                  caption=f"Nuclei statistics: the 10 real frames vs {cfg.n_nuclei} generated 256² images per "
                          f"nuclei regime and {cfg.n_sequences} × {cfg.seq_frames} generated CTC frames")

# %% tags=["remove-input"]
if real_nuclei is not None:
    hist_sources = {"real": list(real_nuclei["frames"]), **{n: samples[n][0] for n in exp.GENERATORS}}
    edges, hists = exp.intensity_histograms(hist_sources)
    pooled = {"real": exp.pooled_nucleus_values(real_nuclei["frames"], real_nuclei["labels"]),
              **{n: exp.pooled_nucleus_values(*samples[n]) for n in exp.GENERATORS}}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    centres = 0.5 * (edges[1:] + edges[:-1])
    for name, h in hists.items():
        style = dict(color="k", lw=2.5) if name == "real" else dict(lw=1.3, ls="-" if "hoechst" in name else "--")
        axes[0].plot(centres, h, label=name, **style)
        axes[1].hist(pooled[name]["area"], bins=np.linspace(0, 500, 40), density=True, histtype="step", label=name,
                     **({"color": "k", "lw": 2.5} if name == "real" else {"lw": 1.3}))
        axes[2].hist(pooled[name]["eccentricity"], bins=np.linspace(0, 1, 30), density=True, histtype="step",
                     label=name, **({"color": "k", "lw": 2.5} if name == "real" else {"lw": 1.3}))
    axes[0].set(yscale="log", xlabel="pixel value (min-max normalised)", ylabel="density", title="intensity")
    axes[1].set(xlabel="nucleus area (px)", title="nucleus size")
    axes[2].set(xlabel="eccentricity", title="nucleus shape")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# Real against generated crops (128×128, label outlines in red, one display range for all: each
# image min-max normalised whole, then shown on [0, 0.6]): real crops from frames 0, 4 and 9 in the
# top row, one crop of each generator below.

# %% tags=["remove-input"]
if real_nuclei is not None:
    crops = {title: img for title, img in exp.real_crops(real_nuclei)}
    for name in ("nuclei dense", "CTC default", "nuclei hoechst", "CTC hoechst"):
        images, labels = samples[name]
        crops[name] = exp.outlined(images[0][:128, :128], labels[0][:128, :128])
    fig = viz.image_panels(crops, ncols=4)
    plt.show()

# %% [markdown]
# ### Closing the gap
#
# The generators the chapters used were far from the real set: their nuclei are much larger than
# the real ones and, in the dense regime, most of them touch; their background is brighter relative
# to the nuclei, their noise higher and their chromatin texture flatter. The Hoechst regime and
# preset (parameters in `cellnb.data.synthetic.HOECHST`) draw smaller, more elongated nuclei at the
# real density, placed so that few touch (the time-lapse pushes nuclei apart as they move), with a
# dome-shaped profile (dimmer at the rim) and finer chromatin texture, a faint
# cytoplasm halo, a smooth background, lower noise, and at least one very bright, small
# unlabelled object per image, as the real frames' mitotic nuclei, which set their min-max range.
# The table gives each matched statistic's gap, before and after, as a relative difference (the
# touching fraction as an absolute one); ✗ marks a gap outside the tolerance (15 %; touching
# fraction 0.03).

# %% tags=["remove-input"]
if real_stats is not None:
    report.show_table(exp.nuclei_match_table(real_stats, gen_nuclei),
                      caption="Gap to the real nuclei, (generated − real) / real, before (chapters' generators) "
                              "and after (Hoechst-matched)")
    for name in exp.GENERATORS:
        within = exp.nuclei_within(gen_nuclei[name], real_stats)
        run.metric(f"{name.replace(' ', '_').lower()}_n_within", sum(within.values()))
    for before, after in exp.BEFORE_AFTER:
        within = exp.nuclei_within(gen_nuclei[after], real_stats)
        gaps = exp.nuclei_gap(gen_nuclei[after], real_stats)
        worst = max((k for k in gaps if k != "touching_fraction"), key=lambda k: abs(gaps[k]))
        n_before = sum(exp.nuclei_within(gen_nuclei[before], real_stats).values())
        run.claim(f"{after.replace(' ', '_').lower()}_matches_real",
                  f"every matched nuclei statistic of {after} within 15 % of the real Hoechst nuclei "
                  "(touching fraction within 0.03)",
                  paper="cellnb data generators", measured=sum(within.values()), holds=all(within.values()),
                  note=f"{sum(within.values())} of {len(within)} within (before, {before}: {n_before}); "
                       f"largest relative gap {worst} {gaps[worst]:+.0%}",
                  kind="check", basis="other data")

# %% [markdown]
# Which generator a chapter should use: `nuclei(regime="hoechst")` and
# `ctc_timelapse(preset="hoechst", n_cells=None)` where its numbers are to say something about real
# nuclei images of this kind; the dense regime remains the harder, crowded case (most nuclei touch)
# that tests the separation of touching instances. Matching these statistics does not make the
# generated images real: the real frames have cytoplasm autofluorescence, tile seams, and
# partially labelled objects, and whether a method trained on generated nuclei works on real ones
# is measured only by testing on real frames.

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

# %% tags=["remove-input"]
from IPython.display import Markdown, display

if real_stats is not None:
    m = run.metrics
    display(Markdown(
        f"- The real Hoechst time-lapse has {m['real_nuclei_min']}–{m['real_nuclei_max']} labelled nuclei per frame. "
        f"Of its {len(exp.NUCLEI_MATCHED)} matched statistics, the chapters' generators came within tolerance on "
        f"{m['nuclei_dense_n_within']} (dense nuclei) and {m['ctc_default_n_within']} (time-lapse); the "
        f"Hoechst-matched ones on {m['nuclei_hoechst_n_within']} and {m['ctc_hoechst_n_within']}."))

# %% [markdown]
# Where the generated data differ from the real data and from the papers' data sets is listed on
# {doc}`/book/deviations`.
