"""Run a serialized TensorRT engine on numpy arrays, with device memory from the CUDA runtime (ctypes).

No PyTorch or pycuda: JetPack installs TensorRT's Python bindings and ``libcudart``, which is all this needs,
so ``edgecnn predict`` runs engines from the torch-free core install. The engine is loaded by
:func:`edgecnn.export.tensorrt.engine.load_engine`, which first checks its sidecar (TensorRT version, GPU).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.export.tensorrt.engine import load_engine

__all__ = ["EngineRunner"]

_CUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
_HOST_TO_DEVICE, _DEVICE_TO_HOST = 1, 2


def _cudart():
    for name in _CUDART_NAMES:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        library.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        library.cudaFree.argtypes = [ctypes.c_void_p]
        library.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        library.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        library.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        return library
    raise EdgecnnError("running a TensorRT engine needs the CUDA runtime (libcudart), which is not installed here")


def _check(status: int, what: str) -> None:
    if status != 0:
        raise EdgecnnError(f"CUDA runtime error {status} in {what}")


class EngineRunner:
    """One engine and its execution context; :meth:`run` maps input arrays to output arrays."""

    def __init__(self, path: str | Path, dla_core: int | None = None):
        import tensorrt as trt

        self.engine, self.sidecar, self.warnings = load_engine(path, dla_core)
        if not hasattr(self.engine, "num_io_tensors"):
            raise EdgecnnError(
                f"running engines needs TensorRT 8.5 or newer (named I/O tensors), not {trt.__version__}"
            )
        self.version = trt.__version__
        self._trt = trt
        self._cuda = _cudart()
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self._stream = ctypes.c_void_p()
        _check(self._cuda.cudaStreamCreate(ctypes.byref(self._stream)), "cudaStreamCreate")

    def input_shape(self, name: str) -> list[int]:
        """The engine's shape for input ``name``; -1 marks a dynamic dimension."""
        return list(self.engine.get_tensor_shape(name))

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name)))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        allocations: list[ctypes.c_void_p] = []

        def device_buffer(nbytes: int) -> ctypes.c_void_p:
            pointer = ctypes.c_void_p()
            _check(self._cuda.cudaMalloc(ctypes.byref(pointer), max(nbytes, 1)), "cudaMalloc")
            allocations.append(pointer)
            return pointer

        try:
            for name in self.inputs:
                array = np.ascontiguousarray(feeds[name], dtype=self._dtype(name))
                self.context.set_input_shape(name, array.shape)
                pointer = device_buffer(array.nbytes)
                _check(self._cuda.cudaMemcpy(pointer, array.ctypes.data, array.nbytes, _HOST_TO_DEVICE), "cudaMemcpy")
                self.context.set_tensor_address(name, pointer.value)
            results = {}
            for name in self.outputs:
                results[name] = np.empty(tuple(self.context.get_tensor_shape(name)), self._dtype(name))
                self.context.set_tensor_address(name, device_buffer(results[name].nbytes).value)
            if not self.context.execute_async_v3(self._stream.value):
                raise EdgecnnError("TensorRT could not run the engine (execute_async_v3 returned False)")
            _check(self._cuda.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            for name, array in results.items():
                address = self.context.get_tensor_address(name)
                _check(self._cuda.cudaMemcpy(array.ctypes.data, address, array.nbytes, _DEVICE_TO_HOST), "cudaMemcpy")
            return results
        finally:
            for pointer in allocations:
                self._cuda.cudaFree(pointer)
