"""Real Kafka clients writing records for the Kafka-protocol fault suite (issue 23).

* Kafka's own console producer (``org.apache.kafka.tools.ConsoleProducer`` from the
  jars ``scripts/kafka.sh`` fetched with Maven): text lines, every codec, null header
  values through ``null.marker``.
* Kafka's Java producer (``kafka-clients``), driven by ``FaultProducer.java`` (compiled
  here with ``javac``, once per source version): 10^5 headers, null header values
  beside binary ones, transactions that abort, timestamps at the extremes.
* aiokafka, the client the worker itself uses: every codec, and the one record neither
  Java client can write, a header whose *name* is not UTF-8 (Java encodes a ``String``
  name, so a lone surrogate becomes ``?``): a batch aiokafka builds with a placeholder
  name, whose bytes are then replaced and the batch's CRC-32C recomputed (uncompressed
  only: the producer compresses what it builds), and the same name in a batch of any
  codec sent as a plain ProduceRequest (:func:`produce_bad_name`).
* librdkafka (through ``confluent-kafka``), the C client behind the Go, .NET, Python
  and C/C++ clients most services outside the JVM use: its own batches of every codec,
  an idempotent producer, and transactions of its own.

Every writer reports where its records landed (``partition``, ``offset``), so that
the suite can account for each one. The console producer does not say: what it wrote
is read back between the end offsets before and after its run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker_harness import REPO

from stream.wire import AudioFrame, encode_frame

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
POM = REPO / "scripts" / "kafka" / "pom.xml"
SOURCE = Path(__file__).resolve().parent / "FaultProducer.java"
Header = tuple[str, bytes | None]


@dataclass(frozen=True)
class Written:
    """One record a client wrote, and where it landed."""

    client: str  # console | java | aiokafka | rdkafka | ProduceRequest
    what: str  # the record kind, for messages
    topic: str
    partition: int
    offset: int
    key: bytes | None

    @property
    def at(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    def __str__(self) -> str:
        return f"{self.what} ({self.client}) at {self.topic}[{self.partition}]@{self.offset}"


def kafka_libs() -> Path:
    """The Kafka jars ``scripts/kafka.sh`` fetched (the version its pom pins)."""
    version = re.search(r"<kafka.version>(.*?)</kafka.version>", POM.read_text())
    assert version, f"no <kafka.version> in {POM}"
    cache = Path(os.environ.get("TYMPAN_CACHE", Path.home() / ".cache" / "tympan"))
    libs = cache / f"kafka-{version.group(1)}" / "libs"
    assert (libs / f"kafka-clients-{version.group(1)}.jar").exists(), (
        f"Kafka's jars are not in {libs}: scripts/kafka.sh up fetches them"
    )
    return libs


def _java_classes() -> Path:
    """``FaultProducer`` compiled against the Kafka jars, cached by source digest."""
    libs = kafka_libs()
    digest = hashlib.sha256(SOURCE.read_bytes() + str(libs).encode()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"tympan-fault-producer-{digest}"
    if not (out / "FaultProducer.class").exists():
        build = Path(tempfile.mkdtemp(prefix="fault-producer-build-"))
        done = subprocess.run(
            ["javac", "-cp", f"{libs}/*", "-d", str(build), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"javac FaultProducer.java failed:\n{done.stderr}"
        shutil.rmtree(out, ignore_errors=True)
        build.rename(out)
    return out


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


# -- Kafka's Java producer --------------------------------------------------------------


@dataclass
class JavaRecord:
    """One record for ``FaultProducer``; ``flood``: that many extra headers named
    ``<flood_name><n>`` with value ``flood_value``."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()
    what: str = "record"
    partition: int | None = None
    timestamp_ms: int | None = None
    flood: int = 0
    flood_name: str = "h"  # 10^5 headers h0..h99999 with empty values: ~0.8 MB, under
    flood_value: bytes = b""  # the broker's 1 MB message.max.bytes uncompressed
    refused: bool = False  # the broker must refuse it (e.g. keyless, on a compacted topic)

    def spec(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "key": _b64(self.key),
            "value": _b64(self.value),
            "timestamp": self.timestamp_ms,
            "headers": [[k, _b64(v)] for k, v in self.headers],
            "flood": (
                {"count": self.flood, "name": self.flood_name, "value": _b64(self.flood_value)}
                if self.flood
                else None
            ),
        }


@dataclass
class JavaJob:
    """One Java producer: its configs, its records, and what ends its transaction
    (``None``: not transactional; ``"commit"`` or ``"abort"``)."""

    records: list[JavaRecord]
    config: dict[str, str]
    transaction: str | None = None


def java_produce(broker: str, jobs: Sequence[JavaJob]) -> list[Written]:
    """Run the jobs in one JVM; every record must be acked (an error fails the test)."""
    spec = {
        "bootstrap": broker,
        "jobs": [
            {
                "config": job.config,
                "transaction": job.transaction,
                "records": [r.spec() for r in job.records],
            }
            for job in jobs
        ],
    }
    classes = _java_classes()
    done = subprocess.run(
        ["java", "-Xmx512m", "-cp", f"{classes}:{kafka_libs()}/*", "FaultProducer"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=300,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"FaultProducer exited {done.returncode}:\n{stderr[-4000:]}"
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    written: list[Written] = []
    for line in lines:
        record = jobs[line["job"]].records[line["index"]]
        if record.refused:
            assert "error" in line, f"the broker accepted {record.what}: {line}"
            continue
        assert "error" not in line, f"the Java producer could not write {record.what}: {line}"
        written.append(
            Written(
                "java", record.what, record.topic, line["partition"], line["offset"], record.key
            )
        )
    want = sum(not r.refused for j in jobs for r in j.records)
    assert len(written) == want, f"FaultProducer said:\n{stderr}"
    return written


# -- Kafka's console producer -----------------------------------------------------------


@dataclass(frozen=True)
class ConsoleRecord:
    key: bytes
    value: bytes | None
    headers: Sequence[Header]
    what: str


def console_line(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> str:
    """``h1:v1,h2:v2<TAB>key<TAB>value`` for ``parse.headers`` and ``parse.key``
    (``NULL``: the null marker). Only text without the separators can be written."""

    def text(b: bytes | None) -> str:
        if b is None:
            return "NULL"
        s = b.decode("ascii")
        assert not set(s) & set("\t\n\r,:") and s != "NULL", f"cannot write {b[:40]!r} as text"
        return s

    head = ",".join(f"{text(k.encode())}:{text(v)}" for k, v in headers)
    return f"{head}\t{text(key)}\t{text(value)}"


def console_produce(
    broker: str, topic: str, records: Sequence[ConsoleRecord], *, codec: str
) -> list[Written]:
    """Send ``records`` with ``kafka-console-producer``, in one run, ``codec``-compressed.

    The console producer does not say where records landed: the records between the
    partitions' end offsets before and after the run are read back and matched, in
    order, by partition (Kafka's default partitioner: murmur2 of the key), key and value.
    """
    assert all(r.key is not None for r in records), "keyless records land anywhere: use aiokafka"
    before = end_offsets(broker, topic)
    lines = "".join(f"{console_line(r.key, r.value, r.headers)}\n" for r in records)
    done = subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-cp",
            f"{kafka_libs()}/*",
            "org.apache.kafka.tools.ConsoleProducer",
            "--bootstrap-server",
            broker,
            "--topic",
            topic,
            "--compression-codec",
            codec,
            "--command-property",
            "linger.ms=20",
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "parse.headers=true",
            "--reader-property",
            "null.marker=NULL",
        ],
        input=lines.encode(),
        capture_output=True,
        timeout=180,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"the console producer exited {done.returncode}:\n{stderr[-4000:]}"
    after = end_offsets(broker, topic)
    landed = _read_range(broker, topic, before, after)
    written = []
    for r in records:
        want = (r.key, r.value)
        for partition, offset, key, value in landed:
            if (key, value) == want and (partition_of(r.key, len(after)) == partition):
                written.append(Written("console", r.what, topic, partition, offset, r.key))
                landed.remove((partition, offset, key, value))
                break
        else:
            raise AssertionError(f"the console producer's {r.what} is not on {topic}:\n{stderr}")
    return written


def _read_range(
    broker: str, topic: str, before: dict[int, int], after: dict[int, int]
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """``(partition, offset, key, value)`` of the records between two end offsets, in
    offset order (others may write ``topic`` meanwhile, e.g. a worker's statuses)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> list[tuple[int, int, bytes | None, bytes | None]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker, group_id=None, isolation_level="read_committed"
        )
        await consumer.start()
        out = []
        try:
            grown = {
                TopicPartition(topic, p): (before.get(p, 0), end)
                for p, end in after.items()
                if end > before.get(p, 0)
            }
            consumer.assign(list(grown))
            for tp, (start, _) in grown.items():
                consumer.seek(tp, start)
            while [tp for tp, (_, end) in grown.items() if await consumer.position(tp) < end]:
                for tp, got in (await consumer.getmany(timeout_ms=500)).items():
                    end = grown[tp][1]
                    out += [(tp.partition, r.offset, r.key, r.value) for r in got if r.offset < end]
        finally:
            await consumer.stop()
        return sorted(out, key=lambda r: (r[0], r[1]))

    return asyncio.run(read())


def partition_of(key: bytes | None, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record (Java's and aiokafka's)."""
    from aiokafka.partitioner import murmur2

    assert key is not None
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def end_offsets(broker: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (ListOffsets: no record is read or parsed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def ends() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
            assert parts, f"no topic {topic!r}"
            got = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return {tp.partition: end for tp, end in got.items()}
        finally:
            await consumer.stop()

    return asyncio.run(ends())


# -- aiokafka --------------------------------------------------------------------------


@dataclass
class AioRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()
    what: str = "record"
    partition: int | None = None
    raw_header_name: bytes | None = None  # replaces the placeholder header name's bytes


PLACEHOLDER = "x-raw-name-placeholder"  # a header name of the same length as its stand-in


def aiokafka_produce(broker: str, records: Iterable[AioRecord], *, codec: str) -> list[Written]:
    """Send with aiokafka (``codec``: ``none`` or a Kafka codec name), each record acked
    before the next. A record with ``raw_header_name`` is sent as a batch of its own
    whose ``PLACEHOLDER`` header name is replaced by those bytes (same length)."""
    return asyncio.run(_aiokafka_produce(broker, list(records), codec))


async def _aiokafka_produce(broker: str, records: list[AioRecord], codec: str) -> list[Written]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(
        bootstrap_servers=broker,
        acks="all",
        compression_type=None if codec == "none" else codec,
        max_request_size=4 * 1024 * 1024,
        enable_idempotence=False,
    )
    await producer.start()
    written: list[Written] = []
    try:
        for r in records:
            if r.raw_header_name is None:
                meta = await (
                    await producer.send(
                        r.topic, r.value, key=r.key, headers=list(r.headers), partition=r.partition
                    )
                )
            else:
                partition = r.partition
                if partition is None:
                    parts = sorted(await producer.partitions_for(r.topic))
                    partition = DefaultPartitioner()(r.key, parts, parts)
                batch = producer.create_batch()
                assert batch.append(timestamp=None, key=r.key, value=r.value, headers=r.headers)
                _patch_header_name(batch, r.raw_header_name)
                meta = await (await producer.send_batch(batch, r.topic, partition=partition))
            written.append(Written("aiokafka", r.what, r.topic, meta.partition, meta.offset, r.key))
    finally:
        await producer.stop()
    return written


def _patch_header_name(batch: Any, name: bytes) -> None:
    """Replace the placeholder header name in the (uncompressed) built batch and
    recompute the batch's CRC-32C (over everything after the CRC field)."""
    from aiokafka.record.util import calc_crc32c

    assert len(name) == len(PLACEHOLDER), f"{name!r} must be {len(PLACEHOLDER)} bytes"
    buf = batch._build()  # the producer sends this very buffer
    at = bytes(buf).find(PLACEHOLDER.encode())
    assert at > 0 and bytes(buf).count(PLACEHOLDER.encode()) == 1, "placeholder not in the batch"
    buf[at : at + len(name)] = name
    crc_at = 8 + 4 + 4 + 1  # baseOffset, batchLength, partitionLeaderEpoch, magic
    buf[crc_at : crc_at + 4] = calc_crc32c(bytes(buf[crc_at + 4 :])).to_bytes(4, "big")


# -- librdkafka ------------------------------------------------------------------------


@dataclass
class RdRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()
    what: str = "record"


def rdkafka_produce(
    broker: str,
    records: Sequence[RdRecord],
    *,
    codec: str,
    transaction: str | None = None,
    transactional_id: str | None = None,
) -> list[Written]:
    """Send with librdkafka (``confluent_kafka.Producer``), idempotent, each record
    delivered before the next so offsets follow the list. ``transaction``: ``None``,
    or ``"commit"`` / ``"abort"`` for all the records in one transaction of
    ``transactional_id``. librdkafka's default partitioner (``consistent_random``, a
    CRC32 of the key) is not Java's murmur2: a stream's frames still share one
    partition, which is all the worker needs."""
    from confluent_kafka import KafkaError, Producer

    config: dict[str, Any] = {
        "bootstrap.servers": broker,
        "compression.type": codec,
        "enable.idempotence": True,
        "linger.ms": 0,
        "message.max.bytes": 4 * 1024 * 1024,
    }
    if transaction is not None:
        assert transactional_id, "a transaction needs a transactional id"
        config["transactional.id"] = transactional_id
    producer = Producer(config)
    written: list[Written] = []
    errors: list[str] = []

    def report(r: RdRecord) -> Any:
        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                errors.append(f"{r.what}: {err}")
            else:
                written.append(
                    Written("rdkafka", r.what, r.topic, msg.partition(), msg.offset(), r.key)
                )

        return on_delivery

    if transaction is not None:
        producer.init_transactions(30)
        producer.begin_transaction()
    for r in records:
        producer.produce(r.topic, r.value, r.key, headers=list(r.headers), on_delivery=report(r))
        left = producer.flush(30)
        assert left == 0 and not errors, f"librdkafka did not deliver: {errors or left}"
    if transaction == "commit":
        producer.commit_transaction(30)
    elif transaction == "abort":
        producer.abort_transaction(30)
    assert len(written) == len(records), f"{len(written)} of {len(records)} delivered"
    return written


# -- a plain ProduceRequest ----------------------------------------------------------------

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # batch attributes


def produce_bad_name(
    broker: str,
    topic: str,
    key: bytes,
    value: bytes | None,
    headers: Sequence[Header],
    *,
    codec: str,
    what: str,
) -> Written:
    """One record whose extra header name is not UTF-8, in a ``codec``-compressed batch
    built with aiokafka's encoder and sent as a plain ProduceRequest
    (``tests/support/record_batches.py``): no producer API compresses such a name."""
    from tests.support.record_batches import build_batch, compress, produce_batch, with_bad_name

    raw = with_bad_name(build_batch(0, [(key, value, [*headers, ("BADNAME!", b"1")])]))
    partition = partition_of(key, len(end_offsets(broker, topic)))
    offset = asyncio.run(produce_batch(broker, topic, partition, compress(raw, CODEC_IDS[codec])))
    return Written("ProduceRequest", f"{what}, {codec}", topic, partition, offset, key)


# -- frames -----------------------------------------------------------------------------


def frame_record(frame: AudioFrame) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    key, value, headers = encode_frame(frame)
    return key, value, list(headers)
