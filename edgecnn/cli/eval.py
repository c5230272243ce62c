"""``edgecnn eval``: top-1/top-k of exported artifacts on labelled images, and the accuracy-drop gate for CI."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgecnn.cli.common import console, emit, err_console, output_format_option, progress_bar
from edgecnn.datasets import load_labelled
from edgecnn.evaluate import DEFAULT_MAX_DROP, evaluate
from edgecnn.render import render_rows, to_json

_HEADERS = {
    "top1": "top-1 %",
    "drop": "drop (points)",
    "agreement": "top-1 agree %",
    "images": "images",
    "seconds": "s",
}


@click.command("eval")
@click.argument("artifacts", nargs=-1, required=True)
@click.option(
    "--data",
    required=True,
    metavar="DIR|digits",
    help=(
        "ImageFolder tree (ROOT/<class>/<image>, classes in sorted folder order) "
        "or 'digits' (the bundled handwritten digits, test split)."
    ),
)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Also report top-k accuracy.")
@click.option(
    "--max-drop",
    type=float,
    default=DEFAULT_MAX_DROP,
    show_default=True,
    help=(
        "Fail (exit 1) when an artifact's top-1 is more than this many points below its FP32 reference "
        "(a negative budget demands a gain)."
    ),
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False, path_type=Path),
    help="FP32 ONNX model to compare with (default: each export directory's <model>.onnx).",
)
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime threads (default: all cores).")
@output_format_option
def eval_command(artifacts, data, top_k, max_drop, reference, threads, fmt):
    """Evaluate ARTIFACTS (ONNX files beside their manifest.json, or export directories) on labelled images.

    Prints top-1 and top-k per artifact and each one's top-1 drop against FP32; exits 1 when a drop
    exceeds --max-drop, so it can gate a CI pipeline:

    \b
    edgecnn eval exports/mobilenet_v2 --data data/val --max-drop 1.0
    """
    labelled = load_labelled(data)
    progress = progress_bar(enabled=fmt != "json")
    tasks = []

    def advance(count: int) -> None:
        if not tasks:
            progress.start()
            tasks.append(progress.add_task("evaluating", total=None))
        progress.update(tasks[0], advance=count)

    try:
        report = evaluate(
            artifacts, labelled, top_k=top_k, max_drop=max_drop, reference=reference, threads=threads, on_images=advance
        )
    finally:
        if tasks:
            progress.stop()
    if fmt == "json":
        emit(to_json(report.as_dict()))
    else:
        rows = [
            {
                "artifact": Path(r.artifact).name,
                "precision": r.precision,
                "images": r.images,
                "top1": r.top1,
                f"top{report.top_k}": r.topk,
                "drop": r.drop,
                "agreement": r.agreement,
                "status": "FAIL" if r.status == "fail" else r.status,
                "seconds": r.seconds,
            }
            for r in report.results
        ]
        footer = [
            f"{report.data}: {_count(report.images, 'image')}, {_count(report.classes, 'class')}; "
            f"drop = FP32 top-1 minus this top-1 (budget {max_drop} points)"
        ]
        if report.skipped_images:
            footer.append(f"skipped {report.skipped_images} unreadable images")
        headers = {**_HEADERS, f"top{report.top_k}": f"top-{report.top_k} %"}
        emit(render_rows(rows, fmt, headers=headers, footer=footer, title="accuracy", console=console))
    if report.skipped_images:
        err_console.print(f"[yellow]warning:[/] skipped {report.skipped_images} unreadable images in {report.data}")
    if not report.passed:
        for line in report.verdict().splitlines():
            err_console.print(line.replace("FAIL:", "[red]FAIL:[/]", 1), soft_wrap=True, highlight=False)
        sys.exit(1)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun if number == 1 else noun + ('es' if noun.endswith('s') else 's')}"
