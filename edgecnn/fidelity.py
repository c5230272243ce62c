"""How faithful a quantized model's outputs (INT8, FP8, FP16) are to FP32's, per output and per task, label-free.

A whole-tensor SQNR hides what matters: a YOLOv8 output ``[N, 4+C, A]`` is dominated by box coordinates in
pixels, so class scores that collapse after INT8 barely move it. This module measures every output three ways:

- the whole tensor: SQNR, cosine, max abs error, finite;
- per channel: the worst SQNR along the axis that carries meaning (axis 1 of a rank >= 2 tensor, the
  4+C / 5+C axis of a detection head, the class axis of CTC scores), so one collapsed class shows;
- per task, where the output is recognized, as agreement with FP32 (no labels needed):
  ``classify`` top-1/top-5 agreement; ``detect`` (YOLO-style heads, decoded and NMS'd as ultralytics'
  ``predict`` does) the share of FP32's detections kept at IoU 0.5 with the same class, and the extras;
  ``ctc`` (greedy decoding) string agreement and character error rate; ``segment`` pixel agreement and mIoU;
  ``raw`` (anything else) the worst per-channel SQNR.

The task's figure decides whether the output meets its budget (:data:`DEFAULT_BUDGETS`); a raw output is
judged by its worst per-channel SQNR. Where the task has nothing to agree on (FP32 finds no detection, or
decodes every CTC sequence to an empty string) the output is judged by the raw rule instead, and a note says so.

SQNR convention (the one implementation in edgecnn): ``10 log10(sum x^2 / sum (x - y)^2)`` with energies summed
in float64, clipped to +-:data:`SQNR_CAP_DB`: identical outputs (zero noise) give +cap, a zero reference with a
non-zero candidate and non-finite candidate values give -cap. JSON has no infinity, and float32 rounding alone
stays far below the cap.

Recognition (``task="auto"``) reads each output's shape and an FP32 sample of its values; where the evidence is
ambiguous it answers ``raw``, never a task it cannot justify. The rules are in :func:`recognize`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError, UsageError

__all__ = [
    "TASKS",
    "DEFAULT_BUDGETS",
    "SQNR_CAP_DB",
    "sqnr_from_energies",
    "DROP_TOLERANCE",
    "drop_within_budget",
    "TaskSettings",
    "Detections",
    "OutputFidelity",
    "FidelityReport",
    "sqnr_db",
    "cosine",
    "channel_sqnr_db",
    "recognize",
    "compare",
    "parse_budgets",
    "parse_task",
    "classify_agreement",
    "decode_detections",
    "nms",
    "box_iou",
    "match_detections",
    "ctc_greedy_decode",
    "levenshtein",
    "segment_agreement",
]

TASKS = ("auto", "classify", "detect", "ctc", "segment", "raw")

DEFAULT_BUDGETS: dict[str, float] = {
    "classify": 0.99,
    "detect": 0.95,
    "ctc": 0.98,
    "segment": 0.98,
    "raw": 15.0,
}
"""The figure each task must reach: top-1 agreement (classify), share of FP32's detections kept (detect), share
of CTC strings equal to FP32's (ctc), share of pixels whose class agrees (segment), all fractions; worst
per-channel SQNR in dB (raw, as ``edgecnn.calibration.quantize.DEFAULT_MIN_SQNR_DB``)."""

_BUDGET_WORDING = {
    "classify": "top-1 agreement",
    "detect": "share of FP32's detections kept",
    "ctc": "share of strings agreeing",
    "segment": "share of pixels agreeing",
    "raw": "worst per-channel SQNR in dB",
}

SQNR_CAP_DB = 300.0
"""SQNR of identical outputs (and minus it for a zero reference with a non-zero or non-finite candidate)."""


@dataclass(frozen=True)
class TaskSettings:
    """How the task figures are computed. Detection follows ultralytics' ``predict`` defaults (confidence above
    0.25, class-wise NMS at IoU 0.7, at most 30000 boxes into NMS and 300 out); a FP32 detection is kept when a
    candidate detection of the same class overlaps it at IoU >= ``match_iou``. ``ctc_blank``: the blank class."""

    confidence: float = 0.25
    nms_iou: float = 0.7
    max_nms: int = 30000
    max_detections: int = 300
    match_iou: float = 0.5
    ctc_blank: int = 0


# --------------------------------------------------------------------------------------------- signal figures


def _energies(reference: np.ndarray, candidate: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if axis is None:
        reference, candidate = reference.reshape(1, -1), candidate.reshape(1, -1)
    else:
        count = reference.shape[axis]
        reference = np.moveaxis(reference, axis, 0).reshape(count, -1)
        candidate = np.moveaxis(candidate, axis, 0).reshape(count, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        signal = np.sum(reference**2, axis=1)
        noise = np.sum((reference - candidate) ** 2, axis=1)
    return signal, noise


DROP_TOLERANCE = 1e-9
"""Points of accuracy drop below which two figures count as equal: 64.4 - 63.4 is 1.000000000000007 in floating
point, and a drop equal to its budget passes."""


def drop_within_budget(drop: float, max_drop: float) -> bool:
    """The one accuracy gate (eval, assert_accuracy_drop, the labelled fallback): a top-1 drop in points passes
    when it is at most ``max_drop``, equality included."""
    return drop <= max_drop + DROP_TOLERANCE


def sqnr_from_energies(signal: float, noise: float) -> float:
    """SQNR in dB from summed energies (sum x^2, sum (x - y)^2), within +-:data:`SQNR_CAP_DB`, the convention of
    :func:`sqnr_db`; for callers that add energies up over many batches."""
    if not math.isfinite(noise):
        return -SQNR_CAP_DB
    if noise == 0:
        return SQNR_CAP_DB
    if signal == 0:
        return -SQNR_CAP_DB
    return max(-SQNR_CAP_DB, min(SQNR_CAP_DB, 10 * math.log10(signal / noise)))


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``candidate`` against ``reference`` over the whole tensor, in dB
    within +-:data:`SQNR_CAP_DB` (+cap: identical; -cap: zero reference, or NaN/Inf in the candidate)."""
    _same_shape(reference, candidate)
    signal, noise = _energies(reference, candidate, None)
    return sqnr_from_energies(float(signal[0]), float(noise[0]))


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Cosine similarity of the two tensors flattened, in float64: 1.0 when both are all zero, 0.0 when only one
    is; None when either holds NaN or Inf."""
    _same_shape(reference, candidate)
    reference = np.asarray(reference, dtype=np.float64).ravel()
    candidate = np.asarray(candidate, dtype=np.float64).ravel()
    if not (np.isfinite(reference).all() and np.isfinite(candidate).all()):
        return None
    norms = float(np.linalg.norm(reference) * np.linalg.norm(candidate))
    if norms == 0:
        return 1.0 if not reference.any() and not candidate.any() else 0.0
    return max(-1.0, min(1.0, float(reference @ candidate) / norms))


def channel_sqnr_db(reference: np.ndarray, candidate: np.ndarray, axis: int) -> tuple[float, int | None]:
    """The worst SQNR over the channels along ``axis`` (each channel's energies summed in float64 over every other
    axis) and that channel's index. Channels whose reference is all zero are skipped; when every channel is, the
    whole tensor's SQNR and None."""
    _same_shape(reference, candidate)
    signal, noise = _energies(reference, candidate, axis)
    return _worst_channel(signal, noise)


def _worst_channel(signal: np.ndarray, noise: np.ndarray) -> tuple[float, int | None]:
    """The worst per-channel SQNR from per-channel energies (channels without signal skipped), and its index."""
    present = np.flatnonzero(signal > 0)
    if not present.size:
        return sqnr_from_energies(float(signal.sum()), float(noise.sum())), None
    signal, noise = signal[present], noise[present]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = 10 * np.log10(signal / noise)
    ratios = np.where(np.isfinite(noise), np.where(noise == 0, SQNR_CAP_DB, ratios), -SQNR_CAP_DB)
    ratios = np.clip(ratios, -SQNR_CAP_DB, SQNR_CAP_DB)
    worst = int(np.argmin(ratios))
    return float(ratios[worst]), int(present[worst])


def _same_shape(reference: np.ndarray, candidate: np.ndarray) -> None:
    if np.shape(reference) != np.shape(candidate):
        raise UsageError(
            f"cannot compare outputs of shapes {list(np.shape(reference))} and {list(np.shape(candidate))}: "
            "run both models on the same inputs"
        )


# ------------------------------------------------------------------------------------------------ recognition


@dataclass(frozen=True)
class _Layout:
    """What an output is: its task, and where the task's axes are."""

    task: str
    description: str
    batch_axis: int | None
    channel_axis: int | None
    head: str = ""  # detect: "v8" [N, 4+C, A], "v8t" [N, A, 4+C], "v5" [N, A, 5+C]
    threshold: float | None = None  # segment with one channel
    notes: tuple[str, ...] = ()


_RAW_NAME_HINTS = ("embed", "feat", "hidden", "proto", "bbox", "box", "landmark", "regress", "anchor", "depth", "disp")
_CTC_NAME_HINTS = ("ctc", "logit", "char", "text", "seq")
_MAX_SEGMENT_CLASSES = 256


def _name_has(name: str, hints: Sequence[str]) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in hints)


def _in_unit_interval(values: np.ndarray) -> bool:
    return values.size > 0 and bool(np.all((values >= 0) & (values <= 1)))


def _grid_fit(anchors: int, per_cell: int) -> int:
    """How well ``anchors`` fits a YOLO head with ``per_cell`` anchors per cell over strides 8, 16 and 32 (cells =
    g * 21/16 with g = (H/8)(W/8), H and W multiples of 32): 2 for a square input, 1 for a rectangular one, 0 none."""
    if anchors % per_cell:
        return 0
    cells = anchors // per_cell
    if (cells * 16) % 21:
        return 0
    grid = cells * 16 // 21
    if grid % 16:
        return 0
    side = math.isqrt(grid)
    return 2 if side * side == grid else 1


def _detection_head(values: np.ndarray, forced: bool) -> tuple[str, str] | None:
    """("v8" | "v8t" | "v5", description) for a rank-3 YOLO-style output, or None."""
    _, first, second = values.shape
    if first == second:
        return None
    rows_first = first < second  # [N, K, A]
    fields = first if rows_first else second
    anchors = second if rows_first else first
    if fields < 5 or (not forced and anchors <= 2 * fields):
        return None
    table = values if not rows_first else np.swapaxes(values, 1, 2)  # [N, A, K]
    sizes_ok = bool(np.all(table[..., 2:4] >= 0))
    scores_ok = _in_unit_interval(table[..., 4:])
    if not forced and not (sizes_ok and scores_ok):
        return None
    if rows_first:
        return "v8", f"YOLOv8-style detection [N, 4+C, A], {fields - 4} classes, {anchors} anchors"
    v8_fit, v5_fit = _grid_fit(anchors, 1), _grid_fit(anchors, 3)
    if v5_fit != v8_fit:
        head = "v5" if v5_fit > v8_fit else "v8t"
    elif fields >= 6:
        # YOLOv5 trains class scores only on anchors that hold an object, so on the background they stay high;
        # anchor-free heads push every class score towards zero there.
        background_class = float(np.median(table[..., 5:].max(axis=-1)))
        first_score = float(np.median(table[..., 4]))
        if not forced and background_class <= 2 * first_score + 0.05:
            return None
        head = "v5"  # a named detect task reads an undecided [N, A, K] as the classic YOLOv5 layout
    else:
        head = "v8t"
    if head == "v5":
        return "v5", f"YOLOv5-style detection [N, A, 5+C], {fields - 5} classes, {anchors} anchors"
    return "v8t", f"YOLOv8-style detection [N, A, 4+C] (transposed), {fields - 4} classes, {anchors} anchors"


def _ctc_layout(values: np.ndarray, batch: int) -> tuple[int, str, tuple[str, ...]] | None:
    """(batch axis, "[T, N, C]" | "[N, T, C]", notes) from the known batch size, or None when neither axis is it."""
    first, second = values.shape[0], values.shape[1]
    if first == batch and second == batch:
        return 0, "[N, T, C]", (f"T == N == {batch}: read as [N, T, C]",)
    if first == batch:
        return 0, "[N, T, C]", ()
    if second == batch:
        return 1, "[T, N, C]", ()
    return None


def _ctc_scores_kind(values: np.ndarray) -> str:
    """ "log-softmax", "softmax" or "logits" for per-step class scores on the last axis."""
    rows = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if np.all(rows <= 1e-6):
        peak = rows.max(axis=1, keepdims=True)
        logsumexp = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
        if np.all(np.abs(logsumexp) < 1e-3):
            return "log-softmax"
    if _in_unit_interval(rows) and np.all(np.abs(rows.sum(axis=1) - 1) < 1e-3):
        return "softmax"
    return "logits"


def _segment_threshold(values: np.ndarray) -> float | None:
    """The threshold that turns a one-channel map into a mask: 0.5 for probabilities, 0 for logits (values of both
    signs); None for anything else (a depth map or an image is not a mask)."""
    if _in_unit_interval(values):
        return 0.5
    if values.size and float(values.min()) < 0 < float(values.max()):
        return 0.0
    return None


def _layout(name: str, values: np.ndarray, batch: int, task: str) -> _Layout:
    """The layout of one output (``values``: FP32, one run of ``batch`` samples), recognized (``task="auto"``) or
    as the task named; a one-line UsageError when a named task cannot read this shape."""
    shape = tuple(values.shape)
    rank = len(shape)
    default_channel = 1 if rank >= 2 else None
    batch_axis = 0 if rank >= 1 and shape[0] == batch else None
    raw = _Layout("raw", "raw", batch_axis, default_channel)
    floating = np.issubdtype(values.dtype, np.floating)
    finite = floating and bool(np.isfinite(values).all())
    if task == "raw":
        return raw
    if task == "auto":
        if not finite or batch_axis is None and rank != 3 or _name_has(name, _RAW_NAME_HINTS):
            return raw
    shape_text = "x".join(str(d) for d in shape) or "a scalar"

    def refuse(expected: str) -> _Layout:
        if task == "auto":
            return raw
        raise UsageError(
            f"output {name!r} ({shape_text}) cannot be read as {task}: {expected}; "
            f"name the task per output (--task {name}=raw) or use --task auto"
        )

    if task in ("auto", "classify"):
        if rank >= 2 and batch_axis == 0 and shape[1] >= 2 and all(d == 1 for d in shape[2:]):
            return _Layout("classify", f"classifier scores over {shape[1]} classes", 0, 1)
        if task == "classify":
            return refuse(f"a classifier's scores are [N, K] (or [N, K, 1, 1]) with N = the batch {batch}")
    if task in ("auto", "segment"):
        if rank == 4 and batch_axis == 0 and shape[2] >= 8 and shape[3] >= 8:
            channels = shape[1]
            if channels == 1:
                threshold = _segment_threshold(values)
                if threshold is not None:
                    kind = "probability" if threshold == 0.5 else "logit"
                    return _Layout(
                        "segment", f"one-channel {kind} mask thresholded at {threshold:g}", 0, 1, threshold=threshold
                    )
                if task == "segment":
                    return _Layout("segment", "one-channel mask thresholded at 0", 0, 1, threshold=0.0)
            elif task == "segment" or (channels != 3 and channels <= _MAX_SEGMENT_CLASSES):
                return _Layout("segment", f"segmentation map over {channels} classes", 0, 1)
        if task == "segment":
            return refuse(f"a segmentation map is [N, C, H, W] with N = the batch {batch} and H, W >= 8")
    if task in ("auto", "detect"):
        if rank == 3 and batch_axis == 0:
            head = _detection_head(values, forced=task == "detect")
            if head is not None:
                notes = ()
                if task == "detect":
                    table = values if head[0] != "v8" else np.swapaxes(values, 1, 2)
                    if not _in_unit_interval(table[..., 4:]):
                        notes = ("score columns are not all within [0, 1]: the 0.25 confidence threshold may not fit",)
                return _Layout("detect", head[1], 0, 1 if head[0] == "v8" else 2, head=head[0], notes=notes)
        if task == "detect":
            return refuse(f"a YOLO head is [N, 4+C, A], [N, A, 4+C] or [N, A, 5+C] with N = the batch {batch}")
    if task in ("auto", "ctc"):
        if rank == 3 and shape[2] >= 2:
            found = _ctc_layout(values, batch)
            if found is not None:
                axis, words, notes = found
                kind = _ctc_scores_kind(values) if floating else "logits"
                sequence_first = axis == 1
                if task == "ctc" or kind != "logits" or sequence_first or _name_has(name, _CTC_NAME_HINTS):
                    return _Layout("ctc", f"CTC scores {words} ({kind}), {shape[2]} classes", axis, 2, notes=notes)
        if task == "ctc":
            return refuse(f"CTC scores are [T, N, C] or [N, T, C] with N = the batch {batch}")
    return raw


def recognize(name: str, fp32: np.ndarray, batch: int) -> str:
    """The task an output serves, from its shape and an FP32 sample of its values (one run of ``batch`` samples):

    - non-float, non-finite, or named like features/embeddings/boxes/depth (``_RAW_NAME_HINTS``): ``raw``;
    - ``[N, K]`` (or ``[N, K, 1, 1]``), K >= 2: ``classify``;
    - ``[N, C, H, W]`` with H, W >= 8: ``segment`` when C is 2 or 4..256 (3 channels look like an image), or
      C = 1 holding probabilities (in [0, 1], thresholded at 0.5) or logits (both signs, thresholded at 0);
    - ``[N, 4+C, A]`` with A > 2(4+C), box sizes >= 0 and scores in [0, 1]: ``detect`` (YOLOv8); ``[N, A, K]``
      likewise is YOLOv8 transposed ``[N, A, 4+C]`` or YOLOv5 ``[N, A, 5+C]``, told apart by the anchor count
      (1 or 3 anchors per cell over strides 8/16/32) and, where both fit, by background class scores (YOLOv5's
      stay high); otherwise not a detection;
    - otherwise ``[T, N, C]`` / ``[N, T, C]`` (N from ``batch``), C >= 2: ``ctc`` when the rows are log-softmax or
      softmax, when the layout is sequence-first, or when the name says so (ctc, logits...);
    - anything else: ``raw``. A detector's other rank-4 outputs (mask prototypes) are raw too (see :func:`compare`).
    """
    if not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a whole number >= 1, got {batch!r}")
    return _layout(name, np.asarray(fp32), batch, "auto").task


# ---------------------------------------------------------------------------------------------------- classify


def classify_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | int]:
    """Top-1 agreement (same argmax) and top-5 agreement (FP32's top-1 among the candidate's top min(5, K)) of
    ``[N, K, ...]`` scores (trailing dimensions of size 1 are dropped)."""
    reference = np.asarray(reference).reshape(len(reference), -1)
    candidate = np.asarray(candidate).reshape(len(candidate), -1)
    classes = reference.shape[1]
    top = min(5, classes)
    expected = reference.argmax(axis=1)
    candidate_top = np.argsort(-candidate, axis=1, kind="stable")[:, :top]
    return {
        "samples": len(reference),
        "classes": classes,
        "top1_agreement": float(np.mean(candidate.argmax(axis=1) == expected)) if len(reference) else 0.0,
        "top5_agreement": float(np.mean((candidate_top == expected[:, None]).any(axis=1))) if len(reference) else 0.0,
    }


# ------------------------------------------------------------------------------------------------------ detect


@dataclass
class Detections:
    """One image's detections after NMS, best first: ``boxes`` [D, 4] (x1, y1, x2, y2), ``scores`` [D],
    ``classes`` [D]."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [D, 4] and [E, 4] xyxy boxes (0 where the union is empty)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    width = np.clip(
        np.minimum(boxes[:, None, 2], others[None, :, 2]) - np.maximum(boxes[:, None, 0], others[:, 0]), 0, None
    )
    height = np.clip(
        np.minimum(boxes[:, None, 3], others[None, :, 3]) - np.maximum(boxes[:, None, 1], others[:, 1]), 0, None
    )
    overlap = width * height
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    other_area = np.clip(others[:, 2] - others[:, 0], 0, None) * np.clip(others[:, 3] - others[:, 1], 0, None)
    union = area[:, None] + other_area[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_keep: int | None = None
) -> np.ndarray:
    """Class-wise greedy non-maximum suppression: indices of the boxes kept, best score first (ties in input
    order). A box is dropped when a kept box of its class overlaps it at IoU above ``iou`` (torchvision's
    ``batched_nms``). Kept boxes come out in score order, so stopping at ``max_keep`` gives the first
    ``max_keep`` of the full result."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    boxes = np.asarray(boxes, dtype=np.float64)[order]
    classes = np.asarray(classes)[order]
    alive = np.ones(len(order), dtype=bool)
    kept: list[int] = []
    for position in range(len(order)):
        if not alive[position]:
            continue
        kept.append(int(order[position]))
        if max_keep is not None and len(kept) >= max_keep:
            break
        rest = np.flatnonzero(alive[position + 1 :]) + position + 1
        if rest.size:
            same = rest[classes[rest] == classes[position]]
            if same.size:
                overlaps = box_iou(boxes[position : position + 1], boxes[same])[0]
                alive[same[overlaps > iou]] = False
    return np.asarray(kept, dtype=np.int64)


def decode_detections(output: np.ndarray, head: str, settings: TaskSettings = TaskSettings()) -> list[Detections]:
    """Detections per image of a YOLO-style output as ultralytics' ``non_max_suppression`` finds them: ``head``
    "v8" ``[N, 4+C, A]``, "v8t" ``[N, A, 4+C]`` or "v5" ``[N, A, 5+C]`` (confidence = objectness x class score);
    boxes (cx, cy, w, h) to xyxy; confidence above ``settings.confidence``; best class only; class-wise NMS."""
    if head not in ("v8", "v8t", "v5"):
        raise UsageError(f"detection head {head!r} is not one of v8, v8t, v5")
    images = []
    for image in np.asarray(output):
        rows = np.asarray(image.T if head == "v8" else image, dtype=np.float64)
        if head == "v5":
            class_scores = rows[:, 5:] * rows[:, 4:5]
        else:
            class_scores = rows[:, 4:]
        classes = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(rows)), classes]
        chosen = np.flatnonzero(scores > settings.confidence)
        if chosen.size > settings.max_nms:
            chosen = chosen[np.argsort(-scores[chosen], kind="stable")[: settings.max_nms]]
        centre, size = rows[chosen, 0:2], rows[chosen, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        keep = nms(boxes, scores[chosen], classes[chosen], settings.nms_iou, settings.max_detections)
        images.append(Detections(boxes[keep], scores[chosen][keep], classes[chosen][keep]))
    return images


def match_detections(reference: Detections, candidate: Detections, iou: float = 0.5) -> int:
    """How many of ``reference``'s detections a candidate detection of the same class overlaps at IoU >= ``iou``,
    each candidate used once: reference detections in score order take their best-overlapping free candidate."""
    if not len(reference) or not len(candidate):
        return 0
    overlaps = box_iou(reference.boxes, candidate.boxes)
    overlaps[reference.classes[:, None] != candidate.classes[None, :]] = -1.0
    free = np.ones(len(candidate), dtype=bool)
    matched = 0
    for row in np.argsort(-reference.scores, kind="stable"):
        choices = np.where(free, overlaps[row], -1.0)
        best = int(choices.argmax())
        if choices[best] >= iou:
            free[best] = False
            matched += 1
    return matched


def _detect_metrics(reference: np.ndarray, candidate: np.ndarray, head: str, settings: TaskSettings) -> dict[str, Any]:
    expected = decode_detections(reference, head, settings)
    produced = decode_detections(candidate, head, settings)
    matched = sum(match_detections(e, p, settings.match_iou) for e, p in zip(expected, produced))
    fp32_count = sum(len(e) for e in expected)
    candidate_count = sum(len(p) for p in produced)
    return {
        "images": len(expected),
        "fp32_detections": fp32_count,
        "candidate_detections": candidate_count,
        "matched": matched,
        "kept": matched / fp32_count if fp32_count else None,
        "extra": candidate_count - matched,
        "extra_per_image": (candidate_count - matched) / len(expected) if expected else 0.0,
    }


# --------------------------------------------------------------------------------------------------------- ctc


def ctc_greedy_decode(scores: np.ndarray, blank: int = 0) -> list[list[int]]:
    """Greedy CTC decoding of ``[N, T, C]`` scores: the best class per step, repeats collapsed, blanks dropped."""
    best = np.asarray(scores).argmax(axis=-1)
    sequences = []
    for steps in best:
        changed = np.ones(len(steps), dtype=bool)
        changed[1:] = steps[1:] != steps[:-1]
        sequences.append([int(s) for s in steps[changed] if s != blank])
    return sequences


def levenshtein(source: Sequence[int], target: Sequence[int]) -> int:
    """Edit distance (insertions, deletions, substitutions, each 1) between two sequences."""
    previous = list(range(len(target) + 1))
    for i, item in enumerate(source, start=1):
        current = [i] + [0] * len(target)
        for j, other in enumerate(target, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item != other))
        previous = current
    return previous[-1]


def _ctc_metrics(reference: np.ndarray, candidate: np.ndarray, blank: int) -> dict[str, Any]:
    expected = ctc_greedy_decode(reference, blank)
    produced = ctc_greedy_decode(candidate, blank)
    characters = sum(len(e) for e in expected)
    edits = sum(levenshtein(e, p) for e, p in zip(expected, produced))
    return {
        "sequences": len(expected),
        "string_agreement": float(np.mean([e == p for e, p in zip(expected, produced)])) if expected else 0.0,
        "cer": edits / characters if characters else None,
        "fp32_characters": characters,
        "edits": edits,
    }


# ----------------------------------------------------------------------------------------------------- segment


def segment_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | int]:
    """Pixel agreement and mIoU of two label maps (any shape, same classes): IoU per class pooled over every pixel,
    averaged over the classes present in either map."""
    reference, candidate = np.asarray(reference).ravel(), np.asarray(candidate).ravel()
    classes = np.union1d(reference, candidate)
    ious = []
    for value in classes:
        in_reference, in_candidate = reference == value, candidate == value
        ious.append(np.count_nonzero(in_reference & in_candidate) / np.count_nonzero(in_reference | in_candidate))
    return {
        "pixels": int(reference.size),
        "classes": int(classes.size),
        "pixel_agreement": float(np.mean(reference == candidate)) if reference.size else 0.0,
        "miou": float(np.mean(ious)) if ious else 0.0,
    }


def _labels(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is None:
        return np.asarray(scores).argmax(axis=1)
    return (np.asarray(scores)[:, 0] > threshold).astype(np.int64)


# ------------------------------------------------------------------------------------------------------ report


@dataclass
class OutputFidelity:
    """One output, candidate against FP32. ``metric``/``value`` are the figure judged against ``budget``
    (``worst_channel_sqnr_db`` for raw outputs and for tasks with nothing to agree on); ``metrics`` holds the
    task's figures; ``channel_axis`` is in the output's own layout."""

    name: str
    shape: tuple[int, ...]
    task: str
    layout: str
    samples: int | None
    sqnr_db: float
    cosine: float | None
    max_abs_error: float
    finite: bool
    worst_channel_sqnr_db: float | None
    channel_axis: int | None
    worst_channel: int | None
    metrics: dict[str, Any]
    metric: str
    value: float | None
    budget: float
    met: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class FidelityReport:
    """Every output of a candidate (``label``: INT8, FP8, FP16...) against FP32 on ``samples`` inputs. ``misses``:
    one line per output that missed its budget, for a loud warning (or an error with ``--strict``)."""

    label: str
    samples: int | None
    budgets: dict[str, float]
    outputs: list[OutputFidelity]
    misses: list[str]
    notes: list[str]

    @property
    def met(self) -> bool:
        return not self.misses

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (floats to 5 significant digits, no NaN or infinity), for the manifest."""
        data = asdict(self)
        data["met"] = self.met
        data["outputs"] = {o.pop("name"): o for o in data["outputs"]}
        return _rounded(data)

    def require_met(self) -> None:
        """Raise a one-line EdgecnnError naming the misses (``--strict``)."""
        if self.misses:
            more = f" (and {len(self.misses) - 1} more)" if len(self.misses) > 1 else ""
            raise EdgecnnError(f"{self.label} misses its fidelity budget: {self.misses[0]}{more}")


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.5g}") if math.isfinite(value) else None
    return value


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _judge(
    layout: _Layout,
    metrics: dict[str, Any],
    worst_channel: tuple[float, int | None],
    budgets: Mapping[str, float],
    samples: int,
) -> tuple[str, float | None, float, str, list[str]]:
    """(metric name, value, budget, the miss line's text, notes) for one output."""
    task = layout.task
    notes: list[str] = []
    fallback = None
    if task == "detect" and metrics["kept"] is None:
        fallback = "FP32 detects nothing above the confidence threshold on these samples"
    if task == "ctc" and metrics["cer"] is None:
        fallback = "FP32 decodes every sequence to an empty string on these samples"
    if task == "raw" or fallback:
        budget = budgets["raw"]
        worst, channel = worst_channel
        where = f" (channel {channel} of axis {layout.channel_axis})" if channel is not None else ""
        text = f"worst per-channel SQNR {worst:.1f} dB{where}, budget {budget:g} dB"
        if fallback:
            notes.append(f"{fallback}: no {task} agreement to measure, judged by worst per-channel SQNR instead")
            text = f"{text} ({fallback})"
        return "worst_channel_sqnr_db", worst, budget, text, notes
    budget = budgets[task]
    if task == "classify":
        value = metrics["top1_agreement"]
        text = (
            f"top-1 agreement with FP32 {_percent(value)} on {samples} samples "
            f"(top-5 {_percent(metrics['top5_agreement'])}), budget {_percent(budget)}"
        )
        return "top1_agreement", value, budget, text, notes
    if task == "detect":
        value = metrics["kept"]
        text = (
            f"{_percent(value)} of FP32's {metrics['fp32_detections']} detections kept (same class, IoU >= 0.5), "
            f"{metrics['extra']} extra, budget {_percent(budget)}"
        )
        return "kept", value, budget, text, notes
    if task == "ctc":
        value = metrics["string_agreement"]
        text = (
            f"{_percent(value)} of {metrics['sequences']} strings agree with FP32 (CER {_percent(metrics['cer'])}), "
            f"budget {_percent(budget)}"
        )
        return "string_agreement", value, budget, text, notes
    value = metrics["pixel_agreement"]
    text = f"{_percent(value)} of pixels agree with FP32 (mIoU {metrics['miou']:.3f}), budget {_percent(budget)}"
    return "pixel_agreement", value, budget, text, notes


def _runs(name: str, value: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    runs = [np.asarray(v) for v in value]
    if not runs:
        raise UsageError(f"output {name!r} has no values: give at least one run's output")
    return runs


def _join(runs: list[np.ndarray], axis: int | None, samples: int | None) -> np.ndarray:
    if runs[0].ndim == 0:
        return np.stack(runs)
    joined = np.concatenate(runs, axis=axis if axis is not None else 0)
    if samples is not None and axis is not None:
        joined = np.take(joined, np.arange(min(samples, joined.shape[axis])), axis=axis)
    return joined


def _check_budgets(budgets: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_BUDGETS)
    for task, value in (budgets or {}).items():
        if task not in DEFAULT_BUDGETS:
            raise UsageError(f"no budget for {task!r}: budgets are for {', '.join(DEFAULT_BUDGETS)}")
        merged[task] = float(value)
    return merged


CHUNK_ELEMENTS = 2**22
"""Elements per chunk when :func:`compare` sums energies in float64: a check set's outputs (100 samples of a
640-pixel YOLOv8 head are 70 M values) never get whole float64 copies."""


def _signal_figures(
    reference: np.ndarray, candidate: np.ndarray, channel_axis: int | None, batch_axis: int | None
) -> dict[str, Any]:
    """What :func:`sqnr_db`, :func:`cosine` and :func:`channel_sqnr_db` give on the whole tensors, plus max abs
    error and finiteness, summed chunk by chunk along the batch axis (or the first axis)."""
    if reference.ndim == 0:
        reference, candidate = reference.reshape(1), candidate.reshape(1)
    along = batch_axis if batch_axis is not None else 0
    step = max(1, CHUNK_ELEMENTS // max(1, reference.size // max(1, reference.shape[along])))
    channels = reference.shape[channel_axis] if channel_axis is not None else 1
    channel_signal, channel_noise = np.zeros(channels), np.zeros(channels)
    dot = candidate_energy = 0.0
    max_abs, finite, reference_finite = 0.0, True, True
    for start in range(0, reference.shape[along], step):
        chunk = (slice(None),) * along + (slice(start, start + step),)
        expected = np.asarray(reference[chunk], dtype=np.float64)
        produced = np.asarray(candidate[chunk], dtype=np.float64)
        finite &= bool(np.isfinite(produced).all())
        reference_finite &= bool(np.isfinite(expected).all())
        signal, noise = _energies(expected, produced, channel_axis)
        channel_signal += signal
        channel_noise += noise
        with np.errstate(over="ignore", invalid="ignore"):
            dot += float(np.sum(expected * produced))
            candidate_energy += float(np.sum(produced**2))
            if expected.size:
                max_abs = max(max_abs, float(np.max(np.abs(expected - produced))))
    worst = _worst_channel(channel_signal, channel_noise) if channel_axis is not None else None
    reference_energy = float(channel_signal.sum())
    norms = math.sqrt(reference_energy) * math.sqrt(candidate_energy)
    if not (finite and reference_finite):
        similarity = None
    elif norms == 0:
        similarity = 1.0 if reference_energy == 0 and candidate_energy == 0 else 0.0
    else:
        similarity = max(-1.0, min(1.0, dot / norms))
    return {
        "sqnr_db": sqnr_from_energies(reference_energy, float(channel_noise.sum())),
        "cosine": similarity,
        "max_abs_error": max_abs if math.isfinite(max_abs) else float("inf"),
        "finite": finite,
        "reference_finite": reference_finite,
        "worst_channel": worst or (sqnr_from_energies(reference_energy, float(channel_noise.sum())), None),
    }


def compare(
    reference: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    candidate: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    *,
    batch: int,
    samples: int | None = None,
    task: str | Mapping[str, str] = "auto",
    budgets: Mapping[str, float] | None = None,
    settings: TaskSettings = TaskSettings(),
    label: str = "candidate",
) -> FidelityReport:
    """Compare every output of ``candidate`` with FP32's ``reference`` (output name -> one run's array, or a list
    of runs' arrays, each holding ``batch`` samples; runs are joined along the batch axis and cut to ``samples``,
    dropping the copies a padded last batch repeats).

    ``task``: one of :data:`TASKS` for every output, or output name -> task (outputs not named: ``auto``). A task
    named for an output whose shape cannot carry it is a UsageError. ``budgets`` replace :data:`DEFAULT_BUDGETS`
    task by task. ``label`` names the candidate in the report's lines. Where a detection head is recognized, the
    model's other ``segment``-looking outputs (YOLOv8-seg's mask prototypes) are judged as raw."""
    if not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a whole number >= 1, got {batch!r}")
    if samples is not None and samples < 1:
        raise UsageError(f"samples must be at least 1, got {samples!r}")
    tasks = _check_tasks(task, reference)
    merged_budgets = _check_budgets(budgets)
    missing = [name for name in reference if name not in candidate]
    if missing:
        raise UsageError(f"the {label} model has no output {missing[0]!r}: compare models with the same outputs")
    prepared = {}
    for name in reference:
        expected, produced = _runs(name, reference[name]), _runs(name, candidate[name])
        if len(expected) != len(produced):
            raise UsageError(f"output {name!r}: {len(expected)} FP32 runs against {len(produced)} {label} runs")
        for e, p in zip(expected, produced):
            _same_shape(e, p)
        prepared[name] = (expected, produced, _layout(name, expected[0], batch, tasks.get(name, "auto")))
    has_detector = any(layout.task == "detect" for _, _, layout in prepared.values())
    outputs, misses, notes = [], [], []
    for name, (expected, produced, layout) in prepared.items():
        if has_detector and layout.task == "segment" and tasks.get(name, "auto") == "auto":
            layout = _Layout("raw", "raw (beside a detection head: mask prototypes)", 0, 1)
        result, miss = _compare_output(name, expected, produced, layout, samples, merged_budgets, settings, label)
        outputs.append(result)
        notes += [f"{name}: {note}" for note in result.notes]
        if miss:
            misses.append(miss)
    counted = [o.samples for o in outputs if o.samples is not None]
    return FidelityReport(label, counted[0] if counted else None, merged_budgets, outputs, misses, notes)


def _compare_output(
    name: str,
    expected_runs: list[np.ndarray],
    produced_runs: list[np.ndarray],
    layout: _Layout,
    samples: int | None,
    budgets: Mapping[str, float],
    settings: TaskSettings,
    label: str,
) -> tuple[OutputFidelity, str | None]:
    """One output's figures, and its miss line (None when it meets its budget)."""
    expected = _join(expected_runs, layout.batch_axis, samples)
    produced = _join(produced_runs, layout.batch_axis, samples)
    count = expected.shape[layout.batch_axis] if layout.batch_axis is not None else None
    channel_axis = layout.channel_axis if layout.channel_axis is not None and expected.ndim > 1 else None
    figures = _signal_figures(expected, produced, channel_axis, layout.batch_axis)
    finite, reference_finite = figures["finite"], figures["reference_finite"]
    worst = figures["worst_channel"]
    notes = list(layout.notes)
    metrics: dict[str, Any] = {}
    miss = None
    if reference_finite and finite:
        if layout.task == "classify":
            metrics = classify_agreement(expected, produced)
        elif layout.task == "detect":
            metrics = _detect_metrics(expected, produced, layout.head, settings)
        elif layout.task == "ctc":
            if layout.batch_axis == 1:
                expected, produced = np.swapaxes(expected, 0, 1), np.swapaxes(produced, 0, 1)
            metrics = _ctc_metrics(expected, produced, settings.ctc_blank)
        elif layout.task == "segment":
            metrics = segment_agreement(_labels(expected, layout.threshold), _labels(produced, layout.threshold))
        metric, value, budget, text, judged_notes = _judge(layout, metrics, worst, budgets, count)
        notes += judged_notes
        met = value >= budget
        if not met:
            miss = f"{name} ({layout.task}): {text}"
    else:
        metric, value, budget, met = "worst_channel_sqnr_db", None, budgets["raw"], False
        if reference_finite:
            miss = f"{name} ({layout.task}): the {label} output has NaN or Inf values"
        else:
            miss = f"{name} ({layout.task}): FP32's own output has NaN or Inf values, nothing to compare against"
    result = OutputFidelity(
        name=name,
        shape=tuple(int(d) for d in expected_runs[0].shape),
        task=layout.task,
        layout=layout.description,
        samples=count,
        sqnr_db=figures["sqnr_db"],
        cosine=figures["cosine"],
        max_abs_error=figures["max_abs_error"],
        finite=finite,
        worst_channel_sqnr_db=worst[0],
        channel_axis=channel_axis,
        worst_channel=worst[1],
        metrics=metrics,
        metric=metric,
        value=value,
        budget=budget,
        met=met,
        notes=notes,
    )
    return result, miss


def _check_tasks(task: str | Mapping[str, str], reference: Mapping[str, Any]) -> dict[str, str]:
    if isinstance(task, str):
        if task not in TASKS:
            raise UsageError(f"task {task!r} is not one of {', '.join(TASKS)}")
        return {name: task for name in reference}
    for name, value in task.items():
        if name not in reference:
            raise UsageError(f"--task names output {name!r}, which the model does not have: {', '.join(reference)}")
        if value not in TASKS:
            raise UsageError(f"task {value!r} for output {name!r} is not one of {', '.join(TASKS)}")
    return dict(task)


# ----------------------------------------------------------------------------------------------------- parsing


def parse_budgets(text: str | None) -> dict[str, float]:
    """``"detect=0.9,ctc=95%,raw=20"`` -> {task: budget}: fractions (or percentages) for classify, detect, ctc and
    segment, dB for raw. Only the tasks named; :func:`compare` takes the defaults for the rest."""
    budgets: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        task, equals, number = (piece.strip() for piece in part.partition("="))
        if not equals or task not in DEFAULT_BUDGETS:
            raise UsageError(
                f"budget {part.strip()!r} is not task=value with a task among {', '.join(DEFAULT_BUDGETS)} "
                "(for example --budget detect=0.9,ctc=95%)"
            )
        match = re.fullmatch(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(%?)", number)
        if match is None:
            raise UsageError(f"budget {part.strip()!r}: {number!r} is not a number (the {_BUDGET_WORDING[task]})")
        value = float(match.group(1)) / (100 if match.group(2) else 1)
        if task == "raw":
            if match.group(2):
                raise UsageError(f"budget {part.strip()!r}: the raw budget is a worst per-channel SQNR in dB, not %")
        elif not 0 <= value <= 1:
            raise UsageError(
                f"budget {part.strip()!r}: the {_BUDGET_WORDING[task]} is a fraction from 0 to 1 (or 0% to 100%)"
            )
        budgets[task] = value
    return budgets


def parse_task(text: str | None) -> str | dict[str, str]:
    """``"detect"`` (every output) or ``"output0=detect,output1=raw"`` (per output; the rest ``auto``)."""
    text = (text or "auto").strip()
    if "=" not in text:
        if text not in TASKS:
            raise UsageError(f"--task {text!r} is not one of {', '.join(TASKS)} (or output=task,...)")
        return text
    tasks: dict[str, str] = {}
    for part in text.split(","):
        name, equals, value = (piece.strip() for piece in part.rpartition("="))
        if not equals or not name or value not in TASKS:
            raise UsageError(
                f"--task {part.strip()!r} is not output=task with a task among {', '.join(TASKS)} "
                "(for example --task output0=detect)"
            )
        tasks[name] = value
    return tasks
