"""The Debian packages the instrument corpus reads: soundfonts sampled from real
instruments, recorded drum kits and recorded instrument phrases.

Each is pinned (package, version, licence) and fetched like the real-recording set's
sources (``apt-get download`` + ``dpkg-deb -x``; nothing is installed) into
``~/.cache/tympan/trainsources``. None may be a source the real-recording
*evaluation* set reads (``models/realset/manifest.json``): :func:`check_disjoint`
refuses to build otherwise, so a model is never trained on the audio it is judged on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.realset.sources import Source, fetch_package, load_manifest


class TrainingSourceError(RuntimeError):
    """A training package is missing, unreadable or reserved for evaluation."""


@dataclass(frozen=True, slots=True)
class TrainingPackage:
    """One Debian package the corpus reads, and the file in it that matters."""

    package: str
    version: str
    licence: str
    path: str
    content: str

    @property
    def source(self) -> Source:
        """As the real-set fetcher takes it."""
        return Source(self.package, self.version, self.licence, "training", self.content)


SOUNDFONTS = (
    TrainingPackage(
        "fluid-soundfont-gm",
        "3.1-5.3",
        "MIT",
        "usr/share/sounds/sf2/FluidR3_GM.sf2",
        "Fluid R3 General MIDI soundfont (sampled instruments)",
    ),
    TrainingPackage(
        "musescore-general-soundfont",
        "0.2.1-1",
        "MIT (parts public domain / CC0)",
        "usr/share/sounds/sf3/MuseScore_General_Full.sf3",
        "MuseScore General soundfont (sampled instruments; Splendid Grand piano, VSCO strings)",
    ),
    TrainingPackage(
        "timgm6mb-soundfont",
        "1.3-5",
        "GPL-2",
        "usr/share/sounds/sf2/TimGM6mb.sf2",
        "TimGM6mb General MIDI soundfont (small sampled set)",
    ),
    TrainingPackage(
        "freepats",
        "20060219-4",
        "GPL-2+ (with an exception for compositions using the patches)",
        "etc/timidity/freepats.cfg",
        "Freepats GUS patches sampled from real instruments (rendered by timidity)",
    ),
)
DRUMKITS = TrainingPackage(
    "hydrogen-drumkits",
    "2017.09.19~dfsg-1",
    "GPL-2 / GPL-2+ / CC-BY-3.0 / CC-BY-SA-3.0 / CC0 (per kit, see its copyright file)",
    "usr/share/hydrogen/data/drumkits",
    "recorded acoustic drum kits (one file per hit and velocity layer)",
)
RECORDINGS = TrainingPackage(
    "gcompris-qt-data",
    "3.1-2",
    "GPL-3+ (drum_kit.ogg: CC Sampling Plus 1.0)",
    "usr/share/gcompris-qt/rcc/instruments.rcc",
    "recorded instrument phrases of GCompris' instruments activity",
)
ALL = (*SOUNDFONTS, DRUMKITS, RECORDINGS)


def default_cache() -> Path:
    """``~/.cache/tympan/trainsources``: the packages' .deb files and extracted trees."""
    return Path.home() / ".cache" / "tympan" / "trainsources"


def check_disjoint(packages: tuple[TrainingPackage, ...] = ALL) -> None:
    """Refuse any package the real-recording evaluation set reads.

    Raises
    ------
    TrainingSourceError
        Names the package and the manifest that reserves it for evaluation.
    """
    evaluation = load_manifest().sources
    clash = sorted(p.package for p in packages if p.package in evaluation)
    if clash:
        raise TrainingSourceError(
            f"packages {clash} are sources of the real-recording evaluation set "
            "(models/realset/manifest.json); training on them would judge a model on "
            "audio it learnt"
        )


def locate(package: TrainingPackage, cache: Path) -> Path:
    """The package's file on disk, fetched into ``cache`` when needed.

    The system copy (``/`` + path) is used when the installed package has the pinned
    version's file, as ``fluid-soundfont-gm`` is for fluidsynth.
    """
    system = Path("/") / package.path
    if package.package == "fluid-soundfont-gm" and system.exists():
        return system
    root = fetch_package(package.source, cache)
    found = root / package.path
    if not found.exists():
        raise TrainingSourceError(
            f"{package.package} {package.version} has no {package.path} (in {root})"
        )
    return found
