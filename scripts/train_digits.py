"""Train the digits reference models: small LeNet-5, MobileNet v1/v2, ShuffleNet v2, SqueezeNet 1.1, ResNet-18.

Reproducible: the split is the fixed one of :mod:`edgecnn.datasets`, every random draw (initial weights,
shuffling, augmentation) comes from ``--seed``, and training runs on the CPU with a fixed thread count.
Trained weights are written as float16 state_dicts, and the accuracy reported is that of the weights as
written (rounded to float16, loaded back into float32), measured on the test split.

    python scripts/train_digits.py                      # the shipped models -> edgecnn/data/reference_weights/
    python scripts/train_digits.py resnet18 -o /tmp/w   # one model, elsewhere
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from edgecnn.artifact.manifest import sha256_file
from edgecnn.datasets import DIGITS_SPLIT_SEED, digits_split_sha256, load_digits
from edgecnn.testing import REFERENCE_INPUT_SIZE, REFERENCE_MODELS, save_state_dict_fp16

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "edgecnn" / "data" / "reference_weights"
BATCH_SIZE = 64
WEIGHT_DECAY = 5e-4
MAX_SHIFT = 3
"""Augmentation: random translations of up to 3 pixels at 32x32 (under one original 8x8 pixel)."""


@dataclass
class TrainingRecord:
    name: str
    config: dict
    seed: int
    epochs: int
    learning_rate: float
    input_size: int
    train_images: int
    test_images: int
    test_top1: float
    parameters: int
    seconds: float
    weights_sha256: str
    split_seed: int
    split_sha256: str
    torch: str


def _shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by a random (dy, dx) in [-MAX_SHIFT, MAX_SHIFT], padding with the background."""
    padded = nn.functional.pad(images, (MAX_SHIFT,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (len(images), 2), generator=generator)
    height, width = images.shape[-2:]
    return torch.stack([p[:, y : y + height, x : x + width] for p, (y, x) in zip(padded, offsets.tolist())])


def _start_classes_alive(model: nn.Module) -> None:
    """Start SqueezeNet's class-score bias at 1 instead of 0.

    SqueezeNet scores the classes through a ReLU: a class whose score falls below zero on every image gets
    no gradient and is never predicted again. From the zero bias one or two of the ten digits died in
    training (top-1 88.9% and 79.7%); a positive start keeps every class alive until its own images hold it up.
    """
    final_conv = getattr(model, "classifier", None)
    if (
        isinstance(final_conv, nn.Sequential)
        and isinstance(final_conv[-2], nn.ReLU)
        and isinstance(final_conv[1], nn.Conv2d)
    ):
        nn.init.constant_(final_conv[1].bias, 1.0)


def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(256)])
    return float((predictions == labels).double().mean() * 100)


def train(
    name: str, *, seed: int = 0, epochs: int | None = None, learning_rate: float | None = None, log=print
) -> tuple[nn.Module, float, float]:
    """Train reference model ``name``; returns (model in eval mode, test top-1 in percent, seconds)."""
    reference = REFERENCE_MODELS[name]
    epochs = reference.epochs if epochs is None else epochs
    learning_rate = reference.learning_rate if learning_rate is None else learning_rate
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    preprocessing = reference.preprocessing
    train_set = load_digits("train").arrays(preprocessing)
    test_set = load_digits("test").arrays(preprocessing)
    images, labels = torch.from_numpy(train_set.images), torch.from_numpy(train_set.labels)
    test_images, test_labels = torch.from_numpy(test_set.images), torch.from_numpy(test_set.labels)
    model = reference.build(seed=seed)
    _start_classes_alive(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(images) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=epochs * steps_per_epoch)
    loss_function = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            loss = loss_function(model(_shifted(images[batch], generator)), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        model.eval()
        log(
            f"{name} epoch {epoch + 1}/{epochs}: loss {total / len(images):.4f}, "
            f"test top-1 {top1(model, test_images, test_labels):.2f}%"
        )
    seconds = time.perf_counter() - started
    rounded = {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(rounded)
    return model.eval(), top1(model, test_images, test_labels), seconds


def train_and_save(
    name: str, output: Path, *, seed: int = 0, epochs: int | None = None, learning_rate: float | None = None, log=print
) -> TrainingRecord:
    model, accuracy, seconds = train(name, seed=seed, epochs=epochs, learning_rate=learning_rate, log=log)
    path = save_state_dict_fp16(model, output / f"{name}.pt")
    reference = REFERENCE_MODELS[name]
    return TrainingRecord(
        name=name,
        config=dict(reference.config),
        seed=seed,
        epochs=reference.epochs if epochs is None else epochs,
        learning_rate=reference.learning_rate if learning_rate is None else learning_rate,
        input_size=REFERENCE_INPUT_SIZE,
        train_images=len(load_digits("train")),
        test_images=len(load_digits("test")),
        test_top1=round(accuracy, 4),
        parameters=sum(p.numel() for p in model.parameters()),
        seconds=round(seconds, 1),
        weights_sha256=sha256_file(path),
        split_seed=DIGITS_SPLIT_SEED,
        split_sha256=digits_split_sha256(),
        torch=torch.__version__,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", help=f"reference models (default: the shipped ones); any of {', '.join(REFERENCE_MODELS)}"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="where the .pt files and reference_models.json go"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override each model's epoch count")
    parser.add_argument("--learning-rate", type=float, help="override each model's peak learning rate")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (fixed for reproducibility; one is fastest for these small models)",
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in REFERENCE_MODELS]
    if unknown:
        parser.error(f"unknown reference model(s) {', '.join(unknown)}: choose from {', '.join(REFERENCE_MODELS)}")
    torch.set_num_threads(args.threads)
    names = args.models or [name for name, model in REFERENCE_MODELS.items() if model.shipped]
    records_path = args.output / "reference_models.json"
    records = json.loads(records_path.read_text()) if records_path.is_file() else {}
    for name in names:
        record = train_and_save(name, args.output, seed=args.seed, epochs=args.epochs, learning_rate=args.learning_rate)
        records[name] = asdict(record)
        print(f"{name}: test top-1 {record.test_top1:.2f}% in {record.seconds:.0f} s, {record.parameters:,} parameters")
    records_path.parent.mkdir(parents=True, exist_ok=True)
    records_path.write_text(json.dumps(dict(sorted(records.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
