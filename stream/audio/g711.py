"""G.711 μ-law and A-law companding (ITU-T Recommendation G.711).

Telephony sends 8-bit companded codes at 8 kHz. Decoding is a lookup in a
256-entry table; encoding is a lookup in a 65536-entry table indexed by the 16-bit
sample, both built once at import with vectorized numpy from the reference
algorithm (the Sun/CCITT ``g711.c`` that CPython's ``audioop`` also uses), so both
directions are one numpy gather per chunk with no per-sample Python.

Code points, as the standard defines them: μ-law ``0xFF`` is +0 and ``0x7F`` is −0,
``0x80``/``0x00`` are ±32124; A-law ``0xD5``/``0x55`` are ±8 and ``0xAA``/``0x2A``
are ±32256 (A-law codes are transmitted with even bits inverted, ``^ 0x55``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_BIAS = 0x84
_SEG_END_MULAW = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_END_ALAW = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])

Codes = npt.NDArray[np.uint8]
Samples16 = npt.NDArray[np.int16]


def _mulaw_decode_table() -> Samples16:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((code & 0x0F) << 3) + _BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _alaw_decode_table() -> Samples16:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (code & 0x70) >> 4
    t = (code & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(code & 0x80, t, -t).astype(np.int16)


def _mulaw_encode_table() -> Codes:
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit magnitude, as g711.c
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + (_BIAS >> 2)
    seg = np.searchsorted(_SEG_END_MULAW, magnitude, side="left")
    code: npt.NDArray[Any] = (seg << 4) | ((magnitude >> (np.minimum(seg, 7) + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code) ^ mask
    return _by_uint16(code)


def _alaw_encode_table() -> Codes:
    x = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit, as g711.c
    mask = np.where(x >= 0, 0xD5, 0x55)
    magnitude = np.where(x >= 0, x, -x - 1)
    seg = np.searchsorted(_SEG_END_ALAW, magnitude, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code: npt.NDArray[Any] = (seg << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code) ^ mask
    return _by_uint16(code)


def _by_uint16(code_by_int16: npt.NDArray[Any]) -> Codes:
    """Reorder a table indexed ``-32768..32767`` so that ``int16.view(uint16)`` indexes it."""
    return np.roll(code_by_int16.astype(np.uint8), -32768)


MULAW_TO_LINEAR: Samples16 = _mulaw_decode_table()
"""int16 value of each μ-law code, ``[shape=(256,)]``."""
ALAW_TO_LINEAR: Samples16 = _alaw_decode_table()
"""int16 value of each A-law code, ``[shape=(256,)]``."""
_LINEAR_TO_MULAW: Codes = _mulaw_encode_table()
_LINEAR_TO_ALAW: Codes = _alaw_encode_table()
for _table in (MULAW_TO_LINEAR, ALAW_TO_LINEAR, _LINEAR_TO_MULAW, _LINEAR_TO_ALAW):
    _table.flags.writeable = False


def mulaw_decode(codes: bytes | Codes) -> Samples16:
    """16-bit linear samples of μ-law ``codes`` ``[shape=(n,)]``."""
    return MULAW_TO_LINEAR[_as_codes(codes)]


def alaw_decode(codes: bytes | Codes) -> Samples16:
    """16-bit linear samples of A-law ``codes`` ``[shape=(n,)]``."""
    return ALAW_TO_LINEAR[_as_codes(codes)]


def mulaw_encode(samples: Samples16) -> Codes:
    """μ-law codes of 16-bit linear ``samples`` ``[shape=(n,)]``, as ``audioop.lin2ulaw``."""
    return _LINEAR_TO_MULAW[_as_uint16(samples)]


def alaw_encode(samples: Samples16) -> Codes:
    """A-law codes of 16-bit linear ``samples`` ``[shape=(n,)]``, as ``audioop.lin2alaw``."""
    return _LINEAR_TO_ALAW[_as_uint16(samples)]


def _as_codes(codes: bytes | Codes) -> Codes:
    if isinstance(codes, bytes | bytearray | memoryview):
        return np.frombuffer(codes, dtype=np.uint8)
    return np.asarray(codes, dtype=np.uint8)


def _as_uint16(samples: Samples16) -> npt.NDArray[np.uint16]:
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise TypeError(f"G.711 encoding takes int16 samples, got {array.dtype}")
    return array.view(np.uint16)
