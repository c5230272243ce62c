"""Rebuild the zoo graphs shipped in ``edgecnn/data/zoo_graphs`` (``make zoo-graphs``).

Run it after editing a model, ``edgecnn/layers.py``, the exporter or the clean-up step: the tests fail
while the shipped graphs are stale, and until they are rebuilt ``edgecnn profile`` exports every zoo model
again on a user's first run. Each graph is the shape-only ONNX that :func:`edgecnn.export.zoo_graphs.zoo_graph` would
build at the model's default input size and class count.

    python scripts/build_zoo_graphs.py [--jobs N]

The fingerprint covers the whole zoo's sources, so every graph is rebuilt each time; unchanged models
come out byte for byte the same.
"""

from __future__ import annotations

import argparse
import os
import time

from edgecnn.export.zoo_graphs import SHIPPED_GRAPHS_DIR, write_shipped_graphs
from edgecnn.registry import list_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=min(4, len(os.sched_getaffinity(0))), help="build processes")
    args = parser.parse_args(argv)
    names = list_models()
    started = time.perf_counter()
    index = write_shipped_graphs(
        SHIPPED_GRAPHS_DIR, names, jobs=args.jobs, on_done=lambda name: print(f"built {name}", flush=True)
    )
    size = sum(path.stat().st_size for path in SHIPPED_GRAPHS_DIR.glob("*.onnx"))
    print(
        f"{len(index['graphs'])} graphs, {size / 2**20:.1f} MiB, in {time.perf_counter() - started:.0f} s "
        f"-> {SHIPPED_GRAPHS_DIR}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
