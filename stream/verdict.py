"""Moved to :mod:`stream.events.verdict`; this name stays until ``stream/summary.py``
(being moved into the ``stream.pipeline`` package on another branch) imports it there."""

from stream.events.verdict import TrackVerdict, VerdictAccumulator, track_verdict

__all__ = ["TrackVerdict", "VerdictAccumulator", "track_verdict"]
