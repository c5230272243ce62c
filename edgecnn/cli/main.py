"""The ``edgecnn`` command group: thin click wrappers over the Python API, one module per command.

Errors the user can act on (:class:`edgecnn.errors.EdgecnnError`) print as one line and exit non-zero;
``edgecnn --debug ...`` shows the traceback instead. Ctrl-C prints one line and exits 130 (128 + SIGINT);
artifacts are staged, so the files an interrupted command was writing are removed and earlier ones kept.
Each command's module is imported only when that command runs, so ``edgecnn --help`` and the device-side
commands do not load PyTorch; a command that reaches an optional dependency which is not installed names the
extra to install (``edgecnn export needs torch: pip install 'edgecnn[export]'``).
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from edgecnn import __version__
from edgecnn.errors import EdgecnnError
from edgecnn.extras import extra_for, missing_extra

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("edgecnn.cli.list:list_command", "List the zoo (optionally names matching a glob PATTERN)."),
    "info": ("edgecnn.cli.info:info_command", "Per-layer structure of model NAME, totals and weight memory."),
    "export": ("edgecnn.cli.export:export_command", "Export MODELS to verified ONNX (FP32, FP16, INT8, ORT)."),
    "quantize": (
        "edgecnn.cli.quantize:quantize_command",
        "Quantize an FP32 ONNX model or export directory to Q/DQ INT8.",
    ),
    "profile": (
        "edgecnn.cli.profile:profile_command",
        "Cost, memory, fit and latency on edge devices; best within a budget.",
    ),
    "check": ("edgecnn.cli.check:check_command", "Will TensorRT (and DLA) on DEVICE run this model? Node by node."),
    "compile": (
        "edgecnn.cli.compile:compile_command",
        "Build a TensorRT engine, or write the trtexec commands to build it.",
    ),
    "eval": ("edgecnn.cli.eval:eval_command", "Top-1 of each artifact on labelled images and its drop against FP32."),
    "benchmark": (
        "edgecnn.cli.benchmark:benchmark_command",
        "Every format of a model: size, top-1, latency, speed-up.",
    ),
    "predict": (
        "edgecnn.cli.predict:predict_command",
        "Run an exported model on images or a .npy: top-k classes or output statistics.",
    ),
    "devices": ("edgecnn.cli.devices:devices_command", "The device catalog: Jetsons, Raspberry Pis and this host."),
}
"""Command name -> (``module:attribute`` of its click command, the one-line help ``edgecnn --help`` shows)."""


class EdgecnnGroup(click.Group):
    """Loads each command on first use, and turns EdgecnnError into a one-line message."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[name][0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not error.name or extra_for(error.name) is None:
                raise
            raise missing_extra(error.name, f"edgecnn {name}") from error
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        try:
            try:
                return super().invoke(ctx)
            except ModuleNotFoundError as error:
                if not error.name or extra_for(error.name) is None:
                    raise
                command = " ".join(filter(None, ["edgecnn", ctx.invoked_subcommand]))
                raise missing_extra(error.name, command) from error
        except EdgecnnError as error:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(
                "\nInterrupted: what this command had not finished was removed; earlier files are kept.", err=True
            )
            sys.exit(130)


@click.group(cls=EdgecnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """edgecnn: classic CNNs from PyTorch to edge devices.

    \b
    edgecnn list --tag efficient      the zoo, with reference figures
    edgecnn info mobilenet            per-layer structure and weight memory
    """
    ctx.ensure_object(dict)["debug"] = debug


if __name__ == "__main__":
    main()
