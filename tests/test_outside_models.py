"""The models users bring (tests/corpus.py) through the commands: export, profile, check, compile --emit-trtexec.

Parameters are checked against the corpus's count from the PyTorch module; MACs against torch's own
FlopCounterMode on the same module (matmul and convolution FLOPs / 2), independent of edgecnn's cost model.
"""

from __future__ import annotations

import json
from pathlib import Path

import corpus
import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from edgecnn.cli import main

MODELS = list(corpus.BUILDERS)
DEVICE = "jetson-orin-nano-8gb"

MODULES = {
    "alexnet_lrn_dropout_opset9": corpus.AlexNetLRN,
    "mobilenetv3_dynamic_opset11": corpus.MobileNetV3ish,
    "resnet_constants_opset13": corpus.ResNetish,
    "vgg_subgraph_weights_opset17": corpus.VGGish,
    "unet_segmentation_opset13": corpus.UNetish,
    "detector_two_outputs_opset11": corpus.DetectorHead,
    "crnn_ctc_opset17": corpus.CRNN,
    "two_inputs_rgbd_opset13": corpus.TwoStream,
    "convnet_training_outputs_opset9": corpus.SmallConvNet,
    "squeezenet_caffe2_opset7": corpus.SqueezeNetish,
    "mobilenetv3_opset21": corpus.MobileNetV3ish,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, corpus.CorpusModel]]:
    return corpus.build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def shape_option(info: corpus.CorpusModel) -> list[str]:
    if info.input_shapes is None:
        return []
    return ["--input-shape", ",".join(f"{name}={'x'.join(map(str, dims))}" for name, dims in info.inputs.items())]


def torch_macs(info: corpus.CorpusModel) -> int:
    module = MODULES[info.name]().eval()
    inputs = [torch.zeros(dims) for dims in info.inputs.values()]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops() // 2


def test_every_corpus_model_has_a_module():
    assert set(MODULES) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_export_check_compile(built, exports, name):
    path, info = built[name]
    result = invoke("export", path, "-o", exports, *shape_option(info), "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((exports / name / "manifest.json").read_text())
    assert {o["name"]: o["shape"] for o in manifest["outputs"]} == info.outputs
    assert manifest["import"]["classifier"] is info.classifier
    assert ("num_classes" in manifest["output"]) is info.classifier
    if info.classifier:
        assert manifest["output"]["num_classes"] == next(iter(info.outputs.values()))[1]
    assert manifest["model"]["num_classes"] == (next(iter(info.outputs.values()))[1] if info.classifier else None)
    assert manifest["preprocessing"]["declared"] is False
    checks = manifest["artifacts"][0]["verification"]
    assert sorted(v["output"] for v in checks) == sorted(info.outputs)
    assert all(v["passed"] and v["sqnr_db"] > 60 for v in checks)
    assert all((v["top1_agreement"] is not None) is info.classifier for v in checks)
    tensorrt = ["--tensorrt", "10.16"] if info.opset > 20 else []  # 10.3's parser stops at opset 20
    check = invoke("check", exports / name, "--device", DEVICE, *tensorrt)
    assert check.exit_code == 0, check.output
    trtexec = invoke("compile", exports / name, "--device", DEVICE, "--emit-trtexec", "--json", *tensorrt)
    assert trtexec.exit_code == 0, trtexec.output
    build = json.loads(trtexec.output)["commands"][0]["argv"]
    assert f"--onnx={name}.onnx" in build
    assert not any(arg.startswith(("--minShapes", "--shapes")) for arg in build)  # every input's shape is fixed


@pytest.mark.parametrize("name", MODELS)
def test_profile_counts_the_network(built, name):
    path, info = built[name]
    result = invoke("profile", path, "--device", DEVICE, *shape_option(info), "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["rows"][0]
    assert row["batch"] == next(iter(info.inputs.values()))[0]
    assert row["params"] == pytest.approx(info.parameters, rel=0.01)
    assert row["macs"] == pytest.approx(torch_macs(info), rel=0.01)


def test_declared_preprocessing_is_recorded(built, tmp_path):
    path, _ = built["mobilenetv3_opset21"]
    args = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--channel-order", "BGR", "--resize", "72"]
    result = invoke("export", path, "-o", tmp_path, *args)
    assert result.exit_code == 0, result.output
    block = json.loads((tmp_path / "mobilenetv3_opset21" / "manifest.json").read_text())["preprocessing"]
    assert block["declared"] is True and block["channel_order"] == "BGR" and block["std"] == [0.25] * 3
    assert block["resize_shorter_side"] == 72 and block["input_size"] == [64, 64]


def test_undeclared_preprocessing_is_refused_by_readers(built, tmp_path):
    from edgecnn.artifact import Preprocessing
    from edgecnn.errors import UsageError

    path, _ = built["resnet_constants_opset13"]
    assert invoke("export", path, "-o", tmp_path, "--batch", "2").exit_code == 0
    block = json.loads((tmp_path / "resnet_constants_opset13" / "manifest.json").read_text())["preprocessing"]
    with pytest.raises(UsageError, match="not declared"):
        Preprocessing.from_manifest(block)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("mobilenetv3_dynamic_opset11", [], "input 'input' of mobilenetv3_dynamic_opset11.onnx has dynamic dimensions"),
        ("two_inputs_rgbd_opset13", ["--input-size", "64"], "--input-size applies to one NCHW image input"),
        ("two_inputs_rgbd_opset13", ["--input-shape", "rgb=1x3x64x64,nope=1x1x64x64"], "has no input named 'nope'"),
        ("resnet_constants_opset13", ["--input-shape", "4x3x32x32"], "fixed dimension 2 = 64"),
        ("unet_segmentation_opset13", ["--input-size", "64", "--dynamic-batch"], "--dynamic-batch applies to PyTorch"),
        (
            "two_inputs_rgbd_opset13",
            ["--input-shape", "rgb=1x3x64x64,depth=1x1x64x64", "--mean", "0.5"],
            "describe one",
        ),
        ("vgg_subgraph_weights_opset17", ["--mean", "0.5,a"], "is not comma-separated numbers"),
    ],
)
def test_bad_export_is_one_line(built, tmp_path, name, args, message):
    path, _ = built[name]
    result = invoke("export", path, "-o", tmp_path, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_batch_of_minus_one_is_one_line(built, tmp_path):
    import onnx

    path, _ = built["resnet_constants_opset13"]
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = -1
    odd = tmp_path / "odd.onnx"
    onnx.save(model, str(odd))
    result = invoke("profile", odd, "--device", DEVICE)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "has dynamic dimensions (?x3x?x64)" in result.output


def test_eval_refuses_what_top1_cannot_measure(built, tmp_path):
    """A detector (not a classifier) and a classifier whose preprocessing nobody declared: one line each, why."""
    for name, args in (
        ("detector_two_outputs_opset11", shape_option(built["detector_two_outputs_opset11"][1])),
        ("resnet_constants_opset13", []),
        ("mobilenetv3_opset21", ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--channel-order", "RGB"]),
    ):
        path, _ = built[name]
        assert invoke("export", path, "-o", tmp_path, *args).exit_code == 0
    result = invoke("eval", tmp_path / "detector_two_outputs_opset11", "--data", "digits")
    assert result.exit_code == 2 and "is not a classifier (outputs: " in result.output
    assert "eval measures top-1 of classifiers" in result.output and "compare outputs with FP32" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    result = invoke("eval", tmp_path / "resnet_constants_opset13", "--data", "digits")
    assert result.exit_code == 2 and "preprocessing is not declared" in result.output and "--mean" in result.output
    assert len(result.output.strip().splitlines()) == 1
    declared = invoke("eval", tmp_path / "mobilenetv3_opset21", "--data", "digits")
    assert "not declared" not in declared.output and "not a classifier" not in declared.output
