"""Model windows: fixed-size slices of the feature stream, tagged with where they came from.

A model window is ``spec.frames_per_window`` consecutive STFT frames; window ``k``
starts at frame ``k * spec.hop_frames``. Because frame ``i`` covers stream samples
``[i*hop_length, i*hop_length + n_fft)`` (librosa's ``center=False`` framing), window
``k`` covers ``spec.window_span(k)`` and its features are exactly what
``librosa.feature.melspectrogram`` computes on that slice of the stream.

End of stream (``final=True``): frames not covered by any full window form a
*partial* window. With ``spec.partial_window == "pad"`` it is emitted with the
missing frames filled by the features of silence (what an all-zero frame gives:
``10*log10(amin/ref)`` or ``log(log_offset)``), marked ``padded=True`` and with
``end_sample`` clamped to the end of the last real frame; with ``"drop"`` it is not
emitted. A stream with fewer than ``frames_per_window`` frames is one partial window.
A stream with no complete frame (fewer than ``n_fft`` samples) yields no window, and
samples after the last complete frame never reach a window.

The index arithmetic lives here so the offline path (:func:`cut_windows`) and the
streaming ``FeatureBank`` agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.features.spec import FeatureSpec

__all__ = ["Window", "cut_windows", "full_windows", "partial_window_start", "stack_windows"]


@dataclass(frozen=True, slots=True)
class Window:
    """One model input, with the stream offsets it covers.

    Attributes
    ----------
    stream_id: the stream the window belongs to (``""`` offline).
    index: window number in the stream; window ``k`` starts at frame ``k*hop_frames``.
    start_sample, end_sample: stream samples ``[start, end)`` the features depend on
        (``spec.window_span(index)``; a padded window ends at its last real frame).
    features: float32 ``[shape=(n_features, frames_per_window)]``.
    padded: ``True`` when trailing frames are silence added at end of stream.
    """

    stream_id: str
    index: int
    start_sample: int
    end_sample: int
    features: np.ndarray
    padded: bool = False

    def start_s(self, sr: int) -> float:
        """Start of the window in seconds from the stream start, at rate ``sr``."""
        return self.start_sample / sr

    def end_s(self, sr: int) -> float:
        """End of the window in seconds from the stream start, at rate ``sr``."""
        return self.end_sample / sr


def full_windows(n_frames: int, spec: FeatureSpec) -> int:
    """Number of complete windows in a stream of ``n_frames`` frames."""
    if n_frames < spec.frames_per_window:
        return 0
    return 1 + (n_frames - spec.frames_per_window) // spec.hop_frames


def partial_window_start(n_frames: int, spec: FeatureSpec) -> int | None:
    """Index of the partial window at end of stream, or ``None`` if every frame is covered.

    ``None`` when the next window would start at or after the last frame: a window made
    only of padding says nothing about the stream (this covers ``n_frames == 0`` and,
    with ``hop_seconds > window_seconds``, frames that lie between two windows).
    """
    n_full = full_windows(n_frames, spec)
    covered = 0 if n_full == 0 else (n_full - 1) * spec.hop_frames + spec.frames_per_window
    next_start = n_full * spec.hop_frames  # beyond ``covered`` when hop_frames > frames
    if n_frames <= max(covered, next_start):
        return None
    return n_full


def padded_span(index: int, n_frames: int, spec: FeatureSpec) -> tuple[int, int]:
    """Sample span of a padded window: nominal start, end of the stream's last real frame."""
    start, _ = spec.window_span(index)
    end = (n_frames - 1) * spec.hop_length + spec.n_fft
    return start, end


def cut_windows(
    feats: np.ndarray, spec: FeatureSpec, silence: np.ndarray, *, stream_id: str, final: bool
) -> list[Window]:
    """Cut ``feats`` ``[n_features, t]`` (frame 0 = stream frame 0) into windows.

    ``silence`` is the ``[n_features]`` feature column of an all-zero frame.
    """
    n_frames = feats.shape[1]
    fpw, hop = spec.frames_per_window, spec.hop_frames
    out = []
    for k in range(full_windows(n_frames, spec)):
        block = np.ascontiguousarray(feats[:, k * hop : k * hop + fpw])
        start, end = spec.window_span(k)
        out.append(Window(stream_id, k, start, end, block, False))
    k_part = partial_window_start(n_frames, spec) if final else None
    if k_part is not None and spec.partial_window == "pad":
        block = np.empty((feats.shape[0], fpw), dtype=np.float32)
        block[:] = silence[:, None]
        real = feats[:, k_part * hop :]
        block[:, : real.shape[1]] = real
        start, end = padded_span(k_part, n_frames, spec)
        out.append(Window(stream_id, k_part, start, end, block, True))
    return out


def stack_windows(windows: list[Window], spec: FeatureSpec) -> np.ndarray:
    """Stack windows into the model input: float32 ``[n, n_features, frames_per_window, 1]``."""
    x = np.empty((len(windows), *spec.input_shape), dtype=np.float32)
    for i, w in enumerate(windows):
        x[i, :, :, 0] = w.features
    return x
