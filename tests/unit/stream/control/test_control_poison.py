"""Poison records on the control and registry topics (issue 11, findings 3 and 9):
whatever a record holds, the follower answers with a refusal and goes on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.control.active import ActiveModel
from stream.control.follower import ControlFollower
from stream.control.gate import announce
from stream.control.records import ModelAnnouncement, announcements
from stream.dashboard.state import DashboardState, decode
from stream.errors import ConfigError
from stream.events import ModelRef
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.kafka.config import KafkaClientConfig
from stream.kafka.topics import Topics
from stream.speakers.registry import ModelBinding, SpeakerRegistry
from stream.speakers.topic import apply_record
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
LABELS = ("quiet", "loud")
TOPICS = Topics().with_prefix("unit-poison")
DEEP = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    make_tiny_model_dir(tmp_path / "tiny" / "1", spec=SPEC, labels=LABELS)
    make_tiny_model_dir(tmp_path / "tiny" / "2", spec=SPEC, labels=LABELS, version="2")
    return tmp_path


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, json.loads(value)))


def _follower(repo: Path, producer: Producer) -> ControlFollower:
    return ControlFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"),
        TOPICS.control,
        ActiveModel(OnnxModel.load(repo / "tiny" / "1")),
        repo=repo,
        worker="w1",
        app_id="unit",
        send=producer.send,
        status_topic=TOPICS.control_status,
    )


@pytest.mark.parametrize("value", [DEEP, DEEP_OBJECT, b"[" * 1000, b'{"a":' * 900 + b"1"])
def test_deeply_nested_control_record_is_a_config_error(value: bytes) -> None:
    with pytest.raises(ConfigError, match="model/scene"):
        ModelAnnouncement.from_record(b"model/scene", value)


def test_a_record_under_the_size_limit_is_refused_for_its_depth(repo: Path) -> None:
    follower = _follower(repo, Producer())
    status = asyncio.run(follower.on_record(b"model/scene", b"[" * 5000))
    assert status is not None and status.state == "refused"
    assert status.reason.startswith("json_too_deep") and "5000 deep" in status.reason


def test_a_starting_worker_reads_past_a_poison_announcement() -> None:
    assert announcements({b"model/scene": DEEP, b"status/w/scene": DEEP}) == {}


def test_follower_refuses_a_deep_record_and_goes_on(repo: Path) -> None:
    producer = Producer()
    follower = _follower(repo, producer)
    good = announce(repo / "tiny" / "2", role="scene", repo=repo)

    async def main() -> list[Any]:
        return [
            await follower.on_record(b"model/scene", DEEP),
            await follower.on_record(good.key, good.to_json()),
        ]

    poison, swapped = asyncio.run(main())
    assert poison is not None and poison.state == "refused"
    assert poison.reason.startswith("record_too_large") and "model/scene" in poison.reason
    assert swapped.state == "active" and follower.slot.ref == ModelRef("tiny", "2")


def test_follower_refuses_a_model_that_fails_outside_the_contract_checks(repo: Path) -> None:
    producer = Producer()
    follower = _follower(repo, producer)
    good = announce(repo / "tiny" / "2", role="scene", repo=repo)

    def explode(announcement: ModelAnnouncement) -> OnnxModel:
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions")

    follower._prepare = explode  # type: ignore[method-assign]
    status = asyncio.run(follower.on_record(good.key, good.to_json()))
    assert status is not None and status.state == "refused"
    assert "RuntimeError" in status.reason and "INVALID_ARGUMENT" in status.reason
    assert follower.slot.ref == ModelRef("tiny", "1")


@pytest.mark.parametrize("path", ["/etc", "../outside/1", "tiny/../../outside/1"])
def test_an_announced_path_outside_the_repository_is_refused(repo: Path, path: str) -> None:
    producer = Producer()
    follower = _follower(repo, producer)
    outside = repo.parent / "outside" / "1"
    make_tiny_model_dir(outside, spec=SPEC, labels=LABELS, version="9")
    good = json.loads(announce(repo / "tiny" / "2", role="scene", repo=repo).to_json())
    from stream.inference.manifest import MANIFEST_FILE, sha256_file

    record = {**good, "version": "9", "path": path, "sha256": sha256_file(outside / MANIFEST_FILE)}
    status = asyncio.run(follower.on_record(b"model/scene", json.dumps(record).encode()))
    assert status is not None and status.state == "refused"
    assert "inside the model repository" in status.reason
    assert follower.slot.ref == ModelRef("tiny", "1")


def test_a_symlink_out_of_the_repository_is_refused(repo: Path) -> None:
    producer = Producer()
    follower = _follower(repo, producer)
    outside = repo.parent / "elsewhere" / "7"
    make_tiny_model_dir(outside, spec=SPEC, labels=LABELS, version="7")
    (repo / "tiny" / "7").symlink_to(outside, target_is_directory=True)
    from stream.inference.manifest import MANIFEST_FILE, sha256_file

    good = json.loads(announce(repo / "tiny" / "2", role="scene", repo=repo).to_json())
    record = {**good, "version": "7", "path": "tiny/7"}
    record["sha256"] = sha256_file(outside / MANIFEST_FILE)
    status = asyncio.run(follower.on_record(b"model/scene", json.dumps(record).encode()))
    assert status is not None and status.state == "refused"
    assert "inside the model repository" in status.reason


BINDING = ModelBinding("speaker-embed", "1", 4)


@pytest.mark.parametrize("value", [DEEP, DEEP_OBJECT, b'{"model": 1e999999}'])
def test_registry_record_of_deep_json_is_rejected(value: bytes) -> None:
    registry = SpeakerRegistry.empty(BINDING)
    after, applied = apply_record(registry, b"alice", value)
    assert applied.outcome == "rejected" and after is registry


def test_registry_record_of_odd_shapes_is_rejected_not_raised() -> None:
    registry = SpeakerRegistry.empty(BINDING)
    record = {"model": "speaker-embed", "model_version": "1", "updated_at": "x"}
    for embeddings in ([[[[1.0]]]], "abc", [[1, 2, 3, 4]] * 2 + [[1]], {"a": 1}, None):
        raw = json.dumps({**record, "embeddings": embeddings}).encode()
        _, applied = apply_record(registry, b"alice", raw)
        assert applied.outcome == "rejected", embeddings
    ok = json.dumps({**record, "embeddings": np.eye(4)[:2].tolist()}).encode()
    assert apply_record(registry, b"alice", ok)[1].outcome == "enrolled"


def test_dashboard_decode_drops_a_deep_record_and_counts_it() -> None:
    assert decode(DEEP) is None
    state = DashboardState()
    state.apply_record("labels", DEEP, 1_700_000_000.0)
    assert state.unparsable["labels"] == 1


def _batch_pinned(model_dir: Path, batch: int = 8) -> Path:
    """Make ``model_dir``'s graph run only at batch sizes up to ``batch`` (the golden
    windows' count): its probabilities get ``+ zeros[:min(b, batch)]``, a broadcast
    onnxruntime refuses for a larger batch. Re-signed, so every file check passes."""
    import onnx
    from onnx import helper, numpy_helper

    from stream.inference.manifest import MODEL_FILE
    from tests.support.onnx_models import resign

    path = model_dir / MODEL_FILE
    proto = onnx.load(str(path))
    graph = proto.graph
    for node in graph.node:
        node.output[:] = ["probs_raw" if o == "probabilities" else o for o in node.output]
    zeros = numpy_helper.from_array(np.zeros((batch, len(LABELS)), np.float32), "batch_pin")
    graph.initializer.extend(
        [
            zeros,
            numpy_helper.from_array(np.array([0], np.int64), "pin_zero"),
            numpy_helper.from_array(np.array([1], np.int64), "pin_one"),
        ]
    )
    graph.node.extend(
        [  # pin_b = batch_pin[:min(b, batch)]; probabilities = probs_raw + pin_b
            helper.make_node("Shape", ["probs_raw"], ["pin_shape"]),
            helper.make_node("Slice", ["pin_shape", "pin_zero", "pin_one"], ["pin_b"]),
            helper.make_node("Slice", ["batch_pin", "pin_zero", "pin_b", "pin_zero"], ["pin"]),
            helper.make_node("Add", ["probs_raw", "pin"], ["probabilities"]),
        ]
    )
    onnx.save_model(proto, str(path))
    resign(model_dir)
    return model_dir


def test_a_model_that_fails_at_max_batch_is_refused_not_raised(repo: Path) -> None:
    from stream.control.follower import ReloadPolicy
    from stream.control.gate import validate_model

    pinned = _batch_pinned(
        make_tiny_model_dir(repo / "tiny" / "5", spec=SPEC, labels=LABELS, version="5")
    )
    validate_model(pinned)  # batch 1 and the golden windows: what publish used to check
    follower = ControlFollower(
        KafkaClientConfig(bootstrap_servers="127.0.0.1:1"),
        TOPICS.control,
        ActiveModel(OnnxModel.load(repo / "tiny" / "1")),
        repo=repo,
        worker="w1",
        send=Producer().send,
        status_topic=TOPICS.control_status,
        policy=ReloadPolicy(batch_sizes=(1, 32)),
    )
    a = announce(pinned, role="scene", repo=repo)
    status = asyncio.run(follower.on_record(a.key, a.to_json()))
    assert status is not None and status.state == "refused"
    assert "batch sizes [1, 32]" in status.reason
    assert follower.slot.ref == ModelRef("tiny", "1")


def test_models_publish_validates_at_the_workers_max_batch(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream.cli import main

    pinned = _batch_pinned(
        make_tiny_model_dir(repo / "tiny" / "5", spec=SPEC, labels=LABELS, version="5")
    )
    args = ["models", "publish", str(pinned), "--model-repo", str(repo), "--broker", "127.0.0.1:1"]
    assert main(args) == 2
    assert "batch sizes [1, 32]" in capsys.readouterr().err  # the worker default
    assert main([*args, "--max-batch", "4"]) == 3  # valid at 4: only the broker is missing (exit 3)
    err = capsys.readouterr().err
    assert "batch sizes" not in err and "127.0.0.1:1" in err  # the broker is what fails
    monkeypatch.setenv("TYMPAN_MAX_BATCH", "16")
    assert main(args) == 2
    assert "batch sizes [1, 16]" in capsys.readouterr().err
    monkeypatch.setenv("TYMPAN_MAX_BATCH", "lots")
    assert main(args) == 2
    assert "TYMPAN_MAX_BATCH='lots'" in capsys.readouterr().err  # read as the worker reads it


def test_models_publish_refuses_a_model_outside_the_repository(
    repo: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream.cli import main

    outside = make_tiny_model_dir(
        tmp_path_factory.mktemp("x") / "tiny" / "3", spec=SPEC, labels=LABELS, version="3"
    )
    args = ["models", "publish", str(outside), "--model-repo", str(repo), "--broker", "127.0.0.1:1"]
    assert main(args) == 2
    assert "not inside the model repository" in capsys.readouterr().err


# -- start-up ---------------------------------------------------------------------------


def _latest(repo: Path, **records: bytes) -> dict[bytes, bytes | None]:
    return {
        k.replace("_", "/").replace("last/good", "last-good").encode(): v
        for k, v in records.items()
    }


@pytest.mark.parametrize(
    "bad",
    [DEEP, b"[" * 1000, b"\xff", b"null", b"{}", b'{"role": 1}'],
)
def test_start_up_survives_any_latest_announcement_and_serves_the_last_good(
    repo: Path, bad: bytes
) -> None:
    from stream.control.gate import load_at_start
    from stream.control.records import last_good_key, model_key

    good = announce(repo / "tiny" / "2", role="scene", repo=repo)
    latest: dict[bytes, bytes | None] = {model_key("scene"): bad}
    assert load_at_start(latest, repo=repo) is None  # nothing good: the worker's --model
    latest[last_good_key("scene")] = good.to_json()
    model = load_at_start(latest, repo=repo, batch_sizes=(1, 32))
    assert model is not None and model.manifest.version == "2"


def test_start_up_passes_over_a_model_that_fails_its_checks(repo: Path) -> None:
    from stream.control.gate import load_at_start
    from stream.control.records import last_good_key, model_key

    pinned = _batch_pinned(
        make_tiny_model_dir(repo / "tiny" / "5", spec=SPEC, labels=LABELS, version="5")
    )
    bad = announce(pinned, role="scene", repo=repo)
    good = announce(repo / "tiny" / "2", role="scene", repo=repo)
    escaped = {**json.loads(good.to_json()), "path": "../../etc"}
    for record in (bad.to_json(), json.dumps(escaped).encode()):
        latest = {model_key("scene"): record, last_good_key("scene"): good.to_json()}
        model = load_at_start(latest, repo=repo, batch_sizes=(1, 32))
        assert model is not None and model.manifest.version == "2"


def test_models_active_reads_past_poison_status_records() -> None:
    from stream.control.records import statuses

    good = {"worker": "w1", "role": "scene", "state": "active"}
    latest: dict[bytes, bytes | None] = {
        b"status/w1/scene": json.dumps(good).encode(),
        b"status/w2/scene": DEEP,
        b"status/w3/scene": b"\xff",
        b"status/w4/scene": None,
    }
    assert statuses(latest) == ([good], 2)


def test_control_limits_are_settings_with_environment_names() -> None:
    from stream.settings import ControlLimits, WorkerSettings

    default = WorkerSettings.from_environ({}).control_limits
    assert default == ControlLimits() and default.max_json_depth == 32
    env = {
        "TYMPAN_CONTROL_MAX_BYTES": "1024",
        "TYMPAN_REGISTRY_MAX_BYTES": "2048",
        "TYMPAN_JSON_MAX_DEPTH": "4",
    }
    assert WorkerSettings.from_environ(env).control_limits == ControlLimits(1024, 2048, 4)
    with pytest.raises(ConfigError, match="max_json_depth"):
        ControlLimits(max_json_depth=0)
    limits = ControlLimits(control_max_bytes=1024, max_json_depth=4)
    with pytest.raises(ConfigError, match="json_too_deep"):
        ModelAnnouncement.from_record(b"model/scene", b"[[[[[1]]]]]", limits=limits)
