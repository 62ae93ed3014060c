"""Training loops: :func:`fit` for supervised multi-task models, :func:`fit_gan` for GANs.

Both return the history as a :class:`pandas.DataFrame` (one row per epoch) and record why they
stopped in ``history.attrs["stop_reason"]`` (``"completed"``, ``"early_stopping"``,
``"time_budget"``); ``history.attrs["best_epoch"]`` is set when early stopping is used.

Conventions
-----------
- A batch is a ``dict[str, Tensor]``; ``batch["image"]`` is the model input and every other
  tensor is moved to the device as a target. Non-tensor entries (e.g. lists of points) pass
  through untouched.
- ``loss_fn(outputs, batch) -> (total, parts)``: ``total`` a scalar tensor, ``parts`` a
  ``dict[str, float]`` (tensors are accepted and converted) logged per epoch.
- Seeding is the caller's job (:func:`cellnb.utils.seed_everything`). On CPU, two calls with the
  same seed, the same model initialisation and a DataLoader with a seeded ``generator`` give
  identical histories (except the ``seconds`` column).
- Mixed precision (``torch.autocast`` float16 + ``GradScaler``) runs on CUDA only; on CPU
  ``amp`` is ignored, and :func:`fit`'s ``precision="bfloat16"`` runs bfloat16 autocast where the
  CPU computes it natively (:func:`cellnb.utils.training_precision`).
- Progress: with ``progress=True`` one summary line per epoch goes to stdout; when stderr is
  a terminal and ``CELLNB_PROGRESS`` is not ``"0"`` a tqdm bar with the live loss also runs
  during each epoch (cleared at its end). Headless runs (papermill, CI) get the lines only;
  ``progress=False`` prints nothing.
- Checkpoints (``checkpoint_path``) hold model, optimizer, scheduler, scaler, epoch, history,
  early-stopping state and RNG states (python, numpy, torch, CUDA, the DataLoader's generator)
  and are written atomically after every epoch; ``resume=True`` continues from one, so an
  interrupted run resumed equals an uninterrupted one on CPU.
- Several processes (``torchrun --nproc_per_node N``, or several nodes through Slurm): when
  ``torch.distributed`` is initialised, or torchrun's environment says so (then it is initialised
  here: NCCL on CUDA, gloo otherwise, ``$CELLNB_DDP_BACKEND`` to choose), the model is wrapped in
  ``DistributedDataParallel`` (each process on ``cuda:$LOCAL_RANK``), the training loader is
  rebuilt with a ``DistributedSampler`` (shuffled when it was, reseeded every epoch) and the
  validation loader split without padding; the logged losses and validation metrics are averaged
  over all processes (weighted by samples), so every rank returns the same history; only rank 0
  prints and writes checkpoints; BatchNorm statistics re-estimated at the end are averaged over
  ranks. The caller's code does not change. ``history.attrs["world_size"]`` records the count.
"""

from __future__ import annotations

import copy
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cellnb.utils import select_device

LossFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], tuple[torch.Tensor, Mapping[str, Any]]]
PROGRESS_ENV = "CELLNB_PROGRESS"


# --------------------------------------------------------------------------- small helpers
def _progress_mode(progress: bool) -> str:
    """``"bar"``, ``"lines"`` or ``"off"``."""
    if not progress:
        return "off"
    if os.environ.get(PROGRESS_ENV, "1") == "0" or not sys.stderr.isatty():
        return "lines"
    return "bar"


def _epoch_bar(mode: str, loader, epoch: int, epochs: int):
    """The tqdm bar of one epoch when ``mode == "bar"``, else None."""
    if mode != "bar":
        return None
    from tqdm.auto import tqdm

    return tqdm(total=len(loader) if hasattr(loader, "__len__") else None,
                desc=f"epoch {epoch}/{epochs}", leave=False, file=sys.stderr)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    if not isinstance(batch, Mapping):
        raise TypeError(f"batches must be dicts with an 'image' key, got {type(batch).__name__}")
    if "image" not in batch:
        raise KeyError(f"batch has no 'image' key; keys: {sorted(batch)}")
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _batch_size(batch: Mapping[str, Any]) -> int:
    return int(batch["image"].shape[0])


def _as_float_parts(parts: Mapping[str, Any] | None) -> dict[str, float]:
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in (parts or {}).items()}


def _check_finite(total: torch.Tensor, parts: Mapping[str, float], epoch: int, step: int, what: str = "loss") -> None:
    if not torch.isfinite(total.detach()).all():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items()) or "none"
        raise FloatingPointError(
            f"non-finite {what} {float(total.detach()):.4g} at epoch {epoch}, step {step}; loss parts: {shown}"
        )


def _make_optimizer(optimizer: Any, params: Iterable[nn.Parameter], lr: float, betas, weight_decay: float, momentum: float):
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(params)
    name = str(optimizer).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; choose from ['adam', 'adamw', 'sgd', 'rmsprop'] or pass one")


PER_STEP_SCHEDULERS = ("onecycle",)


def _make_scheduler(scheduler: Any, optimizer, epochs: int, steps_per_epoch: int = 1, lr: float = 1e-3):
    """None, ``"cosine"`` (CosineAnnealingLR over ``epochs``), ``"plateau"`` (ReduceLROnPlateau on
    the validation loss, else the training loss), ``"onecycle"`` (OneCycleLR to ``lr`` over
    ``epochs * steps_per_epoch`` optimiser steps, stepped after every batch; Smith & Topin 2019), or
    ``callable(optimizer) -> scheduler`` (stepped once per epoch)."""
    if scheduler is None:
        return None
    if isinstance(scheduler, str):
        if scheduler == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=lr, total_steps=max(epochs * steps_per_epoch, 1), pct_start=0.15)
        if scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
        if scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=2, factor=0.5)
        raise ValueError(f"unknown scheduler {scheduler!r}; choose 'onecycle', 'cosine', 'plateau' or pass callable(optimizer)")
    if callable(scheduler):
        return scheduler(optimizer)
    raise TypeError(f"scheduler must be None, a name or callable(optimizer), got {type(scheduler).__name__}")


def _loader_generators(loader) -> list[torch.Generator]:
    """The torch generators that decide a DataLoader's shuffling and worker seeds."""
    gens = []
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                  getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        gen = getattr(owner, "generator", None) if owner is not None else None
        if isinstance(gen, torch.Generator) and all(gen is not g for g in gens):
            gens.append(gen)
    return gens


def rng_state(loader=None) -> dict[str, Any]:
    """Python, numpy, torch (CPU and CUDA) and DataLoader generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "loader": [g.get_state() for g in _loader_generators(loader)] if loader is not None else [],
    }
    return state


def set_rng_state(state: Mapping[str, Any], loader=None) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader is not None:
        for gen, saved in zip(_loader_generators(loader), state.get("loader", [])):
            gen.set_state(saved)


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r} to resume from")
    return torch.load(path, map_location=map_location, weights_only=False)


class _EarlyStopping:
    """Track the best value of ``monitor``; ``step`` returns True when patience has run out.

    ``best_epoch`` is the ``index`` column (``"epoch"``; :func:`cellnb.methods.training.fit_samples`
    logs ``"step"``) of the best row; with ``restore_best`` the weights of that row are kept and
    :meth:`restore` puts them back."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, mode: str = "min",
                 min_delta: float = 0.0, restore_best: bool = True, index: str = "epoch") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"early_stopping mode must be 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"early_stopping patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.mode = monitor, int(patience), mode
        self.min_delta, self.restore_best, self.index = float(min_delta), bool(restore_best), index
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def step(self, row: Mapping[str, Any], model: nn.Module) -> bool:
        if self.monitor not in row:
            raise KeyError(f"early_stopping monitors {self.monitor!r}, but the epoch logged only {sorted(row)}")
        value = float(row[self.monitor])
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, int(row[self.index]), 0
            if self.restore_best:
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs > self.patience

    def restore(self, model: nn.Module) -> bool:
        """Load the kept best weights into ``model``; False when there are none."""
        if not (self.restore_best and self.best_state is not None):
            return False
        model.load_state_dict(self.best_state)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("best", "best_epoch", "bad_epochs", "best_state")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def _epoch_line(row: Mapping[str, Any]) -> str:
    shown = []
    for key, value in row.items():
        if key == "epoch":
            continue
        shown.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return f"epoch {row['epoch']}: " + " ".join(shown)


def _weighted_mean(sums: Mapping[str, float], n: int) -> dict[str, float]:
    return {k: v / max(n, 1) for k, v in sums.items()}


# --------------------------------------------------------------------------- distributed
def _distributed_world() -> int:
    """Initialise torch.distributed from torchrun's environment if needed; the world size (1: none)."""
    from cellnb.utils import distributed_info, init_distributed

    init_distributed()
    return distributed_info()[1]


class _ShardSampler(torch.utils.data.Sampler):
    """Every ``world``-th index from ``rank``, without padding (evaluation: each sample counted once)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _rebuild_loader(loader, sampler):
    from torch.utils.data import DataLoader

    if not isinstance(loader, DataLoader):
        raise TypeError(f"distributed training needs torch DataLoaders, got {type(loader).__name__}")
    if loader.batch_size is None:
        raise ValueError("distributed training: the DataLoader must use batch_size (a custom batch_sampler "
                         "cannot be split across processes); pass a DataLoader with a DistributedSampler")
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
                      persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False)


def _distributed_train_loader(loader):
    """The training loader with a DistributedSampler (kept if it has one); returns (loader, sampler)."""
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler, RandomSampler

    if isinstance(getattr(loader, "sampler", None), DistributedSampler):
        return loader, loader.sampler
    shuffle = isinstance(loader.sampler, RandomSampler)
    gen = getattr(loader, "generator", None) or getattr(loader.sampler, "generator", None)
    seed = int(gen.initial_seed()) % 2**31 if isinstance(gen, torch.Generator) else 0
    sampler = DistributedSampler(loader.dataset, num_replicas=dist.get_world_size(), rank=dist.get_rank(),
                                 shuffle=shuffle, seed=seed, drop_last=loader.drop_last)
    return _rebuild_loader(loader, sampler), sampler


def _distributed_eval_loader(loader):
    import torch.distributed as dist

    if loader is None:
        return None
    return _rebuild_loader(loader, _ShardSampler(len(loader.dataset), dist.get_rank(), dist.get_world_size()))


def _gather_sums(sums: Mapping[str, float], seen: int) -> tuple[dict[str, float], int]:
    """Sum per-rank ``(sums, seen)`` over every process."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (dict(sums), int(seen)))
    total: dict[str, float] = {}
    for part, _ in gathered:
        for k, v in part.items():
            total[k] = total.get(k, 0.0) + v
    return total, sum(n for _, n in gathered)


def _rank0_decides(flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every rank (wall-clock budgets differ between processes)."""
    import torch.distributed as dist

    box = [bool(flag)]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _average_batchnorm(model: nn.Module) -> None:
    """Average BatchNorm running statistics over ranks (each re-estimated them on its own shard)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            for buf in (m.running_mean, m.running_var):
                dist.all_reduce(buf)
                buf.div_(world)


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # find_unused_parameters: multi-head models whose loss skips a head still train
    return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None,
                                   find_unused_parameters=True)


def _is_rank0() -> bool:
    from cellnb.utils import distributed_info

    return distributed_info()[0] == 0


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


# --------------------------------------------------------------------------- fit
def evaluate_loss(model: nn.Module, loader, loss_fn: LossFn, device: torch.device, amp: bool = False) -> dict[str, float]:
    """Mean loss and loss parts over ``loader`` (weighted by batch size), model in eval mode."""
    sums, seen = _evaluate_sums(model, loader, loss_fn, device, amp)
    return _weighted_mean(sums, seen)


def _evaluate_sums(model: nn.Module, loader, loss_fn: LossFn, device: torch.device, amp: bool = False):
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    seen = 0
    use_amp = amp and device.type == "cuda"
    with torch.no_grad():
        for batch in loader:
            batch = _to_device(batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                outputs = model(batch["image"])
                total, parts = loss_fn(outputs, batch)
            n = _batch_size(batch)
            seen += n
            sums["loss"] = sums.get("loss", 0.0) + float(total) * n
            for k, v in _as_float_parts(parts).items():
                sums[k] = sums.get(k, 0.0) + v * n
    model.train(was_training)
    return sums, seen


def recalibrate_batchnorm(model: nn.Module, inputs: Iterable[torch.Tensor], device: torch.device | None = None) -> bool:
    """Re-estimate BatchNorm running statistics with the final weights (``torch.optim.swa_utils.update_bn``).

    After a short training run (the CPU profiles train for tens to hundreds of steps) the running
    averages still mix in early-training weights, so eval-mode outputs can be far off or collapse
    (the comparison chapter measured TinyU-Net at Dice 0 on nuclei without this, 0.82 with it). One
    pass over ``inputs`` (model inputs, e.g. the training images) in train mode, without gradients,
    with a cumulative average. Returns False, doing nothing, for a model without BatchNorm.
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return False
    batches = list(inputs)
    # a lone single-image batch (the remainder of an odd split) cannot be normalised in train mode
    # where a feature map shrinks to 1x1; its statistics are covered by the other batches
    if len(batches) > 1:
        batches = [b for b in batches if b.shape[0] > 1] or batches
    torch.optim.swa_utils.update_bn(batches, model, device=device)
    return True


def _cycle(loader):
    """The batches of ``loader``, pass after pass (for the half-budget branch)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("train_loader yielded no batches")


def _loop_half_budget(plan: tuple[int, int], step: Callable[[Mapping[str, Any]], Any], validate: Callable[[], float], *,
                      loader, device: torch.device, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer],
                      rngs: Sequence[np.random.Generator], scalers: Sequence[torch.amp.GradScaler]) -> dict[str, Any]:
    """:func:`cellnb.methods.training.half_budget_record` for a loader-driven loop (:func:`fit`,
    :func:`fit_gan`): ``step(batch)`` runs on fresh passes over ``loader``; besides what the branch
    puts back itself, the python and numpy global generators, the loader's generators
    (:func:`rng_state`) and the enabled ``GradScaler`` states are put back, so that the main run
    continues as if the branch had not happened."""
    from cellnb.methods.training import half_budget_record

    saved = rng_state(loader)
    enabled = [s for s in scalers if s.is_enabled()]
    saved_scalers = [copy.deepcopy(s.state_dict()) for s in enabled]
    batches = _cycle(loader)
    try:
        return half_budget_record(plan, lambda: step(_to_device(next(batches), device)), validate,
                                  modules=modules, optimizers=optimizers, rngs=rngs)
    finally:
        batches.close()
        set_rng_state(saved, loader)
        for scaler, state in zip(enabled, saved_scalers):
            scaler.load_state_dict(state)


def _half_budget_validate(half_budget: Any, model: nn.Module, val_loader, loss_fn, device: torch.device,
                          what: str, amp: bool = False) -> Callable[[], float]:
    """The branch's validation: ``half_budget(model)`` when it is callable, else the mean loss over
    ``val_loader``."""
    if callable(half_budget):
        return lambda: float(half_budget(model))
    if val_loader is None or loss_fn is None:
        raise ValueError(f"{what}: half_budget=True measures the validation loss and needs val_loader; "
                         "or pass half_budget=callable(model) -> float")
    return lambda: float(evaluate_loss(model, val_loader, loss_fn, device, amp=amp)["loss"])


def fit(
    model: nn.Module,
    train_loader,
    loss_fn: LossFn,
    *,
    epochs: int,
    lr: float = 1e-3,
    val_loader=None,
    val_fn: Callable[[nn.Module, Any, torch.device], Mapping[str, float]] | None = None,
    device: str | torch.device = "auto",
    optimizer: Any = "adam",
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    scheduler: Any = None,
    amp: bool = True,
    precision: str = "float32",
    grad_clip: float | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    early_stopping: Mapping[str, Any] | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
    epoch_callback: Callable[[int, nn.Module], None] | None = None,
    update_bn: bool = True,
    half_budget: bool | Callable[[nn.Module], float] | None = False,
    half_budget_rngs: Sequence[np.random.Generator] = (),
) -> pd.DataFrame:
    """Train ``model`` for ``epochs`` epochs and return the history (one row per epoch).

    Columns: ``epoch`` (1-based), ``train_loss``, one column per loss part (its name as
    returned by ``loss_fn``), ``val_loss`` and ``val_<part>`` when ``val_loader`` is given,
    the metrics of ``val_fn(model, val_loader, device) -> dict`` (keys get a ``val_`` prefix
    unless they have one), ``lr`` (of the first parameter group, during the epoch) and
    ``seconds`` (wall time of the epoch, validation included).

    ``optimizer`` is ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"``, an optimizer or
    ``callable(params)``; ``scheduler`` is None, ``"onecycle"`` (stepped per batch), ``"cosine"``,
    ``"plateau"`` or ``callable(optimizer)``, stepped once per epoch. ``early_stopping =
    dict(monitor="val_loss", patience=3, mode="min", min_delta=0.0, restore_best=True)`` stops
    after ``patience`` epochs without improvement and loads the best weights back.
    ``time_budget_s`` stops after the epoch during which the wall-clock budget ran out.
    ``epoch_callback(epoch, model)`` is called after each epoch (e.g. for epoch-dependent
    loss weights). A NaN or infinite loss raises ``FloatingPointError`` naming the epoch,
    step and loss parts. With ``update_bn`` (default) BatchNorm statistics are re-estimated over
    the training images once training ends (:func:`recalibrate_batchnorm`); the history's
    ``attrs["bn_recalibrated"]`` says whether that happened.

    ``half_budget``: also measure the validation loss that half the budget (``epochs × batches``
    optimiser steps), annealed, reaches: :func:`cellnb.methods.training.half_budget_branch` from
    step ``half_budget_plan(steps)[0]``, on fresh passes over ``train_loader``; ``True`` validates
    with the loss over ``val_loader``, a callable ``half_budget(model) -> float`` is the validation
    the loop reports as ``val_loss`` (e.g. one made in ``epoch_callback``). It is recorded as
    ``attrs["half_budget"]`` (``{"steps", "branch_from", "val_loss", "seconds"}``), its time is left
    out of the epoch's ``seconds``, and the main run is unchanged (all generators are put back, and
    ``half_budget_rngs``, numpy generators the dataset draws from, too). Not under torch.distributed.

    Precision of the training forward pass: with ``amp`` on CUDA, float16 autocast and a
    ``GradScaler``; otherwise ``precision`` (a method's
    :attr:`~cellnb.methods.base.Method.train_precision`), resolved by
    :func:`cellnb.utils.training_precision`: bfloat16 autocast only where the device computes it
    natively, the loss then on float32 outputs (:func:`cellnb.utils.float32_outputs`). Validation
    runs in float32. ``attrs["precision"]`` records what ran (``"float16"``, ``"bfloat16"`` or
    ``"float32"``).
    """
    from cellnb.utils import autocast, float32_outputs, training_precision

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    device = select_device(device) if not isinstance(device, torch.device) else device
    world = _distributed_world()
    distributed = world > 1
    if distributed:
        from cellnb.utils import distributed_device

        device = distributed_device(device)
        train_loader, train_sampler = _distributed_train_loader(train_loader)
        val_loader = _distributed_eval_loader(val_loader)
    model.to(device)
    net = _wrap_ddp(model, device) if distributed else model  # trains; ``model`` evaluates (no collectives)
    rank0 = not distributed or _is_rank0()
    opt = _make_optimizer(optimizer, model.parameters(), lr, betas, weight_decay, momentum)
    per_step = isinstance(scheduler, str) and scheduler in PER_STEP_SCHEDULERS
    sched = _make_scheduler(scheduler, opt, epochs, len(train_loader) if per_step else 1, lr)
    use_amp = bool(amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    # without CUDA float16 amp: the requested precision where the device has it natively
    bf16_precision = "float32" if use_amp else training_precision(precision, device)
    stopper = _EarlyStopping(**early_stopping) if early_stopping else None
    mode = _progress_mode(progress) if rank0 else "off"
    rows: list[dict[str, Any]] = []
    start_epoch = 1
    elapsed_before = 0.0
    half: dict[str, Any] | None = None  # the half-budget record (a resumed run's from its checkpoint)

    if resume:
        if checkpoint_path is None:
            raise ValueError("resume=True needs checkpoint_path")
        if Path(checkpoint_path).is_file():
            ckpt = load_checkpoint(checkpoint_path)  # CPU: RNG states must stay CPU tensors
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            if sched is not None and ckpt.get("scheduler") is not None:
                sched.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler") is not None:
                scaler.load_state_dict(ckpt["scaler"])
            if stopper is not None and ckpt.get("early_stopping") is not None:
                stopper.load_state_dict(ckpt["early_stopping"])
            rows = list(ckpt["history"])
            start_epoch = int(ckpt["epoch"]) + 1
            elapsed_before = float(ckpt.get("elapsed_s", 0.0))
            set_rng_state(ckpt["rng"], train_loader)
            half = ckpt.get("half_budget")
            if ckpt.get("stop_reason") in ("early_stopping", "time_budget"):
                start_epoch = epochs + 1  # that run had finished; do not train past its stop
        # no checkpoint yet: start from scratch (first run of a resumable job)

    def train_step(batch: Mapping[str, Any], epoch: int, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        opt.zero_grad(set_to_none=True)
        if use_amp:
            with torch.autocast(device_type=device.type, dtype=torch.float16):
                outputs = net(batch["image"])
                total, parts = loss_fn(outputs, batch)
        else:
            with autocast(bf16_precision, device):
                outputs = net(batch["image"])
            total, parts = loss_fn(float32_outputs(outputs), batch)
        parts = _as_float_parts(parts)
        _check_finite(total, parts, epoch, step)
        scaler.scale(total).backward()
        if grad_clip is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(opt)
        scaler.update()
        return total, parts

    plan = None
    if half_budget:
        from cellnb.methods.training import half_budget_plan

        if distributed:
            raise ValueError("fit: half_budget is not supported under torch.distributed")
        validate_half = _half_budget_validate(half_budget, model, val_loader, loss_fn, device, "fit", amp=use_amp)
        plan = half_budget_plan(epochs * len(train_loader))
    stop_reason = "completed"
    t_start = time.perf_counter() - elapsed_before
    for epoch in range(start_epoch, epochs + 1):
        t_epoch = time.perf_counter()
        branch_s = 0.0
        model.train()
        if distributed:
            train_sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        seen = 0
        current_lr = float(opt.param_groups[0]["lr"])
        bar = _epoch_bar(mode, train_loader, epoch, epochs)
        for step, batch in enumerate(train_loader, start=1):
            batch = _to_device(batch, device)
            total, parts = train_step(batch, epoch, step)
            if per_step:
                sched.step()
            if plan is not None and (epoch - 1) * len(train_loader) + step == plan[0]:
                half = _loop_half_budget(plan, lambda b: train_step(b, epoch, step), validate_half, loader=train_loader,
                                         device=device, modules=[model, *([loss_fn] if isinstance(loss_fn, nn.Module) else [])],
                                         optimizers=[opt], rngs=half_budget_rngs, scalers=[scaler])
                branch_s = half["seconds"]
            n = _batch_size(batch)
            seen += n
            sums["train_loss"] = sums.get("train_loss", 0.0) + float(total.detach()) * n
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums['train_loss'] / seen:.4g}")
        if bar is not None:
            bar.close()
        if distributed:
            sums, seen = _gather_sums(sums, seen)
        if seen == 0:
            raise ValueError("train_loader yielded no batches")
        row: dict[str, Any] = {"epoch": epoch, **_weighted_mean(sums, seen)}
        if val_loader is not None:
            val_sums, val_seen = _evaluate_sums(model, val_loader, loss_fn, device, amp=use_amp)
            if distributed:
                val_sums, val_seen = _gather_sums(val_sums, val_seen)
            val = _weighted_mean(val_sums, val_seen)
            row["val_loss"] = val.pop("loss")
            row.update({f"val_{k}": v for k, v in val.items()})
            if val_fn is not None:
                was_training = model.training
                model.eval()
                n_local = len(val_loader.sampler) if distributed else 1
                with torch.no_grad():
                    metrics = val_fn(model, val_loader, device) if n_local else {}
                model.train(was_training)
                metrics = {(k if k.startswith("val_") else f"val_{k}"): float(v) for k, v in metrics.items()}
                if distributed:  # mean over ranks, weighted by each rank's validation samples
                    totals, n_all = _gather_sums({k: v * n_local for k, v in metrics.items()}, n_local)
                    metrics = _weighted_mean(totals, n_all)
                row.update(metrics)
        row["lr"] = current_lr
        if sched is not None and not per_step:
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(row.get("val_loss", row["train_loss"]))
            else:
                sched.step()
        if epoch_callback is not None:
            epoch_callback(epoch, model)
        row["seconds"] = time.perf_counter() - t_epoch - branch_s
        rows.append(row)
        if mode != "off":
            print(_epoch_line(row), flush=True)
        if stopper is not None and stopper.step(row, model):
            stop_reason = "early_stopping"
        elif time_budget_s is not None and (_rank0_decides(time.perf_counter() - t_start > time_budget_s)
                                            if distributed else time.perf_counter() - t_start > time_budget_s):
            stop_reason = "time_budget"
        if checkpoint_path is not None and rank0:
            save_checkpoint(checkpoint_path, {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "scaler": scaler.state_dict() if use_amp else None,
                "early_stopping": stopper.state_dict() if stopper is not None else None,
                "epoch": epoch,
                "history": rows,
                "elapsed_s": time.perf_counter() - t_start,
                "stop_reason": stop_reason if stop_reason != "completed" else None,
                "rng": rng_state(train_loader),
                "half_budget": half,
            })
        if checkpoint_path is not None and distributed:
            _barrier()  # the checkpoint is complete before any rank goes on (or resumes from it)
        if stop_reason != "completed":
            if mode != "off":
                print(f"stopped after epoch {epoch}: {stop_reason}", flush=True)
            break

    if stopper is not None:
        stopper.restore(model)
    history = pd.DataFrame(rows)
    history.attrs["stop_reason"] = stop_reason
    history.attrs["world_size"] = world
    history.attrs["precision"] = "float16" if use_amp else bf16_precision
    if half is not None:
        history.attrs["half_budget"] = half
    history.attrs["bn_recalibrated"] = bool(update_bn) and recalibrate_batchnorm(
        model, (batch["image"] for batch in train_loader), device)
    if distributed and history.attrs["bn_recalibrated"]:
        _average_batchnorm(model)
    if stopper is not None:
        history.attrs["best_epoch"] = stopper.best_epoch
        history.attrs["best_value"] = stopper.best
    return history


# --------------------------------------------------------------------------- predict
def predict(model: nn.Module, loader_or_tensor, device: str | torch.device = "auto", batch_size: int = 8):
    """Run ``model`` in eval/inference mode and return its outputs concatenated on the CPU.

    ``loader_or_tensor`` is an ``(N, C, H, W)`` tensor (split into ``batch_size`` chunks) or an
    iterable of batches (dicts with ``"image"``, tensors, or tuples whose first item is the
    input). Returns a dict of tensors for dict-returning models, else one tensor. The model's
    train/eval mode is restored afterwards.
    """
    device = select_device(device) if not isinstance(device, torch.device) else device
    if isinstance(loader_or_tensor, torch.Tensor):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batches: Iterable = loader_or_tensor.split(batch_size)
    else:
        batches = loader_or_tensor
    was_training = model.training
    model.to(device).eval()
    collected: list[Any] = []
    with torch.inference_mode():
        for batch in batches:
            if isinstance(batch, Mapping):
                x = batch["image"]
            elif isinstance(batch, (tuple, list)):
                x = batch[0]
            else:
                x = batch
            out = model(x.to(device))
            if isinstance(out, Mapping):
                collected.append({k: v.detach().cpu() for k, v in out.items()})
            else:
                collected.append(out.detach().cpu())
    model.train(was_training)
    if not collected:
        raise ValueError("predict got no batches")
    if isinstance(collected[0], dict):
        return {k: torch.cat([c[k] for c in collected]) for k in collected[0]}
    return torch.cat(collected)


# --------------------------------------------------------------------------- fit_gan
def _default_real_inputs(batch: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    if "target" not in batch:
        raise KeyError(
            f"fit_gan: the default real_inputs uses batch['image'] and batch['target'], batch has {sorted(batch)}; "
            "pass real_inputs=callable(batch) -> tuple"
        )
    return batch["image"], batch["target"]


def _default_fake_inputs(batch: Mapping[str, Any], outputs: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(outputs, torch.Tensor):
        return batch["image"], outputs
    if isinstance(outputs, Mapping) and len(outputs) == 1:
        return batch["image"], next(iter(outputs.values()))
    raise ValueError(
        f"fit_gan: the generator returns {sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__}; "
        "pass fake_inputs=callable(batch, outputs) -> tuple to say what the discriminator sees"
    )


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _loss_and_parts(result: Any, default_name: str) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(result, tuple):
        total, parts = result
        return total, _as_float_parts(parts)
    return result, {}


def fit_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    train_loader,
    g_loss_fn: Callable[[Any, Mapping[str, Any], Any], tuple[torch.Tensor, Mapping[str, Any]]],
    d_loss_fn: Callable[[Any, Any], Any],
    *,
    epochs: int,
    lr_g: float,
    lr_d: float,
    betas: tuple[float, float] = (0.5, 0.999),
    d_steps: int = 1,
    real_inputs: Callable[[Mapping[str, Any]], Any] = _default_real_inputs,
    fake_inputs: Callable[[Mapping[str, Any], Any], Any] = _default_fake_inputs,
    device: str | torch.device = "auto",
    amp: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    time_budget_s: float | None = None,
    progress: bool = True,
    epoch_callback: Callable[[int, nn.Module, nn.Module], None] | None = None,
    update_bn: bool = True,
    scheduler: str | None = None,
    half_budget: Callable[[nn.Module], float] | None = None,
    half_budget_rngs: Sequence[np.random.Generator] = (),
) -> pd.DataFrame:
    """Adversarial training with Adam for both nets (pix2pix, Isola et al. 2017, §3.3: D then G
    on each batch, ``betas=(0.5, 0.999)``).

    Per batch:

    1. ``outputs = generator(batch["image"])`` (a tensor or a dict of model outputs).
    2. ``d_steps`` times: ``d_real = discriminator(*real_inputs(batch))``,
       ``d_fake = discriminator(*fake_inputs(batch, outputs_detached))``, and
       ``d_loss_fn(d_real, d_fake) -> total`` or ``(total, parts)`` updates D
       (same batch each time).
    3. ``d_fake_for_g = discriminator(*fake_inputs(batch, outputs))`` (gradients flow into G,
       D's weights are frozen) and ``g_loss_fn(outputs, batch, d_fake_for_g) -> (total, parts)``
       updates G (adversarial term + e.g. L1 / segmentation / count terms).

    ``real_inputs(batch)`` and ``fake_inputs(batch, outputs)`` return the tuple of tensors the
    discriminator is called with, so a conditional D fits: pix2pix uses the defaults
    ``(batch["image"], batch["target"])`` / ``(batch["image"], outputs)``; ELMGAN's D judging
    image + segmentation + count uses e.g. ``real_inputs = lambda b: (b["image"], onehot(b["mask"]), b["count"])``
    and ``fake_inputs = lambda b, o: (b["image"], o["mask_logits"].softmax(1), o["count"])``.

    ``scheduler``: None (constant learning rates) or ``"onecycle"``: a one-cycle schedule per
    network, to ``lr_g`` / ``lr_d`` over all its optimiser steps (G: ``epochs × batches``, D:
    ``d_steps`` times that), stepped after every step, as ``fit(..., scheduler="onecycle")``.

    History columns: ``epoch``, ``d_loss``, ``g_loss``, the parts of both losses (D parts
    prefixed ``d_``, G parts ``g_`` unless already prefixed), ``lr_g``, ``lr_d`` (at the end of the
    epoch), ``seconds``.
    A non-finite D or G loss raises ``FloatingPointError`` naming epoch, step and parts.

    ``half_budget(generator) -> float``: the validation the loop reports (e.g. made in
    ``epoch_callback``); with it, the half-budget branch of :func:`fit` (both networks' learning
    rates annealed, both put back afterwards, as ``half_budget_rngs``), recorded as
    ``attrs["half_budget"]`` and left out of the epoch's ``seconds``.
    """
    if d_steps < 1:
        raise ValueError(f"d_steps must be >= 1, got {d_steps}")
    device = select_device(device) if not isinstance(device, torch.device) else device
    world = _distributed_world()
    distributed = world > 1
    if distributed:
        from cellnb.utils import distributed_device

        device = distributed_device(device)
        train_loader, train_sampler = _distributed_train_loader(train_loader)
    generator.to(device)
    discriminator.to(device)
    # DDP modules train; the plain discriminator judges for the generator step (its weights are
    # frozen there, so DDP must not wait for its gradients)
    net_g = _wrap_ddp(generator, device) if distributed else generator
    net_d = _wrap_ddp(discriminator, device) if distributed else discriminator
    rank0 = not distributed or _is_rank0()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    if scheduler not in (None, "onecycle"):
        raise ValueError(f"fit_gan: unknown scheduler {scheduler!r}; choose None or 'onecycle'")
    n_batches = len(train_loader)
    sched_g = _make_scheduler(scheduler, opt_g, epochs, n_batches, lr_g)
    sched_d = _make_scheduler(scheduler, opt_d, epochs, n_batches * d_steps, lr_d)
    use_amp = bool(amp) and device.type == "cuda"
    scaler_g = torch.amp.GradScaler("cuda", enabled=use_amp)
    scaler_d = torch.amp.GradScaler("cuda", enabled=use_amp)
    mode = _progress_mode(progress) if rank0 else "off"
    rows: list[dict[str, Any]] = []
    start_epoch, elapsed_before = 1, 0.0
    half: dict[str, Any] | None = None  # the half-budget record (a resumed run's from its checkpoint)
    if resume:
        if checkpoint_path is None:
            raise ValueError("resume=True needs checkpoint_path")
        if Path(checkpoint_path).is_file():
            ckpt = load_checkpoint(checkpoint_path)  # CPU: RNG states must stay CPU tensors
            generator.load_state_dict(ckpt["generator"])
            discriminator.load_state_dict(ckpt["discriminator"])
            opt_g.load_state_dict(ckpt["opt_g"])
            opt_d.load_state_dict(ckpt["opt_d"])
            for sched, key in ((sched_g, "sched_g"), (sched_d, "sched_d")):
                if sched is not None and ckpt.get(key) is not None:
                    sched.load_state_dict(ckpt[key])
            rows = list(ckpt["history"])
            start_epoch = int(ckpt["epoch"]) + 1
            elapsed_before = float(ckpt.get("elapsed_s", 0.0))
            set_rng_state(ckpt["rng"], train_loader)
            half = ckpt.get("half_budget")
            if ckpt.get("stop_reason") == "time_budget":
                start_epoch = epochs + 1

    def prefixed(parts: Mapping[str, float], prefix: str) -> dict[str, float]:
        return {(k if k.startswith(prefix) else prefix + k): v for k, v in parts.items()}

    def train_step(batch: Mapping[str, Any], epoch: int, step: int, schedules: bool = True):
        """D then G on one batch; ``schedules``: step the one-cycle schedules (not in the branch)."""
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            outputs = net_g(batch["image"])
        detached = ({k: v.detach() for k, v in outputs.items()} if isinstance(outputs, Mapping)
                    else outputs.detach())
        # --- discriminator step(s)
        discriminator.requires_grad_(True)
        for _ in range(d_steps):
            opt_d.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                d_real = net_d(*_as_tuple(real_inputs(batch)))
                d_fake = net_d(*_as_tuple(fake_inputs(batch, detached)))
                d_total, d_parts = _loss_and_parts(d_loss_fn(d_real, d_fake), "d_loss")
            _check_finite(d_total, d_parts, epoch, step, "discriminator loss")
            scaler_d.scale(d_total).backward()
            scaler_d.step(opt_d)
            scaler_d.update()
            if schedules and sched_d is not None and sched_d.last_epoch < sched_d.total_steps - 1:
                sched_d.step()
        # --- generator step
        discriminator.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            d_fake_for_g = discriminator(*_as_tuple(fake_inputs(batch, outputs)))
            g_total, g_parts = _loss_and_parts(g_loss_fn(outputs, batch, d_fake_for_g), "g_loss")
        _check_finite(g_total, g_parts, epoch, step, "generator loss")
        scaler_g.scale(g_total).backward()
        scaler_g.step(opt_g)
        scaler_g.update()
        if schedules and sched_g is not None and sched_g.last_epoch < sched_g.total_steps - 1:
            sched_g.step()
        discriminator.requires_grad_(True)
        return d_total, d_parts, g_total, g_parts

    plan = None
    if half_budget is not None:
        from cellnb.methods.training import half_budget_plan

        if distributed:
            raise ValueError("fit_gan: half_budget is not supported under torch.distributed")
        if not callable(half_budget):
            raise TypeError(f"fit_gan: half_budget must be callable(generator) -> float, got {type(half_budget).__name__}")
        plan = half_budget_plan(epochs * n_batches)
    stop_reason = "completed"
    t_start = time.perf_counter() - elapsed_before
    for epoch in range(start_epoch, epochs + 1):
        t_epoch = time.perf_counter()
        branch_s = 0.0
        generator.train()
        discriminator.train()
        if distributed:
            train_sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        seen = 0
        bar = _epoch_bar(mode, train_loader, epoch, epochs)
        for step, batch in enumerate(train_loader, start=1):
            batch = _to_device(batch, device)
            d_total, d_parts, g_total, g_parts = train_step(batch, epoch, step)
            if plan is not None and (epoch - 1) * n_batches + step == plan[0]:
                half = _loop_half_budget(plan, lambda b: train_step(b, epoch, step, schedules=False),
                                         lambda: float(half_budget(generator)), loader=train_loader, device=device,
                                         modules=[generator, discriminator], optimizers=[opt_g, opt_d],
                                         rngs=half_budget_rngs, scalers=[scaler_g, scaler_d])
                branch_s = half["seconds"]
            n = _batch_size(batch)
            seen += n
            values = {"d_loss": float(d_total.detach()), "g_loss": float(g_total.detach()),
                      **prefixed(d_parts, "d_"), **prefixed(g_parts, "g_")}
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v * n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(d=f"{sums['d_loss'] / seen:.3g}", g=f"{sums['g_loss'] / seen:.3g}")
        if bar is not None:
            bar.close()
        if distributed:
            sums, seen = _gather_sums(sums, seen)
        if seen == 0:
            raise ValueError("train_loader yielded no batches")
        row: dict[str, Any] = {"epoch": epoch, **_weighted_mean(sums, seen),
                               "lr_g": float(opt_g.param_groups[0]["lr"]), "lr_d": float(opt_d.param_groups[0]["lr"])}
        if epoch_callback is not None:
            epoch_callback(epoch, generator, discriminator)
        row["seconds"] = time.perf_counter() - t_epoch - branch_s
        rows.append(row)
        if mode != "off":
            print(_epoch_line(row), flush=True)
        over_budget = time_budget_s is not None and time.perf_counter() - t_start > time_budget_s
        if _rank0_decides(over_budget) if distributed else over_budget:
            stop_reason = "time_budget"
        if checkpoint_path is not None and rank0:
            save_checkpoint(checkpoint_path, {
                "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "epoch": epoch,
                "sched_g": sched_g.state_dict() if sched_g is not None else None,
                "sched_d": sched_d.state_dict() if sched_d is not None else None,
                "history": rows, "elapsed_s": time.perf_counter() - t_start,
                "stop_reason": stop_reason if stop_reason != "completed" else None,
                "rng": rng_state(train_loader), "half_budget": half,
            })
        if checkpoint_path is not None and distributed:
            _barrier()
        if stop_reason != "completed":
            if mode != "off":
                print(f"stopped after epoch {epoch}: {stop_reason}", flush=True)
            break
    history = pd.DataFrame(rows)
    history.attrs["stop_reason"] = stop_reason
    history.attrs["world_size"] = world
    history.attrs["precision"] = "float16" if use_amp else "float32"
    if half is not None:
        history.attrs["half_budget"] = half
    history.attrs["bn_recalibrated"] = bool(update_bn) and recalibrate_batchnorm(
        generator, (batch["image"] for batch in train_loader), device)
    if distributed and history.attrs["bn_recalibrated"]:
        _average_batchnorm(generator)
    return history


__all__ = ["fit", "fit_gan", "predict", "evaluate_loss", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


if __name__ == "__main__":  # python -m cellnb.train: train a method on your own images (cellnb.cli)
    import sys

    from cellnb.cli import train_main

    sys.exit(train_main())
