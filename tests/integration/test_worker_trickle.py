"""Issue 23.6 on the real broker: a stream that trickles audio never pins its partition.

One 1-byte μ-law frame per second keeps a stream open forever under the idle timeout,
and its audio (1/8000 s a frame) would take years to reach ``max_segment_s``. With
``--max-segment-age-s`` the worker rolls the segment once the partition's Kafka time
(LogAppendTime) passes its first record by that much, so the group's committed offset
moves on while the stream is still sending.
"""

from __future__ import annotations

import time
from pathlib import Path

from worker_harness import WorkerFarm, committed_lag, produce, read_json, tiny_model

from stream.kafka.topics import Topics
from stream.wire import AudioFrame, Encoding

AGE_S = 4
IDLE_S = 3
EVERY_S = 1.0  # a frame every second: never idle
MAX_FRAMES = 90  # the test's own bound: the commit must move twice before this


def _drip(seq: int) -> AudioFrame:
    # seqs from 100: each segment starts at its own first frame (past the opening zone)
    return AudioFrame(
        "drip", 100 + seq, 8000, Encoding.MULAW, 1, 1_700_000_000_000_000, False, b"\xff"
    )


def test_the_committed_offset_advances_while_a_trickle_stream_is_open(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    farm = WorkerFarm(broker, topics, tiny_model(tmp_path / "model"), tmp_path)
    try:
        worker = farm.spawn("--idle-timeout-s", str(IDLE_S), "--max-segment-age-s", str(AGE_S))
        committed: list[int] = []  # each new committed position seen, in order
        sent = 0
        while len(committed) < 2:
            assert sent < MAX_FRAMES, (
                f"after {sent} frames over {sent * EVERY_S:.0f} s the committed offset "
                f"moved {len(committed)} time(s): {committed}\n{farm.logs()}"
            )
            assert worker.proc is not None and worker.proc.poll() is None, farm.logs()
            produce(broker, topics, [_drip(sent)])
            sent += 1
            time.sleep(EVERY_S)
            behind, total = committed_lag(
                broker, farm.app_id, topics.audio, topics.audio_partitions
            )
            position = total - behind
            if position > (committed[-1] if committed else 0):
                committed.append(position)
        # the stream is still open and sending: what moved the commit is its rolled segments
        summaries = [s for s in read_json(broker, topics.summaries) if s["stream_id"] == "drip"]
        assert summaries and {s["closed_by"] for s in summaries} == {"rolled"}, summaries
        assert committed[-1] < sent  # the open segment still pins its first record
    finally:
        farm.stop_all()
