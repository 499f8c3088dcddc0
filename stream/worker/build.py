"""Build ``tympan worker``: the model, the pipeline, the runtime and the Faust app.

The Kafka/Faust side lives in :mod:`stream.worker`: a Faust app without Faust's own
consumer (``stream.worker.app``), and an app service that consumes the audio topic
a fetched batch at a time and hands each batch to
:class:`~stream.worker.runtime.WorkerRuntime` as one list (``stream.kafka.consumer``).
Choices that matter for delivery (see ``docs/delivery.md``):

* audio records are decoded inside the runtime, so a malformed record becomes a
  dead letter with a reason;
* the worker commits itself: the runtime acks the ranges the offset ledger released
  (once the events that depend on them are on the broker) and the highest one is
  committed per partition (``stream.worker.commits``);
* on revocation the released offsets are committed, then the revoked partitions'
  streams are dropped (records held on purpose by open streams are not waited
  for); their new owner rebuilds them from the committed offset;
* ``auto_offset_reset="earliest"``: a new consumer group starts at the beginning of
  the retained audio, never skipping frames;
* ``producer_linger`` 5 ms: label events share producer batches; delivery is
  unchanged (``acks=-1``, and an offset is still acked only once the broker
  acknowledged every event that depends on it);
* a failure of the runtime itself (:class:`Fatal`) logs one line, asks Faust to
  stop, and ends the process with :data:`EXIT_FATAL` whatever state Faust is in,
  so a worker is never "alive but stuck".
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import faust

from stream.control.active import ActiveModel
from stream.control.follower import ControlFollower, ReloadPolicy
from stream.control.gate import SPEAKER_SWAP_REFUSED
from stream.control.signing import Verifier
from stream.errors import BrokerError
from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.repository import resolve_model_dir
from stream.inference.session import OnnxModel
from stream.kafka.commits import CommitLog
from stream.kafka.consumer import ConsumerPlan
from stream.kafka.topics import Topics
from stream.kafka.transactions import PartitionTransactions
from stream.pipeline import Pipeline, check_aligned
from stream.roles import Role
from stream.settings import WorkerSettings
from stream.worker.app import WorkerApp, serve_audio
from stream.worker.metrics import WorkerMetrics
from stream.worker.producer import BatchSender
from stream.worker.runtime import WorkerRuntime
from stream.worker.speakers import EmbeddingSpeakerHook

if TYPE_CHECKING:
    from stream.speakers.vad import SileroVad

log = logging.getLogger(__name__)

EXPIRE_INTERVAL_S = 1.0
EXIT_FATAL = 70  # EX_SOFTWARE: the runtime failed; a supervisor restarts and replays
FATAL_GRACE_S = 15.0  # time Faust gets to stop cleanly before the process exits anyway
PRODUCER_LINGER_S = 0.005
PRODUCER_MAX_BATCH_BYTES = 64 * 1024


class Fatal:
    """How a worker stops when the runtime itself fails (not a record: the broker
    refusing writes for good, inference failing wholesale, a background task's bug).

    The first call logs one CRITICAL line naming the failure, asks the app to crash
    (Faust stops its services, nothing past the failure is acked), and starts a
    watchdog that ends the process with :data:`EXIT_FATAL` after ``grace_s`` if Faust
    has not exited by then (a broker that does not answer can hold its shutdown).
    ``tympan worker`` exits with :data:`EXIT_FATAL` when :attr:`reason` is set.
    """

    def __init__(self, app: faust.App, *, grace_s: float = FATAL_GRACE_S) -> None:
        self._app = app
        self.grace_s = grace_s
        self.reason: BaseException | None = None
        self._crashing: list[asyncio.Future[None]] = []

    def __call__(self, exc: BaseException, what: str = "inference or delivery") -> None:
        if self.reason is not None:
            return
        self.reason = exc
        log.critical(
            "tympan worker stopping (exit %d): %s failed: %r; records not acked are "
            "replayed by the next worker",
            EXIT_FATAL,
            what,
            exc,
        )
        watchdog = threading.Timer(self.grace_s, self._exit_now)
        watchdog.daemon = True
        watchdog.start()
        try:
            self._crashing.append(asyncio.ensure_future(self._app.crash(exc)))
        except RuntimeError:  # no running loop: nothing to stop gracefully
            self._exit_now()

    def _exit_now(self) -> None:
        sys.stderr.write(f"tympan worker: exiting {EXIT_FATAL} after a fatal failure\n")
        sys.stderr.flush()
        os._exit(EXIT_FATAL)


@dataclass
class Worker:
    """A built worker: the Faust app and the runtime its agent drives."""

    app: faust.App
    runtime: WorkerRuntime
    model: OnnxModel
    topics: Topics
    settings: WorkerSettings
    active: ActiveModel | None = None
    control: ControlFollower | None = None
    fatal: Fatal | None = None
    served_because: str = "given"  # why ``model`` (choose_model), for the start-up line


def load_model(settings: WorkerSettings, *, control_topic: str | None = None) -> OnnxModel:
    """The label model to serve (:func:`choose_model` without the reason)."""
    return choose_model(settings, control_topic=control_topic)[0]


def choose_model(
    settings: WorkerSettings, *, control_topic: str | None = None
) -> tuple[OnnxModel, str]:
    """The label model to serve, and why it is that one (for the start-up line).

    The one the control topic announces for the label role (so a restart after a hot
    swap, and its replay, score with the active model), else the last good
    announcement, else the one named by the settings. ``--model`` is resolved first
    whatever the topic holds, so a reference that names nothing fails the start on
    every prefix (ModelError); an explicit ``--model`` passed over for an announced
    model is logged as a warning, never in silence.

    An announced model that fails its checks is logged and passed over; the running
    worker's control follower reports the refusal on the topic.
    """
    model_dir = resolve_model_dir(settings.model, repo=settings.model_repo, role=Role.LABEL)
    flag = "the default label model" if settings.model is None else f"--model {settings.model}"
    if control_topic is not None:
        status_topic = Topics().with_prefix(settings.topic_prefix).control_status
        announced = _announced_model(settings, control_topic, status_topic)
        if announced is not None:
            m = announced.manifest
            why = f"announced on {control_topic} (tympan models publish)"
            if settings.model is not None and not _same_dir(announced.model_dir, model_dir):
                log.warning(
                    "serving %s@%s, %s, not %s (%s): the control topic decides for every "
                    "worker of the prefix; publish that model to serve it",
                    m.name,
                    m.version,
                    why,
                    flag,
                    model_dir,
                )
                why += f"; {flag} passed over"
            return announced, why
    return OnnxModel.load(model_dir, device=settings.device), flag


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _announced_model(
    settings: WorkerSettings, control_topic: str, status_topic: str
) -> OnnxModel | None:
    """The announced model (control topic), else without trusted keys the last good
    one that workers wrote to the control-status topic."""
    from stream.control.gate import load_at_start
    from stream.control.records import LAST_GOOD_PREFIX
    from stream.inference.repository import default_repo
    from stream.kafka.compacted import CompactedRecord, read_latest

    verifier = trusted_keys(settings)
    latest: dict[bytes, CompactedRecord] = asyncio.run(read_latest(settings.kafka, control_topic))
    latest = {k: r for k, r in latest.items() if not k.startswith(LAST_GOOD_PREFIX.encode())}
    if not verifier.enabled:  # signed mode never uses a worker-written fallback
        try:
            written = asyncio.run(read_latest(settings.kafka, status_topic))
        except BrokerError as exc:
            log.warning("no last-good model: %s", exc)
            written = {}
        latest |= {k: r for k, r in written.items() if k.startswith(LAST_GOOD_PREFIX.encode())}
    return load_at_start(
        latest,
        repo=settings.model_repo or default_repo(),
        device=settings.device,
        batch_sizes=(1, settings.batching.max_batch),
        limits=settings.control_limits,
        verifier=verifier,
    )


def trusted_keys(settings: WorkerSettings) -> Verifier:
    """The publisher keys this worker trusts (``--trusted-key``); none: nothing is
    checked, which is logged once, since anyone who can write the control or
    registry topic then steers the worker (docs/security.md).

    Raises
    ------
    ConfigError
        A key file that is missing or is not an Ed25519 public key.
    """
    verifier = Verifier.load(settings.trusted_keys)
    if not verifier.enabled:
        log.warning(
            "no trusted keys (--trusted-key / TYMPAN_TRUSTED_KEYS): model announcements "
            "and enrollments are applied unsigned"
        )
    return verifier


def limit_blas_threads() -> None:
    """One BLAS thread: the frontend multiplies small matrices per record, and a
    multi-threaded BLAS spends far longer waking threads than computing (measured
    ~40x slower per record on a loaded 2-core host). scikit-learn's threadpoolctl
    changes it after numpy is imported."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def build_worker(settings: WorkerSettings, *, model: OnnxModel | None = None) -> Worker:
    """Load the model and wire the Faust app, the pipeline and the runtime together."""
    limit_blas_threads()
    topics = Topics().with_prefix(settings.topic_prefix)
    because = "given"
    if model is None:
        model, because = choose_model(settings, control_topic=topics.control)
    app = WorkerApp(settings.group_id, **_faust_settings(settings))
    spec = model.spec
    speakers, follower = (
        load_speakers(settings, spec, topics) if settings.speaker_model else (None, None)
    )
    aux_spec = speakers.spec if speakers is not None and speakers.spec != spec else None
    pipeline = Pipeline(
        spec,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(spec),
        settings.pipeline,
        aux_frontend=FeatureBank(aux_spec) if aux_spec is not None else None,
        thresholds=model.manifest.thresholds,
    )

    active = ActiveModel(model)
    infer, _ = active.current()

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await app.producer.send(topic, key, value, None, None, None)

    fatal = Fatal(app)
    metrics = WorkerMetrics()

    commits = CommitLog()
    transactions = (
        PartitionTransactions(
            settings.kafka,
            group_id=settings.group_id,
            audio_topic=topics.audio,
            progress_topic=topics.progress,
        )
        if settings.guarantee == "exactly-once"
        else None
    )
    runtime = WorkerRuntime(
        pipeline,
        infer,
        topics,
        BatchSender(app.producer).send,  # a producer batch per partition per loop turn
        commits.ack,
        settings.batching,
        metrics=metrics,
        speakers=speakers,
        on_fatal=fatal,
        current_model=active.current,
        dead_letter_max_bytes=settings.dead_letter_max_bytes,
        vad=_voice_activity() if speakers is not None else None,
        route=transactions.send if transactions is not None else None,
    )
    plan = ConsumerPlan(
        settings.kafka,
        topics.audio,
        settings.group_id,
        session_timeout_s=settings.session_timeout_s,
        commit_interval_s=settings.commit_interval_s,
        expire_interval_s=EXPIRE_INTERVAL_S,
        record_limits=settings.record_limits,
    )
    serve_audio(
        app, plan, runtime, commits, metrics=metrics, on_fatal=fatal, transactions=transactions
    )
    control = _follow_control(
        app, settings, topics, active, pipeline, send, fatal, speakers.model if speakers else None
    )
    if follower is not None:

        async def follow_registry() -> None:
            try:
                await follower.start()
            except Exception as exc:
                fatal(exc, "the speaker registry follower")
                return
            warn_if_nobody_enrolled(len(follower.registry), f"topic {follower.topic}")

        cast(Any, app).task(follow_registry)
    return Worker(app, runtime, model, topics, settings, active, control, fatal, because)


def _follow_control(
    app: faust.App,
    settings: WorkerSettings,
    topics: Topics,
    active: ActiveModel,
    pipeline: Pipeline,
    send: Any,
    fatal: Fatal,
    speaker_model: ModelRef | None = None,
) -> ControlFollower:
    """Hot reload (``docs/hot-reload.md``): a task that follows the control topic
    with a plain, group-less consumer, since every worker must see every record."""
    from stream.inference.repository import default_repo

    follower = ControlFollower(
        settings.kafka,
        topics.control,
        active,
        repo=settings.model_repo or default_repo(),
        worker=f"{socket.gethostname()}-{os.getpid()}",
        app_id=settings.group_id,
        policy=ReloadPolicy(
            device=settings.device,
            batch_sizes=(1, settings.batching.max_batch),
            limits=settings.control_limits,
            verifier=Verifier.load(settings.trusted_keys),
        ),
        send=send,
        status_topic=topics.control_status,  # workers never write the control topic
        on_swap=pipeline.serve,  # new summaries name it, its windows get its thresholds
        refuse={Role.SPEAKER: SPEAKER_SWAP_REFUSED} if speaker_model else None,
        fixed={Role.SPEAKER: speaker_model} if speaker_model else None,
    )

    async def follow_control() -> None:
        try:
            await follower.run()
        except Exception as exc:
            fatal(exc, "the control-topic follower")

    cast(Any, app).task(follow_control)
    return follower


def load_speakers(
    settings: WorkerSettings, spec: FeatureSpec, topics: Topics
) -> tuple[EmbeddingSpeakerHook, Any]:
    """The speaker hook: the embedding model, and the enrolled speakers from
    ``--speaker-registry`` (a file, fixed) or else the compacted registry topic
    (followed live by ``stream.speakers.topic.RegistryFollower``).

    Raises
    ------
    ConfigError
        When the speaker model's windows would not line up with the label model's
        (different rate, framing or window timing); other FeatureSpec differences
        (mel bands, fmin/fmax) are fine: a second FeatureBank computes them.
    """
    from stream.speakers.embedder import SpeakerEmbedder
    from stream.speakers.registry import ModelBinding, load_registry
    from stream.speakers.topic import RegistryFollower

    model_dir = resolve_model_dir(
        settings.speaker_model, repo=settings.model_repo, role=Role.SPEAKER
    )
    embedder = SpeakerEmbedder(model_dir)
    if embedder.spec != spec:
        check_aligned(spec, embedder.spec)  # ConfigError unless windows line up
    name, version = embedder.model_id
    binding = ModelBinding(name, version, embedder.manifest.embedding_dim or 0)
    follower: Any = None
    if settings.speaker_registry is not None:
        registry = load_registry(
            settings.speaker_registry, model=binding, config=embedder.calibration
        )
        warn_if_nobody_enrolled(len(registry), f"directory {settings.speaker_registry}")
        scorer = registry.scorer()

        def current() -> Any:
            return scorer

    else:
        follower = RegistryFollower(
            settings.kafka,
            binding,
            topic=topics.speaker_registry,
            calibration=embedder.calibration,
            limits=settings.control_limits,
            verifier=Verifier.load(settings.trusted_keys),
        )
        current = follower.scorer
    hook = EmbeddingSpeakerHook(
        embedder.embed_windows, current, ModelRef(name, version), embedder.spec
    )
    return hook, follower


def warn_if_nobody_enrolled(speakers: int, source: str) -> None:
    """Warn loudly at start when the speaker registry holds nobody: every speaker event
    would say ``unknown``, which reads like a verdict rather than a missing setup.

    ``tympan speakers enroll`` writes a local registry directory; a worker reads the
    registry topic (or ``--speaker-registry DIR``), so a speaker enrolled without
    ``--publish`` never reaches it.
    """
    if speakers:
        return
    log.warning(
        "speaker registry %s holds no enrolled speaker: every speaker event and summary "
        "will say 'unknown' until one is enrolled. Enroll with `tympan speakers enroll "
        "NAME FILE... --publish` (workers follow the topic live), publish the local "
        "registry with `tympan speakers sync`, or start the worker with "
        "--speaker-registry <the registry directory `tympan speakers list` shows>",
        source,
    )


def _faust_settings(settings: WorkerSettings) -> dict[str, Any]:
    data_dir = Path(settings.data_dir)
    return {
        **settings.kafka.faust_settings(),
        "datadir": str(data_dir),
        "autodiscover": False,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_disable_leader": True,
        "topic_allow_declare": False,
        "producer_acks": -1,
        # events of a few ms share one producer batch and request instead of each
        # opening its own (~20 % less CPU per send, benchmarks/RESULTS.md); adds at
        # most PRODUCER_LINGER_S to an event's latency
        "producer_linger": PRODUCER_LINGER_S,
        "producer_max_batch_size": PRODUCER_MAX_BATCH_BYTES,
        "web_enabled": settings.web_port != 0,
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "store": "memory://",
        # web_port 0 turns the web server off; Faust keeps its own port then
        **({"web_port": settings.web_port} if settings.web_port else {}),
    }


def _voice_activity() -> SileroVad:
    """Silero VAD (``models/zoo/vad/silero``): decides which windows the speaker
    tracker embeds. A missing or broken file refuses the worker (ContractError)."""
    from stream.speakers.vad import SileroVad

    return SileroVad()
