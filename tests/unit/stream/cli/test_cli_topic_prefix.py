"""``tympan topics`` and ``tympan produce`` take their topic prefix from the environment.

The worker, tail and dashboard honour ``TYMPAN_TOPIC_PREFIX``; a deployment that sets
it must get its topics created and its audio produced under the same prefix.
"""

from __future__ import annotations

import pytest

from stream.cli import build_parser
from stream.cli.produce import audio_topic
from stream.errors import ConfigError
from stream.settings import ENV_TOPIC_PREFIX


@pytest.mark.parametrize("action", ["create", "list", "describe"])
def test_topics_prefix_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    monkeypatch.setenv(ENV_TOPIC_PREFIX, "acme")
    args = build_parser().parse_args(["topics", action])
    assert args.prefix == "acme"


@pytest.mark.parametrize("value", [None, ""])
def test_topics_prefix_falls_back_to_tympan(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(ENV_TOPIC_PREFIX, raising=False)
    else:
        monkeypatch.setenv(ENV_TOPIC_PREFIX, value)
    args = build_parser().parse_args(["topics", "list"])
    assert args.prefix == "tympan"


def test_topics_prefix_option_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TOPIC_PREFIX, "acme")
    args = build_parser().parse_args(["topics", "create", "--prefix", "other"])
    assert args.prefix == "other"


def test_produce_topic_defaults_to_the_environment_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_TOPIC_PREFIX, "acme")
    args = build_parser().parse_args(["produce", "call.wav"])
    assert args.topic_prefix == "acme"
    assert audio_topic(args) == "acme.audio.v1"


def test_produce_topic_falls_back_to_tympan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOPIC_PREFIX, raising=False)
    args = build_parser().parse_args(["produce", "call.wav"])
    assert audio_topic(args) == "tympan.audio.v1"


def test_produce_options_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TOPIC_PREFIX, "acme")
    parser = build_parser()
    by_prefix = parser.parse_args(["produce", "--topic-prefix", "other", "call.wav"])
    assert audio_topic(by_prefix) == "other.audio.v1"
    by_topic = parser.parse_args(["produce", "--topic", "raw.audio", "call.wav"])
    assert audio_topic(by_topic) == "raw.audio"


def test_produce_rejects_a_prefix_kafka_cannot_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TOPIC_PREFIX, "no spaces")
    args = build_parser().parse_args(["produce", "call.wav"])
    with pytest.raises(ConfigError, match="no spaces"):
        audio_topic(args)
