"""WorkerSettings: the one place the worker reads its configuration.

Flags win over ``TYMPAN_*`` environment variables, which win over the defaults
below. Nothing else in ``stream/`` reads ``os.environ`` for the worker: leaf modules
take plain values, so a test builds a :class:`WorkerSettings` and nothing leaks in
from the shell.

Each setting is declared once, on its field (``stream.settings.specs.setting``: the
default, a help line, the unit); the ``tympan worker`` flags, the ``TYMPAN_*`` names,
:meth:`WorkerSettings.from_environ` and the table in docs/configuration.md are derived
from those declarations. The Kafka connection (``TYMPAN_BROKER``, ``TYMPAN_KAFKA_*``)
is read by ``stream.kafka.config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.errors import ConfigError
from stream.kafka.config import KafkaClientConfig
from stream.settings.specs import check_bounds, external, from_sources, replaced, setting, spec_of
from stream.types import Device, Guarantee

ENV_SIGNING_KEY = "TYMPAN_SIGNING_KEY"  # publishers: the private key that signs
# a dead letter holds the payload in base64 (4/3) under the producer's 1 MB request
MAX_DEAD_LETTER_BYTES = 512 * 1024
KIB = 1024


@dataclass(frozen=True, slots=True)
class SequencingPolicy:
    """How a stream's frames are put back in order.

    Attributes
    ----------
    reorder_frames: frames held back waiting for a missing one; counted in frames,
        not milliseconds, so a replay makes exactly the same decisions.
    max_gap_frames: a gap of at most this many frames is zero-filled (and flagged);
        a longer one resets the stream's feature state.
    """

    reorder_frames: int = setting(
        8, minimum=0, unit="frames", help="frames held back waiting for a missing one"
    )
    max_gap_frames: int = setting(
        50, minimum=0, unit="frames", help="longest gap zero-filled; a longer one resets the stream"
    )

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds on what one stream may make the worker hold or compute.

    Every frame is untrusted input: without these a few records could make the
    worker zero-fill gigabytes or overflow an integer. Each bound, its default and
    the dead-letter reason when it is exceeded are listed in docs/delivery.md
    ("Bounds"); the per-worker memory bound they give is in docs/scaling.md.

    Attributes
    ----------
    max_frame_bytes: payload bytes of one frame at most (``frame_too_large``).
    max_frame_ms: audio in one frame at most, in milliseconds (``frame_too_long``).
    max_gap_s: a gap of missing frames is zero-filled only up to this many seconds
        (and ``max_gap_frames``); a longer one resets the stream's feature state.
    max_seq_jump: a frame more than this many sequence numbers past the highest one
        the stream has seen is dead-lettered (``seq_jump``) instead of opening a gap
        of that size.
    max_segment_s: a stream longer than this (audio seconds, gaps included) is
        rolled: its segment closes with a summary (``closed_by="rolled"``) and the
        stream goes on as a new segment, so its partition's commit moves on.
    max_segment_age_s: a segment whose partition has a record stamped (Kafka time)
        more than this after the segment's first record is rolled the same way, so a
        stream that trickles a little audio often enough never to be idle cannot pin
        its partition's committed offset (docs/delivery.md, "How far the commit
        trails"); segments whose records carry no timestamp are rolled by the wall
        clock instead.
    """

    max_frame_bytes: int = setting(
        64 * KIB, minimum=1, unit="bytes", help="payload of one frame at most; larger: dead letter"
    )
    max_frame_ms: float = setting(
        1000.0, above=0, unit="ms", help="audio in one frame at most; longer: dead letter"
    )
    max_gap_s: float = setting(
        2.0,
        minimum=0,
        unit="s",
        help="gaps are zero-filled up to this, a longer one resets the stream",
    )
    max_seq_jump: int = setting(
        3000,
        minimum=1,
        unit="frames",
        help="a frame further past the stream's highest seq: dead letter",
    )
    max_segment_s: float = setting(
        600.0, unit="s", help="a longer stream is rolled into a new segment (with a summary)"
    )
    max_segment_age_s: float = setting(
        900.0,
        above=0,
        unit="s",
        help="a segment older than this (Kafka time) is rolled: how far a commit can trail",
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.max_segment_s * 1000 < self.max_frame_ms:
            raise ConfigError(
                f"max_segment_s={self.max_segment_s} is shorter than one frame "
                f"(max_frame_ms={self.max_frame_ms})"
            )


@dataclass(frozen=True, slots=True)
class PipelinePolicy:
    """The per-worker stream policy.

    Attributes
    ----------
    sequencing: reorder window and gap limit.
    idle_timeout_s: close a stream when a later record of its partition is stamped
        (Kafka timestamp) more than this after the stream's last record.
    max_streams: open streams at most; a new stream past it closes the stream
        that has gone longest without a record (``closed_by="evicted"``, see
        docs/delivery.md).
    top_k: labels listed in each label event.
    limits: frame size and duration, gap, sequence jump and segment length bounds.
    """

    sequencing: SequencingPolicy = field(default_factory=SequencingPolicy)
    idle_timeout_s: float = setting(
        30.0,
        above=0,
        unit="s",
        help="a stream is closed when its partition is stamped this long past it",
    )
    max_streams: int = setting(
        10_000, minimum=1, help="open streams per worker; past it the longest-silent one is evicted"
    )
    top_k: int = setting(3, minimum=1, help="labels listed in each label event")
    limits: StreamLimits = field(default_factory=StreamLimits)

    def __post_init__(self) -> None:
        check_bounds(self)
        limits = self.limits
        if limits.max_seq_jump < self.open_limit:
            raise ConfigError(
                f"max_seq_jump={limits.max_seq_jump} is below reorder_frames + 1 = "
                f"{self.open_limit}"
            )
        if limits.max_segment_s * 1000 / limits.max_frame_ms <= self.open_limit:
            raise ConfigError(
                f"max_segment_s={limits.max_segment_s} holds no more than reorder_frames + 1 "
                f"= {self.open_limit} frames of max_frame_ms={limits.max_frame_ms}; a rolled "
                "segment must start past the opening zone"
            )

    @property
    def open_limit(self) -> int:
        """A stream first seen below this seq starts at seq 0 (its first frames were
        reordered); at or above it, the segment starts at the frame's own seq."""
        return self.sequencing.reorder_frames + 1


@dataclass(frozen=True, slots=True)
class BatchingPolicy:
    """How windows from all streams are grouped into one onnxruntime call.

    Attributes
    ----------
    max_batch: windows per call at most.
    max_wait_ms: a window never waits longer than this for others to join it.
    queue_windows: windows waiting for inference at most; when full, consumption
        waits (backpressure) instead of memory growing.
    """

    max_batch: int = setting(
        32, minimum=1, unit="windows", help="windows per inference call at most"
    )
    max_wait_ms: float = setting(
        20.0, minimum=0, unit="ms", help="a window waits at most this for others to join its batch"
    )
    queue_windows: int = setting(
        256, unit="windows", help="windows waiting for inference at most; then consumption waits"
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.queue_windows < self.max_batch:
            raise ConfigError(
                f"queue_windows={self.queue_windows} must be >= max_batch={self.max_batch}"
            )


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Bounds on what one Kafka record batch may make a reader hold, below tympan's format.

    Checked by the fetch guard (``stream.kafka.fetch``) on the bytes the broker returns,
    before the client library builds any record object: a batch or a record past them
    is skipped by offset and dead-lettered (docs/delivery.md, "Below the record format").

    Attributes
    ----------
    max_inflated_batch_bytes: a compressed batch is decompressed into a buffer of at
        most this many bytes; one that inflates past it is skipped whole
        (``batch_too_large``), never materialised. A 1 MiB zstd batch of zeros would
        otherwise inflate to a gigabyte.
    max_record_headers: headers on one record at most (a 1 MB record can carry ~330,000
        empty headers: 21 MB of Python objects); more: ``too_many_headers``.
    max_header_bytes: names plus values of one record's headers at most; more:
        ``headers_too_large``.
    """

    max_inflated_batch_bytes: int = setting(
        32 * KIB * KIB,
        minimum=64 * KIB,
        why="a batch of one largest audio frame (64 KiB) must fit",
        unit="bytes",
        help="a compressed record batch inflates to at most this; larger: skipped, dead-lettered",
    )
    max_record_headers: int = setting(
        64, minimum=1, unit="headers", help="headers on one record at most; more: dead-lettered"
    )
    max_header_bytes: int = setting(
        16 * KIB,
        minimum=64,
        unit="bytes",
        help="header names and values of one record at most; more: dead-lettered",
    )

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True, slots=True)
class ControlLimits:
    """Bounds on the JSON records of the compacted control and speaker-registry topics.

    Checked before a record is parsed (``stream.control.json_records``), so one oversized or
    deeply nested record is refused with its reason instead of exhausting memory or
    the interpreter's recursion limit in every worker that follows the topic.

    Attributes
    ----------
    control_max_bytes: a control record (announcement, status) is a few hundred bytes.
    registry_max_bytes: a speaker enrollment holds its window embeddings (a few
        hundred rows of 128 floats is under 1 MB); ``tympan speakers`` sends up to 8 MiB.
    max_json_depth: nesting of arrays and objects; real records nest at most 3 deep.
    """

    control_max_bytes: int = setting(
        64 * KIB, minimum=1, unit="bytes", help="a control-topic record at most; larger: refused"
    )
    registry_max_bytes: int = setting(
        8 * KIB * KIB,
        minimum=1,
        unit="bytes",
        help="a speaker-registry record at most; larger: refused",
    )
    max_json_depth: int = setting(
        32,
        minimum=1,
        env="TYMPAN_JSON_MAX_DEPTH",
        help="nesting of arrays and objects in control and registry records at most",
    )

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Everything ``tympan worker`` needs, validated once at start.

    Attributes
    ----------
    kafka: bootstrap servers and SASL/SSL (``stream.kafka.config``).
    topic_prefix: prepended to every topic name (one cluster, many deployments).
    model: the label model: a model directory, or ``name[/version]`` in
        ``model_repo`` (``None``: the latest ``scene`` model).
    speaker_model, speaker_registry: optional speaker identification (a model
        reference as ``model``, and the enrolment registry directory).
    model_repo: the model repository (``None``: ``models/zoo`` of this checkout).
    device: onnxruntime device.
    app_id: Faust app id, which is also the Kafka consumer group (``None``: follows the
        topic prefix, ``<topic_prefix>-worker``, so workers of different prefixes never
        share a group unless told to; read it as :attr:`group_id`).
    data_dir: Faust's data directory (tables, rocksdb); one per worker process.
    batching: :class:`BatchingPolicy`.
    pipeline: the stream policy (:class:`PipelinePolicy`: sequencing, idle close,
        open streams, top-k, per-stream limits).
    web_host, web_port: where Prometheus metrics are served.
    commit_interval_s: how often the offsets the ledger released are committed (with
        exactly-once: how often each partition's transaction is committed).
    guarantee: ``at-least-once`` (events sent as they are ready, offsets committed
        after them; a crash re-emits identical events) or ``exactly-once`` (events and
        offsets of each audio partition committed in one Kafka transaction; readers
        that read ``read_committed`` see each event once; docs/delivery.md).
    session_timeout_s: a worker silent for this long (killed, frozen) leaves the
        consumer group and its partitions move to the others.
    max_poll_records: a fetched batch is processed in one synchronous pass (one
        feature-kernel call); this bounds that pass, and so how long the event loop is
        away from sending finished events (benchmarks/RESULTS.md).
    control_limits: size and depth bounds on control and registry records.
    record_limits: bounds below the record format (decompression, headers), on every
        topic the worker reads (``stream.kafka.fetch``).
    dead_letter_max_bytes: a dead letter keeps at most this much of the rejected
        record's payload (the rest stays at the record's topic/partition/offset),
        so that it always fits the producer's request limit (docs/delivery.md).
    trusted_keys: Ed25519 public keys (files, or folders of ``*.pub``) of the
        publishers; with any, unsigned or badly signed model announcements and
        enrollments are refused (``stream.control.signing``, docs/security.md).
    processes: worker processes the command runs in one consumer group, under a
        supervisor (``stream.worker.supervisor``; ``None``: one per core).
    """

    kafka: KafkaClientConfig = external(KafkaClientConfig)  # TYMPAN_BROKER, TYMPAN_KAFKA_*
    topic_prefix: str = setting("tympan", help="first part of every topic name")
    model: str | None = setting(
        None, default_text="the latest scene model", help="label model: directory or name[/version]"
    )
    speaker_model: str | None = setting(
        None, help="speaker model (directory or name[/version]), for speaker events"
    )
    model_repo: Path | None = setting(
        None, default_text="models/zoo", help="model repository the model names refer to"
    )
    speaker_registry: Path | None = setting(
        None, help="speaker registry directory (where `tympan speakers enroll` writes)"
    )
    device: Device = setting("cpu", help="onnxruntime device")
    app_id: str | None = setting(
        None,
        default_text="<topic prefix>-worker",
        help="Kafka consumer group (and Faust app id); workers with the same one share the "
        "audio topic's partitions",
    )
    data_dir: Path = setting(
        Path("/tmp/tympan-worker"), help="where the worker keeps its state (Faust data directory)"
    )
    batching: BatchingPolicy = field(default_factory=BatchingPolicy)
    pipeline: PipelinePolicy = field(default_factory=PipelinePolicy)
    web_host: str = setting("127.0.0.1", help="metrics bind address")
    web_port: int = setting(6066, minimum=0, maximum=65535, help="metrics port; 0 = off")
    commit_interval_s: float = setting(
        1.0, above=0, unit="s", help="how often released offsets are committed"
    )
    guarantee: Guarantee = setting(
        "at-least-once",
        help="at-least-once, or exactly-once: events and offsets in one Kafka "
        "transaction per audio partition",
    )
    session_timeout_s: float = setting(
        10.0,
        minimum=6,
        why="Kafka's default group.min.session.timeout.ms is 6 s",
        unit="s",
        help="a silent worker leaves the consumer group after this",
    )
    max_poll_records: int = setting(
        1000,
        minimum=1,
        unit="records",
        help="audio records handed to the pipeline per fetched batch at most",
    )
    control_limits: ControlLimits = field(default_factory=ControlLimits)
    record_limits: RecordLimits = field(default_factory=RecordLimits)
    dead_letter_max_bytes: int = setting(
        64 * KIB,
        minimum=0,
        maximum=MAX_DEAD_LETTER_BYTES,
        why="a dead letter must fit a 1 MB request",
        unit="bytes",
        help="payload a dead letter keeps of the rejected record",
    )
    trusted_keys: tuple[Path, ...] = setting(
        (),
        flag="trusted_key",
        default_text="none: signatures are not checked",
        help="publisher public key (file or folder of *.pub; repeat, or comma-separated "
        "variable): only announcements and enrollments it signed are applied",
    )
    processes: int | None = setting(
        None,
        minimum=1,
        default_text="one per core",
        help="worker processes in one consumer group; a dead one is restarted",
    )

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device {self.device!r} is not 'cpu' or 'cuda'")
        check_bounds(self)
        if self.app_id is not None and not self.app_id:
            raise ConfigError("app_id is empty; it is the Kafka consumer group")

    @property
    def group_id(self) -> str:
        """The consumer group (and Faust app id): ``app_id``, else ``<topic_prefix>-worker``."""
        return self.app_id or f"{self.topic_prefix}-worker"

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> WorkerSettings:
        """Build settings from ``environ`` (``TYMPAN_*``), then apply ``overrides``.

        ``overrides`` holds flag values by setting name (``max_batch``, at any depth),
        or ``broker`` (bootstrap servers); ``None`` means "flag not given".
        """
        flags = dict(overrides or {})
        kafka = KafkaClientConfig.from_environ(environ, bootstrap_servers=flags.pop("broker", None))
        settings: WorkerSettings = from_sources(cls, environ, flags, kafka=kafka)
        return settings

    def with_changes(self, **changes: Any) -> WorkerSettings:
        """A copy with some settings replaced, by name at any depth (tests, the CLI)."""
        settings: WorkerSettings = replaced(self, **changes)
        return settings


# the names other commands read these settings by
ENV_TOPIC_PREFIX = spec_of(WorkerSettings, "topic_prefix").env
ENV_MODEL_REPO = spec_of(WorkerSettings, "model_repo").env
