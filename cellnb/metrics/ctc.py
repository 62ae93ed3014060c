"""Cell Tracking Challenge (CTC) measures: SEG and DET in numpy, the full set via py-ctcmetrics.

Definitions (Ulman et al., Nat. Methods 2017; Matula et al., PLoS ONE 2015;
``/work/shared/DATASETS.md`` §5):

* Matching rule: a result object S matches a reference object R when |R ∩ S| > 0.5 |R|,
  so every R has at most one match while one S may match several R.
* SEG = mean over all reference objects (of all frames) of J(R) = |R ∩ S| / |R ∪ S| for the
  matched S, and 0 for an unmatched R. False positives are not penalised.
* DET = 1 - min(AOGM-D, AOGM-D₀) / AOGM-D₀ with AOGM-D = 5·NS + 10·FN + 1·FP and
  AOGM-D₀ = 10·|V| (|V| = number of reference markers). NS counts the extra references a
  result object covers (k - 1 for an object matching k references).
* OP_CSB = (SEG + DET) / 2 and OP_CTB = (SEG + TRA) / 2.

:func:`ctc_seg` and :func:`ctc_det` compute SEG and DET from arrays in memory;
:func:`ctc_evaluate` runs the maintained ``py-ctcmetrics`` package (``ctc_metrics``) on
folders in CTC layout, and :func:`write_ctc_result` writes such a result folder.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

from cellnb.metrics.instance import overlap_table

__all__ = ["ctc_seg", "ctc_det", "ctc_evaluate", "write_ctc_result"]


def _frames(labels, name: str) -> list[np.ndarray]:
    """A 2-D label image, a ``(T, H, W)`` stack, or a list of label images -> list of frames."""
    if isinstance(labels, (list, tuple)):
        frames = [np.asarray(f) for f in labels]
    else:
        arr = np.asarray(labels)
        if arr.ndim == 2:
            frames = [arr]
        elif arr.ndim == 3:
            frames = list(arr)
        else:
            raise ValueError(
                f"{name} must be a 2-D label image, a (T, H, W) stack or a list of frames, got shape {arr.shape}; "
                "pass a 3-D volume as a one-element list"
            )
    if not frames:
        raise ValueError(f"{name} has no frames")
    return frames


def _frame_pairs(true_labels, pred_labels) -> list[tuple[np.ndarray, np.ndarray]]:
    true_frames, pred_frames = _frames(true_labels, "true_labels"), _frames(pred_labels, "pred_labels")
    if len(true_frames) != len(pred_frames):
        raise ValueError(f"got {len(true_frames)} true frames but {len(pred_frames)} predicted frames")
    return list(zip(true_frames, pred_frames))


def _ctc_match(true_frame, pred_frame):
    """Overlap table and the boolean CTC match matrix |R∩S| > 0.5|R| (rows: references)."""
    table = overlap_table(true_frame, pred_frame)
    matched = table.intersection > 0.5 * table.true_areas[:, None]
    return table, matched


def ctc_seg(true_labels, pred_labels) -> float:
    """CTC SEG: mean Jaccard index of reference objects with their matching result object.

    Args:
        true_labels: Reference instance labels: one 2-D frame, a ``(T, H, W)`` stack of
            frames, or a list of frames (a 3-D volume goes in as a one-element list).
        pred_labels: Result labels, same layout and shapes.

    Returns:
        SEG over all reference objects of all frames. With no reference object at all the
        value is 0.0, as in ``py-ctcmetrics`` (sum of IoUs / max(#references, 1)).

    Raises:
        ValueError: If frame counts or shapes differ, or labels are negative.
        TypeError: If a frame is not integer typed.

    Example:
        Reference 1 (4 px) is 3/4 covered by result 5 (3 px): J = 3/4. Reference 2 (2 px)
        is only half covered (not > 0.5): J = 0.

        >>> ref = np.array([[1, 1, 1, 1, 2, 2]])
        >>> res = np.array([[5, 5, 5, 0, 6, 0]])
        >>> ctc_seg(ref, res)  # (0.75 + 0) / 2
        0.375
    """
    total_iou, n_references = 0.0, 0
    for true_frame, pred_frame in _frame_pairs(true_labels, pred_labels):
        table, matched = _ctc_match(true_frame, pred_frame)
        total_iou += float(table.iou[matched].sum())
        n_references += len(table.true_ids)
    return float(total_iou / max(n_references, 1))


def ctc_det(true_markers, pred_labels, return_counts: bool = False):
    """CTC DET from arrays: 1 - min(AOGM-D, 10·|V|) / (10·|V|), AOGM-D = 5·NS + 10·FN + 1·FP.

    Mirrors ``ctc_metrics.metrics.technical.det`` with the vertex classification of
    ``ctc_metrics.utils.representations.count_acyclic_graph_correction_operations``.

    Args:
        true_markers: Reference markers (the CTC ``TRA`` images) as one frame, a stack or a list.
        pred_labels: Result labels, same layout and shapes.
        return_counts: Also return ``{"NS", "FN", "FP", "TP", "num_vertices", "AOGM_D"}``.

    Returns:
        DET as a Python float, or ``(DET, counts)`` when ``return_counts``.

    Raises:
        ValueError: If there is no reference marker (DET is undefined), or on shape mismatch.

    Example:
        Result 7 covers markers 1 and 2 (one split, NS = 1), marker 3 is missed (FN = 1),
        result 9 matches nothing (FP = 1): AOGM-D = 5 + 10 + 1 = 16, DET = 1 - 16/30.

        >>> ref = np.array([[1, 1, 2, 2, 3, 3, 0, 0]])
        >>> res = np.array([[7, 7, 7, 7, 0, 0, 9, 9]])
        >>> round(ctc_det(ref, res), 10)
        0.4666666667
    """
    ns = fn = fp = tp = n_vertices = 0
    for true_frame, pred_frame in _frame_pairs(true_markers, pred_labels):
        table, matched = _ctc_match(true_frame, pred_frame)
        refs_matched = matched.any(axis=1)
        per_result = matched.sum(axis=0)
        n_vertices += len(table.true_ids)
        tp += int(refs_matched.sum())
        fn += int((~refs_matched).sum())
        fp += int((per_result == 0).sum())
        ns += int(np.maximum(per_result - 1, 0).sum())
    if n_vertices == 0:
        raise ValueError("DET is undefined without reference markers (AOGM-D0 = 0)")
    aogm_d = 5 * ns + 10 * fn + 1 * fp
    det = 1.0 - min(aogm_d, 10 * n_vertices) / (10 * n_vertices)
    if return_counts:
        return float(det), {"NS": ns, "FN": fn, "FP": fp, "TP": tp, "num_vertices": n_vertices, "AOGM_D": aogm_d}
    return float(det)


def _tracks_in(path: Path) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def _check_py_ctcmetrics_limits(gt_path: Path, res_path: Path) -> None:
    """Refuse inputs on which py-ctcmetrics 1.3.3 ``utils.representations.match`` silently errs.

    ``match`` adds ``max(reference label) + 1`` to the result mask in place (uint16 wraps
    around above 65535) and assumes that both masks contain background: a result frame
    without any 0 pixel has its lowest label dropped as if it were background.
    """
    import tifffile

    reference_files = sorted((gt_path / "TRA").glob("*.tif")) + sorted((gt_path / "SEG").glob("*.tif"))
    max_reference = max((int(tifffile.imread(f).max()) for f in reference_files), default=0)
    for mask_file in sorted(res_path.glob("*.tif")):
        mask = tifffile.imread(mask_file)
        if mask.size and mask.min() != 0:
            raise ValueError(
                f"{mask_file} has no background (0) pixel; py-ctcmetrics would treat its lowest label as background"
            )
        if mask.dtype.itemsize <= 2 and max_reference + 1 + int(mask.max()) > np.iinfo(mask.dtype).max:
            raise ValueError(
                f"{mask_file}: result label {int(mask.max())} + reference label {max_reference} + 1 overflows "
                f"{mask.dtype} inside py-ctcmetrics' matching; relabel the result consecutively (write_ctc_result does)"
            )


def ctc_evaluate(gt_dir, res_dir, metrics=("SEG", "DET", "TRA")) -> dict[str, float]:
    """Evaluate one CTC sequence with ``py-ctcmetrics`` (``evaluate_sequence``), quietly.

    Args:
        gt_dir: The sequence's ground-truth folder ``<dataset>/01_GT`` holding ``TRA/``
            (``man_trackTTT.tif`` for every frame + ``man_track.txt``) and ``SEG/``
            (``man_segTTT.tif`` for some frames).
        res_dir: The result folder ``<dataset>/01_RES`` with ``maskTTT.tif`` for every frame
            and ``res_track.txt`` (see :func:`write_ctc_result`).
        metrics: py-ctcmetrics metric names to compute; default SEG, DET and TRA, from which
            OP_CSB and OP_CTB follow.

    Returns:
        Python floats keyed ``SEG``, ``DET``, ``TRA``, ``OP_CSB``, ``OP_CTB`` (those that the
        requested metrics allow) plus the AOGM parts ``AOGM``, ``AOGM_0``, ``AOGM_NS``,
        ``AOGM_FN``, ``AOGM_FP``, ``AOGM_ED``, ``AOGM_EA``, ``AOGM_EC`` with TRA. A result
        with no object at all (empty ``res_track.txt``), which py-ctcmetrics cannot
        evaluate, scores 0 on every measure, as the definitions give.

    Raises:
        FileNotFoundError: If a required folder or track file is missing.
        ValueError: If py-ctcmetrics rejects the result (frame count mismatch, masks that
            disagree with ``res_track.txt``, bad parent links; the message quotes its
            warnings), or if the input would hit one of its silent errors: a result frame
            without background pixels, or labels whose sum overflows uint16.
    """
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    gt_path, res_path = Path(gt_dir), Path(res_dir)
    wanted = list(metrics)
    required = [gt_path / "TRA" / "man_track.txt", res_path / "res_track.txt"]
    if "SEG" in wanted:
        required.append(gt_path / "SEG")
    for path in [gt_path, res_path, *required]:
        if not path.exists():
            raise FileNotFoundError(f"CTC evaluation needs {path}, which does not exist")

    _check_py_ctcmetrics_limits(gt_path, res_path)
    if _tracks_in(res_path / "res_track.txt") == 0:
        results = {name: 0.0 for name in wanted if name in ("SEG", "DET", "TRA")}
    else:
        output = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(output):
            warnings.simplefilter("always")
            try:
                raw = evaluate_sequence(str(res_path), str(gt_path), metrics=list(wanted), threads=1)
            except AssertionError as error:
                raise ValueError(f"py-ctcmetrics rejected {res_path} against {gt_path}: {error}") from error
        if raw.get("Valid") == 0 or "Invalid results" in output.getvalue():
            problems = "; ".join(str(w.message) for w in caught) or "no details"
            raise ValueError(f"py-ctcmetrics judged the result in {res_path} invalid: {problems}")
        results = {
            key: float(value)
            for key, value in raw.items()
            if isinstance(value, (int, float, np.integer, np.floating)) and key != "Valid"
        }
    if "SEG" in results and "DET" in results:
        results["OP_CSB"] = 0.5 * (results["SEG"] + results["DET"])
    if "SEG" in results and "TRA" in results:
        results["OP_CTB"] = 0.5 * (results["SEG"] + results["TRA"])
    return results


def write_ctc_result(res_dir, label_frames, link: bool = False) -> Path:
    """Write per-frame segmentations as a CTC result folder (``maskTTT.tif`` + ``res_track.txt``).

    Without ``link`` every object of every frame becomes its own one-frame track with a new
    label (SEG and DET only look at single frames, so they are unaffected; TRA then pays
    for every missing link). With ``link=True`` an object continues the track of the
    previous frame's object when their IoU is > 0.5 (which makes the partner unique both
    ways); other objects start new tracks without parent (no division detection).
    Masks are uint16 and named with 3 digits (4 when there are more than 1000 frames).
    The folder is written next to ``res_dir`` and renamed into place, so readers never see
    a half-written result; an existing ``res_dir`` is replaced.

    Args:
        res_dir: Destination, e.g. ``<root>/<dataset>/01_RES``.
        label_frames: ``(T, H, W)`` integer stack or list of 2-D label images (0 = background;
            ids per frame are arbitrary).
        link: Link objects across consecutive frames by IoU > 0.5.

    Returns:
        ``Path(res_dir)``.

    Raises:
        ValueError: If frames are not 2-D, have negative labels, or need more than 65535 track labels.
    """
    import tifffile

    frames = _frames(label_frames, "label_frames")
    for t, frame in enumerate(frames):
        if frame.ndim != 2:
            raise ValueError(f"frame {t} must be a 2-D label image, got shape {frame.shape}")
    tracks: list[list[int]] = []  # [label, begin, end, parent]
    out_frames: list[np.ndarray] = []
    previous_ids: dict[int, int] = {}  # object id in previous frame -> track index
    previous_frame = None
    for t, frame in enumerate(frames):
        table = overlap_table(frame, frame)  # validates dtype/sign; ids of this frame
        ids = table.true_ids
        continued: dict[int, int] = {}
        if link and previous_frame is not None and len(ids) and previous_ids:
            link_table = overlap_table(previous_frame, frame)
            rows, cols = np.nonzero(link_table.iou > 0.5)
            for r, c in zip(rows, cols):
                continued[int(link_table.pred_ids[c])] = previous_ids[int(link_table.true_ids[r])]
        current_ids: dict[int, int] = {}
        for obj in ids.tolist():
            if obj in continued:
                track_index = continued[obj]
                tracks[track_index][2] = t
            else:
                tracks.append([len(tracks) + 1, t, t, 0])
                track_index = len(tracks) - 1
            current_ids[obj] = track_index
        if len(tracks) > 65535:
            raise ValueError(f"{len(tracks)} tracks do not fit in uint16 CTC masks (max 65535)")
        lookup_values, inverse = np.unique(frame, return_inverse=True)
        new_values = np.array(
            [0 if v == 0 else tracks[current_ids[int(v)]][0] for v in lookup_values.tolist()], dtype=np.uint16
        )
        out_frames.append(new_values[inverse].reshape(frame.shape))
        previous_ids, previous_frame = current_ids, frame

    destination = Path(res_dir)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        digits = 3 if len(out_frames) <= 1000 else 4
        for t, mask in enumerate(out_frames):
            tifffile.imwrite(staging / f"mask{t:0{digits}d}.tif", mask)
        with open(staging / "res_track.txt", "w", encoding="utf-8") as handle:
            handle.writelines(f"{label} {begin} {end} {parent}\n" for label, begin, end, parent in tracks)
        backup = None
        if destination.exists():
            backup = destination.parent / f".{destination.name}.old-{uuid.uuid4().hex[:8]}"
            destination.rename(backup)
        staging.rename(destination)
        if backup is not None:
            shutil.rmtree(backup)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination
