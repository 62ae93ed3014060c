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
# # Which method for my cells? Every method side by side
#
# The chapters before this one each reproduce one paper on that paper's own terms. This chapter runs
# **every method as itself** — its own network, loss, targets, normalisation, training loop and
# post-processing, all from `cellnb.methods` — on the same data, with the same seeds and the same
# number of optimiser steps, and asks the question a reader with cells to count or segment has:
# which method, at what cost? Every number stands next to its floor (what a method that learned
# nothing scores) and, for instances, next to the ceiling of the method's post-processing (what it
# scores on perfect inputs).

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

from cellnb import config, data, floors, report, results, sim2real, utils, verdicts
from cellnb.experiments import comparison as exp
from cellnb.methods import get_method, list_methods
from cellnb.methods.training import half_budget_fields

cfg, dev, run = config.start_chapter("comparison", exp.SETTINGS, profile=profile, device=device, seed=seed, data_root=data_root, num_threads=num_threads)
seeds = [seed + i for i in range(cfg.n_seeds)]
outcomes = {}  # task -> exp.run_task(...) result

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Data
#
# - **Counting, generated** (only when no real counting data is given; the SSRNet and ELMGAN chapters
#   compare on these fields): BBBC005-like fields (`data.fluorescence_cells(preset="bbbc005")`, nuclei
#   stain) generated at twice the image size and downscaled ×0.5.
# - **Counting, real** (when a data root is given): the VGG cells (N = 50 training images drawn from the
#   first 100, one draw per seed; the first {glue:text}`comparison_real_n_test` of the last 100 for testing;
#   the blue channel) and MBM (15 training / 29
#   test images, one permutation per seed; the inverted grey level, downscaled ×{glue:text}`comparison_mbm_scale`).
#   No masks exist for them: methods that also learn a foreground map get the Otsu foreground.
# - **Instances**: dense generated nuclei with touching instances (`data.nuclei`).
# - **Blood smears**: generated smears (`data.blood_smear`) through `data.lowres_pair`: the
#   high-resolution image and its ¼-resolution version.
#
# A fifth of each training set is held out for the validation curves; the test images are never seen in
# training.

# %% tags=["remove-input"]
run.metric("mbm_scale", cfg.mbm_scale)
run.metric("real_n_test", cfg.real_n_test)
run.glue()
base = 10_000 * (seed + 1)
gen_train = exp.generated_count_samples(cfg.n_train, base, cfg.gen_size)
gen_test = exp.generated_count_samples(cfg.n_test, base + 5_000, cfg.gen_size)
nuc_train = exp.nuclei_samples(cfg.n_train, base + 20_000, cfg.nuclei_size, cfg.radius_scale)
nuc_test = exp.nuclei_samples(cfg.n_test, base + 25_000, cfg.nuclei_size, cfg.radius_scale)
blood_train = exp.blood_samples(cfg.n_train, base + 30_000, cfg.smear_size, cfg.blood_size)
blood_test = exp.blood_samples(cfg.n_test, base + 35_000, cfg.smear_size, cfg.blood_size)
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (title, img) in zip(axes, [
    (f"BBBC005-like ({int(gen_test[0]['count'])} cells)", gen_test[0]["image"]),
    (f"nuclei ({nuc_test[0]['labels'].max()} instances)", nuc_test[0]["image"]),
    ("blood smear, high resolution", blood_test[0]["hr"].transpose(1, 2, 0)),
    ("the same, ¼ resolution", blood_test[0]["lr"].transpose(1, 2, 0)),
]):
    ax.imshow(img, cmap="gray")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Methods
#
# Each row is one registered method (`cellnb.methods.get_method(name)`); the loss is its default
# (the paper-faithful one) and the post-processing its own. Where that post-processing has a setting
# the paper leaves open (U-SE-ResNet's marker threshold, the U-Net's seed and foreground thresholds, MC-Unet's way of
# seeding its instances), each seed chooses it on its validation images
# (`Method.choose_postprocess` over `Method.postprocess_options`), as the method's own chapter would;
# the test images never take part. A method that predicts only a
# foreground (no instance output) gets the distance-transform watershed of that foreground for the
# instance task, at the foreground threshold (0.3–0.7, 0.5 first) its validation images choose, and is
# shown with that post-processing's ceiling.

# %% tags=["remove-input"]
used = sorted({m for m in cfg.count_methods + cfg.nuclei_methods} | {m for m, _ in cfg.blood_methods})
rows = []
for name in used:
    if name not in list_methods():
        rows.append({"method": name, "paper": "(not available in this build)", "tasks": "", "default loss": ""})
        continue
    m = get_method(name)
    rows.append({"method": name, "paper": m.paper, "tasks": ", ".join(m.tasks),
                 "default loss": m.losses[0] if m.losses else "(no training)",
                 "instance post-processing": ("–" if name not in cfg.nuclei_methods else
                                              exp.ceiling_postprocess(m, cfg.min_distance)[1] if m.trainable else "Otsu + distance watershed")})
report.show_table(pd.DataFrame(rows), caption="The compared methods")

# %% [markdown]
# ## Training
#
# Every trained method of a task gets the same default budget — {glue:text}`comparison_steps` optimiser
# steps of batch {glue:text}`comparison_batch_size` on random {glue:text}`comparison_crop`² crops with flips
# and 90° rotations, at the `slim` size — each with its own optimiser settings and schedule, for each of
# {glue:text}`comparison_n_seeds` seeds. Where the profile sets a task's or a method's budget otherwise
# (fewer steps where the curves flatten early; more where a method was measured to need them, as SSRNet
# and ELMGAN on VGG cells and nuclei; the density U-Net's recipe at a larger width), the table under the
# training curves lists it. All validation curves are in one figure after the results.

# %% tags=["remove-cell"]
for key in ("steps", "batch_size", "crop", "n_seeds"):
    run.metric(key, cfg[key])
run.glue()

# %% tags=["remove-cell"]
vgg_dir = utils.real_dataset_dir(data_root, "vgg_cells")
mbm_dir = utils.real_dataset_dir(data_root, "mbm")
if cfg.generated_count == "always" or (vgg_dir is None and mbm_dir is None):
    outcomes["count_gen"] = exp.run_task("count_gen", cfg.count_methods, [exp.split_val(gen_train, cfg.val_fraction)] * len(seeds),
                                         [gen_test] * len(seeds), cfg, seeds, device=dev)
if vgg_dir is not None:
    vgg = exp.real_count_samples(data.load_dot_dataset(vgg_dir, kind="vgg"), "vgg", cfg.vgg_scale)
    vsplits = data.vgg_splits(cfg.real_n_train, n_splits=len(seeds), seed=seed)
    outcomes["count_vgg"] = exp.run_task(
        "count_vgg", cfg.count_methods,
        [exp.split_val([vgg[i] for i in s["train"]], cfg.val_fraction) for s in vsplits],
        [[vgg[i] for i in s["test"][: cfg.real_n_test]] for s in vsplits], cfg, seeds, device=dev)
if mbm_dir is not None:
    mbm = exp.real_count_samples(data.load_dot_dataset(mbm_dir, kind="mbm"), "mbm", cfg.mbm_scale)
    msplits = [data.mbm_split(seed=s, n_train=cfg.mbm_n_train) for s in seeds]
    outcomes["count_mbm"] = exp.run_task(
        "count_mbm", cfg.count_methods,
        [exp.split_val([mbm[i] for i in s["train"]], cfg.val_fraction) for s in msplits],
        [[mbm[i] for i in s["test"][: cfg.mbm_n_test]] for s in msplits], cfg, seeds, device=dev)
outcomes["nuclei"] = exp.run_task("nuclei", cfg.nuclei_methods, [exp.split_val(nuc_train, cfg.val_fraction)] * len(seeds),
                                  [nuc_test] * len(seeds), cfg, seeds, device=dev)
outcomes["blood"] = exp.run_task("blood", cfg.blood_methods, [exp.split_val(blood_train, cfg.val_fraction)] * len(seeds),
                                 [blood_test] * len(seeds), cfg, seeds, device=dev)

# %% tags=["remove-cell"]
all_rows = pd.DataFrame([r for o in outcomes.values() for r in o["rows"]])
status = pd.DataFrame([r for o in outcomes.values() for r in o["status"]])
ceilings = {task: o["ceilings"] for task, o in outcomes.items()}
summary = pd.concat([exp.summarize(all_rows[all_rows.task == t], exp.TASK_METRIC[t][0]) for t in outcomes], ignore_index=True)
learned = {}
for task in outcomes:
    metric, better = exp.TASK_METRIC[task]
    for name in (status[status.task == task].method.unique() if len(status) else []):
        st = exp.learned_status(all_rows, status, task, name)
        learned[f"{name}@{task}"] = st
        ceil = ceilings[task].get(name, {}).get(metric)
        run.model(f"{name}@{task}", converged=st["converged"], beats_floor=st["beats_floor"], metric=metric,
                  value=st["value"], floor=st["floor"], ceiling=ceil, curve=st["curve"],
                  seeds_converged=st["seeds_converged"], n_seeds=st["n_seeds"], **half_budget_fields(st))
        run.metric(f"{name}_{task}_steps_per_s", st["steps_per_s"])
        run.metric(f"{name}_{task}_train_s", st["train_s"])
for _, r in summary.iterrows():  # untrained methods (the classical pipeline): beats its floor?
    if r["method"] not in exp.FLOORS and f"{r['method']}@{r['task']}" not in learned:
        metric, better = exp.TASK_METRIC[r["task"]]
        va, vb, groups = exp.paired(all_rows, r["task"], r["method"], exp.FLOOR, metric)
        learned[f"{r['method']}@{r['task']}"] = {"untrained": True, "beats_floor": verdicts.beats_floor(va, vb, better=better, groups=groups)}
for _, r in summary.iterrows():
    key = {exp.FLOOR: f"floor_{r['task']}_{r['metric']}", exp.FLOOR_BICUBIC: f"floor_bicubic_{r['task']}_{r['metric']}"}.get(
        r["method"], f"{r['method']}_{r['task']}_{r['metric']}")
    run.metric(key, r["mean"])
    run.metric(key + "_low", r["low"])
    run.metric(key + "_high", r["high"])
for task, ceil in ceilings.items():
    for name, c in ceil.items():
        for k in ("aji", "ap50"):
            run.metric(f"ceiling_{name}_{task}_{k}", c[k])
raw_summary = pd.concat([exp.summarize(all_rows[all_rows.task == t], "raw_mae") for t in outcomes if t.startswith("count")]
                        or [pd.DataFrame(columns=summary.columns)], ignore_index=True)
for _, r in raw_summary[~raw_summary.method.isin(exp.FLOORS)].iterrows():
    run.metric(f"{r['method']}_{r['task']}_raw_mae", r["mean"])
for task, target in exp.COUNT_TARGET.items():
    if task in outcomes:
        fl = summary[(summary.task == task) & (summary.method == exp.FLOOR)]["mean"].iloc[0]
        for _, r in summary[(summary.task == task) & ~summary.method.isin(exp.FLOORS)].iterrows():
            run.metric(f"{r['method']}_{task}_mae_ratio", r["mean"] / fl if fl else float("nan"))
skipped = {(task, name): why for task, o in outcomes.items() for name, why in o["skipped"].items()}

# %% tags=["remove-input"]
if vgg_dir is None or mbm_dir is None:
    report.note("No data root with " + " and ".join(n for n, d in (("vgg_cells/", vgg_dir), ("mbm/", mbm_dir)) if d is None)
                + " was given: those real counting sets are skipped. Pass --data-root to include them.")
if skipped:
    report.note("Not run: " + "; ".join(f"{name} on {task} ({why})" for (task, name), why in skipped.items()), kind="warning")

# %% [markdown]
# ## Evaluation
#
# Counting: absolute count error per test image (MAE), the floor being the constant training-mean
# count. Every count model's counts are calibrated (our addition, not the papers'): each seed's model
# multiplies its counts by one scale, the sum of the true counts over the sum of its predicted counts on
# its own validation images, so a model that undercounts by a steady few per cent is not judged on that
# bias alone. The scale is kept only where there are at least five validation images and leave-one-out
# on them says it pays (each image scaled by the other images' scale errs less than raw;
# `cellnb.postprocess.choose_count_scale`), else the scale is 1: below five, even a unanimous
# leave-one-out vote could be chance at the 5 % level (a one-sided sign test), so MBM's three validation
# images per seed keep the raw counts. The table after the results gives the raw MAE and each seed's scale. Instances: AJI, AP@0.5 and Dice per image; the floor is Otsu + distance watershed. Blood
# smears: Dice of the cell mask; the floor is Otsu's threshold on the method's own input (the
# high-resolution image, or for the pipeline that reads the ¼-resolution one, its bicubic ×4). Each value is the mean over all test
# images and seeds with a 95 % bootstrap interval (seeds, then images). The **ceiling** of an instance
# post-processing is its score on the perfect maps (true foreground, markers, boundaries, interior,
# density); where it is near or below the scores compared, AJI cannot separate the methods.

# %% [markdown]
# ## Results
#
# ### Counting

# %% tags=["remove-input"]
cost_rows = []
for task, o in outcomes.items():
    for (name, s), model in o["models"].items():
        if s != seeds[0] or name in {c["method"] for c in cost_rows}:
            continue
        image = (gen_test if task.startswith("count") else nuc_test)[0]["image"] if task != "blood" else \
            exp.as_input(blood_test[0], dict((m, k) for m, k in cfg.blood_methods).get(name, "hr"))["image"]
        mtask = "count" if task.startswith("count") else ("instances" if task == "nuclei" and "instances" in get_method(name).tasks else "mask")
        c = exp.method_cost(name, model, image, mtask, repeats=cfg.bench_repeats)
        tr = status[(status.method == name)]["train_s"]
        c["train_s"] = float(tr.mean()) if len(tr) else 0.0
        cost_rows.append(c)
cost = pd.DataFrame(cost_rows, columns=["method", "params", "macs", "latency_ms", "train_s"])
for _, c in cost.iterrows():
    run.metric(f"{c['method']}_params", c["params"])
    run.metric(f"{c['method']}_macs", c["macs"])
    run.metric(f"{c['method']}_latency_ms", c["latency_ms"])
for task in ("count_gen", "count_vgg", "count_mbm"):
    if task in outcomes:
        report.show_table(exp.results_table(summary, learned, ceilings[task], cost, task),
                          caption=f"{exp.TASK_TITLE[task]}: count MAE per image, mean [95% interval] over "
                                  f"{len(seeds)} seeds; the floor is the training-mean count")

# %% tags=["remove-input"]
for task in ("count_gen", "count_vgg", "count_mbm"):
    calibration = exp.count_calibration_table(all_rows, task)
    if len(calibration):
        report.show_table(calibration, caption=f"{exp.TASK_TITLE[task]}: count MAE before and after the calibration "
                                               "on validation images, and the scale each seed chose")

# %% [markdown]
# Whether SSRNet counts better than the U-Net baseline is decided in the SSRNet chapter
# ({doc}`/book/executed/ssrnet`), with its own protocol; the numbers above are this benchmark's and carry
# no verdict of their own.
#
# ### Instances: touching nuclei

# %% tags=["remove-input"]
report.show_table(exp.results_table(summary, learned, ceilings["nuclei"], cost, "nuclei"),
                  caption="Touching nuclei: AJI per image, mean [95% interval]; ceiling = the method's post-processing "
                          "on perfect maps; the floor is Otsu + distance watershed")
ap = exp.summarize(all_rows[all_rows.task == "nuclei"], "ap50")
report.show_table(pd.DataFrame({"method": ap.method, "AP@0.5 (mean [95% CI])": [exp.fmt_interval(a, l, h) for a, l, h in zip(ap["mean"], ap.low, ap.high)],
                                "ceiling AP@0.5": [f"{ceilings['nuclei'].get(m, {}).get('ap50', float('nan')):.2f}" for m in ap.method]}),
                  caption="Touching nuclei: AP@0.5 per image")
chosen = exp.chosen_postprocess_table(status)
if len(chosen):
    report.show_table(chosen, caption="The instance-step settings each seed chose on its validation images")

# %% [markdown]
# ### Instances on real nuclei: sim-to-real
#
# The touching nuclei above are generated. Each instance method is also trained three ways for the real
# Hoechst frames of the `ndev-sampledata` scratch assay (the data chapter): (a) on generated nuclei
# only, from the generator matched to this set; (b) on the real frames 0–4 only; (c) (a) fine-tuned on
# frames 0–4; all with one budget and tested on frames 5–9. The frames are one field minutes apart
# and so correlated: the split is by time, and validation is a strip of frames 0–4
# (`cellnb.sim2real`). Each model chooses its instance step's open settings on its route's validation
# images (generated ones for route (a), the strip of frames 0–4 otherwise). The floor is Otsu + distance
# watershed on the same frames; the ceiling is the best of each method's instance-step settings on the
# true maps.

# %% tags=["remove-cell"]
real = exp.sim_to_real(cfg, seeds, device=dev)
real_found = {name: sim2real.record(run, r, prefix=f"real_{name}", label=name) for name, r in real.items()}

# %% tags=["remove-input"]
if real:
    report.show_table(sim2real.table(real), caption="Real frames 5–9: mean [95 % interval] over seeds then frames; each method's ceiling is the "
                      "best of its instance-step settings on the true maps")
    fig = sim2real.plot_curves(real)
    plt.show()
    best = max(((name, sc) for name in real for sc in sim2real.SCENARIO_TAGS),
               key=lambda k: run.metrics.get(f"real_{k[0]}_{sim2real.SCENARIO_TAGS[k[1]]}_aji", -1))
    tag = sim2real.SCENARIO_TAGS[best[1]]
    v = real_found[best[0]][f"real_{best[0]}_{tag}_beats_floor"]
    display(Markdown(
        f"The best route is {best[0]} trained on {sim2real.SCENARIO_LABELS[best[1]]}: AJI "
        f"{run.metrics[f'real_{best[0]}_{tag}_aji']:.3f} against {run.metrics[f'floor_real_{best[0]}_aji']:.3f} for the floor, "
        f"a difference of {v.estimate:+.3f} (95 % interval {v.low:+.3f} to {v.high:+.3f}); "
        + {True: "it beats the floor.", False: "it does not beat the floor."}.get(
            v.holds, f"inconclusive ({v.reason}).")))
else:
    report.note("The real nuclei are not installed (`pip install --no-deps ndev-sampledata==0.0.3`); "
                "the sim-to-real section is skipped.", kind="warning")

# %% [markdown]
# ### Blood smears

# %% tags=["remove-input"]
report.show_table(exp.results_table(summary, learned, {}, cost, "blood"),
                  caption="Blood smears: Dice of the cell mask per image, mean [95% interval]; the floor is Otsu on the "
                          "method's own input: the high-resolution image, or the bicubic ×4 of the ¼-resolution one")

# %% [markdown]
# ### Training curves

# %% tags=["remove-input"]
if len(status):
    fig = exp.curves_figure(status)
    plt.show()
    report.show_table(exp.budget_table(status), caption="Training budget and cost per task and method "
                      "(train seconds and steps per second: mean over the seeds, one CPU thread; the gain of the "
                      "second half: the validation loss at half the budget, annealed, against the end)")

# %% [markdown]
# "Converged" in this book is the last-quarter rule (`cellnb.verdicts.converged`): the last quarter of the
# validation curve improved on the quarter before by less than 5 %. Its question is really "would more
# steps help?", and a schedule that anneals to the end (one-cycle, here) blurs it: the anneal improves the
# last quarter whatever the budget, and a curve can look flat while a longer run would still gain. The
# last column asks the budget question directly, where the method's training loop can: at 40 % of the
# budget a copy of the run anneals its learning rate to zero over a further 10 % (the decay branch of a
# warmup-stable-decay schedule) and is validated, so that "half the budget, annealed" is measured
# without a second training (`cellnb.methods.training.half_budget_branch`; the run itself continues
# unchanged, bit for bit). A gain under 5 % means doubling the budget from half to whole bought less
# than the rule's tolerance.

# %% tags=["remove-input"]
measured = status[np.isfinite(status["half_budget_gain"].astype(float))] if len(status) and "half_budget_gain" in status else status.iloc[0:0]
if len(measured):
    over = measured["half_budget_gain"].astype(float) < verdicts.CONVERGENCE_TOL
    lq = measured["converged"].astype(bool)
    run.metric("half_budget_trainings", len(measured))
    run.metric("half_budget_converged", int(over.sum()))
    run.metric("half_budget_last_quarter_converged", int(lq.sum()))
    run.metric("half_budget_rules_agree", int((over == lq).sum()))
    run.metric("half_budget_median_gain", float(measured["half_budget_gain"].astype(float).median()))
    display(Markdown(
        f"Of the {len(measured)} trainings that measured it, **{int(over.sum())} gained less than 5 %** in the second "
        f"half of their budget (median gain {100 * float(measured['half_budget_gain'].astype(float).median()):.0f} %); "
        f"the last-quarter rule calls {int(lq.sum())} of them converged, and the two agree on {int((over == lq).sum())}. "
        "The verdicts of this book use the last-quarter rule; where the budget question says a model was still "
        "learning, more steps may change its numbers."))

# %% [markdown]
# ## Which method for my cells?
#
# Per task, accuracy against four costs of the trained (slim) models: parameters, multiply-accumulates
# of one forward pass on the test image, the CPU latency of `method.predict` on one test image
# (post-processing included) and the training time of its budget (the budget table above). The dashed line is the
# floor (dotted, for blood: the floor of the ¼-resolution input); open triangles are the ceilings of
# the instance post-processings.

# %% tags=["remove-input"]
for task in outcomes:
    if (summary.task == task).sum() > 1 and len(cost):
        fig = exp.which_method_figure(summary, cost, task, ceilings[task] if task == "nuclei" else None)
        plt.show()

# %% tags=["remove-input"]
recs = exp.recommendations(summary, learned, cost, ceilings)
report.show_table(recs, caption="Recommendations read from the numbers above: the most accurate method that beats its floor, "
                                "the cheapest (CPU latency) whose interval overlaps it, and the methods that did not learn")

# %% [markdown]
# ### This chapter's claims
#
# Comparative claims are decided by one rule (`cellnb.verdicts.compare`: paired per-image differences
# pooled over the seeds, a 95 % bootstrap interval, and no verdict when a model did not learn or the
# metric is capped by a post-processing's ceiling).

# %% tags=["remove-input"]
for cid, task, a, b, margin, statement in exp.COMPARISONS:
    if task not in outcomes or f"{a}@{task}" not in learned or f"{b}@{task}" not in learned:
        continue
    metric, better = exp.TASK_METRIC[task]
    va, vb, groups = exp.paired(all_rows, task, a, b, metric)
    v = verdicts.compare(va, vb, better=better, groups=groups, margin=margin, learned=run.learned(f"{a}@{task}", f"{b}@{task}"),
                         labels=(a, b))
    if task == "nuclei":
        ceil = min(ceilings[task][a]["aji"], ceilings[task][b]["aji"])
        v = exp.capped_verdict(v, ceil, [float(va.mean()), float(vb.mean())])
    run.verdict(cid, statement, f"{get_method(a).paper} (cross-paper)", v, kind="check")
for task, target in exp.COUNT_TARGET.items():
    if task not in outcomes:
        continue
    # a training target: the untrained classical pipeline has no training to judge, so only trained models count
    ratios = {name: v for name, v in ((k.split(f"_{task}_")[0], v) for k, v in run.metrics.items()
                                      if k.endswith(f"_{task}_mae_ratio"))
              if name in list_methods() and get_method(name).trainable}
    if ratios:
        worst = max(ratios, key=ratios.get)
        run.claim(f"count_models_vs_floor_{task}", f"Every trained count model reaches at most {target} × the constant-mean "
                  f"MAE ({exp.TASK_TITLE[task]})", "this book's training target", round(ratios[worst], 3),
                  verdicts.threshold_verdict(ratios[worst], target), f"worst: {worst}, MAE ratio {ratios[worst]:.2f}; mean over seeds",
                  kind="check")
report.show_claims(run)

# %% [markdown]
# ### Every chapter's claims
#
# This chapter decides only its own cross-method checks above. The claims of every chapter, with their
# verdicts, and the time each notebook takes are gathered on {doc}`/book/results`.

# %% tags=["remove-cell"]
path = run.save()
run.glue()

# %% [markdown]
# ## Deviations from the papers
#
# One benchmark for all: slim sizes, small images, a default step budget per task with measured exceptions, generated
# data for the instance and blood tasks. The list is on {doc}`/book/deviations`.
#
# ## Summary
#
# - Every method ran with its own loss and post-processing through `cellnb.methods`; the tables show
#   each next to its floor and, for instances, next to the ceiling of its post-processing.
# - On touching nuclei the three-class U-Net reaches AJI {glue:text}`comparison_unet_nuclei_aji:.2f`
#   (its post-processing's ceiling {glue:text}`comparison_ceiling_unet_nuclei_aji:.2f`); the floor
#   scores {glue:text}`comparison_floor_nuclei_aji:.2f`.
# - Every chapter's claims and their verdicts are on {doc}`/book/results`.
