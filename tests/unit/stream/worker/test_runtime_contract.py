"""The runtime's side of "no record stops a worker" (issue 11), without Faust.

A producer that refuses what aiokafka refuses (a request over 1 MB), a real tiny ONNX
model that answers NaN for quiet windows, and a speaker scorer that raises: each must
end as dead letters with a documented reason while the other streams go on, and a
failure of the runtime itself must reach ``on_fatal`` instead of dying in a task
nobody reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

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
from stream.worker.runtime import WorkerRuntime
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
TOPICS = Topics().with_prefix("unit")
MAX_REQUEST_BYTES = 1_000_000  # aiokafka's default max_request_size


class Producer:
    """Keeps what it accepts; refuses a record over 1 MB like aiokafka's ``send``;
    ``refuse_all`` makes every send fail (a broker refusing writes)."""

    def __init__(self, *, refuse_all: bool = False) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any], asyncio.Future[None]]] = []
        self.refuse_all = refuse_all
        self.on_send: Any = None

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        if self.on_send is not None:
            self.on_send(topic, key, value)
        await asyncio.sleep(0)  # a real send yields: a concurrent settle may run here
        if self.refuse_all:
            raise KafkaTimeoutError("broker refused the write")
        if len(key) + len(value) > MAX_REQUEST_BYTES:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        self.sent.append((topic, key, json.loads(value), fut))
        return fut

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [value for t, _, value, _ in self.sent if t == topic]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("m") / "tiny"
    return make_tiny_model_dir(path, spec=SPEC, labels=["quiet", "loud"])


def _infer_with(model: OnnxModel) -> Any:
    def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = model.run(x)
        return out.probabilities, out.embedding

    return infer


def _runtime(
    infer: Any, labels: Sequence[str], producer: Producer, acked: list[tuple[int, int]], **kw: Any
) -> WorkerRuntime:
    pipeline = Pipeline(SPEC, ModelRef("tiny", "1"), labels, FeatureBank(SPEC), PipelinePolicy())

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


def _records(
    sid: str, *, seconds: float = 1.0, amp: float = 0.2, partition: int = 0, first: int = 0
) -> list[Record]:
    y = (np.random.default_rng(0).standard_normal(round(seconds * 16000)) * amp).astype(np.float32)
    out = []
    frames = frames_from_array(y, 16000, stream_id=sid, chunk_ms=20)
    for offset, frame in enumerate(frames, start=first):
        key, value, headers = encode_frame(frame)
        out.append(Record(key, value, tuple(headers), TOPICS.audio, partition, offset))
    return out


async def _feed(runtime: WorkerRuntime, records: Sequence[Record]) -> None:
    """Hand records over the way the consumer does: one fetched batch."""
    await runtime.on_records(records)
    await runtime.drain()


def test_an_oversized_rejected_record_is_dead_lettered_truncated(model_dir: Path) -> None:
    """Finding 1: a rejected record of 900 KB (its dead letter in base64 would be
    1.2 MB) is dead-lettered with its first bytes and its original size, and its
    offset is acked; before the fix the send raised in the inbox's flush task, nobody
    read it, and the offset was never acked."""
    producer, acked = Producer(), list[tuple[int, int]]()
    model = OnnxModel.load(model_dir)
    good = _records("a", seconds=0.3)
    huge = Record(b"x", b"\x01" * 900_001, good[0].headers, TOPICS.audio, 1, 7)
    failures: list[BaseException] = []

    async def main() -> None:
        runtime = _runtime(
            _infer_with(model), model.labels, producer, acked, on_fatal=failures.append
        )
        runtime.start()
        await _feed(runtime, [huge])
        await runtime.stop()

    asyncio.run(main())
    assert failures == []
    (dead,) = producer.on(TOPICS.rejected)
    assert dead["reason"] == "bad_payload_length"
    assert dead["payload_bytes"] == 900_001 and dead["truncated"] is True
    assert len(dead["payload_b64"]) < 100_000
    assert (dead["topic"], dead["partition"], dead["offset"]) == (TOPICS.audio, 1, 7)
    assert acked == [(1, 7)]


def test_a_dead_letter_pins_its_record_before_the_send(model_dir: Path) -> None:
    """While the dead letter's send is in flight, its record must already be pinned:
    otherwise a settle running during the await could ack (commit) it first."""
    producer, acked = Producer(), list[tuple[int, int]]()
    model = OnnxModel.load(model_dir)
    bad = Record(b"x", b"\x00", _records("a", seconds=0.1)[0].headers, TOPICS.audio, 0, 3)
    floors: list[int | None] = []

    async def main() -> None:
        runtime = _runtime(_infer_with(model), model.labels, producer, acked)

        def check(topic: str, key: bytes, value: bytes) -> None:
            if topic == TOPICS.rejected:
                floors.append(runtime.ledger.floor(0))

        producer.on_send = check
        runtime.start()
        await _feed(runtime, [bad])
        await runtime.stop()

    asyncio.run(main())
    assert floors == [3]
    assert acked == [(0, 3)]


def test_a_refused_write_fails_its_batch_and_acks_nothing(model_dir: Path) -> None:
    """A broker that refuses every write fails the batch that wrote: ``on_records``
    raises (the consumer's guard turns it into ``on_fatal``, the worker stops
    non-zero) and the record whose dead letter was refused is never acked."""
    producer, acked = Producer(refuse_all=True), list[tuple[int, int]]()
    model = OnnxModel.load(model_dir)
    bad = Record(b"x", b"\x00", _records("a", seconds=0.1)[0].headers, TOPICS.audio, 0, 0)

    async def main() -> None:
        runtime = _runtime(_infer_with(model), model.labels, producer, acked)
        runtime.start()
        with pytest.raises(KafkaTimeoutError):
            await runtime.on_records([bad])
        await runtime.stop()

    asyncio.run(main())
    assert acked == []


def _nan_when_quiet(model_dir: Path, out: Path) -> Path:
    """The tiny model, edited so quiet windows score NaN: ``logits + 0 * sqrt(d)``
    with ``d = energy - threshold`` (negative when quiet, and sqrt(<0) is NaN)."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(model_dir / "model.onnx"))
    graph = proto.graph
    graph.initializer.append(helper.make_tensor("nan_zero", TensorProto.FLOAT, [1], [0.0]))
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    at = list(graph.node).index(softmax)
    extra = [
        helper.make_node("Sqrt", ["d"], ["sqrt_d"]),
        helper.make_node("Mul", ["sqrt_d", "nan_zero"], ["nan_or_zero"]),
        helper.make_node("Add", ["logits", "nan_or_zero"], ["logits_nan"]),
    ]
    for i, node in enumerate(extra):
        graph.node.insert(at + i, node)
    softmax.input[0] = "logits_nan"
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out / "model.onnx"))
    return out / "model.onnx"


def test_nan_model_output_dead_letters_the_window_and_the_stream_goes_on(
    model_dir: Path, tmp_path: Path
) -> None:
    """Finding 8: a real ONNX model returning NaN for some windows. Before the fix
    serializing the event raised in ``_on_batch`` (``allow_nan=False``) and stopped
    the batcher. Now each NaN window is dead-lettered ``invalid_model_output`` (no
    label event), the loud windows get events, and both streams end with a summary
    counting only the windows that were scored."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(_nan_when_quiet(model_dir, tmp_path / "nan")), providers=["CPUExecutionProvider"]
    )

    def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, embedding = session.run(["probabilities", "embedding"], {"features": x})
        return probabilities, embedding

    producer, acked = Producer(), list[tuple[int, int]]()
    loud = _records("loud", amp=0.2)
    quiet = _records("quiet", amp=1e-5, partition=1)
    failures: list[BaseException] = []

    async def main() -> None:
        runtime = _runtime(infer, ["quiet", "loud"], producer, acked, on_fatal=failures.append)
        runtime.start()
        await _feed(runtime, [r for pair in zip(loud, quiet, strict=True) for r in pair])
        await runtime.stop()

    asyncio.run(main())
    assert failures == []
    labels = producer.on(TOPICS.labels)
    assert labels and {e["stream_id"] for e in labels} == {"loud"}
    dead = producer.on(TOPICS.rejected)
    assert dead and {d["reason"] for d in dead} == {"invalid_model_output"}
    assert {(d["stream_id"], d["partition"], d["offset"]) for d in dead} == {("quiet", 1, 0)}
    summaries = {s["stream_id"]: s for s in producer.on(TOPICS.summaries)}
    assert summaries["loud"]["windows"] == len(labels)
    assert summaries["quiet"]["windows"] == 0
    assert sorted(acked) == sorted({(r.partition, r.offset) for r in loud + quiet})


class RaisingSpeaker:
    """A speaker hook whose registry scorer raises: a bug met while completing one
    batch, which must close the streams it hit, not the worker."""

    model = ModelRef("spk", "1")

    def embed(self, jobs: Sequence[WindowJob]) -> np.ndarray:
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(jobs), 1))

    def scorer(self) -> SpeakerScorer:
        raise ZeroDivisionError("registry scorer bug")


def test_an_exception_completing_a_stream_is_its_internal_error_dead_letter(
    model_dir: Path,
) -> None:
    """An unexpected exception in the runtime's per-batch work is contained to the
    stream: dead letter ``internal_error`` naming the exception, the stream closed with
    a summary (``closed_by`` says why), every offset acked, ``on_fatal`` never called."""
    producer, acked = Producer(), list[tuple[int, int]]()
    model = OnnxModel.load(model_dir)
    records = _records("call")
    failures: list[BaseException] = []

    async def main() -> None:
        runtime = _runtime(
            _infer_with(model),
            model.labels,
            producer,
            acked,
            speakers=RaisingSpeaker(),
            on_fatal=failures.append,
        )
        runtime.start()
        await _feed(runtime, records)
        await runtime.stop()

    asyncio.run(main())
    assert failures == []
    dead = producer.on(TOPICS.rejected)
    assert dead and dead[0]["reason"] == "internal_error"
    assert "ZeroDivisionError" in dead[0]["message"] and dead[0]["stream_id"] == "call"
    (summary,) = producer.on(TOPICS.summaries)
    assert summary["stream_id"] == "call" and summary["closed_by"] == "internal_error"
    assert sorted(acked) == [(0, r.offset) for r in records]


def test_dead_letter_size_setting() -> None:
    from stream.errors import ConfigError
    from stream.settings import WorkerSettings

    env = {"TYMPAN_DEAD_LETTER_MAX_BYTES": "1000"}
    assert WorkerSettings.from_environ(env).dead_letter_max_bytes == 1000
    flags = {"dead_letter_max_bytes": 2000}
    assert WorkerSettings.from_environ(env, flags).dead_letter_max_bytes == 2000
    with pytest.raises(ConfigError, match="1 MB"):
        WorkerSettings(dead_letter_max_bytes=900_000)
