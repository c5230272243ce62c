"""Train the task models of ``tests/data/task_models`` and export them as their ecosystems do.

Three small real models, trained on the CPU from fixed seeds on the data of ``tests/task_corpus.py``
(scikit-learn's digit scans pasted on crops of its sample photographs):

- ``yolo_digits.onnx``: a YOLOv8-style anchor-free detector (Conv-BN-SiLU backbone with C2f blocks, a
  two-level PAN neck at strides 8 and 16, the decoupled Detect head with DFL box regression), trained with
  YOLOv8's task-aligned assigner, BCE on the class scores, GIoU and DFL losses on the boxes. Its output
  ``output0`` is YOLOv8's: [N, 4 + 10, 180], the boxes (cx, cy, w, h) in input pixels concatenated with the
  sigmoid class scores.
- ``crnn_digits.onnx``: a CRNN (VGG-style convolutions, BiLSTM, linear) trained with CTC; output
  ``log_probs`` [32, N, 11] log-softmax, blank 0.
- ``unet_shapes.onnx``: a small U-Net (three poolings, transposed-convolution upsampling, skip concatenation);
  output ``logits`` [N, 4, 64, 64].

Each is exported with ``torch.onnx.export(model, (example,), path, dynamic_shapes=..., output_names=[...])``
and otherwise torch's defaults: in torch 2.13 the dynamo exporter, opset 20, the ONNX optimizer on, and
``external_data=True``, which writes every weight to ``<file>.onnx.data`` beside the graph whatever the
model's size. The batch axis is dynamic for all three. The recognizer's width is fixed (128): torch 2.13's
dynamo translation of a bidirectional LSTM bakes the sequence length of the example into a Reshape, so a
dynamic width exports but fails at any other width in ONNX Runtime.

Reproducible: every random draw (weights, batches, augmentation) comes from ``--seed``, training runs on the
CPU with deterministic algorithms and a fixed thread count; the metrics written to ``index.json`` are those
of the exported ONNX files on the eval sets of ``task_corpus``, measured with ONNX Runtime.

    nice -n 5 python scripts/train_task_models.py                  # all three -> tests/data/task_models/
    nice -n 5 python scripts/train_task_models.py detection -o /tmp/models
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import task_corpus  # noqa: E402

THREADS = 1
REBUILD = "PYTHONPATH=$PWD nice -n 5 python scripts/train_task_models.py {task} --seed {seed}"


# ---------------------------------------------------------------- YOLOv8-style detector


class Conv(nn.Sequential):
    """YOLOv8's ``Conv``: convolution without bias, BatchNorm, SiLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.cv1, self.cv2 = Conv(channels, channels), Conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """YOLOv8's ``C2f``: a 1x1 convolution split in two halves, bottlenecks on the second, all concatenated."""

    def __init__(self, cin: int, cout: int, blocks: int = 1):
        super().__init__()
        self.hidden = cout // 2
        self.cv1 = Conv(cin, 2 * self.hidden, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden) for _ in range(blocks))
        self.cv2 = Conv((2 + blocks) * self.hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).split((self.hidden, self.hidden), 1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class DFL(nn.Module):
    """YOLOv8's distribution focal loss integral: the expectation of a softmax over ``bins`` distances,
    a 1x1 convolution with the fixed weights 0..bins-1."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(bins, dtype=torch.float32).view(1, bins, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, anchors = x.shape
        return self.conv(x.view(batch, 4, self.bins, anchors).transpose(2, 1).softmax(1)).view(batch, 4, anchors)


class YoloDigits(nn.Module):
    """A YOLOv8-n-like detector at 96x96: backbone to stride 16, PAN neck, Detect head at strides 8 and 16.

    ``forward`` returns YOLOv8's inference output [N, 4 + C, A] (boxes cx, cy, w, h in input pixels, then
    sigmoid class scores); ``raw`` returns what training needs: the DFL logits [N, A, 4 * bins], the class
    logits [N, A, C], the anchor centres [A, 2] in grid units and each anchor's stride [A, 1].
    """

    strides = (8, 16)

    def __init__(self, classes: int = 10, bins: int = 8, widths: tuple[int, int, int, int] = (12, 24, 40, 64)):
        super().__init__()
        self.classes, self.bins = classes, bins
        c1, c2, c3, c4 = widths
        self.stem = Conv(3, c1, 3, 2)
        self.stage2 = nn.Sequential(Conv(c1, c2, 3, 2), C2f(c2, c2))
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3))
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.neck3 = C2f(c4 + c3, c3)
        self.down = Conv(c3, c3, 3, 2)
        self.neck4 = C2f(c3 + c4, c4)
        box_channels, class_channels = 4 * bins, 32
        self.box_heads = nn.ModuleList(
            nn.Sequential(Conv(c, box_channels), Conv(box_channels, box_channels), nn.Conv2d(box_channels, 4 * bins, 1))
            for c in (c3, c4)
        )
        self.class_heads = nn.ModuleList(
            nn.Sequential(
                Conv(c, class_channels), Conv(class_channels, class_channels), nn.Conv2d(class_channels, classes, 1)
            )
            for c in (c3, c4)
        )
        self.dfl = DFL(bins)
        for head, stride in zip(self.class_heads, self.strides):
            nn.init.constant_(head[-1].bias, math.log(5 / classes / (task_corpus.DETECTION_SIZE / stride) ** 2))
            nn.init.constant_(self.box_heads[self.strides.index(stride)][-1].bias, 1.0)

    def _levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(images)))
        p4 = self.stage4(p3)
        n3 = self.neck3(torch.cat([self.up(p4), p3], 1))
        n4 = self.neck4(torch.cat([self.down(n3), p4], 1))
        return [torch.cat([box(x), cls(x)], 1) for x, box, cls in zip((n3, n4), self.box_heads, self.class_heads)]

    @staticmethod
    def _anchors(levels: list[torch.Tensor], strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        points, steps = [], []
        for level, stride in zip(levels, strides):
            height, width = level.shape[2:]
            ys = torch.arange(height, dtype=torch.float32) + 0.5
            xs = torch.arange(width, dtype=torch.float32) + 0.5
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack((grid_x, grid_y), -1).view(-1, 2))
            steps.append(torch.full((height * width, 1), float(stride)))
        return torch.cat(points), torch.cat(steps)

    def raw(self, images: torch.Tensor):
        levels = self._levels(images)
        anchors, strides = self._anchors(levels, self.strides)
        flat = torch.cat([level.flatten(2) for level in levels], 2).transpose(1, 2)
        return flat[..., : 4 * self.bins], flat[..., 4 * self.bins :], anchors, strides

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        levels = self._levels(images)
        anchors, strides = (t.transpose(0, 1).unsqueeze(0) for t in self._anchors(levels, self.strides))
        flat = torch.cat([level.flatten(2) for level in levels], 2)
        box, cls = flat.split((4 * self.bins, self.classes), 1)
        left_top, right_bottom = self.dfl(box).chunk(2, 1)
        top_left, bottom_right = anchors - left_top, anchors + right_bottom
        boxes = torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), 1) * strides
        return torch.cat((boxes, cls.sigmoid()), 1)


def _pairwise_iou(first: torch.Tensor, second: torch.Tensor, giou: bool = False) -> torch.Tensor:
    """IoU (or GIoU) of boxes (x1, y1, x2, y2) that broadcast against each other."""
    top_left = torch.maximum(first[..., :2], second[..., :2])
    bottom_right = torch.minimum(first[..., 2:], second[..., 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    area = (first[..., 2:] - first[..., :2]).clamp(min=0).prod(-1) + (second[..., 2:] - second[..., :2]).clamp(
        min=0
    ).prod(-1)
    union = area - intersection + 1e-7
    iou = intersection / union
    if not giou:
        return iou
    hull = (torch.maximum(first[..., 2:], second[..., 2:]) - torch.minimum(first[..., :2], second[..., :2])).prod(-1)
    return iou - (hull - union) / (hull + 1e-7)


def _assign(
    scores: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor, truth_boxes: torch.Tensor,
    truth_labels: torch.Tensor, truth_valid: torch.Tensor, top_k: int = 10, alpha: float = 0.5, beta: float = 6.0,
):  # fmt: skip
    """YOLOv8's task-aligned assigner. ``scores`` [B, A, C] sigmoid, ``boxes`` [B, A, 4] and ``points`` [A, 2]
    in pixels, ``truth_*`` padded to [B, M, ...]. Returns the foreground mask [B, A], the target boxes
    [B, A, 4] and the soft class targets [B, A, C] (one-hot scaled by the normalized alignment)."""
    batch, anchors, classes = scores.shape
    inside = (points.view(1, 1, anchors, 2) > truth_boxes[..., None, :2]) & (
        points.view(1, 1, anchors, 2) < truth_boxes[..., None, 2:]
    )
    candidates = inside.all(-1) & truth_valid[..., None]
    overlaps = _pairwise_iou(truth_boxes[:, :, None], boxes[:, None]).clamp(min=0) * candidates
    class_scores = scores.gather(2, truth_labels.clamp(min=0)[:, None, :].expand(batch, anchors, -1)).transpose(1, 2)
    alignment = class_scores.pow(alpha) * overlaps.pow(beta) * candidates
    top = alignment.topk(min(top_k, anchors), dim=-1).indices
    chosen = torch.zeros_like(alignment, dtype=torch.bool).scatter_(2, top, True) & candidates
    several = chosen.sum(1, keepdim=True) > 1
    best = F.one_hot(overlaps.argmax(1), truth_boxes.shape[1]).transpose(1, 2).bool()
    chosen = torch.where(several, best & candidates, chosen)
    foreground = chosen.any(1)
    target = chosen.float().argmax(1)
    target_boxes = truth_boxes.gather(1, target[..., None].expand(-1, -1, 4))
    target_labels = truth_labels.gather(1, target).clamp(min=0)
    alignment = alignment * chosen
    normalized = alignment * (overlaps * chosen).amax(-1, keepdim=True) / (alignment.amax(-1, keepdim=True) + 1e-9)
    weight = normalized.amax(1)
    target_scores = F.one_hot(target_labels, classes).float() * (weight * foreground)[..., None]
    return foreground, target_boxes, target_scores


def _detection_loss(model: YoloDigits, images: torch.Tensor, truth_boxes, truth_labels, truth_valid) -> torch.Tensor:
    distributions, logits, anchors, strides = model.raw(images)
    batch, count, _ = distributions.shape
    bins = model.bins
    probabilities = distributions.view(batch, count, 4, bins).softmax(-1)
    distances = probabilities @ torch.arange(bins, dtype=torch.float32)
    left_top, right_bottom = distances.split(2, -1)
    boxes_grid = torch.cat((anchors - left_top, anchors + right_bottom), -1)
    boxes = boxes_grid * strides
    points = anchors * strides
    foreground, target_boxes, target_scores = _assign(
        logits.detach().sigmoid(), boxes.detach(), points, truth_boxes, truth_labels, truth_valid
    )
    normalizer = target_scores.sum().clamp(min=1)
    class_loss = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="sum") / normalizer
    weight = target_scores.sum(-1)[foreground]
    giou = _pairwise_iou(boxes[foreground], target_boxes[foreground], giou=True)
    box_loss = ((1 - giou) * weight).sum() / normalizer
    target_grid = target_boxes / strides
    target_distances = torch.cat((anchors - target_grid[..., :2], target_grid[..., 2:] - anchors), -1).clamp(
        0, bins - 1 - 0.01
    )[foreground]
    left = target_distances.long()
    right_weight = target_distances - left
    log_probabilities = F.log_softmax(distributions.view(batch, count, 4, bins)[foreground], -1)
    dfl = -(
        log_probabilities.gather(-1, left[..., None]).squeeze(-1) * (1 - right_weight)
        + log_probabilities.gather(-1, (left + 1)[..., None]).squeeze(-1) * right_weight
    ).mean(-1)
    dfl_loss = (dfl * weight).sum() / normalizer
    return 7.5 * box_loss + 0.5 * class_loss + 1.5 * dfl_loss


def _padded_truth(scenes: task_corpus.DetectionScenes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    most = max(1, max(len(b) for b in scenes.boxes))
    boxes = torch.zeros(len(scenes), most, 4)
    labels = torch.full((len(scenes), most), -1, dtype=torch.long)
    for index, (image_boxes, image_classes) in enumerate(zip(scenes.boxes, scenes.classes)):
        boxes[index, : len(image_boxes)] = torch.from_numpy(image_boxes)
        labels[index, : len(image_classes)] = torch.from_numpy(image_classes)
    return boxes, labels, labels >= 0


def train_detector(seed: int, steps: int, batch_size: int, log: Callable[[str], None]) -> nn.Module:
    model = YoloDigits(len(task_corpus.DETECTION_CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        scenes = task_corpus.detection_scenes(batch_size, "train", seed * 1_000_003 + step)
        loss = _detection_loss(model.train(), torch.from_numpy(scenes.images), *_padded_truth(scenes))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"detection step {step}/{steps}: loss {loss.item():.4f}")
    return model.eval()


# ---------------------------------------------------------------- CRNN recognizer


def _conv_bn_relu(cin: int, cout: int, kernel=3, padding=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class CRNN(nn.Module):
    """Shi et al.'s CRNN at a small width: VGG-style convolutions take 32 x W to 1 x W/4, a BiLSTM reads the
    W/4 columns, a linear layer scores blank + 10 digits; output [T, N, 11] log-softmax."""

    def __init__(self, classes: int = 11, hidden: int = 48):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(3, 16), nn.MaxPool2d(2, 2),
            _conv_bn_relu(16, 32), nn.MaxPool2d(2, 2),
            _conv_bn_relu(32, 64), _conv_bn_relu(64, 64), nn.MaxPool2d((2, 1), (2, 1)),
            _conv_bn_relu(64, 96), nn.MaxPool2d((2, 1), (2, 1)),
            _conv_bn_relu(96, 96, (2, 1), 0),
        )  # fmt: skip
        self.rnn = nn.LSTM(96, hidden, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        columns = self.features(images).squeeze(2).permute(2, 0, 1)
        sequence, _ = self.rnn(columns)
        return self.classifier(sequence).log_softmax(2)


def train_recognizer(seed: int, steps: int, batch_size: int, log: Callable[[str], None]) -> nn.Module:
    model = CRNN(len(task_corpus.RECOGNITION_ALPHABET) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps, pct_start=0.1)
    ctc = nn.CTCLoss(blank=task_corpus.RECOGNITION_BLANK, zero_infinity=True)
    for step in range(steps):
        lines = task_corpus.text_lines(batch_size, "train", seed * 1_000_003 + step)
        targets = torch.tensor([task_corpus.RECOGNITION_ALPHABET.index(c) + 1 for text in lines.labels for c in text])
        lengths = torch.tensor([len(text) for text in lines.labels])
        log_probs = model.train()(torch.from_numpy(lines.images))
        steps_in = torch.full((batch_size,), log_probs.shape[0], dtype=torch.long)
        loss = ctc(log_probs, targets, steps_in, lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"recognition step {step}/{steps}: loss {loss.item():.4f}")
    return model.eval()


# ---------------------------------------------------------------- U-Net


class UNet(nn.Module):
    """Ronneberger et al.'s U-Net at a small width: three 2x poolings, transposed convolutions up, skip
    connections concatenated, two 3x3 convolutions per level, a 1x1 classifier; output [N, C, H, W] logits."""

    def __init__(self, classes: int = 4, widths: tuple[int, ...] = (8, 16, 32, 48)):
        super().__init__()

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(_conv_bn_relu(cin, cout), _conv_bn_relu(cout, cout))

        self.encoders = nn.ModuleList(double(cin, cout) for cin, cout in zip((3, *widths[:-1]), widths))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, 2) for w in widths[:0:-1])
        self.decoders = nn.ModuleList(
            double(deep // 2 + skip, skip) for deep, skip in zip(widths[:0:-1], widths[-2::-1])
        )
        self.classifier = nn.Conv2d(widths[0], classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips, x = [], images
        for index, encoder in enumerate(self.encoders):
            x = encoder(x if index == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, decoder, skip in zip(self.ups, self.decoders, skips[-2::-1]):
            x = decoder(torch.cat([up(x), skip], 1))
        return self.classifier(x)


def train_segmenter(seed: int, steps: int, batch_size: int, log: Callable[[str], None]) -> nn.Module:
    model = UNet(len(task_corpus.SEGMENTATION_CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        scenes = task_corpus.segmentation_scenes(batch_size, "train", seed * 1_000_003 + step)
        logits = model.train()(torch.from_numpy(scenes.images))
        loss = F.cross_entropy(logits, torch.from_numpy(scenes.masks))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"segmentation step {step}/{steps}: loss {loss.item():.4f}")
    return model.eval()


# ---------------------------------------------------------------- export and records

TRAINERS = {
    "detection": (train_detector, 1200, 32),
    "recognition": (train_recognizer, 1500, 32),
    "segmentation": (train_segmenter, 1500, 16),
}
"""Per task: the training function, its default number of steps and its batch size."""


def export(model: nn.Module, task: task_corpus.Task, path: Path) -> None:
    """``torch.onnx.export`` with its defaults (dynamo, optimizer on, weights in ``<file>.data``), a dynamic
    batch axis and the task's output name. Exported into a scratch folder beside ``path``, then both files are
    renamed into place (the graph names its weights file by base name, so the pair moves together)."""
    example = torch.from_numpy(task.generate(2, "calibration", 0).images)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(scratch / path.name),
                dynamic_shapes={task.input_name: {0: torch.export.Dim("batch", min=1, max=1024)}},
                output_names=[task.output_name],
            )
        weights = path.with_name(path.name + ".data")
        (scratch / weights.name).replace(weights)
        (scratch / path.name).replace(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train_and_export(name: str, output: Path, seed: int, steps: int | None, log=print) -> dict:
    task = task_corpus.TASKS[name]
    trainer, default_steps, batch_size = TRAINERS[name]
    steps = default_steps if steps is None else steps
    torch.manual_seed(seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    model = trainer(seed, steps, batch_size, log)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    path = output / task.model_file
    export(model, task, path)
    graph = onnx.load(str(path), load_external_data=False)
    metrics = task_corpus.evaluate_onnx(path, name)
    log(f"{name}: {metrics} ({seconds:.0f} s, {cpu_seconds:.0f} s of CPU)")
    return {
        "task": name,
        "file": task.model_file,
        "external_data": f"{task.model_file}.data",
        "input": {"name": task.input_name, "shape": ["batch", *task.input_shape], "dtype": "float32"},
        "preprocessing": task.preprocessing,
        "output": {"name": task.output_name, "layout": task.output_layout},
        "classes": list(task.classes),
        **({"blank": task_corpus.RECOGNITION_BLANK} if name == "recognition" else {}),
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        "exporter": f"torch.onnx.export (dynamo, defaults) torch {torch.__version__}",
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "threads": THREADS,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "eval_set": {"split": "eval", "seed": 0, "count": task.eval_count},
        "metric": task.metric,
        "fp32_metrics": metrics,
        "rebuild": REBUILD.format(task=name, seed=seed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "tasks", nargs="*", metavar="TASK", help=f"tasks to train: {', '.join(TRAINERS)} (default: all)"
    )
    parser.add_argument("-o", "--output", type=Path, default=task_corpus.MODELS_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: each task's own)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tasks) - set(TRAINERS))
    if unknown:
        parser.error(f"unknown task {unknown[0]!r}: choose from {', '.join(TRAINERS)}")
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    args.output.mkdir(parents=True, exist_ok=True)
    index_path = args.output / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for name in args.tasks or list(TRAINERS):
        index[name] = train_and_export(name, args.output, args.seed, args.steps)
        partial = index_path.with_name("index.json.partial")
        partial.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
        partial.replace(index_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
