"""The profile plot: labels that never overlap (a numbered key instead), legends off the data, axes fit to it."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edgecnn.profile.plots import _place_labels


def _axes():
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.set_xlim(0, 10)
    axes.set_ylim(0, 10)
    return axes


def _text_boxes(axes):
    renderer = axes.figure.canvas.get_renderer()
    return [text.get_window_extent(renderer) for text in axes.texts]


def test_labels_of_separate_points_are_placed_without_overlap():
    axes = _axes()
    points = [(1.5, 1.5, "googlenet"), (5, 5, "resnet18"), (8, 8, "mobilenet_v2")]
    assert _place_labels(axes, points) == []
    boxes = _text_boxes(axes)
    assert len(boxes) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_crowded_points_get_numbers_and_a_key_instead_of_overlapping_labels():
    axes = _axes()
    points = [(5, 5 + i * 0.01, f"model_with_a_long_name_{i}") for i in range(30)]
    numbered = _place_labels(axes, points)
    assert numbered and [number for number, _ in numbered] == list(range(1, len(numbered) + 1))
    labels = [t for t in axes.texts if not t.get_text().isdigit()]
    renderer = axes.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
