from __future__ import annotations

import numpy as np
from speaker_fakes import DIM, cluster

from stream.speakers.scoring import UNKNOWN
from stream.speakers.tracker import SpeakerTracker, TrackerConfig, track_batch

HOP = 8000


def feed(tracker, scorer, embeddings, *, speech=True, start=0):  # type: ignore[no-untyped-def]
    out = []
    for i, emb in enumerate(embeddings):
        a = (start + i) * HOP
        d = tracker.add(emb, a, a + 16000, speech=speech, scorer=scorer)
        if d is not None:
            out.append(d)
    return out


def test_one_speaker_gives_one_decision_then_silence(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    tracker = SpeakerTracker("call-1")
    decisions = feed(tracker, scorer, cluster(rng, centres["alice"], 12, 0.2))
    assert [d.speaker for d in decisions] == ["alice"]
    d = decisions[0]
    assert d.stream_id == "call-1" and d.runner_up != "alice" and d.margin > 0
    assert d.start_sample == 0 and d.end_sample == 2 * HOP + 16000  # 3 windows: 2 + confirm
    assert tracker.final(scorer).speaker == "alice"


def test_change_of_speaker_is_emitted_once_confirmed(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    tracker = SpeakerTracker("call-2", config=TrackerConfig(span_windows=3))
    first = feed(tracker, scorer, cluster(rng, centres["alice"], 8, 0.2))
    second = feed(tracker, scorer, cluster(rng, centres["bob"], 8, 0.2), start=8)
    assert [d.speaker for d in first + second] == ["alice", "bob"]
    assert second[0].start_sample >= 8 * HOP


def test_stranger_is_unknown(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    tracker = SpeakerTracker("call-3")
    decisions = feed(tracker, scorer, cluster(rng, centres["erin"], 8, 0.2))
    assert [d.speaker for d in decisions] == [UNKNOWN]
    assert tracker.final(scorer).speaker == UNKNOWN


def test_non_speech_windows_are_ignored(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    tracker = SpeakerTracker("call-4")
    noise = rng.normal(size=(20, DIM))
    assert feed(tracker, scorer, noise, speech=False) == []
    assert tracker.speech_windows == 0
    final = tracker.final(scorer)
    assert (final.speaker, final.windows, final.final) == (UNKNOWN, 0, True)


def test_one_odd_window_does_not_flip_the_decision(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    tracker = SpeakerTracker("call-5", config=TrackerConfig(span_windows=1, min_windows=1))
    alice = cluster(rng, centres["alice"], 6, 0.1)
    bob = cluster(rng, centres["bob"], 1, 0.1)
    decisions = feed(tracker, scorer, [*alice[:3], bob[0], *alice[3:]])
    assert [d.speaker for d in decisions] == ["alice"]


def test_empty_registry_makes_every_stream_unknown(centres, rng) -> None:  # type: ignore[no-untyped-def]
    from speaker_fakes import MODEL

    from stream.speakers.registry import SpeakerRegistry

    scorer = SpeakerRegistry.empty(MODEL).scorer()
    tracker = SpeakerTracker("call-6")
    decisions = feed(tracker, scorer, cluster(rng, centres["alice"], 6, 0.2))
    assert [d.speaker for d in decisions] == [UNKNOWN]


def test_batch_tracking_equals_stream_by_stream(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    streams = {"a": "alice", "b": "bob", "c": "erin"}
    windows = {s: cluster(rng, centres[who], 6, 0.2) for s, who in streams.items()}
    solo = {s: SpeakerTracker(s) for s in streams}
    expected = {s: feed(solo[s], scorer, windows[s]) for s in streams}
    batched = {s: SpeakerTracker(s) for s in streams}
    got: dict[str, list] = {s: [] for s in streams}  # type: ignore[type-arg]
    for i in range(0, 6, 2):  # two windows per stream per batch
        items = [
            (batched[s], windows[s][j], j * HOP, j * HOP + 16000, True)
            for s in streams
            for j in (i, i + 1)
        ]
        for (tracker, *_), d in zip(items, track_batch(items, scorer), strict=True):
            if d is not None:
                got[tracker.stream_id].append(d)
    for s in streams:
        assert [d.speaker for d in got[s]] == [d.speaker for d in expected[s]]
        assert [d.end_sample for d in got[s]] == [d.end_sample for d in expected[s]]


def test_registry_update_applies_to_a_live_stream(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    from speaker_fakes import MODEL

    tracker = SpeakerTracker("call-7")
    erin = cluster(rng, centres["erin"], 16, 0.2)
    before = feed(tracker, registry.scorer(), erin[:8])
    updated = registry.with_speaker("erin", cluster(rng, centres["erin"], 20, 0.1), model=MODEL)
    after = feed(tracker, updated.scorer(), erin[8:], start=8)
    assert [d.speaker for d in before + after] == [UNKNOWN, "erin"]


def test_decisions_serialize(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    import json

    tracker = SpeakerTracker("call-8")
    (d,) = feed(tracker, registry.scorer(), cluster(rng, centres["bob"], 5, 0.2))
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["speaker"] == "bob" and doc["stream_id"] == "call-8" and not doc["final"]
    assert isinstance(np.float64(doc["score"]), np.floating)


def test_leaving_a_speaker_for_unknown_needs_a_full_span(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    scorer = registry.scorer()
    config = TrackerConfig(span_windows=4, confirm_unknown=4)
    tracker = SpeakerTracker("call-9", config=config)
    first = feed(tracker, scorer, cluster(rng, centres["alice"], 6, 0.2))
    blend = feed(tracker, scorer, cluster(rng, centres["erin"], 3, 0.2), start=6)
    later = feed(tracker, scorer, cluster(rng, centres["erin"], 4, 0.2), start=9)
    assert [d.speaker for d in first] == ["alice"]
    assert blend == []  # three unknown evaluations are not enough to leave alice
    assert [d.speaker for d in later] == [UNKNOWN]


def test_two_party_call_names_the_dominant_voice_not_a_blend(registry, centres, rng) -> None:  # type: ignore[no-untyped-def]
    """Agent and caller alternate; the mean of all their windows matches neither."""
    scorer = registry.scorer()
    tracker = SpeakerTracker("call-9", config=TrackerConfig(span_windows=3))
    turns = [("alice", 10), ("bob", 6), ("alice", 10), ("bob", 6)]
    start = 0
    for name, n in turns:
        feed(tracker, scorer, cluster(rng, centres[name], n, 0.2), start=start)
        start += n
    blend = scorer.identify(tracker._total[None, :] / np.linalg.norm(tracker._total))[0]
    final = tracker.final(scorer)
    assert final.speaker == "alice"
    assert final.score > blend.score
