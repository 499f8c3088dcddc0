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
    groups: ``(group, glob)`` pairs, the glob relative to the extracted package. For
        speech a group is one voice, named by its language (these packages have one
        speaker per language); for music an empty group makes each track its own.
    content: one line for the model card.
    archive: a zip (``.pk3``) inside the package holding the audio, or empty.
    max_per_group: at most this many files of a group (a seeded choice), 0 for all.
    passes: how many times each speech file is used (in a new order each time).
    """

    package: str
    version: str
    licence: str
    label: str
    groups: tuple[tuple[str, str], ...]
    content: str
    archive: str = ""
    max_per_group: int = 0
    passes: int = 1


KTUBERLING = "usr/share/ktuberling/sounds"
# The KTuberling voices the real set reserves for training (the languages KLettres
# does not have). The four Serbian variants share one recording: one voice.
TRAINING_VOICES = ("ca", "el", "fi", "ga", "gl", "ro", "sl", "sr", "sv", "wa")
# Tux Paint's descriptions in languages the real set never evaluates (its recorders are
# other volunteers, but a language the evaluation has is left out all the same).
TUXPAINT_VOICES = ("be", "bg", "ca", "el", "ro")

SOURCES: tuple[TrainSource, ...] = (
    TrainSource(
        package="ktuberling-data",
        version="4:22.12.3-1",
        licence="GPL-2+",
        label="speech",
        groups=tuple((lang, f"{KTUBERLING}/{lang}/*") for lang in TRAINING_VOICES),
        content="object names spoken by native speakers, one voice per language "
        "(the 10 voices reserved for training)",
        passes=2,
    ),
    TrainSource(
        package="tuxpaint-stamps-default",
        version="2022.06.04-1",
        licence="GPL-2",
        label="speech",
        groups=tuple(
            (lang, f"usr/share/tuxpaint/stamps/**/*_desc_{lang}.ogg") for lang in TUXPAINT_VOICES
        ),
        content="spoken stamp descriptions recorded by volunteers (Bulgarian, Belarusian, "
        "Catalan, Greek, Romanian; 200 per language)",
        max_per_group=200,
    ),
    TrainSource(
        package="hyperrogue-music",
        version="12.0q-1",
        licence="CC-BY-SA-3.0 (music/*)",
        label="music",
        groups=(("", "usr/share/hyperrogue/music/*.ogg"),),
        content="produced game soundtrack (Ogg Vorbis; Shawn Parrotte, Lincoln Domina, "
        "Will Savino)",
    ),
    TrainSource(
        package="nexuiz-music",
        version="2.5.2-12",
        licence="GPL-2+",
        label="music",
        groups=(("", "sound/cdtracks/*.ogg"),),
        archive="usr/share/games/nexuiz/data/music.pk3",
        content="produced game soundtrack (Ogg Vorbis inside music.pk3)",
    ),
    TrainSource(
        package="planetblupi-music-ogg",
        version="1.14.2-3",
        licence="GPL-3+",
        label="music",
        groups=(("", "usr/share/planetblupi/music/*.ogg"),),
        content="produced game soundtrack (Ogg Vorbis)",
    ),
)


def check_disjoint(sources: tuple[TrainSource, ...], evaluation: Manifest) -> None:
    """Refuse a training source the evaluation set uses.

    Raises
    ------
    RealSetError
        A package the evaluation set reserves for evaluation (KTuberling aside), a
        KTuberling voice not reserved for training, or a voice of another package in a
        language the evaluation set has (its speaker could be one the set evaluates).
    """
    reserved = {lang for entry in evaluation.training for lang in entry.get("languages", ())}
    evaluated = {lang for item in evaluation.items for lang in item.language.split("+") if lang}
    for source in sources:
        declared = evaluation.sources.get(source.package)
        voices = {group for group, _ in source.groups} if source.label == "speech" else set()
        if source.package == "ktuberling-data":
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
        elif voices & evaluated:
            raise RealSetError(
                f"{source.package} voices {sorted(voices & evaluated)} speak languages the "
                "real set evaluates; their speakers could be the same people"
            )
