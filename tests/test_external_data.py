"""ONNX files whose weights live in external data files, as users have them.

torch 2.13's plain ``torch.onnx.export(model, args, path)`` writes ``path.data`` beside every model; onnx can
write one file per tensor or put the data in a subfolder. Every command must read, count, quantize and write
such files. The figures are checked against the files themselves: element counts from the data files read
with numpy at the offsets the graph names, byte totals from ``os.path.getsize`` of every file, hashes by
hashlib over the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgecnn.cli import main
from edgecnn.errors import UsageError
from edgecnn.onnx_facts import load_onnx, model_sha256, onnx_files, save_onnx

torch = pytest.importorskip("torch", reason="building the models needs PyTorch (the export extra)")

DEVICE = "jetson-orin-nano-8gb"
CALIB = ("--calib", "synthetic", "--calib-samples", "8")
PREPROCESSING = ("--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--channel-order", "RGB")


class SmallNet(torch.nn.Module):
    """1.06 M parameters, mostly in one fully connected layer: above quantize's 1 M-parameter size check, cheap
    to run on 3x32x32 inputs, ten classes (the digits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(4)
        self.fc1 = torch.nn.Linear(1024, 1024)
        self.fc2 = torch.nn.Linear(1024, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x))).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def stored_bytes(folder: Path) -> int:
    """Every file under ``folder``: what a model saved alone in it weighs."""
    return sum(os.path.getsize(p) for p in folder.rglob("*") if p.is_file())


def tensor_bytes(path: Path) -> dict[str, bytes]:
    """Each initializer's data as stored, read without onnx's loader: an external tensor's slice of its data
    file at the offset and length the graph names, an inline one's raw data."""
    model = onnx.load(str(path), load_external_data=False)
    data = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in tensor.external_data}
            offset = int(entry.get("offset", 0))
            with open(path.parent / entry["location"], "rb") as handle:
                handle.seek(offset)
                data[tensor.name] = handle.read(int(entry["length"]))
        else:
            data[tensor.name] = tensor.raw_data
        assert (
            len(data[tensor.name])
            == int(np.prod(tensor.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        )
    return data


def elements_in_data_files(path: Path) -> int:
    """Float elements of the model at ``path``, counted by numpy from the stored bytes of its float tensors."""
    model = onnx.load(str(path), load_external_data=False)
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.dims}
    return sum(np.frombuffer(data, np.float32).size for name, data in tensor_bytes(path).items() if name in floats)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same network stored four ways: as torch.onnx.export writes it, one file per tensor (every tensor, shape
    constants too: size_threshold=0), in a subfolder, and self-contained; and its PyTorch parameter count."""
    root = tmp_path_factory.mktemp("external")
    torch.manual_seed(0)
    net = SmallNet().eval()
    plain = root / "torch" / "net.onnx"
    plain.parent.mkdir()
    torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(plain))
    if not plain.with_name("net.onnx.data").is_file():  # another torch: force what 2.13 does by default
        onnx.save_model(onnx.load(str(plain)), str(plain), save_as_external_data=True, location="net.onnx.data")
    variants = {"torch": plain}
    for name, options in (
        ("several", {"all_tensors_to_one_file": False, "size_threshold": 0}),
        ("subfolder", {"all_tensors_to_one_file": True, "location": "weights/net.bin", "size_threshold": 1024}),
    ):
        path = root / name / "net.onnx"
        (path.parent / "weights").mkdir(parents=True)
        onnx.save_model(onnx.load(str(plain)), str(path), save_as_external_data=True, **options)
        variants[name] = path
    inline = root / "inline" / "net.onnx"
    inline.parent.mkdir()
    onnx.save_model(onnx.load(str(plain)), str(inline))
    variants["inline"] = inline
    return variants, sum(p.numel() for p in net.parameters())


@pytest.fixture
def copy_of(models, tmp_path):
    def copy(name: str) -> Path:
        source = models[0][name]
        shutil.copytree(source.parent, tmp_path / name)
        return tmp_path / name / source.name

    return copy


def test_torch_writes_external_data_by_default(models):
    """What users hit: torch 2.13's plain export keeps the weights in net.onnx.data, the graph alone in net.onnx."""
    plain = models[0]["torch"]
    assert os.path.getsize(plain.with_name("net.onnx.data")) > 20 * os.path.getsize(plain)


@pytest.mark.parametrize("name", ["torch", "several", "subfolder", "inline"])
def test_files_and_bytes_are_counted(models, name):
    path = models[0][name]
    files = onnx_files(path)
    on_disk = sorted(str(p.relative_to(path.parent)) for p in path.parent.rglob("*") if p.is_file() and p != path)
    assert sorted(files.locations) == on_disk
    assert files.total_bytes == stored_bytes(path.parent)
    assert files.external == (name != "inline")
    if name == "several":
        assert len(files.locations) == len(onnx.load(str(path), load_external_data=False).graph.initializer)


def test_model_hash_covers_the_data(models, copy_of):
    digest = hashlib.sha256(models[0]["inline"].read_bytes()).hexdigest()
    assert model_sha256(models[0]["inline"]) == digest
    path = models[0]["torch"]
    expected = hashlib.sha256(
        path.read_bytes() + b"\0net.onnx.data\0" + path.with_name("net.onnx.data").read_bytes()
    ).hexdigest()
    assert model_sha256(path) == expected
    changed = copy_of("torch")
    data = bytearray(changed.with_name("net.onnx.data").read_bytes())
    data[-1] ^= 1
    changed.with_name("net.onnx.data").write_bytes(bytes(data))
    assert changed.read_bytes() == path.read_bytes()
    assert model_sha256(changed) != model_sha256(path)


@pytest.mark.parametrize("name", ["torch", "several", "subfolder"])
def test_load_from_another_directory(models, name, tmp_path, monkeypatch):
    path = models[0][name]
    monkeypatch.chdir(tmp_path)
    relative = Path(os.path.relpath(path, tmp_path))
    model = load_onnx(relative)
    loaded = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    assert loaded == elements_in_data_files(path) == models[1]


@pytest.mark.parametrize(
    ("name", "removed", "message"),
    [
        ("torch", "net.onnx.data", "net.onnx refers to net.onnx.data, which is missing beside it: copy it next to"),
        ("subfolder", "weights/net.bin", "copy it to weights/net.bin under the .onnx file's folder"),
        ("several", "fc1.weight", "net.onnx refers to fc1.weight, which is missing beside it"),
    ],
)
def test_missing_data_is_one_line(copy_of, name, removed, message):
    path = copy_of(name)
    (path.parent / removed).unlink()
    with pytest.raises(UsageError, match="which is missing"):
        load_onnx(path, load_external_data=False)
    commands = [
        ["profile", path, "--device", DEVICE],
        ["quantize", path, *CALIB],
        ["check", path, "--device", DEVICE],
        ["compile", path, "--device", DEVICE, "--emit-trtexec", "-o", path.parent / "trtexec"],
        ["export", path, "-o", path.parent / "exports"],
        ["predict", path, path.parent / "missing.npy"],
    ]
    for command in commands:
        result = invoke(*command)
        assert result.exit_code == 2, (command[0], result.output)
        assert message in result.output, (command[0], result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (path.parent / "exports").exists() and not (path.parent / "trtexec").exists()


def test_data_outside_the_folder_is_one_line(copy_of):
    path = copy_of("torch")
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../net.onnx.data"
    shutil.move(path.with_name("net.onnx.data"), path.parent.parent / "net.onnx.data")
    path.write_bytes(model.SerializeToString())
    result = invoke("check", path, "--device", DEVICE)
    assert (
        result.exit_code == 2 and "refers to external data at '../net.onnx.data', outside its folder" in result.output
    )


def test_truncated_data_is_one_line(copy_of):
    path = copy_of("torch")
    data = path.with_name("net.onnx.data")
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(UsageError, match="which holds 1000: the data file is truncated"):
        load_onnx(path)


@pytest.mark.parametrize("name", ["torch", "several", "subfolder"])
def test_profile_counts_every_weight(models, name):
    result = invoke("profile", models[0][name], "--device", DEVICE, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    assert row["params"] == elements_in_data_files(models[0][name]) == models[1]
    assert row["weight_bytes"] == sum(len(data) for data in tensor_bytes(models[0][name]).values())


@pytest.mark.parametrize("name", ["torch", "subfolder"])
def test_quantize_counts_the_data_in_fp32_size(models, copy_of, name):
    """The user's file: 1.06 M parameters, the INT8 file about a quarter of the FP32 model's bytes, one file."""
    path = copy_of(name)
    fp32_bytes = stored_bytes(path.parent)
    result = invoke("quantize", path, *CALIB, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    int8 = Path(report["path"])
    assert report["quantization"]["size_vs_fp32"] == pytest.approx(os.path.getsize(int8) / fp32_bytes, abs=1e-4)
    assert 0.24 < report["quantization"]["size_vs_fp32"] < 0.35
    assert onnx_files(int8).locations == () and onnx_files(int8).total_bytes == os.path.getsize(int8)
    assert report["quantization"]["fp32_sha256"] == model_sha256(models[0][name])
    assert report["quantization"]["graph"]["float_weights"] == 0


def test_quantize_with_every_tensor_external(copy_of):
    """One file per tensor, shape constants too: ONNX Runtime cannot load that graph from its path (its shape
    inference needs the Reshape's shape), so the sessions are made after loading the data."""
    from edgecnn.calibration.quantize import quantize_onnx

    path = copy_of("several")
    result = quantize_onnx(path, path.with_name("net.int8.onnx"), calibration="synthetic", samples=8)
    assert result.fp32_bytes == stored_bytes(path.parent) - os.path.getsize(result.path)
    assert result.size_ratio == pytest.approx(os.path.getsize(result.path) / result.fp32_bytes)
    assert result.size_ratio < 0.35


def test_check_and_trtexec_folder_carry_the_data(copy_of, tmp_path):
    for name in ("several", "subfolder"):
        path = copy_of(name)
        assert invoke("check", path, "--device", DEVICE).exit_code == 0
        folder = tmp_path / f"trtexec-{name}"
        result = invoke("compile", path, "--device", DEVICE, "--emit-trtexec", "-o", folder)
        assert result.exit_code == 0, result.output
        source = onnx_files(path)
        copied = onnx_files(folder / "net.onnx")
        assert copied.locations == source.locations
        for location in source.locations:
            assert (folder / location).read_bytes() == (path.parent / location).read_bytes()
        assert model_sha256(copied) == model_sha256(source)
        script = next(folder.glob("*.trtexec.sh")).read_text()
        assert "--onnx=net.onnx" in script
        again = invoke("compile", path, "--device", DEVICE, "--emit-trtexec", "-o", folder)
        assert again.exit_code == 0, again.output


def test_export_inlines_weights_under_2gb(models, tmp_path):
    path = models[0]["torch"]
    result = invoke("export", path, "-o", tmp_path, *PREPROCESSING)
    assert result.exit_code == 0, result.output
    assert "weights read from net.onnx.data beside net.onnx" in result.output
    assert "written inline: net.onnx is self-contained" in result.output
    directory = tmp_path / "net"
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "net.onnx"]
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = manifest["artifacts"][0]
    assert entry["size_bytes"] == os.path.getsize(directory / "net.onnx") and "external_data" not in entry
    assert manifest["import"]["source_external_data"] == ["net.onnx.data"]
    assert manifest["import"]["source_sha256"] == model_sha256(path)
    assert elements_in_data_files(directory / "net.onnx") == models[1]


def test_export_over_the_limit_writes_one_data_file_and_everything_runs(models, tmp_path, monkeypatch):
    """With protobuf's limit lowered to 100 kB, the packaged FP32 model is the graph plus one data file: what a
    2 GB model gets. The manifest lists the data, its hash and size cover it, and INT8, predict, eval and
    benchmark run from the directory."""
    import edgecnn.export.pipeline as pipeline
    import edgecnn.onnx_facts as facts

    monkeypatch.setattr(facts, "PROTOBUF_LIMIT", 100_000)
    monkeypatch.setattr(pipeline, "PROTOBUF_LIMIT", 100_000)
    path = models[0]["several"]
    result = invoke("export", path, "-o", tmp_path, *PREPROCESSING, "--int8", *CALIB, "--json")
    assert result.exit_code == 0, result.output
    directory = tmp_path / "net"
    assert sorted(p.name for p in directory.iterdir() if not p.name.endswith(".json")) == [
        "net.int8-cpu.onnx",
        "net.onnx",
        "net.onnx.data",
    ]
    manifest = json.loads((directory / "manifest.json").read_text())
    fp32 = next(a for a in manifest["artifacts"] if a["format"] == "onnx-fp32")
    int8 = next(a for a in manifest["artifacts"] if a["format"] == "onnx-int8-cpu")
    assert fp32["external_data"] == ["net.onnx.data"]
    assert fp32["size_bytes"] == os.path.getsize(directory / "net.onnx") + os.path.getsize(directory / "net.onnx.data")
    assert fp32["sha256"] == model_sha256(directory / "net.onnx")
    assert int8["quantization"]["fp32_sha256"] == fp32["sha256"]
    assert int8["quantization"]["size_vs_fp32"] == pytest.approx(int8["size_bytes"] / fp32["size_bytes"], abs=1e-4)
    assert elements_in_data_files(directory / "net.onnx") == models[1]
    assert any("written to net.onnx.data beside net.onnx" in note for note in manifest["import"]["notes"])

    np.save(tmp_path / "image.npy", np.zeros((3, 32, 32), np.float32))
    predicted = invoke("predict", directory, tmp_path / "image.npy", "--json")
    assert predicted.exit_code == 0, predicted.output
    evaluated = invoke("eval", directory, "--data", "digits", "--max-drop", "100", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    rows = json.loads(evaluated.stdout)["results"]
    assert {row["format"] for row in rows} == {"onnx-fp32", "onnx-int8-cpu"}
    benchmark = invoke("benchmark", directory, "--formats", "onnx-fp32,onnx-int8-cpu", "--rounds", "1", "--json")
    assert benchmark.exit_code == 0, benchmark.output
    sizes = {row["format"]: row for row in json.loads(benchmark.stdout)["rows"]}
    assert sizes["onnx-fp32"]["status"] == "ok", sizes
    assert sizes["onnx-fp32"]["size_mb"] == pytest.approx(fp32["size_bytes"] / 1e6)


def test_predict_a_bare_file_with_every_tensor_external(models, tmp_path):
    """Every tensor external, shape constants too: ONNX Runtime cannot load that graph from its path (its shape
    inference needs the Reshape's shape), so the session is made after loading the data."""
    import onnxruntime as ort

    image = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    result = invoke("predict", models[0]["several"], tmp_path / "image.npy", "--json")
    assert result.exit_code == 0, result.output
    logits = ort.InferenceSession(str(models[0]["inline"])).run(None, {"x": image[None]})[0][0]
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    top = json.loads(result.stdout)["predictions"][0]["top"][0]
    assert top["index"] == int(logits.argmax())
    assert top["probability"] == pytest.approx(float(probabilities.max()), rel=1e-5)


def test_save_onnx_writes_one_file_or_one_data_file(models, tmp_path, monkeypatch):
    import onnxruntime as ort

    import edgecnn.onnx_facts as facts

    model = load_onnx(models[0]["torch"])
    inline = save_onnx(model, tmp_path / "inline.onnx")
    assert inline.locations == () and inline.total_bytes == os.path.getsize(tmp_path / "inline.onnx")
    monkeypatch.setattr(facts, "PROTOBUF_LIMIT", model.ByteSize())
    (tmp_path / "big.onnx.data").write_bytes(b"stale")
    big = save_onnx(model, tmp_path / "big.onnx")
    assert big.locations == ("big.onnx.data",) and big.total_bytes == stored_bytes(tmp_path) - inline.total_bytes
    written = onnx.load(str(tmp_path / "big.onnx"), load_external_data=False).graph.initializer
    external = {t.name for t in written if t.data_location == onnx.TensorProto.EXTERNAL}
    assert external == {t.name for t in model.graph.initializer if len(t.raw_data) >= 1024}
    assert {"val_4", "fc2.bias"} <= {t.name for t in written} - external, "shape constants stay readable inline"
    assert all(t.HasField("raw_data") for t in model.graph.initializer), "the model keeps its data"
    feeds = {"x": np.ones((1, 3, 32, 32), np.float32)}
    assert np.array_equal(
        ort.InferenceSession(str(tmp_path / "big.onnx")).run(None, feeds)[0],
        ort.InferenceSession(str(tmp_path / "inline.onnx")).run(None, feeds)[0],
    )
