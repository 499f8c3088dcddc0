"""Publishing audio as frames: files, arrays or raw PCM in, Kafka records out.

The engine behind ``tympan produce`` and the programmatic API that tests, the demo
and the benchmarks call. Split by what each part holds:

* :mod:`~stream.produce.frames`: one stream → frames (:func:`frames_from_array`,
  :func:`frames_from_payload`, :func:`frames_from_reader` for raw PCM on stdin);
* :mod:`stream.kafka.producer`: many streams → one send order (:func:`interleave`)
  → Kafka (:func:`produce_frames`, one batching aiokafka producer, real-time pacing);
* :mod:`~stream.produce.sources`: paths → streams the way the command line describes
  (:func:`load_sources`, :func:`plan_streams`: file stems as stream ids, ``--streams
  N`` fan-out);
* :mod:`~stream.produce.request`: the whole run (:class:`ProduceRequest` →
  :func:`produce` → :class:`ProduceReport`).

Nothing here reads ``os.environ`` or parses arguments (``stream/cli/produce.py`` does).
The names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.kafka.producer import ProducerTuning, ProduceStats, interleave, produce_frames
    from stream.produce.frames import (
        chunk_samples,
        frames_from_array,
        frames_from_payload,
        frames_from_reader,
        now_us,
    )
    from stream.produce.request import ProduceReport, ProduceRequest, produce
    from stream.produce.sources import (
        Source,
        StreamPlan,
        expand_paths,
        load_source,
        load_sources,
        plan_frames,
        plan_streams,
    )

# Where each public name lives; imported on first use, so that importing one
# submodule (or this package) loads nothing else.
_HOMES = {
    "chunk_samples": "frames",
    "expand_paths": "sources",
    "frames_from_array": "frames",
    "frames_from_payload": "frames",
    "frames_from_reader": "frames",
    "interleave": "stream.kafka.producer",
    "load_source": "sources",
    "load_sources": "sources",
    "now_us": "frames",
    "plan_frames": "sources",
    "plan_streams": "sources",
    "produce": "request",
    "produce_frames": "stream.kafka.producer",
    "ProduceReport": "request",
    "ProduceRequest": "request",
    "ProducerTuning": "stream.kafka.producer",
    "ProduceStats": "stream.kafka.producer",
    "Source": "sources",
    "StreamPlan": "sources",
}

__all__ = [
    "ProduceReport",
    "ProduceRequest",
    "ProduceStats",
    "ProducerTuning",
    "Source",
    "StreamPlan",
    "chunk_samples",
    "expand_paths",
    "frames_from_array",
    "frames_from_payload",
    "frames_from_reader",
    "interleave",
    "load_source",
    "load_sources",
    "now_us",
    "plan_frames",
    "plan_streams",
    "produce",
    "produce_frames",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stream.produce' has no attribute {name!r}")
    module = home if "." in home else f"stream.produce.{home}"
    return getattr(importlib.import_module(module), name)
