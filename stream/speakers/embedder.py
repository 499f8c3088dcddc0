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
from stream.features.spec import FeatureSpec
from stream.inference.manifest import Manifest, load_manifest
from stream.speakers.vad import DEFAULT_VAD, VadConfig, is_speech_window

FloatArray = npt.NDArray[np.float32]


def clip_features(y: npt.ArrayLike, spec: FeatureSpec) -> FloatArray:
    """Features of a whole clip, ``[shape=(n_features, t)]``, exactly as ``spec`` says.

    Delegates to :func:`stream.features.offline.features` (the serving definition)
    and only falls back to the same librosa formula while that module is absent.
    """
    audio = np.asarray(y, dtype=np.float32)
    try:
        from stream.features import offline
    except ImportError:
        return _librosa_features(audio, spec)
    return np.asarray(offline.features(audio, spec), dtype=np.float32)


def _librosa_features(y: FloatArray, spec: FeatureSpec) -> FloatArray:
    import librosa

    if y.shape[0] < spec.win_length:
        return np.zeros((spec.n_features, 0), dtype=np.float32)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=spec.sr,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        win_length=spec.win_length,
        window=spec.window,
        center=False,
        power=spec.power,
        n_mels=spec.n_mels,
        fmin=spec.fmin,
        fmax=spec.fmax,
        htk=spec.htk,
        norm=spec.norm,
    )
    if spec.log == "db":
        logmel = librosa.power_to_db(mel, ref=spec.ref, amin=spec.amin, top_db=None)
    else:
        logmel = np.log(mel + spec.log_offset)
    if spec.kind == "mfcc":
        import scipy.fft

        logmel = scipy.fft.dct(logmel, axis=0, type=spec.dct_type, norm="ortho")[: spec.n_mfcc]
    return np.asarray(logmel, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ClipWindows:
    """Model windows cut from one clip.

    Attributes
    ----------
    features: ``[shape=(n, n_features, frames_per_window, 1)]`` model input.
    spans: ``[shape=(n, 2)]`` sample offsets ``[start, end)`` of each window.
    speech: ``[shape=(n,)]`` whether the energy gate passed each window.
    """

    features: FloatArray
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


def l2_normalize(x: npt.ArrayLike, *, axis: int = -1) -> FloatArray:
    """Unit-length rows (zero rows stay zero): cosine scoring needs unit vectors."""
    arr = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(arr, axis=axis, keepdims=True)
    return np.asarray(arr / np.maximum(norm, 1e-12), dtype=np.float32)


class SpeakerEmbedder:
    """The exported embedding model, run with onnxruntime on CPU.

    Parameters
    ----------
    model_dir : path
        ``<repo>/speaker-embed/<version>`` with ``model.onnx`` and ``manifest.json``.
    """

    def __init__(self, model_dir: Path | str, *, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.manifest: Manifest = load_manifest(self.model_dir)
        self.spec = self.manifest.feature_spec
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        path = self.model_dir / self.manifest.model_file
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: onnxruntime cannot load the model: {exc}") from exc
        self._input = self.manifest.input.name
        self._output = self.manifest.output("embedding").name

    @property
    def model_id(self) -> tuple[str, str]:
        """``(name, version)`` of the embedding model; registries are bound to it."""
        return self.manifest.name, self.manifest.version

    def embed_windows(self, features: npt.ArrayLike, *, batch: int = 256) -> FloatArray:
        """L2-normalized embeddings ``[shape=(n, d)]`` of feature windows ``[n, F, T, 1]``."""
        x = np.asarray(features, dtype=np.float32)
        if x.shape[0] == 0:
            dim = self.manifest.embedding_dim or 0
            return np.zeros((0, dim), dtype=np.float32)
        parts = [
            self._session.run([self._output], {self._input: x[i : i + batch]})[0]
            for i in range(0, x.shape[0], batch)
        ]
        return l2_normalize(np.concatenate(parts, axis=0))

    def embed_clip(self, y: npt.ArrayLike, *, vad: VadConfig = DEFAULT_VAD) -> FloatArray:
        """Embeddings of the speech windows of a clip at ``spec.sr`` (``[n_speech, d]``)."""
        cut = clip_windows(y, self.spec, vad=vad)
        return self.embed_windows(cut.features[cut.speech])
