"""The control plane refuses without crashing and never moves back (issue 23, point 4):
malformed signature headers are refusals, signatures are checked before any value is
decoded, and model versions only move forward unless a signed rollback says otherwise."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from stream.control.active import ActiveModel
from stream.control.follower import ControlFollower, ReloadPolicy
from stream.control.gate import announce, load_at_start
from stream.control.records import (
    OLDER_VERSION,
    ModelAnnouncement,
    announcements,
    model_key,
    moves_back,
)
from stream.control.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Signer, Verifier, generate
from stream.errors import ConfigError
from stream.events import ModelRef
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.kafka.compacted import CompactedRecord
from stream.kafka.config import KafkaClientConfig
from stream.roles import Role
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
LABELS = ("quiet", "loud")
TOPIC = "unit-order.control.v1"
STATUS_TOPIC = "unit-order.control-status.v1"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for version in ("1", "2", "3", "10"):
        make_tiny_model_dir(tmp_path / "tiny" / version, spec=SPEC, labels=LABELS, version=version)
    return tmp_path


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Verifier]:
    keys = tmp_path_factory.mktemp("keys")
    private, public = generate(keys)
    return Signer.load(private), Verifier.load([public])


class Statuses:
    """The follower's ``send``: keeps what it writes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, json.loads(value)))


def _follower(repo: Path, serving: str = "1", **policy: Any) -> ControlFollower:
    return ControlFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"),  # never contacted here
        TOPIC,
        ActiveModel(OnnxModel.load(repo / "tiny" / serving)),
        repo=repo,
        worker="w1",
        send=Statuses().send,
        status_topic=STATUS_TOPIC,
        policy=ReloadPolicy(**policy),
    )


def _at(repo: Path, version: str, when: str, *, rollback: bool = False) -> ModelAnnouncement:
    found = announce(repo / "tiny" / version, role="scene", repo=repo, rollback=rollback)
    return dataclasses.replace(found, published_at=when)


# -- malformed signature headers: a refusal, never a crash -----------------------------------


def test_a_null_key_id_header_is_a_refusal_for_the_follower_and_at_start(
    repo: Path, signer: tuple[Signer, Verifier]
) -> None:
    """A header with a null value is legal in Kafka; it used to raise AttributeError,
    which stopped a worker with trusted keys from starting."""
    sign, verifier = signer
    good = announce(repo / "tiny" / "2", role="scene", repo=repo)
    key, value = good.key, good.to_json()
    signature = dict(sign.headers(key, value))[SIGNATURE_HEADER]
    headers = ((SIGNATURE_HEADER, signature), (KEY_ID_HEADER, None))
    follower = _follower(repo, verifier=verifier)
    status = asyncio.run(follower.on_record(key, value, headers=headers))  # type: ignore[arg-type]
    assert status is not None and status.state == "refused"
    assert status.reason.startswith("bad_signature") and "null" in status.reason
    assert follower.slot.ref == ModelRef("tiny", "1")
    record = CompactedRecord(TOPIC, 0, 7, key, value, headers)  # type: ignore[arg-type]
    assert load_at_start({key: record}, repo=repo, verifier=verifier) is None


# -- the signature before any decode -----------------------------------------------------------


def test_at_start_an_unsigned_record_is_refused_before_its_value_is_decoded(
    repo: Path, signer: tuple[Signer, Verifier], caplog: pytest.LogCaptureFixture
) -> None:
    _, verifier = signer
    junk = b'{"version": "' + b'\\"' * 1000  # not JSON: decoding would say so
    latest = {model_key("scene"): CompactedRecord(TOPIC, 0, 3, model_key("scene"), junk)}
    with caplog.at_level(logging.WARNING):
        assert load_at_start(latest, repo=repo, verifier=verifier) is None
    text = caplog.text
    assert "bad_signature" in text and "not signed" in text
    assert "not JSON" not in text and "not_json" not in text, "decoded before the signature"


def test_keys_under_model_that_name_no_role_are_passed_over_undecoded(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = announce(repo / "tiny" / "2", role="scene", repo=repo).to_json()
    latest: dict[bytes, bytes | None] = {f"model/junk-{i}".encode(): b"{" * 10 for i in range(50)}
    latest[model_key("scene")] = good
    with caplog.at_level(logging.WARNING):
        found = announcements(latest)
    assert found.keys() == {Role.LABEL} and found[Role.LABEL].version == "2"
    assert caplog.text.count("not a role's key") == 50
    assert "not JSON" not in caplog.text and "json_too_deep" not in caplog.text


# -- versions only move forward -----------------------------------------------------------------


def test_the_order_of_announcements(repo: Path) -> None:
    v2 = _at(repo, "2", "2026-12-01T10:00:00Z")
    v10 = _at(repo, "10", "2026-12-02T10:00:00Z")
    assert moves_back(v10, v2) is None, "10 is after 2: versions compare as numbers"
    assert moves_back(v2, None) is None
    replay = moves_back(v2, v10)
    assert replay is not None and replay.startswith(OLDER_VERSION) and "before" in replay
    republished = dataclasses.replace(v2, published_at="2026-12-03T10:00:00Z")
    lower = moves_back(republished, v10)
    assert lower is not None and "older than tiny@10" in lower
    rollback = dataclasses.replace(republished, rollback=True)
    assert moves_back(rollback, v10) is None
    assert moves_back(v10, rollback) is not None, "a replay of what was rolled back"
    other = dataclasses.replace(republished, name="other")
    assert moves_back(other, v10) is None, "another model's versions are not comparable"


def test_a_follower_refuses_a_replayed_older_announcement_until_a_signed_rollback(
    repo: Path, signer: tuple[Signer, Verifier]
) -> None:
    sign, verifier = signer
    follower = _follower(repo, verifier=verifier)
    v2 = _at(repo, "2", "2026-12-01T10:00:00Z")
    v3 = _at(repo, "3", "2026-12-02T10:00:00Z")
    again_v2 = _at(repo, "2", "2026-12-03T10:00:00Z")
    rollback_v2 = _at(repo, "2", "2026-12-04T10:00:00Z", rollback=True)
    v10 = _at(repo, "10", "2026-12-05T10:00:00Z")

    async def offer(a: ModelAnnouncement) -> Any:
        value = a.to_json()
        return await follower.on_record(a.key, value, headers=sign.headers(a.key, value))

    async def main() -> list[Any]:
        return [
            await offer(v2),
            await offer(v3),
            await offer(v2),  # the old signed record, replayed
            await offer(again_v2),  # published again, later, without --rollback
            await offer(rollback_v2),
            await offer(v3),  # what the rollback undid, replayed
            await offer(v10),
        ]

    statuses = asyncio.run(main())
    assert [(s.state, s.version) for s in statuses] == [
        ("active", "2"),
        ("active", "3"),
        ("refused", "2"),
        ("refused", "2"),
        ("active", "2"),
        ("refused", "3"),
        ("active", "10"),
    ]
    assert all(statuses[i].reason.startswith(OLDER_VERSION) for i in (2, 3, 5))
    assert follower.slot.ref == ModelRef("tiny", "10")


def test_a_worker_started_on_a_version_refuses_an_older_one(repo: Path) -> None:
    follower = _follower(repo, serving="3")
    older = announce(repo / "tiny" / "2", role="scene", repo=repo)
    status = asyncio.run(follower.on_record(older.key, older.to_json()))
    assert status is not None and status.state == "refused"
    assert status.reason.startswith(OLDER_VERSION)
    assert follower.slot.ref == ModelRef("tiny", "3")


def test_rollback_is_part_of_the_signed_record(repo: Path) -> None:
    plain = announce(repo / "tiny" / "2", role="scene", repo=repo)
    assert b"rollback" not in plain.to_json(), "a forward announcement is what it was"
    back = dataclasses.replace(plain, rollback=True)
    assert json.loads(back.to_json())["rollback"] is True
    assert ModelAnnouncement.from_record(back.key, back.to_json()) == back
    for bad in ('"yes"', "1", "null"):
        value = back.to_json().replace(b"true", bad.encode())
        with pytest.raises(ConfigError, match="rollback must be true or false"):
            ModelAnnouncement.from_record(back.key, value)
    late = json.loads(plain.to_json()) | {"published_at": "yesterday"}
    with pytest.raises(ConfigError, match="not an ISO-8601 time"):
        ModelAnnouncement.from_record(plain.key, json.dumps(late).encode())


def test_models_publish_has_a_rollback_flag() -> None:
    from stream.cli import build_parser

    args = build_parser().parse_args(["models", "publish", "m", "--rollback"])
    assert args.rollback is True
    assert build_parser().parse_args(["models", "publish", "m"]).rollback is False


def test_a_follower_writes_its_statuses_off_the_control_topic(repo: Path) -> None:
    """Only the admin principal may write the control topic; a worker's statuses and
    last-good records go to a topic of their own, and a follower built to write to
    the control topic is refused."""
    written = Statuses()
    follower = ControlFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"),
        TOPIC,
        ActiveModel(OnnxModel.load(repo / "tiny" / "1")),
        repo=repo,
        worker="w1",
        send=written.send,
        status_topic=STATUS_TOPIC,
    )
    a = announce(repo / "tiny" / "2", role="scene", repo=repo)
    asyncio.run(follower.on_record(a.key, a.to_json()))
    assert [(t, k) for t, k, _ in written.sent] == [
        (STATUS_TOPIC, b"status/w1/scene"),
        (STATUS_TOPIC, b"last-good/scene"),
    ]
    for status_topic in (None, TOPIC):
        with pytest.raises(ConfigError, match="do not write the control topic"):
            ControlFollower(
                KafkaClientConfig(bootstrap_servers="127.0.0.1:1"),
                TOPIC,
                follower.slot,
                repo=repo,
                worker="w1",
                send=written.send,
                status_topic=status_topic,
            )


def test_a_worker_given_a_key_folder_without_keys_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before it touches the broker: an empty folder must not turn verification off."""
    from stream.cli import main

    (tmp_path / "keys").mkdir()
    args = ["worker", "--trusted-key", str(tmp_path / "keys"), "--broker", "127.0.0.1:1"]
    assert main([*args, "--processes", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds no *.pub file" in err and "refusing to start" in err


def test_the_registry_follower_rejects_a_null_key_id_header(
    signer: tuple[Signer, Verifier],
) -> None:
    """On the registry topic this used to be an AttributeError: exit 70 at start."""
    from stream.speakers.registry import ModelBinding
    from stream.speakers.topic import RegistryFollower

    sign, verifier = signer
    binding = ModelBinding("embed", "1", 4)
    follower = RegistryFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"), binding, verifier=verifier
    )
    value = b'{"model": "embed"}'
    signature = dict(sign.headers(b"alice", value))[SIGNATURE_HEADER]
    headers = ((SIGNATURE_HEADER, signature), (KEY_ID_HEADER, None))
    applied = follower.apply(b"alice", value, headers=headers)  # type: ignore[arg-type]
    assert applied.outcome == "rejected" and applied.reason.startswith("bad_signature")
    assert follower.rejected == 1
