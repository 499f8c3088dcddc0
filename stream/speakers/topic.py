"""The registry as a compacted Kafka topic, shared by every worker.

``tympan.speaker-registry.v1`` (``stream.topics.Topics.speaker_registry``) holds one
record per speaker; compaction keeps only the latest, so the topic *is* the
registry. Record format (documented in ``docs/speakers.md``)::

    key   = speaker name, UTF-8
    value = {"model": "speaker-embed", "model_version": "1",
             "embeddings": [[float, ...], ...],       # unit rows, [n, embedding_dim]
             "updated_at": "2026-11-25T15:00:00Z"}    # JSON, UTF-8
    value = null                                      # tombstone: speaker removed

A :class:`RegistryFollower` reads the topic from the beginning and keeps an
in-memory :class:`SpeakerRegistry` current, bumping :attr:`RegistryFollower.version`
on every change, so an enrollment published by ``tympan speakers enroll --publish``
reaches live streams at their next window without a restart. Records made by a
different embedding model, or that cannot be decoded, are counted and logged, never
applied and never fatal: one bad record must not stop identification for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.errors import BrokerError, RegistryError
from stream.kafka_client import KafkaClientConfig, send_acked
from stream.speakers.registry import ModelBinding, SpeakerRegistry, check_name
from stream.speakers.scoring import DEFAULT_SCORING, ScoringConfig, SpeakerScorer
from stream.topics import describe_topics

log = logging.getLogger(__name__)

TOPIC = "tympan.speaker-registry.v1"


# -- records ----------------------------------------------------------------------------


def encode_enrollment(registry: SpeakerRegistry, name: str) -> tuple[bytes, bytes]:
    """``(key, value)`` of the record that publishes ``name``'s enrollment."""
    if name not in registry:
        raise RegistryError(f"speaker {name!r} is not enrolled; nothing to publish")
    entry = registry.speakers[name]
    value = {
        "model": registry.model.name,
        "model_version": registry.model.version,
        "embeddings": np.round(entry.embeddings.astype(np.float64), 7).tolist(),
        "updated_at": entry.updated_at,
    }
    return name.encode("utf-8"), json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Applied:
    """What one record did to a registry: ``"enrolled"``, ``"removed"``, ``"ignored"``
    (tombstone of an unknown name) or ``"rejected"`` (with ``reason``)."""

    outcome: str
    name: str
    reason: str = ""


def apply_record(
    registry: SpeakerRegistry, key: bytes | None, value: bytes | None
) -> tuple[SpeakerRegistry, Applied]:
    """Apply one topic record to a registry snapshot (pure; no Kafka needed).

    Never raises for a bad record: the returned :class:`Applied` says it was
    rejected and why, and the registry is returned unchanged.
    """
    try:
        name = check_name((key or b"").decode("utf-8"))
    except (UnicodeDecodeError, RegistryError) as exc:
        return registry, Applied("rejected", repr(key), f"bad key: {exc}")
    if value is None:
        if name not in registry:
            return registry, Applied("ignored", name)
        return registry.without(name), Applied("removed", name)
    try:
        record = _decode_value(value)
        binding = ModelBinding(
            str(record["model"]), str(record["model_version"]), registry.model.embedding_dim
        )
        updated = registry.with_speaker(
            name, record["embeddings"], model=binding, updated_at=str(record["updated_at"])
        )
    except (RegistryError, KeyError, TypeError, ValueError) as exc:
        return registry, Applied("rejected", name, str(exc))
    return updated, Applied("enrolled", name)


def _decode_value(value: bytes) -> dict[str, Any]:
    data = json.loads(value.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"value must be a JSON object, got {type(data).__name__}")
    missing = [k for k in ("model", "model_version", "embeddings", "updated_at") if k not in data]
    if missing:
        raise ValueError(f"value lacks field(s) {', '.join(missing)}")
    return data


# -- publishing -----------------------------------------------------------------------------


async def publish(
    client: KafkaClientConfig,
    registry: SpeakerRegistry,
    *,
    names: Iterable[str] | None = None,
    removed: Iterable[str] = (),
    topic: str = TOPIC,
) -> int:
    """Send enrollments (``names``, default all) and tombstones (``removed``); wait for acks.

    Returns the number of records sent.
    """
    records: list[tuple[bytes, bytes | None]] = [
        encode_enrollment(registry, n) for n in (registry if names is None else names)
    ]
    records += [(check_name(n).encode("utf-8"), None) for n in removed]
    await send_acked(
        client, topic, records, what="the speaker registry", max_request_size=8 * 1024 * 1024
    )
    return len(records)


# -- following ------------------------------------------------------------------------------


class RegistryFollower:
    """Keeps an in-memory registry equal to the compacted topic.

    Parameters
    ----------
    client : KafkaClientConfig
        Broker and credentials.
    model : ModelBinding
        The worker's embedding model; records made by another are rejected.
    topic : str
        The registry topic (tests pass a prefixed one).
    scoring : ScoringConfig
        How :meth:`scorer` compares embeddings.

    Use ``await follower.start()`` (reads up to the end of the topic before
    returning), then ``follower.registry`` / ``follower.scorer()`` from the worker;
    ``await follower.stop()`` at shutdown.
    """

    def __init__(
        self,
        client: KafkaClientConfig,
        model: ModelBinding,
        *,
        topic: str = TOPIC,
        scoring: ScoringConfig = DEFAULT_SCORING,
    ) -> None:
        self.client = client
        self.topic = topic
        self.scoring = scoring
        self.registry = SpeakerRegistry.empty(model)
        self.version = 0
        self.rejected = 0
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._scorer: tuple[int, SpeakerScorer] | None = None
        self._changed = asyncio.Event()

    def apply(self, key: bytes | None, value: bytes | None) -> Applied:
        """Apply one record (what the consume loop calls); bumps :attr:`version` on change."""
        self.registry, applied = apply_record(self.registry, key, value)
        if applied.outcome in ("enrolled", "removed"):
            self.version += 1
            self._changed.set()
        elif applied.outcome == "rejected":
            self.rejected += 1
            log.warning(
                "speaker registry topic %s: record %s rejected: %s",
                self.topic,
                applied.name,
                applied.reason,
            )
        return applied

    def scorer(self) -> SpeakerScorer:
        """A scorer for the current snapshot, rebuilt only when :attr:`version` moved."""
        if self._scorer is None or self._scorer[0] != self.version:
            self._scorer = (self.version, self.registry.scorer(config=self.scoring))
        return self._scorer[1]

    async def start(self, *, timeout_s: float = 30.0) -> None:
        """Assign every partition from offset 0, catch up to the end, then follow."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(
            **self.client.aiokafka_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        try:
            (info,) = await describe_topics(self.client, [self.topic])
            tps = [TopicPartition(self.topic, p) for p in range(info.partitions)]
            await consumer.start()
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            self._consumer = consumer
            await asyncio.wait_for(self._catch_up(ends), timeout=timeout_s)
        except BaseException as exc:
            await consumer.stop()
            self._consumer = None
            if isinstance(exc, KafkaError | TimeoutError):
                raise BrokerError(
                    f"cannot read speaker registry topic {self.topic!r} on "
                    f"{self.client.bootstrap_servers}: {exc!r}"
                ) from exc
            raise
        self._task = asyncio.create_task(self._follow(), name=f"follow {self.topic}")

    async def _catch_up(self, ends: dict[Any, int]) -> None:
        while await self._behind(ends):
            await self._poll(timeout_ms=200)

    async def _behind(self, ends: dict[Any, int]) -> bool:
        for tp, end in ends.items():
            if int(await self._consumer.position(tp)) < end:
                return True
        return False

    async def _poll(self, *, timeout_ms: int) -> None:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        for records in batches.values():
            for record in records:
                self.apply(record.key, record.value)

    async def _follow(self) -> None:
        while True:
            try:
                await self._poll(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following; a transient broker error must not end it
                log.exception("speaker registry topic %s: poll failed", self.topic)
                await asyncio.sleep(1.0)

    async def wait_for_version(self, version: int, *, timeout_s: float = 10.0) -> int:
        """Wait until :attr:`version` reaches ``version`` (tests, ``sync``); returns it."""

        async def waiter() -> None:
            while self.version < version:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiter(), timeout=timeout_s)
        return self.version

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
