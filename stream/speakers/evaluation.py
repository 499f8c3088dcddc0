"""Enroll from files, identify files, and measure open-set identification on a folder.

The layout ``tympan speakers evaluate DATA_DIR`` reads::

    DATA_DIR/enroll/<speaker>/*.wav    enrollment audio (≤ ~20 s per speaker is plenty)
    DATA_DIR/test/<speaker>/*.wav      clips to identify; a <speaker> with no enroll/
                                       folder is an impostor whose clips should come
                                       back ``unknown``

A clip's embedding is the renormalized mean of its speech windows' embeddings, the
same aggregate the stream tracker uses over its span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.audio.files import audio_files, load_audio
from stream.errors import AudioError, RegistryError
from stream.speakers.calibration import equal_error, unit
from stream.speakers.embedder import SceneVeto, SpeakerEmbedder
from stream.speakers.registry import ModelBinding, SpeakerRegistry
from stream.speakers.scoring import UNKNOWN, ScoringConfig, Verdict
from stream.speakers.vad import DEFAULT_VAD, VadConfig, collect_speech, shared_model
from stream.types import Float32


def binding(embedder: SpeakerEmbedder) -> ModelBinding:
    """The registry binding of an embedder's model."""
    name, version = embedder.model_id
    return ModelBinding(name, version, int(embedder.manifest.embedding_dim or 0))


MAX_ENROLL_AUDIO_S = 900.0  # audio read while gathering enrollment speech (15 min)


def enrollment_embeddings(
    embedder: SpeakerEmbedder,
    paths: Sequence[Path],
    *,
    max_seconds: float = 20.0,
    max_audio_s: float = MAX_ENROLL_AUDIO_S,
    vad: VadConfig = DEFAULT_VAD,
    scene_veto: SceneVeto | None = None,
) -> Float32:
    """Window embeddings of up to ``max_seconds`` of *speech* gathered from ``paths``.

    The files are read in order, together, up to ``max_audio_s`` of audio, and used
    up to where the voice activity model (Silero VAD, trained on recorded speech)
    has heard ``max_seconds`` of speech (:func:`~stream.speakers.vad.collect_speech`),
    so a voice recorded as isolated words in long silences enrolls from the same
    10-20 s of speech as a talker. Refused when the whole read holds less than
    ``vad.min_speech_s`` of speech. ``scene_veto``, when given, may refuse speech the
    label model mostly hears as music (a singer,
    :class:`~stream.speakers.embedder.SceneVeto`). Nothing requires the label model
    to hear ``speech``, so a voice it was not trained on (a whisper) still enrolls.

    Raises
    ------
    RegistryError
        When the audio holds no usable speech (silence, tone, music): the message
        names the file(s), the measured cues and what to do about it.
    """
    sr = embedder.spec.sr
    audio = _read_until(paths, sr, limit=round(max_audio_s * sr))
    gathered = collect_speech(audio, sr, model=shared_model(), max_speech_s=max_seconds, config=vad)
    names = ", ".join(str(p) for p in paths)
    hint = _no_speech_hint(max_seconds, max_audio_s, vad)
    if not gathered.check.ok:
        raise RegistryError(
            f"{names}: no usable speech to enroll: {gathered.check.describe()}; {hint}"
        )
    if scene_veto is not None:
        heard = scene_veto.hear(audio[: gathered.end], sr)
        if heard.vetoed:
            raise RegistryError(
                f"{names}: no usable speech to enroll: label model {scene_veto.name} hears "
                f"{heard.label} (not a voice) in {100 * heard.fraction:.0f}% of the "
                f"{heard.windows} windows (refused from "
                f"{100 * scene_veto.min_fraction:.0f}%); {hint}; if the clips do hold "
                "the voice, skip this check with --scene-model none"
            )
    emb = embedder.embed_clip(audio[: gathered.end], vad=vad)
    if emb.shape[0] == 0:
        raise RegistryError(f"{names}: no window passed the speech gate; nothing to enroll; {hint}")
    return emb


def _read_until(paths: Sequence[Path], sr: int, *, limit: int) -> Float32:
    """The files' audio at ``sr``, joined in order, at most ``limit`` samples (files
    past the limit are not decoded)."""
    clips: list[Float32] = []
    total = 0
    for path in paths:
        if total >= limit:
            break
        y = load_audio(path, sr=sr)[0][: limit - total]
        clips.append(y)
        total += y.size
    return np.concatenate(clips) if clips else np.zeros(0, np.float32)


def _no_speech_hint(max_seconds: float, max_audio_s: float, vad: VadConfig) -> str:
    """What to do when enrollment audio holds too little speech, for error messages."""
    return (
        f"enroll from files where the person talks for 10-20 s (at least "
        f"{vad.min_speech_s:g} s of speech within the first {max_audio_s:g} s of audio; "
        f"up to {max_seconds:g} s of speech is used, --max-seconds), not music, tones "
        "or silence"
    )


def clip_embedding(embedder: SpeakerEmbedder, path: Path) -> Float32 | None:
    """Mean speech-window embedding of one file (``[d]``), or ``None`` without speech."""
    y, _ = load_audio(path, sr=embedder.spec.sr)
    emb = embedder.embed_clip(y)
    if emb.shape[0] == 0:
        return None
    return unit(emb.mean(axis=0))


@dataclass(frozen=True)
class FileVerdict:
    """``tympan speakers identify`` for one file."""

    path: str
    verdict: Verdict
    speech_windows: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "speech_windows": self.speech_windows, **self.verdict.to_dict()}


def identify_files(
    embedder: SpeakerEmbedder,
    registry: SpeakerRegistry,
    paths: Sequence[Path],
    *,
    config: ScoringConfig | None = None,
) -> list[FileVerdict]:
    """Identify each file (all in one batched scoring call)."""
    scorer = registry.scorer(config=config) if config else registry.scorer()
    rows: list[Float32] = []
    counts: list[int] = []
    for path in paths:
        y, _ = load_audio(path, sr=embedder.spec.sr)
        emb = embedder.embed_clip(y)
        counts.append(int(emb.shape[0]))
        rows.append(unit(emb.mean(axis=0)) if emb.shape[0] else np.zeros(0, np.float32))
    dim = registry.model.embedding_dim
    query = np.stack([r if r.size else np.zeros(dim, np.float32) for r in rows]) if rows else None
    verdicts = scorer.identify(query) if query is not None else []
    out = []
    for path, count, verdict in zip(paths, counts, verdicts, strict=True):
        if count == 0:  # no speech: nothing to compare, never a guess
            verdict = Verdict(UNKNOWN, 0.0, None, None, None, 0.0, scorer.threshold)
        out.append(FileVerdict(str(path), verdict, count))
    return out


@dataclass(frozen=True)
class EvaluationReport:
    """Open-set identification figures on one DATA_DIR."""

    method: str
    threshold: float
    calibration_method: str
    enrolled: int
    impostors: int
    accuracy: float
    unknown_rejection: float
    eer: float | None
    eer_threshold: float | None
    genuine: list[float] = field(repr=False)
    impostor: list[float] = field(repr=False)
    mistakes: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "threshold": round(self.threshold, 4),
            "calibration_method": self.calibration_method,
            "enrolled_speakers": self.enrolled,
            "impostor_speakers": self.impostors,
            "identification_accuracy": round(self.accuracy, 4),
            "unknown_rejection_rate": round(self.unknown_rejection, 4),
            "eer": None if self.eer is None else round(self.eer, 4),
            "eer_threshold": None if self.eer_threshold is None else round(self.eer_threshold, 4),
            "test_clips": {"genuine": len(self.genuine), "impostor_scores": len(self.impostor)},
            "mistakes": self.mistakes,
        }


def enroll_dir(embedder: SpeakerEmbedder, enroll_root: Path) -> SpeakerRegistry:
    """A fresh registry with every ``enroll_root/<speaker>/`` enrolled."""
    registry = SpeakerRegistry.empty(binding(embedder), config=embedder.calibration)
    folders = sorted(p for p in enroll_root.iterdir() if p.is_dir())
    for folder in folders:
        emb = enrollment_embeddings(embedder, audio_files(folder))
        registry = registry.with_speaker(folder.name, emb, model=registry.model)
    return registry


def evaluate_dir(
    embedder: SpeakerEmbedder,
    data_dir: Path,
    *,
    methods: Sequence[ScoringConfig] = (ScoringConfig("centroid"), ScoringConfig("knn")),
) -> list[EvaluationReport]:
    """Enroll ``enroll/``, identify ``test/``; one report per scoring method."""
    enroll_root, test_root = data_dir / "enroll", data_dir / "test"
    if not enroll_root.is_dir() or not test_root.is_dir():
        raise AudioError(
            "bad_dataset", f"{data_dir}: expected enroll/<speaker>/ and test/<speaker>/ folders"
        )
    registry = enroll_dir(embedder, enroll_root)
    truth: list[str] = []
    rows: list[Float32] = []
    paths: list[str] = []
    for folder in sorted(p for p in test_root.iterdir() if p.is_dir()):
        for path in audio_files(folder):
            emb = clip_embedding(embedder, path)
            if emb is not None:
                truth.append(folder.name)
                rows.append(emb)
                paths.append(str(path))
    query = np.stack(rows)
    return [_report(registry, cfg, query, truth, paths) for cfg in methods]


def _report(
    registry: SpeakerRegistry,
    cfg: ScoringConfig,
    query: Float32,
    truth: list[str],
    paths: list[str],
) -> EvaluationReport:
    scorer = registry.scorer(config=cfg)
    verdicts = scorer.identify(query)
    scores = scorer.speaker_scores(query)
    enrolled = set(registry.speakers)
    genuine: list[float] = []
    impostor: list[float] = []
    hits = known = rejected = unknown = 0
    mistakes = []
    for i, (who, verdict) in enumerate(zip(truth, verdicts, strict=True)):
        for j, name in enumerate(scorer.names):
            (genuine if name == who else impostor).append(float(scores[i, j]))
        expected = who if who in enrolled else UNKNOWN
        if who in enrolled:
            known += 1
            hits += verdict.speaker == who
        else:
            unknown += 1
            rejected += verdict.speaker == UNKNOWN
        if verdict.speaker != expected:
            mistakes.append({"path": paths[i], "expected": expected, **verdict.to_dict()})
    eer, eer_t = equal_error(genuine, impostor) if genuine and impostor else (None, None)
    return EvaluationReport(
        method=cfg.method,
        threshold=scorer.threshold,
        calibration_method=registry.calibration.method,
        enrolled=len(enrolled),
        impostors=len(set(truth) - enrolled),
        accuracy=hits / known if known else float("nan"),
        unknown_rejection=rejected / unknown if unknown else float("nan"),
        eer=eer,
        eer_threshold=eer_t,
        genuine=genuine,
        impostor=impostor,
        mistakes=mistakes,
    )


def plot_det(reports: Sequence[EvaluationReport], path: Path) -> Path:
    """Write a DET curve (FAR vs FRR, probit axes) and the score histograms as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    fig, (ax_det, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.5))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8])
    for rep in reports:
        g, i = np.asarray(rep.genuine), np.asarray(rep.impostor)
        ts = np.unique(np.concatenate([g, i]))
        far = np.array([np.mean(i >= t) for t in ts]).clip(1e-4, 1 - 1e-4)
        frr = np.array([np.mean(g < t) for t in ts]).clip(1e-4, 1 - 1e-4)
        label = f"{rep.method} (EER {100 * (rep.eer or 0):.1f}%)"
        ax_det.plot(norm.ppf(far), norm.ppf(frr), label=label)
    ax_det.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax_det.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax_det.set_xlabel("false accept rate (%)")
    ax_det.set_ylabel("false reject rate (%)")
    ax_det.set_title("DET, clip level")
    ax_det.grid(True, alpha=0.3)
    ax_det.legend()
    first = reports[0]
    ax_hist.hist(first.impostor, bins=40, alpha=0.6, density=True, label="impostor")
    ax_hist.hist(first.genuine, bins=40, alpha=0.6, density=True, label="genuine")
    ax_hist.axvline(first.threshold, color="k", ls="--", label="calibrated threshold")
    ax_hist.set_xlabel(f"cosine score ({first.method})")
    ax_hist.set_title("score distributions")
    ax_hist.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
