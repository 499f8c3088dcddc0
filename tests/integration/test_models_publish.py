"""``tympan models publish`` on the real broker (issue #27): it takes the model
references ``classify`` and ``worker`` take, and refuses what the serving workers would
refuse unless told the model is for their restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from worker_harness import LABELS, SPEC, TYMPAN

from stream.kafka.topics import Topics
from tests.support.onnx_models import make_tiny_model_dir

pytestmark = pytest.mark.kafka


def _models(tmp: Path, topics: Topics, broker: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TYMPAN), "models", *args, "--broker", broker, "--topic-prefix", topics.prefix],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )


def test_publish_takes_references_and_refuses_what_workers_would(
    broker: str, topics: Topics, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_tiny_model_dir(repo / "tiny" / "1", spec=SPEC, labels=LABELS)
    make_tiny_model_dir(repo / "other" / "1", spec=SPEC, labels=("a", "b", "c"), name="other")
    at = ("--model-repo", str(repo))

    by_reference = _models(tmp_path, topics, broker, "publish", "tiny/1", *at)
    assert by_reference.returncode == 0, by_reference.stderr
    assert "tiny@1" in by_reference.stdout

    refused = _models(tmp_path, topics, broker, "publish", "other/1", *at)
    assert refused.returncode == 2
    assert "labels ['a', 'b', 'c'] differ" in refused.stderr and "tiny@1" in refused.stderr
    active = json.loads(_models(tmp_path, topics, broker, "active", "--json").stdout)
    assert active["active"]["scene"]["name"] == "tiny"  # nothing was announced

    for_restart = _models(tmp_path, topics, broker, "publish", "other/1", "--for-restart", *at)
    assert for_restart.returncode == 0, for_restart.stderr
    active = json.loads(_models(tmp_path, topics, broker, "active", "--json").stdout)
    assert active["active"]["scene"]["name"] == "other"
