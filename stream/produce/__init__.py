"""Publishing audio as frames: files, arrays or raw PCM in, Kafka records out.

The engine behind ``tympan produce`` and the programmatic API that tests, the demo
and the benchmarks call. Split by what each part holds:

* :mod:`~stream.produce.frames`: one stream → frames (:func:`frames_from_array`,
  :func:`frames_from_payload`, :func:`frames_from_reader` for raw PCM on stdin);
* :mod:`~stream.kafka.producer`: many streams → one send order (:func:`interleave`)
  → Kafka (:func:`produce_frames`, one batching aiokafka producer, real-time pacing);
* :mod:`~stream.produce.sources`: paths → streams the way the command line describes
  (:func:`load_sources`, :func:`plan_streams`: file stems as stream ids, ``--streams
  N`` fan-out);
* :mod:`~stream.produce.request`: the whole run (:class:`ProduceRequest` →
  :func:`produce` → :class:`ProduceReport`).

Nothing here reads ``os.environ`` or parses arguments (``stream/cli/produce.py`` does).
"""

from __future__ import annotations

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
