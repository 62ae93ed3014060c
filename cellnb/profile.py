"""Model cost: parameters, MACs, memory traffic, peak memory and measured latency.

What is measured, exactly
-------------------------
- :func:`count_params`: number of parameter elements (shared parameters once).
- :func:`count_macs`: multiply-accumulates of one forward pass, ``FLOPs / 2`` from
  :class:`torch.utils.flop_counter.FlopCounterMode`. It counts the matrix ops only:
  convolutions (incl. transposed), ``mm``/``addmm``/``bmm``/``baddbmm`` (``nn.Linear``) and
  scaled-dot-product attention. Bias additions, normalisation, activations, pooling,
  upsampling, concatenation and other element-wise ops are **not** counted — the usual
  convention of papers' "MACs"/"FLOPs" tables (thop, ptflops count the same convolutions).
- :func:`memory_traffic`: bytes read and written by one forward pass, counted per call of every
  *leaf* module (a module without children) with forward hooks::

      traffic(call) = Σ bytes(input tensors) + Σ bytes(output tensors) + Σ bytes(own parameters and buffers)

  with ``bytes(t) = t.numel() * t.element_size()`` (so float16 halves it), summed over all calls.
  It models each layer reading its input and weights from memory and writing its output, with
  no cache reuse between layers. Operations done functionally inside a ``forward`` (e.g.
  ``F.max_pool2d``, ``torch.cat``, ``F.softplus``) are not modules and are not counted.
- :func:`peak_memory`: CUDA: ``torch.cuda.max_memory_allocated`` during one inference forward
  (weights + input + live activations + workspace). CPU: torch's allocator is invisible to
  ``tracemalloc`` and RSS deltas are noisy, so it returns the *estimate*
  ``bytes(parameters and buffers) + bytes(input) + Σ bytes(leaf-module outputs)``, i.e. what a
  training forward keeps alive for backward (an upper bound for inference).
- :func:`benchmark`: wall-clock latency of ``model(x)`` under ``torch.inference_mode``,
  models timed side by side in one interleaved loop (round-robin, the starting model rotated
  each repeat), ``torch.cuda.synchronize`` around each call on GPU.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from cellnb.utils import autocast, bfloat16_note, device_name, select_device

Shape = Sequence[int]


def _check_shape(input_shape: Shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be like (N, C, H, W) with positive sizes, got {tuple(input_shape)}")
    return shape


def _tensor_bytes(obj: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(obj) if isinstance(t, torch.Tensor))


def _forward_once(model: nn.Module, input_shape: Shape, device: str, dtype: torch.dtype,
                  wrap: Callable[[], Any] | None = None) -> None:
    """One eval-mode forward on zeros. ``device="meta"`` runs a weightless copy (shapes only;
    falls back to the CPU for models whose forward needs real values)."""
    shape = _check_shape(input_shape)

    def run(net: nn.Module, dev: str) -> None:
        was_training = net.training
        net.eval()
        try:
            x = torch.zeros(shape, dtype=dtype, device=dev)
            ctx = wrap() if wrap is not None else None
            with torch.no_grad():
                if ctx is None:
                    net(x)
                else:
                    with ctx:
                        net(x)
        finally:
            net.train(was_training)

    if device == "meta":
        try:
            run(copy.deepcopy(model).to("meta"), "meta")
            return
        except (NotImplementedError, RuntimeError):
            device = "cpu"  # data-dependent forward: measure on real tensors
    run(model, device)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: Shape, device: str = "cpu", dtype: torch.dtype = torch.float32,
               by_operator: bool = False) -> int | dict[str, int]:
    """Multiply-accumulates of one forward pass on an ``input_shape`` batch (``FLOPs / 2``).

    Counted: convolutions, matrix multiplies (Linear) and attention, via
    :class:`torch.utils.flop_counter.FlopCounterMode`; element-wise ops are not (module
    docstring). ``by_operator=True`` returns ``{"aten.convolution": macs, ...}`` instead.
    ``device="meta"`` counts on a weightless copy (fast for big models and inputs).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    _forward_once(model, input_shape, device, dtype, wrap=lambda: counter)
    if by_operator:
        return {str(op): int(flops) // 2 for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()) // 2


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name or type(model).__name__, m) for name, m in model.named_modules() if not any(True for _ in m.children())]


def memory_traffic(model: nn.Module, input_shape: Shape, device: str = "cpu", dtype: torch.dtype = torch.float32,
                   detail: bool = False) -> int | pd.DataFrame:
    """Bytes read and written by one forward pass, summed over leaf-module calls.

    Per call: input tensors + output tensors + the module's own parameters and buffers, each
    ``numel * element_size`` (module docstring). ``detail=True`` returns one row per call
    (``module, type, input_bytes, output_bytes, param_bytes, total_bytes``).
    """
    records: list[dict[str, Any]] = []
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
            records.append({
                "module": name, "type": type(module).__name__,
                "input_bytes": _tensor_bytes(inputs), "output_bytes": _tensor_bytes(output),
                "param_bytes": _tensor_bytes(own),
            })
        return hook

    def attach(net: nn.Module) -> None:
        for name, module in _leaf_modules(net):
            handles.append(module.register_forward_hook(make_hook(name)))

    if device == "meta":
        try:
            meta = copy.deepcopy(model).to("meta")
            attach(meta)
            _run_meta(meta, input_shape, dtype)
        except (NotImplementedError, RuntimeError):
            records.clear()
            device = "cpu"
        finally:
            for h in handles:
                h.remove()
            handles.clear()
    if device != "meta":
        attach(model)
        try:
            _forward_once(model, input_shape, device, dtype)
        finally:
            for h in handles:
                h.remove()
    table = pd.DataFrame(records, columns=["module", "type", "input_bytes", "output_bytes", "param_bytes"])
    table["total_bytes"] = table.input_bytes + table.output_bytes + table.param_bytes
    return table if detail else int(table.total_bytes.sum())


def _run_meta(meta_model: nn.Module, input_shape: Shape, dtype: torch.dtype) -> None:
    meta_model.eval()
    with torch.no_grad():
        meta_model(torch.zeros(_check_shape(input_shape), dtype=dtype, device="meta"))


def peak_memory(model: nn.Module, input_shape: Shape, device: str = "cpu", dtype: torch.dtype = torch.float32) -> int:
    """Peak bytes of one inference forward.

    CUDA: ``torch.cuda.max_memory_allocated`` (weights, input, activations, workspace), measured.
    CPU: the estimate ``parameters + buffers + input + Σ leaf-module outputs`` (module docstring).
    """
    dev = select_device(device)
    shape = _check_shape(input_shape)
    if dev.type == "cuda":
        model.to(dev).eval()
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        x = torch.zeros(shape, dtype=dtype, device=dev)
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev))
    table = memory_traffic(model, shape, device="cpu", dtype=dtype, detail=True)
    weights = _tensor_bytes(list(model.parameters()) + list(model.buffers()))
    inputs = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    return int(weights + inputs + table.output_bytes.sum())


def _shape_for(input_shape: Shape | Mapping[str, Shape], name: str) -> tuple[int, ...]:
    if isinstance(input_shape, Mapping):
        if name not in input_shape:
            raise KeyError(f"no input shape for model {name!r}; given for {sorted(input_shape)}")
        return _check_shape(input_shape[name])
    return _check_shape(input_shape)


def benchmark(
    models: Mapping[str, nn.Module],
    input_shape: Shape | Mapping[str, Shape],
    device: str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    interleaved: bool = True,
    dtype: torch.dtype = torch.float32,
) -> pd.DataFrame:
    """Latency and throughput of ``model(x)`` for several models, measured side by side.

    ``input_shape`` is one ``(N, C, H, W)`` for all models or a dict per model name. Each model
    runs ``warmup`` untimed calls, then ``repeats`` timed calls; with ``interleaved=True`` the
    timed calls go round-robin over the models (the first model rotating each repeat), so slow
    drifts of the machine (other jobs, clock changes) hit all models alike. Calls run under
    ``torch.inference_mode`` in eval mode, with ``torch.cuda.synchronize`` before and after
    each call on GPU. Models are moved to ``device`` and left there in eval mode restored.

    Returns one row per model: ``model, device, batch, median_ms, q1_ms, q3_ms, iqr_ms,
    min_ms, throughput`` (images/s = batch / median), ``repeats``, ``interleaved``.
    """
    if not models:
        raise ValueError("benchmark: no models given")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"benchmark: need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    dev = select_device(device)
    names = list(models)
    inputs = {n: torch.rand(_shape_for(input_shape, n), generator=torch.Generator().manual_seed(0)).to(dev, dtype)
              for n in names}
    modes = {n: models[n].training for n in names}
    for n in names:
        models[n].to(dev).eval()
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {n: [] for n in names}

    def timed(name: str) -> float:
        sync()
        t0 = time.perf_counter()
        models[name](inputs[name])
        sync()
        return time.perf_counter() - t0

    try:
        with torch.inference_mode():
            for n in names:
                for _ in range(warmup):
                    timed(n)
            if interleaved:
                for r in range(repeats):
                    for k in range(len(names)):
                        n = names[(r + k) % len(names)]
                        times[n].append(timed(n))
            else:
                for n in names:
                    times[n] = [timed(n) for _ in range(repeats)]
    finally:
        for n in names:
            models[n].train(modes[n])
    rows = []
    for n in names:
        ms = np.asarray(times[n]) * 1e3
        q1, med, q3 = np.percentile(ms, [25, 50, 75])
        batch = inputs[n].shape[0]
        rows.append({
            "model": n, "device": device_name(dev), "batch": batch, "median_ms": float(med), "q1_ms": float(q1),
            "q3_ms": float(q3), "iqr_ms": float(q3 - q1), "min_ms": float(ms.min()),
            "throughput": batch / (float(med) / 1e3), "repeats": repeats, "interleaved": interleaved,
        })
    return pd.DataFrame(rows)


def summary(models: Mapping[str, nn.Module], input_shape: Shape | Mapping[str, Shape], device: str = "meta") -> pd.DataFrame:
    """Parameters, MACs and memory traffic per model (one row each, index = model name).

    Columns: ``params``, ``macs``, ``memory_traffic`` (bytes) and the readable ``params_M``,
    ``GMACs``, ``traffic_MB`` (10^6, 10^9, 10^6). ``device="meta"`` (default) counts on
    weightless copies, so big models and inputs cost no compute.
    """
    rows = []
    for name, model in models.items():
        shape = _shape_for(input_shape, name)
        params = count_params(model)
        macs = count_macs(model, shape, device=device)
        traffic = memory_traffic(model, shape, device=device)
        rows.append({"model": name, "input_shape": "x".join(map(str, shape)), "params": params, "macs": macs,
                     "memory_traffic": traffic, "params_M": params / 1e6, "GMACs": macs / 1e9,
                     "traffic_MB": traffic / 1e6})
    return pd.DataFrame(rows).set_index("model")


__all__ = ["count_params", "count_macs", "memory_traffic", "peak_memory", "benchmark", "summary"]


TRAIN_VARIANTS = ("default", "channels_last", "bfloat16", "compile")


def _stand_in_loss(outputs: Any) -> torch.Tensor:
    """Mean square of every floating output: the forward + backward cost of training without a
    method's targets (its own loss adds element-wise work only)."""
    leaves = [t for t in tree_leaves(outputs) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return sum(t.float().pow(2).mean() for t in leaves)


def train_speed(model_fn: Callable[[], nn.Module], input_shape: Shape, *, steps: int = 20, warmup: int = 3,
                repeats: int = 3, variants: Sequence[str] = TRAIN_VARIANTS, device: str = "cpu",
                seed: int = 0) -> pd.DataFrame:
    """Measured optimiser steps per second of training ``model_fn()`` on random inputs of
    ``input_shape`` (N, C, H, W), one row per variant:

    - ``default``: the model as built, NCHW tensors;
    - ``channels_last``: the model's weights in ``torch.channels_last`` memory format, inputs NCHW
      as the data loaders give them (what :attr:`cellnb.methods.base.Method.memory_format` does);
    - ``bfloat16``: the model as ``model_fn`` builds it (a method's declared memory format), its
      forward pass under bfloat16 autocast (what ``Method.train_precision = "bfloat16"`` does); NaN
      with a note where the device has no native bfloat16 (:func:`cellnb.utils.native_bfloat16`);
    - ``compile``: ``torch.compile(model)`` (inductor); its first steps (compilation) are timed
      apart as ``warmup_s``.

    Each step is Adam on :func:`_stand_in_loss` of the outputs (forward + backward + update).
    ``warmup`` steps are not timed; then ``repeats`` blocks of ``steps`` steps, variants interleaved
    block by block, and the median block gives ``steps_per_s``. A variant that fails (e.g. no C++
    compiler for inductor) gets NaN and the error in ``note``.
    """
    shape = _check_shape(input_shape)
    dev = select_device(device)
    unknown = set(variants) - set(TRAIN_VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {list(TRAIN_VARIANTS)}")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g).to(dev)
    state: dict[str, dict[str, Any]] = {}
    for v in variants:
        note = bfloat16_note(dev) if v == "bfloat16" else ""
        if note:  # not measured here: no model to build
            state[v] = {"blocks": [], "note": note, "warmup_s": float("nan")}
            continue
        torch.manual_seed(seed)
        model = model_fn().to(dev).train()
        if v == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        elif v == "default":
            model = model.to(memory_format=torch.contiguous_format)
        net = torch.compile(model) if v == "compile" else model
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        state[v] = {"net": net, "x": x, "opt": opt, "blocks": [], "note": "", "warmup_s": float("nan"),
                    "precision": "bfloat16" if v == "bfloat16" else "float32"}

    def step(s: Mapping[str, Any]) -> None:
        s["opt"].zero_grad(set_to_none=True)
        with autocast(s["precision"], dev):
            out = s["net"](s["x"])
        _stand_in_loss(out).backward()
        s["opt"].step()

    for v, s in state.items():
        if s["note"]:
            continue
        t0 = time.perf_counter()
        try:
            for _ in range(max(int(warmup), 1)):
                step(s)
        except Exception as error:  # noqa: BLE001 - a variant this machine cannot run is reported
            s["note"] = f"{type(error).__name__}: {error}"[:200]
        s["warmup_s"] = time.perf_counter() - t0
    for _ in range(max(int(repeats), 1)):
        for v, s in state.items():
            if s["note"]:
                continue
            t0 = time.perf_counter()
            for _ in range(int(steps)):
                step(s)
            s["blocks"].append(int(steps) / (time.perf_counter() - t0))
    rows = []
    base = float(np.median(state["default"]["blocks"])) if "default" in state and state["default"]["blocks"] else float("nan")
    for v, s in state.items():
        rate = float(np.median(s["blocks"])) if s["blocks"] else float("nan")
        rows.append({"variant": v, "steps_per_s": rate, "speedup": rate / base if base == base else float("nan"),
                     "warmup_s": s["warmup_s"], "repeats": len(s["blocks"]), "note": s["note"]})
    return pd.DataFrame(rows)
