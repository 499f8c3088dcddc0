"""Waveform augmentation applied before features: room, microphone, gain, noise, time
shift, telephony.

Why on the waveform: every change then reaches the model through the one feature
frontend serving uses, so an augmented window is a window serving could really
see. The telephony round trip (resample to 8 kHz, G.711 μ-law encode/decode,
resample back) is what a call-center stream goes through before it reaches the
worker; training on it makes a 16 kHz model robust to narrow-band, companded audio.

Augmentation is offline and seeded: each training file gets ``copies`` extra
versions drawn once from a ``numpy.random.Generator``, so a run is reproducible and
feature extraction happens once per copy, not once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TELEPHONY_SR = 8000


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """What each augmented copy of a training file may go through.

    Attributes
    ----------
    copies: augmented versions per training file (0 disables augmentation).
    gain_db: uniform range of the gain applied to a copy.
    noise_snr_db: uniform range of the SNR of added noise, or ``None``.
    noise_colours: the noise's colour, drawn among these (``white``, ``pink``,
        ``brown``): a room's rumble and a microphone's hiss are not white.
    acoustic_labels: the labels of sounds that reach a call through the air, the only
        ones the room and microphone steps apply to (empty: every label). Why: a
        ring-back tone, a fax tone or an open line's floor is made on the line, never
        in a room, and a room or microphone on them teaches what serving never sees.
    level_dbfs: range of the active level (:func:`active_level_dbfs`) a copy of a
        ``level_labels`` file is set to, drawn uniformly in place of ``gain_db``, or
        ``None``. Why: a talker far from the handset or behind a low-gain line is 20 dB
        quieter than a recorded voice-over, and a gain relative to a studio recording
        never reaches that level; a level drawn on an absolute scale does, whatever
        level the source was recorded at.
    level_labels: the labels ``level_dbfs`` applies to (the others keep ``gain_db``:
        an open line's floor or a tone has a level of its own).
    floor_prob: probability that a copy of a ``floor_labels`` file gets a room's noise
        floor (:func:`noise_floor`): low-frequency rumble, mains hum or pink noise,
        ``floor_below_db`` under its active level. Why: a microphone in a room never
        hears digital silence between words; it hears air conditioning, traffic and
        hum, mostly below 250 Hz, and a window that is mostly that floor around a few
        syllables is still someone speaking.
    floor_below_db: range of how far under the active level the floor lies.
    floor_labels: the labels the floor applies to.
    max_shift_s: largest circular time shift, in seconds.
    telephony_prob: probability that a copy goes through the 8 kHz μ-law round trip.
    room_prob: probability that a copy is played in a room first (a synthetic room
        impulse response, :func:`room`).
    mic_prob: probability that a copy is heard through a random microphone and
        loudspeaker response (:func:`microphone`).
    phone_band_prob: probability that a telephony copy is also cut to the telephone
        band (300–3400 Hz) before G.711, as a handset and the network do.

    The three last ones default to 0: with them, older recipes draw exactly the same
    random numbers and so rebuild the same models.
    """

    copies: int = 0
    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_snr_db: tuple[float, float] | None = (15.0, 40.0)
    max_shift_s: float = 0.25
    telephony_prob: float = 0.0
    room_prob: float = 0.0
    mic_prob: float = 0.0
    phone_band_prob: float = 0.0
    noise_colours: tuple[str, ...] = ("white",)
    acoustic_labels: tuple[str, ...] = ()
    level_dbfs: tuple[float, float] | None = None
    level_labels: tuple[str, ...] = ()
    floor_prob: float = 0.0
    floor_below_db: tuple[float, float] = (15.0, 40.0)
    floor_labels: tuple[str, ...] = ()


def augment(
    y: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    config: AugmentConfig,
    *,
    labels: tuple[str, ...] = (),
) -> np.ndarray:
    """One augmented copy of ``y``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float waveform in [-1, 1].
    sr : int
        Sample rate of ``y``.
    rng : np.random.Generator
        Source of every random choice (seeded by the caller).
    config : AugmentConfig
        Ranges of each transformation.
    labels : tuple of str
        The file's labels (for ``config.acoustic_labels``).

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32, same length and rate, clipped to [-1, 1].
    """
    out = np.asarray(y, dtype=np.float32)
    acoustic = not config.acoustic_labels or bool(set(labels) & set(config.acoustic_labels))
    if config.room_prob > 0 and rng.random() < config.room_prob and acoustic:
        out = room(out, sr, rng)
    if config.mic_prob > 0 and rng.random() < config.mic_prob and acoustic:
        out = microphone(out, sr, rng)
    if config.max_shift_s > 0 and out.size > 1:
        limit = min(int(config.max_shift_s * sr), out.size - 1)
        out = np.roll(out, int(rng.integers(-limit, limit + 1)))
    if config.level_dbfs is not None and set(labels) & set(config.level_labels):
        out = at_level(out, float(rng.uniform(*config.level_dbfs)))
    else:
        out = out * np.float32(10.0 ** (rng.uniform(*config.gain_db) / 20.0))
    floored = config.floor_prob > 0 and bool(set(labels) & set(config.floor_labels))
    if floored and rng.random() < config.floor_prob:
        out = noise_floor(out, sr, rng, below_db=float(rng.uniform(*config.floor_below_db)))
    if config.noise_snr_db is not None:
        snr_db = float(rng.uniform(*config.noise_snr_db))
        colours = config.noise_colours
        colour = colours[int(rng.integers(len(colours)))] if len(colours) > 1 else colours[0]
        out = add_noise(out, snr_db=snr_db, rng=rng, colour=colour)
    if rng.random() < config.telephony_prob:
        band = config.phone_band_prob > 0 and rng.random() < config.phone_band_prob
        out = telephony(out, sr, phone_band=band)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def active_level_dbfs(y: np.ndarray, *, frame: int = 160) -> float:
    """The RMS level, in dBFS, of the louder half of ``y``'s frames (10 ms at 16 kHz).

    Why the louder half: the pauses between words would otherwise pull a voice's level
    down by how much it pauses, not by how loud it speaks (the idea of ITU-T P.56's
    active speech level, without its hangover). ``-inf`` for digital silence.
    """
    n = y.size // frame * frame
    if n == 0:
        n, frame = y.size, max(y.size, 1)
    power = np.mean(np.square(np.asarray(y[:n], dtype=np.float64)).reshape(-1, frame), axis=1)
    loud = np.sort(power)[power.size // 2 :]
    mean = float(np.mean(loud)) if loud.size else 0.0
    return 10.0 * np.log10(mean) if mean > 0 else float("-inf")


def at_level(y: np.ndarray, level_dbfs: float) -> np.ndarray:
    """``y`` scaled so its :func:`active_level_dbfs` is ``level_dbfs`` (silence stays)."""
    have = active_level_dbfs(y)
    if not np.isfinite(have):
        return np.asarray(y, dtype=np.float32)
    return (y * np.float32(10.0 ** ((level_dbfs - have) / 20.0))).astype(np.float32)


FLOOR_KINDS = ("rumble", "hum", "pink")


def noise_floor(y: np.ndarray, sr: int, rng: np.random.Generator, *, below_db: float) -> np.ndarray:
    """``y`` over a room's stationary floor ``below_db`` under its active level.

    The floor is one of :data:`FLOOR_KINDS`: rumble (brown noise low-passed at
    80–250 Hz: ventilation, traffic, a handled microphone), mains hum (50 or 60 Hz and
    its first harmonics, over a little rumble) or pink noise. Nothing is added to
    digital silence.

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32, same length.
    """
    from scipy.signal import butter, sosfilt

    level = active_level_dbfs(y)
    if not np.isfinite(level) or y.size < 2:
        return np.asarray(y, dtype=np.float32)
    kind = FLOOR_KINDS[int(rng.integers(len(FLOOR_KINDS)))]
    white = rng.normal(0.0, 1.0, size=y.size)
    if kind == "pink":
        floor = _coloured(white, exponent=0.5)
    else:
        cutoff = float(rng.uniform(80.0, 250.0))
        floor = sosfilt(butter(2, cutoff, btype="lowpass", fs=sr, output="sos"), white)
        floor = _coloured(floor, exponent=1.0)
        if kind == "hum":
            t = np.arange(y.size) / sr
            mains = float(rng.choice([50.0, 60.0]))
            phases = rng.uniform(0.0, 2 * np.pi, 3)
            hum = sum(
                (0.6**k) * np.sin(2 * np.pi * mains * (k + 1) * t + phases[k]) for k in range(3)
            )
            floor = 0.3 * floor + hum / float(np.sqrt(np.mean(hum**2)))
    floor /= float(np.sqrt(np.mean(floor**2))) or 1.0
    gain = 10.0 ** ((level - below_db) / 20.0)
    return (y + gain * floor).astype(np.float32)


def add_noise(
    y: np.ndarray, *, snr_db: float, rng: np.random.Generator, colour: str = "white"
) -> np.ndarray:
    """Add noise ``snr_db`` below the signal's power (nothing if ``y`` is silent).

    ``colour`` shapes its spectrum: ``white`` (flat), ``pink`` (−3 dB per octave) or
    ``brown`` (−6 dB per octave).
    """
    power = float(np.mean(np.square(y, dtype=np.float64)))
    if power <= 0.0:
        return y
    sigma = np.sqrt(power / 10.0 ** (snr_db / 10.0))
    noise = rng.normal(0.0, 1.0, size=y.shape)
    if colour != "white":
        noise = _coloured(noise, exponent={"pink": 0.5, "brown": 1.0}[colour])
    return (y + sigma * noise).astype(np.float32)


def _coloured(white: np.ndarray, *, exponent: float) -> np.ndarray:
    """``white`` with its amplitude spectrum divided by ``f**exponent``, no DC, unit power."""
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = np.inf  # no DC offset: a microphone's coupling removes it
    shaped = np.fft.irfft(spectrum / f**exponent, n=white.size)
    return shaped / (float(np.sqrt(np.mean(shaped**2))) or 1.0)


def room(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``y`` as a microphone a little way off hears it in a room.

    The impulse response is the direct path plus exponentially decaying noise
    (reverberation time 0.15–0.9 s, a direct-to-reverberant ratio of 0–15 dB), the
    usual statistical model of a diffuse late field; enough to teach that a voice or
    a piece stays what it is in a kitchen, an office or a hall.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float waveform at ``sr``.
    sr : int
        Rate of ``y``.
    rng : np.random.Generator
        Source of the room's parameters.

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32 with the same RMS as ``y``.
    """
    from scipy.signal import fftconvolve

    rt60 = float(rng.uniform(0.15, 0.9))
    t = np.arange(int(rt60 * sr)) / sr
    tail = rng.normal(0.0, 1.0, t.size) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * sr)] = 0.0  # the first reflections arrive after the direct sound
    drr_db = float(rng.uniform(0.0, 15.0))
    tail *= np.sqrt(1.0 / (np.sum(tail**2) * 10.0 ** (drr_db / 10.0)))
    tail[0] = 1.0
    wet = fftconvolve(np.asarray(y, dtype=np.float64), tail)[: y.size]
    return _same_rms(wet, y)


def microphone(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``y`` through a random microphone/loudspeaker response.

    A high-pass (60–400 Hz: small capsules and speakers lose the bass), a low-pass
    (3.5 kHz to Nyquist) and a ±6 dB resonance somewhere in 500–4000 Hz, then mild
    saturation half of the time (a hot preamp).

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32 with the same RMS as ``y``.
    """
    from scipy.signal import butter, sosfilt

    nyquist = sr / 2.0
    low = float(rng.uniform(60.0, 400.0))
    high = float(min(rng.uniform(3500.0, nyquist), nyquist * 0.95))
    out = sosfilt(butter(2, [low, high], btype="bandpass", fs=sr, output="sos"), y)
    centre = float(rng.uniform(500.0, 4000.0))
    bump = sosfilt(
        butter(
            2, [centre / 1.3, min(centre * 1.3, nyquist * 0.95)], "bandpass", fs=sr, output="sos"
        ),
        out,
    )
    out = out + (10.0 ** (rng.uniform(-6.0, 6.0) / 20.0) - 1.0) * bump
    if rng.random() < 0.5:
        drive = float(rng.uniform(1.5, 4.0))
        peak = float(np.max(np.abs(out))) or 1.0
        out = np.tanh(drive * out / peak) * peak / drive
    return _same_rms(out, y)


def _same_rms(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    want = float(np.sqrt(np.mean(np.square(like, dtype=np.float64))))
    have = float(np.sqrt(np.mean(np.square(out, dtype=np.float64))))
    scale = want / have if have > 0 else 0.0
    return (out * scale).astype(np.float32)


TELEPHONE_BAND_HZ = (300.0, 3400.0)


def telephony(y: np.ndarray, sr: int, *, phone_band: bool = False) -> np.ndarray:
    """The 8 kHz G.711 μ-law round trip a call-center stream goes through.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono float waveform at ``sr``.
    sr : int
        Rate of ``y`` and of the result.
    phone_band : bool
        Also cut to the telephone band (300–3400 Hz) at 8 kHz, as a handset does.

    Returns
    -------
    np.ndarray [shape=(n,)]
        float32 at ``sr``: band-limited to 4 kHz (to 300–3400 Hz with
        ``phone_band``) and quantized to 8-bit μ-law.
    """
    import soxr

    narrow = y if sr == TELEPHONY_SR else soxr.resample(y, sr, TELEPHONY_SR, quality="HQ")
    if phone_band:
        from scipy.signal import butter, sosfilt

        sos = butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONY_SR, output="sos")
        narrow = sosfilt(sos, narrow).astype(np.float32)
    narrow = mulaw_round_trip(narrow)
    wide = narrow if sr == TELEPHONY_SR else soxr.resample(narrow, TELEPHONY_SR, sr, quality="HQ")
    return _fit_length(np.asarray(wide, dtype=np.float32), y.size)


def mulaw_round_trip(y: np.ndarray) -> np.ndarray:
    """Float samples after 16-bit quantization and a G.711 μ-law encode/decode."""
    from stream.audio.g711 import mulaw_decode, mulaw_encode

    pcm = np.clip(np.round(np.asarray(y, dtype=np.float64) * 32768.0), -32768, 32767)
    return (mulaw_decode(mulaw_encode(pcm.astype(np.int16))) / 32768.0).astype(np.float32)


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if y.size >= n:
        return y[:n]
    return np.pad(y, (0, n - y.size))
