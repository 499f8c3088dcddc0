"""The speaker registry round-trips through the compacted topic on the real broker."""

from __future__ import annotations

import asyncio

import numpy as np

from stream.kafka.admin import describe_topics
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.speakers.registry import ModelBinding, SpeakerRegistry
from stream.speakers.topic import RegistryFollower, publish

DIM = 16
MODEL = ModelBinding("speaker-embed", "1", DIM)


def _speaker(rng: np.random.Generator, n: int = 12) -> np.ndarray:
    centre = rng.normal(size=DIM)
    x = centre + 0.1 * rng.normal(size=(n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _registry(rng: np.random.Generator, names: list[str]) -> SpeakerRegistry:
    reg = SpeakerRegistry.empty(MODEL)
    for name in names:
        reg = reg.with_speaker(name, _speaker(rng), model=MODEL)
    return reg


def test_registry_topic_is_compacted(kafka_client: KafkaClientConfig, topics: Topics) -> None:
    (info,) = asyncio.run(describe_topics(kafka_client, [topics.speaker_registry]))
    assert info.configs.get("cleanup.policy") == "compact"


def test_follower_sees_enrollments_and_removals_live(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    rng = np.random.default_rng(5)
    local = _registry(rng, ["alice", "bob", "carol"])
    topic = topics.speaker_registry

    async def scenario() -> tuple[SpeakerRegistry, SpeakerRegistry, int, int]:
        await publish(kafka_client, local, topic=topic)
        follower = RegistryFollower(kafka_client, MODEL, topic=topic)
        await follower.start()
        try:
            assert list(follower.registry) == ["alice", "bob", "carol"]
            assert follower.version == 3
            scorer_before = follower.scorer()
            # A new enrollment and a removal arrive while the follower is live.
            newer = local.with_speaker("dave", _speaker(rng), model=MODEL).without("bob")
            await publish(kafka_client, newer, names=["dave"], removed=["bob"], topic=topic)
            await follower.wait_for_version(5, timeout_s=20)
            assert follower.scorer() is not scorer_before
            live = follower.registry
        finally:
            await follower.stop()
        # A worker started later replays the topic from the beginning.
        late = RegistryFollower(kafka_client, MODEL, topic=topic)
        await late.start()
        await late.stop()
        return live, late.registry, follower.rejected, late.rejected

    live, late, rejected, late_rejected = asyncio.run(scenario())
    for reg in (live, late):
        assert list(reg) == ["alice", "carol", "dave"]
        np.testing.assert_allclose(
            reg.speakers["alice"].embeddings, local.speakers["alice"].embeddings, atol=1e-6
        )
        assert reg.threshold == late.threshold
    assert (rejected, late_rejected) == (0, 0)


def test_records_of_another_model_are_skipped(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    rng = np.random.default_rng(6)
    other = ModelBinding("speaker-embed", "2", DIM)
    theirs = SpeakerRegistry.empty(other).with_speaker("mallory", _speaker(rng), model=other)
    ours = _registry(rng, ["alice"])

    async def scenario() -> RegistryFollower:
        await publish(kafka_client, theirs, topic=topics.speaker_registry)
        await publish(kafka_client, ours, topic=topics.speaker_registry)
        follower = RegistryFollower(kafka_client, MODEL, topic=topics.speaker_registry)
        await follower.start()
        await follower.stop()
        return follower

    follower = asyncio.run(scenario())
    assert list(follower.registry) == ["alice"]
    assert follower.rejected == 1


def test_cli_sync_publishes_the_local_registry(
    broker: str, kafka_client: KafkaClientConfig, topics: Topics, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from stream.cli import main
    from stream.speakers.registry import save_registry

    rng = np.random.default_rng(7)
    save_registry(_registry(rng, ["anna", "omar"]), tmp_path / "reg")
    argv = ["speakers", "--registry", str(tmp_path / "reg"), "sync"]
    assert main([*argv, "--broker", broker, "--topic", topics.speaker_registry]) == 0

    async def follow() -> SpeakerRegistry:
        follower = RegistryFollower(kafka_client, MODEL, topic=topics.speaker_registry)
        await follower.start()
        await follower.stop()
        return follower.registry

    assert list(asyncio.run(follow())) == ["anna", "omar"]
