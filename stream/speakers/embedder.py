"""From audio to speaker embeddings: features, speech gate, ONNX embedding model.

Used wherever a whole clip is at hand (enrollment, ``tympan speakers identify``,
evaluation). The live worker gets window embeddings from its batched inference and
feeds them to :class:`stream.speakers.tracker.SpeakerTracker` instead; both paths
compute the same features for the same window because the FeatureSpec is frozen
and ``center=False`` makes features chunk-invariant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.errors import ModelError
from stream.features import offline
from stream.features.spec import FeatureSpec
from stream.inference.manifest import Manifest
from stream.inference.session import OnnxModel
from stream.roles import SPEECH_LABEL
from stream.speakers.vad import DEFAULT_VAD, VadConfig, is_speech_window
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
    speech: ``[shape=(n,)]`` whether the energy gate passed each window.
    """

    features: Float32
    spans: npt.NDArray[np.int64]
    speech: npt.NDArray[np.bool_]


def clip_windows(
    y: npt.ArrayLike, spec: FeatureSpec, *, vad: VadConfig = DEFAULT_VAD
) -> ClipWindows:
    """Cut a clip (already at ``spec.sr``) into the model windows the stream would see.

    Only full windows are kept (no padding): a padded tail is mostly silence and
    would be gated out anyway.
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
    speech = np.array(
        [is_speech_window(audio[a:b], spec.sr, config=vad) for a, b in spans], dtype=bool
    )
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


class SceneSpeechGate:
    """The scene model's ``speech`` probability as a second opinion on enrollment audio.

    The energy gate cannot hear the difference between speech and, say, a radio
    jingle with pauses; the scene model was trained to. When a scene model with a
    ``speech`` label is available, enrollment also requires that at least
    ``min_fraction`` of the clip's windows have ``p(speech) >= min_probability``.

    Parameters
    ----------
    model_dir : path
        A scene model directory (any FeatureSpec; features are computed for it).
    label : str
        The label that means speech (:data:`~stream.roles.SPEECH_LABEL`).
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        label: str = SPEECH_LABEL,
        min_probability: float = 0.5,
        min_fraction: float = 0.5,
    ) -> None:

        self.model = OnnxModel.load(model_dir, device="cpu")
        labels = self.model.manifest.labels
        if label not in labels:
            raise ModelError(
                f"{model_dir}: scene model has no {label!r} label (labels: {', '.join(labels)})"
            )
        self.column = labels.index(label)
        self.label = label
        self.min_probability = min_probability
        self.min_fraction = min_fraction

    @property
    def name(self) -> str:
        return f"{self.model.manifest.name}/{self.model.manifest.version}"

    def speech_fraction(self, y: npt.ArrayLike, sr: int) -> float:
        """Fraction of the clip's windows the scene model calls speech (0 when none)."""
        from stream.audio.resample import resample  # the worker's method, as for files

        spec = self.model.spec
        audio = np.asarray(y, dtype=np.float32)
        if sr != spec.sr:
            audio = resample(audio, sr, spec.sr)
        cut = clip_windows(audio, spec)
        if cut.features.shape[0] == 0:
            return 0.0
        probs = np.concatenate(
            [
                self.model.run(cut.features[i : i + 64]).probabilities[:, self.column]
                for i in range(0, cut.features.shape[0], 64)
            ]
        )
        return float(np.mean(probs >= self.min_probability))
