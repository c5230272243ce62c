"""Labelled data and task metrics for the trained task models in ``tests/data/task_models``.

Three vision tasks built from real data only: scikit-learn's handwritten digits (1,797 real 8x8 scans,
upscaled) pasted on crops of scikit-learn's two sample photographs (china.jpg and flower.jpg, 427x640):

- ``detection``: 96x96 photo crops with 1-4 digits pasted at 14-34 px; labels are tight boxes (x1, y1, x2, y2
  in input pixels, around the ink) and the digit as class (10 classes). The model is a YOLOv8-style
  anchor-free detector whose output ``output0`` is [N, 4 + 10, A]: (cx, cy, w, h) in input pixels, then the
  10 sigmoid class scores.
- ``recognition``: 32x128 text lines of 4-8 digits side by side with jitter, on photo crops or flat grey;
  labels are the digit strings. The model is a CRNN (convolutions + BiLSTM) trained with CTC; its output
  ``log_probs`` is [T, N, 11] log-softmax (PyTorch's CTC layout), blank = 0, class ``k`` = digit ``k - 1``.
- ``segmentation``: 64x64 photo crops with filled ellipses, rectangles and digit glyphs pasted; labels are
  per-pixel classes (0 background, 1 ellipse, 2 rectangle, 3 digit). The model is a small U-Net whose
  output ``logits`` is [N, 4, 64, 64].

Held out by construction: the digit glyphs of each split come from the fixed digits split of
:func:`edgecnn.datasets.digits_split_indices` (``train``, ``calibration``, ``eval`` = its ``test`` split),
and the photo backgrounds of ``eval`` come from the right-hand columns of both photos (x >= 464), those of
``train`` and ``calibration`` from the left (x < 464). Every generator is a pure function of (task, split,
seed, count): the same call gives the same arrays on every machine.

Every generator returns float32 NCHW inputs already preprocessed as the model expects (:data:`TASKS` holds
each task's ``preprocessing``: RGB channel order, pixels scaled by 1/255, then ``(x - mean) / std``), the
uint8 NHWC pixels they came from, and the labels. Metrics are plain numpy: mAP@0.5 (all-point interpolated
average precision, mean over classes) with recall and precision at score 0.25 for detection, exact match
and character error rate for recognition, mean IoU for segmentation.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "agreement",
    "DETECTION_CLASSES",
    "MODELS_DIR",
    "RECOGNITION_BLANK",
    "SEGMENTATION_CLASSES",
    "SPLITS",
    "TASKS",
    "DetectionScenes",
    "Detections",
    "SegmentationScenes",
    "Task",
    "TextLines",
    "average_precision",
    "box_iou",
    "character_error_rate",
    "ctc_greedy_decode",
    "decode_detections",
    "detection_agreement",
    "detection_metrics",
    "detection_scenes",
    "edit_distance",
    "eval_set",
    "evaluate_onnx",
    "load_eval_set",
    "load_index",
    "non_max_suppression",
    "preprocess",
    "recognition_metrics",
    "run_onnx",
    "segmentation_metrics",
    "segmentation_scenes",
    "text_lines",
    "write_calibration",
    "write_eval_set",
]

MODELS_DIR = Path(__file__).resolve().parent / "data" / "task_models"
SPLITS = ("train", "calibration", "eval")
"""``train`` and ``calibration`` draw glyphs from the digits train/calibration splits and backgrounds from
the photos' left columns; ``eval`` draws glyphs from the digits test split and backgrounds from the right."""

PHOTO_SPLIT_COLUMN = 464
DETECTION_SIZE = 96
DETECTION_CLASSES = tuple(str(digit) for digit in range(10))
TEXT_HEIGHT, TEXT_WIDTH = 32, 128
RECOGNITION_BLANK = 0
RECOGNITION_ALPHABET = "0123456789"
"""Class ``k`` of the recognizer's output is ``RECOGNITION_ALPHABET[k - 1]``; class 0 is the CTC blank."""
SEGMENTATION_SIZE = 64
SEGMENTATION_CLASSES = ("background", "ellipse", "rectangle", "digit")

SCORE_THRESHOLD = 0.25
"""Operating point of the detector (Ultralytics' ``predict`` default): recall and precision are counted here."""
MAP_SCORE_THRESHOLD = 0.001
"""Detections kept for mAP (Ultralytics' ``val`` default): the whole precision-recall curve."""
NMS_IOU = 0.5
MAX_DETECTIONS = 100
INK_THRESHOLD = 0.3
"""A glyph pixel is ink (inside the box, in the digit mask) where its upscaled 0..1 level is at least this."""

_TASK_CODES = {"detection": 1, "recognition": 2, "segmentation": 3}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- sources: photos and digit glyphs


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(np.ascontiguousarray(image, dtype=np.uint8) for image in load_sample_images().images)


@functools.cache
def _glyphs(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's digit scans as float32 8x8 ink levels in [0, 1] and their int64 labels."""
    from sklearn.datasets import load_digits

    from edgecnn.datasets import digits_split_indices

    bunch = load_digits()
    indices = digits_split_indices()["test" if split == "eval" else split]
    return (bunch.images[indices] / 16.0).astype(np.float32), bunch.target[indices].astype(np.int64)


def _rng(task: str, split: str, seed: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return np.random.default_rng((_TASK_CODES[task], SPLITS.index(split), int(seed)))


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float32 2-D array or a uint8 HxWx3 image, with PIL."""
    from PIL import Image

    if array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).resize((width, height), Image.BILINEAR))
    return np.asarray(Image.fromarray(array, mode="F").resize((width, height), Image.BILINEAR))


def _photo_crop(rng: np.random.Generator, height: int, width: int, split: str) -> np.ndarray:
    """A uint8 HxWx3 crop of one photo, zoomed out by up to 2x and flipped at random, from the split's columns."""
    photo = _photos()[rng.integers(len(_photos()))]
    low, high = (PHOTO_SPLIT_COLUMN, photo.shape[1]) if split == "eval" else (0, PHOTO_SPLIT_COLUMN)
    zoom = rng.uniform(1.0, min(2.0, (high - low) / width, photo.shape[0] / height))
    crop_height, crop_width = int(height * zoom), int(width * zoom)
    top = rng.integers(0, photo.shape[0] - crop_height + 1)
    left = rng.integers(low, high - crop_width + 1)
    crop = _resize(photo[top : top + crop_height, left : left + crop_width], height, width)
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def _ink_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """Dark ink on a light background, light ink on a dark one, with a random tint."""
    if background.mean() > 128:
        return rng.uniform(0, 70, 3).astype(np.float32)
    return rng.uniform(185, 255, 3).astype(np.float32)


def _blend(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray, top: int, left: int) -> None:
    """Paint ``colour`` into the float32 HxWx3 ``canvas`` with per-pixel opacity ``alpha``, in place."""
    height, width = alpha.shape
    region = canvas[top : top + height, left : left + width]
    region *= 1.0 - alpha[..., None]
    region += alpha[..., None] * colour


def _glyph_alpha(glyphs: np.ndarray, index: int, height: int, width: int) -> np.ndarray:
    return np.clip(_resize(glyphs[index], height, width), 0.0, 1.0)


def _overlaps(box: Sequence[int], placed: list[Sequence[int]], margin: int) -> bool:
    top, left, bottom, right = box
    return any(
        top < other_bottom + margin
        and other_top < bottom + margin
        and left < other_right + margin
        and other_left < right + margin
        for other_top, other_left, other_bottom, other_right in placed
    )


# ---------------------------------------------------------------- preprocessing


def preprocess(pixels: np.ndarray, task: str) -> np.ndarray:
    """uint8 NHWC RGB pixels -> the float32 NCHW input of ``task``'s model (``TASKS[task].preprocessing``)."""
    settings = TASKS[task].preprocessing
    images = pixels.astype(np.float32) * np.float32(settings["scale"])
    images = (images - np.asarray(settings["mean"], np.float32)) / np.asarray(settings["std"], np.float32)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------- detection


@dataclass(frozen=True)
class DetectionScenes:
    """``images``: float32 [N, 3, 96, 96] model inputs; ``pixels``: their uint8 [N, 96, 96, 3] RGB source;
    ``boxes[i]``: float32 [k, 4] (x1, y1, x2, y2) in input pixels; ``classes[i]``: int64 [k] digits."""

    images: np.ndarray
    pixels: np.ndarray
    boxes: tuple[np.ndarray, ...]
    classes: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.images)


def detection_scenes(count: int, split: str = "eval", seed: int = 0) -> DetectionScenes:
    """``count`` 96x96 photo crops with 1-4 non-overlapping digits each (14-34 px high), with their boxes."""
    rng = _rng("detection", split, seed)
    glyphs, labels = _glyphs(split)
    pixels, all_boxes, all_classes = [], [], []
    for _ in range(count):
        canvas = _photo_crop(rng, DETECTION_SIZE, DETECTION_SIZE, split).astype(np.float32)
        placed: list[tuple[int, int, int, int]] = []
        boxes, classes = [], []
        for _ in range(rng.integers(1, 5)):
            height = int(rng.integers(14, 35))
            width = max(8, int(round(height * rng.uniform(0.7, 1.0))))
            for _attempt in range(20):
                top = int(rng.integers(0, DETECTION_SIZE - height + 1))
                left = int(rng.integers(0, DETECTION_SIZE - width + 1))
                if not _overlaps((top, left, top + height, left + width), placed, 2):
                    break
            else:
                continue
            index = int(rng.integers(len(glyphs)))
            alpha = _glyph_alpha(glyphs, index, height, width)
            rows = np.flatnonzero((alpha >= INK_THRESHOLD).any(1))
            cols = np.flatnonzero((alpha >= INK_THRESHOLD).any(0))
            if len(rows) == 0:
                continue
            _blend(canvas, alpha, _ink_colour(rng, canvas[top : top + height, left : left + width]), top, left)
            placed.append((top, left, top + height, left + width))
            boxes.append([left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1])
            classes.append(labels[index])
        pixels.append(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
        all_boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
        all_classes.append(np.asarray(classes, np.int64))
    pixels = np.stack(pixels) if pixels else np.zeros((0, DETECTION_SIZE, DETECTION_SIZE, 3), np.uint8)
    return DetectionScenes(preprocess(pixels, "detection"), pixels, tuple(all_boxes), tuple(all_classes))


@dataclass(frozen=True)
class Detections:
    """One image's detections: ``boxes`` float32 [k, 4] (x1, y1, x2, y2), ``scores`` [k], ``classes`` int64 [k]."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU matrix [len(first), len(second)] of (x1, y1, x2, y2) boxes."""
    first, second = np.asarray(first, np.float64).reshape(-1, 4), np.asarray(second, np.float64).reshape(-1, 4)
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_first = np.prod(np.clip(first[:, 2:] - first[:, :2], 0, None), axis=1)
    area_second = np.prod(np.clip(second[:, 2:] - second[:, :2], 0, None), axis=1)
    union = area_first[:, None] + area_second[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS, highest score first (boxes as x1, y1, x2, y2)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlaps = box_iou(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), bool)
    keep = []
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        keep.append(order[rank])
        suppressed |= overlaps[rank] > iou_threshold
    return np.asarray(keep, np.int64)


def decode_detections(
    output: np.ndarray,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = NMS_IOU,
    max_detections: int = MAX_DETECTIONS,
) -> list[Detections]:
    """A YOLOv8 ``output0`` [N, 4 + C, A] (cx, cy, w, h in pixels, then C class scores) -> per-image detections:
    each anchor's best class, score at least ``score_threshold``, class-wise NMS, at most ``max_detections``."""
    output = np.asarray(output, np.float32)
    results = []
    for prediction in output:
        centre, size, class_scores = prediction[:2].T, prediction[2:4].T, prediction[4:].T
        classes, scores = class_scores.argmax(1), class_scores.max(1)
        chosen = scores >= score_threshold
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)[chosen]
        classes, scores = classes[chosen], scores[chosen]
        offset = boxes + (classes * (4.0 * max(1.0, float(np.abs(boxes).max(initial=0))) + 1))[:, None]
        keep = non_max_suppression(offset, scores, iou_threshold)[:max_detections]
        results.append(Detections(boxes[keep], scores[keep], classes[keep].astype(np.int64)))
    return results


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve with precision made monotone (all-point interpolation, as
    PASCAL VOC since 2010): ``recall`` ascending, one point per detection ranked by score."""
    recall = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    precision = np.concatenate([[1.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _match(detections: Detections, boxes: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per detection (in descending score order of ``detections``): whether it is a true positive, each ground
    truth matched at most once, to the best-IoU unmatched box of its class."""
    order = np.argsort(-detections.scores, kind="stable")
    used = np.zeros(len(boxes), bool)
    hits = np.zeros(len(order), bool)
    overlaps = box_iou(detections.boxes, boxes)
    for rank, index in enumerate(order):
        candidates = np.where((classes == detections.classes[index]) & ~used, overlaps[index], -1.0)
        if len(candidates) and candidates.max() >= iou_threshold:
            used[candidates.argmax()] = True
            hits[rank] = True
    return hits


def detection_metrics(
    predictions: Sequence[Detections],
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    score_threshold: float = SCORE_THRESHOLD,
) -> dict[str, float]:
    """``map50``: mean over the classes present in the ground truth of each class's :func:`average_precision`
    (every prediction given, matched greedily by score at IoU >= ``iou_threshold``); ``recall50`` and
    ``precision50``: the same matching restricted to predictions scoring at least ``score_threshold``."""
    if len(predictions) != len(boxes):
        raise ValueError(f"{len(predictions)} predictions for {len(boxes)} images")
    per_class: dict[int, list[tuple[float, bool]]] = {}
    truth_count: dict[int, int] = {}
    kept_hits = kept_total = 0
    for detections, image_boxes, image_classes in zip(predictions, boxes, classes):
        for label in np.asarray(image_classes).tolist():
            truth_count[label] = truth_count.get(label, 0) + 1
        hits = _match(detections, np.asarray(image_boxes), np.asarray(image_classes), iou_threshold)
        order = np.argsort(-detections.scores, kind="stable")
        for rank, index in enumerate(order):
            per_class.setdefault(int(detections.classes[index]), []).append(
                (float(detections.scores[index]), hits[rank])
            )
        confident = detections.scores >= score_threshold
        kept = Detections(detections.boxes[confident], detections.scores[confident], detections.classes[confident])
        kept_hits += int(_match(kept, np.asarray(image_boxes), np.asarray(image_classes), iou_threshold).sum())
        kept_total += len(kept.scores)
    precisions = []
    for label, total in truth_count.items():
        ranked = sorted(per_class.get(label, []), key=lambda pair: -pair[0])
        hits = np.asarray([hit for _, hit in ranked], np.float64)
        true_positives = np.cumsum(hits)
        recall = true_positives / total
        precision = true_positives / np.arange(1, len(hits) + 1)
        precisions.append(average_precision(recall, precision))
    truths = sum(truth_count.values())
    return {
        "map50": float(np.mean(precisions)) if precisions else 0.0,
        "recall50": kept_hits / truths if truths else 0.0,
        "precision50": kept_hits / kept_total if kept_total else 0.0,
    }


def detection_agreement(
    reference: Sequence[Detections], candidate: Sequence[Detections], iou_threshold: float = 0.5
) -> float:
    """Fraction of ``reference``'s detections (e.g. FP32's) that ``candidate`` (e.g. INT8's) also makes: same
    class, IoU >= ``iou_threshold``, each candidate detection used once; 1.0 when the reference has none."""
    matched = total = 0
    for kept, other in zip(reference, candidate, strict=True):
        total += len(kept.scores)
        matched += int(_match(other, kept.boxes, kept.classes, iou_threshold).sum())
    return matched / total if total else 1.0


# ---------------------------------------------------------------- recognition


@dataclass(frozen=True)
class TextLines:
    """``images``: float32 [N, 3, 32, 128] model inputs; ``pixels``: uint8 [N, 32, 128, 3]; ``labels``: digits."""

    images: np.ndarray
    pixels: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)


def text_lines(count: int, split: str = "eval", seed: int = 0) -> TextLines:
    """``count`` 32x128 lines of 4-8 digits (glyphs 18-28 px high, gaps of -1 to 3 px, vertical jitter) on a
    photo crop at 35-70% of its contrast (two lines in three; printed text sits on a calm background) or on
    flat noisy grey, in one ink colour per line that contrasts with the background under the text."""
    rng = _rng("recognition", split, seed)
    glyphs, labels = _glyphs(split)
    pixels, texts = [], []
    for _ in range(count):
        if rng.random() < 2 / 3:
            canvas = _photo_crop(rng, TEXT_HEIGHT, TEXT_WIDTH, split).astype(np.float32)
            mean = canvas.mean((0, 1))
            canvas = mean + rng.uniform(0.35, 0.7) * (canvas - mean)
        else:
            grey = rng.uniform(20, 235)
            canvas = np.clip(grey + rng.normal(0, 6, (TEXT_HEIGHT, TEXT_WIDTH, 1)), 0, 255).repeat(3, 2)
            canvas = canvas.astype(np.float32)
        length = int(rng.integers(4, 9))
        indices = rng.integers(len(glyphs), size=length)
        height = int(rng.integers(18, 29))
        widths = np.maximum(8, np.rint(height * rng.uniform(0.55, 0.8, length))).astype(int)
        gaps = rng.integers(-1, 4, length - 1)
        total = int(widths.sum() + gaps.sum())
        if total > TEXT_WIDTH - 4:
            shrink = (TEXT_WIDTH - 4 - gaps.sum()) / widths.sum()
            widths = np.maximum(6, np.floor(widths * shrink)).astype(int)
            total = int(widths.sum() + gaps.sum())
        left = int(rng.integers(2, max(3, TEXT_WIDTH - total - 1)))
        base = int(rng.integers(0, TEXT_HEIGHT - height + 1))
        colour = _ink_colour(rng, canvas[base : base + height, left : left + total])
        for position, (index, width) in enumerate(zip(indices, widths)):
            top = int(np.clip(base + rng.integers(-2, 3), 0, TEXT_HEIGHT - height))
            width = min(int(width), TEXT_WIDTH - left)
            _blend(canvas, _glyph_alpha(glyphs, int(index), height, width), colour, top, left)
            left += width + (int(gaps[position]) if position < length - 1 else 0)
        pixels.append(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
        texts.append("".join(RECOGNITION_ALPHABET[labels[index]] for index in indices))
    pixels = np.stack(pixels) if pixels else np.zeros((0, TEXT_HEIGHT, TEXT_WIDTH, 3), np.uint8)
    return TextLines(preprocess(pixels, "recognition"), pixels, tuple(texts))


def ctc_greedy_decode(log_probs: np.ndarray, blank: int = RECOGNITION_BLANK, layout: str = "TNC") -> list[str]:
    """Best-path CTC decoding: the argmax class per time step, repeats merged, blanks dropped; class ``k``
    (k != blank) is ``RECOGNITION_ALPHABET[k - 1]``. ``layout``: ``TNC`` (PyTorch's CTC) or ``NTC``."""
    if layout not in ("TNC", "NTC"):
        raise ValueError(f"layout must be TNC or NTC, got {layout!r}")
    best = np.asarray(log_probs).argmax(-1)
    if layout == "TNC":
        best = best.T
    texts = []
    for path in best:
        merged = path[np.concatenate([[True], path[1:] != path[:-1]])]
        texts.append("".join(RECOGNITION_ALPHABET[k - 1] for k in merged.tolist() if k != blank))
    return texts


def edit_distance(first: str, second: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions all cost 1)."""
    previous = list(range(len(second) + 1))
    for row, char in enumerate(first, 1):
        current = [row]
        for column, other in enumerate(second, 1):
            current.append(min(previous[column] + 1, current[column - 1] + 1, previous[column - 1] + (char != other)))
        previous = current
    return previous[-1]


def character_error_rate(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Total edit distance over the total length of the true strings."""
    return sum(edit_distance(p, t) for p, t in zip(predicted, truth, strict=True)) / max(1, sum(map(len, truth)))


def recognition_metrics(predicted: Sequence[str], truth: Sequence[str]) -> dict[str, float]:
    """``exact_match``: fraction of lines read exactly; ``cer``: :func:`character_error_rate`."""
    exact = sum(p == t for p, t in zip(predicted, truth, strict=True))
    return {"exact_match": exact / max(1, len(truth)), "cer": character_error_rate(predicted, truth)}


# ---------------------------------------------------------------- segmentation


@dataclass(frozen=True)
class SegmentationScenes:
    """``images``: float32 [N, 3, 64, 64] model inputs; ``pixels``: uint8 [N, 64, 64, 3]; ``masks``: int64
    [N, 64, 64] class per pixel (indices into :data:`SEGMENTATION_CLASSES`)."""

    images: np.ndarray
    pixels: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def segmentation_scenes(count: int, split: str = "eval", seed: int = 0) -> SegmentationScenes:
    """``count`` 64x64 photo crops with 1-3 objects pasted in turn (later ones cover earlier ones): a filled
    ellipse (radii 5-16 px), an axis-aligned rectangle (sides 8-32 px) or a digit glyph (18-36 px), each a
    flat colour with slight noise; the mask holds the class of the object on top at each pixel."""
    rng = _rng("segmentation", split, seed)
    glyphs, _ = _glyphs(split)
    size = SEGMENTATION_SIZE
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    pixels, masks = [], []
    for _ in range(count):
        canvas = _photo_crop(rng, size, size, split).astype(np.float32)
        mask = np.zeros((size, size), np.int64)
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(1, 4))
            if kind == 1:
                radius_y, radius_x = rng.uniform(5, 16, 2)
                centre_y, centre_x = rng.uniform(0, size, 2)
                alpha = ((rows + 0.5 - centre_y) / radius_y) ** 2 + ((cols + 0.5 - centre_x) / radius_x) ** 2 <= 1
            elif kind == 2:
                height, width = rng.integers(8, 33, 2)
                top, left = rng.integers(-4, size - 4, 2)
                alpha = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
            else:
                height = int(rng.integers(18, 37))
                width = max(10, int(round(height * rng.uniform(0.7, 1.0))))
                top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
                glyph = _glyph_alpha(glyphs, int(rng.integers(len(glyphs))), height, width) >= 0.5
                alpha = np.zeros((size, size), bool)
                alpha[top : top + height, left : left + width] = glyph
            if not alpha.any():
                continue
            colour = _ink_colour(rng, canvas[alpha])
            noisy = np.clip(colour + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.float32)
            canvas = np.where(alpha[..., None], noisy, canvas)
            mask[alpha] = kind
        pixels.append(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
        masks.append(mask)
    pixels = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)
    masks = np.stack(masks) if masks else np.zeros((0, size, size), np.int64)
    return SegmentationScenes(preprocess(pixels, "segmentation"), pixels, masks)


def segmentation_metrics(predicted: np.ndarray, truth: np.ndarray, classes: int = len(SEGMENTATION_CLASSES)) -> dict:
    """``miou``: mean over the classes present in prediction or truth of TP / (TP + FP + FN) pixels;
    ``iou``: that per class (None where absent from both); ``pixel_accuracy``. ``predicted`` may be class
    indices [N, H, W] or logits [N, C, H, W] (argmax over C)."""
    predicted = np.asarray(predicted)
    if predicted.ndim == 4:
        predicted = predicted.argmax(1)
    truth = np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted masks {predicted.shape} and true masks {truth.shape} differ in shape")
    confusion = np.bincount(truth.ravel() * classes + predicted.ravel(), minlength=classes * classes)
    confusion = confusion.reshape(classes, classes).astype(np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = [float(tp / u) if u > 0 else None for tp, u in zip(true_positive, union)]
    present = [value for value in iou if value is not None]
    return {
        "miou": float(np.mean(present)) if present else 0.0,
        "iou": iou,
        "pixel_accuracy": float(true_positive.sum() / max(1.0, confusion.sum())),
    }


# ---------------------------------------------------------------- tasks, files and evaluation


@dataclass(frozen=True)
class Task:
    """One task model: its file in :data:`MODELS_DIR`, its input and output, the preprocessing its inputs
    went through, its eval set (``eval_count`` samples of ``generate(count, split, seed)`` with split
    ``eval``, seed 0), and ``score(output, dataset) -> metrics``; ``metric`` names the headline metric (higher
    is better) and ``batch_axis`` is the batch axis of the output."""

    name: str
    model_file: str
    input_name: str
    input_shape: tuple[int, int, int]
    output_name: str
    output_layout: str
    preprocessing: dict[str, Any]
    classes: tuple[str, ...]
    generate: Callable[..., Any]
    score: Callable[[np.ndarray, Any], dict]
    eval_count: int
    calibration_count: int
    metric: str
    batch_axis: int = 0


def _score_detection(output: np.ndarray, scenes: DetectionScenes) -> dict:
    predictions = decode_detections(output, score_threshold=MAP_SCORE_THRESHOLD)
    return detection_metrics(predictions, scenes.boxes, scenes.classes)


def _score_recognition(output: np.ndarray, lines: TextLines) -> dict:
    return recognition_metrics(ctc_greedy_decode(output), lines.labels)


def _score_segmentation(output: np.ndarray, scenes: SegmentationScenes) -> dict:
    return segmentation_metrics(output, scenes.masks)


TASKS: dict[str, Task] = {
    "detection": Task(
        name="detection",
        model_file="yolo_digits.onnx",
        input_name="images",
        input_shape=(3, DETECTION_SIZE, DETECTION_SIZE),
        output_name="output0",
        output_layout="[N, 4 + 10, A]: cx, cy, w, h in input pixels, then 10 sigmoid class scores; A = 180 anchors",
        preprocessing={"channel_order": "RGB", "scale": 1 / 255, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        classes=DETECTION_CLASSES,
        generate=detection_scenes,
        score=_score_detection,
        eval_count=200,
        calibration_count=200,
        metric="map50",
    ),
    "recognition": Task(
        name="recognition",
        model_file="crnn_digits.onnx",
        input_name="images",
        input_shape=(3, TEXT_HEIGHT, TEXT_WIDTH),
        output_name="log_probs",
        output_layout="[T, N, 11] log-softmax over T = 32 steps (PyTorch CTC layout); blank 0, class k = digit k-1",
        preprocessing={"channel_order": "RGB", "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        classes=("<blank>", *RECOGNITION_ALPHABET),
        generate=text_lines,
        score=_score_recognition,
        eval_count=300,
        calibration_count=200,
        metric="exact_match",
        batch_axis=1,
    ),
    "segmentation": Task(
        name="segmentation",
        model_file="unet_shapes.onnx",
        input_name="images",
        input_shape=(3, SEGMENTATION_SIZE, SEGMENTATION_SIZE),
        output_name="logits",
        output_layout="[N, 4, 64, 64] class logits (argmax over axis 1)",
        preprocessing={
            "channel_order": "RGB",
            "scale": 1 / 255,
            "mean": list(_IMAGENET_MEAN),
            "std": list(_IMAGENET_STD),
        },
        classes=SEGMENTATION_CLASSES,
        generate=segmentation_scenes,
        score=_score_segmentation,
        eval_count=100,
        calibration_count=200,
        metric="miou",
    ),
}


def _task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: one of {', '.join(TASKS)}")
    return TASKS[name]


def eval_set(task: str, count: int | None = None, seed: int = 0):
    """The task's held-out eval set (``TASKS[task].eval_count`` samples unless ``count`` is given)."""
    spec = _task(task)
    return _cached_set(task, spec.eval_count if count is None else int(count), "eval", int(seed))


@functools.cache
def _cached_set(task: str, count: int, split: str, seed: int):
    return TASKS[task].generate(count, split, seed)


def write_calibration(task: str, path: str | Path, count: int | None = None, seed: int = 0) -> Path:
    """A calibration ``.npz`` for ``task``'s model: one float32 array named after the model input, ``count``
    preprocessed samples of the ``calibration`` split (never scored). Written to a temporary name, then renamed."""
    spec = _task(task)
    data = spec.generate(spec.calibration_count if count is None else int(count), "calibration", seed)
    return _save_npz(Path(path), {spec.input_name: data.images})


def write_eval_set(task: str, path: str | Path, count: int | None = None, seed: int = 0) -> Path:
    """The eval set as a ``.npz``: ``images`` (model inputs), ``pixels`` (uint8 NHWC) and the labels
    (detection: ``boxes`` [M, 4], ``classes`` [M] and ``image_index`` [M]; recognition: ``labels``;
    segmentation: ``masks``). :func:`load_eval_set` reads it back."""
    data = eval_set(task, count, seed)
    arrays: dict[str, np.ndarray] = {"images": data.images, "pixels": data.pixels}
    if isinstance(data, DetectionScenes):
        arrays["boxes"] = np.concatenate(data.boxes).reshape(-1, 4)
        arrays["classes"] = np.concatenate(data.classes).astype(np.int64)
        arrays["image_index"] = np.repeat(np.arange(len(data)), [len(b) for b in data.boxes]).astype(np.int64)
    elif isinstance(data, TextLines):
        arrays["labels"] = np.asarray(data.labels, dtype=np.str_)
    else:
        arrays["masks"] = data.masks
    return _save_npz(Path(path), arrays)


def load_eval_set(task: str, path: str | Path):
    """A set written by :func:`write_eval_set`, as :class:`DetectionScenes`, :class:`TextLines` or
    :class:`SegmentationScenes`."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    if task == "detection":
        count = len(arrays["images"])
        index = arrays["image_index"]
        boxes = tuple(arrays["boxes"][index == i] for i in range(count))
        classes = tuple(arrays["classes"][index == i] for i in range(count))
        return DetectionScenes(arrays["images"], arrays["pixels"], boxes, classes)
    if task == "recognition":
        return TextLines(arrays["images"], arrays["pixels"], tuple(str(label) for label in arrays["labels"]))
    _task(task)
    return SegmentationScenes(arrays["images"], arrays["pixels"], arrays["masks"])


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(partial, **arrays)
    partial.replace(path)
    return path


def run_onnx(
    model: str | Path, images: np.ndarray, batch_axis: int = 0, batch_size: int = 50, threads: int = 1
) -> np.ndarray:
    """The model's first output for ``images``, run with ONNX Runtime on the CPU as edgecnn runs each form
    (the optimization level a TensorRT-form Q/DQ file needs there), in batches of ``batch_size`` (of the
    model's own batch size where its input fixes one) and concatenated along the output's ``batch_axis`` (1 for
    the recognizer's [T, N, C])."""
    from edgecnn.runtime import cpu_session_optimization, create_session

    session = create_session(model, threads=threads, optimization=cpu_session_optimization(model))
    name, batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
    if isinstance(batch, int) and batch > 0:
        batch_size = batch
    outputs = [session.run(None, {name: images[i : i + batch_size]})[0] for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs, axis=batch_axis)


def agreement(task: str, reference: np.ndarray, candidate: np.ndarray) -> float:
    """Label-free fidelity of ``candidate`` outputs (e.g. INT8's) to ``reference`` outputs (FP32's) in task
    terms: detection, :func:`detection_agreement` at the operating score threshold; recognition, the fraction
    of lines decoded to the same string; segmentation, the fraction of pixels given the same class."""
    _task(task)
    if task == "detection":
        return detection_agreement(decode_detections(reference), decode_detections(candidate))
    if task == "recognition":
        same = [a == b for a, b in zip(ctc_greedy_decode(reference), ctc_greedy_decode(candidate), strict=True)]
        return float(np.mean(same))
    return float(np.mean(np.asarray(reference).argmax(1) == np.asarray(candidate).argmax(1)))


def evaluate_onnx(model: str | Path, task: str, dataset=None, threads: int = 1) -> dict:
    """``task``'s metrics for the ONNX file ``model`` (FP32, FP16 or INT8 alike) on ``dataset`` (default: the
    task's eval set), computed against the labels."""
    spec = _task(task)
    data = eval_set(task) if dataset is None else dataset
    return spec.score(run_onnx(model, data.images, spec.batch_axis, threads=threads), data)


def load_index(directory: str | Path = MODELS_DIR) -> dict:
    """``index.json`` of the task models: per task, file, input, output, preprocessing, seed and FP32 metrics."""
    return json.loads((Path(directory) / "index.json").read_text())
