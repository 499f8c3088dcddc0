"""What a model does in a worker (its *role*), apart from which model does it (its *name*),
and the one label a worker relies on (:data:`SPEECH_LABEL`).

A worker serves one model per role: a :attr:`Role.LABEL` model turns each window into
label probabilities, a :attr:`Role.SPEAKER` model into a speaker embedding. Which model
fills a role is a name in the model repository (``<repo>/<name>/<version>/``), chosen by
a flag, a hot-reload announcement, or else the role's default model
(:data:`DEFAULT_MODELS`).

The members' values are the roles' spellings on the control topic (``model/<role>``
keys and the ``role`` field of announcements and status records). The label role is
spelled ``"scene"`` there because it was named after the first label model before roles
had names of their own; records already on the compacted topic say so, and workers of
the previous release read only that spelling, so it stays. :meth:`Role.parse` also
takes the member names (``label``, ``speaker``), which is what people type.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from stream.errors import ConfigError


class Role(StrEnum):
    """A model's job in a worker; the value is the control-topic spelling."""

    LABEL = "scene"
    SPEAKER = "speaker"

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role spelled ``text``: a control-topic value (``scene``, ``speaker``) or
        a member name (``label``, ``speaker``, any case).

        Raises
        ------
        ConfigError
            ``text`` names no role; checked where a role enters (a flag, a control
            record), so a typo is refused there rather than announced and never applied.
        """
        for role in cls:
            if text == role.value or text.upper() == role.name:
                return role
        names = ", ".join(sorted({*(r.value for r in cls), *(r.name.lower() for r in cls)}))
        raise ConfigError(f"model role {text!r} is not one of {names}")


LABEL_MODEL = "scene"
"""The model repository name of the default label model (the zoo's scene classifier)."""

SPEAKER_MODEL = "speaker-embed"
"""The model repository name of the default speaker-embedding model."""

DEFAULT_MODELS: Mapping[Role, str] = MappingProxyType(
    {Role.LABEL: LABEL_MODEL, Role.SPEAKER: SPEAKER_MODEL}
)
"""The model a role gets when no model is named (``--model`` / ``--speaker-model``)."""

SPEECH_LABEL = "speech"
"""The label model's label for speech. The live speaker role is gated by it: windows
whose top label is another one (silence, music, tones) are neither embedded nor tracked.
A label model without it gates nothing."""

NON_VOICE_LABELS: frozenset[str] = frozenset({"music", "tone"})
"""Label-model labels of loud, structured sounds that are never a voice. Nothing
requires the label model to hear ``speech`` for a voice: one it was not trained on (a
whisper, a hoarse or breathy voice) comes out as ``noise`` and is still a voice."""

ENROLLMENT_VETO_LABELS: frozenset[str] = frozenset({"music"})
"""The non-voice labels that may veto an enrollment clip the voice activity model
accepted. Tones are the VAD's to refuse (it hears no speech in them, steady or
cadenced); the label model, trained on rendered audio, hears real spoken letters as
``tone`` too often to veto on it. Music keeps its veto: a piece with a singer holds
what the VAD hears as voice."""
