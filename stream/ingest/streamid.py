"""Stream-id templates: how an ingested call is named on the audio topic (the record key).

A template is a :meth:`str.format` string over the fields a protocol knows, e.g.
``"rtp-{ssrc:08x}-{port}"`` or ``"{stream_sid}"``. It is checked once at start
against sample values, so a typo is a :class:`~stream.errors.ConfigError` then, not
a failure per call. Values from the network (a Twilio ``streamSid``) are cut to
their first 128 characters so that a key stays within the wire format's 255 bytes.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from stream.errors import ConfigError
from stream.wire.frame import MAX_KEY_BYTES

RTP_FIELDS: Mapping[str, object] = {
    "ssrc": 0x1234ABCD,
    "port": 40000,
    "remote_host": "192.0.2.7",
    "remote_port": 5004,
}
"""Fields of an RTP stream id, with the sample values a template is checked with."""

WS_FIELDS: Mapping[str, object] = {
    "stream_sid": "MZ18ad3ab5a668481ce02b83e7395059f0",
    "call_sid": "CA0123456789abcdef0123456789abcdef",
    "track": "inbound",
    "remote_host": "192.0.2.7",
}
"""Fields of a WebSocket stream id (Twilio names; the plain protocol sends its own)."""

DEFAULT_RTP_TEMPLATE = "rtp-{ssrc:08x}-{port}"
DEFAULT_WS_TEMPLATE = "{stream_sid}"
_MAX_FIELD_CHARS = 128


@dataclass(frozen=True, slots=True)
class StreamIdTemplate:
    """A checked template; :meth:`render` names one stream."""

    template: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, template: str, known: Mapping[str, object]) -> StreamIdTemplate:
        """Check ``template`` against the ``known`` fields and their sample values.

        Raises
        ------
        ConfigError
            An unknown field, a bad format spec, or an id that is empty or longer than
            255 bytes for the sample values.
        """
        try:
            used = tuple(
                name for _, name, _, _ in string.Formatter().parse(template) if name is not None
            )
        except ValueError as exc:
            raise ConfigError(f"stream-id template {template!r} is not valid: {exc}") from exc
        unknown = [n for n in used if n not in known]
        if unknown:
            raise ConfigError(
                f"stream-id template {template!r} uses {', '.join(map(repr, unknown))}; "
                f"the fields are {', '.join(known)}"
            )
        checked = cls(template, used)
        try:
            sample = checked.render(known)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"stream-id template {template!r} cannot render: {exc}") from exc
        if not sample or len(sample.encode()) > MAX_KEY_BYTES:
            raise ConfigError(f"stream-id template {template!r} gives {sample!r}, not 1..255 bytes")
        return checked

    def render(self, values: Mapping[str, object]) -> str:
        """The stream id for ``values`` (network strings cut to 128 characters)."""
        safe = {
            k: (v[:_MAX_FIELD_CHARS] if isinstance(v, str) else v)
            for k, v in values.items()
            if k in self.fields
        }
        return self.template.format(**safe)
