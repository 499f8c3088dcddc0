"""The shared kernel: a frame's features must not depend on the batch it is computed in.

This is what makes streaming bit-identical to offline: the FeatureBank computes a
frame inside whatever batch a push produced, the offline path inside the whole clip.
BLAS rounds differently with the number of rows and columns of a product, which the
kernel neutralises by padding (``ROW_BLOCK``, ``COL_BLOCK``); odd sizes here
(``n_mels=23``, ``n_mfcc=7``) exercise the padding.
"""

from __future__ import annotations

import numpy as np
import pytest

from stream.features.kernels import BATCH_ROWS, kernel_for
from stream.features.spec import FeatureSpec

SPECS = [
    FeatureSpec(),
    FeatureSpec(kind="mfcc"),
    FeatureSpec(sr=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40),
    FeatureSpec(n_mels=23, kind="mfcc", n_mfcc=7, htk=True, norm=None, power=1.0),
    FeatureSpec(n_mels=128, n_fft=1024, win_length=1024, hop_length=256, log="log_offset"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}-{s.n_mels}")
def test_rows_do_not_depend_on_their_batch(spec: FeatureSpec) -> None:
    rng = np.random.default_rng(spec.n_mels)
    y = (0.1 * rng.standard_normal(spec.hop_length * 3000)).astype(np.float32)
    kernel = kernel_for(spec)
    starts = np.arange(0, len(y) - spec.n_fft, spec.hop_length)
    whole = kernel.frames_at(y, starts)
    sizes = [1, 2, 7, 63, 64, 65, 200, BATCH_ROWS - 1, BATCH_ROWS + 5]
    for n in sizes:
        first = int(rng.integers(0, len(starts) - n))
        part = kernel.frames_at(y, starts[first : first + n])
        np.testing.assert_array_equal(part, whole[first : first + n], err_msg=f"batch of {n}")


def test_kernel_call_on_frames_equals_frames_at() -> None:
    spec = FeatureSpec()
    y = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    kernel = kernel_for(spec)
    starts = np.arange(0, len(y) - spec.n_fft, spec.hop_length)
    frames = np.stack([y[s : s + spec.n_fft] for s in starts])
    np.testing.assert_array_equal(kernel(frames), kernel.frames_at(y, starts))
    assert kernel_for(FeatureSpec()) is kernel  # cached by spec_hash
