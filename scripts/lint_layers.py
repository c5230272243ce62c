"""Check the import contracts in pyproject.toml ([tool.importlinter]) with import-linter.

The installed package maps ``edgecnn.export`` to ``export/`` and ``edgecnn.calibration`` to ``calibration/``
(pyproject's package-dir), but import-linter's graph builder (grimp) walks one directory tree per package and
would not see those two. So this script lays the sources out as Python sees them, in a temporary directory
(``edgecnn/`` with ``export/`` and ``calibration/`` inside), and runs ``lint-imports`` there. Exit status is
lint-imports' own: 0 when every contract holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"export": "edgecnn/export", "calibration": "edgecnn/calibration"}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edgecnn-layers-") as scratch:
        tree = Path(scratch)
        ignore = shutil.ignore_patterns("__pycache__", "data")
        shutil.copytree(ROOT / "edgecnn", tree / "edgecnn", ignore=ignore)
        for source, target in MAPPED.items():
            shutil.copytree(ROOT / source, tree / target, ignore=ignore)
        environment = {**os.environ, "PYTHONPATH": str(tree)}
        command = [
            str(Path(sys.executable).with_name("lint-imports")),
            str(ROOT / "pyproject.toml"),
            "--no-cache",
            "--no-logo",
        ]
        return subprocess.run(command, cwd=tree, env=environment).returncode


if __name__ == "__main__":
    sys.exit(main())
