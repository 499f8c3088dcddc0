"""``tympan dashboard``: a live page over the worker's result topics.

:mod:`stream.dashboard.state` folds events into a bounded picture (pure, tested
without Kafka); :mod:`stream.dashboard.server` reads Kafka and pushes that picture
to the page in ``static/`` over Server-Sent Events. The names below are imported on
first use (the state needs neither Kafka nor aiohttp).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream.dashboard.server import DashboardConfig, build_app, serve
    from stream.dashboard.state import DashboardLimits, DashboardState

# Where each public name lives; imported on first use, so that importing one
# submodule (or this package) loads nothing else.
_HOMES = {
    "build_app": "server",
    "DashboardConfig": "server",
    "DashboardLimits": "state",
    "DashboardState": "state",
    "serve": "server",
}

__all__ = [
    "DashboardConfig",
    "DashboardLimits",
    "DashboardState",
    "build_app",
    "serve",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stream.dashboard' has no attribute {name!r}")
    return getattr(importlib.import_module(f"stream.dashboard.{home}"), name)
