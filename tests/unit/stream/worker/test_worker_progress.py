"""Exactly-once bookkeeping: what a partition's committed transactions hold
(``stream.worker.progress``), and the law it exists for: a worker that takes over a
partition, replays it from the committed offset and loads the progress record
committed with that offset, writes exactly what the first worker had not committed.
No Kafka here: tests/integration/test_worker_exactly_once.py runs the real thing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, PipelinePolicy, Record
from stream.produce import frames_from_array
from stream.settings import BatchingPolicy
from stream.wire import encode_frame
from stream.worker.progress import CommittedOutputs, PartitionProgress, ProgressError
from stream.worker.runtime import WorkerRuntime
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
TOPICS = Topics().with_prefix("unit-eos")


# -- the bookkeeping ------------------------------------------------------------------
def test_windows_of_the_same_segment_up_to_the_highest_sent_are_done() -> None:
    progress = PartitionProgress(0)
    progress.window_sent("a", 10, 0)
    progress.window_sent("a", 10, 3)

    assert progress.window_done("a", 10, 3) and progress.window_done("a", 10, 0)
    assert not progress.window_done("a", 10, 4)
    assert not progress.window_done("a", 11, 0)  # another segment of the stream
    assert not progress.window_done("b", 10, 0)


def test_a_sent_summary_covers_every_segment_starting_inside_it() -> None:
    progress = PartitionProgress(0)
    progress.window_sent("a", 10, 5)
    progress.segment_sent("a", 10, 40)

    assert progress.opened == {}
    assert progress.segment_done("a", 10) and progress.segment_done("a", 25)
    assert progress.window_done("a", 25, 0)  # a replay starting mid-segment
    assert not progress.segment_done("a", 41)  # the stream's next segment


def test_dead_lettered_offsets_are_kept_as_runs() -> None:
    progress = PartitionProgress(0)
    for offset in (5, 6, 7, 9):
        progress.record_sent(offset)

    assert progress.dead == [[5, 8], [9, 10]]
    assert progress.record_done(7) and not progress.record_done(8)


def test_prune_forgets_what_a_replay_from_the_committed_offset_cannot_meet() -> None:
    progress = PartitionProgress(0)
    progress.segment_sent("a", 0, 9)
    progress.segment_sent("b", 3, 30)
    progress.record_sent(4)
    progress.record_sent(20)
    progress.window_sent("c", 12, 2)
    progress.window_sent("d", 11, 0)  # behind the committed offset: can no longer be open

    progress.prune(12)

    assert progress.closed == {"b": [(3, 30)]}
    assert progress.dead == [[20, 21]]
    assert progress.opened == {"c": (12, 2)}


def test_the_record_reads_back_as_written() -> None:
    progress = PartitionProgress(3)
    progress.window_sent("a", 10, 5)
    progress.segment_sent("b", 1, 8)
    progress.record_sent(2)

    again = PartitionProgress.from_json(progress.to_json(), partition=3)

    assert again == progress


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"schema": "tympan.progress.v1", "partition": 4}',
        b'{"schema": "other", "partition": 3, "opened": {}, "closed": {}, "dead": []}',
        b'{"schema":"tympan.progress.v1","partition":3,"opened":{"a":[1]},"closed":{},"dead":[]}',
        b'{"schema":"tympan.progress.v1","partition":3,"opened":{},"closed":{},"dead":[["x",1]]}',
        b"[" * 100_000,
        b"\xff\xfe",
    ],
)
def test_a_record_that_is_not_ours_is_a_progress_error_naming_the_partition(data: bytes) -> None:
    with pytest.raises(ProgressError, match="partition 3"):
        PartitionProgress.from_json(data, partition=3)


def test_committed_outputs_mute_what_was_loaded_and_count_what_is_sent() -> None:
    loaded = PartitionProgress(2)
    loaded.window_sent("a", 5, 1)
    loaded.record_sent(7)
    counted: list[int] = []
    committed = CommittedOutputs(lambda: counted.append(1))
    committed.load(loaded)

    decisions = [
        committed.send_window(2, "a", 5, 1),  # committed: muted
        committed.send_window(2, "a", 5, 2),  # new: sent
        committed.send_window(2, "a", 5, 2),  # sent since: muted too
        committed.send_dead_letter(2, 7),
        committed.send_dead_letter(2, 8),
        committed.send_summary(2, "a", 5, 30),
        committed.send_summary(2, "a", 5, 30),
        committed.send_window(3, "a", 5, 1),  # another partition: nothing loaded
    ]

    assert decisions == [False, True, False, False, True, True, False, True]
    assert committed.muted == len(counted) == 4
    committed.drop([2])
    assert committed.of(2) == PartitionProgress(2)


# -- the law -------------------------------------------------------------------------------
class Transactions:
    """Stands for one partition's transactional producer: keeps what was routed;
    every delivery is acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def route(self, partition: int, topic: str, key: bytes, value: bytes) -> Any:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        self.sent.append((topic, json.loads(value)))
        return fut


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path: Path = tmp_path_factory.mktemp("m") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["quiet", "loud"]))


def _runtime(model: OnnxModel, out: Transactions, acked: list[int]) -> WorkerRuntime:
    pipeline = Pipeline(
        SPEC, ModelRef("tiny", "1"), model.labels, FeatureBank(SPEC), PipelinePolicy()
    )

    def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = model.run(x)
        return result.probabilities, result.embedding

    async def unused(topic: str, key: bytes, value: bytes) -> Any:
        raise AssertionError("exactly-once sends go through the route")

    return WorkerRuntime(
        pipeline,
        infer,
        TOPICS,
        unused,
        lambda partition, start, stop: acked.append(stop),
        BatchingPolicy(max_batch=4, max_wait_ms=1),
        route=out.route,
    )


def _frames(sid: str, seconds: float, seed: int) -> list[tuple[bytes, bytes, tuple[Any, ...]]]:
    rng = np.random.default_rng(seed)
    y = (rng.standard_normal(round(seconds * 16000)) * 0.2).astype(np.float32)
    out = []
    for frame in frames_from_array(y, 16000, stream_id=sid, chunk_ms=20):
        key, value, headers = encode_frame(frame)
        out.append((key, value, tuple(headers)))
    return out


def _partition() -> list[Record]:
    """Stream a alone, then a and b interleaved with a bad record, a ends, b goes on
    (b's pin keeps the committed offset inside a), then c."""
    a, b, c = _frames("a", 1.0, 1), _frames("b", 1.2, 2), _frames("c", 0.6, 3)
    bad = (b"x", b"\x00", a[0][2])
    order = a[:10] + [f for pair in zip(a[10:], b[:40], strict=False) for f in pair]
    order += [bad, *b[40:], *c]
    return [Record(k, v, h, TOPICS.audio, 0, offset) for offset, (k, v, h) in enumerate(order)]


def _identity(topic: str, value: dict[str, Any]) -> str:
    if topic == TOPICS.rejected:
        return f"dead {value['offset']} {value['reason']}"
    return f"{topic} {value['event_id']}"


async def _run(runtime: WorkerRuntime, records: list[Record]) -> None:
    runtime.start()
    for i in range(0, len(records), 7):  # fetched batches
        await runtime.on_records(records[i : i + 7])
        await runtime.batcher.join()
    await runtime.drain()
    await runtime.stop()


@pytest.mark.parametrize("cut", [15, 61, 90, 101, 118])
def test_a_takeover_writes_what_the_committed_transactions_did_not_hold(
    model: OnnxModel, cut: int
) -> None:
    records = _partition()
    whole, first, second = Transactions(), Transactions(), Transactions()
    acked: list[int] = []

    async def main() -> None:
        await _run(_runtime(model, whole, []), records)
        owner = _runtime(model, first, acked)
        await _run(owner, records[:cut])  # then it dies: what it sent is committed
        assert owner.committed is not None
        state = owner.committed.of(0)
        committed = PartitionProgress.from_json(state.to_json(), partition=0)
        offset = max(acked, default=0)
        committed.prune(offset)
        successor = _runtime(model, second, [])
        successor.load_progress(0, committed)
        await _run(successor, records[offset:])

    asyncio.run(main())
    expected = Counter(_identity(t, v) for t, v in whole.sent)
    got = Counter(_identity(t, v) for t, v in first.sent + second.sent)
    assert expected.most_common(1)[0][1] == 1
    assert got == expected
    assert {t for t, _ in whole.sent} == {
        TOPICS.labels,
        TOPICS.summaries,
        TOPICS.rejected,
    }


def test_without_the_progress_record_a_takeover_repeats_events(model: OnnxModel) -> None:
    # what the test above would see if the progress record were not loaded
    records = _partition()
    first, second = Transactions(), Transactions()
    acked: list[int] = []

    async def main() -> None:
        await _run(_runtime(model, first, acked), records[:90])
        await _run(_runtime(model, second, []), records[max(acked, default=0) :])

    asyncio.run(main())
    got = Counter(_identity(t, v) for t, v in first.sent + second.sent)
    assert got.most_common(1)[0][1] > 1
