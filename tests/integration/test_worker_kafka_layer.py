"""Issue 23 on the real broker: records below tympan's format no longer stop a worker.

Before the fetch guard (``stream/kafka/fetch.py``), each of these made ``getmany``
raise inside the worker, exit 70, and the replayed offset crash-looped every worker
that inherited its partition: a batch compressed with snappy, lz4 or zstd (no codec
library), a header name that is not UTF-8 (aiokafka's reader raised), and a null
header value (``TypeError`` in the dead-letter path). A 2 MiB zstd bomb and records
with 10,000 headers or 20 KB of headers were read without bounds.

Here a worker with ``--max-inflated-batch-bytes 1 MiB`` first meets all of them on
its audio topic (written as raw batches by a ProduceRequest, or by aiokafka's
producer with each codec), then four calls, each produced with another codec. It
must stay up, give every window of the four calls the pipeline's events, account for
each poison record with a dead letter at its offset with its reason, and commit to
the end of the topic.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import AIOKafkaProducer
from worker_harness import (
    WorkerFarm,
    assert_same_events,
    expected_events,
    interleave,
    read_json,
    stream_frames,
    tiny_model,
    wait_for,
    wait_for_count,
    wait_for_ids,
    wait_until_committed,
)

from stream.kafka.batches import CODEC_LZ4, CODEC_ZSTD
from stream.kafka.skipped import (
    BATCH_TOO_LARGE,
    HEADERS_TOO_LARGE,
    INVALID_HEADER_NAME,
    TOO_MANY_HEADERS,
)
from stream.kafka.topics import Topics
from stream.wire import encode_frame
from tests.support.record_batches import (
    BAD_NAME_MARK,
    build_batch,
    compress,
    produce_batch,
    with_bad_name,
)

CODECS = ("gzip", "snappy", "lz4", "zstd")
LIMIT = 1 << 20


def _frame_record(stream_id: str, i: int = 0) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    frame = stream_frames(stream_id, seconds=0.1, loud=True)[i]
    key, value, headers = encode_frame(frame)
    return key, value, list(headers)


async def _produce_poison(broker: str, audio: str) -> dict[tuple[int, int], str]:
    """Every poison record, written to partition 0; ``{(partition, offset): reason}``."""
    expect: dict[tuple[int, int], str] = {}

    async def raw(batch: bytes, reasons: list[str | None]) -> None:
        base = await produce_batch(broker, audio, 0, batch)
        for i, reason in enumerate(reasons):
            if reason is not None:
                expect[(0, base + i)] = reason

    key, value, headers = _frame_record("poison-null")
    null_seq = [(n, None if n == "seq" else v) for n, v in headers]
    await raw(build_batch(0, [(key, value, null_seq)]), ["invalid_header"])

    # a header name that is not UTF-8 between two junk records, lz4-compressed
    named = [*_frame_record("poison-name")[2], (BAD_NAME_MARK, b"x")]
    three = build_batch(0, [(b"j1", b"x", []), (b"poison-name", b"\0\0", named), (b"j2", b"x", [])])
    await raw(
        compress(with_bad_name(three), CODEC_LZ4),
        ["missing_header", INVALID_HEADER_NAME, "missing_header"],
    )
    many = [("h", b"")] * 10_000
    big = [("big", bytes(20_000))]
    await raw(build_batch(0, [(b"poison-many", b"x", many)]), [TOO_MANY_HEADERS])
    await raw(build_batch(0, [(b"poison-big", b"x", big)]), [HEADERS_TOO_LARGE])
    bomb = build_batch(0, [(b"poison-bomb", bytes(LIMIT), []) for _ in range(3)])
    await raw(compress(bomb, CODEC_ZSTD), [BATCH_TOO_LARGE, None, None])  # one letter
    # junk through aiokafka's producer, one record per codec
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=broker, compression_type=codec, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                audio, b"junk", key=b"junk-" + codec.encode(), partition=0
            )
        finally:
            await producer.stop()
        expect[(meta.partition, meta.offset)] = "missing_header"
    return expect


async def _produce_calls(broker: str, audio: str, calls: dict[str, list]) -> None:
    """Each call's frames, in order, by a producer with its own codec."""
    for codec, frames in calls.items():
        producer = AIOKafkaProducer(bootstrap_servers=broker, compression_type=codec, acks="all")
        await producer.start()
        try:
            sent = []
            for frame in frames:
                key, value, headers = encode_frame(frame)
                sent.append(await producer.send(audio, value, key=key, headers=list(headers)))
            await asyncio.gather(*sent)
        finally:
            await producer.stop()


def test_records_below_the_format_are_dead_lettered_and_the_calls_complete(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    model = tiny_model(tmp_path / "model")
    calls = {
        codec: stream_frames(f"call-{codec}", seconds=2.5, loud=i % 2 == 0, seed=i)
        for i, codec in enumerate(CODECS)
    }
    labels, summaries = expected_events(model, list(calls.values()))
    assert len(interleave(list(calls.values()))) > 0
    farm = WorkerFarm(broker, topics, model, tmp_path)
    try:
        worker = farm.spawn("--idle-timeout-s", "2", "--max-inflated-batch-bytes", str(LIMIT))
        poison = asyncio.run(_produce_poison(broker, topics.audio))
        asyncio.run(_produce_calls(broker, topics.audio, calls))

        dead = wait_for_count(
            broker, topics.rejected, len(poison), timeout_s=120, what="the dead letters", farm=farm
        )
        got = {(d["partition"], d["offset"]): d["reason"] for d in dead}
        assert got == poison, farm.logs()
        null_letter = next(d for d in dead if d["stream_id"] == "poison-null")
        seq_header = next(h for h in null_letter["headers"] if h["key"] == "seq")
        assert seq_header["value_b64"] is None
        bad_name = next(d for d in dead if d["reason"] == INVALID_HEADER_NAME)
        assert bad_name["stream_id"] == "poison-name"
        assert any(h["key"] == "\\xff\\xfe\\xfdNAME!" for h in bad_name["headers"])

        got_labels = wait_for_ids(
            broker, topics.labels, labels, what="every window's label", farm=farm, timeout_s=120
        )
        assert_same_events(got_labels, labels)
        got_summaries = wait_for_ids(
            broker,
            topics.summaries,
            summaries,
            what="every call's summary",
            farm=farm,
            timeout_s=60,
        )
        assert_same_events(
            [s for s in got_summaries if s["stream_id"].startswith("call-")], summaries
        )
        wait_until_committed(broker, topics, farm, what="committed to the end", timeout_s=60)
        assert worker.proc is not None and worker.proc.poll() is None, farm.logs()
        assert "exit 70" not in worker.log_text()
        wait_for(
            lambda: len(read_json(broker, topics.rejected)) == len(poison),
            timeout_s=5,
            what="no other dead letter",
            farm=farm,
        )
    finally:
        farm.stop_all()


def test_tail_skips_a_batch_it_cannot_read_and_prints_the_events_around_it(
    broker: str, topics: Topics
) -> None:
    """``tympan tail``: an lz4 batch whose middle record has a header name that is not
    UTF-8, between summaries written with snappy and zstd."""
    import json
    import os
    import subprocess

    from worker_harness import REPO, TYMPAN

    def summary(i: int) -> bytes:
        return json.dumps({"schema": "tympan.rejected.v1", "n": i}).encode()

    rows = [(b"k", summary(i), []) for i in range(3)]
    rows[1] = (b"k", summary(1), [(BAD_NAME_MARK, b"x")])

    async def produce() -> None:
        await produce_batch(
            broker, topics.rejected, 0, compress(build_batch(0, [(b"k", summary(-1), [])]), 2)
        )
        await produce_batch(
            broker, topics.rejected, 0, compress(with_bad_name(build_batch(0, rows)), CODEC_LZ4)
        )
        await produce_batch(
            broker,
            topics.rejected,
            0,
            compress(build_batch(0, [(b"k", summary(3), [])]), CODEC_ZSTD),
        )

    asyncio.run(produce())
    done = subprocess.run(
        [
            str(TYMPAN),
            "tail",
            "--topic",
            "rejected",
            "--json",
            "--from-beginning",
            "--max",
            "4",
            "--idle-exit",
            "20",
            "--broker",
            broker,
            "--topic-prefix",
            topics.prefix,
        ],
        capture_output=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 0, err
    printed = [json.loads(line)["n"] for line in done.stdout.decode().splitlines() if line.strip()]
    assert printed == [-1, 0, 2, 3], err
    assert "skipped (invalid_header_name)" in err
