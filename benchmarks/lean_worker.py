"""Experiment: the worker's runtime without Faust, to measure what Faust's per-event
path costs. Not a product path; ``bench_e2e.py --lean`` runs it in place of
``tympan worker``.

Same domain objects and the same :class:`~stream.agents.WorkerRuntime` as
``stream.app.build_worker`` (Pipeline, FeatureBank, OnnxModel with one thread, the
batcher, the offset ledger), but records come from a plain ``AIOKafkaConsumer``
(``getmany``, up to 1,000 records per call) and events go out through a plain
``AIOKafkaProducer`` with ``linger_ms`` (default 5). Offsets the runtime acks are
committed once a second. Prints ``partitions assigned: [...]`` like the worker.

Run: ``.venv/bin/python benchmarks/lean_worker.py --model DIR --broker HOST:PORT
--topic-prefix P --app-id G [--linger-ms 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

import numpy as np


async def serve(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.abc import ConsumerRebalanceListener

    from stream.agents import WorkerRuntime
    from stream.app import limit_blas_threads
    from stream.events import ModelRef
    from stream.features.frontend import FeatureBank
    from stream.inference.session import OnnxModel
    from stream.pipeline import Pipeline, PipelinePolicy, Record
    from stream.settings import BatchingPolicy
    from stream.topics import Topics

    limit_blas_threads()
    model = OnnxModel.load(Path(args.model), device="cpu")
    topics = Topics().with_prefix(args.topic_prefix)
    pipeline = Pipeline(
        model.spec,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(model.spec),
        PipelinePolicy(),
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.broker, linger_ms=args.linger_ms, acks="all")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.broker,
        group_id=args.app_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1000,
    )
    done: dict[int, int] = {}

    def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = model.run(x)
        return out.probabilities, out.embedding

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await producer.send(topic, value=value, key=key)

    def ack(partition: int, start: int, stop: int) -> None:
        done[partition] = max(done.get(partition, 0), stop)

    runtime = WorkerRuntime(pipeline, infer, topics, send, ack, BatchingPolicy())

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            runtime.on_revoked([tp.partition for tp in revoked])

        def on_partitions_assigned(self, assigned: Any) -> None:
            print(f"partitions assigned: {sorted(tp.partition for tp in assigned)}", flush=True)

    await producer.start()
    await consumer.start()
    consumer.subscribe([topics.audio], listener=Listener())
    runtime.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def housekeeping() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            await runtime.expire()
            if done:
                offsets = {TopicPartition(topics.audio, p): o for p, o in done.items()}
                await consumer.commit(offsets)

    chores = asyncio.create_task(housekeeping())
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for records in batches.values():
                for r in records:
                    record = Record(
                        r.key, r.value, tuple(r.headers or ()), r.topic, r.partition, r.offset
                    )
                    await runtime.on_record(record)
    finally:
        chores.cancel()
        await runtime.stop()
        await consumer.stop()
        await producer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--linger-ms", type=int, default=5)
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
