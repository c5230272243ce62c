"""``edgecnn predict``: run an exported model on images or a .npy and print top-k classes or output statistics."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from edgecnn.artifact import write_bytes_atomic
from edgecnn.cli.common import console, emit, err_console
from edgecnn.errors import UsageError
from edgecnn.options import parse_size
from edgecnn.predict import PredictionReport, load
from edgecnn.render import render_rows


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"{option} takes comma-separated numbers (0.485,0.456,0.406), not {text!r}") from None


def _rows(report: PredictionReport) -> tuple[list[dict], dict[str, str]]:
    if report.predictions[0].top is not None:
        rows = [
            {
                "input": p.input,
                "rank": rank,
                "class": entry["label"]
                if entry["label"] == str(entry["index"])
                else f"{entry['label']} ({entry['index']})",
                "probability": entry["probability"],
            }
            for p in report.predictions
            for rank, entry in enumerate(p.top, start=1)
        ]
        return rows, {"probability": "probability"}
    rows = [
        {"input": p.input, "output": name, **{k: v for k, v in figures.items() if k != "dtype"}}
        for p in report.predictions
        for name, figures in p.outputs.items()
    ]
    return rows, {}


def write_outputs(report: PredictionReport, directory: Path) -> list[Path]:
    """Each output of the whole run as ``DIRECTORY/<output>.npy`` (row i is input i), plus ``inputs.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, array in report.arrays.items():
        path = directory / f"{name.replace('/', '_')}.npy"
        with open(path.with_name(path.name + ".partial"), "wb") as stream:
            np.save(stream, array)
        path.with_name(path.name + ".partial").replace(path)
        written.append(path)
    names = directory / "inputs.json"
    write_bytes_atomic(names, json.dumps([p.input for p in report.predictions], indent=2).encode())
    return [*written, names]


@click.command("predict")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Classes shown per input.")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), help="Class names, one per line.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Inputs per run.")
@click.option(
    "--mean", metavar="M1,M2,M3", help="Per-channel mean (overrides the manifest; needed where it is unknown)."
)
@click.option("--std", metavar="S1,S2,S3", help="Per-channel std (overrides the manifest; needed where it is unknown).")
@click.option("--input-size", metavar="H|HxW", help="Crop size (overrides the manifest).")
@click.option(
    "--format", "format_key", metavar="KEY", help="Which artifact of an export directory (e.g. onnx-int8-cpu)."
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnxruntime", "tensorrt"]),
    default="auto",
    show_default=True,
    help="auto: the TensorRT engine when one is usable here, else ONNX Runtime.",
)
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime threads (default: all cores).")
@click.option(
    "--save-outputs", type=click.Path(file_okay=False, path_type=Path), help="Write each output as .npy here."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the contract for scripts).")
def predict_command(
    artifact,
    inputs,
    top_k,
    labels,
    batch_size,
    mean,
    std,
    input_size,
    format_key,
    backend,
    threads,
    save_outputs,
    as_json,
):
    """Run ARTIFACT (an export directory, ONNX file or TensorRT engine) on INPUTS (images, folders, .npy).

    Images are preprocessed as the artifact's manifest records. A classifier prints its top-k classes
    (ImageNet names for zoo models; --labels for yours); any other model prints each output's shape and
    statistics.

    \b
    edgecnn predict exports/mobilenet_v2 photo.jpg
    edgecnn predict model.onnx images/ --mean 0.5 --std 0.5 --input-size 224 --json
    """
    predictor = load(
        artifact,
        labels=labels,
        mean=_floats(mean, "--mean"),
        std=_floats(std, "--std"),
        input_size=parse_size(input_size) if input_size else None,
        format=format_key,
        backend=backend,
        threads=threads,
    )
    report = predictor.predict(list(inputs), batch_size=batch_size, top_k=top_k)
    written = write_outputs(report, save_outputs) if save_outputs else []
    if as_json:
        data = report.as_dict()
        data["saved"] = [str(p) for p in written]
        emit(json.dumps(data, indent=2))
        return
    rows, headers = _rows(report)
    render_rows(rows, "table", headers=headers, title=f"{report.model} on {report.backend}", console=console)
    console.print(
        f"{report.inputs} {'input' if report.inputs == 1 else 'inputs'} in batches of {report.batch_size} "
        f"on {report.backend}: "
        f"{report.latency_ms_per_batch:.2f} ms per batch, {report.latency_ms_per_input:.2f} ms per input "
        f"({report.artifact})",
        highlight=False,
    )
    for line in [*report.notes, *(f"skipped (unreadable): {name}" for name in report.skipped)]:
        err_console.print(line, highlight=False)
    if written:
        console.print(f"outputs written to {save_outputs}/ ({', '.join(p.name for p in written)})", highlight=False)
