"""Fidelity of a quantized model's outputs to FP32's: SQNR/cosine, worst channel, task agreement, recognition, budgets.

Pure numpy: the outputs are built by hand (a YOLOv8 head whose boxes are exact and whose class scores collapse,
YOLOv5, CTC, segmentation, classifier scores), and the figures are checked against hand-computed values or a
second implementation written differently (NMS as a brute-force loop, edit distance by recursion).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from edgecnn import fidelity
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.fidelity import (
    DEFAULT_BUDGETS,
    SQNR_CAP_DB,
    Detections,
    box_iou,
    channel_sqnr_db,
    classify_agreement,
    compare,
    cosine,
    ctc_greedy_decode,
    decode_detections,
    levenshtein,
    match_detections,
    nms,
    parse_budgets,
    parse_task,
    recognize,
    segment_agreement,
    sqnr_db,
)

# ------------------------------------------------------------------------------------------------ signal figures


def test_sqnr_and_cosine_by_hand():
    reference, candidate = np.array([3.0, 4.0]), np.array([3.0, 5.0])
    assert sqnr_db(reference, candidate) == pytest.approx(10 * math.log10(25 / 1))
    assert cosine(reference, candidate) == pytest.approx(29 / (5 * math.sqrt(34)))
    assert sqnr_db(reference, reference) == SQNR_CAP_DB
    assert sqnr_db(np.zeros(3), np.zeros(3)) == SQNR_CAP_DB
    assert sqnr_db(np.zeros(3), np.ones(3)) == -SQNR_CAP_DB
    assert sqnr_db(reference, np.array([3.0, np.nan])) == -SQNR_CAP_DB
    assert sqnr_db(reference, np.array([3.0, np.inf])) == -SQNR_CAP_DB
    assert cosine(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine(np.zeros(3), np.ones(3)) == 0.0
    assert cosine(reference, -reference) == pytest.approx(-1.0)
    assert cosine(reference, np.array([np.nan, 1.0])) is None


def test_sqnr_sums_in_float64():
    """float32 sums of 10^6 squares of large values lose digits; the figure must not."""
    reference = np.full(1_000_000, 1000.0, dtype=np.float32)
    candidate = reference + np.float32(1.0)
    assert sqnr_db(reference, candidate) == pytest.approx(60.0, abs=1e-9)


def test_channel_sqnr_worst_channel_by_hand():
    reference = np.array([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])
    candidate = np.array([[1.0, 2.0], [2.0, 2.0], [5.0, 5.0]])
    worst, channel = channel_sqnr_db(reference, candidate, axis=0)
    assert channel == 0  # the all-zero reference channel 2 is skipped
    assert worst == pytest.approx(10 * math.log10(2 / 1))
    assert channel_sqnr_db(reference.T, candidate.T, axis=1) == (worst, 0)
    assert channel_sqnr_db(reference, reference, axis=0) == (SQNR_CAP_DB, 0)
    assert channel_sqnr_db(np.zeros((2, 2)), np.ones((2, 2)), axis=0) == (-SQNR_CAP_DB, None)


@pytest.mark.parametrize("sequence_first", [False, True])
def test_compare_sums_chunk_by_chunk_as_the_whole(monkeypatch, sequence_first):
    """compare() sums energies a few samples at a time; its figures equal the whole-tensor functions'."""
    rng = np.random.default_rng(10)
    reference = rng.normal(size=(7, 5, 6)).astype(np.float32)
    candidate = reference + rng.normal(0, 0.1, reference.shape).astype(np.float32)
    candidate[3, :, 2] += 1.0
    if sequence_first:
        reference, candidate = np.swapaxes(reference, 0, 1), np.swapaxes(candidate, 0, 1)
    monkeypatch.setattr(fidelity, "CHUNK_ELEMENTS", 40)  # 1 sample (30 values) per chunk
    output = compare({"y": reference}, {"y": candidate}, batch=7, task="raw" if not sequence_first else "ctc").outputs[
        0
    ]
    assert output.channel_axis == (1 if not sequence_first else 2)
    assert output.sqnr_db == pytest.approx(sqnr_db(reference, candidate), abs=1e-9)
    assert output.cosine == pytest.approx(cosine(reference, candidate), abs=1e-12)
    expected = channel_sqnr_db(reference, candidate, output.channel_axis)
    assert output.worst_channel_sqnr_db == pytest.approx(expected[0], abs=1e-9)
    assert output.worst_channel == expected[1]
    assert output.max_abs_error == pytest.approx(float(np.abs(reference - candidate.astype(np.float64)).max()))


def test_shape_mismatch_is_a_usage_error():
    with pytest.raises(UsageError, match="shapes"):
        sqnr_db(np.zeros(3), np.zeros(4))


def test_raw_budget_is_quantize_default():
    quantize = pytest.importorskip("edgecnn.calibration.quantize", reason="calibration needs onnxruntime")
    assert DEFAULT_BUDGETS["raw"] == quantize.DEFAULT_MIN_SQNR_DB


# ----------------------------------------------------------------------------------------- YOLO-style detection

SIZE = 160
ANCHORS_V8 = (SIZE // 8) ** 2 + (SIZE // 16) ** 2 + (SIZE // 32) ** 2  # 525


def _objects(images: int, per_image: int, classes: int, rng: np.random.Generator):
    """Per image: [(class, cx, cy, w, h)] on a grid, far apart."""
    result = []
    for _ in range(images):
        cells = rng.choice(16, per_image, replace=False)
        result.append(
            [
                (int(rng.integers(classes)), 20.0 + 40 * (c % 4), 20.0 + 40 * (c // 4), *rng.uniform(12, 30, 2))
                for c in cells
            ]
        )
    return result


def yolo_v8(objects, classes: int, rng: np.random.Generator, scramble: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """FP32 and candidate ``[N, 4+C, A]`` heads: each object fires 3 anchors (jittered boxes, scores 0.9/0.8/0.6)
    over a background of low scores. The candidate's boxes are exact; for the first ``scramble`` objects of each
    image its class scores move to the next class (the collapse of the issue)."""
    images = len(objects)
    table = np.zeros((images, ANCHORS_V8, 4 + classes))
    table[..., 0:2] = rng.uniform(0, SIZE, (images, ANCHORS_V8, 2))
    table[..., 2:4] = rng.uniform(4, 40, (images, ANCHORS_V8, 2))
    table[..., 4:] = rng.uniform(0, 0.02, (images, ANCHORS_V8, classes))
    candidate = table.copy()
    for image, found in enumerate(objects):
        slots = rng.choice(ANCHORS_V8, 3 * len(found), replace=False).reshape(-1, 3)
        for index, ((cls, cx, cy, w, h), anchors) in enumerate(zip(found, slots)):
            for shift, score, anchor in zip((0.0, 1.0, -1.0), (0.9, 0.8, 0.6), anchors):
                row = [cx + shift, cy, w, h]
                table[image, anchor, :4] = candidate[image, anchor, :4] = row
                table[image, anchor, 4 + cls] = score
                moved = (cls + 1) % classes if index < scramble else cls
                candidate[image, anchor, 4 + moved] = score
    return np.swapaxes(table, 1, 2).astype(np.float32), np.swapaxes(candidate, 1, 2).astype(np.float32)


def test_issue_case_boxes_exact_class_scores_collapse():
    """THE case: whole-tensor SQNR passes the old 15 dB gate comfortably while 3 of every 4 detections change class;
    the detection figure fails and the worst per-channel SQNR points at a class row."""
    rng = np.random.default_rng(0)
    objects = _objects(images=8, per_image=4, classes=80, rng=rng)
    reference, candidate = yolo_v8(objects, 80, rng, scramble=3)
    old_whole_tensor = 10 * math.log10(
        np.sum(reference.astype(np.float64) ** 2) / np.sum((reference.astype(np.float64) - candidate) ** 2)
    )
    assert old_whole_tensor > 25 and old_whole_tensor >= DEFAULT_BUDGETS["raw"]
    assert recognize("output0", reference, batch=8) == "detect"

    report = compare({"output0": reference}, {"output0": candidate}, batch=8, label="INT8")
    (output,) = report.outputs
    assert output.sqnr_db == pytest.approx(old_whole_tensor)
    assert output.task == "detect" and output.channel_axis == 1
    assert output.metrics["fp32_detections"] == 32
    assert output.metrics["matched"] == 8 and output.value == 0.25
    assert output.metrics["extra"] == 24 and output.metrics["extra_per_image"] == 3.0
    assert output.worst_channel_sqnr_db < DEFAULT_BUDGETS["raw"] and output.worst_channel >= 4
    assert not output.met and not report.met
    assert report.misses == [
        "output0 (detect): 25.0% of FP32's 32 detections kept (same class, IoU >= 0.5), 24 extra, budget 95.0%"
    ]
    with pytest.raises(EdgecnnError, match="INT8 misses its fidelity budget: output0"):
        report.require_met()


def test_detection_budget_at_and_below_the_threshold():
    """19 of 20 FP32 detections kept is exactly the 95% budget: met; 18 of 20 is not, unless the budget is 0.9."""
    rng = np.random.default_rng(1)
    objects = _objects(images=4, per_image=5, classes=6, rng=rng)
    reference, _ = yolo_v8(objects, 6, np.random.default_rng(2))
    for scrambled, met in ((1, True), (2, False)):
        _, candidate = yolo_v8(objects, 6, np.random.default_rng(2), scramble=scrambled)
        candidate[1:] = reference[1:]  # only image 0 keeps its scrambled objects
        report = compare({"output0": reference}, {"output0": candidate}, batch=4)
        assert report.outputs[0].value == (20 - scrambled) / 20
        assert report.met is met
    assert compare({"o": reference}, {"o": candidate}, batch=4, budgets={"detect": 0.9}).met


def test_v8_transposed_and_v5_heads():
    rng = np.random.default_rng(3)
    objects = _objects(images=2, per_image=3, classes=5, rng=rng)
    reference, candidate = yolo_v8(objects, 5, rng, scramble=1)
    transposed, candidate_transposed = np.swapaxes(reference, 1, 2), np.swapaxes(candidate, 1, 2)
    assert recognize("output0", transposed, batch=2) == "detect"
    report = compare({"out": transposed}, {"out": candidate_transposed}, batch=2)
    assert "transposed" in report.outputs[0].layout and report.outputs[0].channel_axis == 2
    assert report.outputs[0].metrics["matched"] == 4 and report.outputs[0].metrics["fp32_detections"] == 6


def _v5_head(rng: np.random.Generator) -> np.ndarray:
    """A YOLOv5 ``[1, A, 5+3]`` head for a 64x64 input (3 anchors on 84 cells): background objectness is low and
    background class scores high, as YOLOv5 leaves them."""
    anchors = 3 * (8 * 8 + 4 * 4 + 2 * 2)
    head = np.zeros((1, anchors, 8))
    head[0, :, 0:2] = rng.uniform(0, 64, (anchors, 2))
    head[0, :, 2:4] = rng.uniform(4, 20, (anchors, 2))
    head[0, :, 4] = rng.uniform(0, 0.05, anchors)
    head[0, :, 5:] = rng.uniform(0.3, 0.95, (anchors, 3))
    head[0, 10] = [10, 10, 8, 8, 0.8, 0.5, 0.1, 0.1]  # 0.8 x 0.5 = 0.4: a class-0 detection
    head[0, 20] = [40, 40, 8, 8, 0.8, 0.3, 0.1, 0.1]  # 0.8 x 0.3 = 0.24: below 0.25
    head[0, 30] = [40, 10, 8, 8, 0.9, 0.1, 0.2, 0.9]  # class 2 at 0.81
    return head.astype(np.float32)


def test_v5_head_confidence_is_objectness_times_class():
    head = _v5_head(np.random.default_rng(4))
    assert recognize("output0", head, batch=1) == "detect"
    (found,) = decode_detections(head, "v5")
    assert sorted(found.classes.tolist()) == [0, 2]
    np.testing.assert_allclose(sorted(found.scores), [0.4, 0.81], rtol=1e-6)
    np.testing.assert_allclose(found.boxes[found.classes == 0][0], [6, 6, 14, 14])
    report = compare({"output0": head}, {"output0": head}, batch=1)
    assert report.outputs[0].layout.startswith("YOLOv5") and report.outputs[0].value == 1.0


def _iou_by_hand(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms_brute_force(boxes, scores, classes, threshold):
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(classes[j] != classes[i] or _iou_by_hand(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def test_box_iou_by_hand():
    assert box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 2, 2]])).tolist() == [
        [1 / 7, 0.0, 1.0]
    ]
    assert box_iou(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]])).tolist() == [[0.0]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 60, (300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (300, 2))], axis=1)
    scores = rng.uniform(0, 1, 300).round(2)  # ties: broken by index in both
    classes = rng.integers(0, 3, 300)
    expected = _nms_brute_force(boxes.tolist(), scores.tolist(), classes.tolist(), 0.5)
    assert nms(boxes, scores, classes, 0.5).tolist() == expected
    assert nms(boxes, scores, classes, 0.5, max_keep=7).tolist() == expected[:7]


def test_matching_takes_best_free_candidate_of_the_same_class():
    reference = Detections(np.array([[0, 0, 10, 10], [0, 0, 10, 9.0]]), np.array([0.9, 0.8]), np.array([1, 1]))
    candidate = Detections(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]]), np.array([0.7, 0.6, 0.5]), np.array([1, 1, 2])
    )
    # the second reference box's only same-class overlap is taken by the first: one kept
    assert match_detections(reference, candidate, 0.5) == 1
    assert match_detections(reference, Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))) == 0


def test_no_fp32_detection_falls_back_to_channel_sqnr():
    rng = np.random.default_rng(5)
    reference, _ = yolo_v8([[] for _ in range(2)], 4, rng)
    noisy = reference + rng.normal(0, 0.5, reference.shape).astype(np.float32)
    report = compare({"output0": reference}, {"output0": noisy}, batch=2)
    output = report.outputs[0]
    assert output.task == "detect" and output.metrics["kept"] is None
    assert output.metric == "worst_channel_sqnr_db" and not output.met
    assert "detects nothing" in report.misses[0] and "detects nothing" in report.notes[0]
    assert compare({"output0": reference}, {"output0": reference}, batch=2).met


# ------------------------------------------------------------------------------------------------------ CTC


def _one_hot_log_softmax(steps: list[list[int]], classes: int) -> np.ndarray:
    logits = np.where(np.arange(classes) == np.array(steps)[..., None], 5.0, 0.0)
    return (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)  # [N, T, C]


def test_ctc_greedy_decode_by_hand():
    scores = _one_hot_log_softmax([[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 0, 0, 0, 0, 0, 0, 0, 0]], 4)
    assert ctc_greedy_decode(scores) == [[1, 1, 2, 3], []]
    assert ctc_greedy_decode(scores, blank=1) == [[0, 2, 0, 3], [0]]


@cache
def _edit_distance_recursive(a: tuple, b: tuple) -> int:
    if not a or not b:
        return len(a) + len(b)
    if a[0] == b[0]:
        return _edit_distance_recursive(a[1:], b[1:])
    return 1 + min(
        _edit_distance_recursive(a[1:], b), _edit_distance_recursive(a, b[1:]), _edit_distance_recursive(a[1:], b[1:])
    )


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein([], [1, 2]) == 2 and levenshtein([1, 2, 3], [1, 2, 3]) == 0
    rng = np.random.default_rng(6)
    for _ in range(50):
        a, b = tuple(rng.integers(0, 3, rng.integers(0, 8))), tuple(rng.integers(0, 3, rng.integers(0, 8)))
        assert levenshtein(a, b) == _edit_distance_recursive(a, b)


def _ctc_pair():
    reference = _one_hot_log_softmax([[1, 1, 0, 1, 2, 2, 0, 0, 3], [2, 2, 0, 3, 0, 1, 1, 0, 0]], 4)
    candidate = _one_hot_log_softmax([[1, 0, 0, 1, 2, 3, 3, 0, 3], [2, 2, 0, 3, 0, 1, 1, 0, 0]], 4)
    return reference, candidate  # "aabc" -> "aabcc" (1 edit), "bca" == "bca"


@pytest.mark.parametrize("sequence_first", [False, True])
def test_ctc_string_agreement_and_cer(sequence_first):
    reference, candidate = _ctc_pair()
    if sequence_first:
        reference, candidate = np.swapaxes(reference, 0, 1).copy(), np.swapaxes(candidate, 0, 1).copy()
    assert recognize("logprobs", reference, batch=2) == "ctc"
    output = compare({"logprobs": reference}, {"logprobs": candidate}, batch=2).outputs[0]
    assert output.layout.startswith("CTC scores [T, N, C]" if sequence_first else "CTC scores [N, T, C]")
    assert output.channel_axis == 2
    assert output.metrics["string_agreement"] == 0.5
    assert output.metrics["cer"] == pytest.approx(1 / 7)
    assert not output.met


def test_ctc_runs_joined_along_the_batch_axis():
    """Runs of a sequence-first [T, N, C] output join along N, and the padded copies are cut."""
    reference, candidate = _ctc_pair()
    runs = [np.swapaxes(np.concatenate([x, x[:1]]), 0, 1) for x in (reference, candidate)]  # [9, 3, 4]
    output = compare({"y": [runs[0], runs[0]]}, {"y": [runs[1], runs[1]]}, batch=3, samples=5).outputs[0]
    assert output.samples == 5 and output.metrics["sequences"] == 5
    # samples: a, b, a | a, b -> 3 of 5 are "aabc" against "aabcc"
    assert output.metrics["string_agreement"] == pytest.approx(2 / 5)
    assert output.metrics["cer"] == pytest.approx(3 / (4 + 3 + 4 + 4 + 3))


def test_ctc_t_equals_n_is_read_batch_first_with_a_note():
    reference, candidate = _ctc_pair()
    square = np.ascontiguousarray(reference[:, :2])  # [2, 2, 4]
    report = compare({"y": square}, {"y": square}, batch=2, task="ctc")
    assert report.outputs[0].layout.startswith("CTC scores [N, T, C]")
    assert any("read as [N, T, C]" in note for note in report.notes)


# -------------------------------------------------------------------------------------------------- segment


def test_segment_agreement_and_miou_by_hand():
    reference = np.zeros((8, 8), dtype=int)
    reference[:4, 4:] = 1
    reference[4:, 4:] = 2
    candidate = reference.copy()
    candidate[:, 3] = 1
    figures = segment_agreement(reference, candidate)
    assert figures["pixel_agreement"] == 56 / 64
    assert figures["miou"] == pytest.approx((24 / 32 + 16 / 24 + 16 / 16) / 3)
    scores = np.stack([np.eye(4)[m].transpose(2, 0, 1) for m in (reference, candidate)])[:, None]  # [2, 1, 4, 8, 8]
    output = compare({"out": scores[0]}, {"out": scores[1]}, batch=1).outputs[0]
    assert output.task == "segment" and output.value == 56 / 64 and not output.met


def test_one_channel_probability_mask_is_thresholded_at_half():
    reference = np.full((1, 1, 8, 8), 0.2, dtype=np.float32)
    reference[..., :4] = 0.7
    candidate = reference.copy()
    candidate[0, 0, 0, 0] = 0.45  # crosses 0.5
    candidate[0, 0, 1, 6] = 0.4  # stays below
    assert recognize("mask", reference, batch=1) == "segment"
    output = compare({"mask": reference}, {"mask": candidate}, batch=1).outputs[0]
    assert "thresholded at 0.5" in output.layout
    assert output.metrics["pixel_agreement"] == 63 / 64


# ------------------------------------------------------------------------------------------------- classify


def test_classify_agreement_by_hand():
    reference = np.array([[0.0, 1, 2, 3, 4, 5, 6, 9], [5, 0, 0, 0, 0, 0, 0, 0], [0, 3, 0, 0, 0, 0, 0, 0]])
    candidate = reference.copy()
    candidate[0, 7] = 5.5  # FP32's top-1 (7) drops to second: top-5 still holds it
    candidate[1] = [1, 9, 8, 7, 6, 5, 0, 0]  # FP32's top-1 (0) falls to sixth
    figures = classify_agreement(reference, candidate)
    assert figures["top1_agreement"] == pytest.approx(1 / 3)
    assert figures["top5_agreement"] == pytest.approx(2 / 3)
    few = classify_agreement(np.array([[1.0, 0, 0]]), np.array([[0.0, 0, 1]]))
    assert few["top1_agreement"] == 0.0 and few["top5_agreement"] == 1.0  # K = 3 < 5: top-3 holds everything


def test_classify_budget_at_and_below_the_threshold():
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(100, 10)).astype(np.float32)
    for flipped, met in ((1, True), (2, False)):
        candidate = reference.copy()
        candidate[:flipped] = -candidate[:flipped]
        report = compare({"logits": reference}, {"logits": candidate}, batch=100)
        assert report.outputs[0].value == (100 - flipped) / 100
        assert report.met is met
    assert "top-1 agreement with FP32 98.0% on 100 samples" in report.misses[0]


# ------------------------------------------------------------------------------------------- raw and budgets


def test_raw_budget_at_and_below_the_threshold():
    reference = np.full((1, 2, 10), 10.0)
    candidate = reference.copy()
    candidate[0, 0] = 11.0  # channel 0: signal 100 per element, noise 1: exactly 20 dB
    assert recognize("features", reference, batch=1) == "raw"
    met = compare({"features": reference}, {"features": candidate}, batch=1, budgets={"raw": 20.0})
    assert met.outputs[0].value == 20.0 and met.outputs[0].worst_channel == 0 and met.met
    missed = compare({"features": reference}, {"features": candidate}, batch=1, budgets={"raw": 20.001})
    assert missed.misses == ["features (raw): worst per-channel SQNR 20.0 dB (channel 0 of axis 1), budget 20.001 dB"]


def test_non_finite_candidate_misses():
    reference = np.ones((2, 4), dtype=np.float32)
    candidate = reference.copy()
    candidate[0, 0] = np.nan
    report = compare({"logits": reference}, {"logits": candidate}, batch=2, label="FP8")
    assert not report.met and report.misses == ["logits (classify): the FP8 output has NaN or Inf values"]
    assert report.as_dict()["outputs"]["logits"]["cosine"] is None


def test_as_dict_is_json_ready_and_rounded():
    import json

    reference = np.array([[1.0, 2.0, 3.0]])
    report = compare({"logits": reference}, {"logits": reference * 1.0001}, batch=1)
    data = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert data["met"] is True and data["outputs"]["logits"]["task"] == "classify"
    assert data["outputs"]["logits"]["sqnr_db"] == 80.0
    assert data["budgets"] == DEFAULT_BUDGETS


# ------------------------------------------------------------------------------------------------ recognition


def _logits(*shape):
    return np.random.default_rng(8).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "values", "batch", "task"),
    [
        ("logits", _logits(2, 1000), 2, "classify"),
        ("logits", _logits(2, 1000, 1, 1), 2, "classify"),
        ("out", _logits(1, 21, 32, 32), 1, "segment"),
        ("out", _logits(1, 1, 32, 32), 1, "segment"),  # logits of both signs
        ("image", _logits(1, 3, 32, 32), 1, "raw"),  # three channels look like an image
        ("depth", np.abs(_logits(1, 1, 32, 32)) + 2, 1, "raw"),
        ("out", np.abs(_logits(1, 1, 32, 32)) + 2, 1, "raw"),  # positive, beyond 1: not a mask
        ("features", _logits(1, 512, 4, 4), 1, "raw"),  # spatial 4x4: not a map
        ("embedding", _logits(2, 512), 2, "raw"),
        ("score", _logits(2, 1), 2, "raw"),
        ("logits", _logits(3, 10), 2, "raw"),  # no batch axis
        ("labels", np.zeros((2, 10), dtype=np.int64), 2, "raw"),
        ("output0", _logits(1, 84, 525), 1, "raw"),  # YOLO-shaped but scores are not in [0, 1]
        ("output", _logits(2, 30, 40), 2, "raw"),  # batch-first plain logits: could be anything
        ("ctc_logits", _logits(2, 30, 40), 2, "ctc"),
        ("output", _logits(30, 2, 40), 2, "ctc"),  # sequence-first scores
        ("probs", np.full((2, 30, 40), 1 / 40, dtype=np.float32), 2, "ctc"),  # softmax rows
        ("scalar", np.float32(3.0), 1, "raw"),
    ],
)
def test_recognition(name, values, batch, task):
    assert recognize(name, values, batch) == task


def test_nan_output_is_raw():
    values = _logits(2, 10)
    values[0, 0] = np.nan
    assert recognize("logits", values, 2) == "raw"


def test_detector_mask_prototypes_are_raw():
    rng = np.random.default_rng(9)
    head, _ = yolo_v8(_objects(1, 2, 3, rng), 3, rng)
    prototypes = _logits(1, 32, 40, 40)
    assert recognize("output1", prototypes, 1) == "segment"
    report = compare({"output0": head, "output1": prototypes}, {"output0": head, "output1": prototypes}, batch=1)
    assert [o.task for o in report.outputs] == ["detect", "raw"]


def test_task_override():
    values = _logits(2, 30, 40)
    assert compare({"y": values}, {"y": values}, batch=2, task="ctc").outputs[0].task == "ctc"
    assert compare({"y": _logits(2, 10)}, {"y": _logits(2, 10)}, batch=2, task="raw").outputs[0].task == "raw"
    with pytest.raises(UsageError, match=r"'y' \(2x10\) cannot be read as detect.*--task y=raw"):
        compare({"y": _logits(2, 10)}, {"y": _logits(2, 10)}, batch=2, task="detect")
    with pytest.raises(UsageError, match="does not have"):
        compare({"y": values}, {"y": values}, batch=2, task={"z": "ctc"})
    with pytest.raises(UsageError, match="not one of"):
        compare({"y": values}, {"y": values}, batch=2, task="speech")


def test_compare_bad_input():
    values = _logits(2, 10)
    with pytest.raises(UsageError, match="no output 'y'"):
        compare({"y": values}, {"x": values}, batch=2)
    with pytest.raises(UsageError, match="shapes"):
        compare({"y": values}, {"y": values[:1]}, batch=2)
    with pytest.raises(UsageError, match="batch"):
        compare({"y": values}, {"y": values}, batch=0)
    with pytest.raises(UsageError, match="no budget for 'speed'"):
        compare({"y": values}, {"y": values}, batch=2, budgets={"speed": 1})


# --------------------------------------------------------------------------------------------------- parsing


def test_parse_budgets():
    assert parse_budgets("detect=0.9, ctc=95%,raw=20") == {"detect": 0.9, "ctc": 0.95, "raw": 20.0}
    assert parse_budgets("") == {} and parse_budgets(None) == {}
    assert parse_budgets("classify=99%")["classify"] == 0.99


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("detect", "not task=value"),
        ("speed=0.9", "not task=value"),
        ("auto=0.9", "not task=value"),
        ("detect=abc", "not a number"),
        ("detect=1.5", "fraction from 0 to 1"),
        ("ctc=-0.1", "fraction from 0 to 1"),
        ("raw=20%", "in dB, not %"),
    ],
)
def test_parse_budgets_errors(text, message):
    with pytest.raises(UsageError, match=message) as raised:
        parse_budgets(text)
    assert "\n" not in str(raised.value)


def test_parse_task():
    assert parse_task("detect") == "detect" and parse_task(None) == "auto"
    assert parse_task("output0=detect, output1=raw") == {"output0": "detect", "output1": "raw"}
    for bad in ("speech", "output0=speech", "=detect"):
        with pytest.raises(UsageError):
            parse_task(bad)
