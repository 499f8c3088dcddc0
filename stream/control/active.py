"""The model a worker serves now, swapped atomically between batches.

The batch loop reads :class:`ActiveModel`'s reference once per batch, so a batch
already running finishes on the old model and every event names the model that really
scored its window.
"""

from __future__ import annotations

import numpy as np

from stream.events import ModelRef
from stream.inference.session import OnnxModel
from stream.types import Infer


class ActiveModel:
    """The model a worker serves now; :meth:`current` is what each batch reads once.

    The reference is replaced whole by :meth:`swap` (one attribute store), so a batch
    sees either the old model and its ref or the new ones, never a mix.
    """

    def __init__(self, model: OnnxModel) -> None:
        self._active = (model, _ref(model))

    @property
    def model(self) -> OnnxModel:
        return self._active[0]

    @property
    def ref(self) -> ModelRef:
        return self._active[1]

    def current(self) -> tuple[Infer, ModelRef]:
        model, ref = self._active

        def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = model.run(x)
            return out.probabilities, out.embedding

        return infer, ref

    def swap(self, model: OnnxModel) -> ModelRef:
        """Serve ``model`` from the next batch on; returns the ref it replaced."""
        old = self._active[1]
        self._active = (model, _ref(model))
        return old


def _ref(model: OnnxModel) -> ModelRef:
    return ModelRef(model.manifest.name, model.manifest.version)
