"""Every registered model, parametrized over the registry: registering a model is enough to test it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgecnn import get_model, get_spec, list_models
from edgecnn.registry import ALIASES, register_model

TORCHVISION_REFERENCE = Path(__file__).parent / "data" / "torchvision_state_dicts"
ALL_MODELS = list_models()
TORCHVISION_MODELS = [name for name in ALL_MODELS if get_spec(name).torchvision_config is not None]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def alternative_size(spec) -> tuple[int, int]:
    """A non-default, non-square input size the network must also accept."""
    height, width = spec.input_size
    return height + 32, width + 16


def test_zoo_covers_the_classic_networks():
    expected = {
        "lenet5",
        "alexnet",
        "alexnet_original",
        "zfnet",
        "vgg11",
        "vgg11_bn",
        "vgg13",
        "vgg13_bn",
        "vgg16",
        "vgg16_bn",
        "vgg19",
        "vgg19_bn",
        "nin",
        "googlenet",
        "inception_v2",
        "inception_v3",
        "inception_v4",
        "inception_resnet_v1",
        "inception_resnet_v2",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "wide_resnet50_2",
        "wide_resnet101_2",
        "wrn_28_10",
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "densenet121",
        "densenet161",
        "densenet169",
        "densenet201",
        "xception",
        "squeezenet1_0",
        "squeezenet1_1",
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "shufflenet_v1_g1",
        "shufflenet_v1_g2",
        "shufflenet_v1_g3",
        "shufflenet_v1_g4",
        "shufflenet_v1_g8",
        "shufflenet_v2_x0_5",
        "shufflenet_v2_x1_0",
        "shufflenet_v2_x1_5",
        "shufflenet_v2_x2_0",
    }
    assert expected <= set(ALL_MODELS), sorted(expected - set(ALL_MODELS))
    assert any(name.startswith("preact_resnet") for name in ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_spec_is_complete(name):
    spec = get_spec(name)
    assert spec.paper, f"{name} names no paper"
    assert spec.summary, f"{name}'s builder has no docstring"
    assert spec.family
    assert len(spec.mean) == len(spec.std) == spec.in_chans
    assert spec.min_input_size <= min(spec.input_size)
    assert not {"efficient", "heavy"} <= spec.tags


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_shape_at_default_and_other_sizes(name):
    spec = get_spec(name)
    model = get_model(name, num_classes=7)
    assert not model.training, "get_model returns the model in eval mode"
    with torch.inference_mode():
        for height, width in (spec.input_size, alternative_size(spec), (spec.min_input_size,) * 2):
            out = model(torch.randn(2, spec.in_chans, height, width))
            assert out.shape == (2, 7), f"{name} at {height}x{width} gave {tuple(out.shape)}"
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_count_matches_reference(name):
    spec = get_spec(name)
    reference = spec.reference
    if reference is None or reference.params is None or reference.params_tolerance is None:
        doc = spec.builder.__doc__ or ""
        assert len(doc.strip()) > 80, (
            f"{name} has no canonical count, so its docstring must name its configuration and source"
        )
        return
    params = count_parameters(get_model(name))
    if reference.params_tolerance == 0:
        assert params == reference.params, f"{name}: {params} parameters, reference {reference.params:.0f}"
    else:
        assert abs(params - reference.params) / reference.params <= reference.params_tolerance, (
            f"{name}: {params} parameters, reference {reference.params:.0f} within {reference.rule}"
        )


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_state_dict_matches_torchvision(name):
    spec = get_spec(name)
    reference = json.loads((TORCHVISION_REFERENCE / f"{name}.json").read_text())
    model = get_model(name, **spec.torchvision_config)
    ours = [
        (key, list(value.shape), str(value.dtype).removeprefix("torch.")) for key, value in model.state_dict().items()
    ]
    theirs = [(key, shape, dtype) for key, shape, dtype in reference["state_dict"]]
    assert [k for k, *_ in ours] == [k for k, *_ in theirs], "state_dict keys or their order differ from torchvision"
    assert ours == theirs
    assert count_parameters(model) == reference["num_parameters"]

    torchvision_checkpoint = {
        key: torch.randn(shape) if dtype.startswith("float") else torch.zeros(shape, dtype=torch.int64)
        for key, shape, dtype in theirs
    }
    model.load_state_dict(torchvision_checkpoint, strict=True)


def test_every_torchvision_reference_has_a_model():
    names = {path.stem for path in TORCHVISION_REFERENCE.glob("*.json")}
    assert names <= set(TORCHVISION_MODELS), sorted(names - set(TORCHVISION_MODELS))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_initialization_is_seeded_and_deterministic(name):
    first, second = get_model(name, num_classes=5), get_model(name, num_classes=5)
    other = get_model(name, num_classes=5, seed=1)
    for (key, a), b, _ in zip(first.state_dict().items(), second.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), f"{name}.{key} differs between two builds with the same seed"
    assert any(
        not torch.equal(a, c)
        for a, c in zip(first.state_dict().values(), other.state_dict().values())
        if a.is_floating_point()
    )


def test_aliases_resolve_to_registered_models():
    for alias, target in ALIASES.items():
        assert get_spec(alias).name == target


def test_efficient_and_heavy_tags():
    efficient = set(list_models(tags=["efficient"]))
    assert {
        "squeezenet1_1",
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "shufflenet_v2_x1_0",
        "shufflenet_v1_g3",
    } <= efficient
    assert {"vgg16", "resnet152", "alexnet"} <= set(list_models(tags=["heavy"]))
    assert all(
        name.split("_")[0].rstrip("0123456789.") in {"squeezenet", "mobilenet", "shufflenet"} for name in efficient
    )


def test_list_models_filters_with_fnmatch():
    assert list_models("resnet1*") == ["resnet101", "resnet152", "resnet18"]
    assert list_models(["vgg11", "vgg13"]) == ["vgg11", "vgg13"]


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):

        @register_model(family="resnet", paper="x")
        def resnet18(**kwargs):  # noqa: F811
            """Duplicate."""


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="did you mean.*mobilenet_v2"):
        get_spec("mobilenet_v22")
