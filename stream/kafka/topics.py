"""Tympan's Kafka topics: versioned names, partition counts and configs, in one place.

A topic's name carries its schema version (``tympan.audio.v1``): a change to a record
format that old consumers cannot read is a new topic, never a silent change of the old
one. Partition counts live next to the names because they are part of the contract:
audio frames are keyed by stream id, so the number of partitions decides which worker
owns which call, and changing it on a live topic would move calls between workers.
Tests get isolated topics with :meth:`Topics.with_prefix`.

Plain data, no client: the admin calls that create, check and delete these topics on a
broker are in :mod:`stream.kafka.admin`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from stream.errors import ConfigError
from stream.events.kinds import EVENT_KINDS, LABELS, REJECTED, SPEAKERS, SUMMARIES, EventKind

if TYPE_CHECKING:
    from aiokafka.admin import NewTopic


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Kafka's own rule for topic names (kafka.common.internals.Topic).
_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
_MAX_NAME_LENGTH = 249
# Replicas per partition on a cluster that has enough brokers, and the in-sync replicas
# a write with acks=all needs there: one broker may fail (or restart) without losing an
# acknowledged record or refusing writes.
DURABLE_REPLICAS = 3
DURABLE_MIN_INSYNC = 2


# The progress topic gets a record per partition per commit (each second): without a
# roll, its active segment would hold every one of them until it reaches a gigabyte
# or a week, and compaction never touches an active segment. Rolling each hour (or
# 64 MiB) lets the cleaner keep one record per partition. Takeovers read the last
# record from the end either way (stream.kafka.transactions.last_record).
PROGRESS_SEGMENTS = {"segment.ms": str(HOUR_MS), "segment.bytes": str(64 * 1024 * 1024)}


def durable_configs(replication_factor: int) -> dict[str, str]:
    """Topic configs that make ``acks=all`` writes survive a broker's loss.

    Parameters
    ----------
    replication_factor : int
        The topic's replicas (``-1``: not decided yet, nothing is set).

    Returns
    -------
    dict of str to str
        ``min.insync.replicas=2`` where there are at least three replicas, else nothing
        (with fewer, two in-sync replicas would refuse writes whenever one is down).
    """
    if replication_factor >= DURABLE_REPLICAS:
        return {"min.insync.replicas": str(DURABLE_MIN_INSYNC)}
    return {}


@dataclass(frozen=True)
class TopicSpec:
    """One topic as tympan wants it: name, partitions, replicas and topic-level configs."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        """Whether the broker keeps only the latest record per key."""
        return "compact" in self.configs.get("cleanup.policy", "delete").split(",")

    def new_topic(self) -> NewTopic:
        """The aiokafka request that creates this topic.

        Raises
        ------
        ConfigError
            While the replication factor is undecided (:meth:`Topics.for_cluster`).
        """
        if self.replication_factor < 1:
            raise ConfigError(
                f"topic {self.name!r}: the replication factor is decided for a cluster "
                "(Topics.for_cluster) before the topic is created"
            )
        from aiokafka.admin import NewTopic  # here, so that topic names load no client

        return NewTopic(
            name=self.name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            topic_configs=dict(self.configs),
        )


@dataclass(frozen=True)
class Topics:
    """The names and shapes of every topic tympan reads or writes.

    Parameters
    ----------
    prefix:
        First dotted part of every name; tests use a unique one (:meth:`with_prefix`).
    audio_partitions:
        Partitions of the audio topic. Frames are keyed by stream id, so this bounds
        how many workers share the calls; it is fixed for the life of the topic.
    result_partitions:
        Partitions of the label, speaker and summary topics (also keyed by stream id).
    replication_factor:
        Replicas per partition. ``None`` (the default): ``min(3, brokers in the
        cluster)``, decided by :func:`ensure_topics` when it creates the topics, so a
        single dev broker gets 1 and a cluster 3. Where it is 3 or more, topics are
        created with ``min.insync.replicas=2``: with the writers' ``acks=all`` a record
        is acknowledged only once two brokers hold it, so one broker's loss loses
        nothing acknowledged (docs/kafka.md, "Durability").
    audio_retention_ms:
        How long raw audio is kept: long enough to replay a worker restart, short
        enough that thousands of live calls do not fill the disks.
    result_retention_ms:
        How long label/speaker/summary events and dead letters are kept.
    """

    prefix: str = "tympan"
    audio_partitions: int = 8
    result_partitions: int = 8
    replication_factor: int | None = None
    audio_retention_ms: int = 6 * HOUR_MS
    result_retention_ms: int = 7 * DAY_MS

    def __post_init__(self) -> None:
        for name in ("audio_partitions", "result_partitions", "replication_factor"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"Topics.{name} must be at least 1, got {value}")
        for name in ("audio_retention_ms", "result_retention_ms"):
            value = getattr(self, name)
            if value < 1 and value != -1:
                raise ConfigError(f"Topics.{name} must be positive or -1 (forever), got {value}")
        longest = self.speaker_registry
        if not _LEGAL_NAME.match(self.prefix) or len(longest) > _MAX_NAME_LENGTH:
            raise ConfigError(
                f"topic prefix {self.prefix!r} gives illegal Kafka topic names such as "
                f"{longest!r}: use letters, digits, '.', '_', '-' and at most "
                f"{_MAX_NAME_LENGTH} characters in all"
            )

    def with_prefix(self, prefix: str) -> Topics:
        """The same topics under another prefix (isolated topics for a test).

        Parameters
        ----------
        prefix : str
            The new first dotted part of every name.

        Returns
        -------
        Topics
            A copy with the same partitions and retention.

        Raises
        ------
        ConfigError
            When the prefix gives illegal Kafka topic names.
        """
        return replace(self, prefix=prefix)

    def _name(self, what: str) -> str:
        return f"{self.prefix}.{what}.v1"

    def of(self, kind: EventKind) -> str:
        """The topic that holds ``kind``'s records (``stream.events.kinds``)."""
        return self._name(kind.name)

    @property
    def audio(self) -> str:
        """Audio frames (``stream.wire``), keyed by stream id."""
        return self._name("audio")

    @property
    def labels(self) -> str:
        """``LabelEvent`` records, keyed by stream id."""
        return self.of(LABELS)

    @property
    def speakers(self) -> str:
        """``SpeakerEvent`` records, keyed by stream id."""
        return self.of(SPEAKERS)

    @property
    def summaries(self) -> str:
        """``SummaryEvent`` records (one per ended stream), keyed by stream id."""
        return self.of(SUMMARIES)

    @property
    def rejected(self) -> str:
        """Dead letters: ``RejectedRecord`` for every input that could not be used."""
        return self.of(REJECTED)

    @property
    def control(self) -> str:
        """Compacted: the latest control record per key (e.g. per-stream settings)."""
        return self._name("control")

    @property
    def control_status(self) -> str:
        """Compacted: what each worker did with the announcements (``status/<worker>/<role>``)
        and the announcement it last served (``last-good/<role>``). Workers write here,
        never to :attr:`control`, which only the admin principal may write."""
        return self._name("control-status")

    @property
    def speaker_registry(self) -> str:
        """Compacted: the latest enrolment per speaker name; a null value deletes it."""
        return self._name("speaker-registry")

    @property
    def progress(self) -> str:
        """Compacted, a partition per audio partition: with exactly-once, what each
        audio partition's committed transactions hold (``stream.worker.progress``),
        written in the same transactions; read by the partition's next owner."""
        return self._name("progress")

    def for_cluster(self, brokers: int) -> Topics:
        """These topics with the replication factor decided for a cluster of ``brokers``.

        Parameters
        ----------
        brokers : int
            Brokers in the cluster's metadata.

        Returns
        -------
        Topics
            ``self`` when a replication factor was given; else a copy with
            ``min(DURABLE_REPLICAS, brokers)``.
        """
        if self.replication_factor is not None:
            return self
        return replace(self, replication_factor=max(1, min(DURABLE_REPLICAS, brokers)))

    def specs(self) -> tuple[TopicSpec, ...]:
        """Every topic with its partitions and configs, in data-flow order.

        Before :meth:`for_cluster` decides it, the replication factor is Kafka's
        ``-1``: "the broker's ``default.replication.factor``".
        """
        rf = -1 if self.replication_factor is None else self.replication_factor
        durable = durable_configs(rf)
        results = {
            "cleanup.policy": "delete",
            "retention.ms": str(self.result_retention_ms),
            **durable,
        }
        compacted = {"cleanup.policy": "compact", **durable}
        return (
            TopicSpec(
                self.audio,
                self.audio_partitions,
                rf,
                {
                    "cleanup.policy": "delete",
                    "retention.ms": str(self.audio_retention_ms),
                    # the broker stamps frames: idle closes never follow a producer's clock
                    "message.timestamp.type": "LogAppendTime",
                    **durable,
                },
            ),
            *(
                TopicSpec(self.of(kind), self._partitions(kind), rf, results)
                for kind in EVENT_KINDS
            ),
            TopicSpec(self.control, 1, rf, compacted),
            TopicSpec(self.control_status, 1, rf, compacted),
            TopicSpec(self.speaker_registry, 1, rf, compacted),
            TopicSpec(self.progress, self.audio_partitions, rf, {**compacted, **PROGRESS_SEGMENTS}),
        )

    def for_worker(self, *, transactional: bool) -> tuple[str, ...]:
        """The topics a worker reads or writes, in data-flow order.

        The progress topic only serves exactly-once: an at-least-once worker neither
        creates nor needs it, so it starts on a cluster whose operator created the
        other topics and gave the worker no right on ``progress``.

        Parameters
        ----------
        transactional : bool
            Whether the worker runs with ``--guarantee exactly-once``.

        Returns
        -------
        tuple of str
            Full topic names.
        """
        return tuple(n for n in self.names() if transactional or n != self.progress)

    def _partitions(self, kind: EventKind) -> int:
        return self.result_partitions if kind.partitions == "results" else 1

    def names(self) -> tuple[str, ...]:
        """Every topic name, in data-flow order (as :meth:`specs`)."""
        return tuple(spec.name for spec in self.specs())

    def spec(self, name: str) -> TopicSpec:
        """The spec of one of these topics, by name.

        Parameters
        ----------
        name : str
            A full topic name, e.g. ``tympan.audio.v1``.

        Returns
        -------
        TopicSpec

        Raises
        ------
        ConfigError
            When ``name`` is not one of these topics; the message lists them.
        """
        for spec in self.specs():
            if spec.name == name:
                return spec
        raise ConfigError(f"topic {name!r} is not one of {', '.join(self.names())}")


def prefixed(names: Iterable[str], prefix: str) -> list[str]:
    """Those of ``names`` under ``prefix`` (``tympan.*`` for ``tympan``, not ``tympan2.*``).

    Parameters
    ----------
    names : iterable of str
        Topic names, e.g. from :func:`list_topics`.
    prefix : str
        A topic prefix, without the dot.

    Returns
    -------
    list of str
        Sorted.
    """
    return sorted(name for name in names if name.startswith(f"{prefix}."))
