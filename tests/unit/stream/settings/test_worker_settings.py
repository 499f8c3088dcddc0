"""WorkerSettings: defaults, TYMPAN_* variables, flags over variables, validation.

Each setting is declared once on its dataclass field (``stream.settings.specs``); these
tests walk the dataclasses themselves, so a field added without a flag, a variable or
a row in docs/configuration.md fails here.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest

from stream.cli import build_parser
from stream.errors import ConfigError
from stream.settings import WorkerSettings
from stream.settings.specs import SettingSpec, markdown_table, setting, spec_of, specs

SPECS = {spec.name: spec for spec in specs(WorkerSettings)}
DOCS = Path(__file__).resolve().parents[4] / "docs" / "configuration.md"

# Names users' scripts, docker/compose.yml and the docs already use: never renamed.
EXISTING_FLAGS = {
    "model": "--model",
    "speaker_model": "--speaker-model",
    "speaker_registry": "--speaker-registry",
    "model_repo": "--model-repo",
    "topic_prefix": "--topic-prefix",
    "app_id": "--app-id",
    "data_dir": "--data-dir",
    "device": "--device",
    "max_batch": "--max-batch",
    "max_wait_ms": "--max-wait-ms",
    "queue_windows": "--queue-windows",
    "reorder_frames": "--reorder-frames",
    "max_gap_frames": "--max-gap-frames",
    "idle_timeout_s": "--idle-timeout-s",
    "max_streams": "--max-streams",
    "max_frame_bytes": "--max-frame-bytes",
    "max_frame_ms": "--max-frame-ms",
    "max_gap_s": "--max-gap-s",
    "max_seq_jump": "--max-seq-jump",
    "max_segment_s": "--max-segment-s",
    "top_k": "--top-k",
    "dead_letter_max_bytes": "--dead-letter-max-bytes",
    "web_host": "--web-host",
    "web_port": "--web-port",
    "processes": "--processes",
    "trusted_keys": "--trusted-key",
}
EXISTING_ENV = {
    "TYMPAN_TOPIC_PREFIX",
    "TYMPAN_MODEL",
    "TYMPAN_SPEAKER_MODEL",
    "TYMPAN_MODEL_REPO",
    "TYMPAN_SPEAKER_REGISTRY",
    "TYMPAN_DEVICE",
    "TYMPAN_APP_ID",
    "TYMPAN_DATA_DIR",
    "TYMPAN_MAX_BATCH",
    "TYMPAN_MAX_WAIT_MS",
    "TYMPAN_QUEUE_WINDOWS",
    "TYMPAN_REORDER_FRAMES",
    "TYMPAN_MAX_GAP_FRAMES",
    "TYMPAN_IDLE_TIMEOUT_S",
    "TYMPAN_MAX_STREAMS",
    "TYMPAN_WEB_HOST",
    "TYMPAN_WEB_PORT",
    "TYMPAN_TOP_K",
    "TYMPAN_SESSION_TIMEOUT_S",
    "TYMPAN_TRUSTED_KEYS",
    "TYMPAN_CONTROL_MAX_BYTES",
    "TYMPAN_REGISTRY_MAX_BYTES",
    "TYMPAN_JSON_MAX_DEPTH",
    "TYMPAN_MAX_FRAME_BYTES",
    "TYMPAN_MAX_FRAME_MS",
    "TYMPAN_MAX_GAP_S",
    "TYMPAN_MAX_SEQ_JUMP",
    "TYMPAN_MAX_SEGMENT_S",
    "TYMPAN_DEAD_LETTER_MAX_BYTES",
    "TYMPAN_PROCESSES",
}


def _leaf_fields(cls: type) -> set[str]:
    """Field names of ``cls`` and its nested dataclasses, found without setting_specs."""
    names: set[str] = set()
    for field in dataclasses.fields(cls):
        if field.name == "kafka":  # KafkaClientConfig: TYMPAN_BROKER, TYMPAN_KAFKA_*
            continue
        value = field.default_factory() if callable(field.default_factory) else field.default
        if dataclasses.is_dataclass(value):
            names |= _leaf_fields(type(value))
        else:
            names.add(field.name)
    return names


def _worker_parser() -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            parser: argparse.ArgumentParser = action.choices["worker"]
            return parser
    raise AssertionError("no subcommands")


def _at(settings: WorkerSettings, spec: SettingSpec) -> Any:
    return functools.reduce(getattr, spec.path, settings)


def _sample(spec: SettingSpec, step: int) -> Any:
    """A valid value of ``spec`` other than its default (``step`` 1 and 2 differ)."""
    if spec.choices is not None:
        return spec.choices[step % len(spec.choices)]
    if spec.many:
        return (Path(f"/keys/k{step}.pub"), Path(f"/keys/more{step}"))
    if spec.kind in (int, float):
        return spec.kind((spec.default or 1) + step)
    return spec.kind(f"/x/sample{step}")


def _as_env(spec: SettingSpec, value: Any) -> str:
    return ",".join(map(str, value)) if spec.many else str(value)


def test_defaults_are_safe() -> None:
    s = WorkerSettings.from_environ({})
    assert s == WorkerSettings()
    assert s.web_host == "127.0.0.1"
    assert s.topic_prefix == "tympan"
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.batching.max_batch >= 1 and s.batching.queue_windows >= s.batching.max_batch


def test_every_field_has_a_flag_and_an_environment_name() -> None:
    assert _leaf_fields(WorkerSettings) == set(SPECS)
    options = {a.dest: a for a in _worker_parser()._actions if a.option_strings}
    for name, spec in SPECS.items():
        assert options[name].option_strings == [spec.flag]
        assert spec.env in (options[name].help or ""), f"--help of {spec.flag} names no variable"
        assert spec.env == "TYMPAN_" + name.upper() or spec.env in EXISTING_ENV


def test_existing_flag_and_variable_names_are_kept() -> None:
    assert {name: SPECS[name].flag for name in EXISTING_FLAGS} == EXISTING_FLAGS
    assert {spec.env for spec in SPECS.values()} >= EXISTING_ENV
    assert SPECS["max_json_depth"].env == "TYMPAN_JSON_MAX_DEPTH"  # older than the field


@pytest.mark.parametrize("name", sorted(SPECS))
def test_flag_beats_environment_beats_default(name: str) -> None:
    spec = SPECS[name]
    from_env, from_flag = _sample(spec, 1), _sample(spec, 2)
    env = {spec.env: _as_env(spec, from_env)}
    assert _at(WorkerSettings.from_environ({}), spec) == spec.default
    assert _at(WorkerSettings.from_environ(env), spec) == from_env != spec.default
    assert _at(WorkerSettings.from_environ(env, {name: from_flag}), spec) == from_flag
    assert _at(WorkerSettings.from_environ({spec.env: ""}), spec) == spec.default  # unset


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_flag_round_trips_through_the_command_line(name: str) -> None:
    """What the parser makes of a setting's argv is the value: the supervisor's
    children get their flags this way."""
    spec = SPECS[name]
    value = _sample(spec, 1)
    args = _worker_parser().parse_args(spec.argv(value))
    assert getattr(args, name) is not None
    assert _at(WorkerSettings.from_environ({}, {name: getattr(args, name)}), spec) == value


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SPECS.items() if s.kind in (int, float) or s.choices)
)
def test_a_bad_variable_is_a_config_error_naming_it(name: str) -> None:
    spec = SPECS[name]
    with pytest.raises(ConfigError, match=spec.env):
        WorkerSettings.from_environ({spec.env: "lots"})


def _outside(spec: SettingSpec) -> str:
    """A value just outside the declared range of ``spec``."""
    if spec.minimum is not None:
        return str(spec.kind(spec.minimum - 1))
    if spec.above is not None:
        return str(spec.kind(spec.above))
    assert spec.maximum is not None
    return str(spec.kind(spec.maximum + 1))


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s.bounds and not s.choices))
def test_a_value_outside_its_declared_range_is_refused(name: str) -> None:
    spec = SPECS[name]
    with pytest.raises(ConfigError, match=rf"{name}=.* must be .*{spec.env}="):
        WorkerSettings.from_environ({spec.env: _outside(spec)})


def test_a_refused_value_names_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"max_frame_bytes=0 .*TYMPAN_MAX_FRAME_BYTES='0'"):
        WorkerSettings.from_environ({"TYMPAN_MAX_FRAME_BYTES": "0"})
    with pytest.raises(ConfigError, match=r"queue_windows.*--max-batch 64"):
        WorkerSettings.from_environ({"TYMPAN_QUEUE_WINDOWS": "8"}, {"max_batch": 64})
    cross = r"max_seq_jump=5 .*--reorder-frames 8, TYMPAN_MAX_SEQ_JUMP"  # PipelinePolicy's check
    with pytest.raises(ConfigError, match=cross):
        WorkerSettings.from_environ({"TYMPAN_MAX_SEQ_JUMP": "5"}, {"reorder_frames": 8})
    with pytest.raises(ConfigError, match="max_streams"):
        WorkerSettings.from_environ({}, {"max_streams": 0})
    with pytest.raises(ConfigError, match="processes"):
        WorkerSettings.from_environ({"TYMPAN_PROCESSES": "0"})


def test_a_flag_that_is_no_setting_is_a_mistake_in_the_caller() -> None:
    with pytest.raises(TypeError, match="max_bach"):
        WorkerSettings.from_environ({}, {"max_bach": 4})


def test_environment_then_flags() -> None:
    env = {
        "TYMPAN_BROKER": "k1:9092",
        "TYMPAN_MAX_BATCH": "16",
        "TYMPAN_IDLE_TIMEOUT_S": "5",
        "TYMPAN_MODEL": "scene/2",
        "TYMPAN_DATA_DIR": "/tmp/x",
        "TYMPAN_TRUSTED_KEYS": "a.pub, keys/",
    }
    s = WorkerSettings.from_environ(env, {"max_batch": 8, "broker": None, "web_port": 0})
    assert s.kafka.bootstrap_servers == "k1:9092"
    assert s.batching.max_batch == 8
    assert s.pipeline.idle_timeout_s == 5.0
    assert s.model == "scene/2" and s.data_dir == Path("/tmp/x")
    assert s.web_port == 0
    assert s.trusted_keys == (Path("a.pub"), Path("keys"))
    assert WorkerSettings.from_environ(env, {"broker": "k2:9092"}).kafka.bootstrap_servers == (
        "k2:9092"
    )


def test_settings_are_frozen() -> None:
    s = WorkerSettings()
    with pytest.raises(AttributeError):
        s.web_port = 1  # type: ignore[misc]
    changed = s.with_changes(max_streams=3, max_batch=4, topic_prefix="t")
    assert (changed.pipeline.max_streams, changed.batching.max_batch) == (3, 4)
    assert changed.topic_prefix == "t" and changed.pipeline.limits == s.pipeline.limits
    with pytest.raises(TypeError, match="max_bach"):
        s.with_changes(max_bach=4)


def test_the_pipeline_policy_is_the_settings_one() -> None:
    from stream.pipeline import PipelinePolicy

    s = WorkerSettings.from_environ({"TYMPAN_TOP_K": "5", "TYMPAN_MAX_GAP_S": "1.5"})
    assert isinstance(s.pipeline, PipelinePolicy)
    assert (s.pipeline.top_k, s.pipeline.limits.max_gap_s) == (5, 1.5)


def test_the_docs_table_is_the_declared_settings() -> None:
    text = DOCS.read_text()
    begin, end = "<!-- worker-settings:begin -->\n", "<!-- worker-settings:end -->"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == markdown_table(WorkerSettings), (
        "docs/configuration.md is out of date; replace its table with:\n"
        + markdown_table(WorkerSettings)
    )
    for spec in SPECS.values():
        assert f"| `{spec.flag}` | `{spec.env}` |" in table


@dataclasses.dataclass(frozen=True)
class _Loose:
    declared: int = setting(1, help="declared")
    loose: int = 2


@dataclasses.dataclass(frozen=True)
class _Inner:
    declared: int = setting(1, help="declared")


@dataclasses.dataclass(frozen=True)
class _Twice:
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    declared: int = setting(1, help="again")


def test_a_field_without_a_declaration_is_refused() -> None:
    assert [spec.name for spec in specs(_Inner)] == ["declared"]
    with pytest.raises(TypeError, match=r"_Loose\.loose"):
        specs(_Loose)
    with pytest.raises(TypeError, match="declared more than once"):
        specs(_Twice)


def test_help_and_default_come_from_the_declaration() -> None:
    spec = spec_of(WorkerSettings, "max_wait_ms")
    assert spec.default == WorkerSettings().batching.max_wait_ms
    assert spec.help_text().endswith(f"(TYMPAN_MAX_WAIT_MS; default: {spec.default:g} ms)")
    assert spec_of(WorkerSettings, "processes").default_text == "one per core"


def test_the_consumer_group_follows_the_topic_prefix_unless_given() -> None:
    default = WorkerSettings.from_environ({})
    other = WorkerSettings.from_environ({"TYMPAN_TOPIC_PREFIX": "calls-eu"})
    moved = default.with_changes(topic_prefix="music")
    pinned = WorkerSettings.from_environ({"TYMPAN_TOPIC_PREFIX": "calls-eu"}, {"app_id": "shared"})

    assert default.group_id == "tympan-worker"  # unchanged for the default prefix
    assert other.group_id == "calls-eu-worker"
    assert moved.group_id == "music-worker"
    assert pinned.group_id == "shared"
