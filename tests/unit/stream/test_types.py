"""Shared type aliases are defined once, in ``stream.types``: no other module of the
runtime or the exporters names them again or gives the same type another name."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import stream
from stream.types import Device, DeviceChoice

SHARED = {"Float32", "Device", "DeviceChoice", "Infer", "Send", "AnySend"}
# the right-hand sides stream.types owns, as ast.unparse writes them
OWNED = {
    "npt.NDArray[np.float32]",
    "Literal['cpu', 'cuda']",
    "Literal['auto', 'cpu', 'cuda']",
    "Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]",
    "Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]]",
    "Callable[[str, bytes, bytes], Awaitable[Any]]",
}
ROOT = Path(stream.__file__).parent
SOURCES = [*ROOT.rglob("*.py"), *(ROOT.parent / "exporters").rglob("*.py")]


def _aliases(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            found.append((target.id, ast.unparse(value)))
    return found


def test_no_module_redefines_a_shared_alias() -> None:
    again = [
        f"{path.relative_to(ROOT.parent)}: {name} = {value}"
        for path in sorted(SOURCES)
        if path != ROOT / "types.py"
        for name, value in _aliases(path)
        if name in SHARED or value in OWNED
    ]
    assert again == []


def test_the_scan_sees_what_stream_types_defines() -> None:
    """The check above can fail: run on stream.types itself, it finds every alias."""
    names = {name for name, value in _aliases(ROOT / "types.py") if value in OWNED}
    assert names == SHARED


def test_every_device_a_worker_names_is_a_device_choice() -> None:
    assert set(get_args(Device)) < set(get_args(DeviceChoice))
    assert set(get_args(DeviceChoice)) - set(get_args(Device)) == {"auto"}
