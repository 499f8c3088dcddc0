"""Reading torch checkpoints without torch: tensors come back exact, code never runs.

The checkpoints are written here the way ``torch.save`` writes them (the legacy
format of ``resemblyzer/pretrained.pt``: magic, protocol, sys info, the main pickle
with persistent storage ids, the storage keys, raw storages), with stand-in
``torch`` modules so that pickle names the same globals torch's files name.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.torch_weights import LEGACY_MAGIC, TorchWeightsError, load_state_dict


class FloatStorage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class Tensor:
    def __init__(
        self, storage: FloatStorage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_tensor_v2, self.args)


def _rebuild_tensor_v2(*args: Any) -> None:  # named like torch's; never called here
    raise AssertionError("only pickled, never run")


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    yield


class _Saver(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, FloatStorage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.data.size, None)
        return None


def save_legacy(path: Path, root: Any, storages: list[FloatStorage]) -> None:
    """What ``torch.save(..., _use_new_zipfile_serialization=False)`` writes."""
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    _Saver(out, protocol=2).dump(root)
    pickle.dump([s.key for s in storages], out, protocol=2)
    for s in storages:
        out.write(struct.pack("<q", s.data.size) + s.data.astype("<f4").tobytes())
    path.write_bytes(out.getvalue())


def test_tensors_come_back_exact_with_offsets_and_strides(fake_torch: None, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    flat = rng.standard_normal(40).astype(np.float32)
    store = FloatStorage("0", flat)
    bias = FloatStorage("1", rng.standard_normal(4).astype(np.float32))
    state = OrderedDict(
        [
            ("lstm.weight", Tensor(store, 0, (4, 5), (5, 1))),
            ("lstm.weight_t", Tensor(store, 0, (5, 4), (1, 5))),  # a transposed view
            ("tail", Tensor(store, 20, (2, 10), (10, 1))),  # an offset into the storage
            ("bias", Tensor(bias, 0, (4,), (1,))),
        ]
    )
    save_legacy(tmp_path / "w.pt", {"model_state": state, "step": 7}, [store, bias])
    got = load_state_dict(tmp_path / "w.pt")
    assert set(got) == {f"model_state.{k}" for k in state}  # the step counter is no tensor
    np.testing.assert_array_equal(got["model_state.lstm.weight"], flat[:20].reshape(4, 5))
    np.testing.assert_array_equal(got["model_state.lstm.weight_t"], flat[:20].reshape(4, 5).T)
    np.testing.assert_array_equal(got["model_state.tail"], flat[20:].reshape(2, 10))
    np.testing.assert_array_equal(got["model_state.bias"], bias.data)
    assert got["model_state.lstm.weight"].dtype == np.float32


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


def test_a_checkpoint_asking_for_code_is_refused(
    fake_torch: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    save_legacy(tmp_path / "evil.pt", {"model_state": _Exploit()}, [])
    with pytest.raises(TorchWeightsError, match=r"asks for (posix|os|nt)\.system.*refused"):
        load_state_dict(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_truncated_storage_and_non_checkpoints_are_errors(fake_torch: None, tmp_path: Path) -> None:
    store = FloatStorage("0", np.arange(8, dtype=np.float32))
    save_legacy(tmp_path / "w.pt", {"w": Tensor(store, 0, (8,), (1,))}, [store])
    raw = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[:-5])
    with pytest.raises(TorchWeightsError, match="truncated"):
        load_state_dict(tmp_path / "cut.pt")
    (tmp_path / "other.pt").write_bytes(pickle.dumps(12345))
    with pytest.raises(TorchWeightsError, match="magic"):
        load_state_dict(tmp_path / "other.pt")


def test_a_tensor_overrunning_its_storage_is_an_error(fake_torch: None, tmp_path: Path) -> None:
    store = FloatStorage("0", np.arange(8, dtype=np.float32))
    save_legacy(tmp_path / "w.pt", {"w": Tensor(store, 4, (8,), (1,))}, [store])
    with pytest.raises(TorchWeightsError, match="overruns storage"):
        load_state_dict(tmp_path / "w.pt")
