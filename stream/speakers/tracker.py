"""Per-stream speaker tracking: from window embeddings to speaker decisions.

One 1 s window says little about who is talking; a few seconds of speech say a lot.
:class:`SpeakerTracker` keeps the embeddings of the last ``span_windows`` *speech*
windows of one stream (non-speech windows are skipped: silence and hold music carry
no voice), averages them into one unit vector, and has it scored. It emits a
:class:`SpeakerDecision` only when the identity becomes confident or changes, and
only after ``confirm`` consecutive evaluations agree, so one odd window does not
flip a call between speakers (leaving a named speaker for ``unknown`` takes
``confirm_unknown``: a hand-over between two voices briefly averages into a blend
that matches nobody). At end of stream :meth:`SpeakerTracker.final` names the
dominant voice of the call for the summary: the voice (a name or ``unknown``) that
the most scored spans were attributed to. (The mean of *all* speech windows would
blend agent and caller of a two-party call into a vector that matches neither, and
report ``unknown``.)

The tracker is pure and cheap (a sum over ≤ ``span_windows`` vectors per window);
scoring is done outside it so a worker can score every stream of a batch in one
call (:func:`track_batch`), and so a registry update (a new scorer) applies to the
next window of every live stream without a restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.speakers.calibration import unit
from stream.speakers.scoring import UNKNOWN, SpeakerScorer, Verdict
from stream.types import Float32


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """When a stream's speaker is decided.

    Attributes
    ----------
    span_windows: speech windows averaged for one decision (6 × 0.5 s hop ≈ 3.5 s).
    min_windows: speech windows needed before anything is decided.
    confirm: consecutive evaluations that must agree before a change is emitted.
    confirm_unknown: consecutive ``unknown`` evaluations needed to leave a *named*
        speaker. While one voice hands over to another, the span averages both and
        the blend matches nobody; requiring a span's worth of ``unknown`` keeps that
        hand-over from being reported as an unknown speaker.
    min_margin: a named speaker is only confident when it beats the runner-up by
        this much; a closer call leaves the current decision in place.
    """

    span_windows: int = 6
    min_windows: int = 2
    confirm: int = 2
    confirm_unknown: int = 6
    min_margin: float = 0.03


DEFAULT_TRACKER = TrackerConfig()


@dataclass(frozen=True, slots=True)
class SpeakerDecision:
    """Who is speaking on a stream, over which samples, and how sure.

    Attributes
    ----------
    stream_id: the stream.
    speaker: enrolled name or ``"unknown"``.
    score: cosine score of the best enrolled speaker.
    margin: ``score`` minus the runner-up's score.
    runner_up: the second-best enrolled speaker, if any.
    start_sample, end_sample: stream samples ``[start, end)`` the decision rests on.
    windows: speech windows averaged.
    final: ``True`` for the end-of-stream verdict.
    """

    stream_id: str
    speaker: str
    score: float
    margin: float
    runner_up: str | None
    start_sample: int
    end_sample: int
    windows: int
    final: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "speaker": self.speaker,
            "score": round(self.score, 6),
            "margin": round(self.margin, 6),
            "runner_up": self.runner_up,
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "windows": self.windows,
            "final": self.final,
        }


class SpeakerTracker:
    """Speaker state of one stream (see module docstring).

    Parameters
    ----------
    stream_id : str
        Named in every decision.
    config : TrackerConfig
        Span, confirmation and margin policy.
    """

    def __init__(self, stream_id: str, *, config: TrackerConfig = DEFAULT_TRACKER) -> None:
        self.stream_id = stream_id
        self.config = config
        self._span: deque[tuple[Float32, int, int]] = deque(maxlen=config.span_windows)
        self._total: Float32 | None = None
        self._count = 0
        self._first_sample: int | None = None
        self._last_sample = 0
        self._current: str | None = None
        self._candidate: str | None = None
        self._agree = 0
        self._pending = False
        # per voice its spans scored as: [sum of scores, sum of margins, windows]
        self._held: dict[str, list[float]] = {}

    @property
    def current(self) -> str | None:
        """The last emitted speaker (``None`` before the first decision)."""
        return self._current

    @property
    def speech_windows(self) -> int:
        return self._count

    def push(
        self, embedding: npt.ArrayLike, start_sample: int, end_sample: int, *, speech: bool
    ) -> Float32 | None:
        """Add one window; return the span's aggregate embedding to score, or ``None``.

        Non-speech windows are ignored (``None``). Until ``min_windows`` speech
        windows have arrived there is nothing to score either.
        """
        if not speech:
            return None
        emb = unit(np.asarray(embedding, dtype=np.float32).reshape(-1))
        self._span.append((emb, int(start_sample), int(end_sample)))
        self._total = emb.copy() if self._total is None else self._total + emb
        self._count += 1
        if self._first_sample is None:
            self._first_sample = int(start_sample)
        self._last_sample = int(end_sample)
        if len(self._span) < self.config.min_windows:
            return None
        self._pending = True
        return unit(np.sum([e for e, _, _ in self._span], axis=0))

    def observe(self, verdict: Verdict) -> SpeakerDecision | None:
        """Feed the verdict for the aggregate :meth:`push` returned; maybe emit a decision."""
        if not self._pending:
            return None
        self._pending = False
        label = self._label(verdict)
        if label is not None:  # the newest window goes to the voice its span scored as
            held = self._held.setdefault(label, [0.0, 0.0, 0])
            held[0] += verdict.score
            held[1] += verdict.margin
            held[2] += 1
        return self._decide(verdict)

    def _decide(self, verdict: Verdict) -> SpeakerDecision | None:
        label = self._label(verdict)
        if label is None or label == self._current:
            self._candidate, self._agree = None, 0
            return None
        if label == self._candidate:
            self._agree += 1
        else:
            self._candidate, self._agree = label, 1
        needed = self.config.confirm
        if label == UNKNOWN and self._current not in (None, UNKNOWN):
            needed = max(needed, self.config.confirm_unknown)
        if self._agree < needed:
            return None
        self._current, self._candidate, self._agree = label, None, 0
        return self._decision(verdict, label)

    def add(
        self,
        embedding: npt.ArrayLike,
        start_sample: int,
        end_sample: int,
        *,
        speech: bool,
        scorer: SpeakerScorer,
    ) -> SpeakerDecision | None:
        """:meth:`push` + score + :meth:`observe` for one stream (tests, simple callers)."""
        aggregate = self.push(embedding, start_sample, end_sample, speech=speech)
        if aggregate is None:
            return None
        return self.observe(scorer.identify(aggregate[None, :])[0])

    def final(self, scorer: SpeakerScorer) -> SpeakerDecision:
        """End-of-stream verdict: the voice that held the most speech windows.

        Each scored window counts for the voice (a name or ``unknown``) its span was
        scored as; the verdict's score and margin are the means over that voice's
        windows, its runner-up the voice with the next most windows. A stream too short
        to be scored falls back to the mean of its speech windows, scored once.
        """
        if self._total is None or self._count == 0:
            return SpeakerDecision(self.stream_id, UNKNOWN, 0.0, 0.0, None, 0, 0, 0, final=True)
        if self._held:
            ranked = sorted(self._held, key=lambda name: -self._held[name][2])
            score_sum, margin_sum, n = self._held[ranked[0]]
            return SpeakerDecision(
                stream_id=self.stream_id,
                speaker=ranked[0],
                score=score_sum / n,
                margin=margin_sum / n,
                runner_up=ranked[1] if len(ranked) > 1 else None,
                start_sample=self._first_sample or 0,
                end_sample=self._last_sample,
                windows=self._count,
                final=True,
            )
        verdict = scorer.identify(unit(self._total)[None, :])[0]
        return SpeakerDecision(
            stream_id=self.stream_id,
            speaker=verdict.speaker,
            score=verdict.score,
            margin=verdict.margin,
            runner_up=verdict.runner_up,
            start_sample=self._first_sample or 0,
            end_sample=self._last_sample,
            windows=self._count,
            final=True,
        )

    def _label(self, verdict: Verdict) -> str | None:
        if verdict.speaker == UNKNOWN:
            return UNKNOWN
        if verdict.runner_up is not None and verdict.margin < self.config.min_margin:
            return None
        return verdict.speaker

    def _decision(self, verdict: Verdict, label: str) -> SpeakerDecision:
        return SpeakerDecision(
            stream_id=self.stream_id,
            speaker=label,
            score=verdict.score,
            margin=verdict.margin,
            runner_up=verdict.runner_up,
            start_sample=self._span[0][1],
            end_sample=self._span[-1][2],
            windows=len(self._span),
        )


def track_batch(
    items: Sequence[tuple[SpeakerTracker, npt.ArrayLike, int, int, bool]],
    scorer: SpeakerScorer,
) -> list[SpeakerDecision | None]:
    """Advance many streams' trackers with one batched scoring call.

    Parameters
    ----------
    items : sequence of ``(tracker, embedding, start_sample, end_sample, speech)``
        One window each, in the order the batch produced them; a tracker may appear
        more than once (its windows are applied in order).
    scorer : SpeakerScorer
        The current registry snapshot's scorer.

    Returns
    -------
    list
        The decision each window caused, or ``None``.
    """
    out: list[SpeakerDecision | None] = [None] * len(items)
    # A stream with two windows in one batch must see the first verdict before the
    # second push, so windows are scored in rounds of at most one per tracker.
    remaining = list(range(len(items)))
    while remaining:
        seen: set[int] = set()
        this_round: list[int] = []
        later: list[int] = []
        for i in remaining:
            key = id(items[i][0])
            (later if key in seen else this_round).append(i)
            seen.add(key)
        aggregates = []
        for i in this_round:
            tracker, emb, start, end, speech = items[i]
            agg = tracker.push(emb, start, end, speech=speech)
            if agg is not None:
                aggregates.append((i, agg))
        if aggregates:
            verdicts = scorer.identify(np.stack([a for _, a in aggregates]))
            for (i, _), verdict in zip(aggregates, verdicts, strict=True):
                out[i] = items[i][0].observe(verdict)
        remaining = later
    return out
