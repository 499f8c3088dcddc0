"""The JSON guard's worst cases at the registry's 8 MiB limit (goal: <= 50 ms each).

``stream.control.json_records.decode_json`` bounds every JSON record read from a topic before
the parser sees it: size, then nesting depth (``nesting_depth``). The depth scan runs
on the event loop of every follower, for every record, so its cost must be linear
whatever the bytes. This times, per hostile input of ``--size`` bytes:

* ``guard``: :func:`nesting_depth`, what runs before the parser (with the size
  check, which is one ``len``): the goal applies to it;
* ``decode``: :func:`decode_json` to its verdict, for what it is worth (the guard,
  then UTF-8 and the parser for what passes the depth bound: an 8 MiB record that
  is JSON costs the parser its own linear time, beside the guard's).

``--before`` also times the regular-expression scan this replaced (a backtracking
pattern for strings, quadratic on an unterminated string of escapes) at a few small
sizes, since at 8 MiB it would run for days; the quadratic fit extrapolates it.

Each figure is the best of ``--repeat`` runs (the machine is shared; the best run is
the least disturbed one). Run: ``.venv/bin/python benchmarks/bench_json_guard.py
[--size BYTES] [--repeat N] [--before] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stream.control.json_records import JsonRecordError, decode_json, nesting_depth
from stream.settings import ControlLimits

GOAL_MS = 50.0
LIMITS = ControlLimits()


def worst_cases(size: int) -> dict[str, bytes]:
    """Hostile records of ``size`` bytes: each stresses one part of the scan."""
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b'"\\[]{}a ', dtype=np.uint8)
    return {
        'escaped quotes \\"': b'\\"' * (size // 2),
        "string of escaped quotes": b'"' + b'\\"' * (size // 2 - 1),
        "backslash runs in a string": b'["' + b"\\\\" * (size // 2 - 2) + b'"]',
        "quotes": b'"' * size,
        "open brackets": b"[" * size,
        "open and close": b"[]" * (size // 2),
        "string, bracket, string": b'"["' * (size // 3),
        "random quotes/escapes/brackets": rng.choice(alphabet, size).tobytes(),
        "every byte value": bytes(range(256)) * (size // 256),
    }


def best_ms(call: Callable[[bytes], object], value: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call(value)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def guard(value: bytes) -> str:
    """``decode_json``'s verdict, as the registry follower would ask for it."""
    try:
        decode_json(
            value,
            what="bench",
            max_bytes=LIMITS.registry_max_bytes,
            max_depth=LIMITS.max_json_depth,
        )
    except JsonRecordError as exc:
        return exc.reason
    return "accepted"


_OLD_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def old_scan(value: bytes) -> int:
    """The scan before: strip strings with a backtracking pattern, then a cumsum."""
    bare = _OLD_STRING.sub(b"", value)
    steps = np.zeros(256, dtype=np.int8)
    steps[[ord("["), ord("{")]] = 1
    steps[[ord("]"), ord("}")]] = -1
    return int(max(0, np.cumsum(steps[np.frombuffer(bare, np.uint8)], dtype=np.int64).max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=LIMITS.registry_max_bytes)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--before", action="store_true", help="also time the old scan")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = []
    print(f"{'input':32} {'bytes':>9} {'guard ms':>9} {'decode ms':>10}  verdict")
    for name, value in worst_cases(args.size).items():
        scan = best_ms(nesting_depth, value, args.repeat)
        whole = best_ms(guard, value, args.repeat)
        verdict = guard(value)
        rows.append({"input": name, "bytes": len(value), "guard_ms": scan, "decode_ms": whole})
        print(f"{name:32} {len(value):9} {scan:9.1f} {whole:10.1f}  {verdict}")
    worst = max(r["guard_ms"] for r in rows)
    verdict = "ok" if worst <= GOAL_MS else "OVER"
    print(f"worst_guard_ms={worst:.1f} goal_ms={GOAL_MS:.0f} {verdict}")
    before = []
    if args.before:
        for kib in (8, 16, 32):
            value = b'\\"' * (kib * 512)
            ms = best_ms(old_scan, value, 1)
            before.append({"bytes": len(value), "old_scan_ms": ms})
            print(f"before: escaped quotes, {kib} KiB: {ms:.0f} ms")
        per_byte2 = before[-1]["old_scan_ms"] / before[-1]["bytes"] ** 2
        days = per_byte2 * args.size**2 / 1000 / 86400
        print(f"before: quadratic fit at {args.size} bytes: ~{days:.1f} days")
    if args.json:
        load = os.getloadavg()[0]
        body = {"load_average_1m": load, "rows": rows, "before": before}
        args.json.write_text(json.dumps(body, indent=2) + "\n")


if __name__ == "__main__":
    main()
