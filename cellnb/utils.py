"""Seeding, device selection, versions, paths."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from collections.abc import Mapping
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT_ENV = "CELLNB_DATA_ROOT"
RESULTS_DIR_ENV = "CELLNB_RESULTS_DIR"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; on CPU, same seed gives the same numbers.

    ``deterministic`` asks torch for deterministic kernels in warn-only mode (some CUDA
    kernels, e.g. bilinear upsampling backward, have no deterministic version).
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def select_device(device: str = "auto"):
    """``auto`` -> CUDA if available else CPU; ``cuda`` without a GPU raises a clear error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; choose from ['auto', 'cpu', 'cuda']")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch sees no CUDA device")
    return torch.device(device)


def set_cpu_threads(num_threads: int | None, device: str = "auto") -> int:
    """Fix torch's CPU thread count for a notebook run; returns the count in force.

    Notebooks default to one thread: a fixed count makes CPU results repeatable across machines
    (reductions split by thread), and more threads than free cores slows PyTorch down sharply on a
    shared machine (measured 10-90x on the 2-core project machines). ``None`` or 0 keeps torch's
    default. Has no effect on CUDA runs. Library code never calls this.
    """
    import torch

    if num_threads and select_device(device).type == "cpu":
        torch.set_num_threads(int(num_threads))
    return torch.get_num_threads()


#: Numeric precisions of a training forward pass (:func:`training_precision`).
PRECISIONS = ("float32", "bfloat16")


def native_bfloat16(device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX tiles (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later).
    Elsewhere PyTorch emulates bfloat16 convolutions, which is slower than float32."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def bfloat16_note(device) -> str:
    """Why bfloat16 is not measured on ``device``: ``"no native bfloat16 on <device>"`` where
    :func:`native_bfloat16` is false, else ``""`` (the note of the speed tables' bfloat16 rows)."""
    return "" if native_bfloat16(device) else f"no native bfloat16 on {device_name(device)}"


def training_precision(requested: str, device) -> str:
    """The precision a training forward pass runs in: ``requested`` (one of :data:`PRECISIONS`) where
    ``device`` supports it natively (:func:`native_bfloat16`), otherwise ``"float32"``.

    >>> training_precision("float32", "cpu")
    'float32'
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown training precision {requested!r}; choose from {list(PRECISIONS)}")
    if requested == "bfloat16" and not native_bfloat16(device):
        return "float32"
    return requested


def autocast(precision: str, device):
    """The context a training forward pass runs in: ``torch.autocast`` to bfloat16 for
    ``"bfloat16"`` (convolutions and matrix products in bfloat16; weights, gradients and the optimiser
    stay float32, and the loss is computed on float32 outputs), a null context for ``"float32"``."""
    import contextlib

    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown training precision {precision!r}; choose from {list(PRECISIONS)}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def float32_outputs(outputs):
    """``outputs`` (a tensor, or a mapping of name -> tensor) with every floating tensor in float32:
    a loss after an autocast forward pass then runs in full precision."""
    import torch

    def cast(value):
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    if isinstance(outputs, torch.Tensor):
        return cast(outputs)
    if isinstance(outputs, Mapping):
        return {k: cast(v) for k, v in outputs.items()}
    return outputs


def device_name(device) -> str:
    """Human-readable device: ``cpu`` or the GPU's name (e.g. ``NVIDIA H100 80GB HBM3``)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


#: The vector extensions that decide CPU training speed here (the speed chapter): bfloat16 runs
#: natively with AVX-512 BF16 or AMX, float32 convolutions are fastest with AVX-512.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def describe_cpu(cpuinfo: str | None = None) -> str:
    r"""The CPU a run trained on, for provenance: the model name of ``/proc/cpuinfo`` (``cpuinfo``, its
    text; read when None), its family and model numbers, and which of :data:`CPU_FLAGS` it has. Two
    hosts both called "AMD EPYC" can differ by 2x in training speed (AVX2 only against AVX-512 BF16),
    so the name alone does not say which machine a wall time was measured on.

    >>> describe_cpu("model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    'AMD EPYC (family 25, model 17; avx2 avx512f avx512_bf16)'
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    numbers = ", ".join(f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model") if fields.get(k))
    flags = set(fields.get("flags", "").split())
    has = " ".join(f for f in CPU_FLAGS if f in flags)
    details = "; ".join(part for part in (numbers, has) if part)
    return f"{name} ({details})" if details else name


def versions() -> dict[str, str]:
    """Versions recorded in every result file."""
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except Exception as err:  # recorded, not hidden: a broken torchvision shows in provenance
        out["torchvision"] = f"unavailable ({type(err).__name__})"
    out["cpu_threads"] = str(torch.get_num_threads())
    # which precision a method declaring bfloat16 trains in on this CPU (training_precision)
    out["cpu_bfloat16"] = "native" if native_bfloat16("cpu") else "emulated (training runs float32)"
    out["cpu"] = describe_cpu()
    return out


#: Outputs of runs, not code: a change there does not make a run's code "dirty".
GENERATED_PATHS = ("results", "book/generated", "README.md")


def git_commit() -> str:
    """Commit of the repo the code runs from, with ``-dirty`` when tracked code changed.

    Run outputs (:data:`GENERATED_PATHS`) are left out: otherwise every notebook after the first
    in one runner call would be marked dirty by the result files its predecessors wrote.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        excludes = [f":(exclude){path}" for path in GENERATED_PATHS]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excludes],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("CELLNB_GIT_COMMIT", "unknown")


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    """The real-data root: the argument, else ``$CELLNB_DATA_ROOT``, else None (synthetic only).

    A root that is given but does not exist raises, naming the path; None means "skip real data".
    """
    value = data_root if data_root not in (None, "") else os.environ.get(DATA_ROOT_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"data root {str(path)!r} does not exist; expected a folder holding e.g. vgg_cells/ and mbm/"
        )
    return path


def real_dataset_dir(data_root: str | os.PathLike | None, name: str) -> Path | None:
    """``<data_root>/<name>`` if the root is given and holds it, else None (caller skips, visibly)."""
    root = resolve_data_root(data_root)
    if root is None or not (root / name).is_dir():
        return None
    return root / name


def results_dir() -> Path:
    """Where result JSON files go: ``$CELLNB_RESULTS_DIR`` or ``<repo>/results``."""
    return Path(os.environ.get(RESULTS_DIR_ENV) or REPO_ROOT / "results")


# ------------------------------------------------------------------------------ distributed (torchrun)
DDP_BACKEND_ENV = "CELLNB_DDP_BACKEND"


def launched_distributed() -> bool:
    """True when started by ``torchrun`` (or Slurm through it) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ


def init_distributed(backend: str | None = None) -> bool:
    """Initialise ``torch.distributed`` from torchrun's environment, once; True when a group of more
    than one process is in force.

    Backend: ``$CELLNB_DDP_BACKEND``, else NCCL when CUDA is available, else gloo. Nothing happens
    outside torchrun (a plain ``python`` run stays single-process).
    """
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched_distributed():
        return False
    backend = backend or os.environ.get(DDP_BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return dist.get_world_size() > 1


def distributed_info() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    return 0, 1


def is_main_process() -> bool:
    """Rank 0 of a distributed run, or a plain single-process run: the one process that writes files."""
    rank, _ = distributed_info()
    return rank == 0 and int(os.environ.get("RANK", "0")) == 0


def distributed_device(device):
    """Under torchrun with CUDA, ``cuda`` (no index) means this process's GPU, ``cuda:$LOCAL_RANK``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None and distributed_info()[1] > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device
