"""Model hot reload: control records, the load-and-gate check, and the atomic swap.

The compacted control topic (``stream.topics.Topics.control``) says which model each
role serves. Records (JSON, UTF-8; documented in ``docs/hot-reload.md``)::

    key   = "model/<role>"                      # role: a Role value, "scene" (labels) or "speaker"
    value = {"role": "scene", "name": "scene", "version": "4",
             "path": "scene/4",                 # inside the model repository, relative
             "sha256": "<sha256 of manifest.json>",
             "spec_hash": "<the model's FeatureSpec hash>",
             "published_at": "2026-11-25T16:00:00Z"}

Only the admin principal writes the control topic. Workers write what they did to
the compacted control-status topic (``stream.topics.Topics.control_status``)::

    key   = "status/<worker-id>/<role>"         # written by each worker after each attempt
    value = {"worker": ..., "app_id": ..., "role": ..., "state": "active" | "refused",
             "name": ..., "version": ..., "reason": "...", "at": "..."}

    key   = "last-good/<role>"                  # written by workers after a swap
    value = the announcement a worker last checked and served (same fields as model/<role>)

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
and the old model keeps serving. So is any record of the followed keys that cannot
be decoded (too large, nested too deep, not JSON, a path outside the repository):
whatever a record holds, the follower reports it and goes on with the next one. A
worker that starts while the latest announcement is bad serves ``last-good/<role>``
(:func:`load_at_start`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from stream.errors import BrokerError, ConfigError, ContractError, ModelError, ParityError
from stream.events import ModelRef
from stream.features.spec import FeatureSpec
from stream.inference.golden import GOLDEN_TOLERANCE
from stream.inference.manifest import MANIFEST_FILE, load_manifest, sha256_file
from stream.inference.session import OnnxModel
from stream.json_records import JsonRecordError, decode_object
from stream.kafka_client import KafkaClientConfig, send_acked
from stream.roles import Role
from stream.settings import ControlLimits
from stream.signing import SignatureError, Signer, Verifier
from stream.types import AnySend, DeviceChoice, Infer
from stream.worker.compacted import CompactedReader, CompactedRecord, latest_per_key, read_latest

log = logging.getLogger(__name__)

MODEL_PREFIX = "model/"
STATUS_PREFIX = "status/"
LAST_GOOD_PREFIX = "last-good/"
DEFAULT_LIMITS = ControlLimits()
MAX_REASON_CHARS = 2000  # a status record stays far below the control record limit
RETRY_S = 5.0  # control follower: wait after a broker error
_ANNOUNCEMENT_FIELDS = ("role", "name", "version", "path", "sha256", "spec_hash", "published_at")
ROLLBACK_FIELD = "rollback"  # optional, true: the publisher means to go back (signed)
OLDER_VERSION = "older_version"  # the reason a worker refuses a move back
_NUMERIC_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_key(role: str) -> bytes:
    """The control-topic key that announces ``role``'s active model."""
    return f"{MODEL_PREFIX}{Role.parse(role).value}".encode()


def last_good_key(role: str) -> bytes:
    """The control-topic key of the announcement a worker last checked and served."""
    return f"{LAST_GOOD_PREFIX}{Role.parse(role).value}".encode()


def status_key(worker: str, role: str) -> bytes:
    """The control-topic key of one worker's last reload outcome for ``role``."""
    return f"{STATUS_PREFIX}{worker}/{role}".encode()


def _key_role(key: bytes | None, prefix: str) -> Role | None:
    """The role a ``<prefix><role>`` key names, if it names one."""
    text = (key or b"")[len(prefix) :].decode("utf-8", "replace")
    return next((role for role in Role if role.value == text), None)


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelAnnouncement:
    """``role`` is to be served by ``name``/``version`` found at ``path``."""

    role: Role
    name: str
    version: str
    path: str
    sha256: str
    spec_hash: str
    published_at: str
    rollback: bool = False

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version)

    @property
    def key(self) -> bytes:
        return model_key(self.role)

    def to_json(self) -> bytes:
        """The record's value; ``rollback`` appears only when true, so an announcement
        that moves forward is the bytes earlier releases wrote and read."""
        fields = asdict(self)
        if not self.rollback:
            del fields[ROLLBACK_FIELD]
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_record(
        cls,
        key: bytes | None,
        value: bytes | None,
        *,
        where: str | None = None,
        limits: ControlLimits = DEFAULT_LIMITS,
        prefix: str = MODEL_PREFIX,
    ) -> ModelAnnouncement:
        """Decode a ``model/<role>`` (or ``last-good/<role>``) record, within ``limits``.

        ``prefix``: the record's key, when given, must be ``<prefix><role>`` for the
        role it holds (``model/`` or ``last-good/``). Errors name the record (``where``,
        else the key) and the bad field.

        Raises
        ------
        ConfigError
            Too large, nested too deep, not JSON, a missing or non-string field, a
            role that is none (:meth:`Role.parse`) or disagrees with the key. Never
            anything else, whatever ``value``.
        """
        where = where or f"control record {key!r}"
        if value is None:
            raise ConfigError(f"{where}: a tombstone announces no model")
        try:
            data = decode_object(
                value,
                what=where,
                max_bytes=limits.control_max_bytes,
                max_depth=limits.max_json_depth,
            )
        except JsonRecordError as exc:
            raise ConfigError(f"{exc.reason}: {exc}") from exc
        bad = [f for f in _ANNOUNCEMENT_FIELDS if not isinstance(data.get(f), str) or not data[f]]
        if bad:
            raise ConfigError(f"{where}: field(s) {', '.join(bad)} missing or not a string")
        rollback = data.get(ROLLBACK_FIELD, False)
        if not isinstance(rollback, bool):
            raise ConfigError(f"{where}: field {ROLLBACK_FIELD} must be true or false")
        if _instant(data["published_at"]) is None:
            raise ConfigError(
                f"{where}: published_at {data['published_at'][:40]!r} is not an ISO-8601 time"
            )
        try:
            role = Role.parse(data["role"])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        fields = {f: data[f] for f in _ANNOUNCEMENT_FIELDS}
        announcement = cls(**fields | {"role": role, "rollback": rollback})
        if key is not None and key != f"{prefix}{role.value}".encode():
            raise ConfigError(f"{where}: role {role.value!r} does not match the key")
        return announcement


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """What one worker did with one announcement: ``active`` or ``refused`` (why)."""

    worker: str
    app_id: str
    role: Role
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


# -- order ---------------------------------------------------------------------------------


def moves_back(new: ModelAnnouncement, floor: ModelAnnouncement | None) -> str | None:
    """Why serving ``new`` after ``floor`` would move its role back, or ``None``.

    Versions only move forward, so that whoever can write the control topic cannot
    bring back an older model, even one a trusted key signed long ago (a replay):

    * ``new`` must not have been published before ``floor`` (``published_at``);
    * and, unless ``new`` says ``rollback: true``, a model of the same name must not
      have a lower version (dot-separated numbers compared as numbers: ``10`` > ``9``;
      versions that are not numbers are ordered by ``published_at`` alone).

    A rollback is an announcement like any other, signed like any other (its
    ``rollback`` field is inside the signed value), and it must be newer than what it
    rolls back: so it cannot be replayed later to undo a newer release either.
    ``floor`` is the newest announcement a worker has accepted for the role (``None``:
    none yet).
    """
    if floor is None:
        return None
    before = _instant(new.published_at)
    floor_at = _instant(floor.published_at)
    if before is not None and floor_at is not None and before < floor_at:
        return (
            f"{OLDER_VERSION}: model {new.ref.tag} was published at {new.published_at}, "
            f"before {floor.ref.tag} ({floor.published_at}), which this worker has already "
            "seen: a replay of an older announcement? (publish again to go back: "
            "tympan models publish --rollback)"
        )
    if new.rollback or new.name != floor.name:
        return None
    ours, theirs = _version_key(new.version), _version_key(floor.version)
    if ours is not None and theirs is not None and ours < theirs:
        return (
            f"{OLDER_VERSION}: model {new.ref.tag} is older than {floor.ref.tag}, which this "
            "worker has already seen; versions only move forward unless the publisher "
            "signs a rollback (tympan models publish --rollback)"
        )
    return None


def _version_key(version: str) -> tuple[int, ...] | None:
    """``"2.10"`` -> ``(2, 10)``; ``None`` for a version that is not dotted numbers."""
    if _NUMERIC_VERSION.fullmatch(version) is None or len(version) > 100:
        return None
    return tuple(int(part) for part in version.split("."))


def _instant(text: str) -> datetime | None:
    """An ISO-8601 time (UTC when it names no zone), or ``None`` if it is none."""
    try:
        when = datetime.fromisoformat(text[:64])
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# -- checks --------------------------------------------------------------------------------


def validate_model(
    model_dir: Path | str,
    *,
    expected_spec: FeatureSpec | None = None,
    device: DeviceChoice = "cpu",
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
    ModelError
        Also when a warm-up batch or the golden replay fails in onnxruntime (e.g. a
        graph that only runs at some batch sizes): ``tympan models publish`` and the
        workers check the same sizes, 1 and ``max_batch``.
    """
    model = OnnxModel.load(model_dir, device=device, expected_spec=expected_spec)
    sizes = sorted(set(batch_sizes))
    try:
        model.warmup(sizes)
        diff = model.parity_check()
    except ContractError:
        raise
    except Exception as exc:  # onnxruntime refusing a batch shape, say: the model's fault
        m = model.manifest
        raise ModelError(
            f"{model_dir}: model {m.name}/{m.version} fails on this runtime at batch sizes "
            f"{sizes} or on its golden windows: {type(exc).__name__}: {str(exc)[:500]}"
        ) from exc
    if not diff <= tolerance:
        m = model.manifest
        raise ParityError(
            f"{model_dir}: model {m.name}/{m.version} failed the parity gate: golden "
            f"outputs differ by {diff:.3g} > tolerance {tolerance:g}",
            max_abs_diff=diff,
            output="golden",
        )
    return model


def announce(
    model_dir: Path | str, *, role: str, repo: Path, rollback: bool = False
) -> ModelAnnouncement:
    """The announcement for a model directory (which :func:`validate_model` accepted).

    ``path`` is relative to ``repo``: workers resolve it inside their own model
    repository and refuse anything else (:func:`locate`). ``rollback``: the publisher
    means to go back to a lower version (:func:`moves_back`).

    Raises
    ------
    ModelError
        ``model_dir`` is not inside ``repo`` (copy it there first).
    ConfigError
        ``role`` names no :class:`Role`.
    """
    model_dir = Path(model_dir).resolve()
    root = Path(repo).resolve()
    if not model_dir.is_relative_to(root) or model_dir == root:
        raise ModelError(
            f"{model_dir} is not inside the model repository {root}: workers load only "
            "models from their repository; copy it to <repo>/<name>/<version> (or pass "
            "--model-repo)"
        )
    manifest = load_manifest(model_dir)
    path = model_dir.relative_to(root).as_posix()
    return ModelAnnouncement(
        role=Role.parse(role),
        name=manifest.name,
        version=manifest.version,
        path=path,
        sha256=sha256_file(model_dir / MANIFEST_FILE),
        spec_hash=manifest.spec_hash,
        published_at=utc_now(),
        rollback=rollback,
    )


def locate(announcement: ModelAnnouncement, repo: Path) -> Path:
    """The announced model directory, which must resolve inside ``repo``.

    A record is untrusted: an absolute path, a ``..`` component or a symlink that
    leads out of the repository would let whoever writes to the control topic make
    every worker load (and run) files from anywhere on its disk.

    Raises
    ------
    ModelError
        The path is absolute, climbs out with ``..``, or resolves outside ``repo``.
    """
    path = PurePosixPath(announcement.path)
    what = f"model {announcement.name}/{announcement.version}: path {announcement.path!r}"
    if path.is_absolute() or ".." in path.parts or "\\" in announcement.path:
        raise ModelError(
            f"{what} must be a relative path inside the model repository (no absolute "
            "path, no '..')"
        )
    root = Path(repo).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ModelError(
            f"{what} resolves to {target}, not inside the model repository {root} "
            "(a symlink out of it?)"
        )
    return target


def prepare(
    announcement: ModelAnnouncement,
    *,
    repo: Path,
    serving: OnnxModel,
    device: DeviceChoice = "cpu",
    batch_sizes: Iterable[int] = (1,),
    tolerance: float = GOLDEN_TOLERANCE,
) -> OnnxModel:
    """Everything a worker checks before it swaps ``announcement`` in for ``serving``.

    Blocking (file reads, session creation, warm-up): run it in an executor.

    Raises
    ------
    ContractError
        Naming why: manifest digest differs from the record, FeatureSpec differs from
        the running feature bank's, labels or task (single/multi-label) differ,
        checksum, or the parity gate.
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
    task, serving_task = model.manifest.task, serving.manifest.task
    if task != serving_task:  # open streams' verdicts cannot switch aggregation midway
        raise ModelError(
            f"{what}: a {task}-label model cannot replace the serving {serving_task}-label "
            "one; a live swap keeps the task (thresholds may change): restart the workers"
        )
    return model


def load_announced(
    announcement: ModelAnnouncement,
    *,
    repo: Path,
    device: DeviceChoice = "cpu",
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


def _serving(role: Role, ref: ModelRef) -> ModelAnnouncement:
    """What a worker knows of the model it started with (no announcement: no time)."""
    return ModelAnnouncement(role, ref.name, ref.version, "?", "?", "?", "")


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
    latest = await read_latest(client, topic, timeout_s=timeout_s)
    return {key: record.value for key, record in latest.items()}


Latest = Mapping[bytes, bytes | None] | Mapping[bytes, CompactedRecord]


def _value(key: bytes, item: bytes | CompactedRecord | None) -> tuple[bytes | None, str]:
    """A snapshot entry's value and how messages name it (offset when known)."""
    if isinstance(item, CompactedRecord):
        return item.value, item.where
    return item, f"control record {key!r}"


def announcements(
    latest: Latest,
    *,
    prefix: str = MODEL_PREFIX,
    limits: ControlLimits = DEFAULT_LIMITS,
    verifier: Verifier | None = None,
) -> dict[Role, ModelAnnouncement]:
    """The valid announcements under ``prefix`` (``model/`` or ``last-good/``) in a
    :func:`read_control` (or :func:`~stream.worker.compacted.read_latest`) result; a bad
    record is logged and passed over.

    Cheap checks first: only keys ``<prefix><role>`` of a known role are read at all,
    and with trusted keys (``verifier``) a value is decoded only once its signature
    checks out, so records nobody trusted signed cost no parsing.
    """
    out: dict[Role, ModelAnnouncement] = {}
    for key, item in latest.items():
        value, where = _value(key, item)
        if value is None or not key.startswith(prefix.encode()):
            continue
        if _key_role(key, prefix) is None:
            log.warning("%s: not a role's key under %r, passed over", where, prefix)
            continue
        if verifier is not None and not _signed(latest, key, verifier):
            continue
        try:
            found = ModelAnnouncement.from_record(
                key, value, where=where, limits=limits, prefix=prefix
            )
        except ConfigError as exc:
            log.warning("%s", exc)
            continue
        out[found.role] = found
    return out


def statuses(
    latest: Mapping[bytes, bytes | None], *, limits: ControlLimits = DEFAULT_LIMITS
) -> tuple[list[dict[str, Any]], int]:
    """The workers' ``status/...`` records that decode as JSON objects, and how many
    did not (``tympan models active`` shows both)."""
    good: list[dict[str, Any]] = []
    bad = 0
    for key, value in sorted(latest.items()):
        if not key.startswith(STATUS_PREFIX.encode()) or value is None:
            continue
        try:
            good.append(
                decode_object(
                    value,
                    what=f"control record {key!r}",
                    max_bytes=limits.control_max_bytes,
                    max_depth=limits.max_json_depth,
                )
            )
        except JsonRecordError as exc:
            log.warning("%s", exc)
            bad += 1
    return good, bad


def load_at_start(
    latest: Latest,
    *,
    repo: Path,
    role: Role = Role.LABEL,
    device: DeviceChoice = "cpu",
    batch_sizes: Iterable[int] = (1,),
    limits: ControlLimits = DEFAULT_LIMITS,
    verifier: Verifier | None = None,
) -> OnnxModel | None:
    """The model a starting worker serves for ``role``, from a :func:`read_control` result.

    The announcement ``model/<role>`` if it passes its checks, else the last good
    one (``last-good/<role>``, written by workers after each successful swap), else
    ``None`` (the worker falls back to ``--model``). Never raises because of what the
    records hold: a start-up must survive any latest record. With trusted keys
    (``verifier``) the announcement must carry a good signature, and worker-written
    ``last-good`` records, which no publisher signed, are not used.
    """
    verifier = verifier or Verifier()
    prefixes = (MODEL_PREFIX,) if verifier.enabled else (MODEL_PREFIX, LAST_GOOD_PREFIX)
    for prefix in prefixes:
        found = announcements(latest, prefix=prefix, limits=limits, verifier=verifier)
        announcement = found.get(role)
        if announcement is None:
            continue
        try:
            model = load_announced(announcement, repo=repo, device=device, batch_sizes=batch_sizes)
        except Exception as exc:  # any record, any model: the worker still starts
            log.error(
                "%s%s model %s refused at start: %s",
                prefix,
                role,
                announcement.ref.tag,
                describe_failure(exc),
            )
            continue
        log.info("serving %s%s: model %s", prefix, role, announcement.ref.tag)
        return model
    return None


def _signed(latest: Latest, key: bytes, verifier: Verifier) -> bool:
    """Whether the snapshot's record under ``key`` passes ``verifier`` (logged if not)."""
    if not verifier.enabled:
        return True
    item = latest.get(key)
    headers = item.headers if isinstance(item, CompactedRecord) else ()
    value = item.value if isinstance(item, CompactedRecord) else item
    try:
        verifier.check(key, value, headers)
    except SignatureError as exc:
        log.error("control record %r refused at start: %s: %s", key, exc.reason, exc)
        return False
    return True


def describe_failure(exc: BaseException) -> str:
    """Why a model was refused, for logs and status records: a ``ContractError``'s
    sentence, else the exception's type and message (e.g. an onnxruntime failure)."""
    text = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_REASON_CHARS]


async def publish_records(
    client: KafkaClientConfig,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    signer: Signer | None = None,
) -> None:
    """Send ``(key, value)`` records to the control topic and wait for the broker's acks;
    with a ``signer`` each carries its Ed25519 signature (``stream.signing``)."""
    await send_acked(
        client,
        topic,
        records,
        what="model announcements",
        headers=signer.headers if signer is not None else None,
    )


# -- following ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadPolicy:
    """How a worker checks a new model: device, warm-up batch sizes, gate tolerance,
    and the bounds on control records."""

    device: DeviceChoice = "cpu"
    batch_sizes: tuple[int, ...] = (1,)
    tolerance: float = GOLDEN_TOLERANCE
    limits: ControlLimits = DEFAULT_LIMITS
    verifier: Verifier = field(default_factory=Verifier)


class ControlFollower:
    """Follows ``model/<role>`` on the control topic and hot-swaps ``slot``.

    Parameters
    ----------
    client, topic: the broker and the control topic.
    slot: the worker's :class:`ActiveModel` for ``role``.
    repo: the model repository announcement paths are resolved inside.
    worker, app_id: who reports the outcome (status key ``status/<worker>/<role>``).
    send: ``await send(topic, key, value)`` (the worker's producer) for status and
        ``last-good/<role>`` records; ``None``: statuses are only logged.
    status_topic: where ``send`` writes them (``Topics.control_status``; required with
        ``send``): never the control topic, which workers may not write.
    on_swap: called on the event loop after a swap with the new model's ref and its
        manifest's thresholds (``None``: single-label), before the next batch completes:
        ``Pipeline.serve``, so that new streams' summaries name it and the windows it
        scores are thresholded with its thresholds.
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
        role: Role = Role.LABEL,
        policy: ReloadPolicy = ReloadPolicy(),
        send: AnySend | None = None,
        on_swap: Callable[[ModelRef, tuple[float, ...] | None], None] | None = None,
        executor: Executor | None = None,
        refuse: Mapping[Role, str] | None = None,
        status_topic: str | None = None,
    ) -> None:
        if send is not None and (status_topic is None or status_topic == topic):
            raise ConfigError(
                f"control follower of {topic}: statuses need a topic of their own "
                f"(status_topic, got {status_topic!r}): workers do not write the control topic"
            )
        self.client = client
        self.topic = topic
        self.status_topic = status_topic
        self.slot = slot
        self.repo = Path(repo)
        self.worker = worker
        self.app_id = app_id
        self.role = Role.parse(role)
        self.policy = policy
        self._send = send
        self._on_swap = on_swap
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="tympan-reload")
        self._seen: ModelAnnouncement | None = None
        # the newest announcement this worker has served: versions only move forward
        self._floor: ModelAnnouncement | None = _serving(self.role, slot.ref)
        self._refuse = {Role.parse(r): why for r, why in (refuse or {}).items()}
        self._refused: dict[Role, ModelAnnouncement] = {}
        self._last_raw: dict[bytes, bytes | None] = {}
        self._last_good: bytes | None = None  # last-good/<role> as on the topic
        self.statuses: list[ReloadStatus] = []

    async def run(self) -> None:
        """Replay the control topic, apply the latest announcement, then follow (cancel
        to stop).

        Records are contained one by one (:meth:`on_record` never raises); a failure
        of the reader itself (broker gone, a bug) is logged and the topic re-read
        after ``RETRY_S``: losing the follower must not stop a worker that serves fine,
        and re-reading applies nothing twice.
        """
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except BrokerError as exc:
                log.error("control topic %s: %s; retrying in %.0f s", self.topic, exc, RETRY_S)
            except Exception:
                log.exception("control topic %s: follower failed; retrying", self.topic)
            await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        async with CompactedReader(self.client, self.topic) as reader:
            latest: dict[bytes, CompactedRecord] = {}
            async for batch in reader.replay():
                latest_per_key(self._mine(batch), latest)
            await self._apply_latest(latest)
            log.info("following model announcements for %r on %s", self.role, self.topic)
            async for batch in reader.follow(poll_ms=1000):
                await self._apply_latest(latest_per_key(self._mine(batch)))

    def _mine(self, batch: list[CompactedRecord]) -> list[CompactedRecord]:
        keys = self._keys
        return [r for r in batch if r.key in keys]

    async def _apply_latest(self, latest: Mapping[bytes, CompactedRecord]) -> None:
        good = last_good_key(self.role)
        if good in latest:  # know what the topic holds before reporting a new good one
            await self.on_record(good, latest[good].value, where=latest[good].where)
        for key, record in latest.items():  # only the newest announcement counts
            if key != good:
                await self.on_record(key, record.value, where=record.where, headers=record.headers)

    @property
    def _keys(self) -> set[bytes]:
        return {last_good_key(self.role)} | {model_key(role) for role in (self.role, *self._refuse)}

    async def on_record(
        self,
        key: bytes | None,
        value: bytes | None,
        *,
        where: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> ReloadStatus | None:
        """Apply one ``model/<role>`` record; returns the outcome (``None``: nothing new).

        Never raises for what the record holds: an undecodable record is refused like
        a model that fails its checks, and with trusted keys (``policy.verifier``) an
        unsigned or badly signed one is refused ``bad_signature`` before it is read.
        """
        if key is not None and key in self._last_raw and self._last_raw[key] == value:
            return None  # the same bytes again (a re-read): already answered
        self._last_raw[key or b""] = value
        if key == last_good_key(self.role):
            self._last_good = value
            return None
        try:
            self.policy.verifier.check(key, value, headers)
        except SignatureError as exc:
            return await self._refuse_unsigned(key, exc)
        try:
            announcement = ModelAnnouncement.from_record(
                key, value, where=where, limits=self.policy.limits
            )
        except ConfigError as exc:
            return await self._refuse_undecodable(key, exc)
        if announcement.role != self.role:
            return await self._refuse_role(announcement)
        backwards = moves_back(announcement, self._floor)
        if backwards is not None:
            return await self._refuse_older(announcement, backwards)
        if announcement == self._seen or announcement.ref == self.slot.ref:
            self._seen = self._floor = announcement
            await self._remember_good(announcement)
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
        except Exception as exc:  # any failure of any check (onnxruntime's too) refuses
            reason = describe_failure(exc)
            log.warning(
                "refused %s model %s (still serving %s): %s",
                self.role,
                announcement.ref.tag,
                self.slot.ref.tag,
                reason,
            )
            return await self._report(announcement, "refused", reason)
        old = self.slot.swap(model)
        self._floor = announcement
        if self._on_swap is not None:
            self._on_swap(self.slot.ref, model.manifest.thresholds)
        log.info("swapped %s model %s -> %s", self.role, old.tag, self.slot.ref.tag)
        status = await self._report(announcement, "active", f"replaced {old.tag}")
        await self._remember_good(announcement)
        return status

    async def _remember_good(self, announcement: ModelAnnouncement) -> None:
        """Write ``last-good/<role>`` if the topic does not hold this announcement yet.

        Not with trusted keys: a worker holds no publisher key, so its record could
        not be verified, and an unverifiable fallback is what signing shuts out.
        """
        value = announcement.to_json()
        if self._send is None or self._last_good == value or self.policy.verifier.enabled:
            return
        self._last_good = value
        await self._write(last_good_key(self.role), value, "last-good")

    async def _refuse_undecodable(self, key: bytes | None, exc: ConfigError) -> ReloadStatus | None:
        role = _key_role(key, MODEL_PREFIX)
        log.warning("control topic %s: %s", self.topic, exc)
        if role is None:
            return None  # not a key this follower reads (direct calls only)
        unknown = ModelAnnouncement(role, "?", "?", "?", "?", "?", "?")
        return await self._report(unknown, "refused", str(exc)[:MAX_REASON_CHARS])

    async def _refuse_unsigned(self, key: bytes | None, exc: SignatureError) -> ReloadStatus | None:
        role = _key_role(key, MODEL_PREFIX)
        log.warning("control topic %s: record %r refused: %s", self.topic, key, exc)
        if role is None:
            return None
        unknown = ModelAnnouncement(role, "?", "?", "?", "?", "?", "?")
        return await self._report(unknown, "refused", f"{exc.reason}: {exc}"[:MAX_REASON_CHARS])

    async def _refuse_older(self, announcement: ModelAnnouncement, why: str) -> ReloadStatus:
        log.warning(
            "refused %s model %s (still serving %s): %s",
            self.role,
            announcement.ref.tag,
            self.slot.ref.tag,
            why,
        )
        return await self._report(announcement, "refused", why[:MAX_REASON_CHARS])

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
        await self._write(status.key, status.to_json(), state)
        return status

    async def _write(self, key: bytes, value: bytes, what: str) -> None:
        if self._send is None or self.status_topic is None:
            return
        try:
            delivery = await self._send(self.status_topic, key, value)
            if inspect.isawaitable(delivery):
                await delivery  # the record is on the broker before we go on
        except Exception as exc:  # a lost status must not stop the follower
            log.error("cannot write %s record to %s: %r", what, self.status_topic, exc)
