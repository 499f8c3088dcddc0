"""``tympan worker`` end to end on the real broker: concurrent streams in every
encoding, shuffled and duplicated frames, garbage records.

One worker run (module fixture) serves every test here, to keep the suite fast; each
test checks one promise against what the worker wrote to Kafka.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import produce_records
from worker_harness import (
    TYMPAN,
    WorkerFarm,
    assert_same_events,
    by_id,
    comparable,
    expected_events,
    interleave,
    module_topics,
    produce,
    stream_frames,
    tiny_model,
    wait_for_count,
    wait_for_ids,
    wait_until_committed,
)

from stream.kafka.topics import Topics
from stream.wire import AudioFrame, Encoding

STREAMS: dict[str, dict[str, Any]] = {
    "s16-16k-loud": {"loud": True, "sr": 16000, "encoding": Encoding.PCM_S16LE},
    "s16-16k-quiet": {"loud": False, "sr": 16000, "encoding": Encoding.PCM_S16LE},
    "mulaw-8k-loud": {"loud": True, "sr": 8000, "encoding": Encoding.MULAW},
    "alaw-8k-quiet": {"loud": False, "sr": 8000, "encoding": Encoding.ALAW},
    "f32-44k-stereo-loud": {
        "loud": True,
        "sr": 44100,
        "encoding": Encoding.PCM_F32LE,
        "channels": 2,
    },
}
SHUFFLED = "s16-16k-shuffled"
SECONDS = 3.0

GOOD_HEADERS = [
    ("tympan-version", b"1"),
    ("seq", b"0"),
    ("rate", b"16000"),
    ("encoding", b"pcm_s16le"),
    ("channels", b"1"),
    ("capture-us", b"1700000000000000"),
]


def _headers(**changes: bytes | None) -> list[tuple[str, bytes]]:
    out = []
    for name, value in GOOD_HEADERS:
        key = name.replace("-", "_")
        if key in changes:
            if changes[key] is not None:
                out.append((name, changes[key]))
        else:
            out.append((name, value))
    return out  # type: ignore[return-value]


# (key, value, headers, expected reason)
GARBAGE: list[tuple[bytes | None, bytes, list[tuple[str, bytes]], str]] = [
    (None, b"\x00\x00" * 160, _headers(), "missing_key"),
    (b"garbage-odd", b"\x00" * 321, _headers(), "bad_payload_length"),
    (b"garbage-noseq", b"\x00\x00" * 160, _headers(seq=None), "missing_header"),
    (b"garbage-enc", b"\x00\x00" * 160, _headers(encoding=b"mp3"), "unknown_encoding"),
    (
        b"garbage-nan",
        b"\x00\x00\xc0\x7f" * 160,
        _headers(encoding=b"pcm_f32le"),
        "non_finite",
    ),
    (b"garbage-rate", b"\x00\x00" * 160, _headers(rate=b"12"), "bad_rate"),
    (b"garbage-empty", b"", _headers(), "empty_payload"),
]


def _shuffled(frames: list[AudioFrame], seed: int) -> list[AudioFrame]:
    """Shuffle within blocks of 4 (inside the reorder window) and repeat some frames."""
    rng = random.Random(seed)
    out: list[AudioFrame] = []
    for i in range(0, len(frames), 4):
        block = frames[i : i + 4]
        rng.shuffle(block)
        out.extend(block)
    for _ in range(12):
        j = rng.randrange(len(out) - 20)
        out.insert(j + rng.randrange(1, 6), out[j])
    return out


@dataclass
class Run:
    broker: str
    topics: Topics
    expected_labels: dict[str, dict[str, Any]]
    expected_summaries: dict[str, dict[str, Any]]
    labels: list[dict[str, Any]]
    summaries: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    farm: WorkerFarm


@pytest.fixture(scope="module")
def run(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("worker-streams")
    with module_topics(broker, "worker-streams") as topics:
        model_dir = tiny_model(Path(tmp) / "model")
        farm = WorkerFarm(broker, topics, model_dir, Path(tmp))
        try:
            farm.spawn()
            ordered = {
                sid: stream_frames(sid, seconds=SECONDS, seed=i, **kw)
                for i, (sid, kw) in enumerate(STREAMS.items())
            }
            ordered[SHUFFLED] = stream_frames(SHUFFLED, seconds=SECONDS, loud=True, seed=99)
            expected_labels, expected_summaries = expected_events(model_dir, list(ordered.values()))
            sent = dict(ordered)
            sent[SHUFFLED] = _shuffled(ordered[SHUFFLED], seed=7)
            produce(broker, topics, interleave(list(sent.values())))
            for key, value, headers, _ in GARBAGE:
                produce_records(broker, topics.audio, [(key, value)], headers=headers)

            summaries = wait_for_count(
                broker,
                topics.summaries,
                len(sent),
                timeout_s=120,
                what=f"{len(sent)} summaries",
                farm=farm,
            )
            labels = wait_for_ids(
                broker,
                topics.labels,
                expected_labels,
                what="every expected label event",
                farm=farm,
            )
            rejected = wait_for_count(
                broker,
                topics.rejected,
                len(GARBAGE),
                timeout_s=30,
                what=f"{len(GARBAGE)} dead letters",
                farm=farm,
            )
            yield Run(
                broker,
                topics,
                expected_labels,
                expected_summaries,
                labels,
                summaries,
                rejected,
                farm,
            )
        finally:
            farm.stop_all()


def test_every_stream_gets_its_label_in_every_encoding(run: Run) -> None:
    verdicts = {s["stream_id"]: s["dominant_label"] for s in run.summaries}
    for sid, kw in STREAMS.items():
        assert verdicts[sid] == ("loud" if kw["loud"] else "quiet"), sid
    for event in run.labels:
        assert event["label"] == ("loud" if "loud" in event["stream_id"] else "quiet") or (
            event["stream_id"] == SHUFFLED and event["label"] == "loud"
        ), event


def test_label_events_equal_the_synchronous_pipeline(run: Run) -> None:
    assert_same_events(run.labels, run.expected_labels)


def test_summaries_describe_each_whole_stream(run: Run) -> None:
    got = by_id(run.summaries)
    assert set(got) == set(run.expected_summaries)
    for eid, expected in run.expected_summaries.items():
        for summary in got[eid]:
            assert summary["closed_by"] == "eos"
            assert summary["duration_s"] == pytest.approx(SECONDS, abs=0.01)
            assert summary["timeline"][0]["start_s"] == 0.0
            if summary["stream_id"] != SHUFFLED:
                assert comparable(summary) == comparable(expected)


def test_shuffled_and_duplicated_frames_give_the_ordered_events(run: Run) -> None:
    shuffled = [e for e in run.labels if e["stream_id"] == SHUFFLED]
    expected = [e for e in run.expected_labels.values() if e["stream_id"] == SHUFFLED]
    assert sorted(map(str, map(comparable, shuffled))) == sorted(
        map(str, map(comparable, expected))
    )
    (summary,) = [s for s in run.summaries if s["stream_id"] == SHUFFLED]
    assert summary["counts"]["duplicates"] > 0
    assert summary["counts"]["gaps"] == 0
    (want,) = [s for s in run.expected_summaries.values() if s["stream_id"] == SHUFFLED]
    assert comparable({**summary, "counts": {}}) == comparable({**want, "counts": {}})


def test_garbage_records_are_dead_lettered_with_reasons(run: Run) -> None:
    reasons = sorted(r["reason"] for r in run.rejected)
    assert reasons == sorted(reason for *_, reason in GARBAGE)
    by_key = {r["stream_id"]: r for r in run.rejected}
    odd = by_key["garbage-odd"]
    assert odd["payload_bytes"] == 321
    assert {h["key"] for h in odd["headers"]} == {name for name, _ in GOOD_HEADERS}
    assert odd["topic"] == run.topics.audio
    assert by_key[None]["reason"] == "missing_key"


def test_offsets_are_committed_once_every_stream_is_delivered(run: Run) -> None:
    # every stream ended and every dead letter was delivered: nothing is pinned, so
    # the group's committed offsets reach the end of the audio topic
    wait_until_committed(
        run.broker, run.topics, run.farm, what="committed offsets at the end of the audio topic"
    )
    assert "Traceback" not in run.farm.workers[0].log_text()


def test_garbage_does_not_disturb_other_streams(run: Run) -> None:
    assert {s["stream_id"] for s in run.summaries} == {*STREAMS, SHUFFLED}
    for summary in run.summaries:
        assert summary["counts"]["rejected"] == 0


def _tail(run: Run, *args: str) -> list[str]:
    out = subprocess.run(
        [str(TYMPAN), "tail", "--broker", run.broker, "--topic-prefix", run.topics.prefix, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.splitlines()


def test_tail_prints_events_as_json_lines_and_as_a_table(run: Run) -> None:
    n = len(run.summaries)
    lines = _tail(run, "--topic", "summaries", "--from-beginning", "--json", "--max", str(n))
    assert sorted(json.loads(line)["event_id"] for line in lines) == sorted(
        s["event_id"] for s in run.summaries
    )
    table = _tail(run, "--topic", "rejected", "--from-beginning", "--idle-exit", "2")
    assert table[0].split()[:2] == ["stream", "reason"]
    assert len(table) == 1 + len(run.rejected)
    assert any("bad_payload_length" in row and "garbage-odd" in row for row in table[1:])
