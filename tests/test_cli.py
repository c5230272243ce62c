"""The command line through click's CliRunner: the happy paths and the errors a new user makes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edgecnn import __version__, list_models
from edgecnn.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "list" in result.output and "info" in result.output


def test_list_json_covers_the_registry_with_reference_figures():
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == list_models()
    mobilenet = next(row for row in rows if row["name"] == "mobilenet_v2")
    assert mobilenet["params"] == 3504872
    assert mobilenet["ref_top1"] == 71.878
    assert "efficient" in mobilenet["tags"]


def test_list_pattern_and_tag():
    result = invoke("list", "shufflenet*", "--tag", "efficient", "--csv")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("name,family,params")
    assert all(line.startswith("shufflenet") for line in lines[1:])
    assert len(lines) > 4


def test_list_table_marks_reference_figures():
    result = invoke("list", "vgg1*")
    assert result.exit_code == 0, result.output
    assert "vgg16_bn" in result.output
    assert "(ref)" in result.output


def test_list_pattern_without_match_fails():
    result = invoke("list", "nosuchnet*")
    assert result.exit_code == 1
    assert "no model matches" in result.output


def test_info_alias_shows_layers_and_weight_memory():
    result = invoke("info", "mobilenet")
    assert result.exit_code == 0, result.output
    assert "mobilenet_v2" in result.output
    assert "3,504,872 parameters" in result.output
    assert "int8" in result.output


def test_info_json_with_input_size_and_classes():
    result = invoke("info", "resnet18", "--input-size", "160x128", "--num-classes", "10", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["input_shape"] == [1, 3, 160, 128]
    assert summary["layers"][-1]["output_shape"] == [1, 10]
    assert summary["params"] == sum(layer["params"] for layer in summary["layers"])
    assert summary["weight_bytes"]["fp16"] == 2 * summary["params"]


def test_unknown_model_is_one_line_with_suggestion():
    result = invoke("info", "mobilenet_v22")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "did you mean" in result.output and "mobilenet_v2" in result.output
    assert "Traceback" not in result.output


def test_input_size_too_small_is_a_usage_error():
    result = invoke("info", "alexnet", "--input-size", "8")
    assert result.exit_code == 2
    assert "too small" in result.output


def test_malformed_input_size():
    result = invoke("info", "resnet18", "--input-size", "big")
    assert result.exit_code == 2
    assert "HxW" in result.output


def test_debug_shows_traceback():
    result = invoke("--debug", "info", "nosuchnet")
    assert result.exit_code == 2
    assert "Traceback" in (result.output + str(result.stderr_bytes or b""))


def test_reports_start_with_their_title_not_a_blank_line():
    """A progress display is for terminals: piped, several models' profile starts with the table's title."""
    result = invoke("profile", "lenet5", "squeezenet1_1", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("profile on host"), result.output[:200]
