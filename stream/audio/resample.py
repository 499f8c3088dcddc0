"""Streaming resampling: one stateful soxr resampler per stream.

A stream arrives in chunks of arbitrary length; resampling each chunk on its own
would restart the filter at every boundary and click. ``soxr.ResampleStream``
keeps the filter state between calls, so the concatenated output of
:meth:`StreamResampler.process` over any chunking equals one-shot
``soxr.resample`` of the whole signal (the tests measure it: identical to float32
rounding for 8k, 11.025k, 16k, 22.05k, 44.1k and 48k → 16k).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

from stream.errors import AudioError

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
Float32 = npt.NDArray[np.float32]


class StreamResampler:
    """Resample one mono float32 stream chunk by chunk, keeping filter state.

    Parameters
    ----------
    in_rate, out_rate: sample rates in Hz.
    quality: soxr quality recipe (``"HQ"`` as ``soxr.resample``'s default).

    Notes
    -----
    Output lags input by the filter delay: the first chunks may return fewer samples
    than ``len(chunk) * out_rate / in_rate``; ``process(..., last=True)`` flushes the
    rest, so the total matches one-shot resampling. When the rates are equal,
    ``process`` returns its input (as float32) and keeps no state.
    """

    __slots__ = ("_closed", "_stream", "in_rate", "out_rate", "quality")

    def __init__(self, in_rate: int, out_rate: int, *, quality: Quality = "HQ") -> None:
        for name, rate in (("in_rate", in_rate), ("out_rate", out_rate)):
            if not rate > 0:
                raise AudioError("bad_rate", f"{name} must be positive, got {rate!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality
        self._closed = False
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    @property
    def passthrough(self) -> bool:
        """Whether the rates are equal (no filtering, no delay)."""
        return self._stream is None

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
        if self._stream is None:
            return x
        out: Float32 = self._stream.resample_chunk(x, last=last)
        return out
