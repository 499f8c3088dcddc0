"""``python -m models.realtrain build``: fetch and cut the real training recordings."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from models.realset.sources import RealSetError
from models.realtrain.build import build, default_cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.realtrain", description=__doc__)
    parser.add_argument("command", choices=("build",))
    parser.add_argument("--cache", type=Path, default=default_cache(), help="package cache")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        doc = build(args.cache, seed=args.seed)
    except RealSetError as exc:
        print(f"models.realtrain: {exc}", file=sys.stderr)
        return 2
    counts = Counter((c["label"], c["split"]) for c in doc["clips"])
    print(f"built {args.cache / 'scene'}: {len(doc['files'])} source files; clips {dict(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
