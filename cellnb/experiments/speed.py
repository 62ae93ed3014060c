"""The speed chapter: how fast each method trains on this machine, and in which memory format.

For every trainable method of :mod:`cellnb.methods`, :func:`cellnb.profile.train_speed` times
optimiser steps of its slim network (forward, backward, Adam) on batches of the chapters' crop
size, with the weights in PyTorch's default (NCHW) layout and in ``channels_last``, and, for the
methods of ``compile_methods``, under ``torch.compile``; the method's declared
:attr:`~cellnb.methods.base.Method.memory_format` is checked against it (:func:`format_check`).

The training precision is decided in the method's own training loop (:func:`loop_precision`):
``method.train`` on :func:`cellnb.methods.training.toy_sample` images, in float32 and under bfloat16
autocast, at the chapters' crops and batches, data preparation, validation and BatchNorm
recalibration included. A stand-in step (forward, backward, Adam) measured some networks faster in
bfloat16 whose loops were not (MobileSR 1.36x against 1.01x, MC-Unet 1.13x against 0.99x, this CPU),
so :func:`precision_check` compares the declared
:attr:`~cellnb.methods.base.Method.train_precision` with the loop's rates.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

NAME = "speed"
HEADLINE = ("n_methods", "n_channels_last", "median_channels_last_speedup")
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(methods=["unet", "u_se_resnet"], batch_size=2, crop=32, steps=2, warmup=1, repeats=1,
                  compile_methods=[], loop_steps=4, loop_repeats=1, loop_shapes={}),
    # blocks of 16 steps: 8-step blocks under a second were too noisy on the shared 2-core machine
    # (one run put U-SE-ResNet's channels-last speed-up at 0.85×, another at 1.22×)
    # 3 blocks, not 5, to fit the book's budget: measured here, the chapter's measurement took 112 s
    # instead of about 200 s; the channels-last speed-ups read 1.10-1.37x (1.15-1.21x with 5 blocks) and
    # every method's declared format stayed within the 10 % tolerance (ELMGAN 1.01x, 1.04x with 5)
    # training loops: 60 steps, float32 and bfloat16 interleaved twice, the median; crop and batch per
    # method as its chapter trains at quick (others: crop, batch_size)
    "quick": dict(methods=None, batch_size=8, crop=64, steps=16, warmup=2, repeats=3, compile_methods=["unet"],
                  loop_steps=60, loop_repeats=2,
                  loop_shapes={"mobilesr": (32, 16), "tiny_unet": (48, 8), "mobilesr_tinyunet": (48, 8),
                               "mc_unet": (48, 8)}),
    "full": dict(methods=None, batch_size=8, crop=256, steps=20, warmup=5, repeats=5, compile_methods=None,
                 loop_steps=100, loop_repeats=3, loop_shapes={}),
}
#: input channels of the blood-smear methods (RGB)
RGB_METHODS = ("tiny_unet", "mobilesr", "mobilesr_tinyunet")
#: a declared format counts as the right choice unless the other one is faster by more than this
TOLERANCE = 0.10


def methods(cfg: Mapping[str, Any]) -> list[str]:
    """The trainable methods measured (``cfg["methods"]``, default all registered)."""
    from cellnb.methods import get_method, list_methods

    names = cfg.get("methods") or list_methods()
    return [n for n in names if get_method(n).trainable]


def input_shape(name: str, cfg: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(N, C, H, W) of one training batch of method ``name``: the crop (its low-resolution input for
    a super-resolving method), RGB for the blood-smear methods."""
    from cellnb.methods import get_method

    m = get_method(name)
    side = max(int(cfg["crop"]) // m.sr_scale, m.multiple)
    side = int(np.ceil(side / m.multiple) * m.multiple)
    return (int(cfg["batch_size"]), 3 if name in RGB_METHODS else 1, side, side)


def measure(cfg: Mapping[str, Any], device: str = "cpu") -> pd.DataFrame:
    """One row per (method, variant): ``steps_per_s``, ``speedup`` over the default layout,
    ``warmup_s`` (compilation, for ``compile``), the input shape, the declared format and the declared
    training precision."""
    from cellnb.methods import get_method
    from cellnb.profile import train_speed

    compile_for = cfg.get("compile_methods")
    rows = []
    for name in methods(cfg):
        m = get_method(name)
        task = m.primary_task
        shape = input_shape(name, cfg)
        variants = (["default", "channels_last"]
                    + (["compile"] if compile_for is None or name in compile_for else []))
        table = train_speed(lambda: m.build("slim", in_channels=shape[1], task=task), shape, steps=int(cfg["steps"]),
                            warmup=int(cfg["warmup"]), repeats=int(cfg["repeats"]), variants=variants, device=device)
        rows += [{"method": name, "task": task, "input": "×".join(map(str, shape)), "declared": m.memory_format,
                  "declared_precision": m.train_precision, **r} for r in table.to_dict("records")]
    return pd.DataFrame(rows)


def declared_is_fine(declared_rate: float, best_rate: float) -> bool:
    """The rule of both checks: the declared choice's rate is within :data:`TOLERANCE` of the faster."""
    return bool(declared_rate >= (1 - TOLERANCE) * best_rate)


def format_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: the two layouts' rates, the faster one and whether the declared format is within
    :data:`TOLERANCE` of the faster."""
    out = []
    for name, g in table.groupby("method", sort=False):
        rate = g.set_index("variant")["steps_per_s"]
        declared = g["declared"].iloc[0]
        mine = rate["channels_last"] if declared == "channels_last" else rate["default"]
        best = max(rate["default"], rate["channels_last"])
        out.append({"method": name, "NCHW steps/s": rate["default"], "channels_last steps/s": rate["channels_last"],
                    "speedup": rate["channels_last"] / rate["default"],
                    "faster": "channels_last" if rate["channels_last"] > rate["default"] else "contiguous",
                    "declared": declared, "declared is fine": declared_is_fine(mine, best)})
    return pd.DataFrame(out)


def loop_precision(cfg: Mapping[str, Any], device: str = "cpu") -> pd.DataFrame:
    """Steps per second of each trainable method's own training loop in float32 and in bfloat16
    autocast: ``method.train(..., precision=...)`` for ``cfg["loop_steps"]`` steps on six
    :func:`cellnb.methods.training.toy_sample` images of 128² (one more for validation), its slim
    network in its declared memory format, at ``cfg["loop_shapes"][name]`` = (crop, batch) or
    ``(cfg["crop"], cfg["batch_size"])``, the crop rounded up to the method's size multiple. The rate is the steps over the wall time of the whole
    ``train`` call; the two precisions alternate ``cfg["loop_repeats"]`` times and the median counts.

    One row per (method, variant): ``steps_per_s``, ``ran`` (the precision the loop recorded in
    ``history.attrs["precision"]``), the declared ``declared_precision``, ``crop``, ``batch`` and
    ``note``. ``bfloat16`` is NaN with a note where the device has no native bfloat16, or where the
    loop did not run it (its ``ran`` is then float32)."""
    import time

    import torch

    from cellnb.methods import get_method
    from cellnb.methods.training import toy_sample
    from cellnb.utils import bfloat16_note, native_bfloat16, select_device

    dev = select_device(device)
    native = native_bfloat16(dev)
    steps, repeats = int(cfg["loop_steps"]), max(int(cfg["loop_repeats"]), 1)
    rows = []
    for name in methods(cfg):
        m = get_method(name)
        crop, batch = cfg.get("loop_shapes", {}).get(name, (cfg["crop"], cfg["batch_size"]))
        crop = int(np.ceil(int(crop) / m.multiple) * m.multiple)  # what the network takes
        train = [toy_sample(m, i, (128, 128)) for i in range(6)]
        val = [toy_sample(m, 9, (128, 128))]
        in_channels = int(m.normalize(train[0]["image"]).shape[0])
        timed: dict[str, list[float]] = {"float32": [], "bfloat16": []}
        ran: dict[str, str] = {}
        for _ in range(repeats):
            for precision in ("float32", "bfloat16") if native else ("float32",):
                torch.manual_seed(0)
                model = m.build("slim", in_channels=in_channels, task=m.primary_task)
                t0 = time.perf_counter()
                history = m.train(model, train, val, m.primary_task, steps=steps, batch_size=int(batch), crop=int(crop),
                                  seed=0, device=dev, precision=precision)
                timed[precision].append(steps / (time.perf_counter() - t0))
                ran[precision] = str(history.attrs.get("precision", "float32"))
        for precision, rates in timed.items():
            note = ""
            if precision == "bfloat16" and not native:
                note = bfloat16_note(dev)
            elif precision == "bfloat16" and ran.get(precision) != "bfloat16":
                note = f"its training loop ran {ran.get(precision)}: no bfloat16 path"
            rows.append({"method": name, "variant": precision, "steps_per_s": float(np.median(rates)) if rates and not note
                         else float("nan"), "ran": ran.get(precision, ""), "declared_precision": m.train_precision,
                         "crop": int(crop), "batch": int(batch), "note": note})
    return pd.DataFrame(rows)


def precision_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per method, from :func:`loop_precision`'s table: the float32 and bfloat16-autocast rates of its
    training loop, the faster one and whether the declared
    :attr:`~cellnb.methods.base.Method.train_precision` is within :data:`TOLERANCE` of it. Where
    bfloat16 was not measured (no native bfloat16, or a loop without a bfloat16 path: training then
    runs float32 whatever is declared) the declared precision is fine and ``faster`` is
    ``"float32"``."""
    out = []
    for name, g in table.groupby("method", sort=False):
        rate = g.set_index("variant")["steps_per_s"]
        fp32 = rate["float32"]
        bf16 = rate.get("bfloat16", float("nan"))
        declared = g["declared_precision"].iloc[0]
        measured = bool(np.isfinite(bf16))
        mine = bf16 if declared == "bfloat16" and measured else fp32
        best = max(fp32, bf16) if measured else fp32
        out.append({"method": name, "float32 steps/s": fp32, "bfloat16 steps/s": bf16,
                    "speedup": bf16 / fp32 if measured else float("nan"),
                    "faster": "bfloat16" if measured and bf16 > fp32 else "float32",
                    "declared": declared, "declared is fine": declared_is_fine(mine, best)})
    return pd.DataFrame(out)
