"""Profile: parameters, MACs, weight and activation memory, device fit and latency of ONNX graphs.

It reads ONNX graphs, export directories, trtexec output and the device catalog, and nothing above them:
the cost model (:mod:`~edgecnn.profile.cost`), the liveness memory plan (:mod:`~edgecnn.profile.memory`), the
roofline estimate (:mod:`~edgecnn.profile.estimate`), host measurement (:mod:`~edgecnn.profile.measure`), the
report (:mod:`~edgecnn.profile.report`), plots and trtexec's files (:mod:`~edgecnn.profile.trtexec`).
"""

from edgecnn.profile.report import (
    DeviceFit,
    ProfileOptions,
    ProfileReport,
    ProfileRow,
    Recommendation,
    check_targets,
    profile,
    runnable_graph,
)
from edgecnn.profile.sources import (
    GraphSource,
    ProfileTarget,
    export_dir_graphs,
    onnx_file_source,
)

__all__ = [
    "DeviceFit",
    "ProfileOptions",
    "ProfileReport",
    "ProfileRow",
    "Recommendation",
    "check_targets",
    "profile",
    "runnable_graph",
    "GraphSource",
    "ProfileTarget",
    "export_dir_graphs",
    "onnx_file_source",
]
