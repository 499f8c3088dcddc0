"""``python -m models.zoo build [scene|scene/1|instruments|all]``: rebuild the shipped models.

A name rebuilds its latest version, ``name/version`` a pinned older one, ``all`` the
latest version of every name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stream.errors import ContractError


def _parser() -> argparse.ArgumentParser:
    from models.zoo import ZOO_DIR
    from models.zoo.recipes import DEFAULT_WORK_DIR, RECIPES, SHIPPED

    parser = argparse.ArgumentParser(prog="python -m models.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="render data, train, export, write the model card")
    refs = [*RECIPES, *(f"{r.name}/{r.version}" for r in SHIPPED), "all"]
    build.add_argument("which", nargs="?", default="all", choices=refs)
    build.add_argument("--repo", type=Path, default=ZOO_DIR, help=f"default {ZOO_DIR}")
    build.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"where corpora are rendered and reused (default {DEFAULT_WORK_DIR})",
    )
    build.add_argument("--rerender", action="store_true", help="render the corpus again")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from models.zoo.recipes import RECIPES, build, find_recipe

    args = _parser().parse_args(argv)
    refs = list(RECIPES) if args.which == "all" else [args.which]
    for ref in refs:
        try:
            target = build(
                find_recipe(ref),
                repo=args.repo,
                work_dir=args.work_dir,
                rerender=args.rerender,
                progress=not args.quiet,
            )
        except ContractError as exc:
            print(f"models.zoo build {ref}: {exc}", file=sys.stderr)
            return 2
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
