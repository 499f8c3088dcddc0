"""The speaker embedding model: voices we render ourselves, a CNN, an ONNX export.

Recipe (``python -m models.speaker train --repo models/zoo --version 1``):

1. **Voices.** The identities of :mod:`models.corpus.identities`: corpus
   :class:`~models.corpus.speech.Voice` settings (an espeak-ng variant at a base pitch
   and speed, or festival's ``kal_diphone`` shifted by sox), split by *variant* so the
   held-out voices are never seen in training.
2. **Channels.** Every passage goes through one corpus channel at random -- clean
   16 kHz, the 8 kHz G.711 μ-law telephone channel (the runtime's tables), or noisy at
   20–30 dB SNR -- at a random gain; the channel is *not* part of the identity, so the
   embedding learns to ignore it (enroll on a headset, identify on a call).
3. **Windows.** 1 s windows (``SPEAKER_SPEC``: 40 log-mels up to 4 kHz, so
   telephony and wideband audio see the same band) that the voice activity model
   of :mod:`stream.speakers.vad` (Silero VAD) hears as speech.
4. **Network.** Per-band mean removal over the window (cepstral mean
   normalization, a layer inside the network, so serving feeds raw features), three
   Conv-BN-ReLU blocks, mean+std pooling over time, a 128-d embedding that is
   L2-normalized, and a cosine (additive-margin softmax) head over training
   identities. The margin pushes same-speaker embeddings together on the unit
   sphere, which is what cosine scoring of unseen voices needs.
5. **Export.** ``probabilities`` (softmax over training identities) and
   ``embedding`` go through :func:`exporters.export.export_model`: tf2onnx, the
   Keras/ONNX parity gate, golden windows and the manifest.

TensorFlow is imported inside the functions that train, so the dataset helpers import
without it. The shipped ``models/zoo/speaker-embed/1`` was trained before the voices
moved into the corpus (its labels are the old identity names and its training
``data_hash`` is :data:`SHIPPED_DATA_HASH`); retraining records :func:`data_hash`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.corpus.identities import (
    WORDS,
    apply_channel,
    heldout_voices,
    pick_channel,
    render_heldout,
    sentences,
    training_voices,
)
from models.corpus.speech import Voice, render
from stream.features.spec import FeatureSpec
from stream.roles import SPEAKER_MODEL

log = logging.getLogger(__name__)

SR = 16000
#: ``data_hash`` of the shipped models/zoo/speaker-embed/1, trained by this recipe before
#: its voices, renderer and telephone channel were folded into models/corpus/.
SHIPPED_DATA_HASH = "946a8a64dd8a34e4"

SPEAKER_SPEC = FeatureSpec(
    sr=SR,
    n_fft=512,
    win_length=400,
    hop_length=160,
    n_mels=40,
    fmin=60.0,
    fmax=4000.0,
    window_seconds=1.0,
    hop_seconds=0.5,
)

# -- dataset --------------------------------------------------------------------------------


def voice_windows(
    voice: Voice, texts: Sequence[str], *, seed: int, spec: FeatureSpec = SPEAKER_SPEC
) -> np.ndarray:
    """Speech windows of ``voice`` reading ``texts``.

    Each text is one passage through a random channel; windows failing the energy
    gate (pauses, trailing silence) are dropped, exactly as the tracker would.

    Parameters
    ----------
    voice : Voice
        The identity.
    texts : sequence of str
        One passage each.
    seed : int
        Seed of the channels and their levels.
    spec : FeatureSpec, optional
        The speaker model's features.

    Returns
    -------
    np.ndarray [shape=(n, n_mels, frames, 1)]
    """
    from stream.speakers.embedder import clip_windows

    rng = np.random.default_rng(seed)
    parts = []
    for text in texts:
        y = apply_channel(render(voice, text), pick_channel(rng), rng)
        cut = clip_windows(y, spec)
        parts.append(cut.features[cut.speech])
    return np.concatenate(parts, axis=0)


def build_dataset(
    voices: Sequence[Voice], *, passages: int, seed: int, threads: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Windows and integer identity labels for ``voices`` (``passages`` texts each).

    Rendering is subprocess-bound (espeak-ng, sox), so a couple of threads help.

    Parameters
    ----------
    voices : sequence of Voice
        The identities; label ``i`` is ``voices[i]``.
    passages : int
        Texts per identity.
    seed : int
        Seed of the texts and channels.
    threads : int, optional
        Identities rendered at once.

    Returns
    -------
    x : np.ndarray [shape=(n, n_mels, frames, 1)]
    y : np.ndarray [shape=(n,), dtype=int64]
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> np.ndarray:
        texts = sentences(passages, seed=seed * 100_003 + i)
        return voice_windows(voices[i], texts, seed=seed + i)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        xs = list(pool.map(one, range(len(voices))))
    ys = [np.full(x.shape[0], i, dtype=np.int64) for i, x in enumerate(xs)]
    return np.concatenate(xs), np.concatenate(ys)


def cached_dataset(
    voices: Sequence[Voice], *, passages: int, seed: int, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`build_dataset`, memoized in ``cache_dir`` (npz, no pickle) by content hash.

    Parameters
    ----------
    voices, passages, seed
        As :func:`build_dataset`.
    cache_dir : Path or None
        Where rendered windows are kept; ``None`` renders every time.

    Returns
    -------
    x, y : np.ndarray
        As :func:`build_dataset`.
    """
    if cache_dir is None:
        return build_dataset(voices, passages=passages, seed=seed)
    key = hashlib.sha256(
        json.dumps([[asdict(v) for v in voices], passages, seed, WORDS]).encode()
    ).hexdigest()[:16]
    path = cache_dir / f"speaker-windows-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["x"], data["y"]
    x, y = build_dataset(voices, passages=passages, seed=seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)
    return x, y


# -- network --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeakerNetConfig:
    """Sizes and training settings of the embedding network."""

    filters: tuple[int, ...] = (16, 32, 64)
    embedding_dim: int = 128
    scale: float = 30.0
    margin: float = 0.2
    epochs: int = 14
    batch_size: int = 64
    learning_rate: float = 2e-3
    passages: int = 6
    seed: int = 7


def build_network(input_shape: tuple[int, int, int], n_speakers: int, cfg: SpeakerNetConfig):  # type: ignore[no-untyped-def]
    """The embedding network, as a serving and a training model that share weights.

    Parameters
    ----------
    input_shape : tuple of int
        ``(n_mels, frames, 1)`` of ``SPEAKER_SPEC``.
    n_speakers : int
        Training identities (the cosine head's classes).
    cfg : SpeakerNetConfig
        Sizes.

    Returns
    -------
    serving_model : keras.Model
        Features to ``{"probabilities", "embedding"}``.
    train_model : keras.Model
        Features to the cosines against each class centre, for the additive-margin
        loss of :func:`am_softmax_loss`.
    """
    import keras
    from keras import layers, ops

    inputs = keras.Input(shape=input_shape, name="features")
    # Cepstral mean normalization: remove each band's mean over the window, so a
    # channel's fixed spectral tilt (telephone band, gain) does not look like a voice.
    x = layers.Lambda(lambda t: (t - ops.mean(t, axis=2, keepdims=True)) / 20.0, name="cmn")(inputs)
    for i, filters in enumerate(cfg.filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        if i < 2:
            x = layers.MaxPooling2D((2, 2), name=f"pool{i}")(x)
    # [b, F', T', C] → [b, T', F'*C]; statistics pooling over time.
    x = layers.Permute((2, 1, 3), name="time_first")(x)
    x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]), name="frames")(x)
    mean = layers.Lambda(lambda t: ops.mean(t, axis=1), name="stat_mean")(x)
    std = layers.Lambda(lambda t: ops.sqrt(ops.var(t, axis=1) + 1e-5), name="stat_std")(x)
    x = layers.Concatenate(name="stats")([mean, std])
    x = layers.Dense(cfg.embedding_dim, name="embed_dense")(x)
    x = layers.BatchNormalization(name="embed_bn")(x)
    embedding = layers.UnitNormalization(name="embedding")(x)
    cosine = _cosine_head(n_speakers)(embedding)
    probabilities = layers.Softmax(name="probabilities")(
        layers.Rescaling(cfg.scale, name="scaled")(cosine)
    )
    serving = keras.Model(
        inputs, {"probabilities": probabilities, "embedding": embedding}, name="speaker_embed"
    )
    train = keras.Model(inputs, cosine, name="speaker_embed_train")
    return serving, train


def _cosine_head(n_speakers: int):  # type: ignore[no-untyped-def]
    """A layer whose outputs are cosines between the (unit) input and class centres."""
    import keras
    from keras import ops

    class CosineHead(keras.layers.Layer):  # type: ignore[misc]
        def build(self, input_shape):  # type: ignore[no-untyped-def]
            self.centres = self.add_weight(
                shape=(input_shape[-1], n_speakers), initializer="glorot_uniform", name="centres"
            )

        def call(self, e):  # type: ignore[no-untyped-def]
            c = self.centres
            c = c / ops.sqrt(ops.sum(c * c, axis=0, keepdims=True) + 1e-12)
            return ops.matmul(e, c)

    return CosineHead(name="cosine")


def am_softmax_loss(scale: float, margin: float, n_classes: int):  # type: ignore[no-untyped-def]
    """Additive-margin softmax: cross-entropy on ``scale * (cos - margin * onehot)``.

    Parameters
    ----------
    scale : float
        Logit scale of the unit-sphere cosines.
    margin : float
        Subtracted from the true class's cosine: same-speaker embeddings are pulled
        closer than plain softmax would.
    n_classes : int
        Training identities.

    Returns
    -------
    callable
        A Keras loss ``(y_true, cosine) -> per-sample loss``.
    """
    from keras import ops

    def loss(y_true, cosine):  # type: ignore[no-untyped-def]
        onehot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), n_classes)
        logits = scale * (cosine - margin * onehot)
        logp = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
        return -ops.sum(onehot * logp, axis=-1)

    return loss


# -- training and export --------------------------------------------------------------------


def train(
    repo: Path,
    *,
    cfg: SpeakerNetConfig | None = None,
    version: str = "1",
    cache_dir: Path | None = None,
    max_voices: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Render the training voices, train, export to ``<repo>/speaker-embed/<version>``.

    The export goes through :func:`exporters.export.export_model` (tf2onnx, parity
    gate, golden windows, manifest), like every tympan model; ``report.json`` next
    to it records the training run.

    Parameters
    ----------
    repo : Path
        The model repository.
    cfg : SpeakerNetConfig, optional
        Network and training settings (default: the shipped model's).
    version : str, optional
        Version directory to write.
    cache_dir : Path, optional
        Reuse rendered windows (:func:`cached_dataset`).
    max_voices : int, optional
        Train on the first identities only (smoke runs).
    overwrite : bool, optional
        Replace an existing version.

    Returns
    -------
    Path
        The model directory.
    """
    import keras

    from exporters.export import export_model
    from models.architectures import count_macs

    cfg = cfg or SpeakerNetConfig()
    keras.utils.set_random_seed(cfg.seed)
    voices = training_voices()[:max_voices]
    t0 = time.monotonic()
    x, y = cached_dataset(voices, passages=cfg.passages, seed=cfg.seed, cache_dir=cache_dir)
    render_s = time.monotonic() - t0
    log.info("rendered %d windows of %d voices in %.0f s", len(x), len(voices), render_s)
    serving, train_model = build_network(SPEAKER_SPEC.input_shape, len(voices), cfg)
    steps = cfg.epochs * int(np.ceil(len(x) / cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=0.05)
    train_model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=am_softmax_loss(cfg.scale, cfg.margin, len(voices)),
    )
    t1 = time.monotonic()
    history = train_model.fit(
        x, y, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, verbose=2
    )
    summary = {
        "recipe": "models.speaker",
        "data_hash": data_hash(),
        "voices": len(voices),
        "windows": len(x),
        "epochs": cfg.epochs,
        "final_loss": float(history.history["loss"][-1]),
        "render_s": round(render_s, 1),
        "train_s": round(time.monotonic() - t1, 1),
        "config": asdict(cfg),
        "labels_are": "training identities (synthesizer settings)",
    }
    rng = np.random.default_rng(cfg.seed)
    golden_x = x[rng.choice(len(x), size=min(16, len(x)), replace=False)]
    model_dir = export_model(
        serving,
        spec=SPEAKER_SPEC,
        labels=[v.identity for v in voices],
        out_dir=repo,
        name=SPEAKER_MODEL,
        version=version,
        golden_x=golden_x,
        training_summary=summary,
        macs=count_macs(serving),
        overwrite=overwrite,
    )
    (model_dir / "report.json").write_text(json.dumps({"training": summary}, indent=2) + "\n")
    return model_dir


def data_hash() -> str:
    """Hash of the voice lists and word list: changes when the training data would.

    Returns
    -------
    str
        16 hex digits, recorded in the manifest's ``training`` block.
    """
    blob = json.dumps(
        [[asdict(v) for v in training_voices()], [asdict(v) for v in heldout_voices()], WORDS]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.speaker train|heldout``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m models.speaker")
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="render voices, train, export")
    t.add_argument("--repo", type=Path, required=True, help="model repository (models/zoo)")
    t.add_argument("--version", default="1")
    t.add_argument("--overwrite", action="store_true", help="replace an existing version")
    t.add_argument("--epochs", type=int, default=SpeakerNetConfig().epochs)
    t.add_argument("--passages", type=int, default=SpeakerNetConfig().passages)
    t.add_argument("--cache", type=Path, default=None, help="reuse rendered windows (npz)")
    t.add_argument("--max-voices", type=int, default=None, help="smoke runs only")
    h = sub.add_parser("heldout", help="render enroll/ and test/ clips of unseen voices")
    h.add_argument("--out", type=Path, required=True)
    h.add_argument("--impostors", type=int, default=5)
    h.add_argument("--test-words", type=int, default=16, help="words per test clip")
    h.add_argument("--test-clips", type=int, default=4)
    h.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.cmd == "heldout":
        split = render_heldout(
            args.out,
            n_impostors=args.impostors,
            test_clips=args.test_clips,
            test_words=args.test_words,
            seed=args.seed,
        )
        print(json.dumps(split, indent=2))
        return 0
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is required to render voices", file=sys.stderr)
        return 2
    cfg = SpeakerNetConfig(epochs=args.epochs, passages=args.passages)
    model_dir = train(
        args.repo,
        cfg=cfg,
        version=args.version,
        cache_dir=args.cache,
        max_voices=args.max_voices,
        overwrite=args.overwrite,
    )
    print(model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
