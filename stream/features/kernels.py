"""The one frame → feature kernel, used by the offline path and the streaming FeatureBank.

Both paths hand the kernel a signal and the start offsets of the STFT frames to
compute (frame ``i`` = stream samples ``[i*hop_length, i*hop_length + n_fft)``,
librosa's ``center=False`` framing) and get back ``[m, n_features]``. Because the
same code computes every frame, and a frame's numbers do not depend on the batch it
is computed in (see ``ROW_BLOCK``), streaming and offline features are bit-identical
whatever the chunking.

The constants (window padded to ``n_fft`` as librosa's ``stft`` does, the mel basis
from ``librosa.filters.mel``, the DCT matrix) are built once per spec and cached by
``spec_hash``; librosa is imported only then, so ``import stream.features`` stays light.

Measured choices (``benchmarks/bench_features.py``, 2-core EPYC): ``scipy.fft.rfft``
on float32 is about 3x faster than ``numpy.fft.rfft`` (numpy 2.4) and keeps float32;
the mel product runs per group of adjacent bands on only the FFT bins those bands
touch (about 4x fewer flops than the dense product, 2.5x faster).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from stream.features.spec import FeatureSpec

__all__ = [
    "BATCH_ROWS",
    "COL_BLOCK",
    "ROW_BLOCK",
    "FeatureKernel",
    "MelBand",
    "frame_view",
    "kernel_for",
]

# BLAS gemm rounds a row differently depending on which micro-kernel computes it,
# and that depends on the number of rows; padding every batch to a multiple of this
# makes a frame's features independent of the batch it is computed in.
ROW_BLOCK = 64
# Likewise gemm rounds differently when the number of output columns leaves a
# remainder for the micro-kernel: every product writes a multiple of this many columns
# (mel bands go in groups of exactly this size; the DCT matrix is zero-padded).
COL_BLOCK = 16
# Frames per pass: the gathered frames and their temporaries (~2 MB) stay in cache
# and are recycled by the allocator instead of being page-faulted in afresh.
BATCH_ROWS = 1024


@dataclass(frozen=True, slots=True)
class MelBand:
    """``COL_BLOCK`` adjacent mel bands from ``first`` and the FFT bins ``[lo, hi)`` they weigh.

    ``weights`` is float32 ``[hi - lo, COL_BLOCK]``; columns past ``n_mels`` are zero.
    """

    first: int
    lo: int
    hi: int
    weights: np.ndarray


@dataclass(frozen=True, slots=True)
class FeatureKernel:
    """Precomputed constants of one spec and the batched frame → feature transform.

    Attributes
    ----------
    spec: the spec these constants belong to.
    window: float32 ``[n_fft]``, ``get_window(window, win_length)`` centred in ``n_fft``.
    mel_t: float32 ``[n_fft//2 + 1, n_mels]``, the transposed mel basis (frames are rows).
    bands: ``mel_t`` split into groups of adjacent bands with their nonzero bin range.
    dct_t: float32 ``[n_mels, n_mfcc]`` orthonormal DCT, zero-padded to a multiple of
        ``COL_BLOCK`` columns (``None`` for log-mel).
    silence: float32 ``[n_features]``, the features of an all-zero frame (end padding).
    """

    spec: FeatureSpec
    window: np.ndarray
    mel_t: np.ndarray
    bands: tuple[MelBand, ...]
    dct_t: np.ndarray | None
    silence: np.ndarray

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Features of raw frames: float32 ``[m, n_fft]`` → float32 ``[m, n_features]``."""
        flat = np.ascontiguousarray(frames, dtype=np.float32).reshape(-1)
        return self.frames_at(flat, np.arange(frames.shape[0]) * self.spec.n_fft)

    def frames_at(self, signal: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Features of the frames ``signal[s : s + n_fft]`` for each ``s`` in ``starts``.

        Parameters
        ----------
        signal: float32 ``[shape=(n,)]``.
        starts: integer ``[shape=(m,)]`` frame start offsets, each ``<= n - n_fft``.

        Returns
        -------
        float32 ``[shape=(m, n_features)]``.
        """
        out = np.empty((starts.shape[0], self.spec.n_features), dtype=np.float32)
        if starts.shape[0] == 0:
            return out
        framed = frame_view(signal, self.spec.n_fft)
        for first in range(0, starts.shape[0], BATCH_ROWS):
            block = starts[first : first + BATCH_ROWS]
            out[first : first + block.shape[0]] = self._block(framed, block)
        return out

    def _block(self, framed: np.ndarray, starts: np.ndarray) -> np.ndarray:
        n = starts.shape[0]
        windowed = np.empty((n + (-n) % ROW_BLOCK, self.spec.n_fft), dtype=np.float32)
        np.multiply(framed[starts], self.window, out=windowed[:n])
        windowed[n:] = 0.0
        return self._spectral(windowed)[:n]

    def _spectral(self, windowed: np.ndarray) -> np.ndarray:
        spectrum = scipy.fft.rfft(windowed, axis=-1, overwrite_x=True)
        power = _magnitude(spectrum, self.spec.power)
        padded = np.empty((windowed.shape[0], len(self.bands) * COL_BLOCK), dtype=np.float32)
        for band in self.bands:
            out = padded[:, band.first : band.first + COL_BLOCK]
            np.matmul(power[:, band.lo : band.hi], band.weights, out=out)
        logmel = _log(padded[:, : self.spec.n_mels], self.spec)
        if self.dct_t is None:
            return logmel
        mfcc: np.ndarray = logmel @ self.dct_t
        return mfcc[:, : self.spec.n_mfcc]


def frame_view(signal: np.ndarray, n_fft: int) -> np.ndarray:
    """``sliding_window_view(signal, n_fft)``: read-only ``[shape=(n - n_fft + 1, n_fft)]``.

    Built directly for a contiguous float32 ``signal`` (what the kernel and the bank
    pass): numpy's helper spends ~9 µs a call checking arguments, 0.4 µs here, and the
    bank makes two views per push.
    """
    if signal.ndim != 1 or not signal.flags.c_contiguous or signal.shape[0] < n_fft:
        return sliding_window_view(signal, n_fft)
    step = signal.itemsize
    shape = (signal.shape[0] - n_fft + 1, n_fft)
    view = np.ndarray(shape, signal.dtype, signal, 0, (step, step))
    view.flags.writeable = False
    return view


def _magnitude(spectrum: np.ndarray, power: float) -> np.ndarray:
    """``|X|**power`` in float32, as librosa computes it (``np.abs`` is a fast SIMD hypot)."""
    mag: np.ndarray = np.abs(spectrum)
    if power == 2.0:
        np.square(mag, out=mag)
    elif power != 1.0:
        np.power(mag, np.float32(power), out=mag)
    return mag


def _log(mel: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The pointwise log rule (``power_to_db`` with ``top_db=None``, or ``log(S + offset)``;
    ``"none"`` keeps the mels)."""
    if spec.log == "none":
        return mel
    if spec.log == "log_offset":
        mel += np.float32(spec.log_offset)
        np.log(mel, out=mel)
        return mel
    np.maximum(mel, np.float32(spec.amin), out=mel)
    np.log10(mel, out=mel)
    mel *= np.float32(10.0)
    mel -= np.float32(10.0 * np.log10(max(spec.amin, spec.ref)))
    return mel


def kernel_for(spec: FeatureSpec) -> FeatureKernel:
    """The cached kernel of ``spec`` (keyed by ``spec_hash``)."""
    return _kernel_by_hash(spec.spec_hash, spec)


@functools.lru_cache(maxsize=32)
def _kernel_by_hash(spec_hash: str, spec: FeatureSpec) -> FeatureKernel:
    import librosa  # heavy (numba); only needed to build constants

    window = librosa.filters.get_window(spec.window, spec.win_length, fftbins=True)
    window = librosa.util.pad_center(window, size=spec.n_fft).astype(np.float32)
    mel = librosa.filters.mel(
        sr=spec.sr,
        n_fft=spec.n_fft,
        n_mels=spec.n_mels,
        fmin=spec.fmin,
        fmax=spec.fmax,
        htk=spec.htk,
        norm=spec.norm,  # type: ignore[arg-type]
        dtype=np.float32,
    )
    mel_t = np.ascontiguousarray(mel.T)
    dct_t = _dct_matrix(spec) if spec.kind == "mfcc" else None
    kernel = FeatureKernel(spec, window, mel_t, _mel_bands(mel_t), dct_t, np.empty(0))
    silence = kernel(np.zeros((1, spec.n_fft), dtype=np.float32))[0]
    return FeatureKernel(spec, window, mel_t, kernel.bands, dct_t, silence)


def _mel_bands(mel_t: np.ndarray) -> tuple[MelBand, ...]:
    """Groups of ``COL_BLOCK`` bands, each with the bin range it touches (4x fewer flops)."""
    n_mels = mel_t.shape[1]
    out = []
    for first in range(0, n_mels, COL_BLOCK):
        cols = mel_t[:, first : first + COL_BLOCK]
        bins = np.flatnonzero(cols.any(axis=1))
        lo, hi = (int(bins[0]), int(bins[-1]) + 1) if bins.size else (0, 1)
        weights = np.zeros((hi - lo, COL_BLOCK), dtype=np.float32)
        weights[:, : cols.shape[1]] = cols[lo:hi]
        out.append(MelBand(first, lo, hi, weights))
    return tuple(out)


def _dct_matrix(spec: FeatureSpec) -> np.ndarray:
    """``[n_mels, n_mfcc]``: the DCT librosa's ``mfcc`` applies, as a matrix (rows are mels)."""
    import scipy.fftpack

    basis = scipy.fftpack.dct(np.eye(spec.n_mels), type=spec.dct_type, norm="ortho", axis=0)
    padded = np.zeros((spec.n_mels, spec.n_mfcc + (-spec.n_mfcc) % COL_BLOCK), dtype=np.float32)
    padded[:, : spec.n_mfcc] = basis[: spec.n_mfcc].T
    return padded
