"""Everything that talks to Kafka, and the only package that imports aiokafka.

* :mod:`~stream.kafka.config`: one frozen :class:`KafkaClientConfig` (bootstrap, TLS,
  SASL) rendered for aiokafka and for Faust; acknowledged publishing of a few records;
* :mod:`~stream.kafka.topics`: versioned topic names, partition counts and configs
  (plain data);
* :mod:`~stream.kafka.admin`: the admin calls that create, check, list and delete them;
* :mod:`~stream.kafka.topic_audit`: what tympan wants of a topic against what the
  broker describes (pure comparisons, advice and refusal messages);
* :mod:`~stream.kafka.compacted`: the one reader of compacted topics (replay to the end,
  then follow), used by every follower (control, speaker registry);
* :mod:`~stream.kafka.consumer`: the worker's audio topic, a fetched batch at a time;
* :mod:`~stream.kafka.producer`: frames → one batching aiokafka producer (``acks=all``,
  idempotent);
* :mod:`~stream.kafka.faust_producer`: the worker's Faust producer, ``acks=all`` and
  idempotent outside transactions too;
* :mod:`~stream.kafka.groups`: how many members a consumer group has (the "no worker
  reads this topic" warning);
* :mod:`~stream.kafka.readers`: group-less readers of event topics (``tympan tail``,
  the dashboard);
* :mod:`~stream.kafka.fetch`: the guard between the broker's fetch responses and the
  client's record parser, on every reader (codecs, bounded decompression, header
  bounds; what the client cannot parse is skipped by offset and accounted for), with
  its parts: :mod:`~stream.kafka.batches` (the record batch format),
  :mod:`~stream.kafka.inflate` (bounded decompression) and :mod:`~stream.kafka.skipped`
  (what is skipped, and why);
* :mod:`~stream.kafka.commits`: the offset to commit per partition (plain bookkeeping).

The names below are imported on first use: importing this package (or
:mod:`~stream.kafka.config`) does not load aiokafka, so the domain core may hold a
:class:`KafkaClientConfig` without pulling in the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.kafka.admin import (
        CheckReport,
        EnsureReport,
        TopicInfo,
        check_topics,
        delete_topics,
        describe_topics,
        ensure_topics,
        list_topics,
        require_topics,
        wait_for_broker,
    )
    from stream.kafka.commits import CommitLog
    from stream.kafka.compacted import CompactedReader, CompactedRecord, latest_per_key, read_latest
    from stream.kafka.config import (
        DEFAULT_BOOTSTRAP,
        KafkaClientConfig,
        broker_failure,
        broker_refusals,
        send_acked,
    )
    from stream.kafka.consumer import BatchConsumer, ConsumerPlan
    from stream.kafka.faust_producer import DurableProducer
    from stream.kafka.fetch import FetchGuard
    from stream.kafka.groups import group_members
    from stream.kafka.producer import ProducerTuning, ProduceStats, interleave, produce_frames
    from stream.kafka.readers import BROKER_ERRORS, EventReader, event_reader
    from stream.kafka.skipped import SkippedRecords, log_skipped
    from stream.kafka.topics import Topics, TopicSpec, durable_configs

# Where each public name lives; imported on first use, so that importing one
# submodule (or this package) loads nothing else.
_HOMES = {
    "BatchConsumer": "consumer",
    "BROKER_ERRORS": "readers",
    "broker_failure": "config",
    "broker_refusals": "config",
    "check_topics": "admin",
    "CheckReport": "admin",
    "CommitLog": "commits",
    "CompactedReader": "compacted",
    "CompactedRecord": "compacted",
    "ConsumerPlan": "consumer",
    "DEFAULT_BOOTSTRAP": "config",
    "delete_topics": "admin",
    "describe_topics": "admin",
    "durable_configs": "topics",
    "DurableProducer": "faust_producer",
    "ensure_topics": "admin",
    "EnsureReport": "admin",
    "event_reader": "readers",
    "EventReader": "readers",
    "FetchGuard": "fetch",
    "group_members": "groups",
    "interleave": "producer",
    "KafkaClientConfig": "config",
    "latest_per_key": "compacted",
    "list_topics": "admin",
    "log_skipped": "skipped",
    "produce_frames": "producer",
    "ProducerTuning": "producer",
    "ProduceStats": "producer",
    "read_latest": "compacted",
    "require_topics": "admin",
    "send_acked": "config",
    "SkippedRecords": "skipped",
    "TopicInfo": "admin",
    "Topics": "topics",
    "TopicSpec": "topics",
    "wait_for_broker": "admin",
}

__all__ = [
    "BROKER_ERRORS",
    "DEFAULT_BOOTSTRAP",
    "BatchConsumer",
    "CheckReport",
    "CommitLog",
    "CompactedReader",
    "CompactedRecord",
    "ConsumerPlan",
    "DurableProducer",
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
    "broker_failure",
    "broker_refusals",
    "check_topics",
    "delete_topics",
    "describe_topics",
    "durable_configs",
    "ensure_topics",
    "event_reader",
    "group_members",
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
    module = home if "." in home else f"stream.kafka.{home}"
    return getattr(importlib.import_module(module), name)
