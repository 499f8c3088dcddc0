"""Open-set identification: cosine nearest neighbours over enrolled speakers.

The embedding model maps speech to unit vectors; two windows of one voice point
the same way. Identification is therefore a nearest-neighbour search with
``sklearn.neighbors.NearestNeighbors(metric="cosine")`` and a threshold: the best
enrolled speaker wins if its cosine score reaches the registry's calibrated
threshold, otherwise the answer is :data:`UNKNOWN`.

Two ways to compare, chosen by ``ScoringConfig.method``:

``"centroid"`` (default)
    one unit-length mean embedding per speaker; score = cosine to the centroid.
``"knn"``
    every enrolled segment (a few windows averaged) is a neighbour; a speaker's
    score is the mean cosine of its ``k`` nearest segments. Measured on held-out voices in
    ``models/zoo/speaker-embed/*/MODEL_CARD.md``; centroids were at least as
    accurate and cheaper, hence the default.

Scoring is batched: :meth:`SpeakerScorer.identify` takes ``[n, d]`` embeddings from
many streams and does one neighbour query for all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.neighbors import NearestNeighbors

from stream.speakers.calibration import segments, unit
from stream.types import Float32

UNKNOWN = "unknown"
Method = Literal["centroid", "knn"]


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """How embeddings are compared with enrollments.

    Attributes
    ----------
    method: ``"centroid"`` or ``"knn"`` (see module docstring).
    k: neighbours consulted by ``"knn"``.
    segment_windows: window embeddings averaged into one enrolled segment (``"knn"``).
    """

    method: Method = "centroid"
    k: int = 5
    segment_windows: int = 4


DEFAULT_SCORING = ScoringConfig()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one embedding.

    Attributes
    ----------
    speaker: the enrolled name, or ``"unknown"``.
    score: cosine score of the best enrolled speaker (0.0 with no enrollments).
    nearest: the best enrolled speaker even when the verdict is ``unknown``.
    runner_up, runner_up_score: the second best, when there is one.
    margin: ``score - runner_up_score`` (``score`` when there is no runner-up).
    threshold: the threshold the decision used.
    """

    speaker: str
    score: float
    nearest: str | None
    runner_up: str | None
    runner_up_score: float | None
    margin: float
    threshold: float

    @property
    def known(self) -> bool:
        return self.speaker != UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "score": round(self.score, 6),
            "nearest": self.nearest,
            "runner_up": self.runner_up,
            "runner_up_score": None
            if self.runner_up_score is None
            else round(self.runner_up_score, 6),
            "margin": round(self.margin, 6),
            "threshold": round(self.threshold, 6),
        }


def scorer_digest(
    names: tuple[str, ...], points: npt.NDArray[Any], threshold: float, config: ScoringConfig
) -> str:
    """A short digest of what a scorer compares against (names, points, threshold,
    method): the registry version speaker event ids are derived from, equal on every
    worker that holds the same enrollments, whatever order they arrived in."""
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((names, float(threshold), config)).encode())
    h.update(np.ascontiguousarray(points, dtype=np.float32).tobytes())
    return h.hexdigest()


class SpeakerScorer:
    """Enrolled speakers indexed for batched cosine scoring.

    Parameters
    ----------
    by_speaker : mapping of name → np.ndarray [shape=(n_i, d)]
        Window embeddings of each enrolled speaker (unit rows, time order).
    threshold : float
        Accept the best speaker when its score is at least this.
    config : ScoringConfig
        Centroid or k-NN comparison.
    """

    def __init__(
        self,
        by_speaker: Mapping[str, npt.ArrayLike],
        *,
        threshold: float,
        config: ScoringConfig = DEFAULT_SCORING,
    ) -> None:
        self.threshold = float(threshold)
        self.config = config
        self.names: tuple[str, ...] = tuple(sorted(by_speaker))
        points, owners = self._points(by_speaker)
        self.digest = scorer_digest(self.names, points, self.threshold, config)
        self._owners = owners
        self._index: NearestNeighbors | None = None
        if points.shape[0]:
            self._index = NearestNeighbors(metric="cosine", algorithm="brute")
            self._index.fit(points)
        self._n_points = points.shape[0]

    def _points(
        self, by_speaker: Mapping[str, npt.ArrayLike]
    ) -> tuple[Float32, npt.NDArray[np.int64]]:
        rows: list[Float32] = []
        owners: list[int] = []
        for i, name in enumerate(self.names):
            emb = np.asarray(by_speaker[name], dtype=np.float32)
            if self.config.method == "centroid":
                pts = unit(emb.mean(axis=0, keepdims=True))
            else:
                pts = segments(emb, self.config.segment_windows)
            rows.append(pts)
            owners.extend([i] * pts.shape[0])
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
        return np.concatenate(rows), np.asarray(owners, dtype=np.int64)

    @property
    def empty(self) -> bool:
        return self._index is None

    def speaker_scores(self, embeddings: npt.ArrayLike) -> Float32:
        """Score of every enrolled speaker for every row: ``[shape=(n, n_speakers)]``."""
        query = unit(np.atleast_2d(np.asarray(embeddings, dtype=np.float32)))
        n = query.shape[0]
        out = np.full((n, len(self.names)), -1.0, dtype=np.float32)
        if self._index is None or n == 0:
            return out
        # Every point is ranked (brute force either way): centroids are one point per
        # speaker, and "knn" needs each speaker's own nearest segments to score the
        # runner-up too, not only whoever fills the global top k.
        dist, idx = self._index.kneighbors(query, n_neighbors=self._n_points)
        cos = 1.0 - dist
        owners = self._owners[idx]
        k = 1 if self.config.method == "centroid" else max(1, self.config.k)
        for s in range(len(self.names)):
            mask = owners == s
            take = mask & (np.cumsum(mask, axis=1) <= k)
            hits = take.sum(axis=1)
            total = np.where(take, cos, 0.0).sum(axis=1)
            has = hits > 0
            out[has, s] = (total[has] / hits[has]).astype(np.float32)
        return out

    def identify(self, embeddings: npt.ArrayLike) -> list[Verdict]:
        """Open-set verdicts for ``[n, d]`` embeddings (one neighbour query for all).

        With no enrollments every verdict is ``unknown`` with score 0.
        """
        query = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if self._index is None:
            return [self._unknown() for _ in range(query.shape[0])]
        scores = self.speaker_scores(query)
        return [self._verdict(row) for row in scores]

    def _unknown(self) -> Verdict:
        return Verdict(UNKNOWN, 0.0, None, None, None, 0.0, self.threshold)

    def _verdict(self, row: Float32) -> Verdict:
        order = np.argsort(-row, kind="stable")
        best = int(order[0])
        score = float(row[best])
        second = int(order[1]) if len(order) > 1 and row[order[1]] > -1.0 else None
        second_score = None if second is None else float(row[second])
        margin = score - (second_score if second_score is not None else 0.0)
        speaker = self.names[best] if score >= self.threshold else UNKNOWN
        return Verdict(
            speaker=speaker,
            score=score,
            nearest=self.names[best],
            runner_up=None if second is None else self.names[second],
            runner_up_score=second_score,
            margin=margin,
            threshold=self.threshold,
        )
