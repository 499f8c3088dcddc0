"""The worker's configuration, declared once.

* :mod:`~stream.settings.specs`: how a setting is declared (``setting(...)`` on a
  dataclass field: default, help line, unit, bounds) and everything derived from the
  declarations (flags, ``TYMPAN_*`` names, the docs/configuration.md table);
* :mod:`~stream.settings.worker`: :class:`WorkerSettings` and the frozen policies it
  holds (sequencing, stream limits, pipeline, batching, control records, record
  batches below the record format).
"""

from __future__ import annotations

from stream.settings.worker import (
    ENV_MODEL_REPO,
    ENV_SIGNING_KEY,
    ENV_TOPIC_PREFIX,
    KIB,
    MAX_DEAD_LETTER_BYTES,
    BatchingPolicy,
    ControlLimits,
    PipelinePolicy,
    RecordLimits,
    SequencingPolicy,
    StreamLimits,
    WorkerSettings,
)

__all__ = [
    "ENV_MODEL_REPO",
    "ENV_SIGNING_KEY",
    "ENV_TOPIC_PREFIX",
    "KIB",
    "MAX_DEAD_LETTER_BYTES",
    "BatchingPolicy",
    "ControlLimits",
    "PipelinePolicy",
    "RecordLimits",
    "SequencingPolicy",
    "StreamLimits",
    "WorkerSettings",
]
