from __future__ import annotations

import numpy as np

from stream.features.spec import FeatureSpec
from stream.speakers.embedder import clip_features, clip_windows, l2_normalize

SPEC = FeatureSpec(n_mels=40, fmin=60.0, fmax=4000.0, window_seconds=1.0, hop_seconds=0.5)


def test_windows_equal_features_of_their_own_samples() -> None:
    """A window's features depend only on its samples (what the stream computes)."""
    rng = np.random.default_rng(0)
    y = (0.1 * rng.normal(size=int(4.3 * SPEC.sr))).astype(np.float32)
    cut = clip_windows(y, SPEC)
    assert cut.features.shape[1:] == SPEC.input_shape
    assert cut.features.shape[0] == len(cut.spans) == len(cut.speech) == 7
    for window, (start, end) in zip(cut.features, cut.spans, strict=True):
        alone = clip_features(y[start:end], SPEC)
        np.testing.assert_allclose(window[..., 0], alone, atol=1e-4)


def test_short_and_silent_clips() -> None:
    assert clip_windows(np.zeros(100, np.float32), SPEC).features.shape == (0, *SPEC.input_shape)
    silent = clip_windows(np.zeros(3 * SPEC.sr, np.float32), SPEC)
    assert silent.features.shape[0] == 5 and not silent.speech.any()


def test_l2_normalize_keeps_zero_rows() -> None:
    x = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]])
