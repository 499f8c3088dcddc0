"""WorkerSettings: the one place the worker reads its configuration.

Flags win over ``TYMPAN_*`` environment variables, which win over the defaults
below. Nothing else in ``stream/`` reads ``os.environ`` for the worker: leaf modules
take plain values, so a test builds a :class:`WorkerSettings` and nothing leaks in
from the shell.

Environment variables (all optional)::

    TYMPAN_BROKER, TYMPAN_KAFKA_*        Kafka bootstrap, SASL/SSL (stream.kafka_client)
    TYMPAN_TOPIC_PREFIX                  first part of every topic name ("tympan" by default)
    TYMPAN_MODEL                         model directory or ``name[/version]``
    TYMPAN_MODEL_REPO                    model repository (``models/zoo``)
    TYMPAN_SPEAKER_MODEL                 speaker model (optional)
    TYMPAN_SPEAKER_REGISTRY              speaker registry file (optional)
    TYMPAN_DEVICE                        "cpu" or "cuda"
    TYMPAN_APP_ID                        Faust app id = consumer group ("tympan-worker")
    TYMPAN_DATA_DIR                      Faust data directory
    TYMPAN_MAX_BATCH, TYMPAN_MAX_WAIT_MS batching
    TYMPAN_QUEUE_WINDOWS                 bounded inference queue (backpressure)
    TYMPAN_REORDER_FRAMES, TYMPAN_MAX_GAP_FRAMES, TYMPAN_IDLE_TIMEOUT_S
    TYMPAN_MAX_STREAMS                   open streams per worker
    TYMPAN_MAX_FRAME_BYTES, TYMPAN_MAX_FRAME_MS, TYMPAN_MAX_GAP_S,
    TYMPAN_MAX_SEQ_JUMP, TYMPAN_MAX_SEGMENT_S
                                         per-stream bounds (StreamLimits)
    TYMPAN_WEB_HOST, TYMPAN_WEB_PORT     metrics / Faust web server
    TYMPAN_SESSION_TIMEOUT_S             consumer-group session timeout
    TYMPAN_CONTROL_MAX_BYTES, TYMPAN_REGISTRY_MAX_BYTES, TYMPAN_JSON_MAX_DEPTH
                                         bounds on control / speaker-registry records
    TYMPAN_TRUSTED_KEYS                  publisher public keys (comma-separated files or
                                         folders of *.pub): only records they signed count
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from stream.errors import ConfigError
from stream.kafka_client import KafkaClientConfig
from stream.types import Device

ENV_TOPIC_PREFIX = "TYMPAN_TOPIC_PREFIX"
ENV_MODEL = "TYMPAN_MODEL"
ENV_SPEAKER_MODEL = "TYMPAN_SPEAKER_MODEL"
ENV_MODEL_REPO = "TYMPAN_MODEL_REPO"
ENV_SPEAKER_REGISTRY = "TYMPAN_SPEAKER_REGISTRY"
ENV_DEVICE = "TYMPAN_DEVICE"
ENV_APP_ID = "TYMPAN_APP_ID"
ENV_DATA_DIR = "TYMPAN_DATA_DIR"
ENV_MAX_BATCH = "TYMPAN_MAX_BATCH"
ENV_MAX_WAIT_MS = "TYMPAN_MAX_WAIT_MS"
ENV_QUEUE_WINDOWS = "TYMPAN_QUEUE_WINDOWS"
ENV_REORDER_FRAMES = "TYMPAN_REORDER_FRAMES"
ENV_MAX_GAP_FRAMES = "TYMPAN_MAX_GAP_FRAMES"
ENV_IDLE_TIMEOUT_S = "TYMPAN_IDLE_TIMEOUT_S"
ENV_MAX_STREAMS = "TYMPAN_MAX_STREAMS"
ENV_WEB_HOST = "TYMPAN_WEB_HOST"
ENV_WEB_PORT = "TYMPAN_WEB_PORT"
ENV_TOP_K = "TYMPAN_TOP_K"
ENV_SESSION_TIMEOUT_S = "TYMPAN_SESSION_TIMEOUT_S"
ENV_TRUSTED_KEYS = "TYMPAN_TRUSTED_KEYS"  # workers: publisher public keys, comma-separated
ENV_SIGNING_KEY = "TYMPAN_SIGNING_KEY"  # publishers: the private key that signs
ENV_CONTROL_MAX_BYTES = "TYMPAN_CONTROL_MAX_BYTES"
ENV_REGISTRY_MAX_BYTES = "TYMPAN_REGISTRY_MAX_BYTES"
ENV_JSON_MAX_DEPTH = "TYMPAN_JSON_MAX_DEPTH"
ENV_MAX_FRAME_BYTES = "TYMPAN_MAX_FRAME_BYTES"
ENV_MAX_FRAME_MS = "TYMPAN_MAX_FRAME_MS"
ENV_MAX_GAP_S = "TYMPAN_MAX_GAP_S"
ENV_MAX_SEQ_JUMP = "TYMPAN_MAX_SEQ_JUMP"
ENV_MAX_SEGMENT_S = "TYMPAN_MAX_SEGMENT_S"
ENV_DEAD_LETTER_MAX_BYTES = "TYMPAN_DEAD_LETTER_MAX_BYTES"
# a dead letter holds the payload in base64 (4/3) under the producer's 1 MB request
MAX_DEAD_LETTER_BYTES = 512 * 1024


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

    reorder_frames: int = 8
    max_gap_frames: int = 50

    def __post_init__(self) -> None:
        if self.reorder_frames < 0:
            raise ConfigError(f"reorder_frames={self.reorder_frames} must be >= 0")
        if self.max_gap_frames < 0:
            raise ConfigError(f"max_gap_frames={self.max_gap_frames} must be >= 0")


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
    """

    max_frame_bytes: int = 64 * 1024
    max_frame_ms: float = 1000.0
    max_gap_s: float = 2.0
    max_seq_jump: int = 3000
    max_segment_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1:
            raise ConfigError(f"max_frame_bytes={self.max_frame_bytes} must be >= 1")
        if self.max_frame_ms <= 0:
            raise ConfigError(f"max_frame_ms={self.max_frame_ms} must be positive")
        if self.max_gap_s < 0:
            raise ConfigError(f"max_gap_s={self.max_gap_s} must be >= 0")
        if self.max_seq_jump < 1:
            raise ConfigError(f"max_seq_jump={self.max_seq_jump} must be >= 1")
        if self.max_segment_s * 1000 < self.max_frame_ms:
            raise ConfigError(
                f"max_segment_s={self.max_segment_s} is shorter than one frame "
                f"(max_frame_ms={self.max_frame_ms})"
            )


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

    max_batch: int = 32
    max_wait_ms: float = 20.0
    queue_windows: int = 256

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"max_batch={self.max_batch} must be >= 1")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms={self.max_wait_ms} must be >= 0")
        if self.queue_windows < self.max_batch:
            raise ConfigError(
                f"queue_windows={self.queue_windows} must be >= max_batch={self.max_batch}"
            )


@dataclass(frozen=True, slots=True)
class ControlLimits:
    """Bounds on the JSON records of the compacted control and speaker-registry topics.

    Checked before a record is parsed (``stream.json_records``), so one oversized or
    deeply nested record is refused with its reason instead of exhausting memory or
    the interpreter's recursion limit in every worker that follows the topic.

    Attributes
    ----------
    control_max_bytes: a control record (announcement, status) is a few hundred bytes.
    registry_max_bytes: a speaker enrollment holds its window embeddings (a few
        hundred rows of 128 floats is under 1 MB); ``tympan speakers`` sends up to 8 MiB.
    max_json_depth: nesting of arrays and objects; real records nest at most 3 deep.
    """

    control_max_bytes: int = 64 * 1024
    registry_max_bytes: int = 8 * 1024 * 1024
    max_json_depth: int = 32

    def __post_init__(self) -> None:
        for name in ("control_max_bytes", "registry_max_bytes", "max_json_depth"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Everything ``tympan worker`` needs, validated once at start.

    Attributes
    ----------
    kafka: bootstrap servers and SASL/SSL.
    topic_prefix: prepended to every topic name (one cluster, many deployments).
    model: the label model: a model directory, or ``name[/version]`` in
        ``model_repo`` (``None``: the latest ``scene`` model).
    speaker_model, speaker_registry: optional speaker identification (a model
        reference as ``model``, and the enrolment registry file).
    model_repo: the model repository (``None``: ``models/zoo`` of this checkout).
    device: onnxruntime device.
    app_id: Faust app id, which is also the Kafka consumer group.
    data_dir: Faust's data directory (tables, rocksdb); one per worker process.
    sequencing, batching: the two policies above.
    limits: per-stream bounds (:class:`StreamLimits`).
    idle_timeout_s: a stream is closed (``idle``) when a later record of its partition
        is stamped (Kafka time) more than this after the stream's last record.
    max_streams: open streams per worker; a new stream past it closes the
        longest-silent open one (``closed_by="evicted"``, see docs/delivery.md).
    top_k: labels listed in each label event's ``top_k``.
    web_host, web_port: where Prometheus metrics are served.
    commit_interval_s: how often Faust commits acked offsets.
    session_timeout_s: a worker silent for this long (killed, frozen) leaves the
        consumer group and its partitions move to the others.
    control_limits: size and depth bounds on control and registry records.
    dead_letter_max_bytes: a dead letter keeps at most this much of the rejected
        record's payload (the rest stays at the record's topic/partition/offset),
        so that it always fits the producer's request limit (docs/delivery.md).
    trusted_keys: Ed25519 public keys (files, or folders of ``*.pub``) of the
        publishers; with any, unsigned or badly signed model announcements and
        enrollments are refused (``stream.signing``, docs/security.md).
    """

    kafka: KafkaClientConfig = field(default_factory=KafkaClientConfig)
    topic_prefix: str = "tympan"
    model: str | None = None
    speaker_model: str | None = None
    model_repo: Path | None = None
    speaker_registry: Path | None = None
    device: Device = "cpu"
    app_id: str = "tympan-worker"
    data_dir: Path = Path("/tmp/tympan-worker")
    sequencing: SequencingPolicy = field(default_factory=SequencingPolicy)
    batching: BatchingPolicy = field(default_factory=BatchingPolicy)
    limits: StreamLimits = field(default_factory=StreamLimits)
    idle_timeout_s: float = 30.0
    max_streams: int = 10_000
    top_k: int = 3
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    commit_interval_s: float = 1.0
    session_timeout_s: float = 10.0
    control_limits: ControlLimits = field(default_factory=ControlLimits)
    dead_letter_max_bytes: int = 64 * 1024
    trusted_keys: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device {self.device!r} is not 'cpu' or 'cuda'")
        if self.idle_timeout_s <= 0:
            raise ConfigError(f"idle_timeout_s={self.idle_timeout_s} must be positive")
        if self.max_streams < 1:
            raise ConfigError(f"max_streams={self.max_streams} must be >= 1")
        if self.top_k < 1:
            raise ConfigError(f"top_k={self.top_k} must be >= 1")
        if not 0 <= self.web_port < 65536:
            raise ConfigError(f"web_port={self.web_port} is outside 0..65535")
        if self.session_timeout_s < 6:
            raise ConfigError(
                f"session_timeout_s={self.session_timeout_s} is below Kafka's default "
                "group.min.session.timeout.ms (6 s)"
            )
        if not 0 <= self.dead_letter_max_bytes <= MAX_DEAD_LETTER_BYTES:
            raise ConfigError(
                f"dead_letter_max_bytes={self.dead_letter_max_bytes} is outside "
                f"0..{MAX_DEAD_LETTER_BYTES} (a dead letter must fit a 1 MB request)"
            )
        if not self.app_id:
            raise ConfigError("app_id is empty; it is the Kafka consumer group")

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> WorkerSettings:
        """Build settings from ``environ`` (``TYMPAN_*``), then apply ``overrides``.

        ``overrides`` holds flag values; ``None`` means "flag not given". Keys are
        field names of this class, of :class:`BatchingPolicy` / :class:`SequencingPolicy` /
        :class:`StreamLimits`, or ``broker`` (bootstrap servers).
        """
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}

        def pick(name: str, env: str, convert: Any, default: Any) -> Any:
            if name in flags:
                return convert(flags[name])
            raw = environ.get(env)
            if raw in (None, ""):
                return default
            try:
                return convert(raw)
            except ValueError as exc:
                raise ConfigError(f"{env}={raw!r} is not a valid {name}: {exc}") from exc

        base = cls()
        lim = base.limits
        kafka = KafkaClientConfig.from_environ(environ, bootstrap_servers=flags.get("broker"))
        return cls(
            kafka=kafka,
            topic_prefix=pick("topic_prefix", ENV_TOPIC_PREFIX, str, base.topic_prefix),
            model=pick("model", ENV_MODEL, str, None),
            speaker_model=pick("speaker_model", ENV_SPEAKER_MODEL, str, None),
            model_repo=pick("model_repo", ENV_MODEL_REPO, Path, None),
            speaker_registry=pick("speaker_registry", ENV_SPEAKER_REGISTRY, Path, None),
            device=cast(Device, pick("device", ENV_DEVICE, str, base.device)),
            app_id=pick("app_id", ENV_APP_ID, str, base.app_id),
            data_dir=pick("data_dir", ENV_DATA_DIR, Path, base.data_dir),
            sequencing=SequencingPolicy(
                reorder_frames=pick("reorder_frames", ENV_REORDER_FRAMES, int, 8),
                max_gap_frames=pick("max_gap_frames", ENV_MAX_GAP_FRAMES, int, 50),
            ),
            batching=BatchingPolicy(
                max_batch=pick("max_batch", ENV_MAX_BATCH, int, 32),
                max_wait_ms=pick("max_wait_ms", ENV_MAX_WAIT_MS, float, 20.0),
                queue_windows=pick("queue_windows", ENV_QUEUE_WINDOWS, int, 256),
            ),
            limits=StreamLimits(
                max_frame_bytes=pick(
                    "max_frame_bytes", ENV_MAX_FRAME_BYTES, int, lim.max_frame_bytes
                ),
                max_frame_ms=pick("max_frame_ms", ENV_MAX_FRAME_MS, float, lim.max_frame_ms),
                max_gap_s=pick("max_gap_s", ENV_MAX_GAP_S, float, lim.max_gap_s),
                max_seq_jump=pick("max_seq_jump", ENV_MAX_SEQ_JUMP, int, lim.max_seq_jump),
                max_segment_s=pick("max_segment_s", ENV_MAX_SEGMENT_S, float, lim.max_segment_s),
            ),
            idle_timeout_s=pick("idle_timeout_s", ENV_IDLE_TIMEOUT_S, float, base.idle_timeout_s),
            max_streams=pick("max_streams", ENV_MAX_STREAMS, int, base.max_streams),
            top_k=pick("top_k", ENV_TOP_K, int, base.top_k),
            web_host=pick("web_host", ENV_WEB_HOST, str, base.web_host),
            web_port=pick("web_port", ENV_WEB_PORT, int, base.web_port),
            session_timeout_s=pick(
                "session_timeout_s", ENV_SESSION_TIMEOUT_S, float, base.session_timeout_s
            ),
            control_limits=ControlLimits(
                control_max_bytes=pick("control_max_bytes", ENV_CONTROL_MAX_BYTES, int, 64 * 1024),
                registry_max_bytes=pick(
                    "registry_max_bytes", ENV_REGISTRY_MAX_BYTES, int, 8 * 1024 * 1024
                ),
                max_json_depth=pick("max_json_depth", ENV_JSON_MAX_DEPTH, int, 32),
            ),
            dead_letter_max_bytes=pick(
                "dead_letter_max_bytes",
                ENV_DEAD_LETTER_MAX_BYTES,
                int,
                base.dead_letter_max_bytes,
            ),
            trusted_keys=pick("trusted_keys", ENV_TRUSTED_KEYS, _paths, ()),
        )

    def with_changes(self, **changes: Any) -> WorkerSettings:
        """A copy with some fields replaced (tests, the CLI)."""
        return replace(self, **changes)


def _paths(value: str | Any) -> tuple[Path, ...]:
    """A comma-separated list of paths (environment), or a list of them (flags)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(Path(str(item).strip()) for item in items if str(item).strip())
