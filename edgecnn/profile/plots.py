"""Charts of a profile report (matplotlib, drawn off-screen with the Agg canvas).

Left: reference top-1 accuracy against MACs, bubble area proportional to parameters, in the manner of
Canziani, Paszke and Culurciello (2017, "An analysis of deep neural network models for practical
applications", Figure 2). Right: estimated latency against the memory a model needs (weights + peak
activations), one marker per precision, with the memory budget drawn as a vertical line and the latency
limit, when given, as a horizontal one.
"""

from __future__ import annotations

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
    for row in ranked:
        if row.model in seen:
            continue
        seen.add(row.model)
        accuracy.scatter(
            row.macs / 1e9,
            row.ref_top1,
            s=_bubble_area(row.params),
            color=_TAG_COLORS[_tag(row)],
            alpha=0.55,
            edgecolors="black",
            linewidths=0.5,
        )
        accuracy.annotate(
            row.model,
            (row.macs / 1e9, row.ref_top1),
            fontsize=6.5,
            xytext=(4, 3),
            textcoords="offset points",
            color="#333333",
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
    accuracy.legend(handles=tag_handles + size_handles, loc="lower right", fontsize=8, labelspacing=1.2, borderpad=1)
    unranked = sorted({row.model for row in report.rows} - seen)
    if unranked:
        accuracy.text(
            0.01,
            0.99,
            f"not shown (no reference top-1): {', '.join(unranked[:6])}{' ...' if len(unranked) > 6 else ''}",
            transform=accuracy.transAxes,
            fontsize=7,
            color="#666666",
            va="top",
        )

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
    if len({row.model for row in rows}) <= 30:
        for row in rows:
            if row.precision == rows[0].precision:
                fit = row.fit(device)
                latency.annotate(
                    row.model,
                    (fit.model_bytes / MB, fit.estimated_ms),
                    fontsize=6.5,
                    xytext=(4, 2),
                    textcoords="offset points",
                    color="#333333",
                )
    budget_mb = rows[0].fit(device).budget_bytes / MB
    latency.axvline(budget_mb, color="#c1121f", linestyle="--", linewidth=1.2)
    latency.annotate(
        f"memory budget {budget_mb:,.1f} MB",
        (budget_mb, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-4, -12),
        textcoords="offset points",
        rotation=90,
        ha="right",
        va="top",
        fontsize=8,
        color="#c1121f",
    )
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
    latency.legend(handles=precision_handles + tag_handles, loc="lower right", fontsize=8)
    figure.suptitle(
        "edgecnn profile: latency figures are estimated (roofline x efficiency factors), not measured", fontsize=10
    )
    with staged_file(path) as temporary:
        figure.savefig(temporary, dpi=150, format=path.suffix.lstrip(".").lower() or None)
    return path
