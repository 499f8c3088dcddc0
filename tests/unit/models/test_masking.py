"""SpecAugment masks: bands and stretches set to the window's mean, nothing else touched."""

from __future__ import annotations

import numpy as np

from models.masking import MaskConfig, mask_windows


def _windows(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).normal(-4.0, 2.0, (n, 64, 97, 1)).astype(np.float32)


def test_no_masks_by_default_and_the_input_is_never_changed() -> None:
    x = _windows()
    before = x.copy()
    assert not MaskConfig().active
    np.testing.assert_array_equal(mask_windows(x, np.random.default_rng(1), MaskConfig()), x)
    mask_windows(x, np.random.default_rng(1), MaskConfig(freq_masks=2, time_masks=2))
    np.testing.assert_array_equal(x, before)


def test_a_frequency_mask_fills_whole_bands_with_the_window_mean() -> None:
    x = _windows()
    out = mask_windows(x, np.random.default_rng(2), MaskConfig(freq_masks=1, freq_width=8))
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(len(x)):
        changed = np.flatnonzero((out[i] != x[i]).any(axis=(1, 2)))
        assert changed.size <= 8
        if changed.size:
            assert changed[-1] - changed[0] + 1 == changed.size  # one contiguous band
            np.testing.assert_allclose(out[i, changed], x[i].mean(), rtol=1e-6)
    assert any((out[i] != x[i]).any() for i in range(len(x)))


def test_a_time_mask_fills_whole_frames_and_prob_zero_masks_nothing() -> None:
    x = _windows()
    out = mask_windows(x, np.random.default_rng(3), MaskConfig(time_masks=1, time_width=10))
    for i in range(len(x)):
        changed = np.flatnonzero((out[i] != x[i]).any(axis=(0, 2)))
        assert changed.size <= 10
        if changed.size:
            np.testing.assert_allclose(out[i][:, changed], x[i].mean(), rtol=1e-6)
    never = MaskConfig(freq_masks=3, time_masks=3, prob=0.0)
    assert not never.active
    np.testing.assert_array_equal(mask_windows(x, np.random.default_rng(4), never), x)
