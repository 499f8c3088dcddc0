"""Where in the window cycle the CPU goes: a phase-folded CPU profile of a load run.

With calls that start together, every call's window falls due at the same instant
once per hop (0.5 s), and the workers, the producer, the broker and the reader all
burst then. A p99 that is the length of that burst cannot be cut below the burst's
CPU divided by the cores, whatever the worker does with its share; this tool measures
that share.

``sample`` mode (a subprocess, so it does not take the measuring reader's GIL) reads
``/proc/<pid>/stat`` of each named process (all its threads) and ``/proc/stat`` (the
machine) every ``--every-ms`` until SIGTERM, and writes the samples as JSON.
:func:`fold` turns them into cores busy per process in bins of the cycle, phase 0
being the instant the windows fall due (``origin_s`` + a whole number of periods).
The kernel counts CPU time in clock ticks (10 ms), so each bin is an average over
every cycle of the run (about 48 per 24 s call at a 0.5 s hop).

Run (by ``bench_e2e.py --phase-profile``)::

    python benchmarks/cpu_phase.py sample OUT.json worker0=123 broker=456 ...
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _machine_busy_ticks() -> int:
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(parts[:8]) - parts[3] - parts[4]


def sample(out: Path, pids: dict[str, int], every_s: float) -> None:
    """Sample until SIGTERM; write ``{"names": [...], "rows": [[t, machine, *pids]]}``."""
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    names = list(pids)
    rows: list[list[float]] = []
    while not stop:
        rows.append([time.time(), _machine_busy_ticks(), *(_ticks(pids[n]) for n in names)])
        time.sleep(every_s)
    out.write_text(json.dumps({"names": names, "clk_tck": CLK_TCK, "rows": rows}))


def fold(
    samples: dict[str, Any], *, origin_s: float, period_s: float, bin_ms: float = 25.0
) -> dict[str, Any]:
    """Cores busy per process in each bin of the cycle, averaged over every cycle.

    Parameters
    ----------
    samples : dict
        What :func:`sample` wrote.
    origin_s : float
        A wall-clock instant at which windows fall due (phase 0).
    period_s : float
        The cycle: the windows' hop.
    bin_ms : float, optional
        Width of a phase bin.

    Returns
    -------
    dict
        ``bins_ms`` (each bin's start), ``cores`` (name → cores busy per bin, the
        machine's as ``machine``) and ``core_ms_per_cycle`` (name → CPU per cycle).
    """
    rows = np.asarray(samples["rows"], dtype=np.float64)
    names = ["machine", *samples["names"]]
    t = rows[:-1, 0]
    dt = np.diff(rows[:, 0])
    busy = np.diff(rows[:, 1:], axis=0) / samples["clk_tck"]  # CPU-s in each interval
    n_bins = max(1, round(period_s * 1000 / bin_ms))
    phase = ((t + dt / 2 - origin_s) % period_s) / period_s
    which = np.minimum((phase * n_bins).astype(int), n_bins - 1)
    wall = np.bincount(which, weights=dt, minlength=n_bins)
    cores = {
        name: np.round(
            np.bincount(which, weights=busy[:, i], minlength=n_bins) / np.maximum(wall, 1e-9), 2
        ).tolist()
        for i, name in enumerate(names)
    }
    cycles = (rows[-1, 0] - rows[0, 0]) / period_s
    per_cycle = {
        name: round(float(busy[:, i].sum()) * 1000 / cycles, 1) for i, name in enumerate(names)
    }
    return {
        "bins_ms": [round(b * bin_ms, 1) for b in range(n_bins)],
        "cores": cores,
        "core_ms_per_cycle": per_cycle,
    }


def table(folded: dict[str, Any]) -> str:
    """The folded profile as a text table: one row per bin, one column per process."""
    names = list(folded["cores"])
    lines = ["phase_ms " + "".join(f"{n:>10}" for n in names)]
    for b, start in enumerate(folded["bins_ms"]):
        lines.append(f"{start:>8.0f} " + "".join(f"{folded['cores'][n][b]:>10.2f}" for n in names))
    per = folded["core_ms_per_cycle"]
    lines.append("core-ms/cycle " + "  ".join(f"{n} {per[n]:.0f}" for n in names))
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] != ["sample"]:
        sys.exit(__doc__)
    targets = dict(arg.split("=", 1) for arg in sys.argv[3:])
    sample(Path(sys.argv[2]), {k: int(v) for k, v in targets.items()}, 0.005)
