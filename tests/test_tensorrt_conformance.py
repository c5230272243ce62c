"""API conformance of edgecnn's TensorRT code against the real Python API of TensorRT 10.3 (JetPack 6), the newest
10.x and the newest 11.x, without TensorRT's libraries or a GPU (tests/trt_api). These check that every
TensorRT call the code makes exists in that version with that signature; they do not build engines: the
``tensorrt``-marked tests in test_tensorrt.py do, where TensorRT and a GPU are present."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.export.tensorrt import engine as engine_module
from edgecnn.export.tensorrt.engine import GpuIdentity, build_engine, load_engine, measure_engine, tensorrt_ep_options
from tests import test_tensorrt as tensorrt_tests
from tests.test_tensorrt import ORIN_DLA, _plan
from tests.trt_api import VERSIONS, Unavailable, surface
from tests.trt_api.double import called, make_module

# test_tensorrt.py's fixtures, shared here: pytest finds fixtures by name among a test module's attributes.
tiny_fp32 = tensorrt_tests.tiny_fp32
export_dir = tensorrt_tests.export_dir

GPU = GpuIdentity("Orin", "8.7")
# ONNX Runtime's TensorRT execution provider options (onnxruntime docs, TensorRT-ExecutionProvider, "Configurations").
ORT_TRT_OPTIONS = {
    "device_id",
    "trt_max_workspace_size",
    "trt_fp16_enable",
    "trt_int8_enable",
    "trt_engine_cache_enable",
    "trt_engine_cache_path",
    "trt_timing_cache_enable",
    "trt_timing_cache_path",
    "trt_dla_enable",
    "trt_dla_core",
    "trt_profile_min_shapes",
    "trt_profile_opt_shapes",
    "trt_profile_max_shapes",
}


@pytest.fixture(scope="session", params=VERSIONS)
def trt_surface(request):
    try:
        return surface(request.param)
    except Unavailable as reason:
        pytest.skip(f"TensorRT {request.param} API surface unavailable: {reason}")


def _network(trt):
    """What TensorRT's parser would make of the tiny test network: one input, two layers, named tensors."""
    tensors = {}

    def tensor(name):
        if name not in tensors:
            tensors[name] = trt.ITensor.__new__(trt.ITensor)
            object.__setattr__(tensors[name], "_values", {"name": name})
        return tensors[name]

    layers = [trt.ILayer.__new__(trt.ILayer) for _ in range(2)]
    for index, layer in enumerate(layers):
        object.__setattr__(layer, "_values", {"name": f"conv{index + 1}", "num_outputs": 1})
    outputs = {id(layers[0]): "r1", id(layers[1]): "output"}
    trt.behaviour.update(
        {
            "OnnxParser.parse": True,
            "OnnxParser.parse_from_file": True,
            "OnnxParser.num_errors": 0,
            "INetworkDefinition.num_inputs": 1,
            "INetworkDefinition.num_layers": 2,
            "INetworkDefinition.get_input": lambda self, index: tensor("input"),
            "INetworkDefinition.get_layer": lambda self, index: layers[index],
            "ILayer.get_output": lambda self, index: tensor(outputs[id(self)]),
            "IHostMemory.__bytes__": b"\x7f" * 4096,
        }
    )


@pytest.fixture
def trt(trt_surface, monkeypatch, tmp_path):
    """The version's double installed as ``tensorrt``, with a GPU identity and CPU stand-ins for torch.cuda."""
    import torch

    module = make_module(trt_surface)
    _network(module)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(engine_module, "gpu_identity", lambda: GPU)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self: self)
    return module


def _run_builder(trt):
    """TensorRT's side of a build: log through the logger, drive the INT8 calibrator as the builder does."""

    def build(self, network, config):
        calibrator = config.__dict__.get("_values", {}).get("int8_calibrator")
        if calibrator is not None:
            size = calibrator.get_batch_size()
            assert calibrator.read_calibration_cache() is None
            batches = 0
            while (pointers := calibrator.get_batch(["input"])) is not None:
                assert len(pointers) == 1 and isinstance(pointers[0], int) and size == 4
                batches += 1
            calibrator.write_calibration_cache(memoryview(b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n"))
            assert batches == 2
        return trt.IHostMemory.__new__(trt.IHostMemory)

    trt.behaviour["Builder.build_serialized_network"] = build


def _version(trt_surface, dla=False):
    version = trt_surface["version"]
    return "11.4.1" if dla and version.startswith("11.") else version


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_engine_api_conformance_gpu(trt, trt_surface, export_dir, tmp_path, precision):
    plan = _plan(export_dir, device=ORIN_DLA, precision=precision, output_dir=tmp_path, tensorrt=_version(trt_surface))
    (tmp_path / plan.timing_cache.name).write_bytes(b"old timing cache")
    _run_builder(trt)
    result = build_engine(plan)
    flags = called(trt, "Builder.create_network")[0][2][0]
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert flags == (strongly_typed if trt.__version__.startswith("10.") else 0)
    assert called(trt, "OnnxParser.parse_from_file")[0][2] == (str(plan.build_onnx),)
    assert called(trt, "IBuilderConfig.create_timing_cache")[0][2] == (b"old timing cache",)
    assert not called(trt, "IBuilderConfig.set_flag") and not called(trt, "ITensor.set_dynamic_range")
    assert json.loads(result.sidecar.read_text())["tensorrt"] == trt.__version__
    assert plan.timing_cache.is_file() and result.engine.stat().st_size == 4096


def test_build_engine_api_conformance_dla_with_gpu_fallback(trt, trt_surface, export_dir, tmp_path):
    """10.3: weakly typed INT8 with Q/DQ ranges; 11: strongly typed DLA (11.4.1's path, on 11.4.0's API). The newest
    10.x has no DLA (NVIDIA: 10.7 was the last 10.x with it), so the plan refuses."""
    version = _version(trt_surface, dla=True)
    if version.startswith("10.16"):
        with pytest.raises(UsageError, match="no DLA support"):
            _plan(export_dir, device=ORIN_DLA, dla_core=1, gpu_fallback=True, output_dir=tmp_path, tensorrt=version)
        return
    plan = _plan(export_dir, device=ORIN_DLA, dla_core=1, gpu_fallback=True, output_dir=tmp_path, tensorrt=version)
    _run_builder(trt)
    result = build_engine(plan)
    assert [c[2][0] for c in called(trt, "IBuilderConfig.set_flag")] == [
        getattr(trt.BuilderFlag, f) for f in plan.builder_flags
    ]
    assert called(trt, "IBuilderConfig.DLA_core")[0][2] == (1,)
    assert called(trt, "IBuilderConfig.default_device_type")[0][2] == (trt.DeviceType.DLA,)
    assert len(called(trt, "IBuilderConfig.can_run_on_DLA")) == 2
    ranges = called(trt, "ITensor.set_dynamic_range")
    if version.startswith("10."):
        assert {c[2][1] for c in ranges} and all(c[2][0] == -c[2][1] for c in ranges)
    else:
        assert not ranges and plan.int8_source == "qdq"
    assert json.loads(result.sidecar.read_text())["dla_core"] == 1


@pytest.mark.filterwarnings("ignore:calibrating on synthetic")
def test_build_engine_api_conformance_calibrator(trt, trt_surface, export_dir, tmp_path):
    """--calib on 10 runs TensorRT's IInt8EntropyCalibrator2 (subclassed, driven as the builder does); 11 removed it."""
    if trt.__version__.startswith("11."):
        assert not hasattr(trt, "IInt8EntropyCalibrator2") and not hasattr(trt.BuilderFlag, "INT8")
        with pytest.raises(UsageError, match="removed INT8 calibrators"):
            _plan(export_dir, device=ORIN_DLA, calibration="synthetic", tensorrt=trt.__version__)
        return
    plan = _plan(
        export_dir,
        device=ORIN_DLA,
        batch=4,
        calibration="synthetic",
        calibration_samples=8,
        output_dir=tmp_path,
        tensorrt=trt.__version__,
    )
    _run_builder(trt)
    build_engine(plan)
    assert called(trt, "IBuilderConfig.int8_calibrator") and plan.calibration_cache.read_bytes().startswith(
        b"TRT-100300-"
    )
    assert called(trt, "IBuilderConfig.set_flag")[0][2] == (trt.BuilderFlag.INT8,)


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    """An RGB-D network: two inputs sharing a dynamic batch, concatenated, one convolution; a map, not classes."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["rgb", "depth"], ["x"], name="concat", axis=1),
            helper.make_node("Conv", ["x", "w"], ["features"], name="conv", pads=[1, 1, 1, 1]),
        ],
        "rgbd",
        [
            helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["batch", 3, 16, 16]),
            helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", 1, 16, 16]),
        ],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8, 16, 16])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    path = tmp_path_factory.mktemp("rgbd") / "rgbd.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_build_engine_api_conformance_two_inputs(trt, trt_surface, two_inputs, tmp_path):
    """Every dynamic input gets the profile's shapes (one profile, one shared batch), in the build, the EP options
    and trtexec's --minShapes/--optShapes/--maxShapes/--shapes; TensorRT's entropy calibrator is refused."""
    from edgecnn.export.tensorrt.check import ShapeProfile
    from edgecnn.export.tensorrt.trtexec import trtexec_commands

    plan = _plan(
        two_inputs, batch=None, shapes=ShapeProfile(1, 4, 8), output_dir=tmp_path, tensorrt=trt_surface["version"]
    )
    assert plan.dynamic_inputs == ["rgb", "depth"] and plan.shape_for(4, "depth") == [4, 1, 16, 16]
    _run_builder(trt)
    result = build_engine(plan)
    shapes = {c[2][0]: c[2][1:] for c in called(trt, "IOptimizationProfile.set_shape")}
    assert shapes == {
        "rgb": ([1, 3, 16, 16], [4, 3, 16, 16], [8, 3, 16, 16]),
        "depth": ([1, 1, 16, 16], [4, 1, 16, 16], [8, 1, 16, 16]),
    }
    assert len(called(trt, "IBuilderConfig.add_optimization_profile")) == 1
    sidecar = json.loads(result.sidecar.read_text())["build_options"]
    assert [i["name"] for i in sidecar["inputs"]] == ["rgb", "depth"]
    options = tensorrt_ep_options(plan, tmp_path)
    assert options["trt_profile_opt_shapes"] == "rgb:4x3x16x16,depth:4x1x16x16"
    build, profile = (command.argv for command in trtexec_commands(plan))
    assert "--minShapes=rgb:1x3x16x16,depth:1x1x16x16" in build
    assert "--maxShapes=rgb:8x3x16x16,depth:8x1x16x16" in build
    assert "--shapes=rgb:4x3x16x16,depth:4x1x16x16" in profile
    if trt.__version__.startswith("10."):
        with pytest.raises(UsageError, match=r"one image input; rgbd.onnx has 2 \(rgb, depth\).*inputs.npz"):
            _plan(two_inputs, batch=4, calibration="synthetic", tensorrt=trt.__version__)


def _engine_file(tmp_path, trt, dla_core=None):
    engine = tmp_path / "m.engine"
    engine.write_bytes(np.random.default_rng(0).bytes(4096))
    sidecar = {
        "edgecnn_engine": 1,
        "engine": {"file": "m.engine"},
        "tensorrt": trt.__version__,
        "gpu": {"name": GPU.name, "compute_capability": GPU.compute_capability},
        "dla_core": dla_core,
    }
    (tmp_path / "m.engine.json").write_text(json.dumps(sidecar))
    return engine


def test_load_engine_api_conformance(trt, tmp_path):
    """Version guard first, then the sidecar's DLA core on the runtime before deserializing (issue 13, defect 6)."""
    engine = _engine_file(tmp_path, trt, dla_core=1)
    loaded, sidecar, _ = load_engine(engine)
    assert isinstance(loaded, trt.ICudaEngine) and sidecar["dla_core"] == 1
    assert called(trt, "Runtime.DLA_core")[0][2] == (1,)
    assert trt.calls.index(called(trt, "Runtime.DLA_core")[0]) < trt.calls.index(
        called(trt, "Runtime.deserialize_cuda_engine")[0]
    )
    load_engine(engine, dla_core=0)
    assert called(trt, "Runtime.DLA_core")[-1][2] == (0,)
    sidecar["tensorrt"] = "9.9.9"
    (tmp_path / "m.engine.json").write_text(json.dumps(sidecar))
    with pytest.raises(EdgecnnError, match="built by TensorRT 9.9.9"):
        load_engine(engine)
    trt.behaviour["Runtime.deserialize_cuda_engine"] = None
    sidecar["tensorrt"] = trt.__version__
    (tmp_path / "m.engine.json").write_text(json.dumps(sidecar))
    with pytest.raises(UsageError, match=f"is not a TensorRT {trt.__version__} engine"):
        load_engine(engine)


def test_measure_engine_api_conformance(trt, tmp_path, monkeypatch):
    import torch

    class Event:
        def __init__(self, enable_timing=False):
            self.time = 0.0

        def record(self, stream):
            self.time = len(trt.calls)

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return 0.5

    class Stream:
        cuda_stream = 1234

        def synchronize(self):
            pass

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    real_randn, real_zeros = torch.randn, torch.zeros
    monkeypatch.setattr(torch, "randn", lambda shape, device=None: real_randn(shape))
    monkeypatch.setattr(torch, "zeros", lambda shape, dtype=None, device=None: real_zeros(shape, dtype=dtype))
    names = ["input", "output"]
    shapes = {"input": [-1, 3, 16, 16], "output": [-1, 8, 16, 16]}
    trt.behaviour.update(
        {
            "ICudaEngine.num_io_tensors": 2,
            "ICudaEngine.get_tensor_name": lambda self, index: names[index],
            "ICudaEngine.get_tensor_mode": lambda self, name: (
                trt.TensorIOMode.INPUT if name == "input" else trt.TensorIOMode.OUTPUT
            ),
            "ICudaEngine.get_tensor_shape": lambda self, name: shapes[name],
            "ICudaEngine.get_tensor_dtype": trt.DataType.FLOAT,
            "ICudaEngine.create_execution_context": lambda self: trt.IExecutionContext.__new__(trt.IExecutionContext),
            "IExecutionContext.get_tensor_shape": lambda self, name: [2] + shapes[name][1:],
            "tensorrt.nptype": lambda self, dtype: np.float32,
        }
    )
    timing = measure_engine(_engine_file(tmp_path, trt), batch=2, warmup=2, iterations=3)
    assert timing.p50_ms == 0.5 and timing.throughput == pytest.approx(4000)
    assert called(trt, "IExecutionContext.set_input_shape")[0][2] == ("input", [2, 3, 16, 16])
    assert len(called(trt, "IExecutionContext.set_tensor_address")) == 2
    assert len(called(trt, "IExecutionContext.execute_async_v3")) == 5


def test_onnxruntime_tensorrt_ep_options_conformance(trt_surface, export_dir, tmp_path):
    """The EP options edgecnn sets are ONNX Runtime's names, for a plan of each version (DLA where it exists)."""
    version = _version(trt_surface, dla=True)
    dla = not version.startswith("10.16")
    plan = _plan(export_dir, device=ORIN_DLA, dla_core=0 if dla else None, gpu_fallback=dla, tensorrt=version)
    options = tensorrt_ep_options(plan, tmp_path)
    assert set(options) <= ORT_TRT_OPTIONS and options["trt_int8_enable"]
    assert options.get("trt_dla_enable", False) is dla


def test_double_rejects_what_the_real_api_rejects(trt):
    """The double is as strict as the bindings: unknown names, removed flags, wrong argument counts and types."""
    config = trt.IBuilderConfig.__new__(trt.IBuilderConfig)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_memory_pool_limit("workspace", 1 << 20)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatched=False)
    with pytest.raises(AttributeError):
        config.DLA_cores = 1
    with pytest.raises(AttributeError):
        _ = trt.BuilderFlag.FP8_TYPO  # reading an unknown flag raises
    assert hasattr(trt.BuilderFlag, "FP16") is trt.__version__.startswith("10.")


def test_double_type_checks_property_writes_as_pybind11_does(trt, trt_surface):
    """A property write is checked against the setter's pybind11 signature: for every setter the extractor wrote
    values through in the real bindings (tests/trt_api/extract.py, PROBED_SETTERS), the double accepts and refuses
    the same values; an enum property refuses the member's name as a string (TypeError, as TensorRT raises)."""
    from tests.trt_api.extract import probe_values

    assert len(trt_surface["setter_probes"]) >= 10, "the real bindings' setter verdicts are missing"
    differing = {}
    for probe in trt_surface["setter_probes"]:
        owner = getattr(trt, probe["class"])
        values = probe_values(trt, probe["type"])
        for name, real in probe["outcomes"].items():
            value = values[name].__new__(values[name]) if name == "own_class" else values[name]
            try:
                setattr(owner.__new__(owner), probe["property"], value)
                double = "accepted"
            except Exception as error:  # compared with what pybind11 raised, whatever it is
                double = type(error).__name__
            if double != real:
                differing[f"{probe['class']}.{probe['property']} ({probe['type']}) = {name}"] = (real, double)
    assert not differing, f"real bindings vs double: {differing}"
    accepted = {
        f"{p['class']}.{p['property']}": {k for k, v in p["outcomes"].items() if v == "accepted"}
        for p in trt_surface["setter_probes"]
    }
    assert accepted["PluginField.type"] == {"own_enum"} and {"str", "bytes"} == accepted["PluginField.name"]
    assert {"int", "numpy_int64"} <= accepted["PluginField.size"] and "float" not in accepted["PluginField.size"]

    config = trt.IBuilderConfig.__new__(trt.IBuilderConfig)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.profiling_verbosity = "detailed"
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.default_device_type = 1
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.DLA_core = 1.0
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = 1
    assert [c[2] for c in trt.calls if c[0] == "IBuilderConfig"] == [
        (trt.ProfilingVerbosity.DETAILED,),
        (trt.DeviceType.DLA,),
        (1,),
    ], "refused writes are not recorded"
