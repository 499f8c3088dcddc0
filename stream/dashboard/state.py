"""What the dashboard shows, folded from the worker's events: pure, bounded, no I/O.

:class:`DashboardState` takes decoded events from the topics of the event kinds
(``stream.events.kinds``: label, speaker, summary, dead letter) one at a time and keeps
only what a screen can show: per stream the current label (a multi-label stream's
current tags too) and speaker and a timeline of label segments, the latest summaries
(with a multi-label track's tags), event rates, latency percentiles and dead-letter
counts by reason.

Memory is capped whatever the traffic: timelines keep their last
``DashboardLimits.segments`` segments, at most ``max_streams`` streams are held (to
make room, the least recently active *ended* stream goes first, then the least
recently active stream if it is idle; when all are live, a new stream is counted in
``untracked_events`` but not drawn), and every other collection is a fixed-size ring.
Time is passed in (``now_s``, seconds since the epoch) so tests replay an afternoon of
traffic in microseconds.

Events come from another process over Kafka, so nothing here trusts them: a record
that is not a JSON object with a ``stream_id`` is counted as unparsable and dropped,
and a field with the wrong type reads as missing.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from stream.control.json_records import JsonRecordError
from stream.errors import ConfigError
from stream.events import stream_name
from stream.events.kinds import BY_NAME, LABELS, REJECTED, SPEAKERS, SUMMARIES, kind_named

KINDS = tuple(BY_NAME)  # every event kind's name: rates and totals are kept per kind
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True, slots=True)
class DashboardLimits:
    """Bounds on what the dashboard keeps, so its memory does not grow with traffic.

    Attributes
    ----------
    max_streams: streams held at once; past it, ended then idle streams make room.
    segments: label segments kept per stream (the newest).
    tags: tags kept per window and per summary (the best; a model may have hundreds).
    shown_streams: streams sent to the browser in one snapshot (most recent first);
        the rest are counted, not drawn, so a snapshot stays small.
    summaries: latest summary events kept.
    recent_rejected: latest dead letters kept with their message.
    latency_samples: latest latencies the percentiles are computed over.
    rate_window_s: events per second are averaged over this many seconds.
    idle_after_s: a stream with no event for this long is shown as idle.
    """

    max_streams: int = 2000
    segments: int = 64
    tags: int = 16
    shown_streams: int = 100
    summaries: int = 20
    recent_rejected: int = 20
    latency_samples: int = 2048
    rate_window_s: int = 10
    idle_after_s: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "max_streams",
            "segments",
            "tags",
            "shown_streams",
            "summaries",
            "recent_rejected",
            "latency_samples",
            "rate_window_s",
        ):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"DashboardLimits.{name}={value} must be >= 1")
        if self.idle_after_s <= 0:
            raise ConfigError(f"DashboardLimits.idle_after_s={self.idle_after_s} must be > 0")


@dataclass(slots=True)
class Segment:
    """Consecutive windows of one stream with the same top label (stream time, s)."""

    label: str
    start_s: float
    end_s: float
    windows: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "windows": self.windows,
        }


@dataclass(slots=True)
class StreamView:
    """One stream as the dashboard knows it."""

    stream_id: str
    first_seen_s: float
    last_seen_s: float
    label: str | None = None
    score: float | None = None
    speaker: str | None = None
    speaker_score: float | None = None
    model: str | None = None
    windows: int = 0
    last_index: int = -1
    gaps: int = 0
    closed_by: str | None = None
    segments: deque[Segment] = field(default_factory=deque)
    tags: list[dict[str, Any]] | None = None  # the last window's, multi-label models only

    def to_dict(self, now_s: float, idle_after_s: float) -> dict[str, Any]:
        if self.closed_by is not None:
            status = "ended"
        elif now_s - self.last_seen_s > idle_after_s:
            status = "idle"
        else:
            status = "live"
        return {
            "stream_id": self.stream_id,
            "status": status,
            "closed_by": self.closed_by,
            "label": self.label,
            "score": None if self.score is None else round(self.score, 4),
            "speaker": self.speaker,
            "speaker_score": None if self.speaker_score is None else round(self.speaker_score, 4),
            "model": self.model,
            "windows": self.windows,
            "gaps": self.gaps,
            "end_s": round(self.segments[-1].end_s, 3) if self.segments else 0.0,
            "age_s": round(max(0.0, now_s - self.last_seen_s), 1),
            "segments": [s.to_dict() for s in self.segments],
            "tags": self.tags,
        }


class RateMeter:
    """Events per second over the last ``window_s`` whole seconds, in O(window) memory."""

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first

    def add(self, now_s: float, n: int = 1) -> None:
        second = math.floor(now_s)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        elif self._buckets and second < self._buckets[-1][0]:
            self._buckets[-1][1] += n  # the clock stepped back: count it as "now"
        else:
            self._buckets.append([second, n])
        self._trim(second)

    def rate(self, now_s: float) -> float:
        """Mean events per second over the window ending at ``now_s``."""
        self._trim(math.floor(now_s))
        return sum(count for _, count in self._buckets) / self.window_s

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            self._buckets.popleft()


def percentiles(values: Any, qs: tuple[int, ...] = PERCENTILES) -> dict[str, float | None]:
    """Nearest-rank percentiles of ``values`` (``None`` each when there are none).

    Nearest rank, not interpolation: every figure shown is a latency that happened.
    """
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        if not ordered:
            out[f"p{q}"] = None
            continue
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        out[f"p{q}"] = round(float(ordered[rank - 1]), 3)
    return out


def decode(value: bytes | None, kind: str = LABELS.name) -> dict[str, Any] | None:
    """A record value of ``kind`` as a JSON object, or ``None`` when it is not one.

    Through the kind's bounded decoder (:meth:`EventKind.deserialize`): a record too
    large or nested too deep is not parsed at all, so no record can raise here (a
    ``RecursionError`` once looped the reader).
    """
    if value is None:
        return None
    try:
        return kind_named(kind).deserialize(value)
    except JsonRecordError:
        return None


class DashboardState:
    """Everything the page shows, updated one event at a time.

    ``apply`` never raises on a bad event (it is counted in ``unparsable``); the
    ``version`` grows with every accepted change so a server pushes a snapshot only
    when there is something new.
    """

    def __init__(self, limits: DashboardLimits | None = None, *, started_s: float = 0.0) -> None:
        self.limits = limits or DashboardLimits()
        self.started_s = started_s
        self.version = 0
        self.streams: OrderedDict[str, StreamView] = OrderedDict()  # LRU: oldest first
        self._ended: OrderedDict[str, None] = OrderedDict()  # ended streams, LRU order
        self.summaries: deque[dict[str, Any]] = deque(maxlen=self.limits.summaries)
        self.rejected_by_reason: Counter[str] = Counter()
        self.recent_rejected: deque[dict[str, Any]] = deque(maxlen=self.limits.recent_rejected)
        self.latencies_ms: deque[float] = deque(maxlen=self.limits.latency_samples)
        self.rates = {kind: RateMeter(self.limits.rate_window_s) for kind in KINDS}
        self.totals: Counter[str] = Counter()
        self.unparsable: Counter[str] = Counter()
        self.evicted = 0
        self.untracked = 0

    # -- input -----------------------------------------------------------------------

    def apply(self, kind: str, event: dict[str, Any] | None, now_s: float) -> bool:
        """Fold one decoded event of topic ``kind`` in; ``False`` when it was unusable.

        A kind without a view of its own here is counted (rates, totals) and no more.
        """
        if kind == REJECTED.name:
            return self._apply_rejected(event, now_s)
        stream_id = _text(event.get("stream_id")) if event else None
        if event is None or stream_id is None:
            self.unparsable[kind] += 1
            return False
        stream_id = stream_name(stream_id, event.get("instance"))  # a run of a reused id
        self._count(kind, now_s)
        latency_ms = _number(event.get("latency_ms"))
        if latency_ms is not None and kind != SUMMARIES.name:
            self.latencies_ms.append(latency_ms)
        if kind == SUMMARIES.name:
            self._remember_summary(stream_id, event)
        view = self._touch(stream_id, now_s)
        if view is None:
            self.untracked += 1
            return True
        view.model = _model_tag(event.get("model")) or view.model
        if kind == LABELS.name:
            self._apply_label(view, event)
        elif kind == SPEAKERS.name:
            self._apply_speaker(view, event)
        elif kind == SUMMARIES.name:
            self._apply_summary(view, event)
        return True

    def apply_record(self, kind: str, value: bytes | None, now_s: float) -> bool:
        """:meth:`apply` on a raw Kafka record value (JSON bytes)."""
        return self.apply(kind, decode(value, kind), now_s)

    def _count(self, kind: str, now_s: float) -> None:
        self.rates[kind].add(now_s)
        self.totals[kind] += 1
        self.version += 1

    def _touch(self, stream_id: str, now_s: float) -> StreamView | None:
        """The stream's view, created if there is room; ``None`` when every held
        stream is live (then the newcomer is counted, not tracked: evicting a live
        stream would only make room for churn)."""
        view = self.streams.get(stream_id)
        if view is not None:
            self.streams.move_to_end(stream_id)
            if stream_id in self._ended:
                self._ended.move_to_end(stream_id)
            view.last_seen_s = now_s
            return view
        if len(self.streams) >= self.limits.max_streams and not self._evict_one(now_s):
            return None
        view = StreamView(stream_id, first_seen_s=now_s, last_seen_s=now_s)
        self.streams[stream_id] = view
        return view

    def _evict_one(self, now_s: float) -> bool:
        """Drop the least recently active ended stream, else the least recently
        active stream if it is idle; ``False`` when neither exists."""
        if self._ended:
            victim, _ = self._ended.popitem(last=False)
        else:
            victim, oldest = next(iter(self.streams.items()))
            if now_s - oldest.last_seen_s <= self.limits.idle_after_s:
                return False
        del self.streams[victim]
        self.evicted += 1
        return True

    def _apply_label(self, view: StreamView, event: dict[str, Any]) -> None:
        index = _integer(event.get("window_index"))
        label = _text(event.get("label"))
        if label is None or (index is not None and index <= view.last_index):
            return  # a redelivered or late window: the timeline already moved past it
        view.last_index = index if index is not None else view.last_index + 1
        view.label = label
        view.score = _number(event.get("score"))
        view.tags = _tags(event.get("tags"), self.limits.tags)
        view.windows += 1
        view.gaps += 1 if event.get("gap") is True else 0
        start_s = _number(event.get("start_s")) or 0.0
        end_s = max(_number(event.get("end_s")) or start_s, start_s)
        self._extend_timeline(view, label, start_s, end_s)

    def _extend_timeline(self, view: StreamView, label: str, start_s: float, end_s: float) -> None:
        last = view.segments[-1] if view.segments else None
        if last is not None and last.label == label:
            last.end_s = max(last.end_s, end_s)
            last.windows += 1
            return
        if last is not None:
            # Windows overlap (hop < window): the new label starts where its window does.
            last.end_s = max(last.start_s, min(last.end_s, start_s))
            start_s = max(start_s, last.end_s)
        view.segments.append(Segment(label, start_s, max(end_s, start_s)))
        while len(view.segments) > self.limits.segments:
            view.segments.popleft()

    def _apply_speaker(self, view: StreamView, event: dict[str, Any]) -> None:
        view.speaker = _text(event.get("speaker")) or view.speaker
        view.speaker_score = _number(event.get("score"))

    def _apply_summary(self, view: StreamView, event: dict[str, Any]) -> None:
        view.closed_by = _text(event.get("closed_by")) or "ended"
        self._ended[view.stream_id] = None
        self._ended.move_to_end(view.stream_id)
        view.speaker = _text(event.get("speaker")) or view.speaker

    def _remember_summary(self, stream_id: str, event: dict[str, Any]) -> None:
        speaker = _text(event.get("speaker"))
        timeline = event.get("timeline")
        counts = event.get("counts")
        self.summaries.appendleft(
            {
                "stream_id": stream_id,
                "closed_by": _text(event.get("closed_by")) or "ended",
                "duration_s": _number(event.get("duration_s")),
                "windows": _integer(event.get("windows")),
                "dominant_label": _text(event.get("dominant_label")),
                "task": "multi" if event.get("task") == "multi" else "single",
                "tags": _tags(event.get("tags"), self.limits.tags) or [],
                "speaker": speaker,
                "segments": len(timeline) if isinstance(timeline, list) else 0,
                "gaps": _integer(counts.get("gaps")) if isinstance(counts, dict) else None,
                "rejected": _integer(counts.get("rejected")) if isinstance(counts, dict) else None,
            }
        )

    def _apply_rejected(self, event: dict[str, Any] | None, now_s: float) -> bool:
        reason = _text(event.get("reason")) if event else None
        if event is None or reason is None:
            self.unparsable[REJECTED.name] += 1
            return False
        self._count(REJECTED.name, now_s)
        self.rejected_by_reason[reason] += 1
        self.recent_rejected.appendleft(
            {
                "stream_id": _text(event.get("stream_id")),
                "reason": reason,
                "message": (_text(event.get("message")) or "")[:200],
                "partition": _integer(event.get("partition")),
                "offset": _integer(event.get("offset")),
            }
        )
        return True

    # -- output ----------------------------------------------------------------------

    def snapshot(self, now_s: float) -> dict[str, Any]:
        """A JSON-ready picture of everything.

        The ``shown_streams`` most recently active streams are listed, newest stream
        first (by first event), so rows keep their place while streams are busy.
        """
        newest = list(reversed(self.streams.values()))
        shown = sorted(
            newest[: self.limits.shown_streams], key=lambda v: v.first_seen_s, reverse=True
        )
        live = sum(1 for v in newest if v.closed_by is None)
        rates = {kind: round(meter.rate(now_s), 2) for kind, meter in self.rates.items()}
        return {
            "version": self.version,
            "now_s": now_s,
            "uptime_s": round(max(0.0, now_s - self.started_s), 1),
            "streams": [v.to_dict(now_s, self.limits.idle_after_s) for v in shown],
            "stream_count": len(newest),
            "live_streams": live,
            "evicted_streams": self.evicted,
            "untracked_events": self.untracked,
            "summaries": list(self.summaries),
            "rates": {**rates, "total": round(sum(rates.values()), 2)},
            "latency_ms": {**percentiles(self.latencies_ms), "samples": len(self.latencies_ms)},
            "rejected": dict(self.rejected_by_reason.most_common()),
            "recent_rejected": list(self.recent_rejected),
            "totals": {kind: self.totals[kind] for kind in KINDS},
            "unparsable": dict(self.unparsable),
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tags(value: Any, limit: int) -> list[dict[str, Any]] | None:
    """A label event's or summary's ``tags`` as ``{"tag", "score"[, "active_share"]}``
    dicts, at most ``limit``; ``None`` when the field is absent or not a list (a
    single-label model). Malformed items are skipped."""
    if not isinstance(value, list):
        return None
    out: list[dict[str, Any]] = []
    for item in value:
        tag = _text(item.get("tag")) if isinstance(item, dict) else None
        if tag is None:
            continue
        row: dict[str, Any] = {"tag": tag[:64], "score": _rounded(item.get("score"))}
        if "active_share" in item:
            row["active_share"] = _rounded(item.get("active_share"))
        out.append(row)
        if len(out) >= limit:
            break
    return out


def _rounded(value: Any) -> float | None:
    number = _number(value)
    return None if number is None else round(number, 4)


def _model_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        name, version = _text(value.get("name")), value.get("version")
        return f"{name}@{version}" if name else None
    return _text(value)
