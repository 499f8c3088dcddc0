"""Resampling, streaming and one-shot, with the same numbers both ways.

Two methods, picked by the rates:

* **Integer upsampling** (``out_rate = L * in_rate``: 8 kHz telephony → 16 kHz) uses a
  *low-delay* polyphase FIR (:class:`_Upsampler`): a linear-phase Kaiser-windowed
  sinc, flat to ``LOW_DELAY_PASSBAND * in_rate`` (3.6 kHz at 8 kHz, like soxr HQ's
  91 %), about ``LOW_DELAY_ATTENUATION_DB`` down from ``in_rate / 2`` (4 kHz) on,
  so images of the narrow band do not leak into the upper mel bands. Output sample
  ``n`` depends on input samples up to ``n // L + lookahead`` and is emitted by the
  chunk that brings that sample: ``lookahead`` is 64 input samples (8 ms at 8 kHz),
  so a window is emitted as soon as its last sample can be known.
* **Everything else** (11.025k, 22.05k, 44.1k, 48k → 16k ...) uses soxr
  (``soxr.ResampleStream`` / ``soxr.resample``, ``HQ``). Its DFT stage processes in
  blocks, so a stream's output lags its input by up to ~100 ms; offline and streaming
  agree to float32 rounding (measured: identical).

Why not soxr for 8 kHz: ``soxr.ResampleStream`` holds back ~1,500 output samples
(~95 ms) at 8k → 16k whatever the chunk size, so with 100 ms frames every window of an
8 kHz call waited for the *next* frame (issue 12: p50 145 ms vs 47 ms for 16 kHz PCM).

The worker's pipeline resamples all its 8 kHz streams at once at each drain
(:func:`process_many`: one matrix product for every stream's chunk, the same rows each
stream's own ``process`` multiplies), since a 20 ms RTP frame alone costs more in numpy
calls than in arithmetic.

``resample`` (files, training, ``tympan classify``) and :class:`StreamResampler` (the
worker) run the same filter: for any chunking, the streamed output equals the
one-shot output to float32 rounding (a matrix product's summation order depends on
where a block starts; ``tests/unit/stream/audio`` states the tolerance).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

from stream.errors import AudioError
from stream.types import Float32

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]

LOW_DELAY_PASSBAND = 0.45
"""Flat (±0.01 dB) up to this fraction of the input rate: 3.6 kHz for 8 kHz calls."""
LOW_DELAY_ATTENUATION_DB = 100.0
"""Kaiser design target for the stop band, from half the input rate on (measured: at
least 98 dB below the pass band)."""
_BLOCK = 16  # input samples per row of the block-Toeplitz product (fastest measured)


class StreamResampler:
    """Resample one mono float32 stream chunk by chunk, keeping filter state.

    Parameters
    ----------
    in_rate, out_rate: sample rates in Hz.
    quality: soxr quality recipe for non-integer ratios (``"HQ"`` as
        ``soxr.resample``'s default); integer upsampling always uses the low-delay
        filter.

    Notes
    -----
    Output lags input: the first chunks may return fewer samples than
    ``len(chunk) * out_rate / in_rate``; ``process(..., last=True)`` flushes the
    rest, so the total matches :func:`resample`. When the rates are equal,
    ``process`` returns its input (as float32) and keeps no state.
    """

    __slots__ = ("_closed", "_stream", "_up", "in_rate", "out_rate", "quality")

    def __init__(self, in_rate: int, out_rate: int, *, quality: Quality = "HQ") -> None:
        _check_rates(in_rate, out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._closed = False
        self._up = _Upsampler(out_rate // in_rate) if _low_delay(in_rate, out_rate) else None
        self._stream = (
            None
            if in_rate == out_rate or self._up is not None
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    @property
    def passthrough(self) -> bool:
        """Whether the rates are equal (no filtering, no delay)."""
        return self._stream is None and self._up is None

    @property
    def lookahead(self) -> int | None:
        """Input samples an output sample waits for beyond its own time.

        0 when passing through, the filter's half-length for integer upsampling,
        ``None`` for soxr (block processing: it varies with the chunking).
        """
        if self._up is not None:
            return self._up.lookahead
        return 0 if self._stream is None else None

    def process(self, chunk: npt.ArrayLike, *, last: bool = False) -> Float32:
        """Resample the next ``chunk`` ``[shape=(n,)]`` of the stream.

        Parameters
        ----------
        chunk: mono samples; converted to float32 if needed.
        last: ``True`` on the stream's final chunk (possibly empty) to flush the
            filter; the resampler cannot be used afterwards.

        Returns
        -------
        np.ndarray [shape=(m,), dtype=float32]
        """
        if self._closed:
            raise AudioError("after_last", "StreamResampler.process() called after the last chunk")
        x = np.ascontiguousarray(chunk, dtype=np.float32)
        if x.ndim != 1:
            raise AudioError("bad_shape", f"expected mono samples of shape (n,), got {x.shape}")
        self._closed = last
        if self._up is not None:
            return self._up.process(x, last=last)
        if self._stream is None:
            return x
        out: Float32 = self._stream.resample_chunk(x, last=last)
        return out

    def output_size(self, n: int, *, last: bool = False) -> int:
        """Samples :meth:`process` would return now for a chunk of ``n`` samples.

        Lets a caller that queues chunks to resample later (:func:`process_many`) know
        their output length at once. Raises for soxr ratios, whose block processing
        makes it depend on more than the count.
        """
        if self._up is not None:
            return self._up.output_size(n, last=last)
        if self._stream is None:
            return n
        raise AudioError("no_output_size", f"{self.in_rate} → {self.out_rate} Hz is soxr's")


def process_many(
    resamplers: Sequence[StreamResampler], chunks: Sequence[Float32], *, last: Sequence[bool]
) -> list[Float32]:
    """``[r.process(c, last=l) for ...]`` of many streams, one matrix product per factor.

    A 20 ms frame of 8 kHz telephony is 160 samples: filtering it alone costs more in
    numpy calls than in multiplications. Here the chunks of all low-delay streams of a
    factor are laid side by side, each after its filter history, and filtered in one
    product; the rows are those each stream's own :meth:`StreamResampler.process` would
    multiply, so the numbers agree to float32 rounding (the product's blocking depends
    on the row count: measured at most 5e-7, within the tolerance above). No low-delay
    resampler changes state unless all of them succeed (the pipeline retries a failed
    batch stream by stream).

    Parameters
    ----------
    resamplers: one per chunk, distinct; ``chunks`` are mono samples ``[shape=(n,)]``.
    last: per chunk, as ``process``'s ``last``.
    """
    for r in resamplers:
        if r._closed:
            raise AudioError("after_last", "StreamResampler.process() called after the last chunk")
    by_factor: dict[int, list[int]] = {}
    for i, r in enumerate(resamplers):
        if r._up is not None:
            by_factor.setdefault(r._up.factor, []).append(i)
    outs: dict[int, Float32] = {}
    histories: list[tuple[_Upsampler, Float32]] = []
    for picked in by_factor.values():
        ups = [up for i in picked if (up := resamplers[i]._up) is not None]
        ys, hists = _apply_many(ups, [chunks[i] for i in picked], [last[i] for i in picked])
        outs.update(zip(picked, ys, strict=True))
        histories += zip(ups, hists, strict=True)
    done = [
        outs[i] if i in outs else r.process(chunks[i], last=last[i])
        for i, r in enumerate(resamplers)
    ]
    for up, hist in histories:  # all products done: now the state moves on
        up._hist = hist
    for r, is_last in zip(resamplers, last, strict=True):
        r._closed = r._closed or is_last
    return done


def resample(y: npt.ArrayLike, in_rate: int, out_rate: int, *, quality: Quality = "HQ") -> Float32:
    """Resample a whole signal: what :class:`StreamResampler` gives over any chunking.

    Parameters
    ----------
    y: float samples ``[shape=(n,)]`` or channels first ``[shape=(channels, n)]``.
    in_rate, out_rate: sample rates in Hz.
    quality: soxr recipe for non-integer ratios (see :class:`StreamResampler`).

    Returns
    -------
    np.ndarray [shape=(m,) or (channels, m), dtype=float32]
        ``m = n * out_rate // in_rate`` for integer upsampling, soxr's length otherwise.
    """
    _check_rates(in_rate, out_rate)
    x = np.asarray(y, dtype=np.float32)
    if x.ndim not in (1, 2):
        raise AudioError("bad_shape", f"expected (n,) or (channels, n) samples, got {x.shape}")
    if in_rate == out_rate:
        return np.ascontiguousarray(x)
    if _low_delay(in_rate, out_rate):
        rows = [
            _Upsampler(out_rate // in_rate).process(c, last=True)
            for c in x.reshape(-1, x.shape[-1])
        ]
        return np.stack(rows) if x.ndim == 2 else rows[0]
    out = soxr.resample(x.T, in_rate, out_rate, quality=quality).T
    return np.ascontiguousarray(out, dtype=np.float32)


class _Upsampler:
    """Polyphase upsampling by an integer ``factor`` with ``lookahead`` samples of delay.

    State: the last ``2 * lookahead`` input samples (fewer at the start), i.e. every
    input that an output not yet emitted still needs. Output base ``m`` (outputs
    ``factor*m .. factor*m + factor - 1``) is a dot product of the inputs
    ``m - lookahead .. m + lookahead`` with one column per phase; the stream starts and
    ends with (virtual) zeros, as one-shot filtering of the whole signal does.
    """

    __slots__ = ("_hist", "_toeplitz", "factor", "lookahead")

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self._toeplitz, self.lookahead = _polyphase(factor)
        self._hist = np.zeros(self.lookahead, dtype=np.float32)  # x[-K..-1]

    def output_size(self, n: int, *, last: bool) -> int:
        """Outputs that ``process`` of ``n`` inputs returns now (see the class notes)."""
        bases = self._hist.shape[0] + n + (self.lookahead if last else 0) - 2 * self.lookahead
        return max(bases, 0) * self.factor

    def process(self, x: Float32, *, last: bool) -> Float32:
        k = self.lookahead
        parts = [self._hist, x, np.zeros(k, dtype=np.float32)] if last else [self._hist, x]
        buf = np.concatenate(parts)
        n = buf.shape[0] - 2 * k  # output bases whose every input is known
        if n <= 0:
            self._hist = buf
            return np.zeros(0, dtype=np.float32)
        self._hist = buf[n:].copy()  # not a view: it would keep the whole chunk alive
        return _apply(buf, n, self._toeplitz, self.factor, k)


def _apply(buf: Float32, n: int, toeplitz: Float32, factor: int, k: int) -> Float32:
    """Outputs of bases ``0..n-1`` of ``buf`` (``buf[m : m + 2k + 1]`` feeds base ``m``).

    One matrix product over rows of ``_BLOCK`` bases: row ``r`` is
    ``buf[r*B : r*B + B + 2k]``, and the block-Toeplitz matrix places each base's taps.
    """
    rows = -(-n // _BLOCK)
    need = rows * _BLOCK + 2 * k
    if buf.shape[0] < need:
        buf = np.concatenate([buf, np.zeros(need - buf.shape[0], dtype=np.float32)])
    itemsize = buf.itemsize  # overlapping rows as a view (sliding_window_view costs ~10 µs)
    blocks = np.ndarray((rows, _BLOCK + 2 * k), np.float32, buf, 0, (_BLOCK * itemsize, itemsize))
    out: Float32 = (np.ascontiguousarray(blocks) @ toeplitz).reshape(-1)[: n * factor]
    return out


def _apply_many(
    ups: Sequence[_Upsampler], chunks: Sequence[Float32], last: Sequence[bool]
) -> tuple[list[Float32], list[Float32]]:
    """Outputs and next histories of upsamplers of one factor, in one matrix product.

    Each stream gets a slot starting at a multiple of ``_BLOCK``: its ``[history,
    chunk]``, then zeros (the ``k`` of a last chunk, and the padding ``_apply`` adds).
    A strided view over all slots holds every stream's rows, those its own ``_apply``
    would multiply; one gather takes them (leaving out the rows that straddle two
    slots) and one product filters them all.
    """
    k = ups[0].lookahead
    factor = ups[0].factor
    reach = -(-2 * k // _BLOCK) * _BLOCK  # what a slot's last row reads past its start
    parts: list[Float32] = []
    slots: list[int] = []  # first row of each slot
    counts: list[int] = []  # its rows with outputs kept
    places: list[tuple[int, int, int]] = []  # first output row, output bases, known inputs
    at = row = 0
    for up, x, is_last in zip(ups, chunks, last, strict=True):
        known = up._hist.shape[0] + x.shape[0] + (k if is_last else 0)
        n = max(known - 2 * k, 0)  # output bases whose every input is known
        rows = -(-n // _BLOCK)
        slot = rows * _BLOCK + reach
        parts += [up._hist, x, _zeros(slot - up._hist.shape[0] - x.shape[0])]
        slots.append(at // _BLOCK)
        counts.append(rows)
        places.append((row, n, known))
        at += slot
        row += rows
    buf = np.concatenate(parts, dtype=np.float32)
    itemsize = buf.itemsize
    view = np.ndarray(
        ((at - reach) // _BLOCK, _BLOCK + 2 * k), np.float32, buf, 0, (_BLOCK * itemsize, itemsize)
    )
    kept = np.asarray(counts)
    first = np.asarray(slots) - (np.cumsum(kept) - kept)  # slot row - output row, per stream
    blocks = view[np.repeat(first, kept) + np.arange(row)]
    flat = (blocks @ ups[0]._toeplitz).reshape(-1)
    width = _BLOCK * factor
    outs = [flat[r * width : r * width + n * factor] for r, n, _ in places]
    # copies, not views: a history would keep the whole batch alive
    starts = [s * _BLOCK for s in slots]
    hists = [buf[s + n : s + known].copy() for s, (_, n, known) in zip(starts, places, strict=True)]
    return outs, hists


_ZEROS = np.zeros(1024, dtype=np.float32)
_ZEROS.flags.writeable = False


def _zeros(n: int) -> Float32:
    """``n`` zeros; a slot's padding (under ``_BLOCK + 3 * lookahead``) is a shared view."""
    return _ZEROS[:n] if n <= _ZEROS.size else np.zeros(n, dtype=np.float32)


@functools.cache
def _polyphase(factor: int) -> tuple[Float32, int]:
    """The block-Toeplitz tap matrix ``[B + 2k, B * factor]`` and the lookahead ``k``.

    Kaiser design (``N = (A - 7.95) / (14.36 * width)`` taps at the output rate for a
    transition ``width`` from ``LOW_DELAY_PASSBAND * in_rate`` to ``in_rate / 2``),
    rounded up to ``2 * k * factor + 1`` taps so that every phase is centred.
    """
    width = (0.5 - LOW_DELAY_PASSBAND) / factor  # in cycles per output sample
    taps = math.ceil((LOW_DELAY_ATTENUATION_DB - 7.95) / (14.36 * width))
    k = math.ceil((taps - 1) / (2 * factor))
    centre = k * factor
    t = np.arange(2 * centre + 1) - centre
    cutoff = (LOW_DELAY_PASSBAND + 0.5) / 2 / factor
    beta = 0.1102 * (LOW_DELAY_ATTENUATION_DB - 8.7)
    h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(t.size, beta)
    h *= factor / h.sum()  # unit gain once the zeros between inputs are counted
    phases = np.zeros((2 * k + 1, factor))  # [input offset d + k, phase p]
    for p in range(factor):
        for d in range(-k, k + 1):
            tap = centre + p - factor * d
            if 0 <= tap < h.size:
                phases[d + k, p] = h[tap]
    toeplitz = np.zeros((_BLOCK + 2 * k, _BLOCK * factor))
    for b in range(_BLOCK):
        toeplitz[b : b + 2 * k + 1, b * factor : (b + 1) * factor] = phases
    return toeplitz.astype(np.float32), k


def _low_delay(in_rate: int, out_rate: int) -> bool:
    return out_rate > in_rate and out_rate % in_rate == 0


def _check_rates(in_rate: int, out_rate: int) -> None:
    for name, rate in (("in_rate", in_rate), ("out_rate", out_rate)):
        if not rate > 0:
            raise AudioError("bad_rate", f"{name} must be positive, got {rate!r}")
