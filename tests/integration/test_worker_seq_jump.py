"""Issue 11's crash on the real broker: a frame with valid headers and ``seq`` 10**18
after a normal first frame of the same stream.

Before the fix the worker held the frame, and closing the stream (idle timeout)
zero-filled or reset a gap of 10**18 frames: ``OverflowError``, the worker died, and
the record, replayed at restart, killed it again. Now the frame is a dead letter
``seq_jump``, the stream closes normally and the worker serves the next stream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from worker_harness import (
    WorkerFarm,
    produce,
    read_json,
    stream_frames,
    tiny_model,
    wait_for,
    wait_for_count,
)

from stream.kafka.topics import Topics


def test_a_seq_of_10_to_the_18_is_dead_lettered_and_the_worker_lives_on(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    farm = WorkerFarm(broker, topics, tiny_model(tmp_path / "model"), tmp_path)
    try:
        worker = farm.spawn("--idle-timeout-s", "2")
        poison = stream_frames("poison", seconds=0.5, loud=True)
        produce(broker, topics, [poison[0], dataclasses.replace(poison[1], seq=10**18)])
        (dead,) = wait_for_count(
            broker, topics.rejected, 1, timeout_s=120, what="the dead letter", farm=farm
        )
        assert (dead["stream_id"], dead["reason"]) == ("poison", "seq_jump")

        # the poison stream closes as idle (where the unfixed worker crashed) ...
        wait_for(
            lambda: any(s["stream_id"] == "poison" for s in read_json(broker, topics.summaries)),
            timeout_s=60,
            what="the poison stream's summary",
            farm=farm,
        )
        # ... and the same worker serves the next stream
        produce(broker, topics, stream_frames("after", seconds=1.0, loud=True))
        wait_for(
            lambda: any(s["stream_id"] == "after" for s in read_json(broker, topics.summaries)),
            timeout_s=60,
            what="the next stream's summary",
            farm=farm,
        )
        assert worker.proc is not None and worker.proc.poll() is None, farm.logs()
    finally:
        farm.stop_all()
