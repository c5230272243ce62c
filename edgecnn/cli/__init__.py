"""The command line, the top layer: each command parses its options and calls the public Python API."""

from edgecnn.cli.main import main

__all__ = ["main"]
