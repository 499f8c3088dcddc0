"""Features of a whole clip: what training computes, and the reference for streaming.

Everything goes through :mod:`stream.features.kernels`, the same kernel the
streaming ``FeatureBank`` uses, so a clip's windows offline and live are
bit-identical. The numbers match librosa's (``melspectrogram(center=False)`` →
``power_to_db(top_db=None)`` or ``log(S + log_offset)`` → ``mfcc(norm="ortho")``)
to float32 rounding; ``tests/unit/stream/features`` states the tolerance.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from stream.errors import AudioError
from stream.features.kernels import kernel_for
from stream.features.spec import FeatureSpec
from stream.features.windows import Window, cut_windows, stack_windows

__all__ = ["features", "frame_signal", "logmel", "mfcc", "window_stack", "windows"]


def frame_signal(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Read-only view ``[shape=(t, n_fft)]`` of the complete STFT frames of ``y``.

    Frame ``i`` is ``y[i*hop_length : i*hop_length + n_fft]``; trailing samples that
    do not fill a frame are left out (as librosa with ``center=False``).
    """
    n_frames = 0 if len(y) < spec.n_fft else 1 + (len(y) - spec.n_fft) // spec.hop_length
    step = y.strides[0]
    return as_strided(
        y, shape=(n_frames, spec.n_fft), strides=(spec.hop_length * step, step), writeable=False
    )


def features(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features of a mono clip at ``spec.sr``.

    Parameters
    ----------
    y: float32 ``[shape=(n,)]`` samples at ``spec.sr`` (other float dtypes are cast).
    spec: the feature definition; ``spec.kind`` picks log-mel or MFCC.

    Returns
    -------
    float32 ``[shape=(n_features, t)]``, ``t = 1 + (n - n_fft) // hop_length`` (0 when
    ``n < n_fft``).
    """
    y = _validated(y)
    n_frames = 0 if len(y) < spec.n_fft else 1 + (len(y) - spec.n_fft) // spec.hop_length
    starts = np.arange(n_frames) * spec.hop_length
    return np.ascontiguousarray(kernel_for(spec).frames_at(y, starts).T)


def logmel(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Log-mel ``[shape=(n_mels, t)]`` of ``y`` whatever ``spec.kind`` says."""
    return features(y, _with_kind(spec, "logmel"))


def mfcc(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """MFCC ``[shape=(n_mfcc, t)]`` of ``y`` whatever ``spec.kind`` says."""
    return features(y, _with_kind(spec, "mfcc"))


def windows(
    feats: np.ndarray, spec: FeatureSpec, *, stream_id: str = "", final: bool = True
) -> list[Window]:
    """Cut a clip's features ``[n_features, t]`` into model windows.

    ``final=True`` treats the clip as a whole stream: the trailing partial window is
    padded or dropped per ``spec.partial_window`` (see :mod:`stream.features.windows`).
    """
    if feats.ndim != 2 or feats.shape[0] != spec.n_features:
        raise ValueError(
            f"features of shape {feats.shape} do not match spec.n_features={spec.n_features}"
        )
    return cut_windows(feats, spec, kernel_for(spec).silence, stream_id=stream_id, final=final)


def window_stack(
    feats: np.ndarray, spec: FeatureSpec, *, final: bool = True
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Array form of :func:`windows`: model input ``[n, n_features, frames, 1]`` and spans."""
    cut = windows(feats, spec, final=final)
    return stack_windows(cut, spec), [(w.start_sample, w.end_sample) for w in cut]


def _validated(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise AudioError("bad_shape", f"expected mono 1-D samples, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise AudioError("bad_dtype", f"expected float samples, got dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.isfinite(y).all():
        raise AudioError("non_finite", f"{int((~np.isfinite(y)).sum())} samples are NaN or Inf")
    return y


def _with_kind(spec: FeatureSpec, kind: str) -> FeatureSpec:
    import dataclasses

    return spec if spec.kind == kind else dataclasses.replace(spec, kind=kind)  # type: ignore[arg-type]
