"""Open-set speaker identification: embeddings, registry, scoring, tracking.

Data flow: window embeddings (``embedder`` for files, the worker's batched ONNX run
for streams) → voice activity (``vad``: Silero VAD on onnxruntime) → ``tracker``
(span average per stream) →
``scoring`` (cosine nearest neighbours, calibrated threshold from ``calibration``)
against the ``registry`` (files on disk, or the compacted ``topic`` every worker
follows). See ``docs/speakers.md``.
"""

from stream.speakers.calibration import Calibration, CalibrationConfig, calibrate
from stream.speakers.registry import (
    ModelBinding,
    SpeakerRegistry,
    load_registry,
    save_registry,
)
from stream.speakers.scoring import UNKNOWN, ScoringConfig, SpeakerScorer, Verdict
from stream.speakers.tracker import SpeakerDecision, SpeakerTracker, TrackerConfig, track_batch
from stream.speakers.vad import (
    SileroVad,
    SpeechCheck,
    VadBank,
    VadConfig,
    check_speech,
    window_speech,
)

__all__ = [
    "UNKNOWN",
    "Calibration",
    "CalibrationConfig",
    "ModelBinding",
    "ScoringConfig",
    "SileroVad",
    "SpeakerDecision",
    "SpeakerRegistry",
    "SpeakerScorer",
    "SpeakerTracker",
    "SpeechCheck",
    "TrackerConfig",
    "VadBank",
    "VadConfig",
    "Verdict",
    "calibrate",
    "check_speech",
    "load_registry",
    "save_registry",
    "track_batch",
    "window_speech",
]
