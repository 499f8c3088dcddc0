"""The synchronous domain core with a tiny real ONNX model: labels, summaries, gaps,
reorder, dead letters, capacity and idle timeout."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stream.audio.convert import float32_to_payload, payload_to_float32
from stream.errors import ConfigError
from stream.events import LabelEvent, ModelRef, RejectedRecord, SummaryEvent
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.features.windows import stack_windows
from stream.inference.session import OnnxModel
from stream.pipeline import Pipeline, PipelinePolicy, Record, WindowJob
from stream.produce import frames_from_array
from stream.settings import SequencingPolicy
from stream.wire import AudioFrame, Encoding, encode_frame
from tests.support.onnx_models import make_tiny_model_dir
from tests.support.replay import run_sync

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
T0_US = 1_700_000_000_000_000


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path = tmp_path_factory.mktemp("model") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["quiet", "loud"]))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _pipeline(model: OnnxModel, clock: Clock | None = None, **policy: object) -> Pipeline:
    return Pipeline(
        SPEC,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(SPEC),
        PipelinePolicy(**policy),  # type: ignore[arg-type]
        clock=clock or Clock(),
    )


def _frames(
    sid: str,
    *,
    loud: bool,
    seconds: float = 1.5,
    sr: int = 16000,
    enc: Encoding = Encoding.PCM_S16LE,
) -> list[AudioFrame]:
    rng = np.random.default_rng(abs(hash(sid)) % 2**32)
    y = (rng.standard_normal(round(seconds * sr)) * (0.2 if loud else 1e-5)).astype(np.float32)
    return list(frames_from_array(y, sr, stream_id=sid, encoding=enc, chunk_ms=20, start_us=T0_US))


def _records(frames: Iterable[AudioFrame], partition: int = 0) -> list[Record]:
    out = []
    for offset, frame in enumerate(frames):
        key, value, headers = encode_frame(frame)
        out.append(Record(key, value, tuple(headers), "audio", partition, offset))
    return out


def _run(
    pipeline: Pipeline, records: list[Record], model: OnnxModel
) -> tuple[list[LabelEvent], list[SummaryEvent], list[RejectedRecord]]:
    return run_sync(pipeline, records, lambda x: model.run(x).probabilities)


def _key(events: Iterable[LabelEvent]) -> list[tuple[str, int, str, float, bool]]:
    return sorted((e.event_id, e.span.index, e.label, round(e.score, 5), e.gap) for e in events)


@pytest.mark.parametrize(
    ("sr", "enc"),
    [
        (16000, Encoding.PCM_S16LE),
        (8000, Encoding.MULAW),
        (8000, Encoding.ALAW),
        (44100, Encoding.PCM_F32LE),
    ],
)
def test_loud_and_quiet_streams_get_their_labels(model: OnnxModel, sr: int, enc: Encoding) -> None:
    frames = [
        *_frames("loud", loud=True, sr=sr, enc=enc),
        *_frames("quiet", loud=False, sr=sr, enc=enc),
    ]
    labels, summaries, rejected = _run(_pipeline(model), _records(frames), model)
    assert not rejected
    assert {e.label for e in labels if e.stream_id == "loud"} == {"loud"}
    assert {e.label for e in labels if e.stream_id == "quiet"} == {"quiet"}
    by_stream = {s.stream_id: s for s in summaries}
    assert by_stream["loud"].dominant_label == "loud"
    assert by_stream["loud"].duration_s == pytest.approx(1.5, abs=1e-3)
    assert by_stream["loud"].closed_by == "eos"
    indices = sorted(e.span.index for e in labels if e.stream_id == "loud")
    assert indices == list(range(len(indices)))
    assert by_stream["loud"].windows == len(indices)


def test_window_spans_and_capture_times(model: OnnxModel) -> None:
    labels, _, _ = _run(_pipeline(model), _records(_frames("a", loud=True)), model)
    first = min(labels, key=lambda e: e.span.index)
    assert (first.span.start_sample, first.span.sr) == (0, 16000)
    assert first.span.end_sample == SPEC.window_span(0)[1]
    assert first.span.capture_time_s == pytest.approx(T0_US / 1e6 + first.span.end_s)
    assert labels[-1].padded or labels[-1].span.end_sample <= 24000


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(0, 2**32 - 1))
@example(29390)  # a copy of seq 0 fell after the end-of-stream frame
def test_reordered_and_duplicated_frames_give_the_ordered_events(
    model: OnnxModel, seed: int
) -> None:
    """Reordered within the grace and repeated: a repeat lands anywhere after its
    original, except that a repeat of seq 0 stays before the end-of-stream frame: a
    seq-0 frame after the end is a new run of the id (``stream_reused``,
    docs/delivery.md), whatever its bytes."""
    frames = _frames("r", loud=True, seconds=1.0)
    ordered, _, _ = _run(_pipeline(model), _records(frames), model)
    rng = random.Random(seed)
    shuffled: list[AudioFrame] = []
    for i in range(0, len(frames), 5):  # displacement < reorder_frames (8)
        block = frames[i : i + 5]
        rng.shuffle(block)
        shuffled.extend(block)
    for _ in range(5):
        j = rng.randrange(len(shuffled))
        last = len(shuffled)
        if shuffled[j].seq == 0:
            last = next(i for i, f in enumerate(shuffled) if f.eos)
        shuffled.insert(rng.randrange(j, last + 1), shuffled[j])
    got, summaries, rejected = _run(_pipeline(model), _records(shuffled), model)
    assert not rejected
    assert _key(got) == _key(ordered)
    assert summaries[0].counts["gaps"] == 0


def test_a_short_gap_is_zero_filled_and_flagged(model: OnnxModel) -> None:
    frames = _frames("g", loud=True, seconds=2.0)
    del frames[30:33]
    labels, summaries, _ = _run(_pipeline(model), _records(frames), model)
    (summary,) = summaries
    assert summary.counts["gaps"] == 1 and summary.counts["gap_frames"] == 3
    assert summary.duration_s == pytest.approx(2.0, abs=1e-3)  # timing kept
    gap_start, gap_end = 30 * 320, 33 * 320
    for e in labels:
        overlaps = e.span.start_sample < gap_end and gap_start < e.span.end_sample
        assert e.gap == overlaps


def test_a_long_gap_resets_features_and_keeps_ids_unique(model: OnnxModel) -> None:
    frames = _frames("long", loud=True, seconds=3.0)
    del frames[40:100]  # 1.2 s missing, beyond max_gap_frames
    labels, summaries, _ = _run(
        _pipeline(model, sequencing=SequencingPolicy(max_gap_frames=10)), _records(frames), model
    )
    assert summaries[0].counts["resets"] == 1
    ids = [e.event_id for e in labels]
    assert len(ids) == len(set(ids))
    starts = [e.span.start_sample for e in sorted(labels, key=lambda e: e.span.index)]
    assert starts == sorted(starts)
    assert max(e.span.end_sample for e in labels) <= 3.0 * 16000


def test_garbage_is_rejected_with_a_reason_and_others_go_on(model: OnnxModel) -> None:
    good = _records(_frames("good", loud=False))
    bad = Record(b"bad", b"\x00" * 3, good[0].headers, "audio", 0, 999)
    nokey = Record(None, good[1].value, good[1].headers, "audio", 0, 1000)
    _labels, summaries, rejected = _run(_pipeline(model), [good[0], bad, nokey, *good[1:]], model)
    assert sorted(r.reason for r in rejected) == ["bad_payload_length", "missing_key"]
    (odd,) = [r for r in rejected if r.stream_id == "bad"]
    assert (odd.offset, odd.payload, odd.headers) == (999, b"\x00" * 3, good[0].headers)
    assert "stream 'bad'" in odd.message and "offset 999" in odd.message
    assert [s.stream_id for s in summaries] == ["good"]


def test_format_change_mid_stream_is_rejected(model: OnnxModel) -> None:
    frames = _frames("f", loud=True, seconds=0.5)
    other = _frames("f", loud=True, seconds=0.5, sr=8000, enc=Encoding.MULAW)
    records = _records([*frames[:5], other[5], *frames[6:]])
    _, summaries, rejected = _run(_pipeline(model), records, model)
    assert [r.reason for r in rejected] == ["format_changed"]
    assert summaries[0].counts["rejected"] == 1 and summaries[0].counts["gaps"] == 1


def test_past_max_streams_the_longest_silent_stream_is_evicted(model: OnnxModel) -> None:
    a, b = _frames("a", loud=True, seconds=0.5), _frames("b", loud=True, seconds=0.5)
    records = _records([*a[:5], b[0], *a[5:], *b[1:]])
    _, summaries, rejected = _run(_pipeline(model, max_streams=1), records, model)
    assert not rejected
    assert [(s.stream_id, s.closed_by) for s in summaries] == [
        ("a", "evicted"),  # b arrives: a has gone longest without a record
        ("b", "evicted"),  # a comes back as a new segment
        ("a", "eos"),
        ("b", "eos"),
    ]


def test_a_stream_first_seen_mid_way_opens_a_segment_at_its_seq(model: OnnxModel) -> None:
    frames = _frames("mid", loud=True, seconds=2.0)
    labels, summaries, rejected = _run(_pipeline(model), _records(frames[80:]), model)
    assert not rejected and [s.closed_by for s in summaries] == ["eos"]
    assert labels and min(e.span.start_sample for e in labels) == 0  # the segment's samples
    assert summaries[0].duration_s == pytest.approx(20 * 0.02, abs=1e-3)


def test_idle_streams_close_with_a_summary(model: OnnxModel) -> None:
    clock = Clock()
    pipeline = _pipeline(model, clock, idle_timeout_s=5.0)
    frames = _frames("idle", loud=True, seconds=1.0)[:-1]  # never sends EOS
    jobs = [job for record in _records(frames) for job in pipeline.accept(record).jobs]
    assert pipeline.expire().jobs == [] and pipeline.active_streams == 1
    clock.now = 10.0
    jobs.extend(pipeline.expire().jobs)
    x = np.stack([j.window.features[..., None] for j in jobs])
    assert pipeline.take_summaries() == []  # windows still out for inference
    pipeline.complete(jobs, model.run(x).probabilities)
    ((partition, summary),) = pipeline.take_summaries()
    assert summary.closed_by == "idle" and partition == 0
    assert pipeline.active_streams == 0


def test_duplicates_after_the_end_are_dropped_silently(model: OnnxModel) -> None:
    frames = _frames("d", loud=True, seconds=0.5)
    _labels, summaries, rejected = _run(_pipeline(model), _records([*frames, frames[3]]), model)
    assert not rejected and len(summaries) == 1


def test_revoked_partitions_forget_their_streams(model: OnnxModel) -> None:
    pipeline = _pipeline(model)
    for record in _records(_frames("p1", loud=True, seconds=0.5)[:5], partition=1):
        pipeline.accept(record)
    for record in _records(_frames("p2", loud=True, seconds=0.5)[:5], partition=2):
        pipeline.accept(record)
    assert pipeline.drop_partitions([1]) == ["p1"]
    assert pipeline.stream_partition("p1") is None and pipeline.stream_partition("p2") == 2
    assert pipeline.first_offset("p2") == 0


def test_label_event_latency_is_measured_from_window_ready(model: OnnxModel) -> None:
    clock = Clock()
    pipeline = _pipeline(model, clock)
    jobs = []
    for record in _records(_frames("l", loud=True, seconds=1.0)):
        jobs.extend(pipeline.accept(record).jobs)
    clock.now = 0.25
    x = np.stack([j.window.features[..., None] for j in jobs])
    events = pipeline.complete(jobs, model.run(x).probabilities)
    assert all(e.latency_ms == pytest.approx(250.0) for e in events)


def test_accepting_records_in_batches_gives_the_same_events(model: OnnxModel) -> None:
    frames = [
        *_frames("x", loud=True, seconds=1.2),
        *_frames("y", loud=False, seconds=1.2, sr=8000, enc=Encoding.MULAW),
    ]
    records = _records(frames)
    del records[20:22]  # a gap, zero-filled, inside a batch
    one_by_one, _, _ = _run(_pipeline(model), records, model)
    pipeline = _pipeline(model)
    jobs = []
    for i in range(0, len(records), 17):
        jobs.extend(pipeline.accept_many(records[i : i + 17]).jobs)
    x = np.stack([j.window.features[..., None] for j in jobs])
    batched = pipeline.complete(jobs, model.run(x).probabilities)
    assert _key(batched) == _key(one_by_one)
    assert {s.stream_id for _, s in pipeline.take_summaries()} == {"x", "y"}


def test_results_of_a_dropped_incarnation_do_not_touch_the_reopened_stream(
    model: OnnxModel,
) -> None:
    pipeline = _pipeline(model)
    records = _records(_frames("back", loud=True, seconds=1.0))
    old_jobs = [job for r in records[:40] for job in pipeline.accept(r).jobs]
    assert old_jobs
    pipeline.drop_partitions([0])  # revoked; then assigned back and replayed
    new_jobs = [job for r in records for job in pipeline.accept(r).jobs]

    def infer(jobs: list[WindowJob]) -> np.ndarray:
        return model.run(np.stack([j.window.features[..., None] for j in jobs])).probabilities

    pipeline.complete(old_jobs, infer(old_jobs))  # late results of the first opening
    assert pipeline.take_summaries() == []
    pipeline.complete(new_jobs, infer(new_jobs))
    ((_, summary),) = pipeline.take_summaries()
    assert summary.windows == len(new_jobs)


def test_an_aux_frontend_rides_along_on_the_same_windows(model: OnnxModel) -> None:
    aux_spec = dataclasses.replace(SPEC, n_mels=40, fmin=60.0, fmax=4000.0)
    pipeline = Pipeline(
        SPEC,
        ModelRef("tiny", "1"),
        model.labels,
        FeatureBank(SPEC),
        PipelinePolicy(),
        aux_frontend=FeatureBank(aux_spec),
    )
    records = _records(_frames("aux", loud=True, seconds=1.1))
    jobs = [j for r in records for j in pipeline.accept(r).jobs]
    assert jobs and all(j.aux_features is not None for j in jobs)
    assert {j.aux_features.shape for j in jobs if j.aux_features is not None} == {
        (40, SPEC.frames_per_window)
    }


def test_an_aux_frontend_with_other_windows_is_refused(model: OnnxModel) -> None:
    other = dataclasses.replace(SPEC, hop_seconds=0.5)
    with pytest.raises(ConfigError, match="hop_seconds"):
        Pipeline(
            SPEC,
            ModelRef("tiny", "1"),
            model.labels,
            FeatureBank(SPEC),
            PipelinePolicy(),
            aux_frontend=FeatureBank(other),
        )


def test_a_multi_label_stream_gets_tags_and_the_offline_verdict(tmp_path: Path) -> None:
    """Label events carry the thresholded tags; the summary is ``classify``'s verdict."""
    import soundfile as sf

    from stream.cli.classify import file_verdict
    from stream.inference.clips import predict_file

    path = make_tiny_model_dir(tmp_path / "tags", spec=SPEC, labels=["a", "b"], task="multi")
    tagger = OnnxModel.load(path)
    m = tagger.manifest
    pipeline = Pipeline(
        SPEC,
        ModelRef(m.name, m.version),
        m.labels,
        FeatureBank(SPEC),
        PipelinePolicy(),
        clock=Clock(),
        thresholds=m.thresholds,
    )
    rng = np.random.default_rng(5)
    y = np.concatenate([1e-5 * rng.standard_normal(16000), 0.2 * rng.standard_normal(24000)])
    y = y.astype(np.float32)
    frames = frames_from_array(
        y, 16000, stream_id="t", encoding=Encoding.PCM_F32LE, chunk_ms=20, start_us=T0_US
    )
    labels, summaries, _ = _run(pipeline, _records(frames), tagger)
    assert [[t for t, _ in e.tags or ()] for e in labels] == [[]] * 4 + [["a", "b"]] * 5
    assert labels[-1].tags == labels[-1].top_k  # both over 0.5: best first, with scores
    sf.write(tmp_path / "t.wav", y, 16000, subtype="FLOAT")
    offline = file_verdict(tagger, predict_file(tagger, tmp_path / "t.wav"))
    (summary,) = summaries
    assert summary.task == "multi" and summary.tags == offline.tags
    assert summary.to_dict()["tags"] == offline.to_dict()["tags"]
    assert summary.dominant_label == offline.dominant_label == "a"
    assert [(t.tag, t.active_share) for t in summary.tags] == [("a", 5 / 9), ("b", 5 / 9)]


def test_a_batch_scored_before_a_swap_keeps_its_models_thresholds(tmp_path: Path) -> None:
    """Windows completed after :meth:`Pipeline.serve` are cut at the thresholds of the
    model named as their scorer (a batch in flight at the swap keeps the old ones)."""
    path = make_tiny_model_dir(tmp_path / "tags", spec=SPEC, labels=["a", "b"], task="multi")
    tagger = OnnxModel.load(path)
    v1, v2 = ModelRef("tags", "1"), ModelRef("tags", "2")
    pipeline = Pipeline(
        SPEC, v1, ("a", "b"), FeatureBank(SPEC), PipelinePolicy(), thresholds=(0.5, 0.5)
    )
    jobs: list[WindowJob] = []
    for record in _records(_frames("t", loud=False)):  # quiet: no tag reaches 0.5
        jobs += pipeline.accept(record).jobs
    jobs += pipeline.close_all().jobs
    x = stack_windows([j.window for j in jobs], SPEC)
    probabilities = tagger.run(x).probabilities
    half = len(jobs) // 2
    pipeline.serve(v2, (0.0, 1.0))  # v2: tag "a" always
    late_v1 = pipeline.complete(jobs[:half], probabilities[:half], model=v1)
    by_v2 = pipeline.complete(jobs[half:], probabilities[half:], model=v2)
    assert [e.tags for e in late_v1] == [()] * half
    assert [[t for t, _ in e.tags or ()] for e in by_v2] == [["a"]] * (len(jobs) - half)
    ((_, summary),) = pipeline.take_summaries()
    assert [(t.tag, t.active_share) for t in summary.tags] == [
        ("a", (len(jobs) - half) / len(jobs))
    ]
    with pytest.raises(ConfigError, match="keeps the task"):
        pipeline.serve(ModelRef("single", "1"), None)


def test_thresholds_must_match_the_labels(model: OnnxModel) -> None:
    with pytest.raises(ConfigError, match="1 thresholds for 2 labels"):
        Pipeline(
            SPEC,
            ModelRef("m", "1"),
            model.labels,
            FeatureBank(SPEC),
            PipelinePolicy(),
            thresholds=(0.5,),
        )


def _jobs_of(pipeline: Pipeline, records: list[Record], sizes: list[int]) -> list[WindowJob]:
    jobs: list[WindowJob] = []
    at, turn = 0, 0
    while at < len(records):
        size = sizes[turn % len(sizes)]
        jobs.extend(pipeline.accept_many(records[at : at + size]).jobs)
        at, turn = at + size, turn + 1
    return jobs + pipeline.close_all().jobs


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    dropped=st.lists(st.integers(1, 48), max_size=4),
)
def test_raw_pcm_decoded_at_the_drain_equals_the_per_record_decode(
    model: OnnxModel, sizes: list[int], dropped: list[int]
) -> None:
    """Mono pcm_s16le at the model rate is decoded at the drain, all records of a call
    in one go; pcm_f32le of the same samples takes the per-record decode. Both must
    cut the same windows with the same features, bit for bit, whatever the batching,
    short and long gaps, and streams interleaved."""
    rng = np.random.default_rng(len(sizes) * 100 + len(dropped))

    def records(enc: Encoding) -> list[Record]:
        frames: list[AudioFrame] = []
        for sid in ("a", "b"):
            y = rng.integers(-20000, 20000, 16000).astype(np.float32) / 32768
            frames += frames_from_array(
                y, 16000, stream_id=sid, encoding=enc, chunk_ms=20, start_us=T0_US
            )
        keep = [f for f in frames if f.seq not in dropped or f.stream_id == "b"]
        keep.sort(key=lambda f: (f.seq, f.stream_id))  # interleaved, as a partition holds them
        return _records(keep)

    policy = {"sequencing": SequencingPolicy(max_gap_frames=2)}  # 3+ dropped in a row: reset
    rng_state = rng.bit_generator.state
    raw = _jobs_of(_pipeline(model, **policy), records(Encoding.PCM_S16LE), sizes)
    rng.bit_generator.state = rng_state
    general = _jobs_of(_pipeline(model, **policy), records(Encoding.PCM_F32LE), sizes)

    def described(jobs: list[WindowJob]) -> list[tuple[object, ...]]:
        return [(j.window.stream_id, j.window.index, j.span, j.gap, j.key) for j in jobs]

    assert raw and described(raw) == described(general)
    for a, b in zip(raw, general, strict=True):
        assert np.array_equal(a.window.features, b.window.features)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    dropped=st.lists(st.integers(1, 48), max_size=4),
    enc=st.sampled_from([Encoding.MULAW, Encoding.ALAW]),
)
@example(sizes=[7, 1], dropped=[5, 20, 21, 22], enc=Encoding.ALAW)  # a zero fill and a reset
def test_g711_resampled_at_the_drain_equals_the_per_record_path(
    model: OnnxModel, sizes: list[int], dropped: list[int], enc: Encoding
) -> None:
    """Mono 8 kHz G.711 is decoded and upsampled at the drain, all streams in one
    product; pcm_f32le of the same (decoded) samples takes the per-record resampler.
    Same windows, spans and gap flags whatever the batching, short and long gaps (zero
    fill, resets) and EOS; features to the rounding of one product over rows of many
    streams (samples within the resampler tests' 1e-6; features measured identical here,
    1e-4 covers a BLAS whose blocking depends on the row count)."""
    rng = np.random.default_rng(len(sizes) * 100 + len(dropped))
    calls = {}
    for sid in ("a", "b"):
        y = rng.integers(-20000, 20000, 8000).astype(np.float32) / 32768
        calls[sid] = payload_to_float32(float32_to_payload(y, enc), enc, 1)  # exact in f32

    def records(encoding: Encoding) -> list[Record]:
        frames: list[AudioFrame] = []
        for sid, y in calls.items():
            frames += frames_from_array(
                y, 8000, stream_id=sid, encoding=encoding, chunk_ms=20, start_us=T0_US
            )
        keep = [f for f in frames if f.seq not in dropped or f.stream_id == "b"]
        keep.sort(key=lambda f: (f.seq, f.stream_id))
        return _records(keep)

    policy = {"sequencing": SequencingPolicy(max_gap_frames=2)}  # 3+ dropped in a row: reset
    pipelines = [_pipeline(model, **policy) for _ in range(2)]
    deferred = _jobs_of(pipelines[0], records(enc), sizes)
    general = _jobs_of(pipelines[1], records(Encoding.PCM_F32LE), sizes)
    durations = []
    for pipeline, jobs in zip(pipelines, (deferred, general), strict=True):
        pipeline.skip(jobs)
        durations.append(sorted((s.stream_id, s.duration_s) for _, s in pipeline.take_summaries()))
    assert durations[0] == durations[1] and len(durations[0]) == 2

    def described(jobs: list[WindowJob]) -> list[tuple[object, ...]]:
        return [(j.window.stream_id, j.window.index, j.span, j.gap, j.key) for j in jobs]

    assert deferred and described(deferred) == described(general)
    for a, b in zip(deferred, general, strict=True):
        np.testing.assert_allclose(a.window.features, b.window.features, rtol=1e-4, atol=1e-4)
