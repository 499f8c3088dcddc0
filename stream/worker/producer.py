"""Events out, a producer batch per partition per loop turn.

The runtime sends each event with ``await send(topic, key, value)`` and keeps the
returned future until the broker acknowledged it. Sent one by one through Faust's
producer, every event costs a Faust wrapper, an aiokafka ``send`` coroutine, a
murmur2 hash of its key, and a future of its own. :class:`BatchSender` keeps the
same interface but only appends the record to an open
:class:`aiokafka.producer.message_accumulator.BatchBuilder` of its partition and
returns that batch's shared future; the batches are handed to the producer
(``send_batch``) once the current turn of the event loop ends, i.e. after the
inference batch whose events are being sent. So the events of one inference batch
travel as one producer batch per partition, with no await per event.

Delivery is unchanged: the shared future resolves when the broker acknowledged
the whole batch (``acks=-1``) and fails if any part of it failed, so an offset is
still acked only after every event depending on it is on the broker. Records over
``max_record_bytes`` (a large dead letter: the plain send checks the producer's
request size limit, and one such record must not fail a batch of others) and the
first record of a topic (the producer learns the topic's partitions from it) go
through the producer's plain ``send``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from typing import Any

log = logging.getLogger(__name__)

KEY_PARTITIONS = 65_536  # partition of each recent key: stream ids recur every frame
MAX_RECORD_BYTES = 16 * 1024  # a label event is ~1 KB


class BatchSender:
    """``await sender.send(topic, key, value)`` → a future of the record's batch.

    Parameters
    ----------
    producer: Faust's producer service (``app.producer``); its aiokafka producer
        builds and sends the batches, and its ``key_partition`` chooses partitions
        exactly as a plain send would (murmur2 of the key).
    max_record_bytes: larger records go through the plain send.
    """

    def __init__(self, producer: Any, *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._producer = producer
        self._max_record_bytes = max_record_bytes
        self._open: dict[tuple[str, int], tuple[Any, asyncio.Future[Any]]] = {}
        self._known_topics: set[str] = set()
        self._partitions: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._flush_handle: asyncio.Handle | None = None
        self._queues: dict[tuple[str, int], deque[tuple[Any, asyncio.Future[Any]]]] = {}
        self._drainers: dict[tuple[str, int], asyncio.Task[None]] = {}

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        if topic not in self._known_topics or len(key) + len(value) > self._max_record_bytes:
            fut = await self._producer.send(topic, key, value, None, None, None)
            self._known_topics.add(topic)
            return fut  # type: ignore[no-any-return]
        partition = self._partition(topic, key)
        open_ = self._open.get((topic, partition))
        if open_ is not None and open_[0].append(key=key, value=value, timestamp=None) is not None:
            return open_[1]
        builder = self._aiokafka().create_batch()
        builder.append(key=key, value=value, timestamp=None)  # an empty batch takes one
        if open_ is not None:  # full: hand it over now, keep the order of the partition
            self._start(topic, partition, *open_)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._open[(topic, partition)] = (builder, done)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)
        return done

    def flush(self) -> None:
        """Hand every open batch to the producer (called once the loop turn ends)."""
        self._flush_handle = None
        batches, self._open = self._open, {}
        for (topic, partition), (builder, done) in batches.items():
            self._start(topic, partition, builder, done)

    async def join(self) -> None:
        """Wait until every batch was handed to the producer (stop, tests)."""
        self.flush()
        while running := [t for t in self._drainers.values() if not t.done()]:
            await asyncio.wait(running)

    def _start(self, topic: str, partition: int, builder: Any, done: asyncio.Future[Any]) -> None:
        """Queue a batch: one task per partition hands its batches over in order
        (aiokafka's ``send_batch`` waits until the partition's previous batch drained,
        and one slow partition must not hold the others back)."""
        tp = (topic, partition)
        self._queues.setdefault(tp, deque()).append((builder, done))
        drainer = self._drainers.get(tp)
        if drainer is None or drainer.done():
            self._drainers[tp] = asyncio.get_running_loop().create_task(self._drain(tp))

    async def _drain(self, tp: tuple[str, int]) -> None:
        queue = self._queues[tp]
        while queue:
            builder, done = queue.popleft()
            try:
                delivery = await self._aiokafka().send_batch(builder, tp[0], partition=tp[1])
            except Exception as exc:  # the runtime's delivery check reports it
                _settle(done, None, exc)
                continue
            delivery.add_done_callback(lambda fut, done=done: _settle(done, fut, None))

    def _partition(self, topic: str, key: bytes) -> int:
        cached = self._partitions.get((topic, key))
        if cached is not None:
            self._partitions.move_to_end((topic, key))
            return cached
        partition: int = self._producer.key_partition(topic, key).partition
        self._partitions[(topic, key)] = partition
        if len(self._partitions) > KEY_PARTITIONS:
            self._partitions.popitem(last=False)
        return partition

    def _aiokafka(self) -> Any:
        # Faust's producer exposes no batch API; this is its driver's accessor for the
        # aiokafka producer it started (NotReady before start).
        return self._producer._ensure_producer()


def _settle(done: asyncio.Future[Any], delivery: Any, error: BaseException | None) -> None:
    """Pass a batch's outcome to the future its records' senders hold."""
    if done.done():
        return
    if error is None and delivery is not None:
        error = asyncio.CancelledError() if delivery.cancelled() else delivery.exception()
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(delivery.result() if delivery is not None else None)
