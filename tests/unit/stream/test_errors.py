"""The exception tree drawn in ``stream/errors.py``'s docstring is the whole tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import stream
import stream.errors


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(stream.__path__, "stream."):
        if info.name.startswith("stream.cli") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("stream"):
                found[name] = cls
    return found


def _drawn() -> dict[str, str]:
    """Each class in the docstring's tree and the class drawn above it."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (stream.errors.__doc__ or "").splitlines():
        match = re.match(r"^[ │├└─]*([A-Z]\w*(?:Error|Exception))\b", line)
        if not match:
            continue
        name = match.group(1)
        depth = match.start(1)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else "Exception"
        stack.append((depth, name))
    return parents


def test_every_exception_class_is_drawn_under_its_base() -> None:
    drawn = _drawn()
    classes = _exception_classes()
    assert set(classes) == set(drawn)
    for name, cls in classes.items():
        assert cls.__bases__[0].__name__ == drawn[name], name
