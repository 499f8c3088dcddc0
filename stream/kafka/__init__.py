"""Everything that talks to Kafka, and the only package that imports aiokafka.

* :mod:`~stream.kafka.config`: one frozen :class:`KafkaClientConfig` (bootstrap, TLS,
  SASL) rendered for aiokafka and for Faust; acknowledged publishing of a few records;
* :mod:`~stream.kafka.topics`: versioned topic names, partition counts and configs, and
  the admin calls that create and check them;
* :mod:`~stream.kafka.compacted`: the one reader of compacted topics (replay to the end,
  then follow), used by every follower (control, speaker registry);
* :mod:`~stream.kafka.consumer`: the worker's audio topic, a fetched batch at a time;
* :mod:`~stream.kafka.producer`: frames → one batching aiokafka producer (``acks=all``,
  idempotent);
* :mod:`~stream.kafka.faust_producer`: the worker's Faust producer, ``acks=all`` and
  idempotent outside transactions too;
* :mod:`~stream.kafka.readers`: group-less readers of event topics (``tympan tail``,
  the dashboard);
* :mod:`~stream.kafka.fetch`: the guard between the broker's fetch responses and the
  client's record parser, on every reader (codecs, bounded decompression, header
  bounds; what the client cannot parse is skipped by offset and accounted for).

The names below are imported on first use: importing this package (or
:mod:`~stream.kafka.config`) does not load aiokafka, so the domain core may hold a
:class:`KafkaClientConfig` without pulling in the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.kafka.compacted import CompactedReader, CompactedRecord, latest_per_key, read_latest
    from stream.kafka.config import (
        DEFAULT_BOOTSTRAP,
        KafkaClientConfig,
        broker_refusals,
        send_acked,
    )
    from stream.kafka.consumer import BatchConsumer, ConsumerPlan
    from stream.kafka.fetch import FetchGuard, SkippedRecords, log_skipped
    from stream.kafka.producer import ProducerTuning, ProduceStats, interleave, produce_frames
    from stream.kafka.readers import BROKER_ERRORS, EventReader, event_reader
    from stream.kafka.topics import (
        EnsureReport,
        TopicInfo,
        Topics,
        TopicSpec,
        delete_topics,
        describe_topics,
        ensure_topics,
        list_topics,
        require_topics,
        wait_for_broker,
    )

# Where each public name lives; imported on first use, so that importing one
# submodule (or this package) loads nothing else.
_HOMES = {
    "BatchConsumer": "consumer",
    "BROKER_ERRORS": "readers",
    "broker_refusals": "config",
    "CompactedReader": "compacted",
    "CompactedRecord": "compacted",
    "ConsumerPlan": "consumer",
    "DEFAULT_BOOTSTRAP": "config",
    "delete_topics": "topics",
    "describe_topics": "topics",
    "ensure_topics": "topics",
    "EnsureReport": "topics",
    "FetchGuard": "fetch",
    "log_skipped": "fetch",
    "SkippedRecords": "fetch",
    "event_reader": "readers",
    "EventReader": "readers",
    "interleave": "producer",
    "KafkaClientConfig": "config",
    "latest_per_key": "compacted",
    "list_topics": "topics",
    "produce_frames": "producer",
    "ProducerTuning": "producer",
    "ProduceStats": "producer",
    "read_latest": "compacted",
    "require_topics": "topics",
    "send_acked": "config",
    "TopicInfo": "topics",
    "Topics": "topics",
    "TopicSpec": "topics",
    "wait_for_broker": "topics",
}

__all__ = [
    "BROKER_ERRORS",
    "DEFAULT_BOOTSTRAP",
    "BatchConsumer",
    "CompactedReader",
    "CompactedRecord",
    "ConsumerPlan",
    "EnsureReport",
    "EventReader",
    "FetchGuard",
    "KafkaClientConfig",
    "ProduceStats",
    "ProducerTuning",
    "SkippedRecords",
    "TopicInfo",
    "TopicSpec",
    "Topics",
    "broker_refusals",
    "delete_topics",
    "describe_topics",
    "ensure_topics",
    "event_reader",
    "interleave",
    "latest_per_key",
    "list_topics",
    "log_skipped",
    "produce_frames",
    "read_latest",
    "require_topics",
    "send_acked",
    "wait_for_broker",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stream.kafka' has no attribute {name!r}")
    return getattr(importlib.import_module(f"stream.kafka.{home}"), name)
