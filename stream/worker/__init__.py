"""The worker's runtime side: the Faust app without Faust's consumer
(:mod:`stream.worker.app`), the asynchronous runtime that feeds the pipeline and the
batcher and sends events (:mod:`stream.worker.runtime`), the offset ledger
(:mod:`stream.worker.delivery`, committed through :mod:`stream.kafka.commits`), the batching
event sender (:mod:`stream.worker.producer`), the wiring (:mod:`stream.worker.build`)
and a process per core (:mod:`stream.worker.supervisor`). The audio topic's consumer
is :mod:`stream.kafka.consumer`. The domain core (``stream.pipeline`` and below) knows
nothing of it; the names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.worker.app import WorkerApp, serve_audio
    from stream.worker.build import Worker, build_worker, load_model
    from stream.worker.delivery import OffsetLedger
    from stream.worker.metrics import WorkerMetrics
    from stream.worker.producer import BatchSender
    from stream.worker.runtime import WorkerRuntime
    from stream.worker.speakers import EmbeddingSpeakerHook, SpeakerHook
    from stream.worker.supervisor import Supervisor, SupervisorPolicy

# Where each public name lives; imported on first use, so that importing one
# submodule (or this package) loads nothing else.
_HOMES = {
    "BatchSender": "producer",
    "build_worker": "build",
    "EmbeddingSpeakerHook": "speakers",
    "load_model": "build",
    "OffsetLedger": "delivery",
    "serve_audio": "app",
    "SpeakerHook": "speakers",
    "Supervisor": "supervisor",
    "SupervisorPolicy": "supervisor",
    "Worker": "build",
    "WorkerApp": "app",
    "WorkerMetrics": "metrics",
    "WorkerRuntime": "runtime",
}

__all__ = [
    "BatchSender",
    "EmbeddingSpeakerHook",
    "OffsetLedger",
    "SpeakerHook",
    "Supervisor",
    "SupervisorPolicy",
    "Worker",
    "WorkerApp",
    "WorkerMetrics",
    "WorkerRuntime",
    "build_worker",
    "load_model",
    "serve_audio",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stream.worker' has no attribute {name!r}")
    return getattr(importlib.import_module(f"stream.worker.{home}"), name)
