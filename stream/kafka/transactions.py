"""Exactly-once output: one Kafka transaction per audio partition.

With ``--guarantee exactly-once`` the worker sends every record it writes because of
audio partition ``p`` (label, speaker and summary events, dead letters) through the
transactional producer of ``p``, and at each commit puts into the same transaction
``p``'s progress record (``stream.worker.progress``, to partition ``p`` of the
compacted progress topic) and ``p``'s consumer-group offset
(``send_offsets_to_transaction``). A ``read_committed`` reader sees all of it or none.

**Why a producer per partition, not per worker.** Fencing a zombie (a worker frozen
past its session timeout, whose partitions moved on, and which wakes up with a
transaction open) needs a check the zombie cannot pass. Kafka offers two: the
consumer group's generation inside ``TxnOffsetCommit`` (KIP-447, request v3), and
the producer epoch of a ``transactional.id``. aiokafka 0.14 sends ``TxnOffsetCommit``
v0 only (group id, no generation or member id): the broker cannot tell the zombie's
offsets from the owner's. So the ``transactional.id`` is tied to the input
partition, ``<group>.<audio topic>.<partition>`` (Kafka Streams' original scheme):
whoever owns ``p`` next starts a producer under the same id, which bumps its epoch,
aborts the zombie's open transaction and makes the zombie's next send or commit fail
(``ProducerFenced``: the zombie stops, exit 70). The cost is a producer (its
connections and its batches) per owned partition, and a transaction per partition
per commit interval.

Opening a partition (:meth:`PartitionTransactions.open`) starts its producer (the
fence) *before* reading its progress record, so the record read is the last
committed one and no zombie can commit a later one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.kafka.config import KafkaClientConfig

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 60_000  # a commit is due every commit interval (1 s)
OPEN_TIMEOUT_S = 30.0
PROGRESS_LOOKBACK = 64  # offsets read back from the end first (see last_record)


def transactional_id(group_id: str, topic: str, partition: int) -> str:
    """The ``transactional.id`` of one audio partition's output (see the module)."""
    return f"{group_id}.{topic}.{partition}"


class PartitionTransactions:
    """The transactional producers of the audio partitions this worker owns.

    Parameters
    ----------
    kafka: connection settings.
    group_id: the consumer group whose offsets the transactions commit.
    audio_topic: the consumed topic.
    progress_topic: the compacted topic of progress records (a partition per audio
        partition).
    """

    def __init__(
        self,
        kafka: KafkaClientConfig,
        *,
        group_id: str,
        audio_topic: str,
        progress_topic: str,
    ) -> None:
        self._kafka = kafka
        self._group_id = group_id
        self._audio = audio_topic
        self._progress = progress_topic
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._sent: set[int] = set()  # partitions with records in the open transaction

    @property
    def partitions(self) -> list[int]:
        return sorted(self._producers)

    async def open(self, partition: int) -> bytes | None:
        """Fence the partition's previous owner, begin a transaction, and return the
        partition's last committed progress record (``None``: there is none)."""
        if partition in self._producers:
            return None
        producer = AIOKafkaProducer(
            **self._kafka.aiokafka_kwargs(),
            transactional_id=transactional_id(self._group_id, self._audio, partition),
            enable_idempotence=True,
            acks="all",
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            linger_ms=5,
        )
        await asyncio.wait_for(producer.start(), OPEN_TIMEOUT_S)  # InitProducerId: the fence
        await producer.begin_transaction()
        self._producers[partition] = producer
        return await asyncio.wait_for(self._read_progress(partition), OPEN_TIMEOUT_S)

    async def send(self, partition: int, topic: str, key: bytes, value: bytes) -> Any:
        """Send into ``partition``'s open transaction; returns the delivery future.

        Raises
        ------
        RuntimeError
            When ``partition`` is not open here: an output would be lost while the
            offsets it depends on are committed (the runtime drops a revoked
            partition's streams before its transaction is closed, and is handed no
            record of a partition before it is open).
        """
        producer = self._producers.get(partition)
        if producer is None:
            raise RuntimeError(
                f"exactly-once: a record for {topic} from audio partition {partition}, "
                "whose transaction is not open on this worker"
            )
        self._sent.add(partition)
        return await producer.send(topic, value, key=key)

    def pending(self, partition: int) -> bool:
        """Records were sent into ``partition``'s open transaction."""
        return partition in self._sent

    async def commit(self, partition: int, progress: bytes, offset: int | None) -> None:
        """Write ``progress``, commit ``offset`` (when given) for the group, commit the
        transaction and begin the next; a failure (fenced, timed out) raises."""
        producer = self._producers[partition]
        key = str(partition).encode()
        await producer.send(self._progress, progress, key=key, partition=partition)
        if offset is not None:
            await producer.send_offsets_to_transaction(
                {TopicPartition(self._audio, partition): offset}, self._group_id
            )
        await producer.commit_transaction()
        self._sent.discard(partition)
        await producer.begin_transaction()

    async def close(self, partitions: list[int]) -> None:
        """Stop the producers of ``partitions``; an open transaction is aborted (what
        it held is replayed by the next owner)."""
        for partition in partitions:
            producer = self._producers.pop(partition, None)
            self._sent.discard(partition)
            if producer is None:
                continue
            try:
                await producer.abort_transaction()
            except Exception as exc:  # fenced already, or the broker is gone
                log.warning("partition %d: abort on close failed: %r", partition, exc)
            await producer.stop()

    async def _read_progress(self, partition: int) -> bytes | None:
        """The last committed record of progress partition ``partition``."""
        consumer = committed_reader(self._kafka)
        await consumer.start()
        try:
            tp = TopicPartition(self._progress, partition)
            consumer.assign([tp])
            key = str(partition).encode()
            found = await last_record(consumer, tp, lambda r: r.key == key and r.value is not None)
            return None if found.record is None else found.record.value
        finally:
            await consumer.stop()


def committed_reader(kafka: KafkaClientConfig) -> AIOKafkaConsumer:
    """A group-less consumer that sees committed transactions only (not started)."""
    return AIOKafkaConsumer(
        **kafka.aiokafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )


@dataclass(frozen=True, slots=True)
class LastRecord:
    """What :func:`last_record` found, and how many records it read to find it."""

    record: Any | None
    records_read: int


async def last_record(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    accept: Callable[[Any], bool],
    *,
    lookback: int = PROGRESS_LOOKBACK,
) -> LastRecord:
    """The last record of ``tp`` that ``accept`` takes, read from the partition's end.

    Why from the end: the progress topic is compacted, but only its closed segments
    are; the active one keeps every record written since it rolled (up to
    ``segment.ms``/``segment.bytes``: days, a gigabyte), one per commit per
    partition. Reading it from the beginning made a takeover's time grow with the
    previous owner's uptime (about 2 s per GB of history here, for every partition
    taken over). The last record is near
    the end: read the last ``lookback`` offsets, then twice as many before them, and
    so on, until a window holds an accepted record (the last one in it is the last
    of the partition: every later offset was read already) or the beginning is
    reached.

    ``consumer`` is assigned ``tp`` and reads with the isolation it was made with
    (``read_committed`` for progress: an aborted transaction's record is never
    returned, and the end is the last stable offset).
    """
    begin = (await consumer.beginning_offsets([tp]))[tp]
    stop = (await consumer.end_offsets([tp]))[tp]
    span = max(1, lookback)
    read = 0
    while stop > begin:
        start = max(begin, stop - span)
        consumer.seek(tp, start)
        last = None
        while await consumer.position(tp) < stop:
            fetched = await consumer.getmany(tp, timeout_ms=500)
            for record in fetched.get(tp, []):
                if record.offset >= stop:
                    break
                read += 1
                if accept(record):
                    last = record
        if last is not None:
            return LastRecord(last, read)
        stop, span = start, span * 2
    return LastRecord(None, read)
