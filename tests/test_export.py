"""Export: every zoo model to verified ONNX, the cases peers got wrong, artifacts, and bad input."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from edgecnn import get_model, list_models
from edgecnn.cli import main
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.export import export_model
from edgecnn.export import verify as verify_module
from edgecnn.export.cleanup import values_without_shape
from edgecnn.export.to_onnx import adaptive_avg_pool2d_as_matmul
from edgecnn.runtime import create_session, run_session


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_valid_artifact(result, precision_keys=("onnx-fp32",)):
    for key in precision_keys:
        path = result.files[key]
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert values_without_shape(model) == []
        assert all(v.passed for v in result.verifications)
    manifest = json.loads((result.directory / "manifest.json").read_text())
    assert manifest["opset"] >= 17
    return manifest


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_exports_and_verifies(name, tmp_path):
    result = export_model(name, output_dir=tmp_path, check_samples=4)
    manifest = assert_valid_artifact(result)
    assert manifest["model"]["randomly_initialized"] is True
    fp32 = result.verifications[0]
    assert fp32.max_abs_error <= 1e-4 * fp32.output_scale
    assert fp32.top1_agreement_raw == 1.0


@pytest.mark.parametrize(
    "name,size",
    [
        ("alexnet", 227),
        ("alexnet", 256),
        ("vgg11", 227),
        ("vgg16_bn", 256),
        ("alexnet_original", 256),
        ("inception_v3", 299),
        ("inception_v4", 299),
        ("googlenet", 256),
    ],
)
def test_adaptive_pooling_at_non_default_sizes(name, size, tmp_path):
    result = export_model(name, output_dir=tmp_path, input_size=str(size), check_samples=2)
    manifest = assert_valid_artifact(result)
    assert manifest["input"]["shape"] == [1, 3, size, size]


@pytest.mark.parametrize(
    "size,output", [((7, 7), (6, 6)), ((8, 8), 7), ((13, 5), (6, 3)), ((9, 4), (None, 2)), ((6, 6), 6)]
)
def test_uneven_adaptive_pooling_matches_pytorch(size, output):
    x = torch.randn(2, 3, *size)
    expected = torch.nn.functional.adaptive_avg_pool2d(x, output)
    torch.testing.assert_close(adaptive_avg_pool2d_as_matmul(x, output), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["shufflenet_v1_g3", "shufflenet_v1_g8", "shufflenet_v2_x1_0", "mobilenet_v3_small"])
def test_channel_shuffle_and_fp16(name, tmp_path):
    result = export_model(name, output_dir=tmp_path, fp16=True)
    assert_valid_artifact(result, ("onnx-fp32", "onnx-fp16"))
    fp16 = [v for v in result.verifications if v.precision == "fp16"]
    assert fp16 and all(v.top1_agreement >= 0.99 for v in fp16)
    half = onnx.load(str(result.files["onnx-fp16"]))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in half.graph.initializer)
    assert result.files["onnx-fp16"].stat().st_size < 0.6 * result.files["onnx-fp32"].stat().st_size


def test_dynamic_batch_runs_at_1_and_7(tmp_path):
    result = export_model("resnet18", output_dir=tmp_path, dynamic_batch=True, input_size="96")
    batches = sorted(v.batch for v in result.verifications)
    assert batches == [1, 7, 8]
    session = create_session(result.files["onnx-fp32"])
    model = get_model("resnet18")
    for batch in (1, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 96, 96), dtype=np.float32)
        expected = model(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(run_session(session, x), expected, atol=1e-4 * np.abs(expected).max())
    manifest = json.loads((result.directory / "manifest.json").read_text())
    assert manifest["input"]["shape"][0] == "batch"


def test_static_batch_larger_than_one(tmp_path):
    result = export_model("squeezenet1_1", output_dir=tmp_path, batch=3, check_samples=5, input_size="64")
    assert onnx.load(str(result.files["onnx-fp32"])).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3


def test_dynamo_exporter_is_selectable(tmp_path):
    result = export_model("mobilenet_v2", output_dir=tmp_path, exporter="dynamo", input_size="96")
    assert result.manifest["exporter"] == "dynamo"
    assert all(v.passed for v in result.verifications)


def test_ort_format_loads(tmp_path):
    result = export_model("squeezenet1_1", output_dir=tmp_path, ort=True, input_size="64")
    ort_file = result.files["ort"]
    assert ort_file.suffix == ".ort"
    out = run_session(create_session(ort_file), np.zeros((1, 3, 64, 64), np.float32))
    assert out.shape == (1, 1000)


def test_manifest_describes_the_artifact(tmp_path):
    result = export_model("mobilenet", output_dir=tmp_path, num_classes=10, fp16=True)
    manifest = json.loads((tmp_path / "mobilenet_v2" / "manifest.json").read_text())
    assert manifest["model"]["name"] == "mobilenet_v2"
    assert manifest["input"] == {"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32", "layout": "NCHW"}
    assert manifest["output"]["num_classes"] == 10
    pre = manifest["preprocessing"]
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["channel_order"] == "RGB" and pre["input_size"] == [224, 224]
    assert {"edgecnn", "torch", "onnx", "onnxruntime"} <= set(manifest["versions"])
    for artifact in manifest["artifacts"]:
        path = result.directory / artifact["file"]
        assert artifact["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert artifact["verification"][0]["passed"] is True


def test_exporting_twice_is_byte_identical(tmp_path):
    first = export_model("shufflenet_v2_x0_5", output_dir=tmp_path / "a", fp16=True)
    second = export_model("shufflenet_v2_x0_5", output_dir=tmp_path / "b", fp16=True)
    for key in ("onnx-fp32", "onnx-fp16"):
        assert first.files[key].read_bytes() == second.files[key].read_bytes()


def test_re_export_keeps_what_it_did_not_remake_and_force_replaces_the_directory(tmp_path):
    export_model("squeezenet1_1", output_dir=tmp_path, input_size="64", fp16=True)
    export_model("squeezenet1_1", output_dir=tmp_path, input_size="64")
    kept = ["manifest.json", "squeezenet1_1.fp16.onnx", "squeezenet1_1.onnx"]
    assert sorted(p.name for p in (tmp_path / "squeezenet1_1").iterdir()) == kept
    export_model("squeezenet1_1", output_dir=tmp_path, input_size="64", force=True)
    assert sorted(p.name for p in (tmp_path / "squeezenet1_1").iterdir()) == ["manifest.json", "squeezenet1_1.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["squeezenet1_1"]


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(verify_module, "FP32_RELATIVE_TOLERANCE", 0.0)
    monkeypatch.setattr(verify_module, "compare", _always_off(verify_module.compare))
    with pytest.raises(EdgecnnError, match="does not match PyTorch"):
        export_model("squeezenet1_1", output_dir=tmp_path, input_size="64")
    assert list(tmp_path.iterdir()) == []


def _always_off(compare):
    def skewed(reference, candidate, precision):
        return compare(reference, candidate + 1.0, precision)

    return skewed


# --- weights -------------------------------------------------------------------------------------------------


def test_weights_round_trip_with_checkpoint_wrappers(tmp_path):
    trained = get_model("squeezenet1_1", num_classes=10, seed=7)
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": state}, path)
    result = export_model("squeezenet1_1", output_dir=tmp_path / "out", weights=path, num_classes=10, input_size="64")
    assert result.manifest["model"]["randomly_initialized"] is False
    assert result.manifest["model"]["weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    expected = trained(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(
        run_session(create_session(result.files["onnx-fp32"]), x[:1]), expected[:1], rtol=1e-4, atol=1e-5
    )


def test_arbitrary_pickle_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, path)
    with pytest.raises(UsageError, match="arbitrary unpickling|not a readable"):
        export_model("squeezenet1_1", output_dir=tmp_path / "out", weights=path)
    assert not (tmp_path / "out" / "squeezenet1_1").exists()


def test_checkpoint_with_a_custom_class_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(get_model("squeezenet1_1"), path)
    result = invoke("export", "squeezenet1_1", "--weights", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "arbitrary unpickling" in result.output
    assert "Traceback" not in result.output


def test_checkpoint_for_another_architecture_names_the_offenders(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(get_model("resnet18").state_dict(), path)
    result = invoke("export", "squeezenet1_1", "--weights", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "missing keys: features.0.weight" in result.output
    assert "unexpected keys: conv1.weight" in result.output


def test_checkpoint_for_another_class_count(tmp_path):
    path = tmp_path / "ten.pt"
    torch.save(get_model("squeezenet1_1", num_classes=10).state_dict(), path)
    result = invoke("export", "squeezenet1_1", "--weights", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert (
        "wrong shapes" in result.output and "classifier.1.weight (10, 512, 1, 1) vs (1000, 512, 1, 1)" in result.output
    )
    assert "--num-classes" in result.output


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_missing_or_corrupt_checkpoint(tmp_path, content):
    path = tmp_path / "weights.pt"
    if content is not None:
        path.write_bytes(content)
    result = invoke("export", "squeezenet1_1", "--weights", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert ("does not exist" if content is None else "not a readable PyTorch checkpoint") in result.output
    assert result.output.strip().count("\n") == 0


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(get_model("squeezenet1_1").state_dict(), path)
    path.write_bytes(path.read_bytes()[:2000])
    result = invoke("export", "squeezenet1_1", "--weights", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "not a readable PyTorch checkpoint" in result.output


# --- other sources ---------------------------------------------------------------------------------------------

FACTORY = """
import torch
from torch import nn

def build(num_classes=4):
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), \
nn.Flatten(), nn.Linear(8, num_classes))
"""


def test_factory_in_user_code(tmp_path):
    factory = tmp_path / "mynet.py"
    factory.write_text(FACTORY)
    result = invoke(
        "export", f"{factory}:build", "--num-classes", "6", "--input-size", "28", "-o", tmp_path / "out", "--json"
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)["manifest"]
    assert manifest["model"]["origin"] == "factory"
    assert manifest["input"]["shape"] == [1, 1, 28, 28]
    assert manifest["output"]["num_classes"] == 6


@pytest.mark.parametrize("reference", ["nowhere/net.py:build", "{tmp}/mynet.py:missing"])
def test_factory_that_does_not_exist(tmp_path, reference):
    (tmp_path / "mynet.py").write_text(FACTORY)
    result = invoke("export", reference.format(tmp=tmp_path), "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "does not exist" in result.output or "has no function" in result.output


def test_existing_onnx_is_checked_and_packaged(tmp_path):
    first = export_model("squeezenet1_1", output_dir=tmp_path / "a", input_size="64")
    copy = tmp_path / "mine.onnx"
    copy.write_bytes(first.files["onnx-fp32"].read_bytes())
    result = export_model(str(copy), output_dir=tmp_path / "b")
    assert result.manifest["model"]["origin"] == "onnx"
    assert result.manifest["output"]["num_classes"] == 1000
    assert result.manifest["import"]["source_file"] == "mine.onnx" and result.manifest["import"]["classifier"]
    assert result.manifest["preprocessing"]["declared"] is False
    assert [v.output for v in result.verifications] == [result.manifest["output"]["name"]]
    assert result.verifications[0].passed and result.verifications[0].max_abs_error <= 1e-4


@pytest.mark.parametrize("content", [b"this is not onnx", "truncate"])
def test_truncated_or_non_onnx_file(tmp_path, content):
    path = tmp_path / "broken.onnx"
    if content == "truncate":
        first = export_model("squeezenet1_1", output_dir=tmp_path / "a", input_size="64")
        content = first.files["onnx-fp32"].read_bytes()[:5000]
    path.write_bytes(content)
    result = invoke("export", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "not a readable ONNX model" in result.output or "fails onnx's checker" in result.output
    assert not (tmp_path / "out" / "broken").exists()


# --- CLI errors ------------------------------------------------------------------------------------------------


def test_unknown_model_suggests(tmp_path):
    result = invoke("export", "resnet19", "-o", tmp_path)
    assert result.exit_code == 2
    assert "did you mean" in result.output


def test_input_size_too_small(tmp_path):
    result = invoke("export", "inception_v3", "--input-size", "32", "-o", tmp_path)
    assert result.exit_code == 2
    assert "too small" in result.output


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    result = invoke("export", "squeezenet1_1", "--input-size", "64", "-o", blocker / "sub")
    assert result.exit_code == 2
    assert "cannot write to" in result.output


def test_batch_and_dynamic_batch_exclude_each_other(tmp_path):
    result = invoke("export", "squeezenet1_1", "--batch", "2", "--dynamic-batch", "-o", tmp_path)
    assert result.exit_code == 2


def test_pattern_exports_many_with_summary(tmp_path):
    result = invoke("export", "squeezenet*", "--input-size", "64", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["model"] for row in rows] == ["squeezenet1_0", "squeezenet1_1"]
    assert all(row["status"] == "ok" for row in rows)


def test_cli_single_export_says_weights_are_random(tmp_path):
    result = invoke("export", "squeezenet1_1", "--input-size", "64", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "randomly initialized" in result.output
    assert (tmp_path / "squeezenet1_1" / "squeezenet1_1.onnx").is_file()


def test_many_models_in_two_processes_match_one_process(tmp_path):
    serial = invoke(
        "export", "squeezenet*", "lenet5", "--input-size", "64", "-o", tmp_path / "serial", "--jobs", "1", "--json"
    )
    parallel = invoke(
        "export", "squeezenet*", "lenet5", "--input-size", "64", "-o", tmp_path / "parallel", "--jobs", "2", "--json"
    )
    assert serial.exit_code == 0 and parallel.exit_code == 0, parallel.output
    assert [row["model"] for row in json.loads(parallel.output)] == ["squeezenet1_0", "squeezenet1_1", "lenet5"]
    for name in ("squeezenet1_0", "squeezenet1_1", "lenet5"):
        one = (tmp_path / "serial" / name / f"{name}.onnx").read_bytes()
        assert (tmp_path / "parallel" / name / f"{name}.onnx").read_bytes() == one


def test_jobs_must_be_positive(tmp_path):
    result = invoke("export", "squeezenet*", "--jobs", "0", "-o", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.parametrize("name", ["lenet5", "shufflenet_v2_x0_5", "mobilenet_v3_small"])
def test_weights_set_aside_give_torchs_own_serialization(name, tmp_path):
    """torch_to_onnx_file keeps torch's serializer away from the weights (memory); the graph it gives, with
    the weights read back inline, must be the bytes torch.onnx.export writes itself (BatchNorm folded too)."""
    import warnings

    from edgecnn import get_spec
    from edgecnn.export.to_onnx import (
        DEFAULT_OPSET,
        INPUT_NAME,
        OUTPUT_NAME,
        _exportable_adaptive_pools,
        load_inline,
        torch_to_onnx_file,
        weights_file,
    )

    spec = get_spec(name)
    module = get_model(name).eval()
    shape = (1, spec.in_chans, *spec.input_size)
    ours = torch_to_onnx_file(module, shape, tmp_path / "ours.onnx")
    assert weights_file(ours).stat().st_size > 0
    assert not onnx.load(str(ours), load_external_data=False).graph.initializer[0].HasField("raw_data")
    with warnings.catch_warnings(), torch.no_grad(), _exportable_adaptive_pools(module):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(shape),),
            str(tmp_path / "torch.onnx"),
            dynamo=False,
            opset_version=DEFAULT_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
        )
    assert load_inline(ours).SerializeToString() == (tmp_path / "torch.onnx").read_bytes()


def _streamed_and_public(tmp_path, monkeypatch, break_streaming) -> tuple[bytes, bytes, bool]:
    """LeNet-5 exported with the private serializer wrapped, then with ``break_streaming`` applied; the second
    export's bytes (weights inline) and whether it left a weights file."""
    from edgecnn.export import to_onnx

    module = get_model("lenet5").eval()
    shape = (1, 1, 32, 32)
    streamed = to_onnx.load_inline(to_onnx.torch_to_onnx_file(module, shape, tmp_path / "streamed.onnx"))
    break_streaming(monkeypatch, to_onnx)
    public = to_onnx.torch_to_onnx_file(module, shape, tmp_path / "public.onnx")
    return streamed.SerializeToString(), public.read_bytes(), to_onnx.weights_file(public).exists()


def test_exporter_falls_back_to_the_public_api_without_the_private_serializer(tmp_path, monkeypatch):
    """A torch without ``torch._C.Graph._export_onnx`` gets the public exporter's file, weights inline."""

    def without_private_api(monkeypatch, to_onnx):
        monkeypatch.setattr(to_onnx, "_private_serializer", lambda: None)

    streamed, public, has_weights_file = _streamed_and_public(tmp_path, monkeypatch, without_private_api)
    assert public == streamed and not has_weights_file


def test_exporter_falls_back_when_the_private_serializer_misbehaves(tmp_path, monkeypatch):
    """A private serializer whose graph does not name exactly the captured weights is not trusted: the export
    is redone with the public exporter and gives the same bytes."""
    import contextlib

    def misbehaving(monkeypatch, to_onnx):
        real = to_onnx._weights_set_aside

        @contextlib.contextmanager
        def captures_a_stray_weight(captured):
            with real(captured):
                yield
            captured["not.in.the.graph"] = torch.zeros(1)

        monkeypatch.setattr(to_onnx, "_weights_set_aside", captures_a_stray_weight)

    streamed, public, has_weights_file = _streamed_and_public(tmp_path, monkeypatch, misbehaving)
    assert public == streamed and not has_weights_file


def test_the_export_tables_show_the_tolerance_beside_the_error(tmp_path):
    """An absolute error means nothing without the output's scale: each table puts the tolerance next to it."""
    one = invoke("export", "lenet5", "-o", tmp_path / "one")
    assert one.exit_code == 0, one.output
    assert "max |err|" in one.output and "tolerance" in one.output
    several = invoke("export", "lenet*", "-o", tmp_path / "several", "--csv")
    assert several.exit_code == 0, several.output
    header, *rows = several.stdout.strip().splitlines()
    columns = header.split(",")
    assert "max_abs_error" in columns and "tolerance" in columns
    for row in rows:
        values = dict(zip(columns, row.split(",")))
        assert 0 <= float(values["max_abs_error"]) <= float(values["tolerance"])
