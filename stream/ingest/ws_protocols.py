"""WebSocket media protocols: one small session class per protocol, in one registry.

Each session turns a connection's messages into frames of one stream: ``text()``
and ``binary()`` take a message and return frames; ``close()`` returns the
end-of-stream frame. Both protocols are driven by :mod:`stream.ingest.ws_server`.

* ``twilio`` (:class:`TwilioSession`): Twilio Media Streams. JSON text messages
  ``connected``, ``start`` (``streamSid``, ``callSid``, ``tracks``,
  ``customParameters``, ``mediaFormat``), ``media`` (base64 8 kHz μ-law in
  ``media.payload``, per ``media.track``), ``stop``; ``mark``/``dtmf`` are ignored.
  Each track is a stream.
* ``pcm`` (:class:`PcmSession`): a JSON header message ``{"stream_id", "encoding",
  "sample_rate", "channels", "parameters"}``, then binary messages of samples in
  that encoding, then ``{"event": "stop"}`` or the close of the socket.

Custom parameters (Twilio's ``customParameters``, the plain header's ``parameters``)
ride on every frame as ``attr-<name>`` headers (:func:`parameter_attributes`), and the
worker copies them into the stream's label and summary events as ``attributes``.

Messages are untrusted: anything that does not fit raises
:class:`~stream.ingest.errors.PacketError` with a reason, and the server closes that
connection (policy violation) after ending its stream. What the wire format would
refuse is refused here, at the message that brings it: a stream id over 255 UTF-8
bytes at ``start``/the header (``bad_stream_id``), a NaN or Inf ``pcm_f32le`` sample
at the message that completes it, even when its four bytes are split across two
messages (``non_finite``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from stream.ingest.assembler import ChunkAssembler
from stream.ingest.errors import PacketError
from stream.ingest.streamid import StreamIdTemplate, checked_stream_id
from stream.wire.frame import (
    MAX_ATTRIBUTE_NAME_CHARS,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES,
    MAX_CHANNELS,
    MAX_RATE,
    MIN_RATE,
    Attributes,
    AudioFrame,
    Encoding,
    new_instance,
)

MAX_PARAMETERS = MAX_ATTRIBUTES
_TRACKS = frozenset(("inbound", "outbound"))
MAX_PARAMETER_CHARS = 256
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def parameter_attributes(parameters: Mapping[str, str]) -> Attributes:
    """Custom parameters as frame attributes (``attr-<name>`` headers, then events).

    Names that are not 1-64 letters, digits, ``_``, ``.``, ``-`` are left out (they
    stay in the log line); values are cut to 256 UTF-8 bytes.
    """
    cut = MAX_ATTRIBUTE_VALUE_BYTES
    return tuple(
        (name, value.encode("utf-8", "replace")[:cut].decode("utf-8", "ignore"))
        for name, value in parameters.items()
        if 0 < len(name) <= MAX_ATTRIBUTE_NAME_CHARS and _TAG_CHARS.issuperset(name)
    )[:MAX_ATTRIBUTES]


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of a server shares."""

    template: StreamIdTemplate
    chunk_ms: float
    remote_host: str
    now_us: Any  # Callable[[], int]; Any keeps the dataclass simple for tests


class MediaSession(Protocol):
    """One WebSocket connection's media."""

    protocol: ClassVar[str]
    parameters: dict[str, str]

    def text(self, message: str) -> list[AudioFrame]: ...

    def binary(self, message: bytes) -> list[AudioFrame]: ...

    def close(self) -> list[AudioFrame]: ...

    @property
    def stream_ids(self) -> list[str]: ...

    @property
    def stopped(self) -> bool: ...

    @property
    def started(self) -> bool: ...


def _json_object(message: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(message)
    except (ValueError, RecursionError) as exc:
        raise PacketError("bad_json", f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PacketError("bad_json", f"{what} is a JSON {type(value).__name__}, not an object")
    return value


def _str_field(obj: Mapping[str, Any], name: str, what: str, *, max_chars: int = 128) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise PacketError(
            "bad_message", f"{what}: {name!r} is {value!r:.60}, not a string of 1..{max_chars}"
        )
    return value


def _parameters(value: Any, what: str) -> dict[str, str]:
    """Custom parameters: at most 32 string pairs of at most 256 characters."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_PARAMETERS:
        raise PacketError(
            "bad_message", f"{what}: parameters must be an object of at most {MAX_PARAMETERS}"
        )
    out = {}
    for k, v in value.items():
        if not isinstance(v, str | int | float | bool) or len(k) > MAX_PARAMETER_CHARS:
            raise PacketError("bad_message", f"{what}: parameter {k!r:.60} is not a short scalar")
        out[k] = str(v)[:MAX_PARAMETER_CHARS]
    return out


@dataclass
class TwilioSession:
    """Twilio Media Streams (``connected``/``start``/``media``/``stop``)."""

    context: SessionContext
    protocol: ClassVar[str] = "twilio"
    parameters: dict[str, str] = field(default_factory=dict)
    instance: str = field(default_factory=new_instance)  # this call's instance header
    _tracks: dict[str, ChunkAssembler] = field(default_factory=dict)
    _start: dict[str, Any] | None = None
    _stopped: bool = False
    _ids: dict[str, str] = field(default_factory=dict)  # track -> stream id, from 'start'

    @property
    def stream_ids(self) -> list[str]:
        return [a.stream_id for a in self._tracks.values()]

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def started(self) -> bool:
        return self._start is not None

    def text(self, message: str) -> list[AudioFrame]:
        msg = _json_object(message, "Twilio message")
        event = msg.get("event")
        if event == "media":
            return self._media(msg)
        if event == "start":
            self._on_start(msg)
        elif event == "stop":
            self._stopped = True
            return self.close()
        elif event not in ("connected", "mark", "dtmf"):
            raise PacketError("bad_message", f"Twilio event {event!r:.40} is not known")
        return []

    def binary(self, message: bytes) -> list[AudioFrame]:
        raise PacketError("bad_message", "Twilio Media Streams sends text messages only")

    def _on_start(self, msg: dict[str, Any]) -> None:
        if self._start is not None:
            raise PacketError("bad_message", "a second Twilio 'start' on one connection")
        start = msg.get("start")
        if not isinstance(start, dict):
            raise PacketError("bad_message", "Twilio 'start' has no 'start' object")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict) or fmt.get("encoding", "audio/x-mulaw") != "audio/x-mulaw":
            raise PacketError("bad_message", f"Twilio mediaFormat {fmt!r:.80} is not audio/x-mulaw")
        if fmt.get("sampleRate", 8000) != 8000 or fmt.get("channels", 1) != 1:
            raise PacketError("bad_message", f"Twilio mediaFormat {fmt!r:.80} is not 8 kHz mono")
        named = {
            "stream_sid": _str_field(start, "streamSid", "Twilio 'start'"),
            "call_sid": start.get("callSid") if isinstance(start.get("callSid"), str) else "",
        }
        tracks = start.get("tracks", ["inbound"])
        if (
            not isinstance(tracks, list)
            or not tracks
            or not all(isinstance(t, str) and t in _TRACKS for t in tracks)
        ):
            raise PacketError(
                "bad_message", f"Twilio 'start' tracks {tracks!r:.60} are not inbound/outbound"
            )
        template, what = self.context.template, f"Twilio 'start' of {named['stream_sid']!r:.60}"
        ids, distinct = {}, list(dict.fromkeys(tracks))
        for track in distinct:  # each id is checked now: refused at the handshake
            stream_id = template.name(
                {**named, "track": track, "remote_host": self.context.remote_host}, what
            )
            if len(distinct) > 1 and "track" not in template.fields:
                stream_id = f"{stream_id}-{track}"
            ids[track] = checked_stream_id(stream_id, what)
        self.parameters = _parameters(start.get("customParameters"), "Twilio 'start'")
        self._start, self._ids = named, ids

    def _media(self, msg: dict[str, Any]) -> list[AudioFrame]:
        if self._start is None:
            raise PacketError("bad_message", "Twilio 'media' before 'start'")
        media = msg.get("media")
        if not isinstance(media, dict):
            raise PacketError("bad_message", "Twilio 'media' has no 'media' object")
        track = media.get("track", "inbound")
        if not isinstance(track, str) or track not in self._ids:
            raise PacketError(
                "bad_message",
                f"Twilio media track {track!r:.40} is not one of 'start' tracks {list(self._ids)}",
            )
        try:
            payload = base64.b64decode(
                _str_field(media, "payload", "Twilio media", max_chars=1 << 16), validate=True
            )
        except binascii.Error as exc:
            raise PacketError("bad_message", f"Twilio media payload is not base64: {exc}") from None
        return self._assembler(track).feed(payload)

    def _assembler(self, track: str) -> ChunkAssembler:
        found = self._tracks.get(track)
        if found is not None:
            return found
        made = ChunkAssembler(
            self._ids[track],
            Encoding.MULAW,
            8000,
            1,
            self.context.chunk_ms,
            self.context.now_us(),
            attributes=parameter_attributes(self.parameters),
            instance=self.instance,
        )
        self._tracks[track] = made
        return made

    def close(self) -> list[AudioFrame]:
        out = [a.close() for a in self._tracks.values()]
        self._tracks.clear()
        return out


@dataclass
class PcmSession:
    """The plain protocol: a JSON header, then binary sample messages."""

    context: SessionContext
    protocol: ClassVar[str] = "pcm"
    parameters: dict[str, str] = field(default_factory=dict)
    instance: str = field(default_factory=new_instance)  # this call's instance header
    _assembler: ChunkAssembler | None = None
    _stopped: bool = False
    _carry: bytes = b""  # the first bytes of a pcm_f32le sample that a message split

    @property
    def stream_ids(self) -> list[str]:
        return [] if self._assembler is None else [self._assembler.stream_id]

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def started(self) -> bool:
        return self._assembler is not None

    def text(self, message: str) -> list[AudioFrame]:
        msg = _json_object(message, "header")
        if self._assembler is None:
            self._assembler = self._header(msg)
            return []
        if msg.get("event") == "stop":
            self._stopped = True
            return self.close()
        raise PacketError("bad_message", f"text message {message[:60]!r} after the header")

    def _header(self, msg: dict[str, Any]) -> ChunkAssembler:
        sid = _str_field(msg, "stream_id", "header")
        try:
            encoding = Encoding(msg.get("encoding", "pcm_s16le"))
        except ValueError:
            raise PacketError(
                "bad_message", f"header encoding {msg.get('encoding')!r:.40}"
            ) from None
        sr, channels = msg.get("sample_rate"), msg.get("channels", 1)
        if type(sr) is not int or not MIN_RATE <= sr <= MAX_RATE:
            raise PacketError(
                "bad_message", f"header sample_rate {sr!r:.40} is not {MIN_RATE}..{MAX_RATE}"
            )
        if type(channels) is not int or not 1 <= channels <= MAX_CHANNELS:
            raise PacketError(
                "bad_message", f"header channels {channels!r:.40} is not 1..{MAX_CHANNELS}"
            )
        self.parameters = _parameters(msg.get("parameters"), "header")
        stream_id = self.context.template.name(
            {
                "stream_sid": sid,
                "call_sid": sid,
                "track": "inbound",
                "remote_host": self.context.remote_host,
            },
            f"header of {sid!r:.60}",
        )
        return ChunkAssembler(
            stream_id,
            encoding,
            sr,
            channels,
            self.context.chunk_ms,
            self.context.now_us(),
            attributes=parameter_attributes(self.parameters),
            instance=self.instance,
        )

    def binary(self, message: bytes) -> list[AudioFrame]:
        if self._assembler is None:
            raise PacketError("bad_message", "samples before the JSON header")
        if self._assembler.encoding is Encoding.PCM_F32LE:
            self._check_finite(message)
        return self._assembler.feed(message)

    def _check_finite(self, message: bytes) -> None:
        """Every float completed by ``message``, the bytes a previous one split included."""
        data = self._carry + message if self._carry else message
        usable = len(data) - len(data) % 4
        samples = np.frombuffer(data, dtype="<f4", count=usable // 4)
        finite = np.isfinite(samples)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise PacketError(
                "non_finite",
                f"stream {self.stream_ids[0]!r}: pcm_f32le sample {samples[bad]} "
                f"(NaN and Inf are not audio)",
            )
        self._carry = bytes(data[usable:])

    def close(self) -> list[AudioFrame]:
        if self._assembler is None:
            return []
        frame = self._assembler.close()
        self._assembler = None
        return [frame]


SESSIONS: Mapping[str, type[TwilioSession] | type[PcmSession]] = {
    TwilioSession.protocol: TwilioSession,
    PcmSession.protocol: PcmSession,
}
"""Protocol name (the URL path ``/<name>``) → session class."""
