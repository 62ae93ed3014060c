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
# # Training speed on this machine
#
# Every chapter trains on two CPU cores by default, so what a training step costs decides how far
# a model gets within the book's time budget. This chapter measures the optimiser steps per second
# of every method's slim network, with its weights in PyTorch's default layout (NCHW) and in
# `channels_last`, and under `torch.compile` for one network, and it times every method's own
# training loop in float32 and under bfloat16 autocast. It checks the memory format each method
# declares (`Method.memory_format`, applied when the method builds its network) and the precision it
# trains in (`Method.train_precision`) against these measurements. The training chapters record the
# steps per second of every model they train.

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
from IPython.display import Markdown, display

from cellnb import config, report, results, utils, verdicts
from cellnb.experiments import speed as exp

cfg, dev, run = config.start_chapter("speed", exp.SETTINGS, profile=profile, device=device, seed=seed, data_root=data_root, num_threads=num_threads)

# %% tags=["remove-cell"]
table = exp.measure(cfg, device=dev)
check = exp.format_check(table)
loop = exp.loop_precision(cfg, device=dev)
precision = exp.precision_check(loop)
for r in table.itertuples():
    run.metric(f"{r.method}_{r.variant}_steps_per_s", r.steps_per_s)
    if r.variant == "compile":
        run.metric(f"{r.method}_compile_warmup_s", r.warmup_s)
        run.metric(f"{r.method}_compile_speedup", r.speedup)
for r in check.itertuples():
    run.metric(f"{r.method}_channels_last_speedup", r.speedup)
run.metric("n_methods", len(check))
run.metric("n_channels_last", int((check.declared == "channels_last").sum()))
run.metric("median_channels_last_speedup", float(check.speedup.median()))
run.metric("threads", torch.get_num_threads())
run.metric("native_bfloat16", int(utils.native_bfloat16(dev)))
for r in loop[np.isfinite(loop.steps_per_s)].itertuples():  # not measured: NaN in the table, no metric
    run.metric(f"{r.method}_loop_{r.variant}_steps_per_s", r.steps_per_s)
for r in precision[np.isfinite(precision.speedup)].itertuples():
    run.metric(f"{r.method}_bfloat16_speedup", r.speedup)
run.metric("n_bfloat16", int((precision.declared == "bfloat16").sum()))
wrong = check[~check["declared is fine"]]
run.claim("memory_format_choice", "Every method builds its network in the memory format that trains faster on this "
          f"machine (or within {exp.TOLERANCE:.0%} of it)", "this book's CPU set-up",
          measured=int(len(wrong)), holds=verdicts.threshold_verdict(len(wrong), 0),
          note=(f"median of {cfg.repeats} timed blocks of {cfg.steps} steps per layout; "
                + ("slower than the other layout: " + ", ".join(wrong.method) if len(wrong) else "no method is slower")),
          kind="check")
slow = precision[~precision["declared is fine"]]
run.claim("precision_choice", "Every method trains in the precision (float32 or bfloat16 autocast) that is faster on "
          f"this machine (or within {exp.TOLERANCE:.0%} of it)", "this book's CPU set-up",
          measured=int(len(slow)), holds=verdicts.threshold_verdict(len(slow), 0),
          note=(("this device has no native bfloat16, so every method trains in float32; " if not utils.native_bfloat16(dev) else "")
                + f"each method's own training loop, {cfg.loop_steps} steps, median of {cfg.loop_repeats} runs per precision; "
                + (f"slower than the other precision: {', '.join(slow.method)}" if len(slow) else "no method is slower")),
          kind="check")

# %% tags=["remove-input"]
report.banner(run)

# %% [markdown]
# ## Steps per second, by memory format
#
# One training step is the forward pass, the backward pass of a stand-in loss (the mean square of
# every output; a method's own loss adds only element-wise work) and an Adam update, on a batch of
# the chapters' crop size (`input`, N×C×H×W; the super-resolving methods get their low-resolution
# input). Warm-up steps are not timed; each layout then runs timed blocks in turn, and the median
# block gives the rate. With `channels_last` only the weights change layout: the convolutions then
# run, and return, channels-last tensors from the data loaders' NCHW batches.

# %% tags=["remove-input"]
report.show_table(check, floatfmt="{:.2f}", caption="Training steps per second on this machine, one thread; "
                  "'declared' is the method's Method.memory_format")
fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(check) + 1))
order = check.sort_values("speedup")
ax.barh(order.method, order.speedup, color=["tab:green" if d == "channels_last" else "tab:gray" for d in order.declared])
ax.axvline(1.0, color="k", lw=0.8)
ax.set_xlabel("channels_last steps/s ÷ NCHW steps/s (green: the method trains channels_last)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Steps per second, by precision
#
# Under bfloat16 autocast the convolutions run in bfloat16 (8 bits of mantissa) while the weights,
# the gradients, Adam and the loss stay in float32; prediction and validation always run in float32.
# It pays only where the processor computes bfloat16 in hardware (AVX512-BF16 or AMX on recent x86
# CPUs, or a GPU); elsewhere it is emulated and not measured.
#
# The rates here are not a stand-in step: each is the method's own `train` call (its data
# preparation, loss, validation and BatchNorm re-estimation included), on small generated images at
# the crop and batch its chapter trains with, in its declared memory format. A forward and backward
# pass alone can be faster in bfloat16 while the whole loop is not: the casts around normalisation
# layers and the float32 parts of the loop take back the gain of small convolutions. ELMGAN's GAN
# loop has no bfloat16 path, so it is not measured.

# %% tags=["remove-input"]
report.show_table(precision, floatfmt="{:.2f}", caption="Steps per second of each method's own training loop on "
                  "this machine, one thread; 'declared' is the method's Method.train_precision")

# %% [markdown]
# ## `torch.compile`

# %% tags=["remove-input"]
comp = table[table.variant == "compile"]
if len(comp):
    report.show_table(comp[["method", "input", "steps_per_s", "speedup", "warmup_s", "note"]], floatfmt="{:.2f}",
                      caption="torch.compile (inductor): steps per second, speed-up over NCHW eager, compilation time")
    r = comp.iloc[0]
    steps_to_pay = (r.warmup_s / (1 / table[(table.method == r.method) & (table.variant == "default")].steps_per_s.iloc[0]
                                  - 1 / r.steps_per_s)) if r.speedup > 1 else float("inf")
    run.metric(f"{r.method}_compile_break_even_steps", steps_to_pay)
    display(Markdown(
        f"Compiling {r.method} took {r.warmup_s:.0f} s and then ran {r.speedup:.2f}× as fast as eager NCHW: it pays "
        + (f"after about {steps_to_pay:.0f} steps" if np.isfinite(steps_to_pay) else "never")
        + " of one model. The chapters train many small models of a few hundred steps each, and a compiled graph "
          "must be rebuilt per model and input size, so they run eagerly; `torch.compile` is left to the `full` "
          "profile's long trainings."))
else:
    report.note("torch.compile was not measured in this profile.")

# %% [markdown]
# ## What else the runner does for speed
#
# - Each notebook runs with one torch thread and the runner executes two notebooks at once on the
#   two cores (`--jobs 2`), longest first: two single-threaded trainings keep both cores busier than
#   one two-threaded training of these small networks. The rates above were measured that way, beside
#   another chapter's training, as the chapters' own rates are.
# - Prediction and validation run without autograd (`torch.no_grad`); the latency benchmarks of the
#   comparison chapter under `torch.inference_mode`.
# - Every chapter records the steps per second of each model it trains; the reproducing page gives
#   each chapter's wall time.

# %% tags=["remove-input"]
report.show_claims(run)

# %% tags=["remove-cell"]
run.save()
run.glue()
