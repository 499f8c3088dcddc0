"""The poison corpus: hostile records on the audio topic while real streams flow.

Every real stream's events and summary must arrive exactly as the pipeline computes
them; every hostile record must be accounted for: a dead letter at its topic/
partition/offset with a documented reason, or (when the mutation happens to leave a
valid frame) the summary of the stream it opened. No worker may stop.

The hostile records are issue 11's classes, written by hand, plus hypothesis-made
mutations of a valid frame's key, headers and payload (``derandomize``: the same
corpus every run). ``TYMPAN_TEST_SCALE=full`` sends 100,000 of them and states the
workers' RSS.

Classes the domain core fixes (huge seq, huge frames after a gap, an EOS after a
higher seq, a flood of one-frame streams) have their own test.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from checker import TopicTail, check_outcome, rss_mb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario import FULL, Scenario
from worker_harness import REPO

from stream.kafka.topics import Topics
from stream.wire import AudioFrame, Encoding, encode_frame

N_MUTATED = 100_000 if FULL else 600
N_DISTINCT = 2_000 if FULL else 300  # hypothesis examples; the rest reuse them, new keys
# a one-frame stream without EOS closes after this (no fault here: no replay). At full
# scale the backlog of hostile records delays a real stream's next frame by minutes of
# wall clock, and idle closing is still wall-clock (issue 11 finding 5, domain core)
IDLE_S = "180" if FULL else "10"
Header = tuple[str, bytes]


def documented_reasons() -> set[str]:
    """Dead-letter reasons named in the docs' reason tables (wire format, events,
    delivery): a dead letter with any other reason breaks the contract."""
    reasons: set[str] = set()
    for doc in ("wire-format.md", "events.md", "delivery.md"):
        text = (REPO / "docs" / doc).read_text()
        reasons |= set(re.findall(r"^\| `([a-z][a-z0-9_]*)` \|", text, flags=re.M))
    return reasons


@dataclass(frozen=True)
class Hostile:
    key: bytes
    value: bytes
    headers: tuple[Header, ...]


def _frame(sid: str, seq: int, payload: bytes, *, rate: int = 16000, eos: bool = False) -> Hostile:
    frame = AudioFrame(
        sid, seq, rate, Encoding.PCM_S16LE, 1, 1_700_000_000_000_000 + seq, eos, payload
    )
    key, value, headers = encode_frame(frame)
    return Hostile(key, value, tuple(headers))


def _with_header(h: Hostile, name: str, value: bytes) -> Hostile:
    headers = tuple((k, value if k == name else v) for k, v in h.headers)
    return Hostile(h.key, h.value, headers)


SILENCE = b"\0\0" * 320  # 20 ms at 16 kHz


def runtime_classes(tag: str) -> list[Hostile]:
    """Hand-written classes the runtime must survive: over-size records whose dead
    letter would exceed the producer's limit (finding 1), and the wire format's
    refusals."""
    return [
        # 900 KB, odd length: bad_payload_length, dead letter over 1 MB in base64
        Hostile(f"{tag}-huge".encode(), b"\1" * 900_001, _frame("x", 0, SILENCE).headers),
        # a 600 KB header value: invalid_header, headers truncated in the dead letter
        _with_header(_frame(f"{tag}-hdr", 0, SILENCE), "seq", b"9" * 600_000),
        Hostile(b"k" * 300, SILENCE, _frame("x", 0, SILENCE).headers),  # bad_key
        Hostile(b"", SILENCE, _frame("x", 0, SILENCE).headers),  # missing_key
        _with_header(_frame(f"{tag}-rate", 0, SILENCE), "rate", b"1"),  # bad_rate
        _with_header(_frame(f"{tag}-enc", 0, SILENCE), "encoding", b"opus"),
        _with_header(_frame(f"{tag}-ver", 0, SILENCE), "tympan-version", b"2"),
        _with_header(_frame(f"{tag}-big", 0, SILENCE), "seq", b"9" * 40),
        Hostile(f"{tag}-nohdr".encode(), SILENCE, ()),  # missing_header
    ]


def domain_classes(tag: str, flood: int) -> list[Hostile]:
    """Issue 11's classes that the domain core bounds (findings 2, 6, 7 and the huge seq)."""
    out = [
        _frame(f"{tag}-seq", 0, SILENCE),
        _frame(f"{tag}-seq", 10**18, SILENCE),  # huge seq after a normal first frame
        _frame(f"{tag}-gap", 0, b"\0\0" * 80, rate=4000),
        _frame(f"{tag}-gap", 49, b"\0\0" * 400_000, rate=4000),  # huge frame after a gap
        _frame(f"{tag}-eos", 0, SILENCE),
        _frame(f"{tag}-eos", 1, SILENCE),
        _frame(f"{tag}-eos", 3, SILENCE),
        _frame(f"{tag}-eos", 2, SILENCE, eos=True),  # EOS after a higher seq
    ]
    out += [_frame(f"{tag}-flood-{i}", 0, SILENCE) for i in range(flood)]  # one-frame streams
    return out


# -- hypothesis mutations ---------------------------------------------------------------

_HEADER_NAMES = ("tympan-version", "seq", "rate", "encoding", "channels", "capture-us", "eos")
_values = st.one_of(
    st.binary(max_size=24),
    st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b"0", b"1", b"-1", b"pcm_f32le", b"mulaw", b"16000", b"8"]),
)
_ops = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(_HEADER_NAMES), st.just(b"")),
    st.tuples(st.just("set"), st.sampled_from(_HEADER_NAMES), _values),
    st.tuples(st.just("dup"), st.sampled_from(_HEADER_NAMES), _values),
    st.tuples(st.just("add"), st.text(max_size=8), _values),
)
_payloads = st.one_of(
    st.just(SILENCE),
    st.binary(max_size=1200),
    st.integers(0, len(SILENCE)).map(lambda n: SILENCE[:n]),
)
_keys = st.one_of(st.just(None), st.binary(max_size=40))  # None: a fresh valid key


def _mutate(base: Hostile, ops: Iterable[tuple[str, str, bytes]]) -> tuple[Header, ...]:
    headers = list(base.headers)
    for op, name, value in ops:
        if op == "drop":
            headers = [(k, v) for k, v in headers if k != name]
        elif op == "set":
            headers = [(k, value if k == name else v) for k, v in headers]
        else:  # dup / add
            headers.append((name, value))
    return tuple(headers)


def mutations(n_distinct: int) -> list[tuple[bytes | None, bytes, tuple[Header, ...]]]:
    """``n_distinct`` hypothesis-made mutations of a valid frame (``key`` ``None``:
    keep a valid, fresh key)."""
    base = _frame("m", 0, SILENCE)
    out: list[tuple[bytes | None, bytes, tuple[Header, ...]]] = []

    @settings(
        max_examples=n_distinct,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_keys, _payloads, st.lists(_ops, min_size=0, max_size=3))
    def collect(key: bytes | None, payload: bytes, ops: list[tuple[str, str, bytes]]) -> None:
        out.append((key, payload, _mutate(base, ops)))

    collect()
    return out


def corpus(tag: str, n: int, n_distinct: int) -> list[Hostile]:
    distinct = mutations(n_distinct)
    out = runtime_classes(tag)
    i = 0
    while len(out) < n:
        key, payload, headers = distinct[i % len(distinct)]
        fresh = f"{tag}-m{i}".encode()
        out.append(Hostile(fresh if key is None or i >= len(distinct) else key, payload, headers))
        i += 1
    return out


# -- sending and accounting ------------------------------------------------------------


async def _send_hostile(broker: str, topic: str, records: list[Hostile]) -> list[tuple[int, int]]:
    """Send in order; return each record's ``(partition, offset)``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", max_request_size=2 * 1024 * 1024, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, r.value, key=r.key, headers=list(r.headers)) for r in records
        ]
        metas = await asyncio.gather(*futures)
        return [(m.partition, m.offset) for m in metas]
    finally:
        await producer.stop()


def _unaccounted(
    dead_tail: TopicTail,
    summary_tail: TopicTail,
    records: list[Hostile],
    where: list[tuple[int, int]],
) -> list[tuple[Hostile, tuple[int, int]]]:
    dead = {(d["partition"], d["offset"]) for d in dead_tail.poll()}
    closed = {s["stream_id"] for s in summary_tail.poll()}
    missing = []
    for record, at in zip(records, where, strict=True):
        if at in dead:
            continue
        if record.key.decode("utf-8", errors="replace") in closed:
            continue
        missing.append((record, at))
    return missing


def _run_corpus(
    broker: str, topics: Topics, tmp_path: Path, name: str, hostile: list[Hostile], **kw: Any
) -> None:
    run = Scenario(broker, topics, tmp_path, 4, 6.0, name)
    assert run.farm is not None and run.monitor is not None
    run.spawn("--idle-timeout-s", IDLE_S, *kw.get("flags", ()))
    run.spawn("--idle-timeout-s", IDLE_S, *kw.get("flags", ()))
    feeder = run.feeder(slices=4, pause_s=0.5)
    where: list[tuple[int, int]] = []
    reasons = documented_reasons()
    dead_tail = TopicTail(broker, topics.rejected)
    summary_tail = TopicTail(broker, topics.summaries)
    real = {f"{name}-{i}" for i in range(4)}
    try:
        with run.monitor:
            run.start(feeder)
            rss_before = max(filter(None, (rss_mb(w) for w in run.farm.workers)), default=0.0)
            sender = threading.Thread(
                target=lambda: where.extend(
                    asyncio.run(_send_hostile(broker, topics.audio, hostile))
                )
            )
            sender.start()
            feeder.finish()
            sender.join(1200)
            assert len(where) == len(hostile), "the hostile records were not all sent"

            outcome = check_outcome(
                broker=broker,
                topics=topics,
                farm=run.farm,
                monitor=run.monitor,
                expected_labels=run.expected_labels,
                expected_summaries=run.expected_summaries,
                dead_letter_ok=lambda d: d["reason"] in reasons and d["stream_id"] not in real,
                only_streams=real,
                name=name,
                timeout_s=kw.get("timeout_s", 900 if FULL else 240),
                ready=lambda: not _unaccounted(dead_tail, summary_tail, hostile, where),
            )
            missing = _unaccounted(dead_tail, summary_tail, hostile, where)
            assert not missing, (
                f"{len(missing)} hostile records not accounted for, e.g. "
                f"{[(m.key[:40], m.headers[:3], at) for m, at in missing[:3]]}"
            )
            for worker in run.farm.workers:
                assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        print(
            f"[faults] {name}: hostile_records={len(hostile)} real_windows={outcome.windows} "
            f"dead_letters={outcome.dead_letters} rss_before_mb={rss_before:.0f} "
            f"max_rss_mb={outcome.max_rss_mb:.0f}"
        )
    finally:
        run.farm.stop_all()
        dead_tail.close()
        summary_tail.close()


@pytest.mark.timeout(3600 if FULL else 600)
def test_poison_corpus(broker: str, topics: Topics, tmp_path: Path) -> None:
    hostile = corpus("poison", N_MUTATED, N_DISTINCT)
    _run_corpus(broker, topics, tmp_path, "poison", hostile)


def test_poison_classes_of_the_domain_core(broker: str, topics: Topics, tmp_path: Path) -> None:
    hostile = domain_classes("dom", flood=120)
    _run_corpus(
        broker,
        topics,
        tmp_path,
        "dom",
        hostile,
        flags=("--max-streams", "60"),
        timeout_s=240 if FULL else 90,
    )
