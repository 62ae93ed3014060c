"""Download, into an ignored folder, the wheels a GPU machine without a package index lacks.

The device machine (Python 3.12, x86-64) brings torch, torchvision, numpy, pandas, matplotlib,
seaborn, scikit-image, tifffile and the rest of ``PRESENT`` below, but not the notebook runner
(papermill, jupytext, ipykernel and their needs) nor py-ctcmetrics. This script walks the
dependency closure of ``ROOTS`` through the metadata of the packages installed here (the versions the
committed results were made with), evaluates their markers for CPython 3.12 on Linux, drops what the
machine already has, and ``pip download``s one wheel per missing package for that platform::

    python tools/gpu_wheels.py            # -> .whl/ (ignored by git), prints the list and its size
    python tools/gpu_wheels.py --list     # only print what would be downloaded

``tools/gpu_full.sh`` installs them there with ``pip install --no-index --no-deps``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
DEST = REPO / ".whl"
ROOTS = ("papermill", "jupytext", "ipykernel", "nbclient", "nbformat", "py-ctcmetrics")
#: Installed on the device machine's image ('cuda'), as its README listed them (2026-11-17).
PRESENT = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
#: Declared by a root but never imported by it or by cellnb (py-ctcmetrics reads uncompressed TIFFs
#: through tifffile): 26 MiB the working-tree limit is better spent on.
SKIP = {"imagecodecs"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
TARGET = dict(default_environment(), python_version="3.12", python_full_version="3.12.3",
              implementation_name="cpython", platform_python_implementation="CPython",
              sys_platform="linux", platform_system="Linux", platform_machine="x86_64", os_name="posix")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots=ROOTS, present=PRESENT, skip=SKIP) -> dict[str, str]:
    """``{name: version}`` of every package the roots need on the target that it lacks."""
    present = {norm(p) for p in present | skip}
    need: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = norm(todo.pop())
        if name in need or name in present:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise SystemExit(f"{name} is not installed here; install the book's requirements first (make env)")
        need[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(dict(TARGET, extra="")):
                continue
            todo.append(req.name)
    return dict(sorted(need.items()))


def download(packages: dict[str, str], dest: Path = DEST) -> None:
    dest.mkdir(exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        base += ["--platform", platform]
    pins = [f"{n}=={v}" for n, v in packages.items()]
    if subprocess.run(base + pins).returncode != 0:  # one at a time, to name the one that fails
        for pin in pins:
            if subprocess.run(base + [pin]).returncode != 0:
                raise SystemExit(f"no wheel of {pin} for CPython 3.12 on manylinux x86-64")
    wanted = {norm(n) for n in packages}
    for wheel in dest.glob("*.whl"):  # keep one version of each: two stop the whole install
        name = norm(wheel.name.split("-")[0])
        version = wheel.name.split("-")[1]
        if name not in wanted or version != packages.get(name):
            wheel.unlink()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the packages, download nothing")
    parser.add_argument("--dest", type=Path, default=DEST)
    args = parser.parse_args(argv)
    packages = closure()
    print(f"{len(packages)} packages the GPU machine lacks: " + " ".join(f"{n}=={v}" for n, v in packages.items()))
    if args.list:
        return 0
    download(packages, args.dest)
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels in {args.dest}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
