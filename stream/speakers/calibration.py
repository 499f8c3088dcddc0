"""Open-set threshold from the enrolled data itself: leave-one-out genuine vs impostor.

A cosine threshold that suits one embedding model and one set of speakers does not
suit another, so the threshold is not a constant: each enrolled speaker's windows
are cut into segments (the span the tracker averages over), every segment is scored
against its own speaker's centroid *computed without it* (genuine) and against every
other speaker's centroid (impostor), and the threshold is placed where the impostor
false-accept rate meets ``target_far`` — unless that rejects more than ``max_frr``
of the genuine segments, in which case the equal-error point is used. The result is
stored with the registry and recomputed whenever an enrollment changes.

With fewer than two speakers there are no impostors to learn from, so the
threshold falls back to ``default_threshold``: the embedding model's own figure,
calibrated on real voices that are not the registry's (its manifest's
``metrics.open_set_threshold``, read by :func:`config_for_model`), 0.5 for a model
that has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.types import Float32


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    """How the threshold is chosen.

    Attributes
    ----------
    segment_windows: window embeddings averaged into one scored segment.
    target_far: wanted leave-one-out false-accept rate of impostor segments.
    max_frr: the most genuine segments the FAR-based threshold may reject before
        the equal-error threshold is used instead.
    default_threshold: used when there are not two speakers to compare.
    """

    segment_windows: int = 4
    target_far: float = 0.01
    max_frr: float = 0.1
    default_threshold: float = 0.5


DEFAULT_CALIBRATION = CalibrationConfig()
OPEN_SET_THRESHOLD = "open_set_threshold"  # the manifest metric config_for_model reads


def config_for_model(metrics: Mapping[str, Any]) -> CalibrationConfig:
    """The calibration for registries of one embedding model: its manifest metric
    ``open_set_threshold`` (a threshold calibrated on real voices at the model's
    build, see its card) becomes ``default_threshold``.

    A one-speaker registry has no impostors of its own; 0.5 suits speaker-embed/1
    but accepts every voice with an encoder whose different-speaker cosines run
    0.6-0.9 (speaker-embed/2). Anything but a number in (0, 1) is ignored.
    """
    value = metrics.get(OPEN_SET_THRESHOLD)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        return DEFAULT_CALIBRATION
    return CalibrationConfig(default_threshold=float(value))


@dataclass(frozen=True, slots=True)
class Calibration:
    """A threshold and how it was obtained (stored in ``registry.json``).

    Attributes
    ----------
    threshold: cosine score at or above which a segment is accepted as a speaker.
    method: ``"far"``, ``"eer"`` or ``"default"``.
    eer: leave-one-out equal error rate (``None`` without impostors).
    n_genuine, n_impostor: how many scores the threshold rests on.
    """

    threshold: float
    method: str
    eer: float | None
    n_genuine: int
    n_impostor: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "method": self.method,
            "eer": self.eer,
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        eer = data.get("eer")
        return cls(
            threshold=float(data["threshold"]),
            method=str(data["method"]),
            eer=None if eer is None else float(eer),
            n_genuine=int(data["n_genuine"]),
            n_impostor=int(data["n_impostor"]),
        )


def unit(x: npt.ArrayLike, *, axis: int = -1) -> Float32:
    """Rows scaled to unit length (zero rows stay zero)."""
    arr = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(arr, axis=axis, keepdims=True)
    return np.asarray(arr / np.maximum(norm, 1e-12), dtype=np.float32)


def segments(embeddings: npt.ArrayLike, segment_windows: int) -> Float32:
    """Mean of consecutive chunks of ``segment_windows`` rows, renormalized.

    Parameters
    ----------
    embeddings : np.ndarray [shape=(n, d)]
        Window embeddings of one speaker, in time order.

    Returns
    -------
    np.ndarray [shape=(ceil(n / segment_windows), d)]
        A trailing short chunk is kept when it holds at least half a segment.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    step = max(1, segment_windows)
    chunks = [emb[i : i + step] for i in range(0, emb.shape[0], step)]
    chunks = [c for c in chunks if c.shape[0] * 2 >= step or len(chunks) == 1]
    if not chunks:
        return np.zeros((0, emb.shape[1] if emb.ndim == 2 else 0), dtype=np.float32)
    return unit(np.stack([c.mean(axis=0) for c in chunks]))


def loo_scores(
    by_speaker: Mapping[str, npt.ArrayLike], *, segment_windows: int
) -> tuple[Float32, Float32]:
    """Leave-one-out genuine and impostor cosine scores of enrolled segments.

    Returns
    -------
    genuine : np.ndarray [shape=(g,)]
        Each segment against its own speaker's centroid without that segment.
    impostor : np.ndarray [shape=(i,)]
        Each segment against every other speaker's full centroid.
    """
    names = sorted(by_speaker)
    segs = {n: segments(by_speaker[n], segment_windows) for n in names}
    sums = {n: np.asarray(by_speaker[n], dtype=np.float32).sum(axis=0) for n in names}
    centroids = {n: unit(sums[n]) for n in names}
    genuine: list[float] = []
    impostor: list[float] = []
    for name in names:
        emb = np.asarray(by_speaker[name], dtype=np.float32)
        step = max(1, segment_windows)
        for j, seg in enumerate(segs[name]):
            held = emb[j * step : (j + 1) * step]
            rest = sums[name] - held.sum(axis=0)
            if emb.shape[0] > held.shape[0] and np.linalg.norm(rest) > 0:
                genuine.append(float(seg @ unit(rest)))
            impostor.extend(float(seg @ centroids[o]) for o in names if o != name)
    return np.asarray(genuine, dtype=np.float32), np.asarray(impostor, dtype=np.float32)


def equal_error(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> tuple[float, float]:
    """Equal error rate and the threshold where FAR and FRR cross.

    Accept means ``score >= threshold``. Candidate thresholds are the midpoints
    between consecutive observed scores, so a threshold never sits on a score and,
    when the two populations are separated, it lands in the middle of the gap
    between them rather than on the lowest genuine score. Ties (several midpoints
    with the same ``|FAR - FRR|``) resolve to the middle one.

    Returns
    -------
    (eer, threshold)
        ``eer`` is the mean of FAR and FRR at the chosen threshold.
    """
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    scores = np.unique(np.concatenate([g, i]))
    candidates = np.concatenate(
        [[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]]
    )
    far = 1.0 - np.searchsorted(i, candidates, side="left") / max(len(i), 1)
    frr = np.searchsorted(g, candidates, side="left") / max(len(g), 1)
    gap = np.abs(far - frr)
    best = np.flatnonzero(gap <= gap.min() + 1e-12)
    k = int(best[len(best) // 2])
    return float((far[k] + frr[k]) / 2), float(candidates[k])


def rates(genuine: npt.ArrayLike, impostor: npt.ArrayLike, threshold: float) -> tuple[float, float]:
    """``(false_accept_rate, false_reject_rate)`` at ``threshold``."""
    g = np.asarray(genuine, dtype=np.float64)
    i = np.asarray(impostor, dtype=np.float64)
    far = float(np.mean(i >= threshold)) if i.size else 0.0
    frr = float(np.mean(g < threshold)) if g.size else 0.0
    return far, frr


def calibrate(
    by_speaker: Mapping[str, npt.ArrayLike], *, config: CalibrationConfig = DEFAULT_CALIBRATION
) -> Calibration:
    """Choose the open-set threshold for these enrollments (see module docstring)."""
    genuine, impostor = loo_scores(by_speaker, segment_windows=config.segment_windows)
    if genuine.size == 0 or impostor.size == 0:
        return Calibration(
            config.default_threshold, "default", None, int(genuine.size), int(impostor.size)
        )
    eer, eer_threshold = equal_error(genuine, impostor)
    far_threshold = float(np.quantile(impostor.astype(np.float64), 1.0 - config.target_far))
    far_threshold = float(np.nextafter(far_threshold, np.inf))  # accept is score >= t
    _, frr = rates(genuine, impostor, far_threshold)
    if frr <= config.max_frr:
        threshold, method = max(far_threshold, eer_threshold), "far"
    else:
        threshold, method = eer_threshold, "eer"
    return Calibration(threshold, method, eer, int(genuine.size), int(impostor.size))
