"""How long a takeover reads a partition's progress: from the beginning (before) or
from the end (:func:`stream.kafka.transactions.last_record`), on a real broker.

Writes ``--records`` progress records of ``--record-bytes`` each to one partition of a
fresh compacted topic (its active segment: nothing is compacted yet, as after hours of
commits), then times both reads of the last record in one run, alternated.

    python benchmarks/bench_progress_takeover.py --broker 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.kafka.transactions import last_record


async def _write(broker: str, topic: str, n: int, size: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=broker,
        acks="all",
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=4 << 20,
    )
    await producer.start()
    try:
        body = os.urandom(size)
        for start in range(0, n, 500):
            futs = [
                await producer.send(topic, body + str(i).encode(), key=b"0", partition=0)
                for i in range(start, min(n, start + 500))
            ]
            await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _consumer(broker: str, topic: str) -> tuple[AIOKafkaConsumer, TopicPartition]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    return consumer, tp


async def _from_beginning(broker: str, topic: str) -> tuple[bytes | None, float]:
    consumer, tp = await _consumer(broker, topic)
    t0 = time.perf_counter()
    try:  # the read before this change (stream/kafka/transactions.py at 1dfdb19)
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        last = None
        while await consumer.position(tp) < end:
            fetched = await consumer.getmany(tp, timeout_ms=500)
            for record in fetched.get(tp, []):
                if record.key == b"0" and record.value is not None:
                    last = record.value
        return last, time.perf_counter() - t0
    finally:
        await consumer.stop()


async def _from_end(broker: str, topic: str) -> tuple[bytes | None, float]:
    consumer, tp = await _consumer(broker, topic)
    t0 = time.perf_counter()
    try:
        found = await last_record(consumer, tp, lambda r: r.key == b"0" and r.value is not None)
        return (None if found.record is None else found.record.value), time.perf_counter() - t0
    finally:
        await consumer.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", default="127.0.0.1:9092")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--record-bytes", type=int, default=8_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    topic = f"bench-progress-{uuid.uuid4().hex[:8]}"
    await _write(args.broker, topic, args.records, args.record_bytes)
    times: dict[str, list[float]] = {"beginning": [], "end": []}
    for _ in range(args.repeats):
        for name, read in (("beginning", _from_beginning), ("end", _from_end)):
            value, seconds = await read(args.broker, topic)
            assert value is not None and value.endswith(str(args.records - 1).encode())
            times[name].append(seconds)
    admin = AIOKafkaAdminClient(bootstrap_servers=args.broker)
    await admin.start()
    await admin.delete_topics([topic])
    await admin.close()
    mb = args.records * args.record_bytes / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
    print(f"{args.records} records of {args.record_bytes} B ({mb:.0f} MB) in one partition")
    for name, ts in times.items():
        print(
            f"read from the {name}: median {statistics.median(ts):.3f} s "
            f"{[round(t, 3) for t in ts]}"
        )


if __name__ == "__main__":
    asyncio.run(main())
