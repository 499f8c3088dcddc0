"""`tympan produce` end to end: the real CLI as a subprocess, the real broker, read back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from kafka_helpers import consume_all

from stream.audio.convert import payload_to_float32
from stream.kafka.topics import Topics
from stream.produce import frames_from_array, interleave, now_us, produce_frames
from stream.wire import AudioFrame, Encoding, decode_frame

REPO = Path(__file__).resolve().parents[2]


def tympan() -> str:
    beside_python = Path(sys.executable).with_name("tympan")
    return str(beside_python if beside_python.exists() else REPO / ".venv" / "bin" / "tympan")


def produce(broker: str, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TYMPAN_BROKER": broker}
    return subprocess.run(
        [tympan(), "produce", "--fast", "--no-progress", "--topic", topic, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def streams_on(broker: str, topic: str) -> dict[str, list[AudioFrame]]:
    """Every frame on ``topic``, decoded, per stream in seq order."""
    out: dict[str, list[AudioFrame]] = defaultdict(list)
    for record in consume_all(broker, topic):
        frame = decode_frame(record.key, record.value, record.headers)
        out[frame.stream_id].append(frame)
    return {sid: sorted(frames, key=lambda f: f.seq) for sid, frames in out.items()}


def assert_complete(frames: list[AudioFrame]) -> None:
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert [f.eos for f in frames] == [False] * (len(frames) - 1) + [True]


def test_pcm_s16le_arrives_bit_identical(broker: str, topics: Topics, tmp_path: Path) -> None:
    pcm = np.random.default_rng(1).integers(-32768, 32768, 16000 + 1234).astype(np.int16)
    path = tmp_path / "call-17.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")

    done = produce(broker, topics.audio, str(path))

    assert done.returncode == 0, done.stderr
    assert "produced 11 frames" in done.stdout
    frames = streams_on(broker, topics.audio)["call-17"]
    assert_complete(frames)
    assert {(f.sample_rate, f.encoding, f.channels) for f in frames} == {
        (16000, Encoding.PCM_S16LE, 1)
    }
    assert b"".join(f.payload for f in frames) == pcm.astype("<i2").tobytes()


def test_mulaw_8k_matches_resampled_reference(broker: str, topics: Topics, tmp_path: Path) -> None:
    sr = 44100
    t = np.arange(sr) / sr
    x = (0.4 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t)).astype(np.float32)
    path = tmp_path / "tone.flac"
    sf.write(path, x, sr, subtype="PCM_24")

    done = produce(
        broker, topics.audio, "--encoding", "mulaw", "--rate", "8000", "--chunk-ms", "20", str(path)
    )

    assert done.returncode == 0, done.stderr
    frames = streams_on(broker, topics.audio)["tone"]
    assert_complete(frames)
    assert {(f.sample_rate, f.encoding) for f in frames} == {(8000, Encoding.MULAW)}
    assert all(f.n_samples == 160 for f in frames)
    got = payload_to_float32(b"".join(f.payload for f in frames), Encoding.MULAW, 1)
    file_samples, _ = sf.read(path, dtype="float32")
    reference = soxr.resample(file_samples, sr, 8000)
    assert got.shape == reference.shape
    # μ-law error bound: G.711 reconstructs at the middle of a quantization interval,
    # whose width doubles per segment; over all 16-bit inputs the measured worst error
    # is |x|/32 + 7.2 LSB (negative side, g711.c truncates toward -inf). Allow
    # |ref|/32 + 8 LSB, plus 1 LSB for rounding the resampled float to 16 bits.
    bound = np.abs(reference) / 32 + 9 / 32768
    assert np.all(np.abs(got - reference) <= bound)


def test_unreadable_file_is_named_and_the_good_one_still_arrives(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, np.full(4000, 0.25, np.float32), 8000, subtype="PCM_16")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really a wave file")
    missing = tmp_path / "missing.flac"

    done = produce(broker, topics.audio, str(broken), str(good), str(missing))

    assert done.returncode == 1
    assert str(broken) in done.stderr and str(missing) in done.stderr
    streams = streams_on(broker, topics.audio)
    assert list(streams) == ["good"]
    assert_complete(streams["good"])
    assert sum(f.n_samples for f in streams["good"]) == 4000


def test_fan_out_into_concurrent_streams(broker: str, topics: Topics, tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000, subtype="PCM_16")

    done = produce(
        broker,
        topics.audio,
        "--streams",
        "20",
        "--stream-id-prefix",
        "load-",
        str(tmp_path / "a.wav"),
    )

    assert done.returncode == 0, done.stderr
    streams = streams_on(broker, topics.audio)
    assert sorted(streams) == [f"load-a-{j:02d}" for j in range(20)]
    for frames in streams.values():
        assert_complete(frames)


def test_raw_samples_from_stdin_are_published_unchanged(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    codes = bytes(np.random.default_rng(2).integers(0, 256, 8000 + 80, dtype=np.uint8))
    env = {**os.environ, "TYMPAN_BROKER": broker}
    done = subprocess.run(
        [
            tympan(),
            "produce",
            "-",
            "--fast",
            "--no-progress",
            "--topic",
            topics.audio,
            "--rate",
            "8000",
            "--encoding",
            "alaw",
            "--stream-id",
            "pipe",
        ],
        input=codes,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    frames = streams_on(broker, topics.audio)["pipe"]
    assert_complete(frames)
    assert {(f.sample_rate, f.encoding) for f in frames} == {(8000, Encoding.ALAW)}
    assert b"".join(f.payload for f in frames) == codes


def test_programmatic_realtime_keeps_capture_times(broker: str, topics: Topics) -> None:
    """produce_frames(realtime=True) paces by capture-us and publishes it unchanged."""
    start = now_us()
    x = np.zeros(4800, np.float32)  # 0.3 s at 16 kHz
    streams = [
        frames_from_array(x, 16000, stream_id=f"rt-{i}", chunk_ms=50, start_us=start + 1000 * i)
        for i in range(3)
    ]
    stats = asyncio.run(
        produce_frames(broker, topics.audio, interleave(streams, realtime=True), realtime=True)
    )

    assert (stats.frames, stats.streams) == (18, 3)
    got = streams_on(broker, topics.audio)
    for i in range(3):
        frames = got[f"rt-{i}"]
        assert_complete(frames)
        assert [f.capture_us - start for f in frames] == [1000 * i + 50_000 * k for k in range(6)]


def test_realtime_fan_out_reports_send_lag_and_never_sends_early(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    """`--realtime --json`: every frame arrives, none before a live source would have it
    (the record's Kafka timestamp, the broker's append time, is not before the chunk's
    last sample), and the run
    reports its send-lag percentiles."""
    sf.write(tmp_path / "call.wav", np.zeros(2400, np.float32), 8000, subtype="PCM_16")
    env = {**os.environ, "TYMPAN_BROKER": broker}
    done = subprocess.run(
        [
            tympan(),
            *("produce", "--realtime", "--json", "--no-progress", "--topic", topics.audio),
            *("--encoding", "mulaw", "--chunk-ms", "20", "--streams", "30"),
            str(tmp_path / "call.wav"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["frames"], report["streams"]) == (30 * 15, 30)
    assert 0 <= report["send_lag_p50_ms"] <= report["send_lag_p99_ms"] <= report["send_lag_max_ms"]
    records = consume_all(broker, topics.audio)
    assert len(records) == 30 * 15
    for record in records:
        frame = decode_frame(record.key, record.value, record.headers)
        due_ms = (frame.capture_us + frame.n_samples * 1_000_000 // frame.sample_rate) // 1000
        assert record.timestamp >= due_ms, (frame.stream_id, frame.seq)
    assert all(len(frames) == 15 for frames in streams_on(broker, topics.audio).values())


def test_a_live_source_is_sent_while_it_is_still_open(broker: str, topics: Topics) -> None:
    """``tympan ingest`` feeds produce_frames from a queue that stays open for the whole
    call: each frame must reach the broker while the source waits for the next one,
    not when the call (or the batch of 1,000 frames) ends."""
    from aiokafka import AIOKafkaConsumer

    audio = np.zeros(1600, dtype=np.float32)
    first = next(iter(frames_from_array(audio, 16_000, stream_id="live", chunk_ms=100)))
    seen = asyncio.Event()

    async def live() -> Any:
        yield first
        await asyncio.wait_for(seen.wait(), 60)  # the call goes on until the frame arrived

    async def watch() -> None:
        consumer = AIOKafkaConsumer(
            topics.audio, bootstrap_servers=broker, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while not seen.is_set():
                if any((await consumer.getmany(timeout_ms=500)).values()):
                    seen.set()
        finally:
            await consumer.stop()

    async def main() -> None:
        sending = asyncio.create_task(produce_frames(broker, topics.audio, live()))
        await asyncio.wait_for(watch(), 60)
        await sending

    asyncio.run(main())
