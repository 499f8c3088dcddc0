"""From audio to speaker embeddings: features, speech gate, ONNX embedding model, and
the label model's veto on enrollment audio that is not a voice.

Used wherever a whole clip is at hand (enrollment, ``tympan speakers identify``,
evaluation). The live worker gets window embeddings from its batched inference and
feeds them to :class:`stream.speakers.tracker.SpeakerTracker` instead; both paths
compute the same features for the same window because the FeatureSpec is frozen
and ``center=False`` makes features chunk-invariant.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.features import offline
from stream.features.spec import FeatureSpec
from stream.inference.manifest import Manifest
from stream.inference.session import OnnxModel
from stream.roles import ENROLLMENT_VETO_LABELS
from stream.speakers.calibration import CalibrationConfig, config_for_model
from stream.speakers.vad import DEFAULT_VAD, SileroVad, VadConfig, shared_model, window_speech
from stream.types import DeviceChoice, Float32


def clip_features(y: npt.ArrayLike, spec: FeatureSpec) -> Float32:
    """Features of a whole clip, ``[shape=(n_features, t)]``: the serving definition
    (:func:`stream.features.offline.features`, bit-identical to the streaming bank)."""
    return np.asarray(offline.features(np.asarray(y, dtype=np.float32), spec), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ClipWindows:
    """Model windows cut from one clip.

    Attributes
    ----------
    features: ``[shape=(n, n_features, frames_per_window, 1)]`` model input.
    spans: ``[shape=(n, 2)]`` sample offsets ``[start, end)`` of each window.
    speech: ``[shape=(n,)]`` whether the voice activity model hears speech in each window.
    """

    features: Float32
    spans: npt.NDArray[np.int64]
    speech: npt.NDArray[np.bool_]


def clip_windows(
    y: npt.ArrayLike,
    spec: FeatureSpec,
    *,
    vad: VadConfig = DEFAULT_VAD,
    vad_model: SileroVad | None = None,
) -> ClipWindows:
    """Cut a clip (already at ``spec.sr``) into the model windows the stream would see.

    Only full windows are kept (no padding): a padded tail is mostly silence and
    would be gated out anyway. ``vad_model`` (default: the shipped Silero VAD) scores
    the clip once, statefully, and each window is speech when ``vad.min_active`` of
    its 32 ms chunks are.
    """
    audio = np.asarray(y, dtype=np.float32)
    feats = clip_features(audio, spec)
    n_frames = feats.shape[1]
    fpw = spec.frames_per_window
    count = 0 if n_frames < fpw else 1 + (n_frames - fpw) // spec.hop_frames
    idx = np.arange(count)
    starts = idx * spec.hop_frames
    windows = np.stack([feats[:, s : s + fpw] for s in starts]) if count else None
    spans = np.array([spec.window_span(int(i)) for i in idx], dtype=np.int64).reshape(-1, 2)
    model = vad_model if vad_model is not None else shared_model()
    speech = window_speech(model.probabilities(audio, spec.sr), spans, spec.sr, config=vad)
    features = (
        windows[..., None].astype(np.float32)
        if windows is not None
        else np.zeros((0, *spec.input_shape), dtype=np.float32)
    )
    return ClipWindows(features=features, spans=spans, speech=speech)


def l2_normalize(x: npt.ArrayLike, *, axis: int = -1) -> Float32:
    """Unit-length rows (zero rows stay zero): cosine scoring needs unit vectors."""
    arr = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(arr, axis=axis, keepdims=True)
    return np.asarray(arr / np.maximum(norm, 1e-12), dtype=np.float32)


class SpeakerEmbedder:
    """The exported embedding model (:class:`~stream.inference.session.OnnxModel`).

    Parameters
    ----------
    model_dir : path
        ``<repo>/speaker-embed/<version>`` with ``model.onnx`` and ``manifest.json``.
    device : {"cpu", "cuda", "auto"}
        Where onnxruntime runs it.
    """

    def __init__(
        self, model_dir: Path | str, *, device: DeviceChoice = "cpu", intra_op_threads: int = 1
    ) -> None:

        self.model_dir = Path(model_dir)
        self.model = OnnxModel.load(
            self.model_dir, device=device, intra_op_threads=intra_op_threads
        )
        self.manifest: Manifest = self.model.manifest
        self.spec = self.manifest.feature_spec

    @property
    def calibration(self) -> CalibrationConfig:
        """How registries of this model are calibrated (its manifest's
        ``open_set_threshold`` for one-speaker registries)."""
        return config_for_model(self.manifest.metrics)

    @property
    def model_id(self) -> tuple[str, str]:
        """``(name, version)`` of the embedding model; registries are bound to it."""
        return self.manifest.name, self.manifest.version

    def embed_windows(self, features: npt.ArrayLike, *, batch: int = 256) -> Float32:
        """L2-normalized embeddings ``[shape=(n, d)]`` of feature windows ``[n, F, T, 1]``."""
        x = np.asarray(features, dtype=np.float32)
        if x.shape[0] == 0:
            dim = self.manifest.embedding_dim or 0
            return np.zeros((0, dim), dtype=np.float32)
        parts = [self.model.run(x[i : i + batch]).embedding for i in range(0, x.shape[0], batch)]
        return l2_normalize(np.concatenate(parts, axis=0))

    def embed_clip(self, y: npt.ArrayLike, *, vad: VadConfig = DEFAULT_VAD) -> Float32:
        """Embeddings of the speech windows of a clip at ``spec.sr`` (``[n_speech, d]``)."""
        cut = clip_windows(y, self.spec, vad=vad)
        return self.embed_windows(cut.features[cut.speech])


@dataclass(frozen=True, slots=True)
class SceneVerdict:
    """What the label model hears in a clip, for :class:`SceneVeto`.

    Attributes
    ----------
    windows: number of model windows in the clip.
    label: the non-voice label heard most often (``None`` when no window is one).
    fraction: share of all windows confidently heard as any non-voice label.
    vetoed: whether ``fraction`` reaches the veto's ``min_fraction``.
    """

    windows: int
    label: str | None
    fraction: float
    vetoed: bool


class SceneVeto:
    """The label model as a veto on enrollment audio that is plainly not a voice.

    The voice activity model hears a singer in a song as a voice; the label model
    hears the song as music. Enrollment is refused when at least ``min_fraction`` of
    the clip's windows are confidently (``p >= min_probability``, top label) one of
    ``labels`` (music). It never
    requires the model to hear *speech*: a voice the model was not trained on (a
    whisper comes out as ``noise``) is still a voice, so the veto only speaks up
    for sounds that are never one.

    Parameters
    ----------
    model_dir : path
        A label model directory (any FeatureSpec; features are computed for it).
    labels : collection of str
        The labels that veto (:data:`~stream.roles.ENROLLMENT_VETO_LABELS`); those the
        model does not have are ignored, so a model with none of them vetoes nothing.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        labels: Collection[str] = ENROLLMENT_VETO_LABELS,
        min_probability: float = 0.5,
        min_fraction: float = 0.5,
    ) -> None:

        self.model = OnnxModel.load(model_dir, device="cpu")
        names = self.model.manifest.labels
        self.columns = {names.index(label): label for label in sorted(labels) if label in names}
        self.min_probability = min_probability
        self.min_fraction = min_fraction

    @property
    def name(self) -> str:
        return f"{self.model.manifest.name}/{self.model.manifest.version}"

    def hear(self, y: npt.ArrayLike, sr: int) -> SceneVerdict:
        """What the model hears in a clip at ``sr`` (resampled to the model's rate)."""
        from stream.audio.resample import resample  # the worker's method, as for files

        spec = self.model.spec
        audio = np.asarray(y, dtype=np.float32)
        if sr != spec.sr:
            audio = resample(audio, sr, spec.sr)
        cut = clip_windows(audio, spec)
        n = int(cut.features.shape[0])
        if n == 0 or not self.columns:
            return SceneVerdict(n, None, 0.0, False)
        probs = np.concatenate(
            [self.model.run(cut.features[i : i + 64]).probabilities for i in range(0, n, 64)]
        )
        top = np.argmax(probs, axis=1)
        sure = probs[np.arange(n), top] >= self.min_probability
        counts = {col: int(np.sum(sure & (top == col))) for col in self.columns}
        col = max(counts, key=lambda c: counts[c])
        fraction = sum(counts.values()) / n
        label = self.columns[col] if counts[col] else None
        return SceneVerdict(n, label, fraction, fraction >= self.min_fraction)
