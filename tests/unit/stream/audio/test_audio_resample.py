"""StreamResampler: streaming output over any chunking equals one-shot soxr."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from stream.audio import StreamResampler
from stream.errors import AudioError

# Measured: identical (max abs difference 0.0) for all rates and chunkings below with
# soxr 1.1 HQ; the tolerance leaves room for float32 rounding in other soxr builds.
TOLERANCE = 1e-6


@pytest.mark.parametrize("in_rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_streaming_equals_one_shot(in_rate: int) -> None:
    rng = np.random.default_rng(in_rate)
    x = (0.3 * rng.standard_normal(in_rate)).astype(np.float32)  # 1 s of noise
    reference = soxr.resample(x, in_rate, 16000, quality="HQ")
    for trial in range(6):
        cuts = np.sort(rng.integers(0, len(x), size=rng.integers(0, 30)))
        chunks = np.split(x, cuts)  # some chunks may be empty
        resampler = StreamResampler(in_rate, 16000)
        out = [resampler.process(c) for c in chunks[:-1]]
        out.append(resampler.process(chunks[-1], last=True))
        y = np.concatenate(out)
        assert y.dtype == np.float32
        assert y.shape == reference.shape, (in_rate, trial)
        np.testing.assert_allclose(y, reference, rtol=0, atol=TOLERANCE)


def test_flush_with_an_empty_last_chunk() -> None:
    x = np.sin(np.arange(8000, dtype=np.float32) / 10)
    resampler = StreamResampler(8000, 16000)
    y = np.concatenate([resampler.process(x), resampler.process(np.zeros(0), last=True)])
    np.testing.assert_allclose(y, soxr.resample(x, 8000, 16000), atol=TOLERANCE)


def test_equal_rates_pass_through() -> None:
    resampler = StreamResampler(16000, 16000)
    assert resampler.passthrough
    x = np.arange(10, dtype=np.float64)
    y = resampler.process(x)
    assert y.dtype == np.float32 and np.array_equal(y, x)


def test_no_use_after_last_and_mono_only() -> None:
    resampler = StreamResampler(8000, 16000)
    with pytest.raises(AudioError):
        resampler.process(np.zeros((4, 2), dtype=np.float32))
    resampler.process(np.zeros(80, dtype=np.float32), last=True)
    with pytest.raises(AudioError) as info:
        resampler.process(np.zeros(80, dtype=np.float32))
    assert info.value.reason == "after_last"


def test_rates_must_be_positive() -> None:
    with pytest.raises(AudioError) as info:
        StreamResampler(0, 16000)
    assert info.value.reason == "bad_rate"
