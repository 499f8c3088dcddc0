"""At-least-once across a crash: a worker SIGKILLed mid-stream and restarted loses no
window, and every duplicate it re-emits carries the same id and the same content."""

from __future__ import annotations

from pathlib import Path

from worker_harness import (
    WorkerFarm,
    assert_same_events,
    comparable,
    expected_events,
    interleave,
    produce,
    read_json,
    stream_frames,
    tiny_model,
    wait_for_count,
    wait_for_ids,
    wait_until_committed,
)

from stream.kafka.topics import Topics

SECONDS = 12.0


def test_sigkill_mid_stream_loses_no_window(broker: str, topics: Topics, tmp_path: Path) -> None:
    model_dir = tiny_model(tmp_path / "model")
    streams = [
        stream_frames(f"call-{i}", seconds=SECONDS, loud=i % 2 == 0, seed=i) for i in range(4)
    ]
    expected_labels, expected_summaries = expected_events(model_dir, streams)
    cut = [len(s) * 3 // 5 for s in streams]
    first = [s[:c] for s, c in zip(streams, cut, strict=True)]
    rest = [s[c:] for s, c in zip(streams, cut, strict=True)]

    farm = WorkerFarm(broker, topics, model_dir, tmp_path)
    try:
        victim = farm.spawn()
        produce(broker, topics, interleave(first))
        wait_for_count(
            broker,
            topics.labels,
            12,
            timeout_s=90,
            what="label events before the kill",
            farm=farm,
        )
        victim.kill()  # mid-stream: no stream has reached its EOS frame yet
        assert read_json(broker, topics.summaries) == []
        produce(broker, topics, interleave(rest))
        survivor = farm.spawn()

        summaries = wait_for_count(
            broker,
            topics.summaries,
            4,
            timeout_s=120,
            what="4 summaries after the restart",
            farm=farm,
        )
        labels = wait_for_ids(
            broker, topics.labels, expected_labels, what="every window's label event", farm=farm
        )
        wait_until_committed(
            broker,
            topics,
            farm,
            what="offsets committed to the end once every stream is delivered",
        )
        assert "Traceback" not in survivor.log_text()
    finally:
        farm.stop_all()

    got = assert_same_events(labels, expected_labels)
    replayed = sum(len(copies) - 1 for copies in got.values())
    assert replayed > 0, "the restart should have replayed the open streams from their start"
    for summary in summaries:
        expected = expected_summaries[summary["event_id"]]
        assert comparable(summary) == comparable(expected)
