"""Which calls may open: a global cap, a cap per source address, and a preference for
calls that are already established.

Ingest has two scarce things: slots in its stream table (RTP: ``--max-streams``;
WebSocket: ``--max-sessions``) and a fair share of them for each sender. Without
more than a global cap, one source that opens many cheap calls (2,000 SSRCs, one
packet each every few seconds) fills the table and every real call after it is
refused. :class:`Admission` keeps three rules, each O(1) per packet or connection:

* a source address may hold at most ``max_per_source`` open calls;
* a call is on **probation** until it is *established* (for RTP: at least
  ``established_packets`` packets over at least ``established_ms``; for a WebSocket:
  its ``start``/header accepted). Calls on probation are kept in least-recently-heard
  order, globally and per source;
* a new call that finds its source's cap reached **evicts** that source's
  least-recently-heard call on probation; one that finds the table full evicts the
  least-recently-heard call on probation of the source holding the most calls on
  probation (when no source holds two, the least-recently-heard of all); only when
  every call in the way is established is it refused (``source_limit``,
  ``too_many_streams``).

So a flood of calls that never get going churns among itself: a real call from
another address is never the victim while the flood holds more calls on probation
than it, and a real call from the flood's own address survives by being heard more
recently (every 20 ms, a flood's call every few seconds); an established call is
never evicted. Finding the victim is O(1): sources are kept in buckets by their
number of calls on probation. The caller ends the evicted
call (an EOS frame, ``streams_ended{why="evicted"}``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from stream.errors import ConfigError
from stream.ingest.errors import PacketError

K = TypeVar("K", bound=Hashable)

# Calls on probation that are getting going looked past before one is evicted anyway.
_SECOND_CHANCES = 4


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Limits on open calls (documented in ``docs/ingest.md``, "Admission").

    Attributes
    ----------
    max_streams: open calls at most.
    max_per_source: open calls one source address may hold.
    established_packets: packets a call must have sent to leave probation (RTP).
    established_ms: time from a call's first to its latest packet needed to leave
        probation (RTP); both must hold.
    """

    max_streams: int = 2000
    max_per_source: int = 1000
    established_packets: int = 10
    established_ms: float = 500.0

    def __post_init__(self) -> None:
        if self.max_streams < 1:
            raise ConfigError(f"max_streams {self.max_streams} must be at least 1")
        if self.max_per_source < 1:
            raise ConfigError(f"max streams per source {self.max_per_source} must be at least 1")
        if self.established_packets < 1 or self.established_ms < 0:
            raise ConfigError(
                f"established after {self.established_packets} packets and "
                f"{self.established_ms} ms: need at least 1 packet and 0 ms"
            )


@dataclass(slots=True)
class _Trial:
    source: str
    first_us: int
    packets: int = 0


@dataclass
class Admission(Generic[K]):
    """Open calls by source, and the calls on probation in least-recently-heard order."""

    policy: AdmissionPolicy
    _source_of: dict[K, str] = field(default_factory=dict)
    _per_source: dict[str, int] = field(default_factory=dict)
    _trials: OrderedDict[K, _Trial] = field(default_factory=OrderedDict)
    _trials_by_source: dict[str, OrderedDict[K, None]] = field(default_factory=dict)
    _buckets: dict[int, dict[str, None]] = field(default_factory=dict)  # n trials -> sources
    _top: int = 0  # the most trials any source has

    def __len__(self) -> int:
        return len(self._source_of)

    def open_from(self, source: str) -> int:
        """Open calls of ``source``."""
        return self._per_source.get(source, 0)

    def on_probation(self) -> int:
        """Open calls not yet established."""
        return len(self._trials)

    def victim(self, source: str, what: str) -> K | None:
        """Make room for a new call of ``source``: the call to evict first, or ``None``.

        Raises
        ------
        PacketError
            ``source_limit`` or ``too_many_streams`` when no call on probation can
            make room; ``what`` names the new call in the message.
        """
        policy = self.policy
        if self._per_source.get(source, 0) >= policy.max_per_source:
            mine = self._trials_by_source.get(source)
            if mine:
                return self._oldest(mine)
            raise PacketError(
                "source_limit",
                f"{what}: {source} already has {policy.max_per_source} established calls "
                f"(max per source)",
            )
        if len(self._source_of) >= policy.max_streams:
            if self._top >= 2:  # the source with the most calls on probation pays
                worst = next(iter(self._buckets[self._top]))
                return self._oldest(self._trials_by_source[worst])
            if self._trials:
                return self._oldest(self._trials)
            raise PacketError(
                "too_many_streams",
                f"{what}: {len(self._source_of)} calls are open and established "
                f"(max {policy.max_streams})",
            )
        return None

    def _oldest(self, order: OrderedDict[K, Any]) -> K:
        """The least-recently-heard call of ``order`` that is not getting going.

        A call on probation that has already sent half the packets it needs to be
        established (a real call, 100 ms into it at 20 ms packets) gets a second
        chance: it moves to the back and the next one is looked at, up to
        ``_SECOND_CHANCES`` calls (O(1)). So a real call whose packets reach us a
        little late (a loaded sender, a burst of flood datagrams processed first) is
        not evicted for a flood's one-packet call; when every call looked at is getting
        going, the least recently heard of them goes.
        """
        promising = max(2, self.policy.established_packets // 2)
        first: K | None = None
        for _ in range(_SECOND_CHANCES):
            key = next(iter(order))
            if key == first:
                break  # every call of ``order`` was looked at
            if first is None:
                first = key
            trial = self._trials[key]
            if trial.packets < promising:
                return key
            self._trials.move_to_end(key)
            self._trials_by_source[trial.source].move_to_end(key)
        assert first is not None  # ``order`` is never empty here
        return first

    def opened(self, key: K, source: str, now_us: int) -> None:
        """``key`` opened (after :meth:`victim` made room): it starts on probation."""
        self._source_of[key] = source
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._trials[key] = _Trial(source, now_us)
        mine = self._trials_by_source.setdefault(source, OrderedDict())
        mine[key] = None
        self._rebucket(source, len(mine) - 1, len(mine))

    def heard(self, key: K, now_us: int) -> bool:
        """A packet of ``key`` came: it moves to the back of the eviction order and is
        established once it has sent enough packets over long enough.

        Returns
        -------
        bool
            ``True`` when this packet established ``key``.
        """
        trial = self._trials.get(key)
        if trial is None:
            return False
        trial.packets += 1
        policy = self.policy
        if (
            trial.packets >= policy.established_packets
            and now_us - trial.first_us >= policy.established_ms * 1000
        ):
            self.established(key)
            return True
        self._trials.move_to_end(key)
        self._trials_by_source[trial.source].move_to_end(key)
        return False

    def established(self, key: K) -> None:
        """``key`` leaves probation: it is never evicted."""
        trial = self._trials.pop(key, None)
        if trial is not None:
            self._drop_trial(key, trial.source)

    def closed(self, key: K) -> None:
        """``key`` ended (for whatever reason)."""
        source = self._source_of.pop(key, None)
        if source is None:
            return
        left = self._per_source[source] - 1
        if left:
            self._per_source[source] = left
        else:
            del self._per_source[source]
        if self._trials.pop(key, None) is not None:
            self._drop_trial(key, source)

    def _drop_trial(self, key: K, source: str) -> None:
        mine = self._trials_by_source[source]
        del mine[key]
        self._rebucket(source, len(mine) + 1, len(mine))
        if not mine:
            del self._trials_by_source[source]

    def _rebucket(self, source: str, old: int, new: int) -> None:
        if old:
            bucket = self._buckets[old]
            del bucket[source]
            if not bucket:
                del self._buckets[old]
        if new:
            self._buckets.setdefault(new, {})[source] = None
        self._top = max(self._top, new)
        while self._top and self._top not in self._buckets:
            self._top -= 1
