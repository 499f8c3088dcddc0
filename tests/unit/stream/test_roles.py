"""A role is what a model does; its control-topic spelling and its default model are
separate facts, and old spellings still parse."""

from __future__ import annotations

import pytest

from stream.errors import ConfigError
from stream.roles import DEFAULT_MODELS, LABEL_MODEL, SPEAKER_MODEL, SPEECH_LABEL, Role


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("scene", Role.LABEL),  # the control topic's spelling, on records since the start
        ("label", Role.LABEL),
        ("LABEL", Role.LABEL),
        ("speaker", Role.SPEAKER),
        ("SPEAKER", Role.SPEAKER),
    ],
)
def test_a_role_parses_from_its_name_or_its_control_spelling(text: str, role: Role) -> None:
    assert Role.parse(text) is role


@pytest.mark.parametrize("text", ["speaker-embed", "", "labels", "x"])
def test_anything_else_is_refused_with_the_choices(text: str) -> None:
    with pytest.raises(ConfigError, match=r"is not one of label, scene, speaker"):
        Role.parse(text)


def test_control_spellings_are_the_ones_on_the_topic() -> None:
    assert [role.value for role in Role] == ["scene", "speaker"]
    assert f"model/{Role.LABEL}" == "model/scene"


def test_every_role_has_a_default_model_which_is_a_name_not_a_role() -> None:
    assert set(DEFAULT_MODELS) == set(Role)
    assert DEFAULT_MODELS == {Role.LABEL: LABEL_MODEL, Role.SPEAKER: SPEAKER_MODEL}
    assert DEFAULT_MODELS[Role.SPEAKER] == "speaker-embed" != Role.SPEAKER


def test_the_default_label_model_has_the_speech_label_the_speaker_gate_reads() -> None:
    """Speaker tracking is gated by the label model's speech label; a default label model
    without it would silently gate nothing."""
    from stream.inference.manifest import load_manifest
    from stream.inference.repository import resolve_model_dir

    assert SPEECH_LABEL in load_manifest(resolve_model_dir(None, role=Role.LABEL)).labels
