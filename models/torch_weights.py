"""Read a PyTorch state dict (``torch.save``) into numpy arrays without torch and
without running the file's pickle as code.

Why: the GE2E voice encoder's weights ship in the ``resemblyzer`` wheel as
``pretrained.pt``. Loading it with ``torch.load`` would pull in torch (gigabytes) and
unpickle data from the network, which may call any importable function. A ``.pt``
file is a pickle of *tensor metadata* plus raw storages; :class:`_Restricted` resolves
only the few names a state dict needs (``OrderedDict``, the tensor rebuild functions,
the storage types) and refuses every other global, so the file can describe tensors
but never run code. The storages are then read as raw little-endian bytes.

Both of torch's formats are read:

* legacy (torch < 1.6, what ``pretrained.pt`` is): magic number, protocol version
  and system info pickles, the main pickle, a pickle listing the storage keys, then
  each storage as an int64 element count followed by its bytes;
* zip (torch >= 1.6): ``<root>/data.pkl`` and one ``<root>/data/<key>`` file per storage.

Only used at build time (``models.ge2e``): nothing at run time reads a ``.pt``.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""``torch.serialization.MAGIC_NUMBER``: the first pickle of a legacy file."""

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchWeightsError(ValueError):
    """The file is not a state dict this reader understands, or asks for code."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: Any


@dataclass(slots=True)
class _Storage:
    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise TorchWeightsError(f"storage {self.storage.key!r} was never read")
        if not self.size:
            return np.array(data[self.offset], dtype=data.dtype)
        extent = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if extent >= data.size:
            raise TorchWeightsError(
                f"tensor of size {self.size} at offset {self.offset} overruns storage "
                f"{self.storage.key!r} of {data.size} elements"
            )
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a copy: the result owns its memory


def _rebuild_tensor(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: _TensorRef, *_: Any) -> _TensorRef:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Restricted(pickle.Unpickler):
    """An unpickler whose globals are the table above; storages become placeholders."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise TorchWeightsError(
                f"the file asks for {module}.{name}, which a state dict never needs; refused"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchWeightsError(f"unexpected persistent id {pid!r:.80}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if isinstance(kind, str):  # zip format: ('storage', <type>, key, location, numel)
            raise TorchWeightsError(f"storage type given as a string {kind!r}")
        if not isinstance(kind, _StorageType):
            raise TorchWeightsError(f"storage {key!r} has no known type")
        storage = self.storages.setdefault(key, _Storage(key, kind.dtype, numel))
        if len(pid) > 5 and pid[5] is not None:
            raise TorchWeightsError(f"storage {key!r} is a view; not supported")
        return storage


def load_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of a ``torch.save``'d checkpoint, flattened to ``"a.b.c": array``.

    Nested dicts (``{"model_state": {...}, "step": ...}``) are flattened with dots;
    values that are not tensors (step counters) are left out.

    Raises
    ------
    TorchWeightsError
        Not a torch checkpoint, a global outside the allow-list, or a truncated storage.
    """
    raw = Path(path).read_bytes()
    storages: dict[str, _Storage] = {}
    if zipfile.is_zipfile(io.BytesIO(raw)):
        root = _load_zip(raw, storages)
    else:
        root = _load_legacy(raw, storages)
    return dict(_flatten(root, ""))


def _load_legacy(raw: bytes, storages: dict[str, _Storage]) -> Any:
    f = io.BytesIO(raw)
    plain = _plain_loader(f)
    try:
        magic = plain()
    except (pickle.UnpicklingError, EOFError, TorchWeightsError) as exc:
        raise TorchWeightsError(f"not a torch checkpoint: {exc}") from exc
    if magic != LEGACY_MAGIC:
        raise TorchWeightsError("not a torch checkpoint (wrong magic number)")
    plain()  # protocol version
    plain()  # sys info: endianness and type sizes (little-endian assumed, checked below)
    root = _Restricted(f, storages).load()
    keys = plain()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        width = np.dtype(storage.dtype).itemsize
        blob = f.read(numel * width)
        if len(blob) != numel * width:
            raise TorchWeightsError(f"storage {key!r} is truncated")
        storage.data = np.frombuffer(blob, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    return root


def _load_zip(raw: bytes, storages: dict[str, _Storage]) -> Any:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl")), None)
        if pkl is None:
            raise TorchWeightsError("zip checkpoint without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        root = _Restricted(io.BytesIO(archive.read(pkl)), storages).load()
        for key, storage in storages.items():
            blob = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(blob, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    return root


def _plain_loader(f: BinaryIO) -> Callable[[], Any]:
    """Loads the side pickles (numbers, a dict of sizes, a list of keys): no globals."""

    def load() -> Any:
        return _Restricted(f, {}).load()

    return load


def _flatten(node: Any, prefix: str) -> list[tuple[str, np.ndarray]]:
    if isinstance(node, _TensorRef):
        return [(prefix, node.materialize())]
    if isinstance(node, Mapping):
        out: list[tuple[str, np.ndarray]] = []
        for key, value in node.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(node, list | tuple):
        out = []
        for i, value in enumerate(node):
            out += _flatten(value, f"{prefix}.{i}" if prefix else str(i))
        return out
    return []


__all__ = ["LEGACY_MAGIC", "TorchWeightsError", "load_state_dict"]
