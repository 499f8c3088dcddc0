"""payload_to_float32 / float32_to_payload: scale, downmix, validation."""

from __future__ import annotations

import numpy as np
import pytest

from stream.audio import g711
from stream.audio.convert import float32_to_int16, float32_to_payload, payload_to_float32
from stream.errors import AudioError
from stream.wire import Encoding

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_s16_round_trip_is_bit_exact() -> None:
    samples = payload_to_float32(ALL_INT16.astype("<i2").tobytes(), Encoding.PCM_S16LE, 1)
    assert samples.dtype == np.float32
    assert samples.min() == -1.0 and samples.max() == 32767 / 32768
    assert float32_to_payload(samples, "pcm_s16le") == ALL_INT16.astype("<i2").tobytes()


def test_f32_round_trip_and_clipping() -> None:
    x = np.array([-2.0, -1.0, -0.25, 0.0, 0.5, 1.0, 3.0], dtype=np.float32)
    payload = x.astype("<f4").tobytes()
    y = payload_to_float32(payload, Encoding.PCM_F32LE, 1)
    assert np.array_equal(y, np.clip(x, -1, 1))
    assert payload_to_float32(float32_to_payload(y, "pcm_f32le"), "pcm_f32le", 1).tolist() == (
        y.tolist()
    )


@pytest.mark.parametrize(
    ("encoding", "table"),
    [(Encoding.MULAW, g711.MULAW_TO_LINEAR), (Encoding.ALAW, g711.ALAW_TO_LINEAR)],
)
def test_g711_decodes_through_the_table(encoding: Encoding, table: np.ndarray) -> None:
    y = payload_to_float32(bytes(range(256)), encoding, 1)
    assert np.array_equal(y, table.astype(np.float32) / 32768)
    assert float32_to_payload(y[y != 0], encoding) == bytes(c for c in range(256) if table[c] != 0)


def test_downmix_is_the_mean() -> None:
    left = np.array([1000, -2000, 300], dtype=np.int16)
    right = np.array([3000, 2000, -301], dtype=np.int16)
    payload = np.stack([left, right], axis=1).astype("<i2").tobytes()
    y = payload_to_float32(payload, Encoding.PCM_S16LE, 2)
    np.testing.assert_allclose(y, (left + right.astype(np.float64)) / 2 / 32768, atol=1e-7)
    assert y.dtype == np.float32


def test_empty_payload_is_empty() -> None:
    for encoding in Encoding:
        assert payload_to_float32(b"", encoding, 2).shape == (0,)


@pytest.mark.parametrize(
    ("payload", "encoding", "channels", "reason"),
    [
        (b"\x00" * 3, "pcm_s16le", 1, "bad_payload_length"),
        (b"\x00" * 4, "pcm_f32le", 2, "bad_payload_length"),
        (np.array([0, np.nan], "<f4").tobytes(), "pcm_f32le", 1, "non_finite"),
        (np.array([np.inf, 0], "<f4").tobytes(), "pcm_f32le", 2, "non_finite"),
        (b"\x00", "opus", 1, "unknown_encoding"),
        (b"\x00", "mulaw", 0, "bad_channels"),
    ],
)
def test_errors(payload: bytes, encoding: str, channels: int, reason: str) -> None:
    with pytest.raises(AudioError) as info:
        payload_to_float32(payload, encoding, channels)
    assert info.value.reason == reason


def test_encoding_nan_is_refused() -> None:
    with pytest.raises(AudioError) as info:
        float32_to_payload(np.array([0.0, np.nan], dtype=np.float32), Encoding.MULAW)
    assert info.value.reason == "non_finite"


def test_int16_conversion_clips_and_rounds() -> None:
    x = np.array([-1.5, -1.0, 0.49 / 32768, 0.51 / 32768, 1.0, 7.0], dtype=np.float32)
    assert float32_to_int16(x).tolist() == [-32768, -32768, 0, 1, 32767, 32767]
