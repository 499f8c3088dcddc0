"""G.711 against the code points of the standard and against CPython's audioop."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from stream.audio import g711

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def test_mulaw_code_points() -> None:
    # ITU-T G.711 table 2: 0xFF is +0, 0x7F is -0, 0x80/0x00 the extremes ±8031 steps
    # of 4 in 14-bit terms, i.e. ±32124 at 16 bits.
    table = g711.MULAW_TO_LINEAR
    assert table[0xFF] == 0 and table[0x7F] == 0
    assert table[0x80] == 32124 and table[0x00] == -32124
    assert table[0xFE] == 8 and table[0x7E] == -8  # first step away from zero
    assert table[0xEF] == 132  # segment 1 starts at (33 << 1) - 33 = 33 in 14-bit units
    assert np.array_equal(table[0x80:], -table[:0x80])  # the two halves mirror


def test_alaw_code_points() -> None:
    # ITU-T G.711 table 1: codes go on the line with even bits inverted (^ 0x55).
    table = g711.ALAW_TO_LINEAR
    assert table[0xD5] == 8 and table[0x55] == -8  # smallest magnitudes
    assert table[0xAA] == 32256 and table[0x2A] == -32256  # largest magnitudes
    assert np.array_equal(table[0x80:], -table[:0x80])


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.mulaw_encode, g711.mulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_decode_then_encode_is_identity_on_codes(encode, decode) -> None:
    codes = ALL_CODES.copy()
    if encode is g711.mulaw_encode:
        codes = codes[codes != 0x7F]  # -0 re-encodes as +0 (0xFF), as in the standard
    assert np.array_equal(encode(decode(codes)), codes)


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.mulaw_encode, g711.mulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_encoding_is_monotonic_and_close(encode, decode) -> None:
    back = decode(encode(ALL_INT16)).astype(np.int32)
    assert np.all(np.diff(back) >= 0)
    error = np.abs(back - ALL_INT16)
    # Quantization steps double per segment: at 16 bits the error is at most half the
    # top segment's step (512) plus μ-law's clipping above 32124 (644 at -32768); below
    # 256 in magnitude (the two lowest segments, steps of 8 and 16) within one step.
    assert error.max() <= 644
    small = np.abs(ALL_INT16.astype(np.int32)) < 256
    assert error[small].max() <= 16


def test_decode_accepts_bytes_and_arrays() -> None:
    assert np.array_equal(g711.mulaw_decode(bytes(range(256))), g711.MULAW_TO_LINEAR)
    assert np.array_equal(g711.alaw_decode(ALL_CODES), g711.ALAW_TO_LINEAR)


def test_encode_refuses_other_dtypes() -> None:
    with pytest.raises(TypeError, match="int16"):
        g711.mulaw_encode(np.zeros(4, dtype=np.float32))


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.MULAW_TO_LINEAR[0] = 1


def _audioop():
    # audioop is CPython's C implementation of the same reference algorithm. It is
    # deprecated (PEP 594) and gone in Python 3.13; it is used only here, as a
    # reference, and the comparison is skipped where it no longer exists.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ModuleNotFoundError:
            pytest.skip("audioop (reference implementation) is not in this Python")


def test_matches_audioop_on_every_input() -> None:
    audioop = _audioop()
    pcm = ALL_INT16.tobytes()
    codes = bytes(range(256))
    assert g711.mulaw_encode(ALL_INT16).tobytes() == audioop.lin2ulaw(pcm, 2)
    assert g711.alaw_encode(ALL_INT16).tobytes() == audioop.lin2alaw(pcm, 2)
    assert g711.mulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert g711.alaw_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)
