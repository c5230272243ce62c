"""Suite-wide set-up: caches isolated from the user's, one core per pytest-xdist worker, heap given back.

``make test`` runs the suite on two pytest-xdist workers (the machine has two cores and one process uses
about one of them on average: export and graph building are mostly single-threaded). Each worker is pinned
to its own core, so PyTorch's and ONNX Runtime's thread pools (both sized from the affinity mask, see
:func:`edgecnn.runtime.usable_cores`) do not oversubscribe the machine.
"""

from __future__ import annotations

import os

import pytest

from edgecnn.cache import CACHE_ENV
from edgecnn.heap import release_free_heap


def _pin_worker_to_one_core() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < count:
        return
    core = cores[int(worker.removeprefix("gw")) % len(cores)]
    os.sched_setaffinity(0, {core})
    import torch

    torch.set_num_threads(1)


_pin_worker_to_one_core()


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Graph and calibration caches in one directory shared by this run's workers, never the user's."""
    root = tmp_path_factory.getbasetemp()
    shared = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "edgecnn-cache"
    shared.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(shared)
    yield shared
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="module", autouse=True)
def give_heap_back():
    """After each test module, return freed heap to the OS: the zoo's large weights otherwise fragment glibc's
    heap and a worker's resident memory climbs past 10 GB over the suite. Once per module, not per test: per
    test it took 111 of 152 s on test_cost.py and test_tensorrt.py (pytest-randomly keeps a module's tests
    together, so the module boundary is still where the heap is given back)."""
    yield
    release_free_heap()
