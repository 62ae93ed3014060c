"""Loaders for real data in the standard public layouts.

Every loader raises ``FileNotFoundError`` (folder missing or empty) or ``ValueError`` (files do
not follow the layout) with the path and the expected layout in the message, so a chapter can
skip real-data work with a clear note.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_IMG_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _imread(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from skimage import io

    return io.imread(path)


def _need_dir(folder, layout: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; expected layout: {layout}")
    return folder


def _as_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 4:
        return img[..., :3]
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ValueError(f"{path}: expected a grey or RGB image, got shape {img.shape}")


_DOT_LAYOUTS = {
    "vgg": "NNNcell.png + NNNdots.png (one red pixel per cell), e.g. 001cell.png / 001dots.png",
    "mbm": "<name>_NNN.png + <name>_dots_NNN.png (non-zero pixel per cell), e.g. BM_GRAZ_HE_0001_01_000.png",
}


def load_dot_dataset(folder, kind: str = "vgg") -> list[dict]:
    """Load a dot-annotated counting set: VGG cells (``kind="vgg"``) or MBM (``kind="mbm"``).

    Returns a list sorted by name of dicts with ``rgb`` (H, W, 3) uint8, ``points`` (K, 2)
    float32 (row, col), ``count`` int and ``name`` (image file name). VGG dots are the red
    pixels (R > 127) of ``NNNdots.png``; MBM dots are the non-zero pixels of the 1-bit
    ``..._dots_NNN.png``. Each marked pixel is one cell.
    """
    if kind not in _DOT_LAYOUTS:
        raise ValueError(f"unknown dot dataset kind {kind!r}; choose from {sorted(_DOT_LAYOUTS)}")
    folder = _need_dir(folder, _DOT_LAYOUTS[kind])
    if kind == "vgg":
        pairs = [(p, p.with_name(p.name.replace("cell.png", "dots.png"))) for p in sorted(folder.glob("*cell.png"))]
    else:
        pairs = []
        for p in sorted(folder.glob("*.png")):
            if "_dots_" in p.name:
                continue
            m = re.match(r"(.*)_(\d+)\.png$", p.name)
            if m:
                pairs.append((p, p.with_name(f"{m.group(1)}_dots_{m.group(2)}.png")))
    if not pairs:
        raise FileNotFoundError(f"no images found in {folder}; expected layout: {_DOT_LAYOUTS[kind]}")
    items = []
    for img_path, dot_path in pairs:
        if not dot_path.exists():
            raise ValueError(f"{img_path} has no dot annotation {dot_path.name}; expected layout: {_DOT_LAYOUTS[kind]}")
        rgb = _as_rgb(_imread(img_path), img_path).astype(np.uint8)
        dots = _imread(dot_path)
        if kind == "vgg":
            if dots.ndim != 3:
                raise ValueError(f"{dot_path}: VGG dot images are RGB with red dots, got shape {dots.shape}")
            marked = dots[..., 0] > 127
        else:
            marked = (dots[..., 0] if dots.ndim == 3 else dots) > 0
        if marked.shape != rgb.shape[:2]:
            raise ValueError(f"{dot_path}: shape {marked.shape} differs from the image {rgb.shape[:2]}")
        pts = np.argwhere(marked).astype(np.float32)
        items.append({"rgb": rgb, "points": pts, "count": len(pts), "name": img_path.name})
    return items


_BBBC005_RE = re.compile(r"^(?P<prefix>.*?)_(?P<well>[A-P]\d{2})_C(?P<count>\d+)_F(?P<focus>\d+)_s(?P<sample>\d+)_w(?P<stain>\d)", re.I)


def parse_bbbc005_name(name: str, mode: str = "count") -> int:
    """Cell-count target from a BBBC005 file name ``SIMCEP_images_<well>_C<nn>_F<nn>_s<nn>_w<n>.TIF``.

    ``mode="count"``: the number in the ``C<nn>`` token, i.e. the true cell count (what the
    dataset documents). ``mode="released"``: what the released SSRNet code computes,
    ``int(path.split('_')[4][1:])`` on the ground-truth path ``.../BBBC005_v1_ground_truth/
    SIMCEP_images_<well>_...``: with that folder name token 4 is the **well**, so the target is
    the plate column number 1–24 (a monotone count *level*), not the count (papers/ssrnet.md §5;
    ``A05`` → 5 whereas its count is C18). Here the column is read from the well token of the
    file name, independent of the folder names.
    """
    base = Path(str(name)).name
    m = _BBBC005_RE.match(base)
    if m is None:
        raise ValueError(f"{name!r} is not a BBBC005 file name; expected SIMCEP_images_<well>_C<count>_F<focus>_s<sample>_w<stain>.TIF")
    if mode == "count":
        return int(m.group("count"))
    if mode == "released":
        return int(m.group("well")[1:])
    raise ValueError(f"unknown mode {mode!r}; choose from ['count', 'released']")


def load_image_mask_pairs(folder, image_dir: str = "img", mask_dir: str = "mask") -> list[dict]:
    """Images ``<folder>/img/<name>`` with masks ``<folder>/mask/<stem>.*`` (same stem).

    Returns dicts with ``image`` (as stored), ``mask`` (H, W) uint8 0/1 (non-zero of the first
    channel) and ``name``.
    """
    layout = f"<folder>/{image_dir}/<name>.png and <folder>/{mask_dir}/<name>.png (same stem)"
    folder = _need_dir(folder, layout)
    idir, mdir = folder / image_dir, folder / mask_dir
    if not idir.is_dir() or not mdir.is_dir():
        raise FileNotFoundError(f"{folder} needs subfolders {image_dir}/ and {mask_dir}/; expected layout: {layout}")
    masks = {p.stem: p for p in mdir.iterdir() if p.suffix.lower() in _IMG_EXT}
    images = sorted(p for p in idir.iterdir() if p.suffix.lower() in _IMG_EXT)
    if not images:
        raise FileNotFoundError(f"no images in {idir}; expected layout: {layout}")
    items = []
    for p in images:
        if p.stem not in masks:
            raise ValueError(f"{p} has no mask in {mdir}; expected layout: {layout}")
        mask = _imread(masks[p.stem])
        mask = (mask[..., 0] if mask.ndim == 3 else mask) > 0
        image = _imread(p)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{masks[p.stem]}: mask shape {mask.shape} differs from image {image.shape[:2]}")
        items.append({"image": image, "mask": mask.astype(np.uint8), "name": p.name})
    return items


def load_dsb2018(folder) -> list[dict]:
    """DSB2018 / BBBC038 stage-1 layout: ``<folder>/<id>/images/<id>.png`` and
    ``<folder>/<id>/masks/*.png`` (one binary PNG per nucleus).

    Returns dicts with ``image`` (H, W, 3) uint8 (alpha dropped, grey repeated), ``labels``
    (H, W) int32 (mask files in sorted order get ids 1..K; where masks overlap the later one wins)
    and ``name`` (= id).
    """
    layout = "<folder>/<id>/images/<id>.png and <folder>/<id>/masks/*.png"
    folder = _need_dir(folder, layout)
    ids = sorted(p.name for p in folder.iterdir() if (p / "images").is_dir())
    if not ids:
        raise FileNotFoundError(f"no <id>/images/ folders in {folder}; expected layout: {layout}")
    items = []
    for sid in ids:
        img_path = folder / sid / "images" / f"{sid}.png"
        if not img_path.exists():
            raise ValueError(f"missing {img_path}; expected layout: {layout}")
        image = _as_rgb(_imread(img_path), img_path).astype(np.uint8)
        labels = np.zeros(image.shape[:2], np.int32)
        for k, mp in enumerate(sorted((folder / sid / "masks").glob("*.png")), start=1):
            m = _imread(mp)
            m = (m[..., 0] if m.ndim == 3 else m) > 0
            if m.shape != labels.shape:
                raise ValueError(f"{mp}: mask shape {m.shape} differs from image {labels.shape}")
            labels[m] = k
        items.append({"image": image, "labels": labels, "name": sid})
    return items


def load_label_tiffs(folder, image_glob: str = "images/*.tif", label_dir: str = "labels") -> list[dict]:
    """Images with instance-label TIFFs of the same name: ``<folder>/images/<name>.tif`` and
    ``<folder>/labels/<name>.tif`` (StarDist-style). Returns dicts ``image``, ``labels`` int32, ``name``."""
    layout = f"<folder>/{image_glob} with label images <folder>/{label_dir}/<same name>"
    folder = _need_dir(folder, layout)
    images = sorted(folder.glob(image_glob))
    if not images:
        raise FileNotFoundError(f"no files matching {image_glob} in {folder}; expected layout: {layout}")
    items = []
    for p in images:
        lp = folder / label_dir / p.name
        if not lp.exists():
            raise ValueError(f"{p} has no label image {lp}; expected layout: {layout}")
        labels = _imread(lp)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{lp}: expected a 2-D integer label image, got {labels.shape} {labels.dtype}")
        image = _imread(p)
        if image.shape[:2] != labels.shape:
            raise ValueError(f"{lp}: labels shape {labels.shape} differs from image {image.shape[:2]}")
        items.append({"image": image, "labels": labels.astype(np.int32), "name": p.name})
    return items


def load_ctc(folder, sequence: str = "01") -> dict:
    """One Cell Tracking Challenge sequence from ``<folder>`` = ``<root>/<DATASET>``:
    ``<seq>/tTTT.tif``, optional ``<seq>_GT/TRA/man_trackTTT.tif`` + ``man_track.txt`` and
    ``<seq>_GT/SEG/man_segTTT.tif`` (DATASETS.md §5.1).

    Returns ``frames`` (T, H, W) as stored, ``tra`` (T, H, W) int32 or None, ``tracks`` (n, 4)
    int64 ``L B E P`` or None, ``seg`` dict ``{t: (H, W) int32}`` (possibly empty).
    """
    import tifffile

    layout = f"<folder>/{sequence}/t000.tif..., <folder>/{sequence}_GT/TRA/man_track000.tif + man_track.txt, <folder>/{sequence}_GT/SEG/man_seg000.tif"
    folder = _need_dir(folder, layout)
    raw = folder / sequence
    files = sorted(raw.glob("t*.tif"), key=lambda p: int(p.stem[1:]) if p.stem[1:].isdigit() else -1)
    files = [p for p in files if p.stem[1:].isdigit()]
    if not files:
        raise FileNotFoundError(f"no frames t*.tif in {raw}; expected layout: {layout}")
    frames = np.stack([tifffile.imread(p) for p in files])
    tra_dir, seg_dir = folder / f"{sequence}_GT" / "TRA", folder / f"{sequence}_GT" / "SEG"
    tra = tracks = None
    if tra_dir.is_dir():
        tra_files = {int(p.stem[len("man_track"):]): p for p in tra_dir.glob("man_track*.tif")}
        missing = [int(p.stem[1:]) for p in files if int(p.stem[1:]) not in tra_files]
        if missing:
            raise ValueError(f"{tra_dir} lacks man_track files for frames {missing[:5]}; expected layout: {layout}")
        tra = np.stack([tifffile.imread(tra_files[int(p.stem[1:])]) for p in files]).astype(np.int32)
        txt = tra_dir / "man_track.txt"
        if not txt.exists():
            raise ValueError(f"missing {txt}; expected layout: {layout}")
        rows = [line.split() for line in txt.read_text().splitlines() if line.strip()]
        if any(len(r) != 4 for r in rows):
            raise ValueError(f"{txt}: every line must be 'L B E P' (4 integers)")
        tracks = np.array(rows, np.int64).reshape(-1, 4)
    seg = {}
    if seg_dir.is_dir():
        for p in sorted(seg_dir.glob("man_seg*.tif")):
            t = p.stem[len("man_seg"):]
            if t.isdigit():
                seg[int(t)] = tifffile.imread(p).astype(np.int32)
    return {"frames": frames, "tra": tra, "tracks": tracks, "seg": seg}
