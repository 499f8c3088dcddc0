"""Model hot reload: control records, the load-and-gate check, and the atomic swap.

The compacted control topic (``stream.topics.Topics.control``) says which model each
role serves. Records (JSON, UTF-8; documented in ``docs/hot-reload.md``)::

    key   = "model/<role>"                      # role: "scene" (labels) or "speaker"
    value = {"role": "scene", "name": "scene", "version": "4",
             "path": "scene/4",                 # relative to the model repository, or absolute
             "sha256": "<sha256 of manifest.json>",
             "spec_hash": "<the model's FeatureSpec hash>",
             "published_at": "2026-11-25T16:00:00Z"}

    key   = "status/<worker-id>/<role>"         # written by each worker after each attempt
    value = {"worker": ..., "app_id": ..., "role": ..., "state": "active" | "refused",
             "name": ..., "version": ..., "reason": "...", "at": "..."}

``sha256`` pins ``manifest.json``, which itself pins ``model.onnx`` and ``golden.npz``
by digest, so the bytes a worker loads are the bytes that were validated at publish.

A worker's :class:`ControlFollower` reads the topic from the beginning without a
consumer group (every worker must see every record), and for each new announcement
of its role: loads the model beside the running one, checks it (:func:`prepare`:
checksums, FeatureSpec, labels, warm-up on the serving batch shapes, golden parity)
in a thread, then swaps :class:`ActiveModel`'s reference on the event loop. The
batch loop reads that reference once per batch, so a batch already running finishes
on the old model and every event names the model that really scored its window.
A model that fails any check is refused: logged, reported under its status key,
and the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream.errors import BrokerError, ConfigError, ContractError, ModelError, ParityError
from stream.events import ModelRef
from stream.features.spec import FeatureSpec
from stream.inference.golden import GOLDEN_TOLERANCE
from stream.inference.manifest import MANIFEST_FILE, load_manifest, sha256_file
from stream.inference.session import Device, OnnxModel
from stream.kafka_client import KafkaClientConfig, send_acked

log = logging.getLogger(__name__)

ROLES = ("scene", "speaker")
MODEL_PREFIX = "model/"
STATUS_PREFIX = "status/"
Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Send = Callable[[str, bytes, bytes], Awaitable[Any]]
RETRY_S = 5.0  # control follower: wait after a broker error
_ANNOUNCEMENT_FIELDS = ("role", "name", "version", "path", "sha256", "spec_hash", "published_at")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_key(role: str) -> bytes:
    """The control-topic key that announces ``role``'s active model."""
    check_role(role)
    return f"{MODEL_PREFIX}{role}".encode()


def status_key(worker: str, role: str) -> bytes:
    """The control-topic key of one worker's last reload outcome for ``role``."""
    return f"{STATUS_PREFIX}{worker}/{role}".encode()


def check_role(role: str) -> str:
    """``role`` if a worker serves it; checked where a role enters (CLI flag, control
    record), so a typo is refused there rather than announced and never applied."""
    if role not in ROLES:
        raise ConfigError(f"model role {role!r} is not one of {', '.join(ROLES)}")
    return role


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelAnnouncement:
    """``role`` is to be served by ``name``/``version`` found at ``path``."""

    role: str
    name: str
    version: str
    path: str
    sha256: str
    spec_hash: str
    published_at: str

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version)

    @property
    def key(self) -> bytes:
        return model_key(self.role)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, key: bytes | None, value: bytes | None) -> ModelAnnouncement:
        """Decode a ``model/<role>`` record; errors name the key and the bad field.

        Raises
        ------
        ConfigError
            Not JSON, a missing or non-string field, or a role that disagrees with the key.
        """
        where = f"control record {key!r}"
        if value is None:
            raise ConfigError(f"{where}: a tombstone announces no model")
        try:
            data = json.loads(value.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{where}: value is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: value must be a JSON object, got {type(data).__name__}")
        bad = [f for f in _ANNOUNCEMENT_FIELDS if not isinstance(data.get(f), str) or not data[f]]
        if bad:
            raise ConfigError(f"{where}: field(s) {', '.join(bad)} missing or not a string")
        announcement = cls(**{f: data[f] for f in _ANNOUNCEMENT_FIELDS})
        check_role(announcement.role)
        if key is not None and key != announcement.key:
            raise ConfigError(f"{where}: role {announcement.role!r} does not match the key")
        return announcement


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """What one worker did with one announcement: ``active`` or ``refused`` (why)."""

    worker: str
    app_id: str
    role: str
    state: str
    name: str
    version: str
    reason: str
    at: str

    @property
    def key(self) -> bytes:
        return status_key(self.worker, self.role)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


# -- checks --------------------------------------------------------------------------------


def validate_model(
    model_dir: Path | str,
    *,
    expected_spec: FeatureSpec | None = None,
    device: Device = "cpu",
    batch_sizes: Iterable[int] = (1,),
    tolerance: float = GOLDEN_TOLERANCE,
) -> OnnxModel:
    """Load ``model_dir`` (manifest, checksums, FeatureSpec, I/O), warm it up on the
    serving batch shapes, and replay its golden windows.

    Raises
    ------
    ModelError, FeatureSpecError
        From :meth:`OnnxModel.load`.
    ParityError
        The golden replay differs by more than ``tolerance``: this runtime does not
        compute what the exporter recorded (or the golden file is not this model's).
    """
    model = OnnxModel.load(model_dir, device=device, expected_spec=expected_spec)
    model.warmup(sorted(set(batch_sizes)))
    diff = model.parity_check()
    if not diff <= tolerance:
        m = model.manifest
        raise ParityError(
            f"{model_dir}: model {m.name}/{m.version} failed the parity gate: golden "
            f"outputs differ by {diff:.3g} > tolerance {tolerance:g}",
            max_abs_diff=diff,
            output="golden",
        )
    return model


def announce(model_dir: Path | str, *, role: str, repo: Path | None = None) -> ModelAnnouncement:
    """The announcement for a model directory (which :func:`validate_model` accepted).

    ``path`` is relative to ``repo`` when the directory lies inside it (workers with
    another checkout path of the same repository find it), absolute otherwise.
    """
    model_dir = Path(model_dir).resolve()
    manifest = load_manifest(model_dir)
    path = str(model_dir)
    if repo is not None:
        with contextlib.suppress(ValueError):
            path = str(model_dir.relative_to(Path(repo).resolve()))
    return ModelAnnouncement(
        role=check_role(role),
        name=manifest.name,
        version=manifest.version,
        path=path,
        sha256=sha256_file(model_dir / MANIFEST_FILE),
        spec_hash=manifest.spec_hash,
        published_at=utc_now(),
    )


def locate(announcement: ModelAnnouncement, repo: Path) -> Path:
    """The announced model directory: ``path`` if absolute, else under ``repo``."""
    path = Path(announcement.path)
    return path if path.is_absolute() else Path(repo) / path


def prepare(
    announcement: ModelAnnouncement,
    *,
    repo: Path,
    serving: OnnxModel,
    device: Device = "cpu",
    batch_sizes: Iterable[int] = (1,),
    tolerance: float = GOLDEN_TOLERANCE,
) -> OnnxModel:
    """Everything a worker checks before it swaps ``announcement`` in for ``serving``.

    Blocking (file reads, session creation, warm-up): run it in an executor.

    Raises
    ------
    ContractError
        Naming why: manifest digest differs from the record, FeatureSpec differs from
        the running feature bank's, labels differ, checksum, or the parity gate.
    """
    model_dir = check_digest(announcement, repo)
    what = f"model {announcement.name}/{announcement.version} at {model_dir}"
    running = serving.spec
    if announcement.spec_hash != running.spec_hash:
        raise ModelError(
            f"{what}: FeatureSpec {announcement.spec_hash[:12]} differs from the running "
            f"feature bank's {running.spec_hash[:12]}; a worker cannot change its feature "
            "frontend live: restart the workers with this model"
        )
    model = validate_model(
        model_dir,
        expected_spec=running,
        device=device,
        batch_sizes=batch_sizes,
        tolerance=tolerance,
    )
    check_identity(announcement, model, what)
    if model.labels != serving.labels:
        raise ModelError(
            f"{what}: labels {list(model.labels)} differ from the serving model's "
            f"{list(serving.labels)}; a live swap keeps the label set: restart the workers"
        )
    return model


def load_announced(
    announcement: ModelAnnouncement,
    *,
    repo: Path,
    device: Device = "cpu",
    batch_sizes: Iterable[int] = (1,),
    tolerance: float = GOLDEN_TOLERANCE,
) -> OnnxModel:
    """The announced model for a worker that is starting: its feature bank is not
    built yet, so any FeatureSpec is fine; the digest and the parity gate still apply.

    Raises
    ------
    ContractError
        As :func:`prepare`, except for FeatureSpec and labels.
    """
    model_dir = check_digest(announcement, repo)
    model = validate_model(model_dir, device=device, batch_sizes=batch_sizes, tolerance=tolerance)
    check_identity(announcement, model, f"model at {model_dir}")
    return model


def check_digest(announcement: ModelAnnouncement, repo: Path) -> Path:
    """The announced directory, if its ``manifest.json`` is the one published."""
    model_dir = locate(announcement, repo)
    what = f"model {announcement.name}/{announcement.version} at {model_dir}"
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelError(f"{what}: {MANIFEST_FILE} is missing")
    digest = sha256_file(manifest_path)
    if digest != announcement.sha256:
        raise ModelError(
            f"{what}: {MANIFEST_FILE} sha256 {digest} != announced {announcement.sha256} "
            "(the directory changed after it was published)"
        )
    return model_dir


def check_identity(announcement: ModelAnnouncement, model: OnnxModel, what: str) -> None:
    m = model.manifest
    if (m.name, m.version) != (announcement.name, announcement.version):
        raise ModelError(
            f"{what}: manifest says {m.name}/{m.version}, not the announced "
            f"{announcement.name}/{announcement.version}"
        )


# -- the swap -----------------------------------------------------------------------------


class ActiveModel:
    """The model a worker serves now; :meth:`current` is what each batch reads once.

    The reference is replaced whole by :meth:`swap` (one attribute store), so a batch
    sees either the old model and its ref or the new ones, never a mix.
    """

    def __init__(self, model: OnnxModel) -> None:
        self._active = (model, _ref(model))

    @property
    def model(self) -> OnnxModel:
        return self._active[0]

    @property
    def ref(self) -> ModelRef:
        return self._active[1]

    def current(self) -> tuple[Infer, ModelRef]:
        model, ref = self._active

        def infer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = model.run(x)
            return out.probabilities, out.embedding

        return infer, ref

    def swap(self, model: OnnxModel) -> ModelRef:
        """Serve ``model`` from the next batch on; returns the ref it replaced."""
        old = self._active[1]
        self._active = (model, _ref(model))
        return old


def _ref(model: OnnxModel) -> ModelRef:
    return ModelRef(model.manifest.name, model.manifest.version)


# -- reading the topic ----------------------------------------------------------------------


async def read_control(
    client: KafkaClientConfig, topic: str, *, timeout_s: float = 10.0
) -> dict[bytes, bytes | None]:
    """The latest value per key in the control topic (read to its end, no group).

    Raises
    ------
    BrokerError
        The broker or the topic cannot be reached in ``timeout_s``.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(**client.aiokafka_kwargs(), enable_auto_commit=False)
    latest: dict[bytes, bytes | None] = {}
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
        tps = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if loop.time() > deadline:
                raise BrokerError(f"control topic {topic!r}: not read to its end in {timeout_s} s")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key is not None:
                        latest[record.key] = record.value
    except (KafkaError, TimeoutError) as exc:
        raise BrokerError(
            f"cannot read control topic {topic!r} on {client.bootstrap_servers}: {exc!r}"
        ) from exc
    finally:
        await consumer.stop()
    return latest


async def _partitions(consumer: Any, topic: str) -> set[int]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()  # first look at a topic
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise BrokerError(f"control topic {topic!r} does not exist (tympan topics create)")
    return set(parts)


def announcements(latest: Mapping[bytes, bytes | None]) -> dict[str, ModelAnnouncement]:
    """The valid ``model/<role>`` announcements in a :func:`read_control` result."""
    out: dict[str, ModelAnnouncement] = {}
    for key, value in latest.items():
        if key.startswith(MODEL_PREFIX.encode()) and value is not None:
            try:
                found = ModelAnnouncement.from_record(key, value)
            except ConfigError as exc:
                log.warning("%s", exc)
                continue
            out[found.role] = found
    return out


async def publish_records(
    client: KafkaClientConfig, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> None:
    """Send ``(key, value)`` records to the control topic and wait for the broker's acks."""
    await send_acked(client, topic, records, what="model announcements")


# -- following ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadPolicy:
    """How a worker checks a new model: device, warm-up batch sizes, gate tolerance."""

    device: Device = "cpu"
    batch_sizes: tuple[int, ...] = (1,)
    tolerance: float = GOLDEN_TOLERANCE


class ControlFollower:
    """Follows ``model/<role>`` on the control topic and hot-swaps ``slot``.

    Parameters
    ----------
    client, topic: the broker and the control topic.
    slot: the worker's :class:`ActiveModel` for ``role``.
    repo: the model repository relative announcement paths are resolved against.
    worker, app_id: who reports the outcome (status key ``status/<worker>/<role>``).
    send: ``await send(topic, key, value)`` (the worker's producer) for status records;
        ``None``: statuses are only logged.
    on_swap: called on the event loop with the new ref after a swap (e.g. so that new
        streams' summaries name it).
    refuse: other roles whose announcements this worker cannot apply live, with the
        reason it reports for each (e.g. the speaker model, whose enrollments are
        bound to its version).
    """

    def __init__(
        self,
        client: KafkaClientConfig,
        topic: str,
        slot: ActiveModel,
        *,
        repo: Path,
        worker: str,
        app_id: str = "",
        role: str = "scene",
        policy: ReloadPolicy = ReloadPolicy(),
        send: Send | None = None,
        on_swap: Callable[[ModelRef], None] | None = None,
        executor: Executor | None = None,
        refuse: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.topic = topic
        self.slot = slot
        self.repo = Path(repo)
        self.worker = worker
        self.app_id = app_id
        self.role = check_role(role)
        self.policy = policy
        self._send = send
        self._on_swap = on_swap
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="tympan-reload")
        self._seen: ModelAnnouncement | None = None
        self._refuse = {check_role(r): why for r, why in (refuse or {}).items()}
        self._refused: dict[str, ModelAnnouncement] = {}
        self.statuses: list[ReloadStatus] = []

    async def run(self) -> None:
        """Consume the control topic forever (cancel to stop).

        A broker error is logged and the topic re-read from the beginning after
        ``RETRY_S``: losing the follower must not stop a worker that serves fine.
        """
        from aiokafka.errors import KafkaError

        while True:
            try:
                await self._follow()
            except (KafkaError, BrokerError) as exc:
                log.error("control topic %s: %r; retrying in %.0f s", self.topic, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(**self.client.aiokafka_kwargs(), enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [
                TopicPartition(self.topic, p)
                for p in sorted(await _partitions(consumer, self.topic))
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            log.info("following model announcements for %r on %s", self.role, self.topic)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                latest: dict[bytes, bytes | None] = {}
                for records in batch.values():
                    for record in records:
                        if record.key in self._keys:
                            latest[record.key] = record.value
                for key, value in latest.items():  # only the newest announcement counts
                    await self.on_record(key, value)
        finally:
            await consumer.stop()

    @property
    def _keys(self) -> set[bytes]:
        return {model_key(role) for role in (self.role, *self._refuse)}

    async def on_record(self, key: bytes | None, value: bytes | None) -> ReloadStatus | None:
        """Apply one ``model/<role>`` record; returns the outcome (``None``: nothing new)."""
        try:
            announcement = ModelAnnouncement.from_record(key, value)
        except ConfigError as exc:
            log.warning("control topic %s: %s", self.topic, exc)
            return None
        if announcement.role != self.role:
            return await self._refuse_role(announcement)
        if announcement == self._seen or announcement.ref == self.slot.ref:
            self._seen = announcement
            return None  # already serving it (e.g. loaded at start from this record)
        self._seen = announcement
        return await self.apply(announcement)

    async def apply(self, announcement: ModelAnnouncement) -> ReloadStatus:
        """Load, check and swap in ``announcement``, or refuse it; report either way."""
        loop = asyncio.get_running_loop()
        log.info(
            "loading %s model %s beside %s", self.role, announcement.ref.tag, self.slot.ref.tag
        )
        try:
            model = await loop.run_in_executor(self._executor, self._prepare, announcement)
        except ContractError as exc:
            log.warning(
                "refused %s model %s (still serving %s): %s",
                self.role,
                announcement.ref.tag,
                self.slot.ref.tag,
                exc,
            )
            return await self._report(announcement, "refused", str(exc))
        old = self.slot.swap(model)
        if self._on_swap is not None:
            self._on_swap(self.slot.ref)
        log.info("swapped %s model %s -> %s", self.role, old.tag, self.slot.ref.tag)
        return await self._report(announcement, "active", f"replaced {old.tag}")

    async def _refuse_role(self, announcement: ModelAnnouncement) -> ReloadStatus | None:
        why = self._refuse.get(announcement.role)
        if why is None or self._refused.get(announcement.role) == announcement:
            return None
        self._refused[announcement.role] = announcement
        log.warning("refused %s model %s: %s", announcement.role, announcement.ref.tag, why)
        return await self._report(announcement, "refused", why)

    def _prepare(self, announcement: ModelAnnouncement) -> OnnxModel:
        return prepare(
            announcement,
            repo=self.repo,
            serving=self.slot.model,
            device=self.policy.device,
            batch_sizes=self.policy.batch_sizes,
            tolerance=self.policy.tolerance,
        )

    async def _report(
        self, announcement: ModelAnnouncement, state: str, reason: str
    ) -> ReloadStatus:
        status = ReloadStatus(
            worker=self.worker,
            app_id=self.app_id,
            role=announcement.role,
            state=state,
            name=announcement.name,
            version=announcement.version,
            reason=reason,
            at=utc_now(),
        )
        self.statuses.append(status)
        if self._send is not None:
            try:
                delivery = await self._send(self.topic, status.key, status.to_json())
                if inspect.isawaitable(delivery):
                    await delivery  # the status is on the broker before we go on
            except Exception as exc:  # a lost status must not stop the follower
                log.error("cannot report %s status to %s: %r", state, self.topic, exc)
        return status
