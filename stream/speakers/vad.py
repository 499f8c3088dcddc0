"""Voice activity: which audio carries speech, decided by Silero VAD on onnxruntime.

A speaker embedding of silence, a ring tone or hold music is noise that drags an
identity toward whoever it happens to resemble, so enrollment refuses clips with too
little speech (:func:`check_speech`), identification and the stream tracker embed
only windows that hold speech (:func:`window_speech`, :class:`VadBank`).

The model is Silero VAD (MIT), trained on recorded speech in many languages, noise
and music; ``models/zoo/vad/silero`` holds the ONNX file copied from the
``silero-vad`` wheel (see its ``MODEL_CARD.md``). At 16 kHz it scores chunks of 512
samples (32 ms) seeing 64 samples of the previous chunk, and carries a recurrent
state ``[2, 128]`` from chunk to chunk; audio at any other rate is resampled to
16 kHz first, so a telephone stream (8 kHz μ-law, upsampled by the conditioner) is
judged on what the worker hears.

Per stream the state is a :class:`VadContext` (recurrent state, the last 64
samples, samples waiting for a full chunk, recent chunk probabilities with their
sample offsets); :meth:`VadBank.push` advances every stream of a batch in lockstep,
one onnxruntime call per chunk position for all streams together (rows are
independent, so a batch of streams gives the same probabilities as one at a time).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.errors import ContractError
from stream.types import Float32

SR = 16_000
CHUNK = 512  # samples scored at a time at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees
STATE_SHAPE = (2, 128)
HISTORY_CHUNKS = 256  # chunk probabilities kept per stream (~8 s): covers a window's span


def default_model_path() -> Path:
    """``models/zoo/vad/silero/silero_vad.onnx`` of this checkout (data, not code)."""
    return (
        Path(__file__).resolve().parents[2]
        / "models"
        / "zoo"
        / "vad"
        / "silero"
        / ("silero_vad.onnx")
    )


@dataclass(frozen=True, slots=True)
class VadConfig:
    """How chunk probabilities become decisions.

    Attributes
    ----------
    threshold: a 32 ms chunk is speech when the model's probability reaches this
        (Silero's own default, 0.5).
    min_active: a window is speech when at least this share of its chunks is.
    min_speech_s: enrollment needs at least this much speech (chunks over threshold).
    pad_s: audio kept after the chunk that completes the speech
        :func:`collect_speech` gathers: a syllable's decay scores under the
        threshold but belongs to the voice.
    """

    threshold: float = 0.5
    min_active: float = 0.3
    min_speech_s: float = 2.0
    pad_s: float = 0.1


DEFAULT_VAD = VadConfig()


@dataclass(frozen=True, slots=True)
class SpeechCheck:
    """Verdict of :func:`check_speech` on a whole clip, with the measured figures."""

    ok: bool
    reason: str
    speech_s: float
    duration_s: float
    min_speech_s: float

    def describe(self) -> str:
        """One sentence with the numbers, for error messages."""
        return (
            f"{self.reason} (the voice activity model hears {self.speech_s:.1f} s of speech "
            f"in {self.duration_s:.1f} s of audio; enrollment needs {self.min_speech_s:g} s)"
        )


class SileroVad:
    """The Silero VAD ONNX model on onnxruntime (CPU, one thread by default).

    Raises
    ------
    ContractError
        The file is missing or is not a model with Silero's ``input``/``state``/``sr``
        inputs (names the path): a worker refuses to start rather than gate nothing.
    """

    def __init__(self, path: Path | str | None = None, *, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else default_model_path()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for bad files
            raise ContractError(f"voice activity model {self.path}: cannot load: {exc}") from exc
        names = {i.name for i in self.session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise ContractError(
                f"voice activity model {self.path}: inputs {sorted(names)} are not Silero "
                "VAD's ['input', 'sr', 'state']"
            )

    def step(self, chunks: Float32, states: Float32) -> tuple[Float32, Float32]:
        """One chunk for each of ``n`` streams.

        Parameters
        ----------
        chunks : np.ndarray [shape=(n, CONTEXT + CHUNK)]
            Each stream's previous 64 samples then its next 512, at 16 kHz.
        states : np.ndarray [shape=(2, n, 128)]

        Returns
        -------
        probabilities : np.ndarray [shape=(n,)]
        states : np.ndarray [shape=(2, n, 128)]
        """
        out, state = self.session.run(
            None,
            {
                "input": np.ascontiguousarray(chunks, dtype=np.float32),
                "state": np.ascontiguousarray(states, dtype=np.float32),
                "sr": np.array(SR, dtype=np.int64),
            },
        )
        return np.asarray(out, np.float32).reshape(-1), np.asarray(state, np.float32)

    def probabilities(self, y: npt.ArrayLike, sr: int) -> Float32:
        """Speech probability of each 32 ms chunk of a clip (``[shape=(ceil(n/512),)]``
        at 16 kHz; the last chunk is padded with zeros)."""
        bank = VadBank(self, history_chunks=None)
        bank.push({"clip": _at_16k(y, sr)}, last=True)
        return bank.context("clip").probabilities()


@dataclass(slots=True)
class VadContext:
    """One stream's voice activity state (what :class:`VadBank` keeps per stream).

    Attributes
    ----------
    state: the recurrent state ``[2, 128]``.
    tail: the last ``CONTEXT`` samples scored.
    pending: samples not yet making a full chunk.
    position: stream samples (16 kHz) consumed into chunks so far; chunk ``k`` of
        the history covers ``[ends[k] - CHUNK, ends[k])``.
    probs, ends: recent chunk probabilities and the sample offset each chunk ends at.
    """

    state: Float32 = field(default_factory=lambda: np.zeros(STATE_SHAPE, np.float32))
    tail: Float32 = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    pending: Float32 = field(default_factory=lambda: np.zeros(0, np.float32))
    position: int = 0
    probs: deque[float] = field(default_factory=deque)
    ends: deque[int] = field(default_factory=deque)

    def probabilities(self) -> Float32:
        """The kept chunk probabilities, oldest first."""
        return np.asarray(self.probs, dtype=np.float32)

    def trim(self, *, before: int) -> None:
        """Forget the probabilities of chunks ending at or before sample ``before``."""
        while self.ends and self.ends[0] <= before:
            self.ends.popleft()
            self.probs.popleft()

    def speech_share(self, start: int, end: int, threshold: float) -> float | None:
        """Share of the chunks that start at most half a chunk before ``start`` and end
        by ``end`` that are speech; ``None`` when none has been scored (or it was
        forgotten). Chunks ending after ``end`` never count, so the answer does not
        depend on how the stream's samples were split into pushes."""
        ends = np.asarray(self.ends, dtype=np.int64)
        inside = (ends - CHUNK // 2 >= start) & (ends <= end)
        if not np.any(inside):
            return None
        probs = np.asarray(self.probs, dtype=np.float32)[inside]
        return float(np.mean(probs >= threshold))


class VadBank:
    """Voice activity for many streams, advanced together in batched model calls.

    Parameters
    ----------
    model : SileroVad
    history_chunks : int or None
        Chunk probabilities kept per stream (``None``: all, for whole clips or for a
        caller that trims them itself, :meth:`VadContext.trim`).
    """

    def __init__(self, model: SileroVad, *, history_chunks: int | None = HISTORY_CHUNKS) -> None:
        self.model = model
        self.history_chunks = history_chunks
        self._streams: dict[str, VadContext] = {}

    def context(self, stream_id: str) -> VadContext:
        """The stream's context (created empty on first use)."""
        ctx = self._streams.get(stream_id)
        if ctx is None:
            ctx = self._streams[stream_id] = VadContext(
                probs=deque(maxlen=self.history_chunks), ends=deque(maxlen=self.history_chunks)
            )
        return ctx

    def push(self, chunks: Mapping[str, Float32], *, last: bool = False) -> int:
        """Append 16 kHz samples per stream and score every full chunk; returns the
        number of chunks scored. ``last`` pads each stream's remainder to a chunk
        (end of a clip or stream)."""
        ready: list[tuple[VadContext, Float32]] = []
        for stream_id, samples in chunks.items():
            ctx = self.context(stream_id)
            buf = np.concatenate([ctx.pending, np.asarray(samples, np.float32).reshape(-1)])
            if last and buf.size % CHUNK:
                buf = np.concatenate([buf, np.zeros(CHUNK - buf.size % CHUNK, np.float32)])
            full = buf.size - buf.size % CHUNK
            ctx.pending = buf[full:]
            if full:
                ready.append((ctx, buf[:full].reshape(-1, CHUNK)))
        return self._score(ready)

    def _score(self, ready: list[tuple[VadContext, Float32]]) -> int:
        """Lockstep over chunk positions: call ``k`` scores chunk ``k`` of every stream
        that has one, in one batch."""
        scored = 0
        depth = max((blocks.shape[0] for _, blocks in ready), default=0)
        for k in range(depth):
            rows = [(ctx, blocks[k]) for ctx, blocks in ready if blocks.shape[0] > k]
            x = np.stack([np.concatenate([ctx.tail, chunk]) for ctx, chunk in rows])
            states = np.stack([ctx.state for ctx, _ in rows], axis=1)
            probs, new_states = self.model.step(x, states)
            for i, (ctx, chunk) in enumerate(rows):
                ctx.state = new_states[:, i, :].copy()
                ctx.tail = chunk[-CONTEXT:].copy()
                ctx.position += CHUNK
                ctx.probs.append(float(probs[i]))
                ctx.ends.append(ctx.position)
            scored += len(rows)
        return scored

    def reset(self, stream_id: str, *, at_sample: int) -> None:
        """Start the stream afresh at ``at_sample`` (after a gap the frontend resets)."""
        self._streams.pop(stream_id, None)
        self.context(stream_id).position = at_sample

    def forget(self, stream_id: str) -> None:
        """Drop a closed stream's state."""
        self._streams.pop(stream_id, None)

    def __len__(self) -> int:
        return len(self._streams)


def check_speech(
    y: npt.ArrayLike, sr: int, *, model: SileroVad, config: VadConfig = DEFAULT_VAD
) -> SpeechCheck:
    """Decide whether a whole clip holds enough speech to enroll a voice.

    Returns
    -------
    SpeechCheck
        ``ok`` and a snake_case ``reason``: ``"speech"``, ``"no_speech"`` (silence,
        tones, music, noise: no chunk over the threshold) or ``"too_little_speech"``.
    """
    audio = np.asarray(y, dtype=np.float32)
    return _verdict(model.probabilities(audio, sr), audio.size, sr, config)


def _verdict(probs: Float32, n_samples: int, sr: int, config: VadConfig) -> SpeechCheck:
    """:func:`check_speech`'s verdict from a clip's chunk probabilities."""
    speech_s = float(np.sum(probs >= config.threshold)) * CHUNK / SR
    duration_s = n_samples / float(sr) if sr > 0 else 0.0
    if speech_s == 0.0:
        reason = "no_speech"
    elif speech_s < config.min_speech_s:
        reason = "too_little_speech"
    else:
        reason = "speech"
    return SpeechCheck(reason == "speech", reason, speech_s, duration_s, config.min_speech_s)


@dataclass(frozen=True, slots=True)
class CollectedSpeech:
    """Where a clip's first ``max_speech_s`` of speech ends (:func:`collect_speech`).

    Attributes
    ----------
    end: sample offset (at the clip's rate) ``pad_s`` after the chunk at which the
        speech chunks add up to ``max_speech_s`` (the clip's length when they never
        do; 0 without speech).
    check: the verdict on the whole clip (:func:`check_speech`'s figures).
    """

    end: int
    check: SpeechCheck


def collect_speech(
    y: npt.ArrayLike,
    sr: int,
    *,
    model: SileroVad,
    max_speech_s: float,
    config: VadConfig = DEFAULT_VAD,
) -> CollectedSpeech:
    """How much of a clip holds its first ``max_speech_s`` of speech, for enrollment.

    Recorded words and letters often sit in seconds of silence: KLettres' Danish
    voice speaks ~1 s in its first 20 s of audio and ~17 s in three minutes. Asking
    for a fixed length of *audio* refuses such a voice; reading on until
    ``max_speech_s`` of speech is at hand enrolls it from the same files. The
    audio up to :attr:`CollectedSpeech.end` is then windowed as the worker windows a
    stream (pauses included, windows gated by :func:`window_speech`), so enrolled
    and identified embeddings come from the same kind of windows.

    Returns
    -------
    CollectedSpeech
        ``check`` is :func:`check_speech` on the whole clip (refusals keep their
        reasons).
    """
    audio = np.asarray(y, dtype=np.float32).reshape(-1)
    probs = model.probabilities(audio, sr)
    check = _verdict(probs, audio.size, sr, config)
    heard_s = np.cumsum(probs >= config.threshold) * (CHUNK / SR)
    k = int(np.searchsorted(heard_s, max_speech_s - 1e-9))
    if k >= heard_s.size:
        return CollectedSpeech(audio.size if check.speech_s > 0 else 0, check)
    end = ((k + 1) * CHUNK + round(config.pad_s * SR)) * sr / SR
    return CollectedSpeech(min(round(end), audio.size), check)


def window_speech(
    probabilities: Float32,
    spans: npt.NDArray[np.int64],
    sr: int,
    *,
    config: VadConfig = DEFAULT_VAD,
) -> npt.NDArray[np.bool_]:
    """Which windows of a clip are speech, from the clip's chunk probabilities.

    Parameters
    ----------
    probabilities : np.ndarray [shape=(n_chunks,)]
        :meth:`SileroVad.probabilities` of the clip.
    spans : np.ndarray [shape=(n_windows, 2)]
        Window ``[start, end)`` sample offsets at ``sr``.
    """
    mids = (np.arange(probabilities.size) * CHUNK + CHUNK // 2) * (sr / SR)
    speech = probabilities >= config.threshold
    out = np.zeros(spans.shape[0], dtype=bool)
    for i, (start, end) in enumerate(spans):
        inside = (mids >= start) & (mids < end)
        out[i] = bool(np.any(inside)) and float(np.mean(speech[inside])) >= config.min_active
    return out


def _at_16k(y: npt.ArrayLike, sr: int) -> Float32:
    audio = np.asarray(y, dtype=np.float32).reshape(-1)
    if sr == SR:
        return audio
    from stream.audio.resample import resample

    return resample(audio, sr, SR)


_MODELS: dict[Path, SileroVad] = {}


def shared_model(path: Path | str | None = None) -> SileroVad:
    """One loaded model per path for the process (CLI tools load it once)."""
    key = Path(path) if path is not None else default_model_path()
    if key not in _MODELS:
        _MODELS[key] = SileroVad(key)
    return _MODELS[key]


__all__: list[Any] = [
    "DEFAULT_VAD",
    "CollectedSpeech",
    "SileroVad",
    "SpeechCheck",
    "VadBank",
    "VadConfig",
    "VadContext",
    "check_speech",
    "collect_speech",
    "shared_model",
    "window_speech",
]
