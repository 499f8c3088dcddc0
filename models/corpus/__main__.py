"""``python -m models.corpus TARGET --out DIR``: scene, instruments, solos, speakers, demo."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from models.corpus import build, solos
from models.corpus.packages import TrainingSourceError
from models.realset.sources import RealSetError
from stream.errors import ToolError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m models.corpus",
        description="Render tympan's synthetic audio corpus (espeak-ng, festival, "
        "fluidsynth, sox, numpy). 16 kHz mono WAV; deterministic for a seed.",
    )
    sub = p.add_subparsers(dest="target", required=True)

    def common(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--out", type=Path, required=True, help="output folder")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--jobs", type=int, default=2, help="parallel renders (default 2)")
        sp.add_argument("--quiet", action="store_true", help="no progress lines")
        return sp

    sp = common("scene", "speech/music/silence/tone/noise folders")
    sp.add_argument("--per-class", type=int, default=build.DEFAULT_PER_CLASS)
    sp = common("instruments", "multi-label instrument clips + labels.csv")
    sp.add_argument(
        "--clips",
        "--per-class",
        dest="clips",
        type=int,
        default=build.DEFAULT_CLIPS,
        help="number of clips (default 300)",
    )
    sp.add_argument("--duration-s", type=float, default=4.0)
    sp = common(
        "solos",
        "instrument solos from sampled and recorded real instruments + labels.csv "
        "(fetches soundfonts and recordings from Debian packages)",
    )
    sp.add_argument("--clips", type=int, default=solos.DEFAULT_SOLOS, help="number of clips")
    sp.add_argument("--recorded-share", type=float, default=0.1,
                    help="share of a tag's clips cut from GCompris' recording of it")  # fmt: skip
    sp.add_argument("--duo-share", type=float, default=0.2,
                    help="share of soundfont clips with a second instrument")  # fmt: skip
    sp.add_argument("--trio-share", type=float, default=0.0,
                    help="share of those with a third instrument")  # fmt: skip
    sp.add_argument("--freepats-share", type=float, default=0.0,
                    help="share of sampled clips played by Freepats (timidity)")  # fmt: skip
    for name in ("speakers", "speakers-heldout"):
        sp = common(name, "one folder per synthetic voice identity + speakers.json")
        sp.add_argument("--identities", type=int, default=build.DEFAULT_IDENTITIES)
        sp.add_argument(
            "--per-class",
            dest="utterances",
            type=int,
            default=build.DEFAULT_UTTERANCES,
            help="utterances per identity",
        )
        sp.add_argument(
            "--heldout",
            action="store_true",
            help="identities whose settings never occur in the training set",
        )
    sp = common("demo", "sample calls and music tracks with JSON timelines")
    sp.add_argument("--calls", type=int, default=build.DEFAULT_CALLS)
    sp.add_argument("--music", type=int, default=build.DEFAULT_MUSIC_TRACKS)
    sp.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="length of the calls and tracks relative to the default (25-39 s, 30 s)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Render one target; exit status 2 with the setup hint when a tool is missing."""
    args = _parser().parse_args(argv)
    progress = not args.quiet
    start = time.monotonic()
    try:
        if args.target == "scene":
            build.build_scene(
                args.out,
                seed=args.seed,
                per_class=args.per_class,
                jobs=args.jobs,
                progress=progress,
            )
        elif args.target == "instruments":
            build.build_instruments(
                args.out,
                seed=args.seed,
                clips=args.clips,
                duration_s=args.duration_s,
                jobs=args.jobs,
                progress=progress,
            )
        elif args.target == "solos":
            solos.build_solos(args.out, seed=args.seed, clips=args.clips, jobs=args.jobs,
                              progress=progress, recorded_share=args.recorded_share,
                              duo_share=args.duo_share,
                              trio_share=args.trio_share,
                              freepats_share=args.freepats_share)  # fmt: skip
        elif args.target in ("speakers", "speakers-heldout"):
            build.build_speakers(
                args.out,
                seed=args.seed,
                identities=args.identities,
                utterances=args.utterances,
                heldout=args.heldout or args.target == "speakers-heldout",
                jobs=args.jobs,
                progress=progress,
            )
        else:
            build.build_demo(
                args.out,
                seed=args.seed,
                calls=args.calls,
                music_tracks=args.music,
                scale=args.scale,
                jobs=args.jobs,
                progress=progress,
            )
    except (ToolError, TrainingSourceError, RealSetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if progress:
        name = "speakers-heldout" if getattr(args, "heldout", False) else args.target
        print(f"{name}: wrote {args.out} in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
