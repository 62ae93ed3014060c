"""The speed chapter: how fast each method trains on this machine, and in which memory format.

For every trainable method of :mod:`cellnb.methods`, :func:`cellnb.profile.train_speed` times
optimiser steps of its slim network (forward, backward, Adam) on batches of the chapters' crop
size, with the weights in PyTorch's default (NCHW) layout and in ``channels_last``, in its declared
layout under bfloat16 autocast, and, for the methods of ``compile_methods``, under ``torch.compile``.
The method's declared :attr:`~cellnb.methods.base.Method.memory_format` and
:attr:`~cellnb.methods.base.Method.train_precision` are checked against the measurement.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

NAME = "speed"
HEADLINE = ("n_methods", "n_channels_last", "median_channels_last_speedup")
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(methods=["unet", "u_se_resnet"], batch_size=2, crop=32, steps=2, warmup=1, repeats=1,
                  compile_methods=[]),
    # blocks of 16 steps: 8-step blocks under a second were too noisy on the shared 2-core machine
    # (one run put U-SE-ResNet's channels-last speed-up at 0.85×, another at 1.22×)
    # 3 blocks, not 5, to fit the book's budget: measured here, the chapter's measurement took 112 s
    # instead of about 200 s; the channels-last speed-ups read 1.10-1.37x (1.15-1.21x with 5 blocks) and
    # every method's declared format stayed within the 10 % tolerance (ELMGAN 1.01x, 1.04x with 5)
    "quick": dict(methods=None, batch_size=8, crop=64, steps=16, warmup=2, repeats=3, compile_methods=["unet"]),
    "full": dict(methods=None, batch_size=8, crop=256, steps=20, warmup=5, repeats=5, compile_methods=None),
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
        variants = (["default", "channels_last", "bfloat16"]
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


def precision_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: float32 and bfloat16-autocast training rates, both in the method's declared layout
    (the ``bfloat16`` variant of :func:`cellnb.profile.train_speed` runs the model as built), the
    faster one and whether the declared :attr:`~cellnb.methods.base.Method.train_precision` is within
    :data:`TOLERANCE` of it. Where bfloat16 was not measured (no native bfloat16: training then runs
    float32 whatever is declared) the declared precision is fine and ``faster`` is ``"float32"``."""
    out = []
    for name, g in table.groupby("method", sort=False):
        rate = g.set_index("variant")["steps_per_s"]
        fp32 = rate["channels_last"] if g["declared"].iloc[0] == "channels_last" else rate["default"]
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
