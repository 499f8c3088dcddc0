from __future__ import annotations

import json

import numpy as np
from speaker_fakes import DIM, MODEL, cluster

from stream.speakers.registry import SpeakerRegistry
from stream.speakers.topic import apply_record, encode_enrollment


def test_record_format(registry: SpeakerRegistry) -> None:
    key, value = encode_enrollment(registry, "alice")
    doc = json.loads(value)
    assert key == b"alice"
    assert sorted(doc) == ["embeddings", "model", "model_version", "updated_at"]
    assert (doc["model"], doc["model_version"]) == ("speaker-embed", "1")
    assert np.asarray(doc["embeddings"]).shape == (24, DIM)


def test_replaying_records_rebuilds_the_registry(registry: SpeakerRegistry) -> None:
    follower = SpeakerRegistry.empty(MODEL)
    for name in registry:
        follower, applied = apply_record(follower, *encode_enrollment(registry, name))
        assert applied.outcome == "enrolled"
    assert list(follower) == list(registry)
    np.testing.assert_allclose(
        follower.speakers["bob"].embeddings, registry.speakers["bob"].embeddings, atol=1e-6
    )
    assert (
        follower.threshold == registry.threshold
        or abs(follower.threshold - registry.threshold) < 1e-5
    )


def test_tombstone_removes_and_unknown_tombstone_is_ignored(registry: SpeakerRegistry) -> None:
    after, applied = apply_record(registry, b"bob", None)
    assert applied.outcome == "removed" and "bob" not in after
    again, applied = apply_record(after, b"bob", None)
    assert applied.outcome == "ignored" and again is after


def test_bad_records_are_rejected_not_raised(registry: SpeakerRegistry, rng, centres) -> None:  # type: ignore[no-untyped-def]
    emb = cluster(rng, centres["erin"], 3, 0.1).tolist()
    good = {"model": "speaker-embed", "model_version": "1", "embeddings": emb, "updated_at": "t"}
    cases = {
        b"not json": "not json",
        b"other model": json.dumps({**good, "model_version": "2"}),
        b"missing": json.dumps({k: v for k, v in good.items() if k != "embeddings"}),
        b"wrong dim": json.dumps({**good, "embeddings": [[1.0, 0.0]]}),
        b"unknown": json.dumps(good),
    }
    for key, value in cases.items():
        after, applied = apply_record(registry, key, value.encode())
        assert applied.outcome == "rejected", key
        assert after is registry
    _, applied = apply_record(registry, b"\xff\xfe", json.dumps(good).encode())
    assert applied.outcome == "rejected"
    _, applied = apply_record(
        registry, b"other model", json.dumps({**good, "model_version": "2"}).encode()
    )
    assert "speaker-embed/2" in applied.reason
