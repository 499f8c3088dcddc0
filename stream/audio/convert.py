"""Payload bytes ↔ float32 samples: the one place where encodings meet numbers.

Everything after the wire format works on float32 mono in ``[-1, 1]``; this module
decodes any :class:`~stream.wire.Encoding` to that (G.711 through a 256-entry
float table, PCM through a zero-copy ``frombuffer`` view) and encodes it back for
producers. The integer scale is 32768 both ways, so 16-bit PCM survives
``int16 → float32 → int16`` bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from stream.audio import g711
from stream.errors import AudioError
from stream.types import Float32
from stream.wire.frame import Encoding

_INT16_SCALE = 32768.0
_INT16_STEP = np.float32(1.0 / _INT16_SCALE)
_MULAW_FLOAT = (g711.MULAW_TO_LINEAR / _INT16_SCALE).astype(np.float32)
_ALAW_FLOAT = (g711.ALAW_TO_LINEAR / _INT16_SCALE).astype(np.float32)


def payload_to_float32(payload: bytes, encoding: Encoding | str, channels: int) -> Float32:
    """Decode an interleaved payload to float32 mono in ``[-1, 1]``.

    Parameters
    ----------
    payload: the frame's bytes, little-endian, channels interleaved.
    encoding: one of :class:`~stream.wire.Encoding` (or its value).
    channels: interleaved channels; more than one is downmixed by the mean.

    Returns
    -------
    samples : np.ndarray [shape=(n,), dtype=float32]
        ``n = len(payload) // (sample_width * channels)``; empty for an empty payload.
        ``pcm_f32le`` values outside ``[-1, 1]`` are clipped.

    Raises
    ------
    AudioError
        ``unknown_encoding``, ``bad_channels``, ``bad_payload_length`` or
        ``non_finite`` (NaN/Inf in ``pcm_f32le``); the message names the value.
    """
    enc = _encoding(encoding)
    if not isinstance(channels, int) or channels < 1:
        raise AudioError("bad_channels", f"channels must be a positive integer, got {channels!r}")
    block = enc.sample_width * channels
    if len(payload) % block:
        raise AudioError(
            "bad_payload_length",
            f"payload of {len(payload)} bytes is not a multiple of {block} "
            f"({enc.value}, {channels} channel(s))",
        )
    samples = _decode(payload, enc)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples


def float32_to_payload(samples: npt.ArrayLike, encoding: Encoding | str) -> bytes:
    """Encode float32 samples (mono or already interleaved) as ``encoding`` bytes.

    Values are clipped to ``[-1, 1)``; integer encodings round to the nearest step.

    Raises
    ------
    AudioError
        ``unknown_encoding``, or ``non_finite`` when a sample is NaN or Inf.
    """
    enc = _encoding(encoding)
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    _check_finite(x)
    if enc is Encoding.PCM_F32LE:
        return np.clip(x, -1.0, 1.0).astype("<f4").tobytes()
    pcm = float32_to_int16(x)
    if enc is Encoding.PCM_S16LE:
        return pcm.astype("<i2").tobytes()
    if enc is Encoding.MULAW:
        return g711.mulaw_encode(pcm).tobytes()
    return g711.alaw_encode(pcm).tobytes()


def float32_to_int16(samples: Float32) -> npt.NDArray[np.int16]:
    """Scale by 32768, round half to even, clip to the int16 range."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * np.float32(_INT16_SCALE))
    pcm: npt.NDArray[np.int16] = np.clip(scaled, -32768, 32767).astype(np.int16)
    return pcm


def pcm_s16le_to_float32(payload: bytes) -> Float32:
    """Mono ``pcm_s16le`` bytes (an even count: unchecked) to float32 in ``[-1, 1)``.

    :func:`payload_to_float32` without its checks, for payloads ``decode_frame`` has
    validated: the pipeline joins those of many records and decodes them in one call.
    """
    pcm = np.frombuffer(payload, dtype="<i2")
    scaled: Float32 = np.multiply(pcm, _INT16_STEP, dtype=np.float32)  # one pass, exact
    return scaled


def g711_to_float32(payload: bytes, encoding: Encoding) -> Float32:
    """Mono μ-law or A-law bytes to float32 in ``[-1, 1)``: one table lookup.

    :func:`payload_to_float32` without its checks (every length is whole samples), for
    the pipeline, which joins the payloads of many records and decodes them at once.
    """
    table = _MULAW_FLOAT if encoding is Encoding.MULAW else _ALAW_FLOAT
    decoded: Float32 = table[np.frombuffer(payload, dtype=np.uint8)]
    return decoded


def _decode(payload: bytes, enc: Encoding) -> Float32:
    if enc is Encoding.PCM_S16LE:
        return pcm_s16le_to_float32(payload)
    if enc is Encoding.PCM_F32LE:
        raw: Float32 = np.frombuffer(payload, dtype="<f4")
        _check_finite(raw)
        return np.clip(raw, -1.0, 1.0).astype(np.float32, copy=False)
    return g711_to_float32(payload, enc)


def _check_finite(samples: npt.NDArray[np.floating]) -> None:
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise AudioError(
            "non_finite", f"sample {bad} of {samples.size} is {samples[bad]} (NaN/Inf)"
        )


def _encoding(encoding: Encoding | str) -> Encoding:
    if type(encoding) is Encoding:  # the common case, without the enum lookup
        return encoding
    try:
        return Encoding(encoding)
    except ValueError:
        known = ", ".join(e.value for e in Encoding)
        raise AudioError(
            "unknown_encoding", f"encoding {encoding!r} is not one of {known}"
        ) from None
