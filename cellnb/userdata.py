"""Your own images and annotations, in the layouts people have, as training samples.

Images: PNG / TIFF / JPEG / BMP of any size, grey or RGB (pick one channel with ``channel``), 8-bit,
16-bit or float; each is scaled to float32 [0, 1] by its dtype's range (floats by their own min/max).

Annotations, paired with images by file name (the annotation's stem is the image's stem, optionally
followed by a suffix such as ``_dots``, ``_points``, ``_labels``, ``_mask``, ``_seg``):

* point CSVs, one per image, with a header naming the columns: ``y,x`` (or ``row,col``) or ``x,y``
  (a header ``X,Y`` from Fiji's point tool works too);
* dot images: every non-zero pixel is one cell, or the pixels of one colour (``dot_colour``);
* instance label images (8/16/32-bit TIFF or PNG, 0 = background);
* binary masks (instances become their connected components);
* Cell Tracking Challenge folders (``<seq>/tNNN.tif`` with ``<seq>_GT/SEG/man_segNNN.tif``).

Every problem raises :class:`UserDataError` naming the file and what was expected.
"""

from __future__ import annotations

import csv
import glob as globlib
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["UserDataError", "IMAGE_SUFFIXES", "read_image", "read_points_csv", "write_points_csv",
           "points_from_dot_image", "read_label_image", "list_images", "pair_annotations", "load_samples",
           "load_ctc_folder"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
ANNOTATION_SUFFIXES = ("", "_dots", "_dot", "_points", "_labels", "_label", "_mask", "_masks", "_seg", "_gt")


class UserDataError(ValueError):
    """A user's file does not match what was expected; the message names the file."""


def _imread(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        from skimage import io

        return np.asarray(io.imread(path))
    except Exception as exc:  # unreadable, truncated, not an image
        raise UserDataError(f"{path}: cannot read it as an image ({type(exc).__name__}: {exc})") from None


def _to_unit(image: np.ndarray) -> np.ndarray:
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return ((image.astype(np.float64) - info.min) / float(info.max - info.min)).astype(np.float32)
    image = image.astype(np.float32)
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def read_image(path: str | Path, channel: int | None = None) -> np.ndarray:
    """One image as (H, W) float32 in [0, 1].

    RGB(A) images become grey by averaging R, G, B unless ``channel`` (0-based) picks one; an
    image with fewer channels than ``channel`` raises naming the file.
    """
    path = Path(path)
    image = _imread(path)
    if image.ndim == 3 and image.shape[0] in (2, 3, 4) and image.shape[-1] not in (3, 4):
        image = np.moveaxis(image, 0, -1)  # (C, H, W) TIFF
    if image.ndim == 2:
        if channel not in (None, 0):
            raise UserDataError(f"{path}: channel {channel} asked for, but the image is grey (one channel)")
        return _to_unit(image)
    if image.ndim == 3:
        n = image.shape[-1]
        if channel is not None:
            if not 0 <= channel < n:
                raise UserDataError(f"{path}: channel {channel} asked for, but the image has {n} channel(s) (0..{n - 1})")
            return _to_unit(image[..., channel])
        return _to_unit(image[..., : min(n, 3)]).mean(axis=-1).astype(np.float32)
    raise UserDataError(f"{path}: expected a 2-D grey or RGB image, got an array of shape {image.shape}")


def _columns(header: Sequence[str], path: Path) -> tuple[int, int]:
    names = [h.strip().lower() for h in header]
    for row_name, col_name in (("y", "x"), ("row", "col"), ("row", "column"), ("axis-0", "axis-1")):
        if row_name in names and col_name in names:
            return names.index(row_name), names.index(col_name)
    raise UserDataError(f"{path}: expected a header naming the point columns, 'y,x' or 'x,y' (or 'row,col'); "
                        f"got {list(header)}")


def read_points_csv(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Points of one CSV as (K, 2) float32 (row, col); ``shape`` = (H, W) checks they lie inside."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise UserDataError(f"{path}: empty file; expected a header 'y,x' or 'x,y' and one row per cell")
    r, c = _columns(rows[0], path)
    points = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not v.strip() for v in row):
            continue
        try:
            points.append((float(row[r]), float(row[c])))
        except (ValueError, IndexError):
            raise UserDataError(f"{path}, line {line}: expected two numbers in the {rows[0][r]!r} and "
                                f"{rows[0][c]!r} columns, got {row}") from None
    points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if shape is not None and len(points):
        h, w = shape
        outside = (points[:, 0] < 0) | (points[:, 0] > h - 1) | (points[:, 1] < 0) | (points[:, 1] > w - 1)
        if outside.any():
            k = int(np.argmax(outside))
            raise UserDataError(f"{path}: point (y={points[k, 0]:g}, x={points[k, 1]:g}) lies outside its "
                                f"{h}x{w} image ({int(outside.sum())} point(s) outside)")
    return points


def write_points_csv(path: str | Path, points: np.ndarray) -> Path:
    """Write (K, 2) (row, col) points as a ``y,x`` CSV."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["y", "x"])
        writer.writerows([[f"{p[0]:.2f}", f"{p[1]:.2f}"] for p in np.asarray(points).reshape(-1, 2)])
    return path


def points_from_dot_image(path: str | Path, colour: Sequence[int] | None = None, tolerance: int = 40) -> np.ndarray:
    """Cell centres of a dot image: every non-zero pixel, or pixels within ``tolerance`` of ``colour``
    (an RGB triple such as (255, 0, 0) for VGG's red dots). Adjacent marked pixels stay separate
    points (one marked pixel = one cell, as in VGG and MBM)."""
    path = Path(path)
    image = _imread(path)
    if colour is not None:
        if image.ndim != 3 or image.shape[-1] < 3:
            raise UserDataError(f"{path}: --dot-colour {tuple(colour)} given, but the dot image is not RGB "
                                f"(shape {image.shape})")
        diff = np.abs(image[..., :3].astype(int) - np.asarray(colour, int)[None, None]).max(axis=-1)
        marked = diff <= tolerance
    else:
        marked = image.reshape(image.shape[0], image.shape[1], -1)[..., :3].max(axis=-1) > 0 if image.ndim == 3 else image > 0
    return np.argwhere(marked).astype(np.float32)


def read_label_image(path: str | Path, binary_is_instances: bool = True) -> np.ndarray:
    """Instance labels (H, W) int32 from a label image (8/16/32-bit); a 0/1 (or 0/255) mask becomes its
    8-connected components."""
    path = Path(path)
    labels = _imread(path)
    if labels.ndim == 3:
        if labels.shape[-1] in (3, 4) and np.all(labels[..., 0] == labels[..., 1]):
            labels = labels[..., 0]
        else:
            raise UserDataError(f"{path}: expected a single-channel label image, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        if np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        else:
            raise UserDataError(f"{path}: expected integer labels (0 = background), got {labels.dtype} values")
    values = np.unique(labels)
    if binary_is_instances and len(values) <= 2:
        from skimage.measure import label as cc_label

        return cc_label(labels > 0, connectivity=2).astype(np.int32)
    return labels.astype(np.int32)


def list_images(images: str | Path) -> list[Path]:
    """The image files of a folder (sorted), or of a glob pattern; an empty result raises."""
    text = str(images)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        where = f"the pattern {text!r}"
    else:
        folder = Path(images)
        if not folder.is_dir():
            raise UserDataError(f"{folder}: no such folder (expected a folder of images or a glob pattern)")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        where = f"the folder {folder}"
    if not files:
        raise UserDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where}")
    return files


def _annotation_index(folder: Path, suffixes: Iterable[str]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in tuple(suffixes) or path.name.startswith("."):
            continue
        stem = path.stem
        for tail in sorted(ANNOTATION_SUFFIXES, key=len, reverse=True):
            if tail and stem.lower().endswith(tail):
                stem = stem[: -len(tail)]
                break
        index.setdefault(stem, path)
    return index


def pair_annotations(image_files: Sequence[Path], folder: str | Path, kind: str) -> list[tuple[Path, Path]]:
    """Pair each image with its annotation in ``folder`` (``kind`` = ``points`` (CSV or dot images) or
    ``labels``); images or annotations without a partner raise, listing them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserDataError(f"{folder}: no such annotation folder")
    suffixes = (".csv",) + IMAGE_SUFFIXES if kind == "points" else IMAGE_SUFFIXES
    index = _annotation_index(folder, suffixes)
    if not index:
        raise UserDataError(f"no annotation files ({', '.join(suffixes)}) in the folder {folder}")
    pairs, missing = [], []
    for image in image_files:
        match = index.get(image.stem)
        if match is None or match.resolve() == image.resolve():
            missing.append(image.name)
        else:
            pairs.append((image, match))
    if missing:
        raise UserDataError(f"{len(missing)} image(s) have no annotation in {folder} (expected a file named like "
                            f"the image, e.g. {Path(missing[0]).stem}.csv or {Path(missing[0]).stem}_labels.tif): "
                            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    used = {a for _, a in pairs}
    orphans = sorted(p.name for p in index.values() if p not in used)
    if orphans:
        raise UserDataError(f"{len(orphans)} annotation(s) in {folder} match no image: "
                            f"{', '.join(orphans[:5])}{' ...' if len(orphans) > 5 else ''}")
    return pairs


def load_samples(images: str | Path, *, points: str | Path | None = None, labels: str | Path | None = None,
                 channel: int | None = None, dot_colour: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Annotated samples ``{"name", "image" (H, W) float32, "points" (K, 2) | "labels" (H, W) int32,
    "mask", "count"}`` from an image folder and one annotation folder."""
    if (points is None) == (labels is None):
        raise UserDataError("give exactly one annotation folder: --points DIR (CSV or dot images) or --labels DIR")
    kind = "points" if points is not None else "labels"
    samples = []
    for image_path, ann_path in pair_annotations(list_images(images), points or labels, kind):
        image = read_image(image_path, channel)
        sample: dict[str, Any] = {"name": image_path.name, "image": image}
        if kind == "points":
            if ann_path.suffix.lower() == ".csv":
                pts = read_points_csv(ann_path, image.shape)
            else:
                dots = _imread(ann_path)
                if dots.shape[:2] != image.shape:
                    raise UserDataError(f"{ann_path}: dot image is {dots.shape[0]}x{dots.shape[1]}, its image "
                                        f"{image_path.name} is {image.shape[0]}x{image.shape[1]}")
                pts = points_from_dot_image(ann_path, dot_colour)
            sample["points"] = pts
            sample["count"] = int(len(pts))
        else:
            lab = read_label_image(ann_path)
            if lab.shape != image.shape:
                raise UserDataError(f"{ann_path}: label image is {lab.shape[0]}x{lab.shape[1]}, its image "
                                    f"{image_path.name} is {image.shape[0]}x{image.shape[1]}")
            sample["labels"] = lab
            sample["mask"] = (lab > 0).astype(np.uint8)
            sample["count"] = int(len(np.unique(lab[lab > 0])))
            from scipy import ndimage

            ids = np.unique(lab[lab > 0])
            sample["points"] = (np.asarray(ndimage.center_of_mass(lab > 0, lab, ids), np.float32).reshape(-1, 2)
                                if len(ids) else np.zeros((0, 2), np.float32))
        samples.append(sample)
    return samples


def load_ctc_folder(root: str | Path, sequence: str = "01", channel: int | None = None) -> list[dict[str, Any]]:
    """The annotated frames of a Cell Tracking Challenge sequence: ``root/<seq>/tNNN.tif`` paired with
    ``root/<seq>_GT/SEG/man_segNNN.tif`` (frames without a segmentation are skipped)."""
    root = Path(root)
    frames_dir, seg_dir = root / sequence, root / f"{sequence}_GT" / "SEG"
    if not frames_dir.is_dir() or not seg_dir.is_dir():
        raise UserDataError(f"{root}: expected a CTC layout with {sequence}/tNNN.tif and {sequence}_GT/SEG/man_segNNN.tif")
    samples = []
    for seg in sorted(seg_dir.glob("man_seg*.tif")):
        number = re.sub(r"\D", "", seg.stem)
        frame = next((p for p in frames_dir.glob(f"t*{number}.tif") if re.sub(r"\D", "", p.stem) == number), None)
        if frame is None:
            continue
        image = read_image(frame, channel)
        lab = read_label_image(seg, binary_is_instances=False)
        if lab.shape != image.shape:
            raise UserDataError(f"{seg}: {lab.shape} labels for a {image.shape} frame {frame.name}")
        samples.append({"name": frame.name, "image": image, "labels": lab, "mask": (lab > 0).astype(np.uint8),
                        "count": int(len(np.unique(lab[lab > 0])))})
    if not samples:
        raise UserDataError(f"{seg_dir}: no man_segNNN.tif matches a frame in {frames_dir}")
    return samples
