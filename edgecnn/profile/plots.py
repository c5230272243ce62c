"""Charts of a profile report (matplotlib, drawn off-screen with the Agg canvas).

Left: reference top-1 accuracy against MACs, bubble area proportional to parameters, in the manner of
Canziani, Paszke and Culurciello (2017, "An analysis of deep neural network models for practical
applications", Figure 2). Right: estimated latency against the memory a model needs (weights + peak
activations), one marker per precision, with the memory budget drawn as a vertical line (marked at the edge
when it lies off the data's range, which sets the axis) and the latency limit, when given, as a horizontal
one. Labels are placed where they overlap no other label or point; a point with no such place gets a number
and a key beside the plot. Legends sit outside the axes so they cover no point.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from edgecnn.artifact.staging import staged_file
from edgecnn.errors import UsageError
from edgecnn.profile.report import MB, ProfileReport, ProfileRow

__all__ = ["plot_profile"]

_TAG_COLORS = {"efficient": "#2a9d8f", "heavy": "#e76f51", "": "#6c757d"}
_TAG_LABELS = {"efficient": "efficient", "heavy": "heavy", "": "other"}
_PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def _tag(row: ProfileRow) -> str:
    return "efficient" if "efficient" in row.tags else "heavy" if "heavy" in row.tags else ""


def _bubble_area(params: int) -> float:
    return 15 + params / 1e6 * 8


def _plain_log_ticks(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if str(f"{value:g}")[0] in "25" else ""))


_OFFSETS = [(dx, dy) for radius in (4, 10, 18) for dx, dy in (
    (radius, radius * 0.6), (radius, -radius), (-radius, radius * 0.6), (-radius, -radius),
    (0, radius * 1.2), (0, -radius * 1.6), (radius * 1.5, 0), (-radius * 1.5, 0),
)]  # fmt: skip
"""Label positions tried around a point, in points: nearest first."""


def _place_labels(
    axes, points: list[tuple[float, float, str]], obstacles: list[tuple[float, float]] = ()
) -> list[tuple[int, str]]:
    """Label each (x, y, name) beside its point where the label overlaps no other label or point; a point with
    no free place gets a number instead, and the returned (number, name) pairs form the key. ``obstacles`` are
    other points (x, y) drawn on the axes that labels must not cover either.

    Greedy placement in display coordinates, densest-first would cost more for little gain at zoo sizes (59)."""
    figure = axes.figure
    renderer = figure.canvas.get_renderer()
    figure.draw_without_rendering()
    to_display = axes.transData.transform
    scale = figure.dpi / 72.0
    marks = [to_display((x, y)) for x, y, _ in points] + [to_display(xy) for xy in obstacles]
    placed: list = []
    numbered: list[tuple[int, str]] = []

    def free(box) -> bool:
        if any(box.overlaps(other) for other in placed):
            return False
        return not any(box.x0 - 3 < mx < box.x1 + 3 and box.y0 - 3 < my < box.y1 + 3 for mx, my in marks)

    for x, y, name in points:
        for dx, dy in _OFFSETS:
            text = axes.annotate(
                name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=6.5, color="#333333",
                ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top",
            )  # fmt: skip
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = axes.get_window_extent(renderer).contains(box.x0, box.y0) and axes.get_window_extent(
                renderer
            ).contains(box.x1, box.y1)
            if inside and free(box):
                placed.append(box)
                break
            text.remove()
        else:
            number = len(numbered) + 1
            text = axes.annotate(
                str(number), (x, y), xytext=(2 * scale, 2 * scale), textcoords="offset pixels", fontsize=6,
                color="#1d3557", fontweight="bold",
            )  # fmt: skip
            placed.append(text.get_window_extent(renderer))
            numbered.append((number, name))
    return numbered


def _key_text(numbered: list[tuple[int, str]]) -> str:
    return "\n".join(f"{number}  {name}" for number, name in numbered)


def plot_profile(report: ProfileReport, path: str | Path) -> Path:
    """Draw ``report`` to ``path`` (.png or .svg) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"plots are written as .png or .svg, not {path.name!r}")
    if not report.rows:
        raise UsageError("nothing to plot: the report has no rows")
    first_batch = min(row.batch for row in report.rows)
    device = report.devices[0]
    figure = Figure(figsize=(16, 7.5), layout="constrained")
    FigureCanvasAgg(figure)
    accuracy, latency = figure.subplots(1, 2)

    seen: set[str] = set()
    ranked = [row for row in report.rows if row.batch == first_batch and row.ref_top1 is not None]
    accuracy_points = []
    for row in ranked:
        if row.model in seen:
            continue
        seen.add(row.model)
        accuracy_points.append((row.macs / 1e9, row.ref_top1, row.model))
        accuracy.scatter(
            row.macs / 1e9,
            row.ref_top1,
            s=_bubble_area(row.params),
            color=_TAG_COLORS[_tag(row)],
            alpha=0.55,
            edgecolors="black",
            linewidths=0.5,
        )
    accuracy.set_xscale("log")
    _plain_log_ticks(accuracy.xaxis)
    accuracy.set_xlabel("GMACs per image (1 MAC = one multiply-accumulate; FLOPs = 2 x MACs)")
    accuracy.set_ylabel("reference ImageNet top-1 (%)")
    accuracy.set_title("Accuracy vs operations (bubble area ~ parameters)")
    accuracy.grid(True, which="both", alpha=0.25)
    size_handles = [
        accuracy.scatter(
            [], [], s=_bubble_area(p), color="white", edgecolors="black", linewidths=0.5, label=f"{p / 1e6:g} M params"
        )
        for p in (5e6, 25e6, 100e6)
    ]
    tag_handles = [
        Line2D([], [], marker="o", linestyle="", color=color, alpha=0.7, label=_TAG_LABELS[tag], markersize=8)
        for tag, color in _TAG_COLORS.items()
    ]
    accuracy.legend(
        handles=tag_handles + size_handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
        labelspacing=1.2, borderpad=1,
    )  # fmt: skip
    unranked = sorted({row.model for row in report.rows} - seen)
    if unranked:
        note = textwrap.fill(f"not shown (no reference top-1): {', '.join(unranked)}", width=110)
        accuracy.set_xlabel(f"{accuracy.get_xlabel()}\n\n{note}", fontsize=8)

    rows = [row for row in report.rows if row.batch == first_batch]
    for row in rows:
        fit = row.fit(device)
        latency.scatter(
            fit.model_bytes / MB,
            fit.estimated_ms,
            marker=_PRECISION_MARKERS.get(row.precision, "o"),
            color=_TAG_COLORS[_tag(row)],
            alpha=0.75 if fit.fits else 0.3,
            s=28,
            edgecolors="black" if fit.fits else "none",
            linewidths=0.4,
        )
    memory = [row.fit(device).model_bytes / MB for row in rows]
    low, high = min(memory) / 1.4, max(memory) * 1.4
    budget_mb = rows[0].fit(device).budget_bytes / MB
    if low <= budget_mb <= high:
        latency.axvline(budget_mb, color="#c1121f", linestyle="--", linewidth=1.2)
        latency.annotate(
            f"memory budget {budget_mb:,.1f} MB", (budget_mb, 1.0), xycoords=("data", "axes fraction"),
            xytext=(-4, -12), textcoords="offset points", rotation=90, ha="right", va="top", fontsize=8,
            color="#c1121f",
        )  # fmt: skip
    else:
        side = "right" if budget_mb > high else "left"
        latency.annotate(
            f"{'→' if side == 'right' else '←'} memory budget {budget_mb:,.1f} MB, off the scale: "
            f"{'every' if side == 'right' else 'no'} model fits",
            (1.0 if side == "right" else 0.0, 0.0), xycoords="axes fraction", ha=side, va="bottom", fontsize=8,
            color="#c1121f", xytext=(-4 if side == "right" else 4, 4), textcoords="offset points",
        )  # fmt: skip
    latency.set_xlim(low, high)
    if report.max_latency_ms is not None:
        latency.axhline(report.max_latency_ms, color="#1d3557", linestyle=":", linewidth=1.2)
        latency.annotate(
            f"latency limit {report.max_latency_ms:g} ms",
            (0.99, report.max_latency_ms),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="#1d3557",
        )
    latency.set_xscale("log")
    latency.set_yscale("log")
    _plain_log_ticks(latency.xaxis)
    _plain_log_ticks(latency.yaxis)
    latency.set_xlabel("model memory MB (weights + peak activations; MB = 2^20 bytes)")
    latency.set_ylabel(f"estimated latency, ms per batch of {first_batch}")
    latency.set_title(f"Estimated latency vs memory on {device} (faded: over budget)")
    latency.grid(True, which="both", alpha=0.25)
    precision_handles = [
        Line2D([], [], marker=marker, linestyle="", color="#444444", label=precision, markersize=7)
        for precision, marker in _PRECISION_MARKERS.items()
        if any(row.precision == precision for row in rows)
    ]
    latency.legend(handles=precision_handles + tag_handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    keys = []
    if len(accuracy_points) <= 80:
        keys.append(("left", _place_labels(accuracy, accuracy_points)))
    labelled = [r for r in rows if r.precision == rows[0].precision]
    if len(labelled) <= 80:
        points = [(r.fit(device).model_bytes / MB, r.fit(device).estimated_ms, r.model) for r in labelled]
        others = [(r.fit(device).model_bytes / MB, r.fit(device).estimated_ms) for r in rows if r not in labelled]
        keys.append(("right", _place_labels(latency, points, others)))
    for side, numbered in keys:
        if numbered:
            axes = accuracy if side == "left" else latency
            axes.text(
                1.01, 0.0, "key\n" + _key_text(numbered), transform=axes.transAxes, fontsize=6.5, va="bottom",
                ha="left", color="#1d3557", family="monospace",
            )  # fmt: skip
    figure.suptitle(
        "edgecnn profile: latency figures are estimated (roofline x efficiency factors), not measured", fontsize=10
    )
    with staged_file(path) as temporary:
        figure.savefig(temporary, dpi=150, format=path.suffix.lstrip(".").lower() or None)
    return path
