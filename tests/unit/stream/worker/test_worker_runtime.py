"""WorkerRuntime without Faust: an in-memory producer whose deliveries the test
completes by hand, and tokens that record their acks. Checks the delivery rule: a
record is acked only when every event depending on it is acknowledged."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, PipelinePolicy, Record, WindowJob
from stream.produce import frames_from_array
from stream.settings import BatchingPolicy
from stream.speakers.scoring import SpeakerScorer
from stream.wire import encode_frame
from stream.worker.runtime import WorkerRuntime, _rows
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
TOPICS = Topics().with_prefix("unit")


class Producer:
    """Keeps every sent record; deliveries resolve when ``deliver_all`` says so."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any], asyncio.Future[None]]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, json.loads(value), fut))
        return fut

    def deliver_all(self) -> None:
        for *_, fut in self.sent:
            if not fut.done():
                fut.set_result(None)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [value for t, _, value, _ in self.sent if t == topic]


class FixedSpeaker:
    """Every window sounds like alice, who is enrolled."""

    model = ModelRef("spk", "1")
    embedded = 0

    def embed(self, jobs: Sequence[WindowJob]) -> np.ndarray:
        self.embedded += len(jobs)
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(jobs), 1))

    def scorer(self) -> SpeakerScorer:
        return SpeakerScorer({"alice": [[1.0, 0.0]], "bob": [[0.0, 1.0]]}, threshold=0.5)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path: Path = tmp_path_factory.mktemp("m") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["quiet", "loud"]))


def _runtime(
    model: OnnxModel, producer: Producer, acked: list[tuple[int, int]], **kw: Any
) -> WorkerRuntime:
    pipeline = Pipeline(
        SPEC, ModelRef("tiny", "1"), model.labels, FeatureBank(SPEC), PipelinePolicy()
    )

    def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = model.run(x)
        return out.probabilities, out.embedding

    def ack(partition: int, start: int, stop: int) -> None:
        acked.extend((partition, offset) for offset in range(start, stop))

    return WorkerRuntime(
        pipeline,
        infer,
        TOPICS,
        producer.send,
        ack,
        BatchingPolicy(max_batch=4, max_wait_ms=1),
        **kw,
    )


def _records(sid: str, seconds: float = 1.0) -> list[Record]:
    y = (np.random.default_rng(0).standard_normal(round(seconds * 16000)) * 0.2).astype(np.float32)
    out = []
    for offset, frame in enumerate(frames_from_array(y, 16000, stream_id=sid, chunk_ms=20)):
        key, value, headers = encode_frame(frame)
        out.append(Record(key, value, tuple(headers), TOPICS.audio, 0, offset))
    return out


def test_records_are_acked_only_after_the_stream_is_delivered(model: OnnxModel) -> None:
    producer, acked = Producer(), list[tuple[int, int]]()
    records = _records("a")

    async def main() -> None:
        runtime = _runtime(model, producer, acked)
        runtime.start()
        await runtime.on_records(records)
        await runtime.batcher.join()
        assert producer.on(TOPICS.summaries), "summary sent once every window was inferred"
        await asyncio.sleep(0)
        assert acked == []  # nothing delivered yet: nothing acked
        producer.deliver_all()
        await runtime.drain()
        await runtime.stop()

    asyncio.run(main())
    assert acked == [(0, r.offset) for r in records]
    labels = producer.on(TOPICS.labels)
    assert [e["window_index"] for e in labels] == list(range(len(labels)))
    (summary,) = producer.on(TOPICS.summaries)
    assert summary["windows"] == len(labels)


def test_bad_records_are_dead_lettered_and_acked_after_delivery(model: OnnxModel) -> None:
    producer, acked = Producer(), list[tuple[int, int]]()
    good = _records("a", seconds=0.3)
    bad = Record(b"x", b"\x00", good[0].headers, TOPICS.audio, 1, 100)

    async def main() -> None:
        runtime = _runtime(model, producer, acked)
        runtime.start()
        await runtime.on_records([bad])
        await asyncio.sleep(0)
        assert acked == []
        producer.deliver_all()
        await runtime.drain()
        await runtime.stop()

    asyncio.run(main())
    assert acked == [(1, 100)]
    (dead,) = producer.on(TOPICS.rejected)
    assert dead["reason"] == "bad_payload_length" and dead["stream_id"] == "x"


def test_speaker_hook_events_and_summary_verdict(model: OnnxModel) -> None:
    producer, acked = Producer(), list[tuple[int, int]]()
    hook = FixedSpeaker()  # the tiny model has no "speech" label: every window counts

    async def main() -> None:
        runtime = _runtime(model, producer, acked, speakers=hook)
        runtime.start()
        await runtime.on_records(_records("call"))
        await runtime.batcher.join()
        producer.deliver_all()
        await runtime.drain()
        await runtime.stop()

    asyncio.run(main())
    (event,) = producer.on(TOPICS.speakers)  # one decision, not one event per window
    assert event["speaker"] == "alice" and event["runner_up"] == "bob"
    assert event["model"] == {"name": "spk", "version": "1"}
    (summary,) = producer.on(TOPICS.summaries)
    windows = len(producer.on(TOPICS.labels))
    assert summary["speaker"] == "alice" and summary["speaker_windows"] == windows == hook.embedded


def test_revoked_partitions_are_never_acked(model: OnnxModel) -> None:
    producer, acked = Producer(), list[tuple[int, int]]()
    records = _records("r", seconds=0.5)

    async def main() -> None:
        runtime = _runtime(model, producer, acked)
        runtime.start()
        await runtime.on_records(records[:10])
        runtime.on_revoked([0])
        assert runtime.pipeline.active_streams == 0
        producer.deliver_all()
        await runtime.drain()
        await runtime.stop()

    asyncio.run(main())
    assert acked == []


@given(st.sets(st.integers(0, 11), min_size=1))
def test_a_streams_rows_are_the_rows_it_names(picked: set[int]) -> None:
    # the view taken for adjacent rows holds what fancy indexing copies
    scores = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    rows = sorted(picked)
    np.testing.assert_array_equal(_rows(scores, rows), scores[rows])


def _on_partition(records: list[Record], partition: int) -> list[Record]:
    return [Record(r.key, r.value, r.headers, r.topic, partition, r.offset) for r in records]


def _interleaved(*calls: list[Record]) -> list[Record]:
    return [r for frames in zip(*calls, strict=True) for r in frames]


def test_calls_ending_together_are_acked_only_after_every_delivery_of_each(
    model: OnnxModel,
) -> None:
    # both calls end in one fetch: their summaries are taken together, and a label
    # event of one of them still unacknowledged holds that call's records
    producer, acked = Producer(), list[tuple[int, int]]()
    a, b = _records("a", seconds=0.5), _on_partition(_records("b", seconds=0.5), 1)

    async def main() -> None:
        runtime = _runtime(model, producer, acked)
        runtime.start()
        await runtime.on_records(_interleaved(a, b))
        await runtime.batcher.join()
        assert len(producer.on(TOPICS.summaries)) == 2
        held = next(f for t, k, _, f in producer.sent if t == TOPICS.labels and k == b"a")
        for *_, fut in producer.sent:
            if fut is not held:
                fut.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not [offset for partition, offset in acked if partition == 0]
        held.set_result(None)
        await runtime.drain()
        await runtime.stop()

    asyncio.run(main())
    assert sorted(acked) == sorted([(0, r.offset) for r in a] + [(1, r.offset) for r in b])


def test_a_label_delivery_that_failed_before_the_summary_stops_the_runtime(
    model: OnnxModel,
) -> None:
    producer, acked = Producer(), list[tuple[int, int]]()
    failures: list[BaseException] = []
    records = _records("f", seconds=1.0)  # 50 frames of 20 ms

    async def main() -> None:
        runtime = _runtime(model, producer, acked, on_fatal=failures.append)
        runtime.start()
        await runtime.on_records(records[:30])  # the first windows, no EOS yet
        await runtime.batcher.join()
        first, *rest = [f for t, _, _, f in producer.sent if t == TOPICS.labels]
        first.set_exception(ConnectionError("broker refused the batch"))
        for fut in rest:
            fut.set_result(None)
        await asyncio.sleep(0)
        await runtime.on_records(records[30:])  # the end: its summary waits for all
        await runtime.batcher.join()
        producer.deliver_all()
        await runtime.drain()
        await runtime.stop()

    asyncio.run(main())
    assert [str(f) for f in failures] == ["broker refused the batch"]
    assert acked == []


def test_streams_opened_and_closed_together_are_each_named_in_the_log(
    model: OnnxModel, caplog: pytest.LogCaptureFixture
) -> None:
    producer, acked = Producer(), list[tuple[int, int]]()
    calls = [_on_partition(_records(f"c{j}", seconds=0.5), j) for j in range(60)]

    async def main() -> None:
        runtime = _runtime(model, producer, acked)
        runtime.start()
        await runtime.on_records(_interleaved(*calls))
        await runtime.batcher.join()
        producer.deliver_all()
        await runtime.drain()
        await runtime.stop()

    with caplog.at_level(logging.INFO, logger="stream.worker"):
        asyncio.run(main())
    text = "\n".join(r.getMessage() for r in caplog.records)
    for j in range(60):
        assert f"stream 'c{j}' opened at partition {j} offset 0" in text
        assert f"stream 'c{j}' closed (eos) at partition {j}: " in text
    assert len(caplog.records) < 60  # joined: not a record per stream
