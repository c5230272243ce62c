"""The task corpus: its data generators, its labelled metrics, and the trained task models it scores.

Metrics are checked against values worked out by hand (and mean IoU against scikit-learn's
``jaccard_score``); the committed models must load in ONNX Runtime, keep the layout ``index.json`` records
and reach their recorded FP32 metric on the eval set, while the same files with their weights shuffled or
zeroed must not.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import task_corpus as tc
from onnx import numpy_helper
from task_corpus import Detections

TOLERANCE = 0.02
"""How far below its recorded FP32 metric a model may land (ONNX Runtime's kernels differ across CPUs)."""


def _meets_record(task: str, metrics: dict, record: dict) -> bool:
    name = tc.TASKS[task].metric
    return metrics[name] >= record["fp32_metrics"][name] - TOLERANCE


# ---------------------------------------------------------------- metrics against hand-computed values


def test_box_iou_hand_values():
    iou = tc.box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]))
    np.testing.assert_allclose(iou, [[1 / 7, 1.0, 0.0]])


def test_non_max_suppression_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    keep = tc.non_max_suppression(boxes, np.array([0.6, 0.9, 0.5]), iou_threshold=0.5)
    assert keep.tolist() == [1, 2]
    keep = tc.non_max_suppression(boxes, np.array([0.6, 0.9, 0.5]), iou_threshold=0.9)
    assert keep.tolist() == [1, 0, 2]


def test_average_precision_hand_value():
    # Three true boxes; ranked detections hit, miss, hit: recall 1/3, 1/3, 2/3 and precision 1, 1/2, 2/3.
    # The monotone envelope is 1, 2/3, 2/3, so AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    ap = tc.average_precision(np.array([1 / 3, 1 / 3, 2 / 3]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(5 / 9)
    assert tc.average_precision(np.array([]), np.array([])) == 0.0


def test_decode_detections_converts_centre_boxes_and_suppresses_duplicates():
    output = np.zeros((1, 4 + 3, 4), np.float32)
    output[0, :4, 0] = [20, 30, 10, 20]  # x1, y1, x2, y2 = 15, 20, 25, 40
    output[0, 4 + 2, 0] = 0.9
    output[0, :4, 1] = [21, 30, 10, 20]  # the same object, lower score
    output[0, 4 + 2, 1] = 0.7
    output[0, :4, 2] = [21, 30, 10, 20]  # same place, another class: kept (class-wise NMS)
    output[0, 4 + 0, 2] = 0.8
    output[0, :4, 3] = [60, 60, 8, 8]
    output[0, 4 + 1, 3] = 0.1  # under the score threshold
    (detections,) = tc.decode_detections(output, score_threshold=0.25)
    assert detections.classes.tolist() == [2, 0]
    np.testing.assert_allclose(detections.scores, [0.9, 0.8])
    np.testing.assert_allclose(detections.boxes[0], [15, 20, 25, 40])


def test_detection_metrics_hand_values():
    truth_boxes = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([[0, 0, 10, 10]], np.float32)]
    truth_classes = [np.array([1, 2]), np.array([1])]
    predictions = [
        Detections(
            np.array([[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30]], np.float32),
            np.array([0.9, 0.8, 0.1]),
            np.array([1, 1, 1]),  # a duplicate and a wrong class
        ),
        Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.7]), np.array([1])),
    ]
    metrics = tc.detection_metrics(predictions, truth_boxes, truth_classes)
    # Class 1 (2 truths), by score: 0.9 hit, 0.8 duplicate miss, 0.7 hit, 0.1 miss:
    # recall 1/2, 1/2, 1, 1; precision 1, 1/2, 2/3, 1/2 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. Class 2: AP 0.
    assert metrics["map50"] == pytest.approx((5 / 6 + 0) / 2)
    # At score >= 0.25: detections 0.9, 0.8, 0.7 give 2 hits out of 3 truths and 3 detections.
    assert metrics["recall50"] == pytest.approx(2 / 3)
    assert metrics["precision50"] == pytest.approx(2 / 3)


def test_detection_agreement_counts_same_class_overlaps():
    reference = [Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.ones(2), np.array([3, 4]))]
    same = [Detections(np.array([[1, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.ones(2), np.array([3, 5]))]
    assert tc.detection_agreement(reference, same) == pytest.approx(0.5)
    assert tc.detection_agreement(reference, reference) == 1.0
    empty = [Detections(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int64))]
    assert tc.detection_agreement(reference, empty) == 0.0


def test_agreement_in_task_terms():
    detections = np.zeros((1, 4 + 2, 2), np.float32)
    detections[0, :, 0] = [20, 20, 10, 10, 0.9, 0.0]
    detections[0, :, 1] = [60, 60, 10, 10, 0.0, 0.8]
    lost_one = detections.copy()
    lost_one[0, 5, 1] = 0.1
    assert tc.agreement("detection", detections, lost_one) == pytest.approx(0.5)
    lines = np.log(np.full((3, 2, 11), 0.01, np.float32))
    lines[:, 0, 1] = lines[:, 1, 2] = 0.0  # "0" and "1"
    changed = lines.copy()
    changed[1, 1, 2], changed[1, 1, 5] = -9.0, 0.0  # the second line reads "141"
    assert tc.agreement("recognition", lines, changed) == pytest.approx(0.5)
    masks = np.zeros((1, 4, 2, 2), np.float32)
    masks[0, 1] = 1.0
    other = masks.copy()
    other[0, 3, 0, 0] = 2.0
    assert tc.agreement("segmentation", masks, other) == pytest.approx(0.75)


def test_ctc_greedy_decode_merges_repeats_and_drops_blanks():
    path = [0, 1, 1, 0, 1, 3, 3, 0]  # blank, '0', '0', blank, '0', '2', '2', blank -> "002"
    log_probs = np.log(np.full((len(path), 1, 11), 0.01, np.float32))
    log_probs[np.arange(len(path)), 0, path] = 0.0
    assert tc.ctc_greedy_decode(log_probs) == ["002"]
    assert tc.ctc_greedy_decode(log_probs.transpose(1, 0, 2), layout="NTC") == ["002"]


def test_edit_distance_and_character_error_rate_hand_values():
    assert tc.edit_distance("kitten", "sitting") == 3
    assert tc.edit_distance("", "123") == 3
    assert tc.character_error_rate(["1234", "99"], ["1234", "989"]) == pytest.approx(1 / 7)
    metrics = tc.recognition_metrics(["1234", "99"], ["1234", "989"])
    assert metrics == {"exact_match": 0.5, "cer": pytest.approx(1 / 7)}


def test_segmentation_metrics_hand_values_and_scikit_learn():
    truth = np.array([[[0, 0], [1, 1]]])
    predicted = np.array([[[0, 1], [1, 1]]])
    metrics = tc.segmentation_metrics(predicted, truth, classes=4)
    # Class 0: 1 TP, 1 FN -> 1/2; class 1: 2 TP, 1 FP -> 2/3; classes 2 and 3 absent.
    assert metrics["iou"] == [pytest.approx(0.5), pytest.approx(2 / 3), None, None]
    assert metrics["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(0.75)
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, (2, 16, 16))
    predicted = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 4, truth.shape))
    expected = jaccard_score(truth.ravel(), predicted.ravel(), average="macro")
    assert tc.segmentation_metrics(predicted, truth)["miou"] == pytest.approx(expected)
    logits = np.eye(4)[predicted].transpose(0, 3, 1, 2)
    assert tc.segmentation_metrics(logits, truth)["miou"] == pytest.approx(expected)


# ---------------------------------------------------------------- generators


def test_generators_are_deterministic_and_splits_differ():
    for generate in (tc.detection_scenes, tc.text_lines, tc.segmentation_scenes):
        first, again = generate(3, "eval", 5), generate(3, "eval", 5)
        np.testing.assert_array_equal(first.pixels, again.pixels)
        assert not np.array_equal(first.pixels, generate(3, "train", 5).pixels)
        assert not np.array_equal(first.pixels, generate(3, "eval", 6).pixels)
    with pytest.raises(ValueError, match="split must be one of"):
        tc.text_lines(1, "test")


def test_generated_labels_are_consistent_with_the_pixels():
    scenes = tc.detection_scenes(20, "eval", 1)
    assert scenes.images.shape == (20, 3, 96, 96) and scenes.images.dtype == np.float32
    np.testing.assert_allclose(scenes.images, scenes.pixels.transpose(0, 3, 1, 2) / 255, atol=1e-6)
    for boxes, classes in zip(scenes.boxes, scenes.classes):
        assert 1 <= len(boxes) <= 4 and len(classes) == len(boxes)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
        heights = boxes[:, 3] - boxes[:, 1]
        assert ((heights >= 8) & (heights <= 34)).all()
        assert set(classes.tolist()) <= set(range(10))
        assert tc.box_iou(boxes, boxes)[~np.eye(len(boxes), dtype=bool)].max(initial=0) == 0
    lines = tc.text_lines(20, "eval", 1)
    assert lines.images.shape == (20, 3, 32, 128)
    np.testing.assert_allclose(lines.images, (lines.pixels.transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5, atol=1e-5)
    assert all(4 <= len(text) <= 8 and text.isdigit() for text in lines.labels)
    segments = tc.segmentation_scenes(20, "eval", 1)
    assert segments.masks.shape == (20, 64, 64) and set(np.unique(segments.masks)) <= {0, 1, 2, 3}


def test_calibration_and_eval_files_round_trip(tmp_path):
    path = tc.write_calibration("recognition", tmp_path / "calib.npz", count=4)
    with np.load(path) as archive:
        assert archive.files == ["images"] and archive["images"].shape == (4, 3, 32, 128)
        np.testing.assert_array_equal(archive["images"], tc.text_lines(4, "calibration", 0).images)
    for task in tc.TASKS:
        written = tc.write_eval_set(task, tmp_path / f"{task}.npz", count=5)
        loaded, expected = tc.load_eval_set(task, written), tc.eval_set(task, count=5)
        np.testing.assert_array_equal(loaded.images, expected.images)
        for field in ("boxes", "classes", "labels"):
            if hasattr(expected, field):
                assert len(getattr(loaded, field)) == len(getattr(expected, field))
                for got, want in zip(getattr(loaded, field), getattr(expected, field)):
                    np.testing.assert_array_equal(got, want)
        if hasattr(expected, "masks"):
            np.testing.assert_array_equal(loaded.masks, expected.masks)
    assert not list(tmp_path.glob("*.partial*"))


# ---------------------------------------------------------------- the committed models


@pytest.fixture(scope="module")
def index() -> dict:
    if not (tc.MODELS_DIR / "index.json").exists():
        pytest.skip(f"no task models in {tc.MODELS_DIR}: build them with scripts/train_task_models.py")
    return tc.load_index()


@pytest.mark.parametrize("task", list(tc.TASKS))
def test_model_is_an_ecosystem_export_with_external_data_and_dynamic_batch(index, task):
    record = index[task]
    path = tc.MODELS_DIR / record["file"]
    graph = onnx.load(str(path), load_external_data=False)
    # torch's exporter moves the weights to the .data file (every tensor of 1 KiB or more), a few small ones stay.
    sizes = {
        init.name: int(np.prod(init.dims)) * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        for init in graph.graph.initializer
    }
    external = {init.name for init in graph.graph.initializer if init.data_location == onnx.TensorProto.EXTERNAL}
    assert external >= {name for name, size in sizes.items() if size >= 1024}
    assert sum(sizes[name] for name in external) > 0.9 * sum(sizes.values())
    locations = {
        entry.value for init in graph.graph.initializer for entry in init.external_data if entry.key == "location"
    }
    assert locations == {record["external_data"]} and (tc.MODELS_DIR / record["external_data"]).is_file()
    (model_input,) = graph.graph.input
    assert model_input.name == record["input"]["name"] == tc.TASKS[task].input_name
    dims = [d.dim_param or d.dim_value for d in model_input.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == list(tc.TASKS[task].input_shape)
    assert [output.name for output in graph.graph.output] == [record["output"]["name"]]
    images = tc.eval_set(task, count=3).images
    spec = tc.TASKS[task]
    together = tc.run_onnx(path, images, spec.batch_axis, batch_size=3)
    one_by_one = tc.run_onnx(path, images, spec.batch_axis, batch_size=1)
    np.testing.assert_allclose(together, one_by_one, rtol=1e-4, atol=1e-4)
    expected_shape = {
        "detection": (3, 14, 180),
        "recognition": (32, 3, 11),
        "segmentation": (3, 4, 64, 64),
    }[task]
    assert together.shape == expected_shape


def test_detector_output_is_pixel_boxes_concatenated_with_scores(index):
    output = tc.run_onnx(tc.MODELS_DIR / index["detection"]["file"], tc.eval_set("detection", count=8).images)
    boxes, scores = output[:, :4], output[:, 4:]
    assert (scores >= 0).all() and (scores <= 1).all()
    assert boxes[:, :2].max() > 80  # centres span the 96-pixel input
    assert boxes[:, :2].min() >= -8 and boxes[:, :2].max() <= 104


@pytest.mark.parametrize("task", list(tc.TASKS))
def test_model_reaches_its_recorded_metric_and_broken_weights_do_not(index, task, tmp_path):
    record = index[task]
    path = tc.MODELS_DIR / record["file"]
    metrics = tc.evaluate_onnx(path, task)
    assert _meets_record(task, metrics, record), (metrics, record["fp32_metrics"])
    assert metrics[record["metric"]] == pytest.approx(record["fp32_metrics"][record["metric"]], abs=TOLERANCE)
    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for kind in ("shuffled", "zeroed"):
        broken = onnx.ModelProto()
        broken.CopyFrom(model)
        for init in broken.graph.initializer:
            values = numpy_helper.to_array(init)
            if values.size < 16 or not np.issubdtype(values.dtype, np.floating):
                continue
            changed = rng.permutation(values.ravel()).reshape(values.shape) if kind == "shuffled" else 0 * values
            init.CopyFrom(numpy_helper.from_array(changed.astype(values.dtype), init.name))
        broken_path = tmp_path / f"{kind}.onnx"
        onnx.save(broken, str(broken_path))
        broken_metrics = tc.evaluate_onnx(broken_path, task)
        assert not _meets_record(task, broken_metrics, record), (kind, broken_metrics)
