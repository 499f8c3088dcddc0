"""Bounded decompression of a record batch's codec (gzip, snappy, lz4, zstd).

A 1 MiB gzip batch can inflate to a gigabyte: :class:`Inflater` decompresses into one
buffer of ``max_inflated_batch_bytes`` and refuses (:class:`BatchTooLargeError`, dead
letter ``batch_too_large``) what does not fit, before the client library sees it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import cramjam

from stream.errors import InputError
from stream.kafka.batches import CODEC_GZIP, CODEC_LZ4, CODEC_NAMES, CODEC_SNAPPY, CODEC_ZSTD
from stream.kafka.skipped import BATCH_TOO_LARGE

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_BYTES = 16


class BatchTooLargeError(InputError):
    """A compressed batch inflates past ``max_inflated_batch_bytes`` (reason
    ``batch_too_large``): the batch is skipped whole."""

    def __init__(self, message: str) -> None:
        super().__init__(BATCH_TOO_LARGE, message)


@dataclass(slots=True)
class Inflater:
    """Bounded decompression of Kafka's codecs into one reusable buffer.

    ``cramjam``'s ``decompress_into`` writes into a buffer of fixed size and stops with
    an error when the output does not fit, so a decompression bomb costs at most
    ``max_bytes`` of memory and the time to fill it. The buffer is allocated once, on
    the first compressed batch (its pages are only touched as far as a batch fills it).
    """

    max_bytes: int
    _buffer: bytearray | None = field(default=None, repr=False)

    def inflate(self, codec: int, data: bytes) -> bytes:
        """The decompressed bytes of ``data``.

        Raises
        ------
        BatchTooLargeError
            They would be more than ``max_bytes``.
        ValueError, cramjam.DecompressionError
            ``data`` is not valid for ``codec`` (or the codec is unknown).
        """
        if codec == CODEC_SNAPPY:
            return self._snappy(data)
        inflate = _INTO.get(codec)
        if inflate is None:
            raise ValueError(f"unknown compression codec {codec}")
        out = self._out()
        try:
            n = inflate(data, out)
        except cramjam.DecompressionError as exc:
            if "whole buffer" in str(exc):  # the output did not fit
                raise self._too_large(codec, len(data)) from None
            raise
        if n > self.max_bytes:
            raise self._too_large(codec, len(data))
        return bytes(memoryview(out)[:n])

    def _snappy(self, data: bytes) -> bytes:
        """Raw snappy, or the xerial framing Java clients write (blocks of raw snappy):
        each block declares its size before it is decompressed."""
        if data[: len(_XERIAL_MAGIC)] != _XERIAL_MAGIC:
            blocks = [memoryview(data)]
        else:
            blocks = list(_xerial_blocks(memoryview(data)[_XERIAL_HEADER_BYTES:]))
        sizes = [cramjam.snappy.decompress_raw_len(block) for block in blocks]
        if sum(sizes) > self.max_bytes:
            raise self._too_large(CODEC_SNAPPY, len(data))
        out = memoryview(self._out())
        at = 0
        for block, size in zip(blocks, sizes, strict=True):
            at += cramjam.snappy.decompress_raw_into(block, out[at : at + size])
        return bytes(out[:at])

    def _out(self) -> bytearray:
        if self._buffer is None:
            self._buffer = bytearray(self.max_bytes + 1)
        return self._buffer

    def _too_large(self, codec: int, size: int) -> BatchTooLargeError:
        return BatchTooLargeError(
            f"a {CODEC_NAMES.get(codec, codec)} batch of {size} bytes inflates past "
            f"max_inflated_batch_bytes={self.max_bytes}"
        )


_INTO: dict[int, Callable[[Any, bytearray], int]] = {
    CODEC_GZIP: cramjam.gzip.decompress_into,
    CODEC_LZ4: cramjam.lz4.decompress_into,
    CODEC_ZSTD: cramjam.zstd.decompress_into,
}


def _xerial_blocks(data: memoryview) -> Iterable[memoryview]:
    at = 0
    while at < len(data):
        (size,) = struct.unpack_from(">i", data, at)
        if size < 0 or at + 4 + size > len(data):
            raise ValueError(f"xerial snappy block of {size} bytes past the batch's end")
        yield data[at + 4 : at + 4 + size]
        at += 4 + size
