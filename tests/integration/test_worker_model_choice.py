"""Which label model a starting worker serves, and why (issue #27): an announced model
wins over ``--model`` (a restart scores as the running workers do) but never in
silence, and a ``--model`` that names nothing fails the start on every prefix."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest
from worker_harness import LABELS, SPEC

from stream.control.gate import announce
from stream.control.records import publish_records
from stream.errors import ModelError
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.settings import WorkerSettings
from stream.worker.build import choose_model
from tests.support.onnx_models import make_tiny_model_dir

pytestmark = pytest.mark.kafka


def test_an_explicit_model_is_never_passed_over_in_silence(
    broker: str, topics: Topics, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo"
    v1 = make_tiny_model_dir(repo / "tiny" / "1", spec=SPEC, labels=LABELS)
    make_tiny_model_dir(repo / "tiny" / "2", spec=SPEC, labels=LABELS, version="2")
    client = KafkaClientConfig(bootstrap_servers=broker)
    published = announce(v1, role="scene", repo=repo)
    asyncio.run(publish_records(client, topics.control, [(published.key, published.to_json())]))
    base = dataclasses.replace(WorkerSettings(), kafka=client, model_repo=repo)

    with pytest.raises(ModelError, match="scnee"):  # a typo fails although tiny@1 is announced
        choose_model(dataclasses.replace(base, model="scnee"), control_topic=topics.control)

    with caplog.at_level(logging.WARNING, logger="stream.worker.build"):
        model, why = choose_model(
            dataclasses.replace(base, model="tiny/2"), control_topic=topics.control
        )
    assert model.manifest.version == "1"
    assert topics.control in why and "--model tiny/2 passed over" in why
    assert any("--model tiny/2" in r.getMessage() for r in caplog.records)

    model, why = choose_model(
        dataclasses.replace(base, model="tiny/1"), control_topic=topics.control
    )
    assert model.manifest.version == "1" and "passed over" not in why

    model, why = choose_model(dataclasses.replace(base, model="tiny/2"), control_topic=None)
    assert model.manifest.version == "2" and why == "--model tiny/2"
