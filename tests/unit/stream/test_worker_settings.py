"""WorkerSettings: defaults, TYMPAN_* variables, flags over variables, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.errors import ConfigError
from stream.settings import WorkerSettings


def test_defaults_are_safe() -> None:
    s = WorkerSettings.from_environ({})
    assert s.web_host == "127.0.0.1"
    assert s.topic_prefix == "tympan"
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.batching.max_batch >= 1 and s.batching.queue_windows >= s.batching.max_batch


def test_environment_then_flags() -> None:
    env = {
        "TYMPAN_BROKER": "k1:9092",
        "TYMPAN_MAX_BATCH": "16",
        "TYMPAN_IDLE_TIMEOUT_S": "5",
        "TYMPAN_MODEL": "scene/2",
        "TYMPAN_DATA_DIR": "/tmp/x",
    }
    s = WorkerSettings.from_environ(env, {"max_batch": 8, "broker": None, "web_port": 0})
    assert s.kafka.bootstrap_servers == "k1:9092"
    assert s.batching.max_batch == 8
    assert s.idle_timeout_s == 5.0
    assert s.model == "scene/2" and s.data_dir == Path("/tmp/x")
    assert s.web_port == 0


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="TYMPAN_MAX_BATCH"):
        WorkerSettings.from_environ({"TYMPAN_MAX_BATCH": "lots"})
    with pytest.raises(ConfigError, match="max_streams"):
        WorkerSettings.from_environ({}, {"max_streams": 0})
    with pytest.raises(ConfigError, match="queue_windows"):
        WorkerSettings.from_environ({}, {"max_batch": 64, "queue_windows": 8})


def test_settings_are_frozen() -> None:
    s = WorkerSettings()
    with pytest.raises(AttributeError):
        s.max_streams = 3  # type: ignore[misc]
    assert s.with_changes(max_streams=3).max_streams == 3


def test_stream_limits_from_environment_and_flags() -> None:
    env = {
        "TYMPAN_MAX_FRAME_BYTES": "4096",
        "TYMPAN_MAX_GAP_S": "1.5",
        "TYMPAN_MAX_SEGMENT_S": "60",
    }
    s = WorkerSettings.from_environ(env, {"max_seq_jump": 200, "max_frame_ms": None})
    assert (s.limits.max_frame_bytes, s.limits.max_gap_s, s.limits.max_segment_s) == (
        4096,
        1.5,
        60.0,
    )
    assert s.limits.max_seq_jump == 200 and s.limits.max_frame_ms == 1000.0
    with pytest.raises(ConfigError, match="TYMPAN_MAX_SEQ_JUMP"):
        WorkerSettings.from_environ({"TYMPAN_MAX_SEQ_JUMP": "many"})
    with pytest.raises(ConfigError, match="max_frame_bytes"):
        WorkerSettings.from_environ({"TYMPAN_MAX_FRAME_BYTES": "0"})
