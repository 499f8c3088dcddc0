"""The speaker model beside the label model: what the runtime asks of it.

:class:`SpeakerHook` is the protocol (embed a batch's speech windows in the inference
thread, score them against the enrolled speakers); :class:`EmbeddingSpeakerHook` is the
worker's, over a speaker-embedding ONNX model and the registry's current scorer
(``stream.speakers``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from stream.events import ModelRef
from stream.pipeline import WindowJob


class SpeakerHook(Protocol):
    """The speaker model and the enrolled speakers, as the runtime needs them.

    ``embed`` runs in the inference thread, after the label model, on the batch's
    speech windows only; it returns unit embeddings ``[n, d]``. ``scorer()`` is the
    current registry's scorer, asked at every decision (the pipeline's
    :class:`~stream.pipeline.SpeakerStage`). ``model`` names the speaker model in events.
    """

    model: ModelRef

    def embed(self, jobs: Sequence[WindowJob]) -> np.ndarray: ...

    def scorer(self) -> Any: ...


class EmbeddingSpeakerHook:
    """Open-set speaker identification per window: embed, then score against the
    enrolled speakers (``stream.speakers``).

    Parameters
    ----------
    embed: feature windows ``[n, F, T, 1]`` → unit embeddings ``[n, d]``
        (``SpeakerEmbedder.embed_windows``); the speaker model must share the label
        model's FeatureSpec, so the same windows feed both.
    scorer: returns the current scorer (a registry update applies to the next batch).
    model: the speaker model's name and version.
    spec: the speaker model's FeatureSpec; when it differs from the label model's,
        the pipeline computes it too (``Pipeline(aux_frontend=...)``) and the windows
        arrive in ``WindowJob.aux_features``.
    """

    def __init__(
        self,
        embed: Callable[[np.ndarray], np.ndarray],
        scorer: Callable[[], Any],
        model: ModelRef,
        spec: Any,
    ) -> None:
        self._embed = embed
        self._scorer = scorer
        self.model = model
        self.spec = spec

    def embed(self, jobs: Sequence[WindowJob]) -> np.ndarray:
        feats = [j.window.features if j.aux_features is None else j.aux_features for j in jobs]
        x = np.stack(feats)[..., np.newaxis].astype(np.float32, copy=False)
        return self._embed(x)

    def scorer(self) -> Any:
        return self._scorer()
