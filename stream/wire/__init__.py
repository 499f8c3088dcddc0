"""The wire format of audio frames on Kafka (see ``docs/wire-format.md``)."""

from stream.wire.frame import (
    WIRE_VERSION,
    AudioFrame,
    Encoding,
    decode_frame,
    encode_frame,
    frame_headers,
)

__all__ = [
    "WIRE_VERSION",
    "AudioFrame",
    "Encoding",
    "decode_frame",
    "encode_frame",
    "frame_headers",
]
