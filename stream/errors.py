"""The one exception tree of tympan's runtime.

Two families, handled in opposite ways::

    TympanError
    ├── InputError                 per record: dead-letter it with ``reason``, keep going
    │   ├── FrameError             the wire format: headers, payload length, encoding, rate
    │   ├── AudioError             samples: NaN/Inf, empty, wrong dtype, absurd rate
    │   │   ├── AudioFileError     an audio file that cannot be read or is empty (names the path)
    │   │   └── DecodeError        one decoder could not read a file; load_audio names the
    │   │                          path in the error it raises (stream.audio.decoders)
    │   ├── SequenceError          stream state: too late, gap too large, after EOS
    │   ├── JsonRecordError        a record that is not bounded JSON (stream.control.json_records)
    │   ├── BatchTooLargeError     a compressed record batch that inflates past its bound
    │   │                          (stream.kafka.inflate)
    │   └── PacketError            one ingest datagram or WebSocket message (stream.ingest.errors)
    ├── ContractError              at start: refuse to run, never degrade silently
    │   ├── ConfigError            settings that cannot work together
    │   ├── FeatureSpecError       a FeatureSpec that is invalid or does not match
    │   ├── ModelError             model file, manifest, checksum, shapes, providers
    │   │   └── ParityError        exported ONNX differs from Keras / golden outputs
    │   ├── DatasetError           a training folder that cannot be trained on
    │   ├── BrokerError            Kafka unreachable, or its topics differ from stream.kafka.topics
    │   │   └── DeliveryError      frames the producer could not get acknowledged, per stream
    │   │                          (stream.kafka.producer: produce, ingest)
    │   ├── RegistryError          speaker registry corrupt, wrong model, unknown name
    │   ├── SignatureError         a control or registry record whose signature fails
    │   │                          (stream.control.signing)
    │   └── ToolError              an external program (espeak-ng, sox...) missing or failed
    └── ProgressError              an exactly-once progress record that cannot be read: logged,
                                   its partition runs at-least-once until its next commit
                                   (stream.worker.progress)

Classes are defined here except the seven whose module is named beside them: they
belong to the code that raises them, and are drawn here so that this is the whole tree
(tests/unit/stream/test_errors.py checks it).

Every ``InputError`` carries a machine-readable ``reason`` (a short snake_case code
that becomes the dead-letter record's ``reason`` field) and, when known, the
``stream_id`` and Kafka coordinates, so a log line or a DLQ record names what was
wrong and where. Messages are sentences with the values in them.
"""

from __future__ import annotations


class TympanError(Exception):
    """Root of every error tympan raises on purpose."""


class InputError(TympanError):
    """A record (or chunk of samples) that cannot be used; losing it loses nothing else.

    Parameters
    ----------
    reason:
        Machine-readable code, e.g. ``"bad_payload_length"``; stable, part of the
        dead-letter contract (see ``docs/wire-format.md``).
    message:
        Human sentence naming the bad value.
    stream_id, seq, partition, offset:
        Where it happened, when known; filled in by whoever knows them.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        stream_id: str | None = None,
        seq: int | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.detail = message
        self.stream_id = stream_id
        self.seq = seq
        self.partition = partition
        self.offset = offset
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.stream_id is not None:
            where.append(f"stream {self.stream_id!r}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.partition is not None:
            where.append(f"partition {self.partition}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        prefix = " ".join(where)
        return f"{prefix}: {self.detail}" if prefix else self.detail

    def locate(
        self,
        *,
        stream_id: str | None = None,
        seq: int | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> InputError:
        """Fill in coordinates the raiser did not know; returns ``self`` for ``raise``."""
        if stream_id is not None and self.stream_id is None:
            self.stream_id = stream_id
        if seq is not None and self.seq is None:
            self.seq = seq
        if partition is not None and self.partition is None:
            self.partition = partition
        if offset is not None and self.offset is None:
            self.offset = offset
        self.args = (self._render(),)
        return self


class FrameError(InputError):
    """A Kafka record that is not a valid tympan audio frame."""


class AudioError(InputError):
    """Samples that cannot be turned into features."""


class SequenceError(InputError):
    """A frame that does not fit its stream's sequence (too late, after EOS, ...)."""


class ContractError(TympanError):
    """Something that must be right before the worker starts; raised at start-up."""


class ConfigError(ContractError):
    """Settings that are invalid or contradict each other."""


class FeatureSpecError(ContractError):
    """A FeatureSpec that is invalid, or differs from the one a model was trained on."""


class ModelError(ContractError):
    """A model that cannot be served: manifest, checksum, shapes, labels, providers."""


class DatasetError(ContractError):
    """A dataset that cannot be trained on (empty, single class, unreadable manifest)."""


class RegistryError(ContractError):
    """A speaker registry that is corrupt, bound to another model, or lacks a name."""


class BrokerError(ContractError):
    """The Kafka broker cannot be reached, or its topics differ from ``stream.kafka.topics``."""


class ToolError(ContractError):
    """An external program (espeak-ng, festival, fluidsynth, sox) is missing or failed."""


class AudioFileError(AudioError):
    """An audio file that cannot be loaded: missing, not audio, or without samples.

    ``reason`` is ``"unreadable_file"``, ``"empty_file"`` or (a rate the wire format
    cannot carry, ``tympan produce``) ``"bad_rate"``; ``path`` names the file.
    """

    def __init__(self, reason: str, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(reason, message)


class ParityError(ModelError):
    """An ONNX model whose outputs differ from Keras (export) or golden.npz (reload).

    Carries ``max_abs_diff`` and the ``output`` name where it was largest.
    """

    def __init__(self, message: str, *, max_abs_diff: float, output: str) -> None:
        self.max_abs_diff = max_abs_diff
        self.output = output
        super().__init__(message)
