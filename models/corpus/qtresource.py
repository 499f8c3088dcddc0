"""Read the files inside a Qt binary resource (``.rcc``), as GCompris ships its sounds.

Why: ``gcompris-qt-data`` packs each activity's recordings (e.g. the real instrument
recordings of its *instruments* activity) into one ``.rcc`` file, and no Qt tool can
list or extract one. The format (Qt's ``rcc.cpp``) is small: a header, a tree of
fixed-size nodes, a table of names and a table of payloads.

Layout, all integers big-endian::

    "qres" | version u32 | tree offset u32 | data offset u32 | names offset u32 [| flags u32]
    tree node (14 bytes, + 8 for a modification time from version 2):
        name offset u32 | flags u16 | directory: child count u32, first child u32
                                    | file:      country u16, language u16, data offset u32
    name: length u16 | hash u32 | UTF-16BE characters
    payload: size u32 | bytes (flag 1: u32 uncompressed size + zlib; flag 4: zstd)
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_DIRECTORY = 0x02
_ZLIB = 0x01
_ZSTD = 0x04


class ResourceError(ValueError):
    """The file is not a Qt resource this reader understands."""


def read_resource(path: Path) -> dict[str, bytes]:
    """Every file inside the ``.rcc`` at ``path``: ``{"dir/sub/name.ogg": bytes}``.

    Raises
    ------
    ResourceError
        Not a Qt resource, an unknown version, a compression this reader lacks
        (zstd), or offsets that point outside the file; the message names the file.
    """
    blob = path.read_bytes()
    if blob[:4] != b"qres" or len(blob) < 20:
        raise ResourceError(f"{path}: not a Qt resource (no 'qres' header)")
    version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
    if version not in (1, 2, 3):
        raise ResourceError(f"{path}: Qt resource version {version} is not 1, 2 or 3")
    node_size = 14 if version == 1 else 22
    out: dict[str, bytes] = {}
    try:
        _walk(blob, 0, "", tree, data, names, node_size, out, depth=0)
    except (struct.error, zlib.error, IndexError) as exc:
        raise ResourceError(f"{path}: damaged Qt resource: {exc}") from exc
    return out


def _walk(
    blob: bytes,
    node: int,
    prefix: str,
    tree: int,
    data: int,
    names: int,
    node_size: int,
    out: dict[str, bytes],
    *,
    depth: int,
) -> None:
    if depth > 32:
        raise ResourceError("Qt resource tree deeper than 32 levels")
    at = tree + node * node_size
    name_offset, flags = struct.unpack_from(">IH", blob, at)
    name = _name(blob, names + name_offset) if node else ""
    path = f"{prefix}/{name}" if prefix else name
    if flags & _DIRECTORY:
        count, first = struct.unpack_from(">II", blob, at + 6)
        for child in range(first, first + count):
            _walk(blob, child, path, tree, data, names, node_size, out, depth=depth + 1)
        return
    (offset,) = struct.unpack_from(">I", blob, at + 10)
    out[path] = _payload(blob, data + offset, flags, path)


def _name(blob: bytes, at: int) -> str:
    (length,) = struct.unpack_from(">H", blob, at)
    return blob[at + 6 : at + 6 + 2 * length].decode("utf-16-be")


def _payload(blob: bytes, at: int, flags: int, path: str) -> bytes:
    (size,) = struct.unpack_from(">I", blob, at)
    raw = blob[at + 4 : at + 4 + size]
    if len(raw) != size:
        raise ResourceError(f"{path}: payload of {size} bytes runs past the end of the file")
    if flags & _ZSTD:
        raise ResourceError(f"{path}: zstd-compressed payloads are not supported")
    if flags & _ZLIB:
        return zlib.decompress(raw[4:])
    return raw
