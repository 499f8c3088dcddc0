"""Latency percentiles against concurrent streams, from ``bench_e2e.py --json`` output.

Run: ``.venv/bin/python benchmarks/plot.py E2E.json [OUT.png]`` (default
``benchmarks/latency_vs_streams.png``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

BUDGET_MS = 150.0


def plot(levels: list[dict], out: Path, title: str) -> None:
    """One line per percentile; failing levels hollow; the 150 ms budget dashed."""
    levels = sorted(levels, key=lambda lv: lv["streams"])
    k = [lv["streams"] for lv in levels]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
        ys = [lv[key] for lv in levels]
        ax.plot(k, ys, style, label=key.replace("_ms", ""))
    for lv in levels:
        if not lv["passes"]:
            ax.annotate("fails", (lv["streams"], lv["p99_ms"]), fontsize=7, color="red")
    ax.axhline(BUDGET_MS, ls="--", color="grey", lw=1, label="150 ms budget")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent real-time 16 kHz streams (100 ms chunks)")
    ax.set_ylabel("window end → event readable (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


def main(argv: list[str]) -> int:
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("latency_vs_streams.png")
    data = json.loads(src.read_text())
    title = "tympan worker + producer + Kafka broker on one shared 2-core VM"
    plot(data["levels"], out, title)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
