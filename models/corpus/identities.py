"""The speaker-embedding model's identities: who speaks, what they read, over which channel.

An identity is a :class:`~models.corpus.speech.Voice` (the corpus's one description of a
synthetic speaker), rendered with :func:`models.corpus.speech.render` and passed through
the corpus's channels (:func:`models.corpus.channel.telephone` is the real 8 kHz G.711
channel, with the runtime's tables), so the speaker model trains and is evaluated on the
same audio the scene corpus and the worker see.

Identities are split by espeak-ng *variant*: the variants of :func:`heldout_voices`
never appear in :func:`training_voices`, and are rendered with pitches, speeds and pitch
shifts training never used, so held-out figures measure generalization to unseen voices,
not memorization. The channel of each passage is drawn at random and is *not* part of
the identity, so an embedding learns to ignore it (enroll on a headset, identify on a
call).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

import numpy as np
import soundfile as sf

from models.corpus.channel import add_noise, telephone
from models.corpus.speech import Voice, render
from models.corpus.synth import SR, white_noise

Channel = Literal["wide", "telephony", "noisy"]

_ESPEAK_VARIANTS = (  # noqa: SIM905
    "Alex Alicia Andrea Andy Annie AnxiousAndy Denis Diogo Gene Gene2 Henrique Hugo "
    "Jacky Lee Marco Mario Michael Mike Nguyen RicishayMax RicishayMax2 RicishayMax3 "
    "Storm Tweaky adam anika antonio aunty belinda benjamin boris caleb david ed "
    "edward edward2 f1 f2 f3 f4 f5 grandma grandpa gustave iven iven2 iven3 iven4 "
    "john kaukovalta klatt klatt2 klatt3 klatt4 klatt5 klatt6 linda m1 m2 m3 m4 m5 m6 "
    "m7 m8 marcelo max michel miguel norbert pablo paul pedro quincy rob robert "
    "robosoft robosoft2 robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 "
    "sandro shelby steph steph2 steph3 travis victor zac"
).split()
# Every 6th variant (sorted) is held out of training: its voices are never seen.
_HELDOUT_VARIANTS = tuple(sorted(_ESPEAK_VARIANTS, key=str.lower)[3::6])
_TRAIN_VARIANTS = tuple(v for v in _ESPEAK_VARIANTS if v not in _HELDOUT_VARIANTS)
_LANGS = ("en", "en-us", "en-gb-scotland", "de", "nl", "es", "it")

WORDS = (  # noqa: SIM905
    "the a one two three four five six seven eight nine ten account number please "
    "hello thank you for calling my name is and I would like to check order status "
    "payment card balance today tomorrow morning evening help with problem internet "
    "phone line service cancel change address email password reset wait minute "
    "transfer agent support billing question answer sorry about that okay right sure "
    "great fine good bad music weather river mountain garden window kitchen yellow "
    "purple orange green blue table chair paper pencil coffee water bread butter "
    "quickly slowly always never sometimes because before after during between over "
    "under people family friend teacher doctor student city country market station "
    "travel train ticket airport hotel dinner lunch breakfast holiday weekend month"
).split()


def training_voices() -> list[Voice]:
    """Identities the model trains on: two settings of each training variant, and festival.

    Returns
    -------
    list of Voice
        Espeak-ng voices (two pitches per variant, languages and speeds cycling) and
        festival's ``kal_diphone`` at five sox pitch shifts.
    """
    out = []
    for i, variant in enumerate(_TRAIN_VARIANTS):
        for j, pitch in enumerate((25, 70)):
            lang = _LANGS[(i + 3 * j) % len(_LANGS)]
            speed = (140, 175)[(i + j) % 2]
            out.append(Voice("espeak", lang, variant, pitch, speed))
    for cents in (-500, -250, 0, 250, 500):
        out.append(Voice("festival", "kal_diphone", pitch_cents=cents))
    return out


def heldout_voices() -> list[Voice]:
    """Identities never seen in training: held-out variants, unseen pitch, speed and shift.

    Returns
    -------
    list of Voice
        One espeak-ng voice per held-out variant and ``kal_diphone`` shifted further
        than any training identity.
    """
    out = []
    for i, variant in enumerate(_HELDOUT_VARIANTS):
        pitch = (40, 55)[i % 2]
        lang = ("en", "en-us")[i % 2]
        out.append(Voice("espeak", lang, variant, pitch, 158, pitch_cents=100))
    out.append(Voice("festival", "kal_diphone", pitch_cents=-750))
    out.append(Voice("festival", "kal_diphone", pitch_cents=750))
    return out


def sentences(n: int, *, seed: int, words: int = 22) -> list[str]:
    """``n`` pseudo-sentences of random common words: varied phonetic content, no meaning.

    Parameters
    ----------
    n : int
        How many sentences.
    seed : int
        Seed of the word choice (the same seed gives the same sentences).
    words : int, optional
        Words per sentence (22 is about 7 s of espeak-ng speech).

    Returns
    -------
    list of str
    """
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=words)) + "." for _ in range(n)]


def apply_channel(y: np.ndarray, channel: Channel, rng: np.random.Generator) -> np.ndarray:
    """Pass a passage through one channel, at a random level.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float audio at 16 kHz.
    channel : {"wide", "telephony", "noisy"}
        ``wide``: the level only; ``telephony``: the corpus's 8 kHz G.711 μ-law
        telephone channel (:func:`models.corpus.channel.telephone`), back at 16 kHz;
        ``noisy``: white noise 20–30 dB under the speech.
    rng : np.random.Generator
        Draws the level (peak 0.7 scaled by -12..0 dB) and the noise.

    Returns
    -------
    np.ndarray [shape=(m,), dtype=float32]
        The passage as the model will hear it, within [-1, 1].
    """
    gain = 10 ** (rng.uniform(-12, 0) / 20)
    y = y / max(float(np.max(np.abs(y))), 1e-6) * 0.7 * gain
    if channel == "telephony":
        y = telephone(y, sr=SR, law="mulaw")
    elif channel == "noisy":
        noise = white_noise(y.size / SR, rng=rng, sr=SR)
        y = add_noise(y, noise, snr_db=float(rng.uniform(20, 30)))
    return np.clip(y, -1, 1).astype(np.float32)


def pick_channel(rng: np.random.Generator) -> Channel:
    """A channel for one training passage: 45 % wide, 35 % telephony, 20 % noisy."""
    picked = rng.choice(np.array(["wide", "telephony", "noisy"]), p=[0.45, 0.35, 0.2]).item()
    return cast(Channel, picked)


def render_heldout(
    out_dir: Path,
    *,
    n_impostors: int = 5,
    enroll_s: float = 20.0,
    test_clips: int = 4,
    test_channels: Sequence[Channel] = ("wide", "telephony", "noisy"),
    test_words: int = 16,
    seed: int = 2026,
) -> dict[str, list[str]]:
    """Write the evaluation layout of ``tympan speakers evaluate`` for unseen voices.

    Parameters
    ----------
    out_dir : Path
        Gets ``enroll/<identity>/enroll.wav`` (at most ``enroll_s`` of clean speech per
        enrolled voice) and ``test/<identity>/NN-<channel>.wav``.
    n_impostors : int, optional
        How many held-out voices, drawn at random, are only in ``test/``: never
        enrolled, they should come back ``unknown``.
    enroll_s : float, optional
        Longest enrollment, in seconds.
    test_clips : int, optional
        Test clips per voice, other sentences than the enrollment's.
    test_channels : sequence of str, optional
        Channels the test clips cycle through.
    test_words : int, optional
        Words per test clip: 16 is about 5 s, 6 about 2 s.
    seed : int, optional
        Seed of the texts, the impostors and the channels' levels and noise.

    Returns
    -------
    dict
        ``{"enrolled": [...], "impostors": [...]}``, identities sorted.
    """
    voices = heldout_voices()
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(voices)))
    impostors = {voices[i].identity for i in order[:n_impostors]}
    for i, voice in enumerate(voices):
        texts = sentences(3, seed=seed * 7919 + i, words=16)
        texts += sentences(test_clips, seed=seed * 7919 + 1000 + i, words=test_words)
        if voice.identity not in impostors:
            enroll = np.concatenate([render(voice, t) for t in texts[:3]])
            enroll = apply_channel(enroll[: int(enroll_s * SR)], "wide", rng)
            _write(out_dir / "enroll" / voice.identity / "enroll.wav", enroll)
        for j, text in enumerate(texts[3:]):
            channel = test_channels[j % len(test_channels)]
            clip = apply_channel(render(voice, text), channel, rng)
            _write(out_dir / "test" / voice.identity / f"{j:02d}-{channel}.wav", clip)
    enrolled = sorted(v.identity for v in voices if v.identity not in impostors)
    return {"enrolled": enrolled, "impostors": sorted(impostors)}


def _write(path: Path, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, SR, subtype="PCM_16")
