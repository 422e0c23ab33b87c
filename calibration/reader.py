"""ONNX Runtime's calibration data reader over a calibration set, batch by batch.

Images go through ``core.preprocessing``, the one definition the artifact will be served with.
The reader supports ONNX Runtime's strided collection (``__len__`` and ``set_range`` in batches):
ranges are collected one batch at a time, so the histogram methods hold one batch of activations
in memory instead of the whole set's, and batches of unequal size never meet in one array.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from core.config import Preprocessing
from core.preprocessing import preprocess_batch

from .data import CalibrationSet


class BatchReader(CalibrationDataReader):
    """Feeds ``{input_name: float32 [B, 3, S, S]}`` batches of a calibration set."""

    def __init__(
        self,
        dataset: CalibrationSet,
        *,
        input_name: str,
        image_size: int,
        preprocessing: Preprocessing,
        batch_size: int,
    ) -> None:
        self._files = dataset.files
        self._input_name = input_name
        self._image_size = image_size
        self._preprocessing = preprocessing
        self._batch_size = batch_size
        self._batches: Iterator[int] = iter(range(len(self)))
        self._progress: tqdm | None = None

    def __len__(self) -> int:
        return -(-len(self._files) // self._batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serves batches ``start_index`` to ``end_index`` (exclusive) on the following calls."""
        self._batches = iter(range(start_index, min(end_index, len(self))))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._batches, None)
        if index is None:
            return None
        if self._progress is None:
            self._progress = tqdm(total=len(self), desc="calibrating", unit="batch")
        self._progress.update(1)
        if self._progress.n >= len(self):
            self._progress.close()
        files = self._files[index * self._batch_size : (index + 1) * self._batch_size]
        return {self._input_name: preprocess_batch(files, self._image_size, self._preprocessing)}
