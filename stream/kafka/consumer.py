"""The audio topic, a fetched batch at a time: an aiokafka consumer run as a Faust
app service.

Faust's own consumer path costs a per-record ``Event``, a ``Conductor`` dispatch and
a loop round-trip per record (about half the worker's CPU, benchmarks/RESULTS.md).
Here one ``getmany`` hands up to ``max_poll_records`` records to
:meth:`ConsumerRuntime.on_records` (the worker's
:class:`~stream.worker.runtime.WorkerRuntime`) as one list, and the worker owns
what Faust did for the agent:

* **commits**: the runtime acks the ranges the offset ledger released
  (:class:`~stream.kafka.commits.CommitLog`), committed every ``commit_interval_s``,
  at revocation and at stop;
* **revocation** (``ConsumerRebalanceListener``, awaited by aiokafka before the
  group rebalances): commit what the ledger released, then drop the revoked
  partitions' streams (:meth:`~stream.worker.runtime.WorkerRuntime.on_revoked`); their new
  owner rebuilds them from the committed offset;
* **idle expiry** and the lag gauge, once a second.

A lock keeps a fetched batch, an expiry and a revocation from interleaving, so a
revocation never lands in the middle of a batch.

With exactly-once (``transactions``, :mod:`stream.kafka.transactions`) a commit is a
transaction per owned partition: the partition's events since the last one, its
progress record and its released offset, committed together while the runtime sends
nothing (:meth:`~stream.worker.runtime.WorkerRuntime.quiet`). An assigned partition
is opened first (its previous owner fenced, its progress record read into the
runtime) and a revoked one is committed, then closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, KafkaError
from mode import Service

from stream.events import RejectedRecord
from stream.kafka.commits import CommitLog
from stream.kafka.config import KafkaClientConfig
from stream.kafka.fetch import FetchGuard
from stream.kafka.skipped import SkippedRecords
from stream.kafka.transactions import PartitionTransactions
from stream.pipeline import Record
from stream.settings import RecordLimits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerPlan:
    """How the audio topic is consumed.

    Attributes
    ----------
    kafka: connection settings.
    topic: the audio topic.
    group_id: the consumer group (the app id).
    session_timeout_s: a silent member leaves the group after this long.
    commit_interval_s: how often released offsets are committed.
    expire_interval_s: how often idle streams are closed and the lag gauge updated.
    max_poll_records: records per fetched batch at most.
    fetch_timeout_ms: how long ``getmany`` waits when nothing is there (bounds how
        quickly a stop is noticed).
    drain_timeout_s: at stop, how long to wait for windows in flight and their
        deliveries before the last commit.
    record_limits: bounds below the record format (``stream.kafka.fetch``): what
        passes them is dead-lettered by offset and the partition goes on.
    """

    kafka: KafkaClientConfig
    topic: str
    group_id: str
    session_timeout_s: float  # no defaults here: WorkerSettings holds them
    commit_interval_s: float
    expire_interval_s: float = 1.0
    max_poll_records: int = 1000
    fetch_timeout_ms: int = 100
    drain_timeout_s: float = 10.0
    record_limits: RecordLimits = field(default_factory=RecordLimits)


class ConsumerRuntime(Protocol):
    """What the consumer drives: the worker's
    :class:`~stream.worker.runtime.WorkerRuntime`, or any object with these members
    (this package imports nothing of the worker)."""

    @property
    def failure(self) -> BaseException | None:
        """Set once the runtime failed: nothing more is committed."""
        ...

    @property
    def last_offset(self) -> Mapping[int, int]:
        """The last offset taken per partition (the lag gauge)."""
        ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def drain(self) -> None:
        """Deliver everything in flight."""
        ...

    async def on_records(self, records: Sequence[Record]) -> None: ...

    async def on_skipped(self, rejected: RejectedRecord, *, last_offset: int) -> None: ...

    async def expire(self) -> None:
        """Close idle streams."""
        ...

    def settled(self, partition: int) -> bool:
        """Nothing handed over from ``partition`` is still held."""
        ...

    def on_revoked(self, partitions: Iterable[int]) -> None: ...

    def quiet(self) -> AbstractAsyncContextManager[None]:
        """Nothing is sent while inside (an exactly-once commit)."""
        ...

    def restore_progress(self, partition: int, raw: bytes | None) -> None:
        """Exactly-once: the progress record read on assignment (None: none yet)."""
        ...

    def progress_record(self, partition: int, committed_offset: int | None) -> bytes:
        """Exactly-once: the progress record the partition's next transaction commits."""
        ...


class BatchConsumer(Service):
    """Consume the audio topic in fetched batches and feed the runtime."""

    def __init__(
        self,
        plan: ConsumerPlan,
        runtime: ConsumerRuntime,
        commits: CommitLog,
        *,
        on_lag: Callable[[int, int], None],
        on_fatal: Callable[[BaseException], None],
        transactions: PartitionTransactions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.transactions = transactions
        self._opened: set[int] = set()  # exactly-once: fenced, progress loaded
        self.runtime = runtime
        self.commits = commits
        self._on_lag = on_lag  # (partition, records behind its end)
        self._on_fatal = on_fatal
        self._lock = asyncio.Lock()
        self._kafka: AIOKafkaConsumer | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._fetch_guard = FetchGuard(plan.record_limits)

    # -- lifecycle --------------------------------------------------------------------
    async def on_start(self) -> None:
        plan = self.plan
        session_ms = int(plan.session_timeout_s * 1000)
        consumer = AIOKafkaConsumer(
            **plan.kafka.aiokafka_kwargs(),
            group_id=plan.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=session_ms // 4,
            max_poll_records=plan.max_poll_records,
            isolation_level="read_committed",  # an aborted transaction's records never count
            # The fetch guard checks every batch's CRC before the client reads it and
            # skips (dead-letters) one that fails; the client's own check of the same
            # bytes found nothing more and cost 1.6 us per 3.2 KB record.
            check_crcs=False,
        )
        self._fetch_guard.install(consumer)  # before any fetch: every batch is screened
        await consumer.start()
        consumer.subscribe([plan.topic], listener=_Rebalance(self))
        self._kafka = consumer
        self.runtime.start()
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._guard(self._consume())),
            loop.create_task(self._guard(self._commit_every())),
            loop.create_task(self._guard(self._expire_every())),
        ]

    async def on_stop(self) -> None:
        """Finish the batch in hand, deliver what is in flight, commit, leave."""
        self._stopping = True
        if self._loops:
            consume, *chores = self._loops
            for task in chores:
                task.cancel()
            await asyncio.wait([consume], timeout=self.plan.drain_timeout_s)
            consume.cancel()
        try:
            await asyncio.wait_for(self.runtime.drain(), self.plan.drain_timeout_s)
        except Exception as exc:  # a timeout or a failed delivery: the replay covers it
            log.warning("stopping without a full drain: %r", exc)
        if self._kafka is not None:
            await self._commit()
            if self.transactions is not None:  # what is still in flight is not sent:
                parts = self.transactions.partitions  # the next owner replays it
                self.runtime.on_revoked(parts)
                self._opened.clear()
                await self.transactions.close(parts)
            await self._kafka.stop()
        await self.runtime.stop()

    async def _guard(self, work: Any) -> None:
        """Any escape from a loop is a runtime failure: stop the worker, non-zero."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._stopping:
                log.critical("audio consumer failed: %r", exc)
                self._on_fatal(exc)

    # -- the loops --------------------------------------------------------------------
    async def _consume(self) -> None:
        consumer = self._require()
        topic = self.plan.topic
        while not self._stopping:
            try:
                fetched = await consumer.getmany(
                    timeout_ms=self.plan.fetch_timeout_ms, max_records=self.plan.max_poll_records
                )
            except ConsumerStoppedError:
                return
            skipped = await self._fetch_guard.take(consumer)
            if not fetched and not skipped:
                await self._pass_invisible(consumer)
                continue
            async with self._lock:
                owned = self._ready(consumer, fetched, skipped)
                batch = [
                    Record(
                        r.key,
                        r.value,
                        tuple(r.headers or ()),
                        r.topic,
                        r.partition,
                        r.offset,
                        timestamp_ms=r.timestamp,  # Kafka time decides idle closes
                    )
                    for tp, records in fetched.items()
                    if tp.topic == topic and tp in owned
                    for r in records
                ]
                mine = [s for s in skipped if TopicPartition(s.topic, s.partition) in owned]
                if mine:
                    await self._take_in_order(batch, mine)
                elif batch:
                    await self.runtime.on_records(batch)
            await self._pass_invisible(consumer)

    def _ready(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[Any]],
        skipped: list[SkippedRecords],
    ) -> set[TopicPartition]:
        """The assigned partitions whose records may be handed over now.

        Exactly-once: aiokafka may fetch a newly assigned partition while the
        rebalance listener is still opening it (fencing its previous owner, reading
        its progress record). Its records must wait for that: they are not handed
        over, and the partition is sought back to the first of them, to be fetched
        again once it is open.
        """
        owned: set[TopicPartition] = set(consumer.assignment())
        if self.transactions is None:
            return owned
        waiting = {tp for tp in owned if tp.partition not in self._opened}
        for tp in waiting:
            offsets = [r.offset for r in fetched.get(tp, ())]
            offsets += [s.offset for s in skipped if (s.topic, s.partition) == tp]
            if offsets:
                consumer.seek(tp, min(offsets))
        return owned - waiting

    async def _pass_invisible(self, consumer: AIOKafkaConsumer) -> None:
        """Let commits pass offsets that hold no record for us.

        A ``read_committed`` consumer steps over transaction markers and aborted
        records without returning them, so no ack ever covers them: a partition whose
        last offsets are such would keep its committed offset (and its lag) short of
        the end forever. Called in the fetch loop right after the records of every
        ``getmany`` were handed over (no other task fetches), so the consumer's position
        is exactly past what was handed over: where nothing handed over is still held,
        the position itself is committable.
        """
        topic = self.plan.topic
        for tp in consumer.assignment():
            if tp.topic != topic or not self.runtime.settled(tp.partition):
                continue
            highwater = consumer.highwater(tp)
            if highwater is None or highwater <= self.commits.committable(tp.partition):
                continue  # nothing beyond what is committable already
            position = await consumer.position(tp)
            if self.runtime.settled(tp.partition):  # still, after the await
                self.commits.ack(tp.partition, position, position)

    async def _take_in_order(self, batch: list[Record], skipped: list[SkippedRecords]) -> None:
        """Records and skipped offsets of a fetch, handed over in offset order per
        partition (the offset ledger holds each partition's offsets in order)."""
        runs: list[Record | SkippedRecords] = sorted(
            [*batch, *skipped], key=lambda item: (item.partition, item.offset)
        )
        records: list[Record] = []
        for item in runs:
            if isinstance(item, Record):
                records.append(item)
                continue
            if records:
                await self.runtime.on_records(records)
                records = []
            await self.runtime.on_skipped(item.rejected(), last_offset=item.last_offset)
        if records:
            await self.runtime.on_records(records)

    async def _commit_every(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.plan.commit_interval_s)
            await self._commit()

    async def _expire_every(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.plan.expire_interval_s)
            async with self._lock:
                await self.runtime.expire()
            self._update_lag()

    # -- commits and rebalances ---------------------------------------------------------
    async def _commit(self, partitions: Iterable[int] | None = None) -> None:
        """Commit the released offsets (of ``partitions``); a failure is retried at the
        next interval, and a commit lost to a rebalance is replayed by the new owner."""
        if self.transactions is not None:
            await self._commit_transactions(partitions)
            return
        due = self.commits.due(partitions)
        if not due or self._kafka is None:
            return
        offsets = {TopicPartition(self.plan.topic, p): o for p, o in due.items()}
        try:
            await self._kafka.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit of %s lost to a rebalance: %r", due, exc)
            return
        except KafkaError as exc:
            log.warning(
                "commit of %s failed, retried in %.1f s: %r", due, self.plan.commit_interval_s, exc
            )
            return
        self.commits.committed(due)

    async def _commit_transactions(self, partitions: Iterable[int] | None = None) -> None:
        """Exactly-once: commit each partition's transaction (its events, its progress
        record, its released offset) and begin the next. A failure stops the worker:
        fenced (another worker owns the partition now) or the transaction is lost, and
        either way the records behind it are replayed by the partition's owner."""
        transactions = self.transactions
        assert transactions is not None
        wanted = set(transactions.partitions if partitions is None else partitions)
        if self.runtime.failure is not None:
            return  # stopping: the open transactions are aborted, their records replayed

        async def commit(partition: int) -> None:
            due = self.commits.due([partition]).get(partition)
            if due is None and not transactions.pending(partition):
                return
            record = self.runtime.progress_record(partition, due)
            await transactions.commit(partition, record, due)
            if due is not None:
                self.commits.committed({partition: due})

        async with self.runtime.quiet():  # the partitions' producers commit at once
            owned = sorted(wanted.intersection(transactions.partitions))
            await asyncio.gather(*(commit(partition) for partition in owned))

    async def revoked(self, partitions: list[int]) -> None:
        async with self._lock:
            try:
                await self._commit(partitions)
            except Exception as exc:  # a transaction (aiokafka would only log it)
                log.critical("committing revoked partitions %s failed: %r", partitions, exc)
                self._on_fatal(exc)
            log.info("partitions revoked: %s", partitions)
            self.runtime.on_revoked(partitions)
            self.commits.revoke(partitions)
            if self.transactions is not None:
                self._opened.difference_update(partitions)
                await self.transactions.close(partitions)

    async def assigned(self, partitions: list[int]) -> None:
        if self.transactions is not None:
            try:  # each open waits on the broker: all at once
                await asyncio.gather(*(self._open(partition) for partition in partitions))
            except Exception as exc:  # aiokafka would only log it: this worker must stop
                log.critical("opening the transactions of %s failed: %r", partitions, exc)
                self._on_fatal(exc)
                raise
        self.commits.assign(partitions)
        log.info("partitions assigned: %s", partitions)

    async def _open(self, partition: int) -> None:
        """Exactly-once: fence the partition's previous owner and load what its
        committed transactions hold. An unreadable progress record is logged and
        ignored: the partition then runs at-least-once until its next commit."""
        assert self.transactions is not None
        if partition in self._opened:
            return  # still open (assigned again without a revocation between)
        self.runtime.restore_progress(partition, await self.transactions.open(partition))
        self._opened.add(partition)

    def _update_lag(self) -> None:
        """Records between the last one taken and the partition end, per partition."""
        consumer = self._kafka
        if consumer is None:
            return
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            last = self.runtime.last_offset.get(tp.partition)
            if highwater is not None and last is not None:
                self._on_lag(tp.partition, max(0, highwater - last - 1))

    def _require(self) -> AIOKafkaConsumer:
        if self._kafka is None:
            raise RuntimeError("the audio consumer is not started")
        return self._kafka


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka awaits these before and after each rebalance of the group."""

    def __init__(self, owner: BatchConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        mine = sorted(tp.partition for tp in revoked if tp.topic == self._owner.plan.topic)
        if mine:
            await self._owner.revoked(mine)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == self._owner.plan.topic)
        await self._owner.assigned(mine)
