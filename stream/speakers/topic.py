"""The registry as a compacted Kafka topic, shared by every worker.

``tympan.speaker-registry.v1`` (``stream.kafka.topics.Topics.speaker_registry``) holds one
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
different embedding model, or that cannot be decoded (larger or nested deeper than
``stream.settings.ControlLimits`` allows, not JSON, odd shapes), are counted and
logged with their partition and offset, never applied and never fatal: one bad
record must not stop identification for all, nor skip the records after it. The
topic is read by the shared compacted-topic reader (``stream.kafka.compacted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.control.json_records import JsonRecordError, decode_object
from stream.control.signing import SignatureError, Signer, Verifier
from stream.errors import RegistryError
from stream.kafka.compacted import CompactedReader, CompactedRecord, observe
from stream.kafka.config import KafkaClientConfig, send_acked
from stream.settings import ControlLimits
from stream.speakers.calibration import DEFAULT_CALIBRATION, CalibrationConfig
from stream.speakers.registry import ModelBinding, SpeakerRegistry, check_name
from stream.speakers.scoring import DEFAULT_SCORING, ScoringConfig, SpeakerScorer

log = logging.getLogger(__name__)

TOPIC = "tympan.speaker-registry.v1"
DEFAULT_LIMITS = ControlLimits()


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
    registry: SpeakerRegistry,
    key: bytes | None,
    value: bytes | None,
    *,
    limits: ControlLimits = DEFAULT_LIMITS,
    where: str = "speaker registry record",
) -> tuple[SpeakerRegistry, Applied]:
    """Apply one topic record to a registry snapshot (pure; no Kafka needed).

    Never raises for a bad record, whatever it holds: the returned :class:`Applied`
    says it was rejected and why, and the registry is returned unchanged.
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
        record = _decode_value(value, limits=limits, where=where)
        binding = ModelBinding(
            str(record["model"]), str(record["model_version"]), registry.model.embedding_dim
        )
        updated = registry.with_speaker(
            name, record["embeddings"], model=binding, updated_at=str(record["updated_at"])
        )
    except JsonRecordError as exc:
        return registry, Applied("rejected", name, f"{exc.reason}: {exc}")
    except (RegistryError, KeyError, TypeError, ValueError) as exc:
        return registry, Applied("rejected", name, f"{where}: {exc}")
    except Exception as exc:  # the boundary: no record may escape as an exception
        return registry, Applied("rejected", name, f"{where}: {type(exc).__name__}: {exc}")
    return updated, Applied("enrolled", name)


def _decode_value(value: bytes, *, limits: ControlLimits, where: str) -> dict[str, Any]:
    data = decode_object(
        value, what=where, max_bytes=limits.registry_max_bytes, max_depth=limits.max_json_depth
    )
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
    signer: Signer | None = None,
) -> int:
    """Send enrollments (``names``, default all) and tombstones (``removed``); wait for acks.

    With a ``signer`` every record carries its Ed25519 signature (``stream.control.signing``),
    which workers with trusted keys require. Returns the number of records sent.
    """
    records: list[tuple[bytes, bytes | None]] = [
        encode_enrollment(registry, n) for n in (registry if names is None else names)
    ]
    records += [(check_name(n).encode("utf-8"), None) for n in removed]
    await send_acked(
        client,
        topic,
        records,
        what="the speaker registry",
        max_request_size=8 * 1024 * 1024,
        headers=signer.headers if signer is not None else None,
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
    limits : ControlLimits
        Size and depth bounds on a record (larger or deeper ones are rejected).
    verifier : Verifier
        Trusted publisher keys; with any, an unsigned or badly signed record is
        rejected (``bad_signature``) and the registry keeps what it had.

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
        calibration: CalibrationConfig = DEFAULT_CALIBRATION,
        limits: ControlLimits = DEFAULT_LIMITS,
        verifier: Verifier | None = None,
    ) -> None:
        self.client = client
        self.verifier = verifier or Verifier()
        self.topic = topic
        self.scoring = scoring
        self.limits = limits
        self.registry = SpeakerRegistry.empty(model, config=calibration)
        self.version = 0
        self.rejected = 0
        self._reader: CompactedReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._scorer: tuple[int, SpeakerScorer] | None = None
        self._changed = asyncio.Event()

    def apply(
        self,
        key: bytes | None,
        value: bytes | None,
        *,
        where: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Applied:
        """Apply one record (what the consume loop calls); bumps :attr:`version` on change."""
        where = where or f"topic {self.topic!r} key {key!r}"
        try:
            self.verifier.check(key, value, headers)
        except SignatureError as exc:
            name = (key or b"").decode("utf-8", "replace")
            applied = Applied("rejected", name, f"{exc.reason}: {where}: {exc}")
        else:
            self.registry, applied = apply_record(
                self.registry, key, value, limits=self.limits, where=where
            )
        if applied.outcome in ("enrolled", "removed"):
            self.version += 1
            self._changed.set()
        elif applied.outcome == "rejected":
            self.rejected += 1
            log.warning(
                "speaker registry: %s (speaker %s) rejected: %s",
                where,
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
        """Read the topic from offset 0 up to its end, then follow it in a task.

        Raises
        ------
        BrokerError
            The topic cannot be read to its end within ``timeout_s``.
        """
        reader = CompactedReader(self.client, self.topic, timeout_s=timeout_s)
        await reader.open()
        try:
            async for batch in reader.replay():
                self._apply_batch(batch)
        except BaseException:
            await reader.close()
            raise
        self._reader = reader
        task = asyncio.create_task(self._follow(reader), name=f"follow {self.topic}")
        self._task = observe(task, f"speaker registry follower of {self.topic}")

    def _apply_batch(self, batch: list[CompactedRecord]) -> None:
        for record in batch:  # apply() never raises: one bad record skips nothing else
            self.apply(record.key, record.value, where=record.where, headers=record.headers)

    async def _follow(self, reader: CompactedReader) -> None:
        async for batch in reader.follow():
            self._apply_batch(batch)

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
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
