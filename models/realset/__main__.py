"""``python -m models.realset {build,evaluate,curate}``: the real-recording set (issue #25)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.realset.build import build, default_cache
from models.realset.sources import RealSetError, load_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.realset", description=__doc__)
    parser.add_argument("command", choices=("build", "evaluate", "curate"))
    parser.add_argument("--cache", type=Path, default=default_cache(), help="package cache")
    parser.add_argument("--out", type=Path, default=None, help="built set (default CACHE/set)")
    parser.add_argument("--json", action="store_true", help="evaluate: one JSON document")
    args = parser.parse_args(argv)
    out = args.out or args.cache / "set"
    try:
        if args.command == "curate":
            from models.realset.curate import curate

            doc = curate(args.cache)
            print(f"manifest: {len(doc['items'])} items")
            return 0
        if args.command == "build":
            counts = build(load_manifest(), args.cache, out)
            print(f"built {out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            return 0
        from models.realset.evaluate import evaluate_all, print_report

        report = evaluate_all(out)
        print(json.dumps(report, indent=1) if args.json else print_report(report))
        return 0
    except RealSetError as exc:
        print(f"models.realset: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
