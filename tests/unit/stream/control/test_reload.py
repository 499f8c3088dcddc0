"""Hot reload without Kafka: control records, the checks before a swap, the swap
itself between batches, and the follower's accept/refuse reports."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.control.active import ActiveModel
from stream.control.follower import ControlFollower
from stream.control.gate import (
    announce,
    check_publishable,
    load_announced,
    prepare,
    validate_model,
)
from stream.control.records import (
    LAST_GOOD_PREFIX,
    ModelAnnouncement,
    announcements,
    model_key,
    status_key,
)
from stream.errors import ConfigError, FeatureSpecError, ModelError, ParityError
from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.manifest import MODEL_FILE, load_manifest
from stream.inference.session import OnnxModel
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.pipeline import Pipeline, PipelinePolicy, Record
from stream.produce import frames_from_array
from stream.roles import Role
from stream.settings import BatchingPolicy
from stream.wire import encode_frame
from stream.worker.runtime import WorkerRuntime
from tests.support.onnx_models import make_tiny_model_dir, perturb_golden

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
LABELS = ("quiet", "loud")
TOPICS = Topics().with_prefix("unit-reload")
ALWAYS_QUIET = 1e6  # a threshold no window reaches: v2 says "quiet" where v1 says "loud"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    make_tiny_model_dir(tmp_path / "tiny" / "1", spec=SPEC, labels=LABELS)
    make_tiny_model_dir(
        tmp_path / "tiny" / "2", spec=SPEC, labels=LABELS, version="2", threshold=ALWAYS_QUIET
    )
    return tmp_path


def _v1(repo: Path) -> OnnxModel:
    return OnnxModel.load(repo / "tiny" / "1")


# -- records ------------------------------------------------------------------------------


def test_announcement_round_trips_and_is_keyed_by_role(repo: Path) -> None:
    a = announce(repo / "tiny" / "2", role="scene", repo=repo)
    assert (a.name, a.version, a.path, a.spec_hash) == ("tiny", "2", "tiny/2", SPEC.spec_hash)
    assert a.key == model_key("scene") == b"model/scene"
    assert ModelAnnouncement.from_record(a.key, a.to_json()) == a
    with pytest.raises(ModelError, match="not inside the model repository"):
        announce(repo / "tiny" / "2", role="speaker", repo=repo / "elsewhere")
    assert status_key("host-1", "scene") == b"status/host-1/scene"


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        (b"model/scene", None, "tombstone"),
        (b"model/scene", b"{not json", "not JSON"),
        (b"model/scene", b"[]", "JSON object"),
        (b"model/scene", b'{"role": "scene"}', "name"),
        (b"model/scene", b"ROLE_SPEAKER", "does not match the key"),
        (b"model/x", b"ROLE_X", "not one of"),
    ],
)
def test_bad_control_records_say_what_is_wrong(
    repo: Path, key: bytes, value: bytes | None, needle: str
) -> None:
    good = json.loads(announce(repo / "tiny" / "2", role="scene", repo=repo).to_json())
    if value == b"ROLE_SPEAKER":
        value = json.dumps({**good, "role": "speaker"}).encode()
    if value == b"ROLE_X":
        value = json.dumps({**good, "role": "x"}).encode()
    with pytest.raises(ConfigError, match=needle):
        ModelAnnouncement.from_record(key, value)


# -- checks --------------------------------------------------------------------------------


def test_the_gate_passes_a_good_model_and_refuses_a_drifted_golden(repo: Path) -> None:
    assert validate_model(repo / "tiny" / "1", batch_sizes=(1, 8)).manifest.version == "1"
    bad = repo / "tiny" / "3"
    make_tiny_model_dir(bad, spec=SPEC, labels=LABELS, version="3")
    perturb_golden(bad, 0.05)
    with pytest.raises(ParityError, match="parity gate") as info:
        validate_model(bad)
    assert info.value.max_abs_diff == pytest.approx(0.05, rel=1e-3)


def test_prepare_accepts_the_published_model(repo: Path) -> None:
    a = announce(repo / "tiny" / "2", role="scene", repo=repo)
    model = prepare(a, repo=repo, serving=_v1(repo), batch_sizes=(1, 4))
    assert model.manifest.version == "2"


def test_prepare_refuses_a_directory_changed_after_publish(repo: Path) -> None:
    a = announce(repo / "tiny" / "2", role="scene", repo=repo)
    make_tiny_model_dir(repo / "tiny" / "2", spec=SPEC, labels=LABELS, version="2")
    with pytest.raises(ModelError, match="changed after it was published"):
        prepare(a, repo=repo, serving=_v1(repo))


def test_prepare_refuses_a_model_whose_bytes_fail_their_checksum(repo: Path) -> None:
    a = announce(repo / "tiny" / "2", role="scene", repo=repo)
    shutil.copy(repo / "tiny" / "1" / MODEL_FILE, repo / "tiny" / "2" / MODEL_FILE)
    with pytest.raises(ModelError, match="sha256"):
        prepare(a, repo=repo, serving=_v1(repo))


def test_prepare_refuses_another_feature_spec_and_another_label_set(repo: Path) -> None:
    other = FeatureSpec(window_seconds=0.5, hop_seconds=0.25, n_mels=40)
    make_tiny_model_dir(repo / "tiny" / "40", spec=other, labels=LABELS, version="40")
    a = announce(repo / "tiny" / "40", role="scene", repo=repo)
    with pytest.raises(ModelError, match="cannot change its feature frontend live"):
        prepare(a, repo=repo, serving=_v1(repo))
    make_tiny_model_dir(repo / "tiny" / "3", spec=SPEC, labels=("a", "b", "c"), version="3")
    b = announce(repo / "tiny" / "3", role="scene", repo=repo)
    with pytest.raises(ModelError, match="keeps the label set"):
        prepare(b, repo=repo, serving=_v1(repo))
    make_tiny_model_dir(repo / "tiny" / "5", spec=SPEC, labels=LABELS, version="5", task="multi")
    c = announce(repo / "tiny" / "5", role="scene", repo=repo)
    with pytest.raises(ModelError, match="keeps the task"):  # same labels, other aggregation
        prepare(c, repo=repo, serving=_v1(repo))


def test_a_starting_worker_takes_any_spec_but_still_checks_bytes(repo: Path) -> None:
    other = FeatureSpec(window_seconds=0.5, hop_seconds=0.25, n_mels=40)
    make_tiny_model_dir(repo / "tiny" / "40", spec=other, labels=LABELS, version="40")
    a = announce(repo / "tiny" / "40", role="scene", repo=repo)
    assert load_announced(a, repo=repo).spec == other
    forged = ModelAnnouncement(**{**json.loads(a.to_json()), "sha256": "0" * 64})
    with pytest.raises(ModelError, match="sha256"):
        load_announced(forged, repo=repo)
    with pytest.raises(FeatureSpecError):  # and the worker's own checks still hold
        OnnxModel.load(repo / "tiny" / "40", expected_spec=SPEC)


# -- the swap ------------------------------------------------------------------------------


def test_a_batch_keeps_the_model_it_started_with(repo: Path) -> None:
    slot = ActiveModel(_v1(repo))
    infer, ref = slot.current()  # a batch in flight holds these
    old = slot.swap(OnnxModel.load(repo / "tiny" / "2"))
    assert old == ref == ModelRef("tiny", "1")
    x = np.full((2, *SPEC.input_shape), 0.0, dtype=np.float32)  # loud for v1
    assert infer(x)[0].argmax(axis=1).tolist() == [1, 1]
    infer2, ref2 = slot.current()
    assert ref2 == ModelRef("tiny", "2")
    assert infer2(x)[0].argmax(axis=1).tolist() == [0, 0]


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, key, json.loads(value)))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [value for t, _, value in self.sent if t == topic]


def _records(sid: str, seconds: float, *, loud: bool = True) -> list[Record]:
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(round(seconds * 16000)) * (0.2 if loud else 1e-5)).astype(np.float32)
    frames = frames_from_array(y, 16000, stream_id=sid, chunk_ms=20)
    out = []
    for offset, frame in enumerate(frames):
        key, value, headers = encode_frame(frame)
        out.append(Record(key, value, tuple(headers), TOPICS.audio, 0, offset))
    return out


async def _stream_across_swap(
    pipeline: Pipeline,
    slot: ActiveModel,
    producer: Producer,
    records: list[Record],
    swap: Callable[[], Awaitable[None]],
) -> None:
    """The first half of ``records`` through a runtime serving ``slot`` (every window
    completed), then ``swap()``, then the second half, to the summaries."""
    half = len(records) // 2
    runtime = WorkerRuntime(
        pipeline,
        slot.current()[0],
        TOPICS,
        producer.send,
        lambda *_: None,
        BatchingPolicy(max_batch=4, max_wait_ms=1),
        current_model=slot.current,
    )
    runtime.start()
    await runtime.on_records(records[:half])
    await runtime.batcher.join()
    await swap()
    await runtime.on_records(records[half:])
    await runtime.drain()
    await runtime.stop()


def test_runtime_events_name_the_model_that_scored_them_across_a_swap(repo: Path) -> None:
    v1 = _v1(repo)
    slot = ActiveModel(v1)
    producer = Producer()
    records = _records("call-1", 3.0)

    async def swap() -> None:
        slot.swap(OnnxModel.load(repo / "tiny" / "2"))

    pipeline = Pipeline(SPEC, slot.ref, LABELS, FeatureBank(SPEC), PipelinePolicy())
    asyncio.run(_stream_across_swap(pipeline, slot, producer, records, swap))
    labels = producer.on(TOPICS.labels)
    indices = [e["window_index"] for e in labels]
    assert indices == list(range(len(labels))), "every window once, none lost"
    versions = [e["model"]["version"] for e in labels]
    first_v2 = versions.index("2")
    assert first_v2 > 0 and versions == ["1"] * first_v2 + ["2"] * (len(versions) - first_v2)
    for e in labels:  # loud noise: v1 says loud, v2 (threshold out of reach) says quiet
        assert e["label"] == ("loud" if e["model"]["version"] == "1" else "quiet"), e
    assert len({e["event_id"] for e in labels}) == len(labels)


def test_after_a_swap_tags_use_the_thresholds_of_the_model_that_scored_the_window(
    tmp_path: Path,
) -> None:
    """A multi-label v2 that differs from v1 by its thresholds only: once the follower
    swaps it in (wired to the pipeline as the worker wires it), its windows' tags and
    the summary's tags are cut at v2's thresholds, v1's windows at v1's."""
    for version, cuts in (("1", (0.5, 0.5)), ("2", (0.0, 0.0))):  # v2: every tag, always
        make_tiny_model_dir(
            tmp_path / "tags" / version,
            spec=SPEC,
            labels=LABELS,
            name="tags",
            version=version,
            task="multi",
            thresholds=cuts,
        )
    v1 = OnnxModel.load(tmp_path / "tags" / "1")
    slot = ActiveModel(v1)
    producer = Producer()
    records = _records("call-t", 3.0, loud=False)  # v1: no tag reaches 0.5
    pipeline = Pipeline(
        SPEC, slot.ref, LABELS, FeatureBank(SPEC), PipelinePolicy(), thresholds=(0.5, 0.5)
    )
    follower = ControlFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"),  # never contacted here
        TOPICS.control,
        slot,
        repo=tmp_path,
        worker="w1",
        on_swap=pipeline.serve,  # as stream.worker.build wires it
    )
    statuses = []

    async def swap() -> None:
        v2 = announce(tmp_path / "tags" / "2", role="scene", repo=tmp_path)
        statuses.append(await follower.apply(v2))

    asyncio.run(_stream_across_swap(pipeline, slot, producer, records, swap))
    assert [s.state for s in statuses] == ["active"]
    labels = producer.on(TOPICS.labels)
    versions = [e["model"]["version"] for e in labels]
    assert "1" in versions and "2" in versions
    for e in labels:
        tags = {t["tag"] for t in e["tags"]}
        assert tags == (set() if e["model"]["version"] == "1" else set(LABELS)), e
    (summary,) = producer.on(TOPICS.summaries)
    assert summary["task"] == "multi"
    v2_share = versions.count("2") / len(versions)
    assert {t["tag"] for t in summary["tags"]} == set(LABELS)  # v2's thresholds: the last
    assert [t["active_share"] for t in summary["tags"]] == pytest.approx([v2_share] * 2)


# -- the follower ---------------------------------------------------------------------------


def _follower(repo: Path, producer: Producer, **options: Any) -> ControlFollower:
    return ControlFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"),  # never contacted here
        TOPICS.control,
        ActiveModel(_v1(repo)),
        repo=repo,
        worker="w1",
        app_id="unit",
        send=producer.send,
        status_topic=TOPICS.control_status,
        **options,
    )


def test_follower_swaps_a_good_model_and_refuses_a_tampered_one(repo: Path) -> None:
    producer = Producer()
    follower = _follower(repo, producer)
    good = announce(repo / "tiny" / "2", role="scene", repo=repo)
    tampered_dir = repo / "tiny" / "3"
    make_tiny_model_dir(tampered_dir, spec=SPEC, labels=LABELS, version="3")
    perturb_golden(tampered_dir, 0.5)
    tampered = announce(tampered_dir, role="scene", repo=repo)

    async def main() -> list[Any]:
        return [
            await follower.on_record(good.key, good.to_json()),
            await follower.on_record(good.key, good.to_json()),  # seen: nothing to do
            await follower.on_record(tampered.key, tampered.to_json()),
            await follower.on_record(b"model/scene", b"garbage"),
        ]

    swapped, again, refused, garbage = asyncio.run(main())
    assert swapped.state == "active" and swapped.version == "2"
    assert again is None
    assert refused.state == "refused" and "parity gate" in refused.reason
    assert garbage.state == "refused" and garbage.reason.startswith("not_json")
    assert follower.slot.ref == ModelRef("tiny", "2"), "the old model keeps serving"
    reports = producer.sent
    assert [(t, k) for t, k, _ in reports] == [  # never the control topic: admin only
        (TOPICS.control_status, b"status/w1/scene"),
        (TOPICS.control_status, b"last-good/scene"),  # what a restarted worker falls back to
        (TOPICS.control_status, b"status/w1/scene"),
        (TOPICS.control_status, b"status/w1/scene"),
    ]
    assert [v.get("state") for *_, v in reports] == ["active", None, "refused", "refused"]
    assert reports[1][2] == json.loads(good.to_json())
    assert reports[2][2]["version"] == "3" and reports[2][2]["worker"] == "w1"


def test_follower_reports_roles_it_cannot_swap_live(repo: Path) -> None:
    producer = Producer()
    follower = _follower(
        repo, producer, refuse={Role.SPEAKER: "enrollments are bound to the embedding model"}
    )
    speaker = announce(repo / "tiny" / "2", role="speaker", repo=repo)

    async def main() -> list[Any]:
        return [
            await follower.on_record(speaker.key, speaker.to_json()),
            await follower.on_record(speaker.key, speaker.to_json()),
        ]

    refused, again = asyncio.run(main())
    assert refused.state == "refused" and refused.role == "speaker"
    assert "enrollments" in refused.reason and again is None
    assert follower.slot.ref == ModelRef("tiny", "1")
    assert [k for _, k, _ in producer.sent] == [b"status/w1/speaker"]


def _republished(announcement: ModelAnnouncement) -> bytes:
    """The same model announced again later (another record on the topic)."""
    return dataclasses.replace(announcement, published_at="2099-01-01T00:00:00Z").to_json()


def test_an_announcement_of_the_speaker_model_a_worker_runs_is_no_refusal(repo: Path) -> None:
    producer = Producer()
    follower = _follower(
        repo,
        producer,
        refuse={Role.SPEAKER: "enrollments are bound to the embedding model"},
        fixed={Role.SPEAKER: ModelRef("tiny", "2")},
    )
    runs = announce(repo / "tiny" / "2", role="speaker", repo=repo)
    other = announce(repo / "tiny" / "1", role="speaker", repo=repo)

    async def main() -> list[Any]:
        return [
            await follower.on_record(runs.key, runs.to_json()),
            await follower.on_record(other.key, other.to_json()),
            await follower.on_record(runs.key, _republished(runs)),
        ]

    same, refused, back = asyncio.run(main())
    assert same is None  # the model it runs: nothing to refuse, nothing to say
    assert refused.state == "refused" and refused.version == "1"
    assert back.state == "active" and back.version == "2"  # the newest state, not the refusal


def test_after_a_refusal_a_good_announcement_of_the_serving_model_is_reported(
    repo: Path,
) -> None:
    producer = Producer()
    follower = _follower(repo, producer)
    other_labels = repo / "other" / "1"
    make_tiny_model_dir(other_labels, spec=SPEC, labels=("a", "b", "c"), name="other")
    refused_one = announce(other_labels, role="scene", repo=repo)
    serving = announce(repo / "tiny" / "1", role="scene", repo=repo)

    async def main() -> list[Any]:
        return [
            await follower.on_record(serving.key, serving.to_json()),
            await follower.on_record(refused_one.key, refused_one.to_json()),
            await follower.on_record(serving.key, _republished(serving)),
        ]

    first, refused, good = asyncio.run(main())
    assert first is None  # loaded at start from this record: nothing new
    assert refused.state == "refused" and "labels" in refused.reason
    assert good.state == "active" and good.version == "1"
    states = [v.get("state") for _, k, v in producer.sent if k == b"status/w1/scene"]
    assert states == ["refused", "active"]


def test_control_records_of_the_previous_release_still_apply(repo: Path) -> None:
    """Records already on the compacted topic spell the label role ``scene``: a worker
    applies them, and what it writes back keeps that spelling for older workers."""
    a = announce(repo / "tiny" / "2", role=Role.LABEL, repo=repo)
    fields = ("name", "version", "path", "sha256", "spec_hash", "published_at")
    old = json.dumps({"role": "scene", **{f: getattr(a, f) for f in fields}}).encode()
    producer = Producer()
    follower = _follower(repo, producer)
    status = asyncio.run(follower.on_record(b"model/scene", old))
    assert status is not None and status.state == "active" and status.role is Role.LABEL
    assert follower.slot.ref == ModelRef("tiny", "2")
    written = {k: v for _, k, v in producer.sent}
    assert written[b"status/w1/scene"]["role"] == "scene"
    assert written[b"last-good/scene"]["role"] == "scene"


def test_a_record_may_name_the_role_by_its_name(repo: Path) -> None:
    good = json.loads(announce(repo / "tiny" / "2", role="label", repo=repo).to_json())
    assert good["role"] == "scene"
    renamed = json.dumps({**good, "role": "label"}).encode()
    assert ModelAnnouncement.from_record(b"model/scene", renamed).role is Role.LABEL
    with pytest.raises(ConfigError, match="does not match the key"):
        ModelAnnouncement.from_record(b"model/speaker", renamed)


def test_a_last_good_record_under_another_roles_key_is_passed_over(repo: Path) -> None:
    """``last-good/speaker`` holding a label announcement must not become the label
    role's fallback (the key names the role a starting worker looks up)."""
    label = announce(repo / "tiny" / "2", role=Role.LABEL, repo=repo).to_json()
    latest = {b"last-good/speaker": label, b"model/speaker": label}
    assert announcements(latest, prefix=LAST_GOOD_PREFIX) == {}
    assert announcements(latest) == {}
    assert announcements({b"last-good/scene": label}, prefix=LAST_GOOD_PREFIX).keys() == {
        Role.LABEL
    }


def test_publish_refuses_what_the_serving_workers_would_refuse(repo: Path) -> None:
    other = make_tiny_model_dir(repo / "other" / "1", spec=SPEC, labels=("a", "b"), name="other")
    served = announce(repo / "tiny" / "1", role="scene", repo=repo)
    latest = {served.key: served.to_json()}
    with pytest.raises(ModelError, match=r"labels \['a', 'b'\] differ.*restart the workers"):
        check_publishable(load_manifest(other), latest, role=Role.LABEL, repo=repo)
    check_publishable(load_manifest(repo / "tiny" / "2"), latest, role=Role.LABEL, repo=repo)
    # a worker's newest "active" status says what it serves, before any announcement
    status = json.dumps(
        {"worker": "w1", "app_id": "a", "role": "scene", "state": "active", "name": "other",
         "version": "1", "reason": "", "at": "2099-01-01T00:00:00Z"}
    ).encode()  # fmt: skip
    with_status = {**latest, b"status/w1/scene": status}
    check_publishable(load_manifest(other), with_status, role=Role.LABEL, repo=repo)
    # speaker models are never swapped live: only the one the workers run passes
    speaker = announce(repo / "tiny" / "1", role="speaker", repo=repo)
    speakers = {speaker.key: speaker.to_json()}
    v1, v2 = load_manifest(repo / "tiny" / "1"), load_manifest(repo / "tiny" / "2")
    with pytest.raises(ModelError, match="does not swap its speaker model live"):
        check_publishable(v2, speakers, role=Role.SPEAKER, repo=repo)
    check_publishable(v1, speakers, role=Role.SPEAKER, repo=repo)
    # nothing on the topic and no default model in the repository: nothing to compare
    check_publishable(load_manifest(other), {}, role=Role.LABEL, repo=repo)


def test_models_publish_refuses_before_touching_the_broker(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream.cli import main

    bad = repo / "tiny" / "3"
    make_tiny_model_dir(bad, spec=SPEC, labels=LABELS, version="3")
    perturb_golden(bad, 0.05)
    assert main(["models", "publish", str(bad), "--broker", "127.0.0.1:1"]) == 2
    assert "parity gate" in capsys.readouterr().err
    (bad / MODEL_FILE).write_bytes(b"not onnx")
    assert main(["models", "publish", str(bad), "--broker", "127.0.0.1:1"]) == 2
    assert "sha256" in capsys.readouterr().err


# -- signed announcements ---------------------------------------------------------------------


def test_a_follower_with_trusted_keys_applies_only_what_they_signed(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from stream.control.follower import ReloadPolicy
    from stream.control.signing import Signer, Verifier, generate

    keys = tmp_path_factory.mktemp("keys")
    signer = Signer.load(generate(keys, "publisher")[0])
    stranger = Signer.load(generate(keys, "stranger")[0])
    producer = Producer()
    follower = _follower(
        repo, producer, policy=ReloadPolicy(verifier=Verifier.load([keys / "publisher.pub"]))
    )
    good = announce(repo / "tiny" / "2", role="scene", repo=repo)
    key, value = good.key, good.to_json()
    resent = value + b"\n"  # other bytes, same announcement (a re-read is answered once)

    async def main() -> list[Any]:
        return [
            await follower.on_record(key, value),  # unsigned
            await follower.on_record(key, value + b" ", headers=signer.headers(key, value)),
            await follower.on_record(key, value, headers=stranger.headers(key, value)),
            await follower.on_record(key, resent, headers=signer.headers(key, resent)),
        ]

    unsigned, altered, foreign, signed = asyncio.run(main())
    assert unsigned.state == "refused" and unsigned.reason.startswith("bad_signature")
    assert "not signed" in unsigned.reason
    assert altered.state == "refused" and "does not match" in altered.reason
    assert foreign.state == "refused" and "not trusted" in foreign.reason
    assert signed.state == "active" and signed.version == "2"
    assert follower.slot.ref == ModelRef("tiny", "2")
    # a worker cannot sign, so it writes no last-good record it could not verify later
    assert b"last-good/scene" not in [k for _, k, _ in producer.sent]


def test_a_starting_worker_with_trusted_keys_ignores_unsigned_announcements(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from stream.control.gate import load_at_start
    from stream.control.records import last_good_key
    from stream.control.signing import Signer, Verifier, generate
    from stream.kafka.compacted import CompactedRecord

    keys = tmp_path_factory.mktemp("keys")
    signer = Signer.load(generate(keys)[0])
    verifier = Verifier.load([keys])
    good = announce(repo / "tiny" / "2", role="scene", repo=repo)
    key, value = good.key, good.to_json()

    def record(k: bytes, headers: Any = ()) -> CompactedRecord:
        return CompactedRecord(TOPICS.control, 0, 0, k, value, tuple(headers))

    unsigned = {key: record(key), last_good_key("scene"): record(last_good_key("scene"))}
    assert load_at_start(unsigned, repo=repo, verifier=verifier) is None
    assert load_at_start(unsigned, repo=repo) is not None  # no keys: nothing checked
    signed = {key: record(key, signer.headers(key, value))}
    model = load_at_start(signed, repo=repo, verifier=verifier)
    assert model is not None and model.manifest.version == "2"
