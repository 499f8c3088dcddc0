"""Latency percentiles against concurrent streams, from ``bench_e2e.py --json`` output.

Run: ``.venv/bin/python benchmarks/plot.py OUT.png E2E.json[=label] [E2E2.json[=label] ...]``.
Each run gets its p50/p95/p99 lines (one colour per percentile, one line style per
run); levels that failed (fell behind or p99 over budget) are marked with an x.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BUDGET_MS = 150.0
COLOURS = {"p50_ms": "tab:blue", "p95_ms": "tab:orange", "p99_ms": "tab:green"}
STYLES = ("-", "--", ":", "-.")


def plot(runs: list[tuple[str, list[dict[str, Any]]]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for style, (label, levels) in zip(STYLES, runs, strict=False):
        levels = sorted(levels, key=lambda lv: lv["streams"])
        k = [lv["streams"] for lv in levels]
        for key, colour in COLOURS.items():
            ys = [lv[key] for lv in levels]
            ax.plot(k, ys, style, marker="o", ms=3, color=colour, label=f"{key[:3]} {label}")
        bad = [(lv["streams"], lv["p99_ms"]) for lv in levels if not lv["passes"]]
        if bad:
            ax.plot(*zip(*bad, strict=True), "x", color="red", ms=8)
    ax.axhline(BUDGET_MS, ls="--", color="grey", lw=1, label="150 ms budget")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent real-time 16 kHz streams (100 ms chunks)")
    ax.set_ylabel("window end → event readable (ms)")
    ax.set_title(
        "tympan worker + producer + Kafka broker on one shared 2-core VM (x: level fails)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = Path(argv[0])
    runs = []
    for item in argv[1:]:
        path, _, label = item.partition("=")
        runs.append((label or Path(path).stem, json.loads(Path(path).read_text())["levels"]))
    plot(runs, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
