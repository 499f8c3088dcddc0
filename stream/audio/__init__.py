"""Samples: G.711, payload ↔ float32, streaming resampling and audio files."""

from stream.audio.convert import float32_to_payload, payload_to_float32
from stream.audio.files import load_audio
from stream.audio.resample import StreamResampler, resample

__all__ = ["StreamResampler", "float32_to_payload", "load_audio", "payload_to_float32", "resample"]
