"""Third-party-style ONNX models built on the fly: the files users bring, not edgecnn's own exports.

Each builder writes one model into a directory and returns its path with a :class:`CorpusModel` that says
what a correct import must give: the input shapes to pass, every output's name and shape after import, and
the number of parameters counted from the PyTorch module, independently of any ONNX graph.

The definitions are small timm- and torchvision-style networks written here (no torchvision, no downloads),
exported with the TorchScript exporter (``dynamo=False``) at opsets 9, 11, 13 and 17, two of them then
converted to opset 7 (IR 3, initializers listed as graph inputs, as old converters wrote them) and 21 with
onnx's version converter. The graphs are then rewritten the way other exporters write them: weights as
``Constant`` nodes (tf2onnx, paddle2onnx, exports with constant folding off) or computed by constant
subgraphs (Reshape, Transpose and Cast of constants, ConstantOfShape), Dropout with its mask and
BatchNormalization with its training outputs (training-mode exports), a real ``LRN`` node (Caffe-era
files). Dynamic batch, height and width are declared where third-party exporters declare them.

Parameter counts follow PyTorch's ``parameters()`` with one adjustment that every deployed graph makes: a
BatchNorm right after a convolution (:class:`ConvBN`) is folded into it, so the pair holds the
convolution's weight and one bias per output channel. BatchNorm running statistics are buffers, not
parameters, on both sides.

The whole corpus builds in a few seconds on one core; :func:`build_corpus` builds it once per directory.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

__all__ = ["BUILDERS", "CorpusModel", "build_corpus", "deployed_parameter_count", "random_inputs"]


@dataclass(frozen=True)
class CorpusModel:
    """What a correct import of one corpus file gives.

    ``input_shapes`` is what a user passes (None: the file's shapes are already static); ``inputs`` are
    the fixed shapes of every input after import; ``outputs`` maps each output name that must survive to
    its shape after import; ``parameters`` is :func:`deployed_parameter_count` of the PyTorch module;
    ``reference`` holds the PyTorch module's outputs (eval mode) for :func:`random_inputs` of ``inputs``.
    ``source_is_inference`` is False for a file that ONNX Runtime runs in training mode (BatchNormalization
    with batch statistics): its own outputs are then not the inference reference.
    """

    name: str
    opset: int
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    parameters: int
    classifier: bool
    input_shapes: dict[str, list[int]] | list[int] | None = None
    features: tuple[str, ...] = field(default_factory=tuple)
    source_is_inference: bool = True
    reference: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)


class ConvBN(nn.Sequential):
    """Convolution, BatchNorm and an optional activation: the unit timm and torchvision build from."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU
    ):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


def deployed_parameter_count(module: nn.Module) -> int:
    """``sum(p.numel() for p in module.parameters())`` with every :class:`ConvBN` counted as deployed
    graphs hold it: the convolution's weight plus one bias per output channel."""
    total = sum(p.numel() for p in module.parameters())
    for unit in module.modules():
        if isinstance(unit, ConvBN):
            conv, bn = unit[0], unit[1]
            total -= bn.weight.numel() + bn.bias.numel() + (conv.bias.numel() if conv.bias is not None else 0)
            total += conv.out_channels
    return total


def _randomize_batchnorm(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial running statistics and affine terms, so folding them wrongly changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    for unit in module.modules():
        if isinstance(unit, nn.BatchNorm2d):
            channels = unit.num_features
            unit.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
            unit.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            with torch.no_grad():
                unit.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                unit.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
    return module.eval()


class _LRNFunction(torch.autograd.Function):
    """Local response normalization exported as one ONNX ``LRN`` node, as Caffe-era files hold it
    (PyTorch's own export decomposes it into pooling arithmetic)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size: int, alpha: float, beta: float, k: float):
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.Module):
    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.args = (size, alpha, beta, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LRNFunction.apply(x, *self.args)


class AlexNetLRN(nn.Module):
    """torchvision's AlexNet as first published: LRN after the first two convolutions, Dropout in the head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5, 2, 2),
            nn.ReLU(),
            LRN(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(32, 48, 3, 1, 1),
            nn.ReLU(),
            LRN(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(48, 64, 3, 1, 1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(3)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(64 * 9, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(scale))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int, se: bool):
        super().__init__()
        mid = cin * expand
        self.block = nn.Sequential(
            ConvBN(cin, mid, 1, act=nn.Hardswish),
            ConvBN(mid, mid, 3, stride, groups=mid, act=nn.Hardswish),
            SqueezeExcite(mid, max(8, mid // 4)) if se else nn.Identity(),
            ConvBN(mid, cout, 1, act=None),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3ish(nn.Module):
    """timm's MobileNetV3 layout at a small width: hard-swish, depthwise convolutions, squeeze-excite;
    the head flattens with ``flatten(2)``, exported as Shape -> Slice -> Concat -> Reshape."""

    def __init__(self, classes: int = 100):
        super().__init__()
        self.stem = ConvBN(3, 16, 3, 2, act=nn.Hardswish)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 24, 4, 2, False),
            InvertedResidual(24, 24, 3, 1, False),
            InvertedResidual(24, 40, 3, 2, True),
            InvertedResidual(40, 40, 3, 1, True),
            InvertedResidual(40, 64, 4, 2, True),
        )
        self.head = ConvBN(64, 256, 1, act=nn.Hardswish)
        self.classifier = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.blocks(self.stem(x)))
        y = y.flatten(2).mean(-1)
        return self.classifier(y)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.conv2 = ConvBN(cout, cout, 3, act=None)
        self.down = ConvBN(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.down(x))


class ResNetish(nn.Module):
    """torchvision's ResNet-18 layout at widths 32-128 (1.3 M parameters)."""

    def __init__(self, classes: int = 50):
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, 32, 7, 2), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(
            BasicBlock(32, 32, 1),
            BasicBlock(32, 64, 2),
            BasicBlock(64, 96, 2),
            BasicBlock(96, 160, 2),
            BasicBlock(160, 160, 1),
        )
        self.fc = nn.Linear(160, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class VGGish(nn.Module):
    """torchvision's VGG layout (plain 3x3 convolutions with biases, two hidden Linear layers) at 1.1 M."""

    def __init__(self, classes: int = 20):
        super().__init__()
        widths = [(3, 32), (32, 64), (64, 96), (96, 128)]
        layers: list[nn.Module] = []
        for cin, cout in widths:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(128 * 4 * 4, 384), nn.ReLU(), nn.Linear(384, 128), nn.ReLU(), nn.Linear(128, classes)
        )
        nn.init.zeros_(self.classifier[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class UNetish(nn.Module):
    """A segmentation network: two encoder stages, decoder upsampling to the skip's size (``size=`` taken
    from a tensor's shape, so Resize's sizes are data-dependent until the input shape is fixed)."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.enc1 = nn.Sequential(ConvBN(3, 16), ConvBN(16, 16))
        self.enc2 = nn.Sequential(ConvBN(16, 32, stride=2), ConvBN(32, 32))
        self.enc3 = nn.Sequential(ConvBN(32, 64, stride=2), ConvBN(64, 64))
        self.dec2 = ConvBN(64 + 32, 32)
        self.dec1 = ConvBN(32 + 16, 16)
        self.out = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(x)
        s2 = self.enc2(s1)
        y = self.enc3(s2)
        y = self.dec2(torch.cat([F.interpolate(y, size=s2.shape[-2:], mode="bilinear", align_corners=False), s2], 1))
        y = self.dec1(torch.cat([F.interpolate(y, size=s1.shape[-2:], mode="bilinear", align_corners=False), s1], 1))
        return self.out(y)


class DetectorHead(nn.Module):
    """A one-stage detector (RetinaNet/YOLO-style): a stride-8 backbone, a class head and a box head, each
    reshaped to [N, anchors * H * W, K] with shapes computed from the feature map."""

    def __init__(self, classes: int = 8, anchors: int = 3):
        super().__init__()
        self.classes, self.anchors = classes, anchors
        self.backbone = nn.Sequential(
            ConvBN(3, 16, stride=2), ConvBN(16, 32, stride=2), ConvBN(32, 48, stride=2), ConvBN(48, 48)
        )
        self.cls = nn.Conv2d(48, anchors * classes, 3, padding=1)
        self.box = nn.Conv2d(48, anchors * 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        n = f.shape[0]
        scores = torch.sigmoid(self.cls(f)).permute(0, 2, 3, 1).reshape(n, -1, self.classes)
        boxes = self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return scores, boxes


class CRNN(nn.Module):
    """A CTC text recognizer: convolutions that reduce a 32-pixel line to height 1, a bidirectional LSTM
    over the width, per-step log-probabilities [T, N, classes]."""

    def __init__(self, classes: int = 37):
        super().__init__()
        self.cnn = nn.Sequential(
            ConvBN(1, 32),
            nn.MaxPool2d(2),
            ConvBN(32, 64),
            nn.MaxPool2d(2),
            ConvBN(64, 96),
            nn.MaxPool2d((2, 1)),
            ConvBN(96, 96),
            nn.MaxPool2d((4, 1)),
        )
        self.rnn = nn.LSTM(96, 48, bidirectional=True)
        self.fc = nn.Linear(96, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cnn(x).squeeze(2).permute(2, 0, 1)
        y, _ = self.rnn(f)
        return F.log_softmax(self.fc(y), -1)


class TwoStream(nn.Module):
    """RGB-D fusion: one stem per input, features concatenated, a classifier."""

    def __init__(self, classes: int = 12):
        super().__init__()
        self.rgb = nn.Sequential(ConvBN(3, 24, stride=2), ConvBN(24, 32, stride=2))
        self.depth = nn.Sequential(ConvBN(1, 8, stride=2), ConvBN(8, 16, stride=2))
        self.fuse = ConvBN(48, 64, stride=2)
        self.fc = nn.Linear(64, classes)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat([self.rgb(rgb), self.depth(depth)], 1))
        return self.fc(y.mean((2, 3)))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, expand, 1)
        self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)


class SqueezeNetish(nn.Module):
    """torchvision's SqueezeNet 1.1 layout at a small width: fire modules, a convolutional classifier
    with Dropout, global average pooling."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 16, 32),
            Fire(64, 16, 32),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 24, 48),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(96, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class SmallConvNet(nn.Module):
    """A plain ConvBN network with a Dropout before the classifier (a training-mode export keeps both)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(ConvBN(3, 16, stride=2), ConvBN(16, 32, stride=2), ConvBN(32, 64, stride=2))
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x).mean((2, 3))))


def _seeded(module_type: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize_batchnorm(module_type(), seed)


def _export(
    module: nn.Module,
    shapes: dict[str, tuple[int, ...]],
    outputs: list[str],
    opset: int,
    dynamic: dict[str, dict[int, str]] | None = None,
    training: torch.onnx.TrainingMode = torch.onnx.TrainingMode.EVAL,
) -> onnx.ModelProto:
    import warnings

    args = tuple(torch.randn(*shape) for shape in shapes.values())
    stream = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            stream,
            opset_version=opset,
            dynamo=False,
            training=training,
            input_names=list(shapes),
            output_names=outputs,
            dynamic_axes=dynamic,
        )
    return onnx.load_from_string(stream.getvalue())


def _initializers_as_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every initializer moved into a ``Constant`` node of the same name, as tf2onnx and paddle2onnx write."""
    graph = model.graph
    constants = [
        helper.make_node("Constant", [], [t.name], name=f"const_{i}", value=t) for i, t in enumerate(graph.initializer)
    ]
    nodes = constants + list(graph.node)
    del graph.initializer[:]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _weights_as_subgraphs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights computed by constant subgraphs: matrices as Reshape of a flat Constant, Transpose of a
    transposed one or Cast of a float64 one in turn; all-zero vectors as ConstantOfShape."""
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    for index, tensor in enumerate(graph.initializer):
        array = numpy_helper.to_array(tensor)
        name = tensor.name
        if array.ndim == 1 and array.size > 1 and not array.any():
            shape = numpy_helper.from_array(np.array(array.shape, np.int64), f"{name}__shape")
            nodes += [
                helper.make_node("Constant", [], [shape.name], value=shape),
                helper.make_node(
                    "ConstantOfShape", [shape.name], [name], value=numpy_helper.from_array(np.zeros(1, array.dtype))
                ),
            ]
        elif array.ndim >= 2 and index % 3 == 0:
            flat = numpy_helper.from_array(array.reshape(-1), f"{name}__flat")
            shape = numpy_helper.from_array(np.array(array.shape, np.int64), f"{name}__shape")
            nodes += [
                helper.make_node("Constant", [], [flat.name], value=flat),
                helper.make_node("Constant", [], [shape.name], value=shape),
                helper.make_node("Reshape", [flat.name, shape.name], [name]),
            ]
        elif array.ndim >= 2 and index % 3 == 1:
            perm = list(range(array.ndim))[::-1]
            stored = numpy_helper.from_array(np.ascontiguousarray(array.transpose(perm)), f"{name}__t")
            nodes += [
                helper.make_node("Constant", [], [stored.name], value=stored),
                helper.make_node("Transpose", [stored.name], [name], perm=perm),
            ]
        elif array.ndim >= 2:
            stored = numpy_helper.from_array(array.astype(np.float64), f"{name}__f64")
            nodes += [
                helper.make_node("Constant", [], [stored.name], value=stored),
                helper.make_node("Cast", [stored.name], [name], to=TensorProto.FLOAT),
            ]
        else:
            nodes.append(helper.make_node("Constant", [], [name], value=tensor))
    nodes += list(graph.node)
    del graph.initializer[:]
    del graph.node[:]
    graph.node.extend(nodes)
    for i, node in enumerate(graph.node):
        if not node.name:
            node.name = f"weight_{node.op_type.lower()}_{i}"
    return model


def _expose_training_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dropout masks and BatchNormalization running statistics as graph outputs, as a training-mode
    export for fine-tuning lists them (opset 9: the mask has the data's type and shape)."""
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v.type.tensor_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    widths = {t.name: list(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Dropout" and len(node.output) > 1:
            data = shapes[node.output[0]]
            dims = [d.dim_value for d in data.shape.dim]
            graph.output.append(helper.make_tensor_value_info(node.output[1], data.elem_type, dims))
        elif node.op_type == "BatchNormalization" and len(node.output) > 2:
            for name in node.output[1:3]:
                graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, widths[node.input[1]]))
    return model


def _to_ir3_opset7(model: onnx.ModelProto) -> onnx.ModelProto:
    """Opset 7, IR version 3, every initializer also listed as a graph input (Caffe2-era converters)."""
    from onnx import version_converter

    converted = version_converter.convert_version(model, 7)
    converted.ir_version = 3
    graph = converted.graph
    declared = {i.name for i in graph.input}
    for tensor in graph.initializer:
        if tensor.name not in declared:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return converted


def _with_reference(info: CorpusModel, module: nn.Module) -> CorpusModel:
    module.eval()
    with torch.no_grad():
        outputs = module(*(torch.from_numpy(a) for a in random_inputs(info.inputs).values()))
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return replace(info, reference={name: out.numpy() for name, out in zip(info.outputs, outputs)})


def _save(model: onnx.ModelProto, directory: Path, name: str) -> Path:
    path = directory / f"{name}.onnx"
    onnx.save_model(model, str(path))
    return path


def alexnet_lrn_dropout_opset9(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 9 training-mode export: two LRN nodes, Dropout nodes with mask outputs; static 1x3x80x80."""
    module = _seeded(AlexNetLRN, 1)
    model = _export(module, {"data": (1, 3, 80, 80)}, ["prob"], 9, training=torch.onnx.TrainingMode.TRAINING)
    module.eval()
    info = CorpusModel(
        "alexnet_lrn_dropout_opset9",
        9,
        {"data": [1, 3, 80, 80]},
        {"prob": [1, 10]},
        deployed_parameter_count(module),
        True,
        None,
        ("LRN", "Dropout", "opset 9"),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


def mobilenetv3_dynamic_opset11(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 11, dynamic batch, height and width; the head's Reshape shape comes from Shape/Slice/Concat."""
    module = _seeded(MobileNetV3ish, 2)
    dynamic = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    model = _export(module, {"input": (1, 3, 96, 96)}, ["logits"], 11, dynamic)
    info = CorpusModel(
        "mobilenetv3_dynamic_opset11",
        11,
        {"input": [2, 3, 128, 96]},
        {"logits": [2, 100]},
        deployed_parameter_count(module),
        True,
        {"input": [2, 3, 128, 96]},
        ("dynamic batch/height/width", "Shape->Slice->Concat reshape", "opset 11"),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


def resnet_constants_opset13(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 13, every weight a Constant node, dynamic batch; 1.3 M parameters."""
    module = _seeded(ResNetish, 3)
    model = _export(module, {"images": (1, 3, 64, 64)}, ["output"], 13, {"images": {0: "N"}, "output": {0: "N"}})
    info = CorpusModel(
        "resnet_constants_opset13",
        13,
        {"images": [4, 3, 64, 64]},
        {"output": [4, 50]},
        deployed_parameter_count(module),
        True,
        [4, 3, 64, 64],
        ("weights as Constant nodes", "dynamic batch", "opset 13"),
    )
    return _save(_initializers_as_constants(model), directory, info.name), _with_reference(info, module)


def vgg_subgraph_weights_opset17(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 17, weights computed by Reshape/Transpose/Cast of constants, a zero bias by ConstantOfShape."""
    module = _seeded(VGGish, 4)
    model = _export(module, {"x": (1, 3, 64, 64)}, ["y"], 17)
    info = CorpusModel(
        "vgg_subgraph_weights_opset17",
        17,
        {"x": [1, 3, 64, 64]},
        {"y": [1, 20]},
        deployed_parameter_count(module),
        True,
        None,
        ("weights as constant subgraphs", "ConstantOfShape", "opset 17"),
    )
    return _save(_weights_as_subgraphs(model), directory, info.name), _with_reference(info, module)


def unet_segmentation_opset13(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 13 segmentation map [N, 5, H, W], dynamic batch/height/width, Resize sizes from Shape."""
    module = _seeded(UNetish, 5)
    dynamic = {"image": {0: "n", 2: "h", 3: "w"}, "mask": {0: "n", 2: "h", 3: "w"}}
    model = _export(module, {"image": (1, 3, 64, 64)}, ["mask"], 13, dynamic)
    info = CorpusModel(
        "unet_segmentation_opset13",
        13,
        {"image": [1, 3, 64, 96]},
        {"mask": [1, 5, 64, 96]},
        deployed_parameter_count(module),
        False,
        {"image": [1, 3, 64, 96]},
        ("segmentation map output", "data-dependent Resize sizes", "dynamic batch/height/width"),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


def detector_two_outputs_opset11(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 11 detector head with two outputs (scores, boxes) reshaped by computed shapes; dynamic shapes."""
    module = _seeded(DetectorHead, 6)
    dynamic = {
        "images": {0: "batch", 2: "height", 3: "width"},
        "scores": {0: "batch", 1: "anchors"},
        "boxes": {0: "batch", 1: "anchors"},
    }
    model = _export(module, {"images": (1, 3, 64, 64)}, ["scores", "boxes"], 11, dynamic)
    anchors = 3 * (96 // 8) * (128 // 8)
    info = CorpusModel(
        "detector_two_outputs_opset11",
        11,
        {"images": [1, 3, 96, 128]},
        {"scores": [1, anchors, 8], "boxes": [1, anchors, 4]},
        deployed_parameter_count(module),
        False,
        [1, 3, 96, 128],
        ("two outputs", "computed Reshape shapes", "opset 11"),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


def crnn_ctc_opset17(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 17 CTC recognizer: LSTM, output [T, N, 37]; dynamic batch and width."""
    module = _seeded(CRNN, 7)
    dynamic = {"line": {0: "batch", 3: "width"}, "log_probs": {0: "steps", 1: "batch"}}
    model = _export(module, {"line": (1, 1, 32, 100)}, ["log_probs"], 17, dynamic)
    info = CorpusModel(
        "crnn_ctc_opset17",
        17,
        {"line": [2, 1, 32, 128]},
        {"log_probs": [32, 2, 37]},
        deployed_parameter_count(module),
        False,
        {"line": [2, 1, 32, 128]},
        ("sequence output", "LSTM", "dynamic width"),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


def two_inputs_rgbd_opset13(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 13 model with two inputs (RGB and depth), both with a dynamic batch."""
    module = _seeded(TwoStream, 8)
    dynamic = {"rgb": {0: "n"}, "depth": {0: "n"}, "logits": {0: "n"}}
    model = _export(module, {"rgb": (1, 3, 64, 64), "depth": (1, 1, 64, 64)}, ["logits"], 13, dynamic)
    info = CorpusModel(
        "two_inputs_rgbd_opset13",
        13,
        {"rgb": [3, 3, 64, 64], "depth": [3, 1, 64, 64]},
        {"logits": [3, 12]},
        deployed_parameter_count(module),
        True,
        {"rgb": [3, 3, 64, 64], "depth": [3, 1, 64, 64]},
        ("two inputs",),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


def convnet_training_outputs_opset9(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 9 training-mode export whose Dropout mask and BatchNorm running statistics are graph outputs."""
    module = _seeded(SmallConvNet, 9)
    model = _export(module, {"x": (1, 3, 32, 32)}, ["logits"], 9, training=torch.onnx.TrainingMode.TRAINING)
    module.eval()
    info = CorpusModel(
        "convnet_training_outputs_opset9",
        9,
        {"x": [1, 3, 32, 32]},
        {"logits": [1, 10]},
        deployed_parameter_count(module),
        True,
        None,
        ("training-only outputs", "BatchNormalization training mode"),
        source_is_inference=False,
    )
    return _save(_expose_training_outputs(model), directory, info.name), _with_reference(info, module)


def squeezenet_caffe2_opset7(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 7, IR 3, initializers listed as graph inputs, Dropout in the classifier."""
    module = _seeded(SqueezeNetish, 10)
    model = _export(module, {"data_0": (1, 3, 64, 64)}, ["softmaxout_1"], 9, training=torch.onnx.TrainingMode.PRESERVE)
    model = _to_ir3_opset7(model)
    info = CorpusModel(
        "squeezenet_caffe2_opset7",
        7,
        {"data_0": [1, 3, 64, 64]},
        {"softmaxout_1": [1, 10]},
        deployed_parameter_count(module),
        True,
        None,
        ("opset 7", "IR 3", "initializers as inputs"),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


def mobilenetv3_opset21(directory: Path) -> tuple[Path, CorpusModel]:
    """Opset 21 (onnx's version converter from a 17 export), static 1x3x64x64."""
    from onnx import version_converter

    module = _seeded(MobileNetV3ish, 11)
    model = version_converter.convert_version(_export(module, {"pixel_values": (1, 3, 64, 64)}, ["logits"], 17), 21)
    info = CorpusModel(
        "mobilenetv3_opset21",
        21,
        {"pixel_values": [1, 3, 64, 64]},
        {"logits": [1, 100]},
        deployed_parameter_count(module),
        True,
        None,
        ("opset 21",),
    )
    return _save(model, directory, info.name), _with_reference(info, module)


BUILDERS: dict[str, Callable[[Path], tuple[Path, CorpusModel]]] = {
    builder.__name__: builder
    for builder in (
        alexnet_lrn_dropout_opset9,
        mobilenetv3_dynamic_opset11,
        resnet_constants_opset13,
        vgg_subgraph_weights_opset17,
        unet_segmentation_opset13,
        detector_two_outputs_opset11,
        crnn_ctc_opset17,
        two_inputs_rgbd_opset13,
        convnet_training_outputs_opset9,
        squeezenet_caffe2_opset7,
        mobilenetv3_opset21,
    )
}


def build_corpus(directory: Path) -> dict[str, tuple[Path, CorpusModel]]:
    """Every corpus model written into ``directory``, by builder name."""
    directory.mkdir(parents=True, exist_ok=True)
    return {name: builder(directory) for name, builder in BUILDERS.items()}


def random_inputs(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal float32 inputs of the given shapes."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}
