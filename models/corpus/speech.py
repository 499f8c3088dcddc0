"""Speech rendered with espeak-ng and festival, from sentences generated with a seed.

A :class:`Voice` is one synthetic speaker identity: engine, base voice, and the
settings that change how it sounds (espeak-ng variant, pitch, speed; for any
engine an optional sox pitch shift and tempo change).  Its ``identity`` string
is stable, so datasets, sidecars and speaker registries can refer to it.

Why both engines: espeak-ng (formant synthesis) gives hundreds of cheap, clearly
distinct identities; festival (diphone and HTS voices) sounds much more like a
recorded human, so a model trained on both does not just learn "formant buzz".
"""

from __future__ import annotations

import functools
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from models.corpus.channel import pitch_tempo, resample
from models.corpus.synth import SR
from models.corpus.tools import run_tool
from stream.errors import ToolError

Engine = Literal["espeak", "festival"]

FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")

# espeak-ng voices that read English text with their own accent.
ENGLISH_VOICES = (
    "en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip
# Variants that sound like people (the robot/novelty ones are left out).
HUMAN_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "croak", "whisper", "whisperf", "klatt", "klatt2", "klatt3", "klatt4", "grandpa",
    "Alex", "Andy", "Annie", "aunty", "belinda", "benjamin", "david", "ed", "edward",
    "john", "linda", "max", "michel", "paul", "quincy", "rob", "robert", "steph",
    "travis", "victor", "zac", "norbert", "shelby", "Andrea", "Alicia", "anika",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Voice:
    """One synthetic speaker.

    Attributes
    ----------
    engine: ``"espeak"`` or ``"festival"``.
    name: espeak-ng language voice (``"en-us"``) or festival voice (``"kal_diphone"``).
    variant: espeak-ng variant (``"m3"``, ``"f2"``, ``"croak"``) or ``None``.
    pitch: espeak-ng base pitch, 0–99.
    speed_wpm: espeak-ng speaking rate in words per minute.
    pitch_cents: sox pitch shift applied after synthesis (any engine).
    tempo: sox tempo factor applied after synthesis (any engine; festival's only rate knob).
    """

    engine: Engine
    name: str
    variant: str | None = None
    pitch: int = 50
    speed_wpm: int = 170
    pitch_cents: int = 0
    tempo: float = 1.0

    @property
    def identity(self) -> str:
        """Stable, filesystem-safe id, e.g. ``espeak-en-us-m3-p45-s160``."""
        if self.engine == "espeak":
            base = f"espeak-{self.name}-{self.variant or 'base'}-p{self.pitch}-s{self.speed_wpm}"
        else:
            base = "festival-" + self.name.removeprefix("cmu_us_").split("_")[0]
        if self.pitch_cents:
            base += f"-c{self.pitch_cents:+d}"
        if self.tempo != 1.0:
            base += f"-t{round(self.tempo * 100)}"
        return re.sub(r"[^A-Za-z0-9+\-]", "-", base)

    def to_json(self) -> dict[str, Any]:
        """Rendering settings for sidecars (``speakers.json``, demo timelines)."""
        return {"identity": self.identity, **asdict(self)}


@functools.cache
def espeak_variants() -> frozenset[str]:
    """Variant names espeak-ng knows (``espeak-ng --voices=variant``)."""
    out = run_tool(["espeak-ng", "--voices=variant"]).decode("utf-8", "replace")
    names = set()
    for line in out.splitlines()[1:]:
        m = re.search(r"!v/(\S+)", line)
        if m:
            names.add(m.group(1))
    return frozenset(names)


@functools.cache
def festival_voices() -> tuple[str, ...]:
    """Installed festival voices (directories under ``/usr/share/festival/voices``)."""
    if not FESTIVAL_VOICE_DIR.is_dir():
        return ()
    return tuple(sorted(p.name for p in FESTIVAL_VOICE_DIR.glob("*/*") if p.is_dir()))


def available_variants() -> tuple[str, ...]:
    """:data:`HUMAN_VARIANTS` that this espeak-ng installation has, in that order."""
    known = espeak_variants()
    return tuple(v for v in HUMAN_VARIANTS if v in known)


def render(voice: Voice, text: str, *, sr: int = SR) -> np.ndarray:
    """Synthesize ``text`` with ``voice``; float32 mono at ``sr``, edges trimmed.

    Raises
    ------
    ToolError
        The engine is missing (message names ``scripts/setup-system.sh``), the
        voice or variant does not exist, or the engine produced no audio.
    """
    with tempfile.TemporaryDirectory(prefix="tympan-speech-") as tmp:
        wav = Path(tmp) / "out.wav"
        if voice.engine == "espeak":
            _espeak(voice, text, wav)
        elif voice.engine == "festival":
            _festival(voice, text, wav, Path(tmp) / "text.txt")
        else:
            raise ValueError(f"speech engine {voice.engine!r} is not 'espeak' or 'festival'")
        y, file_sr = sf.read(wav, dtype="float32", always_2d=True)
    y = trim(resample(y.mean(axis=1), orig_sr=file_sr, target_sr=sr), sr=sr)
    if y.size == 0:
        raise ToolError(f"{voice.engine} rendered no audible speech for {voice.identity!r}")
    if voice.pitch_cents or voice.tempo != 1.0:
        y = pitch_tempo(y, sr=sr, cents=voice.pitch_cents, tempo=voice.tempo)
    return y


def _espeak(voice: Voice, text: str, wav: Path) -> None:
    name = voice.name
    if voice.variant is not None:
        if voice.variant not in espeak_variants():
            raise ToolError(f"espeak-ng has no variant {voice.variant!r} (voice {voice.identity})")
        name = f"{name}+{voice.variant}"
    run_tool(["espeak-ng", "-v", name, "-s", str(voice.speed_wpm), "-p", str(voice.pitch),
              "-a", "120", "-w", str(wav), text])  # fmt: skip


def _festival(voice: Voice, text: str, wav: Path, txt: Path) -> None:
    if voice.name not in festival_voices():
        raise ToolError(
            f"festival voice {voice.name!r} is not installed (have {list(festival_voices())}); "
            "install it with scripts/setup-system.sh"
        )
    txt.write_text(text + "\n", encoding="utf-8")
    run_tool(["text2wave", "-o", str(wav), "-eval", f"(voice_{voice.name})", str(txt)])


def trim(
    y: np.ndarray, *, sr: int = SR, threshold_db: float = -45.0, keep_s: float = 0.05
) -> np.ndarray:
    """Cut leading/trailing silence below ``threshold_db`` of the peak, keeping ``keep_s``."""
    if y.size == 0:
        return y
    peak = float(np.max(np.abs(y)))
    if peak == 0.0:
        return y[:0]
    loud = np.flatnonzero(np.abs(y) > peak * 10.0 ** (threshold_db / 20.0))
    keep = round(keep_s * sr)
    return y[max(0, loud[0] - keep) : loud[-1] + keep + 1].astype(np.float32)


# --- sentences -------------------------------------------------------------------------

_NAMES = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Frank",
    "Grace",
    "Hugo",
    "Irene",
    "James",
    "Keiko",
    "Liam",
    "Maria",
    "Noah",
    "Olga",
    "Peter",
    "Rosa",
    "Sam",
)
_COMPANIES = (
    "Northwind",
    "Acme Insurance",
    "Blue Harbor Bank",
    "City Energy",
    "Globex",
    "Summit Telecom",
    "Riverside Clinic",
    "Union Freight",
)
_OBJECTS = (
    "account",
    "invoice",
    "order",
    "parcel",
    "contract",
    "appointment",
    "payment",
    "card",
    "password",
    "subscription",
    "claim",
    "booking",
    "delivery",
    "refund",
)
_VERBS = (
    "check",
    "cancel",
    "change",
    "update",
    "confirm",
    "close",
    "renew",
    "move",
    "pay",
    "track",
    "review",
    "reschedule",
)
_TIMES = (
    "today",
    "tomorrow morning",
    "next week",
    "on Monday",
    "before Friday",
    "this afternoon",
    "at the end of the month",
    "as soon as possible",
)
_ADJS = (
    "new",
    "old",
    "wrong",
    "missing",
    "second",
    "last",
    "monthly",
    "urgent",
    "small",
    "blue",
    "quiet",
    "early",
    "broken",
    "large",
)
_NOUNS = (
    "train",
    "window",
    "garden",
    "letter",
    "office",
    "river",
    "kitchen",
    "meeting",
    "weather",
    "printer",
    "market",
    "road",
    "message",
    "computer",
    "station",
)
_PLACES = (
    "the city",
    "the airport",
    "the branch office",
    "the warehouse",
    "the station",
    "the north side",
    "the main street",
)
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_TEMPLATES = (
    "Hello, thank you for calling {company}, my name is {name}, how can I help you?",
    "I would like to {verb} my {obj} {time}.",
    "My {obj} number is {digits}.",
    "Could you please {verb} the {adj} {obj} for me?",
    "The {adj} {noun} near {place} was closed {time}.",
    "I called {time} about the {obj}, but nobody answered.",
    "Please hold the line while I {verb} your {obj}.",
    "Is it possible to {verb} the {obj} {time}?",
    "{name} said the {noun} would be ready {time}.",
    "We sent the {adj} {obj} to {place} {time}.",
    "Let me read that back to you: {digits}.",
    "Thank you, {name}. Your {obj} has been updated.",
    "The {noun} is {adj}, so we will {verb} it {time}.",
    "I am sorry, I did not catch that. Could you repeat the {obj} number?",
    "Yes, that is correct, the {adj} one, not the {adj2} one.",
)

# A few native sentences, so non-English espeak-ng voices speak their own language.
FOREIGN_SENTENCES: dict[str, tuple[str, ...]] = {
    "de": (
        "Guten Tag, wie kann ich Ihnen helfen?",
        "Ich möchte meine Rechnung prüfen.",
        "Einen Moment bitte, ich verbinde Sie.",
        "Die Lieferung kommt morgen früh.",
    ),
    "fr-fr": (
        "Bonjour, comment puis-je vous aider?",
        "Je voudrais changer mon rendez-vous.",
        "Un instant, s'il vous plaît.",
        "Votre commande est arrivée ce matin.",
    ),
    "es": (
        "Buenos días, ¿en qué puedo ayudarle?",
        "Quisiera cancelar mi pedido.",
        "Un momento, por favor.",
        "El paquete llegará el lunes.",
    ),
    "it": (
        "Buongiorno, come posso aiutarla?",
        "Vorrei controllare il mio conto.",
        "Attenda in linea, per favore.",
        "La consegna è prevista per domani.",
    ),
    "nl": (
        "Goedemiddag, waarmee kan ik u helpen?",
        "Ik wil mijn abonnement opzeggen.",
        "Een ogenblik geduld alstublieft.",
        "Uw bestelling is onderweg.",
    ),
    "pt-br": (
        "Bom dia, em que posso ajudar?",
        "Eu gostaria de pagar a minha conta.",
        "Um momento, por favor.",
        "O pedido chega amanhã.",
    ),
}


def sentence(rng: np.random.Generator, *, language: str = "en") -> str:
    """One random sentence (call-center and everyday phrasing), drawn with ``rng``."""
    if language in FOREIGN_SENTENCES:
        options = FOREIGN_SENTENCES[language]
        return options[int(rng.integers(len(options)))]

    def pick(words: tuple[str, ...]) -> str:
        return words[int(rng.integers(len(words)))]

    template = pick(_TEMPLATES)
    n_digits = int(rng.integers(4, 9))
    return template.format(
        company=pick(_COMPANIES), name=pick(_NAMES), obj=pick(_OBJECTS), verb=pick(_VERBS),
        time=pick(_TIMES), adj=pick(_ADJS), adj2=pick(_ADJS), noun=pick(_NOUNS),
        place=pick(_PLACES), digits=" ".join(pick(_DIGITS) for _ in range(n_digits)),
    )  # fmt: skip


def language_of(voice: Voice) -> str:
    """Which sentence list a voice should read (English for every ``en*`` voice)."""
    return voice.name if voice.engine == "espeak" and voice.name in FOREIGN_SENTENCES else "en"


def utterance(
    voice: Voice,
    rng: np.random.Generator,
    *,
    min_s: float,
    sr: int = SR,
    pause_s: tuple[float, float] = (0.15, 0.5),
) -> tuple[np.ndarray, list[str]]:
    """Render random sentences with ``voice`` until at least ``min_s`` seconds of audio.

    Returns the audio and the sentences spoken (the caller cuts it to length).
    """
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    while total < min_s * sr and len(texts) < 20:
        text = sentence(rng, language=language_of(voice))
        y = render(voice, text, sr=sr)
        if parts:
            gap = np.zeros(round(rng.uniform(*pause_s) * sr), dtype=np.float32)
            parts.append(gap)
            total += gap.size
        parts.append(y)
        texts.append(text)
        total += y.size
    return np.concatenate(parts), texts
