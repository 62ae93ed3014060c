"""Real labelled fluorescence nuclei: the scratch-assay time-lapse shipped by ``ndev-sampledata``.

``ndev-sampledata`` (PyPI, BSD-3-Clause, Tim Monko) is a napari sample-data plugin. Its file
``samples/scratch-assay-labeled-10T-2Ch.tiff`` is an OME-TIFF ``(C=4, T=10, Y=210, X=576)`` uint16:

- channel 0 ``H3342``: Hoechst 33342 nuclear stain (the image used here);
- channel 1 ``oblique``: oblique transmitted light;
- channel 2 ``nuclei``: nuclei instance labels for every frame (59–83 nuclei per frame; the IDs
  are *not* linked across frames);
- channel 3 ``cyto``: cytoplasm instance labels.

The package's own module imports ``bioio`` (not a cellnb dependency), so it is installed with
``pip install --no-deps ndev-sampledata`` and its files are located with
:func:`importlib.util.find_spec`, which finds the package directory **without executing its code**
(``importlib.resources.files("ndev_sampledata")`` would import it and fail without bioio). The
TIFF is read with ``tifffile``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

PACKAGE = "ndev_sampledata"
DISTRIBUTION = "ndev-sampledata"
VERSION = "0.0.3"
SCRATCH_ASSAY = "scratch-assay-labeled-10T-2Ch.tiff"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
# Contrast limits the dataset's author ships for the Hoechst channel (napari sample metadata);
# ~0.03 % of pixels lie above 3500 and are clipped to 1 by the default normalisation.
CONTRAST_LIMITS = (400.0, 3500.0)
FRAMES = 10
SHAPE = (210, 576)


def _package_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def ndev_path() -> Path:
    """Path of the scratch-assay OME-TIFF; raises a clear error naming the install line if missing."""
    pkg = _package_dir()
    if pkg is None:
        raise ModuleNotFoundError(
            f"the real nuclei need the '{DISTRIBUTION}' package (PyPI, BSD-3-Clause); install it "
            f"without its bioio dependencies: {INSTALL_HINT}",
            name=PACKAGE,
        )
    path = pkg / "samples" / SCRATCH_ASSAY
    if not path.is_file():
        raise FileNotFoundError(
            f"'{DISTRIBUTION}' is installed at {pkg} but has no samples/{SCRATCH_ASSAY}; "
            f"reinstall the pinned version: {INSTALL_HINT}"
        )
    return path


def ndev_available() -> bool:
    """True when the scratch-assay file can be read (for clean test/notebook skips)."""
    try:
        ndev_path()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    return True


def _ome_pixel_size(ome_xml: str | None) -> float | None:
    if not ome_xml:
        return None
    sizes = []
    for axis in ("X", "Y"):
        m = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', ome_xml)
        if m:
            sizes.append(float(m.group(1)))
    return float(np.mean(sizes)) if sizes else None


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive IDs 1..K per frame (the file's IDs are arbitrary and unlinked across frames)."""
    out = np.zeros(labels.shape, dtype=np.int32)
    for t, frame in enumerate(labels):
        ids = np.unique(frame)
        ids = ids[ids != 0]
        lut = np.zeros(int(frame.max()) + 1, dtype=np.int32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        out[t] = lut[frame]
    return out


def load_ndev_nuclei(normalize: str = "contrast") -> dict:
    """The Hoechst nuclei time-lapse with its instance labels.

    Returns a dict with

    - ``frames``: ``(10, 210, 576)`` float32. ``normalize="contrast"`` (default) maps the raw
      counts linearly with the author's contrast limits ``(400, 3500)`` to [0, 1] and clips;
      ``normalize="none"`` returns the raw counts as float32.
    - ``raw``: ``(10, 210, 576)`` uint16 Hoechst counts as stored.
    - ``labels``: ``(10, 210, 576)`` int32 nuclei instances, relabelled 1..K per frame (IDs are
      not linked across frames: this is not tracking ground truth).
    - ``pixel_size``: µm per pixel from the OME ``PhysicalSizeX/Y`` (0.619), or ``None``.
    - ``counts``: nuclei per frame (int list); ``source``: a citation string; ``path``.

    Frames of one sequence are correlated (the same cells move and divide), so any train/test
    split should be by time (e.g. frames 0–4 vs 5–9).
    """
    if normalize not in ("contrast", "none"):
        raise ValueError(f"normalize must be 'contrast' or 'none', got {normalize!r}")
    import tifffile

    path = ndev_path()
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
        pixel_size = _ome_pixel_size(tif.ome_metadata)
    if axes != "CTYX" or data.shape[:2] != (4, FRAMES):
        raise ValueError(f"unexpected layout {axes} {data.shape} in {path}")
    raw = np.ascontiguousarray(data[0])
    labels = _relabel(data[2])
    if normalize == "contrast":
        lo, hi = CONTRAST_LIMITS
        frames = np.clip((raw.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    else:
        frames = raw.astype(np.float32)
    counts = [int(labels[t].max()) for t in range(labels.shape[0])]
    return {
        "frames": frames,
        "raw": raw,
        "labels": labels,
        "pixel_size": pixel_size,
        "counts": counts,
        "normalize": normalize,
        "source": (
            f"{DISTRIBUTION} {VERSION} (Tim Monko, BSD-3-Clause), samples/{SCRATCH_ASSAY}: "
            "Hoechst 33342 scratch-assay time-lapse, 10 frames, nuclei instance labels"
        ),
        "path": str(path),
    }
