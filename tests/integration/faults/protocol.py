"""What the Kafka-protocol fault suite writes, and how each record is accounted for
(issue 23, item 8).

Every record here is written by a real client (``clients.py``): Kafka's console
producer, Kafka's Java producer, aiokafka. Each has an expectation:

* ``events``: it belongs to a stream whose events the pipeline computes from the same
  frames (``expected_events``), checked exactly by ``check_outcome``;
* ``dead``: a dead letter at its topic/partition/offset with exactly the reason
  ``stream.wire.decode_frame`` gives for the same key, value and headers;
* ``dead_or_events``: a record within the limits of the wire format whose size or
  header bytes a deployment may bound (10^5 headers, a header name that is not
  UTF-8): a dead letter at its offset with a documented reason, or its stream's
  summary;
* ``invisible``: written in a transaction that aborted: no event, no dead letter.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients import (
    CODECS,
    PLACEHOLDER,
    AioRecord,
    ConsoleRecord,
    JavaJob,
    JavaRecord,
    RdRecord,
    Written,
    aiokafka_produce,
    console_produce,
    frame_record,
    java_produce,
    produce_bad_name,
    rdkafka_produce,
)

from stream.errors import FrameError
from stream.wire import AudioFrame, Encoding, decode_frame

LONG_MAX = 2**63 - 1
START_US = 1_700_000_000_000_000
HEADER_FLOOD = 100_000
# printable ASCII without the console producer's separators: text a console can type
_TEXT = bytes(sorted(set(range(0x21, 0x7F)) - set(b",:\\")))


@dataclass(frozen=True)
class Expect:
    """What must become of one written record."""

    written: Written
    kind: str  # events | dead | dead_or_events | invisible
    reason: str | None = None  # for ``dead``
    stream_id: str | None = None


@dataclass
class Plan:
    """Streams whose events are expected, and every record written."""

    good: dict[str, list[AudioFrame]] = field(default_factory=dict)
    expect: list[Expect] = field(default_factory=list)

    def add_good(self, frames: list[AudioFrame]) -> list[AudioFrame]:
        self.good[frames[0].stream_id] = frames
        return frames


def text_stream(
    stream_id: str, *, seconds: float, seed: int, chunk_ms: int = 100
) -> list[AudioFrame]:
    """A 16 kHz PCM stream whose payload is printable ASCII (a console producer can
    type it), ``eos`` on its last frame."""
    rng = random.Random(seed)
    n = round(seconds * 1000 / chunk_ms)
    size = 16 * chunk_ms * 2
    return [
        AudioFrame(
            stream_id,
            seq,
            16000,
            Encoding.PCM_S16LE,
            1,
            START_US + seq * chunk_ms * 1000,
            seq == n - 1,
            bytes(rng.choice(_TEXT) for _ in range(size)),
        )
        for seq in range(n)
    ]


def one_frame(stream_id: str, seed: int) -> AudioFrame:
    return text_stream(stream_id, seconds=0.1, seed=seed)[0]


def _expect_decoded(
    w: Written, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]
) -> Expect:
    """``dead`` with the wire format's reason for these bytes (a frame that decodes is
    not poison and belongs in ``Plan.good``)."""
    try:
        decode_frame(w.key, value, headers)  # type: ignore[arg-type]
    except FrameError as exc:
        return Expect(w, "dead", exc.reason)
    raise AssertionError(f"{w} is a valid frame: put it in the plan's good streams")


def _with(
    headers: list[tuple[str, bytes]], name: str, value: bytes | None
) -> list[tuple[str, bytes | None]]:
    return [(k, value if k == name else v) for k, v in headers]


def dead_letter_spans(dead: Iterable[dict[str, Any]]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Each dead letter by every ``(topic, partition, offset)`` it accounts for: its own
    offset, or every offset of the range its message names (``offsets 12..15``: a
    batch skipped below the record format is one dead letter for all its offsets)."""
    out: dict[tuple[str, int, int], dict[str, Any]] = {}
    for d in dead:
        first, last = d["offset"], d["offset"]
        span = re.search(rf"partition {d['partition']} offsets {first}\.\.(\d+)", d["message"])
        if span:
            last = int(span.group(1))
        for offset in range(first, last + 1):
            out.setdefault((d["topic"], d["partition"], offset), d)
    return out


def logged_spans(log: str, topic: str) -> list[tuple[int, int, int]]:
    """``(partition, first, last)`` of every record of ``topic`` a log line names
    (``topic 't' partition 0 offset 42`` or ``... offsets 40..45``)."""
    pattern = rf"topic {re.escape(repr(topic))} partition (\d+) offsets? (\d+)(?:\.\.(\d+))?"
    return [(int(p), int(a), int(b or a)) for p, a, b in re.findall(pattern, log)]


# -- the console producer ---------------------------------------------------------------


def console_writes(broker: str, topic: str, plan: Plan, codecs: Sequence[str] = CODECS) -> None:
    """Per codec, one run: a good stream; a frame whose ``seq`` header is null; a
    non-EOS frame with a null value; a one-frame stream with an unknown header whose
    value is null."""
    for i, codec in enumerate(codecs):
        tag = f"kp-con-{codec}"
        good = plan.add_good(text_stream(tag, seconds=2.0, seed=100 + i))
        records = [ConsoleRecord(*frame_record(f), what=f"{tag} stream") for f in good]
        kinds = [("events", tag)] * len(good)
        k, v, h = frame_record(one_frame(f"{tag}-nullseq", i))
        records.append(ConsoleRecord(k, v, _with(h, "seq", None), f"{tag}: null seq header"))
        kinds.append(("dead", ""))
        k, _, h = frame_record(text_stream(f"{tag}-nullvalue", seconds=0.2, seed=i)[0])
        records.append(ConsoleRecord(k, None, h, f"{tag}: null value, not eos"))
        kinds.append(("dead", ""))
        frame = plan.add_good([one_frame(f"{tag}-nullattr", i)])[0]
        k, v, h = frame_record(frame)
        records.append(ConsoleRecord(k, v, [*h, ("x-trace", None)], f"{tag}: null unknown header"))
        kinds.append(("events", frame.stream_id))
        written = console_produce(broker, topic, records, codec=codec)
        _account(plan, written, records, kinds)


def _account(
    plan: Plan,
    written: Sequence[Written],
    records: Sequence[ConsoleRecord | JavaRecord | AioRecord | RdRecord],
    kinds: Sequence[tuple[str, str]],
) -> None:
    for w, r, (kind, sid) in zip(written, records, kinds, strict=True):
        if kind == "dead":
            plan.expect.append(_expect_decoded(w, r.value, r.headers))
        else:
            plan.expect.append(Expect(w, kind, stream_id=sid))


# -- Kafka's Java producer --------------------------------------------------------------


def java_writes(broker: str, topic: str, plan: Plan, codecs: Sequence[str] = CODECS) -> None:
    """Per codec: a good stream whose first and last records carry timestamps 0 and
    2^63 - 1; a one-frame stream with 10^5 more headers; a one-frame stream with a
    binary and a null unknown header; a tombstone without a key."""
    jobs: list[JavaJob] = []
    kinds: list[tuple[str, str]] = []  # (expectation, stream id) per record, in job order
    for i, codec in enumerate(codecs):
        tag = f"kp-java-{codec}"
        config = {"compression.type": codec}
        good = plan.add_good(text_stream(tag, seconds=2.0, seed=200 + i))
        records = []
        for f in good:
            k, v, h = frame_record(f)
            stamp = 0 if f.seq == 0 else LONG_MAX if f.eos else None
            records.append(JavaRecord(topic, k, v, h, what=f"{tag} stream", timestamp_ms=stamp))
            kinds.append(("events", tag))
        flood = one_frame(f"{tag}-flood", i)
        k, v, h = frame_record(flood)
        records.append(JavaRecord(topic, k, v, h, what=f"{tag}: 10^5 headers", flood=HEADER_FLOOD))
        kinds.append(("dead_or_events", flood.stream_id))
        odd = plan.add_good([one_frame(f"{tag}-binhdr", i)])[0]
        k, v, h = frame_record(odd)
        hdrs = [*h, ("x-bin", b"\xff\x00\x80"), ("x-null", None)]
        records.append(
            JavaRecord(topic, k, v, hdrs, what=f"{tag}: binary and null unknown headers")
        )
        kinds.append(("events", odd.stream_id))
        records.append(JavaRecord(topic, None, None, (), what=f"{tag}: keyless tombstone"))
        kinds.append(("dead", ""))
        jobs.append(JavaJob(records, config))
    written = java_produce(broker, jobs)
    _account(plan, written, [r for job in jobs for r in job.records], kinds)


def java_transactions(broker: str, topic: str, plan: Plan, codecs: Sequence[str] = CODECS) -> None:
    """Per codec, a stream in a transaction that aborts; then one in a transaction that
    commits. Written last, so that transaction markers end their partitions: the
    group's committed offsets must still reach each partition's end."""
    jobs: list[JavaJob] = []
    kinds: list[tuple[str, str]] = []
    for i, codec in enumerate(codecs):
        tag = f"kp-java-{codec}"
        aborted = text_stream(f"{tag}-aborted", seconds=0.5, seed=300 + i)
        records = [JavaRecord(topic, *frame_record(f), what=f"{tag}: aborted") for f in aborted]
        txn = {"compression.type": codec, "transactional.id": f"{topic}-{tag}-aborted"}
        jobs.append(JavaJob(records, txn, transaction="abort"))
        kinds += [("invisible", f.stream_id) for f in aborted]
    committed = plan.add_good(text_stream("kp-java-txn", seconds=1.0, seed=399))
    records = [JavaRecord(topic, *frame_record(f), what="committed") for f in committed]
    jobs.append(JavaJob(records, {"transactional.id": f"{topic}-kp-java-txn"}, "commit"))
    kinds += [("events", "kp-java-txn")] * len(committed)
    written = java_produce(broker, jobs)
    _account(plan, written, [r for job in jobs for r in job.records], kinds)


# -- aiokafka ---------------------------------------------------------------------------


def aiokafka_writes(broker: str, topic: str, plan: Plan, codecs: Sequence[str] = CODECS) -> None:
    """Per codec: a good stream; a null ``seq`` header; a tombstone with its key and
    no headers; a tombstone without a key; a one-frame stream with a null unknown
    header; a one-frame stream whose header name is not UTF-8, in a batch sent as a
    plain ProduceRequest. Uncompressed, the same sent by aiokafka's producer.
    (aiokafka refuses to send a record with neither key nor value: Java sends those.)"""
    for i, codec in enumerate(codecs):
        tag = f"kp-aio-{codec}"
        good = plan.add_good(text_stream(tag, seconds=2.0, seed=400 + i))
        records = [AioRecord(topic, *frame_record(f), what=f"{tag} stream") for f in good]
        kinds: list[tuple[str, str]] = [("events", tag)] * len(good)
        k, v, h = frame_record(one_frame(f"{tag}-nullseq", i))
        records.append(
            AioRecord(topic, k, v, _with(h, "seq", None), what=f"{tag}: null seq header")
        )
        kinds.append(("dead", ""))
        records.append(AioRecord(topic, f"{tag}-tomb".encode(), None, (), what=f"{tag}: tombstone"))
        kinds.append(("dead", ""))
        nullattr = plan.add_good([one_frame(f"{tag}-nullattr", i)])[0]
        k, v, h = frame_record(nullattr)
        records.append(
            AioRecord(topic, k, v, [*h, ("x-null", None)], what=f"{tag}: null unknown header")
        )
        kinds.append(("events", nullattr.stream_id))
        if codec == "none":
            badname = one_frame(f"{tag}-badname", i)
            k, v, h = frame_record(badname)
            records.append(
                AioRecord(
                    topic,
                    k,
                    v,
                    [*h, (PLACEHOLDER, b"1")],
                    what=f"{tag}: header name not UTF-8",
                    raw_header_name=b"\xff\xfe\xc3(" + b"n" * (len(PLACEHOLDER) - 4),
                )
            )
            kinds.append(("dead_or_events", badname.stream_id))
        written = aiokafka_produce(broker, records, codec=codec)
        _account(plan, written, records, kinds)
        plan.expect.append(_raw_bad_name(broker, topic, f"{tag}-rawname", i, codec))


def _raw_bad_name(broker: str, topic: str, stream_id: str, seed: int, codec: str) -> Expect:
    k, v, h = frame_record(one_frame(stream_id, seed))
    w = produce_bad_name(broker, topic, k, v, h, codec=codec, what=f"{stream_id}: name not UTF-8")
    return Expect(w, "dead_or_events", stream_id=stream_id)


# -- librdkafka -------------------------------------------------------------------------


def rdkafka_writes(broker: str, topic: str, plan: Plan, codecs: Sequence[str] = CODECS) -> None:
    """Per codec, from an idempotent librdkafka producer: a good stream; a one-frame
    stream with a null and an empty-named unknown header; a frame that sends ``seq``
    twice; a null ``seq`` header; a tombstone with its key. Then a stream in a
    librdkafka transaction that aborts, between records that stay visible."""
    for i, codec in enumerate(codecs):
        tag = f"kp-rd-{codec}"
        good = plan.add_good(text_stream(tag, seconds=2.0, seed=500 + i))
        records = [RdRecord(topic, *frame_record(f), what=f"{tag} stream") for f in good]
        kinds: list[tuple[str, str]] = [("events", tag)] * len(good)
        odd = plan.add_good([one_frame(f"{tag}-oddhdr", i)])[0]
        k, v, h = frame_record(odd)
        hdrs = [*h, ("x-null", None), ("", b"empty name")]
        records.append(RdRecord(topic, k, v, hdrs, what=f"{tag}: null and empty-named headers"))
        kinds.append(("events", odd.stream_id))
        k, v, h = frame_record(one_frame(f"{tag}-twoseq", i))
        records.append(RdRecord(topic, k, v, [*h, ("seq", b"1")], what=f"{tag}: seq twice"))
        kinds.append(("dead", ""))
        k, v, h = frame_record(one_frame(f"{tag}-nullseq", i))
        records.append(RdRecord(topic, k, v, _with(h, "seq", None), what=f"{tag}: null seq"))
        kinds.append(("dead", ""))
        records.append(RdRecord(topic, f"{tag}-tomb".encode(), None, (), what=f"{tag}: tombstone"))
        kinds.append(("dead", ""))
        written = rdkafka_produce(broker, records, codec=codec)
        _account(plan, written, records, kinds)
    aborted = text_stream("kp-rd-aborted", seconds=0.5, seed=599)
    records = [RdRecord(topic, *frame_record(f), what="kp-rd: aborted") for f in aborted]
    written = rdkafka_produce(
        broker, records, codec="lz4", transaction="abort", transactional_id=f"{topic}-kp-rd"
    )
    plan.expect.extend(
        Expect(w, "invisible", stream_id=f.stream_id) for w, f in zip(written, aborted, strict=True)
    )
