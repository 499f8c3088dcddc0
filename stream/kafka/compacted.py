"""One reader for compacted topics: replay to the end, then follow.

The control topic (model announcements, worker statuses) and the speaker-registry
topic are compacted: the latest record per key *is* the state. Every worker (and
``tympan models active``) reads them the same way, without a consumer group, since
each reader must see every record:

1. assign every partition, seek to the beginning, note the end offsets;
2. :meth:`CompactedReader.replay` yields the fetched batches up to those ends (the
   state as it was when the reader opened);
3. :meth:`CompactedReader.follow` yields the batches that arrive afterwards, forever;
   a broker error is logged and the same consumer retried (positions are kept, so
   nothing is applied twice and nothing is skipped).

Decoding and applying records is the caller's: this module never looks inside a
value, so no record can make it fail. :func:`read_latest` is the one-shot form (the
latest record per key), and :func:`observe` logs the exception of a background task
that ends, so none goes unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from stream.errors import BrokerError
from stream.kafka.config import KafkaClientConfig, broker_failure
from stream.kafka.fetch import FetchGuard
from stream.kafka.skipped import log_skipped
from stream.settings import RecordLimits

log = logging.getLogger(__name__)

FETCH_MAX_BYTES = 16 * 1024 * 1024
RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class CompactedRecord:
    """One record of a compacted topic, with where it was read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def where(self) -> str:
        """``topic 't' partition 0 offset 42 key b'k'``, for messages about this record."""
        from stream.control.json_records import where

        return where(self.topic, self.partition, self.offset, self.key)


class CompactedReader:
    """Reads one compacted topic from its beginning (``async with`` opens and closes it).

    Parameters
    ----------
    client : KafkaClientConfig
        Broker and credentials.
    topic : str
        The compacted topic.
    timeout_s : float
        Opening and :meth:`replay` must finish within this, else :class:`BrokerError`.
    fetch_max_bytes : int
        Per fetch and per partition (a speaker enrollment can be megabytes).
    retry_s : float
        :meth:`follow` waits this long after a broker error before polling again.
    record_limits : RecordLimits, optional
        Bounds below the record format (``stream.kafka.fetch``); a batch or record past
        them, or one the client cannot read, is skipped and logged, never blocking.
    """

    def __init__(
        self,
        client: KafkaClientConfig,
        topic: str,
        *,
        timeout_s: float = 30.0,
        fetch_max_bytes: int = FETCH_MAX_BYTES,
        retry_s: float = RETRY_S,
        record_limits: RecordLimits | None = None,
    ) -> None:
        self.client = client
        self.topic = topic
        self.timeout_s = timeout_s
        self.fetch_max_bytes = fetch_max_bytes
        self.retry_s = retry_s
        self._consumer: Any = None
        self._ends: dict[Any, int] = {}
        self._guard = FetchGuard(record_limits)

    async def __aenter__(self) -> CompactedReader:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Assign every partition from offset 0 and note where the topic ends now.

        Raises
        ------
        BrokerError
            The broker cannot be reached, or the topic does not exist.
        """
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(
            **self.client.aiokafka_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=self.fetch_max_bytes,
            max_partition_fetch_bytes=self.fetch_max_bytes,
            isolation_level="read_committed",
        )
        self._guard.install(consumer)  # a batch the client cannot read is skipped, logged
        try:
            await asyncio.wait_for(consumer.start(), self.timeout_s)
            partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:  # the first look at a topic: fetch its metadata
                await asyncio.wait_for(consumer._client.force_metadata_update(), self.timeout_s)
                partitions = consumer.partitions_for_topic(self.topic)
            if not partitions:
                raise BrokerError(f"topic {self.topic!r} does not exist (tympan topics create)")
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._ends = await asyncio.wait_for(consumer.end_offsets(tps), self.timeout_s)
        except BaseException as exc:
            await consumer.stop()
            if isinstance(exc, KafkaError | TimeoutError | OSError):
                raise BrokerError(
                    f"cannot read topic {self.topic!r}: "
                    f"{broker_failure(exc, self.client.bootstrap_servers)}"
                ) from exc
            raise
        self._consumer = consumer

    async def close(self) -> None:
        """Stop the consumer (idempotent)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def replay(self) -> AsyncIterator[list[CompactedRecord]]:
        """The batches from the beginning up to the end offsets seen at :meth:`open`.

        Raises
        ------
        BrokerError
            Not read to the end within ``timeout_s``, or the broker failed.
        """
        from aiokafka.errors import KafkaError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            while await self._behind():
                if loop.time() > deadline:
                    raise BrokerError(
                        f"topic {self.topic!r}: not read to its end in {self.timeout_s:g} s"
                    )
                batch = await self._poll(timeout_ms=200)
                if batch:
                    yield batch
        except (KafkaError, OSError) as exc:
            raise BrokerError(f"topic {self.topic!r}: replay failed: {exc!r}") from exc

    async def follow(self, *, poll_ms: int = 500) -> AsyncIterator[list[CompactedRecord]]:
        """Every batch that arrives from now on, forever (cancel to stop).

        A broker error is logged and retried after ``retry_s`` with the same
        consumer, from the same positions.
        """
        while True:
            try:
                batch = await self._poll(timeout_ms=poll_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient broker trouble must not end the follower
                log.error(
                    "topic %s: poll failed: %r; retrying in %g s", self.topic, exc, self.retry_s
                )
                await asyncio.sleep(self.retry_s)
                continue
            if batch:
                yield batch

    async def _behind(self) -> bool:
        for tp, end in self._ends.items():
            if int(await self._consumer.position(tp)) < end:
                return True
        return False

    async def _poll(self, *, timeout_ms: int) -> list[CompactedRecord]:
        if self._consumer is None:
            raise BrokerError(f"topic {self.topic!r}: the reader is not open")
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms)
        log_skipped(await self._guard.take(self._consumer), what=f"topic {self.topic}")
        return [
            CompactedRecord(
                tp.topic, tp.partition, r.offset, r.key, r.value, tuple(r.headers or ())
            )
            for tp, records in fetched.items()
            for r in records
        ]


def latest_per_key(
    records: list[CompactedRecord], into: dict[bytes, CompactedRecord] | None = None
) -> dict[bytes, CompactedRecord]:
    """Fold ``records`` (read order) into the latest record per key; keyless ones dropped."""
    out = {} if into is None else into
    for record in records:
        if record.key is not None:
            out[record.key] = record
    return out


async def read_latest(
    client: KafkaClientConfig, topic: str, *, timeout_s: float = 10.0
) -> dict[bytes, CompactedRecord]:
    """The latest record per key of ``topic``, read to its end (a snapshot).

    Raises
    ------
    BrokerError
        The broker or the topic cannot be reached, or not read in ``timeout_s``.
    """
    latest: dict[bytes, CompactedRecord] = {}
    async with CompactedReader(client, topic, timeout_s=timeout_s) as reader:
        async for batch in reader.replay():
            latest_per_key(batch, latest)
    return latest


def observe(task: asyncio.Task[Any], what: str) -> asyncio.Task[Any]:
    """Log ``task``'s exception when it ends with one (a background task nobody awaits)."""

    def done(t: asyncio.Task[Any]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("%s stopped: %r", what, t.exception(), exc_info=t.exception())

    task.add_done_callback(done)
    return task
