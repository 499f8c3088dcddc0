"""A worker whose speaker registry holds nobody says so loudly at start (issue #27):
every speaker event would read ``unknown``, which looks like a verdict, not a setup gap."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from stream.inference.manifest import load_manifest
from stream.inference.repository import resolve_model_dir
from stream.kafka.topics import Topics
from stream.settings import WorkerSettings
from stream.worker.build import load_speakers, warn_if_nobody_enrolled


def test_an_empty_registry_directory_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(
        WorkerSettings(), speaker_model="speaker-embed", speaker_registry=tmp_path / "nobody"
    )
    spec = load_manifest(resolve_model_dir(None)).feature_spec
    with caplog.at_level(logging.WARNING, logger="stream.worker.build"):
        hook, follower = load_speakers(settings, spec, Topics())
    assert follower is None and hook.model.name == "speaker-embed"
    (warning,) = [r.getMessage() for r in caplog.records if "enrolled" in r.getMessage()]
    assert str(tmp_path / "nobody") in warning
    assert "tympan speakers enroll" in warning and "--publish" in warning


def test_a_registry_with_speakers_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stream.worker.build"):
        warn_if_nobody_enrolled(2, "topic tympan.speaker-registry.v1")
        assert caplog.records == []
        warn_if_nobody_enrolled(0, "topic tympan.speaker-registry.v1")
    assert "topic tympan.speaker-registry.v1" in caplog.records[0].getMessage()
