"""Stream-id templates: how an ingested call is named on the audio topic (the record key).

A template is a :meth:`str.format` string over the fields a protocol knows, e.g.
``"rtp-{ssrc:08x}-{port}"`` or ``"{stream_sid}"``. It is checked once at start
against sample values, so a typo is a :class:`~stream.errors.ConfigError` then, not
a failure per call. Each call's id is checked again when the call opens
(:meth:`StreamIdTemplate.name`): the wire format's record key is 1..255 UTF-8 bytes
(``stream.wire.frame.MAX_KEY_BYTES``), and 128 characters from the network can be
512 bytes, so an id over the limit (or one that is not valid Unicode) refuses that
call at its handshake (``bad_stream_id``) instead of reaching the producer.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from stream.errors import ConfigError
from stream.ingest.errors import PacketError
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


def checked_stream_id(stream_id: str, what: str) -> str:
    """``stream_id`` if it can be a record key: valid Unicode of 1..255 UTF-8 bytes.

    Raises
    ------
    PacketError
        ``bad_stream_id``; the message starts with ``what`` (the call) and gives the size.
    """
    try:
        size = len(stream_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise PacketError(
            "bad_stream_id",
            f"{what}: stream id {stream_id[:40]!r} is not valid Unicode (a lone surrogate)",
        ) from None
    if not 0 < size <= MAX_KEY_BYTES:
        raise PacketError(
            "bad_stream_id",
            f"{what}: stream id {stream_id[:40]!r} is {size} UTF-8 bytes; a record key "
            f"holds 1..{MAX_KEY_BYTES}",
        )
    return stream_id


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
        """The stream id for ``values``, unchecked (see :meth:`name`)."""
        return self.template.format(**{k: v for k, v in values.items() if k in self.fields})

    def name(self, values: Mapping[str, object], what: str) -> str:
        """The stream id of one call, checked as a record key.

        Raises
        ------
        PacketError
            ``bad_stream_id``: the id cannot be rendered, is empty, is not valid Unicode
            or is longer than 255 UTF-8 bytes.
        """
        try:
            rendered = self.render(values)
        except (ValueError, TypeError, KeyError) as exc:
            raise PacketError("bad_stream_id", f"{what}: no stream id: {exc}") from None
        return checked_stream_id(rendered, what)
