"""The Debian packages the scene classifier trains on, and the check that keeps them
apart from the real-recording evaluation set.

Each :class:`TrainSource` pins a package version, states its licence (read from the
package's ``copyright`` file) and says which of its files hold which scene label.
:func:`check_disjoint` refuses any package the evaluation set reserves for evaluation,
and any KTuberling voice outside the languages it reserves for training: training and
evaluation share neither a source file nor a speaker.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.realset.sources import Manifest, RealSetError


@dataclass(frozen=True, slots=True)
class TrainSource:
    """One pinned package and where its labelled audio lies.

    Attributes
    ----------
    package, version: what ``apt-get download`` fetches.
    licence: the licence of the audio files, from ``usr/share/doc/<package>/copyright``.
    label: the scene label of every file listed.
    folders: folders (relative to the extracted package) whose audio files are used;
        for KTuberling one folder per voice (language).
    archive: a zip (``.pk3``) inside the package holding the audio, or empty.
    content: one line for the model card.
    """

    package: str
    version: str
    licence: str
    label: str
    folders: tuple[str, ...]
    content: str
    archive: str = ""


KTUBERLING = "usr/share/ktuberling/sounds"
# The KTuberling voices the real set reserves for training (the languages KLettres
# does not have). The four Serbian variants share one recording: one voice.
TRAINING_VOICES = ("ca", "el", "fi", "ga", "gl", "ro", "sl", "sr", "sv", "wa")

SOURCES: tuple[TrainSource, ...] = (
    TrainSource(
        package="ktuberling-data",
        version="4:22.12.3-1",
        licence="GPL-2+",
        label="speech",
        folders=tuple(f"{KTUBERLING}/{lang}" for lang in TRAINING_VOICES),
        content="object names spoken by native speakers, one voice per language "
        "(the 10 voices reserved for training)",
    ),
    TrainSource(
        package="hyperrogue-music",
        version="12.0q-1",
        licence="CC-BY-SA-3.0 (music/*)",
        label="music",
        folders=("usr/share/hyperrogue/music",),
        content="produced game soundtrack (Ogg Vorbis; Shawn Parrotte, Lincoln Domina, "
        "Will Savino)",
    ),
    TrainSource(
        package="nexuiz-music",
        version="2.5.2-12",
        licence="GPL-2+",
        label="music",
        folders=("sound/cdtracks",),
        archive="usr/share/games/nexuiz/data/music.pk3",
        content="produced game soundtrack (Ogg Vorbis inside music.pk3)",
    ),
    TrainSource(
        package="planetblupi-music-ogg",
        version="1.14.2-3",
        licence="GPL-3+",
        label="music",
        folders=("usr/share/planetblupi/music",),
        content="produced game soundtrack (Ogg Vorbis)",
    ),
)


def check_disjoint(sources: tuple[TrainSource, ...], evaluation: Manifest) -> None:
    """Refuse a training source the evaluation set uses.

    Raises
    ------
    RealSetError
        A package the evaluation set reserves for evaluation (KTuberling aside), or a
        KTuberling folder whose language is not reserved for training.
    """
    reserved = {lang for entry in evaluation.training for lang in entry.get("languages", ())}
    for source in sources:
        declared = evaluation.sources.get(source.package)
        if source.package == "ktuberling-data":
            voices = {folder.rsplit("/", 1)[-1] for folder in source.folders}
            if not voices <= reserved:
                raise RealSetError(
                    f"ktuberling-data voices {sorted(voices - reserved)} are not reserved "
                    f"for training by the real set (reserved: {sorted(reserved)})"
                )
        elif declared is not None:
            raise RealSetError(
                f"package {source.package!r} is part of the real evaluation set "
                f"(role {declared.role!r}); it cannot be trained on"
            )
