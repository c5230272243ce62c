"""An ONNX Runtime ``CalibrationDataReader`` that streams a :class:`CalibrationSet` one model batch at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgecnn.calibration.sets import CalibrationSet, InputsSet

__all__ = ["CalibrationReader"]


class CalibrationReader(CalibrationDataReader):
    """Feeds ``{input_name: batch}`` dicts (every input when ``input_name`` is a list of names); ``set_range``
    limits it to a window of batches (ORT's chunking hook).

    Every batch is full, whether or not the model's batch dimension is fixed (``static_batch``): ONNX Runtime's
    calibrators stack each batch's outputs, which fails on a short last batch. The last one is topped up
    with samples from the start of the set rather than zeros, so padding does not widen any range.
    ``on_batch(n)`` is called with the number of new samples each batch brings (for a progress bar).
    """

    def __init__(
        self,
        calibration: CalibrationSet | InputsSet,
        input_name: str | Sequence[str],
        batch_size: int = 1,
        *,
        static_batch: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.calibration = calibration
        self.input_names = [input_name] if isinstance(input_name, str) else list(input_name)
        self.batch_size = max(1, batch_size)
        self.static_batch = static_batch
        self.on_batch = on_batch
        self.batch_count = -(-len(calibration) // self.batch_size)
        self._next, self._stop = 0, self.batch_count

    def __len__(self) -> int:
        return self.batch_count

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._stop = max(0, start_index), min(end_index, self.batch_count)

    def rewind(self) -> None:
        self.set_range(0, self.batch_count)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._stop:
            return None
        count = len(self.calibration)
        start = self._next * self.batch_size
        fresh = list(range(start, min(start + self.batch_size, count)))
        indices = [(start + offset) % count for offset in range(self.batch_size)]
        self._next += 1
        feeds = self.calibration.feeds(indices, self.input_names)
        if self.on_batch is not None:
            self.on_batch(len(fresh))
        return feeds
