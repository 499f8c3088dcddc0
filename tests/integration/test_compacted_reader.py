"""The one compacted-topic reader on the real broker (``stream.kafka.compacted``), and the
followers built on it surviving poison records (issue 11 finding 3, issue 12 item 6).

The reader replays a topic to the end offsets it saw when it opened, then follows
what arrives; it never looks inside values. The registry follower applies every
record of a fetch even when one in the middle is poison (it used to lose the rest
of the fetch), and hypothesis-generated mutations of real enrollments on the topic
end as counted rejections while real enrollments keep arriving.
"""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_helpers import produce_records

from stream.errors import BrokerError
from stream.kafka.compacted import CompactedReader, observe, read_latest
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.settings import ControlLimits, RecordLimits
from stream.speakers.registry import ModelBinding, SpeakerRegistry
from stream.speakers.topic import RegistryFollower, encode_enrollment

DIM = 4
MODEL = ModelBinding("speaker-embed", "1", DIM)
DEEP = b"[" * 100_000
FULL = os.environ.get("TYMPAN_TEST_SCALE") == "full"
LIMITS = ControlLimits(registry_max_bytes=64 * 1024, max_json_depth=8)


def _enrollment(name: str, seed: int) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, DIM))
    registry = SpeakerRegistry.empty(MODEL).with_speaker(
        name, x / np.linalg.norm(x, axis=1, keepdims=True), model=MODEL
    )
    return encode_enrollment(registry, name)


def test_replay_stops_at_the_end_then_follow_sees_new_records(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    topic = topics.control
    produce_records(kafka_client, topic, [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", None)])

    async def scenario() -> tuple[list[tuple[bytes | None, bytes | None]], list[bytes | None]]:
        async with CompactedReader(kafka_client, topic, timeout_s=20) as reader:
            replayed = [(r.key, r.value) async for batch in reader.replay() for r in batch]
            await asyncio.to_thread(produce_records, kafka_client, topic, [(b"d", b"4")])
            followed: list[bytes | None] = []
            async for batch in reader.follow(poll_ms=200):
                followed += [r.value for r in batch]
                if followed:
                    break
        return replayed, followed

    replayed, followed = asyncio.run(scenario())
    assert replayed == [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", None)]
    assert followed == [b"4"]
    latest = asyncio.run(read_latest(kafka_client, topic))
    assert {k: r.value for k, r in latest.items()} == {
        b"a": b"3",
        b"b": b"2",
        b"c": None,
        b"d": b"4",
    }
    assert latest[b"a"].offset == 2 and latest[b"a"].topic == topic
    assert "offset 2" in latest[b"a"].where and "b'a'" in latest[b"a"].where


def test_a_missing_topic_is_a_broker_error(kafka_client: KafkaClientConfig, topics: Topics) -> None:
    with pytest.raises(BrokerError, match="does not exist"):
        asyncio.run(read_latest(kafka_client, f"{topics.prefix}.nope", timeout_s=5))


def test_a_background_task_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("lost")

    async def scenario() -> None:
        task = observe(asyncio.create_task(boom()), "a follower")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert "a follower stopped: RuntimeError('lost')" in caplog.text


def test_registry_follower_applies_every_record_around_a_poison_one(
    kafka_client: KafkaClientConfig, topics: Topics
) -> None:
    topic = topics.speaker_registry
    records = [
        _enrollment("alice", 1),
        (b"mallory", DEEP),
        _enrollment("bob", 2),
        (b"eve", b'{"a":' * 50 + b"1" + b"}" * 50),
        _enrollment("carol", 3),
    ]
    produce_records(kafka_client, topic, records, partition=0)  # one fetch, in this order

    async def scenario() -> RegistryFollower:
        follower = RegistryFollower(kafka_client, MODEL, topic=topic)
        await follower.start(timeout_s=20)
        await follower.stop()
        return follower

    follower = asyncio.run(scenario())
    assert list(follower.registry) == ["alice", "bob", "carol"]
    assert follower.rejected == 2 and follower.version == 3


def _mutate(data: st.DataObject, value: bytes) -> bytes:
    out = bytearray(value)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(out)))
        piece = data.draw(st.sampled_from([b"[", b"{", b"]", b'"', b"\\", b"\xff", b"[" * 64]))
        if data.draw(st.booleans()):
            out[at:at] = piece
        else:
            del out[at : at + len(piece)]
    return bytes(out)


@settings(
    max_examples=8 if FULL else 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_enrollments_are_counted_while_real_ones_arrive_live(
    kafka_client: KafkaClientConfig, topics: Topics, data: st.DataObject
) -> None:
    topic = topics.speaker_registry
    n = 200 if FULL else 40
    good = [_enrollment(f"real-{i}", i) for i in range(5)]
    base = good[0][1]
    poison = [(f"p{i}".encode(), _mutate(data, base)) for i in range(n)]
    poison += [(b"deep", DEEP), (b"big", b"[" + b"1," * LIMITS.registry_max_bytes + b"1]")]
    poison = [(k, v) for k, v in poison if not _decodes(v)]

    async def scenario() -> RegistryFollower:
        follower = RegistryFollower(kafka_client, MODEL, topic=topic, limits=LIMITS)
        await follower.start(timeout_s=30)
        try:
            before_v, before_r = follower.version, follower.rejected
            mixed = [[*poison[i::5], good[i]] for i in range(5)]
            await asyncio.to_thread(
                produce_records, kafka_client, topic, [r for part in mixed for r in part]
            )
            want = before_v + len(good)
            await follower.wait_for_version(want, timeout_s=30)
            for _ in range(100):  # rejections after the last good record
                if follower.rejected - before_r >= len(poison):
                    break
                await asyncio.sleep(0.1)
            assert follower.rejected - before_r == len(poison)
        finally:
            await follower.stop()
        return follower

    follower = asyncio.run(scenario())
    assert {f"real-{i}" for i in range(5)} <= set(follower.registry)


def _decodes(value: bytes) -> bool:
    """A mutation that still is a valid enrollment is not poison."""
    try:
        data = json.loads(value)
        registry = SpeakerRegistry.empty(MODEL)
        registry.with_speaker("x", data["embeddings"], model=MODEL)
    except Exception:
        return False
    return isinstance(data, dict) and data.get("model") == "speaker-embed"


def test_batches_the_client_cannot_read_are_skipped_at_replay_and_while_following(
    kafka_client: KafkaClientConfig, topics: Topics, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 23: a header name that is not UTF-8 (lz4-compressed) and a zstd bomb on
    the control topic used to raise inside ``getmany``: a worker could not start.
    Now replay reads to the end, keeps the good records around them and logs each
    skipped offset, and following does the same."""
    from tests.support.record_batches import (
        BAD_NAME_MARK,
        build_batch,
        compress,
        produce_batch,
        with_bad_name,
    )

    topic = topics.control
    broker = kafka_client.bootstrap_servers
    named = build_batch(
        0, [(b"a", b"1", []), (b"bad", b"2", [(BAD_NAME_MARK, b"x")]), (b"b", b"3", [])]
    )
    poison = compress(with_bad_name(named), 3)  # lz4
    bomb = compress(build_batch(0, [(b"bomb", bytes(4 << 20), [])]), 4)  # zstd, 4 MiB
    limits = RecordLimits(max_inflated_batch_bytes=1 << 20)

    async def scenario() -> tuple[dict[bytes | None, bytes | None], list[bytes | None]]:
        await produce_batch(broker, topic, 0, poison)
        await produce_batch(broker, topic, 0, bomb)
        async with CompactedReader(kafka_client, topic, timeout_s=20, record_limits=limits) as r:
            replayed = {rec.key: rec.value async for batch in r.replay() for rec in batch}
            await produce_batch(broker, topic, 0, poison)
            followed: list[bytes | None] = []
            async for batch in r.follow(poll_ms=200):
                followed += [rec.key for rec in batch]
                if len(followed) >= 2:
                    break
        return replayed, followed

    with caplog.at_level("WARNING", logger="stream.kafka.fetch"):
        replayed, followed = asyncio.run(scenario())
    assert replayed == {b"a": b"1", b"b": b"3"}
    assert followed == [b"a", b"b"]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert sum("(invalid_header_name)" in m for m in skipped) == 2, skipped
    assert sum("(batch_too_large)" in m for m in skipped) == 1, skipped
