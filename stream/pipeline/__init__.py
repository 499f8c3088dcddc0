"""The worker's domain core, synchronous and Faust-free: records in, jobs and events out.

A chain of stages, each a module with one concern, behind the :class:`Pipeline` facade
(``facade``)::

    Record ─► intake ─► segments ─► sequencing ─► conditioning ─► jobs ─► (inference)
              decode,   open/evict/  reorder,      decode,         WindowJob
              limits,   close        dedupe, gaps  resample, gaps,    │
              admission    ▲                       feature drain      ▼
              containment  └── deadlines (idle by Kafka time)     labels ─► speakers
                                                                       └─► summary

* :mod:`~stream.pipeline.records`: ``Record`` in, ``Step`` (jobs, dead letters, opened
  segments) out.
* :mod:`~stream.pipeline.intake`: decode, size limits, admission, per-record containment.
* :mod:`~stream.pipeline.segments`: the segment lifecycle and every segment's state.
* :mod:`~stream.pipeline.sequencing`: per-stream reorder within grace, dedupe, gaps.
* :mod:`~stream.pipeline.deadlines`: idle closing by the records' Kafka time.
* :mod:`~stream.pipeline.conditioning`: decode, resample, gaps, the feature drain.
* :mod:`~stream.pipeline.jobs`: windows → ``WindowJob`` for inference.
* :mod:`~stream.pipeline.labels`: label events, thresholds, hot swap.
* :mod:`~stream.pipeline.speakers`: speech gate, speaker trackers, speaker events.
* :mod:`~stream.pipeline.summary`: a segment's summary, window by window.

No module here imports asyncio, aiokafka or faust.
"""

from stream.pipeline.facade import Pipeline
from stream.pipeline.jobs import WindowJob, check_aligned
from stream.pipeline.records import Opened, Record, Step, stream_key, wire_id
from stream.pipeline.segments import EVICT_UNPROVEN_FRAMES, segment_key
from stream.pipeline.sequencing import Released, SequenceCounts, Sequencer
from stream.pipeline.speakers import EmbedJobs, SpeakerStage, embed_speech
from stream.pipeline.summary import SpeakerVerdict, SummaryBuilder
from stream.settings import PipelinePolicy

__all__ = [
    "EVICT_UNPROVEN_FRAMES",
    "EmbedJobs",
    "Opened",
    "Pipeline",
    "PipelinePolicy",
    "Record",
    "Released",
    "SequenceCounts",
    "Sequencer",
    "SpeakerStage",
    "SpeakerVerdict",
    "Step",
    "SummaryBuilder",
    "WindowJob",
    "check_aligned",
    "embed_speech",
    "segment_key",
    "stream_key",
    "wire_id",
]
