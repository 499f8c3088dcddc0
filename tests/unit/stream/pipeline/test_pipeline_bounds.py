"""No record stops the domain core: bounds, segments, data-driven closing, admission
under a flood, EOS order and per-record containment (issue 11)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.events import LabelEvent, ModelRef, SummaryEvent
from stream.features.frontend import FeatureBank, PushResult
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.pipeline import Pipeline, PipelinePolicy, Record
from stream.produce import frames_from_array
from stream.settings import SequencingPolicy, StreamLimits
from stream.wire import AudioFrame, Encoding, encode_frame
from tests.support.onnx_models import make_tiny_model_dir
from tests.support.replay import SyncRun, replay

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
T0_US = 1_700_000_000_000_000
T0_MS = T0_US // 1000


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path = tmp_path_factory.mktemp("model") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["quiet", "loud"]))


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _pipeline(
    model: OnnxModel,
    clock: Clock | None = None,
    frontend: FeatureBank | None = None,
    **policy: object,
) -> Pipeline:
    return Pipeline(
        SPEC,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        frontend or FeatureBank(SPEC),
        PipelinePolicy(**policy),  # type: ignore[arg-type]
        clock=clock or Clock(),
    )


def _frames(
    sid: str, *, seconds: float = 1.0, sr: int = 16000, chunk_ms: float = 20, loud: bool = True
) -> list[AudioFrame]:
    rng = np.random.default_rng(sum(sid.encode()))
    y = (rng.standard_normal(round(seconds * sr)) * (0.2 if loud else 1e-5)).astype(np.float32)
    return list(
        frames_from_array(
            y, sr, stream_id=sid, encoding=Encoding.PCM_S16LE, chunk_ms=chunk_ms, start_us=T0_US
        )
    )


def _records(
    frames: Iterable[AudioFrame], *, partition: int = 0, first_offset: int = 0
) -> list[Record]:
    """Records stamped (Kafka time) with each frame's capture time."""
    out = []
    for i, frame in enumerate(frames):
        key, value, headers = encode_frame(frame)
        ts = frame.capture_us // 1000
        out.append(Record(key, value, tuple(headers), "audio", partition, first_offset + i, ts))
    return out


def _run(pipeline: Pipeline, records: Sequence[Record], model: OnnxModel) -> SyncRun:
    return replay(pipeline, records, lambda x: model.run(x).probabilities)


def _content(events: Iterable[LabelEvent]) -> list[tuple[str, int, int, str, float, bool, bool]]:
    """Everything an event says except latency_ms, sorted by id."""
    return sorted(
        (e.event_id, e.span.index, e.span.start_sample, e.label, round(e.score, 6), e.gap, e.padded)
        for e in events
    )


def _summary_content(summaries: Iterable[SummaryEvent]) -> list[tuple[object, ...]]:
    return sorted(
        (
            s.event_id,
            s.closed_by,
            s.windows,
            round(s.duration_s, 6),
            tuple(sorted(s.counts.items())),
        )
        for s in summaries
    )


def _with(frame: AudioFrame, **changes: object) -> AudioFrame:
    return dataclasses.replace(frame, **changes)  # type: ignore[arg-type]


# -- finding 1: any seq the wire admits -------------------------------------------------
def test_a_seq_of_10_to_the_18_after_a_first_frame_is_a_dead_letter_not_a_crash(
    model: OnnxModel,
) -> None:
    """The issue's repro: before the fix, closing the stream zero-filled/reset a gap
    of 10**18 frames and raised OverflowError out of the worker."""
    frames = _frames("jump", seconds=1.0)
    hostile = _with(frames[1], seq=10**18)
    run = _run(_pipeline(model), _records([frames[0], hostile, *frames[1:20]]), model)
    assert [r.reason for r in run.rejected] == ["seq_jump"]
    assert str(10**18) in run.rejected[0].message and run.rejected[0].offset == 1
    (summary,) = run.summaries
    assert summary.closed_by == "shutdown" and summary.counts["gaps"] == 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seq=st.integers(0, 2**63 - 1), eos=st.booleans())
def test_any_seq_the_wire_admits_never_raises(model: OnnxModel, seq: int, eos: bool) -> None:
    frames = _frames("any", seconds=0.2)
    pipeline = _pipeline(model)
    records = _records([frames[0], _with(frames[1], seq=seq, eos=eos), *frames[1:]])
    run = _run(pipeline, records, model)
    accounted = {r.offset for r in run.rejected}
    assert run.summaries and accounted <= {1, *range(2, len(records))}
    assert pipeline.active_streams == 0


# -- finding 2: frame size, frame duration, gap in seconds --------------------------------
def test_oversized_and_overlong_frames_are_dead_lettered(model: OnnxModel) -> None:
    limits = StreamLimits(max_frame_bytes=4096, max_frame_ms=200)
    big = _frames("big", seconds=0.6, chunk_ms=200)  # 6400 bytes per frame at 16 kHz
    long = _frames("long", seconds=1.5, sr=4000, chunk_ms=500)  # 4000 bytes, 500 ms each
    run = _run(_pipeline(model, limits=limits), _records([*big, *long]), model)
    reasons = {(r.stream_id, r.reason) for r in run.rejected}
    assert reasons == {("big", "frame_too_large"), ("long", "frame_too_long")}
    assert len(run.rejected) == len(big) + len(long) and not run.labels


def test_a_gap_longer_than_max_gap_s_resets_instead_of_zero_filling(model: OnnxModel) -> None:
    frames = _frames("lowrate", seconds=8.0, sr=4000, chunk_ms=1000)  # 1 s frames
    del frames[2:5]  # 3 frames (3 s) missing: fewer than max_gap_frames, longer than 2 s
    run = _run(_pipeline(model, limits=StreamLimits(max_gap_s=2.0)), _records(frames), model)
    (summary,) = run.summaries
    assert summary.counts["resets"] == 1 and summary.counts["gaps"] == 1
    assert not any(e.gap for e in run.labels)  # nothing zero-filled


def _switching(sid: str, first_ms: int, then_ms: int, missing: int) -> list[AudioFrame]:
    """1 s of ``first_ms`` frames, ``missing`` of them lost, then 1 s of ``then_ms``
    frames (RTP may switch its packet time mid-call), stamped where they belong."""
    before = _frames(sid, seconds=1.0, chunk_ms=first_ms)
    after = _frames(sid + "-after", seconds=1.0, chunk_ms=then_ms)
    resume = len(before) + missing
    lost_us = missing * first_ms * 1000
    end_us = before[-1].capture_us + first_ms * 1000 + lost_us
    return [_with(f, eos=False) for f in before] + [
        _with(f, stream_id=sid, seq=resume + i, capture_us=end_us + f.capture_us - T0_US)
        for i, f in enumerate(after)
    ]


def test_a_gap_is_sized_by_the_frames_before_it_not_the_frame_after(model: OnnxModel) -> None:
    frames = _switching("ptime", first_ms=20, then_ms=30, missing=3)  # 60 ms lost
    run = _run(_pipeline(model), _records(frames), model)
    (summary,) = run.summaries
    assert summary.counts["gaps"] == 1 and summary.counts["gap_frames"] == 3
    assert summary.duration_s == pytest.approx(2.06, abs=1e-3)  # not 2 s + 3 × 30 ms
    gap_start, gap_end = 16000, 16000 + 3 * 320
    for e in run.labels:
        overlaps = e.span.start_sample < gap_end and gap_start < e.span.end_sample
        assert e.gap == overlaps, e.span


def test_max_gap_s_measures_the_gap_in_the_frames_before_it(model: OnnxModel) -> None:
    limits = StreamLimits(max_gap_s=1.0)
    short = _switching("short", first_ms=20, then_ms=200, missing=40)  # 0.8 s lost
    long = _switching("long", first_ms=200, then_ms=20, missing=6)  # 1.2 s lost
    run = _run(_pipeline(model, limits=limits), _records([*short, *long]), model)
    by_stream = {s.stream_id: s for s in run.summaries}
    assert by_stream["short"].counts["resets"] == 0, "0.8 s is zero-filled, not 40 × 200 ms"
    assert by_stream["short"].duration_s == pytest.approx(2.8, abs=1e-3)
    assert by_stream["long"].counts["resets"] == 1, "1.2 s resets, though 6 × 20 ms would not"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 5000), st.integers(1, 2000), st.sampled_from([4000, 8000])),
        min_size=1,
        max_size=25,
    )
)
def test_hostile_frames_keep_memory_bounded(
    model: OnnxModel, shape: list[tuple[int, int, int]]
) -> None:
    """Large, low-rate frames at scattered seqs: held frames and zero-fill stay bounded."""
    limits = StreamLimits(max_frame_bytes=8192, max_frame_ms=1000, max_gap_s=2.0, max_seq_jump=500)
    pipeline = _pipeline(model, limits=limits)
    worst = 0
    for offset, (seq, n, rate) in enumerate(shape):
        frame = AudioFrame("h", seq, rate, Encoding.PCM_S16LE, 1, T0_US, False, b"\x01\x00" * n)
        key, value, headers = encode_frame(frame)
        step = pipeline.accept(Record(key, value, tuple(headers), "audio", 0, offset))
        pending = sum(job.window.features.nbytes for job in step.jobs)
        worst = max(worst, pending)
        assert pipeline.held_frames() <= pipeline.policy.sequencing.reorder_frames
    # a gap is zero-filled only up to max_gap_s: at most ~2 s of windows per record
    per_window = SPEC.n_mels * SPEC.frames_per_window * 4
    assert worst <= per_window * (2 * (2.0 + 1.0) / SPEC.hop_seconds + 4)
    pipeline.close_all()


# -- finding 4: long streams roll; a replay from the segment's pin rebuilds it -----------
def test_a_long_stream_is_rolled_and_a_replay_from_the_new_pin_gives_the_same_events(
    model: OnnxModel,
) -> None:
    frames = _frames("long", seconds=3.0)
    records = _records(frames)
    policy: dict[str, object] = {
        "limits": StreamLimits(max_segment_s=1.0, max_frame_ms=20),
        "sequencing": SequencingPolicy(reorder_frames=4, max_gap_frames=5),
    }
    pipeline = _pipeline(model, **policy)
    first = SyncRun()
    opened = []
    for record in records:
        step = pipeline.accept(record)
        opened.extend(step.opened)
        if step.jobs:
            x = np.stack([j.window.features[..., None] for j in step.jobs])
            first.labels.extend(pipeline.complete(step.jobs, model.run(x).probabilities))
        first.summaries.extend(s for _, s in pipeline.take_summaries())
    assert [s.closed_by for s in first.summaries] == ["rolled", "rolled", "eos"]
    assert len({e.event_id for e in first.labels}) == len(first.labels)
    assert [o.pin for o in opened] == [s.event_id for s in first.summaries]  # runtime's pins
    assert opened[0].offset == 0 and opened[1].offset > 0

    # a crash after the roll: the new owner replays from the second segment's first record
    again = _run(_pipeline(model, **policy), records[opened[1].offset :], model)
    by_id = {e.event_id: e for e in first.labels}
    assert _content(again.labels) == _content(by_id[e.event_id] for e in again.labels)
    assert len(again.labels) == len(first.labels) - first.summaries[0].windows
    assert _summary_content(again.summaries) == _summary_content(first.summaries[1:])


# -- finding 5: closing is a function of the data --------------------------------------
def _paused_call() -> list[Record]:
    """1 s of audio, a 40 s pause (Kafka time), 1 s more; another stream meanwhile."""
    a = _frames("call", seconds=2.0)
    other = _frames("other", seconds=1.0)
    head = _records(a[:50])
    pause_ms = 40_000
    tail = [
        dataclasses.replace(r, timestamp_ms=(r.timestamp_ms or 0) + pause_ms)
        for r in _records(a[50:], first_offset=50)
    ]
    mid = [
        dataclasses.replace(r, timestamp_ms=(r.timestamp_ms or 0) + pause_ms // 2)
        for r in _records(other, first_offset=200)
    ]
    return [*head, *mid, *tail]


def test_a_pause_longer_than_the_idle_timeout_continues_as_a_new_segment(
    model: OnnxModel,
) -> None:
    run = _run(_pipeline(model, idle_timeout_s=30.0), _paused_call(), model)
    assert not run.rejected
    calls = [s for s in run.summaries if s.stream_id == "call"]
    assert [s.closed_by for s in calls] == ["idle", "eos"]
    assert len({e.event_id for e in run.labels}) == len(run.labels)


def test_same_records_with_other_timings_give_the_same_events(model: OnnxModel) -> None:
    """A live run with the wall clock racing (expire() between every record) and a
    replay burst with a frozen clock: same ids, same content."""
    records = _paused_call()
    clock = Clock()
    live = _pipeline(model, clock, idle_timeout_s=30.0)
    run = SyncRun()
    for i, record in enumerate(records):
        clock.now = i * 0.5  # wall time flows: 0.5 s between records
        for step in (live.expire(), live.accept(record)):
            run.rejected.extend(step.rejected)
            if step.jobs:
                x = np.stack([j.window.features[..., None] for j in step.jobs])
                run.labels.extend(live.complete(step.jobs, model.run(x).probabilities))
            run.summaries.extend(s for _, s in live.take_summaries())
    burst = _run(_pipeline(model, Clock(), idle_timeout_s=30.0), records, model)
    assert _content(run.labels) == _content(burst.labels)
    assert _summary_content(run.summaries) == _summary_content(burst.summaries)
    assert not run.rejected and not burst.rejected


def test_a_quiet_partition_closes_its_streams_by_the_wall_clock(model: OnnxModel) -> None:
    clock = Clock()
    pipeline = _pipeline(model, clock, idle_timeout_s=5.0)
    for record in _records(_frames("q", seconds=1.0)[:-1]):  # no EOS
        pipeline.accept(record)
    assert pipeline.expire().jobs == [] and pipeline.active_streams == 1
    clock.now = 10.0
    pipeline.expire()
    assert pipeline.active_streams == 0


# -- finding 6: a flood of new ids cannot lock real streams out -------------------------
def test_a_flood_of_one_frame_streams_cannot_lock_out_real_streams(model: OnnxModel) -> None:
    real = _frames("real", seconds=1.0)
    late = _frames("late", seconds=1.0)
    flood = [_with(_frames(f"flood-{i}", seconds=0.02)[0], eos=False) for i in range(40)]
    records = _records([*real[:10], *flood, *late, *real[10:]])
    run = _run(_pipeline(model, max_streams=8), records, model)
    assert not run.rejected
    by_id: dict[str, list[SummaryEvent]] = {}
    for s in run.summaries:
        by_id.setdefault(s.stream_id, []).append(s)
    assert [s.closed_by for s in by_id["late"]] == ["eos"]
    assert by_id["late"][0].windows == 3  # 1 s: windows at 0, .25, .5 (+ padded tail)
    assert by_id["real"][-1].closed_by == "eos"
    assert sum(s.closed_by == "evicted" for s in run.summaries) >= 33
    # the call that paused while the flood arrived kept one segment: the flood went first
    assert [x.closed_by for x in by_id["real"]] == ["eos"]


# -- finding 7: an EOS below a frame already held or released -----------------------------
def test_an_eos_after_a_higher_frame_closes_the_stream_and_dead_letters_the_frame(
    model: OnnxModel,
) -> None:
    frames = _frames("e", seconds=0.3)[:12]
    eos = _with(frames[10], eos=True)
    run = _run(
        _pipeline(model),
        _records([*frames[:10], frames[11], eos]),
        model,
    )
    assert [(r.reason, r.seq) for r in run.rejected] == [("after_eos", 11)]
    (summary,) = run.summaries
    assert summary.closed_by == "eos"


def test_an_eos_below_a_released_frame_still_ends_the_stream(model: OnnxModel) -> None:
    frames = _frames("e2", seconds=0.3)[:12]
    run = _run(_pipeline(model), _records([*frames, _with(frames[5], eos=True)]), model)
    assert [s.closed_by for s in run.summaries] == ["eos"]
    assert not run.rejected


# -- containment ---------------------------------------------------------------------------
class FailingBank(FeatureBank):
    """A real FeatureBank that fails (a bug) whenever stream ``bad`` is pushed."""

    def push(self, chunks: Mapping[str, np.ndarray]) -> PushResult:
        if "bad" in chunks:
            raise ZeroDivisionError("injected fault")
        return super().push(chunks)


def test_an_unexpected_error_is_contained_to_its_record_and_stream(model: OnnxModel) -> None:
    good, bad = _frames("good", seconds=1.0), _frames("bad", seconds=1.0)
    records = _records([f for pair in zip(good, bad, strict=True) for f in pair])
    reference = _run(_pipeline(model), _records(good), model)
    run = _run(_pipeline(model, frontend=FailingBank(SPEC)), records, model)
    assert {r.reason for r in run.rejected} == {"internal_error"}
    assert all(r.stream_id == "bad" for r in run.rejected)
    assert "ZeroDivisionError" in run.rejected[0].message
    assert next(s.closed_by for s in run.summaries if s.stream_id == "bad") == "internal_error"
    good_events = [e for e in run.labels if e.stream_id == "good"]
    assert _content(good_events) == _content(reference.labels)


def test_a_failing_stream_in_a_batch_does_not_cost_the_others_their_samples(
    model: OnnxModel,
) -> None:
    """One accept_many() for both streams: the batched feature push fails, the good
    stream's samples are pushed again on their own."""
    good, bad = _frames("good", seconds=1.0), _frames("bad", seconds=1.0)
    records = _records([f for pair in zip(good, bad, strict=True) for f in pair])
    reference = _run(_pipeline(model), _records(good), model)
    pipeline = _pipeline(model, frontend=FailingBank(SPEC))
    jobs, rejected = [], []
    for i in range(0, len(records), 10):
        step = pipeline.accept_many(records[i : i + 10])
        jobs.extend(step.jobs)
        rejected.extend(step.rejected)
    jobs.extend(pipeline.close_all().jobs)
    x = np.stack([j.window.features[..., None] for j in jobs])
    labels = pipeline.complete(jobs, model.run(x).probabilities)
    assert {(r.stream_id, r.reason) for r in rejected} == {("bad", "internal_error")}
    assert _content(e for e in labels if e.stream_id == "good") == _content(reference.labels)


# -- the law: any mutation of a valid frame ends as a frame or a dead letter --------------
_HEADER_VALUES = st.one_of(
    st.binary(max_size=24),
    st.integers(-(2**64), 2**64).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b"0", b"1", b"9" * 19, b"9" * 20, b"pcm_s16le", b"mulaw"]),
)


@pytest.mark.slow  # a fuzzer of 150 pipelines: `make test`, not `make test-fast`
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mutations=st.lists(
        st.tuples(
            st.integers(0, 30),
            st.sampled_from(["seq", "rate", "encoding", "channels", "capture-us", "eos", "x"]),
            _HEADER_VALUES,
            st.binary(max_size=1500),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_mutated_frames_never_raise_and_every_record_is_accounted_for(
    model: OnnxModel, mutations: list[tuple[int, str, bytes, bytes, bool]]
) -> None:
    real = _records(_frames("real", seconds=0.6))
    records = list(real)
    for where, name, value, payload, replace_payload in mutations:
        base = real[where % len(real)]
        headers = tuple((k, value if k == name else v) for k, v in base.headers)
        if name == "x":
            headers = (*headers, ("seq", value))
        mutated = dataclasses.replace(
            base,
            headers=headers,
            value=payload if replace_payload else base.value,
            key=b"mut-" + bytes([where]),
            offset=1000 + len(records),
        )
        records.insert(min(where, len(records)), mutated)
    pipeline = _pipeline(model, limits=StreamLimits(max_frame_bytes=1024))
    run = _run(pipeline, records, model)
    assert pipeline.active_streams == 0
    dead = {r.offset for r in run.rejected}
    summarised = {s.stream_id.encode() for s in run.summaries}
    for record in records[len(real) :] if not mutations else records:
        assert record.offset in dead or record.key in summarised, record
    real_summaries = [s for s in run.summaries if s.stream_id == "real"]
    assert [s.closed_by for s in real_summaries] == ["eos"]
    assert real_summaries[0].counts["rejected"] == 0


def test_reordered_first_frames_keep_the_summary_id_of_the_ordered_stream(
    model: OnnxModel,
) -> None:
    frames = _frames("order", seconds=0.5)
    ordered = _run(_pipeline(model), _records(frames), model)
    shuffled = _run(
        _pipeline(model), _records([frames[2], frames[0], *frames[1:2], *frames[3:]]), model
    )
    assert _summary_content(shuffled.summaries) == _summary_content(ordered.summaries)
    assert _content(shuffled.labels) == _content(ordered.labels)


# -- issue 23.6: a trickle stream cannot pin its partition's commit ---------------------
TRICKLE_MS = 2_900  # under the idle timeout below: the stream is never idle
AGE = {"idle_timeout_s": 3.0, "limits": StreamLimits(max_segment_age_s=30.0)}


def _trickle(sid: str, n: int, *, every_ms: int = TRICKLE_MS, stamped: bool = True) -> list[Record]:
    """One 1-byte μ-law frame (1/8000 s of audio) every ``every_ms`` of Kafka time."""
    out = []
    for seq in range(n):
        at_ms = seq * every_ms
        frame = AudioFrame(sid, seq, 8000, Encoding.MULAW, 1, T0_US + at_ms * 1000, False, b"\xff")
        key, value, headers = encode_frame(frame)
        ts = T0_MS + at_ms if stamped else None
        out.append(Record(key, value, tuple(headers), "audio", 0, seq, ts))
    return out


def test_a_trickle_stream_is_rolled_by_kafka_time_and_its_pin_moves_on(model: OnnxModel) -> None:
    records = _trickle("drip", 40)  # 113 s of Kafka time, 5 ms of audio
    clock = Clock()
    pipeline = _pipeline(model, clock, **AGE)  # type: ignore[arg-type]
    opened, summaries = [], []
    for record in records:
        step = pipeline.accept(record)
        assert not step.rejected
        opened.extend(step.opened)
        summaries.extend(s for _, s in pipeline.take_summaries())
    assert pipeline.active_streams == 1  # the stream never stopped
    # each segment is rolled at the first record stamped more than 30 s after its first
    # one (seq 11: 31.9 s), and the stream goes on as a new segment from that record
    assert [s.closed_by for s in summaries] == ["rolled"] * 3
    assert [o.offset for o in opened] == [0, 11, 22, 33]
    assert [s.counts["frames"] for s in summaries] == [11, 11, 11]
    assert [o.pin for o in opened[:3]] == [s.event_id for s in summaries]
    stamped = [records[o.offset].timestamp_ms or 0 for o in opened]
    assert max(b - a for a, b in itertools.pairwise(stamped)) <= 30_000 + TRICKLE_MS

    # no record after the last one: the partition goes quiet and the wall clock closes it
    clock.now += 3.5
    assert pipeline.expire().opened == [] and pipeline.active_streams == 0
    assert [s.closed_by for _, s in pipeline.take_summaries()] == ["idle"]

    # deterministic: a replay from the second segment's pin rebuilds the same segments
    again = _run(_pipeline(model, **AGE), records[opened[1].offset :], model)  # type: ignore[arg-type]
    assert _summary_content(again.summaries[:2]) == _summary_content(summaries[1:])


def test_the_age_deadline_is_met_by_any_record_of_the_partition(model: OnnxModel) -> None:
    drip = _trickle("drip", 12)
    busy = _trickle("busy", 34, every_ms=1_000)
    records = sorted([*drip, *busy], key=lambda r: (r.timestamp_ms or 0, r.key or b""))
    records = [dataclasses.replace(r, offset=i) for i, r in enumerate(records)]
    pipeline = _pipeline(model, **AGE)  # type: ignore[arg-type]
    rolled_at = {}
    for record in records:
        pipeline.accept(record)
        for _, summary in pipeline.take_summaries():
            rolled_at[summary.stream_id] = record
    # drip's next record is at 31.9 s: busy's record at 31 s is the first past 30 s
    assert rolled_at["drip"].key == b"busy" and rolled_at["drip"].timestamp_ms == T0_MS + 31_000


def test_a_trickle_without_timestamps_is_rolled_by_the_wall_clock(model: OnnxModel) -> None:
    clock = Clock()
    pipeline = _pipeline(model, clock, **AGE)  # type: ignore[arg-type]
    closed: list[tuple[int, str]] = []
    for i, record in enumerate(_trickle("drip", 25, stamped=False)):
        clock.now = i * TRICKLE_MS / 1000
        for step in (pipeline.expire(), pipeline.accept(record)):
            assert not step.rejected
        closed.extend((i, s.closed_by) for _, s in pipeline.take_summaries())
    # open since 0 s; the expire before the record at 31.9 s rolls it, that record opens
    # the next segment, which is rolled at 63.8 s
    assert closed == [(11, "rolled"), (22, "rolled")]
    assert pipeline.active_streams == 1
